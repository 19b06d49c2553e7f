// Pad and Concat backward rules and Pad's shape rule, with the static Slice/Pad helpers the
// pooling rules share: the gradient of a constant Pad is dY with the pads cut off (and zeros
// where the Pad cropped), the gradient of Concat is dY sliced back into its parts.
import { Emitter } from '../ir/emitter.js';
import { A, attr, attrInt, attrInts, GraphError, type Dim, type Node } from '../ir/graph.js';
import { registerShapeRule } from '../ir/shapes.js';
import type { DataType } from '../onnx/index.js';
import { registerGradient } from './registry.js';

/** Slice's "to the end" (ORT clamps ends to the dimension). */
const TO_END = Number.MAX_SAFE_INTEGER;

/** Slice with static starts/ends (step 1) along `axes`, in the opset's form. */
export function sliceAxes(e: Emitter, x: string, axes: number[], starts: number[], ends: number[]): string {
  if (axes.length === 0) return x;
  if (e.opset >= 10) return e.op('Slice', [x, e.int64s(starts), e.int64s(ends), e.int64s(axes)]);
  return e.op('Slice', [x], [A.ints('axes', axes), A.ints('starts', starts), A.ints('ends', ends)]);
}

/**
 * Constant Pad with non-negative per-axis pads (`begins`/`ends` have one entry per axis of the
 * rank), in the opset's form; `value` fills the new positions (its dtype: that of x).
 */
export function padConstant(e: Emitter, x: string, begins: number[], ends: number[], value = 0, dtype?: DataType): string {
  if (begins.every((p) => p === 0) && ends.every((p) => p === 0)) return x;
  const pads = [...begins, ...ends];
  if (e.opset < 11) {
    const attrs = [A.ints('pads', pads)];
    if (value !== 0) attrs.push(A.float('value', value));
    return e.op('Pad', [x], attrs);
  }
  const inputs = [x, e.int64s(pads)];
  if (value !== 0) inputs.push(e.constant(value, dtype ?? e.dtypeOf(x)));
  return e.op('Pad', inputs);
}

/**
 * Grows (positive) or crops (negative) each axis at its beginning and end: a Slice for the crops,
 * then a zero Pad for the growth (negative Pad pads are avoided: not every EP takes them).
 */
export function padOrCrop(e: Emitter, x: string, begins: number[], ends: number[]): string {
  const axes: number[] = []; const starts: number[] = []; const stops: number[] = [];
  begins.forEach((b, i) => {
    const en = ends[i];
    if (b >= 0 && en >= 0) return;
    axes.push(i); starts.push(b < 0 ? -b : 0); stops.push(en < 0 ? en : TO_END);
  });
  const cropped = sliceAxes(e, x, axes, starts, stops);
  return padConstant(e, cropped, begins.map((b) => Math.max(b, 0)), ends.map((v) => Math.max(v, 0)));
}

export function stringAttr(node: Node, name: string, dflt: string): string {
  const a = attr(node, name);
  return a?.s ? new TextDecoder().decode(a.s) : dflt;
}

// ---- Pad -------------------------------------------------------------------------------------

/** Per-axis pads of each Pad node, as its shape rule resolved them (pads and axes may be computed). */
const resolvedPads = new WeakMap<Node, { begins: number[]; ends: number[] }>();

function padsOf(node: Node, rank: number, opset: number, known: (i: number) => Dim[] | undefined): { begins: number[]; ends: number[] } {
  const what = `node '${node.name}' (Pad)`;
  const raw = opset < 11 ? attrInts(node, 'pads') : known(1);
  if (!raw) throw new GraphError(`${what}: the pads '${node.inputs[1]}' are not computable from static information (kfqn needs constant pads)`);
  if (raw.some((p) => typeof p !== 'number')) throw new GraphError(`${what}: the pads depend on a dynamic dimension`);
  const pads = raw as number[];
  let axes = Array.from({ length: rank }, (_, i) => i);
  if (opset >= 18 && node.inputs[3]) {
    const ax = known(3);
    if (!ax || ax.some((a) => typeof a !== 'number')) throw new GraphError(`${what}: the axes '${node.inputs[3]}' are not constant`);
    axes = (ax as number[]).map((a) => (a < 0 ? a + rank : a));
  }
  if (pads.length !== 2 * axes.length) throw new GraphError(`${what}: ${pads.length} pads for ${axes.length} axes`);
  const begins = new Array<number>(rank).fill(0);
  const ends = new Array<number>(rank).fill(0);
  axes.forEach((a, i) => { begins[a] = pads[i]; ends[a] = pads[i + axes.length]; });
  return { begins, ends };
}

registerShapeRule(['Pad'], (node, ctx) => {
  const s = ctx.inShape(0);
  const { begins, ends } = padsOf(node, s.length, ctx.opset, ctx.known);
  resolvedPads.set(node, { begins, ends });
  const out = s.map((d, i) => {
    const grow = begins[i] + ends[i];
    if (grow === 0) return d;
    if (typeof d === 'number') {
      if (d + grow < 0) ctx.fail(`pads [${begins[i]}, ${ends[i]}] crop axis ${i} of size ${d} below zero`);
      return d + grow;
    }
    return `${node.outputs[0]}:${i}`;
  });
  ctx.setOutput(0, { dtype: ctx.inType(0).dtype, shape: out });
});

// Only the data input is differentiable (the fill value is a constant in exported models).
registerGradient(['Pad'], [0], (e, node, [dY]) => {
  const mode = stringAttr(node, 'mode', 'constant');
  if (mode !== 'constant') {
    throw new GraphError(`node '${node.name}' (Pad): mode '${mode}' is not supported in training graphs (only 'constant')`);
  }
  const rank = e.shapeOf(node.inputs[0]).length;
  const pads = resolvedPads.get(node)
    ?? padsOf(node, rank, e.opset, (i) => constantInts(e, node.inputs[i]));
  // Cut off what the Pad added; give zero gradient to what it cropped (negative pads).
  return [padOrCrop(e, dY!, pads.begins.map((p) => -p), pads.ends.map((p) => -p))];
});

/** The values of an int64 initializer or Constant, if `v` is one. */
function constantInts(e: Emitter, v: string | undefined): number[] | undefined {
  if (!v) return undefined;
  const t = e.g.initializers.get(v);
  if (t) return Array.from(t.data as ArrayLike<number | bigint>, Number);
  const p = e.g.nodes.find((n) => n.outputs.includes(v));
  const value = p?.opType === 'Constant' ? p.attrs.find((a) => a.name === 'value')?.t : undefined;
  if (!value) return undefined;
  return (value.int64Data ?? []).map(Number);
}

// ---- Concat ----------------------------------------------------------------------------------

registerGradient(['Concat'], (node) => node.inputs.map((_, i) => i), (e, node, [dY], wanted) => {
  const rank = e.shapeOf(node.inputs[0]).length;
  let axis = attrInt(node, 'axis', 0);
  if (axis < 0) axis += rank;
  const sizes = node.inputs.map((v) => e.shapeOf(v)[axis]);
  if (sizes.every((d): d is number => typeof d === 'number')) {
    let offset = 0;
    return sizes.map((size, i) => {
      const start = offset;
      offset += size;
      return wanted[i] ? sliceAxes(e, dY!, [axis], [start], [start + size]) : undefined;
    });
  }
  // A dynamic size along the axis (the batch): the offsets are computed from the inputs' shapes.
  if (e.opset < 10) throw new GraphError(`node '${node.name}' (Concat): concatenation along a dynamic axis needs opset 10 or newer in training graphs`);
  const sizeOf = (v: string) => e.op('Slice', [e.op('Shape', [v]), e.int64s([axis]), e.int64s([axis + 1]), e.int64s([0])]);
  const axes = e.int64s([axis]);
  let offset: string | undefined;
  return node.inputs.map((v, i) => {
    const start = offset ?? e.int64s([0]);
    const end = offset ? e.op('Add', [offset, sizeOf(v)]) : sizeOf(v);
    offset = end;
    return wanted[i] ? e.op('Slice', [dY!, start, end, axes]) : undefined;
  });
});
