// L-BFGS inverse-Hessian operator as ONNX subgraphs (ALGORITHMS.md §2.2, §1.2, §6).
//
// State (fixed-size tensors, so one graph per layer shape serves every step):
//   S [p, d], Y [p, d]: the stored pairs, one per row, ordered oldest (row 0) → newest (row p−1).
//     emitLbfgsPush shifts rows up on insert (S ← Concat(S[1:], s)), so the newest pair is always
//     row p−1 and, while fewer than p pairs are stored, the empty rows are the first ones.
//   rho [p]: ρ_j = 1/s_jᵀy_j, and 0 for an empty slot (zero rows of S and Y).
// An empty slot needs no mask: in the two-loop recursion α_j = ρ_j·s_jᵀQ = 0 and Q −= y_j·α_j = Q,
// then β_j = ρ_j·y_jᵀR = 0 and R += s_j·(α_j − β_j) = R, so the slot is a no-op wherever it sits
// (its rows are zero, hence finite, so 0·row stays 0).
//
// emitLbfgsApply computes H·X for X [d, k] (H applied to every column; for the G side X is the
// d_g × d_a gradient and this is H_g·X of D = H_g X H_a). Two formulations, equal in exact arithmetic:
//  - 'gram': the two-loop recursion rewritten on Gram matrices. With Z = [S; Y] [2p, d],
//    the only O(d) work is ZX = Z·X [2p, k], ZZᵀ [2p, 2p] and one final Gemm
//    HX = γX + Zᵀ·[δ; −γα] (δ = α − β). The recursions over the p slots then run on [p, k] matrices:
//      α_j = ρ_j·(s_jᵀX − Σ_{i>j} s_jᵀy_i·α_i)               (newest → oldest)
//      β_j = ρ_j·(γ·y_jᵀQ + Σ_{i<j} y_jᵀs_i·δ_i),  Y·Q = Y·X − (Y Yᵀ)·α    (oldest → newest)
//    i.e. the triangular solves of the compact (Byrd–Nocedal–Schnabel) form done by forward
//    substitution inside the graph (no Inverse op, nothing fetched to JavaScript). Cost
//    4·p·d·k + 4·p²·d + O(p²·k) flops in a few large MatMuls plus ~6 small nodes per slot.
//  - 'two-loop' (default): the textbook recursion on X as a matrix (5 nodes per slot, each touching
//    a [d, k] matrix). Same 4·p·d·k flops without the 4·p²·d Gram term; slower than 'gram' for wide X
//    (2p sequential passes over X) but numerically robust: in float32 'gram' loses Y·Q = YX − (YYᵀ)α
//    to cancellation once the stored pairs are nearly collinear (K-BFGS's EMA'd pairs are), which
//    made K-BFGS(L) blow up after ~50–140 steps on the MNIST autoencoder where the two-loop form
//    trains on (and matches dense K-BFGS).
// Ops used (opset ≥ 13): MatMul, Gemm, Mul, Add, Sub, Div, Neg, Transpose, Split, Gather, Slice,
// Concat, Unsqueeze, ReduceSum, Sqrt, Greater, Less, And, Where, Identity: standard ops that the CPU,
// WASM and WebGPU EPs implement (only the CPU EP is exercised by the specs). Measured for p = 100 (node counts of lbfgsApplyModel): 'gram' 624 nodes, 'two-loop' 508.
//
// float64 caveat: ORT's MatMulScaleFusion folds a Mul by a constant *scalar* initializer next to a
// MatMul into a float32 `alpha` attribute. A numeric γ is therefore emitted as a [rows, 1] constant;
// a γ passed by name should not be a constant scalar initializer in float64 graphs.
import type { DataType, TensorData } from '../onnx/index.js';
import type { onnx } from '../onnx/index.js';
import { A, Graph, GraphError, type Dim } from '../ir/graph.js';
import { Emitter } from '../ir/emitter.js';

export type LbfgsMethod = 'gram' | 'two-loop';

export interface LbfgsApplyOptions {
  /** Memory p (rows of S); defaults to the static first dimension of S. */
  memory?: number;
  /** Element type; defaults to the registered type of X (or S). */
  dtype?: DataType;
  /** Formulation (see the file comment); default 'two-loop'. */
  method?: LbfgsMethod;
}

/**
 * H·X for the L-BFGS operator with pairs (S, Y, rho) and H0 = γI (§2.2).
 * X is [d, k]; S and Y are [p, d] (oldest row first), rho is [p] (0 for empty slots).
 * `gamma` is a number (a constant; the authors use 1 on the G side) or the name of a scalar value
 * of the element type (e.g. from emitLbfgsGamma). Returns a value [d, k].
 */
export function emitLbfgsApply(e: Emitter, X: string, S: string, Y: string, rho: string, gamma: number | string = 1, opts: LbfgsApplyOptions = {}): string {
  const p = memoryOf(e, S, opts.memory);
  const dtype = opts.dtype ?? e.g.types.get(X)?.dtype ?? e.dtypeOf(S);
  const method = opts.method ?? 'two-loop';
  if (method === 'two-loop') return twoLoop(e, X, S, Y, rho, gamma, p, dtype);
  if (method !== 'gram') throw new GraphError(`L-BFGS: unknown method '${String(method)}'`);
  return gramTwoLoop(e, X, S, Y, rho, gamma, p, dtype);
}

function twoLoop(e: Emitter, X: string, S: string, Y: string, rho: string, gamma: number | string, p: number, dtype: DataType): string {
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

function gramTwoLoop(e: Emitter, X: string, S: string, Y: string, rho: string, gamma: number | string, p: number, dtype: DataType): string {
  const Z = e.op('Concat', [S, Y], [A.int('axis', 0)]); // [2p, d]
  const ZX = e.op('MatMul', [Z, X]); // [2p, k]
  const G = e.gemm(Z, Z, false, true); // [2p, 2p] = [[S Sᵀ, S Yᵀ], [Y Sᵀ, Y Yᵀ]]
  const block = (r0: number, c0: number) => e.op('Slice', [G, e.int64s([r0, c0]), e.int64s([r0 + p, c0 + p]), e.int64s([0, 1])]);
  const rowsOf = (m: string, r0: number) => e.op('Slice', [m, e.int64s([r0]), e.int64s([r0 + p]), e.int64s([0])]);
  const SX = rowsOf(ZX, 0);
  const YX = rowsOf(ZX, p);
  const rhoCol = e.unsqueeze(rho, [1]);
  const upper = e.constant(triangle(p, 'upper'), dtype, [p, p]);
  const lower = e.constant(triangle(p, 'lower'), dtype, [p, p]);

  // Loop 1, newest → oldest: α = ρ⊙SX − U·α with U = diag(ρ)·strictUpper(S Yᵀ) (U_ji = ρ_j s_jᵀy_i, i > j).
  // acc holds U·α over the slots done so far; row j of acc is final once every i > j is done.
  const rhoSX = e.op('Mul', [SX, rhoCol]);
  const U = e.op('Mul', [e.op('Mul', [block(0, p), upper]), rhoCol]);
  const rhoSXRows = splitRows(e, rhoSX, p);
  const uCols = splitRows(e, transpose(e, U), p); // row i = column i of U, [1, p]
  let acc: string | null = null;
  for (let j = p - 1; j >= 0; j--) {
    const aj = acc === null ? rhoSXRows[j] : e.op('Sub', [rhoSXRows[j], gatherRow(e, acc, j)]);
    if (j > 0) acc = gemm(e, uCols[j], aj, acc, 1);
  }
  const alpha = acc === null ? rhoSX : e.op('Sub', [rhoSX, acc]); // [p, k]

  // Loop 2, oldest → newest: δ = α − β, β_j = ρ_j(γ·(YQ)_j + Σ_{i<j} y_jᵀs_i δ_i), YQ = YX − (Y Yᵀ)α.
  // So δ = E − L·δ with E = α − γ·ρ⊙YQ and L = diag(ρ)·strictLower(Y Sᵀ).
  const YQ = e.op('Sub', [YX, e.op('MatMul', [block(p, p), alpha])]);
  const E = e.op('Sub', [alpha, e.op('Mul', [scaleBy(e, YQ, gamma, dtype, p), rhoCol])]);
  const L = e.op('Mul', [e.op('Mul', [block(p, 0), lower]), rhoCol]);
  const eRows = splitRows(e, E, p);
  const lCols = splitRows(e, transpose(e, L), p);
  let acc2: string | null = null;
  for (let j = 0; j < p; j++) {
    const dj = acc2 === null ? eRows[j] : e.op('Sub', [eRows[j], gatherRow(e, acc2, j)]);
    if (j < p - 1) acc2 = gemm(e, lCols[j], dj, acc2, 1);
  }
  const delta = acc2 === null ? E : e.op('Sub', [E, acc2]); // [p, k]

  // H X = γ(X − Yᵀα) + Sᵀδ = γX + Zᵀ·[δ; −γα].
  const coeff = e.op('Concat', [delta, e.op('Neg', [scaleBy(e, alpha, gamma, dtype, p)])], [A.int('axis', 0)]);
  return gemm(e, Z, coeff, scaleBy(e, X, gamma, dtype, dimOf(e, S, 1)), 1);
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
 * A model with inputs X [d, k], S [p, d], Y [p, d], rho [p] (and gamma [] when `gamma` is 'input')
 * and one output HX [d, k]. k is a symbolic dimension unless given. `gamma` 'newest' uses
 * emitLbfgsGamma.
 */
export function lbfgsApplyModel(o: LbfgsModelOptions & { k?: number; gamma?: number | 'input' | 'newest'; method?: LbfgsMethod }): onnx.ModelProto {
  const inputs: Array<[string, Dim[]]> = [['X', [o.d, o.k ?? 'k']], ['S', [o.p, o.d]], ['Y', [o.p, o.d]], ['rho', [o.p]]];
  if (o.gamma === 'input') inputs.push(['gamma', []]);
  return standaloneModel('kfqn-lbfgs-apply', o.dtype, inputs, o.opset, (e) => {
    const gamma = o.gamma === 'input' ? 'gamma' : o.gamma === 'newest' ? emitLbfgsGamma(e, 'S', 'Y', 'rho') : (o.gamma ?? 1);
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

/** Row j of m as [1, n]. */
function gatherRow(e: Emitter, m: string, j: number): string {
  return e.op('Gather', [m, e.int64s([j])], [A.int('axis', 0)]);
}

/** c + sign·aᵀ·b for a [q, m], b [q, n] and c [m, n] (just aᵀ·b when c is null): one Gemm. */
function gemm(e: Emitter, a: string, b: string, c: string | null, sign: 1 | -1): string {
  const attrs = [A.int('transA', 1), A.int('transB', 0)];
  if (sign !== 1) attrs.push(A.float('alpha', sign));
  return e.op('Gemm', c === null ? [a, b] : [a, b, c], attrs);
}

function transpose(e: Emitter, m: string): string {
  return e.op('Transpose', [m], [A.ints('perm', [1, 0])]);
}

/**
 * γ·x for x [rows, k]. A numeric γ becomes a [rows, 1] constant, not a scalar: ORT folds a
 * Mul/Div by a constant scalar next to a MatMul into FusedMatMul's float32 `alpha` attribute,
 * which would round γ (e.g. 0.7) to float32 in a float64 graph (seen as 1e-9 errors).
 */
function scaleBy(e: Emitter, x: string, gamma: number | string, dtype: DataType, rows: Dim | undefined): string {
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

/** Row-major p×p 0/1 mask of the strict upper (col > row) or strict lower (col < row) triangle. */
function triangle(p: number, which: 'upper' | 'lower'): number[] {
  const m = new Array<number>(p * p).fill(0);
  for (let r = 0; r < p; r++) for (let c = 0; c < p; c++) if (which === 'upper' ? c > r : c < r) m[r * p + c] = 1;
  return m;
}
