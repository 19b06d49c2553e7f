/** Browser-safe data utilities. Node-only loaders (files, bundled MNIST) are in './node.js'. */
export * from './dataset.js';
export * from './batches.js';
