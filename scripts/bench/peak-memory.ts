// Peak resident memory of training each optimizer on the small ResNet and on a VGG-style CNN,
// against the floor of a plain forward+backward. Every measurement is its own child process,
// because the kernel's high-water mark (VmHWM) only ever grows within a process. ORT's first run
// of a session traces its allocations and the second allocates the planned pattern, so the peak
// settles from step 2 on: use --steps 2 or more.
// Usage: npx tsx scripts/bench/peak-memory.ts [--models resnet,vgg] [--optimizers sgd,adam,rmsprop,kfac,kfac-cnn,shampoo,kbfgs,kbfgs-l,kfqn,kfqn-l,kfqn-l-lbfgs,kfqn-l-lbfgs-interval10,kfqn-l-lbfgs-factor-interval10] [--steps 5] [--batch 32]
// Prints one JSON object; progress goes to stderr. Memory is in MiB (the kernel's kB are KiB).
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { buildTrainingGraph, encodeModel, type onnx } from '../../graph-tools/index.js';
import { mulberry32, type Batch } from '../../lib/data/index.js';
import { readModelFile } from '../../lib/io/files.js';
import { optimizerStateReport } from '../../lib/optim/index.js';
import { createBackend } from '../../lib/runtime/node.js';
import type { Tensor } from '../../lib/runtime/index.js';
import { Trainer, type TrainerOptions } from '../../lib/train/trainer.js';
import { benchOptimizer, machine } from './common.js';
import { buildVggStyle } from './vgg-model.js';

type OptimizerChoice = TrainerOptions['optimizer'];

const models: Record<string, { load: () => onnx.ModelProto; sampleShape: number[]; classes: number }> = {
  resnet: { load: () => readModelFile('models/resnet-small.onnx'), sampleShape: [1, 28, 28], classes: 10 },
  vgg: { load: () => buildVggStyle(), sampleShape: [3, 32, 32], classes: 10 },
};

// Hyper-parameters do not change memory: the per-step benches' optimizers (no warm starts, which
// keeps each child quick), and KF-QN(L) with an L-BFGS A side and the curvature every 10 steps
// (from H0 = γI, or from both factor starts).
const optimizers: Record<string, () => OptimizerChoice> = {
  ...Object.fromEntries(['sgd', 'adam', 'rmsprop', 'kfac', 'kfac-cnn', 'shampoo', 'kbfgs', 'kbfgs-l', 'kfqn', 'kfqn-l', 'kfqn-l-lbfgs'].map((name) => [name, () => benchOptimizer(name)])),
  'kfqn-l-lbfgs-interval10': () => benchOptimizer('kfqn-l-lbfgs', 10),
  'kfqn-l-lbfgs-factor-interval10': () => benchOptimizer('kfqn-l-lbfgs-factor', 10),
};

/** The child's no-optimizer run: one forward+backward session, as step-time.ts's floor. */
const FLOOR = 'floor';
const spec = { kind: 'cross-entropy' as const, reduction: 'mean' as const };

/** What one child prints: its measurements, and the error that cut it short, if any. */
interface ChildResult {
  peak_rss_mb?: number;
  baseline_rss_mb?: number;
  state_bytes?: number;
  parameter_bytes?: number;
  state_over_parameters?: number;
  error?: string;
}

const { values } = parseArgs({ options: {
  models: { type: 'string', default: 'resnet,vgg' },
  optimizers: { type: 'string', default: Object.keys(optimizers).join(',') },
  steps: { type: 'string', default: '5' }, batch: { type: 'string', default: '32' },
  child: { type: 'boolean', default: false }, model: { type: 'string' }, optimizer: { type: 'string' },
} });
const steps = Number(values.steps);
const batchSize = Number(values.batch);

if (values.child) console.log(JSON.stringify(await child(values.model!, values.optimizer!)));
else await parent();

async function parent(): Promise<void> {
  const modelNames = values.models!.split(',');
  const optimizerNames = values.optimizers!.split(',');
  for (const m of modelNames) if (!models[m]) throw new Error(`unknown model '${m}'; use ${Object.keys(models).join(', ')}`);
  for (const o of optimizerNames) if (!optimizers[o]) throw new Error(`unknown optimizer '${o}'; use ${Object.keys(optimizers).join(', ')}`);
  const script = fileURLToPath(import.meta.url);
  const repoRoot = fileURLToPath(new URL('../../', import.meta.url));

  const rows = [];
  for (const model of modelNames) {
    let floorPeak: number | undefined;
    for (const optimizer of [FLOOR, ...optimizerNames]) {
      process.stderr.write(`${model} ${optimizer} ... `);
      const r = spawnSync(process.execPath, ['--expose-gc', '--import', 'tsx', script, '--child', '--model', model, '--optimizer', optimizer, '--steps', String(steps), '--batch', String(batchSize)], { cwd: repoRoot, encoding: 'utf8' });
      const result = parseChild(r.stdout) ?? { error: `child exited with ${r.signal ?? `status ${r.status}`}: ${r.stderr.trim().split('\n').slice(-5).join('\n')}` };
      if (optimizer === FLOOR) floorPeak = result.error ? undefined : result.peak_rss_mb;
      const overFloor = result.peak_rss_mb !== undefined && floorPeak !== undefined ? { peak_over_floor_mb: round(result.peak_rss_mb - floorPeak) } : {};
      rows.push({ model, optimizer, ...result, ...overFloor });
      process.stderr.write(result.error ? `error: ${result.error.split('\n')[0]}\n` : `${result.peak_rss_mb} MiB\n`);
    }
  }
  console.log(JSON.stringify({ bench: 'peak-memory', machine: machine(), batch: batchSize, steps, rows }, null, 2));
}

/** The child's JSON line; undefined when it died before printing one. */
function parseChild(stdout: string): ChildResult | undefined {
  const last = stdout.trim().split('\n').pop();
  try { return last ? JSON.parse(last) as ChildResult : undefined; } catch { return undefined; }
}

async function child(modelName: string, optimizerName: string): Promise<ChildResult> {
  const result: ChildResult = {};
  try {
    const backend = await createBackend('cpu');
    const { load, sampleShape, classes } = models[modelName];
    const model = load();
    const batch = randomBatch(batchSize, sampleShape, classes);
    collectGarbage();
    result.baseline_rss_mb = round(memoryStatusKiB('VmRSS') / 1024);

    if (optimizerName === FLOOR) {
      const tg = buildTrainingGraph(model, spec);
      const session = await backend.createSession(encodeModel(tg.toModel()), { name: 'forward+backward' });
      const feeds: Record<string, Tensor> = {
        [tg.dataInputs[0].name]: backend.tensor('float32', batch.inputs, [batch.size, ...sampleShape]),
        [tg.target.name]: backend.tensor('int64', batch.labels!, [batch.size]),
      };
      for (const [p, v] of tg.initialParameters) feeds[p] = backend.tensor('float32', v.data as Float32Array, v.dims);
      for (let i = 0; i < steps; i++) { await session.run(feeds); collectGarbage(); }
      result.peak_rss_mb = round(memoryStatusKiB('VmHWM') / 1024);
    } else {
      const optimizer = optimizers[optimizerName]();
      const trainer = await Trainer.create(backend, model, { ...spec, optimizer, target: 'label' });
      for (let i = 0; i < steps; i++) { await trainer.trainStep(batch); collectGarbage(); }
      result.peak_rss_mb = round(memoryStatusKiB('VmHWM') / 1024);
      // After the peak is read, so that building the report does not count towards it.
      const report = optimizerStateReport(model, optimizer);
      Object.assign(result, { state_bytes: report.stateBytes, parameter_bytes: report.parameterBytes, state_over_parameters: round(report.stateBytes / report.parameterBytes) });
    }
  } catch (e) {
    result.error = e instanceof Error ? e.message : String(e);
  }
  return result;
}

/**
 * Session outputs come back as ArrayBuffers that V8 frees lazily (its heap is small, so it rarely
 * collects): without a collection after each step the peak grows with the step count, by how far
 * the collector lags, rather than showing what one step needs.
 */
function collectGarbage(): void { globalThis.gc!(); }

/** A field of /proc/self/status, in KiB: VmRSS now, or VmHWM, the peak since the process started. */
function memoryStatusKiB(field: 'VmRSS' | 'VmHWM'): number {
  const match = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync('/proc/self/status', 'utf8'));
  if (!match) throw new Error(`no ${field} in /proc/self/status (this benchmark needs Linux)`);
  return Number(match[1]);
}

/** Uniform inputs in [0, 1) and uniform labels, from a fixed seed. */
function randomBatch(size: number, sampleShape: number[], classes: number): Batch {
  const uniform = mulberry32(1);
  const inputs = new Float32Array(size * sampleShape.reduce((a, d) => a * d, 1));
  for (let i = 0; i < inputs.length; i++) inputs[i] = uniform();
  const labels = BigInt64Array.from({ length: size }, () => BigInt(Math.floor(uniform() * classes)));
  return { index: 0, epoch: 0, size, inputs, labels };
}

function round(mib: number): number { return Math.round(mib * 10) / 10; }
