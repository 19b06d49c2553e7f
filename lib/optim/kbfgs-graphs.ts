// The three graphs of a K-BFGS step (ALGORITHMS.md §3.4), built once per model:
//  1. direction: forward/backward with the layer statistics; momentum; the A EMA; per Kronecker
//     layer D = H_g·X·H_a of the momentum gradient X = [m_W | m_b]; θ⁺ = θ − α·D (other
//     parameters: θ − α·m);
//  2. curvature pass: forward/backward at θ⁺ on the same batch, only the means h̄⁺, ḡ⁺;
//  3. curvature update: s̄, ȳ EMAs, double damping, BFGS (or L-BFGS push) on H_g, Hessian-action
//     BFGS on H_a.
// Plus an initialisation graph H_a⁰ = (A + λ_A·I)⁻¹ and the statistics graph for A's warm start.
import {
  A, buildTrainingGraph, type Emitter, emitBfgsInverseUpdate, emitDoubleDamping, emitLbfgsApply, emitLbfgsPush, emitPrecondition,
  emitRegularizedInverse, outName, prepareGraph, requireLayers, statName, type DataType, type Layer, type onnx, type TrainingGraph,
  type TrainingGraphOptions,
} from '../../graph-tools/index.js';
import type { KroneckerOptimizer } from './kbfgs.js';
import { buildPreconditionedStepGraph, declare, emitOptimizerStep, kernelGraph, kname, layerDims, type LayerContext, type StepGraph } from './preconditioned-step.js';

export { kname, layerDims };

/** Graph 1: loss, θ⁺, new momentum, new A and the means, in one run. */
export function buildDirectionGraph(model: onnx.ModelProto, spec: Omit<TrainingGraphOptions, 'capture'>, opt: KroneckerOptimizer): StepGraph {
  return buildPreconditionedStepGraph(model, spec, { factors: true, means: true }, kbfgsDirection(opt, spec.source));
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
  const { layers, plainParameters } = emitOptimizerStep(g, e, parameters, (p) => outName.grad(p), report.layers, batchFactor, kbfgsDirection(opt, source));
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

/** K-BFGS's per-layer part of graph 1: the A EMA and D = H_g·X·H_a (dense or L-BFGS H_g). */
function kbfgsDirection(opt: KroneckerOptimizer, source = 'model'): (c: LayerContext) => string {
  return ({ g, e, layer: l, dtype, X, statistics, scalar }) => {
    const { G, dg, da } = layerDims(l);
    declare(g, kname.A(l.name), dtype, [G, da, da], 'input');
    declare(g, kname.Ha(l.name), dtype, [G, da, da], 'input');
    // A' = β_A·A + (1 − β_A)·A_batch  (β_A = 1 at the first step: A came from the warm start)
    const newA = e.op('Add', [e.op('Mul', [kname.A(l.name), scalar('beta')]), e.op('Mul', [statistics.a!, scalar('oneMinusBeta')])]);
    declare(g, kname.newA(l.name), dtype, [G, da, da], 'output', newA);
    if (opt.history === undefined) {
      declare(g, kname.Hg(l.name), dtype, [G, dg, dg], 'input');
      return emitPrecondition(e, kname.Hg(l.name), X, kname.Ha(l.name));
    }
    const p = opt.history;
    declare(g, kname.S(l.name), dtype, [G, p, dg], 'input');
    declare(g, kname.Y(l.name), dtype, [G, p, dg], 'input');
    declare(g, kname.rho(l.name), dtype, [G, p], 'input');
    // The L-BFGS operator on the columns of each group's X, then ·H_a (all groups in one MatMul).
    const HgX = Array.from({ length: G }, (_, i) => e.unsqueeze(emitLbfgsApply(e, group(e, X, i, G, [dg, da]),
      group(e, kname.S(l.name), i, G, [p, dg]), group(e, kname.Y(l.name), i, G, [p, dg]), group(e, kname.rho(l.name), i, G, [p]), 1, { memory: p, dtype }), [0]));
    return e.op('MatMul', [stack(e, HgX), kname.Ha(l.name)]);
  };
}

/** Graph 2: the means h̄⁺, ḡ⁺ at θ⁺ (no parameter gradients leave the graph). */
export function buildCurvaturePassGraph(model: onnx.ModelProto, spec: Omit<TrainingGraphOptions, 'capture'>): TrainingGraph {
  return buildTrainingGraph(model, { ...spec, parameterGradients: false, capture: { gradients: false, statistics: { means: true } } });
}

/** Initialisation: H_a⁰ = (A + λ_A·I)⁻¹ per layer and group. */
export function buildInitGraph(layers: Layer[], lambdaA: number, dtype: DataType): onnx.ModelProto {
  const { g, e } = kernelGraph();
  for (const l of layers) {
    const { G, da } = layerDims(l);
    declare(g, kname.A(l.name), dtype, [G, da, da], 'input');
    declare(g, kname.Ha(l.name), dtype, [G, da, da], 'output', emitRegularizedInverse(e, kname.A(l.name), lambdaA, da, dtype));
  }
  return g.toModel();
}

/** Graph 3: curvature updates of every layer from the two passes' means. */
export function buildUpdateGraph(layers: Layer[], opt: KroneckerOptimizer, dtype: DataType): onnx.ModelProto {
  const { g, e } = kernelGraph();
  const o = opt.options;
  const lambdaA = Math.sqrt(o.damping);
  const k = (v: number) => e.constant(v, dtype);
  const ema = (old: string, x: string) => e.op('Add', [e.op('Mul', [old, k(o.pairDecay)]), e.op('Mul', [x, k(1 - o.pairDecay)])]);
  const grp = (x: string, i: number, G: number, inner: number[]) => group(e, x, i, G, inner);
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
    const newS: string[] = []; const newY: string[] = []; const newRho: string[] = [];
    const p = opt.history ?? 0;
    if (opt.history === undefined) declare(g, kname.Hg(n), dtype, [G, dg, dg], 'input');
    else {
      declare(g, kname.S(n), dtype, [G, p, dg], 'input');
      declare(g, kname.Y(n), dtype, [G, p, dg], 'input');
      declare(g, kname.rho(n), dtype, [G, p], 'input');
    }
    for (let i = 0; i < G; i++) {
      const [S, Y, rho] = opt.history === undefined ? [] : [grp(kname.S(n), i, G, [p, dg]), grp(kname.Y(n), i, G, [p, dg]), grp(kname.rho(n), i, G, [p])];
      const s = grp(sbar, i, G, [dg]); const y = grp(ybar, i, G, [dg]); const r = grp(kname.gbar(n), i, G, [dg]);
      // Double damping needs H_g·ȳ: a product with the dense inverse, or the L-BFGS operator.
      const Hy = opt.history === undefined
        ? e.op('MatMul', [grp(kname.Hg(n), i, G, [dg, dg]), y])
        : e.op('Reshape', [emitLbfgsApply(e, e.op('Reshape', [y, e.int64s([dg, 1])]), S!, Y!, rho!, 1, { memory: p, dtype }), e.int64s([dg])]);
      const dd = emitDoubleDamping(e, s, y, Hy, { mu1: o.powell, mu2: Math.sqrt(o.damping), mode: o.dampingMode, dtype });
      powell.push(dd.powell);
      if (opt.history === undefined) {
        const u = emitBfgsInverseUpdate(e, grp(kname.Hg(n), i, G, [dg, dg]), dd.s, dd.y, r, { dtype });
        newHg.push(e.unsqueeze(u.H, [0])); acceptedG.push(u.accepted);
      } else {
        const u = emitLbfgsPush(e, S!, Y!, rho!, dd.s, dd.y, r, { memory: p, dtype });
        newS.push(e.unsqueeze(u.S, [0])); newY.push(e.unsqueeze(u.Y, [0])); newRho.push(e.unsqueeze(u.rho, [0]));
        acceptedG.push(u.accepted);
      }
      // Hessian-action BFGS on H_a: s_a = H_a·ā, y_a = (A + λ_A·I)·s_a, reference ā.
      const Ha = grp(kname.Ha(n), i, G, [da, da]);
      // ā's homogeneous entry: the authors' code uses the mean of the other entries (abarBias 'mean').
      const abarBatch = grp(kname.abar(n), i, G, [da]);
      const abar = l.bias && o.abarBias === 'mean'
        ? e.op('Concat', [e.op('Slice', [abarBatch, e.int64s([0]), e.int64s([da - 1])]),
          e.reduce('ReduceMean', e.op('Slice', [abarBatch, e.int64s([0]), e.int64s([da - 1])]), [0], true)], [A.int('axis', 0)])
        : abarBatch;
      const sa = e.op('MatMul', [Ha, abar]);
      const ya = e.op('Add', [e.op('MatMul', [grp(kname.A(n), i, G, [da, da]), sa]), e.op('Mul', [sa, k(lambdaA)])]);
      const ua = emitBfgsInverseUpdate(e, Ha, sa, ya, abar, { dtype });
      newHa.push(e.unsqueeze(ua.H, [0])); acceptedA.push(ua.accepted);
    }
    const all = (xs: string[]) => stack(e, xs);
    const total = (xs: string[]) => e.sum(xs);
    if (opt.history === undefined) declare(g, kname.next(kname.Hg(n)), dtype, [G, dg, dg], 'output', all(newHg));
    else {
      declare(g, kname.next(kname.S(n)), dtype, [G, p, dg], 'output', all(newS));
      declare(g, kname.next(kname.Y(n)), dtype, [G, p, dg], 'output', all(newY));
      declare(g, kname.next(kname.rho(n)), dtype, [G, p], 'output', all(newRho));
    }
    declare(g, kname.next(kname.Ha(n)), dtype, [G, da, da], 'output', all(newHa));
    declare(g, kname.powell(n), dtype, [], 'output', total(powell));
    declare(g, kname.acceptedG(n), dtype, [], 'output', total(acceptedG));
    declare(g, kname.acceptedA(n), dtype, [], 'output', total(acceptedA));
  }
  return g.toModel();
}
