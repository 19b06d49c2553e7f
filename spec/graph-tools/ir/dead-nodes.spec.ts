// removeDeadNodes (graph-tools/ir/dead-nodes.ts): nodes no graph output depends on go; an If's
// branches keep alive the outer values they read.
import { expect } from 'chai';
import * as ort from 'onnxruntime-node';
import { encodeModel, gateOutputs, Graph, removeDeadNodes } from '../../../graph-tools/index.js';
import { ModelBuilder } from '../../helpers/models.js';

describe('graph-tools/ir: removeDeadNodes', () => {
  it('drops the chains no output reads and keeps what the outputs need, with the same results', async () => {
    const b = new ModelBuilder(1, 13);
    const x = b.input('x', [3], [3]);
    const kept = b.node('Relu', [b.node('Abs', [x])]);
    const dead = b.node('Neg', [b.node('Exp', [x])]); // a pass's unwanted statistic
    const g = Graph.fromModel(b.model([kept, dead]));
    g.outputs = g.outputs.filter((o) => o.name === kept);
    const before = encodeModel(g.toModel());
    expect(removeDeadNodes(g)).to.equal(2);
    expect(g.nodes.map((n) => n.opType)).to.deep.equal(['Abs', 'Relu']);
    expect(removeDeadNodes(g), 'nothing left to remove').to.equal(0);
    const feeds = { x: new ort.Tensor('float32', Float32Array.from([-1, 0, 2]), [3]) };
    const [s0, s1] = await Promise.all([before, encodeModel(g.toModel())].map((m) => ort.InferenceSession.create(m)));
    expect(Array.from((await s1.run(feeds))[kept].data as Float32Array)).to.deep.equal(Array.from((await s0.run(feeds))[kept].data as Float32Array));
    await Promise.all([s0.release(), s1.release()]);
  });

  it('keeps the outer values an If\'s branch reads (no node input names them)', async () => {
    // z = exp(|x|) under an If; |x| is read only inside the branch.
    const b = new ModelBuilder(2, 13);
    const q = b.node('Abs', [b.input('x', [3], [3])]);
    const z = b.node('Exp', [q]);
    const g = Graph.fromModel(b.model([z, q]));
    g.inputs.push({ name: 'c', type: { dtype: 'float32', shape: [] } });
    const [condition] = g.add('Greater', ['c', g.add('Constant', [], [{ name: 'value_float', type: 1, f: 0.5 }])[0]]);
    gateOutputs(g, new Set([z]), condition);
    g.outputs = g.outputs.filter((o) => o.name === z);
    expect(g.nodes.at(-1)!.opType).to.equal('If');
    expect(removeDeadNodes(g), 'Abs lives through the branch').to.equal(0);
    const session = await ort.InferenceSession.create(encodeModel(g.toModel()));
    const out = await session.run({ x: new ort.Tensor('float32', Float32Array.from([-1, 0, 2]), [3]), c: new ort.Tensor('float32', Float32Array.from([1]), []) });
    expect(Array.from(out[z].data as Float32Array).map((v) => Number(v.toFixed(5)))).to.deep.equal([Math.E, 1, Math.exp(2)].map((v) => Number(v.toFixed(5))));
    await session.release();
  });
});
