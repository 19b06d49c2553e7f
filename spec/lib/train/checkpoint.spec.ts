// Checkpoints: a run stopped part-way, saved, and restored into a fresh Trainer continues exactly
// as the uninterrupted run, for every optimizer (same losses and parameters, bit for bit, on the
// CPU EP); a checkpoint that does not fit the run is refused before anything changes.
import { expect } from 'chai';
import { join } from 'node:path';
import { decodeModel, encodeModel, tensorFromProto, type onnx } from '../../../graph-tools/index.js';
import { fromArrays, type Dataset } from '../../../lib/data/index.js';
import { InputError } from '../../../lib/errors.js';
import { readModelFile } from '../../../lib/io/files.js';
import { packageRoot } from '../../../lib/io/package-root.js';
import { adam, createOptimizer, kbfgs, kbfgsL, kfac, kfqn, kfqnL, rmsprop, sgd, shampoo } from '../../../lib/optim/index.js';
import { createBackend } from '../../../lib/runtime/index.js';
import type { Backend } from '../../../lib/runtime/backend.js';
import { decodeCheckpoint } from '../../../lib/train/checkpoint.js';
import { Trainer, type FitOptions, type TrainerOptions } from '../../../lib/train/trainer.js';
import { makeRefMlp } from '../../helpers/mlp-reference.js';
import { activations, data as autoencoderData, M, sizes, toOnnx } from '../../helpers/tiny-autoencoder.js';

type Optimizer = TrainerOptions['optimizer'];
const MSE = { kind: 'mse', reduction: 'mean', target: 'input' } as const;

/** 2·M samples of the tiny autoencoder's data: batches of 5 give 5 per epoch, the last one short. */
function dataset(): Dataset {
  const x = new Float32Array(2 * M * sizes[0]);
  x.set(autoencoderData(3), 0);
  x.set(autoencoderData(4), M * sizes[0]);
  return fromArrays('tiny autoencoder data', x, [sizes[0]]);
}

const optimizers: Record<string, () => Optimizer> = {
  // A schedule resumes at its step too.
  'sgd (momentum, α halved every 4 steps)': () => sgd({ lr: 0.05, momentum: 0.9, lrSchedule: { kind: 'step', every: 4, gamma: 0.5 } }),
  adam: () => adam({ lr: 0.01 }),
  'rmsprop (warm start)': () => rmsprop({ lr: 0.003 }),
  // Sampled targets come from ORT's random ops, whose state a checkpoint cannot hold: the empirical Fisher.
  'kfac (empirical Fisher, inverses every 3 steps)': () => kfac({ lr: 0.1, fisher: 'empirical', inverseInterval: 3 }),
  'shampoo (roots every 3 steps)': () => shampoo({ lr: 0.05, rootInterval: 3 }),
  'kbfgs (warm start)': () => kbfgs({ lr: 0.1 }),
  'kbfgs-l (p 3, cosine schedule)': () => kbfgsL({ lr: 0.1, history: 3, lrSchedule: { kind: 'cosine', steps: 15, floor: 0.1 } }),
  'kfqn (curvature every 2 steps)': () => kfqn({ lr: 0.1, curvatureInterval: 2 }),
  'kfqn-l --a-side lbfgs, both factor starts': () => kfqnL({ lr: 0.1, history: 3, aSide: 'lbfgs', aHistory: 2, aInit: 'factor', gInit: 'factor' }),
  'kfqn --variant convergent (an independent curvature stream)': () => kfqn({ lr: 0.1, variant: 'convergent' }),
};

describe('checkpoints', function () {
  this.timeout(60_000);
  let backend: Backend;
  const model = toOnnx(makeRefMlp(sizes, [...activations], { kind: 'mse', reduction: 'mean' }, 1));
  const data = dataset();
  const plan: FitOptions = { batchSize: 5, shuffle: true, seed: 11 };
  const trainers: Trainer[] = [];
  const create = async (optimizer: Optimizer, m: onnx.ModelProto = model, options: Partial<TrainerOptions> = {}): Promise<Trainer> => {
    const t = await Trainer.create(backend, m, { ...MSE, optimizer, ...options });
    trainers.push(t);
    return t;
  };
  /** fit() with its step losses (and epoch indices) collected. */
  const fit = async (trainer: Trainer, options: Partial<FitOptions>) => {
    const steps: { step: number; epoch: number; loss: number }[] = [];
    const result = await trainer.fit(data, { ...plan, ...options, onStep: (s) => { steps.push({ step: s.step, epoch: s.epoch, loss: s.loss }); } });
    return { steps, result };
  };
  const parameters = async (t: Trainer) => new Map([...await t.parameters()].map(([k, v]) => [k, Array.from(v.data as Float32Array)]));

  before(async () => { backend = await createBackend('cpu'); });
  afterEach(async () => { for (const t of trainers.splice(0)) await t.dispose(); });

  for (const [name, make] of Object.entries(optimizers)) {
    it(`${name}: 7 steps, a checkpoint mid-epoch, then 8 more in a fresh trainer give the uninterrupted 15 steps exactly`, async () => {
      const straight = await fit(await create(make()), { epochs: 3 });
      expect(straight.steps).to.have.length(15);

      const first = await create(make());
      const before = await fit(first, { steps: 7 });
      const bytes = await first.checkpoint();
      const resumed = await create(make());
      const { changedOptions } = await resumed.restore(bytes, 'run.kfqn');
      expect(changedOptions).to.deep.equal([]);
      expect(resumed.step).to.equal(7);
      // 2 epochs more: the rest of epoch 1 (3 batches), then epoch 2.
      const after = await fit(resumed, { epochs: 2 });
      expect([...before.steps, ...after.steps]).to.deep.equal(straight.steps);
      expect(await parameters(resumed)).to.deep.equal(await parameters(trainers[0]));
      // The checkpoint says where the run stood, and holds every tensor the engine had.
      const { header, tensors } = decodeCheckpoint(bytes);
      expect(header.position).to.deep.include({ epoch: 1, batch: 2 });
      expect(header.trainer).to.deep.equal({ steps: 7, updates: 7, skipped: 0 });
      expect(tensors.state.size).to.be.greaterThan(0);
      expect(first.optimizerStateBytes).to.equal([...tensors.state.values()].reduce((n, t) => n + 4 * t.data.length, 0));
    });
  }

  it('BatchNormalization running statistics (--batchnorm train) and a CNN: the ResNet resumed under kfqn-l equals the straight run', async () => {
    const resnet = readModelFile(join(packageRoot(), 'models/resnet-small.onnx'));
    const N = 4;
    const images = fromArrays('images', Float32Array.from({ length: 3 * N * 28 * 28 }, (_, i) => Math.sin(0.37 * i) * 0.5 + 0.5), [1, 28, 28], Array.from({ length: 3 * N }, (_, i) => i % 10), 10);
    const options = { kind: 'cross-entropy', reduction: 'mean', target: 'label', batchnorm: 'train' } as const;
    const optimizer = () => kfqnL({ lr: 0.1, history: 3 });
    const run = (t: Trainer, o: Partial<FitOptions>) => t.fit(images, { batchSize: N, shuffle: false, ...o });
    const straight = await create(optimizer(), resnet, options);
    await run(straight, { steps: 5 });
    const first = await create(optimizer(), resnet, options);
    await run(first, { steps: 2 });
    const resumed = await create(optimizer(), resnet, options);
    await resumed.restore(await first.checkpoint());
    await run(resumed, { steps: 3 });
    expect(await resumed.runningStatistics()).to.deep.equal(await straight.runningStatistics());
    expect(await parameters(resumed)).to.deep.equal(await parameters(straight));
    expect((await straight.runningStatistics()).size).to.be.greaterThan(0);
  });

  it('is an ONNX model whose initializers are the tensors (onnx.load and numpy_helper read it) and whose metadata is the header', async () => {
    const trainer = await create(kbfgs({ lr: 0.1 }));
    await fit(trainer, { steps: 2 });
    const stored = decodeModel(await trainer.checkpoint({ note: 'kept as given' }));
    const params = await trainer.parameters();
    for (const [name, t] of params) {
      const proto = stored.graph!.initializer!.find((i) => i.name === `param/${name}`)!;
      expect(Array.from(tensorFromProto(proto).data as Float32Array)).to.deep.equal(Array.from(t.data as Float32Array));
    }
    expect(stored.graph!.initializer!.some((i) => i.name!.startsWith('state/kfqn:Ha:'))).to.equal(true);
    const header = JSON.parse(stored.metadataProps!.find((p) => p.key === 'kfqn.checkpoint')!.value!);
    expect(header).to.deep.include({ format: 'kfqn-checkpoint', version: 1, run: { note: 'kept as given' } });
    expect(header.optimizer.name).to.equal('kbfgs');
    expect(header.optimizer.options).to.deep.equal(kbfgs({ lr: 0.1 }).options);
  });

  it("createOptimizer(name, the header's options) gives back the checkpoint's optimizer, for every optimizer", () => {
    for (const make of [...Object.values(optimizers), () => adam({ lr: 0.01, weightDecay: 0.01, decoupledWeightDecay: true })]) {
      const o = make();
      const again = createOptimizer(o.name, JSON.parse(JSON.stringify(o.options)));
      expect(again.name).to.equal(o.name);
      expect(again.options).to.deep.equal(o.options);
    }
    expect(() => createOptimizer('lbfgs')).to.throw(RangeError, /unknown optimizer 'lbfgs'.*kbfgs-l/);
  });

  it('reports the hyper-parameters that differ from the checkpoint\'s run (the trainer\'s own apply)', async () => {
    const first = await create(kbfgs({ lr: 0.1 }));
    await fit(first, { steps: 2 });
    const resumed = await create(kbfgs({ lr: 0.05, damping: 1 }));
    const { changedOptions } = await resumed.restore(await first.checkpoint());
    expect(changedOptions).to.deep.equal([{ option: 'lr', saved: 0.1, now: 0.05 }, { option: 'damping', saved: 0.3, now: 1 }]);
  });

  describe('refused, naming what differs, with the trainer left as it was', () => {
    const rejection = async (p: Promise<unknown>): Promise<Error> => {
      try { await p; } catch (e) { return e as Error; }
      throw new Error('expected a rejection');
    };
    /** Restoring `bytes` into `trainer` fails with a message matching `pattern`, and the trainer then trains exactly as one that never saw it. */
    const refused = async (bytes: Uint8Array, make: () => Optimizer, pattern: RegExp, m: onnx.ModelProto = model) => {
      const trainer = await create(make(), m);
      await fit(trainer, { steps: 1 });
      const err = await rejection(trainer.restore(bytes, 'saved.kfqn'));
      expect(err).to.be.instanceOf(InputError);
      expect(err.message).to.match(/saved\.kfqn/).and.to.match(pattern);
      const untouched = await create(make(), m);
      await fit(untouched, { steps: 1 });
      expect((await fit(trainer, { steps: 2 })).steps).to.deep.equal((await fit(untouched, { steps: 2 })).steps);
    };
    let saved: Uint8Array;
    before(async () => {
      backend ??= await createBackend('cpu');
      const t = await Trainer.create(backend, model, { ...MSE, optimizer: kbfgsL({ lr: 0.1, history: 3 }) });
      await t.fit(data, { ...plan, steps: 2 });
      saved = await t.checkpoint();
      await t.dispose();
    });

    it('another optimizer', () => refused(saved, () => adam(), /kbfgs-l state; this run's optimizer is adam/));
    it('another L-BFGS memory (its pairs have another shape)', () => refused(saved, () => kbfgsL({ lr: 0.1, history: 4 }), /optimizer state 'kfqn:S:.*' is float32\[1,3,5\], this run's is float32\[1,4,5\]/));
    it('a state this optimizer setting does not use (a dense H_a against pairs)', async () => {
      const t = await create(kfqnL({ lr: 0.1, history: 3 }));
      await fit(t, { steps: 2 });
      // Before its first step the L-BFGS A side holds no pairs yet, so the dense H_a is what differs; after it, the pairs are missing.
      const fresh = await create(kfqnL({ lr: 0.1, history: 3, aSide: 'lbfgs' }));
      const err = await rejection(fresh.restore(await t.checkpoint(), 'saved.kfqn'));
      expect(err.message).to.match(/saved\.kfqn holds optimizer state 'kfqn:Ha:.*' that this kfqn-l setting does not use: it was saved with other options \(.*"aSide":"dense"/);
      await refused(await t.checkpoint(), () => kfqnL({ lr: 0.1, history: 3, aSide: 'lbfgs' }), /has no optimizer state 'kfqn:(Sa|Ya|rhoa):/);
    });
    it('another model', async () => {
      const other = toOnnx(makeRefMlp([6, 4, 3, 5, 6], [...activations], { kind: 'mse', reduction: 'mean' }, 1));
      await refused(saved, () => kbfgsL({ lr: 0.1, history: 3 }), /parameter 'W0' is float32\[5,6\], this run's is float32\[4,6\]/, other);
    });
    it('cut short, corrupt, or not a checkpoint', async () => {
      await refused(saved.subarray(0, saved.length - 100), () => kbfgsL({ lr: 0.1, history: 3 }), /truncated or corrupt|is corrupt/);
      const flipped = saved.slice(); flipped.fill(0xff, 0, 40);
      await refused(flipped, () => kbfgsL({ lr: 0.1, history: 3 }), /not a kfqn checkpoint|corrupt/);
      await refused(encodeModel(model), () => kbfgsL({ lr: 0.1, history: 3 }), /an ONNX model, not a kfqn checkpoint/);
    });
    it('fit() after restore() with another batch plan mid-epoch: the epoch cannot be finished as the run would have', async () => {
      const t = await create(kbfgsL({ lr: 0.1, history: 3 }));
      await t.restore(saved, 'saved.kfqn');
      const err = await rejection(t.fit(data, { ...plan, batchSize: 6, steps: 1 }));
      expect(err).to.be.instanceOf(InputError);
      expect(err.message).to.match(/after batch 2 of epoch 1 of batches of 5 from 24 samples, shuffled with seed 11; fit\(\) was given batches of 6/);
      expect(t.step).to.equal(2);
    });
  });

  it('fit() continues where the last one stopped: a second fit finishes the epoch, and epochs and shuffles go on', async () => {
    const straight = await fit(await create(sgd({ lr: 0.05 })), { epochs: 2 });
    const split = await create(sgd({ lr: 0.05 }));
    const a = await fit(split, { steps: 3 });
    // The rest of epoch 0 counts as one epoch.
    const b = await fit(split, { epochs: 2 });
    expect([...a.steps, ...b.steps]).to.deep.equal(straight.steps);
    const c = await fit(split, { epochs: 1 });
    expect(c.steps.map((s) => s.epoch)).to.deep.equal([2, 2, 2, 2, 2]);
    // With another batch plan the next fit starts a new epoch.
    const d = await split.fit(data, { batchSize: 8, epochs: 1, shuffle: false });
    expect(d.steps).to.equal(3);
  });

  it('an aborted signal stops fit() before its next step, and says so', async () => {
    const trainer = await create(adam({ lr: 0.01 }));
    const stop = new AbortController();
    const { steps, result } = await fit(trainer, { epochs: 3, signal: stop.signal });
    expect(result.interrupted).to.equal(false);
    expect(steps).to.have.length(15);
    const interrupted = await trainer.fit(data, { ...plan, epochs: 3, signal: stop.signal, onStep: (s) => { if (s.step === 18) stop.abort(); } });
    expect(interrupted).to.deep.include({ interrupted: true, steps: 3 });
    expect(trainer.step).to.equal(18);
  });
});
