// Builds small ONNX models in code for specs, and seeded random data.
import { A, valueInfoProto, type Dim } from '../../graph-tools/ir/graph.js';
import { encodeModel, onnx, tensorToProto, type DataType, type TensorData } from '../../graph-tools/onnx/index.js';

export { A };

export interface InputSpec { name: string; shape: Dim[]; dtype?: DataType }
export interface InitializerSpec { name: string; dims: number[]; values: number[]; dtype?: DataType }
export interface NodeSpec { op: string; inputs: string[]; outputs: string[]; attrs?: onnx.IAttributeProto[]; name?: string }
export interface OutputSpec { name: string; shape?: Dim[]; dtype?: DataType }

export interface ModelSpec {
  /** ai.onnx opset; default 13. */
  opset?: number;
  inputs: InputSpec[];
  initializers?: InitializerSpec[];
  nodes: NodeSpec[];
  /** The graph output(s): a name (float32, shape left to inference) or full specs. */
  output: string | OutputSpec | (string | OutputSpec)[];
}

/**
 * A ModelProto (float32 unless a dtype says otherwise); nodes are named `<op>_<index>` unless named.
 * It is encoded and decoded once, so it reads as a model file would: float attributes, for one,
 * are then the float32 values that ONNX Runtime sees.
 */
export function buildModel(spec: ModelSpec): onnx.ModelProto {
  const outs = (Array.isArray(spec.output) ? spec.output : [spec.output]).map((o) => (typeof o === 'string' ? { name: o } : o));
  return onnx.ModelProto.decode(encodeModel(onnx.ModelProto.create({
    irVersion: 8,
    producerName: 'kfqn-spec',
    opsetImport: [{ domain: '', version: spec.opset ?? 13 }],
    graph: onnx.GraphProto.create({
      name: 'spec',
      node: spec.nodes.map((n, i) => onnx.NodeProto.create({
        name: n.name ?? `${n.op}_${i}`, opType: n.op, input: n.inputs, output: n.outputs, attribute: n.attrs ?? [],
      })),
      initializer: (spec.initializers ?? []).map((t) => tensorToProto(t.name, tensor(t.dims, t.values, t.dtype ?? 'float32'))),
      input: spec.inputs.map((i) => valueInfoProto(i.name, { dtype: i.dtype ?? 'float32', shape: i.shape })),
      output: outs.map((o) => valueInfoProto(o.name, { dtype: o.dtype ?? 'float32', shape: o.shape })),
    }),
  })));
}

/** A TensorData from plain numbers. */
export function tensor(dims: number[], values: ArrayLike<number>, dtype: DataType = 'float32'): TensorData {
  const n = dims.reduce((a, d) => a * d, 1);
  if (values.length !== n) throw new RangeError(`${values.length} values for dims [${dims}]`);
  const v = Array.from(values);
  switch (dtype) {
    case 'float32': return { dtype, dims, data: Float32Array.from(v) };
    case 'float64': return { dtype, dims, data: Float64Array.from(v) };
    case 'int64': return { dtype, dims, data: BigInt64Array.from(v.map((x) => BigInt(x))) };
    case 'int32': return { dtype, dims, data: Int32Array.from(v) };
    default: throw new RangeError(`tensor(): unsupported dtype ${dtype}`);
  }
}

/** Seeded PRNG (mulberry32): the same seed always gives the same sequence. */
export class Rng {
  private s: number;
  constructor(seed = 1) { this.s = seed >>> 0; }
  /** Uniform in [0, 1). */
  next(): number {
    this.s = (this.s + 0x6d2b79f5) >>> 0;
    let t = this.s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  uniform(lo = -1, hi = 1): number { return lo + (hi - lo) * this.next(); }
  /** Standard normal (Box–Muller). */
  normal(): number { return Math.sqrt(-2 * Math.log(1 - this.next())) * Math.cos(2 * Math.PI * this.next()); }
  int(n: number): number { return Math.floor(this.next() * n); }
  /** n uniform values in [lo, hi), rounded to float32 so float32 and float64 runs see the same numbers. */
  array(n: number, lo = -1, hi = 1): number[] { return Array.from({ length: n }, () => Math.fround(this.uniform(lo, hi))); }
  /** n values in ±[lo, hi): magnitude uniform in [lo, hi), random sign (keeps away from 0). */
  awayFromZero(n: number, lo: number, hi: number): number[] {
    return Array.from({ length: n }, () => Math.fround((this.next() < 0.5 ? -1 : 1) * this.uniform(lo, hi)));
  }
}

export interface LayerOptions {
  /** Gemm only: weight stored [out, in]. */
  transB?: boolean;
  alpha?: number;
  beta?: number;
  /** 'vec': shape [out]; 'row': shape [1, out]; 'none': no bias. Default 'vec'. */
  bias?: 'vec' | 'row' | 'none';
  /** Weight magnitude: entries uniform in ±scale (default 0.6). */
  scale?: number;
  /** MatMul only: put the bias first in its Add. */
  biasFirst?: boolean;
}

/**
 * Builds a model node by node with fresh names, random float32 initializers and random input data
 * (from one seeded Rng), e.g. `const h = b.gemm(b.input('x', ['N', 3], [4, 3]), 3, 4)`.
 */
export class ModelBuilder {
  readonly rng: Rng;
  readonly inputs: InputSpec[] = [];
  readonly initializers: InitializerSpec[] = [];
  readonly nodes: NodeSpec[] = [];
  /** Run-time values for the inputs. */
  readonly data: Record<string, TensorData> = {};
  private counts = new Map<string, number>();

  constructor(seed: number, readonly opset = 13) { this.rng = new Rng(seed); }

  fresh(hint: string): string {
    const n = (this.counts.get(hint) ?? 0) + 1;
    this.counts.set(hint, n);
    return `${hint}${n}`;
  }

  /** A data input with declared `shape` and random values of run-time shape `dims`. */
  input(name: string, shape: Dim[], dims: number[], lo = -1, hi = 1): string {
    this.inputs.push({ name, shape });
    this.data[name] = tensor(dims, this.rng.array(dims.reduce((a, d) => a * d, 1), lo, hi));
    return name;
  }

  /** An initializer: given values, or random in ±scale. */
  init(hint: string, dims: number[], values: number[] | number = 0.6, dtype: DataType = 'float32'): string {
    const name = this.fresh(hint);
    const n = dims.reduce((a, d) => a * d, 1);
    this.initializers.push({ name, dims, dtype, values: typeof values === 'number' ? this.rng.array(n, -values, values) : values });
    return name;
  }

  int64(hint: string, values: number[]): string { return this.init(hint, [values.length], values, 'int64'); }

  node(op: string, inputs: string[], attrs: onnx.IAttributeProto[] = [], outputs: number | string[] = 1): string {
    const outs = typeof outputs === 'number' ? Array.from({ length: outputs }, () => this.fresh(op.toLowerCase())) : outputs;
    this.nodes.push({ op, inputs, outputs: outs, attrs });
    return outs[0];
  }

  /** A trainable Gemm layer x·W (+ b). */
  gemm(x: string, inF: number, outF: number, o: LayerOptions = {}): string {
    const w = this.init('W', o.transB ? [outF, inF] : [inF, outF], o.scale ?? 0.6);
    const bias = o.bias ?? 'vec';
    const ins = [x, w];
    if (bias !== 'none') ins.push(this.init('b', bias === 'row' ? [1, outF] : [outF], 0.3));
    const attrs = [];
    if (o.transB) attrs.push(A.int('transB', 1));
    if (o.alpha !== undefined) attrs.push(A.float('alpha', o.alpha));
    if (o.beta !== undefined) attrs.push(A.float('beta', o.beta));
    return this.node('Gemm', ins, attrs);
  }

  /** A trainable MatMul layer x·W (+ b through an Add). */
  matmul(x: string, inF: number, outF: number, o: LayerOptions = {}): string {
    const w = this.init('W', [inF, outF], o.scale ?? 0.6);
    const m = this.node('MatMul', [x, w]);
    const bias = o.bias ?? 'none';
    if (bias === 'none') return m;
    const b = this.init('b', bias === 'row' ? [1, outF] : [outF], 0.3);
    return this.node('Add', o.biasFirst ? [b, m] : [m, b]);
  }

  model(output: string | (string | OutputSpec)[]): onnx.ModelProto {
    return buildModel({ opset: this.opset, inputs: this.inputs, initializers: this.initializers, nodes: this.nodes, output });
  }
}
