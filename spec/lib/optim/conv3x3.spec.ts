// The quasi-Newton optimizers on a CNN with a real 3×3 convolution (16 positions per sample, padding)
// against the float64 reference stepping the conv as a linear layer on its im2col patch rows: the
// conv paths of A (summed over positions), ā and the means (over samples and positions), the
// Hessian action A_B·s_a by convolutions, and the |T|-aware damping split all have to agree.
import { kbfgs, kbfgsL, kfqn, kfqnL } from '../../../lib/optim/index.js';
import { createBackend } from '../../../lib/runtime/index.js';
import { Trainer, type TrainerOptions } from '../../../lib/train/trainer.js';
import { KbfgsReference, type KbfgsReferenceOptions } from '../../helpers/kbfgs-reference.js';
import { cloneRefMlp } from '../../helpers/mlp-reference.js';
import { expectTracksReference } from '../../helpers/tiny-autoencoder.js';
import { makeTinyCnn, tinyCnnBatch, tinyCnnForwardBackward, tinyCnnOnnx } from '../../helpers/tiny-cnn.js';

const lr = 0.2; const damping = 0.3;
const kfqnReference = { aSource: 'minibatch', abarBias: 'one', dampingMode: 'lm' } as const;
const cases: { name: string; optimizer: () => TrainerOptions['optimizer']; reference: Partial<KbfgsReferenceOptions> }[] = [
  { name: 'kbfgs', optimizer: () => kbfgs({ lr, damping, warmStart: false }), reference: {} },
  { name: 'kbfgs-l (p = 3)', optimizer: () => kbfgsL({ lr, damping, history: 3, warmStart: false }), reference: { memory: 3 } },
  { name: 'kfqn', optimizer: () => kfqn({ lr, damping }), reference: kfqnReference },
  { name: 'kfqn-l --a-side lbfgs (p = 3, p_a = 2)', optimizer: () => kfqnL({ lr, damping, history: 3, aSide: 'lbfgs', aHistory: 2 }), reference: { ...kfqnReference, memory: 3, aMemory: 2 } },
  // The conv layer has |T| = 16 positions: λ_A = √(16λ), μ2 = √(λ/16); the Gemm keeps √λ.
  { name: 'kfqn --conv-damping sqrt-t', optimizer: () => kfqn({ lr, damping, convDamping: 'sqrt-t' }), reference: { ...kfqnReference, lambdaA: [Math.sqrt(16 * damping), Math.sqrt(damping)], mu2: [Math.sqrt(damping / 16), Math.sqrt(damping)] } },
  // H_g⁰ = (G + μ2·I)⁻¹ with the conv's G averaged over its 16 positions too, and its μ2 = √(λ/16).
  { name: 'kfqn --g-init factor --conv-damping sqrt-t', optimizer: () => kfqn({ lr, damping, convDamping: 'sqrt-t', gInit: 'factor' }), reference: { ...kfqnReference, gInit: 'factor', lambdaA: [Math.sqrt(16 * damping), Math.sqrt(damping)], mu2: [Math.sqrt(damping / 16), Math.sqrt(damping)] } },
  { name: 'kbfgs --g-init factor', optimizer: () => kbfgs({ lr, damping, warmStart: false, gInit: 'factor' }), reference: { gInit: 'factor' } },
  { name: 'kbfgs-l --g-init factor (p = 3, diagonal H0)', optimizer: () => kbfgsL({ lr, damping, history: 3, warmStart: false, gInit: 'factor' }), reference: { memory: 3, gInit: 'factor' } },
  { name: 'kfqn-l --a-side lbfgs --a-init factor (p = 3, p_a = 2; H_a\'s H0 from the conv\'s diag(A_B))', optimizer: () => kfqnL({ lr, damping, history: 3, aSide: 'lbfgs', aHistory: 2, aInit: 'factor' }), reference: { ...kfqnReference, memory: 3, aMemory: 2, aInit: 'factor' } },
  { name: 'kfqn-l --g-init factor --curvature-interval 2 (p = 3, diagonal H0)', optimizer: () => kfqnL({ lr, damping, history: 3, gInit: 'factor', curvatureInterval: 2 }), reference: { ...kfqnReference, memory: 3, gInit: 'factor', curvatureInterval: 2 } },
];

describe('quasi-Newton optimizers on a CNN with a 3×3 convolution against the float64 im2col reference', () => {
  for (const c of cases) {
    it(`${c.name}: 5 steps on 5 minibatches track the reference's loss and weights`, async () => {
      const net = makeTinyCnn();
      const trainer = await Trainer.create(await createBackend('cpu'), tinyCnnOnnx(net), { kind: 'cross-entropy', reduction: 'mean', target: 'label', optimizer: c.optimizer() });
      const refNet = cloneRefMlp(net);
      const ref = new KbfgsReference({ lr, damping, pass: tinyCnnForwardBackward, ...c.reference });
      try {
        await expectTracksReference(trainer, refNet, 5, (k) => {
          const batch = tinyCnnBatch(k);
          return { batch, reference: () => ref.step(refNet, Float64Array.from(batch.inputs), Array.from(batch.labels!, Number)).loss };
        });
      } finally {
        await trainer.dispose();
      }
    });
  }
});
