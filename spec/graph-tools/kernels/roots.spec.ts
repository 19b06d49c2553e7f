// Inverse p-th roots by the coupled Newton iteration against an eigen-decomposition in float64
// (spec/helpers/linalg.ts symmetricFunction, cyclic Jacobi).
import { expect } from 'chai';
import { emitInverseRoot, type DataType } from '../../../graph-tools/index.js';
import { createBackend } from '../../../lib/runtime/index.js';
import type { Backend } from '../../../lib/runtime/backend.js';
import { identity, mat, matmul, randomMat, relMaxDiff, scale, symmetricFunction, transpose, type Mat } from '../../helpers/linalg.js';
import { runKernel } from '../../helpers/kernels.js';

/** A symmetric positive semi-definite matrix with eigenvalues spread over `decades` decades. */
function spreadSpd(n: number, seed: number, decades: number, top = 50): Mat {
  const q = randomMat(n, n, seed); // orthonormalise by Gram–Schmidt
  const cols: number[][] = [];
  for (let j = 0; j < n; j++) {
    let v = Array.from({ length: n }, (_, i) => q.data[i * n + j]);
    for (const c of cols) { const d = v.reduce((s, x, i) => s + x * c[i], 0); v = v.map((x, i) => x - d * c[i]); }
    const len = Math.hypot(...v);
    cols.push(v.map((x) => x / len));
  }
  const out = mat(n, n);
  cols.forEach((c, k) => {
    const lambda = top * 10 ** (-decades * k / (n - 1));
    for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) out.data[i * n + j] += lambda * c[i] * c[j];
  });
  return out;
}

describe('graph-tools/kernels/roots: (M + εI)^(−1/p) by coupled Newton', () => {
  let backend: Backend;
  before(async () => { backend = await createBackend('cpu'); });

  const root = async (ms: Mat[], o: { root: number; epsilon: number; iterations: number }, dtype: DataType) => {
    const n = ms[0].rows;
    const data = ms.flatMap((m) => Array.from(m.data));
    const out = await runKernel(backend, dtype, [{ name: 'M', shape: [ms.length, n, n], data }], (e, M) => ({ X: emitInverseRoot(e, M, n, o) }));
    return ms.map((_, g) => mat(n, n, out.X.subarray(g * n * n, (g + 1) * n * n)));
  };
  const reference = (m: Mat, p: number, eps: number) => symmetricFunction(m, (l) => (l + eps) ** (-1 / p));

  for (const p of [1, 2, 4]) {
    it(`p = ${p}: matches the eigen-decomposition in float64, batched over two matrices (eigenvalues over 4 decades)`, async () => {
      const ms = [spreadSpd(6, 3, 4), spreadSpd(6, 4, 4, 0.02)];
      const xs = await root(ms, { root: p, epsilon: 1e-3, iterations: 40 }, 'float64');
      xs.forEach((x, g) => expect(relMaxDiff(x.data, reference(ms[g], p, 1e-3).data), `matrix ${g}`).to.be.below(1e-9));
      // Xᵖ·(M + εI) = I.
      let xp = identity(6);
      for (let i = 0; i < p; i++) xp = matmul(xp, xs[0]);
      const regularised = mat(6, 6, ms[0].data.map((v, k) => v + (k % 7 === 0 ? 1e-3 : 0)));
      expect(relMaxDiff(matmul(xp, regularised).data, identity(6).data)).to.be.below(1e-8);
    });
  }

  it('float32: Shampoo\'s p = 4 over 6 decades, within 3e-3 (float32 rounding: 25 and 40 iterations agree)', async () => {
    const m = spreadSpd(8, 9, 6, 1e3);
    const [x] = await root([m], { root: 4, epsilon: 1e-3, iterations: 25 }, 'float32');
    expect(relMaxDiff(x.data, reference(m, 4, 1e-3).data)).to.be.below(3e-3);
    const [x40] = await root([m], { root: 4, epsilon: 1e-3, iterations: 40 }, 'float32');
    expect(relMaxDiff(x40.data, x.data)).to.be.below(1e-3);
    expect(relMaxDiff(x.data, transpose(x).data)).to.equal(0);
  });

  it('a truncated iteration under-estimates the smallest eigenvalues\' roots only (more damping, still positive definite)', async () => {
    const m = spreadSpd(6, 5, 8);
    const [x] = await root([m], { root: 4, epsilon: 1e-6, iterations: 5 }, 'float64');
    const exact = reference(m, 4, 1e-6);
    // Along the top eigenvector (the largest eigenvalue) the root is already accurate; the
    // quadratic form xᵀXx is positive and at most the exact one.
    const probe = (v: number[], a: Mat) => v.reduce((s, vi, i) => s + vi * v.reduce((t, vj, j) => t + a.data[i * 6 + j] * vj, 0), 0);
    for (let seed = 0; seed < 5; seed++) {
      const v = Array.from(randomMat(6, 1, 100 + seed).data);
      expect(probe(v, x)).to.be.above(0);
      expect(probe(v, x)).to.be.at.most(probe(v, exact) * (1 + 1e-9));
    }
    expect(relMaxDiff(scale(x, 1).data, exact.data)).to.be.above(1e-3); // it is truncated
  });
});
