export * from './optimizer.js';
export * from './first-order.js';
export * from './kbfgs.js';
export * from './kfac.js';
export * from './memory.js';
