/**
 * In-memory datasets and the IDX file format (MNIST's on-disk format).
 *
 * Pure module: no Node built-ins, runs in browsers too. File system access lives in `./node.ts`.
 */

/** A labelled (or unlabelled) set of fixed-shape float samples held in one flat buffer. */
/** Bad or missing data: a clear message naming the file or dataset. */
export class DataError extends Error {
  constructor(message: string) { super(message); this.name = 'DataError'; }
}

export interface Dataset {
  /** Human-readable description (shown in logs). */
  name: string;
  /** Number of samples. */
  size: number;
  /** Shape of one sample, without the batch dimension, e.g. [1, 28, 28]. */
  sampleShape: number[];
  /** size * prod(sampleShape) floats, row-major, sample after sample. */
  inputs: Float32Array;
  /** One int64 class id per sample, in [0, numClasses). */
  labels?: BigInt64Array;
  /** Number of classes (present when labels are). */
  numClasses?: number;
}

/** Product of a shape's dimensions (1 for []). */
export function shapeSize(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

function checkShape(where: string, shape: readonly number[]): void {
  if (!Array.isArray(shape)) throw new DataError(`${where}: sampleShape must be an array of positive integers`);
  for (const d of shape) {
    if (!Number.isSafeInteger(d) || d < 1) {
      throw new DataError(`${where}: sampleShape [${shape.join(', ')}] must contain only positive integers`);
    }
  }
}

/**
 * Builds a Dataset from flat arrays, validating every length.
 *
 * @param inputs size * prod(sampleShape) values, row-major (copied when not already a Float32Array).
 * @param labels one non-negative integer class id per sample (copied into a BigInt64Array when not one).
 * @param numClasses defaults to max(label) + 1; when given, every label must be below it.
 */
export function fromArrays(
  name: string,
  inputs: Float32Array | ArrayLike<number>,
  sampleShape: number[],
  labels?: BigInt64Array | ArrayLike<number | bigint>,
  numClasses?: number,
): Dataset {
  const where = `fromArrays('${name}')`;
  checkShape(where, sampleShape);
  const per = shapeSize(sampleShape);
  const x = inputs instanceof Float32Array ? inputs : Float32Array.from(inputs as ArrayLike<number>);
  if (x.length === 0) throw new DataError(`${where}: inputs are empty (a dataset needs at least one sample)`);
  if (x.length % per !== 0) {
    throw new DataError(
      `${where}: inputs length ${x.length} is not a multiple of the sample size ${per} (sampleShape [${sampleShape.join(', ')}])`,
    );
  }
  const size = x.length / per;
  const ds: Dataset = { name, size, sampleShape: [...sampleShape], inputs: x };
  if (labels !== undefined) {
    let y: BigInt64Array;
    if (labels instanceof BigInt64Array) {
      y = labels;
    } else {
      y = new BigInt64Array(labels.length);
      for (let i = 0; i < labels.length; i++) {
        const v = labels[i];
        if (typeof v === 'bigint') y[i] = v;
        else if (Number.isSafeInteger(v)) y[i] = BigInt(v);
        else throw new DataError(`${where}: label ${i} is ${v}, not an integer`);
      }
    }
    if (y.length !== size) {
      throw new DataError(`${where}: ${y.length} labels for ${size} samples (inputs length ${x.length} / sample size ${per})`);
    }
    let max = -1n;
    for (let i = 0; i < y.length; i++) {
      const v = y[i];
      if (v < 0n) throw new DataError(`${where}: label ${i} is negative (${v})`);
      if (v > max) max = v;
    }
    if (numClasses === undefined) {
      numClasses = Number(max) + 1;
    } else {
      if (!Number.isSafeInteger(numClasses) || numClasses < 1) {
        throw new DataError(`${where}: numClasses must be a positive integer, got ${numClasses}`);
      }
      if (max >= BigInt(numClasses)) {
        throw new DataError(`${where}: label ${max} is out of range for numClasses ${numClasses}`);
      }
    }
    ds.labels = y;
    ds.numClasses = numClasses;
  } else if (numClasses !== undefined) {
    if (!Number.isSafeInteger(numClasses) || numClasses < 1) {
      throw new DataError(`${where}: numClasses must be a positive integer, got ${numClasses}`);
    }
    ds.numClasses = numClasses;
  }
  return ds;
}

/** Samples [start, end) of a dataset as views (no copy); keeps numClasses. */
function slice(ds: Dataset, start: number, end: number, name: string): Dataset {
  const per = shapeSize(ds.sampleShape);
  const out: Dataset = {
    name,
    size: end - start,
    sampleShape: [...ds.sampleShape],
    inputs: ds.inputs.subarray(start * per, end * per),
  };
  if (ds.labels) out.labels = ds.labels.subarray(start, end);
  if (ds.numClasses !== undefined) out.numClasses = ds.numClasses;
  return out;
}

/**
 * The first n samples (views into the same buffers, not copies). n > size keeps all samples.
 * Throws if n is not an integer >= 1.
 */
export function limit(ds: Dataset, n: number): Dataset {
  if (!Number.isInteger(n) || n < 1) throw new DataError(`limit('${ds.name}'): n must be an integer >= 1, got ${n}`);
  if (n >= ds.size) return ds;
  return slice(ds, 0, n, `${ds.name} [first ${n}]`);
}

/**
 * Splits into train = the first round(size * fraction) samples and test = the rest (views, no copies),
 * e.g. split(ds, 0.9) keeps the last 10% as a held-out evaluation set. Both parts keep numClasses.
 * Both parts get at least one sample, so size must be >= 2 and 0 < fraction < 1.
 */
export function split(ds: Dataset, fraction: number): { train: Dataset; test: Dataset } {
  const where = `split('${ds.name}')`;
  if (!(fraction > 0 && fraction < 1)) throw new DataError(`${where}: fraction must be strictly between 0 and 1, got ${fraction}`);
  if (ds.size < 2) throw new DataError(`${where}: need at least 2 samples to split, have ${ds.size}`);
  const nTrain = Math.min(ds.size - 1, Math.max(1, Math.round(ds.size * fraction)));
  return {
    train: slice(ds, 0, nTrain, `${ds.name} [train ${nTrain}/${ds.size}]`),
    test: slice(ds, nTrain, ds.size, `${ds.name} [test ${ds.size - nTrain}/${ds.size}]`),
  };
}

// ---------------------------------------------------------------------------------------------
// IDX format: bytes 0-1 are 0, byte 2 the element type, byte 3 the number of dimensions; then
// one big-endian uint32 per dimension; then the elements, big-endian, row-major.

export type IdxDType = 'uint8' | 'int8' | 'int16' | 'int32' | 'float32' | 'float64';
export type IdxData = Uint8Array | Int8Array | Int16Array | Int32Array | Float32Array | Float64Array;

/** A parsed IDX file. data has prod(dims) elements in native byte order. */
export interface IdxArray {
  dims: number[];
  dtype: IdxDType;
  data: IdxData;
}

const IDX_TYPES: Record<number, { dtype: IdxDType; bytes: number }> = {
  0x08: { dtype: 'uint8', bytes: 1 },
  0x09: { dtype: 'int8', bytes: 1 },
  0x0b: { dtype: 'int16', bytes: 2 },
  0x0c: { dtype: 'int32', bytes: 4 },
  0x0d: { dtype: 'float32', bytes: 4 },
  0x0e: { dtype: 'float64', bytes: 8 },
};

const hex = (b: number) => '0x' + b.toString(16).padStart(2, '0');

/**
 * Parses an (already decompressed) IDX file.
 * @param source names the file in error messages.
 * Throws for a bad magic number, an unsupported element type, a truncated header or body, or trailing bytes.
 */
export function parseIdx(bytes: Uint8Array, source: string): IdxArray {
  if (bytes.length < 4) {
    throw new DataError(`IDX ${source}: file is truncated: ${bytes.length} bytes, shorter than the 4-byte magic number`);
  }
  if (bytes[0] !== 0 || bytes[1] !== 0) {
    const gz = bytes[0] === 0x1f && bytes[1] === 0x8b ? ' (it looks gzip-compressed: decompress it first)' : '';
    throw new DataError(
      `IDX ${source}: bad magic number ${[...bytes.subarray(0, 4)].map(hex).join(' ')}: expected 0x00 0x00 <type> <ndims>${gz}`,
    );
  }
  const typeCode = bytes[2];
  const type = IDX_TYPES[typeCode];
  if (!type) {
    throw new DataError(
      `IDX ${source}: unsupported element type ${hex(typeCode)} (supported: 0x08 uint8, 0x09 int8, 0x0b int16, 0x0c int32, 0x0d float32, 0x0e float64)`,
    );
  }
  const ndims = bytes[3];
  if (ndims < 1) throw new DataError(`IDX ${source}: header declares 0 dimensions`);
  const headerLen = 4 + 4 * ndims;
  if (bytes.length < headerLen) {
    throw new DataError(
      `IDX ${source}: file is truncated: the header declares ${ndims} dimensions (${headerLen} header bytes) but the file has only ${bytes.length} bytes`,
    );
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const dims: number[] = [];
  let count = 1;
  for (let i = 0; i < ndims; i++) {
    const d = view.getUint32(4 + 4 * i, false);
    dims.push(d);
    count *= d;
  }
  const expected = headerLen + count * type.bytes;
  if (bytes.length < expected) {
    throw new DataError(
      `IDX ${source}: file is truncated: dims [${dims.join(', ')}] of ${type.dtype} need ${expected} bytes, the file has ${bytes.length}`,
    );
  }
  if (bytes.length > expected) {
    throw new DataError(
      `IDX ${source}: ${bytes.length - expected} unexpected trailing bytes after the data of dims [${dims.join(', ')}] (${type.dtype}; expected ${expected} bytes in all)`,
    );
  }
  const off = headerLen;
  let data: IdxData;
  switch (type.dtype) {
    case 'uint8':
      data = new Uint8Array(count);
      data.set(bytes.subarray(off, off + count));
      break;
    case 'int8':
      data = new Int8Array(count);
      data.set(new Int8Array(bytes.buffer, bytes.byteOffset + off, count));
      break;
    case 'int16': {
      const a = new Int16Array(count);
      for (let i = 0; i < count; i++) a[i] = view.getInt16(off + 2 * i, false);
      data = a;
      break;
    }
    case 'int32': {
      const a = new Int32Array(count);
      for (let i = 0; i < count; i++) a[i] = view.getInt32(off + 4 * i, false);
      data = a;
      break;
    }
    case 'float32': {
      const a = new Float32Array(count);
      for (let i = 0; i < count; i++) a[i] = view.getFloat32(off + 4 * i, false);
      data = a;
      break;
    }
    case 'float64': {
      const a = new Float64Array(count);
      for (let i = 0; i < count; i++) a[i] = view.getFloat64(off + 8 * i, false);
      data = a;
      break;
    }
  }
  return { dims, dtype: type.dtype, data };
}

/**
 * Builds a labelled Dataset from a parsed images file and a parsed labels file.
 *
 * - images dims [n, rows, cols] give sampleShape [1, rows, cols] (one channel, NCHW);
 *   [n, d] gives [d]; [n, a, b, c, ...] gives [a, b, c, ...].
 * - uint8 images are scaled to [0, 1] (value / 255); other element types are converted to float32 unscaled.
 * - labels (dims [n] or [n, 1], integer element type, non-negative) become int64; numClasses = max(label) + 1.
 * Throws if the image and label counts disagree.
 */
export function idxImagesAndLabels(images: IdxArray, labels: IdxArray, name: string): Dataset {
  const where = `idxImagesAndLabels('${name}')`;
  if (images.dims.length < 2) {
    throw new DataError(`${where}: images must have at least 2 dimensions [count, ...sample], got [${images.dims.join(', ')}]`);
  }
  const n = images.dims[0];
  const rest = images.dims.slice(1);
  const sampleShape = rest.length === 2 ? [1, rest[0], rest[1]] : rest;
  if (labels.dims.length !== 1 && !(labels.dims.length === 2 && labels.dims[1] === 1)) {
    throw new DataError(`${where}: labels must have dims [count] or [count, 1], got [${labels.dims.join(', ')}]`);
  }
  if (labels.dims[0] !== n) {
    throw new DataError(`${where}: ${n} images but ${labels.dims[0]} labels`);
  }
  if (labels.data instanceof Float32Array || labels.data instanceof Float64Array) {
    throw new DataError(`${where}: labels must have an integer element type, got ${labels.dtype}`);
  }
  if (n === 0) throw new DataError(`${where}: the files hold no samples`);
  const inputs = new Float32Array(images.data.length);
  if (images.data instanceof Uint8Array) {
    const src = images.data;
    for (let i = 0; i < src.length; i++) inputs[i] = src[i] / 255;
  } else {
    inputs.set(images.data);
  }
  const y = new BigInt64Array(n);
  const src = labels.data;
  for (let i = 0; i < n; i++) {
    if (src[i] < 0) throw new DataError(`${where}: label ${i} is negative (${src[i]})`);
    y[i] = BigInt(src[i]);
  }
  return fromArrays(name, inputs, sampleShape, y);
}
