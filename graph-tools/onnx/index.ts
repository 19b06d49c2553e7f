// ONNX protobuf codec: decode/encode ModelProto and TensorProto, resolve external data,
// and convert tensors to and from typed arrays.
//
// Runs in Node and in browsers, so no Node built-ins here: bytes are Uint8Array and files
// are reached only through the caller's readExternal callback.
//
// int64 fields (dims, irVersion, attribute ints, ...) decode to plain numbers when they
// are safe integers and to a protobufjs Long ({low, high, unsigned}) otherwise, so nothing
// is silently rounded and encode(decode(x)) reproduces x. Use int64ToNumber/int64ToBigInt
// to read them and int64FromBigInt to write values beyond 2^53. Never assign a bigint to an
// int64 field: protobufjs encodes it as 0.
import protobuf from 'protobufjs/minimal.js';
import { onnx } from './onnx-pb-types.js';

export { onnx };

export type Long = protobuf.Long;
export type Int64 = number | Long;

/** The input is not a (complete) ONNX model or tensor, or its external data is unusable. */
export class OnnxFormatError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'OnnxFormatError';
  }
}

export interface DecodeOptions {
  /** Name of the input (usually its file name), used in error messages. */
  source?: string;
  /**
   * Returns the bytes of an external data file, `location` being relative to the model's
   * directory as written in the model. Paths that are absolute or contain '..' are rejected
   * before this is called.
   */
  readExternal?: (location: string) => Uint8Array;
}

// ---------------------------------------------------------------------------------------
// int64

/** A decoded int64 value as a number; throws if it is beyond Number.MAX_SAFE_INTEGER. */
export function int64ToNumber(v: Int64 | null | undefined): number {
  if (v == null) return 0;
  if (typeof v === 'number') return v;
  const n = longToNumber(v);
  if (!Number.isSafeInteger(n)) throw new RangeError(`int64 value ${int64ToBigInt(v)} is not a safe integer`);
  return n;
}

/** A decoded int64 value as an exact bigint. */
export function int64ToBigInt(v: Int64 | null | undefined): bigint {
  if (v == null) return 0n;
  if (typeof v === 'number') return BigInt(v);
  const bits = (BigInt(v.high >>> 0) << 32n) | BigInt(v.low >>> 0);
  return v.unsigned ? BigInt.asUintN(64, bits) : BigInt.asIntN(64, bits);
}

/** A value for an int64 field: a number when safe, else a Long that encodes exactly. */
export function int64FromBigInt(v: bigint): Int64 {
  if (BigInt.asIntN(64, v) !== v) throw new RangeError(`${v} does not fit in int64`);
  if (v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER)) return Number(v);
  const bits = BigInt.asUintN(64, v);
  return { low: Number(bits & 0xffffffffn) | 0, high: Number(bits >> 32n) | 0, unsigned: false };
}

function longToNumber(v: Long): number {
  return (v.unsigned ? v.high >>> 0 : v.high | 0) * 0x100000000 + (v.low >>> 0);
}

type Read64 = () => Int64;

// A reader whose 64-bit reads yield numbers where exact (protobufjs itself yields a Long
// for every value when long.js is loaded, a lossy number otherwise). Keeps unknown fields
// so that models written by newer ONNX versions survive a round trip.
function reader(bytes: Uint8Array): protobuf.Reader {
  const r = new protobuf.Reader(bytes);
  r.discardUnknown = false;
  const rr = r as unknown as Record<string, Read64>;
  for (const m of ['int64', 'uint64', 'sint64', 'fixed64', 'sfixed64']) {
    const read = rr[m];
    rr[m] = function (this: protobuf.Reader) {
      const v = read.call(this);
      if (typeof v === 'number') return v;
      const n = longToNumber(v);
      return Number.isSafeInteger(n) ? n : v;
    };
  }
  return r;
}

// Route every generated decoder (onnx.ModelProto.decode(bytes) etc., also when called
// directly by other modules) through reader(), so int64 values are uniform everywhere.
// Nested messages are decoded with the parent's reader and need no patch of their own.
type Decoder = { decode(r: protobuf.Reader | Uint8Array, ...rest: unknown[]): unknown };
function patchDecoders(ns: object): void {
  for (const v of Object.values(ns) as unknown[]) {
    if (typeof v !== 'function' && (typeof v !== 'object' || v === null)) continue;
    const type = v as Decoder;
    if (typeof type.decode === 'function') {
      const decode = type.decode;
      type.decode = function (this: unknown, r, ...rest) {
        return decode.call(this, r instanceof protobuf.Reader ? r : reader(r), ...rest);
      };
    }
    patchDecoders(v); // nested types (TensorProto.Segment, TypeProto.Tensor, ...)
  }
}
patchDecoders(onnx);

// A plain Writer (not Node's BufferWriter) so both platforms get a Uint8Array.
function encode(fn: (w: protobuf.Writer) => protobuf.Writer): Uint8Array {
  return fn(new protobuf.Writer()).finish();
}

// ---------------------------------------------------------------------------------------
// models and tensors

// The first bytes (tag: field << 3 | wire type) of ModelProto fields 2 to 8.
const MODEL_FIELDS_2_TO_8 = [0x12, 0x1a, 0x22, 0x28, 0x32, 0x3a, 0x42];

/**
 * Decodes an ONNX model. Tensors stored as external data are loaded through
 * opts.readExternal into rawData, so callers only ever see rawData. Other rawData are
 * views into `bytes` (no copy): do not modify `bytes` while the model is in use.
 */
export function decodeModel(bytes: Uint8Array, opts: DecodeOptions = {}): onnx.ModelProto {
  const source = opts.source ?? 'model';
  let model: onnx.ModelProto;
  try {
    model = onnx.ModelProto.decode(bytes);
  } catch (e) {
    // ONNX writers serialize fields in order: ir_version (field 1, a small varint: 0x08 0x01..
    // 0x7f), then one of fields 2..8 (producer_name ... opset_import), unlike a TensorProto
    // (dims, data_type). With that start, a read past the end means the file was cut short.
    const looksOnnx = bytes[0] === 0x08 && bytes[1] > 0 && bytes[1] < 0x80 && MODEL_FIELDS_2_TO_8.includes(bytes[2]);
    const pastEnd = /index out of range/.test(errorMessage(e));
    const what = looksOnnx && pastEnd ? 'is truncated or corrupt' : 'is not an ONNX model';
    throw new OnnxFormatError(`${source} ${what} (protobuf decode failed: ${errorMessage(e)})`, { cause: e });
  }
  // Arbitrary bytes often decode as *some* protobuf message; a real model has both.
  if (!(int64ToBigInt(model.irVersion) > 0n)) {
    throw new OnnxFormatError(`${source} is not an ONNX model (no irVersion)`);
  }
  if (!model.graph) throw new OnnxFormatError(`${source} is not an ONNX model (it has no graph)`);
  loadExternalData(model, source, opts.readExternal);
  return model;
}

export function encodeModel(model: onnx.ModelProto.$Properties): Uint8Array {
  return encode((w) => onnx.ModelProto.encode(model, w));
}

/** Decodes a standalone TensorProto file (what numpy_helper.from_array(...).SerializeToString() writes). */
export function decodeTensor(bytes: Uint8Array, source = 'tensor'): onnx.TensorProto {
  let t: onnx.TensorProto;
  try {
    t = onnx.TensorProto.decode(bytes);
  } catch (e) {
    throw new OnnxFormatError(`${source} is not an ONNX tensor (protobuf decode failed: ${errorMessage(e)})`, { cause: e });
  }
  if (!(t.dataType > 0)) throw new OnnxFormatError(`${source} is not an ONNX tensor (no dataType)`);
  return t;
}

export function encodeTensor(t: onnx.TensorProto.$Properties): Uint8Array {
  return encode((w) => onnx.TensorProto.encode(t, w));
}

function errorMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

// ---------------------------------------------------------------------------------------
// external data

type Tensor = onnx.TensorProto.$Properties;
type Graph = onnx.GraphProto.$Properties | null | undefined;
type Attributes = onnx.AttributeProto.$Properties[] | null | undefined;

// Every TensorProto of a model, subgraphs, functions and training graphs included.
function* modelTensors(m: onnx.ModelProto.$Properties): Generator<Tensor> {
  yield* graphTensors(m.graph);
  for (const ti of m.trainingInfo ?? []) {
    yield* graphTensors(ti.initialization);
    yield* graphTensors(ti.algorithm);
  }
  for (const f of m.functions ?? []) {
    yield* attributeTensors(f.attributeProto);
    for (const n of f.node ?? []) yield* attributeTensors(n.attribute);
  }
}

function* graphTensors(g: Graph): Generator<Tensor> {
  if (!g) return;
  yield* g.initializer ?? [];
  for (const s of g.sparseInitializer ?? []) yield* sparseTensors(s);
  for (const n of g.node ?? []) yield* attributeTensors(n.attribute);
}

function* attributeTensors(attrs: Attributes): Generator<Tensor> {
  for (const a of attrs ?? []) {
    if (a.t) yield a.t;
    yield* a.tensors ?? [];
    yield* sparseTensors(a.sparseTensor);
    for (const s of a.sparseTensors ?? []) yield* sparseTensors(s);
    yield* graphTensors(a.g);
    for (const g of a.graphs ?? []) yield* graphTensors(g);
  }
}

function* sparseTensors(s: onnx.SparseTensorProto.$Properties | null | undefined): Generator<Tensor> {
  if (s?.values) yield s.values;
  if (s?.indices) yield s.indices;
}

function loadExternalData(model: onnx.ModelProto, source: string, readExternal?: DecodeOptions['readExternal']): void {
  const files = new Map<string, Uint8Array>(); // tensors usually share one file: read it once
  for (const t of modelTensors(model)) {
    if (t.dataLocation !== onnx.TensorProto.DataLocation.EXTERNAL) continue;
    const entries = new Map((t.externalData ?? []).map((e) => [e.key ?? '', e.value ?? '']));
    const location = entries.get('location');
    const what = `external data for tensor '${t.name}' in ${source}`;
    if (!location) throw new OnnxFormatError(`${what} has no location`);
    // Same rule as onnx.checker: data must live beside the model, not anywhere on disk.
    if (/^([/\\]|[a-zA-Z]:)/.test(location) || location.split(/[/\\]/).includes('..')) {
      throw new OnnxFormatError(`${what} has location '${location}' outside the model's directory`);
    }
    let file = files.get(location);
    if (!file) {
      try {
        if (!readExternal) throw new Error('no readExternal given');
        file = readExternal(location);
      } catch (e) {
        throw new OnnxFormatError(
          `external data file '${location}' for tensor '${t.name}' not found beside ${source} (${errorMessage(e)})`,
          { cause: e },
        );
      }
      files.set(location, file);
    }
    const offset = entries.has('offset') ? Number(entries.get('offset')) : 0;
    const length = entries.has('length') ? Number(entries.get('length')) : file.length - offset;
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > file.length) {
      throw new OnnxFormatError(
        `${what}: offset ${entries.get('offset') ?? 0} length ${entries.get('length') ?? '(rest)'} is outside '${location}' (${file.length} bytes)`,
      );
    }
    // A copy, so the (possibly huge) file buffer is not kept alive by one tensor
    // (new Uint8Array(view) copies even for a Node Buffer, whose slice() would not).
    t.rawData = new Uint8Array(file.subarray(offset, offset + length));
    t.externalData = [];
    delete t.dataLocation; // back to the DEFAULT prototype value, and not serialized
  }
}

// ---------------------------------------------------------------------------------------
// typed arrays

export type DataType = 'float32' | 'float64' | 'int64' | 'int32' | 'bool' | 'uint8' | 'int8' | 'float16';

export type TypedData = Float32Array | Float64Array | BigInt64Array | Int32Array | Uint8Array | Int8Array | Uint16Array;

export interface TensorData {
  dtype: DataType;
  dims: number[];
  /** bool: one byte per element (0/1); float16: the raw IEEE half bits. */
  data: TypedData;
}

const DT = onnx.TensorProto.DataType;

const DTYPES: Record<DataType, { code: number; array: { new (b: ArrayBuffer, o: number, n: number): TypedData; BYTES_PER_ELEMENT: number } }> = {
  float32: { code: DT.FLOAT, array: Float32Array },
  float64: { code: DT.DOUBLE, array: Float64Array },
  int64: { code: DT.INT64, array: BigInt64Array },
  int32: { code: DT.INT32, array: Int32Array },
  bool: { code: DT.BOOL, array: Uint8Array },
  uint8: { code: DT.UINT8, array: Uint8Array },
  int8: { code: DT.INT8, array: Int8Array },
  float16: { code: DT.FLOAT16, array: Uint16Array },
};

function lookupDataType(n: number | null | undefined): DataType | undefined {
  return (Object.keys(DTYPES) as DataType[]).find((d) => DTYPES[d].code === n);
}

/** The DataType for an onnx.TensorProto.DataType value; throws for types not supported here. */
export function dataTypeFromEnum(n: number): DataType {
  const d = lookupDataType(n);
  if (!d) throw new OnnxFormatError(`unsupported ONNX data type ${DT[n] ?? '?'} (${n})`);
  return d;
}

export function dataTypeToEnum(d: DataType): onnx.TensorProto.DataType {
  return DTYPES[d].code;
}

/** Product of dims; 1 for a scalar (no dims). */
export function numElements(dims: readonly number[]): number {
  let n = 1;
  for (const d of dims) {
    if (!Number.isSafeInteger(d) || d < 0) throw new RangeError(`invalid dimension ${d} in [${dims}]`);
    n *= d;
  }
  return n;
}

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

// ONNX rawData is little-endian; on a big-endian host swap each element in place.
function swapIfBigEndian(bytes: Uint8Array, width: number): void {
  if (LITTLE_ENDIAN || width === 1) return;
  for (let i = 0; i < bytes.length; i += width) bytes.subarray(i, i + width).reverse();
}

/** Reads a TensorProto's data (rawData, else the typed *_data field) into a fresh typed array. */
export function tensorFromProto(t: onnx.TensorProto.$Properties): TensorData {
  const name = `tensor '${t.name ?? ''}'`;
  const dtype = lookupDataType(t.dataType);
  if (!dtype) {
    throw new OnnxFormatError(`${name} has unsupported data type ${DT[t.dataType ?? 0] ?? '?'} (${t.dataType})`);
  }
  if (t.dataLocation === onnx.TensorProto.DataLocation.EXTERNAL) {
    throw new OnnxFormatError(`${name} has external data; decode its model with readExternal`);
  }
  const dims = (t.dims ?? []).map((d) => int64ToNumber(d));
  const n = numElements(dims);
  const { array } = DTYPES[dtype];

  if (t.rawData && t.rawData.length > 0) {
    const expected = n * array.BYTES_PER_ELEMENT;
    if (t.rawData.length !== expected) {
      throw new OnnxFormatError(`${name} rawData has ${t.rawData.length} bytes, expected ${expected} for ${dtype}[${dims}]`);
    }
    // Copy: rawData is usually a view into the model at an arbitrary (unaligned) offset.
    // new Uint8Array(view) copies even for a Node Buffer, whose slice() would not.
    const bytes = new Uint8Array(t.rawData);
    swapIfBigEndian(bytes, array.BYTES_PER_ELEMENT);
    return { dtype, dims, data: new array(bytes.buffer, 0, n) };
  }

  // ONNX stores bool/int8/uint8/float16 (as bits) one per entry in int32Data.
  const values: ArrayLike<number | Long> | null | undefined =
    dtype === 'float32' ? t.floatData : dtype === 'float64' ? t.doubleData : dtype === 'int64' ? t.int64Data : t.int32Data;
  const count = values?.length ?? 0;
  if (count !== n) throw new OnnxFormatError(`${name} has ${count} values, expected ${n} for ${dtype}[${dims}]`);
  const data = new array(new ArrayBuffer(n * array.BYTES_PER_ELEMENT), 0, n);
  if (data instanceof BigInt64Array) for (let i = 0; i < n; i++) data[i] = int64ToBigInt(values![i]);
  else for (let i = 0; i < n; i++) data[i] = values![i] as number;
  return { dtype, dims, data };
}

/** A TensorProto holding a copy of t.data as little-endian rawData. */
export function tensorToProto(name: string, t: TensorData): onnx.TensorProto {
  const n = numElements(t.dims);
  const { code, array } = DTYPES[t.dtype];
  if (t.data.length !== n || t.data.BYTES_PER_ELEMENT !== array.BYTES_PER_ELEMENT) {
    throw new RangeError(`tensor '${name}': ${t.data.constructor.name}(${t.data.length}) does not fit ${t.dtype}[${t.dims}]`);
  }
  const raw = new Uint8Array(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength));
  swapIfBigEndian(raw, array.BYTES_PER_ELEMENT);
  return onnx.TensorProto.create({ name, dims: [...t.dims], dataType: code, rawData: raw });
}
