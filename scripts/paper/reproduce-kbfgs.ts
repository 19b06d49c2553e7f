// The K-BFGS paper's MNIST-autoencoder comparison (ALGORITHMS.md §8.1): every optimizer trained on a
// small grid for the same wall-clock budget, the best grid point per optimizer chosen by final
// training loss (the NeurIPS criterion, §7), training loss plotted against time and epochs.
//
// Usage: npx tsx scripts/paper/reproduce-kbfgs.ts [--datasets mnist,fashion]
//          [--optimizers sgd,adam,rmsprop,kfac,shampoo,kbfgs,kbfgs-l] [--seconds 60] [--epochs N]
//          [--grid full|authors|lr] [--merge] [--out scripts/paper/results] [--fashion-dir /usr/share/datasets/fashion-mnist]
// Writes OUT/<dataset>.json, OUT/<dataset>.md, OUT/<dataset>-loss-vs-time.svg, OUT/<dataset>-loss-vs-epoch.svg
// after every run, so an interrupted sweep keeps what it finished.
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { cpus, platform, release } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { batches, batchesPerEpoch, type Dataset } from '../../lib/data/index.js';
import { loadDataSpec, loadIdxDir } from '../../lib/data/node.js';
import { readModelFile, writeFileAtomic } from '../../lib/io/files.js';
import { packageRoot } from '../../lib/io/package-root.js';
import { adam, kbfgs, kbfgsL, kfac, rmsprop, sgd, shampoo } from '../../lib/optim/index.js';
import { createBackend } from '../../lib/runtime/node.js';
import type { Backend } from '../../lib/runtime/backend.js';
import { Trainer, type TrainerOptions } from '../../lib/train/trainer.js';
import type { onnx } from '../../graph-tools/index.js';
import { linePlot, type Series } from './svg-plot.js';

const MODEL = 'models/mnist-autoencoder.onnx';
const LOSS = { kind: 'bce-with-logits', reduction: 'per-sample-sum' } as const;
const BATCH = 1000;
/** τ of §8.1, given to every optimizer that takes an L2 term. */
const WEIGHT_DECAY = 1e-5;
/** A run whose loss stays non-finite this many steps in a row has diverged: stop spending budget on it. */
const MAX_NONFINITE = 5;

type Grid = 'full' | 'authors' | 'lr';
const OPTIMIZERS = ['sgd', 'adam', 'rmsprop', 'kfac', 'shampoo', 'kbfgs', 'kbfgs-l'] as const;
type OptimizerName = (typeof OPTIMIZERS)[number];
type Hyper = Record<string, number>;

/**
 * The tuned hyper-parameters: the authors' point (used by --grid authors) and a {1,3}×10^k grid
 * around it (§7). The authors' values are §8.1's demo (K-BFGS α 0.3 λ 0.3, KFAC α 1 λ 3); for the
 * others, where the papers give none, a value that trains in a short probe.
 */
const SEARCH: Record<OptimizerName, { authors: Hyper; grid: Record<string, number[]> }> = {
  sgd: { authors: { lr: 0.03 }, grid: { lr: [0.01, 0.03, 0.1] } },
  adam: { authors: { lr: 1e-3 }, grid: { lr: [3e-4, 1e-3, 3e-3, 1e-2] } },
  rmsprop: { authors: { lr: 1e-3 }, grid: { lr: [3e-4, 1e-3, 3e-3, 1e-2] } },
  kfac: { authors: { lr: 1, damping: 3 }, grid: { lr: [0.3, 1, 3], damping: [1, 3, 10] } },
  // The summed-over-pixels loss gives large gradients, so ε must be large to matter: in short probes
  // ε ≤ 1e-2 diverged at every α from 0.03 up, ε 10 trained at α 0.1.
  shampoo: { authors: { lr: 0.1, epsilon: 10 }, grid: { lr: [0.03, 0.1, 0.3], epsilon: [1, 10, 100] } },
  kbfgs: { authors: { lr: 0.3, damping: 0.3 }, grid: { lr: [0.1, 0.3, 1], damping: [0.1, 0.3, 1] } },
  'kbfgs-l': { authors: { lr: 0.3, damping: 0.3 }, grid: { lr: [0.1, 0.3, 1], damping: [0.1, 0.3, 1] } },
};

/** The one place that turns a name and tuned hyper-parameters into an optimizer, with §7's fixed settings. */
function makeOptimizer(name: OptimizerName, h: Hyper): TrainerOptions['optimizer'] {
  switch (name) {
    // SGD-m with the dampened momentum m ← 0.9m + 0.1g of the NeurIPS code (§7).
    case 'sgd': return sgd({ lr: h.lr, momentum: 0.9, dampening: 0.9, weightDecay: WEIGHT_DECAY });
    case 'adam': return adam({ lr: h.lr, weightDecay: WEIGHT_DECAY });
    case 'rmsprop': return rmsprop({ lr: h.lr, weightDecay: WEIGHT_DECAY });
    case 'kbfgs': return kbfgs({ lr: h.lr, damping: h.damping, weightDecay: WEIGHT_DECAY });
    case 'kbfgs-l': return kbfgsL({ lr: h.lr, damping: h.damping, weightDecay: WEIGHT_DECAY });
    case 'kfac': return kfac({ lr: h.lr, damping: h.damping, weightDecay: WEIGHT_DECAY });
    case 'shampoo': return shampoo({ lr: h.lr, epsilon: h.epsilon, weightDecay: WEIGHT_DECAY });
  }
}

function gridPoints(name: OptimizerName, grid: Grid): Hyper[] {
  const authors = SEARCH[name].authors;
  if (grid === 'authors') return [authors];
  // 'lr': the authors' point and the next smaller α of the {1,3}×10^k grid (a problem whose loss is
  // larger than the authors' may need the smaller step).
  if (grid === 'lr') return [authors, { ...authors, lr: Number((authors.lr * (String(authors.lr).replace(/[0.]/g, '').startsWith('3') ? 1 / 3 : 0.3)).toPrecision(1)) }];
  let points: Hyper[] = [{}];
  for (const [key, values] of Object.entries(SEARCH[name].grid)) points = points.flatMap((p) => values.map((v) => ({ ...p, [key]: v })));
  return points;
}

// ---------------------------------------------------------------------------------------------
// One run

interface StepRecord { step: number; epoch: number; seconds: number; loss: number | null }
interface EvalRecord { step: number; epoch: number; seconds: number; loss: number | null }
interface Run {
  optimizer: OptimizerName;
  hyper: Hyper;
  /** Every option the optimizer resolved, defaults included. */
  options?: Record<string, unknown>;
  steps: StepRecord[];
  /** Test loss after every epoch and at the end of the budget. */
  evaluations: EvalRecord[];
  epochs: number;
  /** Training seconds: the budget clock, which skips evaluations and the warm start. */
  seconds: number;
  warmStartSeconds: number;
  secondsPerStep: number | null;
  /** Loss over the whole training set at the end (the tuning criterion). */
  finalTrainLoss: number | null;
  finalTestLoss: number | null;
  diverged: boolean;
  error?: string;
}

interface Budget { seconds: number; epochs: number }

const round = (v: number, digits: number) => Number(v.toFixed(digits));
const finite = (v: number) => (Number.isFinite(v) ? v : null);

async function trainRun(backend: Backend, model: onnx.ModelProto, train: Dataset, test: Dataset, name: OptimizerName, hyper: Hyper, budget: Budget): Promise<Run> {
  const run: Run = {
    optimizer: name, hyper, steps: [], evaluations: [], epochs: 0, seconds: 0, warmStartSeconds: 0,
    secondsPerStep: null, finalTrainLoss: null, finalTestLoss: null, diverged: false,
  };
  let trainer: Trainer | undefined;
  try {
    const optimizer = makeOptimizer(name, hyper);
    run.options = { ...optimizer.options };
    const t = trainer = await Trainer.create(backend, model, { ...LOSS, optimizer, target: 'input', source: MODEL });
    // What fit() does before its first step: the one-pass warm start of the curvature factors.
    if ((optimizer.options as { warmStart?: boolean }).warmStart) {
      const t0 = performance.now();
      await t.warmStart(train, BATCH);
      run.warmStartSeconds = round((performance.now() - t0) / 1000, 3);
    }
    // Our own loop rather than fit(): fit() cannot stop on a time budget mid-epoch, and its clock
    // would charge the per-epoch evaluations to the optimizer.
    const perEpoch = batchesPerEpoch(train.size, BATCH);
    let seconds = 0; let epoch = 0; let nonFinite = 0;
    const evaluate = async () => {
      const loss = (await t.evaluate(test, BATCH)).loss;
      run.evaluations.push({ step: t.step, epoch: round(run.epochs, 4), seconds: round(seconds, 3), loss: finite(loss) });
    };
    for (; epoch < budget.epochs && seconds < budget.seconds && !run.diverged; epoch++) {
      let mark = performance.now();
      for (const batch of batches(train, { batchSize: BATCH, shuffle: true, seed: 0, epoch })) {
        const { loss } = await t.trainStep(batch);
        const now = performance.now();
        seconds += (now - mark) / 1000;
        mark = now;
        run.epochs = epoch + (batch.index + 1) / perEpoch;
        run.steps.push({ step: t.step, epoch: round(run.epochs, 4), seconds: round(seconds, 3), loss: finite(loss) });
        nonFinite = Number.isFinite(loss) ? 0 : nonFinite + 1;
        if (nonFinite >= MAX_NONFINITE) run.diverged = true;
        if (run.diverged || seconds >= budget.seconds) break;
      }
      await evaluate();
    }
    run.seconds = round(seconds, 3);
    run.secondsPerStep = run.steps.length ? round(seconds / run.steps.length, 4) : null;
    run.finalTestLoss = run.evaluations.at(-1)?.loss ?? null;
    run.finalTrainLoss = run.diverged ? null : finite((await t.evaluate(train, BATCH)).loss);
  } catch (e) {
    run.error = (e as Error).message;
  } finally {
    await trainer?.dispose();
  }
  return run;
}

// ---------------------------------------------------------------------------------------------
// Reports

interface Report {
  dataset: string;
  description: string;
  trainSamples: number;
  testSamples: number;
  settings: Record<string, unknown>;
  machine: Record<string, unknown>;
  /** Per optimizer, the index into runs of the lowest final training loss. */
  best: Partial<Record<OptimizerName, number>>;
  runs: Run[];
}

const SYMBOL: Record<string, string> = { lr: 'α', damping: 'λ', epsilon: 'ε' };
const hyperText = (h: Hyper) => Object.entries(h).map(([k, v]) => `${SYMBOL[k] ?? k} ${v}`).join(', ');
const num = (v: number | null | undefined, digits: number) => (v === null || v === undefined ? '—' : v.toFixed(digits));

function pickBest(runs: Run[]): Report['best'] {
  const best: Report['best'] = {};
  runs.forEach((r, i) => {
    if (r.finalTrainLoss === null) return;
    const j = best[r.optimizer];
    if (j === undefined || r.finalTrainLoss < runs[j].finalTrainLoss!) best[r.optimizer] = i;
  });
  return best;
}

function markdown(report: Report, optimizers: readonly OptimizerName[]): string {
  const s = report.settings;
  const lines = [
    `## ${report.description}: ${report.trainSamples} train / ${report.testSamples} test`,
    '',
    `${MODEL}, ${LOSS.kind} (${LOSS.reduction}), batch ${BATCH}, τ ${WEIGHT_DECAY}; each run ${s.seconds} s of training`
      + `${s.epochs !== null ? ` or ${s.epochs} epochs` : ''} (warm starts and evaluations not counted), grid '${s.grid}'; `
      + `best = lowest final training loss (whole training set). ${report.machine.cpu} ×${report.machine.cpus}, node ${report.machine.node}, onnxruntime-node ${report.machine.onnxruntime}.`,
    '',
    '| optimizer | best hyper-parameters | epochs | final train loss | final test loss | s/step | runs |',
    '|---|---|---|---|---|---|---|',
  ];
  for (const name of optimizers) {
    const runs = report.runs.filter((r) => r.optimizer === name);
    const i = report.best[name];
    if (i === undefined) lines.push(`| ${name} | no finite result | | | | | ${runs.length} |`);
    else {
      const r = report.runs[i];
      lines.push(`| ${name} | ${hyperText(r.hyper)} | ${r.epochs.toFixed(1)} | ${num(r.finalTrainLoss, 2)} | ${num(r.finalTestLoss, 2)} | ${num(r.secondsPerStep, 3)} | ${runs.length} |`);
    }
  }
  const failed = report.runs.filter((r) => r.error || r.diverged);
  if (failed.length) {
    lines.push('', 'Runs without a result:');
    for (const r of failed) lines.push(`- ${r.optimizer} (${hyperText(r.hyper)}): ${r.error ?? 'diverged (non-finite loss)'}`);
  }
  return `${lines.join('\n')}\n`;
}

function plots(report: Report): { time: string; epoch: string } | undefined {
  const best = Object.values(report.best).map((i) => report.runs[i]);
  if (best.length === 0) return undefined;
  const series = (x: 'seconds' | 'epoch'): Series[] => best.map((r) => ({
    name: `${r.optimizer} (${hyperText(r.hyper)})`,
    points: r.steps.map((s) => ({ x: s[x], y: s.loss ?? NaN })),
  }));
  const common = { yLabel: 'training loss (minibatch, per sample)', yScale: 'log' as const, xMin: 0 };
  return {
    time: linePlot(series('seconds'), { ...common, xLabel: 'training seconds', title: `${report.description}: training loss vs time` }),
    epoch: linePlot(series('epoch'), { ...common, xLabel: 'epoch', title: `${report.description}: training loss vs epochs` }),
  };
}

function writeReport(dir: string, report: Report, optimizers: readonly OptimizerName[]): string {
  const md = markdown(report, optimizers);
  writeFileAtomic(join(dir, `${report.dataset}.json`), `${JSON.stringify(report)}\n`);
  writeFileAtomic(join(dir, `${report.dataset}.md`), md);
  const svg = plots(report);
  if (svg) {
    writeFileAtomic(join(dir, `${report.dataset}-loss-vs-time.svg`), svg.time);
    writeFileAtomic(join(dir, `${report.dataset}-loss-vs-epoch.svg`), svg.epoch);
  }
  return md;
}

// ---------------------------------------------------------------------------------------------
// Main

const DATASETS = {
  mnist: { description: 'MNIST autoencoder (bundled 10k digits)', load: () => ({ train: loadDataSpec('mnist', 'train'), test: loadDataSpec('mnist', 'test') }) },
  fashion: { description: 'Fashion-MNIST autoencoder', load: (dir: string) => ({ train: loadIdxDir(dir, 'train'), test: loadIdxDir(dir, 'test') }) },
} as const;
type DatasetName = keyof typeof DATASETS;

function list<T extends string>(value: string, allowed: readonly T[], flag: string): T[] {
  const items = value.split(',').map((s) => s.trim()).filter(Boolean);
  for (const item of items) if (!allowed.includes(item as T)) throw new Error(`${flag}: unknown '${item}'; choose from ${allowed.join(', ')}`);
  if (items.length === 0) throw new Error(`${flag} is empty`);
  return items as T[];
}

function positive(value: string | undefined, flag: string, integer = false): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!(n > 0) || !Number.isFinite(n) || (integer && !Number.isInteger(n))) throw new Error(`${flag} needs a positive ${integer ? 'integer' : 'number'}; got '${value}'`);
  return n;
}

function machine() {
  const require = createRequire(import.meta.url);
  return {
    cpu: cpus()[0]?.model ?? 'unknown CPU', cpus: cpus().length, os: `${platform()} ${release()}`,
    node: process.version, onnxruntime: (require('onnxruntime-node/package.json') as { version: string }).version, ep: 'cpu',
  };
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      datasets: { type: 'string', default: 'mnist,fashion' }, optimizers: { type: 'string', default: OPTIMIZERS.join(',') },
      seconds: { type: 'string', default: '60' }, epochs: { type: 'string' }, grid: { type: 'string', default: 'full' },
      out: { type: 'string', default: 'scripts/paper/results' }, 'fashion-dir': { type: 'string', default: '/usr/share/datasets/fashion-mnist' },
      // Re-run some optimizers and keep the other optimizers' runs from OUT/<dataset>.json.
      merge: { type: 'boolean' },
    },
    strict: true,
  });
  const datasets = list(values.datasets, Object.keys(DATASETS) as DatasetName[], '--datasets');
  const optimizers = list(values.optimizers, OPTIMIZERS, '--optimizers');
  const grid = list(values.grid, ['full', 'authors', 'lr'] as const, '--grid')[0];
  const budget: Budget = { seconds: positive(values.seconds, '--seconds')!, epochs: positive(values.epochs, '--epochs', true) ?? Infinity };

  const model = readModelFile(join(packageRoot(), MODEL));
  const backend = await createBackend('cpu');
  let done = 0;
  for (const dataset of datasets) {
    let data: { train: Dataset; test: Dataset };
    const fashionDir = values['fashion-dir'];
    if (dataset === 'fashion' && !existsSync(fashionDir)) {
      console.error(`fashion: skipped, ${fashionDir} does not exist (install the Debian package dataset-fashion-mnist, or pass --fashion-dir)`);
      continue;
    }
    try {
      data = dataset === 'mnist' ? DATASETS.mnist.load() : DATASETS.fashion.load(fashionDir);
    } catch (e) {
      console.error(`${dataset}: skipped, the data could not be loaded: ${(e as Error).message}`);
      continue;
    }
    const report: Report = {
      dataset, description: DATASETS[dataset].description, trainSamples: data.train.size, testSamples: data.test.size,
      settings: { model: MODEL, loss: LOSS, batchSize: BATCH, weightDecay: WEIGHT_DECAY, seconds: budget.seconds, epochs: finite(budget.epochs), grid, seed: 0 },
      machine: machine(), best: {}, runs: [],
    };
    let shown: readonly OptimizerName[] = optimizers;
    const previous = join(values.out, `${dataset}.json`);
    if (values.merge && existsSync(previous)) {
      const kept = (JSON.parse(readFileSync(previous, 'utf8')) as Report).runs.filter((r) => !optimizers.includes(r.optimizer as OptimizerName));
      report.runs.push(...kept);
      report.best = pickBest(report.runs);
      shown = OPTIMIZERS.filter((o) => optimizers.includes(o) || kept.some((r) => r.optimizer === o));
    }
    const points = optimizers.flatMap((name) => gridPoints(name, grid).map((hyper) => ({ name, hyper })));
    for (const [k, { name, hyper }] of points.entries()) {
      const run = await trainRun(backend, model, data.train, data.test, name, hyper, budget);
      report.runs.push(run);
      report.best = pickBest(report.runs);
      const result = run.error ? `failed: ${run.error}` : `${run.steps.length} steps, ${run.epochs.toFixed(2)} epochs in ${run.seconds.toFixed(1)} s, `
        + `train ${num(run.finalTrainLoss, 2)}, test ${num(run.finalTestLoss, 2)}${run.diverged ? ' (diverged)' : ''}`;
      console.error(`[${dataset} ${k + 1}/${points.length}] ${name} ${hyperText(hyper)}: ${result}`);
      writeReport(values.out, report, shown);
    }
    console.log(writeReport(values.out, report, shown));
    console.error(`wrote ${join(values.out, dataset)}{.json,.md,-loss-vs-time.svg,-loss-vs-epoch.svg}`);
    done++;
  }
  return done > 0 ? 0 : 1;
}

try {
  process.exitCode = await main();
} catch (e) {
  console.error(`reproduce-kbfgs: ${(e as Error).message}`);
  process.exitCode = 2;
}
