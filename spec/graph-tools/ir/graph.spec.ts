// Graph.inline: a second graph appended with its values renamed, some bound to this graph's values
// (how the K-BFGS direction graph takes in its second pass at θ⁺), checked by running the result.
import { expect } from 'chai';
import { encodeModel, Graph, Emitter } from '../../../graph-tools/index.js';
import { createBackend } from '../../../lib/runtime/index.js';

describe('graph-tools/ir: Graph.inline', () => {
  it('renames the other graph\'s values with the prefix, binds its inputs, keeps empty optional inputs, and runs', async () => {
    // This graph: y = x + 1. The other: z = Clip(w · 2) with an initializer and an empty optional input.
    const g = new Graph(); g.opset = 13; const e = new Emitter(g);
    g.inputs.push({ name: 'x', type: { dtype: 'float32', shape: [3] } }); g.types.set('x', { dtype: 'float32', shape: [3] });
    const y = e.op('Add', ['x', e.constant(1, 'float32')]);
    const other = new Graph(); other.opset = 13; const o = new Emitter(other);
    other.inputs.push({ name: 'w', type: { dtype: 'float32', shape: [3] } }); other.types.set('w', { dtype: 'float32', shape: [3] });
    const two = other.addInitializer('two', { dtype: 'float32', dims: [], data: Float32Array.of(2) });
    const z = o.op('Clip', [o.op('Mul', ['w', two]), '', o.constant(5, 'float32')]);
    const rename = g.inline(other, new Map([['w', y]]), 'p2:');
    expect(rename('w')).to.equal(y);
    expect(rename(z)).to.equal(`p2:${z}`);
    expect(g.initializers.has(`p2:${two}`)).to.equal(true);
    expect(g.nodes.find((n) => n.opType === 'Clip')!.inputs[1]).to.equal('');
    g.outputs.push({ name: rename(z), type: { dtype: 'float32', shape: [3] } });
    const backend = await createBackend('cpu');
    const session = await backend.createSession(encodeModel(g.toModel()), { name: 'inlined' });
    const out = await session.run({ x: backend.tensor('float32', Float32Array.of(0, 1, 2), [3]) });
    expect(Array.from(out[rename(z)].data as Float32Array)).to.deep.equal([2, 4, 5]);
    await session.release();
  });
});
