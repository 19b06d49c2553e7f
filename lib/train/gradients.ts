// One forward/backward evaluation of a model: the loss, every parameter gradient and every
// layer's pre-activation gradient (what `kfqn grad` prints).
import { buildTrainingGraph, encodeModel, toFloat64, type BatchNormMode, type LossSpec, type onnx, type TensorData } from '../../graph-tools/index.js';
import { RuntimeError, type Backend, type Tensor } from '../runtime/backend.js';
import { InputError } from '../errors.js';
import { checkTensor, toRuntime } from './feeds.js';

export interface GradientResult {
  loss: number;
  /** By parameter (initializer) name, flattened row-major in the initializer's layout. */
  gradients: Map<string, Float64Array>;
  /** By pre-activation value name. */
  preactivationGradients: Map<string, Float64Array>;
  /** The precision the graph ran in. */
  dtype: 'float32' | 'float64';
}

export interface GradientOptions extends LossSpec {
  inputs: Record<string, TensorData>;
  target: TensorData;
  /**
   * float64 evaluates a float64 copy of the graph, for comparison with references; float32 the
   * graph as exported. Default: float64 where the EP has float64 kernels for every op, else float32.
   */
  dtype?: 'float32' | 'float64';
  output?: string;
  source?: string;
  /** BatchNormalization with running statistics (default) or batch statistics. */
  batchnorm?: BatchNormMode;
}

export async function computeGradients(backend: Backend, model: onnx.ModelProto, opts: GradientOptions): Promise<GradientResult> {
  if (opts.dtype) return evaluate(backend, model, opts, opts.dtype);
  try {
    return await evaluate(backend, model, opts, 'float64');
  } catch (e) {
    // An op of the user's graph without a float64 kernel on this EP: evaluate as exported.
    if (e instanceof RuntimeError && /Could not find an implementation|Provider type for .* is not set/.test(e.message)) return evaluate(backend, model, opts, 'float32');
    throw e;
  }
}

async function evaluate(backend: Backend, model: onnx.ModelProto, opts: GradientOptions, dtype: 'float32' | 'float64'): Promise<GradientResult> {
  const tg = buildTrainingGraph(model, {
    kind: opts.kind, reduction: opts.reduction, output: opts.output, source: opts.source, batchnorm: opts.batchnorm,
    capture: { preactivationGradients: true },
  });
  // The types the user's tensors must have, before the graph is widened to float64.
  const declared = new Map(tg.graph.inputs.map((v) => [v.name, v.type] as const));
  if (dtype === 'float64') toFloat64(tg.graph);
  const session = await backend.createSession(encodeModel(tg.toModel()), { name: `training graph of ${opts.source ?? 'model'}` });
  try {
    const names = tg.dataInputs.map((d) => d.name);
    for (const name of Object.keys(opts.inputs)) {
      if (!names.includes(name)) throw new InputError(`unknown input '${name}'; the model's inputs are ${names.join(', ')}`);
    }
    const bound = new Map<string, number>();
    const feeds: Record<string, Tensor> = {};
    const feed = (name: string, t: TensorData, what: string) => {
      checkTensor(name, t, declared.get(name)!, bound, what);
      feeds[name] = toRuntime(backend, cast(t, tg.graph.inputs.find((v) => v.name === name)!.type.dtype));
    };
    for (const name of names) {
      const t = opts.inputs[name];
      if (!t) throw new InputError(`missing input '${name}' (give it with --input ${name}=FILE.pb)`);
      feed(name, t, `input '${name}'`);
    }
    const tt = declared.get(tg.target.name)!;
    feed(tg.target.name, opts.target, `the target (${opts.kind} expects ${tt.dtype} of shape [${tt.shape}])`);
    for (const [p, value] of tg.initialParameters) feed(p, value, `parameter '${p}'`);
    for (const [b, value] of tg.initialBuffers) feed(b, value, `running statistic '${b}'`);
    const out = await session.run(feeds);
    const read = async (name: string) => Float64Array.from(await backend.read(out[name]) as Float32Array);
    const gradients = new Map<string, Float64Array>();
    for (const [p, name] of tg.outputs.gradients) gradients.set(p, await read(name));
    const preactivationGradients = new Map<string, Float64Array>();
    for (const [h, name] of tg.outputs.preactivationGradients) preactivationGradients.set(h, await read(name));
    return { loss: (await read(tg.outputs.loss))[0], gradients, preactivationGradients, dtype };
  } finally {
    await session.release();
  }
}

function cast(t: TensorData, dtype: string): TensorData {
  if (t.dtype === dtype) return t;
  if (dtype === 'float64' && t.dtype === 'float32') return { dtype, dims: t.dims, data: Float64Array.from(t.data as Float32Array) };
  if (dtype === 'float32' && t.dtype === 'float64') return { dtype, dims: t.dims, data: Float32Array.from(t.data as Float64Array) };
  return t;
}
