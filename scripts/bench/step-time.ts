// Seconds per training step against the floor of one forward+backward pass of the same graph.
// Usage: npx tsx scripts/bench/step-time.ts [--model models/mnist-autoencoder.onnx|models/resnet-small.onnx] [--ep cpu|wasm|webgpu] [--batch 1000|128] [--steps 20] [--optimizer sgd|adam|rmsprop|kfac|kfac-cnn|shampoo|kbfgs|kbfgs-l|kfqn|kfqn-l|kfqn-l-lbfgs]
//          [--curvature-interval N]   (K-BFGS and KF-QN: averaged over whole intervals of N steps)
// Prints one JSON object.
import { parseArgs } from 'node:util';
import { buildTrainingGraph, encodeModel } from '../../graph-tools/index.js';
import { loadBundledMnist } from '../../lib/data/node.js';
import { batches } from '../../lib/data/index.js';
import { readModelFile } from '../../lib/io/files.js';
import { adam, kbfgs, kbfgsL, kfac, kfqn, kfqnL, rmsprop, sgd, shampoo } from '../../lib/optim/index.js';
import { createBackend, type ExecutionProvider, type Tensor } from '../../lib/runtime/index.js';
import { Trainer } from '../../lib/train/trainer.js';
import { machine, median, timeRuns } from './common.js';

const { values } = parseArgs({ options: {
  ep: { type: 'string', default: 'cpu' }, batch: { type: 'string' }, steps: { type: 'string', default: '20' },
  optimizer: { type: 'string', default: 'adam' }, model: { type: 'string', default: 'models/mnist-autoencoder.onnx' },
  'curvature-interval': { type: 'string', default: '1' },
} });
const curvatureInterval = Number(values['curvature-interval']);
const ep = values.ep as ExecutionProvider;
// The paper's autoencoder (BCE on its own input) or a classifier on the digits' labels (the CNNs).
const autoencoder = values.model!.includes('autoencoder');
const batchSize = Number(values.batch ?? (autoencoder ? 1000 : 128));
const steps = Number(values.steps);
const warmup = 3;

const backend = await createBackend(ep);
const model = readModelFile(values.model!);
const data = loadBundledMnist();
const batch = batches(data, { batchSize, shuffle: false, seed: 0, epoch: 0 }).next().value!;
const spec = autoencoder ? { kind: 'bce-with-logits' as const, reduction: 'per-sample-sum' as const } : { kind: 'cross-entropy' as const, reduction: 'mean' as const };

// Floor: the training graph (loss + every parameter gradient), one session.run.
const tg = buildTrainingGraph(model, { ...spec });
const floorSession = await backend.createSession(encodeModel(tg.toModel()), { name: 'forward+backward' });
const inputDims = [batch.size, ...(tg.dataInputs[0].type.shape!.slice(1) as number[])];
const feeds: Record<string, Tensor> = {
  [tg.dataInputs[0].name]: backend.tensor('float32', batch.inputs, inputDims),
  [tg.target.name]: autoencoder ? backend.tensor('float32', batch.inputs, inputDims) : backend.tensor('int64', batch.labels!, [batch.size]),
};
for (const [p, v] of tg.initialParameters) feeds[p] = backend.tensor('float32', v.data as Float32Array, v.dims);
const floorRun = () => floorSession.run(feeds);

const optimizers = {
  sgd: () => sgd({ lr: 0.01, momentum: 0.9 }), adam: () => adam({ lr: 1e-3 }),
  rmsprop: () => rmsprop({ lr: 1e-3 }),
  kbfgs: () => kbfgs({ lr: 0.3, damping: 0.3, warmStart: false, curvatureInterval }), 'kbfgs-l': () => kbfgsL({ lr: 0.3, damping: 0.3, warmStart: false, curvatureInterval }),
  kfac: () => kfac({ warmStart: false }), shampoo: () => shampoo({ warmStart: false }),
  // The authors' CNN frequencies (ALGORITHMS.md §7.4): factors every 10 steps, inverses every 100.
  // α 0.1: at α 1 the repeated batch makes it diverge here within 12 steps (then every step is skipped).
  'kfac-cnn': () => kfac({ lr: 0.1, warmStart: false, statInterval: 10, inverseInterval: 100 }),
  kfqn: () => kfqn({ lr: 0.3, damping: 0.3, curvatureInterval }), 'kfqn-l': () => kfqnL({ lr: 0.3, damping: 0.3, curvatureInterval }),
  'kfqn-l-lbfgs': () => kfqnL({ lr: 0.3, damping: 0.3, aSide: 'lbfgs', curvatureInterval }),
};
// KFAC and Shampoo refresh their preconditioners every `interval` steps, K-BFGS and KF-QN their
// curvature every `curvatureInterval`: time whole intervals (the first interval of KFAC inverts
// every step, so it is skipped as warm-up).
const intervalOf = (o: ReturnType<(typeof optimizers)[keyof typeof optimizers]>) =>
  o.kind === 'factored' ? (o.name === 'kfac' ? o.options.inverseInterval : o.options.rootInterval) : o.kind === 'kronecker' ? o.options.curvatureInterval : 1;
const optimizer = (optimizers[values.optimizer as keyof typeof optimizers] ?? (() => { throw new Error(`unknown optimizer ${values.optimizer}`); }))();
const trainer = await Trainer.create(backend, model, { ...spec, optimizer, target: autoencoder ? 'input' : 'label' });
const interval = intervalOf(optimizer);
// A skipped step (non-finite loss or direction) costs and counts differently: the run is reported
// as not measuring this optimizer's step.
let skipped = 0;
const trainStep = async () => { if ((await trainer.trainStep(batch)).skipped) skipped++; };
if (optimizer.kind === 'factored') for (let i = 0; i < interval; i++) await trainStep();
// One sample = a floor run and a step (a whole refresh interval for KFAC and Shampoo, per step),
// back to back: this machine's speed drifts by up to 2× over minutes, so the ratio is taken per
// pair, both timed in the same conditions, and its median reported.
const stepOnce = async () => { for (let i = 0; i < interval; i++) await trainStep(); };
for (let i = 0; i < warmup; i++) { await floorRun(); await stepOnce(); }
const floor: number[] = []; const step: number[] = [];
for (let i = 0; i < Math.max(1, Math.ceil(steps / interval)); i++) {
  floor.push((await timeRuns(floorRun, 1, 0))[0]);
  step.push((await timeRuns(stepOnce, 1, 0))[0] / interval);
}
await floorSession.release();
await trainer.dispose();

const params = [...tg.initialParameters.values()].reduce((n, v) => n + v.data.length, 0);
console.log(JSON.stringify({
  bench: 'step-time', model: values.model, ep, batch: batchSize, optimizer: values.optimizer, parameters: params, averaged_over_steps: interval,
  floor_s: median(floor), step_s: median(step), ratio: median(step.map((t, i) => t / floor[i])),
  floor_samples: floor.length, skipped_steps: skipped, machine: machine(),
}));
if (skipped > 0) console.error(`warning: ${skipped} steps were skipped (non-finite loss or direction): these are not ${values.optimizer}'s step times`);
