// Reading ONNX Runtime profiles (the JSON a session writes with profiling on; KFQN_ORT_PROFILE=DIR,
// lib/runtime/node.ts): the runs, the kernels, and the matrix work of every MatMul, Gemm, Conv and
// ConvTranspose (ORT's fused forms included) from the shapes ORT records.
import { readFileSync } from 'node:fs';

export interface ProfileEvent {
  cat?: string;
  name: string;
  dur: number;
  args?: { op_name?: string; input_type_shape?: Record<string, number[]>[]; output_type_shape?: Record<string, number[]>[] };
}

export interface Profile {
  /** The session's model_run events. */
  runs: ProfileEvent[];
  /** Its kernel events (one per node and run). */
  kernels: ProfileEvent[];
}

export function readProfile(file: string): Profile {
  const events = JSON.parse(readFileSync(file, 'utf8')) as ProfileEvent[];
  return {
    runs: events.filter((e) => e.cat === 'Session' && e.name === 'model_run'),
    kernels: events.filter((e) => e.cat === 'Node' && e.name.endsWith('_kernel_time')),
  };
}

const prod = (xs: readonly number[]) => xs.reduce((a, b) => a * b, 1);
const shapes = (xs: Record<string, number[]>[] | undefined) => (xs ?? []).map((x) => Object.values(x)[0] ?? []);

/**
 * Multiply-adds ×2 of a matrix op from its input and output shapes. Products: k = (A's last two
 * dims) / (the output's rows), whatever the transposes; a 1-D A is k. Conv: every output entry
 * costs C_in/group × kernel; ConvTranspose: every input entry does. Undefined for other ops; null
 * when ORT recorded no shape for an input (it records none for constant initializers).
 */
export function matrixFlops(op: string, inputs: readonly number[][], outputs: readonly number[][]): number | null | undefined {
  if (!/^(Fused|NhwcFused)?(MatMul|Gemm|Conv)$|^ConvTranspose$/.test(op)) return undefined;
  const [a, w] = inputs; const out = outputs[0];
  if (!a || !w || !out) return null;
  if (/(MatMul|Gemm)$/.test(op)) {
    const k = a.length === 1 ? a[0] : (a.at(-1)! * a.at(-2)!) / (out.length === 1 ? 1 : out.at(-2)!);
    return 2 * prod(out) * k;
  }
  return op === 'ConvTranspose' ? 2 * prod(a) * prod(w.slice(1)) : 2 * prod(out) * prod(w.slice(1));
}

/** A kernel event's matrix FLOPs (undefined: not a matrix op; null: not sizable). */
export function kernelFlops(k: ProfileEvent): number | null | undefined {
  return matrixFlops(k.args?.op_name ?? '?', shapes(k.args?.input_type_shape), shapes(k.args?.output_type_shape));
}

/** The matrix work of a profile's kernels: FLOPs, microseconds, and kernels it could not size. */
export function matrixWork(kernels: readonly ProfileEvent[]): { flop: number; us: number; unsized: number } {
  let flop = 0; let us = 0; let unsized = 0;
  for (const k of kernels) {
    const f = kernelFlops(k);
    if (f === null) unsized++;
    else if (f !== undefined) { flop += f; us += k.dur; }
  }
  return { flop, us, unsized };
}
