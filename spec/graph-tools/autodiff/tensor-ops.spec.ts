// Pad and Concat backward rules against central finite differences of the float64 loss (ORT's
// CPU EP has float64 Pad, Concat and Slice), and the existing Clip, Mul and Add rules on the
// [N, C, H, W] tensors of convolutional models. Each model starts with a trainable Gemm whose
// output is reshaped to [N, C, H, W] (Conv is not needed).
import { expect } from 'chai';
import { buildTrainingGraph, GraphError } from '../../../graph-tools/index.js';
import { createBackend, type Backend } from '../../../lib/runtime/index.js';
import { explain, gradCheck } from '../../helpers/gradcheck.js';
import { A, ModelBuilder } from '../../helpers/models.js';
import { relError } from '../../helpers/train.js';

const N = 2;
const F = 3;

interface Case { name: string; body: (b: ModelBuilder) => string; opset?: number }
const cases: Case[] = [];
const add = (name: string, body: (b: ModelBuilder) => string, opset?: number) => cases.push({ name, body, opset });

/** A data input [batch, F] (batch 'N' unless a static one is asked for). */
const input = (b: ModelBuilder, staticBatch = false) => b.input('x', [staticBatch ? N : 'N', F], [N, F]);
/** Gemm → Reshape to [N, c, ...spatial]. */
const layer4 = (b: ModelBuilder, x: string, c: number, spatial: number[]) =>
  b.node('Reshape', [b.gemm(x, F, c * spatial.reduce((a, d) => a * d, 1)), b.int64('shape', [0, c, ...spatial])]);
/** Pad with pads (and a fill value) in the opset's form. */
const pad = (b: ModelBuilder, x: string, pads: number[], value?: number) => {
  if (b.opset < 11) return b.node('Pad', [x], [A.ints('pads', pads), ...(value !== undefined ? [A.float('value', value)] : [])]);
  const inputs = [x, b.int64('pads', pads)];
  if (value !== undefined) inputs.push(b.init('value', [], [value]));
  return b.node('Pad', inputs);
};

// ---- Pad -----------------------------------------------------------------------------------
add('Pad zeros [0,0,1,2 | 0,0,2,0] on [N,2,3,3]', (b) => pad(b, layer4(b, input(b), 2, [3, 3]), [0, 0, 1, 2, 0, 0, 2, 0]));
add('Pad with constant_value 0.5', (b) => pad(b, layer4(b, input(b), 2, [3, 3]), [0, 0, 1, 1, 0, 0, 1, 1], 0.5));
add('Pad all zero (PyTorch before AveragePool)', (b) => pad(b, layer4(b, input(b), 2, [3, 3]), [0, 0, 0, 0, 0, 0, 0, 0]));
add('Pad negative pads (crop) mixed with positive', (b) => pad(b, layer4(b, input(b), 2, [4, 5]), [0, 0, -1, 2, 0, 0, 1, -2]));
add('Pad on the channel axis and the feature axis of a 2-D value', (b) => {
  const x = input(b);
  return b.gemm(pad(b, b.gemm(x, F, 4), [0, 2, 0, 1]), 7, 2);
});
add('Pad → MaxPool 2×2 stride 2 → Flatten → Gemm', (b) => {
  const p = pad(b, layer4(b, input(b), 2, [3, 3]), [0, 0, 1, 0, 0, 0, 0, 1]);
  return b.gemm(b.node('Flatten', [b.node('MaxPool', [p], [A.ints('kernel_shape', [2, 2]), A.ints('strides', [2, 2])])]), 8, 3);
});
add('Pad with pads from a Constant node', (b) => {
  const pads = b.node('Constant', [], [A.tensor('value', { dtype: 'int64', dims: [8], data: BigInt64Array.from([0n, 0n, 1n, 0n, 0n, 0n, 0n, 1n]) })]);
  return b.node('Pad', [layer4(b, input(b), 2, [3, 3]), pads]);
});
add('Pad with axes [2, 3], opset 18', (b) => b.node('Pad', [layer4(b, input(b), 2, [3, 3]), b.int64('pads', [1, 0, 2, 1]), '', b.int64('axes', [2, 3])]), 18);
add('Pad with axes [-1], opset 18', (b) => b.node('Pad', [layer4(b, input(b), 2, [3, 3]), b.int64('pads', [2, 1]), '', b.int64('axes', [-1])]), 18);
add('Pad, opset 11 (pads input)', (b) => pad(b, layer4(b, input(b), 2, [3, 3]), [0, 0, 1, 1, 0, 0, 1, 1], 0.25), 11);
add('Pad, opset 10 (pads and value attributes)', (b) => pad(b, layer4(b, input(b), 2, [3, 3]), [0, 0, 1, -1, 0, 0, 2, 1], -0.5), 10);
add('Pad, opset 9 (attributes)', (b) => pad(b, layer4(b, input(b), 2, [3, 3]), [0, 0, 2, 1, 0, 0, 0, 1]), 9);

// ---- Concat ----------------------------------------------------------------------------------
add('Concat of two layer outputs along channels', (b) => {
  const x = input(b);
  return b.node('Concat', [layer4(b, x, 2, [3, 3]), layer4(b, x, 3, [3, 3])], [A.int('axis', 1)]);
});
add('Concat of three along channels, the middle a constant (static batch)', (b) => {
  const x = input(b, true);
  return b.node('Concat', [layer4(b, x, 2, [2, 3]), b.init('c', [N, 1, 2, 3]), layer4(b, x, 1, [2, 3])], [A.int('axis', 1)]);
});
add('Concat of a layer output and a constant along the last axis (axis -1, static batch)', (b) => {
  const x = input(b, true);
  return b.node('Concat', [b.init('c', [N, 2, 3, 2]), layer4(b, x, 2, [3, 3])], [A.int('axis', -1)]);
});
add('Concat along the dynamic batch axis with a constant batch of 2', (b) => {
  const x = input(b);
  return b.node('Concat', [layer4(b, x, 2, [2, 2]), b.init('c', [2, 2, 2, 2]), layer4(b, x, 2, [2, 2])], [A.int('axis', 0)]);
});
add('Concat of a value with itself', (b) => {
  const h = layer4(b, input(b), 2, [2, 3]);
  return b.node('Concat', [h, h], [A.int('axis', 2)]);
});
add('Concat of a layer output with the data input (no gradient for it)', (b) => {
  const x = input(b);
  return b.gemm(b.node('Concat', [b.gemm(x, F, 4), x], [A.int('axis', 1)]), 7, 2);
});
add('Concat → MaxPool → Concat (a small Inception-style block)', (b) => {
  const x = input(b);
  const a = layer4(b, x, 2, [4, 4]);
  const c = b.node('Concat', [a, layer4(b, x, 1, [4, 4])], [A.int('axis', 1)]);
  const m = b.node('MaxPool', [c], [A.ints('kernel_shape', [3, 3]), A.ints('pads', [1, 1, 1, 1])]);
  return b.node('Concat', [m, a], [A.int('axis', 1)]);
});
add('Concat along channels, opset 9 (attribute Slice)', (b) => {
  const x = input(b);
  return b.node('Concat', [layer4(b, x, 2, [2, 2]), layer4(b, x, 1, [2, 2])], [A.int('axis', 1)]);
}, 9);
add('Concat along channels, opset 11', (b) => {
  const x = input(b);
  return b.node('Concat', [layer4(b, x, 1, [2, 2]), layer4(b, x, 2, [2, 2])], [A.int('axis', 1)]);
}, 11);

// ---- existing rules on 4-D values ----------------------------------------------------------------
add('Clip(−0.3, 0.4) on [N,2,3,3] → MaxPool', (b) =>
  b.node('MaxPool', [b.node('Clip', [layer4(b, input(b), 2, [3, 3]), b.init('lo', [], [-0.3]), b.init('hi', [], [0.4])])], [A.ints('kernel_shape', [2, 2])]));
add('Clip(0, 0.5) (Relu6-style) on [N,2,3,3], opset 12', (b) =>
  b.node('Clip', [layer4(b, input(b), 2, [3, 3]), b.init('lo', [], [0]), b.init('hi', [], [0.5])]), 12);
add('Mul by a per-channel constant [C,1,1]', (b) => b.node('Mul', [layer4(b, input(b), 3, [2, 2]), b.init('s', [3, 1, 1], [0.5, -1.5, 2])]));
add('Mul by a scalar constant, then MaxPool', (b) =>
  b.node('MaxPool', [b.node('Mul', [b.init('s', [], [-1.7]), layer4(b, input(b), 2, [3, 3])])], [A.ints('kernel_shape', [2, 2]), A.ints('strides', [2, 2])]));
add('residual Add: h + MaxPool 3×3 stride 1 pads 1 (h)', (b) => {
  const h = layer4(b, input(b), 2, [3, 3]);
  return b.node('Add', [h, b.node('MaxPool', [h], [A.ints('kernel_shape', [3, 3]), A.ints('pads', [1, 1, 1, 1])])]);
});
add('residual Add of two layer paths: h + reshape(Gemm(Tanh(flatten h)))', (b) => {
  const h = layer4(b, input(b), 2, [2, 2]);
  const branch = b.node('Reshape', [b.gemm(b.node('Tanh', [b.node('Flatten', [h])]), 8, 8), b.int64('shape', [0, 2, 2, 2])]);
  return b.node('Add', [h, branch]);
});
add('Add with a per-channel broadcast layer output [N,C,1,1]', (b) => {
  const x = input(b);
  return b.node('Add', [layer4(b, x, 2, [3, 3]), layer4(b, x, 2, [1, 1])]);
});

describe('autodiff: Pad and Concat against finite differences (float64)', function () {
  let backend: Backend;
  before(async () => { backend = await createBackend('cpu'); });

  cases.forEach((c, i) => {
    it(c.name, async () => {
      const b = new ModelBuilder(4000 + i, c.opset ?? 13);
      const r = await gradCheck(backend, { model: b.model(c.body(b)), inputs: b.data });
      expect(r.result.dtype, 'evaluated in float64').to.equal('float64');
      expect(r.maxAbsGrad, 'a non-trivial gradient').to.be.above(1e-3);
      expect(Math.abs(r.loss - r.loss32), 'float32 vs float64 loss').to.be.below(1e-4 * Math.max(1, Math.abs(r.loss)));
      for (const q of r.params) {
        expect(relError(r.result32.gradients.get(q.param)!, q.grad), `float32 gradient of ${q.param}`).to.be.below(1e-4);
        expect(q.relError, `${q.param}: ${explain(r)}`).to.be.below(1e-6);
      }
    });
  });

  it('Pad with pads computed at run time: a GraphError asking for constant pads', () => {
    const b = new ModelBuilder(1);
    const h = layer4(b, input(b), 1, [2, 2]);
    const pads = b.node('Cast', [b.node('Shape', [h])], [A.int('to', 7)]);
    const y = b.node('Pad', [h, b.node('Concat', [pads, pads], [A.int('axis', 0)])]);
    expect(() => buildTrainingGraph(b.model(y), { kind: 'mse', reduction: 'sum' })).to.throw(GraphError, /Pad.*depend on a dynamic dimension|Pad.*not computable/);
  });
});
