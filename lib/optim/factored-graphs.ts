// The graphs of KFAC and Shampoo (ALGORITHMS.md §7.4–7.5), built once per model:
//  - step: forward/backward, momentum, D = H_g·X·H_a with the current preconditioners, θ⁺;
//    Shampoo's step graph also refreshes its factors L ← βL + (1−β)·X_gX_gᵀ, R likewise with X_gᵀX_g
//    from the raw gradient X_g (with a statistics interval, under an If, so that the same graph
//    serves the steps between refreshes);
//  - KFAC statistics: a backward from targets sampled from the model (or the data's targets), the
//    EMAs of A = (1/M)ÃᵀÃ and G = (1/(M·T))Σ g gᵀ, inlined into KFAC's step graph so that both
//    backward passes share one forward (under the same If with a statistics interval);
//  - preconditioners: KFAC (F + √λ·I)⁻¹ per factor, Shampoo (F + ε·I)^(−1/4).
import {
  A, emitInverseRoot, emitPrecondition, emitRegularizedInverse, type DataType, type Layer, type onnx,
  type TrainingGraph, type TrainingGraphOptions,
} from '../../graph-tools/index.js';
import type { FactoredOptimizer } from './kfac.js';
import {
  buildFactorEmaGraph, buildPreconditionedStepGraph, declare, ema, gateStepOutputs, kernelGraph, kname, layerDims, weightDecayForm, type StepGraph,
} from './preconditioned-step.js';

type Spec = Omit<TrainingGraphOptions, 'capture'>;

/**
 * The step with the preconditioners fed in: Shampoo's with its factor EMAs (under the `statistics`
 * gate with a statistics interval), KFAC's without (buildKfacStepGraph adds its statistics pass).
 */
export function buildFactoredStepGraph(model: onnx.ModelProto, spec: Spec, opt: FactoredOptimizer): StepGraph {
  const step = buildPreconditionedStepGraph(model, spec, undefined, ({ g, e, layer: l, dtype, X, gradient, scalar }) => {
    const { G, dg, da } = layerDims(l);
    declare(g, kname.Hg(l.name), dtype, [G, dg, dg], 'input');
    declare(g, kname.Ha(l.name), dtype, [G, da, da], 'input');
    if (opt.name === 'shampoo') {
      const Xg = gradient();
      const left = e.op('MatMul', [Xg, e.op('Transpose', [Xg], [A.ints('perm', [0, 2, 1])])]);
      const right = e.op('MatMul', [e.op('Transpose', [Xg], [A.ints('perm', [0, 2, 1])]), Xg]);
      for (const [state, next, batch, d] of [[kname.G(l.name), kname.newG(l.name), left, dg], [kname.A(l.name), kname.newA(l.name), right, da]] as const) {
        declare(g, state, dtype, [G, d, d], 'input');
        declare(g, next, dtype, [G, d, d], 'output', ema(e, state, batch, scalar('beta'), scalar('oneMinusBeta')));
      }
    }
    return emitPrecondition(e, kname.Hg(l.name), X, kname.Ha(l.name));
  }, weightDecayForm(opt.options));
  return opt.name === 'shampoo' ? gatedFactors(step, opt) : step;
}

/**
 * With a statistics interval, the factor EMAs run only when the scalar input `statistics` is 1, so
 * that the steps between refreshes run the same session (and memory arena) at a plain step's cost.
 */
function gatedFactors(step: StepGraph, opt: FactoredOptimizer): StepGraph {
  if (opt.options.statInterval === 1) return step;
  gateStepOutputs(step, 'statistics', new Set(step.layers.flatMap((l) => [kname.newA(l.name), kname.newG(l.name)])));
  return { ...step, model: step.training.graph.toModel() };
}

/**
 * KFAC's step graph with its statistics pass inlined: the step's forward and backward, and the
 * pass's backward from sampled targets with the EMAs of A and G as outputs. The pass's copy of the
 * forward has the same inputs as the step's, so ORT's common-subexpression elimination runs the
 * forward once (as the authors' code reuses it). The direction uses the preconditioners fed in.
 */
export function buildKfacStepGraph(model: onnx.ModelProto, spec: Spec, opt: Extract<FactoredOptimizer, { name: 'kfac' }>): StepGraph {
  const step = buildFactoredStepGraph(model, spec, opt);
  const stats = buildKfacStatisticsGraph(model, spec, step.layers, opt.options.fisher);
  const g = step.training.graph;
  const declared = new Set(g.inputs.map((i) => i.name));
  for (const i of stats.graph.inputs) if (!declared.has(i.name)) declare(g, i.name, i.type.dtype, i.type.shape as number[], 'input');
  const rename = g.inline(stats.graph, new Map(stats.graph.inputs.map((i) => [i.name, i.name])), 'kfqn:statistics:');
  for (const l of step.layers) {
    const { G, dg, da } = layerDims(l);
    declare(g, kname.newA(l.name), step.dtype, [G, da, da], 'output', rename(kname.newA(l.name)));
    declare(g, kname.newG(l.name), step.dtype, [G, dg, dg], 'output', rename(kname.newG(l.name)));
  }
  return gatedFactors({ ...step, model: g.toModel() }, opt);
}

/** KFAC's statistics pass: the EMAs of A and G (no parameter gradients). */
export function buildKfacStatisticsGraph(model: onnx.ModelProto, spec: Spec, layers: Layer[], fisher: 'sampled' | 'empirical'): TrainingGraph {
  return buildFactorEmaGraph(model, spec, layers, { gradientFactors: true, sampleTargets: fisher === 'sampled' });
}

/** H_g, H_a from the factors G (or L) and A (or R). */
export function buildPreconditionerGraph(layers: Layer[], opt: FactoredOptimizer, dtype: DataType): onnx.ModelProto {
  const { g, e } = kernelGraph();
  for (const l of layers) {
    const { G, dg, da } = layerDims(l);
    for (const [factor, out, d] of [[kname.G(l.name), kname.Hg(l.name), dg], [kname.A(l.name), kname.Ha(l.name), da]] as const) {
      declare(g, factor, dtype, [G, d, d], 'input');
      const value = opt.name === 'kfac'
        ? emitRegularizedInverse(e, factor, Math.sqrt(opt.options.damping), d, dtype)
        : emitInverseRoot(e, factor, d, { root: 4, epsilon: opt.options.epsilon, iterations: opt.options.rootIterations, dtype });
      declare(g, out, dtype, [G, d, d], 'output', value);
    }
  }
  return g.toModel();
}
