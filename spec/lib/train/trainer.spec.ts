// The Trainer end to end: the exported model, Identity-aliased parameters, skipped non-finite
// steps, an autoencoder that learns, and the errors a mismatched dataset or target gives.
import { expect } from 'chai';
import { InferenceSession, Tensor as OrtTensor } from 'onnxruntime-node';
import { decodeModel, encodeModel, tensorFromProto, type onnx, type TensorData } from '../../../graph-tools/index.js';
import { batches, fromArrays, type Batch, type Dataset } from '../../../lib/data/index.js';
import { InputError } from '../../../lib/io/files.js';
import { adam, rmsprop, sgd } from '../../../lib/optim/index.js';
import { createBackend } from '../../../lib/runtime/index.js';
import type { Backend } from '../../../lib/runtime/backend.js';
import { computeGradients } from '../../../lib/train/gradients.js';
import { Trainer, type TrainerOptions } from '../../../lib/train/trainer.js';
import { A, buildModel, Rng } from '../../helpers/models.js';
import { datasetTensors, fixtureModel, maxAbsDiff, randomDataset } from '../../helpers/train.js';

/** Regression tests for bugs found while writing these specs (once pending, now fixed). */
const known = it;

const CE = { kind: 'cross-entropy', reduction: 'mean', target: 'label' } as const;

/** The one batch of a dataset, in file order. */
function wholeBatch(ds: Dataset): Batch {
  return [...batches(ds, { batchSize: ds.size, shuffle: false, seed: 0, epoch: 0 })][0];
}

/** Runs ONNX bytes in a plain onnxruntime-node session (no kfqn wrapper) on x of shape [n, features]. */
async function runModel(bytes: Uint8Array, x: Float32Array, features: number): Promise<Float32Array> {
  const session = await InferenceSession.create(bytes);
  try {
    const out = await session.run({ [session.inputNames[0]]: new OrtTensor('float32', x, [x.length / features, features]) });
    return out[session.outputNames[0]].data as Float32Array;
  } finally {
    await session.release();
  }
}

/** Mean softmax cross-entropy of logits [n, classes] against labels, in float64. */
function crossEntropy(logits: ArrayLike<number>, labels: BigInt64Array, classes: number): number {
  let total = 0;
  for (let i = 0; i < labels.length; i++) {
    const row = Array.from({ length: classes }, (_, c) => logits[i * classes + c]);
    const max = Math.max(...row);
    const lse = max + Math.log(row.reduce((s, v) => s + Math.exp(v - max), 0));
    total += lse - row[Number(labels[i])];
  }
  return total / labels.length;
}

function nodeSummary(n: onnx.INodeProto): string {
  return JSON.stringify({ name: n.name, op: n.opType, domain: n.domain ?? '', input: n.input, output: n.output, attribute: n.attribute });
}

function sameValues(a: TensorData, b: TensorData, what: string): void {
  expect(a.dtype, `${what} dtype`).to.equal(b.dtype);
  expect(a.dims, `${what} dims`).to.deep.equal(b.dims);
  expect(Array.from(a.data as Float32Array), `${what} values`).to.deep.equal(Array.from(b.data as Float32Array));
}

describe('Trainer', () => {
  let backend: Backend;
  const trainers: Trainer[] = [];
  const create = async (model: onnx.ModelProto, options: TrainerOptions): Promise<Trainer> => {
    const t = await Trainer.create(backend, model, options);
    trainers.push(t);
    return t;
  };

  before(async () => { backend = await createBackend('cpu'); });
  after(async () => { for (const t of trainers.splice(0)) await t.dispose(); });

  describe('warmStart', () => {
    it('averages the full batches in file order, as the authors\' loop (a last partial batch is left out unless it is the only one)', async () => {
      const model = fixtureModel('gemm_relu_ce');
      const data = randomDataset(23, 20, 6, 4);
      const firstFull = fromArrays('the first 16', data.inputs.subarray(0, 16 * 6), [6], data.labels!.subarray(0, 16), 4);
      const other = randomDataset(29, 16, 6, 4);
      const step = [...batches(data, { batchSize: 8, shuffle: false, seed: 0, epoch: 0 })][0];
      // RMSprop's v warm start (the mean of ĝ² over the batches) sets the size of its first steps.
      const losses = async (warm: Dataset, batchSize: number) => {
        const trainer = await create(model, { ...CE, optimizer: rmsprop({ lr: 0.01 }) });
        await trainer.warmStart(warm, batchSize);
        const out: number[] = [];
        for (let i = 0; i < 3; i++) out.push((await trainer.trainStep(step)).loss);
        return out;
      };
      const reference = await losses(firstFull, 8);
      expect(await losses(data, 8), '20 samples in batches of 8: the 4 left over are not used').to.deep.equal(reference);
      expect(await losses(other, 8), 'the warm start matters here').to.not.deep.equal(reference);
      // Fewer samples than a batch: the one partial batch is the warm start.
      const few = fromArrays('the first 5', data.inputs.subarray(0, 5 * 6), [6], data.labels!.subarray(0, 5), 4);
      expect(await losses(few, 8)).to.deep.equal(await losses(few, 5));
    });
  });

  describe('exportModel', () => {
    it("returns the user's model with the trained weights, which runs in onnxruntime-node", async () => {
      const model = fixtureModel('gemm_relu_ce');
      const before = encodeModel(model);
      const data = randomDataset(21, 32, 6, 4);
      const trainer = await create(model, { ...CE, optimizer: sgd({ lr: 0.1, momentum: 0.9 }) });
      const fit = await trainer.fit(data, { batchSize: 8, epochs: 3, shuffle: true, seed: 5 });
      expect(fit).to.include({ steps: 12, epochs: 3, skippedSteps: 0 });

      const bytes = await trainer.exportModel();
      const exported = decodeModel(bytes);
      const g0 = model.graph!;
      const g1 = exported.graph!;
      // The same graph: nodes (names, ops, wiring, attributes), inputs and outputs, opsets.
      expect(g1.node!.map(nodeSummary)).to.deep.equal(g0.node!.map(nodeSummary));
      expect(g1.input!.map((v) => v.name)).to.deep.equal(g0.input!.map((v) => v.name));
      expect(g1.output!.map((v) => v.name)).to.deep.equal(g0.output!.map((v) => v.name));
      expect(JSON.stringify(g1.input)).to.equal(JSON.stringify(g0.input));
      expect(JSON.stringify(g1.output)).to.equal(JSON.stringify(g0.output));
      expect(JSON.stringify(exported.opsetImport)).to.equal(JSON.stringify(model.opsetImport));
      // Its initializers are exactly the trainer's parameters, and every one was trained.
      const params = await trainer.parameters();
      expect(g1.initializer!.map((t) => t.name).sort()).to.deep.equal([...params.keys()].sort());
      for (const init of g1.initializer!) {
        const value = tensorFromProto(init);
        sameValues(value, params.get(init.name!)!, `initializer ${init.name}`);
        const original = tensorFromProto(g0.initializer!.find((t) => t.name === init.name)!);
        expect(maxAbsDiff(value.data as Float32Array, original.data as Float32Array), `${init.name} changed`).to.be.above(1e-4);
      }
      // Training and export leave the user's model alone.
      expect(Buffer.from(encodeModel(model)).equals(Buffer.from(before))).to.equal(true);

      // It runs in plain onnxruntime-node, differently from the original, and fits the data better.
      const trained = await runModel(bytes, data.inputs, 6);
      const original = await runModel(before, data.inputs, 6);
      expect(trained.length).to.equal(data.size * 4);
      expect(trained.every(Number.isFinite)).to.equal(true);
      expect(maxAbsDiff(trained, original)).to.be.above(1e-2);
      const lossTrained = crossEntropy(trained, data.labels!, 4);
      expect(lossTrained).to.be.below(crossEntropy(original, data.labels!, 4));
      // The exported weights are the ones the trainer holds: its next loss is the exported model's.
      const { loss } = await trainer.trainStep(wholeBatch(data));
      expect(Math.abs(loss - lossTrained) / lossTrained).to.be.below(1e-5);
    });

    it('unties an Identity-aliased bias into its own initializer and drops the Identity', async () => {
      const model = fixtureModel('aliased_bias');
      const g0 = model.graph!;
      const identity = g0.node!.find((n) => n.opType === 'Identity')!;
      expect(identity.input).to.deep.equal(['0.bias']);
      expect(identity.output).to.deep.equal(['2.bias']);
      expect(g0.initializer!.map((t) => t.name)).not.to.include('2.bias');

      const data = randomDataset(22, 16, 5, 3);
      const trainer = await create(model, { ...CE, optimizer: adam({ lr: 0.01 }) });
      expect(trainer.parameterNames.sort()).to.deep.equal(['0.bias', '0.weight', '2.bias', '2.weight', '4.bias', '4.weight']);
      await trainer.fit(data, { batchSize: 8, epochs: 2, shuffle: false });

      const bytes = await trainer.exportModel();
      const g1 = decodeModel(bytes).graph!;
      expect(g1.node!.filter((n) => n.opType === 'Identity')).to.deep.equal([]);
      expect(g1.node!.map(nodeSummary)).to.deep.equal(g0.node!.filter((n) => n !== identity).map(nodeSummary));
      const params = await trainer.parameters();
      expect(g1.initializer!.map((t) => t.name).sort()).to.deep.equal([...params.keys()].sort());
      for (const init of g1.initializer!) sameValues(tensorFromProto(init), params.get(init.name!)!, `initializer ${init.name}`);
      // Untied: the two biases started equal and were trained apart.
      const b0 = tensorFromProto(g1.initializer!.find((t) => t.name === '0.bias')!);
      const b2 = tensorFromProto(g1.initializer!.find((t) => t.name === '2.bias')!);
      expect(b2.dims).to.deep.equal(b0.dims);
      expect(maxAbsDiff(b0.data as Float32Array, b2.data as Float32Array)).to.be.above(1e-4);

      const trained = await runModel(bytes, data.inputs, 5);
      const original = await runModel(encodeModel(model), data.inputs, 5);
      expect(trained.length).to.equal(data.size * 3);
      expect(trained.every(Number.isFinite)).to.equal(true);
      expect(maxAbsDiff(trained, original)).to.be.above(1e-3);
    });
  });

  describe('non-finite losses', () => {
    const data = randomDataset(23, 8, 6, 4);
    const poisoned = (): Batch => {
      const b = wholeBatch(data);
      b.inputs[13] = NaN;
      return b;
    };

    for (const [name, optimizer] of [['SGD momentum', () => sgd({ lr: 0.1, momentum: 0.9 })], ['Adam', () => adam({ lr: 0.01 })]] as const) {
      it(`${name}: a batch with a NaN input is skipped, leaving the parameters alone`, async () => {
        const trainer = await create(fixtureModel('gemm_relu_ce'), { ...CE, optimizer: optimizer() });
        await trainer.trainStep(wholeBatch(data));
        const before = await trainer.parameters();
        const r = await trainer.trainStep(poisoned());
        expect(r.skipped).to.equal(true);
        expect(Number.isNaN(r.loss)).to.equal(true);
        expect(trainer.skippedSteps).to.equal(1);
        const after = await trainer.parameters();
        for (const [p, v] of before) sameValues(after.get(p)!, v, p);
        // Training goes on from there, with finite values.
        const next = await trainer.trainStep(wholeBatch(data));
        expect(next.skipped).to.equal(false);
        expect(Number.isFinite(next.loss)).to.equal(true);
        for (const [p, v] of await trainer.parameters()) expect((v.data as Float32Array).every(Number.isFinite), p).to.equal(true);
        expect(trainer.skippedSteps).to.equal(1);
      });
    }

    it('fit counts skipped steps and leaves them out of the epoch mean', async () => {
      const x = data.inputs.slice();
      x[2 * 6 + 1] = NaN; // sample 2: in the first batch of 4
      const ds = fromArrays('one NaN sample', x, [6], data.labels!, 4);
      const trainer = await create(fixtureModel('gemm_relu_ce'), { ...CE, optimizer: sgd({ lr: 0.1 }) });
      const steps: { loss: number; skipped: boolean }[] = [];
      const epochs: { steps: number; meanLoss: number }[] = [];
      const r = await trainer.fit(ds, {
        batchSize: 4, epochs: 2, shuffle: false,
        onStep: (s) => { steps.push({ loss: s.loss, skipped: s.skipped }); },
        onEpoch: (e) => { epochs.push({ steps: e.steps, meanLoss: e.meanLoss }); },
      });
      expect(r.steps).to.equal(4);
      expect(r.skippedSteps).to.equal(2);
      expect(trainer.skippedSteps).to.equal(2);
      expect(steps.map((s) => s.skipped)).to.deep.equal([true, false, true, false]);
      expect(epochs.map((e) => e.steps)).to.deep.equal([1, 1]);
      expect(epochs[0].meanLoss).to.equal(steps[1].loss);
      expect(Number.isFinite(r.finalLoss)).to.equal(true);
    });

    // PyTorch (e.g. with GradScaler) skips optimizer.step() on a non-finite step, so the
    // optimizer's step count, which drives Adam's bias corrections and SGD's first-step
    // dampening, does not advance. The Trainer sets t before checking the loss.
    for (const [name, optimizer] of [['Adam', () => adam({ lr: 0.01 })], ['SGD dampening 0.5', () => sgd({ lr: 0.1, momentum: 0.9, dampening: 0.5 })]] as const) {
      known(`${name}: a skipped step does not advance the optimizer's step count`, async () => {
        const model = fixtureModel('gemm_relu_ce');
        const skipped = await create(model, { ...CE, optimizer: optimizer() });
        const fresh = await create(model, { ...CE, optimizer: optimizer() });
        expect((await skipped.trainStep(poisoned())).skipped).to.equal(true);
        await skipped.trainStep(wholeBatch(data));
        await fresh.trainStep(wholeBatch(data));
        const a = await skipped.parameters();
        for (const [p, v] of await fresh.parameters()) {
          expect(maxAbsDiff(a.get(p)!.data as Float32Array, v.data as Float32Array), p).to.be.below(1e-7);
        }
      });
    }
  });

  it('trains an autoencoder (target input, bce-with-logits per-sample-sum) to a lower loss', async () => {
    const model = fixtureModel('autoencoder_small');
    const rng = new Rng(24);
    // [0,1] data a 4-unit bottleneck can partly reconstruct: 4 random prototypes plus noise.
    const protos = Array.from({ length: 4 }, () => rng.array(16, 0, 1));
    const x = Array.from({ length: 64 * 16 }, (_, i) => Math.min(1, Math.max(0, protos[Math.floor(i / 16) % 4][i % 16] + 0.1 * rng.uniform())));
    const data = fromArrays('autoencoder data', x, [16]);
    const loss = { kind: 'bce-with-logits', reduction: 'per-sample-sum' } as const;
    const lossOf = async (m: onnx.ModelProto) => (await computeGradients(backend, m, { ...loss, inputs: { x: datasetTensors(data).x }, target: datasetTensors(data).x })).loss;
    // BCE against soft targets t is at least the targets' entropy: the part of the loss no model removes.
    const t = data.inputs;
    let floor = 0;
    for (const v of t) if (v > 0 && v < 1) floor -= v * Math.log(v) + (1 - v) * Math.log(1 - v);
    floor /= data.size;

    const trainer = await create(model, { ...loss, target: 'input', optimizer: adam({ lr: 0.03 }) });
    const epochs: number[] = [];
    const r = await trainer.fit(data, { batchSize: 16, epochs: 20, seed: 3, onEpoch: (e) => { epochs.push(e.meanLoss); } });
    expect(r).to.include({ steps: 80, epochs: 20, skippedSteps: 0 });
    expect(epochs.every(Number.isFinite)).to.equal(true);
    const initial = await lossOf(model);
    const final = await lossOf(decodeModel(await trainer.exportModel()));
    expect(epochs[epochs.length - 1], `epoch mean losses ${epochs.map((l) => l.toFixed(3))}`).to.be.below(epochs[0]);
    // At least half of the removable loss gone.
    expect(final - floor, `loss ${initial} → ${final}, floor ${floor}`).to.be.below(0.5 * (initial - floor));
  });

  describe('errors', () => {
    const rejects = async (p: Promise<unknown>): Promise<Error> => {
      try { await p; } catch (e) { return e as Error; }
      throw new Error('expected a rejection');
    };
    const fitOne = (trainer: Trainer, ds: Dataset) => trainer.fit(ds, { batchSize: 4, epochs: 1, shuffle: false });

    it('a dataset whose samples do not fit the model input: InputError naming the input and both sizes', async () => {
      const trainer = await create(fixtureModel('gemm_relu_ce'), { ...CE, optimizer: sgd() });
      const err = await rejects(fitOne(trainer, randomDataset(25, 8, 5, 4)));
      expect(err).to.be.instanceOf(InputError);
      expect(err.message).to.match(/'x'/).and.to.match(/\b6\b/).and.to.match(/\b5\b/);
      expect(trainer.step).to.equal(0);
      // Also with a multi-dimensional sample shape of the wrong size.
      const err2 = await rejects(fitOne(trainer, fromArrays('2x4', new Float32Array(8 * 8), [2, 4], new Array(8).fill(0), 4)));
      expect(err2).to.be.instanceOf(InputError);
      expect(err2.message).to.match(/'x'/).and.to.match(/\b6\b/).and.to.match(/\b8\b/);
    });

    it("target 'label' with an mse loss: InputError saying class labels do not fit mse", async () => {
      const trainer = await create(fixtureModel('gemm_relu_ce'), { kind: 'mse', reduction: 'mean', target: 'label', optimizer: sgd() });
      const err = await rejects(fitOne(trainer, randomDataset(26, 8, 6, 4)));
      expect(err).to.be.instanceOf(InputError);
      expect(err.message).to.match(/mse/).and.to.match(/label/);
      expect(trainer.step).to.equal(0);
    });

    it("target 'label' on a dataset without labels, and target 'input' with cross-entropy: InputErrors", async () => {
      const ce = await create(fixtureModel('gemm_relu_ce'), { ...CE, optimizer: sgd() });
      const unlabelled = await rejects(fitOne(ce, randomDataset(27, 8, 6)));
      expect(unlabelled).to.be.instanceOf(InputError);
      expect(unlabelled.message).to.match(/no labels/);
      const ceInput = await create(fixtureModel('gemm_relu_ce'), { ...CE, target: 'input', optimizer: sgd() });
      const err = await rejects(fitOne(ceInput, randomDataset(27, 8, 6, 4)));
      expect(err).to.be.instanceOf(InputError);
      expect(err.message).to.match(/cross-entropy/).and.to.match(/label/);
    });

    it("target 'input' whose size differs from the model output: InputError naming the output and both sizes", async () => {
      const trainer = await create(fixtureModel('gemm_relu_ce'), { kind: 'mse', reduction: 'mean', target: 'input', optimizer: sgd() });
      const err = await rejects(fitOne(trainer, randomDataset(28, 8, 6)));
      expect(err).to.be.instanceOf(InputError);
      expect(err.message).to.match(/'output'/).and.to.match(/\b4\b/).and.to.match(/\b6\b/);
    });
  });
});

describe('Trainer: a layer that does not reach the loss', () => {
  it('keeps its parameters and gets no optimizer state, like a PyTorch parameter without a gradient', async () => {
    const rng = new Rng(7);
    // x → Gemm(W1,b1) → loss output 'y'; x → Gemm(W2) → a second output 'side' the loss never sees.
    const model = buildModel({
      inputs: [{ name: 'x', shape: ['N', 4] }],
      initializers: [
        { name: 'W1', dims: [3, 4], values: rng.array(12) }, { name: 'b1', dims: [3], values: rng.array(3) },
        { name: 'W2', dims: [2, 4], values: rng.array(8) },
      ],
      nodes: [
        { op: 'Gemm', inputs: ['x', 'W1', 'b1'], outputs: ['y'], attrs: [A.int('transB', 1)] },
        { op: 'Gemm', inputs: ['x', 'W2'], outputs: ['side'], attrs: [A.int('transB', 1)] },
      ],
      output: ['y', 'side'],
    });
    const data = fromArrays('tiny', Float32Array.from(rng.array(32)), [4], BigInt64Array.from([0n, 1n, 2n, 0n, 1n, 2n, 0n, 1n]), 3);
    const trainer = await Trainer.create(await createBackend('cpu'), model, { ...CE, optimizer: adam({ lr: 0.1, weightDecay: 0.1 }) });
    const before = await trainer.parameters();
    await trainer.fit(data, { batchSize: 8, steps: 3, shuffle: false });
    const after = await trainer.parameters();
    await trainer.dispose();
    expect(maxAbsDiff(after.get('W2')!.data as Float32Array, before.get('W2')!.data as Float32Array)).to.equal(0);
    expect(maxAbsDiff(after.get('W1')!.data as Float32Array, before.get('W1')!.data as Float32Array)).to.be.greaterThan(0.01);
  });
});

describe('Trainer.evaluate', () => {
  it('gives the loss over the whole set and the argmax accuracy, against an ORT run of the exported model', async () => {
    const data = randomDataset(11, 23, 6, 4);
    const trainer = await Trainer.create(await createBackend('cpu'), fixtureModel('gemm_relu_ce'), { ...CE, optimizer: adam({ lr: 0.05 }) });
    await trainer.fit(data, { batchSize: 8, steps: 4, shuffle: false });
    // Batches of 5 over 23 samples: the weighting of the short last batch matters.
    const ev = await trainer.evaluate(data, 5);
    const logits = await runModel(await trainer.exportModel(), data.inputs, 6);
    await trainer.dispose();
    let hits = 0;
    for (let i = 0; i < data.size; i++) {
      const row = Array.from(logits.subarray(4 * i, 4 * i + 4));
      if (row.indexOf(Math.max(...row)) === Number(data.labels![i])) hits++;
    }
    expect(ev.samples).to.equal(23);
    expect(Math.abs(ev.loss - crossEntropy(logits, data.labels!, 4))).to.be.below(1e-5);
    expect(ev.accuracy).to.equal(hits / 23);
  });
});

describe('Trainer with --batchnorm train', () => {
  it('updates the running statistics once per step and writes them into the exported model', async () => {
    const rng = new Rng(9);
    const c = 2;
    // x → 1×1 Conv with an identity kernel → BatchNormalization → Flatten → Gemm: BN sees x itself
    // on the first step (the update uses the pre-step weights).
    const model = buildModel({
      inputs: [{ name: 'x', shape: ['N', c, 2, 2] }],
      initializers: [
        { name: 'W', dims: [c, c, 1, 1], values: [1, 0, 0, 1] }, { name: 's', dims: [c], values: [1, 1] }, { name: 'b', dims: [c], values: [0, 0] },
        { name: 'rm', dims: [c], values: [0.5, -0.5] }, { name: 'rv', dims: [c], values: [1, 2] },
        { name: 'F', dims: [3, 8], values: rng.array(24) },
      ],
      nodes: [
        { op: 'Conv', inputs: ['x', 'W'], outputs: ['h'], attrs: [A.ints('kernel_shape', [1, 1])] },
        { op: 'BatchNormalization', inputs: ['h', 's', 'b', 'rm', 'rv'], outputs: ['y'], attrs: [A.float('momentum', 0.9)] },
        { op: 'Flatten', inputs: ['y'], outputs: ['f'] },
        { op: 'Gemm', inputs: ['f', 'F'], outputs: ['logits'], attrs: [A.int('transB', 1)] },
      ],
      output: 'logits',
    });
    const x = Float32Array.from(rng.array(5 * c * 4, -1, 2));
    const data = fromArrays('bn', x, [c, 2, 2], BigInt64Array.from([0n, 1n, 2n, 0n, 1n]), 3);
    const trainer = await Trainer.create(await createBackend('cpu'), model, { ...CE, optimizer: sgd({ lr: 0.1 }), batchnorm: 'train' });
    await trainer.fit(data, { batchSize: 5, steps: 1, shuffle: false });
    const exported = decodeModel(await trainer.exportModel());
    await trainer.dispose();
    const init = (name: string) => Array.from(tensorFromProto(exported.graph!.initializer!.find((t) => t.name === name)!).data as Float32Array);
    for (let ch = 0; ch < c; ch++) {
      const vals: number[] = [];
      for (let i = 0; i < 5; i++) for (let p = 0; p < 4; p++) vals.push(x[(i * c + ch) * 4 + p]);
      const mean = vals.reduce((a, v) => a + v, 0) / vals.length;
      const unbiased = vals.reduce((a, v) => a + (v - mean) ** 2, 0) / (vals.length - 1);
      expect(init('rm')[ch]).to.be.closeTo(0.9 * [0.5, -0.5][ch] + 0.1 * mean, 1e-5);
      expect(init('rv')[ch]).to.be.closeTo(0.9 * [1, 2][ch] + 0.1 * unbiased, 1e-5);
    }
    // The trainable scale moved; frozen mode would have left the running statistics alone.
    expect(init('s')).not.to.deep.equal([1, 1]);
  });
});
