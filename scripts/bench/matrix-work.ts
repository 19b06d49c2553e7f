// GFLOP/s of the Kronecker optimizers' own matrix work on the paper's autoencoder layer shapes,
// against the GFLOP/s of one large ORT MatMul on the same execution provider (the reference the
// issue sets: ≥ 60%). The work, per layer (d_g × d_a, batch M): the batch factor A = ÃᵀÃ/M
// (2·M·d_a² flops), the direction H_g·X·H_a (2·d_g²·d_a + 2·d_g·d_a²), KFAC's G = gᵀg/M
// (2·M·d_g²), K-BFGS(L)'s L-BFGS H_g·X and its dense side X·H_a (2·d_g·d_a²). Each kind runs as one
// graph over all layers, with random inputs; each optimizer's share is that of the sum of its kinds
// (all its GFLOP over all their seconds).
// Usage: npx tsx scripts/bench/matrix-work.ts [--ep cpu|wasm|webgpu] [--batch 1000] [--runs 10]
import { parseArgs } from 'node:util';
import { emitLbfgsApply, emitPrecondition, encodeModel, kernelModel, type Emitter } from '../../graph-tools/index.js';
import { createBackend, type ExecutionProvider, type Tensor } from '../../lib/runtime/index.js';
import { machine, median, timeRuns } from './common.js';

const { values } = parseArgs({ options: { ep: { type: 'string', default: 'cpu' }, batch: { type: 'string', default: '1000' }, runs: { type: 'string', default: '10' } } });
const backend = await createBackend(values.ep as ExecutionProvider);
const M = Number(values.batch);
const runs = Number(values.runs);
// 784-1000-500-250-30-250-500-1000-784: (d_g, d_a = inputs + 1) per layer.
const widths = [784, 1000, 500, 250, 30, 250, 500, 1000, 784];
const layers = widths.slice(1).map((dg, l) => ({ dg, da: widths[l] + 1 }));

let seed = 1;
const random = (n: number) => Float32Array.from({ length: n }, () => { seed = (seed * 1103515245 + 12345) % 2 ** 31; return seed / 2 ** 31 - 0.5; });

interface Input { name: string; dims: number[] }
async function measure(what: string, inputs: Input[], build: (e: Emitter, ...names: string[]) => Record<string, string>, flops: number) {
  const model = kernelModel(inputs.map((i) => ({ name: i.name, dtype: 'float32' as const, shape: i.dims })), build, { opset: 13 });
  const session = await backend.createSession(encodeModel(model), { name: what });
  const feeds: Record<string, Tensor> = {};
  for (const i of inputs) feeds[i.name] = backend.tensor('float32', random(i.dims.reduce((a, b) => a * b, 1)), i.dims);
  const seconds = median(await timeRuns(() => session.run(feeds), runs, 2));
  await session.release();
  return { what, gflop: flops / 1e9, seconds, gflops: flops / seconds / 1e9 };
}

const n = 1024;
const reference = await measure(`MatMul ${n}³`, [{ name: 'a', dims: [n, n] }, { name: 'b', dims: [n, n] }], (e, a, b) => ({ c: e.op('MatMul', [a, b]) }), 2 * n ** 3);
const gram = (e: Emitter, x: string) => e.gemm(x, x, true, false);
const work = [
  await measure('A factors ÃᵀÃ', layers.map((l, i) => ({ name: `a${i}`, dims: [M, l.da] })),
    (e, ...xs) => Object.fromEntries(xs.map((x, i) => [`A${i}`, gram(e, x)])), layers.reduce((s, l) => s + 2 * M * l.da ** 2, 0)),
  await measure('G factors gᵀg', layers.map((l, i) => ({ name: `g${i}`, dims: [M, l.dg] })),
    (e, ...xs) => Object.fromEntries(xs.map((x, i) => [`G${i}`, gram(e, x)])), layers.reduce((s, l) => s + 2 * M * l.dg ** 2, 0)),
  await measure('direction H_g·X·H_a', layers.flatMap((l, i) => [{ name: `hg${i}`, dims: [1, l.dg, l.dg] }, { name: `x${i}`, dims: [1, l.dg, l.da] }, { name: `ha${i}`, dims: [1, l.da, l.da] }]),
    (e, ...xs) => Object.fromEntries(layers.map((_, i) => [`D${i}`, emitPrecondition(e, xs[3 * i], xs[3 * i + 1], xs[3 * i + 2])])),
    layers.reduce((s, l) => s + 2 * l.dg ** 2 * l.da + 2 * l.dg * l.da ** 2, 0)),
  await measure('X·H_a', layers.flatMap((l, i) => [{ name: `x${i}`, dims: [1, l.dg, l.da] }, { name: `ha${i}`, dims: [1, l.da, l.da] }]),
    (e, ...xs) => Object.fromEntries(layers.map((_, i) => [`D${i}`, e.op('MatMul', [xs[2 * i], xs[2 * i + 1]])])),
    layers.reduce((s, l) => s + 2 * l.dg * l.da ** 2, 0)),
  // K-BFGS(L)'s G side: the compact L-BFGS operator on X [d_g, d_a] with p = 100 pairs (8·p·d_g·d_a
  // flops in four products, 2·p²·d_g for S·Yᵀ; the p × p float64 work is not counted).
  await measure('L-BFGS H_g·X (compact, p 100)', layers.flatMap((l, i) => [{ name: `x${i}`, dims: [l.dg, l.da] }, { name: `s${i}`, dims: [100, l.dg] }, { name: `y${i}`, dims: [100, l.dg] }, { name: `r${i}`, dims: [100] }]),
    (e, ...xs) => Object.fromEntries(layers.map((_, i) => [`D${i}`, emitLbfgsApply(e, xs[4 * i], xs[4 * i + 1], xs[4 * i + 2], xs[4 * i + 3], 1, { memory: 100, dtype: 'float32' })])),
    layers.reduce((s, l) => s + 8 * 100 * l.dg * l.da + 2 * 100 ** 2 * l.dg, 0)),
];
const [aFactors, gFactors, direction, rightSide, lbfgs] = work;
const perOptimizer = Object.entries({
  kfac: [aFactors, gFactors, direction], kbfgs: [aFactors, direction], 'kbfgs-l': [aFactors, rightSide, lbfgs], kfqn: [direction], 'kfqn-l': [rightSide, lbfgs],
}).map(([optimizer, kinds]) => {
  const gflop = kinds.reduce((t, w) => t + w.gflop, 0); const seconds = kinds.reduce((t, w) => t + w.seconds, 0);
  return { optimizer, kinds: kinds.map((w) => w.what), gflop, seconds, gflops: gflop / seconds, share_of_reference: gflop / seconds / reference.gflops };
});
console.log(JSON.stringify({
  bench: 'matrix-work', ep: values.ep, batch: M, reference,
  work: work.map((w) => ({ ...w, share_of_reference: w.gflops / reference.gflops })), per_optimizer: perOptimizer, machine: machine(),
}, null, 1));
