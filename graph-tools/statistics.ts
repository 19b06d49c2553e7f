// Per-layer Kronecker statistics computed inside the training graph (ALGORITHMS.md §1.4, §4.2, §5),
// so patch matrices never reach JavaScript. For each layer, per group, Ã is the R × d_a matrix of
// rows ã (the input activation, or a convolution's patch, with a trailing 1 when there is a bias):
// R = M for Gemm, M·positions for MatMul on rank-3 inputs and for convolutions.
//   A      = (1/M) ÃᵀÃ                    summed over positions, averaged over the batch
//   ā      = mean of the rows of Ã          over batch and positions
//   h̄, ḡ   = means of h and of g = M·∂L/∂h  over batch and positions
//   A·v    = (1/M) Ãᵀ(Ã v)                  for v fed as an input, without forming A
//   G      = (1/(M·T)) Σ g gᵀ               over batch and positions (KFAC's second factor)
//   diag A = (1/M) Σ ã∘ã                    A's diagonal alone: ā's products on the squared input
import type { Gradients } from './autodiff/index.js';
import { axisPads, convAttrs, convGeometry, convKernelGradient } from './autodiff/conv.js';
import type { Emitter } from './ir/emitter.js';
import { A, attr, GraphError, type Graph, type Node } from './ir/graph.js';
import type { Layer } from './layers.js';

export interface StatisticsRequest {
  /** A = (1/M) ÃᵀÃ per group: [groups, d_a, d_a]. */
  factors?: boolean;
  /** ā [groups, d_a], h̄ and ḡ [outputs]. */
  means?: boolean;
  /** (1/M) Ãᵀ(Ã v) [groups, d_a] for an input v [groups, d_a]. */
  hessianAction?: boolean;
  /**
   * With hessianAction: v computed in the graph from ā [groups, d_a] (KF-QN's s_a = H_a·ā) instead
   * of fed as an input. ā is then emitted too.
   */
  actionVector?: (e: Emitter, layer: Layer, abar: string) => string;
  /** G = (1/(M·T)) Σ g gᵀ per group, g = M·∂L/∂h (or ∂L/∂h as is): [groups, d_g, d_g]. */
  gradientFactors?: boolean;
  /** diag(A) = (1/M) Σ ã∘ã per group [groups, d_a], without A: the sums ā takes, of the squared input. */
  activationDiagonal?: boolean;
  /**
   * Whether ḡ is the mean of M·∂L/∂h (the per-sample gradient of a mean-reduced loss; default) or
   * of ∂L/∂h as is (a sum-reduced loss already is per sample; ALGORITHMS.md §1.1).
   */
  perSampleGradient?: 'times-batch' | 'as-is';
}

/** Graph value names of one layer's statistics (inputs for v, outputs for the rest). */
export interface LayerStatistics {
  a?: string;
  abar?: string;
  hbar?: string;
  gbar?: string;
  v?: string;
  av?: string;
  g?: string;
  adiag?: string;
}

export const statName = {
  a: (l: string) => `kfqn:A:${l}`,
  abar: (l: string) => `kfqn:abar:${l}`,
  hbar: (l: string) => `kfqn:hbar:${l}`,
  gbar: (l: string) => `kfqn:gbar:${l}`,
  v: (l: string) => `kfqn:v:${l}`,
  av: (l: string) => `kfqn:Av:${l}`,
  g: (l: string) => `kfqn:G:${l}`,
  adiag: (l: string) => `kfqn:Adiag:${l}`,
};

/**
 * Emits the requested statistics of `layer` and returns their output (and input) names; the
 * caller declares them as graph outputs/inputs.
 */
export function emitLayerStatistics(g: Graph, e: Emitter, layer: Layer, grads: Gradients, req: StatisticsRequest): LayerStatistics {
  const dtype = e.dtypeOf(layer.input);
  const node = g.nodes.find((n) => n.name === layer.name)!;
  const batch = e.op('Cast', [e.op('Gather', [e.op('Shape', [layer.input]), e.constant(0, 'int64')], [A.int('axis', 0)])], [A.int('to', dtype === 'float64' ? 11 : 1)]);
  const perSample = (x: string) => e.op('Div', [x, batch]);
  const out: LayerStatistics = {};
  if (req.means) {
    const h = layer.preactivation;
    const axes = outputReduceAxes(e, layer);
    out.hbar = e.reduce('ReduceMean', h, axes, false);
    const dh = grads.of(h);
    if (!dh) throw new GraphError(`layer '${layer.name}' does not reach the loss`);
    const meanDh = e.reduce('ReduceMean', dh, axes, false);
    out.gbar = req.perSampleGradient === 'as-is' ? meanDh : e.op('Mul', [meanDh, batch]);
  }
  if (req.hessianAction && !req.actionVector) out.v = statName.v(layer.name);
  if (req.gradientFactors) out.g = gradientFactor(e, layer, grads, req.perSampleGradient === 'as-is' ? undefined : batch);
  if (req.activationDiagonal) out.adiag = perSample(activationSquareSums(e, layer, node));
  // A convolution's means and Hessian action come from two small convolutions each; only the
  // dense A factor needs the patch matrix (ALGORITHMS.md §4.2: O(M·T·d_a) instead of O(M·T·d_a²)).
  if (layer.kind === 'conv') {
    // An in-graph v depends on ā: two passes over the windows instead of one shared.
    const action = req.hessianAction && req.actionVector;
    const { abar, av } = convPatchProducts(e, layer, node, req.means === true || !!action, action ? undefined : out.v);
    out.abar = abar;
    if (av) out.av = perSample(av);
    if (action) out.av = perSample(convPatchProducts(e, layer, node, false, action(e, layer, abar!)).av!);
    if (!req.factors) return out;
  }
  const rows = layer.kind === 'conv' ? convRows(e, layer, node) : linearRows(e, layer);
  // Σ of the rows and their number, shared by the A factor's border and a linear layer's ā.
  let sums: string | undefined;
  let count: string | undefined;
  const rowSums = () => (sums ??= e.reduce('ReduceSum', rows, [1], true)); // [G, 1, d]
  const rowCount = () => (count ??= e.op('Cast', [e.op('Gather', [e.op('Shape', [rows]), e.int64s([1])], [A.int('axis', 0)])], [A.int('to', dtype === 'float64' ? 11 : 1)]));
  if (req.factors) out.a = perSample(gramWithOnes(e, layer, rows, rowSums, rowCount));
  if (layer.kind === 'conv' || !(req.means || req.hessianAction)) return out;
  // A linear layer's Ã = [X | 1] is never formed: ā = [mean of X's rows | 1], Ã·v = X·v_w + v_b
  // and Ãᵀu = [Xᵀu | Σu] (a copy of X with a column appended, and its transpose, cost as much as
  // the products).
  const d = layer.inFeatures;
  if (req.means || req.actionVector) {
    const mean = e.op('Reshape', [e.op('Div', [rowSums(), rowCount()]), e.int64s([1, d])]);
    out.abar = layer.bias ? e.op('Concat', [mean, e.constant(1, dtype, [1, 1])], [A.int('axis', 1)]) : mean;
  }
  if (req.hessianAction) {
    const v = req.actionVector ? req.actionVector(e, layer, out.abar!) : out.v!; // [1, d_a]
    let u = e.op('MatMul', [rows, e.unsqueeze(layer.bias ? slice2(e, v, 0, d) : v, [2])]); // [1, R, 1]
    if (layer.bias) u = e.op('Add', [u, e.unsqueeze(slice2(e, v, d, d + 1), [2])]);
    const Xtu = e.op('Reshape', [e.op('MatMul', [e.op('Reshape', [u, e.int64s([1, 1, -1])]), rows]), e.int64s([1, d])]);
    const av = layer.bias ? e.op('Concat', [Xtu, e.op('Reshape', [e.reduce('ReduceSum', u, [1], false), e.int64s([1, 1])])], [A.int('axis', 1)]) : Xtu;
    out.av = perSample(av);
  }
  return out;
}

/**
 * G = (c²/R)·DᵀD per group, D the R × d_g rows of ∂L/∂h (R = M·T) and c = M when g = M·∂L/∂h: the
 * gradient-side Kronecker factor, from whatever loss the backward pass started at.
 */
function gradientFactor(e: Emitter, layer: Layer, grads: Gradients, batch: string | undefined): string {
  const dh = grads.of(layer.preactivation);
  if (!dh) throw new GraphError(`layer '${layer.name}' does not reach the loss`);
  const { groups, factors: { g: dg } } = layer;
  const dtype = e.dtypeOf(layer.input);
  const rows = layer.kind === 'conv'
    ? e.op('Reshape', [e.op('Transpose', [e.op('Reshape', [dh, e.int64s([0, groups, dg, -1])])], [A.ints('perm', [1, 0, 3, 2])]), e.int64s([groups, -1, dg])])
    : e.op('Reshape', [dh, e.int64s([1, -1, dg])]);
  const gram = groups === 1 ? e.unsqueeze(e.gemm(e.op('Reshape', [rows, e.int64s([-1, dg])]), e.op('Reshape', [rows, e.int64s([-1, dg])]), true, false), [0])
    : e.op('MatMul', [e.op('Transpose', [rows], [A.ints('perm', [0, 2, 1])]), rows]);
  const count = e.op('Cast', [e.op('Gather', [e.op('Shape', [rows]), e.int64s([1])], [A.int('axis', 0)])], [A.int('to', dtype === 'float64' ? 11 : 1)]);
  const scale = batch ? e.op('Div', [e.op('Mul', [batch, batch]), count]) : e.op('Reciprocal', [count]);
  return e.op('Mul', [gram, e.op('Reshape', [scale, e.int64s([1, 1, 1])])]);
}

/**
 * Σ over the rows of ã∘ã per group [groups, d_a]: for a convolution the window sums that give ā,
 * taken of x∘x; for a linear layer the column sums of x∘x; the bias entry is the number of rows.
 */
function activationSquareSums(e: Emitter, layer: Layer, node: Node): string {
  const dtype = e.dtypeOf(layer.input);
  const squared = e.op('Mul', [layer.input, layer.input]);
  e.g.types.set(squared, { dtype, shape: e.shapeOf(layer.input) });
  if (layer.kind === 'conv') return convWindowSums(e, layer, node, squared, 'squares-sum').sums;
  const rows = e.op('Reshape', [squared, e.int64s([1, -1, layer.inFeatures])]);
  const sums = e.op('Reshape', [e.reduce('ReduceSum', rows, [1], false), e.int64s([1, layer.inFeatures])]);
  if (!layer.bias) return sums;
  const count = e.op('Cast', [e.op('Gather', [e.op('Shape', [rows]), e.int64s([1])], [A.int('axis', 0)])], [A.int('to', dtype === 'float64' ? 11 : 1)]);
  return e.op('Concat', [sums, e.op('Reshape', [count, e.int64s([1, 1])])], [A.int('axis', 1)]);
}

/**
 * Σ over a convolution's rows of its patches of `x` (shaped like the layer's input) per group
 * [groups, d_a], the bias entry being the number of rows, and that number per group [groups] (a
 * scalar, broadcast). Σ over the batch first: every window's sum is the window's entries of Σ_n x,
 * so the kernel gradient runs on one sample [1, C, spatial] instead of N.
 */
function convWindowSums(e: Emitter, layer: Layer, node: Node, x: string, tag: string): { sums: string; rows: string } {
  const { groups, inFeatures: d } = layer;
  const dtype = e.dtypeOf(layer.input);
  const spatial = layer.kernel!.map((_, i) => i + 2);
  const summed = e.reduce('ReduceSum', x, [0], true);
  e.g.types.set(summed, { dtype, shape: [1, ...e.shapeOf(layer.input).slice(1)] });
  const hSum = e.g.fresh(`${layer.preactivation}/${tag}`);
  e.g.types.set(hSum, { dtype, shape: [1, ...e.shapeOf(layer.preactivation).slice(1)] });
  const onSum: Node = { ...node, name: `${node.name}/${tag}`, inputs: [summed, ...node.inputs.slice(1)], outputs: [hSum] };
  const hShape = e.op('Shape', [layer.preactivation]);
  const ones = e.op('Expand', [e.constant(1, dtype), e.op('Concat', [e.int64s([1, groups]), e.op('Gather', [hShape, e.int64s(spatial)], [A.int('axis', 0)])], [A.int('axis', 0)])]);
  const sums = e.op('Reshape', [convKernelGradient(e, onSum, ones), e.int64s([groups, d])]);
  // Rows per group: N·T = size(h) / C_out.
  const rows = e.op('Div', [e.op('Cast', [e.op('Size', [layer.preactivation])], [A.int('to', dtype === 'float64' ? 11 : 1)]), e.constant(groups * layer.factors.g, dtype)]);
  if (!layer.bias) return { sums, rows };
  return { sums: e.op('Concat', [sums, e.unsqueeze(e.op('Mul', [e.constant(new Array(groups).fill(1), dtype), rows]), [1])], [A.int('axis', 1)]), rows };
}

/** The Conv's attributes for a convolution over the same windows (kernel from the layer). */
function windowAttrs(node: Node, layer: Layer): ReturnType<typeof A.int>[] {
  const attrs = ['strides', 'pads', 'dilations', 'auto_pad'].map((n) => attr(node, n)).filter((a): a is NonNullable<typeof a> => !!a);
  return [...attrs, A.int('group', layer.groups), A.ints('kernel_shape', layer.kernel!)];
}

/**
 * Ãᵀu for u = Ã v (the Hessian action, unscaled) and Ãᵀ1 / (M·T) (ā) per group, without the patch
 * matrix: u is a convolution of x with v's weight part as a one-output-per-group kernel, and Ãᵀy for
 * a per-position y is a kernel gradient with ∂L/∂h = y; for ā (y = 1) that kernel gradient runs on
 * the batch's sum of x.
 */
function convPatchProducts(e: Emitter, layer: Layer, node: Node, mean: boolean, v?: string): { abar?: string; av?: string } {
  const { groups, inFeatures: d } = layer;
  const k = layer.kernel!;
  const spatial = k.map((_, i) => i + 2);
  const withBias = (part: string, bias: () => string) => (layer.bias ? e.op('Concat', [part, e.unsqueeze(bias(), [1])], [A.int('axis', 1)]) : part);
  const out: { abar?: string; av?: string } = {};
  if (v) {
    const vw = e.op('Reshape', [slice2(e, v, 0, d), e.int64s([groups, d / k.reduce((a, b) => a * b, 1), ...k])]);
    let u = e.op('Conv', [layer.input, vw], windowAttrs(node, layer)); // [N, groups, positions...]
    if (layer.bias) u = e.op('Add', [u, e.op('Reshape', [slice2(e, v, d, d + 1), e.int64s([1, groups, ...k.map(() => 1)])])]);
    const products = e.op('Reshape', [unitStrideTransposedAction(e, layer, node, u) ?? convKernelGradient(e, node, u), e.int64s([groups, d])]);
    out.av = withBias(products, () => e.reduce('ReduceSum', u, [0, ...spatial], false));
  }
  if (mean) {
    const { sums, rows } = convWindowSums(e, layer, node, layer.input, 'batch-sum');
    out.abar = e.op('Div', [sums, rows]);
  }
  return out;
}

/**
 * Ãᵀu for a one-channel u [N, 1, positions...] of an ungrouped, unit-stride convolution with static
 * spatial dims, by shifting u instead of x: patch entry (c, κ) at output position t reads
 * x[t + κ·dilation − pad_begin], so Σ_t u[t]·x[t + κd − p] = Σ_a x[a]·u[a − κd + p], one window of the
 * zero-padded u per kernel offset. The k^r windows ([N, k^r, positions of x], as small as u times
 * k^r) and one batched MatMul with x as it lies ([N, C, positions]) give [C, k^r]. ORT's kernel-
 * gradient Conv instead builds an im2col buffer as large as the patch matrix (7.2 ms against about 1
 * for a 16-channel 3×3 layer at 128 × 28 × 28). Undefined where this does not apply.
 */
function unitStrideTransposedAction(e: Emitter, layer: Layer, node: Node, u: string): string | undefined {
  const { a, axes, xs, cg, g, geo } = convGeometry(e, node);
  const sizes = xs.slice(2);
  if (g !== 1 || geo.some((q) => q.s !== 1) || !sizes.every((n): n is number => typeof n === 'number')) return undefined;
  // u padded so that every window a − κd + p, a ∈ [0, n), lies inside: before by (k−1)d − p, after by (k−1)d − p_end.
  const before = geo.map((q) => Math.max(0, q.reach - q.pb));
  const after = geo.map((q) => Math.max(0, q.reach - q.pe));
  const padded = e.op('Pad', [u, e.int64s([0, 0, ...before, 0, 0, ...after])]);
  const offsets: number[][] = a.kernel.reduce<number[][]>((acc, kk) => acc.flatMap((o) => Array.from({ length: kk }, (_, j) => [...o, j])), [[]]);
  const windows = offsets.map((o) => {
    const starts = o.map((kappa, i) => geo[i].pb - kappa * geo[i].d + before[i]);
    return e.op('Slice', [padded, e.int64s(starts), e.int64s(starts.map((st, i) => st + sizes[i])), e.int64s(axes)]);
  });
  const positions = sizes.reduce((x, y) => x * y, 1);
  const U = e.op('Reshape', [windows.length === 1 ? windows[0] : e.op('Concat', windows, [A.int('axis', 1)]), e.int64s([0, windows.length, positions])]);
  const X = e.op('Reshape', [layer.input, e.int64s([0, cg, positions])]);
  const perSample = e.op('MatMul', [X, e.op('Transpose', [U], [A.ints('perm', [0, 2, 1])])]); // [N, C, k^r]
  return e.reduce('ReduceSum', perSample, [0], false);
}

/** Columns [from, to) of a [groups, d_a] matrix. */
function slice2(e: Emitter, x: string, from: number, to: number): string {
  return e.opset >= 10 ? e.op('Slice', [x, e.int64s([from]), e.int64s([to]), e.int64s([1])])
    : e.op('Slice', [x], [A.ints('starts', [from]), A.ints('ends', [to]), A.ints('axes', [1])]);
}

/** Axes of h to average for per-output means: all but the channel axis (1 for Conv, last otherwise). */
function outputReduceAxes(e: Emitter, layer: Layer): number[] {
  const rank = e.shapeOf(layer.preactivation).length;
  const channel = layer.kind === 'conv' ? 1 : rank - 1;
  return Array.from({ length: rank }, (_, i) => i).filter((i) => i !== channel);
}

/** [1, R, in] from a Gemm or MatMul input: leading axes folded into rows. */
function linearRows(e: Emitter, layer: Layer): string {
  return e.op('Reshape', [layer.input, e.int64s([1, -1, layer.inFeatures])]);
}

/**
 * [groups, M·T, C_in/groups·k] patches from a Conv whose kernel is the identity on patch entries:
 * output channel c·prod(k) + offset of each group copies input channel c at that kernel offset,
 * so the patch order matches the weight's [C_out, C_in/group, k...] flattening.
 */
function convRows(e: Emitter, layer: Layer, node: Node): string {
  return gatheredRows(e, layer, node) ?? identityConvRows(e, layer, node);
}

/**
 * Patches by indexing (no multiplications) when the spatial size is static: pad x, flatten its
 * spatial axes, Gather every window's entries with precomputed indices [T, k], regroup.
 */
function gatheredRows(e: Emitter, layer: Layer, node: Node): string | undefined {
  const xs = e.shapeOf(layer.input);
  const spatial = xs.slice(2);
  if (!spatial.every((d): d is number => typeof d === 'number') || typeof xs[1] !== 'number') return undefined;
  const a = convAttrs(node, e.shapeOf(node.inputs[1]), (m) => { throw new GraphError(`node '${node.name}' (Conv): ${m}`); });
  const pads = spatial.map((size, i) => axisPads(a, i, size)!);
  const padded = spatial.map((size, i) => size + pads[i][0] + pads[i][1]);
  const out = padded.map((p, i) => Math.floor((p - ((a.kernel[i] - 1) * a.dilations[i] + 1)) / a.strides[i]) + 1);
  const r = spatial.length;
  // Flat index into the padded spatial grid of output position t and kernel offset q.
  const index: number[] = [];
  const positions = out.reduce((x, y) => x * y, 1);
  const offsets = a.kernel.reduce((x, y) => x * y, 1);
  for (let t = 0; t < positions; t++) {
    for (let q = 0; q < offsets; q++) {
      let flat = 0; let restT = t; let restQ = q;
      const pos: number[] = []; const off: number[] = [];
      for (let i = r - 1; i >= 0; i--) { pos[i] = restT % out[i]; restT = Math.floor(restT / out[i]); off[i] = restQ % a.kernel[i]; restQ = Math.floor(restQ / a.kernel[i]); }
      for (let i = 0; i < r; i++) flat = flat * padded[i] + pos[i] * a.strides[i] + off[i] * a.dilations[i];
      index.push(flat);
    }
  }
  const channels = xs[1];
  const { groups, inFeatures: d } = layer;
  const padAmounts = [0, 0, ...pads.map((p) => p[0]), 0, 0, ...pads.map((p) => p[1])];
  const xPadded = padAmounts.every((p) => p === 0) ? layer.input
    : e.opset >= 11 ? e.op('Pad', [layer.input, e.int64s(padAmounts)]) : e.op('Pad', [layer.input], [A.ints('pads', padAmounts)]);
  const flatX = e.op('Reshape', [xPadded, e.int64s([0, channels, -1])]);
  const windows = e.op('Gather', [flatX, e.constant(index, 'int64', [positions, offsets])], [A.int('axis', 2)]); // [N, C, T, k]
  // [N, G, C/G, T, k] → [G, N, T, C/G, k] → [G, N·T, d]
  const split = e.op('Reshape', [windows, e.int64s([0, groups, channels / groups, positions, offsets])]);
  const moved = e.op('Transpose', [split], [A.ints('perm', [1, 0, 3, 2, 4])]);
  return e.op('Reshape', [moved, e.int64s([groups, -1, d])]);
}

/** Patches from a Conv whose kernel is the identity on patch entries (any spatial size). */
function identityConvRows(e: Emitter, layer: Layer, node: Node): string {
  const kernel = layer.kernel!;
  const k = kernel.reduce((a, b) => a * b, 1);
  const perGroupIn = layer.inFeatures / k;
  const d = layer.inFeatures;
  const groups = layer.groups;
  const identity = new Array<number>(groups * d * d).fill(0);
  for (let o = 0; o < groups * d; o++) identity[o * d + (o % d)] = 1;
  const eye = e.constant(identity, e.dtypeOf(layer.input), [groups * d, perGroupIn, ...kernel]);
  const patches = e.op('Conv', [layer.input, eye], windowAttrs(node, layer));
  // [N, G·d, spatial...] → [N, G, d, T] → [G, N, T, d] → [G, N·T, d]
  const split = e.op('Reshape', [patches, e.int64s([0, groups, d, -1])]);
  const moved = e.op('Transpose', [split], [A.ints('perm', [1, 0, 3, 2])]);
  return e.op('Reshape', [moved, e.int64s([groups, -1, d])]);
}

/**
 * ÃᵀÃ per group for Ã = [X | 1] without copying X into Ã: [[XᵀX, Xᵀ1], [1ᵀX, R]]. One group is a
 * Gemm with transA (no transposed copy of the R × d rows).
 */
function gramWithOnes(e: Emitter, layer: Layer, rows: string, rowSums: () => string, rowCount: () => string): string {
  const { groups, inFeatures: d } = layer;
  const single = groups === 1 ? e.op('Reshape', [rows, e.int64s([-1, d])]) : undefined;
  const gram = single ? e.unsqueeze(e.gemm(single, single, true, false), [0])
    : e.op('MatMul', [e.op('Transpose', [rows], [A.ints('perm', [0, 2, 1])]), rows]);
  if (!layer.bias) return gram;
  const sums = rowSums();
  const corner = e.op('Expand', [e.op('Reshape', [rowCount(), e.int64s([1, 1, 1])]), e.int64s([groups, 1, 1])]);
  const top = e.op('Concat', [gram, e.op('Transpose', [sums], [A.ints('perm', [0, 2, 1])])], [A.int('axis', 2)]);
  const bottom = e.op('Concat', [sums, corner], [A.int('axis', 2)]);
  return e.op('Concat', [top, bottom], [A.int('axis', 1)]);
}
