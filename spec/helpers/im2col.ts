// Plain-TypeScript im2col, the reference for in-graph convolution statistics: rows ã_{i,t} of
// each group in the order of the weight's [C_out, C_in/group, k_h, k_w] flattening.
export interface ConvGeometry {
  kernel: number[];
  strides?: number[];
  /** ONNX order: [begin..., end...]. */
  pads?: number[];
  dilations?: number[];
  groups?: number;
}

/** x: [N, C, ...spatial] row-major; returns per group an R × d matrix, R = N·positions. */
export function im2col(x: Float32Array | Float64Array, dims: number[], geo: ConvGeometry): { rows: number[][][]; positions: number; d: number } {
  const [n, c, ...spatial] = dims;
  const r = spatial.length;
  const k = geo.kernel;
  const strides = geo.strides ?? k.map(() => 1);
  const dil = geo.dilations ?? k.map(() => 1);
  const pads = geo.pads ?? new Array(2 * r).fill(0);
  const groups = geo.groups ?? 1;
  const out = spatial.map((s, i) => Math.floor((s + pads[i] + pads[i + r] - dil[i] * (k[i] - 1) - 1) / strides[i]) + 1);
  const positions = out.reduce((a, b) => a * b, 1);
  const cg = c / groups;
  const kk = k.reduce((a, b) => a * b, 1);
  const d = cg * kk;
  const strideOf = (dimsList: number[]) => dimsList.map((_, i) => dimsList.slice(i + 1).reduce((a, b) => a * b, 1));
  const xs = strideOf(dims);
  const os = strideOf(out);
  const ks = strideOf(k);
  const rows: number[][][] = Array.from({ length: groups }, () => []);
  for (let g = 0; g < groups; g++) {
    for (let i = 0; i < n; i++) {
      for (let t = 0; t < positions; t++) {
        const pos = out.map((_, a) => Math.floor(t / os[a]) % out[a]);
        const row = new Array<number>(d).fill(0);
        for (let ci = 0; ci < cg; ci++) {
          for (let q = 0; q < kk; q++) {
            const off = k.map((_, a) => Math.floor(q / ks[a]) % k[a]);
            const at = pos.map((p, a) => p * strides[a] - pads[a] + off[a] * dil[a]);
            if (at.some((v, a) => v < 0 || v >= spatial[a])) continue;
            const idx = i * xs[0] + (g * cg + ci) * xs[1] + at.reduce((acc, v, a) => acc + v * xs[a + 2], 0);
            row[ci * kk + q] = x[idx];
          }
        }
        rows[g].push(row);
      }
    }
  }
  return { rows, positions, d };
}
