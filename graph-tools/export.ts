// Writes trained parameters back into the user's own inference model: same graph, same names.
import { GraphError } from './ir/graph.js';
import { encodeModel, onnx, tensorFromProto, tensorToProto, type TensorData } from './onnx/index.js';

/**
 * Returns a copy of `model` whose parameters hold `params`. A parameter that the exporter had
 * aliased through an Identity node (and kfqn untied) becomes an initializer of its own, replacing
 * that Identity node.
 */
export function withTrainedParameters(model: onnx.IModelProto, params: Map<string, TensorData>, source = 'model'): onnx.ModelProto {
  const copy = onnx.ModelProto.decode(encodeModel(model));
  const g = copy.graph!;
  g.initializer ??= [];
  g.node ??= [];
  const nodes = g.node;
  const inits = g.initializer;
  const byName = new Map(inits.map((t, i) => [t.name, i] as const));
  for (const [name, value] of params) {
    const own = byName.get(name);
    const alias = own === undefined ? nodes.findIndex((n) => n.opType === 'Identity' && n.output?.[0] === name) : -1;
    if (own === undefined && alias < 0) throw new GraphError(`${source}: parameter '${name}' is neither an initializer nor an Identity alias of one`);
    // The tensor whose dtype and shape the trained value must keep: its own, or the aliased one.
    const templateIndex = own ?? byName.get(nodes[alias].input![0]);
    if (templateIndex === undefined) throw new GraphError(`${source}: Identity '${nodes[alias].name}' does not read an initializer`);
    const template = tensorFromProto(inits[templateIndex]);
    checkSame(template, value, name, source);
    const trained = tensorToProto(name, { dtype: template.dtype, dims: template.dims, data: convert(value, template.dtype) });
    if (own !== undefined) inits[own] = trained;
    else { nodes.splice(alias, 1); inits.push(trained); }
  }
  return copy;
}

function checkSame(old: TensorData, value: TensorData, name: string, source: string): void {
  if (old.dims.join(',') !== value.dims.join(',')) {
    throw new GraphError(`${source}: trained parameter '${name}' has shape [${value.dims}], the model's has [${old.dims}]`);
  }
}

function convert(t: TensorData, dtype: TensorData['dtype']): TensorData['data'] {
  if (t.dtype === dtype) return t.data;
  if (dtype === 'float32') return Float32Array.from(t.data as Float64Array);
  if (dtype === 'float64') return Float64Array.from(t.data as Float32Array);
  throw new GraphError(`cannot write a ${t.dtype} parameter into a ${dtype} initializer`);
}
