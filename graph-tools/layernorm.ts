// LayerNormalization (opset 17; older exports already spell it out in ReduceMean, Sub, Pow, Sqrt,
// Div): rewritten to those standard ops so autodiff differentiates it, scale and bias included.
import type { Emitter } from './ir/emitter.js';
import { attrFloat, attrInt, GraphError, type Graph, type Node } from './ir/graph.js';
import { registerShapeRule } from './ir/shapes.js';

registerShapeRule(['LayerNormalization'], (node, ctx) => ctx.setOutput(0, ctx.inType(0)));

/** Replaces every LayerNormalization node by its definition; returns whether it changed the graph. */
export function decomposeLayerNorms(g: Graph, e: Emitter): boolean {
  const nodes = g.nodes.filter((n) => n.opType === 'LayerNormalization');
  for (const node of nodes) {
    const start = g.nodes.length;
    emitLayerNorm(e, node);
    const added = g.nodes.splice(start);
    g.nodes.splice(g.nodes.indexOf(node), 1, ...added);
  }
  return nodes.length > 0;
}

function emitLayerNorm(e: Emitter, node: Node): void {
  if (node.outputs.slice(1).some(Boolean)) {
    throw new GraphError(`node '${node.name}' (LayerNormalization): its Mean and InvStdDev outputs are not supported; export without them`);
  }
  const [x, scale, bias] = node.inputs;
  const rank = e.shapeOf(x).length;
  let axis = attrInt(node, 'axis', -1);
  if (axis < 0) axis += rank;
  const axes = Array.from({ length: rank - axis }, (_, i) => axis + i);
  const mean = e.reduce('ReduceMean', x, axes, true);
  const centred = e.op('Sub', [x, mean]);
  const variance = e.reduce('ReduceMean', e.op('Mul', [centred, centred]), axes, true);
  const invStd = e.op('Reciprocal', [e.op('Sqrt', [e.op('Add', [variance, e.constant(attrFloat(node, 'epsilon', 1e-5), e.dtypeOf(x))])])]);
  const scaled = e.op('Mul', [e.op('Mul', [centred, invStd]), scale]);
  e.g.add(bias ? 'Add' : 'Identity', bias ? [scaled, bias] : [scaled], [], [node.outputs[0]]);
}
