export * from './optimizer.js';
export * from './first-order.js';
