// In-graph Kronecker statistics against plain-TypeScript references built from the layer's
// captured activations (Gemm, MatMul) or an explicit im2col of its input (Conv).
import { expect } from 'chai';
import { buildTrainingGraph, encodeModel, type onnx, type TensorData } from '../../graph-tools/index.js';
import { createBackend } from '../../lib/runtime/index.js';
import type { Backend, Tensor } from '../../lib/runtime/backend.js';
import { A, ModelBuilder, Rng } from '../helpers/models.js';
import { im2col, type ConvGeometry } from '../helpers/im2col.js';
import { relError } from '../helpers/train.js';

const N = 3;

interface Case {
  name: string;
  build: (b: ModelBuilder) => string;
  /** Conv layers: how the first layer's input unfolds (the layer under test is the first). */
  conv?: ConvGeometry;
}

const cases: Case[] = [
  { name: 'Gemm with bias (transB)', build: (b) => b.gemm(b.node('Tanh', [b.gemm(b.input('x', ['N', 3], [N, 3]), 3, 4, { transB: true })]), 4, 2) },
  { name: 'Gemm without bias', build: (b) => b.gemm(b.node('Tanh', [b.gemm(b.input('x', ['N', 3], [N, 3]), 3, 4, { bias: 'none' })]), 4, 2) },
  { name: 'MatMul + bias on [N,2,3] (positions fold into rows)', build: (b) => b.gemm(b.node('Flatten', [b.node('Tanh', [b.matmul(b.input('x', ['N', 2, 3], [N, 2, 3]), 3, 4, { bias: 'vec' })])]), 8, 2) },
];

async function run(backend: Backend, model: onnx.ModelProto, inputs: Record<string, TensorData>, rng: Rng) {
  const tg = buildTrainingGraph(model, {
    kind: 'mse', reduction: 'sum',
    capture: { activations: true, preactivations: true, preactivationGradients: true, statistics: { factors: true, means: true, hessianAction: true } },
  });
  const session = await backend.createSession(encodeModel(tg.toModel()), { name: 'statistics' });
  const feeds: Record<string, Tensor> = {};
  for (const [k, v] of Object.entries(inputs)) feeds[k] = backend.tensor('float32', v.data as Float32Array, v.dims);
  const outShape = tg.target.type.shape!.map((d) => (typeof d === 'number' ? d : N));
  feeds[tg.target.name] = backend.tensor('float32', Float32Array.from(rng.array(outShape.reduce((a, b) => a * b, 1))), outShape);
  for (const [p, v] of tg.initialParameters) feeds[p] = backend.tensor('float32', v.data as Float32Array, v.dims);
  const layer = tg.report.layers[0];
  const names = tg.outputs.statistics.get(layer.name)!;
  const v = Float32Array.from(rng.array(layer.groups * layer.factors.a));
  feeds[names.v!] = backend.tensor('float32', v, [layer.groups, layer.factors.a]);
  // Feed every other layer's v too (zeros): each layer has its own input.
  for (const [name, s] of tg.outputs.statistics) if (name !== layer.name) {
    const l = tg.report.layers.find((x) => x.name === name)!;
    feeds[s.v!] = backend.tensor('float32', new Float32Array(l.groups * l.factors.a), [l.groups, l.factors.a]);
  }
  const out = await session.run(feeds);
  await session.release();
  const get = (name: string) => Array.from(out[name].data as Float32Array);
  return { tg, layer, names, v: Array.from(v), get };
}

describe('graph-tools/statistics: per-layer Kronecker statistics in the graph', () => {
  let backend: Backend;
  before(async () => { backend = await createBackend('cpu'); });

  cases.forEach((c, i) => it(c.name, async () => {
    const b = new ModelBuilder(50 + i);
    const model = b.model(c.build(b));
    const rng = new Rng(7 + i);
    const { tg, layer, names, v, get } = await run(backend, model, b.data, rng);
    const stats = tg.outputs;
    // Reference rows ã from the captured activation (linear) or an explicit im2col (conv).
    let rows: number[][][];
    let positions = 1;
    if (c.conv) {
      const x = b.data.x;
      const r = im2col(x.data as Float32Array, x.dims, c.conv);
      rows = r.rows; positions = r.positions;
    } else {
      const act = get(stats.activations.get(layer.input)!);
      const d = layer.inFeatures;
      rows = [Array.from({ length: act.length / d }, (_, r) => act.slice(r * d, r * d + d))];
      positions = act.length / d / N;
    }
    if (layer.bias) rows = rows.map((g) => g.map((r) => [...r, 1]));
    const da = layer.factors.a;
    expect(rows[0][0]).to.have.length(da);
    const refA: number[] = []; const refAbar: number[] = []; const refAv: number[] = [];
    rows.forEach((gr, g) => {
      for (let p = 0; p < da; p++) for (let q = 0; q < da; q++) refA.push(gr.reduce((s, r) => s + r[p] * r[q], 0) / N);
      for (let p = 0; p < da; p++) refAbar.push(gr.reduce((s, r) => s + r[p], 0) / gr.length);
      const vg = v.slice(g * da, g * da + da);
      const rv = gr.map((r) => r.reduce((s, x, q) => s + x * vg[q], 0));
      for (let p = 0; p < da; p++) refAv.push(gr.reduce((s, r, k) => s + r[p] * rv[k], 0) / N);
    });
    expect(relError(get(names.a!), refA), 'A').to.be.below(1e-5);
    expect(relError(get(names.abar!), refAbar), 'ā').to.be.below(1e-5);
    expect(relError(get(names.av!), refAv), 'A·v').to.be.below(1e-5);
    // h̄ and ḡ: means over batch and positions of h and of M·∂L/∂h, per output channel.
    const h = get(stats.preactivations.get(layer.preactivation)!);
    const dh = get(stats.preactivationGradients.get(layer.preactivation)!);
    const outs = layer.groups * layer.factors.g;
    const channelOf = (k: number) => (c.conv ? Math.floor(k / positions) % outs : k % outs);
    const mean = (xs: number[], scale: number) => Array.from({ length: outs }, (_, o) => scale * xs.filter((_, k) => channelOf(k) === o).reduce((s, x) => s + x, 0) / (xs.length / outs));
    expect(relError(get(names.hbar!), mean(h, 1)), 'h̄').to.be.below(1e-5);
    expect(relError(get(names.gbar!), mean(dh, N)), 'ḡ').to.be.below(1e-5);
    // The identity (1/M) Σ g ãᵀ = the weight gradient, with g = M·∂L/∂h, here in W̃'s row-major
    // [out, d_a] layout (the bias gradient as the last column).
    if (!c.conv) {
      const gW = get(stats.gradients.get(layer.weight)!);
      const gB = layer.bias ? get(stats.gradients.get(layer.bias)!) : [];
      const d = layer.inFeatures;
      const rowsOut = dh.length / outs;
      for (let o = 0; o < outs; o++) {
        for (let p = 0; p < da; p++) {
          const sum = rows[0].reduce((s, r, k) => s + dh[k * outs + o] * r[p], 0);
          const expected = p < d ? (layer.weightLayout === 'out-in' ? gW[o * d + p] : gW[p * outs + o]) : gB[o];
          expect(Math.abs(sum - expected), `Σ g ãᵀ [${o},${p}]`).to.be.below(1e-5 * Math.max(1, Math.abs(expected)));
        }
      }
      expect(rowsOut).to.equal(rows[0].length);
    }
  }));
});

