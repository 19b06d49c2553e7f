// Every optimizer on a CNN (issue 5): the small ResNet (models/resnet-small.onnx, BatchNormalization,
// residual blocks) on Fashion-MNIST, each optimizer on a small grid for the same wall-clock budget,
// the best grid point per optimizer chosen by final training loss (the mean of the last 20
// minibatch losses), test accuracy on a test subset, seconds per step against the forward+backward
// floor. The sweep itself (run loop, report, plots, --merge) is scripts/paper/sweep.ts, shared with
// the K-BFGS paper's autoencoder comparison.
//
// Usage: npx tsx scripts/bench/cnn-fashion.ts
//          [--optimizers sgd,adam,rmsprop,kfac,shampoo,kbfgs,kbfgs-l,kfqn,kfqn-l,kfqn-l-lbfgs] [--seconds 60] [--epochs N]
//          [--grid full|lr|one] [--limit 10000] [--test-limit 2000] [--eval-every 15] [--batchnorm train|frozen]
//          [--bn-samples 512] [--merge] [--out scripts/bench/results/cnn-fashion] [--data-dir /usr/share/datasets/fashion-mnist]
// Writes OUT/fashion.json, OUT/fashion.md, OUT/fashion-loss-vs-time.svg, OUT/fashion-loss-vs-epoch.svg
// after every run. A run that throws (an optimizer the engine cannot run yet) is recorded with its
// error and the sweep goes on.
//
// --limit: the first 10,000 of the 60,000 training images by default (79 batches an epoch). On 2
// idle CPU cores a step costs about 0.16 s (first-order methods, the forward+backward floor) to
// 0.6 s (K-BFGS), so a 60 s budget is about 100-370 steps: 1.3-4.7 epochs of 10,000, where the
// whole set would leave every method inside its first epoch. Timings want an idle machine: a
// second process on the 2 cores about doubles every step (the floor is timed after every run).
// --batchnorm: 'train' (batch statistics, how a ResNet is trained) by default, about 10% dearer a
// step than 'frozen' (the exported running statistics as constants), with which the loss hardly
// moves (SGD α 0.03: 2.30 → 2.27 in 40 steps, against 1.32 with batch statistics).
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { buildTrainingGraph, decodeModel, encodeModel, onnx, type BatchNormMode } from '../../graph-tools/index.js';
import { batches, limit, type Batch, type Dataset } from '../../lib/data/index.js';
import { loadIdxDir } from '../../lib/data/node.js';
import { readModelFile } from '../../lib/io/files.js';
import { packageRoot } from '../../lib/io/package-root.js';
import { adam, kbfgs, kbfgsL, kfac, kfqn, kfqnL, rmsprop, sgd, shampoo } from '../../lib/optim/index.js';
import { createBackend } from '../../lib/runtime/node.js';
import type { Backend, Tensor } from '../../lib/runtime/backend.js';
import { Trainer, type TrainerOptions } from '../../lib/train/trainer.js';
import {
  finite, gridProduct, list, machine, machineText, markdown, num, positive, round, sweep, trailingMean, trainRun,
  type Budget, type Hyper, type Report, type Run, type SweepSetup,
} from '../paper/sweep.js';
import { median, timeRuns } from './common.js';

const MODEL = 'models/resnet-small.onnx';
const LOSS = { kind: 'cross-entropy', reduction: 'mean' } as const;
const BATCH = 128;
/** The final training loss (the tuning criterion) is the mean of this many last minibatch losses; the plots smooth the same way. */
const SMOOTH = 20;
/**
 * KFAC and Shampoo at the authors' CNN frequencies (ALGORITHMS.md §7.4, §7.5): factors every 10
 * steps, inverses / roots every 100 (KFAC also inverts at each of its first 100 steps, as its
 * inverseInterval says).
 */
const STAT_INTERVAL = 10;
const REFRESH_INTERVAL = 100;

type Grid = 'full' | 'lr' | 'one';
/** kfqn-l-lbfgs: KF-QN(L) with an L-BFGS A side too (aSide 'lbfgs'), the first-order-sized state. */
const OPTIMIZERS = ['sgd', 'adam', 'rmsprop', 'kfac', 'shampoo', 'kbfgs', 'kbfgs-l', 'kfqn', 'kfqn-l', 'kfqn-l-lbfgs'] as const;
type OptimizerName = (typeof OPTIMIZERS)[number];

/**
 * Per optimizer the point of --grid one and a small {1,3}×10^k grid (--grid full; --grid lr varies
 * only α, the rest at the 'one' point). Second-order grids stay at 4 points: on 2 cores each point
 * costs a whole budget. They are centred by 25-step probes (batch statistics, 3,200 images): with
 * the mean cross-entropy the curvature factors are small, so KFAC wants λ ≤ 0.1 and Shampoo ε ≤ 1e-2
 * (in 25 steps KFAC α 0.3 λ 1 moved the minibatch loss from 2.35 to 2.28 and Shampoo α 0.1 ε 1 to
 * 1.96, KFAC α 1 λ 0.01 to 0.89), and the K-BFGS family α ≥ 0.3 (α 0.1: 2.29 at best; α 1 λ 0.1:
 * 1.83, KF-QN alike). The 'one' points of KFAC, Shampoo and K-BFGS stayed stable over 100 steps
 * (minibatch loss 0.48-0.79). A first 40 s sweep then put the best of KFAC (α 1, λ 0.01) and of
 * every quasi-Newton method (α 1, λ 0.1) on the grid's corner; 60-step probes of KF-QN(L) (mean of
 * the last 20 minibatch losses: α 1 λ 0.1 1.14, α 3 λ 0.1 0.84, α 1 λ 0.01 0.84, α 3 λ 0.01 0.76;
 * Adam α 3e-3 1.07) moved those grids to larger α and smaller λ. The KF-QN sweep's best points then
 * sat at α 1–3, λ 0.01, the grid's small-λ edge: its grid now reaches λ 0.003 and α 10. There
 * KF-QN's best was α 1, λ 0.003 (0.567; α 10 diverges), and a probe of α 0.5–2 × λ 0.0003–0.001
 * (--out elsewhere) found nothing better (0.575–0.70; α 2, λ 0.0003 diverged). With the curvature
 * updated every 10 steps (curvatureInterval; the steps between cost about an Adam step), 40 s
 * probes of KF-QN gave 0.46–0.49 at α 1–3, λ 0.001–0.01 and intervals 5, 10 and 20 (Adam α 3e-3
 * 0.551 in the same session), all reaching Adam's final loss at 0.68–0.76 of its time; α 10 is
 * dropped from the grid, the interval (1, the authors', or 10) added. Then H_g⁰ from the first
 * batch's gradient factor (gInit 'factor') took KF-QN at α 1, λ 0.01, interval 10 to Adam's
 * 240-step loss in 119-121 steps against 161 with H_g⁰ = I (200-step probes; α 0.3: 151), and
 * KF-QN(L) with its diagonal form in 120: both grids now run interval 10 with both starts (every-step
 * KF-QN and KF-QN(L), 0.61 at best in the previous sweeps, left the grid). KF-QN(L) with an L-BFGS
 * A side too (kfqn-l-lbfgs) barely trained with its A side's default H0 = γI (1.09 at step 200 of a
 * probe), so its grid holds both A-side starts (aInit 'pair', 'factor').
 */
const SEARCH: Record<OptimizerName, { one: Hyper; grid: Record<string, (number | string)[]> }> = {
  sgd: { one: { lr: 0.03 }, grid: { lr: [0.01, 0.03, 0.1] } },
  adam: { one: { lr: 1e-3 }, grid: { lr: [3e-4, 1e-3, 3e-3] } },
  rmsprop: { one: { lr: 1e-3 }, grid: { lr: [3e-4, 1e-3, 3e-3] } },
  kfac: { one: { lr: 1, damping: 0.01 }, grid: { lr: [1, 3], damping: [0.001, 0.01] } },
  shampoo: { one: { lr: 0.3, epsilon: 0.01 }, grid: { lr: [0.1, 0.3], epsilon: [1e-3, 1e-2] } },
  kbfgs: { one: { lr: 3, damping: 0.01 }, grid: { lr: [1, 3], damping: [0.01, 0.1] } },
  'kbfgs-l': { one: { lr: 3, damping: 0.01 }, grid: { lr: [1, 3], damping: [0.01, 0.1] } },
  kfqn: { one: { lr: 1, damping: 0.01, curvatureInterval: 10, gInit: 'factor' }, grid: { lr: [1, 3], damping: [0.003, 0.01], curvatureInterval: [10], gInit: ['identity', 'factor'] } },
  'kfqn-l': { one: { lr: 1, damping: 0.01, curvatureInterval: 10, gInit: 'factor' }, grid: { lr: [1, 3], damping: [0.003, 0.01], curvatureInterval: [10], gInit: ['identity', 'factor'] } },
  'kfqn-l-lbfgs': { one: { lr: 1, damping: 0.003, curvatureInterval: 10, gInit: 'factor', aInit: 'factor' }, grid: { lr: [1], damping: [0.003, 0.01], curvatureInterval: [10], gInit: ['factor'], aInit: ['pair', 'factor'] } },
};

/**
 * The library's defaults (weight decay included) but for the grid's α and λ / ε. KFAC, Shampoo,
 * K-BFGS and K-BFGS(L) run without their warm start (warmStart: false; their factors start from the
 * first batch, as KF-QN's always do): the one-pass warm start costs about an epoch of forward passes,
 * which the budget would not see and the wall clock would.
 */
function makeOptimizer(name: OptimizerName, hyper: Hyper): TrainerOptions['optimizer'] {
  const { gInit = 'identity', aInit = 'pair', ...numbers } = hyper;
  const h = numbers as Record<string, number>;
  const cnn = { statInterval: STAT_INTERVAL, warmStart: false };
  switch (name) {
    case 'sgd': return sgd({ lr: h.lr, momentum: 0.9 });
    case 'adam': return adam({ lr: h.lr });
    case 'rmsprop': return rmsprop({ lr: h.lr });
    case 'kfac': return kfac({ lr: h.lr, damping: h.damping, ...cnn, inverseInterval: REFRESH_INTERVAL });
    case 'shampoo': return shampoo({ lr: h.lr, epsilon: h.epsilon, ...cnn, rootInterval: REFRESH_INTERVAL });
    case 'kbfgs': return kbfgs({ lr: h.lr, damping: h.damping, warmStart: false });
    case 'kbfgs-l': return kbfgsL({ lr: h.lr, damping: h.damping, warmStart: false });
    case 'kfqn': return kfqn({ lr: h.lr, damping: h.damping, curvatureInterval: h.curvatureInterval ?? 1, gInit: gInit as 'identity' | 'factor' });
    case 'kfqn-l': return kfqnL({ lr: h.lr, damping: h.damping, curvatureInterval: h.curvatureInterval ?? 1, gInit: gInit as 'identity' | 'factor' });
    case 'kfqn-l-lbfgs': return kfqnL({ lr: h.lr, damping: h.damping, curvatureInterval: h.curvatureInterval ?? 1, gInit: gInit as 'identity' | 'factor', aSide: 'lbfgs', aInit: aInit as 'pair' | 'factor' });
  }
}

function gridPoints(name: OptimizerName, grid: Grid): Hyper[] {
  const { one, grid: values } = SEARCH[name];
  if (grid === 'one') return [one];
  if (grid === 'lr') return gridProduct({ ...Object.fromEntries(Object.entries(one).map(([k, v]) => [k, [v]])), lr: values.lr });
  return gridProduct(values);
}

/**
 * The floor of a step: one forward+backward pass (loss and every parameter gradient) of the training
 * graph at one batch. Returns a timer (the median of 10 passes) to call after every run, so each
 * run's ratio compares timings taken under the same load.
 */
async function floorTimer(backend: Backend, model: onnx.ModelProto, train: Dataset, batchnorm: BatchNormMode): Promise<{ time(): Promise<number>; release(): Promise<void> }> {
  const batch = batches(train, { batchSize: BATCH, shuffle: false, seed: 0, epoch: 0 }).next().value!;
  const tg = buildTrainingGraph(model, { ...LOSS, batchnorm });
  const session = await backend.createSession(encodeModel(tg.toModel()), { name: 'forward+backward' });
  const feeds: Record<string, Tensor> = {
    [tg.dataInputs[0].name]: backend.tensor('float32', batch.inputs, [batch.size, ...train.sampleShape]),
    [tg.target.name]: backend.tensor('int64', batch.labels!, [batch.size]),
  };
  for (const [name, v] of [...tg.initialParameters, ...tg.initialBuffers]) feeds[name] = backend.tensor('float32', v.data as Float32Array, v.dims);
  return { time: async () => median(await timeRuns(() => session.run(feeds), 10, 2)), release: () => session.release() };
}

/**
 * A copy of the trained model whose BatchNormalization running statistics are those of `batch`
 * under the current weights (what is known as precise BN): every BatchNormalization takes its batch
 * statistics whole (momentum 0) in one step at α = 0. The run's own running statistics lag the
 * weights by about ten steps (momentum 0.9), which in the first few hundred steps, where the
 * weights move fast, costs most of the test accuracy: SGD α 0.03 after 150 steps scored 41% on its
 * own training images with them, 77% once they had caught up. Costs about 3 s per evaluation (off
 * the clock), most of it building the copy's sessions.
 */
async function withBatchStatistics(t: Trainer, batch: Batch): Promise<Trainer> {
  const model = decodeModel(await t.exportModel());
  for (const node of model.graph?.node ?? []) {
    if (node.opType !== 'BatchNormalization') continue;
    const attributes = node.attribute ??= [];
    const momentum = attributes.find((a) => a.name === 'momentum');
    if (momentum) momentum.f = 0;
    else attributes.push(onnx.AttributeProto.create({ name: 'momentum', type: onnx.AttributeProto.AttributeType.FLOAT, f: 0 }));
  }
  const copy = await Trainer.create(t.backend, model, { ...LOSS, target: 'label', batchnorm: 'train', optimizer: sgd({ lr: 0 }), source: MODEL });
  await copy.trainStep(batch);
  return copy;
}

interface Settings { batchnorm: BatchNormMode; evaluateEvery: number; floor: () => Promise<number>; /** Training images for the statistics of each evaluation ('train' BatchNormalization); 0: the run's own. */ bnSamples: number }

/** The run loop of sweep.ts with this benchmark's evaluation (test-subset loss and accuracy) and summary. */
function setup(backend: Backend, model: onnx.ModelProto, data: { train: Dataset; test: Dataset }, budget: Budget, o: Settings): SweepSetup<OptimizerName> {
  const statistics = o.batchnorm === 'train' && o.bnSamples > 0
    ? batches(limit(data.train, o.bnSamples), { batchSize: o.bnSamples, shuffle: false, seed: 0, epoch: 0 }).next().value! : undefined;
  return {
    backend, model, train: data.train, batchSize: BATCH, budget, makeOptimizer, evaluateEvery: o.evaluateEvery,
    trainer: { ...LOSS, target: 'label', batchnorm: o.batchnorm, source: MODEL },
    measure: async (t) => {
      const evaluated = statistics ? await withBatchStatistics(t, statistics) : t;
      try {
        const e = await evaluated.evaluate(data.test, 1000);
        return { loss: finite(e.loss), accuracy: e.accuracy ?? null };
      } finally {
        if (evaluated !== t) await evaluated.dispose();
      }
    },
    finish: async (_t, run, { seconds, durations }) => {
      const last = run.steps.flatMap((s) => (s.loss === null ? [] : [s.loss])).slice(-SMOOTH);
      run.finalTrainLoss = run.diverged || last.length === 0 ? null : round(last.reduce((a, b) => a + b, 0) / last.length, 5);
      run.finalTestAccuracy = run.evaluations.at(-1)?.accuracy ?? null;
      run.secondsPerStep = durations.length ? round(median(durations), 4) : null;
      run.meanSecondsPerStep = durations.length ? round(seconds / durations.length, 4) : null;
      const floor = await o.floor();
      run.floorSeconds = round(floor, 4);
      run.floorRatio = run.secondsPerStep === null ? null : round(run.secondsPerStep / floor, 2);
    },
  };
}

const percent = (v: number | null | undefined) => (v === null || v === undefined ? '—' : `${(100 * v).toFixed(1)}%`);

function report(r: Report<OptimizerName>, optimizers: readonly OptimizerName[]): string {
  const s = r.settings;
  const settings = `${MODEL}, ${LOSS.kind} (${LOSS.reduction}), BatchNormalization '${s.batchnorm}', batch ${BATCH}, the optimizers' default weight decay; `
    + `the first ${r.trainSamples} training images, test accuracy on the first ${r.testSamples} t10k images`
    + `${s.bnSamples ? ` (BatchNormalization statistics recomputed from ${s.bnSamples} training images for each evaluation)` : ''}; each run ${s.seconds} s of training`
    + `${s.epochs !== null ? ` or ${s.epochs} epochs` : ''} (evaluations not counted, no warm starts), grid '${s.grid}'; `
    + `KFAC and Shampoo: factors every ${STAT_INTERVAL} steps, inverses / roots every ${REFRESH_INTERVAL}. `
    + `Best = lowest final training loss (mean of the last ${SMOOTH} minibatch losses). s/step: the median step; `
    + `× floor: over one forward+backward pass of the same training graph at batch ${BATCH}, timed after each run. ${machineText(r.machine)}`;
  return markdown(r, optimizers, settings, [
    { header: 'epochs', cell: (run) => run.epochs.toFixed(2) },
    { header: 'final train loss', cell: (run) => num(run.finalTrainLoss, 3) },
    { header: 'test accuracy', cell: (run) => percent(run.finalTestAccuracy) },
    { header: 's/step', cell: (run) => num(run.secondsPerStep, 3) },
    { header: '× floor', cell: (run) => num(run.floorRatio, 2) },
    { header: 'seconds to Adam\'s final loss (× Adam\'s)', cell: (run) => toAdamsLoss(r, run) },
  ]);
}

/**
 * When the mean of the last SMOOTH minibatch losses first reaches the best Adam run's final
 * training loss (the same mean), in training seconds and as a share of that Adam run's seconds.
 */
function toAdamsLoss(r: Report<OptimizerName>, run: Run<OptimizerName>): string {
  const i = r.best.adam;
  const adam = i === undefined ? undefined : r.runs[i];
  if (!adam || adam.finalTrainLoss === null) return '—';
  const k = trailingMean(run.steps.map((s) => s.loss), SMOOTH).findIndex((m, j) => j >= SMOOTH - 1 && m <= adam.finalTrainLoss!);
  if (k < 0) return 'not reached';
  const t = run.steps[k].seconds;
  return `${t.toFixed(1)} (${(t / adam.seconds).toFixed(2)}×)`;
}

const summary = (run: Run<OptimizerName>) => `train ${num(run.finalTrainLoss, 3)} (last ${SMOOTH}), test accuracy ${percent(run.finalTestAccuracy)}, ${num(run.secondsPerStep, 3)} s/step (${num(run.floorRatio, 2)}× floor)`;

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      optimizers: { type: 'string', default: OPTIMIZERS.join(',') }, seconds: { type: 'string', default: '60' }, epochs: { type: 'string' },
      grid: { type: 'string', default: 'full' }, limit: { type: 'string', default: '10000' }, 'test-limit': { type: 'string', default: '2000' },
      // Training seconds between test evaluations (besides one after every epoch and one at the end).
      'eval-every': { type: 'string', default: '15' },
      // 'train': batch statistics, as PyTorch trains a ResNet; 'frozen': the exported running statistics as constants.
      batchnorm: { type: 'string', default: 'train' },
      // With 'train': the running statistics of each evaluation from this many training images (0: the run's own).
      'bn-samples': { type: 'string', default: '512' },
      out: { type: 'string', default: 'scripts/bench/results/cnn-fashion' }, 'data-dir': { type: 'string', default: '/usr/share/datasets/fashion-mnist' },
      // Re-run some optimizers and keep the other optimizers' runs from OUT/fashion.json.
      merge: { type: 'boolean' },
    },
    strict: true,
  });
  const optimizers = list(values.optimizers, OPTIMIZERS, '--optimizers');
  const grid = list(values.grid, ['full', 'lr', 'one'] as const, '--grid')[0];
  const batchnorm = list(values.batchnorm, ['train', 'frozen'] as const, '--batchnorm')[0];
  const budget: Budget = { seconds: positive(values.seconds, '--seconds')!, epochs: positive(values.epochs, '--epochs', true) ?? Infinity };
  const evaluateEvery = positive(values['eval-every'], '--eval-every')!;
  const bnSamples = values['bn-samples'] === '0' ? 0 : positive(values['bn-samples'], '--bn-samples', true)!;
  const dir = values['data-dir'];
  if (!existsSync(dir)) throw new Error(`${dir} does not exist (install the Debian package dataset-fashion-mnist, or pass --data-dir)`);
  const data = {
    train: limit(loadIdxDir(dir, 'train'), positive(values.limit, '--limit', true)!),
    test: limit(loadIdxDir(dir, 'test'), positive(values['test-limit'], '--test-limit', true)!),
  };

  const model = readModelFile(join(packageRoot(), MODEL));
  const backend = await createBackend('cpu');
  const floor = await floorTimer(backend, model, data.train, batchnorm);
  const r: Report<OptimizerName> = {
    dataset: 'fashion', description: 'Fashion-MNIST, small ResNet', trainSamples: data.train.size, testSamples: data.test.size,
    settings: {
      model: MODEL, loss: LOSS, batchnorm, batchSize: BATCH, seconds: budget.seconds, epochs: finite(budget.epochs), grid, seed: 0,
      evaluateEvery, bnSamples: batchnorm === 'train' ? bnSamples : null, smoothing: SMOOTH, statInterval: STAT_INTERVAL, refreshInterval: REFRESH_INTERVAL,
    },
    machine: machine(), best: {}, runs: [],
  };
  const run = setup(backend, model, data, budget, { batchnorm, evaluateEvery, floor: floor.time, bnSamples });
  try {
    await sweep({
      report: r, all: OPTIMIZERS, optimizers, out: values.out, merge: values.merge,
      points: optimizers.flatMap((name) => gridPoints(name, grid).map((hyper) => ({ name, hyper }))),
      run: (name, hyper) => trainRun(run, name, hyper), summary, markdown: report,
      plot: { yLabel: `training loss (mean of the last ${SMOOTH} minibatches)`, window: SMOOTH },
    });
  } finally {
    await floor.release();
  }
  return 0;
}

try {
  process.exitCode = await main();
} catch (e) {
  console.error(`cnn-fashion: ${(e as Error).message}`);
  process.exitCode = 2;
}
