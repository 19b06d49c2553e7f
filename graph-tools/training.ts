// Turns a user's inference graph into a training graph: data inputs, the target and every
// trainable parameter as pure graph inputs; the loss, parameter gradients and, on request, each
// layer's activations, pre-activations and pre-activation gradients as outputs.
import { backward, gradientPath, type Gradients } from './autodiff/index.js';
import { Emitter } from './ir/emitter.js';
import { A, Graph, GraphError, type ValueInfo } from './ir/graph.js';
import { inferShapes } from './ir/shapes.js';
import { findLayers, requireLayers, type LayerReport } from './layers.js';
import { emitLoss, emitSampledTarget, targetType, type LossSpec } from './losses.js';
import { decomposeLayerNorms } from './layernorm.js';
import { batchNormBuffers, bufferOutputName, type BatchNormMode, type BufferUpdate } from './batchnorm.js';
import { emitLayerStatistics, statName, type LayerStatistics, type StatisticsRequest } from './statistics.js';
import type { onnx, DataType, TensorData } from './onnx/index.js';

export interface Capture {
  /** Emit each layer's input activation a. */
  activations?: boolean;
  /** Emit each layer's pre-activation h. */
  preactivations?: boolean;
  /** Emit dL/dh for each layer's pre-activation. */
  preactivationGradients?: boolean;
  /** Emit parameter gradients (default true). */
  gradients?: boolean;
  /** Emit per-layer Kronecker statistics (statistics.ts); the Hessian action adds an input per layer. */
  statistics?: StatisticsRequest;
}

export interface TrainingGraphOptions extends LossSpec {
  /** Which model output the loss applies to; default the first. */
  output?: string;
  /** BatchNormalization: running statistics as constants (default), or batch statistics (batchnorm.ts). */
  batchnorm?: BatchNormMode;
  /**
   * true: the loss is taken against targets sampled from the model's predictive distribution
   * (losses.ts emitSampledTarget; KFAC's Fisher statistics); the target input stays declared.
   */
  sampleTargets?: boolean;
  /** false: build no parameter gradients at all (a pass that needs only ∂L/∂h); default true. */
  parameterGradients?: boolean;
  capture?: Capture;
  source?: string;
}

/** Output names of the training graph, by what they hold. */
export interface TrainingOutputs {
  loss: string;
  gradients: Map<string, string>;
  activations: Map<string, string>;
  preactivations: Map<string, string>;
  preactivationGradients: Map<string, string>;
  /** By layer name: statistic output names, and the input name of v for the Hessian action. */
  statistics: Map<string, LayerStatistics>;
}

export interface TrainingGraph {
  /** The graph under construction; optimizers may append to it before serialising. */
  graph: Graph;
  emitter: Emitter;
  report: LayerReport;
  /** Initial parameter values, Identity aliases already untied (findLayers). */
  initialParameters: Map<string, TensorData>;
  /** BatchNormalization running statistics fed as inputs ('train' mode), with the outputs that update them. */
  buffers: BufferUpdate[];
  initialBuffers: Map<string, TensorData>;
  dataInputs: ValueInfo[];
  target: ValueInfo;
  output: ValueInfo;
  outputs: TrainingOutputs;
  grads: Gradients;
  toModel(): onnx.ModelProto;
}

export const TARGET_INPUT = 'kfqn:target';
export const LOSS_OUTPUT = 'kfqn:loss';
export const outName = {
  grad: (p: string) => `kfqn:grad:${p}`,
  activation: (v: string) => `kfqn:act:${v}`,
  preactivation: (v: string) => `kfqn:preact:${v}`,
  preactivationGrad: (v: string) => `kfqn:dpreact:${v}`,
};

/** Minimum ai.onnx opset: Reshape with a shape input, OneHot, Where. */
export const MIN_OPSET = 9;

export function prepareGraph(model: onnx.IModelProto, source = 'model'): { graph: Graph; report: LayerReport } {
  const graph = Graph.fromModel(model, source);
  if (graph.opset < MIN_OPSET) throw new GraphError(`${source}: ai.onnx opset ${graph.opset} is too old; kfqn needs opset ${MIN_OPSET} or newer (re-export the model)`);
  dropUnusedOptionalOutputs(graph);
  const report = findLayers(graph);
  inferShapes(graph);
  return { graph, report };
}

/** The shared start of training and evaluation graphs: parameters as inputs, target, loss. */
interface LossGraph {
  g: Graph; e: Emitter; report: LayerReport; initialParameters: Map<string, TensorData>;
  buffers: BufferUpdate[]; initialBuffers: Map<string, TensorData>;
  dataInputs: ValueInfo[]; target: ValueInfo; output: ValueInfo; loss: string; dOutput: string;
}

function lossGraph(model: onnx.IModelProto, opts: TrainingGraphOptions, differentiable: boolean): LossGraph {
  const source = opts.source ?? 'model';
  const { graph: g, report } = prepareGraph(model, source);
  requireLayers(report, source);
  const e = new Emitter(g);
  // Train-mode BatchNormalization: running statistics become inputs; the training graph also
  // normalises with batch statistics and outputs the updated running statistics.
  const bn = opts.batchnorm === 'train' ? batchNormBuffers(g, e, report, differentiable) : { buffers: [], initial: new Map<string, TensorData>() };
  const rewritten = decomposeLayerNorms(g, e);
  if (rewritten || bn.buffers.some((b) => b.output)) inferShapes(g);

  const output = opts.output ? g.outputs.find((o) => o.name === opts.output) : g.outputs[0];
  if (!output) throw new GraphError(`${source}: no graph output named '${opts.output}'; outputs: ${g.outputs.map((o) => o.name).join(', ')}`);
  if (differentiable) gradientPath(g, report.parameters, output.name); // unsupported ops fail here, before shapes are needed
  const outType = g.types.get(output.name) ?? output.type;
  if (!outType.shape) throw new GraphError(`${source}: the shape of output '${output.name}' is unknown`);
  const dataInputs = g.inputs.filter((v) => !bn.initial.has(v.name));
  const target: ValueInfo = { name: TARGET_INPUT, type: targetType(opts, outType.dtype, outType.shape) };
  g.types.set(target.name, target.type);

  // Parameters become pure graph inputs (ORT ignores feeds for initializers listed as inputs).
  const initialParameters = new Map(report.parameters.map((p) => [p, g.initializers.get(p)!] as const));
  const paramInputs: ValueInfo[] = report.parameters.map((p) => {
    const t = initialParameters.get(p)!;
    g.initializers.delete(p);
    return { name: p, type: { dtype: t.dtype, shape: t.dims } };
  });
  g.inputs = [...dataInputs, target, ...paramInputs, ...g.inputs.filter((v) => bn.initial.has(v.name))];
  const { loss, dOutput } = emitLoss(e, opts, output.name, opts.sampleTargets ? emitSampledTarget(e, opts, output.name) : target.name);
  g.outputs = [];
  return { g, e, report, initialParameters, buffers: bn.buffers, initialBuffers: bn.initial, dataInputs, target, output: { name: output.name, type: outType }, loss, dOutput };
}

/** Adds an Identity to a public output name; only static shapes are declared (onnxruntime-web rejects a mismatch). */
function emitOutput(g: Graph, value: string, name: string, dtype: DataType, shape?: number[]): void {
  g.add('Identity', [value], [], [name]);
  g.outputs.push({ name, type: { dtype, shape } });
}

export interface EvaluationGraph {
  model: onnx.ModelProto;
  initialParameters: Map<string, TensorData>;
  /** Running statistics fed as inputs (in 'train' BatchNormalization mode). */
  buffers: BufferUpdate[];
  dataInputs: ValueInfo[];
  target: ValueInfo;
  output: ValueInfo;
  /** Output names: the batch loss, and for cross-entropy the number of correct argmax predictions. */
  outputs: { loss: string; correct?: string };
}

export const CORRECT_OUTPUT = 'kfqn:correct';

/** Forward pass and loss only (no backward), for evaluation on held-out data. */
export function buildEvaluationGraph(model: onnx.IModelProto, opts: TrainingGraphOptions): EvaluationGraph {
  const lg = lossGraph(model, opts, false);
  const { g, e } = lg;
  emitOutput(g, lg.loss, LOSS_OUTPUT, lg.output.type.dtype, []);
  let correct: string | undefined;
  if (opts.kind === 'cross-entropy') {
    const predicted = e.op('ArgMax', [lg.output.name], [A.int('axis', 1), A.int('keepdims', 0)]);
    const hits = e.op('Cast', [e.op('Equal', [predicted, lg.target.name])], [A.int('to', 1)]);
    emitOutput(g, e.reduce('ReduceSum', hits, null, false), CORRECT_OUTPUT, 'float32', []);
    correct = CORRECT_OUTPUT;
  }
  return {
    model: g.toModel(), initialParameters: lg.initialParameters, buffers: lg.buffers, dataInputs: lg.dataInputs, target: lg.target, output: lg.output,
    outputs: { loss: LOSS_OUTPUT, correct },
  };
}

/**
 * Removes MaxPool's Indices and Dropout's mask when nothing reads them: exporters often declare
 * them, and the WebGPU EP cannot produce MaxPool's Indices.
 */
function dropUnusedOptionalOutputs(g: Graph): void {
  const used = new Set([...g.nodes.flatMap((n) => n.inputs), ...g.outputs.map((o) => o.name)]);
  for (const node of g.nodes) {
    if ((node.opType === 'MaxPool' || node.opType === 'Dropout') && node.outputs[1] && !used.has(node.outputs[1])) node.outputs = [node.outputs[0]];
  }
}

export function buildTrainingGraph(model: onnx.IModelProto, opts: TrainingGraphOptions): TrainingGraph {
  const source = opts.source ?? 'model';
  const { g, e, report, initialParameters, buffers, initialBuffers, dataInputs, target, output, loss, dOutput } = lossGraph(model, opts, true);
  const outType = output.type;
  // Parameter gradients are built when output or when an optimizer fused into the graph uses them.
  const grads = backward(g, e, report.parameters, output.name, dOutput, { parameterGradients: opts.parameterGradients ?? true });

  const capture = { gradients: opts.parameterGradients ?? true, ...opts.capture };
  if (capture.gradients && opts.parameterGradients === false) throw new GraphError('parameter gradients were asked for as outputs but parameterGradients is false');
  const outputs: TrainingOutputs = {
    loss: LOSS_OUTPUT, gradients: new Map(), activations: new Map(), preactivations: new Map(), preactivationGradients: new Map(),
    statistics: new Map(),
  };
  const emitOut = (value: string, name: string, dtype: DataType, shape?: number[]) => emitOutput(g, value, name, dtype, shape);
  emitOut(loss, LOSS_OUTPUT, outType.dtype, []);
  const publicBuffers = buffers.map((b) => {
    const t = initialBuffers.get(b.input)!;
    emitOut(b.output!, bufferOutputName(b.input), t.dtype, t.dims);
    return { input: b.input, output: bufferOutputName(b.input) };
  });
  for (const p of capture.gradients ? report.parameters : []) {
    const t = initialParameters.get(p)!;
    const grad = grads.of(p) ?? e.constant(new Array(t.data.length).fill(0), t.dtype, t.dims);
    emitOut(grad, outName.grad(p), t.dtype, t.dims);
    outputs.gradients.set(p, outName.grad(p));
  }
  const typeOf = (v: string) => g.types.get(v) ?? { dtype: outType.dtype, shape: undefined };
  for (const layer of report.layers) {
    if (capture.activations && !outputs.activations.has(layer.input)) {
      emitOut(layer.input, outName.activation(layer.input), typeOf(layer.input).dtype);
      outputs.activations.set(layer.input, outName.activation(layer.input));
    }
    const h = layer.preactivation;
    if (capture.preactivations) {
      emitOut(h, outName.preactivation(h), typeOf(h).dtype);
      outputs.preactivations.set(h, outName.preactivation(h));
    }
    if (capture.preactivationGradients) {
      const dh = grads.of(h);
      if (!dh) throw new GraphError(`${source}: layer '${layer.name}' does not reach output '${output.name}'`);
      emitOut(dh, outName.preactivationGrad(h), typeOf(h).dtype);
      outputs.preactivationGradients.set(h, outName.preactivationGrad(h));
    }
    if (capture.statistics) {
      // g = M·∂L/∂h for mean-type reductions; a sum-reduced loss's ∂L/∂h already is per sample.
      const request = { perSampleGradient: opts.reduction === 'sum' ? 'as-is' as const : 'times-batch' as const, ...capture.statistics };
      const values = emitLayerStatistics(g, e, layer, grads, request);
      const names: LayerStatistics = {};
      const { groups, factors } = layer;
      const dtype = typeOf(layer.input).dtype;
      const declare = (key: 'a' | 'abar' | 'hbar' | 'gbar' | 'av' | 'g' | 'adiag', shape: number[]) => {
        if (!values[key]) return;
        names[key] = statName[key](layer.name);
        emitOut(values[key]!, names[key]!, dtype, shape);
      };
      declare('a', [groups, factors.a, factors.a]);
      declare('abar', [groups, factors.a]);
      declare('hbar', [groups * factors.g]);
      declare('gbar', [groups * factors.g]);
      declare('av', [groups, factors.a]);
      declare('g', [groups, factors.g, factors.g]);
      declare('adiag', [groups, factors.a]);
      if (values.v) {
        names.v = values.v;
        g.inputs.push({ name: values.v, type: { dtype, shape: [groups, factors.a] } });
      }
      outputs.statistics.set(layer.name, names);
    }
  }
  return {
    graph: g, emitter: e, report, initialParameters, buffers: publicBuffers, initialBuffers, dataInputs, target, output, outputs, grads,
    toModel: () => g.toModel(),
  };
}
