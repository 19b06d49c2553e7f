// L-BFGS inverse-Hessian operator as ONNX subgraphs (ALGORITHMS.md §2.2, §1.2, §6).
//
// State (fixed-size tensors, so one graph per layer shape serves every step):
//   S [p, d], Y [p, d]: the stored pairs, one per row, ordered oldest (row 0) → newest (row p−1).
//     emitLbfgsPush shifts rows up on insert (S ← Concat(S[1:], s)), so the newest pair is always
//     row p−1 and, while fewer than p pairs are stored, the empty rows are the first ones.
//   rho [p]: ρ_j = 1/s_jᵀy_j, and 0 for an empty slot (zero rows of S and Y).
// Empty slots need no mask in the two-loop recursion: there α_j = ρ_j·s_jᵀQ = 0 and Q −= y_j·α_j
// = Q, then β_j = 0 and R += s_j·(α_j − β_j) = R (zero rows are finite, so 0·row stays 0). The
// compact form gives them R_jj = 1 instead of 0 (see compact()).
//
// emitLbfgsApply computes H·X for X [d, k] (H applied to every column; for the G side X is the
// d_g × d_a gradient and this is H_g·X of D = H_g X H_a). Two formulations, equal in exact arithmetic:
//  - 'compact' (default): the Byrd–Nocedal–Schnabel compact form, four [p, d]×[d, k] Gemms
//    (8·p·d·k flops at GEMM speed) and O(p³ + p²·k) float64 work on p × p blocks (see compact()).
//  - 'two-loop': the textbook recursion on X as a matrix: 4·p·d·k flops, but 2p sequential
//    memory-bound passes over X, 5 nodes per slot. On the autoencoder K-BFGS(L)'s step took 280–380
//    ms with it and 165 ms with 'compact' (scripts/bench/step-time.ts).
//    On real K-BFGS(L) pairs (the autoencoder after 60 and 160 steps, p = 100, float32) both are
//    within 1e-6 of float64 (relative, Frobenius), 'compact' often closer; an earlier Gram-matrix
//    form that took Y·Q as Y·X − (Y Yᵀ)·α lost up to 10× more and was dropped.
// Ops used (opset ≥ 13): MatMul, Gemm, Mul, Add, Sub, Div, Neg, Transpose, Split, Gather, Slice,
// Concat, Unsqueeze, Reshape, Pad, Cast, Equal, ReduceSum, Sqrt, Greater, Less, And, Where,
// Identity: standard ops that the CPU, WASM and WebGPU EPs implement (the float64 p × p work falls
// back to the CPU on WebGPU, which has no float64).
//
// float64 caveat: ORT's MatMulScaleFusion folds a Mul by a constant *scalar* initializer next to a
// MatMul into a float32 `alpha` attribute. A numeric γ is therefore emitted as a [rows, 1] constant;
// a γ passed by name should not be a constant scalar initializer in float64 graphs.
import type { DataType, TensorData } from '../onnx/index.js';
import type { onnx } from '../onnx/index.js';
import { A, Graph, GraphError, type Dim } from '../ir/graph.js';
import { Emitter } from '../ir/emitter.js';

export type LbfgsMethod = 'compact' | 'two-loop';

/** The initial matrix H0: γI with γ a number or a scalar value's name, or a diagonal [d, 1] value. */
export type LbfgsH0 = number | string | { diagonal: string };

export interface LbfgsApplyOptions {
  /** Memory p (rows of S); defaults to the static first dimension of S. */
  memory?: number;
  /** Element type; defaults to the registered type of X (or S). */
  dtype?: DataType;
  /** Formulation (see the file comment); default 'compact'. */
  method?: LbfgsMethod;
}

/**
 * H·X for the L-BFGS operator with pairs (S, Y, rho) and H0 = γI (§2.2), or H0 = diag(γ).
 * X is [d, k]; S and Y are [p, d] (oldest row first), rho is [p] (0 for empty slots).
 * `gamma` is a number (a constant; the authors use 1 on the G side), the name of a scalar value
 * of the element type (e.g. from emitLbfgsGamma), or { diagonal } naming a [d, 1] value: H0 =
 * diag(diagonal). Returns a value [d, k].
 */
export function emitLbfgsApply(e: Emitter, X: string, S: string, Y: string, rho: string, gamma: LbfgsH0 = 1, opts: LbfgsApplyOptions = {}): string {
  const p = memoryOf(e, S, opts.memory);
  const dtype = opts.dtype ?? e.g.types.get(X)?.dtype ?? e.dtypeOf(S);
  const method = opts.method ?? 'compact';
  if (method === 'two-loop') return twoLoop(e, X, S, Y, rho, gamma, p, dtype);
  if (method !== 'compact') throw new GraphError(`L-BFGS: unknown method '${String(method)}'`);
  return compact(e, X, S, Y, rho, gamma, p, dtype);
}

function twoLoop(e: Emitter, X: string, S: string, Y: string, rho: string, gamma: LbfgsH0, p: number, dtype: DataType): string {
  const rhoCol = e.unsqueeze(rho, [1]);
  const sRows = splitRows(e, S, p);
  const yRows = splitRows(e, Y, p);
  const sRhoRows = splitRows(e, e.op('Mul', [S, rhoCol]), p);
  const yRhoRows = splitRows(e, e.op('Mul', [Y, rhoCol]), p);
  let Q = X;
  const alpha: string[] = new Array<string>(p);
  for (let j = p - 1; j >= 0; j--) {
    alpha[j] = e.op('MatMul', [sRhoRows[j], Q]); // [1, k]
    Q = gemm(e, yRows[j], alpha[j], Q, -1); // Q − y_j α_j
  }
  let R = scaleBy(e, Q, gamma, dtype, dimOf(e, S, 1));
  for (let j = 0; j < p; j++) {
    const beta = e.op('MatMul', [yRhoRows[j], R]);
    R = gemm(e, sRows[j], e.op('Sub', [alpha[j], beta]), R, 1); // R + s_j (α_j − β_j)
  }
  return R;
}

/**
 * The compact form (Byrd, Nocedal & Schnabel 1994, Thm 2.2) with H0 = γI or a diagonal H0, written
 * so that no large value is recovered by cancellation:
 *   P = R⁻¹·(S X),  Q = X − Yᵀ P,  H X = H0·Q + Sᵀ·R⁻ᵀ·(D P − Y·H0·Q),
 * R = upper triangle of S Yᵀ (R_ij = s_iᵀy_j, i ≤ j; oldest first), D its diagonal. Q is formed
 * explicitly, as in the two-loop recursion, where 'gram' took Y·Q as Y·X − (Y Yᵀ)·α. The four
 * products with S or Y are [p, d]×[d, k] Gemms (8·p·d·k flops, no sequential pass over X); the
 * p × p work (R⁻¹ by batched block recursion, the two small products) runs in float64 whatever
 * the graph's type. An empty slot (ρ_j = 0, zero rows) gets R_jj = 1, so its row of P is
 * s_jᵀX = 0 and it adds nothing.
 */
function compact(e: Emitter, X: string, S: string, Y: string, rho: string, gamma: LbfgsH0, p: number, dtype: DataType): string {
  const wide = (x: string) => (dtype === 'float64' ? x : e.op('Cast', [x], [A.int('to', 11)]));
  const narrow = (x: string) => (dtype === 'float64' ? x : e.op('Cast', [x], [A.int('to', 1)]));
  const SX = wide(e.op('MatMul', [S, X])); // [p, k]
  const SY = wide(e.gemm(S, Y, false, true)); // [p, p], SY_ij = s_iᵀy_j
  const eye = e.constant(identity(p), 'float64', [p, p]);
  const empty = e.op('Cast', [e.op('Equal', [rho, e.constant(0, dtype)])], [A.int('to', 11)]); // [p]
  const R = e.op('Add', [e.op('Mul', [SY, e.constant(upperTriangle(p), 'float64', [p, p])]), e.op('Mul', [eye, empty])]);
  const Rinv = emitUpperTriangularInverse(e, R, p, 'float64');
  const P = e.op('MatMul', [Rinv, SX]); // [p, k]
  const Q = gemm(e, Y, narrow(P), X, -1); // X − Yᵀ P
  const D = e.reduce('ReduceSum', e.op('Mul', [SY, eye]), [1], true); // [p, 1]
  // Y·H0·Q: a scalar γ scales the [p, k] product in float64; a diagonal H0 scales Q's rows first.
  const H0Q = scaleBy(e, Q, gamma, dtype, dimOf(e, S, 1));
  const YH0Q = typeof gamma === 'object' ? wide(e.op('MatMul', [Y, H0Q])) : scaleBy(e, wide(e.op('MatMul', [Y, Q])), typeof gamma === 'number' ? gamma : wide(gamma), 'float64', p);
  const inner = e.op('Sub', [e.op('Mul', [D, P]), YH0Q]);
  const c = narrow(e.gemm(Rinv, inner, true, false)); // R⁻ᵀ·inner, [p, k]
  return gemm(e, S, c, H0Q, 1);
}

/**
 * R⁻¹ for an upper-triangular R [n, n] with a nonzero diagonal, by block recursion done level by
 * level over all diagonal blocks at once (batched MatMuls): with R padded to n0 = 2^m by an
 * identity, the inverse of [[A, B], [0, C]] is [[A⁻¹, −A⁻¹·B·C⁻¹], [0, C⁻¹]], from the 1 × 1
 * blocks 1/r_ii up. Eight nodes per level (the blocks of −R by one Gather each) and log2(n0) levels, no
 * sequential pass per row.
 */
export function emitUpperTriangularInverse(e: Emitter, R: string, n: number, dtype: DataType): string {
  let n0 = 1;
  while (n0 < n) n0 *= 2;
  const padded = n0 === n ? R : e.op('Add', [
    e.op('Pad', [R, e.int64s([0, 0, n0 - n, n0 - n])]),
    e.constant(Array.from({ length: n0 * n0 }, (_, i) => (Math.floor(i / n0) === i % n0 && i % n0 >= n ? 1 : 0)), dtype, [n0, n0]),
  ]);
  // −R flattened: every level gathers its blocks −B from it by precomputed indices (one node).
  const negFlat = e.op('Reshape', [e.op('Neg', [padded]), e.int64s([n0 * n0])]);
  const gather = (indices: number[], dims: number[]) => e.op('Gather', [negFlat, e.constant(indices, 'int64', dims)], [A.int('axis', 0)]);
  const negDiag = gather(Array.from({ length: n0 }, (_, i) => i * (n0 + 1)), [n0, 1, 1]);
  let inv = e.op('Div', [e.constant(-1, dtype), negDiag]); // [n0/b, b, b]: the inverted diagonal blocks
  for (let b = 1; b < n0; b *= 2) {
    const pairs = n0 / (2 * b);
    const everyOther = (first: number) => e.op('Slice', [inv, e.int64s([first]), e.int64s([n0 / b]), e.int64s([0]), e.int64s([2])]);
    const [Ainv, Cinv] = [everyOther(0), everyOther(1)];
    // −B of pair i: rows 2ib..2ib+b−1, columns 2ib+b..2ib+2b−1 of the padded R.
    const negB = gather(Array.from({ length: pairs * b * b }, (_, j) => {
      const i = Math.floor(j / (b * b)); const r = Math.floor(j / b) % b; const c = j % b;
      return (2 * i * b + r) * n0 + 2 * i * b + b + c;
    }), [pairs, b, b]);
    const off = e.op('MatMul', [e.op('MatMul', [Ainv, negB]), Cinv]);
    const top = e.op('Concat', [Ainv, off], [A.int('axis', 2)]);
    const bottom = e.op('Concat', [e.constant(new Array<number>(pairs * b * b).fill(0), dtype, [pairs, b, b]), Cinv], [A.int('axis', 2)]);
    inv = e.op('Concat', [top, bottom], [A.int('axis', 1)]);
  }
  const full = e.op('Reshape', [inv, e.int64s([n0, n0])]);
  return n0 === n ? full : e.op('Slice', [full, e.int64s([0, 0]), e.int64s([n, n]), e.int64s([0, 1])]);
}

export interface LbfgsPushOptions {
  /** Memory p (rows of S); defaults to the static first dimension of S. */
  memory?: number;
  /** Element type; defaults to the registered type of S. */
  dtype?: DataType;
  /** Accept only when sᵀy > threshold·‖s‖²·‖r‖ (§2.2; default 1e-4). */
  threshold?: number;
}

export interface LbfgsPush {
  S: string;
  Y: string;
  rho: string;
  /** Scalar of the element type: 1 when the pair was stored, 0 when rejected. */
  accepted: string;
  /** Scalar sᵀy of the pair as given. */
  sTy: string;
}

/**
 * Stores the pair (s, y) ([d] each) as the newest row, dropping the oldest row (§2.2), when it is
 * accepted: sᵀs, yᵀy and 1/sᵀy are finite, sᵀy > 0 and sᵀy > threshold·‖s‖²·‖r‖ (r = ḡ on the
 * G side; null for no reference). Otherwise S, Y and rho come back unchanged. A NaN anywhere also
 * leads to a rejection, as every comparison with NaN is false.
 */
export function emitLbfgsPush(e: Emitter, S: string, Y: string, rho: string, s: string, y: string, r: string | null, opts: LbfgsPushOptions = {}): LbfgsPush {
  const p = memoryOf(e, S, opts.memory);
  const dtype = opts.dtype ?? e.dtypeOf(S);
  const k = (v: number) => e.constant(v, dtype);
  const sTy = dot(e, s, y);
  const sTs = dot(e, s, s);
  const yTy = dot(e, y, y);
  const rhoNew = e.op('Div', [k(1), sTy]);
  let limit = k(0);
  if (r !== null) limit = e.op('Mul', [e.op('Mul', [sTs, e.op('Sqrt', [dot(e, r, r)])]), k(opts.threshold ?? 1e-4)]);
  const accept = [
    e.op('Greater', [sTy, k(0)]), e.op('Greater', [sTy, limit]),
    isFinite(e, sTs, dtype), isFinite(e, yTy, dtype), isFinite(e, rhoNew, dtype),
  ].reduce((a, b) => e.op('And', [a, b]));

  // Drop row 0 (the oldest) and append the new pair as row p−1.
  const shift = (m: string, row: string) => {
    if (p === 1) return row;
    const kept = e.op('Slice', [m, e.int64s([1]), e.int64s([p]), e.int64s([0])]);
    return e.op('Concat', [kept, row], [A.int('axis', 0)]);
  };
  const S1 = shift(S, e.unsqueeze(s, [0]));
  const Y1 = shift(Y, e.unsqueeze(y, [0]));
  const rho1 = shift(rho, e.unsqueeze(rhoNew, [0]));
  return {
    S: e.op('Where', [accept, S1, S]),
    Y: e.op('Where', [accept, Y1, Y]),
    rho: e.op('Where', [accept, rho1, rho]),
    accepted: e.op('Where', [accept, k(1), k(0)]),
    sTy,
  };
}

/**
 * The textbook scaling γ = sᵀy / yᵀy of the newest pair (row p−1) as a scalar value, or `fallback`
 * (default 1) while the buffer is empty (ρ_{p−1} = 0).
 */
export function emitLbfgsGamma(e: Emitter, S: string, Y: string, rho: string, opts: { memory?: number; dtype?: DataType; fallback?: number } = {}): string {
  const p = memoryOf(e, S, opts.memory);
  const dtype = opts.dtype ?? e.dtypeOf(S);
  const k = (v: number) => e.constant(v, dtype);
  const last = e.constant(p - 1, 'int64');
  const s = e.op('Gather', [S, last], [A.int('axis', 0)]);
  const y = e.op('Gather', [Y, last], [A.int('axis', 0)]);
  const r = e.op('Gather', [rho, last], [A.int('axis', 0)]);
  const yTy = dot(e, y, y);
  const ok = e.op('And', [e.op('Greater', [r, k(0)]), e.op('Greater', [yTy, k(0)])]);
  return e.op('Where', [ok, e.op('Div', [dot(e, s, y), yTy]), k(opts.fallback ?? 1)]);
}

/** Zero-filled S [p, d], Y [p, d] and rho [p]: an empty buffer. */
export function emptyLbfgsState(p: number, d: number, dtype: 'float32' | 'float64'): { S: TensorData; Y: TensorData; rho: TensorData } {
  const z = (n: number) => (dtype === 'float64' ? new Float64Array(n) : new Float32Array(n));
  return { S: { dtype, dims: [p, d], data: z(p * d) }, Y: { dtype, dims: [p, d], data: z(p * d) }, rho: { dtype, dims: [p], data: z(p) } };
}

// ---- standalone models -------------------------------------------------------------------------

export interface LbfgsModelOptions {
  dtype: 'float32' | 'float64';
  /** Memory p. */
  p: number;
  /** Vector length d (rows of X). */
  d: number;
  opset?: number;
}

/**
 * A model with inputs X [d, k], S [p, d], Y [p, d], rho [p] (and gamma [] when `gamma` is 'input',
 * [d, 1] when 'diagonal')
 * and one output HX [d, k]. k is a symbolic dimension unless given. `gamma` 'newest' uses
 * emitLbfgsGamma.
 */
export function lbfgsApplyModel(o: LbfgsModelOptions & { k?: number; gamma?: number | 'input' | 'newest' | 'diagonal'; method?: LbfgsMethod }): onnx.ModelProto {
  const inputs: Array<[string, Dim[]]> = [['X', [o.d, o.k ?? 'k']], ['S', [o.p, o.d]], ['Y', [o.p, o.d]], ['rho', [o.p]]];
  if (o.gamma === 'input') inputs.push(['gamma', []]);
  if (o.gamma === 'diagonal') inputs.push(['gamma', [o.d, 1]]);
  return standaloneModel('kfqn-lbfgs-apply', o.dtype, inputs, o.opset, (e) => {
    const gamma = o.gamma === 'input' ? 'gamma' : o.gamma === 'diagonal' ? { diagonal: 'gamma' } : o.gamma === 'newest' ? emitLbfgsGamma(e, 'S', 'Y', 'rho') : (o.gamma ?? 1);
    return { HX: emitLbfgsApply(e, 'X', 'S', 'Y', 'rho', gamma, { method: o.method }) };
  });
}

/**
 * A model with inputs S, Y, rho, s [d], y [d] (and r [d] when `reference`), and outputs
 * S_out, Y_out, rho_out, accepted, sTy (emitLbfgsPush).
 */
export function lbfgsPushModel(o: LbfgsModelOptions & { reference?: boolean; threshold?: number }): onnx.ModelProto {
  const inputs: Array<[string, Dim[]]> = [['S', [o.p, o.d]], ['Y', [o.p, o.d]], ['rho', [o.p]], ['s', [o.d]], ['y', [o.d]]];
  if (o.reference) inputs.push(['r', [o.d]]);
  return standaloneModel('kfqn-lbfgs-push', o.dtype, inputs, o.opset, (e) => {
    const u = emitLbfgsPush(e, 'S', 'Y', 'rho', 's', 'y', o.reference ? 'r' : null, { threshold: o.threshold });
    return { S_out: u.S, Y_out: u.Y, rho_out: u.rho, accepted: u.accepted, sTy: u.sTy };
  });
}

function standaloneModel(name: string, dtype: DataType, inputs: Array<[string, Dim[]]>, opset: number | undefined, build: (e: Emitter) => Record<string, string>): onnx.ModelProto {
  const g = new Graph();
  g.name = name;
  if (opset !== undefined) g.opset = opset;
  if (g.opset < 13) throw new GraphError(`L-BFGS kernels need opset 13 or later, got ${g.opset}`);
  for (const [n, shape] of inputs) {
    g.fresh(n);
    const type = { dtype, shape };
    g.inputs.push({ name: n, type });
    g.types.set(n, type);
  }
  const outs = build(new Emitter(g));
  for (const [n, value] of Object.entries(outs)) {
    if (g.fresh(n) !== n) throw new GraphError(`output '${n}' collides with a value of the graph`);
    g.add('Identity', [value], [], [n]);
    g.outputs.push({ name: n, type: { dtype } });
  }
  return g.toModel();
}

// ---- helpers -----------------------------------------------------------------------------------

function memoryOf(e: Emitter, S: string, memory?: number): number {
  const p = memory ?? e.g.types.get(S)?.shape?.[0];
  if (typeof p !== 'number' || !Number.isInteger(p) || p < 1) {
    throw new GraphError(`L-BFGS: the memory p (rows of '${S}') must be a static positive integer; pass opts.memory`);
  }
  return p;
}

/** Dimension i of v's registered shape, if known. */
function dimOf(e: Emitter, v: string, i: number): Dim | undefined {
  return e.g.types.get(v)?.shape?.[i];
}

/** The p rows of m [p, n] as p values [1, n] (opset ≥ 13: split sizes as an input). */
function splitRows(e: Emitter, m: string, p: number): string[] {
  if (p === 1) return [m];
  if (e.opset < 13) throw new GraphError(`L-BFGS kernels need opset 13 or later, got ${e.opset}`);
  return e.g.add('Split', [m, e.int64s(new Array<number>(p).fill(1))], [A.int('axis', 0)], p);
}

/** c + sign·aᵀ·b for a [q, m], b [q, n] and c [m, n] (just aᵀ·b when c is null): one Gemm. */
function gemm(e: Emitter, a: string, b: string, c: string | null, sign: 1 | -1): string {
  const attrs = [A.int('transA', 1), A.int('transB', 0)];
  if (sign !== 1) attrs.push(A.float('alpha', sign));
  return e.op('Gemm', c === null ? [a, b] : [a, b, c], attrs);
}

/**
 * γ·x for x [rows, k]. A numeric γ becomes a [rows, 1] constant, not a scalar: ORT folds a
 * Mul/Div by a constant scalar next to a MatMul into FusedMatMul's float32 `alpha` attribute,
 * which would round γ (e.g. 0.7) to float32 in a float64 graph (seen as 1e-9 errors).
 */
function scaleBy(e: Emitter, x: string, gamma: LbfgsH0, dtype: DataType, rows: Dim | undefined): string {
  if (typeof gamma === 'object') return e.op('Mul', [x, gamma.diagonal]);
  if (typeof gamma !== 'number') return e.op('Mul', [x, gamma]);
  if (gamma === 1) return x;
  const k = typeof rows === 'number' && rows > 1 ? e.constant(new Array<number>(rows).fill(gamma), dtype, [rows, 1]) : e.constant(gamma, dtype);
  return e.op('Mul', [x, k]);
}

function dot(e: Emitter, x: string, y: string): string {
  return e.reduce('ReduceSum', e.op('Mul', [x, y]), null, false);
}

/** Scalar bool: x is finite (x − x is 0 for finite x, NaN otherwise, and NaN < 1 is false). */
function isFinite(e: Emitter, x: string, dtype: DataType): string {
  return e.op('Less', [e.op('Sub', [x, x]), e.constant(1, dtype)]);
}

/** Row-major p×p 0/1 mask of the upper triangle with the diagonal (col ≥ row). */
function upperTriangle(p: number): number[] {
  return Array.from({ length: p * p }, (_, i) => (i % p >= Math.floor(i / p) ? 1 : 0));
}

function identity(p: number): number[] {
  return Array.from({ length: p * p }, (_, i) => (Math.floor(i / p) === i % p ? 1 : 0));
}
