// gateOutputs (graph-tools/ir/conditional.ts): outputs computed only when a condition holds, by an
// If whose then-branch holds the nodes that only they need, run through ONNX Runtime.
import { expect } from 'chai';
import * as ort from 'onnxruntime-node';
import { encodeModel, gateOutputs, Graph } from '../../../graph-tools/index.js';
import { ModelBuilder } from '../../helpers/models.js';

describe('graph-tools/ir: gateOutputs', () => {
  // q = |x| (also read by y), y = relu(q), z = exp(y), w = -z; gated: z and w (their own nodes) and
  // q (computed for y anyway, so it stays ungated).
  function gatedModel() {
    const b = new ModelBuilder(1, 13);
    const q = b.node('Abs', [b.input('x', [3], [3])]);
    const y = b.node('Relu', [q]);
    const z = b.node('Exp', [y]);
    const w = b.node('Neg', [z]);
    const g = Graph.fromModel(b.model([y, z, q, w]));
    g.inputs.push({ name: 'c', type: { dtype: 'float32', shape: [] } });
    const [condition] = g.add('Greater', ['c', g.add('Constant', [], [{ name: 'value_float', type: 1, f: 0.5 }])[0]]);
    const moved = gateOutputs(g, new Set([z, q, w]), condition);
    return { g, moved, names: { y, z, q, w } };
  }

  it('moves only the nodes no ungated output needs, and keeps the outputs\' names and element types', () => {
    const { g, moved, names } = gatedModel();
    expect(moved, 'Exp and Neg move').to.equal(2);
    expect(g.nodes.map((n) => n.opType)).to.deep.equal(['Abs', 'Relu', 'Constant', 'Greater', 'If']);
    expect(g.nodes.at(-1)!.outputs).to.deep.equal([names.z, names.w]);
    expect(g.outputs.map((o) => o.name)).to.deep.equal([names.y, names.z, names.q, names.w]);
    expect(g.outputs.map((o) => o.type.dtype)).to.deep.equal(['float32', 'float32', 'float32', 'float32']);
    expect([g.outputs[1].type.shape, g.outputs[3].type.shape], 'the gated outputs\' shapes differ by branch').to.deep.equal([undefined, undefined]);
  });

  it('computes the gated outputs when the condition holds, scalar zeros when not, the others always', async () => {
    const { g, names } = gatedModel();
    const session = await ort.InferenceSession.create(encodeModel(g.toModel()));
    const x = new ort.Tensor('float32', Float32Array.from([-1, 0.5, -2]), [3]);
    try {
      const on = await session.run({ x, c: new ort.Tensor('float32', Float32Array.of(1), []) });
      const off = await session.run({ x, c: new ort.Tensor('float32', Float32Array.of(0), []) });
      for (const r of [on, off]) expect(Array.from(r[names.y].data as Float32Array)).to.deep.equal([1, 0.5, 2]);
      for (const r of [on, off]) expect(Array.from(r[names.q].data as Float32Array)).to.deep.equal([1, 0.5, 2]);
      Array.from(on[names.z].data as Float32Array).forEach((v, i) => expect(v).to.be.closeTo(Math.exp([1, 0.5, 2][i]), 1e-6));
      Array.from(on[names.w].data as Float32Array).forEach((v, i) => expect(v).to.be.closeTo(-Math.exp([1, 0.5, 2][i]), 1e-6));
      for (const n of [names.z, names.w]) {
        expect(off[n].dims, n).to.deep.equal([]);
        expect(Array.from(off[n].data as Float32Array), n).to.deep.equal([0]);
      }
    } finally {
      await session.release();
    }
  });

  it('refuses a gated name that is not an output', () => {
    const b = new ModelBuilder(1, 13);
    const g = Graph.fromModel(b.model(b.node('Relu', [b.input('x', [2], [2])])));
    expect(() => gateOutputs(g, new Set(['nope']), 'x')).to.throw(/nope not outputs of the graph/);
  });
});
