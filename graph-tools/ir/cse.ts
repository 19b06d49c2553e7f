// Common-subexpression elimination on the IR: nodes with the same op, inputs and attributes
// compute the same values, so later copies are dropped and their consumers read the first.
// ORT does this itself when it loads a graph; doing it here first matters when a transformation
// would otherwise separate the copies (gateOutputs moving one of them into an If's branch).
import { onnx } from '../onnx/index.js';
import type { Graph } from './graph.js';

/** Ops whose every run draws new values: two copies are two draws, never one. */
const RANDOM = /^(Random|Multinomial|Bernoulli|Dropout)/;

/** Merges duplicate nodes of `g` in place (graph outputs keep their names); returns how many went. */
export function mergeCommonSubexpressions(g: Graph): number {
  const replaced = new Map<string, string>();
  const seen = new Map<string, string[]>();
  const outputs = new Set(g.outputs.map((o) => o.name));
  const kept: Graph['nodes'] = [];
  for (const n of g.nodes) {
    n.inputs = n.inputs.map((v) => replaced.get(v) ?? v);
    // A node that writes a graph output keeps its name there; random draws stay apart.
    if (RANDOM.test(n.opType) || n.outputs.some((o) => outputs.has(o))) { kept.push(n); continue; }
    const attrs = n.attrs.map((a) => onnx.AttributeProto.encode(a as onnx.AttributeProto).finish().join(',')).sort();
    const key = JSON.stringify([n.domain, n.opType, n.inputs, n.outputs.length, attrs]);
    const first = seen.get(key);
    if (!first) { seen.set(key, n.outputs); kept.push(n); continue; }
    n.outputs.forEach((o, i) => { if (o) replaced.set(o, first[i]); });
  }
  const removed = g.nodes.length - kept.length;
  g.nodes = kept;
  return removed;
}
