// BFGS-family optimizer kernels as ONNX subgraphs (ALGORITHMS.md §2.1, §2.3, §1.2): they emit
// standard ops on value names so a training step graph can fuse them, and every decision (skip,
// damping) is a Where on a scalar condition, so no value makes a round trip through JavaScript.
// Ops used: MatMul, Mul, Add, Sub, Div, ReduceSum, Sqrt, Abs, Greater, Less, And, Where,
// Unsqueeze, Transpose (and Identity in kernelModel): all run on the CPU, WASM and WebGPU EPs.
import type { DataType } from '../onnx/index.js';
import { A, Graph, GraphError, type Dim } from '../ir/graph.js';
import { Emitter } from '../ir/emitter.js';
import type { onnx } from '../onnx/index.js';

export interface BfgsUpdateOptions {
  /** Element type of the values; defaults to the registered type of H. */
  dtype?: DataType;
  /** The skip threshold factor: skip when sᵀy ≤ threshold·‖s‖²·‖r‖ (§2.1; default 1e-4). */
  threshold?: number;
}

export interface BfgsUpdate {
  /** The updated (or, when skipped, the unchanged) inverse [d, d]. */
  H: string;
  /** Scalar of the value type: 1 when the update was applied, 0 when skipped. */
  accepted: string;
  /** Scalar sᵀy of the pair as given. */
  sTy: string;
}

/**
 * Dense BFGS update of an inverse Hessian approximation (§2.1):
 * H⁺ = H + (ρ + ρ²·yᵀHy)·s sᵀ − ρ·(H y sᵀ + s yᵀH), ρ = 1/sᵀy.
 * H is [d, d], s, y and the reference vector r are [d]. H is returned unchanged when sᵀy ≤ 0,
 * sᵀy ≤ threshold·‖s‖²·‖r‖ (r = ḡ on the G side, ā on the A side; pass null for no reference)
 * or H⁺ could hold a non-finite entry; a NaN anywhere in s, y or r also leads to a skip, since
 * every comparison with NaN is false.
 * The d × d work is memory-bound, so it is one Gemm with H as its C input (one read of H, one
 * write): the decisions gate the d-vectors, not the matrix. The rank-2 term s wᵀ + w sᵀ is fed as
 * ½(u uᵀ − v vᵀ) with u = ts + w/t, v = ts − w/t: each entry (i, j) then sees the same products in
 * the same order as (j, i), so a symmetric H stays exactly symmetric (§9.5) without
 * re-symmetrising (s wᵀ + w sᵀ as two rank-1 terms would not), and t = √(‖w‖/‖s‖) balances the two
 * so that the difference loses no more than the direct products would. emitRegularizedInverse
 * symmetrises H_a⁰.
 */
export function emitBfgsInverseUpdate(e: Emitter, H: string, s: string, y: string, r: string | null, opts: BfgsUpdateOptions = {}): BfgsUpdate {
  const dtype = opts.dtype ?? e.dtypeOf(H);
  const k = (v: number) => e.constant(v, dtype);
  const sTy = dot(e, s, y);
  const sTs = dot(e, s, s);
  const u = e.matvec(H, y);
  const yTu = dot(e, y, u);
  const rho = e.op('Div', [k(1), sTy]);
  // s wᵀ + w sᵀ with w = (a/2)·s − ρ·u equals a·s sᵀ − ρ·(u sᵀ + s uᵀ), the BFGS terms above.
  const a = e.op('Mul', [rho, e.op('Add', [k(1), e.op('Mul', [rho, yTu])])]);
  const w = e.op('Sub', [e.op('Mul', [e.op('Mul', [a, k(0.5)]), s]), e.op('Mul', [rho, u])]);

  let limit = k(0);
  if (r !== null) {
    const rNorm = e.op('Sqrt', [dot(e, r, r)]);
    limit = e.op('Mul', [e.op('Mul', [sTs, rNorm]), k(opts.threshold ?? 1e-4)]);
  }
  const curvature = e.op('And', [e.op('Greater', [sTy, k(0)]), e.op('Greater', [sTy, limit])]);
  // Every |H⁺_ij| ≤ Σ|H| + 2·max|s|·max|w|: when that bound is finite, H⁺ is (one read of H, no write).
  const maxAbs = (v: string) => e.reduce('ReduceMax', e.op('Abs', [v]), null, false);
  const bound = e.op('Add', [e.reduce('ReduceL1', H, null, false), e.op('Mul', [k(2), e.op('Mul', [maxAbs(s), maxAbs(w)])])]);
  const accept = e.op('And', [curvature, allFinite(e, bound, dtype)]);
  const zero = k(0);
  const sGated = e.op('Where', [accept, s, zero]);
  const wGated = e.op('Where', [accept, w, zero]);
  const sNorm = e.op('Sqrt', [dot(e, sGated, sGated)]);
  const wNorm = e.op('Sqrt', [dot(e, wGated, wGated)]);
  const balanced = e.op('And', [e.op('Greater', [sNorm, zero]), e.op('Greater', [wNorm, zero])]);
  const t = e.op('Where', [balanced, e.op('Sqrt', [e.op('Div', [wNorm, e.op('Where', [balanced, sNorm, k(1)])])]), k(1)]);
  const ts = e.op('Mul', [sGated, t]);
  const wt = e.op('Div', [wGated, t]);
  const uv = e.op('Concat', [e.unsqueeze(e.op('Add', [ts, wt]), [1]), e.unsqueeze(e.op('Sub', [ts, wt]), [1])], [A.int('axis', 1)]); // [d, 2]
  const halves = e.op('Mul', [uv, e.constant([0.5, -0.5], dtype, [1, 2])]);
  return {
    H: e.op('Gemm', [uv, halves, H], [A.int('transA', 0), A.int('transB', 1)]),
    accepted: e.op('Where', [accept, k(1), k(0)]),
    sTy,
  };
}

export type SecondDamping = 'lm' | 'neurips';

export interface DoubleDampingOptions {
  /** Powell threshold μ1 ∈ (0, 1) (default 0.2, the authors' value). */
  mu1?: number;
  /** Second-step strength μ2 > 0 (√λ in the papers). */
  mu2: number;
  /** Second step: 'lm' (y += μ2·s, DD-LM) or 'neurips' (interpolate y toward s, DD-NeurIPS). */
  mode: SecondDamping;
  /** Element type; defaults to the registered type of s. */
  dtype?: DataType;
  /** Powell is skipped when yᵀHy ≤ tiny (default 1e-30 in float32, 1e-300 in float64). */
  tiny?: number;
  /** DD-NeurIPS step 2 is skipped when |sᵀs − sᵀy| ≤ eps·sᵀs (default 1e-6 in float32, 1e-12 in float64). */
  eps?: number;
}

export interface DoubleDamping {
  s: string;
  y: string;
  /** Scalar 1/0: whether Powell damping changed s. */
  powell: string;
  /** Scalar 1/0: whether the second step changed y (always 1 for 'lm'). */
  second: string;
}

/**
 * Double damping of a G-side pair (§2.3). Hy = H·y is computed by the caller, so H may be dense
 * or an L-BFGS operator. Powell: if sᵀy < μ1·yᵀHy, s ← θ1·s + (1−θ1)·Hy with
 * θ1 = (1−μ1)·yᵀHy/(yᵀHy − sᵀy), giving sᵀy = μ1·yᵀHy. Then 'lm': y ← y + μ2·s; 'neurips': if
 * sᵀy < μ2·sᵀs, y ← θ2·y + (1−θ2)·s with θ2 = (1−μ2)·sᵀs/(sᵀs − sᵀy) (unclamped), giving
 * sᵀy = μ2·sᵀs.
 */
export function emitDoubleDamping(e: Emitter, s: string, y: string, Hy: string, opts: DoubleDampingOptions): DoubleDamping {
  const dtype = opts.dtype ?? e.dtypeOf(s);
  const k = (v: number) => e.constant(v, dtype);
  const mu1 = opts.mu1 ?? 0.2;
  const { mu2 } = opts;
  if (!(mu1 > 0 && mu1 < 1)) throw new GraphError(`double damping: mu1 must lie in (0, 1), got ${mu1}`);
  if (!(mu2 > 0)) throw new GraphError(`double damping: mu2 must be positive, got ${mu2}`);
  const tiny = opts.tiny ?? (dtype === 'float64' ? 1e-300 : 1e-30);
  const eps = opts.eps ?? (dtype === 'float64' ? 1e-12 : 1e-6);

  const q = dot(e, y, Hy);
  const c = dot(e, s, y);
  const powell = e.op('And', [e.op('Less', [c, e.op('Mul', [q, k(mu1)])]), e.op('Greater', [q, k(tiny)])]);
  const theta1 = e.op('Div', [e.op('Mul', [q, k(1 - mu1)]), e.op('Sub', [q, c])]);
  const sDamped = e.op('Add', [e.op('Mul', [theta1, s]), e.op('Mul', [e.op('Sub', [k(1), theta1]), Hy])]);
  const s1 = e.op('Where', [powell, sDamped, s]);
  const powellFlag = e.op('Where', [powell, k(1), k(0)]);

  if (opts.mode === 'lm') {
    return { s: s1, y: e.op('Add', [y, e.op('Mul', [s1, k(mu2)])]), powell: powellFlag, second: k(1) };
  }
  if (opts.mode !== 'neurips') throw new GraphError(`double damping: unknown second step '${String(opts.mode)}'`);
  const c2 = dot(e, s1, y);
  const n = dot(e, s1, s1);
  const gap = e.op('Sub', [n, c2]);
  const fire = e.op('And', [
    e.op('Less', [c2, e.op('Mul', [n, k(mu2)])]),
    e.op('Greater', [e.op('Abs', [gap]), e.op('Mul', [n, k(eps)])]),
  ]);
  const theta2 = e.op('Div', [e.op('Mul', [n, k(1 - mu2)]), gap]);
  const yDamped = e.op('Add', [e.op('Mul', [theta2, y]), e.op('Mul', [e.op('Sub', [k(1), theta2]), s1])]);
  return { s: s1, y: e.op('Where', [fire, yDamped, y]), powell: powellFlag, second: e.op('Where', [fire, k(1), k(0)]) };
}

/**
 * The preconditioned direction D = H_g · X · H_a (§1.2) of a gradient matrix X [g, a], or of G
 * groups at once ([G, g, g] · [G, g, a] · [G, a, a], batched MatMul).
 */
export function emitPrecondition(e: Emitter, Hg: string, X: string, Ha: string): string {
  return e.op('MatMul', [e.op('MatMul', [Hg, X]), Ha]);
}

/**
 * The A-side "Hessian-action" pair (§3.4): s = H_a·ā and y = A_λ·s = A·s + λ·s, so that BFGS on
 * (s, y) moves H_a toward A_λ⁻¹ along ā, and sᵀy ≥ λ‖s‖². `A` is the [d, d] factor's value name,
 * or a function emitting A·v for a [d] value v (to apply A as (1/M)·Ãᵀ(Ã v) without forming it).
 */
export function emitHessianActionPair(
  e: Emitter, Ha: string, abar: string, A: string | ((v: string) => string), lambda: number, dtype?: DataType,
): { s: string; y: string } {
  const s = e.matvec(Ha, abar);
  const As = typeof A === 'string' ? e.matvec(A, s) : A(s);
  const y = lambda === 0 ? As : e.op('Add', [As, e.op('Mul', [s, e.constant(lambda, dtype ?? e.dtypeOf(Ha))])]);
  return { s, y };
}

export interface KernelInput {
  name: string;
  dtype: DataType;
  shape?: Dim[];
}

/**
 * A standalone model running one kernel: `inputs` become graph inputs, and each entry
 * { outputName: value } that `build` returns becomes a graph output of that name (of the first
 * input's element type unless `outputDtype` says otherwise; shapes are left undeclared).
 */
export function kernelModel(
  inputs: KernelInput[],
  build: (e: Emitter, ...inputs: string[]) => Record<string, string>,
  opts: { opset?: number; outputDtype?: DataType; name?: string } = {},
): onnx.ModelProto {
  const g = new Graph();
  g.name = opts.name ?? 'kfqn-kernel';
  if (opts.opset !== undefined) g.opset = opts.opset;
  for (const i of inputs) {
    if (g.fresh(i.name) !== i.name) throw new GraphError(`kernel input '${i.name}' is declared twice`);
    const type = { dtype: i.dtype, shape: i.shape };
    g.inputs.push({ name: i.name, type });
    g.types.set(i.name, type);
  }
  const e = new Emitter(g);
  const outs = build(e, ...inputs.map((i) => i.name));
  const dtype = opts.outputDtype ?? inputs[0]?.dtype ?? 'float32';
  for (const [name, value] of Object.entries(outs)) {
    if (g.fresh(name) !== name) throw new GraphError(`kernel output '${name}' collides with a value of the graph`);
    g.add('Identity', [value], [], [name]);
    g.outputs.push({ name, type: { dtype } });
  }
  return g.toModel();
}

// ---- helpers -----------------------------------------------------------------------------

/** xᵀy of two [d] vectors as a scalar. */
function dot(e: Emitter, x: string, y: string): string {
  return e.reduce('ReduceSum', e.op('Mul', [x, y]), null, false);
}

/** Scalar bool: every entry of m is finite. x − x is 0 for finite x and NaN otherwise, and NaN < 1 is false. */
function allFinite(e: Emitter, m: string, dtype: DataType): string {
  return e.op('Less', [e.reduce('ReduceSum', e.op('Sub', [m, m]), null, false), e.constant(1, dtype)]);
}

/**
 * (A + λI)⁻¹ for a symmetric positive-definite A [d,d] (or [G,d,d]): the one cubic operation of
 * K-BFGS, at initialisation (H_a⁰, ALGORITHMS.md §3.3). ONNX has no standard inverse, so this uses
 * ONNX Runtime's com.microsoft Inverse (CPU and WASM; WebGPU runs it on the CPU).
 */
export function emitRegularizedInverse(e: Emitter, factor: string, lambda: number, d: number, dtype?: DataType): string {
  const t = dtype ?? e.dtypeOf(factor);
  const eye = e.constant(Array.from({ length: d * d }, (_, k) => (k % (d + 1) === 0 ? lambda : 0)), t, [d, d]);
  const inverse = e.g.addInDomain('com.microsoft', 1, 'Inverse', [e.op('Add', [factor, eye])]);
  // Exactly symmetric, so that the BFGS updates keep it so.
  const rank = e.shapeOf(factor).length;
  const perm = [...Array(rank).keys()];
  [perm[rank - 2], perm[rank - 1]] = [perm[rank - 1], perm[rank - 2]];
  return e.op('Mul', [e.op('Add', [inverse, e.op('Transpose', [inverse], [A.ints('perm', perm)])]), e.constant(0.5, t)]);
}
