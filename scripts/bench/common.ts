// Shared by the benchmarks: medians of timed runs after warm-up, what machine ran them, and the
// optimizers the per-step benches compare.
import { cpus } from 'node:os';
import { buildTrainingGraph } from '../../graph-tools/index.js';
import { batches } from '../../lib/data/index.js';
import { loadBundledMnist } from '../../lib/data/node.js';
import { readModelFile } from '../../lib/io/files.js';
import { adam, kbfgs, kbfgsL, kfac, kfqn, kfqnL, rmsprop, sgd, shampoo } from '../../lib/optim/index.js';
import type { Backend, Tensor } from '../../lib/runtime/index.js';
import type { TrainerOptions } from '../../lib/train/trainer.js';

export const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** Seconds per call of `fn`: `runs` timed calls after `warmup` untimed ones. */
export async function timeRuns(fn: () => Promise<unknown>, runs: number, warmup = 3): Promise<number[]> {
  for (let i = 0; i < warmup; i++) await fn();
  const out: number[] = [];
  for (let i = 0; i < runs; i++) { const t = performance.now(); await fn(); out.push((performance.now() - t) / 1000); }
  return out;
}

export function machine() {
  return { cpus: cpus().length, model: cpus()[0]?.model, node: process.version };
}

type Optimizer = TrainerOptions['optimizer'];

/**
 * The per-step benches' optimizers by name (step-time.ts, flop-ratio.ts): the authors' settings on
 * the autoencoder, without warm starts; K-BFGS and KF-QN with the given curvature interval.
 */
export function benchOptimizer(name: string, curvatureInterval = 1): Optimizer {
  const qn = { lr: 0.3, damping: 0.3, curvatureInterval };
  const optimizers: Record<string, () => Optimizer> = {
    sgd: () => sgd({ lr: 0.01, momentum: 0.9 }), adam: () => adam({ lr: 1e-3 }), rmsprop: () => rmsprop({ lr: 1e-3 }),
    kbfgs: () => kbfgs({ ...qn, warmStart: false }), 'kbfgs-l': () => kbfgsL({ ...qn, warmStart: false }),
    kfac: () => kfac({ warmStart: false }), shampoo: () => shampoo({ warmStart: false }),
    // The authors' CNN frequencies (ALGORITHMS.md §7.4): factors every 10 steps, inverses every 100.
    // α 0.1: at α 1 the repeated batch makes it diverge here within 12 steps (then every step is skipped).
    'kfac-cnn': () => kfac({ lr: 0.1, warmStart: false, statInterval: 10, inverseInterval: 100 }),
    kfqn: () => kfqn(qn), 'kfqn-l': () => kfqnL(qn), 'kfqn-l-lbfgs': () => kfqnL({ ...qn, aSide: 'lbfgs' }),
    // The CNN benchmark's first-order-sized setting: both L-BFGS sides from their factor starts.
    'kfqn-l-lbfgs-factor': () => kfqnL({ ...qn, aSide: 'lbfgs', aInit: 'factor', gInit: 'factor' }),
  };
  const make = optimizers[name];
  if (!make) throw new Error(`unknown optimizer '${name}'; one of ${Object.keys(optimizers).join(', ')}`);
  return make();
}

/**
 * Steps per refresh: KFAC's inverse interval, Shampoo's root interval, K-BFGS's and KF-QN's
 * curvature interval; 1 for the first-order methods. Per-step figures are averaged over whole ones.
 */
export function intervalOf(o: Optimizer): number {
  if (o.kind === 'factored') return o.name === 'kfac' ? o.options.inverseInterval : o.options.rootInterval;
  return o.kind === 'kronecker' ? o.options.curvatureInterval : 1;
}

/**
 * What the per-step benches run on: the model (the paper's autoencoder, BCE on its own input, batch
 * 1000; or a classifier on the digits' labels, batch 128), the bundled digits' first batch, and the
 * floor: the training graph (loss and every parameter gradient) with its feeds.
 */
export function stepBenchSetup(backend: Backend, modelPath: string, batchOption?: string) {
  const autoencoder = modelPath.includes('autoencoder');
  const batchSize = Number(batchOption ?? (autoencoder ? 1000 : 128));
  const model = readModelFile(modelPath);
  const batch = batches(loadBundledMnist(), { batchSize, shuffle: false, seed: 0, epoch: 0 }).next().value!;
  const spec = autoencoder ? { kind: 'bce-with-logits' as const, reduction: 'per-sample-sum' as const } : { kind: 'cross-entropy' as const, reduction: 'mean' as const };
  const tg = buildTrainingGraph(model, { ...spec });
  const inputDims = [batch.size, ...(tg.dataInputs[0].type.shape!.slice(1) as number[])];
  const floorFeeds: Record<string, Tensor> = {
    [tg.dataInputs[0].name]: backend.tensor('float32', batch.inputs, inputDims),
    [tg.target.name]: autoencoder ? backend.tensor('float32', batch.inputs, inputDims) : backend.tensor('int64', batch.labels!, [batch.size]),
  };
  for (const [p, v] of tg.initialParameters) floorFeeds[p] = backend.tensor('float32', v.data as Float32Array, v.dims);
  return { model, spec, autoencoder, batch, tg, floorFeeds };
}
