// Runs a small kernel graph (graph-tools/kernels) once on a backend, in float32 or float64.
import { encodeModel, kernelModel, type DataType } from '../../graph-tools/index.js';
import type { Emitter } from '../../graph-tools/ir/emitter.js';
import type { Backend } from '../../lib/runtime/backend.js';

export interface Feed { name: string; shape: number[]; data: ArrayLike<number> }

export async function runKernel(backend: Backend, dtype: DataType, feeds: Feed[], build: (e: Emitter, ...names: string[]) => Record<string, string>): Promise<Record<string, Float64Array>> {
  // Outputs get a prefix so that they may share a name with an input (s in, s out).
  const model = kernelModel(feeds.map((f) => ({ name: f.name, dtype, shape: f.shape })), (e, ...names) =>
    Object.fromEntries(Object.entries(build(e, ...names)).map(([k, v]) => [`out/${k}`, v])));
  const session = await backend.createSession(encodeModel(model), { name: 'kernel' });
  try {
    const Arr = dtype === 'float64' ? Float64Array : Float32Array;
    const inputs = Object.fromEntries(feeds.map((f) => [f.name, backend.tensor(dtype as 'float32' | 'float64', Arr.from(f.data), f.shape)]));
    const out = await session.run(inputs);
    const result: Record<string, Float64Array> = {};
    for (const [k, t] of Object.entries(out)) result[k.slice('out/'.length)] = Float64Array.from(await backend.read(t) as Float32Array | Float64Array);
    return result;
  } finally {
    await session.release();
  }
}
