// A tiny CNN with a real convolution (3×3 kernel, padding 1, 16 positions per sample) as a float64
// reference with a hand-written forward/backward through an explicit im2col, and as an ONNX model:
//   x [N, 2, 4, 4] → Conv 3×3 pad 1 (2 → 3, bias) → Tanh → Flatten → Gemm (48 → 4) → cross-entropy.
// In the reference's layer view the conv is a linear layer on N·16 patch rows (ALGORITHMS.md §1.4),
// so the Kronecker references can step it: A sums over positions and averages over samples, the
// means run over samples and positions.
import type { Batch } from '../../lib/data/index.js';
import { im2col, type ConvGeometry } from './im2col.js';
import { lossAndGrad, RefRng, type ForwardBackward, type RefMlp, type RefTarget } from './mlp-reference.js';
import { A, buildModel } from './models.js';

export const CNN = { samples: 6, channels: 2, size: 4, filters: 3, classes: 4 } as const;
const geometry: ConvGeometry = { kernel: [3, 3], pads: [1, 1, 1, 1] };
const positions = CNN.size * CNN.size;
const patch = CNN.channels * 9;
const features = CNN.filters * positions;

/** The network, PyTorch-style init; layers[0] is the conv (W̃ rows = filters, columns = patch entries). */
export function makeTinyCnn(seed = 5): RefMlp {
  const rng = new RefRng(seed);
  const layer = (out: number, inp: number) => {
    const bound = 1 / Math.sqrt(inp);
    // float32-representable, so the ONNX model holds exactly the reference's values
    const draw = (n: number) => Float64Array.from(Float32Array.from({ length: n }, () => rng.uniform(-bound, bound)));
    return { W: draw(out * inp), b: draw(out) };
  };
  return {
    sizes: [CNN.channels * positions, features, CNN.classes], activations: ['tanh', 'linear'],
    layers: [layer(CNN.filters, patch), layer(CNN.classes, features)], loss: { kind: 'cross-entropy', reduction: 'mean' },
  };
}

/** Forward and backward of the tiny CNN; the conv layer's rows are (sample, position) patches. */
export function tinyCnnForwardBackward(net: RefMlp, X: ArrayLike<number>, labels: RefTarget): ForwardBackward {
  const M = X.length / (CNN.channels * positions);
  const [conv, dense] = net.layers;
  const a0 = Float64Array.from(im2col(Float64Array.from(X), [M, CNN.channels, CNN.size, CNN.size], geometry).rows[0].flat());
  const R = M * positions;
  const h0 = new Float64Array(R * CNN.filters);
  const f = new Float64Array(M * features);
  for (let r = 0; r < R; r++) for (let c = 0; c < CNN.filters; c++) {
    let s = conv.b[c];
    for (let p = 0; p < patch; p++) s += conv.W[c * patch + p] * a0[r * patch + p];
    h0[r * CNN.filters + c] = s;
    // Flatten of [N, C, H, W]: feature c·T + t of sample i.
    f[Math.floor(r / positions) * features + c * positions + (r % positions)] = Math.tanh(s);
  }
  const h1 = new Float64Array(M * CNN.classes);
  for (let i = 0; i < M; i++) for (let k = 0; k < CNN.classes; k++) {
    let s = dense.b[k];
    for (let j = 0; j < features; j++) s += dense.W[k * features + j] * f[i * features + j];
    h1[i * CNN.classes + k] = s;
  }
  const { loss, dOut: dh1 } = lossAndGrad(net.loss, h1, M, CNN.classes, labels);
  const g1 = { W: new Float64Array(CNN.classes * features), b: new Float64Array(CNN.classes) };
  const df = new Float64Array(M * features);
  for (let i = 0; i < M; i++) for (let k = 0; k < CNN.classes; k++) {
    const d = dh1[i * CNN.classes + k];
    g1.b[k] += d;
    for (let j = 0; j < features; j++) { g1.W[k * features + j] += d * f[i * features + j]; df[i * features + j] += d * dense.W[k * features + j]; }
  }
  const dh0 = new Float64Array(R * CNN.filters);
  const g0 = { W: new Float64Array(CNN.filters * patch), b: new Float64Array(CNN.filters) };
  for (let r = 0; r < R; r++) for (let c = 0; c < CNN.filters; c++) {
    const t = Math.tanh(h0[r * CNN.filters + c]);
    const d = df[Math.floor(r / positions) * features + c * positions + (r % positions)] * (1 - t * t);
    dh0[r * CNN.filters + c] = d;
    g0.b[c] += d;
    for (let p = 0; p < patch; p++) g0.W[c * patch + p] += d * a0[r * patch + p];
  }
  return { loss, output: h1, grads: [g0, g1], a: [a0, f], h: [h0, h1], dh: [dh0, dh1], samples: M };
}

/** The tiny CNN as an ONNX model with initializers W0, b0 (conv) and W1, b1 (Gemm, transB). */
export function tinyCnnOnnx(net: RefMlp) {
  const [conv, dense] = net.layers;
  return buildModel({
    inputs: [{ name: 'x', shape: ['N', CNN.channels, CNN.size, CNN.size] }],
    initializers: [
      { name: 'W0', dims: [CNN.filters, CNN.channels, 3, 3], values: Array.from(conv.W) }, { name: 'b0', dims: [CNN.filters], values: Array.from(conv.b) },
      { name: 'W1', dims: [CNN.classes, features], values: Array.from(dense.W) }, { name: 'b1', dims: [CNN.classes], values: Array.from(dense.b) },
    ],
    nodes: [
      { op: 'Conv', inputs: ['x', 'W0', 'b0'], outputs: ['h0'], attrs: [A.ints('kernel_shape', [3, 3]), A.ints('pads', [1, 1, 1, 1])] },
      { op: 'Tanh', inputs: ['h0'], outputs: ['a0'] },
      { op: 'Flatten', inputs: ['a0'], outputs: ['f'], attrs: [A.int('axis', 1)] },
      { op: 'Gemm', inputs: ['f', 'W1', 'b1'], outputs: ['logits'], attrs: [A.int('transB', 1)] },
    ],
    output: 'logits',
  });
}

/** Batch k: images with smooth structure, labels from their mean intensity (float32 values). */
export function tinyCnnBatch(k: number): Batch {
  const rng = new RefRng(100 + k);
  const inputs = new Float32Array(CNN.samples * CNN.channels * positions);
  const labels = new BigInt64Array(CNN.samples);
  for (let i = 0; i < CNN.samples; i++) {
    const phase = rng.uniform(0, Math.PI);
    for (let c = 0; c < CNN.channels; c++) for (let t = 0; t < positions; t++) {
      inputs[(i * CNN.channels + c) * positions + t] = Math.sin(phase + c + 0.7 * (t % CNN.size) + 0.3 * Math.floor(t / CNN.size)) + 0.2 * rng.uniform(-1, 1);
    }
    labels[i] = BigInt(Math.floor(rng.uniform(0, CNN.classes)));
  }
  return { index: k, epoch: 0, size: CNN.samples, inputs, labels };
}
