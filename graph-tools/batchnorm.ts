// BatchNormalization modes. 'frozen' (the default) keeps the running statistics as constants: what
// an eval-mode export computes; scale and bias train. 'train' normalises with the batch's own
// statistics, as PyTorch's train mode does, and updates the running statistics, which become
// graph inputs and outputs ("buffers") that the trainer carries from step to step and writes back.
import type { Emitter } from './ir/emitter.js';
import { A, attrFloat, GraphError, type Graph, type Node } from './ir/graph.js';
import type { LayerReport } from './layers.js';
import type { TensorData } from './onnx/index.js';

export type BatchNormMode = 'frozen' | 'train';
export const BATCHNORM_MODES: readonly BatchNormMode[] = ['frozen', 'train'];

/** A running statistic: the graph input holding it, and the output with its updated value. */
export interface BufferUpdate { input: string; output?: string }

export const bufferOutputName = (name: string) => `kfqn:buffer:${name}`;

/**
 * Makes every trained BatchNormalization's running mean and variance graph inputs (returning their
 * initial values); with `useBatchStatistics`, rewrites each such node to normalise with batch
 * statistics and to output the updated running statistics (momentum as the node says, the
 * variance unbiased, as PyTorch updates it).
 */
export function batchNormBuffers(g: Graph, e: Emitter, report: LayerReport, useBatchStatistics: boolean):
  { buffers: BufferUpdate[]; initial: Map<string, TensorData> } {
  const buffers: BufferUpdate[] = [];
  const initial = new Map<string, TensorData>();
  for (const n of report.normalizations.filter((x) => x.kind === 'batchnorm')) {
    const node = g.nodes.find((x) => x.name === n.name)!;
    const [, , , mean, variance] = node.inputs;
    for (const stat of [mean, variance]) {
      const t = g.initializers.get(stat);
      if (!t) throw new GraphError(`node '${node.name}' (BatchNormalization): running statistic '${stat}' is not an initializer; --batchnorm train needs it to be one`);
      if (initial.has(stat)) throw new GraphError(`node '${node.name}' (BatchNormalization): running statistic '${stat}' is shared with another node`);
      initial.set(stat, t);
      g.initializers.delete(stat);
      g.inputs.push({ name: stat, type: { dtype: t.dtype, shape: t.dims } });
    }
    if (!useBatchStatistics) {
      buffers.push({ input: mean }, { input: variance });
      continue;
    }
    const [newMean, newVar] = insertBefore(g, node, () => rewrite(e, node));
    g.nodes.splice(g.nodes.indexOf(node), 1);
    buffers.push({ input: mean, output: newMean }, { input: variance, output: newVar });
  }
  return { buffers, initial };
}

/** Runs `emit` (which appends nodes) and moves what it appended to just before `node`. */
function insertBefore<T>(g: Graph, node: Node, emit: () => T): T {
  const start = g.nodes.length;
  const result = emit();
  const added = g.nodes.splice(start);
  g.nodes.splice(g.nodes.indexOf(node), 0, ...added);
  return result;
}

/** Batch-statistics BatchNormalization from standard ops; returns the updated running mean and variance. */
function rewrite(e: Emitter, node: Node): [string, string] {
  const [x, scale, bias, mean, variance] = node.inputs;
  const dtype = e.dtypeOf(x);
  const rank = e.shapeOf(x).length;
  const channels = e.shapeOf(x)[1];
  if (typeof channels !== 'number') throw new GraphError(`node '${node.name}' (BatchNormalization): the channel count of its input must be static`);
  const axes = [0, ...Array.from({ length: rank - 2 }, (_, i) => i + 2)];
  const k = (v: number) => e.constant(v, dtype);
  const perChannel = (v: string) => e.unsqueeze(v, axes);
  const batchMean = e.reduce('ReduceMean', x, axes, true);
  const centred = e.op('Sub', [x, batchMean]);
  const batchVar = e.reduce('ReduceMean', e.op('Mul', [centred, centred]), axes, true);
  const invStd = e.op('Reciprocal', [e.op('Sqrt', [e.op('Add', [batchVar, k(attrFloat(node, 'epsilon', 1e-5))])])]);
  e.g.add('Add', [e.op('Mul', [e.op('Mul', [centred, invStd]), perChannel(scale)]), perChannel(bias)], [], [node.outputs[0]]);
  // running ← momentum·running + (1 − momentum)·batch; the variance with n/(n − 1), n = N·positions.
  const momentum = attrFloat(node, 'momentum', 0.9);
  const flat = (v: string) => e.op('Reshape', [v, e.int64s([channels])]);
  const n = e.op('Div', [e.op('Cast', [e.op('Size', [x])], [A.int('to', dtype === 'float64' ? 11 : 1)]), k(channels)]);
  const unbiased = e.op('Div', [n, e.op('Sub', [n, k(1)])]);
  const update = (running: string, batch: string) => e.op('Add', [e.op('Mul', [running, k(momentum)]), e.op('Mul', [batch, k(1 - momentum)])]);
  return [update(mean, flat(batchMean)), update(variance, e.op('Mul', [flat(batchVar), unbiased]))];
}
