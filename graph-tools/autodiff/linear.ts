// Gemm and MatMul backward rules.
import { A, attrFloat, attrInt, GraphError } from '../ir/graph.js';
import { registerGradient } from './registry.js';

registerGradient(['Gemm'], [0, 1, 2], (e, node, [dY], wanted) => {
  const [a, b, c] = node.inputs;
  const transA = attrInt(node, 'transA', 0) === 1;
  const transB = attrInt(node, 'transB', 0) === 1;
  const alpha = attrFloat(node, 'alpha', 1);
  const beta = attrFloat(node, 'beta', 1);
  // With Y = alpha·op(A)·op(B) + beta·C: d op(A) = alpha·dY·op(B)ᵀ and d op(B) = alpha·op(A)ᵀ·dY.
  const dA = !wanted[0] ? undefined
    : transA ? e.gemm(b, dY!, transB, true, alpha) : e.gemm(dY!, b, false, !transB, alpha);
  const dB = !wanted[1] ? undefined
    : transB ? e.gemm(dY!, a, true, transA, alpha) : e.gemm(a, dY!, !transA, false, alpha);
  const dC = !wanted[2] || !c ? undefined
    : e.unbroadcast(e.scale(dY!, beta, e.dtypeOf(c)), e.shapeOf(node.outputs[0]), e.shapeOf(c));
  return [dA, dB, dC];
});

registerGradient(['MatMul'], [0, 1], (e, node, [dY], wanted) => {
  const [a, b] = node.inputs;
  const ra = e.shapeOf(a).length;
  const rb = e.shapeOf(b).length;
  if (ra < 2 || rb < 2) throw new GraphError(`node '${node.name}' (MatMul): 1-D operands are not supported in training graphs`);
  const swapLast = (x: string, r: number) => e.op('Transpose', [x], [A.ints('perm', [...Array(r - 2).keys(), r - 1, r - 2])]);
  let dA: string | undefined;
  let dB: string | undefined;
  if (wanted[0]) {
    dA = ra === 2 && rb === 2 ? e.gemm(dY!, b, false, true) : e.op('MatMul', [dY!, swapLast(b, rb)]);
    dA = e.unbroadcast(dA, e.shapeOf(node.outputs[0]).slice(0, -2).concat(e.shapeOf(a).slice(-2)), e.shapeOf(a));
  }
  if (wanted[1]) {
    if (rb === 2) {
      // A weight shared over leading axes: fold them into rows, one Gemm sums over all of them.
      const k = e.shapeOf(a)[ra - 1];
      const n = e.shapeOf(b)[1];
      const a2 = ra === 2 ? a : e.op('Reshape', [a, e.int64s([-1, typeof k === 'number' ? k : 0])]);
      const d2 = ra === 2 ? dY! : e.op('Reshape', [dY!, e.int64s([-1, typeof n === 'number' ? n : 0])]);
      if (ra !== 2 && (typeof k !== 'number' || typeof n !== 'number')) throw new GraphError(`node '${node.name}' (MatMul): the inner dimensions must be static`);
      dB = e.gemm(a2, d2, true, false);
    } else {
      dB = e.op('MatMul', [swapLast(a, ra), dY!]);
      dB = e.unbroadcast(dB, e.shapeOf(node.outputs[0]).slice(0, -2).concat(e.shapeOf(b).slice(-2)), e.shapeOf(b));
    }
  }
  return [dA, dB];
});
