// Plain-TypeScript float64 reference of K-BFGS and K-BFGS(L) (Goldfarb, Ren & Bahamou, NeurIPS
// 2020) for MLPs, and of KF-QN's changes to them (arXiv 2102.06737: the A side from the minibatch
// Hessian action, an L-BFGS A side, the convergent variant's independent curvature batch), written
// straight from ALGORITHMS.md §1–§4 as a test oracle.
// Conventions (§1.1–§1.2): W̃ = [W | b] is d_g×d_a with the bias as the last column, ã = [a; 1],
// g_i = M·∂L/∂h_i (mean-type reductions), A = (1/M) ÃᵀÃ, direction D = H_g · X · H_a.
import { forwardBackward, type ForwardBackward, type RefMlp, type RefTarget } from './mlp-reference.js';

export type DampingMode = 'neurips' | 'lm';

export interface KbfgsReferenceOptions {
  /** α: learning rate, also the trial step. */
  lr: number;
  /** λ: λ_A = √λ is added to A, μ2 = √λ in double damping. */
  damping: number;
  betaA?: number;
  betaSY?: number;
  mu1?: number;
  momentum?: number;
  l2?: number;
  /** Decoupled weight decay instead of L2: θ ← θ − α·(D + decay·θ), nothing added to the gradient. */
  decoupledDecay?: number;
  /** undefined: dense K-BFGS; a number p: K-BFGS(L) with memory p (H0 = I). */
  memory?: number;
  dampingMode?: DampingMode;
  /** ā's homogeneous entry in the Hessian-action pair: 'mean' of the others (the authors' code, default) or 'one'. */
  abarBias?: 'mean' | 'one';
  /** 'ema': K-BFGS's running A; 'minibatch': KF-QN's y_a = (A_B + λ_A·I)·s_a with the pairs' batch A_B, no A kept. */
  aSource?: 'ema' | 'minibatch';
  /** undefined: dense H_a; a number p_a: an L-BFGS H_a (γ = sᵀy/yᵀy of the newest pair), seeded with the first batch's pair (ā, A_λ·ā). */
  aMemory?: number;
  /** An L-BFGS H_a's H0: γI of the newest pair (default 'pair'), or (diag(A_B) + λ_A)⁻¹ of the first batch ('factor'). */
  aInit?: 'pair' | 'factor';
  /** λ_A and μ2 when not √λ (KF-QN's |T|-aware split), for every layer or per layer. */
  lambdaA?: number | number[];
  mu2?: number | number[];
  /** α_k at update k (1-based), when not constant (the convergent variant's lr·k^(−β)). */
  lrAt?: (k: number) => number;
  /** Curvature (A EMA, second pass, H_g, H_a, s̄, ȳ) updated at updates k ≡ 0 mod this; held between (default 1). */
  curvatureInterval?: number;
  /** The network's forward/backward (default the MLP's; spec/helpers/tiny-cnn.ts for a CNN). */
  pass?: (net: RefMlp, X: ArrayLike<number>, target: RefTarget) => ForwardBackward;
  /** Per-layer warm-start A (d_a×d_a row-major); absent: A from the first minibatch. */
  warmStartA?: Float64Array[];
  /** H_g⁰ = I (default), or (G + μ2·I)⁻¹ with G = (1/rows)·Σ g gᵀ of the first minibatch; an L-BFGS H_g: H0 = (diag(G) + μ2)⁻¹. */
  gInit?: 'identity' | 'factor';
  /**
   * Multiplier turning ∂L/∂h_i into g_i. Default: M for 'mean' and 'per-sample-sum', 1 for 'sum'
   * (§1.1: "with sum reduction, use the returned value as is").
   */
  gScale?: (reduction: RefMlp['loss']['reduction'], M: number) => number;
}

export interface KbfgsStepResult {
  /** Loss at θ (the first pass). */
  loss: number;
  /** Number of layers whose G-side pair got the Powell step. */
  powellDamped: number;
  /** Number of layers whose G-side update was skipped (dense skip rules / L-BFGS rejection). */
  skipped: number;
  /** Number of layers whose A-side Hessian-action update was skipped. */
  skippedA: number;
}

/** What happened in one layer during the last step (for tests). */
export interface KbfgsLayerTrace {
  /** Raw pair of this step (new − old means). */
  s: Float64Array; y: Float64Array;
  /** EMAs after this step, before damping. */
  sBar: Float64Array; yBar: Float64Array;
  /** Pair after double damping, as given to BFGS / L-BFGS. */
  sTilde: Float64Array; yTilde: Float64Array;
  gBar: Float64Array;
  powell: boolean;
  gUpdated: boolean;
  /** A-side Hessian-action pair. */
  sA: Float64Array; yA: Float64Array;
  aUpdated: boolean;
  /** Direction D = H_g X H_a (d_g×d_a) used this step, with the old factors. */
  direction: Float64Array;
}

interface LayerState {
  dg: number; da: number;
  A: Float64Array; Ha: Float64Array;
  pairsA: { s: Float64Array; y: Float64Array; rho: number }[]; // L-BFGS H_a, oldest first
  Ha0?: Float64Array;                       // its diagonal H0 (aInit 'factor')
  Hg?: Float64Array;                        // dense
  Hg0?: Float64Array;                       // L-BFGS: a diagonal H0 (gInit 'factor')
  pairs: { s: Float64Array; y: Float64Array; rho: number }[]; // L-BFGS, oldest first
  sBar: Float64Array; yBar: Float64Array;
  m: Float64Array;                          // momentum, d_g×d_a (W̃ layout)
}

// ---------- small dense float64 linear algebra (row-major, n×n unless said) ----------

const dot = (u: ArrayLike<number>, v: ArrayLike<number>): number => {
  let s = 0;
  for (let i = 0; i < u.length; i++) s += u[i] * v[i];
  return s;
};

export function matVec(H: Float64Array, v: ArrayLike<number>, n: number): Float64Array {
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    let s = 0;
    for (let j = 0; j < n; j++) s += H[i * n + j] * v[j];
    out[i] = s;
  }
  return out;
}

function eye(n: number): Float64Array {
  const I = new Float64Array(n * n);
  for (let i = 0; i < n; i++) I[i * n + i] = 1;
  return I;
}

/** Inverse of a symmetric positive-definite matrix through its Cholesky factor. */
export function choleskyInverse(S: Float64Array, n: number): Float64Array {
  const Lc = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j <= i; j++) {
      let s = S[i * n + j];
      for (let k = 0; k < j; k++) s -= Lc[i * n + k] * Lc[j * n + k];
      if (i === j) {
        if (!(s > 0)) throw new Error('choleskyInverse: matrix not positive definite');
        Lc[i * n + i] = Math.sqrt(s);
      } else Lc[i * n + j] = s / Lc[j * n + j];
    }
  }
  // Solve L Lᵀ X = I column by column.
  const inv = new Float64Array(n * n);
  const z = new Float64Array(n);
  for (let col = 0; col < n; col++) {
    for (let i = 0; i < n; i++) {
      let s = i === col ? 1 : 0;
      for (let k = 0; k < i; k++) s -= Lc[i * n + k] * z[k];
      z[i] = s / Lc[i * n + i];
    }
    for (let i = n - 1; i >= 0; i--) {
      let s = z[i];
      for (let k = i + 1; k < n; k++) s -= Lc[k * n + i] * inv[k * n + col];
      inv[i * n + col] = s / Lc[i * n + i];
    }
  }
  for (let i = 0; i < n; i++) for (let j = 0; j < i; j++) {
    const v = 0.5 * (inv[i * n + j] + inv[j * n + i]);
    inv[i * n + j] = v; inv[j * n + i] = v;
  }
  return inv;
}

/**
 * Dense BFGS inverse update (§2.1) with the skip rules; returns the new H or null when skipped.
 * refNorm: ‖ḡ‖ (G side) or ‖ā‖ (A side).
 */
export function bfgsUpdate(H: Float64Array, s: Float64Array, y: Float64Array, n: number, refNorm: number): Float64Array | null {
  const sy = dot(s, y), ss = dot(s, s);
  if (!(sy > 0)) return null;
  if (sy <= 1e-4 * ss * refNorm) return null;
  const rho = 1 / sy;
  const u = matVec(H, y, n);
  const yu = dot(y, u);
  const c1 = rho + rho * rho * yu;
  const out = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) {
    out[i * n + j] = H[i * n + j] + c1 * s[i] * s[j] - rho * (u[i] * s[j] + s[i] * u[j]);
  }
  for (let i = 0; i < n; i++) for (let j = 0; j < i; j++) {
    const v = 0.5 * (out[i * n + j] + out[j * n + i]);
    out[i * n + j] = v; out[j * n + i] = v;
  }
  for (let i = 0; i < n * n; i++) if (!Number.isFinite(out[i])) return null;
  return out;
}

/** L-BFGS two-loop recursion (§2.2), H0 = γ I or diag(γ), pairs oldest first. */
export function twoLoop(v: ArrayLike<number>, pairs: { s: Float64Array; y: Float64Array; rho: number }[], gamma: number | ArrayLike<number> = 1): Float64Array {
  const q = Float64Array.from(v);
  const alphas = new Array<number>(pairs.length);
  for (let j = pairs.length - 1; j >= 0; j--) {
    const { s, y, rho } = pairs[j];
    const al = rho * dot(s, q);
    alphas[j] = al;
    for (let i = 0; i < q.length; i++) q[i] -= al * y[i];
  }
  for (let i = 0; i < q.length; i++) q[i] *= typeof gamma === 'number' ? gamma : gamma[i];
  for (let j = 0; j < pairs.length; j++) {
    const { s, y, rho } = pairs[j];
    const be = rho * dot(y, q);
    for (let i = 0; i < q.length; i++) q[i] += s[i] * (alphas[j] - be);
  }
  return q;
}

/**
 * Double damping (§2.3). applyH: v ↦ H v for the current G-side operator. Returns copies.
 */
export function doubleDamping(sIn: Float64Array, yIn: Float64Array, applyH: (v: Float64Array) => Float64Array,
  mu1: number, mu2: number, mode: DampingMode): { s: Float64Array; y: Float64Array; powell: boolean } {
  let s = Float64Array.from(sIn), y = Float64Array.from(yIn);
  const u = applyH(y);
  const q = dot(y, u);
  let c = dot(s, y);
  let powell = false;
  if (q > 1e-300 && c < mu1 * q) {
    const t1 = ((1 - mu1) * q) / (q - c);
    s = s.map((si, i) => t1 * si + (1 - t1) * u[i]);
    powell = true;
  }
  if (mode === 'neurips') {
    c = dot(s, y);
    const n = dot(s, s);
    if (c < mu2 * n && Math.abs(n - c) > 1e-300) {
      const t2 = ((1 - mu2) * n) / (n - c);
      y = y.map((yi, i) => t2 * yi + (1 - t2) * s[i]);
    }
  } else {
    y = y.map((yi, i) => yi + mu2 * s[i]);
  }
  return { s, y, powell };
}

// ---------------------------------------------------------------------------------------

export class KbfgsReference {
  readonly lr: number;
  readonly damping: number;
  readonly betaA: number;
  readonly abarBias: 'mean' | 'one';
  readonly betaSY: number;
  readonly mu1: number;
  readonly momentum: number;
  readonly l2: number;
  readonly memory: number | undefined;
  readonly dampingMode: DampingMode;
  private readonly opts: KbfgsReferenceOptions;
  private warmStartA: Float64Array[] | undefined;
  private warmStartG: Float64Array[] | undefined;
  private readonly gScale: NonNullable<KbfgsReferenceOptions['gScale']>;
  private layers: LayerState[] | undefined;
  private k = 0;
  /** Per-layer trace of the last step. */
  lastTrace: KbfgsLayerTrace[] = [];

  constructor(opts: KbfgsReferenceOptions) {
    this.lr = opts.lr;
    this.damping = opts.damping;
    this.betaA = opts.betaA ?? 0.9;
    this.abarBias = opts.abarBias ?? 'mean';
    this.betaSY = opts.betaSY ?? 0.9;
    this.mu1 = opts.mu1 ?? 0.2;
    this.momentum = opts.momentum ?? 0.9;
    this.l2 = opts.decoupledDecay !== undefined ? 0 : opts.l2 ?? 1e-5;
    this.memory = opts.memory;
    this.dampingMode = opts.dampingMode ?? 'neurips';
    this.warmStartA = opts.warmStartA;
    this.opts = opts;
    this.gScale = opts.gScale ?? ((red, M) => (red === 'sum' ? 1 : M));
  }

  get iteration(): number { return this.k; }

  /**
   * K-BFGS's warm start (§3.3): A, and with gInit 'factor' G, as the means over `batches` of their
   * batch factors at the current weights, for the first step to use instead of its own batch's.
   */
  warmStart(net: RefMlp, batches: { X: ArrayLike<number>; target: RefTarget }[]): void {
    const pass = this.opts.pass ?? forwardBackward;
    const sums: { A: Float64Array; G: Float64Array }[] = [];
    for (const { X, target } of batches) {
      const fb = pass(net, X, target);
      const M = fb.samples ?? X.length / net.sizes[0];
      net.layers.forEach(({ W, b }, l) => {
        const dg = b.length, da = W.length / dg + 1;
        sums[l] ??= { A: new Float64Array(da * da), G: new Float64Array(dg * dg) };
        batchFactor(fb.a[l], M, da).AB.forEach((v, i) => { sums[l].A[i] += v / batches.length; });
        gradientFactor(fb.dh[l], dg, this.gScale(net.loss.reduction, M)).forEach((v, i) => { sums[l].G[i] += v / batches.length; });
      });
    }
    this.warmStartA = sums.map((f) => f.A);
    this.warmStartG = sums.map((f) => f.G);
  }

  private state(l: number): LayerState {
    if (!this.layers) throw new Error('KbfgsReference: no step taken yet');
    return this.layers[l];
  }

  /** H_g of layer l (d_g×d_g); for K-BFGS(L) the operator materialised on the identity. */
  getHg(l: number): Float64Array {
    const st = this.state(l);
    if (st.Hg) return Float64Array.from(st.Hg);
    const out = new Float64Array(st.dg * st.dg);
    for (let j = 0; j < st.dg; j++) {
      const e = new Float64Array(st.dg); e[j] = 1;
      const col = twoLoop(e, st.pairs, st.Hg0);
      for (let i = 0; i < st.dg; i++) out[i * st.dg + j] = col[i];
    }
    return out;
  }
  getHa(l: number): Float64Array { return Float64Array.from(this.state(l).Ha); }
  getA(l: number): Float64Array { return Float64Array.from(this.state(l).A); }
  /** Momentum in W̃ layout (d_g×d_a). */
  getMomentum(l: number): Float64Array { return Float64Array.from(this.state(l).m); }
  /** Number of stored L-BFGS pairs (0 for dense). */
  getPairCount(l: number): number { return this.state(l).pairs.length; }

  private applyHg(st: LayerState, v: Float64Array): Float64Array {
    return st.Hg ? matVec(st.Hg, v, st.dg) : twoLoop(v, st.pairs, st.Hg0);
  }

  private init(net: RefMlp): void {
    this.layers = net.layers.map(({ W, b }) => {
      const dg = b.length, da = W.length / dg + 1;
      return {
        dg, da,
        A: new Float64Array(da * da), Ha: eye(da), pairsA: [],
        Hg: this.memory === undefined ? eye(dg) : undefined,
        pairs: [],
        sBar: new Float64Array(dg), yBar: new Float64Array(dg),
        m: new Float64Array(dg * da),
      };
    });
  }

  /** ā with the homogeneous entry of abarBias: the reference of the A-side pair. */
  private abarReference(aBar: Float64Array): Float64Array {
    const out = Float64Array.from(aBar);
    const da = out.length;
    // The authors' K-BFGS code puts the mean of ā's other entries in its homogeneous slot.
    if (this.abarBias === 'mean') out[da - 1] = out.subarray(0, da - 1).reduce((x, y) => x + y, 0) / (da - 1);
    return out;
  }

  private applyHa(st: LayerState, v: Float64Array): Float64Array {
    if (this.opts.aMemory === undefined) return matVec(st.Ha, v, st.da);
    if (st.Ha0) return twoLoop(v, st.pairsA, st.Ha0);
    const newest = st.pairsA[st.pairsA.length - 1];
    const gamma = newest ? dot(newest.s, newest.y) / dot(newest.y, newest.y) : 1;
    return twoLoop(v, st.pairsA, gamma);
  }

  /**
   * One step on batch (X, target). `curvature`: the convergent variant's independent batch, whose
   * passes at θ and θ⁺ give the pairs (and A_B, ā).
   */
  step(net: RefMlp, X: ArrayLike<number>, target: RefTarget, curvature?: { X: ArrayLike<number>; target: RefTarget }): KbfgsStepResult {
    if (!this.layers) this.init(net);
    const layers = this.layers!;
    const L = net.layers.length;
    const pass = this.opts.pass ?? forwardBackward;
    const perLayer = (x: number | number[] | undefined, l: number) => (Array.isArray(x) ? x[l] : x ?? Math.sqrt(this.damping));
    const minibatchA = this.opts.aSource === 'minibatch';
    const lr = this.opts.lrAt ? this.opts.lrAt(this.k + 1) : this.lr;
    const held = this.k % (this.opts.curvatureInterval ?? 1) !== 0;

    // 1. forward/backward at θ (and at θ on the curvature batch).
    const fb = pass(net, X, target);
    const samples = (x: ArrayLike<number>, f: ForwardBackward) => f.samples ?? x.length / net.sizes[0];
    const M = samples(X, fb);
    const pairPass = curvature ? pass(net, curvature.X, curvature.target) : fb;
    const pairM = curvature ? samples(curvature.X, pairPass) : M;
    const gs = this.gScale(net.loss.reduction, pairM);
    const directions: Float64Array[] = [];
    const pairFactors: { AB: Float64Array; aBar: Float64Array }[] = [];
    for (let l = 0; l < L; l++) {
      const st = layers[l], { dg, da } = st, nin = da - 1;
      const { W, b } = net.layers[l], gr = fb.grads[l];
      // ĝ = ∇L + τθ ; m = ρm + (1−ρ)ĝ, in W̃ layout.
      for (let r = 0; r < dg; r++) {
        for (let c = 0; c < nin; c++) {
          const gh = gr.W[r * nin + c] + this.l2 * W[r * nin + c];
          st.m[r * da + c] = this.momentum * st.m[r * da + c] + (1 - this.momentum) * gh;
        }
        const ghb = gr.b[r] + this.l2 * b[r];
        st.m[r * da + nin] = this.momentum * st.m[r * da + nin] + (1 - this.momentum) * ghb;
      }
      const own = batchFactor(fb.a[l], M, da);
      pairFactors.push(curvature ? batchFactor(pairPass.a[l], pairM, da) : own);
      if (this.k === 0 && this.opts.gInit === 'factor') {
        const Gl = Float64Array.from(this.warmStartG?.[l] ?? gradientFactor(fb.dh[l], dg, this.gScale(net.loss.reduction, M)));
        for (let r = 0; r < dg; r++) Gl[r * dg + r] += perLayer(this.opts.mu2, l);
        if (st.Hg) st.Hg = choleskyInverse(Gl, dg);
        else st.Hg0 = Float64Array.from({ length: dg }, (_, r) => 1 / Gl[r * dg + r]);
      }
      if (this.k === 0) {
        const warm = this.warmStartA?.[l];
        if (warm && warm.length !== da * da) throw new Error(`warmStartA[${l}] must be ${da}×${da}`);
        st.A = warm ? Float64Array.from(warm) : own.AB;
        if (this.opts.aMemory === undefined) {
          const Al = Float64Array.from(st.A);
          for (let p = 0; p < da; p++) Al[p * da + p] += perLayer(this.opts.lambdaA, l);
          st.Ha = choleskyInverse(Al, da);
        } else {
          if (this.opts.aInit === 'factor') st.Ha0 = Float64Array.from({ length: da }, (_, p) => 1 / (own.AB[p * da + p] + perLayer(this.opts.lambdaA, l)));
          const sA = this.abarReference(own.aBar);
          const yA = matVec(own.AB, sA, da).map((v, p) => v + perLayer(this.opts.lambdaA, l) * sA[p]);
          if (dot(sA, yA) > 0) st.pairsA.push({ s: sA, y: yA, rho: 1 / dot(sA, yA) });
        }
      } else if (!minibatchA && !held) {
        for (let p = 0; p < da * da; p++) st.A[p] = this.betaA * st.A[p] + (1 - this.betaA) * own.AB[p];
      }
      // D = H_g(X) · H_a with the old factors.
      const HgX = new Float64Array(dg * da);
      const col = new Float64Array(dg);
      for (let c = 0; c < da; c++) {
        for (let r = 0; r < dg; r++) col[r] = st.m[r * da + c];
        const hc = this.applyHg(st, col);
        for (let r = 0; r < dg; r++) HgX[r * da + c] = hc[r];
      }
      const D = new Float64Array(dg * da);
      // Row r of D is H_a·(row r of H_g X): H_a is symmetric.
      for (let r = 0; r < dg; r++) D.set(this.applyHa(st, HgX.subarray(r * da, (r + 1) * da)), r * da);
      directions.push(D);
    }

    // 2. θ⁺ = θ − αD, and the second pass on the pairs' batch.
    for (let l = 0; l < L; l++) {
      const { dg, da } = layers[l], nin = da - 1, D = directions[l], { W, b } = net.layers[l];
      const decay = this.opts.decoupledDecay ?? 0;
      for (let r = 0; r < dg; r++) {
        for (let c = 0; c < nin; c++) W[r * nin + c] -= lr * (D[r * da + c] + decay * W[r * nin + c]);
        b[r] -= lr * (D[r * da + nin] + decay * b[r]);
      }
    }
    if (held) {
      this.k++;
      this.lastTrace = [];
      return { loss: fb.loss, powellDamped: 0, skipped: 0, skippedA: 0 };
    }
    const fb2 = curvature ? pass(net, curvature.X, curvature.target) : pass(net, X, target);

    // 3. curvature updates.
    let powellDamped = 0, skipped = 0, skippedA = 0;
    this.lastTrace = [];
    for (let l = 0; l < L; l++) {
      const st = layers[l], { dg, da } = st;
      const hBar = new Float64Array(dg), hBar2 = new Float64Array(dg);
      const gBar = new Float64Array(dg), gBar2 = new Float64Array(dg);
      // Means over the rows: samples, and positions for a convolution (§5).
      const rows = pairPass.h[l].length / dg;
      for (let i = 0; i < rows; i++) for (let r = 0; r < dg; r++) {
        hBar[r] += pairPass.h[l][i * dg + r] / rows;
        hBar2[r] += fb2.h[l][i * dg + r] / rows;
        gBar[r] += (gs * pairPass.dh[l][i * dg + r]) / rows;
        gBar2[r] += (gs * fb2.dh[l][i * dg + r]) / rows;
      }
      const s = hBar2.map((v, r) => v - hBar[r]);
      const y = gBar2.map((v, r) => v - gBar[r]);
      for (let r = 0; r < dg; r++) {
        st.sBar[r] = this.betaSY * st.sBar[r] + (1 - this.betaSY) * s[r];
        st.yBar[r] = this.betaSY * st.yBar[r] + (1 - this.betaSY) * y[r];
      }
      const dd = doubleDamping(st.sBar, st.yBar, (v) => this.applyHg(st, v), this.mu1, perLayer(this.opts.mu2, l), this.dampingMode);
      if (dd.powell) powellDamped++;
      const gNorm = Math.sqrt(dot(gBar, gBar));
      const gUpdated = st.Hg ? this.bfgs(st, 'Hg', dd.s, dd.y, gNorm) : pushPair(st.pairs, dd.s, dd.y, gNorm, this.memory!);
      if (!gUpdated) skipped++;
      // Hessian-action BFGS for the A side: y_a = (A + λ_A·I)·s_a, A the running A or the pairs' batch's A_B.
      const aBar = this.abarReference(pairFactors[l].aBar);
      const sA = this.applyHa(st, aBar);
      const yA = matVec(minibatchA ? pairFactors[l].AB : st.A, sA, da);
      for (let p = 0; p < da; p++) yA[p] += perLayer(this.opts.lambdaA, l) * sA[p];
      const aNorm = Math.sqrt(dot(aBar, aBar));
      const aUpdated = this.opts.aMemory === undefined ? this.bfgs(st, 'Ha', sA, yA, aNorm) : pushPair(st.pairsA, sA, yA, aNorm, this.opts.aMemory);
      if (!aUpdated) skippedA++;
      this.lastTrace.push({
        s, y, sBar: Float64Array.from(st.sBar), yBar: Float64Array.from(st.yBar),
        sTilde: dd.s, yTilde: dd.y, gBar, powell: dd.powell, gUpdated,
        sA, yA, aUpdated, direction: directions[l],
      });
    }
    this.k++;
    return { loss: fb.loss, powellDamped, skipped, skippedA };
  }

  private bfgs(st: LayerState, which: 'Hg' | 'Ha', s: Float64Array, y: Float64Array, refNorm: number): boolean {
    const next = bfgsUpdate(st[which]!, s, y, which === 'Hg' ? st.dg : st.da, refNorm);
    if (next) st[which] = next;
    return next !== null;
  }
}

/**
 * A_B = (1/M) ÃᵀÃ (summed over a convolution's positions, averaged over the M samples) and ā (the
 * mean of the rows) of a layer's input rows a (rows × (d_a − 1)), ã = [a; 1].
 */
/** G = (1/rows)·Σ g gᵀ over the rows (samples, and positions for a convolution) of g = scale·∂L/∂h. */
function gradientFactor(dh: ArrayLike<number>, dg: number, scale: number): Float64Array {
  const rows = dh.length / dg;
  const G = new Float64Array(dg * dg);
  for (let i = 0; i < rows; i++) for (let r = 0; r < dg; r++) for (let q = 0; q < dg; q++) G[r * dg + q] += (scale * dh[i * dg + r]) * (scale * dh[i * dg + q]) / rows;
  return G;
}

function batchFactor(a: ArrayLike<number>, M: number, da: number): { AB: Float64Array; aBar: Float64Array } {
  const nin = da - 1;
  const rows = a.length / nin;
  const AB = new Float64Array(da * da), aBar = new Float64Array(da);
  const at = new Float64Array(da);
  for (let i = 0; i < rows; i++) {
    for (let c = 0; c < nin; c++) at[c] = a[i * nin + c];
    at[nin] = 1;
    for (let p = 0; p < da; p++) {
      aBar[p] += at[p] / rows;
      const ap = at[p];
      if (ap === 0) continue;
      for (let q = 0; q < da; q++) AB[p * da + q] += (ap * at[q]) / M;
    }
  }
  return { AB, aBar };
}

/** The L-BFGS acceptance test (§2.2) and push into a memory of `memory` pairs; whether accepted. */
function pushPair(pairs: LayerState['pairs'], s: Float64Array, y: Float64Array, refNorm: number, memory: number): boolean {
  const ss = dot(s, s), sy = dot(s, y);
  if (!(Number.isFinite(ss) && sy > 1e-4 * ss * refNorm)) return false;
  pairs.push({ s: Float64Array.from(s), y: Float64Array.from(y), rho: 1 / sy });
  if (pairs.length > memory) pairs.shift();
  return true;
}

/** SGD with the same dampened momentum and L2 (§2.4, §7.1): m = ρm + (1−ρ)(∇L + τθ); θ −= αm. */
export class SgdmReference {
  private m: { W: Float64Array; b: Float64Array }[] | undefined;
  constructor(readonly lr: number, readonly momentum = 0.9, readonly l2 = 1e-5) {}
  step(net: RefMlp, X: ArrayLike<number>, target: RefTarget): number {
    const fb = forwardBackward(net, X, target);
    if (!this.m) this.m = net.layers.map((p) => ({ W: new Float64Array(p.W.length), b: new Float64Array(p.b.length) }));
    net.layers.forEach((p, l) => {
      const m = this.m![l];
      for (const key of ['W', 'b'] as const) {
        const th = p[key], g = fb.grads[l][key], mk = m[key];
        for (let i = 0; i < th.length; i++) {
          mk[i] = this.momentum * mk[i] + (1 - this.momentum) * (g[i] + this.l2 * th[i]);
          th[i] -= this.lr * mk[i];
        }
      }
    });
    return fb.loss;
  }
}
