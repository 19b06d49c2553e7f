// The matrix work of one training step against the floor's: the FLOPs of every MatMul, Gemm, Conv
// and ConvTranspose the step's sessions run (from ORT's profiles, scripts/bench/profile.ts), over
// those of one forward+backward pass of the same training graph. At the floor's own GFLOP/s this
// is the least step/floor time ratio the same products allow, whatever else is made faster.
// Steady state: two fresh trainers on the same batch, one for 2 refresh intervals and one for 3
// (intervalOf: KFAC's inverse interval, K-BFGS's and KF-QN's curvature interval, 1 otherwise),
// each profiled whole; the difference is one interval's work, with initialisation, warm-up and
// KFAC's first interval (it inverts every step) cancelled.
// Usage: npx tsx scripts/bench/flop-ratio.ts [--model models/mnist-autoencoder.onnx|models/resnet-small.onnx] [--batch N]
//          [--optimizer sgd|adam|rmsprop|kfac|kfac-cnn|shampoo|kbfgs|kbfgs-l|kfqn|kfqn-l|kfqn-l-lbfgs|kfqn-l-lbfgs-factor] [--curvature-interval N]
// Prints one JSON object.
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import * as ortNode from 'onnxruntime-node';
import { encodeModel } from '../../graph-tools/index.js';
import { OrtBackend, type OrtModule } from '../../lib/runtime/backend.js';
import { Trainer } from '../../lib/train/trainer.js';
import { benchOptimizer, intervalOf, machine, stepBenchSetup } from './common.js';
import { matrixWork, readProfile } from './profile.js';

const { values } = parseArgs({ options: {
  model: { type: 'string', default: 'models/mnist-autoencoder.onnx' }, batch: { type: 'string' },
  optimizer: { type: 'string', default: 'kbfgs' }, 'curvature-interval': { type: 'string', default: '1' },
} });
const curvatureInterval = Number(values['curvature-interval']);

/** Runs `work` on a backend whose sessions write profiles, and sums the matrix work of all of them. */
async function profiled(work: (backend: OrtBackend) => Promise<void>) {
  const dir = mkdtempSync(join(tmpdir(), 'kfqn-flops-'));
  try {
    await work(new OrtBackend('cpu', ortNode as unknown as OrtModule, dir));
    const total = { flop: 0, us: 0, unsized: 0 };
    for (const file of readdirSync(dir)) {
      const m = matrixWork(readProfile(join(dir, file)).kernels);
      total.flop += m.flop; total.us += m.us; total.unsized += m.unsized;
    }
    return total;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const floorRuns = 3;
const floor = await profiled(async (backend) => {
  const { tg, floorFeeds } = stepBenchSetup(backend, values.model!, values.batch);
  const session = await backend.createSession(encodeModel(tg.toModel()), { name: 'forward+backward' });
  for (let i = 0; i < floorRuns; i++) await session.run(floorFeeds);
  await session.release();
});

const interval = intervalOf(benchOptimizer(values.optimizer!, curvatureInterval));
let skipped = 0;
const train = (steps: number) => profiled(async (backend) => {
  const { model, spec, autoencoder, batch } = stepBenchSetup(backend, values.model!, values.batch);
  const trainer = await Trainer.create(backend, model, { ...spec, optimizer: benchOptimizer(values.optimizer!, curvatureInterval), target: autoencoder ? 'input' : 'label' });
  try {
    for (let i = 0; i < steps; i++) if ((await trainer.trainStep(batch)).skipped) skipped++;
  } finally {
    await trainer.dispose();
  }
});
const [shorter, longer] = [await train(2 * interval), await train(3 * interval)];
if (skipped > 0) console.error(`flop-ratio: ${skipped} steps were skipped (non-finite loss or direction): the count is not this optimizer's step`);

const perFloor = { flop: floor.flop / floorRuns, us: floor.us / floorRuns };
const perStep = { flop: (longer.flop - shorter.flop) / interval, us: (longer.us - shorter.us) / interval };
const figures = (w: { flop: number; us: number }) => ({ gflop: w.flop / 1e9, matrix_ms: w.us / 1e3, gflops: w.flop / w.us / 1e3 });
console.log(JSON.stringify({
  bench: 'flop-ratio', model: values.model, optimizer: values.optimizer, curvature_interval: curvatureInterval, averaged_over_steps: interval,
  floor: figures(perFloor), step: figures(perStep), ratio: perStep.flop / perFloor.flop,
  unsized_nodes_per_step: (longer.unsized - shorter.unsized) / interval, skipped_steps: skipped, machine: machine(),
}));
