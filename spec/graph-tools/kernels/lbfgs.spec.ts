// L-BFGS kernels (ALGORITHMS.md §2.2, §10) on the CPU EP against float64 plain-TypeScript
// references (spec/helpers/lbfgs-reference.ts): the textbook two-loop recursion and dense BFGS
// updates applied in order from γI ("L-BFGS equals BFGS").
import { expect } from 'chai';
import { encodeModel, type onnx } from '../../../graph-tools/index.js';
import { emitUpperTriangularInverse, lbfgsApplyModel, lbfgsPushModel, type LbfgsMethod } from '../../../graph-tools/kernels/lbfgs.js';
import { kernelModel } from '../../../graph-tools/kernels/bfgs.js';
import { createBackend } from '../../../lib/runtime/index.js';
import type { Backend, Session } from '../../../lib/runtime/backend.js';
import { cholesky, dot, identity, mat, matmul, randomMat, randomSpd, randomVector, relMaxDiff, scale, asymmetry, type Mat } from '../../helpers/linalg.js';
import { accepts, denseBfgs, packState, twoLoop, type Pair } from '../../helpers/lbfgs-reference.js';

type F = 'float32' | 'float64';
let backend: Backend;
const sessions = new Map<string, Session>();

async function session(key: string, model: () => onnx.ModelProto): Promise<Session> {
  let s = sessions.get(key);
  if (!s) {
    s = await backend.createSession(encodeModel(model()), { name: key });
    sessions.set(key, s);
  }
  return s;
}

async function run(s: Session, dtype: F, feeds: Record<string, { dims: number[]; data: ArrayLike<number> }>): Promise<Record<string, Float64Array>> {
  const Arr = dtype === 'float64' ? Float64Array : Float32Array;
  const inputs = Object.fromEntries(Object.entries(feeds).map(([k, v]) => [k, backend.tensor(dtype, Arr.from(v.data), v.dims)]));
  const out = await s.run(inputs);
  const r: Record<string, Float64Array> = {};
  for (const [k, t] of Object.entries(out)) r[k] = Float64Array.from(await backend.read(t) as Float32Array | Float64Array);
  return r;
}

interface ApplyCase { d: number; p: number; k: number; dtype?: F; method?: LbfgsMethod; gamma?: number | 'input' | 'newest' | 'diagonal'; gammaValue?: number; diagonal?: ArrayLike<number> }

async function apply(c: ApplyCase, pairs: readonly Pair[], X: Mat): Promise<Mat> {
  const dtype = c.dtype ?? 'float64';
  const key = `apply/${dtype}/${c.method ?? 'compact'}/${c.d}/${c.p}/${String(c.gamma ?? 1)}`;
  const s = await session(key, () => lbfgsApplyModel({ dtype, d: c.d, p: c.p, gamma: c.gamma, method: c.method }));
  const st = packState(pairs, c.p, c.d);
  const feeds: Record<string, { dims: number[]; data: ArrayLike<number> }> = {
    X: { dims: [X.rows, X.cols], data: X.data }, S: { dims: [c.p, c.d], data: st.S }, Y: { dims: [c.p, c.d], data: st.Y }, rho: { dims: [c.p], data: st.rho },
  };
  if (c.gamma === 'input') feeds.gamma = { dims: [], data: [c.gammaValue ?? 1] };
  if (c.gamma === 'diagonal') feeds.gamma = { dims: [c.d, 1], data: c.diagonal! };
  const out = await run(s, dtype, feeds);
  return mat(X.rows, X.cols, out.HX);
}

/** Pairs with sᵀy > 0 from different SPD matrices: y_j = B_j s_j. */
function randomPairs(n: number, d: number, seed: number): Pair[] {
  return Array.from({ length: n }, (_, j) => {
    const s = randomVector(d, seed + 31 * j);
    const B = randomSpd(d, seed + 31 * j + 7, 0.3);
    return { s, y: Float64Array.from(matmul(B, mat(d, 1, s)).data) };
  });
}

const METHODS: LbfgsMethod[] = ['compact', 'two-loop'];

describe('graph-tools/kernels/lbfgs', function () {
  before(async () => { backend = await createBackend('cpu'); });
  after(async () => {
    for (const s of sessions.values()) await s.release();
    sessions.clear();
  });

  const d = 9;
  const p = 4;

  for (const method of METHODS) {
    describe(`emitLbfgsApply ('${method}', float64)`, () => {
      for (const k of [1, 5]) {
        for (const count of [2, p]) {
          it(`equals the TS two-loop for k = ${k}, ${count} of ${p} pairs, γ = 1 and γ = 0.7`, async () => {
            const pairs = randomPairs(count, d, 100 + k + count);
            const X = randomMat(d, k, 7 + k);
            for (const gamma of [1, 0.7]) {
              const got = await apply({ d, p, k, method, gamma }, pairs, X);
              expect(relMaxDiff(got.data, twoLoop(pairs, gamma, X).data)).to.be.below(1e-12);
            }
          });
        }
      }

      it('γ as a graph value, and the textbook γ = sᵀy/yᵀy of the newest pair', async () => {
        const pairs = randomPairs(3, d, 300);
        const X = randomMat(d, 3, 301);
        const viaInput = await apply({ d, p, k: 3, method, gamma: 'input', gammaValue: 2.5 }, pairs, X);
        expect(relMaxDiff(viaInput.data, twoLoop(pairs, 2.5, X).data)).to.be.below(1e-12);
        const last = pairs[pairs.length - 1];
        const newest = await apply({ d, p, k: 3, method, gamma: 'newest' }, pairs, X);
        expect(relMaxDiff(newest.data, twoLoop(pairs, dot(last.s, last.y) / dot(last.y, last.y), X).data)).to.be.below(1e-12);
        // An empty buffer falls back to γ = 1.
        expect(relMaxDiff((await apply({ d, p, k: 3, method, gamma: 'newest' }, [], X)).data, X.data)).to.equal(0);
      });

      it('L-BFGS equals dense BFGS from γI while |pairs| ≤ p (H probed with X = I)', async () => {
        for (let count = 1; count <= p; count++) {
          const pairs = randomPairs(count, d, 500 + count);
          const H = await apply({ d, p, k: d, method, gamma: 0.8 }, pairs, identity(d));
          expect(relMaxDiff(H.data, denseBfgs(pairs, 0.8, d).data)).to.be.below(1e-10);
        }
      });

      it('a diagonal H0 (a [d, 1] graph value): equals dense BFGS from diag(H0) while |pairs| ≤ p, and the two-loop on X', async () => {
        const diagonal = Float64Array.from({ length: d }, (_, i) => 0.2 + 0.3 * i); // spread over 0.2-2.6
        for (let count = 0; count <= p; count++) {
          const pairs = randomPairs(count, d, 900 + count);
          const H = await apply({ d, p, k: d, method, gamma: 'diagonal', diagonal }, pairs, identity(d));
          expect(relMaxDiff(H.data, denseBfgs(pairs, diagonal, d).data), `${count} pairs`).to.be.below(1e-10);
        }
        const pairs = randomPairs(p, d, 950);
        const X = randomMat(d, 4, 951);
        expect(relMaxDiff((await apply({ d, p, k: 4, method, gamma: 'diagonal', diagonal }, pairs, X)).data, twoLoop(pairs, diagonal, X).data)).to.be.below(1e-12);
      });

      it('an empty buffer gives γ·X', async () => {
        const X = randomMat(d, 5, 11);
        expect(relMaxDiff((await apply({ d, p, k: 5, method, gamma: 1 }, [], X)).data, X.data)).to.equal(0);
        expect(relMaxDiff((await apply({ d, p, k: 5, method, gamma: 0.7 }, [], X)).data, scale(X, 0.7).data)).to.be.below(1e-15);
      });

      it('H stays symmetric positive definite: xᵀHx > 0 for random x, Cholesky succeeds', async () => {
        // More pairs than p: the operator is then the BFGS of the last p pairs from γI, still PD.
        const pairs = randomPairs(p + 3, d, 700);
        const X = randomMat(d, 20, 701);
        const HX = await apply({ d, p, k: 20, method }, pairs, X);
        for (let c = 0; c < 20; c++) {
          let q = 0;
          for (let i = 0; i < d; i++) q += X.data[i * 20 + c] * HX.data[i * 20 + c];
          expect(q).to.be.above(0);
        }
        const H = await apply({ d, p, k: d, method }, pairs, identity(d));
        expect(asymmetry(H)).to.be.below(1e-12);
        expect(cholesky(H)).to.not.equal(null);
        expect(relMaxDiff(H.data, denseBfgs(pairs.slice(-p), 1, d).data)).to.be.below(1e-10);
      });
    });
  }

  it('longer memories (p = 16 and p = 13, not a power of two; d = 24; part-filled and full) and opset 18 models still equal dense BFGS', async () => {
    for (const method of METHODS) {
      for (const [mem, count] of [[16, 10], [16, 16], [13, 9], [13, 13]]) {
        const pairs = randomPairs(count, 24, 1300 + count);
        const H = await apply({ d: 24, p: mem, k: 24, method }, pairs, identity(24));
        expect(relMaxDiff(H.data, denseBfgs(pairs, 1, 24).data), `${method}, p ${mem}, ${count} pairs`).to.be.below(1e-10);
      }
      const pairs = randomPairs(3, d, 1400);
      const X = randomMat(d, 2, 1401);
      const s18 = await session(`apply18/${method}`, () => lbfgsApplyModel({ dtype: 'float64', d, p, method, gamma: 0.7, opset: 18 }));
      const st = packState(pairs, p, d);
      const out = await run(s18, 'float64', { X: { dims: [d, 2], data: X.data }, S: { dims: [p, d], data: st.S }, Y: { dims: [p, d], data: st.Y }, rho: { dims: [p], data: st.rho } });
      expect(relMaxDiff(out.HX, twoLoop(pairs, 0.7, X).data)).to.be.below(1e-12);
    }
  });

  it('float32 (both methods) matches the float64 two-loop to float32 accuracy', async () => {
    const pairs = randomPairs(p, 12, 900);
    const X = randomMat(12, 6, 901);
    const want = twoLoop(pairs, 1, X);
    for (const method of METHODS) {
      const got = await apply({ d: 12, p, k: 6, dtype: 'float32', method }, pairs, X);
      expect(relMaxDiff(got.data, want.data)).to.be.below(2e-5);
    }
  });

  describe('emitUpperTriangularInverse', () => {
    for (const n of [1, 2, 5, 8, 13, 100]) {
      it(`R·R⁻¹ = I and R⁻¹ is upper triangular for a random ${n} × ${n} R (float64)`, async () => {
        const R = randomMat(n, n, 1500 + n);
        // Off-diagonal entries O(1/n): random triangular matrices are otherwise exponentially ill-conditioned in n.
        for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) {
          if (j < i) R.data[i * n + j] = 0;
          else if (j === i) R.data[i * n + j] = (i % 2 ? -1 : 1) * (0.5 + Math.abs(R.data[i * n + j]));
          else R.data[i * n + j] *= 4 / n;
        }
        const s = await session(`triangular/${n}`, () => kernelModel([{ name: 'R', dtype: 'float64', shape: [n, n] }], (e, r) => ({ Rinv: emitUpperTriangularInverse(e, r, n, 'float64') })));
        const Rinv = mat(n, n, (await run(s, 'float64', { R: { dims: [n, n], data: R.data } })).Rinv);
        for (let i = 0; i < n; i++) for (let j = 0; j < i; j++) expect(Rinv.data[i * n + j]).to.equal(0);
        expect(relMaxDiff(matmul(R, Rinv).data, identity(n).data)).to.be.below(1e-12);
      });
    }
  });

  describe('emitLbfgsPush', () => {
    const pd = 6;
    const pp = 3;
    type State = { S: Float64Array; Y: Float64Array; rho: Float64Array };
    async function push(st: State, pair: Pair, r: Float64Array | null, dtype: F = 'float64') {
      const s = await session(`push/${dtype}/${r ? 'r' : 'none'}`, () => lbfgsPushModel({ dtype, d: pd, p: pp, reference: r !== null }));
      const feeds: Record<string, { dims: number[]; data: ArrayLike<number> }> = {
        S: { dims: [pp, pd], data: st.S }, Y: { dims: [pp, pd], data: st.Y }, rho: { dims: [pp], data: st.rho },
        s: { dims: [pd], data: pair.s }, y: { dims: [pd], data: pair.y },
      };
      if (r) feeds.r = { dims: [pd], data: r };
      const out = await run(s, dtype, feeds);
      return { state: { S: out.S_out, Y: out.Y_out, rho: out.rho_out }, accepted: out.accepted[0], sTy: out.sTy[0] };
    }
    const expectState = (got: State, want: State, tol = 0) => {
      for (const key of ['S', 'Y', 'rho'] as const) expect(relMaxDiff(got[key], want[key]), key).to.be.at.most(tol);
    };

    it('fills oldest → newest and drops the oldest pair when full', async () => {
      const pairs = randomPairs(pp + 2, pd, 1000);
      const r = randomVector(pd, 1001);
      let st: State = packState([], pp, pd);
      for (let n = 1; n <= pairs.length; n++) {
        const out = await push(st, pairs[n - 1], r);
        expect(out.accepted).to.equal(1);
        expect(out.sTy).to.be.closeTo(dot(pairs[n - 1].s, pairs[n - 1].y), 1e-12);
        st = out.state;
        expectState(st, packState(pairs.slice(0, n), pp, pd), 1e-15);
      }
    });

    it('rejects sᵀy ≤ 0, sᵀy below 1e-4·‖s‖²·‖r‖ and non-finite pairs, leaving the state unchanged', async () => {
      const r = randomVector(pd, 1101);
      const st = packState(randomPairs(2, pd, 1100), pp, pd);
      const s = randomVector(pd, 1102);
      const rNorm = Math.sqrt(dot(r, r));
      const bad: Array<[string, Pair]> = [
        ['sᵀy < 0', { s, y: s.map((v) => -v) }],
        ['sᵀy = 0', { s, y: new Float64Array(pd) }],
        ['sᵀy just below the threshold', { s, y: s.map((v) => 0.5e-4 * rNorm * v) }],
        ['NaN in y', { s, y: s.map((v, i) => (i === 2 ? NaN : v)) }],
        ['∞ in s', { s: s.map((v, i) => (i === 1 ? Infinity : v)), y: s }],
        ['∞ in y', { s, y: s.map((v, i) => (i === 0 ? Infinity : v)) }],
      ];
      for (const [what, pair] of bad) {
        expect(accepts(pair, r), what).to.equal(false);
        const out = await push(st, pair, r);
        expect(out.accepted, what).to.equal(0);
        expectState(out.state, st);
      }
      // Just above the threshold it is accepted; without a reference only sᵀy > 0 is required.
      const ok = { s, y: s.map((v) => 2e-4 * rNorm * v) };
      expect(accepts(ok, r)).to.equal(true);
      expect((await push(st, ok, r)).accepted).to.equal(1);
      expect((await push(st, bad[2][1], null)).accepted).to.equal(1);
    });

    it('float32: pushes then applies like the float64 reference', async () => {
      const pairs = randomPairs(pp + 1, pd, 1200);
      let st: State = packState([], pp, pd);
      for (const pair of pairs) st = (await push(st, pair, null, 'float32')).state;
      expectState(st, packState(pairs, pp, pd), 1e-6);
    });
  });
});
