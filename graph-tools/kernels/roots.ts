// Inverse p-th roots of symmetric positive definite matrices, (M + εI)^(−1/p), for Shampoo
// (ALGORITHMS.md §7.5). ONNX has no eigen-solver, so this is the coupled Newton iteration of Guo &
// Higham (2006), matrix products only:
//   X₀ = I/c, M₀ = (M + εI)/cᵖ with cᵖ = ‖M + εI‖_F (every eigenvalue of M₀ in (0, 1]);
//   T = ((p+1)I − M_k)/p;  X_{k+1} = X_k·T;  M_{k+1} = Tᵖ·M_k
// M_k → I and X_k → (M + εI)^(−1/p). An eigenvalue μ of M₀ grows by about ((p+1)/p)ᵖ per iteration
// while small, then converges quadratically, so the count needed grows with log(‖M‖/ε): a
// truncated iteration under-estimates the root of the smallest eigenvalues only (extra damping).
import { A } from '../ir/graph.js';
import type { Emitter } from '../ir/emitter.js';
import type { DataType } from '../onnx/index.js';

export interface InverseRootOptions {
  /** p of M^(−1/p) (Shampoo: 4 for a matrix's two factors). */
  root: number;
  /** ε added to the diagonal first. */
  epsilon: number;
  /** Newton iterations, unrolled in the graph. */
  iterations: number;
  dtype?: DataType;
}

/** (M + εI)^(−1/p) of a batch of symmetric positive definite d × d matrices M [..., d, d]. */
export function emitInverseRoot(e: Emitter, M: string, d: number, o: InverseRootOptions): string {
  const dtype = o.dtype ?? e.dtypeOf(M);
  const p = o.root;
  if (!Number.isInteger(p) || p < 1) throw new RangeError(`root must be an integer ≥ 1, got ${p}`);
  const eye = (v: number) => e.constant(Array.from({ length: d * d }, (_, k) => (k % (d + 1) === 0 ? v : 0)), dtype, [d, d]);
  const k = (v: number) => e.constant(v, dtype);
  const rank = e.shapeOf(M).length;
  const regularised = e.op('Add', [M, eye(o.epsilon)]);
  const norm = e.op('Sqrt', [e.reduce('ReduceSumSquare', regularised, [rank - 2, rank - 1], true)]); // cᵖ, [..., 1, 1]
  let Mk = e.op('Div', [regularised, norm]);
  let X = e.op('Mul', [eye(1), e.op('Pow', [norm, k(-1 / p)])]);
  for (let i = 0; i < o.iterations; i++) {
    const T = e.op('Mul', [e.op('Sub', [eye(p + 1), Mk]), k(1 / p)]);
    X = e.op('MatMul', [X, T]);
    Mk = e.op('MatMul', [power(e, T, p), Mk]);
  }
  // Symmetrise: the iterates are polynomials in M, symmetric up to rounding.
  const perm = [...Array(rank).keys()];
  [perm[rank - 2], perm[rank - 1]] = [perm[rank - 1], perm[rank - 2]];
  return e.op('Mul', [e.op('Add', [X, e.op('Transpose', [X], [A.ints('perm', perm)])]), k(0.5)]);
}

/** Tᵖ by repeated squaring. */
function power(e: Emitter, T: string, p: number): string {
  let result: string | undefined;
  let base = T;
  for (let n = p; n > 0; n >>= 1) {
    if (n & 1) result = result ? e.op('MatMul', [result, base]) : base;
    if (n > 1) base = e.op('MatMul', [base, base]);
  }
  return result!;
}
