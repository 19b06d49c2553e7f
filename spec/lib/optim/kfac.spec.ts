// KFAC and Shampoo through ONNX Runtime (lib/train/factored-engine.ts) against the plain-TypeScript
// float64 references of spec/helpers/factored-reference.ts, step by step on a tiny autoencoder:
// the loss and every parameter, across an inverse/root refresh.
import { expect } from 'chai';
import { fromArrays, type Batch } from '../../../lib/data/index.js';
import { kfac, shampoo } from '../../../lib/optim/index.js';
import { createBackend } from '../../../lib/runtime/index.js';
import { Trainer } from '../../../lib/train/trainer.js';
import { FactoredReference } from '../../helpers/factored-reference.js';
import { cloneRefMlp, makeRefMlp } from '../../helpers/mlp-reference.js';
import { activations, data, expectTracksReference, M, sizes, toOnnx } from '../../helpers/tiny-autoencoder.js';

const cases: { name: string; method: 'kfac' | 'shampoo'; lr: number; damping: number; interval: number; statInterval?: number; decoupledDecay?: number; l2?: number; statWarmup?: boolean }[] = [
  { name: 'kfac (empirical Fisher, inverses every step for 3 steps, then every 3rd)', method: 'kfac' as const, lr: 0.3, damping: 0.3, interval: 3 },
  { name: 'shampoo (roots every 3rd step)', method: 'shampoo' as const, lr: 0.1, damping: 0.1, interval: 3 },
  // With a statistics interval the step graph computes the factors under an If (off between refreshes).
  { name: 'kfac, factors every 2nd step (inverses every step for 3 steps, then every 3rd)', method: 'kfac' as const, lr: 0.3, damping: 0.3, interval: 3, statInterval: 2 },
  { name: 'shampoo, factors every 2nd step (roots every 3rd)', method: 'shampoo' as const, lr: 0.1, damping: 0.1, interval: 3, statInterval: 2 },
  { name: 'kfac with decoupled weight decay (τ 0.05)', method: 'kfac' as const, lr: 0.3, damping: 0.3, interval: 3, decoupledDecay: 0.05 },
  { name: 'shampoo with L2 weight decay in the gradient (τ 0.05)', method: 'shampoo' as const, lr: 0.1, damping: 0.1, interval: 3, l2: 0.05 },
  // The factors' decay is statDecay from the first refresh on, not the authors' min(1 − 1/(k+1), statDecay).
  { name: 'kfac without the statistics warm-up (β 0.9 from step 1)', method: 'kfac' as const, lr: 0.3, damping: 0.3, interval: 3, statWarmup: false },
];

const decay = (c: { decoupledDecay?: number; l2?: number }) => (c.decoupledDecay !== undefined ? { weightDecay: c.decoupledDecay, decoupledWeightDecay: true }
  : c.l2 !== undefined ? { weightDecay: c.l2 } : {});

for (const c of cases) {
  describe(`factored engine against the float64 reference: ${c.name}`, () => {
    it('tracks the reference loss and parameters for 7 full-batch steps', async () => {
      const net = makeRefMlp(sizes, [...activations], { kind: 'bce-with-logits', reduction: 'per-sample-sum' }, 3);
      for (const layer of net.layers) { layer.W = Float64Array.from(Float32Array.from(layer.W)); layer.b = Float64Array.from(Float32Array.from(layer.b)); }
      const X = data(7);
      const ref = new FactoredReference(c);
      const refNet = cloneRefMlp(net);
      const optimizer = c.method === 'kfac'
        ? kfac({ lr: c.lr, damping: c.damping, inverseInterval: c.interval, fisher: 'empirical', warmStart: false, statInterval: c.statInterval ?? 1, statWarmup: c.statWarmup ?? true, ...decay(c) })
        : shampoo({ lr: c.lr, epsilon: c.damping, rootInterval: c.interval, rootIterations: 40, warmStart: false, statInterval: c.statInterval ?? 1, ...decay(c) });
      const trainer = await Trainer.create(await createBackend('cpu'), toOnnx(net), { kind: 'bce-with-logits', reduction: 'per-sample-sum', target: 'input', optimizer });
      const batch: Batch = { index: 0, epoch: 0, size: M, inputs: X };
      try {
        await expectTracksReference(trainer, refNet, 7, () => ({ batch, reference: () => ref.step(refNet, Float64Array.from(X), Float64Array.from(X)) }));
        const moved = Math.max(...Array.from(refNet.layers[0].W, (v, i) => Math.abs(v - net.layers[0].W[i])));
        expect(moved, 'the parameters moved').to.be.above(1e-3);
        expect(ref.step(refNet, Float64Array.from(X), Float64Array.from(X)), 'the loss went down').to.be.below(ref.step(cloneRefMlp(net), Float64Array.from(X), Float64Array.from(X)));
      } finally {
        await trainer.dispose();
      }
    });
  });
}

describe('KFAC\'s statistics warm-up (the authors\' β_k = min(1 − 1/(k+1), 0.9))', () => {
  it('is the default, and then a warm start has no effect: the factors restart from step 0\'s batch', async () => {
    expect(kfac().options).to.include({ statWarmup: true, statDecay: 0.9, warmStart: true });
    const net = makeRefMlp(sizes, [...activations], { kind: 'bce-with-logits', reduction: 'per-sample-sum' }, 3);
    const X = data(7);
    const other = fromArrays('other digits', data(11), [sizes[0]], new BigInt64Array(M), 1);
    const batch: Batch = { index: 0, epoch: 0, size: M, inputs: X };
    const losses = async (statWarmup: boolean, warmStart: boolean) => {
      const optimizer = kfac({ lr: 0.3, damping: 0.3, inverseInterval: 3, fisher: 'empirical', statWarmup });
      const trainer = await Trainer.create(await createBackend('cpu'), toOnnx(net), { kind: 'bce-with-logits', reduction: 'per-sample-sum', target: 'input', optimizer });
      try {
        if (warmStart) await trainer.warmStart(other, M);
        const out: number[] = [];
        for (let i = 0; i < 4; i++) out.push((await trainer.trainStep(batch)).loss);
        return out;
      } finally {
        await trainer.dispose();
      }
    };
    expect(await losses(true, true)).to.deep.equal(await losses(true, false));
    // Without the warm-up the warm start's factors are kept, so the same warm start changes the steps.
    const [withWarm, without] = [await losses(false, true), await losses(false, false)];
    expect(Math.abs(withWarm[1] - without[1]) / without[1]).to.be.above(1e-4);
  });
});
