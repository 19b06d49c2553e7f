// Each Kronecker-factored optimizer's first steps on a tiny CNN against the float64 references:
// a CNN of 1×1 convolutions on 1×1 inputs, which the im2col view makes exactly the reference MLP
// (one position, patches = inputs), so the conv paths (patch factors, conv means, conv gradient
// factors, [C_out, C_in, k, k] weight layout) must reproduce the MLP references step by step.
import { expect } from 'chai';
import type { Batch } from '../../../lib/data/index.js';
import { kbfgs, kbfgsL, kfac, shampoo } from '../../../lib/optim/index.js';
import { createBackend } from '../../../lib/runtime/index.js';
import { Trainer, type TrainerOptions } from '../../../lib/train/trainer.js';
import { FactoredReference } from '../../helpers/factored-reference.js';
import { KbfgsReference } from '../../helpers/kbfgs-reference.js';
import { cloneRefMlp, makeRefMlp, type RefMlp } from '../../helpers/mlp-reference.js';
import { activations, data, expectTracksReference, M, sizes, toOnnx } from '../../helpers/tiny-autoencoder.js';

const cases: { name: string; optimizer: () => TrainerOptions['optimizer']; reference: () => { step(net: RefMlp, X: Float64Array, T: Float64Array): number } }[] = [
  { name: 'kbfgs', optimizer: () => kbfgs({ warmStart: false }), reference: () => { const r = new KbfgsReference({ lr: 0.3, damping: 0.3 }); return { step: (n, X, T) => r.step(n, X, T).loss }; } },
  { name: 'kbfgs-l (p = 2)', optimizer: () => kbfgsL({ history: 2, warmStart: false }), reference: () => { const r = new KbfgsReference({ lr: 0.3, damping: 0.3, memory: 2 }); return { step: (n, X, T) => r.step(n, X, T).loss }; } },
  { name: 'kfac (empirical Fisher)', optimizer: () => kfac({ lr: 0.3, damping: 0.3, inverseInterval: 3, fisher: 'empirical', warmStart: false }), reference: () => new FactoredReference({ method: 'kfac', lr: 0.3, damping: 0.3, interval: 3 }) },
  { name: 'shampoo', optimizer: () => shampoo({ lr: 0.1, epsilon: 0.1, rootInterval: 3, rootIterations: 40, warmStart: false }), reference: () => new FactoredReference({ method: 'shampoo', lr: 0.1, damping: 0.1, interval: 3 }) },
];

describe('Kronecker optimizers on a tiny CNN (1×1 convolutions) against the float64 MLP references', () => {
  for (const c of cases) {
    it(`${c.name}: 6 steps track the reference's loss and weights`, async () => {
      const net = makeRefMlp(sizes, [...activations], { kind: 'bce-with-logits', reduction: 'per-sample-sum' }, 3);
      for (const layer of net.layers) { layer.W = Float64Array.from(Float32Array.from(layer.W)); layer.b = Float64Array.from(Float32Array.from(layer.b)); }
      const X = data(7);
      const trainer = await Trainer.create(await createBackend('cpu'), toOnnx(net, 'conv1x1'), {
        kind: 'bce-with-logits', reduction: 'per-sample-sum', target: 'input', optimizer: c.optimizer(),
      });
      const ref = c.reference();
      const refNet = cloneRefMlp(net);
      const batch: Batch = { index: 0, epoch: 0, size: M, inputs: X };
      try {
        await expectTracksReference(trainer, refNet, 6, () => ({ batch, reference: () => ref.step(refNet, Float64Array.from(X), Float64Array.from(X)) }));
        expect(Math.max(...Array.from(refNet.layers[0].W, (v, i) => Math.abs(v - net.layers[0].W[i]))), 'the weights moved').to.be.above(1e-3);
      } finally {
        await trainer.dispose();
      }
    });
  }
});
