// KFAC and Shampoo as the K-BFGS papers ran them (ALGORITHMS.md §7.4, §7.5): the same gradient
// momentum, L2 and Kronecker layers as K-BFGS; per layer a left and a right factor, refreshed as
// EMAs every `statInterval` steps, and their damped inverses (KFAC) or inverse fourth roots
// (Shampoo) recomputed every `inverseInterval` / `rootInterval` steps. The graphs are built in
// factored-graphs.ts; lib/train/factored-engine.ts drives them.

import { withLrSchedule, type Scheduled } from './schedule.js';

interface FactoredCommon extends Scheduled {
  /** α: learning rate. */
  lr?: number;
  /** EMA decay of the factors (default 0.9). */
  statDecay?: number;
  /** ρ: momentum of the gradient, dampened form m ← ρm + (1−ρ)ĝ (default 0.9). */
  momentum?: number;
  /** τ: L2 coefficient added to the gradient (default 1e-5). */
  weightDecay?: number;
  /** Apply τ as decoupled weight decay θ ← θ − α·τ·θ instead of L2 in the gradient (default false). */
  decoupledWeightDecay?: boolean;
  /** Refresh the factors every this many steps (default 1; the authors used 10 for CNNs). */
  statInterval?: number;
  /** Initialise the factors with one pass over the training set (default true, as the authors). */
  warmStart?: boolean;
}

export interface KfacOptions extends FactoredCommon {
  /** λ: √λ is added to each factor before inversion (default 3, the authors' MNIST autoencoder value; α default 1). */
  damping?: number;
  /** Recompute the inverses every this many steps, and at each of the first that many (default 20). */
  inverseInterval?: number;
  /** G from targets sampled from the model (the Fisher, default) or from the data's targets (the empirical Fisher). */
  fisher?: 'sampled' | 'empirical';
  /**
   * The authors' KFAC code's decay at the k-th factor refresh (0-based): β_k = min(1 − 1/(k+1), statDecay)
   * (default true). The factors restart from step 0's batch and are a running mean until β reaches
   * statDecay, so a warm start has no effect and is not run; false: β = statDecay from the warm start.
   */
  statWarmup?: boolean;
}

export interface ShampooOptions extends FactoredCommon {
  /** ε added to each factor before its inverse fourth root (default 10, tuned with α = 0.1 on the MNIST autoencoder, whose summed loss makes the factors large). */
  epsilon?: number;
  /** Recompute the roots every this many steps (default 20). */
  rootInterval?: number;
  /** Coupled Newton iterations per root (default 25; graph-tools/kernels/roots.ts). */
  rootIterations?: number;
}

export type FactoredOptimizer =
  | { readonly kind: 'factored'; readonly name: 'kfac'; readonly options: Readonly<Required<Omit<KfacOptions, 'lrSchedule'>> & Scheduled>; learningRate(t: number): number }
  | { readonly kind: 'factored'; readonly name: 'shampoo'; readonly options: Readonly<Required<Omit<ShampooOptions, 'lrSchedule'>> & Scheduled>; learningRate(t: number): number };

function check(r: Required<Omit<FactoredCommon, 'lrSchedule'>>, positive: Record<string, number>, intervals: Record<string, number>): void {
  for (const [k, v] of Object.entries({ lr: r.lr, weightDecay: r.weightDecay })) {
    if (!(v >= 0) || !Number.isFinite(v)) throw new RangeError(`${k} must be a finite number ≥ 0, got ${v}`);
  }
  for (const [k, v] of Object.entries(positive)) if (!(v > 0) || !Number.isFinite(v)) throw new RangeError(`${k} must be a finite number > 0, got ${v}`);
  for (const [k, v] of Object.entries({ statDecay: r.statDecay, momentum: r.momentum })) {
    if (!(v >= 0 && v < 1)) throw new RangeError(`${k} must lie in [0, 1), got ${v}`);
  }
  for (const [k, v] of Object.entries({ statInterval: r.statInterval, ...intervals })) {
    if (!Number.isInteger(v) || v < 1) throw new RangeError(`${k} must be an integer ≥ 1, got ${v}`);
  }
}

const common = { statDecay: 0.9, momentum: 0.9, weightDecay: 1e-5, decoupledWeightDecay: false, statInterval: 1, warmStart: true };

export function kfac({ lrSchedule, ...options }: KfacOptions = {}): FactoredOptimizer {
  const o = { lr: 1, damping: 3, inverseInterval: 20, fisher: 'sampled' as const, statWarmup: true, ...common, ...options };
  if (o.fisher !== 'sampled' && o.fisher !== 'empirical') throw new RangeError(`fisher must be 'sampled' or 'empirical', got '${o.fisher}'`);
  check(o, { damping: o.damping }, { inverseInterval: o.inverseInterval });
  return { kind: 'factored', name: 'kfac', ...withLrSchedule(o, lrSchedule) };
}

export function shampoo({ lrSchedule, ...options }: ShampooOptions = {}): FactoredOptimizer {
  const o = { lr: 0.1, epsilon: 10, rootInterval: 20, rootIterations: 25, ...common, ...options };
  check(o, { epsilon: o.epsilon }, { rootInterval: o.rootInterval, rootIterations: o.rootIterations });
  return { kind: 'factored', name: 'shampoo', ...withLrSchedule(o, lrSchedule) };
}
