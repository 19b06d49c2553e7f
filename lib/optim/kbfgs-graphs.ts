// The three graphs of a K-BFGS or KF-QN step (ALGORITHMS.md §3.4, §4.2, §5), built once per model:
//  1. direction: forward/backward with the layer statistics; momentum; K-BFGS's A EMA, or KF-QN's
//     A-side pair s_a = H_a·ā, A_B·s_a from the minibatch; per Kronecker layer D = H_g·X·H_a of the
//     momentum gradient X = [m_W | m_b]; θ⁺ = θ − α·D (other parameters: θ − α·m);
//  2. curvature pass: forward/backward at θ⁺ on the same batch, only the means h̄⁺, ḡ⁺;
//  3. curvature update: s̄, ȳ EMAs, double damping, BFGS (or L-BFGS push) on H_g, Hessian-action
//     BFGS (or L-BFGS push) on H_a.
// Plus an initialisation graph H_a⁰ = (A + λ_A·I)⁻¹ and the statistics graph for A's warm start.
// KF-QN's convergent variant takes its A-side pair and means from an independent batch at θ
// (the action pass) instead of from graph 1.
import {
  A, buildTrainingGraph, type Emitter, emitBfgsInverseUpdate, emitDoubleDamping, emitHessianActionPair, emitLbfgsApply, emitLbfgsGamma, emitLbfgsPush, type LbfgsH0,
  emitPrecondition, emitRegularizedInverse, GraphError, type Graph, outName, prepareGraph, removeDeadNodes, requireLayers, statName, type DataType, type Layer, type onnx,
  type StatisticsRequest, type TrainingGraph, type TrainingGraphOptions,
} from '../../graph-tools/index.js';
import type { KroneckerOptimizer } from './kbfgs.js';
import {
  buildPreconditionedStepGraph, declare, emitOptimizerStep, gateStepOutputs, kernelGraph, kname, layerDims, weightDecayForm, type LayerContext, type StepGraph,
} from './preconditioned-step.js';

export { kname, layerDims };

/** Per layer: λ_A added to A (or A_B) and μ2 of the double damping (ALGORITHMS.md §3.1, §4.2.5). */
export type LayerDamping = ReadonlyMap<string, { lambdaA: number; mu2: number }>;

/**
 * λ_A = μ2 = √λ, or for conv layers with KF-QN's |T|-aware split λ_A = √(λ|T|), μ2 = √(λ/|T|), |T|
 * the output positions per sample, from the training graph's static shapes.
 */
export function layerDamping(layers: readonly Layer[], opt: KroneckerOptimizer, training?: TrainingGraph): LayerDamping {
  const lambda = opt.options.damping;
  return new Map(layers.map((l) => {
    if (opt.options.convDamping !== 'sqrt-t' || l.kind !== 'conv') return [l.name, { lambdaA: Math.sqrt(lambda), mu2: Math.sqrt(lambda) }];
    const shape = training?.emitter.shapeOf(l.preactivation) ?? [];
    const spatial = shape.slice(2);
    if (spatial.length === 0 || spatial.some((d) => typeof d !== 'number')) {
      throw new GraphError(`conv layer '${l.name}': convDamping 'sqrt-t' needs the static number of output positions, and the output is [${shape}]; use convDamping 'plain'`);
    }
    const T = (spatial as number[]).reduce((a, b) => a * b, 1);
    return [l.name, { lambdaA: Math.sqrt(lambda * T), mu2: Math.sqrt(lambda / T) }];
  }));
}

/** The values of graph 1 that come from the second pass at θ⁺ when it is fused in: `prefix` + the pass's own output name. */
export const SECOND_PASS = 'kfqn:pass2:';

/**
 * Graph 1: loss, θ⁺, new momentum, K-BFGS's new A or KF-QN's A-side pair, and the means, in one
 * run; with the pairs from the step's own batch, graph 2 (the second pass at θ⁺) is fused in too,
 * so that one session run and one memory arena serve both passes. With a curvature interval, all
 * the curvature's part runs only when the scalar input `curvature` is 1 (gateCurvature).
 */
export function buildDirectionGraph(model: onnx.ModelProto, spec: Omit<TrainingGraphOptions, 'capture'>, opt: KroneckerOptimizer): StepGraph & { secondPassFused: boolean } {
  // The convergent variant's means and A-side pair come from the action pass on another batch.
  if (opt.independentCurvatureBatch) return { ...buildPlainDirectionGraph(model, spec, opt), secondPassFused: false };
  const statistics: StatisticsRequest = opt.aSource === 'ema' ? { factors: true, means: true } : { means: true, hessianAction: true, actionVector: minibatchActionVector(opt) };
  const step = buildPreconditionedStepGraph(model, spec, statistics, kbfgsDirection(opt), weightDecayForm(opt.options));
  const g = step.training.graph;
  const pass = buildCurvaturePassGraph(model, spec);
  const declared = new Set(g.inputs.map((i) => i.name));
  const bind = new Map(pass.graph.inputs.map((i) => {
    const isParameter = pass.initialParameters.has(i.name);
    const next = kname.newParam(i.name);
    return [i.name, isParameter && g.outputs.some((o) => o.name === next) ? next : i.name] as const;
  }));
  for (const [input] of bind) if (!bind.get(input)!.startsWith('kfqn:new:') && !declared.has(input)) {
    throw new GraphError(`internal: the second pass's input '${input}' is not an input of the direction graph`);
  }
  const rename = g.inline(pass.graph, bind, SECOND_PASS);
  const wanted = new Set([pass.outputs.loss, ...[...pass.outputs.statistics.values()].flatMap((st) => [st.hbar!, st.gbar!])]);
  for (const o of pass.graph.outputs) if (wanted.has(o.name)) g.outputs.push({ name: rename(o.name), type: o.type });
  // The pass's other statistics (ā, its loss terms) would still run: ORT runs every node.
  removeDeadNodes(g);
  if (opt.options.curvatureInterval > 1) gateCurvature(step);
  return { ...step, model: g.toModel(), secondPassFused: true };
}

/**
 * With a curvature interval: everything only the curvature update needs (the statistics, K-BFGS's
 * A EMA, the second pass) runs under an If on the scalar input `curvature` (1 or 0), so that the
 * steps between updates run the same graph, in the same session and memory arena, at the cost of a
 * plain step. The loss, θ⁺, the momenta, the buffers and the direction norm are always computed.
 */
function gateCurvature(step: StepGraph): void {
  const tg = step.training;
  const always = new Set([tg.outputs.loss, kname.directionNorm, ...tg.buffers.flatMap((b) => (b.output ? [b.output] : []))]);
  const gated = tg.graph.outputs.map((o) => o.name).filter((n) => !always.has(n) && !n.startsWith(kname.newParam('')) && !n.startsWith(kname.newMomentum('')));
  gateStepOutputs(step, 'curvature', new Set(gated));
}

/**
 * Graph 1 without statistics or second pass: loss, θ⁺ = θ − α·H_g·X·H_a and the new momentum (the
 * convergent variant's graph 1, whose pairs come from the action and curvature passes).
 */
function buildPlainDirectionGraph(model: onnx.ModelProto, spec: Omit<TrainingGraphOptions, 'capture'>, opt: KroneckerOptimizer): StepGraph {
  return buildPreconditionedStepGraph(model, spec, undefined, kbfgsDirection(opt), weightDecayForm(opt.options));
}

/**
 * KF-QN's action pass at θ (the convergent variant's independent batch): the means h̄, ḡ, ā and the
 * A-side pair s_a = H_a·ā, A_B·s_a, without parameter gradients. With `seed`, v = ā itself: the
 * first pair of an L-BFGS H_a (and, with aInit 'factor', diag(A_B) for its H0).
 */
export function buildActionPassGraph(model: onnx.ModelProto, spec: Omit<TrainingGraphOptions, 'capture'>, opt: KroneckerOptimizer, seed = false): TrainingGraph {
  const activationDiagonal = seed && opt.options.aInit === 'factor';
  return buildTrainingGraph(model, {
    ...spec, parameterGradients: false, capture: { gradients: false, statistics: { means: true, hessianAction: true, actionVector: minibatchActionVector(opt, seed), activationDiagonal } },
  });
}

/**
 * The in-graph v of the Hessian action: s_a = H_a·ā (declaring H_a's state), or ā itself with
 * `seed`; also outputs s_a and the reference ā (with the homogeneous entry of opt.abarBias).
 */
function minibatchActionVector(opt: KroneckerOptimizer, seed = false) {
  return (e: Emitter, l: Layer, abar: string): string => {
    const { G, da } = layerDims(l);
    const dtype = e.dtypeOf(l.input);
    const ref = abarReference(e, l, abar, opt);
    const sa = seed ? ref : applyHa(e.g, e, l, opt, dtype, ref);
    declare(e.g, kname.aref(l.name), dtype, [G, da], 'output', ref);
    declare(e.g, kname.sa(l.name), dtype, [G, da], 'output', sa);
    return sa;
  };
}

/** ā [G, d_a] with its homogeneous entry as opt.abarBias asks: as is ('one'), or the mean of the other entries ('mean', the K-BFGS code). */
function abarReference(e: Emitter, l: Layer, abar: string, opt: KroneckerOptimizer): string {
  if (!l.bias || opt.options.abarBias !== 'mean') return abar;
  const { da } = layerDims(l);
  const weightPart = e.op('Slice', [abar, e.int64s([0]), e.int64s([da - 1]), e.int64s([1])]);
  return e.op('Concat', [weightPart, e.reduce('ReduceMean', weightPart, [1], true)], [A.int('axis', 1)]);
}

/** Declares H_a's state: a dense [G, d_a, d_a] inverse, or an L-BFGS memory [G, p_a, d_a]. */
function declareHa(g: Graph, l: Layer, opt: KroneckerOptimizer, dtype: DataType): void {
  const { G, da } = layerDims(l);
  if (opt.aHistory === undefined) return declare(g, kname.Ha(l.name), dtype, [G, da, da], 'input');
  declare(g, kname.Sa(l.name), dtype, [G, opt.aHistory, da], 'input');
  declare(g, kname.Ya(l.name), dtype, [G, opt.aHistory, da], 'input');
  declare(g, kname.rhoa(l.name), dtype, [G, opt.aHistory], 'input');
}

/**
 * Group i's L-BFGS H_a operator on the columns of V [d_a, k]; H0 = γI with γ = sᵀy/yᵀy of the
 * newest pair (§2.2's option), or with aInit 'factor' the diagonal state Ha0.
 */
function lbfgsHa(e: Emitter, l: Layer, opt: KroneckerOptimizer, dtype: DataType, i: number, V: string): string {
  const { G, da } = layerDims(l);
  const p = opt.aHistory!;
  const [S, Y, rho] = [kname.Sa(l.name), kname.Ya(l.name), kname.rhoa(l.name)].map((x, j) => group(e, x, i, G, j === 2 ? [p] : [p, da]));
  return emitLbfgsApply(e, V, S, Y, rho, lbfgsHa0(e, l, opt, dtype, i, S, Y, rho), { memory: p, dtype });
}

/** Group i's H0 of an L-BFGS H_a: γI from the newest pair, or with aInit 'factor' the diagonal state Ha0 [G, d_a] (declared here). */
function lbfgsHa0(e: Emitter, l: Layer, opt: KroneckerOptimizer, dtype: DataType, i: number, S: string, Y: string, rho: string): LbfgsH0 {
  const { G, da } = layerDims(l);
  if (opt.options.aInit !== 'factor') return emitLbfgsGamma(e, S, Y, rho, { memory: opt.aHistory, dtype });
  declare(e.g, kname.Ha0(l.name), dtype, [G, da], 'input');
  return { diagonal: e.op('Reshape', [group(e, kname.Ha0(l.name), i, G, [da]), e.int64s([da, 1])]) };
}

/** H_a·v for v [G, d_a], per group. */
function applyHa(g: Graph, e: Emitter, l: Layer, opt: KroneckerOptimizer, dtype: DataType, v: string): string {
  const { G, da } = layerDims(l);
  declareHa(g, l, opt, dtype);
  if (opt.aHistory === undefined) return e.op('Reshape', [e.op('MatMul', [kname.Ha(l.name), e.unsqueeze(v, [2])]), e.int64s([G, da])]);
  return stack(e, Array.from({ length: G }, (_, i) => e.op('Reshape', [lbfgsHa(e, l, opt, dtype, i, e.op('Reshape', [group(e, v, i, G, [da]), e.int64s([da, 1])])), e.int64s([1, da])])));
}

/**
 * Graph 1 without the model (the plug-in surface, lib/train/kbfgs-stepper.ts): the parameters,
 * their gradients (`kfqn:grad:<p>`) and each layer's batch factor (`kfqn:A:<layer>`) are inputs,
 * as `kfqn augment --capture gradients,a-factors` emits them.
 */
export function buildStandaloneDirectionGraph(model: onnx.ModelProto, opt: KroneckerOptimizer, source = 'model'): Omit<StepGraph, 'training'> & {
  /** The trainable parameters' dtypes and shapes, by initializer name. */
  parameters: ReadonlyMap<string, { dtype: DataType; dims: readonly number[] }>;
} {
  if (opt.aSource !== 'ema') throw new GraphError(`${source}: the plug-in stepper drives K-BFGS and K-BFGS(L); ${opt.name} needs the training graph (use the Trainer)`);
  const { report, graph: inference } = prepareGraph(model, source);
  requireLayers(report, source);
  const { g, e } = kernelGraph();
  const parameters = new Map(report.parameters.map((p) => {
    const t = inference.initializers.get(p)!;
    return [p, { dtype: t.dtype, dims: t.dims }] as const;
  }));
  const dtype = parameters.values().next().value!.dtype;
  for (const [p, t] of parameters) {
    declare(g, p, t.dtype, [...t.dims], 'input');
    declare(g, outName.grad(p), t.dtype, [...t.dims], 'input');
  }
  // A layer's batch factor is an input only when the layer reaches the loss (asked for then).
  const batchFactor = (l: Layer) => {
    declare(g, statName.a(l.name), dtype, [l.groups, l.factors.a, l.factors.a], 'input');
    return { a: statName.a(l.name) };
  };
  const { layers, plainParameters } = emitOptimizerStep(g, e, parameters, (p) => outName.grad(p), report.layers, batchFactor, kbfgsDirection(opt), weightDecayForm(opt.options));
  return { model: g.toModel(), layers, plainParameters, dtype, parameters };
}

/** Group i of a [G, ...] value: a Reshape when there is one group, a Gather otherwise. */
function group(e: Emitter, x: string, i: number, G: number, inner: number[]): string {
  return G === 1 ? e.op('Reshape', [x, e.int64s(inner)]) : e.op('Gather', [x, e.constant(i, 'int64')], [A.int('axis', 0)]);
}

/** [G, ...] from G values of shape [1, ...]. */
function stack(e: Emitter, xs: string[]): string {
  return xs.length === 1 ? xs[0] : e.op('Concat', xs, [A.int('axis', 0)]);
}

/** The per-layer part of graph 1: K-BFGS's A EMA, and D = H_g·X·H_a (each side dense or L-BFGS). */
function kbfgsDirection(opt: KroneckerOptimizer): (c: LayerContext) => string {
  return ({ g, e, layer: l, dtype, X, statistics, scalar }) => {
    const { G, dg, da } = layerDims(l);
    declareHa(g, l, opt, dtype);
    if (opt.aSource === 'ema') {
      declare(g, kname.A(l.name), dtype, [G, da, da], 'input');
      // A' = β_A·A + (1 − β_A)·A_batch  (β_A = 1 at the first step: A came from the warm start)
      const newA = e.op('Add', [e.op('Mul', [kname.A(l.name), scalar('beta')]), e.op('Mul', [statistics.a!, scalar('oneMinusBeta')])]);
      declare(g, kname.newA(l.name), dtype, [G, da, da], 'output', newA);
    }
    const denseHa = opt.aHistory === undefined;
    if (opt.history === undefined) declare(g, kname.Hg(l.name), dtype, [G, dg, dg], 'input');
    if (opt.history === undefined && denseHa) return emitPrecondition(e, kname.Hg(l.name), X, kname.Ha(l.name));
    let HgX: string;
    if (opt.history === undefined) HgX = e.op('MatMul', [kname.Hg(l.name), X]);
    else {
      const p = opt.history;
      declare(g, kname.S(l.name), dtype, [G, p, dg], 'input');
      declare(g, kname.Y(l.name), dtype, [G, p, dg], 'input');
      declare(g, kname.rho(l.name), dtype, [G, p], 'input');
      // The L-BFGS operator on the columns of each group's X.
      HgX = stack(e, Array.from({ length: G }, (_, i) => e.unsqueeze(emitLbfgsApply(e, group(e, X, i, G, [dg, da]),
        group(e, kname.S(l.name), i, G, [p, dg]), group(e, kname.Y(l.name), i, G, [p, dg]), group(e, kname.rho(l.name), i, G, [p]), lbfgsHg0(g, e, l, opt, dtype, i), { memory: p, dtype }), [0])));
    }
    if (denseHa) return e.op('MatMul', [HgX, kname.Ha(l.name)]); // all groups in one MatMul
    // (H_g X)·H_a = (H_a·(H_g X)ᵀ)ᵀ for a symmetric H_a: the L-BFGS operator on the rows.
    const T = (x: string) => e.op('Transpose', [x], [A.ints('perm', [1, 0])]);
    return stack(e, Array.from({ length: G }, (_, i) => e.unsqueeze(T(lbfgsHa(e, l, opt, dtype, i, T(group(e, HgX, i, G, [dg, da])))), [0])));
  };
}

/** Group i's H0 of an L-BFGS H_g: I, or with gInit 'factor' the diagonal state Hg0 [G, d_g] (declared here). */
function lbfgsHg0(g: Graph, e: Emitter, l: Layer, opt: KroneckerOptimizer, dtype: DataType, i: number): LbfgsH0 {
  if (opt.options.gInit !== 'factor') return 1;
  const { G, dg } = layerDims(l);
  declare(g, kname.Hg0(l.name), dtype, [G, dg], 'input');
  return { diagonal: e.op('Reshape', [group(e, kname.Hg0(l.name), i, G, [dg]), e.int64s([dg, 1])]) };
}

/** Graph 2: the means h̄⁺, ḡ⁺ at θ⁺ (no parameter gradients leave the graph). */
export function buildCurvaturePassGraph(model: onnx.ModelProto, spec: Omit<TrainingGraphOptions, 'capture'>): TrainingGraph {
  return buildTrainingGraph(model, { ...spec, parameterGradients: false, capture: { gradients: false, statistics: { means: true } } });
}

/**
 * Initialisation, per layer and group: H_a⁰ = (A + λ_A·I)⁻¹ (unless the H_a is an L-BFGS operator)
 * and, with gInit 'factor', H_g⁰ = (G + μ2·I)⁻¹, or for an L-BFGS H_g its diagonal H0 =
 * (diag(G) + μ2)⁻¹.
 */
export function buildInitGraph(layers: Layer[], damping: LayerDamping, dtype: DataType, sides: { a: boolean; g?: 'dense' | 'diagonal' } = { a: true }): onnx.ModelProto {
  const { g, e } = kernelGraph();
  for (const l of layers) {
    const { G, da, dg } = layerDims(l);
    const { lambdaA, mu2 } = damping.get(l.name)!;
    const inverses: [string, string, number, number][] = [];
    if (sides.a) inverses.push([kname.A(l.name), kname.Ha(l.name), lambdaA, da]);
    if (sides.g === 'dense') inverses.push([kname.G(l.name), kname.Hg(l.name), mu2, dg]);
    for (const [factor, inverse, lambda, d] of inverses) {
      declare(g, factor, dtype, [G, d, d], 'input');
      declare(g, inverse, dtype, [G, d, d], 'output', emitRegularizedInverse(e, factor, lambda, d, dtype));
    }
    if (sides.g === 'diagonal') {
      declare(g, kname.G(l.name), dtype, [G, dg, dg], 'input');
      // G's diagonal [G, d_g]: entries k·(d_g + 1) of each flattened group.
      const flat = e.op('Reshape', [kname.G(l.name), e.int64s([G, dg * dg])]);
      const diagonal = e.op('Gather', [flat, e.constant(Array.from({ length: dg }, (_, k) => k * (dg + 1)), 'int64', [dg])], [A.int('axis', 1)]);
      declare(g, kname.Hg0(l.name), dtype, [G, dg], 'output', e.op('Reciprocal', [e.op('Add', [diagonal, e.constant(mu2, dtype)])]));
    }
  }
  return g.toModel();
}

/** The values of one layer's state that the curvature update replaces. */
export function updatedState(l: Layer, opt: KroneckerOptimizer): string[] {
  const n = l.name;
  return [kname.sbar(n), kname.ybar(n),
    ...(opt.history === undefined ? [kname.Hg(n)] : [kname.S(n), kname.Y(n), kname.rho(n)]),
    ...(opt.aHistory === undefined ? [kname.Ha(n)] : [kname.Sa(n), kname.Ya(n), kname.rhoa(n)])];
}

/**
 * Graph 3: curvature updates of every layer from the two passes' means and the A-side pair (from
 * K-BFGS's A, or KF-QN's minibatch action fed as s_a, A_B·s_a and the reference ā).
 */
export function buildUpdateGraph(layers: Layer[], opt: KroneckerOptimizer, dtype: DataType, damping: LayerDamping): onnx.ModelProto {
  const { g, e } = kernelGraph();
  const o = opt.options;
  const k = (v: number) => e.constant(v, dtype);
  const ema = (old: string, x: string) => e.op('Add', [e.op('Mul', [old, k(o.pairDecay)]), e.op('Mul', [x, k(1 - o.pairDecay)])]);
  const grp = (x: string, i: number, G: number, inner: number[]) => group(e, x, i, G, inner);
  for (const l of layers) {
    const { G, dg, da } = layerDims(l);
    const n = l.name;
    const { lambdaA, mu2 } = damping.get(n)!;
    const aInputs = opt.aSource === 'ema' ? [[kname.A(n), [G, da, da]], [kname.abar(n), [G, da]]] : [[kname.sa(n), [G, da]], [statName.av(n), [G, da]], [kname.aref(n), [G, da]]];
    for (const [name, shape] of [[kname.sbar(n), [G, dg]], [kname.ybar(n), [G, dg]], [kname.hbar(n), [G, dg]], [kname.gbar(n), [G, dg]],
      [kname.hbar2(n), [G, dg]], [kname.gbar2(n), [G, dg]], ...aInputs] as [string, number[]][]) {
      declare(g, name, dtype, shape, 'input');
    }
    declareHa(g, l, opt, dtype);
    // s̄ ← β·s̄ + (1−β)(h̄⁺ − h̄), ȳ likewise with ḡ (ALGORITHMS.md §3.4)
    const sbar = ema(kname.sbar(n), e.op('Sub', [kname.hbar2(n), kname.hbar(n)]));
    const ybar = ema(kname.ybar(n), e.op('Sub', [kname.gbar2(n), kname.gbar(n)]));
    declare(g, kname.next(kname.sbar(n)), dtype, [G, dg], 'output', sbar);
    declare(g, kname.next(kname.ybar(n)), dtype, [G, dg], 'output', ybar);
    const powell: string[] = []; const acceptedG: string[] = []; const acceptedA: string[] = [];
    const next = new Map<string, string[]>(updatedState(l, opt).map((x) => [x, []]));
    const push = (name: string, value: string) => next.get(name)!.push(e.unsqueeze(value, [0]));
    const p = opt.history ?? 0;
    const pa = opt.aHistory ?? 0;
    if (opt.history === undefined) declare(g, kname.Hg(n), dtype, [G, dg, dg], 'input');
    else {
      declare(g, kname.S(n), dtype, [G, p, dg], 'input');
      declare(g, kname.Y(n), dtype, [G, p, dg], 'input');
      declare(g, kname.rho(n), dtype, [G, p], 'input');
    }
    // K-BFGS's A-side reference: ā with the abarBias homogeneous entry, per group.
    const abarRef = opt.aSource === 'ema' ? abarReference(e, l, kname.abar(n), opt) : kname.aref(n);
    for (let i = 0; i < G; i++) {
      const [S, Y, rho] = opt.history === undefined ? [] : [grp(kname.S(n), i, G, [p, dg]), grp(kname.Y(n), i, G, [p, dg]), grp(kname.rho(n), i, G, [p])];
      const s = grp(sbar, i, G, [dg]); const y = grp(ybar, i, G, [dg]); const r = grp(kname.gbar(n), i, G, [dg]);
      // Double damping needs H_g·ȳ: a product with the dense inverse, or the L-BFGS operator.
      const Hy = opt.history === undefined
        ? e.matvec(grp(kname.Hg(n), i, G, [dg, dg]), y)
        : e.op('Reshape', [emitLbfgsApply(e, e.op('Reshape', [y, e.int64s([dg, 1])]), S!, Y!, rho!, lbfgsHg0(g, e, l, opt, dtype, i), { memory: p, dtype }), e.int64s([dg])]);
      const dd = emitDoubleDamping(e, s, y, Hy, { mu1: o.powell, mu2, mode: o.dampingMode, dtype });
      powell.push(dd.powell);
      if (opt.history === undefined) {
        const u = emitBfgsInverseUpdate(e, grp(kname.Hg(n), i, G, [dg, dg]), dd.s, dd.y, r, { dtype });
        push(kname.Hg(n), u.H); acceptedG.push(u.accepted);
      } else {
        const u = emitLbfgsPush(e, S!, Y!, rho!, dd.s, dd.y, r, { memory: p, dtype });
        push(kname.S(n), u.S); push(kname.Y(n), u.Y); push(kname.rho(n), u.rho);
        acceptedG.push(u.accepted);
      }
      // The A-side Hessian-action pair: s_a = H_a·ā, y_a = (A + λ_A·I)·s_a (A: K-BFGS's EMA, or
      // the minibatch's A_B·s_a computed in the pass), reference ā.
      const ref = grp(abarRef, i, G, [da]);
      const pair = opt.aSource === 'ema'
        ? emitHessianActionPair(e, grp(kname.Ha(n), i, G, [da, da]), ref, grp(kname.A(n), i, G, [da, da]), lambdaA, dtype)
        : { s: grp(kname.sa(n), i, G, [da]), y: e.op('Add', [grp(statName.av(n), i, G, [da]), e.op('Mul', [grp(kname.sa(n), i, G, [da]), k(lambdaA)])]) };
      if (opt.aHistory === undefined) {
        const ua = emitBfgsInverseUpdate(e, grp(kname.Ha(n), i, G, [da, da]), pair.s, pair.y, ref, { dtype });
        push(kname.Ha(n), ua.H); acceptedA.push(ua.accepted);
      } else {
        const ua = emitLbfgsPush(e, grp(kname.Sa(n), i, G, [pa, da]), grp(kname.Ya(n), i, G, [pa, da]), grp(kname.rhoa(n), i, G, [pa]), pair.s, pair.y, ref, { memory: pa, dtype });
        push(kname.Sa(n), ua.S); push(kname.Ya(n), ua.Y); push(kname.rhoa(n), ua.rho); acceptedA.push(ua.accepted);
      }
    }
    const shapes: Record<string, number[]> = {
      [kname.Hg(n)]: [G, dg, dg], [kname.S(n)]: [G, p, dg], [kname.Y(n)]: [G, p, dg], [kname.rho(n)]: [G, p],
      [kname.Ha(n)]: [G, da, da], [kname.Sa(n)]: [G, pa, da], [kname.Ya(n)]: [G, pa, da], [kname.rhoa(n)]: [G, pa],
    };
    for (const [name, parts] of next) if (parts.length) declare(g, kname.next(name), dtype, shapes[name], 'output', stack(e, parts));
    declare(g, kname.powell(n), dtype, [], 'output', e.sum(powell));
    declare(g, kname.acceptedG(n), dtype, [], 'output', e.sum(acceptedG));
    declare(g, kname.acceptedA(n), dtype, [], 'output', e.sum(acceptedA));
  }
  return g.toModel();
}
