// Checks user-provided tensors against what a graph input expects and wraps them for a backend.
import type { Dim, ValueType } from '../../graph-tools/index.js';
import type { TensorData } from '../../graph-tools/onnx/index.js';
import type { Backend, Tensor, TensorType } from '../runtime/backend.js';
import { InputError } from '../errors.js';

/** Checks dtype and static dims; binds symbolic dims consistently across inputs via `bound`. */
export function checkTensor(name: string, t: TensorData, expected: ValueType, bound: Map<string, number>, what = `input '${name}'`): void {
  if (t.dtype !== expected.dtype) throw new InputError(`${what} has dtype ${t.dtype}, expected ${expected.dtype}`);
  const shape = expected.shape;
  if (!shape) return;
  const show = (s: readonly Dim[]) => `[${s.join(', ')}]`;
  if (t.dims.length !== shape.length) throw new InputError(`${what} has shape ${show(t.dims)}, expected ${show(shape)}`);
  shape.forEach((d, i) => {
    const actual = t.dims[i];
    if (typeof d === 'number') {
      if (d !== actual) throw new InputError(`${what} has shape ${show(t.dims)}, expected ${show(shape)}`);
    } else {
      const b = bound.get(d);
      if (b !== undefined && b !== actual) throw new InputError(`${what} has shape ${show(t.dims)}: dimension '${d}' is ${b} elsewhere`);
      bound.set(d, actual);
    }
  });
}

export function toRuntime(backend: Backend, t: TensorData): Tensor {
  return backend.tensor(t.dtype as TensorType, t.data as never, t.dims);
}
