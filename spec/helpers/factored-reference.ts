// Plain-TypeScript float64 references of KFAC (empirical Fisher, so that it is deterministic) and
// Shampoo for MLPs, from ALGORITHMS.md §7.4–7.5 and §2.4, as test oracles for
// lib/train/factored-engine.ts. W̃ = [W | b] (d_g × d_a), ã = [a; 1], g_i = M·∂L/∂h_i.
import { forwardBackward, type RefMlp, type RefTarget } from './mlp-reference.js';
import { choleskyInverse } from './kbfgs-reference.js';
import { mat, symmetricFunction } from './linalg.js';

export interface FactoredReferenceOptions {
  method: 'kfac' | 'shampoo';
  lr: number;
  /** KFAC: λ (√λ added to each factor); Shampoo: ε. */
  damping: number;
  /** KFAC's inverse interval or Shampoo's root interval. */
  interval: number;
  /** The factors' EMAs take a batch at steps t ≡ 0 mod this (default 1). */
  statInterval?: number;
  statDecay?: number;
  /** KFAC: β_k = min(1 − 1/(k+1), statDecay) at the k-th factor refresh, the authors' code (default true for KFAC). */
  statWarmup?: boolean;
  momentum?: number;
  l2?: number;
  /** Decoupled weight decay instead of L2: θ ← θ − α·(D + decay·θ). */
  decoupledDecay?: number;
}

interface LayerState { m: Float64Array; left: Float64Array; right: Float64Array; Pl: Float64Array; Pr: Float64Array; dg: number; da: number }

export class FactoredReference {
  private layers?: LayerState[];
  private t = 0;
  /** Factor refreshes so far. */
  private refreshes = 0;
  constructor(private readonly o: FactoredReferenceOptions) {}

  step(net: RefMlp, X: ArrayLike<number>, target: RefTarget): number {
    const { method, lr, damping, interval } = this.o;
    const statDecay = this.o.statDecay ?? 0.9; const rho = this.o.momentum ?? 0.9;
    const warmup = method === 'kfac' && (this.o.statWarmup ?? true);
    const decay = this.o.decoupledDecay ?? 0; const l2 = this.o.decoupledDecay !== undefined ? 0 : this.o.l2 ?? 1e-5;
    const M = X.length / net.sizes[0];
    const fb = forwardBackward(net, X, target);
    this.layers ??= net.layers.map((_, l) => {
      const dg = net.sizes[l + 1]; const da = net.sizes[l] + 1;
      return { m: new Float64Array(dg * da), left: new Float64Array(dg * dg), right: new Float64Array(da * da), Pl: new Float64Array(0), Pr: new Float64Array(0), dg, da };
    });
    const refresh = method === 'kfac' ? this.t % interval === 0 || this.t < interval : this.t === 0 || this.t % interval === 0;
    const statStep = this.t % (this.o.statInterval ?? 1) === 0;
    net.layers.forEach((layer, l) => {
      const st = this.layers![l]; const { dg, da } = st; const nin = da - 1;
      const grad = new Float64Array(dg * da); // raw gradient in W̃ layout
      for (let r = 0; r < dg; r++) {
        for (let c = 0; c < nin; c++) grad[r * da + c] = fb.grads[l].W[r * nin + c];
        grad[r * da + nin] = fb.grads[l].b[r];
      }
      for (let r = 0; r < dg; r++) {
        for (let c = 0; c < da; c++) {
          const theta = c < nin ? layer.W[r * nin + c] : layer.b[r];
          st.m[r * da + c] = rho * st.m[r * da + c] + (1 - rho) * (grad[r * da + c] + l2 * theta);
        }
      }
      // Batch factors: KFAC (1/M)ÃᵀÃ and (1/M)Σ g gᵀ; Shampoo X_g X_gᵀ and X_gᵀX_g.
      const leftB = new Float64Array(dg * dg); const rightB = new Float64Array(da * da);
      if (method === 'kfac') {
        for (let i = 0; i < M; i++) {
          const a = [...fb.a[l].subarray(i * nin, (i + 1) * nin), 1];
          const g = Array.from(fb.dh[l].subarray(i * dg, (i + 1) * dg), (v) => M * v);
          for (let p = 0; p < da; p++) for (let q = 0; q < da; q++) rightB[p * da + q] += a[p] * a[q] / M;
          for (let p = 0; p < dg; p++) for (let q = 0; q < dg; q++) leftB[p * dg + q] += g[p] * g[q] / M;
        }
      } else {
        for (let p = 0; p < dg; p++) for (let q = 0; q < dg; q++) for (let c = 0; c < da; c++) leftB[p * dg + q] += grad[p * da + c] * grad[q * da + c];
        for (let p = 0; p < da; p++) for (let q = 0; q < da; q++) for (let r = 0; r < dg; r++) rightB[p * da + q] += grad[r * da + p] * grad[r * da + q];
      }
      const beta = warmup ? Math.min(1 - 1 / (this.refreshes + 1), statDecay) : statDecay;
      const ema = (state: Float64Array, batch: Float64Array) => {
        for (let k = 0; k < state.length; k++) state[k] = this.t === 0 ? batch[k] : beta * state[k] + (1 - beta) * batch[k];
      };
      // KFAC refreshes its factors before inverting them; Shampoo's roots use the factors up to the previous step.
      if ((method === 'kfac' && statStep) || this.t === 0) { ema(st.left, leftB); ema(st.right, rightB); }
      if (refresh) {
        const precondition = (F: Float64Array, d: number) => {
          if (method === 'kfac') {
            const Fl = Float64Array.from(F);
            for (let p = 0; p < d; p++) Fl[p * d + p] += Math.sqrt(damping);
            return choleskyInverse(Fl, d);
          }
          return symmetricFunction(mat(d, d, F), (x) => (x + damping) ** -0.25).data;
        };
        st.Pl = precondition(st.left, dg); st.Pr = precondition(st.right, da);
      }
      if (method === 'shampoo' && this.t > 0 && statStep) { ema(st.left, leftB); ema(st.right, rightB); }
      // D = P_l · m · P_r;  θ ← θ − α·(D + decay·θ)
      const PlM = new Float64Array(dg * da);
      for (let r = 0; r < dg; r++) for (let k = 0; k < dg; k++) for (let c = 0; c < da; c++) PlM[r * da + c] += st.Pl[r * dg + k] * st.m[k * da + c];
      for (let r = 0; r < dg; r++) {
        for (let c = 0; c < da; c++) {
          let D = 0;
          for (let k = 0; k < da; k++) D += PlM[r * da + k] * st.Pr[k * da + c];
          if (c < nin) layer.W[r * nin + c] -= lr * (D + decay * layer.W[r * nin + c]); else layer.b[r] -= lr * (D + decay * layer.b[r]);
        }
      }
    });
    if (statStep) this.refreshes++;
    this.t++;
    return fb.loss;
  }
}
