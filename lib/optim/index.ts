export * from './optimizer.js';
export * from './first-order.js';
export * from './kbfgs.js';
export * from './kfac.js';
export * from './memory.js';
export * from './schedule.js';

import { adam, rmsprop, sgd } from './first-order.js';
import { kbfgs, kbfgsL, kfqn, kfqnL } from './kbfgs.js';
import { kfac, shampoo } from './kfac.js';

/** Every optimizer by its name, each taking its own options object (a checkpoint's resolved options give the same optimizer back). */
export const OPTIMIZER_FACTORIES = { sgd, adam, rmsprop, kfac, shampoo, kbfgs, 'kbfgs-l': kbfgsL, kfqn, 'kfqn-l': kfqnL } as const;
export type OptimizerName = keyof typeof OPTIMIZER_FACTORIES;
type AnyOptimizer = ReturnType<(typeof OPTIMIZER_FACTORIES)[OptimizerName]>;

/**
 * The optimizer `name` with `options` (a checkpoint header's, for one), checked by its factory;
 * 'adamw' is Adam with decoupled weight decay, the name adam() gives itself then.
 */
export function createOptimizer(name: string, options: Record<string, unknown> = {}): AnyOptimizer {
  if (name === 'adamw') return adam({ ...options, decoupledWeightDecay: true });
  if (!(name in OPTIMIZER_FACTORIES)) throw new RangeError(`unknown optimizer '${name}'; known: ${Object.keys(OPTIMIZER_FACTORIES).join(', ')}, adamw`);
  return (OPTIMIZER_FACTORIES[name as OptimizerName] as (o: Record<string, unknown>) => AnyOptimizer)(options);
}
