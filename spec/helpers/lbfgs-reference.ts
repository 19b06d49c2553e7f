// Plain-TypeScript float64 references for the L-BFGS kernels (ALGORITHMS.md §2.1, §2.2, §10):
// the textbook two-loop recursion, dense BFGS inverse updates applied in order from γI, and the
// buffer update with its acceptance test. Small and obvious rather than fast.
import { bfgsProductForm, dot, identity, mat, matvec, scale, type Mat } from './linalg.js';

export interface Pair { s: Float64Array; y: Float64Array }

/** H·X by the two-loop recursion over `pairs` (oldest first), H0 = γI; X is [d, k] (each column). */
export function twoLoop(pairs: readonly Pair[], gamma: number | ArrayLike<number>, X: Mat): Mat {
  const out = mat(X.rows, X.cols);
  for (let c = 0; c < X.cols; c++) {
    const q = Float64Array.from({ length: X.rows }, (_, i) => X.data[i * X.cols + c]);
    const alpha = new Float64Array(pairs.length);
    for (let j = pairs.length - 1; j >= 0; j--) {
      const { s, y } = pairs[j];
      alpha[j] = dot(s, q) / dot(s, y);
      for (let i = 0; i < q.length; i++) q[i] -= alpha[j] * y[i];
    }
    for (let i = 0; i < q.length; i++) q[i] *= typeof gamma === 'number' ? gamma : gamma[i];
    for (let j = 0; j < pairs.length; j++) {
      const { s, y } = pairs[j];
      const beta = dot(y, q) / dot(s, y);
      for (let i = 0; i < q.length; i++) q[i] += s[i] * (alpha[j] - beta);
    }
    for (let i = 0; i < q.length; i++) out.data[i * X.cols + c] = q[i];
  }
  return out;
}

/** Dense BFGS inverse updates (product form) of the pairs in order, starting from γI or diag(γ). */
export function denseBfgs(pairs: readonly Pair[], gamma: number | ArrayLike<number>, d: number): Mat {
  let H = typeof gamma === 'number' ? scale(identity(d), gamma) : mat(d, d, Float64Array.from({ length: d * d }, (_, k) => (k % (d + 1) === 0 ? gamma[k / (d + 1)] : 0)));
  for (const { s, y } of pairs) H = bfgsProductForm(H, s, y);
  return H;
}

/** The acceptance test of §2.2: sᵀs finite and sᵀy > threshold·‖s‖²·‖r‖ (and sᵀy > 0). */
export function accepts(pair: Pair, r: ArrayLike<number> | null, threshold = 1e-4): boolean {
  const sTs = dot(pair.s, pair.s);
  const sTy = dot(pair.s, pair.y);
  const limit = r ? threshold * sTs * Math.sqrt(dot(r, r)) : 0;
  return Number.isFinite(sTs) && Number.isFinite(dot(pair.y, pair.y)) && sTy > 0 && sTy > limit;
}

/** The fixed-size buffer (S [p, d], Y [p, d], rho [p], oldest row first, empty rows zero) of `pairs` (the last p kept). */
export function packState(pairs: readonly Pair[], p: number, d: number): { S: Float64Array; Y: Float64Array; rho: Float64Array } {
  const kept = pairs.slice(Math.max(0, pairs.length - p));
  const S = new Float64Array(p * d);
  const Y = new Float64Array(p * d);
  const rho = new Float64Array(p);
  const off = p - kept.length;
  kept.forEach(({ s, y }, j) => {
    S.set(s, (off + j) * d);
    Y.set(y, (off + j) * d);
    rho[off + j] = 1 / dot(s, y);
  });
  return { S, Y, rho };
}

/** Random pairs with sᵀy > 0: y = B s for a fixed SPD B (so the pairs look like a quadratic's). */
export function curvaturePairs(n: number, d: number, B: Mat, randomVec: (seed: number) => Float64Array, seed: number): Pair[] {
  return Array.from({ length: n }, (_, j) => {
    const s = randomVec(seed + j);
    return { s, y: matvec(B, s) };
  });
}
