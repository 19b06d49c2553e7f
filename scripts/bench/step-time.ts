// Seconds per training step against the floor of one forward+backward pass of the same graph.
// Usage: npx tsx scripts/bench/step-time.ts [--model models/mnist-autoencoder.onnx|models/resnet-small.onnx] [--ep cpu|wasm|webgpu] [--batch 1000|128] [--steps 20] [--optimizer sgd|adam|rmsprop|kfac|kfac-cnn|shampoo|kbfgs|kbfgs-l|kfqn|kfqn-l|kfqn-l-lbfgs|kfqn-l-lbfgs-factor]
//          [--curvature-interval N]   (K-BFGS and KF-QN: averaged over whole intervals of N steps)
// Prints one JSON object.
import { parseArgs } from 'node:util';
import { encodeModel } from '../../graph-tools/index.js';
import { createBackend, type ExecutionProvider } from '../../lib/runtime/index.js';
import { Trainer } from '../../lib/train/trainer.js';
import { benchOptimizer, intervalOf, machine, median, stepBenchSetup, timeRuns } from './common.js';

const { values } = parseArgs({ options: {
  ep: { type: 'string', default: 'cpu' }, batch: { type: 'string' }, steps: { type: 'string', default: '20' },
  optimizer: { type: 'string', default: 'adam' }, model: { type: 'string', default: 'models/mnist-autoencoder.onnx' },
  'curvature-interval': { type: 'string', default: '1' },
} });
const curvatureInterval = Number(values['curvature-interval']);
const ep = values.ep as ExecutionProvider;
const steps = Number(values.steps);
const warmup = 3;

const backend = await createBackend(ep);
const { model, spec, autoencoder, batch, tg, floorFeeds } = stepBenchSetup(backend, values.model!, values.batch);
const batchSize = batch.size;
const floorSession = await backend.createSession(encodeModel(tg.toModel()), { name: 'forward+backward' });
const floorRun = () => floorSession.run(floorFeeds);

// Whole refresh intervals are timed (the first interval of KFAC inverts every step, so it is
// skipped as warm-up).
const optimizer = benchOptimizer(values.optimizer!, curvatureInterval);
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
