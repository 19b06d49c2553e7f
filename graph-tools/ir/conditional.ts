// Outputs computed only on request: the nodes that only some outputs need move into the
// then-branch of an ONNX If, so that one graph (one session, one memory arena) serves both the
// runs that want them and the cheaper runs that do not.
import { onnx, tensorToProto, type DataType, type TypedData } from '../onnx/index.js';
import { Graph, GraphError, valueInfoProto, type Node } from './graph.js';

/**
 * Makes `gated` outputs of `g` computed only when `condition` (a bool scalar value of `g`) is true.
 * Every node that no other output (and not the condition) needs moves, in order, into the If's
 * then-branch, which reads the rest of the graph from its outer scope. When the condition is
 * false the else-branch gives each gated output as a scalar zero, so those outputs lose their
 * static shapes. A gated output that the rest computes anyway stays an ordinary output. Returns
 * how many nodes moved.
 */
export function gateOutputs(g: Graph, gated: ReadonlySet<string>, condition: string): number {
  const requested = g.outputs.filter((o) => gated.has(o.name));
  if (requested.length !== gated.size) {
    throw new GraphError(`gateOutputs: ${[...gated].filter((n) => !requested.some((o) => o.name === n)).join(', ')} not outputs of the graph`);
  }
  const producers = g.producers();
  // Nodes the ungated outputs and the condition need (an explicit stack: graphs are deep).
  const needed = new Set<Node>();
  const stack = [condition, ...g.outputs.filter((o) => !gated.has(o.name)).map((o) => o.name)];
  while (stack.length) {
    const n = producers.get(stack.pop()!);
    if (!n || needed.has(n)) continue;
    needed.add(n);
    stack.push(...n.inputs.filter(Boolean));
  }
  const moved = g.nodes.filter((n) => !needed.has(n));
  g.nodes = g.nodes.filter((n) => needed.has(n));
  // A gated output that the rest computes anyway (or a graph input) stays as it is.
  const movedOutputs = new Set(moved.flatMap((n) => n.outputs));
  const outputs = requested.filter((o) => movedOutputs.has(o.name));
  if (outputs.length === 0) return 0;

  // Inside the branch the gated values get their own names; the If's outputs carry the originals.
  const inside = new Set(outputs.map((o) => o.name));
  const inner = (v: string) => (inside.has(v) ? `${v}:then` : v);
  const proto = (n: Node) => onnx.NodeProto.create({
    name: n.name, opType: n.opType, domain: n.domain || undefined, input: n.inputs.map(inner), output: n.outputs.map(inner), attribute: n.attrs,
  });
  const thenNodes = moved.map(proto);
  const untyped = (o: { type: { dtype: DataType } }, name: string) => valueInfoProto(name, { dtype: o.type.dtype });
  const thenBranch = onnx.GraphProto.create({ name: 'then', node: thenNodes, output: outputs.map((o) => untyped(o, inner(o.name))) });
  const elseBranch = onnx.GraphProto.create({
    name: 'else',
    node: outputs.map((o) => onnx.NodeProto.create({
      name: `${o.name}:else`, opType: 'Constant', output: [`${o.name}:else`],
      attribute: [onnx.AttributeProto.create({ name: 'value', type: onnx.AttributeProto.AttributeType.TENSOR, t: tensorToProto('', zero(o.type.dtype)) })],
    })),
    output: outputs.map((o) => untyped(o, `${o.name}:else`)),
  });
  const branch = (name: string, graph: onnx.GraphProto) => onnx.AttributeProto.create({ name, type: onnx.AttributeProto.AttributeType.GRAPH, g: graph });
  // The If goes right after the last value it reads, so that the values it keeps alive (its
  // implicit inputs) live no longer than they must.
  const reads = new Set([condition, ...moved.flatMap((n) => n.inputs).filter((v) => v && !movedOutputs.has(v))]);
  const at = 1 + Math.max(-1, ...g.nodes.map((n, i) => (n.outputs.some((o) => reads.has(o)) ? i : -1)));
  g.nodes.splice(at, 0, {
    name: `gate:${condition}`, opType: 'If', domain: '', inputs: [condition], outputs: outputs.map((o) => o.name),
    attrs: [branch('then_branch', thenBranch), branch('else_branch', elseBranch)],
  });
  for (const o of outputs) {
    o.type = { dtype: o.type.dtype };
    g.types.set(o.name, o.type);
  }
  return moved.length;
}

/** A scalar 0 of `dtype`. */
function zero(dtype: DataType): { dtype: DataType; dims: number[]; data: TypedData } {
  const arrays: Record<DataType, new (n: number) => TypedData> = {
    float32: Float32Array, float64: Float64Array, int64: BigInt64Array, int32: Int32Array, bool: Uint8Array, uint8: Uint8Array, int8: Int8Array, float16: Uint16Array,
  };
  return { dtype, dims: [], data: new arrays[dtype](1) };
}
