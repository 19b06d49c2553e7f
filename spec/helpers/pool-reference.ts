// Plain-TypeScript float64 pooling, forward and backward, by direct loops over windows: the
// reference kfqn's float32 pooling gradients are compared with where ONNX Runtime has no float64
// pooling kernels (AveragePool, GlobalAveragePool, GlobalMaxPool). The geometry follows ONNX
// Runtime's (output sizes, auto_pad, ceil_mode, count_include_pad divisors); specs check the
// forward against ORT and the backward against finite differences of the forward.

export type AutoPad = 'NOTSET' | 'SAME_UPPER' | 'SAME_LOWER' | 'VALID';

export interface PoolParams {
  kernel: number[];
  strides?: number[];
  /** [begin..., end...] as ONNX orders them. */
  pads?: number[];
  dilations?: number[];
  ceilMode?: boolean;
  autoPad?: AutoPad;
  /** AveragePool only. */
  countIncludePad?: boolean;
}

export interface Geometry { out: number[]; padBegin: number[]; padEnd: number[] }

/** Output size and the pads in effect, per spatial axis. */
export function poolGeometry(input: number[], p: PoolParams): Geometry {
  const r = p.kernel.length;
  const out: number[] = []; const padBegin: number[] = []; const padEnd: number[] = [];
  for (let a = 0; a < r; a++) {
    const n = input[a]; const k = p.kernel[a];
    const s = p.strides?.[a] ?? 1; const d = p.dilations?.[a] ?? 1;
    const eff = (k - 1) * d + 1;
    const auto = p.autoPad ?? 'NOTSET';
    let pb = p.pads?.[a] ?? 0; let pe = p.pads?.[a + r] ?? 0;
    if (auto === 'VALID') { pb = 0; pe = 0; }
    if (auto === 'SAME_UPPER' || auto === 'SAME_LOWER') {
      // ORT sizes SAME padding by the undilated kernel.
      const total = (Math.ceil(n / s) - 1) * s + k - n;
      pb = auto === 'SAME_UPPER' ? Math.floor(total / 2) : Math.ceil(total / 2);
      pe = total - pb;
    }
    const span = n + pb + pe - eff;
    let o = (p.ceilMode ? Math.ceil(span / s) : Math.floor(span / s)) + 1;
    // As PyTorch and ORT: in ceil mode, no window may start in the end padding.
    if (p.ceilMode && (o - 1) * s >= n + pb) o--;
    out.push(o); padBegin.push(pb); padEnd.push(pe);
  }
  return { out, padBegin, padEnd };
}

interface Window {
  /** Flat spatial offsets of the in-bounds window elements, in row-major window order. */
  inputs: number[];
  /** AveragePool's divisor with count_include_pad = 1: window positions inside input + pads. */
  withPad: number;
}

function strides(dims: number[]): number[] {
  const s = new Array<number>(dims.length).fill(1);
  for (let i = dims.length - 2; i >= 0; i--) s[i] = s[i + 1] * dims[i + 1];
  return s;
}

/** Every window, in output row-major order. */
function windows(spatial: number[], p: PoolParams, g: Geometry): Window[] {
  const r = spatial.length;
  const inStride = strides(spatial);
  // Per axis and output position: the input positions (−1 outside) and the count with padding.
  const perAxis = spatial.map((n, a) => {
    const k = p.kernel[a]; const s = p.strides?.[a] ?? 1; const d = p.dilations?.[a] ?? 1;
    return Array.from({ length: g.out[a] }, (_, o) => {
      const start = o * s - g.padBegin[a];
      const end = Math.min(start + (k - 1) * d + 1, n + g.padEnd[a]);
      const positions: number[] = [];
      for (let i = 0; i < k; i++) { const x = start + i * d; if (x >= 0 && x < n) positions.push(x); }
      return { positions, withPad: 1 + Math.floor((end - start - 1) / d) };
    });
  });
  const result: Window[] = [];
  const total = g.out.reduce((x, y) => x * y, 1);
  const outStride = strides(g.out);
  for (let flat = 0; flat < total; flat++) {
    const idx = g.out.map((_, a) => Math.floor(flat / outStride[a]) % g.out[a]);
    let inputs = [0]; let withPad = 1;
    for (let a = 0; a < r; a++) {
      const ax = perAxis[a][idx[a]];
      inputs = inputs.flatMap((base) => ax.positions.map((x) => base + x * inStride[a]));
      withPad *= ax.withPad;
    }
    result.push({ inputs, withPad });
  }
  return result;
}

export interface Pooled { y: Float64Array; dims: number[]; argmax: Int32Array }

/** dims = [N, C, ...spatial]; argmax: the flat input index of each output's first maximum. */
export function maxPool(x: ArrayLike<number>, dims: number[], p: PoolParams): Pooled {
  const [n, c, ...spatial] = dims;
  const g = poolGeometry(spatial, p);
  const ws = windows(spatial, p, g);
  const inSize = spatial.reduce((a, b) => a * b, 1);
  const y = new Float64Array(n * c * ws.length);
  const argmax = new Int32Array(y.length);
  for (let nc = 0; nc < n * c; nc++) {
    ws.forEach((w, o) => {
      let best = -Infinity; let at = -1;
      for (const i of w.inputs) if (at < 0 || x[nc * inSize + i] > best) { best = x[nc * inSize + i]; at = nc * inSize + i; }
      y[nc * ws.length + o] = best;
      argmax[nc * ws.length + o] = at;
    });
  }
  return { y, dims: [n, c, ...g.out], argmax };
}

/** dx of MaxPool: each dy to its window's first maximum, accumulated where windows overlap. */
export function maxPoolBackward(dy: ArrayLike<number>, argmax: Int32Array, inputLength: number): Float64Array {
  const dx = new Float64Array(inputLength);
  for (let i = 0; i < dy.length; i++) if (argmax[i] >= 0) dx[argmax[i]] += dy[i];
  return dx;
}

function divisors(ws: Window[], p: PoolParams): number[] {
  return ws.map((w) => (p.countIncludePad ? w.withPad : w.inputs.length));
}

export function averagePool(x: ArrayLike<number>, dims: number[], p: PoolParams): { y: Float64Array; dims: number[] } {
  const [n, c, ...spatial] = dims;
  const g = poolGeometry(spatial, p);
  const ws = windows(spatial, p, g);
  const div = divisors(ws, p);
  const inSize = spatial.reduce((a, b) => a * b, 1);
  const y = new Float64Array(n * c * ws.length);
  for (let nc = 0; nc < n * c; nc++) {
    ws.forEach((w, o) => {
      let s = 0;
      for (const i of w.inputs) s += x[nc * inSize + i];
      y[nc * ws.length + o] = w.inputs.length ? s / div[o] : 0;
    });
  }
  return { y, dims: [n, c, ...g.out] };
}

export function averagePoolBackward(dy: ArrayLike<number>, dims: number[], p: PoolParams): Float64Array {
  const [n, c, ...spatial] = dims;
  const g = poolGeometry(spatial, p);
  const ws = windows(spatial, p, g);
  const div = divisors(ws, p);
  const inSize = spatial.reduce((a, b) => a * b, 1);
  const dx = new Float64Array(n * c * inSize);
  for (let nc = 0; nc < n * c; nc++) {
    ws.forEach((w, o) => {
      if (!w.inputs.length) return;
      for (const i of w.inputs) dx[nc * inSize + i] += dy[nc * ws.length + o] / div[o];
    });
  }
  return dx;
}

/** GlobalMaxPool / GlobalAveragePool: one window over all spatial axes. */
export function globalParams(dims: number[]): PoolParams {
  return { kernel: dims.slice(2) };
}

/** Central differences of f at x, every entry perturbed by ±h. */
export function finiteDifferences(f: (x: Float64Array) => number, x: ArrayLike<number>, h = 1e-6): Float64Array {
  const base = Float64Array.from(x);
  const g = new Float64Array(base.length);
  for (let i = 0; i < base.length; i++) {
    const v = base[i];
    base[i] = v + h; const up = f(base);
    base[i] = v - h; const down = f(base);
    base[i] = v;
    g[i] = (up - down) / (2 * h);
  }
  return g;
}

/** Σ (y − t)², kfqn's mse loss with reduction 'sum', and its gradient 2(y − t). */
export function mseSum(y: ArrayLike<number>, t: ArrayLike<number>): { loss: number; dy: Float64Array } {
  const dy = new Float64Array(y.length);
  let loss = 0;
  for (let i = 0; i < y.length; i++) { const d = y[i] - t[i]; loss += d * d; dy[i] = 2 * d; }
  return { loss, dy };
}

/** Constant-zero Pad of [N, C, ...] (or any rank) by per-axis begins/ends; negative values crop. */
export function padZeros(x: ArrayLike<number>, dims: number[], begins: number[], ends: number[]): { y: Float64Array; dims: number[] } {
  const out = dims.map((d, i) => d + begins[i] + ends[i]);
  const y = new Float64Array(out.reduce((a, b) => a * b, 1));
  const inS = strides(dims); const outS = strides(out);
  for (let j = 0; j < y.length; j++) {
    let src = 0; let inside = true;
    for (let a = 0; a < out.length; a++) {
      const i = Math.floor(j / outS[a]) % out[a] - begins[a];
      if (i < 0 || i >= dims[a]) { inside = false; break; }
      src += i * inS[a];
    }
    if (inside) y[j] = x[src];
  }
  return { y, dims: out };
}

/** dx of padZeros: dy at the positions the input moved to (zero where the Pad cropped). */
export function padZerosBackward(dy: ArrayLike<number>, dims: number[], begins: number[], ends: number[]): Float64Array {
  return padZeros(dy, dims.map((d, i) => d + begins[i] + ends[i]), begins.map((b) => -b), ends.map((v) => -v)).y;
}
