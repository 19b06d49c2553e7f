// Helpers for optimizer and Trainer specs: fixture models, fixed small datasets, parameter
// substitution and tensor comparisons.
import { join } from 'node:path';
import { encodeModel, onnx, tensorFromProto, tensorToProto, type TensorData } from '../../graph-tools/index.js';
import { fromArrays, type Dataset } from '../../lib/data/index.js';
import { readModelFile } from '../../lib/io/files.js';
import { Rng } from './models.js';

export const MLP_FIXTURES = 'spec/fixtures/mlp';

/** spec/fixtures/mlp/<name>/model.onnx. */
export function fixtureModel(name: string): onnx.ModelProto {
  return readModelFile(join(MLP_FIXTURES, name, 'model.onnx'));
}

/** n samples of `features` uniform values in [lo, hi) (float32-rounded), with labels in [0, classes) when classes is given. */
export function randomDataset(seed: number, n: number, features: number, classes?: number, lo = -1, hi = 1): Dataset {
  const rng = new Rng(seed);
  const x = rng.array(n * features, lo, hi);
  // Every class appears at least once when n ≥ classes, so numClasses is `classes`.
  const labels = classes === undefined ? undefined : Array.from({ length: n }, (_, i) => (i < classes ? i : rng.int(classes)));
  return fromArrays(`random ${n}×${features}`, x, [features], labels, classes);
}

/** A copy of a model whose named initializers hold new values (cast to each initializer's dtype). */
export function withInitializers(model: onnx.ModelProto, values: ReadonlyMap<string, ArrayLike<number>>): onnx.ModelProto {
  const copy = onnx.ModelProto.decode(encodeModel(model));
  const inits = copy.graph!.initializer!;
  for (const [name, v] of values) {
    const i = inits.findIndex((t) => t.name === name);
    if (i < 0) throw new Error(`withInitializers: no initializer '${name}'`);
    const old = tensorFromProto(inits[i]);
    if (old.data.length !== v.length) throw new Error(`withInitializers: '${name}' has ${old.data.length} values, got ${v.length}`);
    const data = old.dtype === 'float64' ? Float64Array.from(v) : Float32Array.from(v);
    inits[i] = tensorToProto(name, { dtype: old.dtype, dims: old.dims, data });
  }
  return copy;
}

/** The model's initializers by name, as float64 copies. */
export function initializerValues(model: onnx.ModelProto): Map<string, Float64Array> {
  return new Map(model.graph!.initializer!.map((t) => [t.name!, Float64Array.from(tensorFromProto(t).data as Float32Array)]));
}

/** Largest |a−b| relative to the largest |b| (the usual tolerance for one tensor). */
export function relError(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  if (actual.length !== expected.length) throw new Error(`relError: lengths ${actual.length} and ${expected.length} differ`);
  let diff = 0; let scale = 1e-30;
  for (let i = 0; i < expected.length; i++) {
    diff = Math.max(diff, Math.abs(actual[i] - expected[i]));
    scale = Math.max(scale, Math.abs(expected[i]));
  }
  return diff / scale;
}

/** Largest |a−b|. */
export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`maxAbsDiff: lengths ${a.length} and ${b.length} differ`);
  let d = 0;
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i] - b[i]));
  return d;
}

/** The TensorData of a Dataset's inputs ([size, ...sampleShape], float32) and labels ([size], int64). */
export function datasetTensors(ds: Dataset): { x: TensorData; labels?: TensorData } {
  const x: TensorData = { dtype: 'float32', dims: [ds.size, ...ds.sampleShape], data: ds.inputs };
  return ds.labels ? { x, labels: { dtype: 'int64', dims: [ds.size], data: ds.labels } } : { x };
}
