// The execution providers agree: CPU (onnxruntime-node), WASM (onnxruntime-web in Node) and
// WebGPU (onnxruntime-node's Dawn, on Vulkan) give the same float32 loss, gradients and optimizer
// step; CPU float32 matches the PyTorch float64 references. CUDA (not installed) and unknown
// providers fail with messages that say what to do.
//
// WebGPU needs a Vulkan driver; on a machine without a GPU that is Mesa lavapipe:
//   VK_ICD_FILENAMES=/usr/share/vulkan/icd.d/lvp_icd.json npx mocha spec/lib/runtime
// (CI installs it with scripts/ci/install-vulkan.sh). Without an adapter the WebGPU tests are
// pending locally and fail under CI.
import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { encodeModel, tensorFromProto, type LossKind, type Reduction, type TensorData } from '../../../graph-tools/index.js';
import { readModelFile, readTensorFile } from '../../../lib/io/files.js';
import { adam, kfqn, kfqnL } from '../../../lib/optim/index.js';
import { RuntimeError, type Backend, type ExecutionProvider } from '../../../lib/runtime/backend.js';
import { createBackend } from '../../../lib/runtime/index.js';
import { computeGradients, type GradientResult } from '../../../lib/train/gradients.js';
import { Trainer, type TrainerOptions } from '../../../lib/train/trainer.js';
import { tinyModel } from '../../helpers/cli.js';
import { relError } from '../../helpers/train.js';
import { A, ModelBuilder } from '../../helpers/models.js';
import { makeTinyCnn, tinyCnnBatch, tinyCnnOnnx } from '../../helpers/tiny-cnn.js';

// MLPs, and small CNNs (conv, pooling, frozen BatchNormalization, residual Add, Pad, Concat, Clip).
const FIXTURES = ['mlp/gemm_relu_ce', 'mlp/mlp_acts_mse', 'mlp/autoencoder_small', 'cnn/conv_relu_pool_ce', 'cnn/conv_bn_unfolded', 'cnn/avgpool_variants', 'cnn/residual_block'];
/**
 * onnxruntime-node 1.30's WebGPU Conv computes wrong outputs for 6 input channels (measured on
 * Mesa lavapipe: Conv 6→4, 2×2 and 3×3 kernels, off by up to 15; 2, 4, 5 and 8 channels agree;
 * compare microsoft/onnxruntime#29651). avgpool_variants has such a Conv after its Concat.
 */
const UPSTREAM_WEBGPU_CONV_BUG = ['cnn/avgpool_variants'];
/** Cross-EP float32 agreement, and CPU float32 against the float64 reference. */
const TOL = 1e-4;

interface Reference {
  loss: number; loss_kind: LossKind; reduction: Reduction; inputs: string[];
  gradients: Record<string, number[]>; preactivation_gradients: Record<string, number[]>;
  batchnorm_gradients?: Record<string, number[]>;
}

interface Fixture { name: string; ref: Reference; model: ReturnType<typeof readModelFile>; inputs: Record<string, TensorData>; target: TensorData }

function loadFixture(name: string): Fixture {
  const dir = join('spec/fixtures', name);
  const ref = JSON.parse(readFileSync(join(dir, 'reference.json'), 'utf8')) as Reference;
  return {
    name, ref, model: readModelFile(join(dir, 'model.onnx')),
    inputs: Object.fromEntries(ref.inputs.map((i) => [i, readTensorFile(join(dir, `input_${i}.pb`))])),
    target: readTensorFile(join(dir, 'target.pb')),
  };
}

function scalarErr(a: number, b: number): number { return Math.abs(a - b) / Math.max(1e-12, Math.abs(b)); }

/** Every value of `actual` within TOL of `expected` (loss, each gradient, each pre-activation gradient). */
function expectAgree(actual: GradientResult, expected: { loss: number; gradients: Map<string, ArrayLike<number>>; preactivationGradients: Map<string, ArrayLike<number>> }, what: string) {
  expect(scalarErr(actual.loss, expected.loss), `${what}: loss ${actual.loss} vs ${expected.loss}`).to.be.below(TOL);
  expect([...actual.gradients.keys()].sort(), `${what}: parameters`).to.deep.equal([...expected.gradients.keys()].sort());
  for (const [p, g] of expected.gradients) expect(relError(actual.gradients.get(p)!, g), `${what}: d/d ${p}`).to.be.below(TOL);
  expect([...actual.preactivationGradients.keys()].sort(), `${what}: pre-activations`).to.deep.equal([...expected.preactivationGradients.keys()].sort());
  for (const [h, g] of expected.preactivationGradients) expect(relError(actual.preactivationGradients.get(h)!, g), `${what}: d/d ${h}`).to.be.below(TOL);
}

function f32(backend: Backend, fx: Fixture): Promise<GradientResult> {
  return computeGradients(backend, fx.model, {
    kind: fx.ref.loss_kind, reduction: fx.ref.reduction, inputs: fx.inputs, target: fx.target, dtype: 'float32', source: fx.name,
  });
}

/** y = x·W: enough to tell whether a provider can create and run a session. */
const PROBE = encodeModel(tinyModel({
  input: { name: 'x', shape: [1, 2] },
  initializers: [{ name: 'W', dims: [2, 2], values: [1, 2, 3, 4] }],
  nodes: [{ op: 'MatMul', inputs: ['x', 'W'], outputs: ['y'], name: 'mm' }],
  output: { name: 'y', shape: [1, 2] },
}));

async function probe(backend: Backend): Promise<void> {
  const s = await backend.createSession(PROBE, { name: `${backend.ep} probe` });
  try {
    const out = await s.run({ x: backend.tensor('float32', Float32Array.of(1, 1), [1, 2]) });
    const y = Array.from(await backend.read(out.y) as Float32Array);
    if (y[0] !== 4 || y[1] !== 6) throw new Error(`${backend.ep} probe computed [${y}], expected [4,6]`);
  } finally {
    await s.release();
  }
}

const onCI = !!process.env.CI && process.env.CI !== 'false' && process.env.CI !== '0';

describe('runtime backends: CPU, WASM and WebGPU agree in float32', function () {
  this.timeout(60000);
  let cpu: Backend;
  let wasm: Backend;
  let webgpu: Backend | undefined;

  let webgpuError: unknown;
  let told = false;

  before(async () => {
    cpu = await createBackend('cpu');
    wasm = await createBackend('wasm');
    try {
      const b = await createBackend('webgpu');
      await probe(b);
      webgpu = b;
    } catch (e) {
      webgpuError = e;
    }
  });

  /** The WebGPU backend, or: fail under CI, pending (with the reason) elsewhere. */
  function needWebGpu(ctx: Mocha.Context): Backend {
    if (webgpu) return webgpu;
    const msg = (webgpuError as Error)?.message ?? String(webgpuError);
    // Only "no session could be created" means no adapter; a session that computes wrong is a failure.
    if (!(webgpuError instanceof RuntimeError && /cannot create an ORT session on 'webgpu'/.test(msg))) throw webgpuError;
    const why = 'no WebGPU adapter. In Node the WebGPU EP runs on Vulkan: install Mesa lavapipe '
      + '(scripts/ci/install-vulkan.sh) and set VK_ICD_FILENAMES=/usr/share/vulkan/icd.d/lvp_icd.json';
    if (onCI) throw new Error(`WebGPU is required under CI (CI=${process.env.CI}): ${why}\n${msg}`);
    if (!told) console.warn(`      WebGPU tests are pending: ${why}\n      (${msg})`);
    told = true;
    if (ctx.test) ctx.test.title += ' (pending: no WebGPU adapter; set VK_ICD_FILENAMES)';
    ctx.skip();
    throw new Error('unreachable');
  }

  it('WASM creates and runs a session', async () => {
    await probe(wasm);
  });

  it('WebGPU finds an adapter and runs a session', async function () {
    await probe(needWebGpu(this));
  });

  for (const name of FIXTURES) {
    describe(name, () => {
      let fx: Fixture;
      let onCpu: GradientResult;
      before(async () => {
        fx = loadFixture(name);
        onCpu = await f32(cpu, fx);
      });

      it('CPU float32 matches the PyTorch float64 reference', () => {
        const ref = fx.ref;
        const toMap = (o: Record<string, number[]>) => new Map(Object.entries(o));
        expect(onCpu.dtype).to.equal('float32');
        expectAgree(onCpu, { loss: ref.loss, gradients: toMap({ ...ref.gradients, ...ref.batchnorm_gradients }), preactivationGradients: toMap(ref.preactivation_gradients) }, 'cpu vs reference');
      });

      it('WASM matches CPU', async () => {
        expectAgree(await f32(wasm, fx), onCpu, 'wasm vs cpu');
      });

      it('WebGPU matches CPU', async function () {
        const gpu = needWebGpu(this);
        if (UPSTREAM_WEBGPU_CONV_BUG.includes(name)) {
          // Upstream, not kfqn: the forward pass alone already disagrees. When ORT fixes its WebGPU
          // Conv this assertion fails, and the fixture moves back to the plain agreement check.
          expect(scalarErr((await f32(gpu, fx)).loss, onCpu.loss), 'the known ORT WebGPU Conv bug (C_in = 6) still shows').to.be.above(1e-3);
          return;
        }
        expectAgree(await f32(gpu, fx), onCpu, 'webgpu vs cpu');
      });
    });
  }

  it('WebGPU trains through a MaxPool whose unused Indices output the exporter declared', async function () {
    const gpu = needWebGpu(this);
    const b = new ModelBuilder(3);
    const h = b.node('Reshape', [b.gemm(b.input('x', ['N', 4], [2, 4]), 4, 16), b.int64('shape', [0, 1, 4, 4])]);
    const [pooled] = [b.node('MaxPool', [h], [A.ints('kernel_shape', [2, 2]), A.ints('strides', [2, 2])], ['pooled', 'indices'])];
    const model = b.model(b.gemm(b.node('Flatten', [pooled]), 4, 2));
    const run = (backend: Backend) => computeGradients(backend, model, { kind: 'mse', reduction: 'mean', inputs: b.data, target: { dtype: 'float32', dims: [2, 2], data: Float32Array.of(0.1, 0.2, 0.3, 0.4) }, dtype: 'float32' });
    expectAgree(await run(gpu), await run(cpu), 'webgpu vs cpu');
  });

  describe('one Adam step of the Trainer', () => {
    let fx: Fixture;
    let expected: { loss: number; params: Map<string, TensorData> };
    const batch = () => ({
      index: 0, epoch: 0, size: fx.inputs.x.dims[0],
      inputs: fx.inputs.x.data as Float32Array, labels: fx.target.data as BigInt64Array,
    });
    async function step(backend: Backend) {
      const trainer = await Trainer.create(backend, fx.model, {
        kind: fx.ref.loss_kind, reduction: fx.ref.reduction, optimizer: adam({ lr: 0.01 }), target: 'label', source: fx.name,
      });
      try {
        const { loss, skipped } = await trainer.trainStep(batch());
        expect(skipped).to.equal(false);
        return { loss, params: await trainer.parameters() };
      } finally {
        await trainer.dispose();
      }
    }
    function expectSameStep(actual: { loss: number; params: Map<string, TensorData> }, what: string) {
      expect(scalarErr(actual.loss, expected.loss), `${what}: loss`).to.be.below(TOL);
      expect([...actual.params.keys()]).to.deep.equal([...expected.params.keys()]);
      for (const [p, t] of expected.params) {
        const a = actual.params.get(p)!;
        expect(a.dims, `${what}: dims of ${p}`).to.deep.equal(t.dims);
        expect(relError(a.data as Float32Array, t.data as Float32Array), `${what}: new ${p}`).to.be.below(TOL);
      }
    }

    before(async () => {
      fx = loadFixture('mlp/gemm_relu_ce');
      expected = await step(cpu);
      expect(expected.loss).to.be.closeTo(fx.ref.loss, 1e-5);
      // The step moved every weight by about lr (Adam's first step is ≈ lr·sign(g)).
      const w0 = fx.model.graph!.initializer!.find((t) => t.name === '0.weight')!;
      const before0 = tensorFromProto(w0).data as Float32Array;
      const after0 = expected.params.get('0.weight')!.data as Float32Array;
      const moved = before0.map((v, i) => Math.abs(after0[i] - v));
      expect(Math.max(...moved)).to.be.closeTo(0.01, 1e-4);
    });

    it('on WASM gives CPU\'s new parameters', async () => {
      expectSameStep(await step(wasm), 'wasm');
    });

    it('on WebGPU gives CPU\'s new parameters', async function () {
      expectSameStep(await step(needWebGpu(this)), 'webgpu');
    });
  });

  describe('three KF-QN steps of the Trainer on a CNN with a 3×3 convolution', () => {
    // The ops KF-QN adds to a step (the Hessian action's convolutions, the compact L-BFGS products
    // with their float64 p × p blocks, the BFGS updates) on each provider; an L-BFGS A side needs no
    // com.microsoft Inverse.
    async function steps(backend: Backend, optimizer: TrainerOptions['optimizer']) {
      const trainer = await Trainer.create(backend, tinyCnnOnnx(makeTinyCnn()), { kind: 'cross-entropy', reduction: 'mean', optimizer, target: 'label' });
      try {
        const losses: number[] = [];
        for (let k = 1; k <= 3; k++) losses.push((await trainer.trainStep(tinyCnnBatch(k))).loss);
        return { losses, params: await trainer.parameters() };
      } finally {
        await trainer.dispose();
      }
    }
    function expectSame(actual: Awaited<ReturnType<typeof steps>>, expected: Awaited<ReturnType<typeof steps>>, what: string) {
      actual.losses.forEach((l, k) => expect(scalarErr(l, expected.losses[k]), `${what}: loss ${k + 1}`).to.be.below(1e-4));
      for (const [p, t] of expected.params) expect(relError(actual.params.get(p)!.data as Float32Array, t.data as Float32Array), `${what}: ${p}`).to.be.below(1e-3);
    }
    const lbfgsBoth = () => kfqnL({ history: 3, aSide: 'lbfgs', aHistory: 3 });

    it('kfqn (dense H_a) on WASM gives CPU\'s losses and parameters', async () => {
      expectSame(await steps(wasm, kfqn()), await steps(cpu, kfqn()), 'wasm');
    });

    it('kfqn-l --a-side lbfgs on WebGPU gives CPU\'s losses and parameters', async function () {
      const gpu = needWebGpu(this);
      expectSame(await steps(gpu, lbfgsBoth()), await steps(cpu, lbfgsBoth()), 'webgpu');
    });

    // A checkpoint reads every state tensor back from the provider: after step 1 on WASM or WebGPU,
    // restored on the same provider and on CPU, steps 2 and 3 are CPU's.
    it('a checkpoint after step 1 on WASM and WebGPU resumes there and on CPU: steps 2 and 3 give CPU\'s losses and parameters', async function () {
      const gpu = needWebGpu(this);
      const optimizer = () => kfqnL({ history: 3, curvatureInterval: 2 });
      const reference = await steps(cpu, optimizer());
      const make = (b: Backend) => Trainer.create(b, tinyCnnOnnx(makeTinyCnn()), { kind: 'cross-entropy', reduction: 'mean', optimizer: optimizer(), target: 'label' });
      for (const [name, written] of [['wasm', wasm], ['webgpu', gpu]] as const) {
        const first = await make(written);
        const losses = [(await first.trainStep(tinyCnnBatch(1))).loss];
        const bytes = await first.checkpoint();
        await first.dispose();
        for (const resumedOn of [written, cpu]) {
          const resumed = await make(resumedOn);
          try {
            await resumed.restore(bytes);
            const rest = [(await resumed.trainStep(tinyCnnBatch(2))).loss, (await resumed.trainStep(tinyCnnBatch(3))).loss];
            expectSame({ losses: [...losses, ...rest], params: await resumed.parameters() }, reference, `written on ${name}, resumed on ${resumedOn.ep}`);
          } finally {
            await resumed.dispose();
          }
        }
      }
    });

    // Steps 1 and 3 update the curvature, step 2 runs the direction graph with its If off.
    const gated = () => kfqn({ curvatureInterval: 2 });
    it('kfqn --curvature-interval 2 (the direction graph\'s If) on WASM and WebGPU gives CPU\'s losses and parameters', async function () {
      const reference = await steps(cpu, gated());
      expectSame(await steps(wasm, gated()), reference, 'wasm');
      expectSame(await steps(needWebGpu(this), gated()), reference, 'webgpu');
    });

    // The factor start: a dense H_g⁰ through com.microsoft Inverse, an L-BFGS H_g's diagonal H0.
    for (const [name, make] of [['kfqn', () => kfqn({ gInit: 'factor' })], ['kfqn-l --a-side lbfgs', () => kfqnL({ history: 3, aSide: 'lbfgs', aHistory: 3, gInit: 'factor' })]] as const) {
      it(`${name} --g-init factor on WASM and WebGPU gives CPU's losses and parameters`, async function () {
        const reference = await steps(cpu, make());
        expectSame(await steps(wasm, make()), reference, 'wasm');
        expectSame(await steps(needWebGpu(this), make()), reference, 'webgpu');
      });
    }
  });

  describe('providers that cannot run', () => {
    it('cuda without its libraries fails with a RuntimeError that says how to install them', async function () {
      const backend = await createBackend('cuda');
      let err: unknown;
      try {
        await probe(backend);
      } catch (e) {
        err = e;
      }
      if (!err) {
        // A machine with onnxruntime-node's CUDA 12 libraries installed: nothing to check here.
        if (this.test) this.test.title += ' (pending: the CUDA provider is installed here)';
        this.skip();
      }
      expect(err).to.be.instanceOf(RuntimeError);
      const msg = (err as Error).message;
      expect(msg).to.match(/cannot create an ORT session on 'cuda'/);
      expect(msg).to.match(/CUDA execution provider/);
      expect(msg).to.include('ONNXRUNTIME_NODE_INSTALL=cuda12');
      expect(msg).to.match(/npm rebuild onnxruntime-node/);
      expect(msg).to.match(/--ep cpu/);
      expect(msg, 'the name of the graph').to.include('cuda probe');
      expect(msg.split('\n')).to.have.length(1);
    });

    it('an unknown execution provider is rejected by name', async () => {
      let err: unknown;
      try {
        await createBackend('tpu' as ExecutionProvider);
      } catch (e) {
        err = e;
      }
      expect(err).to.be.instanceOf(RuntimeError);
      expect((err as Error).message).to.match(/unknown execution provider 'tpu'; use one of cpu, cuda, wasm, webgpu/);
    });
  });
});
