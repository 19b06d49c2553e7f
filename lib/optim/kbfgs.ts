// K-BFGS and K-BFGS(L) (Goldfarb, Ren & Bahamou 2020; ALGORITHMS.md §3): per Kronecker layer the
// direction H_g·X·H_a of the momentum gradient, a second forward/backward pass on the same batch,
// then damped BFGS (or L-BFGS) on H_g and Hessian-action BFGS on H_a. KF-QN and KF-QN(L) (Ren,
// Bahamou & Goldfarb, arXiv 2102.06737; §4-§5) keep no A: the A-side pair is y_a = (A_B + λ_A·I)·s_a
// from the current minibatch by two products, H_a may itself be an L-BFGS operator, and a
// convergent variant draws its curvature pairs from an independent minibatch. The graphs are built
// in kbfgs-graphs.ts; the Trainer drives them (lib/train/kronecker-engine.ts).

import { withLrSchedule, type Scheduled } from './schedule.js';

export type DampingMode = 'neurips' | 'lm';

export interface KbfgsOptions {
  /** α: learning rate, also the trial step (default 0.3). */
  lr?: number;
  /** λ: damping; λ_A = √λ is added to A and μ2 = √λ in the double damping (default 0.3). */
  damping?: number;
  /** β_A: EMA decay of A (default 0.9). */
  statDecay?: number;
  /** β_sy: EMA decay of the (s, y) pairs (default 0.9). */
  pairDecay?: number;
  /** ρ: momentum of the gradient, dampened form m ← ρm + (1−ρ)ĝ (default 0.9). */
  momentum?: number;
  /** τ: L2 coefficient added to the gradient (default 1e-5). */
  weightDecay?: number;
  /** Apply τ as decoupled weight decay θ ← θ − α·τ·θ instead of L2 in the gradient (default false). */
  decoupledWeightDecay?: boolean;
  /** μ1 of Powell damping (default 0.2). */
  powell?: number;
  /** The second damping step: the NeurIPS form (default) or Levenberg–Marquardt. */
  dampingMode?: DampingMode;
  /**
   * The homogeneous (last) entry of ā in the Hessian-action pair s_a = H_a·ā: 'mean', the mean of
   * ā's other entries, as the authors' code computes it (default), or 'one', the mean of the
   * appended ones (ALGORITHMS.md §3.4's reading).
   */
  abarBias?: 'mean' | 'one';
  /** Warm-start A with one forward pass over the training set (default true, as the authors). */
  warmStart?: boolean;
  /**
   * Update the curvature (second pass, H_g, H_a, s̄, ȳ; K-BFGS's A EMA) every N steps (default 1,
   * as the authors); the steps between apply H_g·X·H_a with the factors held, at about a
   * first-order step's cost.
   */
  curvatureInterval?: number;
  /**
   * H_g⁰: the identity (default, as the authors), or 'factor': (G + μ2·I)⁻¹ with G = (1/(M·T))·Σ g gᵀ
   * the gradient factor (g = M·∂L/∂h, the data's labels) of the batches that give H_a⁰ (K-BFGS's
   * warm start or first batch, KF-QN's first batch), as H_a⁰ comes from A. An L-BFGS H_g takes
   * the diagonal H0 = (diag(G) + μ2)⁻¹, which its O(p·d_g) memory can hold.
   */
  gInit?: 'identity' | 'factor';
}

export interface KfqnOptions extends Omit<KbfgsOptions, 'statDecay' | 'warmStart'> {
  /** H_a as a dense BFGS inverse (default) or an L-BFGS operator with `aHistory` pairs (§4.3). */
  aSide?: 'dense' | 'lbfgs';
  /** p_a: L-BFGS memory of the A side with aSide 'lbfgs' (default 100). */
  aHistory?: number;
  /**
   * H0 of an L-BFGS A side: 'pair', γI with γ = sᵀy/yᵀy of the newest pair (default), or 'factor',
   * the diagonal (diag(A_B) + λ_A)⁻¹ of the first batch, formed without A (a dense H_a always
   * starts from (A_B + λ_A·I)⁻¹).
   */
  aInit?: 'pair' | 'factor';
  /** Conv layers: λ_A = √λ and μ2 = √λ (default 'plain'), or the |T|-aware split λ_A = √(λ|T|), μ2 = √(λ/|T|) ('sqrt-t'). */
  convDamping?: 'plain' | 'sqrt-t';
  /**
   * 'default': curvature pairs from the step's own minibatch, constant α. 'convergent' (§4.4): pairs
   * and A_B from an independent minibatch, α_k = lr·k^(−stepPower).
   */
  variant?: 'default' | 'convergent';
  /** β of α_k = lr·k^(−β) in the convergent variant, in (0.5, 1) (default 0.6). */
  stepPower?: number;
}

export interface KroneckerOptimizer {
  readonly kind: 'kronecker';
  readonly name: 'kbfgs' | 'kbfgs-l' | 'kfqn' | 'kfqn-l';
  readonly options: Readonly<Required<KbfgsOptions>> & { history?: number } & Readonly<Partial<KfqnOptions>> & Readonly<Scheduled>;
  /** L-BFGS memory p for the G side (K-BFGS(L), KF-QN(L)); undefined for a dense H_g. */
  readonly history?: number;
  /** Where the A-side pair comes from: the EMA'd A (K-BFGS) or the minibatch Hessian action (KF-QN). */
  readonly aSource: 'ema' | 'minibatch';
  /** L-BFGS memory of the A side; undefined for a dense H_a. */
  readonly aHistory?: number;
  /** Curvature pairs from an independent minibatch (KF-QN's convergent variant). */
  readonly independentCurvatureBatch: boolean;
  learningRate(t: number): number;
}

function resolve(o: KbfgsOptions): Required<KbfgsOptions> {
  const r = {
    lr: 0.3, damping: 0.3, statDecay: 0.9, pairDecay: 0.9, momentum: 0.9, weightDecay: 1e-5, powell: 0.2,
    dampingMode: 'neurips' as DampingMode, abarBias: 'mean' as 'mean' | 'one', warmStart: true, decoupledWeightDecay: false, curvatureInterval: 1, gInit: 'identity' as 'identity' | 'factor', ...o,
  };
  if (r.gInit !== 'identity' && r.gInit !== 'factor') throw new RangeError(`gInit must be 'identity' or 'factor', got '${String(r.gInit)}'`);
  if (!Number.isInteger(r.curvatureInterval) || r.curvatureInterval < 1) throw new RangeError(`curvatureInterval must be an integer ≥ 1, got ${r.curvatureInterval}`);
  for (const [k, v] of Object.entries({ lr: r.lr, damping: r.damping, weightDecay: r.weightDecay })) {
    if (!(v >= 0) || !Number.isFinite(v)) throw new RangeError(`${k} must be a finite number ≥ 0, got ${v}`);
  }
  for (const [k, v] of Object.entries({ statDecay: r.statDecay, pairDecay: r.pairDecay, momentum: r.momentum, powell: r.powell })) {
    if (!(v >= 0 && v < 1)) throw new RangeError(`${k} must lie in [0, 1), got ${v}`);
  }
  if (r.damping <= 0) throw new RangeError('damping must be > 0 (λ_A = √λ keeps A + λ_A·I invertible)');
  return r;
}

/** Dense K-BFGS: H_g a dense BFGS inverse. */
export function kbfgs({ lrSchedule, ...options }: KbfgsOptions & Scheduled = {}): KroneckerOptimizer {
  const o = resolve(options);
  return { kind: 'kronecker', name: 'kbfgs', ...withLrSchedule(o, lrSchedule), aSource: 'ema', independentCurvatureBatch: false };
}

/** K-BFGS(L): H_g an L-BFGS operator with `history` pairs (default 100) and H0 = I (gInit 'factor': diagonal). */
export function kbfgsL({ lrSchedule, ...options }: KbfgsOptions & Scheduled & { history?: number } = {}): KroneckerOptimizer {
  const { history = 100, ...rest } = options;
  memory('history', history);
  const o = resolve(rest);
  return { kind: 'kronecker', name: 'kbfgs-l', ...withLrSchedule({ ...o, history }, lrSchedule), history, aSource: 'ema', independentCurvatureBatch: false };
}

function memory(name: string, p: number): void {
  if (!Number.isInteger(p) || p < 1) throw new RangeError(`${name} must be an integer ≥ 1, got ${p}`);
}

function kfqnOptimizer(name: 'kfqn' | 'kfqn-l', options: KfqnOptions & Scheduled, history?: number): KroneckerOptimizer {
  const { aSide = 'dense', aHistory = 100, aInit = 'pair', convDamping = 'plain', variant = 'default', stepPower = 0.6, lrSchedule, ...rest } = options;
  if (aSide !== 'dense' && aSide !== 'lbfgs') throw new RangeError(`aSide must be 'dense' or 'lbfgs', got '${aSide}'`);
  if (aInit !== 'pair' && aInit !== 'factor') throw new RangeError(`aInit must be 'pair' or 'factor', got '${String(aInit)}'`);
  if (aInit === 'factor' && aSide !== 'lbfgs') throw new RangeError(`aInit 'factor' sets the H0 of an L-BFGS A side (aSide 'lbfgs'); a dense H_a always starts from (A_B + λ_A·I)⁻¹`);
  if (convDamping !== 'plain' && convDamping !== 'sqrt-t') throw new RangeError(`convDamping must be 'plain' or 'sqrt-t', got '${convDamping}'`);
  if (variant !== 'default' && variant !== 'convergent') throw new RangeError(`variant must be 'default' or 'convergent', got '${variant}'`);
  if (!(stepPower > 0.5 && stepPower < 1)) throw new RangeError(`stepPower must lie in (0.5, 1) for the convergence guarantee, got ${stepPower}`);
  memory('aHistory', aHistory);
  // §4.2: DD-LM damping and ā with homogeneous entry 1 (HessianActionV2); no A, so no A EMA or warm start.
  const o = resolve({ dampingMode: 'lm', abarBias: 'one', ...rest, warmStart: false });
  if (variant === 'convergent' && lrSchedule) throw new RangeError('the convergent variant has its own step sizes α_k = lr·k^(−stepPower); it takes no lrSchedule');
  const base = (t: number) => (variant === 'convergent' ? o.lr * Math.max(1, t) ** -stepPower : o.lr);
  return {
    kind: 'kronecker', name, ...withLrSchedule({ ...o, aSide, aHistory, aInit, convDamping, variant, stepPower, ...(history ? { history } : {}) }, lrSchedule, base),
    history, aSource: 'minibatch', aHistory: aSide === 'lbfgs' ? aHistory : undefined, independentCurvatureBatch: variant === 'convergent',
  };
}

/** KF-QN: H_g a dense BFGS inverse; the A side from the minibatch Hessian action (§4.2). */
export function kfqn(options: KfqnOptions & Scheduled = {}): KroneckerOptimizer {
  return kfqnOptimizer('kfqn', options);
}

/** KF-QN(L): H_g an L-BFGS operator with `history` pairs (default 100) and H0 = I (gInit 'factor': diagonal). */
export function kfqnL(options: KfqnOptions & Scheduled & { history?: number } = {}): KroneckerOptimizer {
  const { history = 100, ...rest } = options;
  memory('history', history);
  return kfqnOptimizer('kfqn-l', rest, history);
}
