// In-graph Kronecker statistics against plain-TypeScript references built from the layer's
// captured activations (Gemm, MatMul) or an explicit im2col of its input (Conv).
import { expect } from 'chai';
import { buildTrainingGraph, encodeModel, type Layer, type onnx, type StatisticsRequest, type TensorData } from '../../graph-tools/index.js';
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

function convNode(b: ModelBuilder, x: string, cIn: number, cOut: number, geo: ConvGeometry, bias: boolean): string {
  const groups = geo.groups ?? 1;
  const w = b.init('W', [cOut, cIn / groups, ...geo.kernel], 0.5);
  const attrs = [A.ints('kernel_shape', geo.kernel)];
  if (geo.strides) attrs.push(A.ints('strides', geo.strides));
  if (geo.pads) attrs.push(A.ints('pads', geo.pads));
  if (geo.dilations) attrs.push(A.ints('dilations', geo.dilations));
  if (groups > 1) attrs.push(A.int('group', groups));
  return b.node('Conv', bias ? [x, w, b.init('b', [cOut], 0.3)] : [x, w], attrs);
}

/** x [N, cIn, spatial] → Conv (the layer under test) → Tanh → Flatten → Gemm. */
function convCase(name: string, cIn: number, cOut: number, spatial: number[], geo: ConvGeometry, bias = true): Case {
  const r = spatial.length;
  const out = spatial.map((s, i) => Math.floor((s + (geo.pads?.[i] ?? 0) + (geo.pads?.[i + r] ?? 0) - (geo.dilations?.[i] ?? 1) * (geo.kernel[i] - 1) - 1) / (geo.strides?.[i] ?? 1)) + 1);
  const flat = cOut * out.reduce((a, b2) => a * b2, 1);
  return {
    name, conv: geo,
    build: (b) => {
      const x = b.input('x', ['N', cIn, ...spatial], [N, cIn, ...spatial]);
      return b.gemm(b.node('Flatten', [b.node('Tanh', [convNode(b, x, cIn, cOut, geo, bias)])]), flat, 2, { transB: true, scale: 0.3 });
    },
  };
}

const cases: Case[] = [
  convCase('Conv 3×3, pads 1, bias', 2, 3, [4, 4], { kernel: [3, 3], pads: [1, 1, 1, 1] }),
  convCase('Conv 2×3, stride 2, asymmetric pads, dilation [1,2], no bias', 2, 3, [5, 6], { kernel: [2, 3], strides: [2, 2], pads: [1, 0, 0, 2], dilations: [1, 2] }, false),
  convCase('Conv group 2 (one factor pair per group)', 4, 6, [4, 4], { kernel: [3, 3], groups: 2 }),
  convCase('depthwise Conv with a channel multiplier', 3, 6, [4, 4], { kernel: [2, 2], groups: 3, strides: [2, 2] }),
  convCase('1-D Conv, stride 2', 2, 3, [7], { kernel: [3], strides: [2], pads: [1, 1] }),
  // Unit stride, one group: the Hessian action's shifted-window form, with pads on one side only,
  // wider than the dilated kernel, and none.
  convCase('Conv 3×2, unit stride, dilation [2,1], pads [0,2,3,0]', 2, 3, [6, 5], { kernel: [3, 2], pads: [0, 2, 3, 0], dilations: [2, 1] }, false),
  convCase('1-D Conv, unit stride, pads [4,0] (wider than the kernel)', 2, 2, [5], { kernel: [3], pads: [4, 0] }),
  { name: 'Gemm with bias (transB)', build: (b) => b.gemm(b.node('Tanh', [b.gemm(b.input('x', ['N', 3], [N, 3]), 3, 4, { transB: true })]), 4, 2) },
  { name: 'Gemm without bias', build: (b) => b.gemm(b.node('Tanh', [b.gemm(b.input('x', ['N', 3], [N, 3]), 3, 4, { bias: 'none' })]), 4, 2) },
  { name: 'MatMul + bias on [N,2,3] (positions fold into rows)', build: (b) => b.gemm(b.node('Flatten', [b.node('Tanh', [b.matmul(b.input('x', ['N', 2, 3], [N, 2, 3]), 3, 4, { bias: 'vec' })])]), 8, 2) },
];

async function run(backend: Backend, model: onnx.ModelProto, inputs: Record<string, TensorData>, rng: Rng) {
  const tg = buildTrainingGraph(model, {
    kind: 'mse', reduction: 'per-sample-sum',
    capture: { activations: true, preactivations: true, preactivationGradients: true, statistics: { factors: true, means: true, hessianAction: true, gradientFactors: true } },
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

/** Per group, the rows ã (with the trailing 1 of a bias): the captured activation (linear) or an explicit im2col (conv). */
function referenceRows(c: Case, b: ModelBuilder, layer: Layer, activation: number[]): { rows: number[][][]; positions: number } {
  let rows: number[][][];
  let positions = 1;
  if (c.conv) {
    const x = b.data.x;
    const r = im2col(x.data as Float32Array, x.dims, c.conv);
    rows = r.rows; positions = r.positions;
  } else {
    const d = layer.inFeatures;
    rows = [Array.from({ length: activation.length / d }, (_, r) => activation.slice(r * d, r * d + d))];
    positions = activation.length / d / N;
  }
  if (layer.bias) rows = rows.map((g) => g.map((r) => [...r, 1]));
  return { rows, positions };
}

/**
 * Runs the training graph of case `c` (built with `b`) without parameter gradients, capturing its
 * activations and `statistics`; returns its outputs, the first layer, its statistic names and its
 * reference rows ã.
 */
async function runStatistics(backend: Backend, c: Case, b: ModelBuilder, statistics: StatisticsRequest) {
  const tg = buildTrainingGraph(b.model(c.build(b)), { kind: 'mse', reduction: 'per-sample-sum', parameterGradients: false, capture: { activations: true, gradients: false, statistics } });
  const session = await backend.createSession(encodeModel(tg.toModel()), { name: 'statistics without gradients' });
  const feeds: Record<string, Tensor> = {};
  for (const [k, v] of Object.entries(b.data)) feeds[k] = backend.tensor('float32', v.data as Float32Array, v.dims);
  const outShape = tg.target.type.shape!.map((d) => (typeof d === 'number' ? d : N));
  feeds[tg.target.name] = backend.tensor('float32', new Float32Array(outShape.reduce((a, b2) => a * b2, 1)), outShape);
  for (const [p, v] of tg.initialParameters) feeds[p] = backend.tensor('float32', v.data as Float32Array, v.dims);
  const out = await session.run(feeds);
  await session.release();
  const layer = tg.report.layers[0];
  const names = tg.outputs.statistics.get(layer.name)!;
  const { rows } = referenceRows(c, b, layer, Array.from(out[tg.outputs.activations.get(layer.input)!].data as Float32Array));
  return { tg, out, layer, names, rows };
}

describe('graph-tools/statistics: the Hessian action of a v computed in the graph from ā (KF-QN\'s s_a)', () => {
  let backend: Backend;
  before(async () => { backend = await createBackend('cpu'); });

  // v = ā ⊙ (1, 2, 3, ...) per group: depends on ā, so the action must wait for it.
  cases.forEach((c, i) => it(c.name, async () => {
    const { tg, out, layer, names, rows } = await runStatistics(backend, c, new ModelBuilder(50 + i), {
      hessianAction: true, actionVector: (e, l, abar) => e.op('Mul', [abar, e.constant(Array.from({ length: l.factors.a }, (_, k) => k + 1), 'float32')]),
    });
    expect(tg.graph.inputs.some((x) => x.name.startsWith('kfqn:v:')), 'no v input').to.equal(false);
    const da = layer.factors.a;
    const refAbar: number[] = []; const refAv: number[] = [];
    rows.forEach((gr) => {
      const abar = Array.from({ length: da }, (_, p) => gr.reduce((s2, r) => s2 + r[p], 0) / gr.length);
      const v = abar.map((x, k) => x * (k + 1));
      const rv = gr.map((r) => r.reduce((s2, x, q) => s2 + x * v[q], 0));
      refAbar.push(...abar);
      for (let p = 0; p < da; p++) refAv.push(gr.reduce((s2, r, k) => s2 + r[p] * rv[k], 0) / N);
    });
    expect(relError(Array.from(out[names.abar!].data as Float32Array), refAbar), 'ā').to.be.below(1e-5);
    expect(relError(Array.from(out[names.av!].data as Float32Array), refAv), 'A_B·v').to.be.below(1e-5);
  }));
});

describe('graph-tools/statistics: per-layer Kronecker statistics in the graph', () => {
  let backend: Backend;
  before(async () => { backend = await createBackend('cpu'); });

  cases.forEach((c, i) => it(c.name, async () => {
    const b = new ModelBuilder(50 + i);
    const model = b.model(c.build(b));
    const rng = new Rng(7 + i);
    const { tg, layer, names, v, get } = await run(backend, model, b.data, rng);
    const stats = tg.outputs;
    const { rows, positions } = referenceRows(c, b, layer, get(stats.activations.get(layer.input)!));
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
    // The identity (1/M) Σ g ãᵀ = the weight gradient, g = M·∂L/∂h, i.e. Σ_{i,t} ∂L/∂h ãᵀ, per
    // group in W̃'s row-major [out, d_a] layout (the bias gradient as the last column).
    const gW = get(stats.gradients.get(layer.weight)!);
    const gB = layer.bias ? get(stats.gradients.get(layer.bias)!) : [];
    const d = layer.inFeatures;
    const perGroup = layer.factors.g;
    // ∂L/∂h at (row k of the group's Ã, output channel o): conv h is [N, C_out, T], linear [rows, out].
    const dhAt = (k: number, o: number) => (c.conv ? dh[Math.floor(k / positions) * outs * positions + o * positions + (k % positions)] : dh[k * outs + o]);
    const wAt = (o: number, p: number) => (layer.weightLayout === 'out-in' ? gW[o * d + p] : gW[p * outs + o]);
    // G = (1/(M·T)) Σ g gᵀ per group over the rows (sample, position), g = M·∂L/∂h.
    const rowCount = N * positions;
    const refG: number[] = [];
    for (let g = 0; g < layer.groups; g++) {
      for (let p = 0; p < layer.factors.g; p++) {
        for (let q = 0; q < layer.factors.g; q++) {
          let sum = 0;
          for (let k = 0; k < rowCount; k++) sum += N * dhAt(k, g * layer.factors.g + p) * N * dhAt(k, g * layer.factors.g + q);
          refG.push(sum / rowCount);
        }
      }
    }
    expect(relError(get(names.g!), refG), 'G').to.be.below(1e-5);
    rows.forEach((gr, g) => {
      for (let o = g * perGroup; o < (g + 1) * perGroup; o++) {
        for (let p = 0; p < da; p++) {
          const sum = gr.reduce((acc, r, k) => acc + dhAt(k, o) * r[p], 0);
          const expected = p < d ? wAt(o, p) : gB[o];
          expect(Math.abs(sum - expected), `Σ g ãᵀ [${o},${p}]`).to.be.below(1e-5 * Math.max(1, Math.abs(expected)));
        }
      }
    });
  }));
});


describe('graph-tools/statistics: diag(A) without A (the L-BFGS A side\'s diagonal H0)', () => {
  let backend: Backend;
  before(async () => { backend = await createBackend('cpu'); });

  cases.forEach((c, i) => it(`${c.name}: (1/M)·Σ ã∘ã equals the explicit rows' and the A factor's diagonal`, async () => {
    const { out, layer, names, rows } = await runStatistics(backend, c, new ModelBuilder(80 + i), { factors: true, activationDiagonal: true });
    const da = layer.factors.a;
    const want = rows.flatMap((gr) => Array.from({ length: da }, (_, p) => gr.reduce((s2, r) => s2 + r[p] * r[p], 0) / N));
    const got = Array.from(out[names.adiag!].data as Float32Array);
    expect(relError(got, want), 'against the rows').to.be.below(1e-5);
    const A = out[names.a!].data as Float32Array;
    expect(relError(got, Array.from({ length: layer.groups * da }, (_, k) => A[Math.floor(k / da) * da * da + (k % da) * (da + 1)])), 'against A').to.be.below(1e-5);
  }));
});
