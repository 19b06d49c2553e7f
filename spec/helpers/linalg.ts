// Plain-TypeScript float64 dense linear algebra for reference values in specs. Row-major, as
// ONNX tensors are (ALGORITHMS.md §1.2). Small and obvious rather than fast.
import { Rng } from './models.js';

export interface Mat { rows: number; cols: number; data: Float64Array }

export function mat(rows: number, cols: number, values?: ArrayLike<number>): Mat {
  const data = new Float64Array(rows * cols);
  if (values) {
    if (values.length !== rows * cols) throw new Error(`mat: ${values.length} values for ${rows}×${cols}`);
    data.set(values);
  }
  return { rows, cols, data };
}

export function identity(n: number): Mat {
  const m = mat(n, n);
  for (let i = 0; i < n; i++) m.data[i * n + i] = 1;
  return m;
}

export function at(m: Mat, i: number, j: number): number { return m.data[i * m.cols + j]; }

export function matmul(a: Mat, b: Mat): Mat {
  if (a.cols !== b.rows) throw new Error(`matmul: ${a.rows}×${a.cols} · ${b.rows}×${b.cols}`);
  const c = mat(a.rows, b.cols);
  for (let i = 0; i < a.rows; i++) {
    for (let k = 0; k < a.cols; k++) {
      const aik = a.data[i * a.cols + k];
      if (aik === 0) continue;
      for (let j = 0; j < b.cols; j++) c.data[i * b.cols + j] += aik * b.data[k * b.cols + j];
    }
  }
  return c;
}

export function transpose(a: Mat): Mat {
  const t = mat(a.cols, a.rows);
  for (let i = 0; i < a.rows; i++) for (let j = 0; j < a.cols; j++) t.data[j * a.rows + i] = a.data[i * a.cols + j];
  return t;
}

export function add(a: Mat, b: Mat): Mat {
  return mat(a.rows, a.cols, a.data.map((v, i) => v + b.data[i]));
}

export function scale(a: Mat, k: number): Mat {
  return mat(a.rows, a.cols, a.data.map((v) => v * k));
}

export function matvec(a: Mat, x: ArrayLike<number>): Float64Array {
  const y = new Float64Array(a.rows);
  for (let i = 0; i < a.rows; i++) {
    let acc = 0;
    for (let j = 0; j < a.cols; j++) acc += a.data[i * a.cols + j] * x[j];
    y[i] = acc;
  }
  return y;
}

export function outer(x: ArrayLike<number>, y: ArrayLike<number>): Mat {
  const m = mat(x.length, y.length);
  for (let i = 0; i < x.length; i++) for (let j = 0; j < y.length; j++) m.data[i * y.length + j] = x[i] * y[j];
  return m;
}

export function dot(x: ArrayLike<number>, y: ArrayLike<number>): number {
  let acc = 0;
  for (let i = 0; i < x.length; i++) acc += x[i] * y[i];
  return acc;
}

export function norm(x: ArrayLike<number>): number { return Math.sqrt(dot(x, x)); }

export function axpy(alpha: number, x: ArrayLike<number>, y: ArrayLike<number>): Float64Array {
  return Float64Array.from(y, (v, i) => v + alpha * x[i]);
}

/** Lower-triangular L with L Lᵀ = a, or null when a is not (numerically) positive definite. */
export function cholesky(a: Mat): Mat | null {
  const n = a.rows;
  const l = mat(n, n);
  for (let j = 0; j < n; j++) {
    let d = a.data[j * n + j];
    for (let k = 0; k < j; k++) d -= l.data[j * n + k] ** 2;
    if (!(d > 0)) return null;
    const ljj = Math.sqrt(d);
    l.data[j * n + j] = ljj;
    for (let i = j + 1; i < n; i++) {
      let v = a.data[i * n + j];
      for (let k = 0; k < j; k++) v -= l.data[i * n + k] * l.data[j * n + k];
      l.data[i * n + j] = v / ljj;
    }
  }
  return l;
}

/** Largest |a_ij − a_ji|. */
export function asymmetry(a: Mat): number {
  let m = 0;
  for (let i = 0; i < a.rows; i++) for (let j = 0; j < i; j++) m = Math.max(m, Math.abs(a.data[i * a.cols + j] - a.data[j * a.cols + i]));
  return m;
}

/** Explicit Kronecker product p ⊗ q (tests only, §1.2). */
export function kron(p: Mat, q: Mat): Mat {
  const k = mat(p.rows * q.rows, p.cols * q.cols);
  for (let i = 0; i < p.rows; i++) for (let j = 0; j < p.cols; j++) {
    const pij = p.data[i * p.cols + j];
    for (let r = 0; r < q.rows; r++) for (let c = 0; c < q.cols; c++) {
      k.data[(i * q.rows + r) * k.cols + j * q.cols + c] = pij * q.data[r * q.cols + c];
    }
  }
  return k;
}

export function randomMat(rows: number, cols: number, seed: number): Mat {
  const rng = new Rng(seed);
  return mat(rows, cols, Array.from({ length: rows * cols }, () => rng.normal()));
}

export function randomVector(n: number, seed: number): Float64Array {
  const rng = new Rng(seed);
  return Float64Array.from({ length: n }, () => rng.normal());
}

/** A random symmetric positive-definite matrix B Bᵀ/n + shift·I. */
export function randomSpd(n: number, seed: number, shift = 0.5): Mat {
  const b = randomMat(n, n, seed);
  const m = scale(matmul(b, transpose(b)), 1 / n);
  for (let i = 0; i < n; i++) m.data[i * n + i] += shift;
  return m;
}

/** BFGS inverse update in the product form (I − ρ s yᵀ) H (I − ρ y sᵀ) + ρ s sᵀ (§2.1). */
export function bfgsProductForm(h: Mat, s: ArrayLike<number>, y: ArrayLike<number>): Mat {
  const n = h.rows;
  const rho = 1 / dot(s, y);
  const left = add(identity(n), scale(outer(s, y), -rho));
  return add(matmul(matmul(left, h), transpose(left)), scale(outer(s, s), rho));
}

/** max |a − b| / max(1, max |b|). */
export function relMaxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let d = 0;
  let m = 1;
  for (let i = 0; i < b.length; i++) { d = Math.max(d, Math.abs(a[i] - b[i])); m = Math.max(m, Math.abs(b[i])); }
  return d / m;
}

/** Eigen-decomposition of a symmetric matrix by cyclic Jacobi rotations: a = V·diag(values)·Vᵀ. */
export function symmetricEigen(a: Mat): { values: Float64Array; vectors: Mat } {
  const n = a.rows;
  const m = mat(n, n, a.data);
  const v = identity(n);
  for (let sweep = 0; sweep < 100; sweep++) {
    let off = 0;
    for (let p = 0; p < n; p++) for (let q = p + 1; q < n; q++) off += at(m, p, q) ** 2;
    if (off < 1e-30) break;
    for (let p = 0; p < n; p++) {
      for (let q = p + 1; q < n; q++) {
        const apq = at(m, p, q);
        if (Math.abs(apq) < 1e-300) continue;
        const theta = (at(m, q, q) - at(m, p, p)) / (2 * apq);
        const t = Math.sign(theta || 1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const c = 1 / Math.sqrt(t * t + 1); const s = t * c;
        for (let k = 0; k < n; k++) { // columns p, q of m·J
          const mkp = at(m, k, p); const mkq = at(m, k, q);
          m.data[k * n + p] = c * mkp - s * mkq; m.data[k * n + q] = s * mkp + c * mkq;
        }
        for (let k = 0; k < n; k++) { // rows p, q of Jᵀ·m
          const mpk = at(m, p, k); const mqk = at(m, q, k);
          m.data[p * n + k] = c * mpk - s * mqk; m.data[q * n + k] = s * mpk + c * mqk;
        }
        for (let k = 0; k < n; k++) {
          const vkp = at(v, k, p); const vkq = at(v, k, q);
          v.data[k * n + p] = c * vkp - s * vkq; v.data[k * n + q] = s * vkp + c * vkq;
        }
      }
    }
  }
  return { values: Float64Array.from({ length: n }, (_, i) => at(m, i, i)), vectors: v };
}

/** f(a) = V·diag(f(λ))·Vᵀ for a symmetric matrix a. */
export function symmetricFunction(a: Mat, f: (lambda: number) => number): Mat {
  const { values, vectors } = symmetricEigen(a);
  const n = a.rows;
  const out = mat(n, n);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) {
    let s = 0;
    for (let k = 0; k < n; k++) s += at(vectors, i, k) * f(values[k]) * at(vectors, j, k);
    out.data[i * n + j] = s;
  }
  return out;
}
