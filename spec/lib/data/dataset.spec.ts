import { expect } from 'chai';
import { fromArrays, idxImagesAndLabels, limit, parseIdx, split } from '../../../lib/data/index.js';
import { idxBytes } from './helpers.js';

describe('data/dataset', () => {
  describe('parseIdx', () => {
    it('parses uint8 images with big-endian dims', () => {
      // dims chosen > 255 in one header to check the big-endian uint32 decoding
      const big = parseIdx(idxBytes(0x08, [1, 300], new Array(300).fill(7)), 'big');
      expect(big.dims).to.deep.equal([1, 300]);
      expect(big.data.length).to.equal(300);
      const pix = Array.from({ length: 2 * 2 * 3 }, (_, i) => i * 20);
      const bytes = idxBytes(0x08, [2, 2, 3], pix);
      expect([...bytes.subarray(0, 8)]).to.deep.equal([0, 0, 8, 3, 0, 0, 0, 2]);
      const r = parseIdx(bytes, 'imgs');
      expect(r.dims).to.deep.equal([2, 2, 3]);
      expect(r.dtype).to.equal('uint8');
      expect(r.data).to.be.instanceOf(Uint8Array);
      expect([...r.data]).to.deep.equal(pix);
    });

    it('parses labels and wider big-endian types', () => {
      const labels = parseIdx(idxBytes(0x08, [5], [3, 1, 4, 1, 5]), 'labels');
      expect(labels.dims).to.deep.equal([5]);
      expect([...labels.data]).to.deep.equal([3, 1, 4, 1, 5]);
      const i32 = parseIdx(idxBytes(0x0c, [3], [1, -2, 0x01020304]), 'i32');
      expect(i32.data).to.be.instanceOf(Int32Array);
      expect([...i32.data]).to.deep.equal([1, -2, 0x01020304]);
      const i16 = parseIdx(idxBytes(0x0b, [2], [-300, 513]), 'i16');
      expect([...i16.data]).to.deep.equal([-300, 513]);
      const i8 = parseIdx(idxBytes(0x09, [2], [-5, 7]), 'i8');
      expect([...i8.data]).to.deep.equal([-5, 7]);
      const f32 = parseIdx(idxBytes(0x0d, [2], [1.5, -0.25]), 'f32');
      expect(f32.data).to.be.instanceOf(Float32Array);
      expect([...f32.data]).to.deep.equal([1.5, -0.25]);
      const f64 = parseIdx(idxBytes(0x0e, [1, 2], [Math.PI, -1e300]), 'f64');
      expect([...f64.data]).to.deep.equal([Math.PI, -1e300]);
    });

    it('works on a view with a non-zero byteOffset and copies the data', () => {
      const inner = idxBytes(0x0c, [2], [7, -9]);
      const outer = new Uint8Array(inner.length + 3);
      outer.set(inner, 3);
      const view = outer.subarray(3);
      const r = parseIdx(view, 'view');
      expect([...r.data]).to.deep.equal([7, -9]);
      const u = idxBytes(0x08, [2], [1, 2]);
      const ru = parseIdx(u, 'u');
      u[8] = 99;
      expect([...ru.data]).to.deep.equal([1, 2]);
    });

    it('rejects a bad magic number, naming the source', () => {
      const bytes = idxBytes(0x08, [1], [0]);
      bytes[0] = 1;
      expect(() => parseIdx(bytes, 'foo/bar.idx')).to.throw(/foo\/bar\.idx.*bad magic/);
      expect(() => parseIdx(new Uint8Array([0x1f, 0x8b, 8, 0]), 'x.gz')).to.throw(/x\.gz.*gzip/);
    });

    it('rejects an unsupported type', () => {
      const bytes = idxBytes(0x08, [1], [0]);
      bytes[2] = 0x0a;
      expect(() => parseIdx(bytes, 'odd')).to.throw(/odd.*unsupported element type 0x0a/);
    });

    it('rejects truncated data, header and magic, and trailing bytes', () => {
      const bytes = idxBytes(0x08, [2, 2, 2], [1, 2, 3, 4, 5, 6, 7, 8]);
      expect(() => parseIdx(bytes.subarray(0, bytes.length - 1), 'short')).to.throw(/short.*truncated.*need 24 bytes.*has 23/);
      expect(() => parseIdx(bytes.subarray(0, 10), 'hdr')).to.throw(/hdr.*truncated.*3 dimensions/);
      expect(() => parseIdx(bytes.subarray(0, 2), 'tiny')).to.throw(/tiny.*truncated/);
      const longer = new Uint8Array(bytes.length + 2);
      longer.set(bytes);
      expect(() => parseIdx(longer, 'long')).to.throw(/long.*2 unexpected trailing bytes/);
      const i32 = idxBytes(0x0c, [2], [1, 2]);
      expect(() => parseIdx(i32.subarray(0, i32.length - 2), 'i32')).to.throw(/i32.*truncated/);
    });
  });

  describe('idxImagesAndLabels', () => {
    it('scales uint8 images to [0,1] with sampleShape [1, rows, cols] and int64 labels', () => {
      const images = parseIdx(idxBytes(0x08, [3, 2, 2], [0, 255, 51, 102, 255, 0, 0, 0, 1, 2, 3, 4]), 'i');
      const labels = parseIdx(idxBytes(0x08, [3], [2, 0, 4]), 'l');
      const ds = idxImagesAndLabels(images, labels, 'tiny');
      expect(ds.name).to.equal('tiny');
      expect(ds.size).to.equal(3);
      expect(ds.sampleShape).to.deep.equal([1, 2, 2]);
      expect(ds.inputs).to.be.instanceOf(Float32Array);
      expect(ds.inputs.length).to.equal(12);
      expect(ds.inputs[1]).to.equal(1);
      expect(ds.inputs[2]).to.be.closeTo(0.2, 1e-7);
      expect(ds.labels).to.be.instanceOf(BigInt64Array);
      expect([...ds.labels!]).to.deep.equal([2n, 0n, 4n]);
      expect(ds.numClasses).to.equal(5);
    });

    it('keeps 2-D images as flat samples', () => {
      const images = parseIdx(idxBytes(0x0d, [2, 3], [0.5, 1, 2, 3, 4, 5]), 'i');
      const labels = parseIdx(idxBytes(0x08, [2], [0, 1]), 'l');
      const ds = idxImagesAndLabels(images, labels, 'flat');
      expect(ds.sampleShape).to.deep.equal([3]);
      expect([...ds.inputs]).to.deep.equal([0.5, 1, 2, 3, 4, 5]);
    });

    it('rejects disagreeing counts', () => {
      const images = parseIdx(idxBytes(0x08, [3, 1, 1], [0, 0, 0]), 'i');
      const labels = parseIdx(idxBytes(0x08, [2], [0, 1]), 'l');
      expect(() => idxImagesAndLabels(images, labels, 'bad')).to.throw(/bad.*3 images but 2 labels/);
    });
  });

  describe('fromArrays', () => {
    it('builds and validates', () => {
      const ds = fromArrays('a', [1, 2, 3, 4, 5, 6], [3], [0, 2]);
      expect(ds.size).to.equal(2);
      expect(ds.inputs).to.be.instanceOf(Float32Array);
      expect([...ds.labels!]).to.deep.equal([0n, 2n]);
      expect(ds.numClasses).to.equal(3);
      expect(fromArrays('b', new Float32Array(4), [2, 2]).labels).to.equal(undefined);
      expect(fromArrays('c', new Float32Array(4), [2], new BigInt64Array([1n, 0n]), 10).numClasses).to.equal(10);
    });

    it('gives clear errors', () => {
      expect(() => fromArrays('a', new Float32Array(5), [2])).to.throw(/'a'.*length 5 is not a multiple of the sample size 2/);
      expect(() => fromArrays('a', new Float32Array(6), [2], [0, 1])).to.throw(/2 labels for 3 samples/);
      expect(() => fromArrays('a', new Float32Array(2), [0])).to.throw(/positive integers/);
      expect(() => fromArrays('a', new Float32Array(0), [2])).to.throw(/empty/);
      expect(() => fromArrays('a', new Float32Array(2), [1], [0, -1])).to.throw(/negative/);
      expect(() => fromArrays('a', new Float32Array(2), [1], [0, 5], 3)).to.throw(/out of range for numClasses 3/);
    });
  });

  describe('limit and split', () => {
    const ds = fromArrays('ten', Float32Array.from({ length: 20 }, (_, i) => i), [2], Array.from({ length: 10 }, (_, i) => i % 3));

    it('limit keeps the first n samples', () => {
      const l = limit(ds, 4);
      expect(l.size).to.equal(4);
      expect([...l.inputs]).to.deep.equal([0, 1, 2, 3, 4, 5, 6, 7]);
      expect([...l.labels!]).to.deep.equal([0n, 1n, 2n, 0n]);
      expect(l.numClasses).to.equal(3);
      expect(limit(ds, 10)).to.equal(ds);
      expect(limit(ds, 1000).size).to.equal(10);
      expect(() => limit(ds, 0)).to.throw(/n must be an integer >= 1/);
      expect(() => limit(ds, 1.5)).to.throw(/n must be an integer >= 1/);
    });

    it('split gives disjoint first/last parts', () => {
      const { train, test } = split(ds, 0.7);
      expect(train.size).to.equal(7);
      expect(test.size).to.equal(3);
      expect(test.inputs[0]).to.equal(14);
      expect([...test.labels!]).to.deep.equal([1n, 2n, 0n]);
      expect(test.numClasses).to.equal(3);
      expect(split(ds, 0.01).train.size).to.equal(1);
      expect(split(ds, 0.99).test.size).to.equal(1);
      expect(() => split(ds, 1)).to.throw(/strictly between 0 and 1/);
      expect(() => split(limit(ds, 1), 0.5)).to.throw(/at least 2 samples/);
    });
  });
});
