// Backward rules registered by op type, as tfjs registers gradients by kernel name.
import type { Emitter } from '../ir/emitter.js';
import type { Node } from '../ir/graph.js';

/**
 * Given the gradients of a node's outputs (undefined where an output does not reach the loss),
 * emits and returns the gradients of the inputs listed in `wanted` (others may be undefined).
 */
export type GradRule = (e: Emitter, node: Node, dOut: (string | undefined)[], wanted: boolean[]) => (string | undefined)[];

export interface GradEntry {
  rule: GradRule;
  /** Input positions through which gradients flow (the rest are shapes, axes, indices, ...). */
  differentiable: (node: Node) => number[];
}

const rules = new Map<string, GradEntry>();

export function registerGradient(opTypes: string[], differentiable: number[] | ((node: Node) => number[]), rule: GradRule): void {
  const diff = typeof differentiable === 'function' ? differentiable : () => differentiable;
  for (const t of opTypes) rules.set(t, { rule, differentiable: diff });
}

export function gradientEntry(opType: string): GradEntry | undefined { return rules.get(opType); }

export function supportedOps(): string[] { return [...rules.keys()].sort(); }
