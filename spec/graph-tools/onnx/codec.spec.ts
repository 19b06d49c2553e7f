import { expect } from 'chai';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  onnx,
  OnnxFormatError,
  decodeModel,
  encodeModel,
  decodeTensor,
  encodeTensor,
  tensorFromProto,
  tensorToProto,
  dataTypeFromEnum,
  dataTypeToEnum,
  numElements,
  int64ToNumber,
  int64ToBigInt,
  int64FromBigInt,
  type DataType,
  type TensorData,
} from '../../../graph-tools/onnx/index.js';

const DT = onnx.TensorProto.DataType;
const AT = onnx.AttributeProto.AttributeType;
const INT64_MAX = 2n ** 63n - 1n;
const INT64_MIN = -(2n ** 63n);
const utf8 = new TextEncoder();

const w: TensorData = { dtype: 'float32', dims: [2, 3], data: Float32Array.from([1, -2.5, 3, 4e-8, 5, Math.PI]) };
const d: TensorData = { dtype: 'float64', dims: [3], data: Float64Array.from([0.1, -1e300, Math.E]) };
const shape: TensorData = { dtype: 'int64', dims: [4], data: BigInt64Array.from([-1n, 0n, INT64_MAX, INT64_MIN]) };

function buildModel(): onnx.ModelProto.$Properties {
  return {
    irVersion: 10,
    producerName: 'codec.spec',
    opsetImport: [{ domain: '', version: 17 }],
    graph: {
      name: 'g',
      node: [
        {
          opType: 'Custom', name: 'n0', input: ['x', 'W'], output: ['y'],
          attribute: [
            { name: 'f', type: AT.FLOAT, f: 0.5 },
            { name: 'i', type: AT.INT, i: -7 },
            { name: 'big', type: AT.INT, i: int64FromBigInt(INT64_MAX) },
            { name: 's', type: AT.STRING, s: utf8.encode('héllo') },
            { name: 't', type: AT.TENSOR, t: tensorToProto('t', d) },
            { name: 'fs', type: AT.FLOATS, floats: [1.5, -2, 0] },
            { name: 'is', type: AT.INTS, ints: [1, -1, 0, int64FromBigInt(INT64_MIN)] },
          ],
        },
        { opType: 'Reshape', input: ['y', 'shape'], output: ['z'] },
      ],
      initializer: [tensorToProto('W', w), tensorToProto('D', d), tensorToProto('shape', shape)],
      input: [valueInfo('x', ['batch', 3])],
      output: [valueInfo('z', ['batch', 'n'])],
      valueInfo: [valueInfo('y', [2, 3])],
    },
  };
}

function valueInfo(name: string, dims: (string | number)[]): onnx.ValueInfoProto.$Properties {
  return {
    name,
    type: {
      tensorType: {
        elemType: DT.FLOAT,
        shape: { dim: dims.map((x) => (typeof x === 'number' ? { dimValue: x } : { dimParam: x })) },
      },
    },
  };
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) { out.set(p, o); o += p.length; }
  return out;
}

function expectFormatError(fn: () => unknown, ...fragments: string[]): void {
  try {
    fn();
  } catch (e) {
    expect(e).to.be.instanceOf(OnnxFormatError);
    for (const f of fragments) expect((e as Error).message).to.include(f);
    return;
  }
  expect.fail('expected an OnnxFormatError');
}

describe('graph-tools/onnx codec', () => {
  describe('models', () => {
    it('round-trips a model: encode → decode → encode gives identical bytes and equal data', () => {
      const bytes = encodeModel(buildModel());
      const m = decodeModel(bytes, { source: 'built.onnx' });
      expect(encodeModel(m)).to.deep.equal(bytes);

      expect(m.irVersion).to.equal(10);
      expect(m.opsetImport[0].version).to.equal(17);
      const g = m.graph!;
      const attrs = new Map(g.node![0].attribute!.map((a) => [a.name, a]));
      expect(attrs.get('f')!.f).to.equal(0.5);
      expect(attrs.get('i')!.i).to.equal(-7);
      expect(int64ToBigInt(attrs.get('big')!.i)).to.equal(INT64_MAX); // beyond 2^53: kept exact
      expect(new TextDecoder().decode(attrs.get('s')!.s!)).to.equal('héllo');
      expect(tensorFromProto(attrs.get('t')!.t!)).to.deep.equal(d);
      expect(attrs.get('fs')!.floats).to.deep.equal([1.5, -2, 0]);
      expect(attrs.get('is')!.ints!.map(int64ToBigInt)).to.deep.equal([1n, -1n, 0n, INT64_MIN]);
      expect(attrs.get('is')!.ints!.slice(0, 3)).to.deep.equal([1, -1, 0]); // safe values are numbers

      const inits = new Map(g.initializer!.map((t) => [t.name, tensorFromProto(t)]));
      expect(inits.get('W')).to.deep.equal(w);
      expect(inits.get('D')).to.deep.equal(d);
      expect(inits.get('shape')).to.deep.equal(shape);

      const dims = (vi: onnx.ValueInfoProto.$Properties) =>
        vi.type!.tensorType!.shape!.dim!.map((x) => (x.value === 'dimParam' ? x.dimParam : x.dimValue));
      expect(dims(g.input![0])).to.deep.equal(['batch', 3]);
      expect(dims(g.output![0])).to.deep.equal(['batch', 'n']);
      expect(dims(g.valueInfo![0])).to.deep.equal([2, 3]);
    });

    it('decodes int64 fields as numbers also through the generated decoders, and unset ones as 0', () => {
      const m = onnx.ModelProto.decode(encodeModel(buildModel()));
      expect(m.irVersion).to.equal(10);
      expect(m.graph!.initializer![0].dims).to.deep.equal([2, 3]);
      expect(m.modelVersion).to.equal(0);
      expect(int64ToNumber(m.modelVersion)).to.equal(0);
      expect(() => int64ToNumber(int64FromBigInt(INT64_MAX))).to.throw(RangeError);
      expect(() => int64FromBigInt(INT64_MAX + 1n)).to.throw(RangeError);
    });

    it('keeps fields unknown to this onnx.proto', () => {
      // field 100, varint 1: a field some future ONNX version might add
      const bytes = concat(encodeModel(buildModel()), Uint8Array.from([0xa0, 0x06, 0x01]));
      expect(encodeModel(decodeModel(bytes))).to.deep.equal(bytes);
    });

    it('rejects random bytes with an OnnxFormatError naming the source', () => {
      let seed = 12345;
      for (let k = 0; k < 50; k++) {
        const bytes = new Uint8Array(64 + k * 17).map(() => (seed = (seed * 1103515245 + 12345) >>> 0) >>> 24);
        if (bytes[0] === 0x08) bytes[0] = 0x0a;
        expectFormatError(() => decodeModel(bytes, { source: 'noise.onnx' }), 'noise.onnx', 'not an ONNX model');
      }
      expectFormatError(() => decodeModel(new Uint8Array(0), { source: 'empty.onnx' }), 'empty.onnx', 'not an ONNX model');
      for (const name of ['W', '']) { // a TensorProto file is no model, with or without a name
        const tensorFile = encodeTensor(tensorToProto(name, w));
        expectFormatError(() => decodeModel(tensorFile, { source: 'W.pb' }), 'W.pb', 'not an ONNX model');
      }
    });

    it('rejects a model without a graph', () => {
      const bytes = encodeModel({ irVersion: 8, opsetImport: [{ version: 13 }] });
      expectFormatError(() => decodeModel(bytes, { source: 'nograph.onnx' }), 'nograph.onnx', 'has no graph');
    });

    it('rejects a truncated model with an OnnxFormatError naming the source', () => {
      const bytes = encodeModel(buildModel());
      for (const cut of [0.3, 0.6, 0.95]) {
        const part = bytes.subarray(0, Math.floor(bytes.length * cut));
        expectFormatError(() => decodeModel(part, { source: 'cut.onnx' }), 'cut.onnx', 'truncated');
      }
    });
  });

  describe('external data', () => {
    // weights.bin: 8 junk bytes, W (24 bytes), 8 junk bytes, D (24 bytes, to the end of the file)
    const file = new Uint8Array(64);
    file.set(tensorToProto('W', w).rawData, 8);
    file.set(tensorToProto('D', d).rawData, 40);

    function external(name: string, t: TensorData, entries: Record<string, string>): onnx.TensorProto.$Properties {
      return {
        name,
        dims: t.dims,
        dataType: dataTypeToEnum(t.dtype),
        dataLocation: onnx.TensorProto.DataLocation.EXTERNAL,
        externalData: Object.entries(entries).map(([key, value]) => ({ key, value })),
      };
    }

    function modelBytes(location = 'weights.bin', offset = '8'): Uint8Array {
      const m = buildModel();
      m.graph!.initializer = [
        external('W', w, { location, offset, length: '24' }),
        external('D', d, { location, offset: '40' }),
      ];
      return encodeModel(m);
    }

    it('loads tensors from the external file into rawData, honouring offset and length', () => {
      const reads: string[] = [];
      const m = decodeModel(modelBytes(), {
        source: 'model.onnx',
        readExternal: (location) => { reads.push(location); return Buffer.from(file); },
      });
      expect(reads).to.deep.equal(['weights.bin']); // read once for both tensors
      const [tw, td] = m.graph!.initializer!;
      expect(tensorFromProto(tw)).to.deep.equal(w);
      expect(tensorFromProto(td)).to.deep.equal(d);
      for (const t of [tw, td]) {
        expect(t.rawData!.buffer.byteLength).to.equal(t.rawData!.length); // a copy, not a view of the file
        expect(t.externalData).to.deep.equal([]);
        expect(t.dataLocation).to.equal(onnx.TensorProto.DataLocation.DEFAULT);
      }
      // re-encoded, it is an ordinary self-contained model
      const again = decodeModel(encodeModel(m));
      expect(tensorFromProto(again.graph!.initializer![1])).to.deep.equal(d);
    });

    it('names tensor, file and model when the external file is missing', () => {
      const msg = "external data file 'weights.bin' for tensor 'W' not found beside model.onnx";
      expectFormatError(() => decodeModel(modelBytes(), { source: 'model.onnx' }), msg);
      expectFormatError(
        () => decodeModel(modelBytes(), { source: 'model.onnx', readExternal: () => { throw new Error('ENOENT'); } }),
        msg, 'ENOENT',
      );
    });

    it('rejects data outside the file or outside the model directory', () => {
      expectFormatError(() => decodeModel(modelBytes('weights.bin', '60'), { source: 'model.onnx', readExternal: () => file }),
        "tensor 'W'", 'model.onnx', 'outside', 'weights.bin');
      for (const bad of ['../weights.bin', '/etc/weights.bin', 'a/../../w.bin', 'C:\\w.bin']) {
        expectFormatError(() => decodeModel(modelBytes(bad), { source: 'model.onnx', readExternal: () => file }),
          "tensor 'W'", bad, "outside the model's directory");
      }
    });
  });

  describe('tensors', () => {
    const samples: TensorData[] = [
      w,
      d,
      shape,
      { dtype: 'int32', dims: [2, 2], data: Int32Array.from([1, -1, 2 ** 31 - 1, -(2 ** 31)]) },
      { dtype: 'bool', dims: [3], data: Uint8Array.from([1, 0, 1]) },
      { dtype: 'uint8', dims: [2], data: Uint8Array.from([0, 255]) },
      { dtype: 'int8', dims: [1, 3], data: Int8Array.from([-128, 0, 127]) },
      { dtype: 'float16', dims: [2], data: Uint16Array.from([0x3c00, 0xc000]) }, // 1.0, -2.0
      { dtype: 'float32', dims: [], data: Float32Array.from([7]) }, // scalar
      { dtype: 'float32', dims: [0, 3], data: new Float32Array(0) }, // empty
    ];

    for (const t of samples) {
      it(`round-trips ${t.dtype}[${t.dims}] through a TensorProto file, also from an odd byte offset`, () => {
        const bytes = encodeTensor(tensorToProto('x', t));
        const p = decodeTensor(bytes, 'x.pb');
        expect(p.dataType).to.equal(dataTypeToEnum(t.dtype));
        expect(tensorFromProto(p)).to.deep.equal(t);
        expect(encodeTensor(p)).to.deep.equal(bytes);

        // rawData as an unaligned view inside a bigger buffer
        const raw = tensorToProto('x', t).rawData;
        const big = new Uint8Array(raw.length + 4);
        big.set(raw, 1);
        const odd = onnx.TensorProto.create({ name: 'x', dims: t.dims, dataType: dataTypeToEnum(t.dtype), rawData: big.subarray(1, 1 + raw.length) });
        expect(tensorFromProto(odd)).to.deep.equal(t);
      });
    }

    it('copies: the result shares no memory with the proto or the input', () => {
      const p = tensorToProto('W', w);
      const back = tensorFromProto(p);
      p.rawData.fill(0);
      expect(back).to.deep.equal(w);
      expect(w.data[0]).to.equal(1);
    });

    it('reads the typed *_data fields', () => {
      expect(tensorFromProto({ name: 'f', dims: [3], dataType: DT.FLOAT, floatData: [1, 2.5, -3] }))
        .to.deep.equal({ dtype: 'float32', dims: [3], data: Float32Array.from([1, 2.5, -3]) });
      expect(tensorFromProto({ name: 'd', dims: [1], dataType: DT.DOUBLE, doubleData: [0.1] }))
        .to.deep.equal({ dtype: 'float64', dims: [1], data: Float64Array.from([0.1]) });
      expect(tensorFromProto({ name: 'b', dims: [2], dataType: DT.BOOL, int32Data: [1, 0] }))
        .to.deep.equal({ dtype: 'bool', dims: [2], data: Uint8Array.from([1, 0]) });

      // int64Data through the wire, with values beyond 2^53
      const bytes = encodeTensor({ name: 'i', dims: [2, 2], dataType: DT.INT64, int64Data: [5, -5, int64FromBigInt(INT64_MAX), int64FromBigInt(INT64_MIN)] });
      expect(tensorFromProto(decodeTensor(bytes)))
        .to.deep.equal({ dtype: 'int64', dims: [2, 2], data: BigInt64Array.from([5n, -5n, INT64_MAX, INT64_MIN]) });
    });

    it('names the tensor when it cannot be read', () => {
      expect(() => tensorFromProto({ name: 'S', dims: [1], dataType: DT.STRING, stringData: [utf8.encode('a')] }))
        .to.throw(OnnxFormatError, "tensor 'S' has unsupported data type STRING (8)");
      expect(() => tensorFromProto({ name: 'R', dims: [3], dataType: DT.FLOAT, rawData: new Uint8Array(8) }))
        .to.throw(OnnxFormatError, "tensor 'R' rawData has 8 bytes, expected 12");
      expect(() => tensorFromProto({ name: 'E', dims: [3], dataType: DT.FLOAT }))
        .to.throw(OnnxFormatError, "tensor 'E' has 0 values, expected 3");
      expect(() => tensorToProto('T', { dtype: 'float32', dims: [4], data: new Float32Array(3) })).to.throw(RangeError, "'T'");
    });

    it('rejects bytes that are not a TensorProto', () => {
      expectFormatError(() => decodeTensor(Uint8Array.from([0xff, 0xff, 0xff]), 'junk.pb'), 'junk.pb', 'not an ONNX tensor');
      expectFormatError(() => decodeTensor(new Uint8Array(0), 'empty.pb'), 'empty.pb', 'not an ONNX tensor');
    });

    it('maps data types and counts elements', () => {
      const all: DataType[] = ['float32', 'float64', 'int64', 'int32', 'bool', 'uint8', 'int8', 'float16'];
      expect(all.map(dataTypeToEnum)).to.deep.equal([DT.FLOAT, DT.DOUBLE, DT.INT64, DT.INT32, DT.BOOL, DT.UINT8, DT.INT8, DT.FLOAT16]);
      for (const t of all) expect(dataTypeFromEnum(dataTypeToEnum(t))).to.equal(t);
      expect(() => dataTypeFromEnum(DT.BFLOAT16)).to.throw(OnnxFormatError, 'BFLOAT16');
      expect(numElements([])).to.equal(1);
      expect(numElements([2, 3, 4])).to.equal(24);
      expect(numElements([2, 0])).to.equal(0);
      expect(() => numElements([2, -1])).to.throw(RangeError);
    });
  });

  describe('real models', () => {
    // Small exported models from the shared fixtures, when present.
    const root = join(dirname(fileURLToPath(import.meta.url)), '../../fixtures/mlp');
    const cases = existsSync(root) ? readdirSync(root).filter((c) => existsSync(join(root, c, 'model.onnx'))) : [];

    it('round-trips every fixture model and input tensor byte for byte', function () {
      if (cases.length === 0) this.skip();
      for (const c of cases) {
        const bytes = new Uint8Array(readFileSync(join(root, c, 'model.onnx')));
        const m = decodeModel(bytes, { source: `${c}/model.onnx` });
        expect(encodeModel(m), c).to.deep.equal(bytes);
        for (const t of m.graph!.initializer!) tensorFromProto(t);
        const x = join(root, c, 'input_x.pb');
        if (existsSync(x)) {
          const tb = new Uint8Array(readFileSync(x));
          const t = decodeTensor(tb, x);
          expect(encodeTensor(t), x).to.deep.equal(tb);
          expect(tensorFromProto(t).data.length).to.equal(numElements(tensorFromProto(t).dims));
        }
      }
    });
  });
});
