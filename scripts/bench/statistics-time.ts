// Cost of the in-graph Kronecker statistics (A factors, means, Hessian action) on a training pass,
// against the same pass without them and against a plain forward+backward pass (loss and
// parameter gradients only). Default: the small ResNet at batch 128 on random 28×28 images.
// Usage: npx tsx scripts/bench/statistics-time.ts [--model models/resnet-small.onnx] [--batch 128] [--runs 15] [--ep cpu]
// Prints one JSON object.
import { parseArgs } from 'node:util';
import { buildTrainingGraph, encodeModel, type Capture, type TrainingGraph } from '../../graph-tools/index.js';
import { readModelFile } from '../../lib/io/files.js';
import { createBackend, type ExecutionProvider, type Tensor } from '../../lib/runtime/index.js';
import { machine, median, timeRuns } from './common.js';

const { values } = parseArgs({ options: {
  model: { type: 'string', default: 'models/resnet-small.onnx' }, batch: { type: 'string', default: '128' },
  runs: { type: 'string', default: '15' }, ep: { type: 'string', default: 'cpu' },
} });
const batch = Number(values.batch);
const runs = Number(values.runs);
const backend = await createBackend(values.ep as ExecutionProvider);
const model = readModelFile(values.model!);

let seed = 1;
const random = (n: number) => Float32Array.from({ length: n }, () => { seed = (seed * 1103515245 + 12345) % 2147483648; return seed / 2147483648; });

async function timePass(capture: Capture): Promise<{ seconds: number; tg: TrainingGraph }> {
  const tg = buildTrainingGraph(model, { kind: 'cross-entropy', reduction: 'mean', capture });
  const session = await backend.createSession(encodeModel(tg.toModel()), { name: 'bench' });
  const input = tg.dataInputs[0];
  const dims = [batch, ...(input.type.shape!.slice(1) as number[])];
  const feeds: Record<string, Tensor> = {
    [input.name]: backend.tensor('float32', random(dims.reduce((a, b) => a * b, 1)), dims),
    [tg.target.name]: backend.tensor('int64', BigInt64Array.from({ length: batch }, (_, i) => BigInt(i % 10)), [batch]),
  };
  for (const [p, v] of tg.initialParameters) feeds[p] = backend.tensor('float32', v.data as Float32Array, v.dims);
  for (const layer of tg.report.layers) {
    const v = tg.outputs.statistics.get(layer.name)?.v;
    if (v) feeds[v] = backend.tensor('float32', random(layer.groups * layer.factors.a), [layer.groups, layer.factors.a]);
  }
  const seconds = median(await timeRuns(() => session.run(feeds), runs));
  await session.release();
  return { seconds, tg };
}

const floor = await timePass({});
const activations = await timePass({ activations: true, preactivationGradients: true });
const statistics = await timePass({ statistics: { factors: true, means: true, hessianAction: true } });
const actionOnly = await timePass({ statistics: { means: true, hessianAction: true } });
const layers = floor.tg.report.layers;
console.log(JSON.stringify({
  bench: 'statistics-time', model: values.model, ep: backend.ep, batch,
  layers: layers.length, conv_layers: layers.filter((l) => l.kind === 'conv').length,
  floor_s: floor.seconds,
  with_activations_s: activations.seconds,
  with_statistics_s: statistics.seconds, statistics_ratio: statistics.seconds / floor.seconds,
  with_means_and_hessian_action_s: actionOnly.seconds, means_and_hessian_action_ratio: actionOnly.seconds / floor.seconds,
  runs, machine: machine(),
}));
