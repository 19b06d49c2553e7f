// A small mutable view of an ONNX graph: enough to find layers, infer shapes and append
// backward and optimizer subgraphs. Attributes stay AttributeProto objects so that whatever
// the user's model carries round-trips untouched.
import { onnx, tensorFromProto, tensorToProto, dataTypeFromEnum, dataTypeToEnum } from '../onnx/index.js';
import type { DataType, TensorData } from '../onnx/index.js';

export type Dim = number | string;
export interface ValueType { dtype: DataType; shape?: Dim[] }
export interface ValueInfo { name: string; type: ValueType }

export interface Node {
  name: string;
  opType: string;
  domain: string;
  inputs: string[];
  outputs: string[];
  attrs: onnx.IAttributeProto[];
}

export class GraphError extends Error {
  constructor(message: string) { super(message); this.name = 'GraphError'; }
}

export class Graph {
  name = 'graph';
  nodes: Node[] = [];
  inputs: ValueInfo[] = [];
  outputs: ValueInfo[] = [];
  initializers = new Map<string, TensorData>();
  /** Types known for intermediate values (from the file's value_info and shape inference). */
  types = new Map<string, ValueType>();
  /** ai.onnx opset version; decides attribute-vs-input forms of the ops we emit. */
  opset = 13;
  private otherOpsets: onnx.IOperatorSetIdProto[] = [];
  private usedNames = new Set<string>();
  private model: onnx.IModelProto = {};

  static fromModel(model: onnx.IModelProto, source = 'model'): Graph {
    const g = new Graph();
    const gp = model.graph;
    if (!gp) throw new GraphError(`${source}: the model has no graph`);
    g.model = model;
    g.name = gp.name || 'graph';
    for (const o of model.opsetImport ?? []) {
      if (!o.domain || o.domain === 'ai.onnx') g.opset = Number(o.version);
      else g.otherOpsets.push(o);
    }
    for (const t of gp.initializer ?? []) g.initializers.set(t.name!, tensorFromProto(t));
    for (const vi of gp.input ?? []) {
      // Old exporters list initializers among the inputs too; they are not data inputs.
      if (g.initializers.has(vi.name!)) continue;
      g.inputs.push({ name: vi.name!, type: typeFromProto(vi, source) });
    }
    for (const vi of gp.output ?? []) g.outputs.push({ name: vi.name!, type: typeFromProto(vi, source) });
    for (const vi of gp.valueInfo ?? []) {
      const t = typeFromProtoOrNull(vi);
      if (t) g.types.set(vi.name!, t);
    }
    for (const v of [...g.inputs, ...g.outputs]) g.types.set(v.name, v.type);
    for (const [name, t] of g.initializers) g.types.set(name, { dtype: t.dtype, shape: t.dims });
    (gp.node ?? []).forEach((n, i) => {
      const node: Node = {
        name: n.name || `${n.opType}_${i}`,
        opType: n.opType ?? '',
        domain: n.domain && n.domain !== 'ai.onnx' ? n.domain : '',
        inputs: [...(n.input ?? [])],
        outputs: [...(n.output ?? [])],
        attrs: [...(n.attribute ?? [])],
      };
      g.nodes.push(node);
    });
    for (const n of g.nodes) { g.usedNames.add(n.name); n.inputs.forEach((v) => g.usedNames.add(v)); n.outputs.forEach((v) => g.usedNames.add(v)); }
    for (const v of [...g.inputs, ...g.outputs]) g.usedNames.add(v.name);
    for (const k of g.initializers.keys()) g.usedNames.add(k);
    return g;
  }

  /** A value or node name not used anywhere in the graph yet. */
  fresh(hint: string): string {
    let name = hint;
    for (let i = 1; this.usedNames.has(name); i++) name = `${hint}_${i}`;
    this.usedNames.add(name);
    return name;
  }

  /** Appends a node; `outputs` is a count (fresh names from the op type) or explicit names. */
  add(opType: string, inputs: string[], attrs: onnx.IAttributeProto[] = [], outputs: number | string[] = 1, hint?: string): string[] {
    const base = hint ?? `kfqn/${opType}`;
    const outs = typeof outputs === 'number'
      ? Array.from({ length: outputs }, () => this.fresh(base))
      : outputs.map((o) => { this.usedNames.add(o); return o; });
    this.nodes.push({ name: this.fresh(`${base}_node`), opType, domain: '', inputs, outputs: outs, attrs });
    return outs;
  }

  /** add() for single-output ops. */
  op(opType: string, inputs: string[], attrs: onnx.IAttributeProto[] = [], hint?: string): string {
    return this.add(opType, inputs, attrs, 1, hint)[0];
  }

  addInitializer(hint: string, t: TensorData, exactName = false): string {
    const name = exactName ? hint : this.fresh(hint);
    this.usedNames.add(name);
    this.initializers.set(name, t);
    this.types.set(name, { dtype: t.dtype, shape: t.dims });
    return name;
  }

  /** Appends a node of another operator domain (com.microsoft, ...), importing that domain. */
  addInDomain(domain: string, version: number, opType: string, inputs: string[], attrs: onnx.IAttributeProto[] = [], hint?: string): string {
    if (!this.otherOpsets.some((o) => o.domain === domain)) this.otherOpsets.push({ domain, version });
    const [out] = this.add(opType, inputs, attrs, 1, hint);
    this.nodes[this.nodes.length - 1].domain = domain;
    return out;
  }

  /**
   * Appends `other`'s nodes, initializers and value types with every name renamed: a value of
   * `bind` (other's inputs) becomes that value of this graph, any other name gets `prefix`.
   * Returns the renaming, for other's outputs.
   */
  inline(other: Graph, bind: ReadonlyMap<string, string>, prefix: string): (name: string) => string {
    const rename = (v: string) => (v === '' ? v : bind.get(v) ?? `${prefix}${v}`);
    for (const o of other.otherOpsets) if (!this.otherOpsets.some((x) => x.domain === o.domain)) this.otherOpsets.push(o);
    for (const [name, t] of other.initializers) if (!bind.has(name)) this.addInitializer(rename(name), t, true);
    for (const [name, t] of other.types) if (!bind.has(name)) this.types.set(rename(name), t);
    for (const n of other.nodes) {
      const outputs = n.outputs.map(rename);
      outputs.forEach((v) => this.usedNames.add(v));
      this.nodes.push({ ...n, name: this.fresh(`${prefix}${n.name}`), inputs: n.inputs.map(rename), outputs });
    }
    return rename;
  }

  producers(): Map<string, Node> {
    const m = new Map<string, Node>();
    for (const n of this.nodes) for (const o of n.outputs) if (o) m.set(o, n);
    return m;
  }

  consumers(): Map<string, Node[]> {
    const m = new Map<string, Node[]>();
    for (const n of this.nodes) for (const i of n.inputs) if (i) {
      const list = m.get(i);
      if (list) list.push(n); else m.set(i, [n]);
    }
    return m;
  }

  typeOf(value: string): ValueType | undefined { return this.types.get(value); }

  /** Serialises, keeping the source model's metadata (producer, docs, other opsets). */
  toModel(): onnx.ModelProto {
    return onnx.ModelProto.create({
      ...this.model,
      irVersion: Math.max(Number(this.model.irVersion ?? 8), 7),
      opsetImport: [{ domain: '', version: this.opset }, ...this.otherOpsets],
      graph: onnx.GraphProto.create({
        name: this.name,
        node: this.nodes.map((n) => onnx.NodeProto.create({
          name: n.name, opType: n.opType, domain: n.domain || undefined, input: n.inputs, output: n.outputs, attribute: n.attrs,
        })),
        initializer: [...this.initializers].map(([name, t]) => tensorToProto(name, t)),
        input: this.inputs.map((v) => valueInfoProto(v.name, v.type)),
        output: this.outputs.map((v) => valueInfoProto(v.name, v.type)),
      }),
    });
  }
}

export function valueInfoProto(name: string, t: ValueType): onnx.ValueInfoProto {
  return onnx.ValueInfoProto.create({
    name,
    type: {
      tensorType: {
        elemType: dataTypeToEnum(t.dtype),
        shape: t.shape ? { dim: t.shape.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) } : undefined,
      },
    },
  });
}

function typeFromProtoOrNull(vi: onnx.IValueInfoProto): ValueType | null {
  const tt = vi.type?.tensorType;
  if (!tt || !tt.elemType) return null;
  let dtype: DataType;
  try { dtype = dataTypeFromEnum(tt.elemType); } catch { return null; }
  const shape = tt.shape
    ? (tt.shape.dim ?? []).map((d, i): Dim => (d.dimValue != null && Number(d.dimValue) > 0 ? Number(d.dimValue) : d.dimParam || `${vi.name}:${i}`))
    : undefined;
  return { dtype, shape };
}

function typeFromProto(vi: onnx.IValueInfoProto, source: string): ValueType {
  const t = typeFromProtoOrNull(vi);
  if (!t) throw new GraphError(`${source}: graph input/output '${vi.name}' is not a tensor of a supported element type`);
  return t;
}

// ---- attribute helpers -------------------------------------------------------------------

export function attr(node: Node, name: string): onnx.IAttributeProto | undefined {
  return node.attrs.find((a) => a.name === name);
}
export function attrInt(node: Node, name: string, dflt: number): number {
  const a = attr(node, name);
  return a?.i != null ? Number(a.i) : dflt;
}
export function attrFloat(node: Node, name: string, dflt: number): number {
  const a = attr(node, name);
  return a?.f != null ? Number(a.f) : dflt;
}
export function attrInts(node: Node, name: string): number[] | undefined {
  const a = attr(node, name);
  return a && a.ints && (a.ints.length > 0 || a.type === onnx.AttributeProto.AttributeType.INTS) ? a.ints.map(Number) : undefined;
}
export function attrTensor(node: Node, name: string): TensorData | undefined {
  const a = attr(node, name);
  return a?.t ? tensorFromProto(a.t) : undefined;
}

const AT = onnx.AttributeProto.AttributeType;
export const A = {
  int: (name: string, i: number): onnx.IAttributeProto => ({ name, type: AT.INT, i }),
  float: (name: string, f: number): onnx.IAttributeProto => ({ name, type: AT.FLOAT, f }),
  ints: (name: string, ints: number[]): onnx.IAttributeProto => ({ name, type: AT.INTS, ints }),
  string: (name: string, s: string): onnx.IAttributeProto => ({ name, type: AT.STRING, s: new TextEncoder().encode(s) }),
  tensor: (name: string, t: TensorData): onnx.IAttributeProto => ({ name, type: AT.TENSOR, t: tensorToProto('', t) }),
};
