// ReduceSum and ReduceMean: the gradient is spread back over the reduced axes (and divided by
// their size for the mean).
import { A, attrInt, attrInts, type Node } from '../ir/graph.js';
import type { Emitter } from '../ir/emitter.js';
import { registerGradient } from './registry.js';

/** The reduced axes, normalised; null = all (the input form from opset 13/18, else the attribute). */
function reducedAxes(e: Emitter, node: Node): number[] {
  const rank = e.shapeOf(node.inputs[0]).length;
  const axesAsInput = node.opType === 'ReduceSum' ? e.opset >= 13 : e.opset >= 18;
  const known = axesAsInput ? (node.inputs[1] ? e.g.initializers.get(node.inputs[1]) : undefined) : undefined;
  const axes = axesAsInput ? (known ? Array.from(known.data as BigInt64Array, Number) : node.inputs[1] ? null : []) : attrInts(node, 'axes') ?? [];
  if (axes === null) throw new Error(`the axes of ${node.opType} must be a constant initializer`);
  const all = Array.from({ length: rank }, (_, i) => i);
  return axes.length === 0 ? (attrInt(node, 'noop_with_empty_axes', 0) === 1 ? [] : all) : axes.map((a) => (a < 0 ? a + rank : a));
}

function spread(e: Emitter, node: Node, dY: string, mean: boolean): string {
  const x = node.inputs[0];
  const axes = reducedAxes(e, node);
  const keep = attrInt(node, 'keepdims', 1) === 1 ? dY : e.unsqueeze(dY, axes);
  const expanded = e.op('Expand', [keep, e.op('Shape', [x])]);
  if (!mean) return expanded;
  const dtype = e.dtypeOf(x);
  const size = (v: string) => e.op('Cast', [e.op('Size', [v])], [A.int('to', dtype === 'float64' ? 11 : 1)]);
  return e.op('Div', [expanded, e.op('Div', [size(x), size(node.outputs[0])])]);
}

registerGradient(['ReduceSum'], [0], (e, node, [dY]) => [spread(e, node, dY!, false)]);
registerGradient(['ReduceMean'], [0], (e, node, [dY]) => [spread(e, node, dY!, true)]);
