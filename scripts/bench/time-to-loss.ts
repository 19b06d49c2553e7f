// Time-to-loss: the wall-clock seconds an optimizer needs to reach the training loss Adam reaches
// after N epochs (default 10), as a fraction of Adam's seconds (issue 4's target for K-BFGS(L):
// ≤ 0.5). The paper's autoencoder on the bundled digits, batch 1000. The training loss is the
// loss over the whole training set, measured after every epoch off the clock; the candidate's
// clock includes its warm start.
// Usage: npx tsx scripts/bench/time-to-loss.ts [--optimizer kbfgs-l] [--epochs 10] [--max-epochs 30] [--curvature-interval N]
//          [--g-init identity|factor] [--lr X] [--damping X] (the K-BFGS and KF-QN family)
import { parseArgs } from 'node:util';
import { batches, type Dataset } from '../../lib/data/index.js';
import { loadDataSpec } from '../../lib/data/node.js';
import { readModelFile } from '../../lib/io/files.js';
import { adam, kbfgs, kbfgsL, kfac, kfqn, kfqnL, rmsprop, sgd, shampoo } from '../../lib/optim/index.js';
import { createBackend } from '../../lib/runtime/index.js';
import { Trainer, type TrainerOptions } from '../../lib/train/trainer.js';
import { machine } from './common.js';

const { values } = parseArgs({ options: {
  optimizer: { type: 'string', default: 'kbfgs-l' }, epochs: { type: 'string', default: '10' }, 'max-epochs': { type: 'string', default: '30' },
  'curvature-interval': { type: 'string', default: '1' }, 'g-init': { type: 'string', default: 'identity' }, lr: { type: 'string' }, damping: { type: 'string' },
} });
const curvatureInterval = Number(values['curvature-interval']);
const gInit = values['g-init'] as 'identity' | 'factor';
// α and λ of the K-BFGS and KF-QN family when not the authors' (0.3, 0.3).
const tuned = { ...(values.lr ? { lr: Number(values.lr) } : {}), ...(values.damping ? { damping: Number(values.damping) } : {}) };
const candidates: Record<string, () => TrainerOptions['optimizer']> = {
  sgd: () => sgd({ lr: 0.03, momentum: 0.9, dampening: 0.9, weightDecay: 1e-5 }), rmsprop: () => rmsprop(), kfac: () => kfac(), shampoo: () => shampoo(),
  kbfgs: () => kbfgs({ ...tuned, curvatureInterval, gInit }), 'kbfgs-l': () => kbfgsL({ ...tuned, curvatureInterval, gInit }),
  kfqn: () => kfqn({ ...tuned, curvatureInterval, gInit }), 'kfqn-l': () => kfqnL({ ...tuned, curvatureInterval, gInit }),
};
const make = candidates[values.optimizer!];
if (!make) throw new Error(`unknown optimizer '${values.optimizer}'; one of ${Object.keys(candidates).join(', ')}`);

const backend = await createBackend('cpu');
const model = readModelFile('models/mnist-autoencoder.onnx');
const train: Dataset = loadDataSpec('mnist', 'train'); // the bundled digits' first 9,000
const batchSize = 1000;

/** Trains epoch by epoch; after each, the training-set loss (off the clock). Stops when `done` says so. */
async function run(optimizer: TrainerOptions['optimizer'], maxEpochs: number, done: (loss: number) => boolean) {
  const trainer = await Trainer.create(backend, model, { kind: 'bce-with-logits', reduction: 'per-sample-sum', target: 'input', optimizer });
  const curve: { epoch: number; seconds: number; loss: number }[] = [];
  try {
    let seconds = 0;
    const t0 = performance.now();
    await trainer.warmStart(train, batchSize);
    seconds += (performance.now() - t0) / 1000;
    for (let epoch = 0; epoch < maxEpochs; epoch++) {
      const start = performance.now();
      for (const batch of batches(train, { batchSize, shuffle: true, seed: 0, epoch })) await trainer.trainStep(batch);
      seconds += (performance.now() - start) / 1000;
      const loss = (await trainer.evaluate(train, batchSize)).loss;
      curve.push({ epoch: epoch + 1, seconds, loss });
      if (done(loss)) break;
    }
  } finally {
    await trainer.dispose();
  }
  return curve;
}

const adamCurve = await run(adam({ lr: 1e-3 }), Number(values.epochs), () => false);
const target = adamCurve.at(-1)!;
const curve = await run(make(), Number(values['max-epochs']), (loss) => loss <= target.loss);
const reached = curve.find((c) => c.loss <= target.loss);
console.log(JSON.stringify({
  bench: 'time-to-loss', optimizer: values.optimizer, curvature_interval: curvatureInterval, adam: { epochs: target.epoch, seconds: target.seconds, train_loss: target.loss },
  reached: reached ? { epochs: reached.epoch, seconds: reached.seconds, train_loss: reached.loss } : null,
  fraction_of_adam_time: reached ? reached.seconds / target.seconds : null, curve, adam_curve: adamCurve, machine: machine(),
}));
