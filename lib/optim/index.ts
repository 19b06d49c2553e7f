export * from './optimizer.js';
export * from './first-order.js';
export * from './kbfgs.js';
export * from './kfac.js';
export * from './memory.js';

import { adam, rmsprop, sgd } from './first-order.js';
import { kbfgs, kbfgsL, kfqn, kfqnL } from './kbfgs.js';
import { kfac, shampoo } from './kfac.js';

/** Every optimizer by its name, each taking its own options object (a checkpoint's resolved options give the same optimizer back). */
export const OPTIMIZER_FACTORIES = { sgd, adam, rmsprop, kfac, shampoo, kbfgs, 'kbfgs-l': kbfgsL, kfqn, 'kfqn-l': kfqnL } as const;
export type OptimizerName = keyof typeof OPTIMIZER_FACTORIES;

/** The optimizer `name` with `options` (a checkpoint header's, for one), checked by its factory. */
export function createOptimizer(name: string, options: Record<string, unknown> = {}): ReturnType<(typeof OPTIMIZER_FACTORIES)[OptimizerName]> {
  if (!(name in OPTIMIZER_FACTORIES)) throw new RangeError(`unknown optimizer '${name}'; known: ${Object.keys(OPTIMIZER_FACTORIES).join(', ')}`);
  return (OPTIMIZER_FACTORIES[name as OptimizerName] as (o: Record<string, unknown>) => ReturnType<(typeof OPTIMIZER_FACTORIES)[OptimizerName]>)(options);
}
