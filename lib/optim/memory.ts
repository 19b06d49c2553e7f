// Bytes of optimizer state (what an optimizer keeps between steps: momenta, factors, inverses,
// L-BFGS pairs, s̄ and ȳ), per Kronecker layer and for the other parameters, from the model's layer
// report and the optimizer's options (ALGORITHMS.md §6). Engines hold their state as float32
// tensors. A spec checks these figures against the tensors the engines actually allocate.
import { prepareGraph, type Layer, type onnx } from '../../graph-tools/index.js';
import type { ElementwiseOptimizer } from './optimizer.js';
import type { KroneckerOptimizer } from './kbfgs.js';
import type { FactoredOptimizer } from './kfac.js';

const FLOAT32 = 4;

export interface LayerStateReport {
  layer: string;
  kind: Layer['kind'];
  /** Bytes of the layer's weight and bias. */
  parameterBytes: number;
  /** Bytes of optimizer state for this layer, by part (momentum, A, H_a, H_g, pairs, ...). */
  parts: Record<string, number>;
  stateBytes: number;
}

export interface StateReport {
  optimizer: string;
  /** Bytes of every trainable parameter. */
  parameterBytes: number;
  /** Bytes of optimizer state in total: the layers' and the other parameters'. */
  stateBytes: number;
  layers: LayerStateReport[];
  /** Parameters outside Kronecker layers (normalization scales and biases, ...): their momentum or moments. */
  otherParameters: { parameterBytes: number; stateBytes: number };
}

/** The optimizer state `optimizer` keeps for `model`, assuming every layer reaches the loss. */
export function optimizerStateReport(model: onnx.ModelProto, optimizer: ElementwiseOptimizer | KroneckerOptimizer | FactoredOptimizer, source = 'model'): StateReport {
  const { graph, report } = prepareGraph(model, source);
  const bytesOf = (p: string) => { const t = graph.initializers.get(p)!; return t.data.length * (t.dtype === 'float64' ? 8 : 4); };
  const countOf = (p: string) => graph.initializers.get(p)!.data.length;
  // First-order methods keep `stateNames` tensors shaped like each parameter; the others a momentum.
  const perParameter = optimizer.kind === 'elementwise' ? optimizer.stateNames.length : 1;
  const inLayers = new Set<string>();
  const layers = report.layers.map((l): LayerStateReport => {
    const params = [l.weight, ...(l.bias ? [l.bias] : [])];
    params.forEach((p) => inLayers.add(p));
    const values = params.reduce((n, p) => n + countOf(p), 0);
    const moments = optimizer.kind === 'elementwise' ? optimizer.stateNames.join('+') : 'momentum';
    const parts: Record<string, number> = perParameter ? { [moments]: perParameter * values * FLOAT32 } : {};
    if (optimizer.kind !== 'elementwise') Object.assign(parts, curvatureParts(l, optimizer));
    return { layer: l.name, kind: l.kind, parameterBytes: params.reduce((n, p) => n + bytesOf(p), 0), parts, stateBytes: Object.values(parts).reduce((a, b) => a + b, 0) };
  });
  const others = report.parameters.filter((p) => !inLayers.has(p));
  const otherParameters = {
    parameterBytes: others.reduce((n, p) => n + bytesOf(p), 0),
    stateBytes: others.reduce((n, p) => n + perParameter * countOf(p) * FLOAT32, 0),
  };
  return {
    optimizer: optimizer.name,
    parameterBytes: report.parameters.reduce((n, p) => n + bytesOf(p), 0),
    stateBytes: layers.reduce((n, l) => n + l.stateBytes, 0) + otherParameters.stateBytes,
    layers, otherParameters,
  };
}

/** Bytes of a layer's curvature state, by part (§6's persistent memory column, per group). */
function curvatureParts(l: Layer, o: KroneckerOptimizer | FactoredOptimizer): Record<string, number> {
  const G = l.groups; const da = l.factors.a; const dg = l.factors.g;
  const bytes = (floats: number) => G * floats * FLOAT32;
  if (o.kind === 'factored') {
    // KFAC's A and G with their damped inverses; Shampoo's R and L with their inverse fourth roots.
    return { A: bytes(da * da), G: bytes(dg * dg), Ha: bytes(da * da), Hg: bytes(dg * dg) };
  }
  const parts: Record<string, number> = {};
  if (o.aSource === 'ema') parts.A = bytes(da * da);
  if (o.aHistory === undefined) parts.Ha = bytes(da * da);
  else parts.Ha_pairs = bytes(o.aHistory * (2 * da + 1));
  if (o.aHistory !== undefined && o.options.aInit === 'factor') parts.Ha0 = bytes(da);
  if (o.history === undefined) parts.Hg = bytes(dg * dg);
  else parts.Hg_pairs = bytes(o.history * (2 * dg + 1));
  if (o.history !== undefined && o.options.gInit === 'factor') parts.Hg0 = bytes(dg);
  parts.sbar_ybar = bytes(2 * dg);
  return parts;
}
