// BFGS, double-damping and preconditioning kernels run on the CPU EP against float64
// plain-TypeScript references (spec/helpers/linalg.ts): the product form of BFGS, the secant
// equation, Cholesky for positive definiteness, and an explicit Kronecker product (ALGORITHMS.md §10).
import { expect } from 'chai';
import type { DataType } from '../../../graph-tools/index.js';
import { Emitter } from '../../../graph-tools/ir/emitter.js';
import { emitBfgsInverseUpdate, emitDoubleDamping, emitHessianActionPair, emitPrecondition, emitRegularizedInverse, type DoubleDampingOptions } from '../../../graph-tools/kernels/bfgs.js';
import { createBackend } from '../../../lib/runtime/index.js';
import type { Backend } from '../../../lib/runtime/backend.js';
import {
  asymmetry, bfgsProductForm, cholesky, dot, kron, mat, matmul, matvec, norm, randomMat, randomSpd, randomVector, relMaxDiff, scale, type Mat,
} from '../../helpers/linalg.js';
import { runKernel as runKernelOn, type Feed } from '../../helpers/kernels.js';

let backend: Backend;
const runKernel = (dtype: DataType, feeds: Feed[], build: (e: Emitter, ...names: string[]) => Record<string, string>) => runKernelOn(backend, dtype, feeds, build);

const f32 = (x: ArrayLike<number>) => Float64Array.from(Float32Array.from(x));

async function bfgs(H: Mat, s: ArrayLike<number>, y: ArrayLike<number>, r: ArrayLike<number> | null, dtype: DataType = 'float64') {
  const d = H.rows;
  const feeds: Feed[] = [{ name: 'H', shape: [d, d], data: H.data }, { name: 's', shape: [d], data: s }, { name: 'y', shape: [d], data: y }];
  if (r) feeds.push({ name: 'r', shape: [d], data: r });
  const out = await runKernel(dtype, feeds, (e, h, sv, yv, rv) => {
    const u = emitBfgsInverseUpdate(e, h, sv, yv, rv ?? null);
    return { H: u.H, accepted: u.accepted, sTy: u.sTy };
  });
  return { H: mat(d, d, out.H), accepted: out.accepted[0], sTy: out.sTy[0] };
}

async function damping(s: ArrayLike<number>, y: ArrayLike<number>, Hy: ArrayLike<number>, opts: DoubleDampingOptions, dtype: DataType = 'float64') {
  const d = s.length;
  const out = await runKernel(dtype, [
    { name: 's', shape: [d], data: s }, { name: 'y', shape: [d], data: y }, { name: 'Hy', shape: [d], data: Hy },
  ], (e, sv, yv, hy) => {
    const r = emitDoubleDamping(e, sv, yv, hy, opts);
    return { s: r.s, y: r.y, powell: r.powell, second: r.second };
  });
  return { s: out.s, y: out.y, powell: out.powell[0], second: out.second[0] };
}

/** A pair with sᵀy > 0: y = B s for a random SPD B. */
function curvaturePair(d: number, seed: number) {
  const s = randomVector(d, seed);
  return { s, y: matvec(randomSpd(d, seed + 100), s) };
}

const secant = (H: Mat, s: ArrayLike<number>, y: ArrayLike<number>) => {
  const Hy = matvec(H, y);
  return norm(Hy.map((v, i) => v - s[i])) / norm(s);
};

describe('graph-tools/kernels/bfgs', function () {
  before(async () => { backend = await createBackend('cpu'); });

  describe('emitBfgsInverseUpdate (float64, against the product form)', () => {
    const d = 7;
    for (const seed of [1, 2, 3]) {
      it(`seed ${seed}: secant holds, H⁺ is symmetric and PD and equals (I − ρsyᵀ)H(I − ρysᵀ) + ρssᵀ`, async () => {
        const H = randomSpd(d, seed);
        const { s, y } = curvaturePair(d, seed + 10);
        const r = randomVector(d, seed + 20);
        const out = await bfgs(H, s, y, r);
        expect(out.accepted).to.equal(1);
        expect(out.sTy).to.be.closeTo(dot(s, y), 1e-12 * Math.abs(dot(s, y)));
        expect(secant(out.H, s, y)).to.be.below(1e-10);
        expect(asymmetry(out.H)).to.equal(0);
        expect(cholesky(out.H), 'Cholesky of H⁺').to.not.equal(null);
        expect(relMaxDiff(out.H.data, bfgsProductForm(H, s, y).data)).to.be.below(1e-10);
      });
    }

    it('no-op: s = H y leaves H unchanged', async () => {
      const H = randomSpd(d, 4);
      const y = randomVector(d, 5);
      const s = matvec(H, y);
      const out = await bfgs(H, s, y, randomVector(d, 6));
      expect(out.accepted).to.equal(1);
      expect(relMaxDiff(out.H.data, H.data)).to.be.below(1e-12);
    });

    it('skips when sᵀy ≤ 0: H returned bit for bit, accepted 0', async () => {
      const H = randomSpd(d, 7);
      const { s, y } = curvaturePair(d, 8);
      const out = await bfgs(H, s, y.map((v) => -v), randomVector(d, 9));
      expect(out.accepted).to.equal(0);
      expect(out.sTy).to.be.below(0);
      expect(Array.from(out.H.data)).to.deep.equal(Array.from(H.data));
    });

    it('skips when sᵀy ≤ 1e-4·‖s‖²·‖r‖ and accepts just above it', async () => {
      const H = randomSpd(d, 10);
      const { s, y } = curvaturePair(d, 11);
      const r = randomVector(d, 12);
      // Scale r so that the limit 1e-4·‖s‖²·‖r‖ is 1.1 (skip) or 0.9 (accept) times sᵀy.
      const rFor = (ratio: number) => r.map((v) => v * ratio * dot(s, y) / (1e-4 * dot(s, s) * norm(r)));
      const skipped = await bfgs(H, s, y, rFor(1.1));
      expect(skipped.accepted).to.equal(0);
      expect(Array.from(skipped.H.data)).to.deep.equal(Array.from(H.data));
      const accepted = await bfgs(H, s, y, rFor(0.9));
      expect(accepted.accepted).to.equal(1);
      expect(secant(accepted.H, s, y)).to.be.below(1e-10);
    });

    it('skips on a NaN in y (unchanged, accepted 0)', async () => {
      const H = randomSpd(d, 13);
      const { s, y } = curvaturePair(d, 14);
      y[3] = NaN;
      const out = await bfgs(H, s, y, randomVector(d, 15));
      expect(out.accepted).to.equal(0);
      expect(Array.from(out.H.data)).to.deep.equal(Array.from(H.data));
    });

    it('skips when H⁺ overflows although sᵀy > 0 (the non-finite rule on its own, no reference)', async () => {
      const H = randomSpd(d, 16);
      const s = new Float64Array(d); s[0] = 1e200; s[1] = 1e200;
      const y = new Float64Array(d); y[0] = 1e-200; y[1] = 1e-200;
      const out = await bfgs(H, s, y, null);
      expect(out.sTy).to.be.closeTo(2, 1e-12);
      expect(out.accepted).to.equal(0);
      expect(Array.from(out.H.data)).to.deep.equal(Array.from(H.data));
    });

    it('is scale invariant: (3.7·s, 3.7·y) gives the same H⁺', async () => {
      const H = randomSpd(d, 17);
      const { s, y } = curvaturePair(d, 18);
      const r = randomVector(d, 19);
      const a = await bfgs(H, s, y, r);
      const b = await bfgs(H, s.map((v) => 3.7 * v), y.map((v) => 3.7 * v), r);
      expect(a.accepted).to.equal(1);
      expect(b.accepted).to.equal(1);
      expect(relMaxDiff(b.H.data, a.H.data)).to.be.below(1e-12);
    });

    it('repeated updates stay symmetric positive definite and satisfy the latest secant pair', async () => {
      let H = randomSpd(d, 20);
      for (let k = 0; k < 5; k++) {
        const { s, y } = curvaturePair(d, 30 + k);
        const out = await bfgs(H, s, y, null);
        expect(out.accepted).to.equal(1);
        expect(secant(out.H, s, y)).to.be.below(1e-10);
        expect(relMaxDiff(out.H.data, bfgsProductForm(H, s, y).data)).to.be.below(1e-10);
        H = out.H;
      }
      expect(cholesky(H)).to.not.equal(null);
    });
  });

  describe('emitBfgsInverseUpdate (float32)', () => {
    it('secant ‖H⁺y − s‖/‖s‖ < 1e-4, symmetric, PD', async () => {
      const d = 7;
      const H = mat(d, d, f32(randomSpd(d, 40).data));
      const { s: s64, y: y64 } = curvaturePair(d, 41);
      const s = f32(s64);
      const y = f32(y64);
      const out = await bfgs(H, s, y, f32(randomVector(d, 42)), 'float32');
      expect(out.accepted).to.equal(1);
      expect(secant(out.H, s, y)).to.be.below(1e-4);
      expect(asymmetry(out.H)).to.equal(0);
      expect(cholesky(out.H)).to.not.equal(null);
      expect(relMaxDiff(out.H.data, bfgsProductForm(H, s, y).data)).to.be.below(1e-5);
    });

    it('skips on a NaN in y', async () => {
      const d = 5;
      const H = mat(d, d, f32(randomSpd(d, 43).data));
      const { s, y } = curvaturePair(d, 44);
      y[0] = NaN;
      const out = await bfgs(H, f32(s), f32(y), f32(randomVector(d, 45)), 'float32');
      expect(out.accepted).to.equal(0);
      expect(Array.from(out.H.data)).to.deep.equal(Array.from(H.data));
    });
  });

  describe('emitDoubleDamping (float64)', () => {
    const d = 6;
    const mu1 = 0.2;

    /** A pair that fails Powell's test: y small and pointing partly against s. */
    function weakPair(seed: number) {
      const H = randomSpd(d, seed);
      const s = randomVector(d, seed + 1);
      const y = randomVector(d, seed + 2).map((v, i) => 0.1 * v - 0.05 * s[i]);
      const Hy = matvec(H, y);
      expect(dot(s, y), 'the pair fails Powell').to.be.below(mu1 * dot(y, Hy));
      return { H, s, y, Hy };
    }

    it('Powell then LM: sᵀy = μ1·yᵀHy after Powell, y = y + μ2·s_pow', async () => {
      const { s, y, Hy } = weakPair(50);
      const mu2 = 0.3;
      const out = await damping(s, y, Hy, { mu1, mu2, mode: 'lm' });
      expect(out.powell).to.equal(1);
      expect(out.second).to.equal(1);
      const q = dot(y, Hy);
      // Powell post-condition on the damped s with the original y.
      expect(dot(out.s, y)).to.be.closeTo(mu1 * q, 1e-12 * q);
      expect(dot(out.s, y)).to.be.at.least(mu1 * q - 1e-12 * q);
      const expectedSTy = dot(out.s, y) + mu2 * dot(out.s, out.s);
      expect(dot(out.s, out.y)).to.be.closeTo(expectedSTy, 1e-12 * Math.abs(expectedSTy));
      expect(relMaxDiff(out.y, y.map((v, i) => v + mu2 * out.s[i]))).to.be.below(1e-15);
      // s_pow = θ1·s + (1−θ1)·Hy with θ1 = (1−μ1)q/(q−c).
      const theta1 = (1 - mu1) * q / (q - dot(s, y));
      expect(relMaxDiff(out.s, s.map((v, i) => theta1 * v + (1 - theta1) * Hy[i]))).to.be.below(1e-13);
    });

    it('Powell then NeurIPS: sᵀy = μ2·sᵀs', async () => {
      const { s, y, Hy } = weakPair(60);
      const mu2 = 0.3;
      const out = await damping(s, y, Hy, { mu1, mu2, mode: 'neurips' });
      expect(out.powell).to.equal(1);
      expect(out.second).to.equal(1);
      const n = dot(out.s, out.s);
      expect(dot(out.s, out.y)).to.be.closeTo(mu2 * n, 1e-12 * n);
    });

    it('NeurIPS with μ2 ≥ 1 (θ2 outside [0, 1], unclamped) still gives sᵀy = μ2·sᵀs', async () => {
      const { s, y, Hy } = weakPair(70);
      const mu2 = 1.5;
      const out = await damping(s, y, Hy, { mu1, mu2, mode: 'neurips' });
      expect(out.second).to.equal(1);
      const n = dot(out.s, out.s);
      const c = dot(out.s, y);
      const theta2 = (1 - mu2) * n / (n - c);
      expect(theta2 < 0 || theta2 > 1, `θ2 = ${theta2}`).to.equal(true);
      expect(dot(out.s, out.y)).to.be.closeTo(mu2 * n, 1e-12 * n);
    });

    it('no change when both thresholds are already met (powell 0, second 0)', async () => {
      const H = scale(randomSpd(d, 80), 0.2);
      const s = randomVector(d, 81);
      const y = s.map((v) => 2 * v);
      const Hy = matvec(H, y);
      expect(dot(s, y)).to.be.at.least(mu1 * dot(y, Hy));
      const mu2 = 0.5;
      expect(dot(s, y)).to.be.at.least(mu2 * dot(s, s));
      const out = await damping(s, y, Hy, { mu1, mu2, mode: 'neurips' });
      expect(out.powell).to.equal(0);
      expect(out.second).to.equal(0);
      expect(Array.from(out.s)).to.deep.equal(Array.from(s));
      expect(Array.from(out.y)).to.deep.equal(Array.from(y));
      const lm = await damping(s, y, Hy, { mu1, mu2, mode: 'lm' });
      expect(lm.powell).to.equal(0);
      expect(Array.from(lm.s)).to.deep.equal(Array.from(s));
    });

    it('skips Powell when yᵀHy is 0 (y = 0) and then NeurIPS sets y = μ2·s', async () => {
      const H = randomSpd(d, 90);
      const s = randomVector(d, 91);
      const y = new Float64Array(d);
      const out = await damping(s, y, matvec(H, y), { mu1, mu2: 0.4, mode: 'neurips' });
      expect(out.powell).to.equal(0);
      expect(Array.from(out.s)).to.deep.equal(Array.from(s));
      expect(relMaxDiff(out.y, s.map((v) => 0.4 * v))).to.be.below(1e-15);
    });

    it('float32: post-conditions hold to float32 precision', async () => {
      const { s, y, Hy } = weakPair(100);
      const mu2 = 0.3;
      const out = await damping(f32(s), f32(y), f32(Hy), { mu1, mu2, mode: 'neurips' }, 'float32');
      expect(out.powell).to.equal(1);
      const n = dot(out.s, out.s);
      expect(dot(out.s, out.y)).to.be.closeTo(mu2 * n, 1e-5 * n);
    });
  });

  describe('emitPrecondition', () => {
    const g = 4;
    const a = 5;

    it('D = Hg·X·Ha', async () => {
      const Hg = randomMat(g, g, 1);
      const X = randomMat(g, a, 2);
      const Ha = randomMat(a, a, 3);
      const out = await runKernel('float64', [
        { name: 'Hg', shape: [g, g], data: Hg.data }, { name: 'X', shape: [g, a], data: X.data }, { name: 'Ha', shape: [a, a], data: Ha.data },
      ], (e, hg, x, ha) => ({ D: emitPrecondition(e, hg, x, ha) }));
      expect(relMaxDiff(out.D, matmul(matmul(Hg, X), Ha).data)).to.be.below(1e-14);
    });

    it('Kronecker identity: kron(Hg, Ha)·vec_r(X) = vec_r(Hg X Ha) for symmetric Ha (§1.2)', async () => {
      const Hg = randomMat(g, g, 4);
      const X = randomMat(g, a, 5);
      const Ha = randomSpd(a, 6);
      const out = await runKernel('float64', [
        { name: 'Hg', shape: [g, g], data: Hg.data }, { name: 'X', shape: [g, a], data: X.data }, { name: 'Ha', shape: [a, a], data: Ha.data },
      ], (e, hg, x, ha) => ({ D: emitPrecondition(e, hg, x, ha) }));
      expect(relMaxDiff(out.D, matvec(kron(Hg, Ha), X.data))).to.be.below(1e-13);
    });

    it('groups: [G,g,g]·[G,g,a]·[G,a,a] matches each group in turn (float32)', async () => {
      const G = 3;
      const mats = Array.from({ length: G }, (_, i) => ({ Hg: randomMat(g, g, 10 + i), X: randomMat(g, a, 20 + i), Ha: randomMat(a, a, 30 + i) }));
      const stack = (k: 'Hg' | 'X' | 'Ha') => f32(mats.flatMap((m) => Array.from(m[k].data)));
      const out = await runKernel('float32', [
        { name: 'Hg', shape: [G, g, g], data: stack('Hg') }, { name: 'X', shape: [G, g, a], data: stack('X') }, { name: 'Ha', shape: [G, a, a], data: stack('Ha') },
      ], (e, hg, x, ha) => ({ D: emitPrecondition(e, hg, x, ha) }));
      const round = (m: Mat) => mat(m.rows, m.cols, f32(m.data));
      const expected = mats.flatMap((m) => Array.from(matmul(matmul(round(m.Hg), round(m.X)), round(m.Ha)).data));
      expect(relMaxDiff(out.D, expected)).to.be.below(1e-5);
    });
  });

  describe('emitHessianActionPair', () => {
    const d = 5;
    const lambda = 0.1;
    const Ha = randomSpd(d, 200);
    const Afac = randomSpd(d, 201);
    const abar = randomVector(d, 202);
    const Alambda = mat(d, d, Afac.data.map((v, i) => v + (i % (d + 1) === 0 ? lambda : 0)));

    it('s = H_a·ā, y = (A + λI)·s; BFGS on it gives H_a⁺·A_λ·s = s (A as a value and as a callback)', async () => {
      const feeds: Feed[] = [{ name: 'Ha', shape: [d, d], data: Ha.data }, { name: 'A', shape: [d, d], data: Afac.data }, { name: 'abar', shape: [d], data: abar }];
      for (const callback of [false, true]) {
        const out = await runKernel('float64', feeds, (e, ha, A, ab) => {
          const pair = emitHessianActionPair(e, ha, ab, callback ? (v) => e.op('MatMul', [A, v]) : A, lambda);
          const u = emitBfgsInverseUpdate(e, ha, pair.s, pair.y, ab);
          return { s: pair.s, y: pair.y, H: u.H, accepted: u.accepted };
        });
        const s = matvec(Ha, abar);
        expect(relMaxDiff(out.s, s)).to.be.below(1e-14);
        expect(relMaxDiff(out.y, matvec(Alambda, s))).to.be.below(1e-14);
        expect(dot(out.s, out.y)).to.be.at.least(lambda * dot(s, s));
        expect(out.accepted[0]).to.equal(1);
        const Hplus = mat(d, d, out.H);
        expect(secant(Hplus, s, matvec(Alambda, s))).to.be.below(1e-10);
      }
    });
  });
});

describe('graph-tools/kernels: regularised inverse (H_a⁰)', () => {
  before(async () => { backend ??= await createBackend('cpu'); });
  for (const dtype of ['float64', 'float32'] as const) {
    it(`(A + λI)·result = I for a random SPD A, ${dtype}`, async () => {
      const d = 7;
      const A = randomSpd(d, 5);
      const out = await runKernel(dtype, [{ name: 'A', shape: [d, d], data: A.data }], (e, a) => ({ inv: emitRegularizedInverse(e, a, 0.3, d, dtype) }));
      const regularised = mat(d, d, A.data.map((v, k) => (k % (d + 1) === 0 ? v + 0.3 : v)));
      const product = matmul(regularised, mat(d, d, out.inv));
      const identityError = Math.max(...Array.from(product.data, (v, k) => Math.abs(v - (k % (d + 1) === 0 ? 1 : 0))));
      expect(identityError).to.be.below(dtype === 'float64' ? 1e-10 : 1e-4);
    });
  }
});
