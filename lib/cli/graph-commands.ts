// kfqn inspect, augment and grad: graph-level commands.
import { basename } from 'node:path';
import { buildTrainingGraph, encodeModel, prepareGraph, supportedOps, type Capture } from '../../graph-tools/index.js';
import { readModelFile, readTensorFile, writeFileAtomic } from '../io/files.js';
import { createBackend } from '../runtime/node.js';
import { adam, kbfgs, kbfgsL, kfac, kfqn, kfqnL, optimizerStateReport, rmsprop, sgd, shampoo } from '../optim/index.js';
import { computeGradients } from '../train/gradients.js';
import { UsageError } from './errors.js';
import { epFrom, lossFrom, lossOptions, parse, requireModel } from './options.js';

const INSPECT_HELP = `kfqn inspect MODEL [--json]
  Lists the trainable layers (name, kind, weight and bias initializers, input and pre-activation
  values, Kronecker factor sizes; per group for grouped convolutions), the BatchNormalization scales
  and biases that train, Identity-aliased parameters that were untied, the initializers left
  constant with the reason, and each optimizer's state in bytes (at its defaults; per layer with
  --json), next to the parameters' bytes.`;

/** The optimizers whose state inspect reports, at their defaults (and KF-QN(L)'s low-memory mode). */
const STATE_REPORTED = {
  sgd: () => sgd({ momentum: 0.9 }), adam: () => adam(), rmsprop: () => rmsprop(), kfac: () => kfac(), shampoo: () => shampoo(),
  kbfgs: () => kbfgs(), 'kbfgs-l': () => kbfgsL(), kfqn: () => kfqn(), 'kfqn-l': () => kfqnL(), 'kfqn-l --a-side lbfgs': () => kfqnL({ aSide: 'lbfgs' }),
};

export async function inspect(args: string[]): Promise<void> {
  const { values, positionals } = parse(args, { json: { type: 'boolean' } }, 1);
  if (values.help) return void console.log(INSPECT_HELP);
  const path = requireModel(positionals, 'inspect');
  const model = readModelFile(path);
  const { graph, report } = prepareGraph(model, basename(path));
  const states = Object.entries(STATE_REPORTED).map(([name, make]) => ({ name, report: optimizerStateReport(model, make(), basename(path)) }));
  const layers = report.layers.map((l) => ({
    name: l.name, kind: l.kind, weight: l.weight, bias: l.bias ?? null, weight_layout: l.weightLayout,
    input: l.input, preactivation: l.preactivation, in_features: l.inFeatures, out_features: l.outFeatures,
    groups: l.groups, ...(l.kernel ? { kernel: l.kernel } : {}),
    factors: { A: [l.factors.a, l.factors.a], G: [l.factors.g, l.factors.g] },
  }));
  const paramCount = report.parameters.reduce((n, p) => n + graph.initializers.get(p)!.data.length, 0);
  const summary = {
    model: path, opset: graph.opset,
    inputs: graph.inputs.map((i) => ({ name: i.name, dtype: i.type.dtype, shape: i.type.shape ?? null })),
    outputs: graph.outputs.map((o) => ({ name: o.name, dtype: o.type.dtype, shape: graph.types.get(o.name)?.shape ?? o.type.shape ?? null })),
    layers, normalizations: report.normalizations, parameters: report.parameters, parameter_count: paramCount,
    untied: report.untied, constants: report.constants,
    parameter_bytes: states[0].report.parameterBytes,
    optimizer_state: Object.fromEntries(states.map(({ name, report: r }) => [name, {
      state_bytes: r.stateBytes, state_over_parameters: r.stateBytes / r.parameterBytes,
      layers: r.layers.map((l) => ({ layer: l.layer, parameter_bytes: l.parameterBytes, state_bytes: l.stateBytes, parts: l.parts })),
      other_parameters: { parameter_bytes: r.otherParameters.parameterBytes, state_bytes: r.otherParameters.stateBytes },
    }])),
  };
  if (values.json) return void console.log(JSON.stringify(summary, null, 2));
  console.log(`${path}: opset ${graph.opset}, ${layers.length} trainable layer(s), ${paramCount} parameters`);
  for (const l of layers) {
    console.log(`  ${l.name} [${l.kind}] ${l.input} -> ${l.preactivation}  weight ${l.weight} (${l.weight_layout})${l.bias ? `, bias ${l.bias}` : ''}  A ${l.factors.A[0]}x${l.factors.A[1]}, G ${l.factors.G[0]}x${l.factors.G[1]}${l.groups > 1 ? ` per group, ${l.groups} groups` : ''}`);
  }
  for (const n of report.normalizations) {
    console.log(`  ${n.name} [${n.kind}] scale ${n.scale}${n.bias ? `, bias ${n.bias}` : ''} (trained${n.kind === 'batchnorm' ? '; running statistics: --batchnorm frozen|train' : ''})`);
  }
  for (const u of report.untied) console.log(`  untied: '${u.parameter}' was an Identity alias of '${u.source}' (node ${u.node}); it is trained as its own parameter`);
  for (const c of report.constants) console.log(`  constant: ${c.name}: ${c.reason}`);
  console.log(`optimizer state (defaults), against ${megabytes(summary.parameter_bytes)} of parameters:`);
  for (const { name, report: r } of states) console.log(`  ${name.padEnd(22)} ${megabytes(r.stateBytes).padStart(10)}  (${(r.stateBytes / r.parameterBytes).toFixed(2)}× the parameters)`);
}

const megabytes = (bytes: number) => `${(bytes / 2 ** 20).toFixed(2)} MiB`;

const AUGMENT_HELP = `kfqn augment MODEL --loss cross-entropy|mse|bce-with-logits [--reduction mean|sum|per-sample-sum] -o TRAIN.onnx
  Writes the training graph: inputs are the model's inputs, 'kfqn:target' and every trainable
  parameter; outputs 'kfqn:loss' and 'kfqn:grad:<parameter>'.
  --capture LIST   also output, per layer (comma-separated): activations, preactivations,
                   preactivation-gradients, as kfqn:act:<value>, kfqn:preact:<value>, kfqn:dpreact:<value>;
                   and Kronecker statistics, per layer and group, computed in the graph:
                   a-factors  kfqn:A:<layer> = (1/M) ÃᵀÃ                [groups, d_a, d_a]
                   means      kfqn:abar:<layer>, kfqn:hbar:<layer>, kfqn:gbar:<layer> (ā, h̄, mean of M·dL/dh)
                   hessian-action  input kfqn:v:<layer> [groups, d_a] → kfqn:Av:<layer> = (1/M) Ãᵀ(Ã v)
  --output NAME    the model output the loss applies to (default: the first)
  --batchnorm frozen|train   running statistics as constants (default) or batch statistics`;

export async function augment(args: string[]): Promise<void> {
  const { values, positionals } = parse(args, { ...lossOptions, out: { type: 'string', short: 'o' }, capture: { type: 'string' } }, 1);
  if (values.help) return void console.log(AUGMENT_HELP);
  const path = requireModel(positionals, 'augment');
  const out = values.out as string | undefined;
  if (!out) throw new UsageError('augment needs -o TRAIN.onnx');
  const capture: Capture = {};
  for (const c of ((values.capture as string | undefined) ?? '').split(',').filter(Boolean)) {
    if (c === 'activations') capture.activations = true;
    else if (c === 'preactivations') capture.preactivations = true;
    else if (c === 'preactivation-gradients') capture.preactivationGradients = true;
    else if (c === 'a-factors') capture.statistics = { ...capture.statistics, factors: true };
    else if (c === 'means') capture.statistics = { ...capture.statistics, means: true };
    else if (c === 'hessian-action') capture.statistics = { ...capture.statistics, hessianAction: true };
    else throw new UsageError(`--capture takes activations, preactivations, preactivation-gradients, a-factors, means, hessian-action; got '${c}'`);
  }
  const tg = buildTrainingGraph(readModelFile(path), { ...lossFrom(values), capture, source: basename(path) });
  writeFileAtomic(out, encodeModel(tg.toModel()));
  console.log(`wrote ${out}: inputs ${tg.graph.inputs.map((i) => i.name).join(', ')}; outputs ${tg.graph.outputs.map((o) => o.name).join(', ')}`);
}

const GRAD_HELP = `kfqn grad MODEL --loss cross-entropy|mse|bce-with-logits [--reduction mean|sum|per-sample-sum]
          --input NAME=FILE.pb [--input ...] --target FILE.pb [--json] [--float32] [--ep cpu|wasm|webgpu|cuda]
  One forward and backward pass. Prints the loss, the gradient of every trainable initializer
  (flattened row-major in the initializer's layout) and of every layer's pre-activation.
  FILE.pb: an ONNX TensorProto (onnx.numpy_helper.from_array(a).SerializeToString()).
  Targets: int64 class ids [N] for cross-entropy; the output's shape and dtype otherwise.
  Computes in float64 (the graph is widened) unless --float32 or an op has no float64 kernel.
  --batchnorm frozen|train: BatchNormalization with running statistics (default) or batch statistics.
  Supported ops on the gradient path: ${supportedOps().join(', ')}.`;

export async function grad(args: string[]): Promise<void> {
  const { values, positionals } = parse(args, {
    ...lossOptions, input: { type: 'string', multiple: true }, target: { type: 'string' }, json: { type: 'boolean' },
    float32: { type: 'boolean' }, ep: { type: 'string' },
  }, 1);
  if (values.help) return void console.log(GRAD_HELP);
  const path = requireModel(positionals, 'grad');
  const spec = lossFrom(values);
  const inputs: Record<string, ReturnType<typeof readTensorFile>> = {};
  for (const item of (values.input as string[] | undefined) ?? []) {
    const eq = item.indexOf('=');
    if (eq <= 0) throw new UsageError(`--input takes NAME=FILE.pb; got '${item}'`);
    inputs[item.slice(0, eq)] = readTensorFile(item.slice(eq + 1));
  }
  if (!values.target) throw new UsageError('grad needs --target FILE.pb');
  const target = readTensorFile(values.target as string);
  const model = readModelFile(path);
  const backend = await createBackend(epFrom(values.ep));
  const r = await computeGradients(backend, model, { ...spec, inputs, target, dtype: values.float32 ? 'float32' : undefined, source: basename(path) });
  if (values.json) {
    const obj = (m: Map<string, Float64Array>) => Object.fromEntries([...m].map(([k, v]) => [k, Array.from(v)]));
    console.log(JSON.stringify({ loss: r.loss, gradients: obj(r.gradients), preactivation_gradients: obj(r.preactivationGradients) }));
    return;
  }
  const norm = (v: Float64Array) => Math.sqrt(v.reduce((s, x) => s + x * x, 0));
  console.log(`loss ${r.loss} (${r.dtype})`);
  for (const [k, v] of r.gradients) console.log(`  d/d ${k}: ${v.length} values, norm ${norm(v).toExponential(4)}`);
  for (const [k, v] of r.preactivationGradients) console.log(`  d/d ${k} (pre-activation): ${v.length} values, norm ${norm(v).toExponential(4)}`);
}
