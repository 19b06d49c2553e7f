// Reverse-mode differentiation of an ONNX graph into standard ONNX ops.
import { Emitter } from '../ir/emitter.js';
import { GraphError, type Graph, type Node } from '../ir/graph.js';
import { gradientEntry, supportedOps } from './registry.js';
import './linear.js';
import './elementwise.js';
import './shape.js';
import './pooling.js';
import './tensor-ops.js';
import './conv.js';
import './normalization.js';
import './reduce.js';

export { supportedOps };

const FLOAT = new Set(['float32', 'float64', 'float16']);

export interface Gradients {
  /** The name of the value holding dLoss/dv, or undefined when v does not reach the loss. */
  of(v: string): string | undefined;
}

/**
 * The nodes between the parameters and `seed` in graph order, and the values on that path.
 * Throws, naming the node and op, when one of them has no backward rule.
 */
export function gradientPath(g: Graph, params: string[], seed: string): { nodes: Node[]; values: Set<string> } {
  const forward = g.nodes;
  // Values that depend on a parameter through differentiable inputs.
  const requires = new Set(params);
  for (const node of forward) {
    const entry = gradientEntry(node.opType);
    const inputs = entry ? entry.differentiable(node) : node.inputs.map((_, i) => i);
    if (!inputs.some((i) => requires.has(node.inputs[i]))) continue;
    for (const o of node.outputs) if (o && FLOAT.has(g.types.get(o)?.dtype ?? 'float32')) requires.add(o);
  }
  // Of those, the values the seed depends on.
  const values = new Set<string>([seed]);
  for (let i = forward.length - 1; i >= 0; i--) {
    const node = forward[i];
    if (!node.outputs.some((o) => values.has(o))) continue;
    for (const v of node.inputs) if (requires.has(v)) values.add(v);
  }
  const nodes = forward.filter((n) => n.outputs.some((o) => values.has(o)) && n.inputs.some((v) => values.has(v)));
  const unsupported = nodes.find((n) => !gradientEntry(n.opType));
  if (unsupported) {
    const n = unsupported;
    throw new GraphError(`node '${n.name}' (${n.opType}) lies between a trainable parameter and the loss, and kfqn has no backward rule for ${n.opType}. `
      + `Supported on that path: ${supportedOps().join(', ')}.`);
  }
  return { nodes, values };
}

/**
 * Appends the backward pass for d(seed value)/d(parameters) to `g`, seeded with `seedGrad` as the
 * gradient of `seed`. Returns a lookup from forward values to their gradient values.
 */
export function backward(g: Graph, e: Emitter, params: string[], seed: string, seedGrad: string, opts: { parameterGradients?: boolean } = {}): Gradients {
  const { nodes: onPath, values: relevant } = gradientPath(g, params, seed);
  // Without parameter gradients (K-BFGS's second pass needs only ∂L/∂h), no rule builds them.
  const skip = opts.parameterGradients === false ? new Set(params) : new Set<string>();

  const contributions = new Map<string, string[]>([[seed, [seedGrad]]]);
  const summed = new Map<string, string>();
  const gradOf = (v: string): string | undefined => {
    const cached = summed.get(v);
    if (cached) return cached;
    const parts = contributions.get(v);
    if (!parts) return undefined;
    const s = e.sum(parts);
    summed.set(v, s);
    return s;
  };

  for (let i = onPath.length - 1; i >= 0; i--) {
    const node: Node = onPath[i];
    const dOut = node.outputs.map((o) => (relevant.has(o) ? gradOf(o) : undefined));
    if (dOut.every((d) => d === undefined)) continue;
    const entry = gradientEntry(node.opType)!;
    const diff = entry.differentiable(node);
    const wanted = node.inputs.map((v, k) => diff.includes(k) && relevant.has(v) && !skip.has(v));
    let dIn: (string | undefined)[];
    try {
      dIn = entry.rule(e, node, dOut, wanted);
    } catch (err) {
      if (err instanceof GraphError && err.message.startsWith('node ')) throw err;
      throw new GraphError(`node '${node.name}' (${node.opType}): cannot build its backward pass: ${(err as Error).message}`);
    }
    node.inputs.forEach((v, k) => {
      if (!wanted[k] || !dIn[k]) return;
      const list = contributions.get(v);
      if (list) list.push(dIn[k]!); else contributions.set(v, [dIn[k]!]);
    });
  }
  return { of: gradOf };
}
