// The captured activations a and pre-activation gradients dL/dh of each layer against the
// parameter gradients: for h = alpha·a·Wᵀ + beta·b (Gemm, W stored [out, in]) the weight gradient
// is alpha·dHᵀ·A and the bias gradient beta·Σ_rows dH; for a MatMul(+Add) layer (W stored
// [in, out]) it is Aᵀ·dH and Σ_rows dH, rows being every leading axis folded together. A closed
// form that does not go through the backward rules of Gemm/MatMul for W.
import { expect } from 'chai';
import { buildTrainingGraph, encodeModel, outName, toFloat64, type LossSpec, type onnx, type TensorData } from '../../../graph-tools/index.js';
import { createBackend, type Backend, type Tensor } from '../../../lib/runtime/index.js';
import { computeGradients } from '../../../lib/train/gradients.js';
import { inferValues, randomTarget } from '../../helpers/gradcheck.js';
import { ModelBuilder } from '../../helpers/models.js';

const f64 = (t: TensorData): TensorData => (t.dtype === 'float32' ? { dtype: 'float64', dims: t.dims, data: Float64Array.from(t.data as Float32Array) } : t);

/** Runs the float64 training graph with activations and pre-activation gradients captured. */
async function capture(backend: Backend, model: onnx.ModelProto, loss: LossSpec, inputs: Record<string, TensorData>, target: TensorData) {
  const tg = buildTrainingGraph(model, { ...loss, capture: { activations: true, preactivationGradients: true } });
  toFloat64(tg.graph);
  const session = await backend.createSession(encodeModel(tg.toModel()), { name: 'capture' });
  try {
    const feeds: Record<string, Tensor> = {};
    const put = (name: string, t: TensorData) => { const w = f64(t); feeds[name] = backend.tensor(w.dtype as 'float64', w.data as never, w.dims); };
    for (const d of tg.dataInputs) put(d.name, inputs[d.name]);
    put(tg.target.name, target);
    for (const [p, v] of tg.initialParameters) put(p, v);
    const out = await session.run(feeds);
    const read = async (name: string) => ({ dims: [...out[name].dims], data: Float64Array.from(await backend.read(out[name]) as Float64Array) });
    const values = new Map<string, { dims: number[]; data: Float64Array }>();
    for (const name of session.outputNames) values.set(name, await read(name));
    return { tg, values };
  } finally {
    await session.release();
  }
}

function maxRel(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  expect(actual.length).to.equal(expected.length);
  let d = 0; let s = 1e-300;
  for (let i = 0; i < actual.length; i++) { d = Math.max(d, Math.abs(actual[i] - expected[i])); s = Math.max(s, Math.abs(expected[i])); }
  return d / s;
}

describe('autodiff: parameter gradients from captured activations and pre-activation gradients', () => {
  let backend: Backend;
  before(async () => { backend = await createBackend('cpu'); });

  const cases: { name: string; loss: LossSpec; build: (b: ModelBuilder) => string }[] = [
    {
      name: 'Gemm transB=1 → Tanh → Gemm transB=1 (alpha=0.7, beta=1.3), cross-entropy',
      loss: { kind: 'cross-entropy', reduction: 'mean' },
      build: (b) => b.gemm(b.node('Tanh', [b.gemm(b.input('x', ['N', 5], [6, 5]), 5, 4, { transB: true })]), 4, 3, { transB: true, alpha: 0.7, beta: 1.3 }),
    },
    {
      name: 'Gemm transB=0 bias [1,out] → Sigmoid → MatMul+Add, mse',
      loss: { kind: 'mse', reduction: 'mean' },
      build: (b) => b.matmul(b.node('Sigmoid', [b.gemm(b.input('x', ['N', 3], [5, 3]), 3, 4, { bias: 'row', alpha: 1.2 })]), 4, 2, { bias: 'vec' }),
    },
    {
      name: 'MatMul+Add on [N,2,3] (rows = N·2) → Tanh → Flatten → Gemm, bce-with-logits',
      loss: { kind: 'bce-with-logits', reduction: 'sum' },
      build: (b) => b.gemm(b.node('Flatten', [b.node('Tanh', [b.matmul(b.input('x', ['N', 2, 3], [4, 2, 3]), 3, 4, { bias: 'vec' })])]), 8, 2),
    },
  ];

  for (const c of cases) {
    it(c.name, async () => {
      const b = new ModelBuilder(11);
      const model = b.model(c.build(b));
      const outDims = (await inferValues(backend, model, b.data)).values().next().value!.dims;
      const target = randomTarget(c.loss, outDims, b.rng);
      const { tg, values } = await capture(backend, model, c.loss, b.data, target);
      const viaApi = await computeGradients(backend, model, { ...c.loss, inputs: b.data, target });
      expect(tg.report.layers.length).to.be.at.least(2);
      for (const layer of tg.report.layers) {
        const a = values.get(outName.activation(layer.input))!;
        const dh = values.get(outName.preactivationGrad(layer.preactivation))!;
        const inF = layer.inFeatures; const outF = layer.outFeatures;
        const rows = dh.data.length / outF;
        expect(a.data.length).to.equal(rows * inF);
        // dW in the initializer's own layout, and db.
        const dW = new Float64Array(inF * outF);
        const db = new Float64Array(outF);
        for (let r = 0; r < rows; r++) {
          for (let o = 0; o < outF; o++) {
            const g = dh.data[r * outF + o];
            db[o] += layer.beta * g;
            for (let i = 0; i < inF; i++) {
              const k = layer.weightLayout === 'out-in' ? o * inF + i : i * outF + o;
              dW[k] += layer.alpha * g * a.data[r * inF + i];
            }
          }
        }
        expect(maxRel(values.get(outName.grad(layer.weight))!.data, dW), `${layer.name} weight`).to.be.below(1e-12);
        if (layer.bias) expect(maxRel(values.get(outName.grad(layer.bias))!.data, db), `${layer.name} bias`).to.be.below(1e-12);
        // computeGradients reports the same pre-activation gradients and parameter gradients.
        expect(maxRel(viaApi.preactivationGradients.get(layer.preactivation)!, dh.data)).to.be.below(1e-14);
        expect(maxRel(viaApi.gradients.get(layer.weight)!, dW)).to.be.below(1e-12);
      }
    });
  }
});
