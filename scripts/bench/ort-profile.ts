// Sums up an ONNX Runtime profile (one session's JSON, as written with KFQN_ORT_PROFILE=DIR; see
// lib/runtime/node.ts): per run, the time in kernels by op type, the costliest nodes with their
// input shapes, the share of the fused second pass (nodes prefixed 'kfqn:pass2:'), and the matrix
// work: the floating-point operations of every MatMul, Gemm, Conv and ConvTranspose (ORT's fused
// forms included) from their recorded shapes, and the rate their kernels reached
// (scripts/bench/flop-ratio.ts sums a whole step's sessions against the floor's).
// Usage: KFQN_ORT_PROFILE=/tmp/prof npx tsx scripts/bench/step-time.ts --optimizer kbfgs
//        npx tsx scripts/bench/ort-profile.ts /tmp/prof/K_BFGS_direction_graph_*.json [--top 15]
// Prints one JSON object.
import { parseArgs } from 'node:util';
import { matrixWork, readProfile } from './profile.js';

const { values, positionals } = parseArgs({ allowPositionals: true, options: { top: { type: 'string', default: '15' } } });
if (positionals.length !== 1) throw new Error('usage: ort-profile.ts PROFILE.json [--top N]');
const { runs, kernels } = readProfile(positionals[0]);
if (runs.length === 0) throw new Error(`${positionals[0]}: no model_run events (was the session run and released?)`);
const perRun = (us: number) => Math.round(us / runs.length) / 1000; // ms per run

const byOp = new Map<string, { us: number; count: number }>();
const byNode = new Map<string, { us: number; op: string; shapes: string }>();
let secondPass = 0;
const matrix = matrixWork(kernels);
for (const k of kernels) {
  const op = k.args?.op_name ?? '?';
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
  matrix_flop_per_run: Math.round(matrix.flop / runs.length),
  matrix_ms: perRun(matrix.us),
  matrix_gflops: matrix.us ? Math.round(matrix.flop / matrix.us / 1e3) : null,
  matrix_nodes_unsized: Math.round(matrix.unsized / runs.length),
  by_op: [...byOp].sort((a, b) => b[1].us - a[1].us).slice(0, top).map(([op, o]) => ({ op, ms: perRun(o.us), nodes: Math.round(o.count / runs.length) })),
  top_nodes: [...byNode].sort((a, b) => b[1].us - a[1].us).slice(0, top)
    .map(([name, n]) => ({ node: name.replace(/_kernel_time$/, ''), op: n.op, ms: perRun(n.us), inputs: n.shapes })),
}, null, 1));
