// Conv backward (graph-tools/autodiff/conv.ts) against a plain-TypeScript float64 reference
// (spec/helpers/conv-reference.ts), itself checked against finite differences first. kfqn's
// gradients come from computeGradients, which runs conv graphs in float32 (ORT has no float64
// Conv kernel), so they are compared to 1e-4 of the largest reference value of each tensor.
import { expect } from 'chai';
import { buildTrainingGraph, GraphError, type LossSpec, type onnx, type TensorData } from '../../../graph-tools/index.js';
import type { Dim } from '../../../graph-tools/ir/graph.js';
import { createBackend, type Backend } from '../../../lib/runtime/index.js';
import { computeGradients, type GradientResult } from '../../../lib/train/gradients.js';
import { convBackward, convForward, type ConvParams, type Tensor64 } from '../../helpers/conv-reference.js';
import { A, ModelBuilder, Rng, tensor } from '../../helpers/models.js';

const TOL = 1e-4;

// ---- the reference, checked by finite differences -------------------------------------------

/** max |a − b| / max |b|. */
function relDiff(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  expect(actual.length, 'length').to.equal(expected.length);
  let d = 0; let s = 1e-300;
  for (let i = 0; i < actual.length; i++) { d = Math.max(d, Math.abs(actual[i] - expected[i])); s = Math.max(s, Math.abs(expected[i])); }
  return d / s;
}

const rand = (rng: Rng, dims: number[]): Tensor64 => ({ dims, data: Float64Array.from(rng.array(dims.reduce((a, d) => a * d, 1))) });

describe('conv reference (spec/helpers/conv-reference.ts) against finite differences', () => {
  const configs: { name: string; x: number[]; w: number[]; p: ConvParams }[] = [
    { name: '2-D stride 2, asymmetric pads', x: [2, 2, 6, 5], w: [3, 2, 3, 2], p: { strides: [2, 2], pads: [0, 1, 2, 0] } },
    { name: '2-D dilation 2, group 2, SAME_LOWER', x: [1, 4, 7, 6], w: [4, 2, 3, 2], p: { dilations: [2, 1], group: 2, autoPad: 'SAME_LOWER' } },
    { name: '2-D depthwise ×2 multiplier, SAME_UPPER stride 2', x: [2, 2, 5, 6], w: [4, 1, 3, 4], p: { group: 2, strides: [2, 2], autoPad: 'SAME_UPPER' } },
    { name: '1-D stride 3, dilation 2, pads [1, 2]', x: [2, 3, 11], w: [2, 3, 3], p: { strides: [3], dilations: [2], pads: [1, 2] } },
  ];
  for (const c of configs) {
    it(`${c.name}: dX, dW and dB match central differences of Σ Y·R`, () => {
      const rng = new Rng(11);
      const x = rand(rng, c.x);
      const w = rand(rng, c.w);
      const b = Float64Array.from(rng.array(c.w[0]));
      const y = convForward(x, w, b, c.p);
      const r = rand(rng, y.dims);
      const loss = () => convForward(x, w, b, c.p).data.reduce((s, v, i) => s + v * r.data[i], 0);
      const fd = (t: Float64Array) => Float64Array.from(t, (_, i) => {
        const h = 1e-5; const keep = t[i];
        t[i] = keep + h; const up = loss();
        t[i] = keep - h; const down = loss();
        t[i] = keep;
        return (up - down) / (2 * h);
      });
      const g = convBackward(x, w, r, c.p);
      expect(relDiff(g.dx.data, fd(x.data)), 'dX').to.be.below(1e-8);
      expect(relDiff(g.dw.data, fd(w.data)), 'dW').to.be.below(1e-8);
      expect(relDiff(g.db, fd(b)), 'dB').to.be.below(1e-8);
    });
  }
});

// ---- models and their reference gradients ----------------------------------------------------

type Stage =
  | { kind: 'conv'; w: string; b?: string; p: ConvParams; out: string }
  | { kind: 'relu'; out: string }
  /** Flatten then Gemm with W stored [out, in] (transB). */
  | { kind: 'gemm'; w: string; b: string; out: string };

interface ConvOptions extends ConvParams { bias?: boolean; kernelShape?: boolean }

/** x → stages, built as an ONNX model and mirrored in float64 for the reference. */
class Net {
  readonly b: ModelBuilder;
  readonly stages: Stage[] = [];
  private last: string;

  constructor(seed: number, shape: Dim[], readonly dims: number[], opset = 13) {
    this.b = new ModelBuilder(seed, opset);
    this.last = this.b.input('x', shape, dims);
  }

  conv(cin: number, cout: number, kernel: number[], o: ConvOptions = {}): this {
    const group = o.group ?? 1;
    const w = this.b.init('W', [cout, cin / group, ...kernel], 0.6);
    const bias = o.bias === false ? undefined : this.b.init('b', [cout], 0.3);
    const attrs = [];
    if (o.kernelShape !== false) attrs.push(A.ints('kernel_shape', kernel));
    if (o.strides) attrs.push(A.ints('strides', o.strides));
    if (o.pads) attrs.push(A.ints('pads', o.pads));
    if (o.dilations) attrs.push(A.ints('dilations', o.dilations));
    if (o.group) attrs.push(A.int('group', o.group));
    if (o.autoPad) attrs.push(A.string('auto_pad', o.autoPad));
    const out = this.b.node('Conv', bias ? [this.last, w, bias] : [this.last, w], attrs);
    this.stages.push({ kind: 'conv', w, b: bias, p: o, out });
    this.last = out;
    return this;
  }

  relu(): this {
    this.last = this.b.node('Relu', [this.last]);
    this.stages.push({ kind: 'relu', out: this.last });
    return this;
  }

  flattenGemm(inF: number, outF: number): this {
    const flat = this.b.node('Flatten', [this.last], [A.int('axis', 1)]);
    this.last = this.b.gemm(flat, inF, outF, { transB: true });
    const node = this.b.nodes[this.b.nodes.length - 1];
    this.stages.push({ kind: 'gemm', w: node.inputs[1], b: node.inputs[2], out: this.last });
    return this;
  }

  model(): onnx.ModelProto { return this.b.model(this.last); }

  param(name: string): Tensor64 {
    const t = this.b.initializers.find((i) => i.name === name)!;
    return { dims: t.dims, data: Float64Array.from(t.values) };
  }
}

interface Reference {
  loss: number;
  /** By parameter name. */
  grads: Map<string, Float64Array>;
  /** dL/dY by conv output name. */
  dOut: Map<string, Float64Array>;
}

function reference(net: Net, loss: LossSpec, target: TensorData): Reference {
  const x0 = net.b.data.x;
  let v: Tensor64 = { dims: x0.dims, data: Float64Array.from(x0.data as Float32Array) };
  const inputs: Tensor64[] = [];
  for (const s of net.stages) {
    inputs.push(v);
    if (s.kind === 'conv') {
      v = convForward(v, net.param(s.w), s.b ? net.param(s.b).data : undefined, s.p);
    } else if (s.kind === 'relu') {
      v = { dims: v.dims, data: v.data.map((z) => Math.max(z, 0)) };
    } else {
      const w = net.param(s.w);
      const bias = net.param(s.b).data;
      const [outF, inF] = w.dims;
      const n = v.dims[0];
      const y = new Float64Array(n * outF);
      for (let i = 0; i < n; i++) for (let o = 0; o < outF; o++) {
        let acc = bias[o];
        for (let k = 0; k < inF; k++) acc += v.data[i * inF + k] * w.data[o * inF + k];
        y[i * outF + o] = acc;
      }
      v = { dims: [n, outF], data: y };
    }
  }
  // Loss and dL/d(output), as losses.ts defines them (mean reductions).
  let lossValue = 0;
  let d: Float64Array;
  if (loss.kind === 'mse') {
    const t = target.data as Float32Array;
    const size = v.data.length;
    d = v.data.map((y, i) => 2 * (y - t[i]) / size);
    lossValue = v.data.reduce((s, y, i) => s + (y - t[i]) ** 2, 0) / size;
  } else {
    const [n, k] = v.dims;
    const labels = Array.from(target.data as BigInt64Array, Number);
    d = new Float64Array(n * k);
    for (let i = 0; i < n; i++) {
      const row = v.data.subarray(i * k, (i + 1) * k);
      const max = Math.max(...row);
      const z = row.reduce((s, y) => s + Math.exp(y - max), 0);
      lossValue -= (row[labels[i]] - max - Math.log(z)) / n;
      for (let j = 0; j < k; j++) d[i * k + j] = (Math.exp(row[j] - max) / z - (j === labels[i] ? 1 : 0)) / n;
    }
  }
  const grads = new Map<string, Float64Array>();
  const dOut = new Map<string, Float64Array>();
  for (let i = net.stages.length - 1; i >= 0; i--) {
    const s = net.stages[i];
    const input = inputs[i];
    if (s.kind === 'conv') {
      dOut.set(s.out, d);
      const w = net.param(s.w);
      const outDims = convForward(input, w, undefined, s.p).dims;
      const g = convBackward(input, w, { dims: outDims, data: d }, s.p);
      grads.set(s.w, g.dw.data);
      if (s.b) grads.set(s.b, g.db);
      d = g.dx.data;
    } else if (s.kind === 'relu') {
      d = d.map((z, j) => (input.data[j] > 0 ? z : 0));
    } else {
      const w = net.param(s.w);
      const [outF, inF] = w.dims;
      const n = input.dims[0];
      const dw = new Float64Array(outF * inF);
      const db = new Float64Array(outF);
      const dx = new Float64Array(n * inF);
      for (let r = 0; r < n; r++) for (let o = 0; o < outF; o++) {
        const g = d[r * outF + o];
        db[o] += g;
        for (let k = 0; k < inF; k++) { dw[o * inF + k] += g * input.data[r * inF + k]; dx[r * inF + k] += g * w.data[o * inF + k]; }
      }
      grads.set(s.w, dw);
      grads.set(s.b, db);
      d = dx;
    }
  }
  return { loss: lossValue, grads, dOut };
}

function targetFor(net: Net, loss: LossSpec, seed: number): TensorData {
  const rng = new Rng(seed + 1000);
  const x0 = net.b.data.x;
  // The output's dims, from a reference forward pass.
  let dims = x0.dims;
  for (const s of net.stages) {
    if (s.kind === 'conv') dims = convForward({ dims, data: new Float64Array(dims.reduce((a, q) => a * q, 1)) }, net.param(s.w), undefined, s.p).dims;
    if (s.kind === 'gemm') dims = [dims[0], net.param(s.w).dims[0]];
  }
  if (loss.kind === 'cross-entropy') return tensor([dims[0]], Array.from({ length: dims[0] }, () => rng.int(dims[1])), 'int64');
  return tensor(dims, rng.array(dims.reduce((a, q) => a * q, 1)));
}

interface Case { name: string; loss?: LossSpec; build: (seed: number) => Net }
const MSE: LossSpec = { kind: 'mse', reduction: 'mean' };
const CE: LossSpec = { kind: 'cross-entropy', reduction: 'mean' };
const N = 2;
const img = (seed: number, c: number, h: number, w: number, opset = 13) => new Net(seed, ['N', c, h, w], [N, c, h, w], opset);

const cases: Case[] = [
  { name: 'stride 1, symmetric pads 1', build: (s) => img(s, 3, 5, 5).conv(3, 4, [3, 3], { pads: [1, 1, 1, 1] }) },
  { name: 'stride 2, symmetric pads 1', build: (s) => img(s, 3, 7, 6).conv(3, 4, [3, 3], { strides: [2, 2], pads: [1, 1, 1, 1] }) },
  { name: 'stride 2, asymmetric pads [0,1,2,0]', build: (s) => img(s, 2, 6, 7).conv(2, 3, [3, 3], { strides: [2, 2], pads: [0, 1, 2, 0] }) },
  { name: 'auto_pad SAME_UPPER, stride 2, odd total padding', build: (s) => img(s, 2, 7, 6).conv(2, 3, [4, 3], { strides: [2, 2], autoPad: 'SAME_UPPER' }) },
  { name: 'auto_pad SAME_LOWER, stride 2, odd total padding', build: (s) => img(s, 2, 7, 6).conv(2, 3, [4, 3], { strides: [2, 2], autoPad: 'SAME_LOWER' }) },
  { name: 'auto_pad SAME_UPPER, stride 1, no kernel_shape attribute', build: (s) => img(s, 2, 5, 4).conv(2, 3, [3, 2], { autoPad: 'SAME_UPPER', kernelShape: false }) },
  { name: 'auto_pad SAME_UPPER, 1×1 kernel with stride 3 (no padding needed, 2 columns past the last window)', build: (s) => img(s, 2, 8, 9).conv(2, 3, [1, 1], { strides: [3, 3], autoPad: 'SAME_UPPER' }) },
  { name: 'auto_pad VALID, stride 2 (width 8 leaves a column)', build: (s) => img(s, 2, 7, 8).conv(2, 3, [3, 3], { strides: [2, 2], autoPad: 'VALID' }) },
  { name: 'auto_pad NOTSET given explicitly, pads [1,0,0,1]', build: (s) => img(s, 2, 5, 5).conv(2, 2, [2, 3], { autoPad: 'NOTSET', pads: [1, 0, 0, 1] }) },
  { name: 'dilation 2, pads 2', build: (s) => img(s, 2, 7, 7).conv(2, 3, [3, 3], { dilations: [2, 2], pads: [2, 2, 2, 2] }) },
  { name: 'dilation [2,1] with stride 2 and pads 1', build: (s) => img(s, 2, 8, 7).conv(2, 3, [3, 3], { dilations: [2, 1], strides: [2, 2], pads: [1, 1, 1, 1] }) },
  { name: 'group 2, stride 2, pads 1', build: (s) => img(s, 4, 6, 6).conv(4, 6, [3, 3], { group: 2, strides: [2, 2], pads: [1, 1, 1, 1] }) },
  { name: 'depthwise (group = C_in = C_out), pads 1', build: (s) => img(s, 3, 5, 5).conv(3, 3, [3, 3], { group: 3, pads: [1, 1, 1, 1] }) },
  { name: 'depthwise with channel multiplier 2, stride 2, SAME_UPPER', build: (s) => img(s, 3, 6, 5).conv(3, 6, [3, 3], { group: 3, strides: [2, 2], autoPad: 'SAME_UPPER' }) },
  { name: 'no bias', build: (s) => img(s, 3, 5, 5).conv(3, 4, [3, 3], { pads: [1, 1, 1, 1], strides: [2, 1], bias: false }) },
  {
    name: '1-D conv, stride 2, pads [1,0], dilation 2',
    build: (s) => new Net(s, ['N', 3, 11], [N, 3, 11]).conv(3, 4, [3], { strides: [2], pads: [1, 0], dilations: [2] }),
  },
  { name: 'H=W=6, k=3, stride 2, pad 0 (the last row and column are never reached)', build: (s) => img(s, 2, 6, 6).conv(2, 3, [3, 3], { strides: [2, 2] }) },
  { name: 'the same at opset 9 (Slice and ReduceSum with attributes)', build: (s) => img(s, 2, 6, 6, 9).conv(2, 3, [3, 3], { strides: [2, 2] }) },
  { name: 'stride 3 over size 8 with kernel 2 (two rows past the last window)', build: (s) => img(s, 2, 8, 8).conv(2, 2, [2, 2], { strides: [3, 3], pads: [0, 1, 0, 0] }) },
  {
    name: 'two convs with Relu between (dX of the second): stride 2 asym pads → group 2 stride 2',
    build: (s) => img(s, 2, 7, 6).conv(2, 4, [3, 3], { strides: [2, 2], pads: [1, 0, 1, 1] }).relu().conv(4, 4, [2, 2], { group: 2, strides: [2, 2], pads: [0, 1, 1, 0] }),
  },
  // dX of a unit-stride conv is a Conv with the flipped, channel-swapped kernel:
  {
    name: 'unit-stride dX: conv → Relu → conv group 2 (2 in, 3 out a group), dilation [2,1], pads [2,0,1,1]',
    build: (s) => img(s, 2, 7, 6).conv(2, 4, [3, 3], { pads: [1, 1, 1, 1] }).relu().conv(4, 6, [3, 3], { group: 2, dilations: [2, 1], pads: [2, 0, 1, 1] }),
  },
  {
    name: 'unit-stride dX: conv → Relu → conv SAME_UPPER with an even kernel (pads [1,1,2,1])',
    build: (s) => img(s, 2, 6, 5).conv(2, 3, [3, 3], { pads: [1, 1, 1, 1] }).relu().conv(3, 2, [4, 3], { autoPad: 'SAME_UPPER' }),
  },
  {
    name: 'unit stride with pads wider than the kernel reach (pads 2, 2×2 kernel): dX by ConvTranspose',
    build: (s) => img(s, 2, 5, 5).conv(2, 3, [3, 3], { pads: [1, 1, 1, 1] }).relu().conv(3, 2, [2, 2], { pads: [2, 2, 2, 2] }),
  },
  {
    name: 'two 1-D convs with Relu between, the second depthwise with dilation',
    build: (s) => new Net(s, ['N', 2, 12], [N, 2, 12]).conv(2, 3, [3], { pads: [1, 1] }).relu().conv(3, 3, [3], { group: 3, dilations: [2], strides: [2] }),
  },
  {
    name: 'conv → Relu → Flatten → Gemm, cross-entropy',
    loss: CE,
    build: (s) => img(s, 2, 6, 5).conv(2, 3, [3, 3], { strides: [2, 2], pads: [1, 1, 1, 1] }).relu().flattenGemm(3 * 3 * 3, 4),
  },
  {
    name: 'dynamic H and W: conv stride 2 group 3 → Relu → conv stride 2 (Shape-based reshape and crop)',
    build: (s) => new Net(s, ['N', 3, 'H', 'W'], [N, 3, 7, 6]).conv(3, 6, [3, 3], { group: 3, strides: [2, 2], pads: [1, 1, 1, 1] })
      .relu().conv(6, 2, [3, 2], { strides: [2, 2], pads: [0, 1, 1, 0] }),
  },
];

describe('autodiff: Conv backward against the float64 reference', function () {
  let backend: Backend;
  before(async () => { backend = await createBackend('cpu'); });

  cases.forEach((c, i) => {
    it(c.name, async () => {
      const net = c.build(i + 1);
      const loss = c.loss ?? MSE;
      const target = targetFor(net, loss, i);
      const ref = reference(net, loss, target);
      const got = await computeGradients(backend, net.model(), { ...loss, inputs: net.b.data, target });
      expect(got.dtype).to.equal('float32');
      expect(Math.abs(got.loss - ref.loss) / Math.abs(ref.loss), `loss ${got.loss} vs ${ref.loss}`).to.be.below(TOL);
      for (const [p, g] of ref.grads) {
        const rel = relDiff(got.gradients.get(p)!, g);
        expect(rel, `${p}: rel ${rel.toExponential(2)}`).to.be.below(TOL);
      }
      expect([...got.gradients.keys()].sort()).to.deep.equal([...ref.grads.keys()].sort());
      for (const [h, d] of ref.dOut) {
        const rel = relDiff(got.preactivationGradients.get(h)!, d);
        expect(rel, `dL/d${h}: rel ${rel.toExponential(2)}`).to.be.below(TOL);
      }
    });
  });

  it('emits a small graph: dW as Transpose·Transpose·Conv·Transpose (+2 for groups), dX as one ConvTranspose (strided) or a Conv with the flipped kernel (unit stride), dB as one ReduceSum', () => {
    const ops = (net: Net) => {
      const counts = new Map<string, number>();
      for (const n of buildTrainingGraph(net.model(), MSE).graph.nodes) counts.set(n.opType, (counts.get(n.opType) ?? 0) + 1);
      return Object.fromEntries(['Conv', 'ConvTranspose', 'Transpose', 'Reshape', 'Slice', 'Shape'].map((op) => [op, counts.get(op) ?? 0]));
    };
    // The input needs no gradient, so the single conv emits no ConvTranspose.
    expect(ops(img(1, 3, 6, 6).conv(3, 4, [3, 3], { strides: [2, 2], pads: [1, 1, 1, 1] })))
      .to.deep.equal({ Conv: 2, ConvTranspose: 0, Transpose: 3, Reshape: 0, Slice: 0, Shape: 0 });
    // The second conv (unit stride) gives dX as Transpose (W's channels) · Slice (flip) · Conv.
    expect(ops(img(1, 4, 6, 6).conv(4, 6, [3, 3], { group: 2, strides: [2, 2], pads: [1, 1, 1, 1] }).relu().conv(6, 2, [3, 3], { pads: [1, 1, 1, 1] })))
      .to.deep.equal({ Conv: 5, ConvTranspose: 0, Transpose: 7, Reshape: 2, Slice: 1, Shape: 0 });
    // Strided: the ConvTranspose stays.
    expect(ops(img(1, 4, 6, 6).conv(4, 6, [3, 3], { pads: [1, 1, 1, 1] }).relu().conv(6, 2, [3, 3], { strides: [2, 2], pads: [1, 1, 1, 1] })))
      .to.include({ ConvTranspose: 1 });
    // Pads wider than the kernel's reach (3 > 2·1) would need negative pads: the ConvTranspose stays.
    expect(ops(img(1, 4, 6, 6).conv(4, 6, [3, 3], { pads: [1, 1, 1, 1] }).relu().conv(6, 2, [3, 3], { pads: [3, 3, 3, 3] })))
      .to.include({ ConvTranspose: 1 });
    // Past the last window along W (6 + 0 − 3 = 3, odd with stride 2): the dW Conv overshoots by a column, cropped.
    expect(ops(img(1, 2, 7, 6).conv(2, 3, [3, 3], { strides: [2, 2] }))).to.include({ Slice: 1 });
    // Dynamic H and W with stride 2: dX is cropped to X's run-time size, read with Shape.
    const dynamic = ops(new Net(1, ['N', 2, 'H', 'W'], [1, 2, 7, 6]).conv(2, 2, [3, 3], { pads: [1, 1, 1, 1] }).relu().conv(2, 2, [3, 3], { strides: [2, 2] }));
    expect(dynamic).to.include({ ConvTranspose: 1 });
    expect(dynamic.Shape).to.be.at.least(1);
    expect(dynamic.Slice).to.be.at.least(2);
  });
});

describe('autodiff: Conv gradients on the WASM backend', function () {
  it('agree with CPU (two convs, group 2, strides and asymmetric pads)', async () => {
    const net = cases.find((c) => c.name.startsWith('two convs with Relu'))!.build(3);
    const target = targetFor(net, MSE, 3);
    const opts = { ...MSE, inputs: net.b.data, target };
    const cpu = await computeGradients(await createBackend('cpu'), net.model(), opts);
    const wasm = await computeGradients(await createBackend('wasm'), net.model(), opts);
    expect(Math.abs(wasm.loss - cpu.loss) / Math.abs(cpu.loss)).to.be.below(1e-5);
    const all = (r: GradientResult) => [...r.gradients, ...r.preactivationGradients];
    for (const [name, g] of all(cpu)) {
      const w = wasm.gradients.get(name) ?? wasm.preactivationGradients.get(name)!;
      expect(relDiff(w, g), name).to.be.below(1e-5);
    }
  });
});

describe('autodiff: Conv graphs kfqn refuses', () => {
  const thrown = (model: onnx.ModelProto): Error => {
    try {
      buildTrainingGraph(model, MSE);
    } catch (e) {
      return e as Error;
    }
    throw new Error('buildTrainingGraph did not throw');
  };

  it('3-D convolution: names the node and says 1-D and 2-D are supported', () => {
    const net = new Net(1, ['N', 2, 4, 4, 4], [1, 2, 4, 4, 4]).conv(2, 2, [2, 2, 2]);
    const e = thrown(net.model());
    expect(e).to.be.instanceOf(GraphError);
    expect(e.message).to.contain("'Conv_0'").and.to.contain('1-D and 2-D');
  });

  it('an unknown auto_pad string: names the node, the value and the supported ones', () => {
    const net = img(1, 2, 5, 5).conv(2, 2, [3, 3], { autoPad: 'SAME' as never });
    const e = thrown(net.model());
    expect(e).to.be.instanceOf(GraphError);
    expect(e.message).to.contain("'Conv_0'").and.to.contain("auto_pad 'SAME'").and.to.contain('NOTSET, SAME_UPPER, SAME_LOWER, VALID');
  });

  it('a kernel_shape that disagrees with W: names the node and both shapes', () => {
    const net = img(1, 2, 5, 5).conv(2, 2, [3, 3]);
    net.b.nodes[0].attrs = [A.ints('kernel_shape', [2, 3])];
    const e = thrown(net.model());
    expect(e).to.be.instanceOf(GraphError);
    expect(e.message).to.contain("'Conv_0'").and.to.contain('kernel_shape [2,3]').and.to.contain('[2,2,3,3]');
  });

  it('auto_pad SAME_UPPER over dynamic spatial dims: says it needs static spatial dims', () => {
    const net = new Net(1, ['N', 2, 'H', 'W'], [1, 2, 5, 5]).conv(2, 2, [3, 3], { autoPad: 'SAME_UPPER', strides: [2, 2] });
    const e = thrown(net.model());
    expect(e).to.be.instanceOf(GraphError);
    expect(e.message).to.contain("'Conv_0'").and.to.contain('static spatial dims');
  });

  it('auto_pad SAME_LOWER with dilation 2 (ONNX Runtime refuses it): names the node and says to use explicit pads', () => {
    const net = img(1, 2, 7, 7).conv(2, 2, [3, 3], { autoPad: 'SAME_LOWER', dilations: [2, 2] });
    const e = thrown(net.model());
    expect(e).to.be.instanceOf(GraphError);
    expect(e.message).to.contain("'Conv_0'").and.to.contain('dilations [2,2]').and.to.contain('explicit pads');
  });

  it('channels that do not match W and group: names the node', () => {
    const b = new ModelBuilder(1);
    const x = b.input('x', ['N', 3, 5, 5], [1, 3, 5, 5]);
    const y = b.node('Conv', [x, b.init('W', [4, 2, 3, 3])], [A.int('group', 2)]);
    const e = thrown(b.model(y));
    expect(e).to.be.instanceOf(GraphError);
    expect(e.message).to.contain("'Conv_0'").and.to.contain('group=2');
  });
});
