// K-BFGS in a training loop of your own: your onnxruntime-node session, your batches, kfqn's
// optimizer. Run: npx tsx examples/kbfgs-plugin.ts [steps]
//
// 1. Augment the inference model into a training graph that also outputs, per layer, the
//    statistics K-BFGS needs (the same graph `kfqn augment MODEL --loss bce-with-logits
//    --reduction per-sample-sum --capture a-factors,means -o train.onnx` writes).
// 2. Each step: run it at θ, hand its outputs to the stepper with a callback that runs it again
//    at θ⁺ (K-BFGS's second pass on the same batch), and keep the parameters it returns.
import * as ort from 'onnxruntime-node';
import { pathToFileURL } from 'node:url';
import { batches, buildTrainingGraph, createBackend, encodeModel, kbfgs, KbfgsStepper, loadBundledMnist, readModelFile } from '../lib/index.js';

export async function trainWithStepper(steps: number, log: (line: string) => void = console.log): Promise<number[]> {
  const model = readModelFile(new URL('../models/mnist-autoencoder.onnx', import.meta.url).pathname);
  const augmented = buildTrainingGraph(model, {
    kind: 'bce-with-logits', reduction: 'per-sample-sum', capture: { gradients: true, statistics: { factors: true, means: true } },
  });
  const session = await ort.InferenceSession.create(encodeModel(augmented.toModel()));
  // The parameters start from the model's initializers; you own them between steps.
  let params: Record<string, ort.Tensor> = Object.fromEntries(
    [...augmented.initialParameters].map(([name, t]) => [name, new ort.Tensor('float32', t.data as Float32Array, t.dims)]));
  const stepper = await KbfgsStepper.create(await createBackend('cpu'), model, kbfgs({ lr: 0.3, damping: 0.3 }));
  const losses: number[] = [];
  try {
    const data = loadBundledMnist();
    for (let epoch = 0; losses.length < steps; epoch++) {
      for (const batch of batches(data, { batchSize: 1000, shuffle: true, seed: 0, epoch })) {
        if (losses.length >= steps) break;
        const x = new ort.Tensor('float32', batch.inputs, [batch.size, 784]);
        const feeds = { input: x, [augmented.target.name]: x }; // an autoencoder: the target is the input
        const outputs = await session.run({ ...feeds, ...params });
        const loss = Number(outputs[augmented.outputs.loss].data[0]);
        const result = await stepper.step({ params, outputs, loss, secondPass: (next) => session.run({ ...feeds, ...next }) });
        params = result.params as Record<string, ort.Tensor>;
        losses.push(loss);
        log(`step ${losses.length}: loss ${loss.toFixed(2)}${result.skipped ? ' (skipped)' : ''}, Powell-damped layers ${(100 * result.powellShare).toFixed(0)}%`);
      }
    }
  } finally {
    await stepper.release();
    await session.release();
  }
  return losses;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) await trainWithStepper(Number(process.argv[2] ?? 20));
