export * from './backend.js';
export { createBackend } from './node.js';
