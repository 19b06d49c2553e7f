// A tiny MLP autoencoder shared by the optimizer specs: the float64 reference network
// (mlp-reference.ts) as an ONNX model, and structured [0, 1] data for it.
import { expect } from 'chai';
import type { Batch } from '../../lib/data/index.js';
import type { Trainer } from '../../lib/train/trainer.js';
import { RefRng, type RefMlp } from './mlp-reference.js';
import { A, buildModel } from './models.js';

export const M = 12;
export const sizes = [6, 5, 3, 5, 6];
export const activations = ['tanh', 'relu', 'tanh', 'linear'] as const;

/**
 * The reference network as an ONNX model: Gemm (transB) layers with its activations; or, with
 * `conv1x1`, the same network as a CNN of 1×1 convolutions on [N, C, 1, 1] (flattened at the end),
 * which the im2col view (ALGORITHMS.md §1.4) makes exactly the MLP: one position, patches = inputs.
 */
export function toOnnx(net: RefMlp, layers: 'gemm' | 'conv1x1' = 'gemm') {
  const nodes = []; const initializers = [];
  let x = 'x';
  const conv = layers === 'conv1x1';
  for (let l = 0; l < net.layers.length; l++) {
    const [out, inp] = [net.sizes[l + 1], net.sizes[l]];
    initializers.push({ name: `W${l}`, dims: conv ? [out, inp, 1, 1] : [out, inp], values: Array.from(net.layers[l].W) });
    initializers.push({ name: `b${l}`, dims: [out], values: Array.from(net.layers[l].b) });
    const h = `h${l}`;
    nodes.push(conv
      ? { op: 'Conv', inputs: [x, `W${l}`, `b${l}`], outputs: [h], attrs: [A.ints('kernel_shape', [1, 1])] }
      : { op: 'Gemm', inputs: [x, `W${l}`, `b${l}`], outputs: [h], attrs: [A.int('transB', 1)] });
    const act = net.activations[l];
    if (act === 'linear') { x = h; continue; }
    x = `a${l}`;
    nodes.push({ op: act === 'relu' ? 'Relu' : act === 'tanh' ? 'Tanh' : 'Sigmoid', inputs: [h], outputs: [x] });
  }
  if (conv) {
    nodes.push({ op: 'Flatten', inputs: [x], outputs: ['flat'], attrs: [A.int('axis', 1)] });
    x = 'flat';
  }
  return buildModel({ inputs: [{ name: 'x', shape: conv ? ['N', net.sizes[0], 1, 1] : ['N', net.sizes[0]] }], initializers, nodes, output: x });
}

export function data(seed: number): Float32Array {
  const rng = new RefRng(seed);
  // Structured [0,1] inputs: noisy copies of 3 prototypes.
  const protos = Array.from({ length: 3 }, () => Array.from({ length: sizes[0] }, () => rng.next()));
  return Float32Array.from({ length: M * sizes[0] }, (_, k) => Math.min(1, Math.max(0, protos[Math.floor(k / sizes[0]) % 3][k % sizes[0]] + 0.1 * (rng.next() - 0.5))));
}

/** Max |engine − reference| / max |reference| over each W_l and b_l must stay below `tolerance`. */
export function expectParametersMatch(params: ReadonlyMap<string, { data: unknown }>, net: RefMlp, step: number, tolerance = 1e-4): void {
  net.layers.forEach((layer, l) => {
    for (const [key, want] of [[`W${l}`, layer.W], [`b${l}`, layer.b]] as const) {
      const got = params.get(key)!.data as ArrayLike<number>;
      const diff = Math.max(...Array.from(want, (v, i) => Math.abs(got[i] - v)));
      const scale = Math.max(...Array.from(want, Math.abs));
      if (!(diff / scale < tolerance)) throw new Error(`${key} after step ${step}: relative difference ${diff / scale} ≥ ${tolerance}`);
    }
  });
}

/** M structured samples in [0,1]^d: the sigmoid of a rank-k mix plus a little noise. */
export function structuredData(seed = 7, M = 64, d = 16, k = 3): Float64Array {
  const rng = new RefRng(seed);
  const P = Array.from({ length: k * d }, () => 2 * rng.normal());
  const X = new Float64Array(M * d);
  for (let i = 0; i < M; i++) {
    const z = Array.from({ length: k }, () => rng.uniform(-1, 1));
    for (let j = 0; j < d; j++) {
      let v = 0.2 * rng.normal();
      for (let q = 0; q < k; q++) v += z[q] * P[q * d + j];
      X[i * d + j] = 1 / (1 + Math.exp(-v));
    }
  }
  return X;
}

/**
 * Steps the trainer and a float64 reference side by side for `steps` steps: step k's batch and the
 * reference's loss on it (the reference updating `refNet`); each loss within 1e-5 relative and every
 * parameter within expectParametersMatch's tolerance after every step.
 */
export async function expectTracksReference(trainer: Trainer, refNet: RefMlp, steps: number, step: (k: number) => { batch: Batch; reference: () => number }): Promise<void> {
  for (let k = 1; k <= steps; k++) {
    const { batch, reference } = step(k);
    const expected = reference();
    const { loss } = await trainer.trainStep(batch);
    expect(Math.abs(loss - expected) / expected, `loss at step ${k}`).to.be.below(1e-5);
    expectParametersMatch(await trainer.parameters(), refNet, k);
  }
}
