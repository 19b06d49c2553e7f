// A plain-TypeScript float64 convolution (ONNX Conv semantics, 1-D and 2-D, NCHW), forward and
// backward by direct loops, for checking kfqn's Conv gradients. 1-D is computed as 2-D with height 1.
// Padding for auto_pad follows the ONNX spec: output = ceil(in / stride), total padding
// max(0, (output − 1)·stride + dilated kernel − in), the odd one at the end (SAME_UPPER) or the
// beginning (SAME_LOWER).

export type AutoPad = 'NOTSET' | 'SAME_UPPER' | 'SAME_LOWER' | 'VALID';

export interface ConvParams {
  strides?: number[];
  /** [begin..., end...] per spatial axis (auto_pad NOTSET). */
  pads?: number[];
  dilations?: number[];
  group?: number;
  autoPad?: AutoPad;
}

export interface Tensor64 { dims: number[]; data: Float64Array }

interface Geometry {
  n: number; c: number; h: number; w: number;
  m: number; cg: number; kh: number; kw: number;
  sh: number; sw: number; dh: number; dw: number;
  pt: number; pl: number;
  oh: number; ow: number;
  group: number;
}

/** Per-axis [begin, end] pads of spatial axes (for input sizes `sizes`, kernel `kernel`). */
export function resolvePads(sizes: number[], kernel: number[], p: ConvParams): number[] {
  const r = sizes.length;
  const strides = p.strides ?? sizes.map(() => 1);
  const dil = p.dilations ?? sizes.map(() => 1);
  const mode = p.autoPad ?? 'NOTSET';
  if (mode === 'NOTSET') return p.pads ?? new Array<number>(2 * r).fill(0);
  if (mode === 'VALID') return new Array<number>(2 * r).fill(0);
  const begin: number[] = [];
  const end: number[] = [];
  sizes.forEach((size, i) => {
    const out = Math.ceil(size / strides[i]);
    const total = Math.max(0, (out - 1) * strides[i] + (kernel[i] - 1) * dil[i] + 1 - size);
    const small = Math.floor(total / 2);
    begin.push(mode === 'SAME_UPPER' ? small : total - small);
    end.push(mode === 'SAME_UPPER' ? total - small : small);
  });
  return [...begin, ...end];
}

function geometry(xDims: number[], wDims: number[], p: ConvParams): Geometry {
  const r = xDims.length - 2;
  if (r !== 1 && r !== 2) throw new RangeError(`reference conv: ${r} spatial axes`);
  const sizes = xDims.slice(2);
  const kernel = wDims.slice(2);
  const pads = resolvePads(sizes, kernel, p);
  const strides = p.strides ?? sizes.map(() => 1);
  const dil = p.dilations ?? sizes.map(() => 1);
  // 1-D as 2-D with a height of 1.
  const two = (v: number[], fill: number) => (r === 1 ? [fill, v[0]] : v);
  const [h, w] = two(sizes, 1);
  const [kh, kw] = two(kernel, 1);
  const [sh, sw] = two(strides, 1);
  const [dh, dw] = two(dil, 1);
  const [pt, pl] = two(pads.slice(0, r), 0);
  const [pb, pr] = two(pads.slice(r), 0);
  const oh = Math.floor((h + pt + pb - ((kh - 1) * dh + 1)) / sh) + 1;
  const ow = Math.floor((w + pl + pr - ((kw - 1) * dw + 1)) / sw) + 1;
  const group = p.group ?? 1;
  const [n, c] = xDims;
  const [m, cg] = wDims;
  if (c !== cg * group || m % group !== 0) throw new RangeError('reference conv: channels do not match the group');
  if (oh < 1 || ow < 1) throw new RangeError('reference conv: input smaller than the kernel');
  return { n, c, h, w, m, cg, kh, kw, sh, sw, dh, dw, pt, pl, oh, ow, group };
}

/** Visits every (output, weight, input) triple of the convolution with the input in range. */
function eachTap(g: Geometry, f: (yi: number, wi: number, xi: number, m: number) => void): void {
  const mg = g.m / g.group;
  for (let n = 0; n < g.n; n++) {
    for (let m = 0; m < g.m; m++) {
      const grp = Math.floor(m / mg);
      for (let oy = 0; oy < g.oh; oy++) {
        for (let ox = 0; ox < g.ow; ox++) {
          const yi = ((n * g.m + m) * g.oh + oy) * g.ow + ox;
          for (let cc = 0; cc < g.cg; cc++) {
            const c = grp * g.cg + cc;
            for (let ky = 0; ky < g.kh; ky++) {
              const iy = oy * g.sh + ky * g.dh - g.pt;
              if (iy < 0 || iy >= g.h) continue;
              for (let kx = 0; kx < g.kw; kx++) {
                const ix = ox * g.sw + kx * g.dw - g.pl;
                if (ix < 0 || ix >= g.w) continue;
                f(yi, ((m * g.cg + cc) * g.kh + ky) * g.kw + kx, ((n * g.c + c) * g.h + iy) * g.w + ix, m);
              }
            }
          }
        }
      }
    }
  }
}

function outDims(xDims: number[], g: Geometry): number[] {
  return xDims.length === 3 ? [g.n, g.m, g.ow] : [g.n, g.m, g.oh, g.ow];
}

/** Y = conv(X, W) + B. */
export function convForward(x: Tensor64, w: Tensor64, b: Float64Array | undefined, p: ConvParams = {}): Tensor64 {
  const g = geometry(x.dims, w.dims, p);
  const dims = outDims(x.dims, g);
  const y = new Float64Array(dims.reduce((s, d) => s * d, 1));
  const plane = g.oh * g.ow;
  if (b) for (let i = 0; i < y.length; i++) y[i] = b[Math.floor(i / plane) % g.m];
  eachTap(g, (yi, wi, xi) => { y[yi] += w.data[wi] * x.data[xi]; });
  return { dims, data: y };
}

/** dX, dW and dB of conv(X, W) + B given dY. */
export function convBackward(x: Tensor64, w: Tensor64, dy: Tensor64, p: ConvParams = {}): { dx: Tensor64; dw: Tensor64; db: Float64Array } {
  const g = geometry(x.dims, w.dims, p);
  const dims = outDims(x.dims, g);
  if (dims.some((d, i) => d !== dy.dims[i])) throw new RangeError(`reference conv: dY has dims [${dy.dims}], expected [${dims}]`);
  const dx = new Float64Array(x.data.length);
  const dw = new Float64Array(w.data.length);
  const db = new Float64Array(g.m);
  const plane = g.oh * g.ow;
  for (let i = 0; i < dy.data.length; i++) db[Math.floor(i / plane) % g.m] += dy.data[i];
  eachTap(g, (yi, wi, xi) => {
    dx[xi] += w.data[wi] * dy.data[yi];
    dw[wi] += x.data[xi] * dy.data[yi];
  });
  return { dx: { dims: [...x.dims], data: dx }, dw: { dims: [...w.dims], data: dw }, db };
}
