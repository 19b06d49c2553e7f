// BatchNormalization in frozen mode: the running statistics are constants (what an eval-mode
// export computes), so y = scale·(x − mean)/√(var + ε) + bias is affine in x, scale and bias.
import { attrFloat, attrInt, GraphError, type Node } from '../ir/graph.js';
import type { Emitter } from '../ir/emitter.js';
import { registerShapeRule } from '../ir/shapes.js';
import { registerGradient } from './registry.js';

registerShapeRule(['BatchNormalization'], (node, ctx) => {
  ctx.setOutput(0, ctx.inType(0));
});

/** Reshapes a per-channel [C] vector to broadcast against x of rank r: [1, C, 1, ...]. */
function perChannel(e: Emitter, v: string, rank: number): string {
  const axes = [0, ...Array.from({ length: rank - 2 }, (_, i) => i + 2)];
  return e.unsqueeze(v, axes);
}

function checkFrozen(node: Node): void {
  if (attrInt(node, 'training_mode', 0) === 1 || node.outputs.slice(1).some(Boolean)) {
    throw new GraphError(`node '${node.name}' (BatchNormalization) is in training mode; kfqn supports frozen BatchNormalization `
      + '(running statistics as constants, scale and bias trained): export the model in eval mode');
  }
}

registerGradient(['BatchNormalization'], [0, 1, 2], (e, node, [dY], wanted) => {
  checkFrozen(node);
  const [x, scale, , mean, variance] = node.inputs;
  const rank = e.shapeOf(x).length;
  const reduceAxes = [0, ...Array.from({ length: rank - 2 }, (_, i) => i + 2)];
  const dtype = e.dtypeOf(x);
  const invStd = e.op('Reciprocal', [e.op('Sqrt', [e.op('Add', [variance, e.constant(attrFloat(node, 'epsilon', 1e-5), dtype)])])]);
  const dX = wanted[0] ? e.op('Mul', [dY!, perChannel(e, e.op('Mul', [scale, invStd]), rank)]) : undefined;
  let dScale: string | undefined;
  if (wanted[1]) {
    const xhat = e.op('Mul', [e.op('Sub', [x, perChannel(e, mean, rank)]), perChannel(e, invStd, rank)]);
    dScale = e.reduce('ReduceSum', e.op('Mul', [dY!, xhat]), reduceAxes, false);
  }
  const dBias = wanted[2] ? e.reduce('ReduceSum', dY!, reduceAxes, false) : undefined;
  return [dX, dScale, dBias];
});
