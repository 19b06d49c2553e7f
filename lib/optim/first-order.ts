// SGD (momentum, Nesterov, weight decay) and Adam/AdamW with PyTorch's semantics.
import type { Emitter } from '../../graph-tools/index.js';
import type { ElementwiseOptimizer, ParameterUpdate, ParameterUpdateInputs } from './optimizer.js';
import { withLrSchedule, type Scheduled } from './schedule.js';

export interface WeightDecayOptions {
  /** Weight decay coefficient (default 0). */
  weightDecay?: number;
  /** true: decoupled (AdamW-style θ ← θ − lr·wd·θ); false: L2 added to the gradient (default). */
  decoupledWeightDecay?: boolean;
}

export interface SgdOptions extends WeightDecayOptions, Scheduled {
  lr?: number;
  momentum?: number;
  dampening?: number;
  nesterov?: boolean;
  /**
   * The K-BFGS papers' SGD-m (ALGORITHMS.md §7.1): m ← 0.9m + 0.1ĝ from m = 0 (PyTorch starts its
   * buffer at the first gradient), θ ← θ − α·m; momentum and dampening default to 0.9, L2 τ to 1e-5.
   */
  paperCompat?: boolean;
}

export interface AdamOptions extends WeightDecayOptions, Scheduled {
  lr?: number;
  beta1?: number;
  /** Default 0.999; 0.9 with paperCompat. */
  beta2?: number;
  /** Default 1e-8; 1e-4 with paperCompat (the authors' code). */
  eps?: number;
  /**
   * The K-BFGS authors' Adam (ALGORITHMS.md §7.3): v is the EMA of the bias-corrected first moment's
   * square, m̂², instead of g²; β2 defaults to 0.9, ε to 1e-4 and L2 τ to 1e-5, as in their code.
   */
  paperCompat?: boolean;
}

function mul(e: Emitter, a: string, b: string): string { return e.op('Mul', [a, b]); }

/** Shared by every method: L2 in the gradient, or the decoupled decay of the parameter. */
function applyWeightDecay(e: Emitter, p: ParameterUpdateInputs, o: WeightDecayOptions): { param: string; grad: string } {
  const wd = o.weightDecay ?? 0;
  if (wd === 0) return { param: p.param, grad: p.grad };
  if (o.decoupledWeightDecay) return { param: mul(e, p.param, p.scalar('decay')), grad: p.grad };
  return { param: p.param, grad: e.op('Add', [p.grad, mul(e, p.param, p.scalar('l2'))]) };
}

function weightDecayScalars(o: WeightDecayOptions, lr: number): Record<string, number> {
  const wd = o.weightDecay ?? 0;
  if (wd === 0) return {};
  return o.decoupledWeightDecay ? { decay: 1 - lr * wd } : { l2: wd };
}

export function sgd({ lrSchedule, ...options }: SgdOptions = {}): ElementwiseOptimizer {
  const paper = options.paperCompat === true;
  const o = {
    lr: 0.01, momentum: paper ? 0.9 : 0, dampening: paper ? 0.9 : 0, nesterov: false, weightDecay: paper ? 1e-5 : 0, decoupledWeightDecay: false,
    paperCompat: false, ...options,
  };
  if (o.nesterov && (o.momentum <= 0 || o.dampening !== 0)) throw new RangeError('Nesterov momentum needs momentum > 0 and dampening 0');
  checkNonNegative({ lr: o.lr, momentum: o.momentum, weightDecay: o.weightDecay });
  const withMomentum = o.momentum !== 0;
  return {
    kind: 'elementwise',
    name: 'sgd',
    ...withLrSchedule(o, lrSchedule),
    stateNames: withMomentum ? ['momentum'] : [],
    // PyTorch starts the buffer at the first gradient (no dampening on step 1); the papers at zero.
    scalars: (t, lr) => ({ ...weightDecayScalars(o, lr), neglr: -lr, mu: o.momentum, damp: t === 1 && !o.paperCompat ? 1 : 1 - o.dampening }),
    emitUpdate(e, p): ParameterUpdate {
      const { param, grad } = applyWeightDecay(e, p, o);
      if (!withMomentum) return { param: e.op('Add', [param, mul(e, grad, p.scalar('neglr'))]), state: {} };
      const buf = e.op('Add', [mul(e, p.state.momentum, p.scalar('mu')), mul(e, grad, p.scalar('damp'))]);
      const direction = o.nesterov ? e.op('Add', [grad, mul(e, buf, p.scalar('mu'))]) : buf;
      return { param: e.op('Add', [param, mul(e, direction, p.scalar('neglr'))]), state: { momentum: buf } };
    },
  };
}

export function adam({ lrSchedule, ...options }: AdamOptions = {}): ElementwiseOptimizer {
  const paper = options.paperCompat === true;
  const o = { lr: 0.001, beta1: 0.9, beta2: paper ? 0.9 : 0.999, eps: paper ? 1e-4 : 1e-8, weightDecay: paper ? 1e-5 : 0, decoupledWeightDecay: false, paperCompat: false, ...options };
  checkNonNegative({ lr: o.lr, eps: o.eps, weightDecay: o.weightDecay });
  if (!(o.beta1 >= 0 && o.beta1 < 1 && o.beta2 >= 0 && o.beta2 < 1)) throw new RangeError('Adam betas must lie in [0, 1)');
  return {
    kind: 'elementwise',
    name: o.decoupledWeightDecay ? 'adamw' : 'adam',
    ...withLrSchedule(o, lrSchedule),
    stateNames: ['m', 'v'],
    // θ ← θ − lr/(1−β1ᵗ) · m / (√v/√(1−β2ᵗ) + ε), exactly PyTorch's arithmetic.
    scalars: (t, lr) => ({
      ...weightDecayScalars(o, lr),
      b1: o.beta1, c1: 1 - o.beta1, b2: o.beta2, c2: 1 - o.beta2, eps: o.eps,
      negstep: -lr / (1 - o.beta1 ** t), vscale: 1 / Math.sqrt(1 - o.beta2 ** t),
      ...(o.paperCompat ? { mhat: 1 / (1 - o.beta1 ** t) } : {}),
    }),
    emitUpdate(e, p) {
      const { param, grad } = applyWeightDecay(e, p, o);
      const m = e.op('Add', [mul(e, p.state.m, p.scalar('b1')), mul(e, grad, p.scalar('c1'))]);
      const source = o.paperCompat ? mul(e, m, p.scalar('mhat')) : grad;
      const v = e.op('Add', [mul(e, p.state.v, p.scalar('b2')), mul(e, mul(e, source, source), p.scalar('c2'))]);
      const denom = e.op('Add', [mul(e, e.op('Sqrt', [v]), p.scalar('vscale')), p.scalar('eps')]);
      const step = mul(e, e.op('Div', [m, denom]), p.scalar('negstep'));
      return { param: e.op('Add', [param, step]), state: { m, v } };
    },
  };
}

function checkNonNegative(values: Record<string, number>): void {
  for (const [k, v] of Object.entries(values)) if (!(v >= 0) || !Number.isFinite(v)) throw new RangeError(`${k} must be a finite number ≥ 0, got ${v}`);
}

export interface RmspropOptions extends WeightDecayOptions, Scheduled {
  lr?: number;
  /** ρ of the dampened gradient momentum m ← ρm + (1−ρ)ĝ (default 0.9). */
  momentum?: number;
  /** Decay of the second moment v ← β·v + (1−β)·m² (default 0.9). */
  decay?: number;
  /** Default 1e-4, the authors' code's. */
  eps?: number;
  /** Start v at the mean of the squared minibatch gradients over one pass (default true, as the authors). */
  warmStart?: boolean;
}

/**
 * RMSprop as the K-BFGS papers' baseline (ALGORITHMS.md §7.2): the second moment of the momentum
 * gradient, v ← 0.9·v + 0.1·m², and θ ← θ − α·m/(√v + ε). L2 (τ) goes into the gradient.
 */
export function rmsprop({ lrSchedule, ...options }: RmspropOptions = {}): ElementwiseOptimizer {
  const o = { lr: 0.001, momentum: 0.9, decay: 0.9, eps: 1e-4, weightDecay: 1e-5, decoupledWeightDecay: false, warmStart: true, ...options };
  checkNonNegative({ lr: o.lr, eps: o.eps, weightDecay: o.weightDecay });
  if (!(o.momentum >= 0 && o.momentum < 1 && o.decay >= 0 && o.decay < 1)) throw new RangeError('RMSprop momentum and decay must lie in [0, 1)');
  return {
    kind: 'elementwise',
    name: 'rmsprop',
    ...withLrSchedule(o, lrSchedule),
    stateNames: ['m', 'v'],
    ...(o.warmStart ? { warmStartState: 'v' } : {}),
    scalars: (_t, lr) => ({ ...weightDecayScalars(o, lr), rho: o.momentum, c1: 1 - o.momentum, beta: o.decay, c2: 1 - o.decay, eps: o.eps, neglr: -lr }),
    emitUpdate(e, p) {
      const { param, grad } = applyWeightDecay(e, p, o);
      const m = e.op('Add', [mul(e, p.state.m, p.scalar('rho')), mul(e, grad, p.scalar('c1'))]);
      const v = e.op('Add', [mul(e, p.state.v, p.scalar('beta')), mul(e, mul(e, m, m), p.scalar('c2'))]);
      const step = mul(e, e.op('Div', [m, e.op('Add', [e.op('Sqrt', [v]), p.scalar('eps')])]), p.scalar('neglr'));
      return { param: e.op('Add', [param, step]), state: { m, v } };
    },
  };
}
