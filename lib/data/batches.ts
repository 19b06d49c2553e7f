/**
 * Mini-batch iteration over a Dataset. Pure module (runs in browsers).
 */
import { DataError } from './dataset.js';
import { type Dataset, shapeSize } from './dataset.js';

/** One mini-batch: fresh contiguous copies of its samples (and labels). */
export interface Batch {
  /** 0-based index of the batch within its epoch. */
  index: number;
  /** The epoch it belongs to (as passed in the options). */
  epoch: number;
  /** size * prod(sampleShape) floats, row-major; a tensor of dims [size, ...sampleShape]. */
  inputs: Float32Array;
  /** size int64 class ids, when the dataset has labels. */
  labels?: BigInt64Array;
  /** Number of samples in this batch (batchSize, or fewer for the last batch when dropLast is false). */
  size: number;
}

export interface BatchOptions {
  /** Samples per batch (integer >= 1). */
  batchSize: number;
  /** Visit samples in a seeded random order that is reproducible for (seed, epoch) and differs per epoch. */
  shuffle: boolean;
  /** PRNG seed (any finite number; integer part used). Ignored without shuffle. */
  seed: number;
  /** Epoch number (any finite number; integer part used); mixes into the shuffle seed. */
  epoch: number;
  /** Skip the last batch when it is shorter than batchSize. Default false: it is yielded. */
  dropLast?: boolean;
  /** Start at this batch index of the epoch (default 0): the rest of an epoch stopped part-way. */
  from?: number;
}

/** Number of batches one epoch yields. */
export function batchesPerEpoch(size: number, batchSize: number, dropLast = false): number {
  if (!Number.isInteger(batchSize) || batchSize < 1) throw new DataError(`batchSize must be an integer >= 1, got ${batchSize}`);
  if (!Number.isInteger(size) || size < 0) throw new DataError(`size must be a non-negative integer, got ${size}`);
  return dropLast ? Math.floor(size / batchSize) : Math.ceil(size / batchSize);
}

/** murmur3's 32-bit finaliser: a good avalanche mix of a uint32. */
function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** Splits a finite number's integer part into two uint32 words (low, high), so seeds up to 2^53 all differ. */
function words(x: number, what: string): [number, number] {
  if (!Number.isFinite(x)) throw new DataError(`${what} must be a finite number, got ${x}`);
  const t = Math.trunc(x);
  const lo = t >>> 0; // two's complement low word, also for negatives
  const hi = Math.floor(t / 4294967296) >>> 0;
  return [lo, hi];
}

/** 32-bit state for (seed, epoch): different epochs of one seed give unrelated streams. */
export function shuffleSeed(seed: number, epoch: number): number {
  const [s0, s1] = words(seed, 'seed');
  const [e0, e1] = words(epoch, 'epoch');
  let h = fmix32(s0 ^ 0x9e3779b9);
  h = fmix32(h ^ s1 ^ 0x7f4a7c15);
  h = fmix32(h ^ e0 ^ 0x3c6ef372);
  h = fmix32(h ^ e1 ^ 0xa54ff53a);
  return h;
}

/** mulberry32: a small, fast PRNG; returns floats in [0, 1). */
export function mulberry32(state: number): () => number {
  let a = state >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The sample order of one epoch: a Fisher-Yates permutation of 0..size-1 seeded by (seed, epoch). */
export function epochPermutation(size: number, seed: number, epoch: number): Uint32Array {
  const order = new Uint32Array(size);
  for (let i = 0; i < size; i++) order[i] = i;
  const rand = mulberry32(shuffleSeed(seed, epoch));
  for (let i = size - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    const t = order[i];
    order[i] = order[j];
    order[j] = t;
  }
  return order;
}

/**
 * Yields the mini-batches of one epoch. Every sample appears exactly once per epoch (except the
 * dropped tail with dropLast). Without shuffle the order is file order; with shuffle it is
 * epochPermutation(size, seed, epoch). Each batch holds fresh copies, safe to keep or hand to a tensor.
 */
export function* batches(ds: Dataset, opts: BatchOptions): Generator<Batch> {
  const { batchSize, shuffle, seed, epoch } = opts;
  const dropLast = opts.dropLast ?? false;
  const count = batchesPerEpoch(ds.size, batchSize, dropLast);
  const per = shapeSize(ds.sampleShape);
  if (ds.inputs.length !== ds.size * per) {
    throw new DataError(`batches('${ds.name}'): inputs length ${ds.inputs.length} != size ${ds.size} * sample size ${per}`);
  }
  if (ds.labels && ds.labels.length !== ds.size) {
    throw new DataError(`batches('${ds.name}'): ${ds.labels.length} labels for ${ds.size} samples`);
  }
  words(epoch, 'epoch');
  const from = opts.from ?? 0;
  if (!Number.isInteger(from) || from < 0) throw new DataError(`from must be an integer >= 0, got ${from}`);
  const order = shuffle ? epochPermutation(ds.size, seed, epoch) : null;
  for (let b = from; b < count; b++) {
    const start = b * batchSize;
    const n = Math.min(batchSize, ds.size - start);
    const inputs = new Float32Array(n * per);
    const labels = ds.labels ? new BigInt64Array(n) : undefined;
    // Copy runs of consecutive sample ids with one subarray + set each.
    let k = 0;
    while (k < n) {
      const first = order ? order[start + k] : start + k;
      let len = 1;
      if (order) {
        while (k + len < n && order[start + k + len] === first + len) len++;
      } else {
        len = n - k;
      }
      inputs.set(ds.inputs.subarray(first * per, (first + len) * per), k * per);
      if (labels && ds.labels) labels.set(ds.labels.subarray(first, first + len), k);
      k += len;
    }
    const batch: Batch = { index: b, epoch, inputs, size: n };
    if (labels) batch.labels = labels;
    yield batch;
  }
}
