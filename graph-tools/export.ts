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
    const i = byName.get(name);
    if (i !== undefined) {
      const old = tensorFromProto(inits[i]);
      checkSame(old, value, name, source);
      inits[i] = tensorToProto(name, { ...value, dtype: old.dtype, data: old.dtype === value.dtype ? value.data : convert(value, old.dtype) });
      continue;
    }
    const alias = nodes.findIndex((n) => n.opType === 'Identity' && n.output?.[0] === name);
    if (alias < 0) throw new GraphError(`${source}: parameter '${name}' is neither an initializer nor an Identity alias of one`);
    const srcIndex = byName.get(nodes[alias].input![0]);
    if (srcIndex === undefined) throw new GraphError(`${source}: Identity '${nodes[alias].name}' does not read an initializer`);
    const src = tensorFromProto(inits[srcIndex]);
    checkSame(src, value, name, source);
    nodes.splice(alias, 1);
    inits.push(onnx.TensorProto.create(tensorToProto(name, { ...value, dtype: src.dtype, data: convert(value, src.dtype) })));
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
