// Self-tests of the float64 reference MLP and K-BFGS / K-BFGS(L) oracle (spec/helpers).
import { expect } from 'chai';
import {
  cloneRefMlp, forwardBackward, makeRefMlp, refLoss, RefRng,
  type Activation, type RefLossKind, type RefMlp, type RefReduction,
} from '../helpers/mlp-reference.js';
import { bfgsUpdate, doubleDamping, KbfgsReference, matVec, SgdmReference, twoLoop } from '../helpers/kbfgs-reference.js';
import { structuredData } from '../helpers/tiny-autoencoder.js';

const dot = (u: ArrayLike<number>, v: ArrayLike<number>) => { let s = 0; for (let i = 0; i < u.length; i++) s += u[i] * v[i]; return s; };
const norm = (u: ArrayLike<number>) => Math.sqrt(dot(u, u));
const relErr = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  let d = 0; for (let i = 0; i < a.length; i++) d += (a[i] - b[i]) ** 2;
  return Math.sqrt(d) / Math.max(norm(b), 1e-300);
};

function randomArray(rng: RefRng, n: number, lo = -1, hi = 1): Float64Array {
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) out[i] = rng.uniform(lo, hi);
  return out;
}

function spdMatrix(rng: RefRng, n: number): Float64Array {
  const B = randomArray(rng, n * n);
  const S = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) {
    let s = i === j ? 0.5 : 0;
    for (let k = 0; k < n; k++) s += B[i * n + k] * B[j * n + k];
    S[i * n + j] = s;
  }
  return S;
}

describe('helpers: float64 MLP reference', () => {
  const cases: [RefLossKind, RefReduction][] = [];
  for (const kind of ['mse', 'bce-with-logits', 'cross-entropy'] as const) {
    for (const red of ['mean', 'sum', 'per-sample-sum'] as const) cases.push([kind, red]);
  }
  for (const [kind, reduction] of cases) {
    it(`forwardBackward matches central finite differences (${kind}, ${reduction})`, () => {
      const rng = new RefRng(11);
      const sizes = [4, 5, 3, 3], M = 6;
      const acts: Activation[] = ['tanh', 'sigmoid', 'linear'];
      const net = makeRefMlp(sizes, acts, { kind, reduction }, 3);
      const X = randomArray(rng, M * sizes[0]);
      const target = kind === 'cross-entropy'
        ? Array.from({ length: M }, (_, i) => i % 3)
        : randomArray(rng, M * 3, kind === 'mse' ? -1 : 0, 1);
      const fb = forwardBackward(net, X, target);
      const eps = 1e-6;
      net.layers.forEach((layer, l) => {
        for (const key of ['W', 'b'] as const) {
          for (let i = 0; i < layer[key].length; i++) {
            const v = layer[key][i];
            layer[key][i] = v + eps; const lp = refLoss(net, X, target);
            layer[key][i] = v - eps; const lm = refLoss(net, X, target);
            layer[key][i] = v;
            const fd = (lp - lm) / (2 * eps);
            expect(Math.abs(fd - fb.grads[l][key][i])).to.be.below(1e-8 + 1e-6 * Math.abs(fd), `layer ${l} ${key}[${i}]`);
          }
        }
        // ∂L/∂W = dhᵀ a: the stored per-layer tensors reproduce the weight gradient.
        const nin = sizes[l], nout = sizes[l + 1];
        for (let r = 0; r < nout; r++) for (let c = 0; c < nin; c++) {
          let s = 0; for (let i = 0; i < M; i++) s += fb.dh[l][i * nout + r] * fb.a[l][i * nin + c];
          expect(s).to.be.closeTo(fb.grads[l].W[r * nin + c], 1e-12);
        }
      });
    });
  }

  it('relu network gradient matches finite differences', () => {
    const rng = new RefRng(5);
    const net = makeRefMlp([3, 6, 2], ['relu', 'linear'], { kind: 'mse', reduction: 'mean' }, 9);
    const X = randomArray(rng, 5 * 3), t = randomArray(rng, 5 * 2);
    const fb = forwardBackward(net, X, t);
    const eps = 1e-7;
    for (let i = 0; i < net.layers[0].W.length; i++) {
      const v = net.layers[0].W[i];
      net.layers[0].W[i] = v + eps; const lp = refLoss(net, X, t);
      net.layers[0].W[i] = v - eps; const lm = refLoss(net, X, t);
      net.layers[0].W[i] = v;
      expect((lp - lm) / (2 * eps)).to.be.closeTo(fb.grads[0].W[i], 1e-7);
    }
  });
});

describe('helpers: K-BFGS float64 reference', () => {
  it('BFGS update: secant, symmetry, no-op, skip, scale invariance (§10)', () => {
    const rng = new RefRng(21), n = 5;
    const H = spdMatrix(rng, n);
    const s = randomArray(rng, n);
    const y = s.map((v, i) => v + 0.1 * Math.sin(i + 1)); // sᵀy > 0
    const Hp = bfgsUpdate(H, s, y, n, 0)!;
    expect(relErr(matVec(Hp, y, n), s)).to.be.below(1e-10);
    for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) expect(Hp[i * n + j]).to.equal(Hp[j * n + i]);
    const Hs = bfgsUpdate(H, s.map((v) => 3 * v), y.map((v) => 3 * v), n, 0)!;
    expect(relErr(Hs, Hp)).to.be.below(1e-12);
    const yNoop = Float64Array.from(s), sNoop = matVec(H, yNoop, n);
    expect(relErr(bfgsUpdate(H, sNoop, yNoop, n, 0)!, H)).to.be.below(1e-12);
    expect(bfgsUpdate(H, s, s.map((v) => -v), n, 0)).to.equal(null);
  });

  it('L-BFGS two-loop equals dense BFGS from I on the same pairs', () => {
    const rng = new RefRng(4), n = 6;
    let H: Float64Array = new Float64Array(n * n); for (let i = 0; i < n; i++) H[i * n + i] = 1;
    const pairs: { s: Float64Array; y: Float64Array; rho: number }[] = [];
    const S = spdMatrix(rng, n);
    for (let j = 0; j < 4; j++) {
      const s = randomArray(rng, n), y = matVec(S, s, n);
      H = bfgsUpdate(H, s, y, n, 0)!;
      pairs.push({ s, y, rho: 1 / dot(s, y) });
    }
    const v = randomArray(rng, n);
    expect(relErr(twoLoop(v, pairs), matVec(H, v, n))).to.be.below(1e-12);
  });

  it('double damping postconditions (Powell, NeurIPS, LM)', () => {
    const rng = new RefRng(8), n = 4;
    const H = spdMatrix(rng, n), applyH = (v: Float64Array) => matVec(H, v, n);
    const s = randomArray(rng, n), y = s.map((v, i) => -0.3 * v + 0.05 * i); // sᵀy < 0
    const mu1 = 0.2, mu2 = Math.sqrt(0.3);
    const pow = doubleDamping(s, y, applyH, mu1, 1e9, 'lm'); // Powell then y += huge·s: look at s only
    expect(pow.powell).to.equal(true);
    expect(dot(pow.s, y)).to.be.closeTo(mu1 * dot(y, applyH(y)), 1e-12);
    const nd = doubleDamping(s, y, applyH, mu1, mu2, 'neurips');
    expect(dot(nd.s, nd.y)).to.be.at.least(mu2 * dot(nd.s, nd.s) - 1e-12);
    const lm = doubleDamping(s, y, applyH, mu1, mu2, 'lm');
    expect(dot(lm.s, lm.y)).to.be.closeTo(dot(pow.s, y) + mu2 * dot(lm.s, lm.s), 1e-12);
    // Thresholds met: nothing changes.
    const s2 = randomArray(rng, n), y2 = s2.map((v) => 3 * v);
    const id = (v: Float64Array) => Float64Array.from(v);
    const same = doubleDamping(s2, y2, id, mu1, mu2, 'neurips');
    expect(same.powell).to.equal(false);
    expect(relErr(same.s, s2)).to.equal(0);
    expect(relErr(same.y, y2)).to.equal(0);
  });

  it('exact curvature: one linear layer with squared error gives y = 2s and H_g s̄ = s̄/2', () => {
    const rng = new RefRng(31), M = 20, nin = 5, nout = 3;
    const net = makeRefMlp([nin, nout], ['linear'], { kind: 'mse', reduction: 'per-sample-sum' }, 2);
    const X = randomArray(rng, M * nin), T = randomArray(rng, M * nout);
    const opt = new KbfgsReference({ lr: 0.1, damping: 1e-4 });
    for (let k = 0; k < 8; k++) {
      const r = opt.step(net, X, T);
      const tr = opt.lastTrace[0];
      expect(relErr(tr.y, tr.s.map((v) => 2 * v))).to.be.below(1e-10);
      expect(r.powellDamped).to.equal(0);
      expect(r.skipped).to.equal(0);
      // No damping effect: the pair given to BFGS is the EMA pair itself.
      expect(relErr(tr.sTilde, tr.sBar)).to.equal(0);
      expect(relErr(tr.yTilde, tr.yBar)).to.equal(0);
      const Hg = opt.getHg(0);
      expect(relErr(matVec(Hg, tr.sBar, nout), tr.sBar.map((v) => v / 2))).to.be.below(1e-10);
    }
    // d_g = 1: H_g is exactly (2)⁻¹ after the first update.
    const net1 = makeRefMlp([nin, 1], ['linear'], { kind: 'mse', reduction: 'per-sample-sum' }, 3);
    const T1 = randomArray(rng, M);
    const opt1 = new KbfgsReference({ lr: 0.1, damping: 1e-4 });
    opt1.step(net1, X, T1);
    expect(opt1.getHg(0)[0]).to.be.closeTo(0.5, 1e-12);
  });

  for (const dampingMode of ['neurips', 'lm'] as const) {
    it(`after each update H_g satisfies the secant equation for the damped pair, H_a for its pair (${dampingMode})`, () => {
      const X = structuredData(3, 32);
      const net = makeRefMlp([16, 8, 4, 8, 16], ['relu', 'relu', 'relu', 'linear'], { kind: 'bce-with-logits', reduction: 'per-sample-sum' }, 4);
      const opt = new KbfgsReference({ lr: 0.3, damping: 0.3, dampingMode });
      let updates = 0;
      for (let k = 0; k < 5; k++) {
        opt.step(net, X, X);
        opt.lastTrace.forEach((tr, l) => {
          expect(dot(tr.sTilde, tr.yTilde)).to.be.greaterThan(0);
          if (tr.gUpdated) {
            updates++;
            expect(relErr(matVec(opt.getHg(l), tr.yTilde, tr.sTilde.length), tr.sTilde)).to.be.below(1e-9);
          }
          if (tr.aUpdated) expect(relErr(matVec(opt.getHa(l), tr.yA, tr.sA.length), tr.sA)).to.be.below(1e-9);
        });
      }
      expect(updates).to.be.greaterThan(0);
    });
  }

  it('A is the EMA of (1/M)ÃᵀÃ and H_a⁰ = (A + √λ I)⁻¹ at step 0', () => {
    const rng = new RefRng(2), M = 10, nin = 3;
    const net = makeRefMlp([nin, 2], ['linear'], { kind: 'mse', reduction: 'mean' }, 1);
    const X = randomArray(rng, M * nin), T = randomArray(rng, M * 2);
    const lam = 0.09, da = nin + 1;
    // Ha after step 0 was updated once by the Hessian-action BFGS; check A directly and the
    // inverse through a fresh optimiser with the warm start matrix.
    const AB = new Float64Array(da * da);
    for (let i = 0; i < M; i++) {
      const at = [...X.subarray(i * nin, i * nin + nin), 1];
      for (let p = 0; p < da; p++) for (let q = 0; q < da; q++) AB[p * da + q] += at[p] * at[q] / M;
    }
    const opt = new KbfgsReference({ lr: 0.01, damping: lam });
    opt.step(net, X, T);
    expect(relErr(opt.getA(0), AB)).to.be.below(1e-14);
    opt.step(net, X, T);
    expect(relErr(opt.getA(0), AB)).to.be.below(1e-14); // same batch: the EMA is a fixed point
    const warm = AB.map((v, i) => 2 * v + (i % (da + 1) === 0 ? 1 : 0));
    const opt2 = new KbfgsReference({ lr: 0.01, damping: lam, warmStartA: [warm] });
    opt2.step(cloneRefMlp(net), X, T);
    expect(relErr(opt2.getA(0), warm)).to.be.below(1e-14);
    // The step-0 direction uses H_a⁰ = (A_warm + λ_A I)⁻¹ and H_g = I: D (A_λ) = X = m.
    const D = opt2.lastTrace[0].direction, m = opt2.getMomentum(0);
    const Al = warm.map((v, i) => v + (i % (da + 1) === 0 ? Math.sqrt(lam) : 0));
    const DA = new Float64Array(2 * da);
    for (let r = 0; r < 2; r++) for (let q = 0; q < da; q++) for (let p = 0; p < da; p++) DA[r * da + q] += D[r * da + p] * Al[p * da + q];
    expect(relErr(DA, m)).to.be.below(1e-12);
  });

  it('dense K-BFGS and K-BFGS(L) with p ≥ steps give the same iterates', () => {
    const X = structuredData(5, 32);
    const base = makeRefMlp([16, 8, 4, 8, 16], ['relu', 'relu', 'relu', 'linear'], { kind: 'bce-with-logits', reduction: 'per-sample-sum' }, 6);
    for (const dampingMode of ['neurips', 'lm'] as const) {
      const a = cloneRefMlp(base), b = cloneRefMlp(base);
      const dense = new KbfgsReference({ lr: 0.3, damping: 0.3, dampingMode });
      const lbfgs = new KbfgsReference({ lr: 0.3, damping: 0.3, dampingMode, memory: 10 });
      for (let k = 0; k < 10; k++) {
        const ra = dense.step(a, X, X), rb = lbfgs.step(b, X, X);
        expect(rb.skipped).to.equal(ra.skipped);
        expect(rb.powellDamped).to.equal(ra.powellDamped);
      }
      let maxDiff = 0;
      a.layers.forEach((p, l) => {
        for (const key of ['W', 'b'] as const) for (let i = 0; i < p[key].length; i++) maxDiff = Math.max(maxDiff, Math.abs(p[key][i] - b.layers[l][key][i]));
        expect(relErr(lbfgs.getHg(l), dense.getHg(l))).to.be.below(1e-9);
      });
      expect(maxDiff).to.be.below(1e-9);
      // Non-trivial: pairs were accepted and the weights moved.
      a.layers.forEach((_, l) => expect(lbfgs.getPairCount(l)).to.be.greaterThan(0));
      expect(relErr(a.layers[0].W, base.layers[0].W)).to.be.greaterThan(1e-3);
    }
  });

  it('on a small autoencoder K-BFGS and K-BFGS(L) (p = 5) beat tuned SGD-m in 20 full-batch steps', () => {
    // Measured (seed-fixed, deterministic): initial 11.171; SGD-m after 20 steps over lr
    // {0.01, 0.03, 0.1, 0.3, 1}: 11.162 11.146 11.107 11.066 11.035 (best lr 1). K-BFGS (λ = 0.3)
    // at lr 0.3: 11.064, at its best lr of the same grid (1): 10.938; K-BFGS(L) p = 5: 11.062 / 10.843.
    // At the fixed lr 0.3 the damping bounds H_g and H_a by about 1/√λ each, so in the first 20
    // steps K-BFGS moves like SGD-m at a somewhat larger lr and does NOT beat SGD-m at lr 1; the
    // comparison therefore tunes both methods' lr on the same grid (λ fixed at 0.3).
    const X = structuredData();
    const base = makeRefMlp([16, 8, 4, 8, 16], ['relu', 'relu', 'relu', 'linear'], { kind: 'bce-with-logits', reduction: 'per-sample-sum' }, 1);
    const steps = 20, grid = [0.01, 0.03, 0.1, 0.3, 1];
    const run = (stepper: (net: RefMlp) => void): number => {
      const net = cloneRefMlp(base);
      for (let k = 0; k < steps; k++) stepper(net);
      const loss = refLoss(net, X, X);
      return Number.isFinite(loss) ? loss : Infinity;
    };
    const initial = refLoss(base, X, X);
    const sgd: Record<string, number> = {}, kbfgs: Record<string, number> = {}, kbfgsL: Record<string, number> = {};
    for (const lr of grid) {
      const o1 = new SgdmReference(lr);
      sgd[lr] = run((net) => o1.step(net, X, X));
      const o2 = new KbfgsReference({ lr, damping: 0.3 });
      kbfgs[lr] = run((net) => o2.step(net, X, X));
      const o3 = new KbfgsReference({ lr, damping: 0.3, memory: 5 });
      kbfgsL[lr] = run((net) => o3.step(net, X, X));
    }
    const best = (r: Record<string, number>) => Math.min(...Object.values(r));
    if (process.env.KBFGS_REF_VERBOSE) console.log(JSON.stringify({ initial, sgd, kbfgs, kbfgsL }));
    expect(best(kbfgs)).to.be.below(best(sgd));
    expect(best(kbfgsL)).to.be.below(best(sgd));
    // The prescribed setting (lr 0.3, λ 0.3) lowers the loss, at least as much as SGD-m at lr 0.3.
    expect(kbfgs[0.3]).to.be.below(Math.min(initial, sgd[0.3]));
    expect(kbfgsL[0.3]).to.be.below(Math.min(initial, sgd[0.3]));
  });
});
