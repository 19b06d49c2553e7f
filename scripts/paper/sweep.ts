// Shared by the optimizer sweeps (scripts/paper/reproduce-kbfgs.ts, scripts/bench/cnn-fashion.ts):
// a grid of hyper-parameters per optimizer, each point trained for the same wall-clock budget with
// evaluations off the clock, the best point per optimizer picked by final training loss, and a
// report (JSON, a Markdown table, training loss vs time and vs epochs as SVG) rewritten after every
// run, so an interrupted sweep keeps what it finished.
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { cpus, platform, release } from 'node:os';
import { join } from 'node:path';
import { batches, batchesPerEpoch, type Dataset } from '../../lib/data/index.js';
import { writeFileAtomic } from '../../lib/io/files.js';
import type { Backend } from '../../lib/runtime/backend.js';
import { Trainer, type TrainerOptions } from '../../lib/train/trainer.js';
import type { onnx } from '../../graph-tools/index.js';
import { linePlot, type Series } from './svg-plot.js';

/** A grid point: numbers (α, λ, …) and the names of discrete choices. */
export type Hyper = Record<string, number | string>;
export interface Budget { seconds: number; epochs: number }

/** A run whose loss stays non-finite this many steps in a row has diverged: stop spending budget on it. */
const MAX_NONFINITE = 5;

export const round = (v: number, digits: number) => Number(v.toFixed(digits));
export const finite = (v: number) => (Number.isFinite(v) ? v : null);
export const num = (v: number | null | undefined, digits: number) => (v === null || v === undefined ? '—' : v.toFixed(digits));

/** Every combination of the values, the first key varying slowest. */
export function gridProduct(grid: Record<string, (number | string)[]>): Hyper[] {
  let points: Hyper[] = [{}];
  for (const [key, values] of Object.entries(grid)) points = points.flatMap((p) => values.map((v) => ({ ...p, [key]: v })));
  return points;
}

// ---------------------------------------------------------------------------------------------
// One run

export interface StepRecord { step: number; epoch: number; seconds: number; loss: number | null }
export interface EvalRecord { step: number; epoch: number; seconds: number; loss: number | null; accuracy?: number | null }
export interface Run<N extends string = string> {
  optimizer: N;
  hyper: Hyper;
  /** Every option the optimizer resolved, defaults included. */
  options?: Record<string, unknown>;
  steps: StepRecord[];
  /** Held-out evaluations: after every epoch, at the end of the budget, and every `evaluateEvery` seconds. */
  evaluations: EvalRecord[];
  epochs: number;
  /** Training seconds: the budget clock, which skips evaluations and the warm start. */
  seconds: number;
  warmStartSeconds: number;
  secondsPerStep: number | null;
  /** The tuning criterion: lowest wins (each sweep says how it is measured). */
  finalTrainLoss: number | null;
  finalTestLoss: number | null;
  diverged: boolean;
  error?: string;
  /** Classifiers: the accuracy of the last evaluation. */
  finalTestAccuracy?: number | null;
  /** The mean of the per-step seconds, where secondsPerStep is their median. */
  meanSecondsPerStep?: number | null;
  /** Seconds of one forward+backward pass of the same training graph, and secondsPerStep over it. */
  floorSeconds?: number;
  floorRatio?: number | null;
}

export interface SweepSetup<N extends string> {
  backend: Backend;
  model: onnx.ModelProto;
  train: Dataset;
  batchSize: number;
  budget: Budget;
  /** Everything the Trainer takes but the optimizer. */
  trainer: Omit<TrainerOptions, 'optimizer'>;
  makeOptimizer(name: N, hyper: Hyper): TrainerOptions['optimizer'];
  /** The held-out loss (and accuracy) of the current parameters; off the clock. */
  measure(t: Trainer): Promise<{ loss: number | null; accuracy?: number | null }>;
  /** Also evaluate every this many training seconds (default: after every epoch and at the end only). */
  evaluateEvery?: number;
  /** After the budget: the final training loss and seconds per step. `durations` holds every step's seconds, summing to `seconds`. */
  finish(t: Trainer, run: Run<N>, clock: { seconds: number; durations: number[] }): Promise<void>;
}

export async function trainRun<N extends string>(setup: SweepSetup<N>, name: N, hyper: Hyper): Promise<Run<N>> {
  const { train, batchSize, budget } = setup;
  const run: Run<N> = {
    optimizer: name, hyper, steps: [], evaluations: [], epochs: 0, seconds: 0, warmStartSeconds: 0,
    secondsPerStep: null, finalTrainLoss: null, finalTestLoss: null, diverged: false,
  };
  let trainer: Trainer | undefined;
  try {
    const optimizer = setup.makeOptimizer(name, hyper);
    run.options = { ...optimizer.options };
    const t = trainer = await Trainer.create(setup.backend, setup.model, { ...setup.trainer, optimizer });
    // What fit() does before its first step: the one-pass warm start of the curvature factors.
    if ((optimizer.options as { warmStart?: boolean }).warmStart) {
      const t0 = performance.now();
      await t.warmStart(train, batchSize);
      run.warmStartSeconds = round((performance.now() - t0) / 1000, 3);
    }
    // Our own loop rather than fit(): fit() cannot stop on a time budget mid-epoch, and its clock
    // would charge the per-epoch evaluations to the optimizer.
    const perEpoch = batchesPerEpoch(train.size, batchSize);
    const durations: number[] = [];
    let seconds = 0; let epoch = 0; let nonFinite = 0;
    let nextEvaluation = setup.evaluateEvery ?? Infinity;
    const evaluate = async () => {
      if (run.evaluations.at(-1)?.step === t.step) return;
      const measured = await setup.measure(t);
      run.evaluations.push({ step: t.step, epoch: round(run.epochs, 4), seconds: round(seconds, 3), ...measured });
    };
    for (; epoch < budget.epochs && seconds < budget.seconds && !run.diverged; epoch++) {
      let mark = performance.now();
      for (const batch of batches(train, { batchSize, shuffle: true, seed: 0, epoch })) {
        const { loss } = await t.trainStep(batch);
        const now = performance.now();
        durations.push((now - mark) / 1000);
        seconds += (now - mark) / 1000;
        mark = now;
        run.epochs = epoch + (batch.index + 1) / perEpoch;
        run.steps.push({ step: t.step, epoch: round(run.epochs, 4), seconds: round(seconds, 3), loss: finite(loss) });
        nonFinite = Number.isFinite(loss) ? 0 : nonFinite + 1;
        if (nonFinite >= MAX_NONFINITE) run.diverged = true;
        if (run.diverged || seconds >= budget.seconds) break;
        if (seconds >= nextEvaluation) {
          await evaluate();
          while (nextEvaluation <= seconds) nextEvaluation += setup.evaluateEvery!;
          mark = performance.now();
        }
      }
      await evaluate();
    }
    run.seconds = round(seconds, 3);
    run.finalTestLoss = run.evaluations.at(-1)?.loss ?? null;
    await setup.finish(t, run, { seconds, durations });
  } catch (e) {
    run.error = (e as Error).message;
  } finally {
    await trainer?.dispose();
  }
  return run;
}

// ---------------------------------------------------------------------------------------------
// Reports

export interface Report<N extends string = string> {
  dataset: string;
  description: string;
  trainSamples: number;
  testSamples: number;
  settings: Record<string, unknown>;
  machine: Record<string, unknown>;
  /** Per optimizer, the index into runs of the lowest final training loss. */
  best: Partial<Record<N, number>>;
  runs: Run<N>[];
}

const SYMBOL: Record<string, string> = { lr: 'α', damping: 'λ', epsilon: 'ε' };
export const hyperText = (h: Hyper) => Object.entries(h).map(([k, v]) => `${SYMBOL[k] ?? k} ${v}`).join(', ');

export function pickBest<N extends string>(runs: Run<N>[]): Report<N>['best'] {
  const best: Report<N>['best'] = {};
  runs.forEach((r, i) => {
    if (r.finalTrainLoss === null) return;
    const j = best[r.optimizer];
    if (j === undefined || r.finalTrainLoss < runs[j].finalTrainLoss!) best[r.optimizer] = i;
  });
  return best;
}

export function machine() {
  const require = createRequire(import.meta.url);
  return {
    cpu: cpus()[0]?.model ?? 'unknown CPU', cpus: cpus().length, os: `${platform()} ${release()}`,
    node: process.version, onnxruntime: (require('onnxruntime-node/package.json') as { version: string }).version, ep: 'cpu',
  };
}

export const machineText = (m: Report['machine']) => `${m.cpu} ×${m.cpus}, node ${m.node}, onnxruntime-node ${m.onnxruntime}.`;

/** A column of the results table after the optimizer and its best hyper-parameters. */
export interface Column<N extends string> { header: string; cell(run: Run<N>): string }

/** The title, the caller's settings paragraph, one row per optimizer (its best run), and the runs without a result. */
export function markdown<N extends string>(report: Report<N>, optimizers: readonly N[], settings: string, columns: Column<N>[]): string {
  const lines = [
    `## ${report.description}: ${report.trainSamples} train / ${report.testSamples} test`,
    '',
    settings,
    '',
    `| optimizer | best hyper-parameters | ${columns.map((c) => c.header).join(' | ')} | runs |`,
    `|---|---|${'---|'.repeat(columns.length)}---|`,
  ];
  for (const name of optimizers) {
    const runs = report.runs.filter((r) => r.optimizer === name);
    const i = report.best[name];
    if (i === undefined) lines.push(`| ${name} | no finite result |${' |'.repeat(columns.length)} ${runs.length} |`);
    else {
      const r = report.runs[i];
      lines.push(`| ${name} | ${hyperText(r.hyper)} | ${columns.map((c) => c.cell(r)).join(' | ')} | ${runs.length} |`);
    }
  }
  const failed = report.runs.filter((r) => r.error || r.diverged);
  if (failed.length) {
    lines.push('', 'Runs without a result:');
    for (const r of failed) lines.push(`- ${r.optimizer} (${hyperText(r.hyper)}): ${r.error ?? 'diverged (non-finite loss)'}`);
  }
  return `${lines.join('\n')}\n`;
}

/** Trailing means over `window` finite values (NaN until the first one); window 1 keeps the values. */
export function trailingMean(values: readonly (number | null)[], window: number): number[] {
  const kept: number[] = [];
  return values.map((v) => {
    if (v !== null && Number.isFinite(v)) kept.push(v);
    if (v === null || !Number.isFinite(v)) return NaN;
    const last = kept.slice(-window);
    return last.reduce((a, b) => a + b, 0) / last.length;
  });
}

export interface PlotSettings { yLabel: string; /** Plot the trailing mean of this many minibatch losses (default 1: the losses). */ window?: number }

function plots(report: Report, p: PlotSettings): { time: string; epoch: string } | undefined {
  const best = Object.values<number>(report.best as Record<string, number>).map((i) => report.runs[i]);
  if (best.length === 0) return undefined;
  const series = (x: 'seconds' | 'epoch'): Series[] => best.map((r) => {
    const y = trailingMean(r.steps.map((s) => s.loss), p.window ?? 1);
    return { name: `${r.optimizer} (${hyperText(r.hyper)})`, points: r.steps.map((s, k) => ({ x: s[x], y: y[k] })) };
  });
  const common = { yLabel: p.yLabel, yScale: 'log' as const, xMin: 0 };
  return {
    time: linePlot(series('seconds'), { ...common, xLabel: 'training seconds', title: `${report.description}: training loss vs time` }),
    epoch: linePlot(series('epoch'), { ...common, xLabel: 'epoch', title: `${report.description}: training loss vs epochs` }),
  };
}

/** Writes OUT/<dataset>.json, .md, -loss-vs-time.svg and -loss-vs-epoch.svg; returns the Markdown. */
export function writeReport(dir: string, report: Report, md: string, plot: PlotSettings): string {
  writeFileAtomic(join(dir, `${report.dataset}.json`), `${JSON.stringify(report)}\n`);
  writeFileAtomic(join(dir, `${report.dataset}.md`), md);
  const svg = plots(report, plot);
  if (svg) {
    writeFileAtomic(join(dir, `${report.dataset}-loss-vs-time.svg`), svg.time);
    writeFileAtomic(join(dir, `${report.dataset}-loss-vs-epoch.svg`), svg.epoch);
  }
  return md;
}

export interface Sweep<N extends string> {
  report: Report<N>;
  /** All optimizers in table order, and the ones to run now. */
  all: readonly N[];
  optimizers: readonly N[];
  points: { name: N; hyper: Hyper }[];
  out: string;
  /** Keep the runs of the optimizers not re-run from OUT/<dataset>.json. */
  merge?: boolean;
  run(name: N, hyper: Hyper): Promise<Run<N>>;
  /** The progress line's result part of a run that finished (loss, accuracy). */
  summary(run: Run<N>): string;
  /** The Markdown of the report, its table listing `shown`. */
  markdown(report: Report<N>, shown: readonly N[]): string;
  plot: PlotSettings;
}

/** Runs every point, rewriting the report after each; prints the final Markdown. */
export async function sweep<N extends string>(s: Sweep<N>): Promise<void> {
  const { report, optimizers, out } = s;
  let shown: readonly N[] = optimizers;
  const previous = join(out, `${report.dataset}.json`);
  if (s.merge && existsSync(previous)) {
    const kept = (JSON.parse(readFileSync(previous, 'utf8')) as Report<N>).runs.filter((r) => !optimizers.includes(r.optimizer));
    report.runs.push(...kept);
    report.best = pickBest(report.runs);
    shown = s.all.filter((o) => optimizers.includes(o) || kept.some((r) => r.optimizer === o));
  }
  const write = () => writeReport(out, report, s.markdown(report, shown), s.plot);
  for (const [k, { name, hyper }] of s.points.entries()) {
    const run = await s.run(name, hyper);
    report.runs.push(run);
    report.best = pickBest(report.runs);
    const result = run.error ? `failed: ${run.error}` : `${run.steps.length} steps, ${run.epochs.toFixed(2)} epochs in ${run.seconds.toFixed(1)} s, `
      + `${s.summary(run)}${run.diverged ? ' (diverged)' : ''}`;
    console.error(`[${report.dataset} ${k + 1}/${s.points.length}] ${name} ${hyperText(hyper)}: ${result}`);
    write();
  }
  console.log(write());
  console.error(`wrote ${join(out, report.dataset)}{.json,.md,-loss-vs-time.svg,-loss-vs-epoch.svg}`);
}

// ---------------------------------------------------------------------------------------------
// Command line

export function list<T extends string>(value: string, allowed: readonly T[], flag: string): T[] {
  const items = value.split(',').map((s) => s.trim()).filter(Boolean);
  for (const item of items) if (!allowed.includes(item as T)) throw new Error(`${flag}: unknown '${item}'; choose from ${allowed.join(', ')}`);
  if (items.length === 0) throw new Error(`${flag} is empty`);
  return items as T[];
}

export function positive(value: string | undefined, flag: string, integer = false): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!(n > 0) || !Number.isFinite(n) || (integer && !Number.isInteger(n))) throw new Error(`${flag} needs a positive ${integer ? 'integer' : 'number'}; got '${value}'`);
  return n;
}
