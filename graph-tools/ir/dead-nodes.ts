// Dead-node removal on the IR: a node none of whose outputs reaches a graph output is dropped.
// ORT runs every node of a model it loads, used or not; graphs built by inlining a pass and keeping
// some of its outputs (the K-BFGS direction graph's fused second pass) would otherwise compute the
// rest too. A node with a subgraph (If, Loop, Scan) also reads the outer values its subgraph uses.
import type { onnx } from '../onnx/index.js';
import type { Graph, Node } from './graph.js';

/** Removes the nodes of `g` that no graph output depends on; returns how many went. */
export function removeDeadNodes(g: Graph): number {
  const live = new Set(g.outputs.map((o) => o.name));
  const kept: Node[] = [];
  // Nodes are in topological order: walking back, a node is live once a later live node reads it.
  for (let k = g.nodes.length - 1; k >= 0; k--) {
    const n = g.nodes[k];
    if (!n.outputs.some((o) => o && live.has(o))) continue;
    kept.push(n);
    for (const v of [...n.inputs, ...n.attrs.flatMap((a) => (a.g ? outerReads(a.g) : []))]) if (v) live.add(v);
  }
  const removed = g.nodes.length - kept.length;
  g.nodes = kept.reverse();
  return removed;
}

/** The values a subgraph reads that it neither defines nor takes as inputs: its outer-scope reads. */
function outerReads(graph: onnx.IGraphProto): string[] {
  const defined = new Set<string>([...(graph.input ?? []).map((i) => i.name!), ...(graph.initializer ?? []).map((t) => t.name!)]);
  const reads: string[] = [];
  for (const n of graph.node ?? []) {
    for (const v of [...(n.input ?? []), ...(n.attribute ?? []).flatMap((a) => (a.g ? outerReads(a.g) : []))]) if (v && !defined.has(v)) reads.push(v);
    for (const o of n.output ?? []) defined.add(o);
  }
  return reads;
}
