// Loss subgraphs with their closed-form gradient with respect to the model output, so the
// backward pass starts from dL/dy without differentiating through the loss ops.
import { A, GraphError, type Dim } from './ir/graph.js';
import type { Emitter } from './ir/emitter.js';
import type { DataType } from './onnx/index.js';

export const LOSSES = ['cross-entropy', 'mse', 'bce-with-logits'] as const;
export const REDUCTIONS = ['mean', 'sum', 'per-sample-sum'] as const;
export type LossKind = (typeof LOSSES)[number];
/** mean: over all elements (PyTorch's default); sum; per-sample-sum: summed per sample, averaged over the batch. */
export type Reduction = (typeof REDUCTIONS)[number];

export interface LossSpec { kind: LossKind; reduction: Reduction }

export interface LossValues { loss: string; dOutput: string }

/** The target a loss expects for a given model output: dtype and shape. */
export function targetType(spec: LossSpec, outputDtype: DataType, outputShape: Dim[]): { dtype: DataType; shape: Dim[] } {
  if (spec.kind === 'cross-entropy') {
    if (outputShape.length !== 2) throw new GraphError(`cross-entropy needs logits of shape [batch, classes]; the output has shape [${outputShape}]`);
    return { dtype: 'int64', shape: [outputShape[0]] };
  }
  return { dtype: outputDtype, shape: outputShape };
}

/** Emits the loss of `output` against `target`, and dLoss/dOutput. */
export function emitLoss(e: Emitter, spec: LossSpec, output: string, target: string): LossValues {
  const dtype = e.dtypeOf(output);
  const shape = e.shapeOf(output);
  const one = (v: number) => e.constant(v, dtype);
  // The reduction's scale: 1/elements, 1 or 1/batch; computed at run time as the batch is dynamic.
  const castF = (x: string) => e.op('Cast', [x], [A.int('to', dtype === 'float64' ? 11 : 1)]);
  const perElement = spec.kind === 'cross-entropy' ? spec.reduction !== 'sum' : spec.reduction === 'mean';
  const scale = spec.reduction === 'sum' ? undefined
    : perElement && spec.kind !== 'cross-entropy' ? e.op('Reciprocal', [castF(e.op('Size', [output]))])
      : e.op('Reciprocal', [castF(e.op('Gather', [e.op('Shape', [output]), e.constant(0, 'int64')], [A.int('axis', 0)]))]);
  const scaled = (x: string) => (scale ? e.op('Mul', [x, scale]) : x);
  const total = (x: string) => {
    const s = e.reduce('ReduceSum', x, null, false);
    return scale ? e.op('Mul', [s, scale]) : s;
  };

  switch (spec.kind) {
    case 'cross-entropy': {
      const classes = shape[1];
      if (typeof classes !== 'number') throw new GraphError('cross-entropy needs a static number of classes');
      const shifted = e.op('Sub', [output, e.reduce('ReduceMax', output, [1], true)]);
      const logp = e.op('Sub', [shifted, e.op('Log', [e.reduce('ReduceSum', e.op('Exp', [shifted]), [1], true)])]);
      // One-hot by comparison with 0..C−1: OneHot has no float64 kernel in ORT.
      const classIds = e.constant([...Array(classes).keys()], 'int64', [1, classes]);
      const onehot = e.op('Cast', [e.op('Equal', [e.unsqueeze(target, [1]), classIds])], [A.int('to', dtype === 'float64' ? 11 : 1)]);
      const loss = e.op('Neg', [total(e.op('Mul', [logp, onehot]))]);
      return { loss, dOutput: scaled(e.op('Sub', [e.op('Exp', [logp]), onehot])) };
    }
    case 'mse': {
      const diff = e.op('Sub', [output, target]);
      return { loss: total(e.op('Mul', [diff, diff])), dOutput: scaled(e.op('Mul', [diff, one(2)])) };
    }
    case 'bce-with-logits': {
      // ℓ = max(x,0) − x·t + log(1 + e^−|x|), stable for large |x|; dℓ/dx = σ(x) − t.
      // (Softplus would do the last term but has no float64 kernel in ORT.)
      const x = output;
      const elem = e.op('Add', [
        e.op('Sub', [e.op('Relu', [x]), e.op('Mul', [x, target])]),
        e.op('Log', [e.op('Add', [one(1), e.op('Exp', [e.op('Neg', [e.op('Abs', [x])])])])]),
      ]);
      return { loss: total(elem), dOutput: scaled(e.op('Sub', [e.op('Sigmoid', [x]), target])) };
    }
  }
}

/**
 * A target drawn from the model's predictive distribution at `output` (the true Fisher's, for
 * KFAC, ALGORITHMS.md §7.4): Bernoulli(σ(x)) for bce-with-logits, Categorical(softmax(x)) for
 * cross-entropy, and for mse (loss (x−t)², a Gaussian of variance ½) x + N(0, ½). Seeded, so a
 * session draws the same sequence every time it is created.
 */
export function emitSampledTarget(e: Emitter, spec: LossSpec, output: string, seed = 0): string {
  const dtype = e.dtypeOf(output);
  switch (spec.kind) {
    case 'bce-with-logits': {
      const u = e.op('RandomUniformLike', [output], [A.float('seed', seed)]);
      return e.op('Cast', [e.op('Less', [u, e.op('Sigmoid', [output])])], [A.int('to', dtype === 'float64' ? 11 : 1)]);
    }
    case 'cross-entropy': {
      // Multinomial has float kernels only; logits are unnormalised log-probabilities.
      const logits = dtype === 'float64' ? e.op('Cast', [output], [A.int('to', 1)]) : output;
      const draws = e.op('Multinomial', [logits], [A.int('sample_size', 1), A.int('dtype', 7), A.float('seed', seed)]);
      return e.op('Reshape', [draws, e.int64s([-1])]);
    }
    case 'mse':
      return e.op('Add', [output, e.op('RandomNormalLike', [output], [A.float('scale', Math.SQRT1_2), A.float('seed', seed)])]);
  }
}
