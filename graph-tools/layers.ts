// Finds the trainable layers of an inference graph (Gemm, MatMul with an optional bias Add, Conv)
// and their Kronecker view (ALGORITHMS.md §1.1, §1.4): W̃ = [W | b] is d_g × d_a with d_g = outputs
// and d_a = inputs (+1 with a bias); for a convolution, per group, d_a = C_in/group·k_h·k_w (+1)
// and d_g = C_out/group. Every float initializer that is not such a weight or bias stays
// constant, and is reported with the reason.
import { Graph, GraphError, attrFloat, attrInt, type Node } from './ir/graph.js';

export type LayerKind = 'gemm' | 'matmul' | 'conv';

export interface Layer {
  /** The node that multiplies by the weight. */
  name: string;
  kind: LayerKind;
  weight: string;
  bias?: string;
  /** How the weight initializer is stored: [out, in] (Gemm transB=1, PyTorch, Conv's [C_out, C_in/group, k...]) or [in, out]. */
  weightLayout: 'out-in' | 'in-out';
  /** The layer's input activation a and its pre-activation h = W̃ã (the value the layer outputs). */
  input: string;
  preactivation: string;
  /** Per group: C_in/group·prod(kernel) for a Conv. */
  inFeatures: number;
  /** Per group: C_out/group for a Conv. */
  outFeatures: number;
  /** Kronecker factor sizes of each group's pair: A is d_a × d_a, G is d_g × d_g. */
  factors: { a: number; g: number };
  /** Conv groups, each its own factor pair (1 for Gemm and MatMul). */
  groups: number;
  /** Conv kernel spatial dims. */
  kernel?: number[];
  /** Gemm's alpha and beta: h = alpha·xW + beta·b. */
  alpha: number;
  beta: number;
}

export interface ConstantInfo { name: string; reason: string }
export interface UntiedAlias { parameter: string; source: string; node: string }

/** A BatchNormalization or LayerNormalization whose scale (and bias) train. */
export interface Normalization { name: string; kind: 'batchnorm' | 'layernorm'; scale: string; bias?: string }

export interface LayerReport {
  layers: Layer[];
  normalizations: Normalization[];
  /** Trainable parameter names, weights and biases (then normalization scales and biases), each once. */
  parameters: string[];
  constants: ConstantInfo[];
  /** Parameters an exporter aliased through Identity to one shared initializer, now untied. */
  untied: UntiedAlias[];
}

/**
 * Finds layers and unties Identity-aliased parameters in place: each Identity output that feeds a
 * weight or bias becomes an initializer of its own (a copy), so two layers never share a tensor
 * by accident of export (PyTorch merges equal initializers).
 */
export function findLayers(g: Graph): LayerReport {
  const untied: UntiedAlias[] = [];
  const producers = g.producers();
  const consumers = g.consumers();
  const graphOutputs = new Set(g.outputs.map((o) => o.name));

  // Resolves a value to a float initializer, possibly through an Identity alias.
  const paramSource = (v: string): string | undefined => {
    if (g.initializers.has(v)) return isFloat(g, v) ? v : undefined;
    const p = producers.get(v);
    if (p?.opType === 'Identity' && g.initializers.has(p.inputs[0]) && isFloat(g, p.inputs[0])) return v;
    return undefined;
  };
  const untie = (v: string) => {
    if (g.initializers.has(v)) return;
    const p = producers.get(v)!;
    const source = p.inputs[0];
    const t = g.initializers.get(source)!;
    g.addInitializer(v, { ...t, data: t.data.slice() }, true);
    g.nodes.splice(g.nodes.indexOf(p), 1);
    untied.push({ parameter: v, source, node: p.name });
  };

  const layers: Layer[] = [];
  const notLayer = new Map<string, string>();
  for (const node of [...g.nodes]) {
    if (node.opType === 'Gemm') {
      const w = paramSource(node.inputs[1]);
      if (!w) continue;
      if (attrInt(node, 'transA', 0) !== 0) { notLayer.set(w, `Gemm '${node.name}' has transA=1 (the activation must be the left operand)`); continue; }
      const transB = attrInt(node, 'transB', 0) === 1;
      const dims = g.initializers.get(g.initializers.has(w) ? w : producers.get(w)!.inputs[0])!.dims;
      if (dims.length !== 2) continue;
      const [inF, outF] = transB ? [dims[1], dims[0]] : [dims[0], dims[1]];
      let bias: string | undefined;
      const c = node.inputs[2] ? paramSource(node.inputs[2]) : undefined;
      if (c) {
        const cd = shapeOfParam(g, producers, c);
        if (isBiasShape(cd, outF)) bias = c;
        else notLayer.set(c, `Gemm '${node.name}' input C of shape [${cd}] is not a per-output bias`);
      }
      layers.push(makeLayer(node, 'gemm', w, bias, transB ? 'out-in' : 'in-out', node.inputs[0], node.outputs[0], inF, outF,
        attrFloat(node, 'alpha', 1), attrFloat(node, 'beta', 1)));
    } else if (node.opType === 'MatMul') {
      const w = paramSource(node.inputs[1]);
      if (!w) continue;
      const dims = shapeOfParam(g, producers, w);
      if (dims.length !== 2) { notLayer.set(w, `MatMul '${node.name}' weight has rank ${dims.length}, not 2`); continue; }
      const [inF, outF] = dims;
      let bias: string | undefined;
      let pre = node.outputs[0];
      const next = consumers.get(pre);
      if (next?.length === 1 && next[0].opType === 'Add' && !graphOutputs.has(pre)) {
        const add = next[0];
        const other = add.inputs[0] === pre ? add.inputs[1] : add.inputs[0];
        const b = paramSource(other);
        if (b && isBiasShape(shapeOfParam(g, producers, b), outF)) { bias = b; pre = add.outputs[0]; }
      }
      layers.push(makeLayer(node, 'matmul', w, bias, 'in-out', node.inputs[0], pre, inF, outF, 1, 1));
    } else if (node.opType === 'Conv') {
      const w = paramSource(node.inputs[1]);
      if (!w) continue;
      const dims = shapeOfParam(g, producers, w);
      const groups = attrInt(node, 'group', 1);
      const kernel = dims.slice(2);
      const inF = dims[1] * kernel.reduce((a, b) => a * b, 1);
      const outF = dims[0] / groups;
      let bias: string | undefined;
      const b = node.inputs[2] ? paramSource(node.inputs[2]) : undefined;
      if (b) {
        const bd = shapeOfParam(g, producers, b);
        if (bd.length === 1 && bd[0] === dims[0]) bias = b;
        else notLayer.set(b, `Conv '${node.name}' bias of shape [${bd}] is not [${dims[0]}]`);
      }
      layers.push({ ...makeLayer(node, 'conv', w, bias, 'out-in', node.inputs[0], node.outputs[0], inF, outF, 1, 1), groups, kernel });
    }
  }
  const normalizations: Normalization[] = [];
  for (const node of g.nodes) {
    if (node.opType === 'LayerNormalization') {
      const scale = paramSource(node.inputs[1]);
      const bias = node.inputs[2] ? paramSource(node.inputs[2]) : undefined;
      if (scale) normalizations.push({ name: node.name, kind: 'layernorm', scale, bias });
      continue;
    }
    if (node.opType !== 'BatchNormalization') continue;
    const scale = paramSource(node.inputs[1]);
    const bias = paramSource(node.inputs[2]);
    if (scale && bias) normalizations.push({ name: node.name, kind: 'batchnorm', scale, bias });
    for (const stat of node.inputs.slice(3, 5)) if (stat) notLayer.set(stat, `running statistic of BatchNormalization '${node.name}' (frozen: used as a constant)`);
  }
  // Untie after matching, so that matching saw the original graph.
  const parameters: string[] = [];
  const trainable = [...layers.flatMap((l) => [l.weight, l.bias]), ...normalizations.flatMap((n) => [n.scale, n.bias])];
  for (const p of trainable) if (p && !parameters.includes(p)) { untie(p); parameters.push(p); }
  const constants: ConstantInfo[] = [];
  for (const [name, t] of g.initializers) {
    if (parameters.includes(name)) continue;
    const reason = notLayer.get(name)
      ?? (t.dtype !== 'float32' && t.dtype !== 'float64' ? `${t.dtype} tensor` : 'not the weight or bias of a Gemm, MatMul or Conv layer, nor a BatchNormalization or LayerNormalization scale or bias');
    constants.push({ name, reason });
  }
  return { layers, normalizations, parameters, constants, untied };
}

/** Throws when the model has nothing kfqn can train. */
export function requireLayers(report: LayerReport, source: string): void {
  if (report.layers.length === 0) {
    throw new GraphError(`${source}: no trainable layer found. kfqn trains the weights of Gemm, MatMul(+Add bias) and Conv nodes whose weight is a float initializer`);
  }
}

function makeLayer(node: Node, kind: LayerKind, weight: string, bias: string | undefined, weightLayout: Layer['weightLayout'],
  input: string, preactivation: string, inFeatures: number, outFeatures: number, alpha: number, beta: number): Layer {
  return {
    name: node.name, kind, weight, bias, weightLayout, input, preactivation, inFeatures, outFeatures,
    factors: { a: inFeatures + (bias ? 1 : 0), g: outFeatures }, groups: 1, alpha, beta,
  };
}

function isFloat(g: Graph, name: string): boolean {
  const t = g.initializers.get(name)!;
  return t.dtype === 'float32' || t.dtype === 'float64';
}

function shapeOfParam(g: Graph, producers: Map<string, Node>, v: string): number[] {
  const t = g.initializers.get(v) ?? g.initializers.get(producers.get(v)!.inputs[0])!;
  return t.dims;
}

function isBiasShape(dims: number[], out: number): boolean {
  return dims.length >= 1 && dims[dims.length - 1] === out && dims.slice(0, -1).every((d) => d === 1);
}
