// Broadcasting arithmetic and the activation functions.
import { A, attrFloat, type Node } from '../ir/graph.js';
import type { Emitter } from '../ir/emitter.js';
import { registerGradient } from './registry.js';

/** Reduces a gradient of the broadcast output back to the shape of input i. */
function toInput(e: Emitter, node: Node, i: number, grad: string): string {
  return e.unbroadcast(grad, e.shapeOf(node.outputs[0]), e.shapeOf(node.inputs[i]));
}

registerGradient(['Add'], [0, 1], (e, node, [dY], wanted) =>
  [0, 1].map((i) => (wanted[i] ? toInput(e, node, i, dY!) : undefined)));

registerGradient(['Sub'], [0, 1], (e, node, [dY], wanted) => [
  wanted[0] ? toInput(e, node, 0, dY!) : undefined,
  wanted[1] ? toInput(e, node, 1, e.op('Neg', [dY!])) : undefined,
]);

registerGradient(['Mul'], [0, 1], (e, node, [dY], wanted) => [
  wanted[0] ? toInput(e, node, 0, e.op('Mul', [dY!, node.inputs[1]])) : undefined,
  wanted[1] ? toInput(e, node, 1, e.op('Mul', [dY!, node.inputs[0]])) : undefined,
]);

// d(a/b)/db = -a/b² = -y/b.
registerGradient(['Div'], [0, 1], (e, node, [dY], wanted) => [
  wanted[0] ? toInput(e, node, 0, e.op('Div', [dY!, node.inputs[1]])) : undefined,
  wanted[1] ? toInput(e, node, 1, e.op('Neg', [e.op('Div', [e.op('Mul', [dY!, node.outputs[0]]), node.inputs[1]])])) : undefined,
]);

registerGradient(['Neg'], [0], (e, _node, [dY]) => [e.op('Neg', [dY!])]);

/** Where(x > 0, onPositive, onOther). */
function byPositive(e: Emitter, x: string, onPositive: string, onOther: string): string {
  return e.op('Where', [e.op('Greater', [x, e.constant(0, e.dtypeOf(x))]), onPositive, onOther]);
}

registerGradient(['Relu'], [0], (e, node, [dY]) => {
  const x = node.inputs[0];
  return [byPositive(e, x, dY!, e.constant(0, e.dtypeOf(x)))];
});

registerGradient(['LeakyRelu'], [0], (e, node, [dY]) => {
  const x = node.inputs[0];
  return [byPositive(e, x, dY!, e.scale(dY!, attrFloat(node, 'alpha', 0.01), e.dtypeOf(x)))];
});

// For x ≤ 0, elu(x) = alpha·(eˣ − 1), so its derivative is y + alpha.
registerGradient(['Elu'], [0], (e, node, [dY]) => {
  const x = node.inputs[0];
  const alpha = e.constant(attrFloat(node, 'alpha', 1), e.dtypeOf(x));
  return [byPositive(e, x, dY!, e.op('Mul', [dY!, e.op('Add', [node.outputs[0], alpha])]))];
});

registerGradient(['Sigmoid'], [0], (e, node, [dY]) => {
  const y = node.outputs[0];
  const oneMinusY = e.op('Sub', [e.constant(1, e.dtypeOf(y)), y]);
  return [e.op('Mul', [dY!, e.op('Mul', [y, oneMinusY])])];
});

registerGradient(['Tanh'], [0], (e, node, [dY]) => {
  const y = node.outputs[0];
  return [e.op('Mul', [dY!, e.op('Sub', [e.constant(1, e.dtypeOf(y)), e.op('Mul', [y, y])])])];
});

registerGradient(['Softplus'], [0], (e, node, [dY]) => [e.op('Mul', [dY!, e.op('Sigmoid', [node.inputs[0]])])]);

registerGradient(['Exp'], [0], (e, node, [dY]) => [e.op('Mul', [dY!, node.outputs[0]])]);
registerGradient(['Log'], [0], (e, node, [dY]) => [e.op('Div', [dY!, node.inputs[0]])]);

/** The axes Softmax/LogSoftmax normalise over: one axis from opset 13, all trailing axes before. */
function softmaxAxes(e: Emitter, node: Node): number[] {
  const rank = e.shapeOf(node.inputs[0]).length;
  const dflt = e.opset >= 13 ? -1 : 1;
  const a = node.attrs.find((x) => x.name === 'axis');
  let axis = a?.i != null ? Number(a.i) : dflt;
  if (axis < 0) axis += rank;
  return e.opset >= 13 ? [axis] : Array.from({ length: rank - axis }, (_, i) => axis + i);
}

// dx = y ⊙ (dy − Σ dy⊙y)
registerGradient(['Softmax'], [0], (e, node, [dY]) => {
  const y = node.outputs[0];
  const dot = e.reduce('ReduceSum', e.op('Mul', [dY!, y]), softmaxAxes(e, node), true);
  return [e.op('Mul', [y, e.op('Sub', [dY!, dot])])];
});

// dx = dy − softmax ⊙ Σ dy
registerGradient(['LogSoftmax'], [0], (e, node, [dY]) => {
  const total = e.reduce('ReduceSum', dY!, softmaxAxes(e, node), true);
  return [e.op('Sub', [dY!, e.op('Mul', [e.op('Exp', [node.outputs[0]]), total])])];
});


// Clip (and the Relu6/Hardtanh exports): the gradient passes where min ≤ x ≤ max, as PyTorch's clamp.
registerGradient(['Clip'], [0], (e, node, [dY]) => {
  const x = node.inputs[0];
  const dtype = e.dtypeOf(x);
  const bound = (i: number, attr: string): string | undefined => {
    if (e.opset >= 11) return node.inputs[i] || undefined;
    const a = node.attrs.find((v) => v.name === attr);
    return a ? e.constant(Number(a.f), dtype) : undefined;
  };
  const lo = bound(1, 'min');
  const hi = bound(2, 'max');
  const inside = [lo && e.op('Not', [e.op('Less', [x, lo])]), hi && e.op('Not', [e.op('Greater', [x, hi])])].filter((v): v is string => !!v);
  if (inside.length === 0) return [dY];
  const mask = inside.length === 2 ? e.op('And', inside) : inside[0];
  return [e.op('Where', [mask, dY!, e.constant(0, dtype)])];
});

registerGradient(['Sqrt'], [0], (e, node, [dY]) => [e.op('Div', [e.op('Mul', [dY!, e.constant(0.5, e.dtypeOf(node.inputs[0]))]), node.outputs[0]])]);

// d(1/x) = −1/x² = −y².
registerGradient(['Reciprocal'], [0], (e, node, [dY]) => [e.op('Neg', [e.op('Mul', [dY!, e.op('Mul', [node.outputs[0], node.outputs[0]])])])]);

// erf'(x) = 2/√π·e^(−x²): GELU exports as x·½·(1 + erf(x/√2)).
registerGradient(['Erf'], [0], (e, node, [dY]) => {
  const x = node.inputs[0];
  const dtype = e.dtypeOf(x);
  return [e.op('Mul', [dY!, e.op('Mul', [e.constant(2 / Math.sqrt(Math.PI), dtype), e.op('Exp', [e.op('Neg', [e.op('Mul', [x, x])])])])])];
});

registerGradient(['Abs'], [0], (e, node, [dY]) => [e.op('Mul', [dY!, e.op('Sign', [node.inputs[0]])])]);

// x^p: d/dx = p·x^(p−1); d/dp = y·ln x (only where x > 0; exponents are almost always constants).
registerGradient(['Pow'], [0, 1], (e, node, [dY], wanted) => {
  const [x, p] = node.inputs;
  const dtype = e.dtypeOf(x);
  const dX = wanted[0]
    ? e.unbroadcast(e.op('Mul', [dY!, e.op('Mul', [p, e.op('Pow', [x, e.op('Sub', [p, e.constant(1, dtype)])])])]), e.shapeOf(node.outputs[0]), e.shapeOf(x))
    : undefined;
  const dP = wanted[1]
    ? e.unbroadcast(e.op('Mul', [dY!, e.op('Mul', [node.outputs[0], e.op('Log', [x])])]), e.shapeOf(node.outputs[0]), e.shapeOf(p))
    : undefined;
  return [dX, dP];
});

// selu(x) = γ·x (x > 0), γ·α·(eˣ − 1) otherwise: the derivative is γ, or y + γ·α.
registerGradient(['Selu'], [0], (e, node, [dY]) => {
  const x = node.inputs[0];
  const dtype = e.dtypeOf(x);
  const gamma = attrFloat(node, 'gamma', 1.0507009873554805);
  const alpha = attrFloat(node, 'alpha', 1.6732632423543772);
  const negative = e.op('Mul', [dY!, e.op('Add', [node.outputs[0], e.constant(gamma * alpha, dtype)])]);
  return [byPositive(e, x, e.op('Mul', [dY!, e.constant(gamma, dtype)]), negative)];
});

/** Where(lo < t < hi) of the HardSigmoid argument t = αx + β: the slope region. */
function hardSigmoidRegion(e: Emitter, x: string, alpha: number, beta: number): string {
  const dtype = e.dtypeOf(x);
  const t = e.op('Add', [e.op('Mul', [x, e.constant(alpha, dtype)]), e.constant(beta, dtype)]);
  return e.op('And', [e.op('Greater', [t, e.constant(0, dtype)]), e.op('Less', [t, e.constant(1, dtype)])]);
}

registerGradient(['HardSigmoid'], [0], (e, node, [dY]) => {
  const x = node.inputs[0];
  const alpha = attrFloat(node, 'alpha', 0.2);
  return [e.op('Where', [hardSigmoidRegion(e, x, alpha, attrFloat(node, 'beta', 0.5)), e.op('Mul', [dY!, e.constant(alpha, e.dtypeOf(x))]), e.constant(0, e.dtypeOf(x))])];
});

// hardswish(x) = x·hardsigmoid(x) with α = 1/6, β = ½: derivative hs(x) + x·α on the slope.
registerGradient(['HardSwish'], [0], (e, node, [dY]) => {
  const x = node.inputs[0];
  const dtype = e.dtypeOf(x);
  const hs = e.op('HardSigmoid', [x], [A.float('alpha', 1 / 6), A.float('beta', 0.5)]);
  const slope = e.op('Where', [hardSigmoidRegion(e, x, 1 / 6, 0.5), e.op('Mul', [x, e.constant(1 / 6, dtype)]), e.constant(0, dtype)]);
  return [e.op('Mul', [dY!, e.op('Add', [hs, slope])])];
});

// softsign(x) = x/(1 + |x|): derivative 1/(1 + |x|)².
registerGradient(['Softsign'], [0], (e, node, [dY]) => {
  const x = node.inputs[0];
  const denom = e.op('Add', [e.constant(1, e.dtypeOf(x)), e.op('Abs', [x])]);
  return [e.op('Div', [dY!, e.op('Mul', [denom, denom])])];
});
