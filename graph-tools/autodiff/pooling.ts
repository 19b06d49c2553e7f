// MaxPool, AveragePool, GlobalMaxPool and GlobalAveragePool: shape rules (ONNX Runtime's output
// sizes for pads, strides, dilations, ceil_mode and auto_pad) and backward rules made of standard
// ops that ORT's CPU EP runs in float64 and its WebGPU EP runs without falling back to CPU:
// Slice, Pad, Concat, Reshape, Less, Not, Cast, Mul, Sub, Add (GlobalAveragePool: Expand;
// GlobalMaxPool: Where, ReduceMin, Greater).
//
// Window offset i (dilation d) of output o reads input position o·s + i·d − pad, so a strided
// Slice of the padded input gives, per offset, what every window reads there. The gradient goes
// back by col2im on a "cell" grid: along a spatial axis the padded input is cut into
// O' = O + ⌊(k−1)·d / s⌋ cells of s positions; offset i lands in cell o + q at position r, where
// i·d = q·s + r. Each offset's contribution is shifted by q cells (Pad), those sharing a position
// are added, the positions are interleaved by a Concat along a position axis (Pad + Add where
// some position takes no window), and a Reshape merges cells and positions again. Overlapping
// windows accumulate. (Transposes, and broadcasts over [.., O, 1, O, 1] shapes, are avoided: they
// are slow on ORT's CPU EP. Measured there, MaxPool's backward is faster than scattering through
// its Indices output for 2×2 stride 2, and about 1.8× slower for 3×3 stride 2.)
//
// MaxPool routes dY to the first maximum of each window in row-major window order, as ORT's and
// PyTorch's kernels pick it: offsets are visited in that order, and each takes the part of dY
// whose window maximum it equals and that no earlier offset took. Not used: MaxPool's Indices
// output (unsupported by the WebGPU EP) with ScatterElements (accumulates only from opset 16),
// and MaxUnpool (overwrites where windows overlap).
import type { Emitter } from '../ir/emitter.js';
import { A, attrInt, attrInts, GraphError, type Dim, type Node } from '../ir/graph.js';
import { registerShapeRule, type ShapeContext } from '../ir/shapes.js';
import { dataTypeToEnum } from '../onnx/index.js';
import { registerGradient } from './registry.js';
import { padConstant, padOrCrop, sliceAxes, stringAttr } from './tensor-ops.js';

/** float32's lowest value: padding that never wins a max (ORT's MaxPool starts from it). */
const LOWEST = -3.4028234663852886e38;

interface Geometry {
  /** Spatial input sizes, outputs, and per axis the kernel, stride, dilation and pads in effect. */
  spatial: number[];
  out: number[];
  kernel: number[];
  strides: number[];
  dilations: number[];
  padBegin: number[];
  padEnd: number[];
}

/** Output sizes as ONNX Runtime computes them; symbolic where the input size is symbolic. */
function poolGeometry(node: Node, inShape: Dim[], fail: (m: string) => never): { out: Dim[]; geometry?: Geometry } {
  const r = inShape.length - 2;
  if (r < 1) fail(`the input must have rank 3 or more (batch, channels, spatial), not ${inShape.length}`);
  const kernel = attrInts(node, 'kernel_shape');
  if (!kernel || kernel.length !== r) fail(`kernel_shape must give ${r} spatial sizes`);
  const strides = attrInts(node, 'strides') ?? new Array<number>(r).fill(1);
  const dilations = attrInts(node, 'dilations') ?? new Array<number>(r).fill(1);
  const pads = attrInts(node, 'pads') ?? new Array<number>(2 * r).fill(0);
  const autoPad = stringAttr(node, 'auto_pad', 'NOTSET');
  const ceil = attrInt(node, 'ceil_mode', 0) === 1;
  if (strides.length !== r || dilations.length !== r || pads.length !== 2 * r) fail('strides, dilations and pads must match kernel_shape');
  if (!['NOTSET', 'SAME_UPPER', 'SAME_LOWER', 'VALID'].includes(autoPad)) fail(`unknown auto_pad '${autoPad}'`);
  const spatial: number[] = []; const out: Dim[] = []; const padBegin: number[] = []; const padEnd: number[] = [];
  inShape.slice(2).forEach((n, a) => {
    const k = kernel[a]; const s = strides[a]; const d = dilations[a];
    if (typeof n !== 'number') { out.push(`${node.outputs[0]}:${a + 2}`); return; }
    let pb = pads[a]; let pe = pads[a + r];
    if (autoPad === 'VALID') { pb = 0; pe = 0; }
    if (autoPad === 'SAME_UPPER' || autoPad === 'SAME_LOWER') {
      // ORT sizes SAME padding by the undilated kernel.
      const total = (Math.ceil(n / s) - 1) * s + k - n;
      if (total < 0) fail(`auto_pad ${autoPad} with stride ${s} > kernel ${k} needs negative padding, which ONNX Runtime rejects`);
      pb = autoPad === 'SAME_UPPER' ? Math.floor(total / 2) : Math.ceil(total / 2);
      pe = total - pb;
    }
    const span = n + pb + pe - ((k - 1) * d + 1);
    let o = (ceil ? Math.ceil(span / s) : Math.floor(span / s)) + 1;
    // In ceil mode no window starts in the end padding (ORT, PyTorch).
    if (ceil && (o - 1) * s >= n + pb) o--;
    if (o < 1) fail(`the window (kernel ${k}, dilation ${d}) is larger than the padded input (${n} + ${pb} + ${pe}) on spatial axis ${a}`);
    spatial.push(n); out.push(o); padBegin.push(pb); padEnd.push(pe);
  });
  const geometry = spatial.length === r
    ? { spatial, out: out as number[], kernel, strides, dilations, padBegin, padEnd }
    : undefined;
  return { out, geometry };
}

registerShapeRule(['MaxPool', 'AveragePool'], (node: Node, ctx: ShapeContext) => {
  const s = ctx.inShape(0);
  const { out } = poolGeometry(node, s, ctx.fail);
  const shape = [s[0], s[1], ...out];
  ctx.setOutput(0, { dtype: ctx.inType(0).dtype, shape });
  if (node.opType === 'MaxPool' && node.outputs[1]) ctx.setOutput(1, { dtype: 'int64', shape });
});

registerShapeRule(['GlobalMaxPool', 'GlobalAveragePool'], (_node, ctx) => {
  const s = ctx.inShape(0);
  if (s.length < 3) ctx.fail(`the input must have rank 3 or more, not ${s.length}`);
  ctx.setOutput(0, { dtype: ctx.inType(0).dtype, shape: [s[0], s[1], ...s.slice(2).map(() => 1)] });
});

/** The geometry of a pooling node on the gradient path: static spatial sizes required. */
function staticGeometry(e: Emitter, node: Node): Geometry {
  const fail = (m: string): never => { throw new GraphError(`node '${node.name}' (${node.opType}): ${m}`); };
  const { geometry } = poolGeometry(node, e.shapeOf(node.inputs[0]), fail);
  if (!geometry) fail(`the spatial sizes of '${node.inputs[0]}' must be static in training graphs, not [${e.shapeOf(node.inputs[0]).slice(2)}]`);
  return geometry!;
}

/** The cell layout of one spatial axis: O' = O + Q cells of s positions; offset i at cell q, position r. */
interface AxisCells { o: number; s: number; k: number; cells: number; q: number[]; r: number[] }

function cellsOf(g: Geometry): AxisCells[] {
  return g.out.map((o, a) => {
    const s = g.strides[a]; const k = g.kernel[a]; const d = g.dilations[a];
    const q = Array.from({ length: k }, (_, i) => Math.floor((i * d) / s));
    const r = Array.from({ length: k }, (_, i) => (i * d) % s);
    return { o, s, k, cells: o + q[k - 1], q, r };
  });
}

/** A pooled [N, C, O1, ..., Or] tensor as [N, C, O1, 1, O2, 1, ...]: one position per cell. */
function unitCells(e: Emitter, axes: AxisCells[], t: string): string {
  return e.op('Reshape', [t, e.int64s([0, 0, ...axes.flatMap((c) => [c.o, 1])])]);
}

/**
 * col2im: the sum over window offsets of each offset's [N, C, O1, ..., Or] contribution put where
 * that offset reads, on the cell grid [N, C, O'1, s1, O'2, s2, ...] (cell axis a is 2 + 2a, its
 * position axis 3 + 2a). `part(offset)` gives the contribution of a kernel offset (a
 * multi-index); with `uniform` every offset contributes the same tensor.
 */
function col2im(e: Emitter, axes: AxisCells[], part: (offset: number[]) => string, uniform: boolean): string {
  const rank = 2 + 2 * axes.length;
  const zeros = () => new Array<number>(rank).fill(0);
  // Places pieces[i] (axis a still O cells of one position) at cell q_i, position r_i.
  const placeAlong = (pieces: string[], a: number): string => {
    const c = axes[a];
    const cellAxis = 2 + 2 * a;
    const posAxis = cellAxis + 1;
    const byPosition = new Map<number, string>();
    pieces.forEach((p, i) => {
      const begins = zeros(); const ends = zeros();
      begins[cellAxis] = c.q[i]; ends[cellAxis] = c.cells - c.o - c.q[i];
      const shifted = padConstant(e, p, begins, ends);
      const prev = byPosition.get(c.r[i]);
      byPosition.set(c.r[i], prev ? e.op('Add', [prev, shifted]) : shifted);
    });
    if (c.s === 1) return byPosition.get(0)!;
    if (byPosition.size === c.s) {
      return e.op('Concat', Array.from({ length: c.s }, (_, p) => byPosition.get(p)!), [A.int('axis', posAxis)]);
    }
    // Some positions take no window (stride > dilated kernel): zeros there.
    const placed = [...byPosition].map(([p, t]) => {
      const begins = zeros(); const ends = zeros();
      begins[posAxis] = p; ends[posAxis] = c.s - 1 - p;
      return padConstant(e, t, begins, ends);
    });
    return e.sum(placed);
  };
  const build = (prefix: number[]): string => {
    const a = prefix.length;
    if (a === axes.length) return unitCells(e, axes, part(prefix));
    if (uniform) {
      const inner = build([...prefix, 0]);
      return placeAlong(new Array<string>(axes[a].k).fill(inner), a);
    }
    return placeAlong(Array.from({ length: axes[a].k }, (_, i) => build([...prefix, i])), a);
  };
  return build([]);
}

/** The cell grid back to [N, C, ...spatial]: the pads cut off, positions no window reads zero. */
function cellsToInput(e: Emitter, g: Geometry, axes: AxisCells[], cells: string): string {
  const flat = e.op('Reshape', [cells, e.int64s([0, 0, ...axes.map((c) => c.cells * c.s)])]);
  const begins = [0, 0, ...g.padBegin.map((p) => -p)];
  const ends = [0, 0, ...axes.map((c, a) => g.spatial[a] + g.padBegin[a] - c.cells * c.s)];
  return padOrCrop(e, flat, begins, ends);
}

/**
 * What each window offset reads, [N, C, O1, ..., Or]: a strided Slice of the padded input (opset
 * 10+), or before opset 10 (no steps) a Slice of its cell grid.
 */
function windowReader(e: Emitter, g: Geometry, axes: AxisCells[], x: string, fill: number): (offset: number[]) => string {
  const dtype = e.dtypeOf(x);
  const strided = e.opset >= 10;
  // The extent the reads need: the last window's end, or whole cells.
  const extent = axes.map((c, a) => (strided ? (c.o - 1) * c.s + (g.kernel[a] - 1) * g.dilations[a] + 1 : c.cells * c.s));
  const grow = [0, 0, ...extent.map((n, a) => n - g.spatial[a] - g.padBegin[a])];
  const cropped = padOrCrop(e, x, grow.map(() => 0), grow.map((v) => Math.min(v, 0)));
  const padded = padConstant(e, cropped, [0, 0, ...g.padBegin], grow.map((v) => Math.max(v, 0)), fill, dtype);
  const spatialAxes = axes.map((_, a) => 2 + a);
  if (strided) {
    return (off) => {
      const starts = axes.map((_, a) => off[a] * g.dilations[a]);
      const ends = axes.map((c, a) => starts[a] + (c.o - 1) * c.s + 1);
      return e.op('Slice', [padded, e.int64s(starts), e.int64s(ends), e.int64s(spatialAxes), e.int64s(axes.map((c) => c.s))]);
    };
  }
  const cells = e.op('Reshape', [padded, e.int64s([0, 0, ...axes.flatMap((c) => [c.cells, c.s])])]);
  return (off) => {
    const w = sliceAxes(e, cells, axes.flatMap((_, a) => [2 + 2 * a, 3 + 2 * a]),
      axes.flatMap((c, a) => [c.q[off[a]], c.r[off[a]]]), axes.flatMap((c, a) => [c.q[off[a]] + c.o, c.r[off[a]] + 1]));
    return e.op('Reshape', [w, e.int64s([0, 0, ...axes.map((c) => c.o)])]);
  };
}

function checkOutput(e: Emitter, node: Node, g: Geometry): void {
  const y = e.shapeOf(node.outputs[0]).slice(2);
  if (y.some((d, a) => d !== g.out[a])) {
    throw new GraphError(`node '${node.name}' (${node.opType}): output spatial shape [${y}] differs from the computed [${g.out}]`);
  }
}

registerGradient(['MaxPool'], [0], (e, node, [dY]) => {
  const x = node.inputs[0];
  const y = node.outputs[0];
  const dtype = e.dtypeOf(x);
  const g = staticGeometry(e, node);
  checkOutput(e, node, g);
  const axes = cellsOf(g);
  // Padding (and the ceil-mode overhang) reads as float32's lowest value: it never is the max.
  const read = windowReader(e, g, axes, x, LOWEST);
  let rest = dY!;
  const toDtype = A.int('to', dataTypeToEnum(dtype));

  // Visit offsets in row-major window order; each takes the dY of the windows whose max it is first.
  const offsets: number[][] = [[]];
  for (const c of axes) offsets.splice(0, offsets.length, ...offsets.flatMap((p) => Array.from({ length: c.k }, (_, i) => [...p, i])));
  const parts = new Map<string, string>();
  offsets.forEach((off, j) => {
    // window ≤ max everywhere, so 'equal' is 'not less' (Less has float kernels at every opset,
    // Equal from 11); a mask product is much faster than Where on ORT's CPU EP.
    const isMax = e.op('Cast', [e.op('Not', [e.op('Less', [read(off), y])])], [toDtype]);
    const taken = e.op('Mul', [rest, isMax]);
    if (j < offsets.length - 1) rest = e.op('Sub', [rest, taken]);
    parts.set(off.join(','), taken);
  });
  const cells = col2im(e, axes, (off) => parts.get(off.join(','))!, false);
  return [cellsToInput(e, g, axes, cells)];
});

registerGradient(['AveragePool'], [0], (e, node, [dY]) => {
  const x = node.inputs[0];
  const dtype = e.dtypeOf(x);
  const g = staticGeometry(e, node);
  checkOutput(e, node, g);
  const axes = cellsOf(g);
  const includePad = attrInt(node, 'count_include_pad', 0) === 1;
  // Per axis and output position: the divisor's factor (ORT: with count_include_pad the window is
  // clipped to input + pads; without, to the input).
  const factors = g.out.map((o, a) => Array.from({ length: o }, (_, j) => {
    const k = g.kernel[a]; const d = g.dilations[a]; const n = g.spatial[a];
    const start = j * g.strides[a] - g.padBegin[a];
    if (includePad) {
      const end = Math.min(start + (k - 1) * d + 1, n + g.padEnd[a]);
      return 1 + Math.floor((end - start - 1) / d);
    }
    let inside = 0;
    for (let i = 0; i < k; i++) { const p = start + i * d; if (p >= 0 && p < n) inside++; }
    return inside;
  }));
  const inverse = recip(factors);
  const scaled = inverse.every((v) => v === inverse[0])
    ? e.scale(dY!, inverse[0], dtype)
    : e.op('Mul', [dY!, e.constant(inverse, dtype, g.out)]);
  const cells = col2im(e, axes, () => scaled, true);
  return [cellsToInput(e, g, axes, cells)];
});

/** 1 / Π factors over the output grid, row-major (0 where a window has no input element). */
function recip(factors: number[][]): number[] {
  let prod = [1];
  for (const f of factors) prod = prod.flatMap((v) => f.map((c) => v * c));
  return prod.map((v) => (v === 0 ? 0 : 1 / v));
}

/** The static number of spatial elements of a pooling input. */
function spatialCount(e: Emitter, node: Node): number {
  const s = e.shapeOf(node.inputs[0]).slice(2);
  if (s.some((d) => typeof d !== 'number')) {
    throw new GraphError(`node '${node.name}' (${node.opType}): the spatial sizes of '${node.inputs[0]}' must be static in training graphs, not [${s}]`);
  }
  return (s as number[]).reduce((a, b) => a * b, 1);
}

registerGradient(['GlobalAveragePool'], [0], (e, node, [dY]) => {
  const x = node.inputs[0];
  const n = spatialCount(e, node);
  return [e.op('Expand', [e.scale(dY!, 1 / n, e.dtypeOf(x)), e.op('Shape', [x])])];
});

// The first maximum over all spatial positions gets dY: the smallest row-major position whose
// value is not below the maximum (float positions: no int64, which WebGPU would run on CPU).
registerGradient(['GlobalMaxPool'], [0], (e, node, [dY]) => {
  const x = node.inputs[0];
  const dtype = e.dtypeOf(x);
  const n = spatialCount(e, node);
  const spatial = e.shapeOf(x).slice(2) as number[];
  const axes = spatial.map((_, i) => i + 2);
  const positions = e.constant([...Array(n).keys()], dtype, spatial);
  const candidates = e.op('Where', [e.op('Less', [x, node.outputs[0]]), e.constant(n, dtype), positions]);
  const first = e.opset >= 18
    ? e.op('ReduceMin', [candidates, e.int64s(axes)], [A.int('keepdims', 1)])
    : e.op('ReduceMin', [candidates], [A.int('keepdims', 1), A.ints('axes', axes)]);
  return [e.op('Where', [e.op('Greater', [candidates, first]), e.constant(0, dtype), dY!])];
});
