// Static shape and dtype inference for the ops kfqn supports, with symbolic dims (strings) for
// the batch and other dynamic axes. Small integer tensors that compute shapes (the
// Shape→Gather→Unsqueeze→Concat→Reshape chain of `x.view(x.size(0), -1)`) are tracked by value
// so that Reshape gets a static output shape.
import { Graph, GraphError, attrInt, attrInts, attrTensor, type Dim, type Node, type ValueType } from './graph.js';

/** Known contents of small int64 tensors: numbers, or symbolic dims copied from a Shape. */
type Known = Dim[];

/** Context a registered shape rule gets: input types, and setting output types. */
export interface ShapeContext {
  opset: number;
  inType(i: number): ValueType;
  inShape(i: number): Dim[];
  /** Known contents of a small int64 input (pads, axes, shapes), if static. */
  known(i: number): Dim[] | undefined;
  setOutput(i: number, t: ValueType): void;
  fail(message: string): never;
}

export type ShapeRule = (node: Node, ctx: ShapeContext) => void;
const shapeRules = new Map<string, ShapeRule>();

/** Registers shape inference for op types kept in their own file (conv, pooling, ...). */
export function registerShapeRule(opTypes: string[], rule: ShapeRule): void {
  for (const t of opTypes) shapeRules.set(t, rule);
}

export function inferShapes(g: Graph): void {
  const known = new Map<string, Known>();
  for (const [name, t] of g.initializers) {
    if ((t.dtype === 'int64' || t.dtype === 'int32') && t.data.length <= 64) known.set(name, Array.from(t.data as ArrayLike<number | bigint>, Number));
  }
  for (const node of g.nodes) {
    try {
      inferNode(g, node, known);
    } catch (e) {
      if (e instanceof GraphError) throw e;
      throw new GraphError(`shape inference failed at node '${node.name}' (${node.opType}): ${(e as Error).message}`);
    }
  }
}

function fail(node: Node, msg: string): never {
  throw new GraphError(`node '${node.name}' (${node.opType}): ${msg}`);
}

function typeOf(g: Graph, node: Node, v: string): ValueType {
  const t = g.types.get(v);
  if (!t) {
    const from = g.nodes.find((n) => n.outputs.includes(v));
    fail(node, `the type of input '${v}' is unknown${from ? ` (it comes from node '${from.name}' (${from.opType}), an op kfqn has no shape rule for)` : ''}`);
  }
  return t;
}

function shapeOf(g: Graph, node: Node, v: string): Dim[] {
  const t = typeOf(g, node, v);
  if (!t.shape) fail(node, `the shape of input '${v}' is unknown (give the model's inputs a static rank)`);
  return t.shape;
}

export function broadcastShapes(a: Dim[], b: Dim[]): Dim[] {
  const r = Math.max(a.length, b.length);
  const out: Dim[] = [];
  for (let i = 0; i < r; i++) {
    const da = i - (r - a.length) >= 0 ? a[i - (r - a.length)] : 1;
    const db = i - (r - b.length) >= 0 ? b[i - (r - b.length)] : 1;
    if (da === 1) out.push(db);
    else if (db === 1) out.push(da);
    else if (typeof da === 'number' && typeof db === 'number' && da !== db) throw new Error(`cannot broadcast [${a}] with [${b}]`);
    else out.push(typeof da === 'number' ? da : db);
  }
  return out;
}

function normAxis(axis: number, rank: number): number { return axis < 0 ? axis + rank : axis; }

/**
 * Row-major values of a small static tensor after picking `picks[a]` indices on each axis a and
 * then ordering the axes by `perm` (Slice and Transpose of shape-computing int tensors).
 */
function gatherIndices(values: Dim[], shape: number[], picks: number[][], perm = shape.map((_, i) => i)): Dim[] {
  const strides = shape.map((_, i) => shape.slice(i + 1).reduce((a, b) => a * b, 1));
  const outShape = perm.map((p) => picks[p].length);
  const total = outShape.reduce((a, b) => a * b, 1);
  const result: Dim[] = [];
  for (let k = 0; k < total; k++) {
    let rest = k; let src = 0;
    for (let j = outShape.length - 1; j >= 0; j--) {
      const i = rest % outShape[j];
      rest = Math.floor(rest / outShape[j]);
      src += picks[perm[j]][i] * strides[perm[j]];
    }
    result.push(values[src]);
  }
  return result;
}

function product(dims: Dim[]): Dim[] {
  // A product as a list of factors, numbers folded together.
  let n = 1;
  const syms: string[] = [];
  for (const d of dims) if (typeof d === 'number') n *= d; else syms.push(d);
  return [n, ...syms];
}

/** Solves -1 in a Reshape target against the input's dims, cancelling symbolic factors. */
function resolveReshape(input: Dim[], target: Dim[], allowZero: boolean): Dim[] {
  const out = target.map((d, i) => (d === 0 && !allowZero ? input[i] : d));
  const neg = out.indexOf(-1);
  if (neg < 0) return out;
  const [inN, ...inSyms] = product(input) as [number, ...string[]];
  const [tN, ...tSyms] = product(out.filter((_, i) => i !== neg)) as [number, ...string[]];
  const rest = [...inSyms];
  for (const s of tSyms) {
    const k = rest.indexOf(s);
    if (k < 0) return out.map((d, i) => (i === neg ? `${target.join('x')}:${i}` : d));
    rest.splice(k, 1);
  }
  const n = inN / tN;
  out[neg] = rest.length === 0 ? n : rest.length === 1 && n === 1 ? rest[0] : `reshape:${rest.join('*')}*${n}`;
  return out;
}

function inferNode(g: Graph, node: Node, known: Map<string, Known>): void {
  const set = (i: number, t: ValueType) => { if (node.outputs[i]) g.types.set(node.outputs[i], t); };
  const inT = (i: number) => typeOf(g, node, node.inputs[i]);
  const inS = (i: number) => shapeOf(g, node, node.inputs[i]);
  const kv = (i: number) => (node.inputs[i] ? known.get(node.inputs[i]) : undefined);
  const opset = g.opset;
  switch (node.opType) {
    case 'Identity': case 'Relu': case 'LeakyRelu': case 'Sigmoid': case 'Tanh': case 'Elu': case 'Softplus':
    case 'Softmax': case 'LogSoftmax': case 'Neg': case 'Exp': case 'Log': case 'Abs': case 'Sqrt': case 'Reciprocal': case 'Clip': case 'Sign':
    // Elementwise ops kfqn does not differentiate but lets stand off the gradient path.
    case 'Erf': case 'Sin': case 'Cos': case 'Floor': case 'Ceil': case 'Round':
    case 'HardSigmoid': case 'HardSwish': case 'Selu': case 'Gelu': case 'Mish': case 'Softsign': case 'ThresholdedRelu':
    // Random draws shaped like their input (sampled targets, losses.ts).
    case 'RandomUniformLike': case 'RandomNormalLike': {
      set(0, inT(0));
      if (node.opType === 'Identity' && kv(0)) known.set(node.outputs[0], kv(0)!);
      return;
    }
    case 'Dropout': {
      set(0, inT(0));
      if (node.outputs[1]) set(1, { dtype: 'bool', shape: inT(0).shape });
      return;
    }
    case 'Add': case 'Sub': case 'Mul': case 'Div': case 'Pow': {
      set(0, { dtype: inT(0).dtype, shape: broadcastShapes(inS(0), inS(1)) });
      const a = kv(0); const b = kv(1);
      if (a && b && a.every((d) => typeof d === 'number') && b.every((d) => typeof d === 'number') && (a.length === b.length || b.length === 1 || a.length === 1)) {
        const f = { Add: (x: number, y: number) => x + y, Sub: (x: number, y: number) => x - y, Mul: (x: number, y: number) => x * y, Div: (x: number, y: number) => Math.trunc(x / y), Pow: Math.pow }[node.opType]!;
        const n = Math.max(a.length, b.length);
        known.set(node.outputs[0], Array.from({ length: n }, (_, i) => f(a[a.length === 1 ? 0 : i] as number, b[b.length === 1 ? 0 : i] as number)));
      }
      return;
    }
    case 'Gemm': {
      const a = inS(0); const b = inS(1);
      const m = attrInt(node, 'transA', 0) ? a[1] : a[0];
      const n = attrInt(node, 'transB', 0) ? b[0] : b[1];
      set(0, { dtype: inT(0).dtype, shape: [m, n] });
      return;
    }
    case 'MatMul': {
      const a = inS(0); const b = inS(1);
      if (a.length < 1 || b.length < 1) fail(node, 'MatMul of scalars');
      const a2 = a.length === 1 ? [1, a[0]] : a;
      const b2 = b.length === 1 ? [b[0], 1] : b;
      const batch = broadcastShapes(a2.slice(0, -2), b2.slice(0, -2));
      const out = [...batch, a2[a2.length - 2], b2[b2.length - 1]];
      if (a.length === 1) out.splice(out.length - 2, 1);
      if (b.length === 1) out.splice(out.length - 1, 1);
      set(0, { dtype: inT(0).dtype, shape: out });
      return;
    }
    case 'Flatten': {
      const s = inS(0);
      const axis = normAxis(attrInt(node, 'axis', 1), s.length);
      const head = s.slice(0, axis); const tail = s.slice(axis);
      const dim = (ds: Dim[]): Dim => { const [n, ...sy] = product(ds) as [number, ...string[]]; return sy.length === 0 ? n : sy.length === 1 && n === 1 ? sy[0] : `${node.outputs[0]}:flat`; };
      set(0, { dtype: inT(0).dtype, shape: [dim(head), dim(tail)] });
      return;
    }
    case 'Reshape': {
      const target = opset >= 5 ? kv(1) : attrInts(node, 'shape');
      if (!target) fail(node, `the target shape '${node.inputs[1]}' is not computable from static information; supported: constants and the Shape→Gather→Unsqueeze→Concat chain`);
      set(0, { dtype: inT(0).dtype, shape: resolveReshape(inS(0), target, attrInt(node, 'allowzero', 0) === 1) });
      if (kv(0)) known.set(node.outputs[0], kv(0)!); // same values, row-major
      return;
    }
    case 'Transpose': {
      const s = inS(0);
      const perm = attrInts(node, 'perm') ?? s.map((_, i) => s.length - 1 - i);
      set(0, { dtype: inT(0).dtype, shape: perm.map((p) => s[p]) });
      const d = kv(0);
      if (d && s.every((x) => typeof x === 'number')) {
        known.set(node.outputs[0], gatherIndices(d, s as number[], s.map((x) => [...Array(x as number).keys()]), perm));
      }
      return;
    }
    case 'Multinomial':
      set(0, { dtype: 'int64', shape: [inS(0)[0], attrInt(node, 'sample_size', 1)] });
      return;
    case 'Cast': {
      const to = attrInt(node, 'to', 1);
      const t = inT(0);
      const dtype = CAST_TYPES[to];
      if (!dtype) fail(node, `Cast to element type ${to} is not supported`);
      set(0, { dtype, shape: t.shape });
      if (kv(0)) known.set(node.outputs[0], kv(0)!);
      return;
    }
    case 'Constant': {
      const t = attrTensor(node, 'value');
      if (!t) {
        const ints = attrInts(node, 'value_ints');
        if (ints) { set(0, { dtype: 'int64', shape: [ints.length] }); known.set(node.outputs[0], ints); return; }
        const vi = node.attrs.find((a) => a.name === 'value_int');
        if (vi) { set(0, { dtype: 'int64', shape: [] }); known.set(node.outputs[0], [Number(vi.i)]); return; }
        const vf = node.attrs.find((a) => a.name === 'value_float');
        if (vf) { set(0, { dtype: 'float32', shape: [] }); return; }
        fail(node, 'only tensor, value_int(s) and value_float Constants are supported');
      }
      set(0, { dtype: t.dtype, shape: t.dims });
      if ((t.dtype === 'int64' || t.dtype === 'int32') && t.data.length <= 64) known.set(node.outputs[0], Array.from(t.data as ArrayLike<number | bigint>, Number));
      return;
    }
    case 'Shape': {
      const s = inS(0);
      let start = attrInt(node, 'start', 0); let end = attrInt(node, 'end', s.length);
      start = Math.max(0, normAxis(start, s.length)); end = Math.min(s.length, normAxis(end, s.length));
      const v = s.slice(start, end);
      set(0, { dtype: 'int64', shape: [v.length] });
      known.set(node.outputs[0], v);
      return;
    }
    case 'Size': {
      set(0, { dtype: 'int64', shape: [] });
      return;
    }
    case 'Gather': {
      const data = inS(0); const idx = inS(1);
      const axis = normAxis(attrInt(node, 'axis', 0), data.length);
      set(0, { dtype: inT(0).dtype, shape: [...data.slice(0, axis), ...idx, ...data.slice(axis + 1)] });
      const d = kv(0); const ix = kv(1);
      if (d && ix && axis === 0 && data.length === 1) known.set(node.outputs[0], ix.map((i) => d[normAxis(i as number, d.length)]));
      return;
    }
    case 'Unsqueeze': {
      const s = inS(0);
      const axes = opset >= 13 ? kv(1) : attrInts(node, 'axes');
      if (!axes) fail(node, 'axes must be constant');
      const r = s.length + axes.length;
      const ax = axes.map((a) => normAxis(a as number, r));
      const out: Dim[] = []; let k = 0;
      for (let i = 0; i < r; i++) out.push(ax.includes(i) ? 1 : s[k++]);
      set(0, { dtype: inT(0).dtype, shape: out });
      if (kv(0)) known.set(node.outputs[0], kv(0)!);
      return;
    }
    case 'Squeeze': {
      const s = inS(0);
      const axes = (opset >= 13 ? kv(1) : attrInts(node, 'axes'))?.map((a) => normAxis(a as number, s.length));
      set(0, { dtype: inT(0).dtype, shape: s.filter((d, i) => (axes ? !axes.includes(i) : d !== 1)) });
      if (kv(0)) known.set(node.outputs[0], kv(0)!);
      return;
    }
    case 'Concat': {
      const shapes = node.inputs.map((_, i) => inS(i));
      const axis = normAxis(attrInt(node, 'axis', 0), shapes[0].length);
      const out = [...shapes[0]];
      const parts = shapes.map((s) => s[axis]);
      out[axis] = parts.every((p) => typeof p === 'number') ? (parts as number[]).reduce((x, y) => x + y, 0) : `${node.outputs[0]}:${axis}`;
      set(0, { dtype: inT(0).dtype, shape: out });
      const ks = node.inputs.map((_, i) => kv(i));
      if (axis === 0 && ks.every((k) => k)) known.set(node.outputs[0], ks.flatMap((k) => k!));
      return;
    }
    case 'Slice': {
      const s = inS(0);
      const starts = opset >= 10 ? kv(1) : attrInts(node, 'starts');
      const ends = opset >= 10 ? kv(2) : attrInts(node, 'ends');
      const axes = (opset >= 10 ? (node.inputs[3] ? kv(3) : undefined) : attrInts(node, 'axes')) ?? starts?.map((_, i) => i);
      const steps = opset >= 10 && node.inputs[4] ? kv(4) : undefined;
      if (!starts || !ends || !axes) fail(node, 'starts, ends and axes must be constant');
      // Per axis, the indices taken (when the dim is static), by ONNX's clamping rules.
      const picks: (number[] | undefined)[] = s.map((d) => (typeof d === 'number' ? [...Array(d).keys()] : undefined));
      const out = [...s];
      axes.forEach((a, j) => {
        const ax = normAxis(a as number, s.length);
        const dim = s[ax];
        const step = steps ? (steps[j] as number) : 1;
        if (typeof dim !== 'number') { out[ax] = `${node.outputs[0]}:${ax}`; return; }
        const norm = (v: number) => (v < 0 ? v + dim : v);
        const st = step > 0 ? Math.min(dim, Math.max(0, norm(starts[j] as number))) : Math.min(dim - 1, Math.max(-1, norm(starts[j] as number)));
        const en = step > 0 ? Math.min(dim, Math.max(0, norm(ends[j] as number))) : Math.min(dim - 1, Math.max(-1, norm(ends[j] as number)));
        const taken: number[] = [];
        for (let i = st; step > 0 ? i < en : i > en; i += step) taken.push(i);
        picks[ax] = taken;
        out[ax] = taken.length;
      });
      set(0, { dtype: inT(0).dtype, shape: out });
      const d = kv(0);
      if (d && picks.every((p) => p)) known.set(node.outputs[0], gatherIndices(d, s as number[], picks as number[][]));
      return;
    }
    case 'ConstantOfShape': {
      const shape = kv(0);
      const t = attrTensor(node, 'value');
      set(0, { dtype: t?.dtype ?? 'float32', shape: shape ?? undefined });
      const count = shape?.every((d) => typeof d === 'number') ? (shape as number[]).reduce((x, y) => x * y, 1) : Infinity;
      if ((t?.dtype === 'int64' || t?.dtype === 'int32') && count <= 64) known.set(node.outputs[0], new Array(count).fill(Number(t.data[0])));
      return;
    }
    case 'ReduceSum': case 'ReduceMean': case 'ReduceMax': case 'ReduceSumSquare': case 'ReduceL1': {
      const s = inS(0);
      const axesFromInput = node.opType === 'ReduceSum' ? opset >= 13 : opset >= 18;
      const axes = (axesFromInput ? kv(1) : attrInts(node, 'axes'))?.map((a) => normAxis(a as number, s.length)) ?? s.map((_, i) => i);
      const keep = attrInt(node, 'keepdims', 1) === 1;
      const out: Dim[] = [];
      s.forEach((d, i) => { if (!axes.includes(i)) out.push(d); else if (keep) out.push(1); });
      set(0, { dtype: inT(0).dtype, shape: out });
      return;
    }
    case 'Greater': case 'Less': case 'Equal': {
      set(0, { dtype: 'bool', shape: broadcastShapes(inS(0), inS(1)) });
      return;
    }
    case 'Where': {
      set(0, { dtype: inT(1).dtype, shape: broadcastShapes(inS(0), broadcastShapes(inS(1), inS(2))) });
      return;
    }
    default: {
      const rule = shapeRules.get(node.opType);
      // Without a rule outputs stay untyped; a later node that needs them names this op (typeOf).
      if (rule) rule(node, { opset, inType: inT, inShape: inS, known: kv, setOutput: set, fail: (m) => fail(node, m) });
      return;
    }
  }
}

const CAST_TYPES: Record<number, ValueType['dtype']> = { 1: 'float32', 2: 'uint8', 3: 'int8', 6: 'int32', 7: 'int64', 9: 'bool', 10: 'float16', 11: 'float64' };
