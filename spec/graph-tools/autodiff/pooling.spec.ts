// Pooling backward rules. MaxPool has float64 kernels in ORT's CPU EP: its cases are checked
// against central finite differences of the float64 loss (gradcheck). AveragePool,
// GlobalAveragePool and GlobalMaxPool are float32-only there: kfqn's float32 gradients are
// compared with a plain-TypeScript float64 reference (spec/helpers/pool-reference.ts), which is
// itself checked against ORT's forward and against finite differences of its own forward.
// Every model is a trainable Gemm whose output is reshaped to [N, C, ...spatial] before the pool.
import { expect } from 'chai';
import { buildTrainingGraph, encodeModel, GraphError, prepareGraph } from '../../../graph-tools/index.js';
import { createBackend, type Backend } from '../../../lib/runtime/index.js';
import { computeGradients } from '../../../lib/train/gradients.js';
import { explain, gradCheck, inferValues, randomTarget } from '../../helpers/gradcheck.js';
import { A, ModelBuilder, Rng, tensor } from '../../helpers/models.js';
import {
  averagePool, averagePoolBackward, finiteDifferences, globalParams, maxPool, maxPoolBackward, mseSum, padZeros, padZerosBackward,
  type PoolParams,
} from '../../helpers/pool-reference.js';
import { relError } from '../../helpers/train.js';

const N = 2;
const F = 3;

function poolAttrs(p: PoolParams, average: boolean) {
  const a = [A.ints('kernel_shape', p.kernel)];
  if (p.strides) a.push(A.ints('strides', p.strides));
  if (p.pads) a.push(A.ints('pads', p.pads));
  if (p.dilations) a.push(A.ints('dilations', p.dilations));
  if (p.ceilMode) a.push(A.int('ceil_mode', 1));
  if (p.autoPad) a.push(A.string('auto_pad', p.autoPad));
  if (average) a.push(A.int('count_include_pad', p.countIncludePad ? 1 : 0));
  return a;
}

/** x [N, F] → Gemm → Reshape to [N, C, ...spatial]; returns the layer output and the reshaped value. */
function layer(b: ModelBuilder, channels: number, spatial: number[], zero = false): { h: string; x4: string } {
  const size = channels * spatial.reduce((a, d) => a * d, 1);
  const x = b.input('x', ['N', F], [N, F]);
  const h = zero ? b.gemm(x, F, size, { scale: 0, bias: 'none' }) : b.gemm(x, F, size);
  return { h, x4: b.node('Reshape', [h, b.int64('shape', [0, channels, ...spatial])]) };
}

// ---- MaxPool: finite differences in float64 --------------------------------------------------

interface FdCase { name: string; channels: number; spatial: number[]; body: (b: ModelBuilder, x4: string) => string; opset?: number }
const fdCases: FdCase[] = [];
const maxPoolCase = (name: string, spatial: number[], p: PoolParams, opset?: number) =>
  fdCases.push({ name, channels: 2, spatial, opset, body: (b, x4) => b.node('MaxPool', [x4], poolAttrs(p, false)) });

maxPoolCase('2-D 2×2 stride 2 (non-overlapping)', [4, 4], { kernel: [2, 2], strides: [2, 2] });
maxPoolCase('2-D 3×3 stride 2 pads 1 (overlapping, ResNet stem)', [5, 5], { kernel: [3, 3], strides: [2, 2], pads: [1, 1, 1, 1] });
maxPoolCase('2-D 3×3 stride 1 (heavily overlapping)', [4, 5], { kernel: [3, 3] });
maxPoolCase('2-D 2×3 stride [1,2], asymmetric pads [1,0,0,1]', [4, 5], { kernel: [2, 3], strides: [1, 2], pads: [1, 0, 0, 1] });
maxPoolCase('2-D 2×2 stride 2 ceil_mode on 5×5', [5, 5], { kernel: [2, 2], strides: [2, 2], ceilMode: true });
maxPoolCase('2-D 3×3 stride 2 pads 1 ceil_mode (last window dropped)', [5, 6], { kernel: [3, 3], strides: [2, 2], pads: [1, 1, 1, 1], ceilMode: true });
maxPoolCase('2-D 2×2 dilation 2 stride 1', [5, 5], { kernel: [2, 2], dilations: [2, 2] });
maxPoolCase('2-D 3×2 dilation [2,1] stride [2,1] pads 1, ceil_mode', [6, 4], { kernel: [3, 2], dilations: [2, 1], strides: [2, 1], pads: [1, 1, 1, 1], ceilMode: true });
maxPoolCase('2-D 2×2 stride 3 (gaps between windows)', [6, 5], { kernel: [2, 2], strides: [3, 3] });
maxPoolCase('2-D 2×2 stride 2 floor mode on 5×5 (last row/column unused)', [5, 5], { kernel: [2, 2], strides: [2, 2] });
maxPoolCase('2-D auto_pad SAME_UPPER 3×3 stride 2', [5, 4], { kernel: [3, 3], strides: [2, 2], autoPad: 'SAME_UPPER' });
maxPoolCase('2-D auto_pad SAME_LOWER 2×2 stride 1', [4, 4], { kernel: [2, 2], autoPad: 'SAME_LOWER' });
maxPoolCase('2-D auto_pad VALID 3×3 stride 2', [5, 6], { kernel: [3, 3], strides: [2, 2], autoPad: 'VALID' });
maxPoolCase('1-D kernel 3 stride 2 pads 1', [9], { kernel: [3], strides: [2], pads: [1, 1] });
maxPoolCase('1-D kernel 2 stride 2', [8], { kernel: [2], strides: [2] });
maxPoolCase('1-D kernel 3 dilation 2 ceil_mode', [10], { kernel: [3], dilations: [2], strides: [2], ceilMode: true });
maxPoolCase('2-D 2×2 stride 2, opset 11', [4, 4], { kernel: [2, 2], strides: [2, 2] }, 11);
maxPoolCase('2-D 3×3 stride 2 pads 1, opset 9 (attribute Slice and Pad)', [5, 5], { kernel: [3, 3], strides: [2, 2], pads: [1, 1, 1, 1] }, 9);
fdCases.push({
  name: 'MaxPool with its Indices output used by nothing',
  channels: 2, spatial: [4, 4],
  body: (b, x4) => b.node('MaxPool', [x4], poolAttrs({ kernel: [2, 2], strides: [2, 2] }, false), [b.fresh('mp'), b.fresh('idx')]),
});
fdCases.push({
  name: 'MaxPool → Flatten → Gemm (the pool inside the network)',
  channels: 2, spatial: [4, 4],
  body: (b, x4) => b.gemm(b.node('Flatten', [b.node('MaxPool', [x4], poolAttrs({ kernel: [3, 3], strides: [1, 1], pads: [1, 1, 1, 1] }, false))]), 32, 3),
});
fdCases.push({
  name: 'MaxPool → MaxPool (stacked, overlapping then not)',
  channels: 2, spatial: [6, 6],
  body: (b, x4) => b.node('MaxPool', [b.node('MaxPool', [x4], poolAttrs({ kernel: [3, 3], strides: [1, 1] }, false))], poolAttrs({ kernel: [2, 2], strides: [2, 2] }, false)),
});

// ---- reference cases (float32 kfqn vs float64 TypeScript) ---------------------------------------

interface Pooled { y: Float64Array; dims: number[]; back: (dy: Float64Array) => Float64Array }
type Ref = (x: Float64Array, dims: number[]) => Pooled;
interface RefCase { name: string; channels: number; spatial: number[]; body: (b: ModelBuilder, x4: string) => string; ref: Ref; zero?: boolean; opset?: number }

const maxRef = (p: PoolParams): Ref => (x, dims) => {
  const r = maxPool(x, dims, p);
  return { y: r.y, dims: r.dims, back: (dy) => maxPoolBackward(dy, r.argmax, x.length) };
};
const avgRef = (p: PoolParams): Ref => (x, dims) => {
  const r = averagePool(x, dims, p);
  return { y: r.y, dims: r.dims, back: (dy) => averagePoolBackward(dy, dims, p) };
};
const globalMaxRef: Ref = (x, dims) => maxRef(globalParams(dims))(x, dims);
const globalAvgRef: Ref = (x, dims) => avgRef(globalParams(dims))(x, dims);
const padRef = (begins: number[], ends: number[], then: Ref): Ref => (x, dims) => {
  const p = padZeros(x, dims, begins, ends);
  const r = then(p.y, p.dims);
  return { y: r.y, dims: r.dims, back: (dy) => padZerosBackward(r.back(dy), dims, begins, ends) };
};

const refCases: RefCase[] = [];
const avgCase = (name: string, spatial: number[], p: PoolParams, opset?: number) =>
  refCases.push({ name, channels: 2, spatial, ref: avgRef(p), body: (b, x4) => b.node('AveragePool', [x4], poolAttrs(p, true)) });

for (const cip of [false, true]) {
  const c = `count_include_pad=${+cip}`;
  avgCase(`AveragePool 2-D 2×2 stride 2, ${c}`, [4, 4], { kernel: [2, 2], strides: [2, 2], countIncludePad: cip });
  avgCase(`AveragePool 2-D 3×3 stride 2 pads 1, ${c}`, [5, 5], { kernel: [3, 3], strides: [2, 2], pads: [1, 1, 1, 1], countIncludePad: cip });
  avgCase(`AveragePool 2-D 3×3 stride 1 pads [1,0,0,1], ${c}`, [4, 5], { kernel: [3, 3], pads: [1, 0, 0, 1], countIncludePad: cip });
  avgCase(`AveragePool 2-D 2×2 stride 2 ceil_mode on 5×5, ${c}`, [5, 5], { kernel: [2, 2], strides: [2, 2], ceilMode: true, countIncludePad: cip });
  avgCase(`AveragePool 2-D 3×3 stride 2 pads 1 ceil_mode on 6×5, ${c}`, [6, 5], { kernel: [3, 3], strides: [2, 2], pads: [1, 1, 1, 1], ceilMode: true, countIncludePad: cip });
  avgCase(`AveragePool 2-D auto_pad SAME_UPPER 3×3 stride 2, ${c}`, [5, 4], { kernel: [3, 3], strides: [2, 2], autoPad: 'SAME_UPPER', countIncludePad: cip });
  avgCase(`AveragePool 1-D kernel 3 stride 2 pads 1 ceil_mode, ${c}`, [8], { kernel: [3], strides: [2], pads: [1, 1], ceilMode: true, countIncludePad: cip });
}
avgCase('AveragePool 2-D 2×2 stride 3 (gaps)', [7, 5], { kernel: [2, 2], strides: [3, 3] });
avgCase('AveragePool 1-D kernel 2 stride 2', [6], { kernel: [2], strides: [2] });
refCases.push({
  name: 'AveragePool 2-D 3×3 dilation 2 pads 2, count_include_pad=1, opset 19',
  channels: 2, spatial: [6, 6], opset: 19,
  ref: avgRef({ kernel: [3, 3], dilations: [2, 2], pads: [2, 2, 2, 2], countIncludePad: true }),
  body: (b, x4) => b.node('AveragePool', [x4], poolAttrs({ kernel: [3, 3], dilations: [2, 2], pads: [2, 2, 2, 2], countIncludePad: true }, true)),
});
refCases.push({ name: 'GlobalAveragePool 2-D', channels: 3, spatial: [3, 4], ref: globalAvgRef, body: (b, x4) => b.node('GlobalAveragePool', [x4]) });
refCases.push({ name: 'GlobalAveragePool 1-D', channels: 2, spatial: [5], ref: globalAvgRef, body: (b, x4) => b.node('GlobalAveragePool', [x4]) });
refCases.push({ name: 'GlobalMaxPool 2-D', channels: 3, spatial: [3, 4], ref: globalMaxRef, body: (b, x4) => b.node('GlobalMaxPool', [x4]) });
refCases.push({ name: 'GlobalMaxPool 1-D', channels: 2, spatial: [5], ref: globalMaxRef, body: (b, x4) => b.node('GlobalMaxPool', [x4]) });
// PyTorch's AvgPool2d export: an explicit Pad (all zero when padding=0), then AveragePool without pads.
const padAvg = (pads: number[], p: PoolParams) => (b: ModelBuilder, x4: string) =>
  b.node('AveragePool', [b.node('Pad', [x4, b.int64('pads', pads)])], poolAttrs(p, true));
refCases.push({
  name: 'all-zero Pad → AveragePool 2×2 stride 2 (PyTorch export)', channels: 2, spatial: [4, 4],
  ref: padRef([0, 0, 0, 0], [0, 0, 0, 0], avgRef({ kernel: [2, 2], strides: [2, 2] })),
  body: padAvg([0, 0, 0, 0, 0, 0, 0, 0], { kernel: [2, 2], strides: [2, 2] }),
});
refCases.push({
  name: 'Pad [1,1] → AveragePool 3×3 stride 2 (padding counted, PyTorch export)', channels: 2, spatial: [5, 5],
  ref: padRef([0, 0, 1, 1], [0, 0, 1, 1], avgRef({ kernel: [3, 3], strides: [2, 2] })),
  body: padAvg([0, 0, 1, 1, 0, 0, 1, 1], { kernel: [3, 3], strides: [2, 2] }),
});
refCases.push({
  name: 'Pad with negative pads (crop) → AveragePool', channels: 2, spatial: [5, 6],
  ref: padRef([0, 0, -1, 2], [0, 0, 0, -2], avgRef({ kernel: [2, 2], strides: [2, 2] })),
  body: padAvg([0, 0, -1, 2, 0, 0, 0, -2], { kernel: [2, 2], strides: [2, 2] }),
});
// Ties: a zero layer makes every window's elements equal; the first one takes dY (ORT, PyTorch).
refCases.push({
  name: 'MaxPool on an all-zero layer: ties go to the first element of each window', channels: 2, spatial: [4, 4], zero: true,
  ref: maxRef({ kernel: [3, 3], strides: [1, 1], pads: [1, 1, 1, 1] }),
  body: (b, x4) => b.node('MaxPool', [x4], poolAttrs({ kernel: [3, 3], strides: [1, 1], pads: [1, 1, 1, 1] }, false)),
});
refCases.push({
  name: 'GlobalMaxPool on an all-zero layer: ties go to the first element', channels: 2, spatial: [3, 3], zero: true,
  ref: globalMaxRef, body: (b, x4) => b.node('GlobalMaxPool', [x4]),
});
refCases.push({
  name: 'MaxPool 3×3 stride 2 pads 1 ceil_mode (also against the reference)', channels: 2, spatial: [6, 5],
  ref: maxRef({ kernel: [3, 3], strides: [2, 2], pads: [1, 1, 1, 1], ceilMode: true }),
  body: (b, x4) => b.node('MaxPool', [x4], poolAttrs({ kernel: [3, 3], strides: [2, 2], pads: [1, 1, 1, 1], ceilMode: true }, false)),
});

/** All the reference pools, for the self-check by finite differences. */
const selfCheck: { name: string; dims: number[]; ref: Ref }[] = [
  { name: 'MaxPool 3×3/2 pads 1 ceil', dims: [1, 2, 6, 5], ref: maxRef({ kernel: [3, 3], strides: [2, 2], pads: [1, 1, 1, 1], ceilMode: true }) },
  { name: 'MaxPool 2×2 dilation 2', dims: [2, 1, 5, 5], ref: maxRef({ kernel: [2, 2], dilations: [2, 2] }) },
  { name: 'MaxPool 1-D SAME_LOWER', dims: [1, 2, 7], ref: maxRef({ kernel: [2], strides: [2], autoPad: 'SAME_LOWER' }) },
  ...[false, true].flatMap((cip) => [
    { name: `AveragePool 3×3/2 pads 1 ceil cip=${+cip}`, dims: [1, 2, 6, 5], ref: avgRef({ kernel: [3, 3], strides: [2, 2], pads: [1, 1, 1, 1], ceilMode: true, countIncludePad: cip }) },
    { name: `AveragePool 3×3 dil 2 pads 2 cip=${+cip}`, dims: [1, 1, 6, 6], ref: avgRef({ kernel: [3, 3], dilations: [2, 2], pads: [2, 2, 2, 2], countIncludePad: cip }) },
    { name: `AveragePool 1-D 3/2 pads 1 ceil cip=${+cip}`, dims: [2, 1, 8], ref: avgRef({ kernel: [3], strides: [2], pads: [1, 1], ceilMode: true, countIncludePad: cip }) },
  ]),
  { name: 'GlobalMaxPool', dims: [2, 2, 3, 3], ref: globalMaxRef },
  { name: 'GlobalAveragePool', dims: [2, 2, 3, 3], ref: globalAvgRef },
  { name: 'Pad (negative and positive) → AveragePool', dims: [1, 2, 5, 6], ref: padRef([0, 0, -1, 2], [0, 0, 0, -2], avgRef({ kernel: [2, 2], strides: [2, 2] })) },
];

describe('autodiff: pooling backward rules', function () {
  let backend: Backend;
  before(async () => { backend = await createBackend('cpu'); });

  describe('MaxPool against finite differences (float64)', () => {
    fdCases.forEach((c, i) => {
      it(c.name, async () => {
        const b = new ModelBuilder(2000 + i, c.opset ?? 13);
        const { x4 } = layer(b, c.channels, c.spatial);
        const r = await gradCheck(backend, { model: b.model(c.body(b, x4)), inputs: b.data });
        expect(r.result.dtype, 'evaluated in float64').to.equal('float64');
        expect(r.maxAbsGrad, 'a non-trivial gradient').to.be.above(1e-3);
        expect(Math.abs(r.loss - r.loss32), 'float32 vs float64 loss').to.be.below(1e-4 * Math.max(1, Math.abs(r.loss)));
        for (const q of r.params) {
          const g32 = r.result32.gradients.get(q.param)!;
          expect(relError(g32, q.grad), `float32 gradient of ${q.param}`).to.be.below(1e-4);
          expect(q.relError, `${q.param}: ${explain(r)}`).to.be.below(1e-6);
        }
      });
    });
  });

  describe('the float64 TypeScript reference', () => {
    for (const c of selfCheck) {
      it(`${c.name}: backward = finite differences of forward`, () => {
        const rng = new Rng(11);
        const n = c.dims.reduce((a, d) => a * d, 1);
        const x = Float64Array.from(rng.array(n));
        const base = c.ref(x, c.dims);
        const w = Float64Array.from(rng.array(base.y.length));
        const f = (v: Float64Array) => c.ref(v, c.dims).y.reduce((s, y, i) => s + y * w[i], 0);
        const fd = finiteDifferences(f, x);
        expect(relError(base.back(w), fd)).to.be.below(1e-8);
      });
    }
  });

  describe('AveragePool, global pools, Pad → pool: kfqn float32 vs the float64 reference', () => {
    refCases.forEach((c, i) => {
      it(c.name, async () => {
        const b = new ModelBuilder(3000 + i, c.opset ?? 13);
        const { h, x4 } = layer(b, c.channels, c.spatial, c.zero);
        const model = b.model(c.body(b, x4));
        const values = await inferValues(backend, model, b.data, [h]);
        const out = values.get(model.graph!.output![0].name!)!;
        const hv = Float64Array.from(values.get(h)!.data as Float32Array);
        const ref = c.ref(hv, [N, c.channels, ...c.spatial]);
        // The reference computes what ORT computes.
        expect(ref.dims, 'output shape').to.deep.equal(out.dims);
        expect(relError(Float64Array.from(out.data as Float32Array), ref.y), 'forward vs ORT').to.be.below(1e-6);

        const target = randomTarget({ kind: 'mse', reduction: 'sum' }, out.dims, new Rng(5));
        const { dy } = mseSum(ref.y, target.data as Float32Array);
        const dh = ref.back(dy);
        const got = await computeGradients(backend, model, { kind: 'mse', reduction: 'sum', inputs: b.data, target, dtype: 'float32' });
        expect(relError(got.preactivationGradients.get(h)!, dh), 'dL/dh').to.be.below(1e-4);
        // dW = xᵀ·dh and db = Σ dh over the batch, for the layer's [F, out] weight.
        const x = b.data.x.data as Float32Array;
        const size = dh.length / N;
        const dW = new Float64Array(F * size);
        const db = new Float64Array(size);
        for (let n = 0; n < N; n++) for (let j = 0; j < size; j++) {
          db[j] += dh[n * size + j];
          for (let k = 0; k < F; k++) dW[k * size + j] += x[n * F + k] * dh[n * size + j];
        }
        const [w, bias] = [...got.gradients.keys()];
        expect(relError(got.gradients.get(w)!, dW), 'dW').to.be.below(1e-4);
        if (!c.zero) expect(relError(got.gradients.get(bias)!, db), 'db').to.be.below(1e-4);
      });
    });
  });

  describe('the same training graphs on WASM and WebGPU', () => {
    // Every op of these backward passes has a WebGPU kernel (checked by ORT's node placement when
    // this was written); here the gradients must agree with CPU's.
    const models: [string, (b: ModelBuilder) => string][] = [
      ['MaxPool 3×3 stride 2 pads 1', (b) => b.node('MaxPool', [layer(b, 2, [5, 5]).x4], poolAttrs({ kernel: [3, 3], strides: [2, 2], pads: [1, 1, 1, 1] }, false))],
      ['MaxPool 1-D kernel 2 stride 3 (gaps)', (b) => b.node('MaxPool', [layer(b, 2, [8]).x4], poolAttrs({ kernel: [2], strides: [3] }, false))],
      ['AveragePool 3×3 stride 2 pads 1 ceil_mode count_include_pad=1', (b) =>
        b.node('AveragePool', [layer(b, 2, [6, 5]).x4], poolAttrs({ kernel: [3, 3], strides: [2, 2], pads: [1, 1, 1, 1], ceilMode: true, countIncludePad: true }, true))],
      ['GlobalMaxPool', (b) => b.node('GlobalMaxPool', [layer(b, 3, [3, 4]).x4])],
      ['GlobalAveragePool', (b) => b.node('GlobalAveragePool', [layer(b, 3, [3, 4]).x4])],
      ['Pad (crop and grow) → AveragePool', (b) => padAvg([0, 0, -1, 2, 0, 0, 0, -2], { kernel: [2, 2], strides: [2, 2] })(b, layer(b, 2, [5, 6]).x4)],
      ['Concat of two layers along channels', (b) => {
        const x = b.input('x', ['N', F], [N, F]);
        const l = (c: number) => b.node('Reshape', [b.gemm(x, F, c * 9), b.int64('shape', [0, c, 3, 3])]);
        return b.node('Concat', [l(2), l(1)], [A.int('axis', 1)]);
      }],
    ];
    let wasm: Backend;
    let webgpu: Backend | undefined;
    before(async () => {
      wasm = await createBackend('wasm');
      try {
        // Without an adapter (no Vulkan driver in Node) no WebGPU session can be created.
        const b = new ModelBuilder(1);
        const probe = await (await createBackend('webgpu')).createSession(encodeModel(b.model(b.node('Relu', [b.input('x', [1], [1])]))), { name: 'webgpu probe' });
        await probe.release();
        webgpu = await createBackend('webgpu');
      } catch { webgpu = undefined; }
    });
    for (const [name, body] of models) {
      it(name, async function () {
        const b = new ModelBuilder(6000);
        const model = b.model(body(b));
        const out = [...(await inferValues(backend, model, b.data)).values()][0];
        const opts = { kind: 'mse' as const, reduction: 'sum' as const, inputs: b.data, target: randomTarget({ kind: 'mse', reduction: 'sum' }, out.dims, new Rng(2)), dtype: 'float32' as const };
        const onCpu = await computeGradients(backend, model, opts);
        const others: [string, Backend | undefined][] = [['wasm', wasm], ['webgpu', webgpu]];
        for (const [ep, be] of others) {
          if (!be) { if (this.test) this.test.title += ' (WebGPU part skipped: no adapter; set VK_ICD_FILENAMES)'; continue; }
          const r = await computeGradients(be, model, opts);
          for (const [p, g] of onCpu.gradients) expect(relError(r.gradients.get(p)!, g), `${ep}: d/d ${p}`).to.be.below(1e-4);
        }
      });
    }
  });

  describe('shape rules and errors', () => {
    it('MaxPool/AveragePool output shapes match ORT over strides, pads, dilations, ceil_mode and auto_pad', async () => {
      const configs: PoolParams[] = [];
      for (const k of [2, 3]) for (const s of [1, 2, 3]) for (const ceil of [false, true]) for (const pad of [0, 1]) {
        configs.push({ kernel: [k, k], strides: [s, s], pads: [pad, 0, pad, 1], ceilMode: ceil, dilations: s === 3 ? [2, 1] : undefined });
      }
      for (const autoPad of ['SAME_UPPER', 'SAME_LOWER', 'VALID'] as const) configs.push({ kernel: [3, 2], strides: [2, 1], autoPad });
      const b = new ModelBuilder(1, 19);
      const x = b.input('x', [1, 1, 7, 6], [1, 1, 7, 6]);
      const outs = configs.flatMap((p) => [b.node('MaxPool', [x], poolAttrs(p, false)), b.node('AveragePool', [x], poolAttrs(p, true))]);
      const model = b.model(outs);
      const { graph } = prepareGraph(model);
      const session = await backend.createSession(encodeModel(model), { name: 'pool shapes' });
      const got = await session.run({ x: backend.tensor('float32', b.data.x.data as Float32Array, [1, 1, 7, 6]) });
      await session.release();
      for (const o of outs) expect(graph.types.get(o)!.shape, o).to.deep.equal([...got[o].dims]);
    });

    it('Pad in reflect mode on the gradient path: a GraphError naming the node and mode', () => {
      const b = new ModelBuilder(1);
      const { x4 } = layer(b, 1, [4, 4]);
      const y = b.node('Pad', [x4, b.int64('pads', [0, 0, 1, 1, 0, 0, 1, 1])], [A.string('mode', 'reflect')]);
      expect(() => buildTrainingGraph(b.model(y), { kind: 'mse', reduction: 'sum' })).to.throw(GraphError, /Pad.*mode 'reflect'/);
    });

    it('a pool over dynamic spatial sizes: a GraphError saying they must be static', () => {
      const b = new ModelBuilder(1);
      const x = b.input('x', ['N', 2, 'H', 'W'], [1, 2, 4, 4]);
      const h = b.matmul(x, 4, 4);
      const y = b.node('MaxPool', [h], poolAttrs({ kernel: [2, 2] }, false));
      expect(() => buildTrainingGraph(b.model(y), { kind: 'mse', reduction: 'sum' })).to.throw(GraphError, /MaxPool.*must be static/);
    });
  });
});
