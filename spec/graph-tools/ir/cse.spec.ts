// mergeCommonSubexpressions (graph-tools/ir/cse.ts): duplicate nodes go, their consumers read the
// first copy; random draws and graph outputs stay.
import { expect } from 'chai';
import * as ort from 'onnxruntime-node';
import { A, encodeModel, Graph, mergeCommonSubexpressions } from '../../../graph-tools/index.js';
import { ModelBuilder } from '../../helpers/models.js';

describe('graph-tools/ir: mergeCommonSubexpressions', () => {
  it('merges equal nodes (and what then becomes equal), keeps random draws, attributes that differ and graph outputs apart', async () => {
    const b = new ModelBuilder(1, 13);
    const x = b.input('x', [4], [4]);
    // Two copies of relu(exp(x)·2), two LeakyRelus with different alphas, two random draws.
    const [e1, e2] = [b.node('Exp', [x]), b.node('Exp', [x])];
    const two = b.init('two', [1], [2]);
    const [m1, m2] = [b.node('Mul', [e1, two]), b.node('Mul', [e2, two])];
    const sum = b.node('Add', [b.node('Relu', [m1]), b.node('Relu', [m2])]);
    const l1 = b.node('LeakyRelu', [x], [A.float('alpha', 0.1)]);
    const l2 = b.node('LeakyRelu', [x], [A.float('alpha', 0.2)]);
    const r1 = b.node('RandomUniformLike', [x], [A.float('seed', 1)]);
    const r2 = b.node('RandomUniformLike', [x], [A.float('seed', 1)]);
    // Neg(x) twice, the second a graph output itself.
    const absNeg = b.node('Abs', [b.node('Neg', [x])]);
    const neg2 = b.node('Neg', [x]);
    const g = Graph.fromModel(b.model([sum, l1, l2, absNeg, neg2, b.node('Sub', [r1, r2])]));
    const before = encodeModel(g.toModel());
    expect(mergeCommonSubexpressions(g), 'the second Exp, then Mul, then Relu').to.equal(3);
    for (const op of ['Exp', 'Mul', 'Relu']) expect(g.nodes.filter((n) => n.opType === op), op).to.have.length(1);
    expect(g.nodes.filter((n) => n.opType === 'Neg'), 'a graph output keeps its node').to.have.length(2);
    expect(g.nodes.filter((n) => n.opType === 'LeakyRelu')).to.have.length(2);
    // (ORT seeds each copy alike, so only the graph can tell two draws from one.)
    expect(g.nodes.filter((n) => n.opType === 'RandomUniformLike'), 'random draws').to.have.length(2);
    const feeds = { x: new ort.Tensor('float32', Float32Array.from([-1, 0, 0.5, 2]), [4]) };
    const [s0, s1] = await Promise.all([before, encodeModel(g.toModel())].map((m) => ort.InferenceSession.create(m)));
    const [o0, o1] = [await s0.run(feeds), await s1.run(feeds)];
    for (const name of [sum, l1, l2, absNeg, neg2]) expect(Array.from(o1[name].data as Float32Array), name).to.deep.equal(Array.from(o0[name].data as Float32Array));
    await Promise.all([s0.release(), s1.release()]);
  });
});
