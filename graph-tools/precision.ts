// Rewrites a graph to compute in float64, for gradients checked against float64 references
// (kfqn grad, finite differences). ORT's CPU EP has float64 kernels for the MLP ops.
import { A, Graph, attrFloat, attrInt, attrTensor, type Node } from './ir/graph.js';
import { Emitter } from './ir/emitter.js';
import type { TensorData } from './onnx/index.js';

const FLOAT = 1;
const DOUBLE = 11;

export function toFloat64(g: Graph): void {
  for (const [name, t] of g.initializers) if (t.dtype === 'float32') g.initializers.set(name, widen(t));
  for (const v of [...g.inputs, ...g.outputs]) if (v.type.dtype === 'float32') v.type = { ...v.type, dtype: 'float64' };
  for (const [name, t] of g.types) if (t.dtype === 'float32') g.types.set(name, { ...t, dtype: 'float64' });
  for (const node of g.nodes) widenNode(node);
  decomposeFloat32Only(g);
}

/**
 * Rewrites activations that ORT implements for float32 only into ops with float64 kernels.
 * Backward rules refer to values, not nodes, so this can run on a finished training graph.
 */
function decomposeFloat32Only(g: Graph): void {
  const e = new Emitter(g);
  const original = g.nodes;
  g.nodes = [];
  for (const node of original) {
    const [x] = node.inputs;
    const [y] = node.outputs;
    const k = (v: number) => e.constant(v, 'float64');
    const positive = () => e.op('Greater', [x, k(0)]);
    /** αx + β, from the node's attributes (HardSwish has none: α = 1/6, β = ½). */
    const hardSigmoidArgument = (n: Node, alpha: number, beta: number, fixed = false) => e.op('Add', [
      e.op('Mul', [x, k(fixed ? alpha : attrFloat(n, 'alpha', alpha))]), k(fixed ? beta : attrFloat(n, 'beta', beta))]);
    switch (node.opType) {
      case 'LeakyRelu':
        g.add('Where', [positive(), x, e.op('Mul', [x, k(attrFloat(node, 'alpha', 0.01))])], [], [y]);
        break;
      case 'Elu':
        g.add('Where', [positive(), x, e.op('Mul', [k(attrFloat(node, 'alpha', 1)), e.op('Sub', [e.op('Exp', [x]), k(1)])])], [], [y]);
        break;
      case 'Softplus': // max(x,0) + log(1 + e^−|x|)
        g.add('Add', [e.op('Relu', [x]), e.op('Log', [e.op('Add', [k(1), e.op('Exp', [e.op('Neg', [e.op('Abs', [x])])])])])], [], [y]);
        break;
      case 'Selu': {
        const gamma = attrFloat(node, 'gamma', 1.0507009873554805);
        const negative = e.op('Mul', [k(gamma * attrFloat(node, 'alpha', 1.6732632423543772)), e.op('Sub', [e.op('Exp', [x]), k(1)])]);
        g.add('Where', [positive(), e.op('Mul', [x, k(gamma)]), negative], [], [y]);
        break;
      }
      case 'HardSigmoid':
        g.add('Max', [e.op('Min', [hardSigmoidArgument(node, 0.2, 0.5), k(1)]), k(0)], [], [y]);
        break;
      case 'HardSwish':
        g.add('Mul', [x, e.op('Max', [e.op('Min', [hardSigmoidArgument(node, 1 / 6, 0.5, true), k(1)]), k(0)])], [], [y]);
        break;
      case 'Softsign':
        g.add('Div', [x, e.op('Add', [k(1), e.op('Abs', [x])])], [], [y]);
        break;
      default:
        g.nodes.push(node);
    }
  }
}

function widen(t: TensorData): TensorData {
  return { dtype: 'float64', dims: t.dims, data: Float64Array.from(t.data as Float32Array) };
}

function widenNode(node: Node): void {
  const replace = (name: string, a: ReturnType<typeof A.int>) => {
    node.attrs = node.attrs.map((x) => (x.name === name ? a : x));
  };
  if (node.opType === 'Cast' && attrInt(node, 'to', 0) === FLOAT) replace('to', A.int('to', DOUBLE));
  if (node.opType === 'Constant' || node.opType === 'ConstantOfShape') {
    const t = attrTensor(node, 'value');
    if (t?.dtype === 'float32') replace('value', A.tensor('value', widen(t)));
    const vf = node.attrs.find((x) => x.name === 'value_float');
    if (vf) node.attrs = [A.tensor('value', { dtype: 'float64', dims: [], data: Float64Array.of(Number(vf.f)) })];
    const vfs = node.attrs.find((x) => x.name === 'value_floats');
    if (vfs) node.attrs = [A.tensor('value', { dtype: 'float64', dims: [vfs.floats!.length], data: Float64Array.from(vfs.floats!) })];
  }
}
