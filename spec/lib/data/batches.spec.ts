import { expect } from 'chai';
import { batches, batchesPerEpoch, epochPermutation, fromArrays, type Batch } from '../../../lib/data/index.js';

/** Dataset whose sample i is [i, i + 0.5, i + 0.25] with label i % 7. */
function indexed(n: number) {
  const x = new Float32Array(n * 3);
  for (let i = 0; i < n; i++) x.set([i, i + 0.5, i + 0.25], i * 3);
  return fromArrays('idx', x, [3], Array.from({ length: n }, (_, i) => i % 7));
}

/** Sample ids of a batch, checking its inputs and labels are consistent. */
function ids(b: Batch): number[] {
  const out: number[] = [];
  expect(b.inputs.length).to.equal(b.size * 3);
  for (let k = 0; k < b.size; k++) {
    const i = b.inputs[3 * k];
    expect(b.inputs[3 * k + 1]).to.equal(i + 0.5);
    expect(b.inputs[3 * k + 2]).to.equal(i + 0.25);
    expect(b.labels![k]).to.equal(BigInt(i % 7));
    out.push(i);
  }
  return out;
}

const order = (n: number, opts: Parameters<typeof batches>[1]) => [...batches(indexed(n), opts)].flatMap(ids);

describe('data/batches', () => {
  it('batchesPerEpoch', () => {
    expect(batchesPerEpoch(10, 3, false)).to.equal(4);
    expect(batchesPerEpoch(10, 3, true)).to.equal(3);
    expect(batchesPerEpoch(9, 3)).to.equal(3);
    expect(batchesPerEpoch(2, 5, true)).to.equal(0);
    expect(() => batchesPerEpoch(10, 0, false)).to.throw(/batchSize/);
  });

  it('covers every sample exactly once per epoch with shuffle', () => {
    const seen = order(103, { batchSize: 10, shuffle: true, seed: 42, epoch: 0 });
    expect(seen.length).to.equal(103);
    expect([...seen].sort((a, b) => a - b)).to.deep.equal(Array.from({ length: 103 }, (_, i) => i));
    expect(seen).to.not.deep.equal(Array.from({ length: 103 }, (_, i) => i));
  });

  it('same seed and epoch give the same order; another epoch or seed a different one', () => {
    const a = order(200, { batchSize: 16, shuffle: true, seed: 7, epoch: 3 });
    const b = order(200, { batchSize: 16, shuffle: true, seed: 7, epoch: 3 });
    const c = order(200, { batchSize: 16, shuffle: true, seed: 7, epoch: 4 });
    const d = order(200, { batchSize: 16, shuffle: true, seed: 8, epoch: 3 });
    expect(a).to.deep.equal(b);
    expect(a).to.not.deep.equal(c);
    expect(a).to.not.deep.equal(d);
    expect(c).to.not.deep.equal(d);
    // batch size does not change the order, only how it is cut
    expect(order(200, { batchSize: 7, shuffle: true, seed: 7, epoch: 3 })).to.deep.equal(a);
    // every epoch of 20 differs from every other
    const perms = new Set(Array.from({ length: 20 }, (_, e) => epochPermutation(50, 1, e).join(',')));
    expect(perms.size).to.equal(20);
  });

  it('without shuffle yields file order, with the last partial batch', () => {
    const bs = [...batches(indexed(10), { batchSize: 4, shuffle: false, seed: 1, epoch: 5 })];
    expect(bs.map((b) => b.size)).to.deep.equal([4, 4, 2]);
    expect(bs.map((b) => b.index)).to.deep.equal([0, 1, 2]);
    expect(bs.every((b) => b.epoch === 5)).to.equal(true);
    expect(bs.flatMap(ids)).to.deep.equal([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  });

  it('dropLast skips the short batch', () => {
    const bs = [...batches(indexed(10), { batchSize: 4, shuffle: true, seed: 1, epoch: 0, dropLast: true })];
    expect(bs.map((b) => b.size)).to.deep.equal([4, 4]);
    expect(new Set(bs.flatMap(ids)).size).to.equal(8);
  });

  it('from: the rest of an epoch, the same batches with their indices', () => {
    const opts = { batchSize: 3, shuffle: true, seed: 4, epoch: 2 };
    const all = [...batches(indexed(10), opts)];
    const rest = [...batches(indexed(10), { ...opts, from: 2 })];
    expect(rest.map((b) => [b.index, ids(b)])).to.deep.equal(all.slice(2).map((b) => [b.index, ids(b)]));
    expect([...batches(indexed(10), { ...opts, from: 4 })]).to.have.length(0);
    expect(() => [...batches(indexed(10), { ...opts, from: -1 })]).to.throw(/from must be an integer >= 0/);
  });

  it('copies into fresh buffers', () => {
    const ds = indexed(6);
    const [b] = batches(ds, { batchSize: 6, shuffle: false, seed: 0, epoch: 0 });
    expect(b.inputs.buffer).to.not.equal(ds.inputs.buffer);
    b.inputs[0] = 99;
    expect(ds.inputs[0]).to.equal(0);
  });

  it('works without labels', () => {
    const ds = fromArrays('u', new Float32Array(8), [2]);
    const bs = [...batches(ds, { batchSize: 3, shuffle: true, seed: 0, epoch: 0 })];
    expect(bs.map((b) => b.size)).to.deep.equal([3, 1]);
    expect(bs[0].labels).to.equal(undefined);
  });
});
