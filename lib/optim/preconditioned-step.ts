// The step graph shared by the Kronecker-factored optimizers (K-BFGS, KFAC, Shampoo): one
// forward/backward, the gradient momentum of ALGORITHMS.md §2.4, and per Kronecker layer a
// direction D computed from the momentum matrix X = [m_W | m_b] by the optimizer's callback;
// θ⁺ = θ − α·D, and every other trainable parameter steps along its momentum (§7: "BN parameters:
// gradient direction"). The squared norm of the whole direction is an output, so that a
// non-finite direction is caught with one scalar read.
import {
  A, buildTrainingGraph, Emitter, gateOutputs, Graph, mergeCommonSubexpressions, type DataType, type Layer, type LayerStatistics, type onnx, type StatisticsRequest,
  type TrainingGraph, type TrainingGraphOptions,
} from '../../graph-tools/index.js';

/** Names of the values the engines feed and read, by what they hold. */
export const kname = {
  momentum: (p: string) => `kfqn:m:${p}`,
  newMomentum: (p: string) => `kfqn:new-m:${p}`,
  newParam: (p: string) => `kfqn:new:${p}`,
  /** The right (input-side) factor: K-BFGS's and KFAC's A, Shampoo's R. */
  A: (l: string) => `kfqn:state-A:${l}`,
  newA: (l: string) => `kfqn:new-A:${l}`,
  /** The left (output-side) factor: KFAC's G, Shampoo's L. */
  G: (l: string) => `kfqn:state-G:${l}`,
  newG: (l: string) => `kfqn:new-G:${l}`,
  /** The right and left preconditioners: D = H_g·X·H_a. */
  Ha: (l: string) => `kfqn:Ha:${l}`,
  Hg: (l: string) => `kfqn:Hg:${l}`,
  /** An L-BFGS H_g's diagonal H0 (gInit 'factor'). */
  Hg0: (l: string) => `kfqn:Hg0:${l}`,
  /** An L-BFGS H_a's diagonal H0 (aInit 'factor'). */
  Ha0: (l: string) => `kfqn:Ha0:${l}`,
  S: (l: string) => `kfqn:S:${l}`,
  Y: (l: string) => `kfqn:Y:${l}`,
  rho: (l: string) => `kfqn:rho:${l}`,
  sbar: (l: string) => `kfqn:sbar:${l}`,
  ybar: (l: string) => `kfqn:ybar:${l}`,
  hbar: (l: string) => `kfqn:hbar:${l}`,
  gbar: (l: string) => `kfqn:gbar:${l}`,
  abar: (l: string) => `kfqn:abar:${l}`,
  hbar2: (l: string) => `kfqn:hbar2:${l}`,
  /** KF-QN's A-side pair from the minibatch: s_a = H_a·ā (A_B·s_a is the statistics' av) and the reference ā. */
  sa: (l: string) => `kfqn:sa:${l}`,
  aref: (l: string) => `kfqn:aref:${l}`,
  /** An L-BFGS H_a's memory. */
  Sa: (l: string) => `kfqn:Sa:${l}`,
  Ya: (l: string) => `kfqn:Ya:${l}`,
  rhoa: (l: string) => `kfqn:rhoa:${l}`,
  gbar2: (l: string) => `kfqn:gbar2:${l}`,
  next: (name: string) => `${name}:next`,
  powell: (l: string) => `kfqn:powell:${l}`,
  acceptedG: (l: string) => `kfqn:accepted-g:${l}`,
  acceptedA: (l: string) => `kfqn:accepted-a:${l}`,
  scalar: (s: string) => `kfqn:scalar:${s}`,
  directionNorm: 'kfqn:direction-norm2',
};

/** Scalars fed every step: −α, the factor EMA's β and 1−β, τ as L2, ρ and 1−ρ, τ as decoupled decay. */
export const STEP_SCALARS = ['neglr', 'beta', 'oneMinusBeta', 'l2', 'rho', 'oneMinusRho', 'decay'] as const;
export type StepScalar = (typeof STEP_SCALARS)[number];

/** Shapes of one layer's curvature state: [groups, d_g, d_g], [groups, d_a, d_a], ... */
export function layerDims(l: Layer) {
  return { G: l.groups, dg: l.factors.g, da: l.factors.a, d: l.inFeatures };
}

/** Declares a graph input (once, however often asked) or output. */
export function declare(g: Graph, name: string, dtype: DataType, shape: number[], as: 'input' | 'output', value?: string): void {
  if (as === 'input') {
    if (g.inputs.some((i) => i.name === name)) return;
    g.inputs.push({ name, type: { dtype, shape } });
    g.types.set(name, { dtype, shape });
  } else {
    g.add('Identity', [value!], [], [name]);
    g.outputs.push({ name, type: { dtype, shape } });
  }
}

/** [G, d_g, d_a] matrix X = [X_W | x_b] of a layer from weight- and bias-shaped values. */
export function layerMatrix(e: Emitter, l: Layer, w: string, b: string | undefined): string {
  const { G, dg, d } = layerDims(l);
  const weight = l.weightLayout === 'in-out' && l.kind !== 'conv' ? e.op('Transpose', [w], [A.ints('perm', [1, 0])]) : w;
  const xw = e.op('Reshape', [weight, e.int64s([G, dg, d])]);
  return b ? e.op('Concat', [xw, e.op('Reshape', [b, e.int64s([G, dg, 1])])], [A.int('axis', 2)]) : xw;
}

/** Splits D [G, d_g, d_a] back into the weight's own layout and the bias [C_out]. */
export function splitMatrix(e: Emitter, l: Layer, D: string, weightDims: number[]): { w: string; b?: string } {
  const { G, dg, d } = layerDims(l);
  const cols = (from: number, to: number) => e.op('Slice', [D, e.int64s([from]), e.int64s([to]), e.int64s([2])]);
  const dw = l.bias ? cols(0, d) : D;
  const w = l.weightLayout === 'in-out' && l.kind !== 'conv'
    ? e.op('Transpose', [e.op('Reshape', [dw, e.int64s([dg, d])])], [A.ints('perm', [1, 0])])
    : e.op('Reshape', [dw, e.int64s(weightDims)]);
  return { w, b: l.bias ? e.op('Reshape', [cols(d, d + 1), e.int64s([G * dg])]) : undefined };
}

export interface LayerContext {
  g: Graph;
  e: Emitter;
  layer: Layer;
  dtype: DataType;
  /** The momentum matrix [G, d_g, d_a]. */
  X: string;
  /** The raw minibatch gradient matrix [G, d_g, d_a] (Shampoo's statistics). */
  gradient: () => string;
  /** This layer's statistics from the training graph (as requested). */
  statistics: LayerStatistics;
  scalar: (s: StepScalar) => string;
}

export interface StepGraph {
  training: TrainingGraph;
  model: onnx.ModelProto;
  /** Kronecker layers (Gemm, MatMul, Conv) that reach the loss; the rest of the parameters step along their momentum. */
  layers: Layer[];
  plainParameters: string[];
  dtype: DataType;
}

/** How τ enters a step: L2 in the gradient (ĝ = ∇L + τθ), decoupled (θ ← θ − α·τ·θ), or not at all (τ = 0). */
export type WeightDecayForm = 'l2' | 'decoupled' | 'none';

export function weightDecayForm(o: { weightDecay: number; decoupledWeightDecay: boolean }): WeightDecayForm {
  return o.weightDecay === 0 ? 'none' : o.decoupledWeightDecay ? 'decoupled' : 'l2';
}

/**
 * The scalars emitOptimizerStep's graph reads at update t (1-based): −α_t, τ (as `l2` or `decay`,
 * whichever form the graph was built with) and the momentum's ρ, 1 − ρ.
 */
export function optimizerStepScalars(
  o: { weightDecay: number; momentum: number }, learningRate: (t: number) => number, t: number,
): Record<'neglr' | 'l2' | 'decay' | 'rho' | 'oneMinusRho', number> {
  return { neglr: -learningRate(t), l2: o.weightDecay, decay: o.weightDecay, rho: o.momentum, oneMinusRho: 1 - o.momentum };
}

/**
 * Builds the step graph: `direction` declares the layer's own state inputs and outputs on the
 * graph and returns D [G, d_g, d_a].
 */
export function buildPreconditionedStepGraph(
  model: onnx.ModelProto, spec: Omit<TrainingGraphOptions, 'capture'>, statistics: StatisticsRequest | undefined,
  direction: (c: LayerContext) => string, decay: WeightDecayForm,
): StepGraph {
  const tg = buildTrainingGraph(model, { ...spec, capture: { gradients: false, ...(statistics ? { statistics } : {}) } });
  const g = tg.graph;
  const e = tg.emitter;
  // The batch factors stay inside: the optimizers output their EMAs.
  const factorOutputs = new Set([...tg.outputs.statistics.values()].flatMap((s) => [s.a, s.g]));
  g.outputs = g.outputs.filter((o) => !factorOutputs.has(o.name));
  const dtype = tg.initialParameters.values().next().value!.dtype;
  const { layers, plainParameters } = emitOptimizerStep(g, e, tg.initialParameters, (p) => tg.grads.of(p), tg.report.layers,
    (l) => tg.outputs.statistics.get(l.name) ?? {}, direction, decay);
  return { training: tg, model: g.toModel(), layers, plainParameters, dtype };
}

/**
 * The optimizer's part of a step on graph `g`: momentum of every parameter with a gradient, the
 * layers' directions, θ⁺ and the direction's squared norm. Gradients and statistics are values of
 * `g`: computed by the fused training graph, or inputs of a standalone optimizer graph. Only the
 * `decay` form in use is built (each form is a pass over every parameter).
 */
export function emitOptimizerStep(
  g: Graph, e: Emitter, parameters: ReadonlyMap<string, { dtype: DataType; dims: readonly number[] }>, gradOf: (p: string) => string | undefined,
  candidates: readonly Layer[], statisticsOf: (l: Layer) => LayerStatistics, direction: (c: LayerContext) => string, decay: WeightDecayForm,
): { layers: Layer[]; plainParameters: string[] } {
  const dtype = parameters.values().next().value!.dtype;
  const declared = new Set<string>();
  const scalar = (s: StepScalar) => {
    const name = kname.scalar(s);
    if (!declared.has(name)) { declared.add(name); declare(g, name, dtype, [], 'input'); }
    return name;
  };

  // ĝ = ∇L + τθ;  m' = ρ·m + (1−ρ)·ĝ
  const newMomentum = new Map<string, string>();
  for (const [p, t] of parameters) {
    const grad = gradOf(p);
    if (!grad) continue;
    declare(g, kname.momentum(p), t.dtype, [...t.dims], 'input');
    const gHat = decay === 'l2' ? e.op('Add', [grad, e.op('Mul', [p, scalar('l2')])]) : grad;
    newMomentum.set(p, e.op('Add', [e.op('Mul', [kname.momentum(p), scalar('rho')]), e.op('Mul', [gHat, scalar('oneMinusRho')])]));
    declare(g, kname.newMomentum(p), t.dtype, [...t.dims], 'output', newMomentum.get(p));
  }
  const squares: string[] = [];
  const step = (p: string, d: string) => {
    const t = parameters.get(p)!;
    squares.push(e.reduce('ReduceSumSquare', d, null, false));
    // θ⁺ = θ − α·(D + τ_decoupled·θ)
    const update = decay === 'decoupled' ? e.op('Add', [d, e.op('Mul', [p, scalar('decay')])]) : d;
    declare(g, kname.newParam(p), t.dtype, [...t.dims], 'output', e.op('Add', [p, e.op('Mul', [update, scalar('neglr')])]));
  };
  const inLayers = new Set<string>();
  const layers: Layer[] = [];
  for (const l of candidates) {
    const mW = newMomentum.get(l.weight);
    const mB = l.bias ? newMomentum.get(l.bias) : undefined;
    if (!mW || (l.bias && !mB)) continue; // a layer that does not reach the loss keeps its values
    inLayers.add(l.weight); if (l.bias) inLayers.add(l.bias);
    layers.push(l);
    const gradient = () => layerMatrix(e, l, gradOf(l.weight)!, l.bias ? gradOf(l.bias) : undefined);
    const D = direction({ g, e, layer: l, dtype, X: layerMatrix(e, l, mW, mB), gradient, statistics: statisticsOf(l), scalar });
    const parts = splitMatrix(e, l, D, [...parameters.get(l.weight)!.dims]);
    step(l.weight, parts.w);
    if (l.bias) step(l.bias, parts.b!);
  }
  const plainParameters = [...newMomentum.keys()].filter((p) => !inLayers.has(p));
  for (const p of plainParameters) step(p, newMomentum.get(p)!);
  declare(g, kname.directionNorm, dtype, [], 'output', e.sum(squares));
  return { layers, plainParameters };
}

/**
 * Makes `gated` outputs of a step graph computed only when its scalar input `kfqn:scalar:<flag>`
 * is 1 (gateOutputs: they move under an If), so that one session, in one memory arena, also serves
 * the steps that skip them at a plain step's cost. Copies of the step's own values (a pass inlined
 * with the same inputs, as KFAC's statistics forward) are merged first, so they stay outside.
 */
export function gateStepOutputs(step: StepGraph, flag: string, gated: ReadonlySet<string>): void {
  const { graph: g, emitter: e } = step.training;
  mergeCommonSubexpressions(g);
  declare(g, kname.scalar(flag), step.dtype, [], 'input');
  gateOutputs(g, gated, e.op('Greater', [kname.scalar(flag), e.constant(0.5, step.dtype)]));
}

/** A graph of its own (the curvature update, the inverses): opset 13 and an emitter. */
export function kernelGraph(): { g: Graph; e: Emitter } {
  const g = new Graph();
  g.opset = 13;
  return { g, e: new Emitter(g) };
}

/** β·F + (1−β)·batch, with β and 1−β fed. */
export function ema(e: Emitter, state: string, batch: string, beta: string, oneMinusBeta: string): string {
  return e.op('Add', [e.op('Mul', [state, beta]), e.op('Mul', [batch, oneMinusBeta])]);
}

/**
 * A forward (and, for G, a backward that builds no parameter gradients) whose outputs are the EMAs
 * of each layer's batch factors: A' = β·A + (1−β)·A_batch (unless `activationFactors` is false), and
 * G' likewise. With β = k/(k+1) at the k-th batch it is the running mean of a warm-start pass; with
 * the EMA decay, KFAC's refresh.
 */
export function buildFactorEmaGraph(
  model: onnx.ModelProto, spec: Omit<TrainingGraphOptions, 'capture'>, layers: readonly Layer[],
  o: { gradientFactors: boolean; activationFactors?: boolean; sampleTargets?: boolean },
): TrainingGraph {
  const activationFactors = o.activationFactors ?? true;
  const tg = buildTrainingGraph(model, {
    ...spec, sampleTargets: o.sampleTargets ?? false, parameterGradients: false,
    capture: { gradients: false, statistics: { factors: activationFactors, gradientFactors: o.gradientFactors } },
  });
  const { graph: g, emitter: e } = tg;
  const dtype = tg.initialParameters.values().next().value!.dtype;
  for (const s of ['beta', 'oneMinusBeta']) declare(g, kname.scalar(s), dtype, [], 'input');
  g.outputs = g.outputs.filter((out) => out.name === tg.outputs.loss);
  for (const l of layers) {
    const { G, dg, da } = layerDims(l);
    const stats = tg.outputs.statistics.get(l.name)!;
    const factors: [string, string, string, number][] = [];
    if (activationFactors) factors.push([kname.A(l.name), kname.newA(l.name), stats.a!, da]);
    if (o.gradientFactors) factors.push([kname.G(l.name), kname.newG(l.name), stats.g!, dg]);
    for (const [state, next, batch, d] of factors) {
      declare(g, state, dtype, [G, d, d], 'input');
      declare(g, next, dtype, [G, d, d], 'output', ema(e, state, batch, kname.scalar('beta'), kname.scalar('oneMinusBeta')));
    }
  }
  return tg;
}
