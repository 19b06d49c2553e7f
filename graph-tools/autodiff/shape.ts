// Ops that only move or relabel values: the gradient is reshaped, transposed or cast back.
import { A, attrInts } from '../ir/graph.js';
import { dataTypeToEnum } from '../onnx/index.js';
import { registerGradient } from './registry.js';

registerGradient(['Identity', 'Dropout'], [0], (_e, _node, [dY]) => [dY]);

registerGradient(['Flatten', 'Reshape', 'Squeeze', 'Unsqueeze'], [0], (e, node, [dY]) => [e.reshapeLike(dY!, node.inputs[0])]);

registerGradient(['Transpose'], [0], (e, node, [dY]) => {
  const rank = e.shapeOf(node.inputs[0]).length;
  const perm = attrInts(node, 'perm') ?? Array.from({ length: rank }, (_, i) => rank - 1 - i);
  const inverse = new Array<number>(rank);
  perm.forEach((p, i) => { inverse[p] = i; });
  return [e.op('Transpose', [dY!], [A.ints('perm', inverse)])];
});

registerGradient(['Cast'], [0], (e, node, [dY]) => [
  e.op('Cast', [dY!], [A.int('to', dataTypeToEnum(e.dtypeOf(node.inputs[0])))]),
]);
