// The three graphs of a K-BFGS step (ALGORITHMS.md §3.4), built once per model:
//  1. direction: forward/backward with the layer statistics; momentum; the A EMA; per Kronecker
//     layer D = H_g·X·H_a of the momentum gradient X = [m_W | m_b]; θ⁺ = θ − α·D (other
//     parameters: θ − α·m);
//  2. curvature pass: forward/backward at θ⁺ on the same batch, only the means h̄⁺, ḡ⁺;
//  3. curvature update: s̄, ȳ EMAs, double damping, BFGS (or L-BFGS push) on H_g, Hessian-action
//     BFGS on H_a.
// Plus an initialisation graph H_a⁰ = (A + λ_A·I)⁻¹ and the statistics graph for A's warm start.
import {
  A, buildTrainingGraph, emitBfgsInverseUpdate, emitDoubleDamping, emitLbfgsApply, emitLbfgsPush, emitPrecondition,
  emitRegularizedInverse, Emitter, Graph, GraphError, type DataType, type Layer, type onnx, type TrainingGraph, type TrainingGraphOptions,
} from '../../graph-tools/index.js';
import type { KroneckerOptimizer } from './kbfgs.js';

export const kname = {
  momentum: (p: string) => `kfqn:m:${p}`,
  newMomentum: (p: string) => `kfqn:new-m:${p}`,
  newParam: (p: string) => `kfqn:new:${p}`,
  A: (l: string) => `kfqn:state-A:${l}`,
  newA: (l: string) => `kfqn:new-A:${l}`,
  Ha: (l: string) => `kfqn:Ha:${l}`,
  Hg: (l: string) => `kfqn:Hg:${l}`,
  S: (l: string) => `kfqn:S:${l}`,
  Y: (l: string) => `kfqn:Y:${l}`,
  rho: (l: string) => `kfqn:rho:${l}`,
  sbar: (l: string) => `kfqn:sbar:${l}`,
  ybar: (l: string) => `kfqn:ybar:${l}`,
  hbar: (l: string) => `kfqn:hbar:${l}`,
  gbar: (l: string) => `kfqn:gbar:${l}`,
  abar: (l: string) => `kfqn:abar:${l}`,
  hbar2: (l: string) => `kfqn:hbar2:${l}`,
  gbar2: (l: string) => `kfqn:gbar2:${l}`,
  next: (name: string) => `${name}:next`,
  powell: (l: string) => `kfqn:powell:${l}`,
  acceptedG: (l: string) => `kfqn:accepted-g:${l}`,
  acceptedA: (l: string) => `kfqn:accepted-a:${l}`,
  scalar: (s: string) => `kfqn:scalar:${s}`,
};

/** The scalars fed to the direction graph each step. */
export const DIRECTION_SCALARS = ['neglr', 'betaA', 'oneMinusBetaA', 'l2', 'rho', 'oneMinusRho'] as const;

/** Shapes of one layer's curvature state: [groups, d_g, d_g], [groups, d_a, d_a], ... */
export function layerDims(l: Layer) {
  return { G: l.groups, dg: l.factors.g, da: l.factors.a, d: l.inFeatures };
}

function declare(g: Graph, name: string, dtype: DataType, shape: number[], as: 'input' | 'output', value?: string): void {
  if (as === 'input') {
    g.inputs.push({ name, type: { dtype, shape } });
    g.types.set(name, { dtype, shape });
  } else {
    g.add('Identity', [value!], [], [name]);
    g.outputs.push({ name, type: { dtype, shape } });
  }
}

/** [G, d_g, d_a] matrix X = [m_W | m_b] of a layer from its weight and bias values. */
function layerMatrix(e: Emitter, l: Layer, w: string, b: string | undefined): string {
  const { G, dg, d } = layerDims(l);
  const weight = l.weightLayout === 'in-out' && l.kind !== 'conv' ? e.op('Transpose', [w], [A.ints('perm', [1, 0])]) : w;
  const xw = e.op('Reshape', [weight, e.int64s([G, dg, d])]);
  return b ? e.op('Concat', [xw, e.op('Reshape', [b, e.int64s([G, dg, 1])])], [A.int('axis', 2)]) : xw;
}

/** Splits D [G, d_g, d_a] back into the weight's own layout and the bias [C_out]. */
function splitMatrix(e: Emitter, l: Layer, D: string, weightDims: number[]): { w: string; b?: string } {
  const { G, dg, d } = layerDims(l);
  const cols = (from: number, to: number) => e.op('Slice', [D, e.int64s([from]), e.int64s([to]), e.int64s([2])]);
  const dw = l.bias ? cols(0, d) : D;
  const w = l.weightLayout === 'in-out' && l.kind !== 'conv'
    ? e.op('Transpose', [e.op('Reshape', [dw, e.int64s([dg, d])])], [A.ints('perm', [1, 0])])
    : e.op('Reshape', [dw, e.int64s(weightDims)]);
  return { w, b: l.bias ? e.op('Reshape', [cols(d, d + 1), e.int64s([G * dg])]) : undefined };
}

export interface DirectionGraph {
  training: TrainingGraph;
  model: onnx.ModelProto;
  /** Kronecker layers (Gemm, MatMul, Conv) and the parameters updated by the momentum direction. */
  layers: Layer[];
  plainParameters: string[];
}

/** Graph 1: loss, θ⁺, new momentum, new A and the means, in one run. */
export function buildDirectionGraph(model: onnx.ModelProto, spec: Omit<TrainingGraphOptions, 'capture'>, opt: KroneckerOptimizer): DirectionGraph {
  const tg = buildTrainingGraph(model, { ...spec, capture: { gradients: false, statistics: { factors: true, means: true } } });
  const g = tg.graph;
  const e = tg.emitter;
  // The batch A factors stay inside: only their EMA leaves the graph.
  g.outputs = g.outputs.filter((o) => !o.name.startsWith('kfqn:A:'));
  const layers = tg.report.layers;
  if (opt.history !== undefined && layers.some((l) => l.groups > 1)) {
    throw new GraphError(`${spec.source ?? 'model'}: K-BFGS(L) does not support grouped convolutions yet; use kbfgs`);
  }
  const dtype = tg.initialParameters.values().next().value!.dtype;
  const scalar = (s: (typeof DIRECTION_SCALARS)[number]) => kname.scalar(s);
  for (const s of DIRECTION_SCALARS) declare(g, scalar(s), dtype, [], 'input');

  // ĝ = ∇L + τθ;  m' = ρ·m + (1−ρ)·ĝ  (ALGORITHMS.md §2.4)
  const newMomentum = new Map<string, string>();
  for (const [p, t] of tg.initialParameters) {
    const grad = tg.grads.of(p);
    if (!grad) continue;
    declare(g, kname.momentum(p), t.dtype, t.dims, 'input');
    const gHat = e.op('Add', [grad, e.op('Mul', [p, scalar('l2')])]);
    newMomentum.set(p, e.op('Add', [e.op('Mul', [kname.momentum(p), scalar('rho')]), e.op('Mul', [gHat, scalar('oneMinusRho')])]));
    declare(g, kname.newMomentum(p), t.dtype, t.dims, 'output', newMomentum.get(p));
  }
  const step = (p: string, direction: string) => {
    const t = tg.initialParameters.get(p)!;
    declare(g, kname.newParam(p), t.dtype, t.dims, 'output', e.op('Add', [p, e.op('Mul', [direction, scalar('neglr')])]));
  };
  const inLayers = new Set<string>();
  for (const l of layers) {
    const { G, dg, da } = layerDims(l);
    const stats = tg.outputs.statistics.get(l.name)!;
    const mW = newMomentum.get(l.weight);
    const mB = l.bias ? newMomentum.get(l.bias) : undefined;
    if (!mW || (l.bias && !mB)) continue; // a layer that does not reach the loss keeps its values
    inLayers.add(l.weight); if (l.bias) inLayers.add(l.bias);
    declare(g, kname.A(l.name), dtype, [G, da, da], 'input');
    declare(g, kname.Ha(l.name), dtype, [G, da, da], 'input');
    // A' = β_A·A + (1 − β_A)·A_batch  (β_A = 1 at the first step: A came from the warm start)
    const newA = e.op('Add', [e.op('Mul', [kname.A(l.name), scalar('betaA')]), e.op('Mul', [stats.a!, scalar('oneMinusBetaA')])]);
    declare(g, kname.newA(l.name), dtype, [G, da, da], 'output', newA);
    const X = layerMatrix(e, l, mW, mB);
    let D: string;
    if (opt.history === undefined) {
      declare(g, kname.Hg(l.name), dtype, [G, dg, dg], 'input');
      D = emitPrecondition(e, kname.Hg(l.name), X, kname.Ha(l.name));
    } else {
      declare(g, kname.S(l.name), dtype, [opt.history, dg], 'input');
      declare(g, kname.Y(l.name), dtype, [opt.history, dg], 'input');
      declare(g, kname.rho(l.name), dtype, [opt.history], 'input');
      const X2 = e.op('Reshape', [X, e.int64s([dg, da])]);
      const HgX = emitLbfgsApply(e, X2, kname.S(l.name), kname.Y(l.name), kname.rho(l.name), 1, { memory: opt.history, dtype });
      D = e.op('MatMul', [e.op('Reshape', [HgX, e.int64s([1, dg, da])]), kname.Ha(l.name)]);
    }
    const parts = splitMatrix(e, l, D, tg.initialParameters.get(l.weight)!.dims);
    step(l.weight, parts.w);
    if (l.bias) step(l.bias, parts.b!);
  }
  const plainParameters = [...newMomentum.keys()].filter((p) => !inLayers.has(p));
  for (const p of plainParameters) step(p, newMomentum.get(p)!);
  return { training: tg, model: g.toModel(), layers: layers.filter((l) => inLayers.has(l.weight)), plainParameters };
}

/** Graph 2: the means h̄⁺, ḡ⁺ at θ⁺ (no parameter gradients leave the graph). */
export function buildCurvaturePassGraph(model: onnx.ModelProto, spec: Omit<TrainingGraphOptions, 'capture'>): TrainingGraph {
  return buildTrainingGraph(model, { ...spec, parameterGradients: false, capture: { gradients: false, statistics: { means: true } } });
}

/** The statistics graph for A's warm start: the batch A factors only. */
export function buildFactorGraph(model: onnx.ModelProto, spec: Omit<TrainingGraphOptions, 'capture'>): TrainingGraph {
  return buildTrainingGraph(model, { ...spec, parameterGradients: false, capture: { gradients: false, statistics: { factors: true } } });
}

/** Initialisation: H_a⁰ = (A + λ_A·I)⁻¹ per layer and group. */
export function buildInitGraph(layers: Layer[], lambdaA: number, dtype: DataType): onnx.ModelProto {
  const g = new Graph();
  g.opset = 13;
  const e = new Emitter(g);
  for (const l of layers) {
    const { G, da } = layerDims(l);
    declare(g, kname.A(l.name), dtype, [G, da, da], 'input');
    declare(g, kname.Ha(l.name), dtype, [G, da, da], 'output', emitRegularizedInverse(e, kname.A(l.name), lambdaA, da, dtype));
  }
  return g.toModel();
}

/** Graph 3: curvature updates of every layer from the two passes' means. */
export function buildUpdateGraph(layers: Layer[], opt: KroneckerOptimizer, dtype: DataType): onnx.ModelProto {
  const g = new Graph();
  g.opset = 13;
  const e = new Emitter(g);
  const o = opt.options;
  const lambdaA = Math.sqrt(o.damping);
  const k = (v: number) => e.constant(v, dtype);
  const ema = (old: string, x: string) => e.op('Add', [e.op('Mul', [old, k(o.pairDecay)]), e.op('Mul', [x, k(1 - o.pairDecay)])]);
  /** Group i of a [G, ...] value: a Reshape when there is one group, a Gather otherwise. */
  const group = (x: string, i: number, G: number, inner: number[]) => (G === 1
    ? e.op('Reshape', [x, e.int64s(inner)])
    : e.op('Gather', [x, e.constant(i, 'int64')], [A.int('axis', 0)]));
  for (const l of layers) {
    const { G, dg, da } = layerDims(l);
    const n = l.name;
    for (const [name, shape] of [[kname.Ha(n), [G, da, da]], [kname.A(n), [G, da, da]], [kname.sbar(n), [G, dg]], [kname.ybar(n), [G, dg]],
      [kname.hbar(n), [G, dg]], [kname.gbar(n), [G, dg]], [kname.hbar2(n), [G, dg]], [kname.gbar2(n), [G, dg]], [kname.abar(n), [G, da]]] as const) {
      declare(g, name, dtype, [...shape], 'input');
    }
    // s̄ ← β·s̄ + (1−β)(h̄⁺ − h̄), ȳ likewise with ḡ (ALGORITHMS.md §3.4)
    const sbar = ema(kname.sbar(n), e.op('Sub', [kname.hbar2(n), kname.hbar(n)]));
    const ybar = ema(kname.ybar(n), e.op('Sub', [kname.gbar2(n), kname.gbar(n)]));
    declare(g, kname.next(kname.sbar(n)), dtype, [G, dg], 'output', sbar);
    declare(g, kname.next(kname.ybar(n)), dtype, [G, dg], 'output', ybar);
    const powell: string[] = []; const acceptedG: string[] = []; const acceptedA: string[] = [];
    const newHg: string[] = []; const newHa: string[] = [];
    if (opt.history === undefined) declare(g, kname.Hg(n), dtype, [G, dg, dg], 'input');
    else {
      declare(g, kname.S(n), dtype, [opt.history, dg], 'input');
      declare(g, kname.Y(n), dtype, [opt.history, dg], 'input');
      declare(g, kname.rho(n), dtype, [opt.history], 'input');
    }
    for (let i = 0; i < G; i++) {
      const s = group(sbar, i, G, [dg]); const y = group(ybar, i, G, [dg]); const r = group(kname.gbar(n), i, G, [dg]);
      // Double damping needs H_g·ȳ: a product with the dense inverse, or the L-BFGS operator.
      const Hy = opt.history === undefined
        ? e.op('MatMul', [group(kname.Hg(n), i, G, [dg, dg]), y])
        : e.op('Reshape', [emitLbfgsApply(e, e.op('Reshape', [y, e.int64s([dg, 1])]), kname.S(n), kname.Y(n), kname.rho(n), 1, { memory: opt.history, dtype }), e.int64s([dg])]);
      const dd = emitDoubleDamping(e, s, y, Hy, { mu1: o.powell, mu2: Math.sqrt(o.damping), mode: o.dampingMode, dtype });
      powell.push(dd.powell);
      if (opt.history === undefined) {
        const u = emitBfgsInverseUpdate(e, group(kname.Hg(n), i, G, [dg, dg]), dd.s, dd.y, r, { dtype });
        newHg.push(e.unsqueeze(u.H, [0])); acceptedG.push(u.accepted);
      } else {
        const u = emitLbfgsPush(e, kname.S(n), kname.Y(n), kname.rho(n), dd.s, dd.y, r, { memory: opt.history, dtype });
        declare(g, kname.next(kname.S(n)), dtype, [opt.history, dg], 'output', u.S);
        declare(g, kname.next(kname.Y(n)), dtype, [opt.history, dg], 'output', u.Y);
        declare(g, kname.next(kname.rho(n)), dtype, [opt.history], 'output', u.rho);
        acceptedG.push(u.accepted);
      }
      // Hessian-action BFGS on H_a: s_a = H_a·ā, y_a = (A + λ_A·I)·s_a, reference ā.
      const Ha = group(kname.Ha(n), i, G, [da, da]);
      const abar = group(kname.abar(n), i, G, [da]);
      const sa = e.op('MatMul', [Ha, abar]);
      const ya = e.op('Add', [e.op('MatMul', [group(kname.A(n), i, G, [da, da]), sa]), e.op('Mul', [sa, k(lambdaA)])]);
      const ua = emitBfgsInverseUpdate(e, Ha, sa, ya, abar, { dtype });
      newHa.push(e.unsqueeze(ua.H, [0])); acceptedA.push(ua.accepted);
    }
    const stack = (xs: string[]) => (xs.length === 1 ? xs[0] : e.op('Concat', xs, [A.int('axis', 0)]));
    const total = (xs: string[]) => e.sum(xs);
    if (opt.history === undefined) declare(g, kname.next(kname.Hg(n)), dtype, [G, dg, dg], 'output', stack(newHg));
    declare(g, kname.next(kname.Ha(n)), dtype, [G, da, da], 'output', stack(newHa));
    declare(g, kname.powell(n), dtype, [], 'output', total(powell));
    declare(g, kname.acceptedG(n), dtype, [], 'output', total(acceptedG));
    declare(g, kname.acceptedA(n), dtype, [], 'output', total(acceptedA));
  }
  return g.toModel();
}
