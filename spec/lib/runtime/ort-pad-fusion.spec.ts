// Pins an ONNX Runtime behaviour kfqn works around by accident and documents (README,
// Limitations): onnxruntime-node 1.30's PadFusion (graph optimization level 'basic' and up) folds
// a zero constant Pad into a following MaxPool's pads. MaxPool's own pads never win the max, while
// padded zeros do, so windows whose entries are all negative give 0 without the fusion (ONNX's
// semantics) and their negative max with it. kfqn's training graphs keep the Pad because the
// backward reads its output too; a forward-only graph (evaluation, or the user's own inference)
// gets the fused result. When ORT fixes this, the test fails and the README's note can go.
import { expect } from 'chai';
import { encodeModel } from '../../../graph-tools/index.js';
import { createBackend } from '../../../lib/runtime/index.js';
import type { Backend } from '../../../lib/runtime/backend.js';
import { A, ModelBuilder } from '../../helpers/models.js';

describe('ONNX Runtime: PadFusion of a zero Pad into MaxPool (pinned ORT behaviour)', () => {
  let backend: Backend;
  before(async () => { backend = await createBackend('cpu'); });

  it('changes MaxPool results where a window holds only negative values and padding', async () => {
    const b = new ModelBuilder(4006, 13);
    const x = b.input('x', ['N', 2, 3, 3], [1, 2, 3, 3]);
    const padded = b.node('Pad', [x, b.int64('pads', [0, 0, 1, 0, 0, 0, 0, 1])]);
    const model = encodeModel(b.model(b.node('MaxPool', [padded], [A.ints('kernel_shape', [2, 2]), A.ints('strides', [2, 2])])));
    const input = Float32Array.from({ length: 18 }, (_, i) => -1 - i); // all negative
    const run = async (level: 'disabled' | 'basic') => {
      const s = await backend.createSession(model, { name: `pad-maxpool ${level}`, graphOptimizationLevel: level });
      const out = Object.values(await s.run({ x: backend.tensor('float32', input, [1, 2, 3, 3]) }))[0];
      await s.release();
      return Array.from(await backend.read(out) as Float32Array);
    };
    const exact = await run('disabled');
    const fused = await run('basic');
    // ONNX semantics: the first window of each channel covers the zero padding row, so its max is 0.
    expect(exact[0]).to.equal(0);
    expect(exact[4]).to.equal(0);
    // ORT's fused MaxPool ignores the padding instead: the window's own negative maximum.
    expect(fused[0]).to.be.below(0);
    expect(fused[4]).to.be.below(0);
  });
});
