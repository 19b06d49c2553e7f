// Every backward rule against central finite differences of the float64 loss: each case puts the
// op between a trainable Gemm/MatMul layer and the model output, computes the parameter gradients
// with computeGradients (float64) and perturbs every entry of every parameter by ±h.
import { expect } from 'chai';
import type { LossSpec } from '../../../graph-tools/index.js';
import { createBackend, type Backend } from '../../../lib/runtime/index.js';
import { explain, gradCheck, type GradCase } from '../../helpers/gradcheck.js';
import { A, ModelBuilder } from '../../helpers/models.js';

/** Relative to the largest |finite difference| of the same parameter tensor. */
const TOL = 1e-6;
/** Batch size at run time (the declared batch is the symbolic 'N'). */
const N = 4;

interface Case { name: string; build: (seed: number) => GradCase }
const cases: Case[] = [];
/** modelSeed: seeds the weights and data instead of the case's index. */
type Extra = Partial<GradCase> & { opset?: number; modelSeed?: number };
/**
 * A case whose model is `body(b)`'s output; `extra` adds loss, kink values etc.
 */
function add(name: string, body: (b: ModelBuilder) => string, extra: Extra = {}): void {
  cases.push({
    name,
    build: (seed) => {
      const b = new ModelBuilder(extra.modelSeed ?? seed, extra.opset ?? 13);
      const y = body(b);
      return { model: b.model(y), inputs: b.data, ...extra };
    },
  });
}
const x2 = (b: ModelBuilder, k = 3) => b.input('x', ['N', k], [N, k]);
const x3 = (b: ModelBuilder, s = 2, k = 3) => b.input('x', ['N', s, k], [N, s, k]);

// ---- Gemm ----------------------------------------------------------------------------------
add('Gemm transB=1 alpha=0.7 beta=1.3, bias [out]', (b) => b.gemm(x2(b), 3, 4, { transB: true, alpha: 0.7, beta: 1.3 }));
add('Gemm transB=0 alpha=1.5 beta=0.5, bias [1,out]', (b) => b.gemm(x2(b), 3, 4, { alpha: 1.5, beta: 0.5, bias: 'row' }));
add('Gemm without C', (b) => b.gemm(x2(b), 3, 4, { bias: 'none', transB: true }));
add('Gemm with a constant C of shape [1] (not a bias)', (b) => {
  const w = b.init('W', [3, 4]);
  return b.node('Gemm', [x2(b), w, b.init('c', [1], [0.25])], [A.float('beta', 2)]);
});
for (const transB of [false, true]) {
  add(`Gemm → Tanh → Gemm (transB=${+transB}, alpha=0.8, beta=-0.6)`, (b) =>
    b.gemm(b.node('Tanh', [b.gemm(x2(b), 3, 5)]), 5, 2, { transB, alpha: 0.8, beta: -0.6 }));
}
// Gemm of two activations (static batch 4). a: [4, da], b: [4, db]; op(A) = tA ? aᵀ : a and
// op(B) = tB ? bᵀ : b, so (da, db) are chosen per combination for op(A)·op(B) to exist.
for (const [tA, tB] of [[0, 0], [1, 0], [0, 1], [1, 1]]) {
  const [da, db] = tA === 0 && tB === 0 ? [4, 3] : tA === 1 && tB === 0 ? [3, 2] : tA === 0 && tB === 1 ? [3, 3] : [3, 4];
  const attrs = [A.int('transA', tA), A.int('transB', tB), A.float('alpha', 1.3), A.float('beta', 0.7)];
  const xs = (b: ModelBuilder) => b.input('x', [4, 3], [4, 3]);
  const P = tB ? 4 : db;
  add(`Gemm transA=${tA} transB=${tB}, A and B both from layers`, (b) => {
    const x = xs(b);
    return b.node('Gemm', [b.gemm(x, 3, da), b.matmul(x, 3, db, { bias: 'vec' }), b.init('c', [P], 0.5)], attrs);
  });
  add(`Gemm transA=${tA} transB=${tB}, A a data input, B from a layer`, (b) => {
    const x = xs(b);
    return b.node('Gemm', [b.input('xa', [4, da], [4, da]), b.gemm(x, 3, db), b.init('c', [1, P], 0.5)], attrs);
  });
  // B a data input [K, 2] (or [2, K] with transB), K = op(A)'s columns.
  const K = tA ? 4 : da;
  const dimsB = tB ? [2, K] : [K, 2];
  add(`Gemm transA=${tA} transB=${tB}, A from a layer, B a data input`, (b) =>
    b.node('Gemm', [b.gemm(xs(b), 3, da), b.input('xb', dimsB, dimsB)], attrs));
}
add('Gemm transA=1 with a constant B initializer (not a layer), after a layer', (b) => {
  const a = b.gemm(b.input('x', [4, 3], [4, 3]), 3, 2);
  return b.node('Gemm', [a, b.init('B', [4, 3])], [A.int('transA', 1), A.float('alpha', 0.9)]);
});

// ---- MatMul --------------------------------------------------------------------------------
add('MatMul, 2-D weight', (b) => b.matmul(x2(b), 3, 4));
add('MatMul + Add bias [out]', (b) => b.matmul(x2(b), 3, 4, { bias: 'vec' }));
add('MatMul + Add bias [1,out], bias first', (b) => b.matmul(x2(b), 3, 4, { bias: 'row', biasFirst: true }));
add('MatMul, 3-D activation [N,S,K]·[K,M] + bias', (b) => b.matmul(x3(b), 3, 4, { bias: 'vec' }));
add('MatMul → Tanh → MatMul on 2-D', (b) => b.matmul(b.node('Tanh', [b.matmul(x2(b), 3, 5, { bias: 'vec' })]), 5, 2, { bias: 'vec' }));
add('MatMul of two activations [4,4]·[4,3]', (b) => {
  const x = b.input('x', [4, 3], [4, 3]);
  return b.node('MatMul', [b.gemm(x, 3, 4), b.matmul(x, 3, 3, { bias: 'vec' })]);
});
// Regression: dA of MatMul(A: rank ≥ 3, B: rank 2) must be dY·Bᵀ (a rank-2 B was once left
// untransposed: the session failed for K ≠ M, the gradient was silently wrong for K = M).
add('3-D MatMul → Tanh → 3-D MatMul, [N,2,3]·[3,4] then ·[4,2]', (b) =>
  b.matmul(b.node('Tanh', [b.matmul(x3(b), 3, 4, { bias: 'vec' })]), 4, 2, { bias: 'vec' }));
add('3-D MatMul → Tanh → 3-D MatMul, square second weight [4,4]', (b) =>
  b.matmul(b.node('Tanh', [b.matmul(x3(b), 3, 4, { bias: 'vec' })]), 4, 4));
add('MatMul(2-D data [2,4], 3-D layer output [N,4,3])', (b) => {
  const rhs = b.matmul(b.input('x', ['N', 4, 3], [N, 4, 3]), 3, 3, { bias: 'vec' });
  return b.node('MatMul', [b.input('xa', [2, 4], [2, 4]), rhs]);
});
add('MatMul of two 3-D layer outputs [N,3,3]·[N,3,2]', (b) => {
  const x = b.input('x', ['N', 3, 3], [N, 3, 3]);
  return b.node('MatMul', [b.matmul(x, 3, 3, { bias: 'vec' }), b.matmul(x, 3, 2)]);
});

// ---- broadcasting arithmetic -----------------------------------------------------------------
const layer = (b: ModelBuilder) => b.gemm(x2(b), 3, 4, { transB: true });
add('Add(h, constant [1,k])', (b) => b.node('Add', [layer(b), b.init('c', [1, 4])]));
add('Add(constant [k], h) → Gemm', (b) => b.gemm(b.node('Add', [b.init('c', [4]), layer(b)]), 4, 2));
add('Mul(h, initializer [k]) after a layer → Gemm', (b) => b.gemm(b.node('Mul', [layer(b), b.init('s', [4], [0.5, -1.5, 2, 0.75])]), 4, 2));
add('Mul(scalar, h)', (b) => b.node('Mul', [b.init('s', [], [-1.7]), layer(b)]));
add('Sub(h, constant [1,k])', (b) => b.node('Sub', [layer(b), b.init('c', [1, 4])]));
add('Sub(scalar, h) → Gemm', (b) => b.gemm(b.node('Sub', [b.init('s', [], [0.4]), layer(b)]), 4, 2));
add('Div(h, scalar)', (b) => b.node('Div', [layer(b), b.init('s', [], [2.5])]));
add('Div(h, constant [1,k])', (b) => b.node('Div', [layer(b), b.init('c', [1, 4], [0.5, -2, 1.25, 3])]));
add('Div(constant [k], Exp(h))', (b) => b.node('Div', [b.init('c', [4]), b.node('Exp', [layer(b)])]));
// Both operands from layers, broadcast in both directions: [N,1] ∘ [1,k] → [N,k].
const colRow = (b: ModelBuilder) => {
  const x = x2(b);
  const col = b.gemm(x, 3, 1); // [N,1]
  const row = b.gemm(b.init('cin', [1, 3]), 3, 4, { transB: true }); // [1,4]: a layer over a constant input
  return { col, row };
};
add('Add([N,1] layer, [1,k] layer)', (b) => { const { col, row } = colRow(b); return b.node('Add', [col, row]); });
add('Sub([1,k] layer, [N,1] layer)', (b) => { const { col, row } = colRow(b); return b.node('Sub', [row, col]); });
add('Mul([N,1] layer, [1,k] layer)', (b) => { const { col, row } = colRow(b); return b.node('Mul', [col, row]); });
add('Div([N,1] layer, Exp([1,k] layer))', (b) => { const { col, row } = colRow(b); return b.node('Div', [col, b.node('Exp', [row])]); });
add('Div([1,k] layer, Exp([N,1] layer))', (b) => { const { col, row } = colRow(b); return b.node('Div', [row, b.node('Exp', [col])]); });
add('Mul of two layers of the same shape', (b) => { const x = x2(b); return b.node('Mul', [b.gemm(x, 3, 4), b.matmul(x, 3, 4, { bias: 'vec' })]); });
add('Mul(h, h): one value on both sides', (b) => { const h = layer(b); return b.node('Mul', [h, h]); });
add('Add([N,2,4] layer, [2,4] layer)', (b) => {
  const h3 = b.matmul(x3(b), 3, 4); // [N,2,4]
  const h2 = b.gemm(b.init('cin', [2, 3]), 3, 4); // [2,4]
  return b.node('Add', [h3, h2]);
});
add('fan-out: h feeds Tanh → Gemm and a residual Add', (b) => {
  const h = b.gemm(x2(b), 3, 4);
  return b.node('Add', [b.gemm(b.node('Tanh', [h]), 4, 4), h]);
});

// ---- activations ---------------------------------------------------------------------------
/** The layer before an op with a kink at 0 (the seeds give pre-activations clear of 0; checked). */
const kinkLayer = (b: ModelBuilder) => {
  return b.gemm(x2(b), 3, 4, { transB: true });
};
const kinky = (op: string, attrs = [] as ReturnType<typeof A.float>[]) => (b: ModelBuilder) => b.gemm(b.node(op, [kinkLayer(b)], attrs), 4, 2);
add('Relu', kinky('Relu'), { awayFromZero: ['gemm1'] });
add('LeakyRelu alpha=0.2', kinky('LeakyRelu', [A.float('alpha', 0.2)]), { awayFromZero: ['gemm1'] });
add('Clip min/max inputs (opset 13)', (b) => b.gemm(b.node('Clip', [kinkLayer(b), b.init('lo', [], -0.3), b.init('hi', [], 0.4)]), 4, 2));
add('Clip max only (Relu6-style upper bound)', (b) => b.gemm(b.node('Clip', [kinkLayer(b), '', b.init('hi', [], 0.25)]), 4, 2));
add('Elu alpha=0.7', kinky('Elu', [A.float('alpha', 0.7)]), { awayFromZero: ['gemm1'] });
const act = (op: string, attrs = [] as ReturnType<typeof A.float>[], second = true) => (b: ModelBuilder) => {
  const y = b.node(op, [layer(b)], attrs);
  return second ? b.gemm(y, 4, 2) : y;
};
add('Sigmoid', act('Sigmoid'));
add('Tanh (as output)', act('Tanh', [], false));
add('Softplus', act('Softplus'));
add('Neg', act('Neg', [], false));
add('Exp', act('Exp'));
add('Log(Mul(h,h) + 0.5)', (b) => { const h = layer(b); return b.gemm(b.node('Log', [b.node('Add', [b.node('Mul', [h, h]), b.init('c', [], [0.5])])]), 4, 2); });
add('Log(Sigmoid(h))', (b) => b.node('Log', [b.node('Sigmoid', [layer(b)])]));
add('Identity', act('Identity'));
add('Dropout (inference: identity), opset 13', act('Dropout'));
add('Dropout with ratio input and mask output', (b) => {
  const d = b.node('Dropout', [layer(b), b.init('ratio', [], [0.3])], [], [b.fresh('drop'), b.fresh('mask')]);
  return b.gemm(d, 4, 2);
});
add('Dropout, opset 11', act('Dropout'), { opset: 11 });

// Softmax / LogSoftmax: 2-D at opset 13, rank 3 with both opset semantics.
for (const op of ['Softmax', 'LogSoftmax']) {
  add(`${op} axis=1 on [N,k], opset 13`, (b) => b.node(op, [layer(b)], [A.int('axis', 1)]));
  add(`${op} axis=1 on [N,k] → Gemm, opset 13`, (b) => b.gemm(b.node(op, [layer(b)], [A.int('axis', 1)]), 4, 2));
  add(`${op} default axis on [N,k], opset 11`, (b) => b.node(op, [layer(b)]), { opset: 11 });
  for (const opset of [11, 13]) {
    add(`${op} axis=1 on [N,2,3], opset ${opset}${opset < 13 ? ' (coerced 2-D: axes 1..2)' : ' (axis 1 only)'}`,
      (b) => b.node(op, [b.matmul(x3(b), 3, 3, { bias: 'vec' })], [A.int('axis', 1)]), { opset });
    add(`${op} default axis on [N,2,3], opset ${opset}`, (b) => b.node(op, [b.matmul(x3(b), 3, 3, { bias: 'vec' })]), { opset });
  }
  add(`${op} axis=-1 on [N,2,3], opset 11 (axis 2 only)`, (b) => b.node(op, [b.matmul(x3(b), 3, 3, { bias: 'vec' })], [A.int('axis', -1)]), { opset: 11 });
  add(`${op} axis=0 on [N,2,3], opset 11 (all axes)`, (b) => b.node(op, [b.matmul(x3(b), 3, 3, { bias: 'vec' })], [A.int('axis', 0)]), { opset: 11 });
}
add('LogSoftmax → cross-entropy', (b) => b.node('LogSoftmax', [layer(b)], [A.int('axis', 1)]), { loss: { kind: 'cross-entropy', reduction: 'mean' } });

// ---- shape ops -----------------------------------------------------------------------------
add('Flatten axis=1: [N,2,4] → [N,8] → Gemm', (b) => b.gemm(b.node('Flatten', [b.matmul(x3(b), 3, 4, { bias: 'vec' })], [A.int('axis', 1)]), 8, 3));
add('Flatten axis=2: [N,2,2,2] → [2N,4] → Gemm', (b) => {
  const x = b.input('x', ['N', 2, 2, 3], [N, 2, 2, 3]);
  return b.gemm(b.node('Flatten', [b.matmul(x, 3, 2, { bias: 'vec' })], [A.int('axis', 2)]), 4, 3);
});
add('Reshape to constant [0,-1] → Gemm', (b) => b.gemm(b.node('Reshape', [b.matmul(x3(b), 3, 4), b.int64('shape', [0, -1])]), 8, 3));
add('Reshape to constant [-1,4] (output)', (b) => b.node('Reshape', [b.matmul(x3(b), 3, 4, { bias: 'vec' }), b.int64('shape', [-1, 4])]));
for (const opset of [11, 13]) {
  add(`Reshape by Shape→Gather→Unsqueeze→Concat (view(x.size(0), -1)), opset ${opset}`, (b) => {
    const h = b.matmul(x3(b), 3, 4, { bias: 'vec' });
    const n = b.node('Gather', [b.node('Shape', [h]), b.init('zero', [], [0], 'int64')], [A.int('axis', 0)]);
    const n1 = opset >= 13 ? b.node('Unsqueeze', [n, b.int64('axes', [0])]) : b.node('Unsqueeze', [n], [A.ints('axes', [0])]);
    const shape = b.node('Concat', [n1, b.int64('minus1', [-1])], [A.int('axis', 0)]);
    return b.gemm(b.node('Reshape', [h, shape]), 8, 3);
  }, { opset });
}
add('Transpose perm [0,2,1] → Flatten → Gemm', (b) =>
  b.gemm(b.node('Flatten', [b.node('Transpose', [b.matmul(x3(b), 3, 4, { bias: 'vec' })], [A.ints('perm', [0, 2, 1])])]), 8, 2));
add('Transpose perm [2,0,1] (output)', (b) => b.node('Transpose', [b.matmul(x3(b), 3, 4, { bias: 'vec' })], [A.ints('perm', [2, 0, 1])]));
add('Transpose default perm (output)', (b) => b.node('Transpose', [b.matmul(x3(b), 3, 4)]));
add('Cast float→double→float round trip → Gemm', (b) =>
  b.gemm(b.node('Cast', [b.node('Cast', [layer(b)], [A.int('to', 11)])], [A.int('to', 1)]), 4, 2));
add('Cast to double → Tanh in double → Cast to float', (b) =>
  b.node('Cast', [b.node('Tanh', [b.node('Cast', [layer(b)], [A.int('to', 11)])])], [A.int('to', 1)]));
add('Squeeze/Unsqueeze round trip → Gemm', (b) =>
  b.gemm(b.node('Squeeze', [b.node('Unsqueeze', [layer(b), b.int64('axes', [1])]), b.int64('axes', [1])]), 4, 2));

// ---- BatchNormalization, frozen: running statistics constant, scale and bias trained ---------
const batchNorm = (b: ModelBuilder, x: string, c: number) => b.node('BatchNormalization', [
  x, b.init('bn_scale', [c], 0.8), b.init('bn_bias', [c], 0.4), b.init('bn_mean', [c], 0.3),
  b.init('bn_var', [c], Array.from({ length: c }, (_, i) => 0.5 + 0.25 * i)),
], [A.float('epsilon', 1e-3)]);
add('BatchNormalization on [N,4] (BatchNorm1d) → Gemm', (b) => b.gemm(batchNorm(b, layer(b), 4), 4, 2));
add('BatchNormalization on [N,3,2,2] between layers', (b) => {
  const h = b.node('Reshape', [b.gemm(x2(b), 3, 12), b.int64('shape', [0, 3, 2, 2])]);
  return b.gemm(b.node('Flatten', [b.node('Tanh', [batchNorm(b, h, 3)])]), 12, 2);
});
// Batch statistics: the gradient flows through the batch mean and variance too.
add('BatchNormalization with batch statistics (--batchnorm train) on [N,4]', (b) => b.gemm(batchNorm(b, layer(b), 4), 4, 2), { batchnorm: 'train' });
add('BatchNormalization with batch statistics on [N,3,2,2] between layers', (b) => {
  const h = b.node('Reshape', [b.gemm(x2(b), 3, 12), b.int64('shape', [0, 3, 2, 2])]);
  return b.gemm(b.node('Flatten', [b.node('Tanh', [batchNorm(b, h, 3)])]), 12, 2);
}, { batchnorm: 'train' });

// ---- activations of newer exports (LayerNorm-era Pow, SELU, hard activations; Erf/GELU: gelu.spec) ---
add('Abs', kinky('Abs'), { awayFromZero: ['gemm1'] });
add('Pow with constant exponents 2 and 3', (b) => {
  const h = layer(b);
  return b.gemm(b.node('Add', [b.node('Pow', [h, b.init('two', [], [2])]), b.node('Pow', [h, b.init('three', [], [3])])]), 4, 2);
});
add('Selu', kinky('Selu'), { awayFromZero: ['gemm1'] });
add('HardSigmoid alpha 0.4 (slope and both flat parts)', (b) => b.gemm(b.node('HardSigmoid', [b.node('Mul', [layer(b), b.init('k', [], [3])])], [A.float('alpha', 0.4)]), 4, 2));
add('HardSwish', (b) => b.gemm(b.node('HardSwish', [b.node('Mul', [layer(b), b.init('k', [], [4])])]), 4, 2), { opset: 14 });
add('Softsign', (b) => b.gemm(b.node('Softsign', [layer(b)]), 4, 2));

// ---- LayerNormalization (opset 17), rewritten to standard ops; scale and bias train -----------
add('LayerNormalization over the last axis, scale and bias → Gemm', (b) => b.gemm(b.node('LayerNormalization', [layer(b), b.init('ln_scale', [4], 0.8), b.init('ln_bias', [4], 0.3)], [A.float('epsilon', 1e-3)]), 4, 2), { opset: 17 });
add('LayerNormalization over axes 1.. of [N,2,4], no bias', (b) => {
  const h = b.node('Reshape', [b.gemm(x2(b), 3, 8), b.int64('shape', [0, 2, 4])]);
  return b.gemm(b.node('Flatten', [b.node('LayerNormalization', [h, b.init('ln_scale', [2, 4], 0.8)], [A.int('axis', 1)])]), 8, 2);
}, { opset: 17 });

// ---- reductions and the ops batch statistics are built from --------------------------------
add('ReduceMean over axis 1, keepdims → Sub (centring)', (b) => { const h = layer(b); return b.gemm(b.node('Sub', [h, b.node('ReduceMean', [h], [A.ints('axes', [1])])]), 4, 2); });
add('ReduceSum over axis 0 without keepdims (axes input)', (b) => b.node('Mul', [b.node('ReduceSum', [layer(b), b.int64('axes', [0])], [A.int('keepdims', 0)]), b.init('k', [4], 0.7)]));
add('Sqrt and Reciprocal of a positive value', (b) => { const h = layer(b); return b.gemm(b.node('Reciprocal', [b.node('Sqrt', [b.node('Add', [b.node('Mul', [h, h]), b.init('one', [], [1])])])]), 4, 2); });

// ---- a deeper mix and the other losses -------------------------------------------------------
const mlp = (b: ModelBuilder) => b.gemm(b.node('Relu', [b.gemm(b.node('Tanh', [b.gemm(x2(b), 3, 5, { transB: true })]), 5, 4)]), 4, 3, { transB: true });
const losses: LossSpec[] = [
  { kind: 'cross-entropy', reduction: 'mean' }, { kind: 'cross-entropy', reduction: 'sum' },
  { kind: 'mse', reduction: 'mean' }, { kind: 'mse', reduction: 'per-sample-sum' },
  { kind: 'bce-with-logits', reduction: 'mean' }, { kind: 'bce-with-logits', reduction: 'sum' },
];
for (const loss of losses) add(`3-layer MLP, ${loss.kind} ${loss.reduction}`, mlp, { loss, awayFromZero: ['gemm2'], modelSeed: 8 });

describe('autodiff: backward rules against finite differences (float64)', function () {
  let backend: Backend;
  before(async () => { backend = await createBackend('cpu'); });

  cases.forEach((c, i) => {
    it(c.name, async () => {
      const gc = c.build(1000 + i);
      const r = await gradCheck(backend, gc);
      if (process.env.KFQN_FD_VERBOSE) console.log(`      ${c.name}: ${explain(r)}`);
      // The float64 graph computes the same function as the float32 one.
      expect(Math.abs(r.loss - r.loss32), 'float32 vs float64 loss').to.be.below(1e-4 * Math.max(1, Math.abs(r.loss)));
      expect(r.maxAbsGrad, 'a non-trivial gradient').to.be.above(1e-3);
      // ... and the float32 graph's gradients agree to float32 accuracy.
      for (const q of r.params) {
        const g32 = r.result32.gradients.get(q.param)!;
        const diff = Math.max(...Array.from(q.grad, (g, k) => Math.abs(g - g32[k])));
        expect(diff, `float32 gradient of ${q.param}`).to.be.below(1e-4 * r.maxAbsGrad);
      }
      if (gc.awayFromZero) {
        if (process.env.KFQN_FD_VERBOSE) console.log(`      kink inputs: min |x| ${r.minAbsKink}, ${r.kinkSigns.negative} < 0, ${r.kinkSigns.positive} > 0`);
        expect(r.minAbsKink, 'kink inputs clear of 0').to.be.above(1e-3);
        expect(r.kinkSigns.negative, 'kink inputs on both sides of 0').to.be.above(0);
        expect(r.kinkSigns.positive, 'kink inputs on both sides of 0').to.be.above(0);
      }
      for (const q of r.params) expect(q.relError, `${q.param}: ${explain(r)}`).to.be.below(TOL);
    });
  });
});
