// Checks kfqn's parameter gradients (computeGradients, float64) against central finite
// differences of the float64 training graph's loss, with every entry of every parameter perturbed.
import { buildTrainingGraph, encodeModel, LOSS_OUTPUT, onnx, toFloat64, type BatchNormMode, type LossSpec, type TensorData } from '../../graph-tools/index.js';
import type { Backend, Tensor, TensorType } from '../../lib/runtime/backend.js';
import { computeGradients, type GradientResult } from '../../lib/train/gradients.js';
import { Rng, tensor } from './models.js';

export interface GradCase {
  model: onnx.ModelProto;
  inputs: Record<string, TensorData>;
  /** Default mse with 'sum'. */
  loss?: LossSpec;
  /** Default: random, of the model output's shape (class ids for cross-entropy). */
  target?: TensorData;
  /** float32 values that must stay clear of 0 (inputs of Relu, LeakyRelu, Elu: their kinks). */
  awayFromZero?: string[];
  seed?: number;
  /** Finite-difference step; default 1e-6. */
  h?: number;
  /** BatchNormalization mode of the training graph (default frozen). */
  batchnorm?: BatchNormMode;
}

export interface ParamCheck {
  param: string; grad: Float64Array; fd: Float64Array; maxAbsDiff: number; maxAbsFd: number;
  /** maxAbsDiff / max(maxAbsFd, 1e-3 · the largest |fd| of all parameters). */
  relError: number;
}

export interface GradCheckResult {
  loss: number;
  /** The float32 training graph's loss (validates the float64 rewrite of the graph). */
  loss32: number;
  result: GradientResult;
  result32: GradientResult;
  params: ParamCheck[];
  /** Largest |kfqn − fd| over all parameters, relative to the largest |fd| over all parameters. */
  relError: number;
  maxAbsGrad: number;
  /** Smallest |v| over the awayFromZero values, and how many of them are negative / positive. */
  minAbsKink: number;
  kinkSigns: { negative: number; positive: number };
}

function toRuntime(backend: Backend, t: TensorData): Tensor {
  return backend.tensor(t.dtype as TensorType, t.data as never, t.dims);
}

/** Runs the (float32) model as is, returning the graph output and the named intermediate values. */
export async function inferValues(backend: Backend, model: onnx.ModelProto, inputs: Record<string, TensorData>, extra: string[] = []): Promise<Map<string, TensorData>> {
  const copy = onnx.ModelProto.decode(encodeModel(model));
  const g = copy.graph!;
  const out0 = g.output![0].name!;
  g.output = [g.output![0], ...extra.map((name) => onnx.ValueInfoProto.create({ name, type: { tensorType: { elemType: onnx.TensorProto.DataType.FLOAT } } }))];
  const session = await backend.createSession(encodeModel(copy), { name: 'inference' });
  try {
    const feeds = Object.fromEntries(Object.entries(inputs).map(([k, v]) => [k, toRuntime(backend, v)]));
    const out = await session.run(feeds);
    const values = new Map<string, TensorData>();
    for (const name of [out0, ...extra]) {
      const t = out[name];
      values.set(name, { dtype: t.type as TensorData['dtype'], dims: [...t.dims], data: (await backend.read(t)) as TensorData['data'] });
    }
    return values;
  } finally {
    await session.release();
  }
}

/** A random target for the loss, shaped after the model output's run-time shape. */
export function randomTarget(loss: LossSpec, outDims: number[], rng: Rng): TensorData {
  const n = outDims.reduce((a, d) => a * d, 1);
  if (loss.kind === 'cross-entropy') return tensor([outDims[0]], Array.from({ length: outDims[0] }, () => rng.int(outDims[1])), 'int64');
  if (loss.kind === 'bce-with-logits') return tensor(outDims, Array.from({ length: n }, () => Math.fround(rng.next())));
  return tensor(outDims, rng.array(n, -1, 1));
}

/** A float64 session of the training graph that outputs only the loss, for finite differences. */
export async function lossEvaluator(backend: Backend, model: onnx.ModelProto, loss: LossSpec & { batchnorm?: BatchNormMode }, inputs: Record<string, TensorData>, target: TensorData) {
  const tg = buildTrainingGraph(model, { ...loss, capture: { gradients: false } });
  toFloat64(tg.graph);
  const session = await backend.createSession(encodeModel(tg.toModel()), { name: 'fd loss' });
  const widen = (t: TensorData): TensorData => (t.dtype === 'float32' ? { dtype: 'float64', dims: t.dims, data: Float64Array.from(t.data as Float32Array) } : t);
  const fixed: Record<string, Tensor> = {};
  for (const d of tg.dataInputs) fixed[d.name] = toRuntime(backend, widen(inputs[d.name]));
  fixed[tg.target.name] = toRuntime(backend, widen(target));
  for (const [b, v] of tg.initialBuffers) fixed[b] = toRuntime(backend, widen(v));
  const params = new Map([...tg.initialParameters].map(([p, v]) => [p, widen(v)] as const));
  return {
    params,
    async loss(values: Map<string, TensorData>): Promise<number> {
      const feeds = { ...fixed };
      for (const [p, t] of values) feeds[p] = toRuntime(backend, t);
      const out = await session.run(feeds, [LOSS_OUTPUT]);
      return (await backend.read(out[LOSS_OUTPUT]))[0] as number;
    },
    release: () => session.release(),
  };
}

export async function gradCheck(backend: Backend, c: GradCase): Promise<GradCheckResult> {
  const loss = { ...(c.loss ?? { kind: 'mse', reduction: 'sum' } as LossSpec), batchnorm: c.batchnorm };
  const rng = new Rng(c.seed ?? 7);
  const values = await inferValues(backend, c.model, c.inputs, c.awayFromZero ?? []);
  const out = values.get(c.model.graph!.output![0].name!)!;
  const target = c.target ?? randomTarget(loss, out.dims, rng);
  let minAbsKink = Infinity;
  const kinkSigns = { negative: 0, positive: 0 };
  for (const v of c.awayFromZero ?? []) {
    for (const x of values.get(v)!.data as Float32Array) {
      minAbsKink = Math.min(minAbsKink, Math.abs(x));
      if (x < 0) kinkSigns.negative++; else kinkSigns.positive++;
    }
  }

  const opts = { ...loss, inputs: c.inputs, target };
  const result = await computeGradients(backend, c.model, opts);
  const result32 = await computeGradients(backend, c.model, { ...opts, dtype: 'float32' });

  const h = c.h ?? 1e-6;
  const ev = await lossEvaluator(backend, c.model, loss, c.inputs, target);
  const params: ParamCheck[] = [];
  try {
    for (const [p, base] of ev.params) {
      const fd = new Float64Array(base.data.length);
      for (let i = 0; i < fd.length; i++) {
        const at = async (delta: number) => {
          const data = Float64Array.from(base.data as Float64Array);
          data[i] += delta;
          return ev.loss(new Map([...ev.params, [p, { ...base, data }]]));
        };
        fd[i] = ((await at(h)) - (await at(-h))) / (2 * h);
      }
      const grad = result.gradients.get(p)!;
      let maxAbsDiff = 0; let maxAbsFd = 0;
      for (let i = 0; i < fd.length; i++) {
        maxAbsDiff = Math.max(maxAbsDiff, Math.abs(grad[i] - fd[i]));
        maxAbsFd = Math.max(maxAbsFd, Math.abs(fd[i]));
      }
      params.push({ param: p, grad, fd, maxAbsDiff, maxAbsFd, relError: NaN });
    }
  } finally {
    await ev.release();
  }
  const maxAbsFd = Math.max(...params.map((q) => q.maxAbsFd));
  // Relative to the tensor's own largest |fd|, floored at 1e-3 of the largest over all parameters
  // (a tensor can have an exactly zero gradient, e.g. a bias that Softmax is invariant to).
  for (const q of params) q.relError = q.maxAbsDiff / Math.max(q.maxAbsFd, 1e-3 * maxAbsFd, 1e-12);
  const maxAbsGrad = Math.max(...params.map((q) => Math.max(...Array.from(q.grad, Math.abs))));
  return {
    loss: result.loss, loss32: result32.loss, result, result32, params,
    relError: Math.max(...params.map((q) => q.maxAbsDiff)) / Math.max(maxAbsFd, 1e-12), maxAbsGrad, minAbsKink, kinkSigns,
  };
}

/** A one-line description of the worst parameter, for assertion messages. */
export function explain(r: GradCheckResult): string {
  return r.params.map((q) => {
    let worst = 0;
    for (let i = 0; i < q.fd.length; i++) if (Math.abs(q.grad[i] - q.fd[i]) > Math.abs(q.grad[worst] - q.fd[worst])) worst = i;
    return `${q.param}: rel ${q.relError.toExponential(2)} (max|fd| ${q.maxAbsFd.toExponential(2)}; worst [${worst}] kfqn ${q.grad[worst]} fd ${q.fd[worst]})`;
  }).join('; ');
}
