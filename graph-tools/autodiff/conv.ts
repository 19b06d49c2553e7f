// Conv: shape inference and the backward rule, for 1-D and 2-D convolutions as PyTorch and Keras
// export them (strides, explicit or auto pads, dilations, groups, depthwise, optional bias), built
// from standard ops that ONNX Runtime runs on CPU, WASM and WebGPU. With W [M, C/g, k...]:
//   dX = ConvTranspose(dY, W) with the Conv's strides, dilations, group and pads, and output_padding
//        for the rows the Conv never reached (H + pads − dilated kernel not a multiple of the stride);
//   dW = Conv(X', dY') with strides and dilations swapped: X' = X as [C/g, g·N, spatial] (group j's
//        channels become batch items of input channel block j), dY' = dY as [M, N, spatial'] (the
//        kernel), group g; the result [C/g, M, k'...] is cropped to the kernel if it overshoots and
//        transposed to [M, C/g, k...];
//   dB = ReduceSum(dY) over N and the spatial axes.
import type { Emitter } from '../ir/emitter.js';
import { A, attr, attrInt, attrInts, type Dim, GraphError, type Node } from '../ir/graph.js';
import { registerShapeRule } from '../ir/shapes.js';
import { registerGradient } from './registry.js';

export type AutoPad = 'NOTSET' | 'SAME_UPPER' | 'SAME_LOWER' | 'VALID';
const AUTO_PADS: readonly AutoPad[] = ['NOTSET', 'SAME_UPPER', 'SAME_LOWER', 'VALID'];

/** The attributes of a Conv (or ConvTranspose), checked, with defaults filled in. */
export interface ConvAttrs {
  /** Number of spatial axes. */
  spatial: number;
  kernel: number[];
  strides: number[];
  dilations: number[];
  group: number;
  autoPad: AutoPad;
  /** [begin..., end...]; used only with auto_pad NOTSET (ONNX Runtime ignores it otherwise). */
  pads: number[];
}

type Fail = (message: string) => never;

function failer(node: Node): Fail {
  return (m) => { throw new GraphError(`node '${node.name}' (${node.opType}): ${m}`); };
}

/** Reads the attributes of a Conv-family node whose kernel (input 1) has shape `w`. */
export function convAttrs(node: Node, w: Dim[], fail: Fail): ConvAttrs {
  if (w.length < 3) fail(`the kernel W has shape [${w}]; a convolution needs [C_out, C_in/group, k...]`);
  const spatial = w.length - 2;
  const kernelDims = w.slice(2);
  if (!kernelDims.every((d): d is number => typeof d === 'number')) fail(`the kernel W has a dynamic spatial shape [${w}]; kfqn needs its kernel size to be static`);
  const kernel = kernelDims as number[];
  const ks = attrInts(node, 'kernel_shape');
  if (ks && (ks.length !== spatial || ks.some((k, i) => k !== kernel[i]))) {
    fail(`kernel_shape [${ks}] disagrees with the kernel W of shape [${w}]; kernel_shape must equal W's spatial dims [${kernel}]`);
  }
  const perAxis = (name: string, min: number): number[] => {
    const v = attrInts(node, name);
    if (!v || v.length === 0) return new Array<number>(spatial).fill(1);
    if (v.length !== spatial) fail(`${name} [${v}] has ${v.length} values for ${spatial} spatial axes`);
    if (v.some((x) => !Number.isInteger(x) || x < min)) fail(`${name} [${v}] must be integers ≥ ${min}`);
    return v;
  };
  const strides = perAxis('strides', 1);
  const dilations = perAxis('dilations', 1);
  const group = attrInt(node, 'group', 1);
  if (!Number.isInteger(group) || group < 1) fail(`group ${group} must be a positive integer`);
  const raw = attr(node, 'auto_pad')?.s;
  const text = raw && raw.length ? new TextDecoder().decode(raw) : 'NOTSET';
  if (!(AUTO_PADS as readonly string[]).includes(text)) {
    fail(`auto_pad '${text}' is not supported; kfqn supports ${AUTO_PADS.join(', ')}`);
  }
  const autoPad = text as AutoPad;
  let pads = attrInts(node, 'pads') ?? [];
  if (pads.length === 0) pads = new Array<number>(2 * spatial).fill(0);
  if (pads.length !== 2 * spatial) fail(`pads [${pads}] must have 2 values per spatial axis (${2 * spatial})`);
  if (autoPad === 'NOTSET' && pads.some((p) => !Number.isInteger(p) || p < 0)) fail(`pads [${pads}] must be integers ≥ 0`);
  return { spatial, kernel, strides, dilations, group, autoPad, pads };
}

const dilated = (a: ConvAttrs, i: number) => (a.kernel[i] - 1) * a.dilations[i] + 1;

/**
 * [begin, end] padding of spatial axis i for an input of `size` along it, as the ONNX spec and
 * ONNX Runtime compute it; undefined for SAME_* with a dynamic size. SAME pads to
 * ceil(size / stride) outputs with max(0, needed) in all, the odd one at the end (SAME_UPPER) or
 * the beginning (SAME_LOWER).
 */
export function axisPads(a: ConvAttrs, i: number, size: Dim): [number, number] | undefined {
  switch (a.autoPad) {
    case 'NOTSET': return [a.pads[i], a.pads[i + a.spatial]];
    case 'VALID': return [0, 0];
    default: {
      if (typeof size !== 'number') return undefined;
      const s = a.strides[i];
      const total = Math.max(0, (Math.ceil(size / s) - 1) * s + dilated(a, i) - size);
      const small = Math.floor(total / 2);
      return a.autoPad === 'SAME_UPPER' ? [small, total - small] : [total - small, small];
    }
  }
}

/** A symbolic dim name for axis `axis` of `value`. */
const symbol = (value: string, axis: number): string => `${value}:${axis}`;

function convOutDim(a: ConvAttrs, i: number, size: Dim, value: string, fail: Fail): Dim {
  const s = a.strides[i];
  const dk = dilated(a, i);
  const pads = axisPads(a, i, size);
  if (typeof size !== 'number' || !pads) {
    const keeps = a.autoPad.startsWith('SAME') ? s === 1 : s === 1 && pads !== undefined && pads[0] + pads[1] === dk - 1;
    return keeps ? size : symbol(value, i + 2);
  }
  const padded = size + pads[0] + pads[1];
  if (padded < dk) fail(`spatial axis ${i + 2} has size ${size} (${padded} padded), smaller than the dilated kernel ${dk}`);
  return Math.floor((padded - dk) / s) + 1;
}

registerShapeRule(['Conv'], (node, ctx) => {
  const x = ctx.inShape(0);
  const w = ctx.inShape(1);
  if (x.length !== w.length) ctx.fail(`input X of shape [${x}] and kernel W of shape [${w}] differ in rank`);
  const a = convAttrs(node, w, ctx.fail);
  const [m, cg] = w;
  if (typeof m === 'number' && m % a.group !== 0) ctx.fail(`${m} output channels do not split into group=${a.group} groups`);
  if (typeof x[1] === 'number' && typeof cg === 'number' && x[1] !== cg * a.group) {
    ctx.fail(`input X has ${x[1]} channels but W of shape [${w}] with group=${a.group} expects ${cg * a.group}`);
  }
  const out = node.outputs[0];
  ctx.setOutput(0, { dtype: ctx.inType(0).dtype, shape: [x[0], m, ...x.slice(2).map((d, i) => convOutDim(a, i, d, out, ctx.fail))] });
});

registerShapeRule(['ConvTranspose'], (node, ctx) => {
  const x = ctx.inShape(0);
  const w = ctx.inShape(1);
  if (x.length !== w.length) ctx.fail(`input X of shape [${x}] and kernel W of shape [${w}] differ in rank`);
  const a = convAttrs(node, w, ctx.fail);
  const outPad = attrInts(node, 'output_padding') ?? [];
  const outShape = attrInts(node, 'output_shape') ?? [];
  const out = node.outputs[0];
  const m = typeof w[1] === 'number' ? w[1] * a.group : symbol(out, 1);
  const spatial = x.slice(2).map((size, i): Dim => {
    if (outShape.length) return outShape[outShape.length - a.spatial + i];
    if (typeof size !== 'number') return symbol(out, i + 2);
    const s = a.strides[i];
    if (a.autoPad.startsWith('SAME')) return size * s;
    const [pb, pe] = a.autoPad === 'VALID' ? [0, 0] : [a.pads[i], a.pads[i + a.spatial]];
    return s * (size - 1) + (outPad[i] ?? 0) + dilated(a, i) - pb - pe;
  });
  ctx.setOutput(0, { dtype: ctx.inType(0).dtype, shape: [x[0], m, ...spatial] });
});

/** Static Slice of `x` along `axes` (the attribute form before opset 10). */
function sliceStatic(e: Emitter, x: string, starts: number[], ends: number[], axes: number[]): string {
  if (e.opset >= 10) return e.op('Slice', [x, e.int64s(starts), e.int64s(ends), e.int64s(axes)]);
  return e.op('Slice', [x], [A.ints('starts', starts), A.ints('ends', ends), A.ints('axes', axes)]);
}

/**
 * A Reshape target: numbers (at most one −1) and axes of `like` read at run time. Static when every
 * dim is known or only one is not (it becomes −1); otherwise Concat of constants and Gather(Shape).
 */
function reshapeTarget(e: Emitter, like: string, parts: (number | { axis: number })[]): string {
  const unknown = parts.filter((p) => typeof p !== 'number').length;
  if (unknown === 0) return e.int64s(parts as number[]);
  if (unknown === 1 && !parts.includes(-1)) return e.int64s(parts.map((p) => (typeof p === 'number' ? p : -1)));
  const shape = e.op('Shape', [like]);
  const pieces: string[] = [];
  for (let i = 0; i < parts.length;) {
    let j = i;
    if (typeof parts[i] === 'number') {
      while (j < parts.length && typeof parts[j] === 'number') j++;
      pieces.push(e.int64s(parts.slice(i, j) as number[]));
    } else {
      while (j < parts.length && typeof parts[j] !== 'number') j++;
      pieces.push(e.op('Gather', [shape, e.int64s(parts.slice(i, j).map((p) => (p as { axis: number }).axis))], [A.int('axis', 0)]));
    }
    i = j;
  }
  return e.op('Concat', pieces, [A.int('axis', 0)]);
}

/**
 * What the backward rule and the layer statistics need to know about a Conv node, checked. Per
 * spatial axis: stride, dilation, pads, the dilated kernel's reach (k − 1)·d, and the rows past the
 * last window (unknown for a dynamic size with a stride).
 */
export interface ConvGeometry {
  a: ConvAttrs; axes: number[]; xs: Dim[]; cOut: number; cg: number; g: number; fail: Fail;
  geo: { s: number; d: number; pb: number; pe: number; reach: number; rem: number | undefined }[];
}

export function convGeometry(e: Emitter, node: Node): ConvGeometry {
  const fail: Fail = failer(node);
  const [x, w] = node.inputs;
  const xs = e.shapeOf(x);
  const ws = e.shapeOf(w);
  const ys = e.shapeOf(node.outputs[0]);
  const r = xs.length - 2;
  if (r !== 1 && r !== 2) {
    fail(`kfqn differentiates 1-D and 2-D convolutions (input [N, C, W] or [N, C, H, W]); this one has input shape [${xs}] (${r} spatial axes)`);
  }
  const a = convAttrs(node, ws, fail);
  const [m, cg] = ws;
  if (typeof m !== 'number' || typeof cg !== 'number') fail(`the kernel W has a dynamic shape [${ws}]; kfqn needs [C_out, C_in/group, k...] to be static`);
  const g = a.group;
  if (xs[1] !== cg * g) fail(`input X of shape [${xs}] must have a static channel count equal to ${cg}·group = ${cg * g}`);

  if (a.autoPad.startsWith('SAME') && a.dilations.some((d) => d !== 1)) {
    fail(`auto_pad ${a.autoPad} with dilations [${a.dilations}] is not supported (ONNX Runtime refuses it too); export with explicit pads`);
  }
  const axes = Array.from({ length: r }, (_, i) => i + 2);
  const geo = axes.map((ax, i) => {
    const size = xs[ax];
    const s = a.strides[i];
    const d = a.dilations[i];
    const dk = dilated(a, i);
    const pads = axisPads(a, i, size);
    if (!pads) fail(`auto_pad ${a.autoPad} needs static spatial dims to compute its padding; input X has shape [${xs}] (export with a fixed image size, or with explicit pads)`);
    const [pb, pe] = pads;
    // Rows (of the padded input) past the last window: the stride's remainder, unknown for a dynamic size.
    let rem: number | undefined = s === 1 ? 0 : undefined;
    if (typeof size === 'number') {
      const expected = convOutDim(a, i, size, node.outputs[0], fail);
      if (typeof ys[ax] === 'number' && ys[ax] !== expected) fail(`output Y has shape [${ys}], but the attributes give ${expected} along axis ${ax}`);
      rem = (size + pb + pe - dk) % s;
    }
    return { s, d, pb, pe, reach: dk - 1, rem };
  });

  return { a, axes, xs, cOut: m, cg, g, fail, geo };
}

/** X regrouped for kernel gradients, per emitter (graph) and Conv node. */
const regroupedInputs = new WeakMap<Emitter, Map<string, string>>();

/**
 * Σ over batch and positions of dY ⊗ patches, as the Conv's weight gradient is: [M', C/g, k...]
 * for a dY of M' channels (M' divisible by group). With dY = ∂L/∂h it is dW; the layer statistics
 * use it with other dY to get Ãᵀu and ā without forming the patch matrix.
 */
export function convKernelGradient(e: Emitter, node: Node, dY: string): string {
  const { a, axes, xs, cg, g, geo } = convGeometry(e, node);
  const x = node.inputs[0];
  // X as [C/g, g·N, spatial]: channel c of group j is batch item c, channel j·N + n. Built once per
  // node: the backward pass and the layer statistics both correlate X with some dY.
  let perNode = regroupedInputs.get(e);
  if (!perNode) regroupedInputs.set(e, (perNode = new Map()));
  let xin = perNode.get(node.name);
  if (!xin) {
    if (g === 1) {
      xin = e.op('Transpose', [x], [A.ints('perm', [1, 0, ...axes])]);
    } else {
      const split = e.op('Reshape', [x, e.int64s([0, g, cg, -1])]);
      const moved = e.op('Transpose', [split], [A.ints('perm', [2, 1, 0, 3])]);
      const n = xs[0];
      xin = e.op('Reshape', [moved, reshapeTarget(e, x, [cg, typeof n === 'number' ? g * n : -1, ...axes.map((ax) => (typeof xs[ax] === 'number' ? xs[ax] as number : { axis: ax }))])]);
    }
    perNode.set(node.name, xin);
  }
  const dyT = e.op('Transpose', [dY], [A.ints('perm', [1, 0, ...axes])]);
  // Padded rows past the last window contribute nothing: drop them from the end padding where it
  // has them, so the result is exactly the kernel size unless real rows lie past the last window.
  const cut = geo.map((q) => (q.rem === undefined ? 0 : Math.min(q.pe, q.rem)));
  let conv = e.op('Conv', [xin, dyT], [
    A.ints('strides', a.dilations), A.ints('dilations', a.strides), A.int('group', g),
    A.ints('pads', [...geo.map((q) => q.pb), ...geo.map((q, i) => q.pe - cut[i])]),
  ]);
  // Along each axis the result has k + floor(leftover / d) entries.
  const overshoots = geo.some((q, i) => (q.rem === undefined ? q.s - 1 : q.rem - cut[i]) >= q.d);
  if (overshoots) conv = sliceStatic(e, conv, axes.map(() => 0), a.kernel, axes);
  return e.op('Transpose', [conv], [A.ints('perm', [1, 0, ...axes])]);
}

/**
 * ∂L/∂X of a unit-stride Conv as a Conv: dY correlated with the kernel flipped in space, its
 * input and output channels swapped per group, padded by d(k−1) − p on each side. ORT's CPU runs
 * this 2.7× faster than the equivalent ConvTranspose (2.8 against 7.6 ms for 16 → 16 channels,
 * 3×3, at 128 × 28 × 28). Undefined for strides, or for pads wider than the dilated kernel
 * (negative pads): those keep the ConvTranspose.
 */
function unitStrideInputGradient(e: Emitter, node: Node, dY: string): string | undefined {
  const { a, axes, cOut, cg, g, geo } = convGeometry(e, node);
  if (geo.some((q) => q.s !== 1 || q.pb > q.reach || q.pe > q.reach)) return undefined;
  const w = node.inputs[1];
  // W [C_out, C_in/g, k...] → W' [C_in, C_out/g, k...], entry ((j, c), o) = W[j·C_out/g + o, c].
  const swapped = g === 1 ? e.op('Transpose', [w], [A.ints('perm', [1, 0, ...axes])])
    : e.op('Reshape', [e.op('Transpose', [e.op('Reshape', [w, e.int64s([g, cOut / g, cg, ...a.kernel])])], [A.ints('perm', [0, 2, 1, ...axes.map((ax) => ax + 1)])]),
      e.int64s([g * cg, cOut / g, ...a.kernel])]);
  const flipped = e.op('Slice', [swapped, e.int64s(axes.map(() => -1)), e.int64s(axes.map(() => -(2 ** 62))), e.int64s(axes), e.int64s(axes.map(() => -1))]);
  return e.op('Conv', [dY, flipped], [
    A.ints('kernel_shape', a.kernel), A.ints('dilations', a.dilations), A.int('group', g),
    A.ints('pads', [...geo.map((q) => q.reach - q.pb), ...geo.map((q) => q.reach - q.pe)]),
  ]);
}

registerGradient(['Conv'], [0, 1, 2], (e, node, [dY], wanted) => {
  const { a, axes, xs, g, fail, geo } = convGeometry(e, node);
  const [x, w, b] = node.inputs;
  let dX: string | undefined;
  if (wanted[0]) dX = unitStrideInputGradient(e, node, dY!);
  if (wanted[0] && !dX) {
    const attrs = [
      A.ints('kernel_shape', a.kernel), A.ints('strides', a.strides), A.ints('dilations', a.dilations), A.int('group', g),
      A.ints('pads', [...geo.map((q) => q.pb), ...geo.map((q) => q.pe)]),
      // Unknown remainder: the largest, then cropped to X's run-time size.
      A.ints('output_padding', geo.map((q) => q.rem ?? q.s - 1)),
    ];
    dX = e.op('ConvTranspose', [dY!, w], attrs);
    const loose = axes.filter((_, i) => geo[i].rem === undefined);
    if (loose.length) {
      if (e.opset < 10) fail(`a stride over a dynamic spatial size needs opset 10 or newer (Slice with run-time ends); input X has shape [${xs}]`);
      const ends = e.op('Gather', [e.op('Shape', [x]), e.int64s(loose)], [A.int('axis', 0)]);
      dX = e.op('Slice', [dX, e.int64s(loose.map(() => 0)), ends, e.int64s(loose)]);
    }
  }

  const dW = wanted[1] ? convKernelGradient(e, node, dY!) : undefined;
  const dB = wanted[2] && b ? e.reduce('ReduceSum', dY!, [0, ...axes], false) : undefined;
  return [dX, dW, dB];
});
