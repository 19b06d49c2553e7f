// K-BFGS and K-BFGS(L) (Goldfarb, Ren & Bahamou 2020; ALGORITHMS.md §3): per Kronecker layer the
// direction H_g·X·H_a of the momentum gradient, a second forward/backward pass on the same batch,
// then damped BFGS (or L-BFGS) on H_g and Hessian-action BFGS on H_a. The graphs are built in
// kbfgs-graphs.ts; the Trainer drives them (lib/train/kronecker-engine.ts).

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
}

export interface KroneckerOptimizer {
  readonly kind: 'kronecker';
  readonly name: 'kbfgs' | 'kbfgs-l';
  readonly options: Readonly<Required<KbfgsOptions>> & { history?: number };
  /** L-BFGS memory p for the G side (K-BFGS(L)); undefined for dense K-BFGS. */
  readonly history?: number;
  learningRate(t: number): number;
}

function resolve(o: KbfgsOptions): Required<KbfgsOptions> {
  const r = {
    lr: 0.3, damping: 0.3, statDecay: 0.9, pairDecay: 0.9, momentum: 0.9, weightDecay: 1e-5, powell: 0.2,
    dampingMode: 'neurips' as DampingMode, abarBias: 'mean' as 'mean' | 'one', warmStart: true, decoupledWeightDecay: false, ...o,
  };
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
export function kbfgs(options: KbfgsOptions = {}): KroneckerOptimizer {
  const o = resolve(options);
  return { kind: 'kronecker', name: 'kbfgs', options: o, learningRate: () => o.lr };
}

/** K-BFGS(L): H_g an L-BFGS operator with `history` pairs (default 100) and H0 = I. */
export function kbfgsL(options: KbfgsOptions & { history?: number } = {}): KroneckerOptimizer {
  const { history = 100, ...rest } = options;
  if (!Number.isInteger(history) || history < 1) throw new RangeError(`history must be an integer ≥ 1, got ${history}`);
  const o = resolve(rest);
  return { kind: 'kronecker', name: 'kbfgs-l', options: { ...o, history }, history, learningRate: () => o.lr };
}
