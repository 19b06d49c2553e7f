// Sums up an ONNX Runtime profile (one session's JSON, as written with KFQN_ORT_PROFILE=DIR; see
// lib/runtime/node.ts): per run, the time in kernels by op type, the costliest nodes with their
// input shapes, the share of the fused second pass (nodes prefixed 'kfqn:pass2:'), and the matrix
// work: the floating-point operations of every MatMul, Gemm, Conv and ConvTranspose (ORT's fused
// forms included) from their recorded shapes, and the rate their kernels reached. Comparing a
// step's sessions with the floor's ('forward_backward') gives the step's FLOP ratio: the least
// step/floor ratio any schedule of the same products could reach on this machine.
// Usage: KFQN_ORT_PROFILE=/tmp/prof npx tsx scripts/bench/step-time.ts --optimizer kbfgs
//        npx tsx scripts/bench/ort-profile.ts /tmp/prof/K_BFGS_direction_graph_*.json [--top 15]
// Prints one JSON object.
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

interface ProfileEvent {
  cat?: string;
  name: string;
  dur: number;
  args?: { op_name?: string; input_type_shape?: Record<string, number[]>[]; output_type_shape?: Record<string, number[]>[] };
}

const prod = (xs: readonly number[]) => xs.reduce((a, b) => a * b, 1);

/**
 * Multiply-adds ×2 of a matrix op from its input and output shapes, or undefined for other ops.
 * Products: k = (A's last two dims) / (the output's rows), whatever the transposes; a 1-D A is k.
 * Conv: every output entry costs C_in/group × kernel; ConvTranspose: every input entry does.
 * Undefined for other ops; null when ORT recorded no shape for an input (a constant initializer).
 */
function matrixFlops(op: string, inputs: readonly number[][], outputs: readonly number[][]): number | null | undefined {
  const [a, w] = inputs; const out = outputs[0];
  if (!/^(Fused|NhwcFused)?(MatMul|Gemm|Conv)$|^ConvTranspose$/.test(op)) return undefined;
  if (!a || !w || !out) return null;
  if (/^(Fused)?(MatMul|Gemm)$/.test(op)) {
    const k = a.length === 1 ? a[0] : (a.at(-1)! * a.at(-2)!) / (out.length === 1 ? 1 : out.at(-2)!);
    return 2 * prod(out) * k;
  }
  if (/^(Fused|NhwcFused)?Conv$/.test(op)) return 2 * prod(out) * prod(w.slice(1));
  if (op === 'ConvTranspose') return 2 * prod(a) * prod(w.slice(1));
  return undefined;
}

const { values, positionals } = parseArgs({ allowPositionals: true, options: { top: { type: 'string', default: '15' } } });
if (positionals.length !== 1) throw new Error('usage: ort-profile.ts PROFILE.json [--top N]');
const events = JSON.parse(readFileSync(positionals[0], 'utf8')) as ProfileEvent[];
const runs = events.filter((e) => e.cat === 'Session' && e.name === 'model_run');
if (runs.length === 0) throw new Error(`${positionals[0]}: no model_run events (was the session run and released?)`);
const kernels = events.filter((e) => e.cat === 'Node' && e.name.endsWith('_kernel_time'));
const perRun = (us: number) => Math.round(us / runs.length) / 1000; // ms per run

const byOp = new Map<string, { us: number; count: number }>();
const byNode = new Map<string, { us: number; op: string; shapes: string }>();
let secondPass = 0;
let matrixFlop = 0; let matrixUs = 0; let unsized = 0;
const shapes = (xs: Record<string, number[]>[] | undefined) => (xs ?? []).map((x) => Object.values(x)[0] ?? []);
for (const k of kernels) {
  const op = k.args?.op_name ?? '?';
  const flops = matrixFlops(op, shapes(k.args?.input_type_shape), shapes(k.args?.output_type_shape));
  if (flops === null) unsized++;
  else if (flops !== undefined) { matrixFlop += flops; matrixUs += k.dur; }
  const o = byOp.get(op) ?? { us: 0, count: 0 };
  o.us += k.dur; o.count++;
  byOp.set(op, o);
  const n = byNode.get(k.name) ?? { us: 0, op, shapes: JSON.stringify(k.args?.input_type_shape ?? []) };
  n.us += k.dur;
  byNode.set(k.name, n);
  if (k.name.startsWith('kfqn:pass2:')) secondPass += k.dur;
}
const top = Number(values.top);
console.log(JSON.stringify({
  bench: 'ort-profile', file: positionals[0], runs: runs.length,
  run_ms: perRun(runs.reduce((s, r) => s + r.dur, 0)),
  kernels_ms: perRun(kernels.reduce((s, k) => s + k.dur, 0)),
  nodes_per_run: Math.round(kernels.length / runs.length),
  second_pass_ms: perRun(secondPass),
  matrix_flop_per_run: Math.round(matrixFlop / runs.length),
  matrix_ms: perRun(matrixUs),
  matrix_gflops: Math.round(matrixFlop / matrixUs / 1e3),
  matrix_nodes_unsized: Math.round(unsized / runs.length),
  by_op: [...byOp].sort((a, b) => b[1].us - a[1].us).slice(0, top).map(([op, o]) => ({ op, ms: perRun(o.us), nodes: Math.round(o.count / runs.length) })),
  top_nodes: [...byNode].sort((a, b) => b[1].us - a[1].us).slice(0, top)
    .map(([name, n]) => ({ node: name.replace(/_kernel_time$/, ''), op: n.op, ms: perRun(n.us), inputs: n.shapes })),
}, null, 1));
