// The optimizer-state report (lib/optim/memory.ts) against the tensors the engines actually hold
// after training steps, for every optimizer, on the bundled ResNet-style CNN (convs, a Gemm and
// BatchNorm scales outside the Kronecker layers), and against §6's closed forms on one layer.
import { expect } from 'chai';
import { join } from 'node:path';
import { readModelFile } from '../../../lib/io/files.js';
import { packageRoot } from '../../../lib/io/package-root.js';
import { adam, kbfgs, kbfgsL, kfac, kfqn, kfqnL, optimizerStateReport, rmsprop, sgd, shampoo } from '../../../lib/optim/index.js';
import { createBackend } from '../../../lib/runtime/index.js';
import { Trainer, type TrainerOptions } from '../../../lib/train/trainer.js';
import { makeRefMlp } from '../../helpers/mlp-reference.js';
import { activations, sizes, toOnnx } from '../../helpers/tiny-autoencoder.js';

const optimizers: Record<string, () => TrainerOptions['optimizer']> = {
  'sgd (no momentum)': () => sgd(), 'sgd (momentum)': () => sgd({ momentum: 0.9 }), adam: () => adam(), rmsprop: () => rmsprop({ warmStart: false }),
  kfac: () => kfac({ warmStart: false }), shampoo: () => shampoo({ warmStart: false }),
  kbfgs: () => kbfgs({ warmStart: false }), 'kbfgs-l': () => kbfgsL({ history: 7, warmStart: false }),
  kfqn: () => kfqn(), 'kfqn-l': () => kfqnL({ history: 5 }), 'kfqn-l --a-side lbfgs': () => kfqnL({ history: 5, aSide: 'lbfgs', aHistory: 3 }),
  // The factor start: a dense H_g⁰ replaces I (no G kept); an L-BFGS H_g keeps its diagonal H0.
  'kfqn --g-init factor': () => kfqn({ gInit: 'factor' }), 'kfqn-l --a-side lbfgs --g-init factor --a-init factor': () => kfqnL({ history: 5, aSide: 'lbfgs', aHistory: 3, gInit: 'factor', aInit: 'factor' }),
};

describe('optimizer state report against the tensors the engines hold', function () {
  this.timeout(60_000);
  const model = readModelFile(join(packageRoot(), 'models/resnet-small.onnx'));
  const N = 4;
  const batch = { index: 0, epoch: 0, size: N, inputs: Float32Array.from({ length: N * 28 * 28 }, (_, i) => Math.sin(i) * 0.5 + 0.5), labels: BigInt64Array.from({ length: N }, (_, i) => BigInt(i % 10)) };
  for (const [name, make] of Object.entries(optimizers)) {
    it(`${name}: the report's total equals the bytes held after two steps`, async () => {
      const optimizer = make();
      const trainer = await Trainer.create(await createBackend('cpu'), model, { kind: 'cross-entropy', reduction: 'mean', optimizer, target: 'label' });
      try {
        await trainer.trainStep(batch);
        await trainer.trainStep(batch);
        const report = optimizerStateReport(model, optimizer);
        expect(report.stateBytes).to.equal(trainer.optimizerStateBytes);
        const parameterValues = [...(await trainer.parameters()).values()].reduce((n, t) => n + t.data.length, 0);
        expect(report.parameterBytes).to.equal(4 * parameterValues);
      } finally {
        await trainer.dispose();
      }
    });
  }
});

describe('optimizer state report: closed forms of §6 on one layer', () => {
  const model = toOnnx(makeRefMlp(sizes, [...activations], { kind: 'mse', reduction: 'mean' }, 1));
  // The first layer: 6 inputs and a bias (d_a = 7), 5 outputs (d_g = 5); 35 parameters.
  const first = (o: TrainerOptions['optimizer']) => optimizerStateReport(model, o).layers[0];
  it('first-order: one or two tensors shaped like the parameters', () => {
    expect(first(sgd({ momentum: 0.9 })).stateBytes).to.equal(4 * 35);
    expect(first(sgd()).stateBytes).to.equal(0);
    expect(first(adam()).stateBytes).to.equal(4 * 2 * 35);
  });
  it('K-BFGS: momentum, A and H_a (2·d_a²), H_g (d_g²), s̄ and ȳ; KFAC: A, G and both inverses', () => {
    expect(first(kbfgs()).stateBytes).to.equal(4 * (35 + 2 * 49 + 25 + 10));
    expect(first(kbfgsL({ history: 10 })).stateBytes).to.equal(4 * (35 + 2 * 49 + 10 * (2 * 5 + 1) + 10));
    expect(first(kfac()).stateBytes).to.equal(4 * (35 + 2 * 49 + 2 * 25));
  });
  it('KF-QN keeps no A; with an L-BFGS A side the layer\'s state is O(p·(d_a + d_g)) and no d_a² term', () => {
    expect(first(kfqn()).stateBytes).to.equal(4 * (35 + 49 + 25 + 10));
    expect(first(kfqnL({ history: 10, aSide: 'lbfgs', aHistory: 4 })).stateBytes).to.equal(4 * (35 + 4 * (2 * 7 + 1) + 10 * (2 * 5 + 1) + 10));
    // gInit 'factor': the same dense H_g; an L-BFGS H_g adds its diagonal H0 (d_g).
    expect(first(kfqn({ gInit: 'factor' })).stateBytes).to.equal(4 * (35 + 49 + 25 + 10));
    expect(first(kfqnL({ history: 10, aSide: 'lbfgs', aHistory: 4, gInit: 'factor' })).stateBytes).to.equal(4 * (35 + 4 * (2 * 7 + 1) + 10 * (2 * 5 + 1) + 5 + 10));
    // aInit 'factor': the L-BFGS H_a's diagonal H0 (d_a).
    expect(first(kfqnL({ history: 10, aSide: 'lbfgs', aHistory: 4, aInit: 'factor' })).stateBytes).to.equal(4 * (35 + 4 * (2 * 7 + 1) + 7 + 10 * (2 * 5 + 1) + 10));
  });
});
