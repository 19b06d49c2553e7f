// --batchnorm train: normalisation with batch statistics and the running-statistics update, against
// a plain-TypeScript reference of PyTorch's train-mode BatchNorm (biased variance to normalise,
// unbiased in the running update, ONNX momentum m = 1 − PyTorch's).
import { expect } from 'chai';
import { buildTrainingGraph, encodeModel, LOSS_OUTPUT } from '../../graph-tools/index.js';
import { createBackend } from '../../lib/runtime/index.js';
import type { Tensor } from '../../lib/runtime/backend.js';
import { A, buildModel, Rng } from '../helpers/models.js';

describe('graph-tools/batchnorm: batch statistics', () => {
  it('normalises with the batch mean and biased variance, and updates the running statistics', async () => {
    const rng = new Rng(5);
    const [n, c, hw] = [4, 3, 4];
    const x = rng.array(n * c * hw, -2, 2);
    const scale = [0.5, 1.5, -1]; const bias = [0.1, -0.2, 0.3];
    const runMean = [0.2, -0.1, 0]; const runVar = [1, 2, 0.5];
    // x → Identity-weight 1×1 Conv (a trainable layer, identity so y = BN(x)) → BatchNormalization
    const eye = [1, 0, 0, 0, 1, 0, 0, 0, 1];
    const model = buildModel({
      inputs: [{ name: 'x', shape: ['N', c, 2, 2] }],
      initializers: [
        { name: 'W', dims: [c, c, 1, 1], values: eye }, { name: 's', dims: [c], values: scale }, { name: 'b', dims: [c], values: bias },
        { name: 'rm', dims: [c], values: runMean }, { name: 'rv', dims: [c], values: runVar },
      ],
      nodes: [
        { op: 'Conv', inputs: ['x', 'W'], outputs: ['h'], attrs: [A.ints('kernel_shape', [1, 1])] },
        { op: 'BatchNormalization', inputs: ['h', 's', 'b', 'rm', 'rv'], outputs: ['y'], attrs: [A.float('epsilon', 1e-3), A.float('momentum', 0.8)] },
      ],
      output: 'y',
    });
    const tg = buildTrainingGraph(model, { kind: 'mse', reduction: 'sum', batchnorm: 'train' });
    expect(tg.buffers.map((b) => b.input)).to.deep.equal(['rm', 'rv']);
    const backend = await createBackend('cpu');
    const session = await backend.createSession(encodeModel(tg.toModel()), { name: 'bn' });
    const t = (v: number[], dims: number[]): Tensor => backend.tensor('float32', Float32Array.from(v), dims);
    const feeds: Record<string, Tensor> = { x: t(x, [n, c, 2, 2]), [tg.target.name]: t(new Array(n * c * hw).fill(0), [n, c, 2, 2]) };
    for (const [p, v] of tg.initialParameters) feeds[p] = backend.tensor('float32', v.data as Float32Array, v.dims);
    for (const [p, v] of tg.initialBuffers) feeds[p] = backend.tensor('float32', v.data as Float32Array, v.dims);
    const out = await session.run(feeds);
    await session.release();

    let sumSq = 0;
    const newMean: number[] = []; const newVar: number[] = [];
    for (let ch = 0; ch < c; ch++) {
      const vals: number[] = [];
      for (let i = 0; i < n; i++) for (let p = 0; p < hw; p++) vals.push(x[(i * c + ch) * hw + p]);
      const mean = vals.reduce((a, v) => a + v, 0) / vals.length;
      const varBiased = vals.reduce((a, v) => a + (v - mean) ** 2, 0) / vals.length;
      for (const v of vals) sumSq += ((v - mean) / Math.sqrt(varBiased + 1e-3) * scale[ch] + bias[ch]) ** 2;
      newMean.push(0.8 * runMean[ch] + 0.2 * mean);
      newVar.push(0.8 * runVar[ch] + 0.2 * varBiased * vals.length / (vals.length - 1));
    }
    const loss = (out[LOSS_OUTPUT].data as Float32Array)[0];
    expect(Math.abs(loss - sumSq)).to.be.below(1e-4 * sumSq);
    const got = (name: string) => Array.from(out[tg.buffers.find((b) => b.input === name)!.output!].data as Float32Array);
    got('rm').forEach((v, i) => expect(v).to.be.closeTo(newMean[i], 1e-5));
    got('rv').forEach((v, i) => expect(v).to.be.closeTo(newVar[i], 1e-5));
  });
});
