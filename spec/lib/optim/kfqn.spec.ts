// KF-QN and KF-QN(L) (ALGORITHMS.md §4-§5) through ONNX Runtime against the float64 reference
// (spec/helpers/kbfgs-reference.ts with the minibatch A side), step by step on a tiny autoencoder
// as an MLP of Gemms and as a CNN of 1×1 convolutions (which the im2col view makes the same MLP):
// a new minibatch every step, so y_a = (A_B + λ_A·I)·s_a must use the current batch's A_B.
import { expect } from 'chai';
import type { Batch } from '../../../lib/data/index.js';
import { kfqn, kfqnL, type KfqnOptions } from '../../../lib/optim/index.js';
import { createBackend } from '../../../lib/runtime/index.js';
import { KroneckerEngine } from '../../../lib/train/kronecker-engine.js';
import { Trainer } from '../../../lib/train/trainer.js';
import { KbfgsReference, type KbfgsReferenceOptions } from '../../helpers/kbfgs-reference.js';
import { cloneRefMlp, makeRefMlp, type RefMlp } from '../../helpers/mlp-reference.js';
import { activations, data, expectParametersMatch, expectTracksReference, M, sizes, toOnnx } from '../../helpers/tiny-autoencoder.js';

const loss = { kind: 'bce-with-logits', reduction: 'per-sample-sum' } as const;

/** The tiny autoencoder with float32-representable weights, so both sides start from the same values. */
function tinyNet(): RefMlp {
  const net = makeRefMlp(sizes, [...activations], loss, 3);
  for (const layer of net.layers) { layer.W = Float64Array.from(Float32Array.from(layer.W)); layer.b = Float64Array.from(Float32Array.from(layer.b)); }
  return net;
}

const batch = (k: number, inputs = data(7 + k)): Batch => ({ index: k, epoch: 0, size: M, inputs });

interface Case { name: string; options: KfqnOptions & { history?: number }; reference: Partial<KbfgsReferenceOptions> }
const cases: Case[] = [
  { name: 'kfqn (dense H_g, dense H_a, DD-LM)', options: {}, reference: {} },
  { name: 'kfqn-l (p = 2)', options: { history: 2 }, reference: { memory: 2 } },
  { name: 'kfqn --a-side lbfgs (p_a = 3)', options: { aSide: 'lbfgs', aHistory: 3 }, reference: { aMemory: 3 } },
  { name: 'kfqn-l --a-side lbfgs (p = 2, p_a = 2)', options: { history: 2, aSide: 'lbfgs', aHistory: 2 }, reference: { memory: 2, aMemory: 2 } },
  { name: 'kfqn --damping-mode neurips', options: { dampingMode: 'neurips' }, reference: { dampingMode: 'neurips' } },
  { name: 'kfqn --decoupled-weight-decay (τ 0.05)', options: { weightDecay: 0.05, decoupledWeightDecay: true }, reference: { decoupledDecay: 0.05 } },
  { name: 'kfqn --weight-decay 0.05 (L2 in the gradient)', options: { weightDecay: 0.05 }, reference: { l2: 0.05 } },
  { name: 'kfqn --weight-decay 0 (the graph builds neither form)', options: { weightDecay: 0 }, reference: { l2: 0 } },
  { name: 'kfqn --curvature-interval 2 (H_g, H_a held at odd steps)', options: { curvatureInterval: 2 }, reference: { curvatureInterval: 2 } },
  { name: 'kfqn --g-init factor (H_g⁰ = (G_B + μ2·I)⁻¹)', options: { gInit: 'factor' }, reference: { gInit: 'factor' } },
  { name: 'kfqn-l --a-side lbfgs --g-init factor (p = 2, p_a = 2; the G side\'s diagonal H0 = (diag G + μ2)⁻¹)', options: { history: 2, aSide: 'lbfgs', aHistory: 2, gInit: 'factor' }, reference: { memory: 2, aMemory: 2, gInit: 'factor' } },
  { name: 'kfqn-l --a-side lbfgs --a-init factor --g-init factor (both L-BFGS sides from diagonal H0s)', options: { history: 2, aSide: 'lbfgs', aHistory: 3, aInit: 'factor', gInit: 'factor' }, reference: { memory: 2, aMemory: 3, aInit: 'factor', gInit: 'factor' } },
  { name: 'kfqn --a-side lbfgs --g-init factor --curvature-interval 2 (G alone formed at the start)', options: { aSide: 'lbfgs', aHistory: 3, gInit: 'factor', curvatureInterval: 2 }, reference: { aMemory: 3, gInit: 'factor', curvatureInterval: 2 } },
  { name: 'kfqn-l --a-side lbfgs --curvature-interval 3', options: { history: 2, aSide: 'lbfgs', aHistory: 2, curvatureInterval: 3 }, reference: { memory: 2, aMemory: 2, curvatureInterval: 3 } },
];

for (const layers of ['gemm', 'conv1x1'] as const) {
  describe(`KF-QN engine against the float64 reference (${layers === 'gemm' ? 'MLP' : 'CNN of 1×1 convolutions'})`, () => {
    for (const c of cases) {
      it(`${c.name}: 6 steps on 6 different minibatches track the reference's loss and weights`, async () => {
        const net = tinyNet();
        const optimizer = c.options.history ? kfqnL({ lr: 0.3, damping: 0.3, ...c.options }) : kfqn({ lr: 0.3, damping: 0.3, ...c.options });
        const trainer = await Trainer.create(await createBackend('cpu'), toOnnx(net, layers), { ...loss, target: 'input', optimizer });
        const ref = new KbfgsReference({ lr: 0.3, damping: 0.3, aSource: 'minibatch', abarBias: 'one', dampingMode: 'lm', ...c.reference });
        const refNet = cloneRefMlp(net);
        try {
          await expectTracksReference(trainer, refNet, 6, (k) => {
            const X = Float64Array.from(batch(k).inputs);
            return { batch: batch(k), reference: () => ref.step(refNet, X, X).loss };
          });
          expect(Math.max(...Array.from(refNet.layers[0].W, (v, i) => Math.abs(v - net.layers[0].W[i]))), 'the weights moved').to.be.above(1e-3);
        } finally {
          await trainer.dispose();
        }
      });
    }
  });
}

describe('KF-QN\'s H_a⁰ from a batch built in slices', () => {
  it('equals the one built from the whole batch (slices of 5, 5 and 2 samples, weighted by size)', async () => {
    const net = tinyNet();
    const run = async () => {
      const trainer = await Trainer.create(await createBackend('cpu'), toOnnx(net, 'conv1x1'), { ...loss, target: 'input', optimizer: kfqn() });
      try {
        for (let step = 1; step <= 2; step++) await trainer.trainStep(batch(step));
        return [...(await trainer.parameters()).values()].flatMap((t) => Array.from(t.data as Float32Array));
      } finally {
        await trainer.dispose();
      }
    };
    const whole = await run();
    const saved = KroneckerEngine.initSliceFloats;
    // The widest layer has d_a = 7 over one position: 35 floats per slice is 5 samples.
    KroneckerEngine.initSliceFloats = 35;
    try {
      const sliced = await run();
      for (let i = 0; i < whole.length; i++) expect(sliced[i]).to.be.closeTo(whole[i], 1e-5 * (1 + Math.abs(whole[i])));
    } finally {
      KroneckerEngine.initSliceFloats = saved;
    }
  });
});

describe('KF-QN with the |T|-aware conv damping', () => {
  it('on 1×1 convolutions over one position (|T| = 1) equals plain damping; on Gemm layers it does not apply', async () => {
    const net = tinyNet();
    const run = async (layers: 'gemm' | 'conv1x1', convDamping: 'plain' | 'sqrt-t') => {
      const trainer = await Trainer.create(await createBackend('cpu'), toOnnx(net, layers), { ...loss, target: 'input', optimizer: kfqn({ convDamping }) });
      try {
        for (let step = 1; step <= 3; step++) await trainer.trainStep(batch(step));
        return [...(await trainer.parameters()).values()].flatMap((t) => Array.from(t.data as Float32Array));
      } finally {
        await trainer.dispose();
      }
    };
    expect(await run('conv1x1', 'sqrt-t')).to.deep.equal(await run('conv1x1', 'plain'));
    expect(await run('gemm', 'sqrt-t')).to.deep.equal(await run('gemm', 'plain'));
  });
});

describe('KF-QN convergent variant (§4.4)', () => {
  const stepPower = 0.7;
  const curvatureBatch = (k: number) => batch(100 + k);

  for (const curvatureInterval of [1, 2]) it(`tracks the reference with pairs and A_B from an independent batch and α_k = lr·k^(−β)${curvatureInterval > 1 ? ', curvature every 2 steps' : ''}`, async () => {
    const net = tinyNet();
    const trainer = await Trainer.create(await createBackend('cpu'), toOnnx(net, 'conv1x1'), {
      ...loss, target: 'input', optimizer: kfqnL({ history: 3, variant: 'convergent', stepPower, curvatureInterval }),
    });
    const ref = new KbfgsReference({
      lr: 0.3, damping: 0.3, aSource: 'minibatch', abarBias: 'one', dampingMode: 'lm', memory: 3, lrAt: (k) => 0.3 * k ** -stepPower, curvatureInterval,
    });
    const refNet = cloneRefMlp(net);
    try {
      for (let step = 1; step <= 5; step++) {
        const X = Float64Array.from(batch(step).inputs);
        const C = Float64Array.from(curvatureBatch(step).inputs);
        const expected = ref.step(refNet, X, X, { X: C, target: C });
        await trainer.trainStep(batch(step), curvatureBatch(step));
        expectParametersMatch(await trainer.parameters(), refNet, step);
      }
    } finally {
      await trainer.dispose();
    }
  });

  it('step k does not depend on step k\'s curvature batch; only later steps do (the preconditioner never sees the gradient sample)', async () => {
    const net = tinyNet();
    const runWith = async (thirdCurvature: Batch) => {
      const trainer = await Trainer.create(await createBackend('cpu'), toOnnx(net), { ...loss, target: 'input', optimizer: kfqn({ variant: 'convergent', stepPower }) });
      const snapshots: number[][] = [];
      try {
        for (let step = 1; step <= 4; step++) {
          await trainer.trainStep(batch(step), step === 3 ? thirdCurvature : curvatureBatch(step));
          snapshots.push([...(await trainer.parameters()).values()].flatMap((t) => Array.from(t.data as Float32Array)));
        }
      } finally {
        await trainer.dispose();
      }
      return snapshots;
    };
    const a = await runWith(curvatureBatch(3));
    const b = await runWith(batch(3, data(999)));
    expect(a[2], 'θ after step 3').to.deep.equal(b[2]);
    const change = Math.max(...a[3].map((v, i) => Math.abs(v - b[3][i])));
    expect(change, 'θ after step 4 moves with step 3\'s curvature batch').to.be.above(1e-6);
  });

  it('the Trainer refuses a step without a curvature batch, and fit() draws one from an independent stream', async () => {
    const net = tinyNet();
    const trainer = await Trainer.create(await createBackend('cpu'), toOnnx(net), { ...loss, target: 'input', optimizer: kfqn({ variant: 'convergent' }) });
    try {
      expect(trainer.wantsCurvatureBatch).to.equal(true);
      let error: unknown;
      try { await trainer.trainStep(batch(1)); } catch (e) { error = e; }
      expect(String(error)).to.match(/independent curvature batch/);
      const inputs = new Float32Array(4 * M * sizes[0]).map((_, i) => data(7)[i % (M * sizes[0])]);
      const result = await trainer.fit({ name: 'tiny', size: 4 * M, inputs, sampleShape: [sizes[0]] } as never, { batchSize: M, epochs: 2, shuffle: false });
      expect(result.steps).to.equal(8);
      expect(result.skippedSteps).to.equal(0);
    } finally {
      await trainer.dispose();
    }
  });
});

describe('KF-QN options', () => {
  it('rejects a step power outside (0.5, 1), and a zero memory', () => {
    expect(() => kfqn({ variant: 'convergent', stepPower: 0.5 })).to.throw(/stepPower must lie in \(0.5, 1\)/);
    expect(() => kfqn({ aSide: 'lbfgs', aHistory: 0 })).to.throw(/aHistory must be an integer ≥ 1/);
    expect(() => kfqnL({ history: 0 })).to.throw(/history must be an integer ≥ 1/);
    expect(() => kfqn({ curvatureInterval: 0 })).to.throw(/curvatureInterval must be an integer ≥ 1, got 0/);
    expect(() => kfqnL({ curvatureInterval: 2.5 })).to.throw(/curvatureInterval must be an integer ≥ 1, got 2.5/);
    expect(() => kfqn({ gInit: 'fisher' as never })).to.throw(/gInit must be 'identity' or 'factor', got 'fisher'/);
    expect(() => kfqn({ aInit: 'factor' })).to.throw(/aInit 'factor' sets the H0 of an L-BFGS A side/);
    expect(() => kfqnL({ aSide: 'lbfgs', aInit: 'ones' as never })).to.throw(/aInit must be 'pair' or 'factor', got 'ones'/);
  });



  it('defaults to the authors\' CNN choices: DD-LM, ā with entry 1, no warm start, constant α', () => {
    const o = kfqn();
    expect(o.options).to.include({ dampingMode: 'lm', abarBias: 'one', warmStart: false, lr: 0.3, damping: 0.3, aSide: 'dense', variant: 'default', curvatureInterval: 1, gInit: 'identity' });
    expect(o.learningRate(1000)).to.equal(0.3);
    expect(kfqn({ variant: 'convergent', stepPower: 0.6 }).learningRate(100)).to.be.closeTo(0.3 * 100 ** -0.6, 1e-12);
  });
});
