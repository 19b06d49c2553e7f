// The plug-in surface: a training loop of the caller's own (its own ORT sessions on a graph like
// `kfqn augment --capture gradients,a-factors,means` builds) drives KbfgsStepper, which must track
// the float64 K-BFGS reference exactly as the Trainer does.
import { expect } from 'chai';
import * as ort from 'onnxruntime-node';
import { buildTrainingGraph, encodeModel } from '../../../graph-tools/index.js';
import { kbfgs, kbfgsL } from '../../../lib/optim/index.js';
import { createBackend } from '../../../lib/runtime/index.js';
import { KbfgsStepper } from '../../../lib/train/kbfgs-stepper.js';
import { KbfgsReference } from '../../helpers/kbfgs-reference.js';
import { cloneRefMlp, makeRefMlp } from '../../helpers/mlp-reference.js';
import { activations, data, expectParametersMatch, M, sizes, toOnnx } from '../../helpers/tiny-autoencoder.js';

const spec = { kind: 'bce-with-logits', reduction: 'per-sample-sum' } as const;

for (const [name, memory] of [['kbfgs', undefined], ['kbfgs-l, p = 2', 2]] as const) {
  describe(`KbfgsStepper (plug-in surface) against the float64 reference: ${name}`, () => {
    it('a loop on the caller\'s own onnxruntime-node session tracks the reference for 6 steps', async () => {
      const net = makeRefMlp(sizes, [...activations], spec, 3);
      for (const layer of net.layers) { layer.W = Float64Array.from(Float32Array.from(layer.W)); layer.b = Float64Array.from(Float32Array.from(layer.b)); }
      const model = toOnnx(net);
      // The caller's side: an augmented graph and a plain onnxruntime-node session.
      const augmented = buildTrainingGraph(model, { ...spec, capture: { gradients: true, statistics: { factors: true, means: true } } });
      const session = await ort.InferenceSession.create(encodeModel(augmented.toModel()));
      const X = data(7);
      const batch = { x: new ort.Tensor('float32', X, [M, sizes[0]]), [augmented.target.name]: new ort.Tensor('float32', X, [M, sizes[0]]) };
      let params: Record<string, ort.Tensor> = Object.fromEntries([...augmented.initialParameters].map(([p, t]) => [p, new ort.Tensor('float32', t.data as Float32Array, t.dims)]));
      const opts = { lr: 0.3, damping: 0.3, warmStart: false };
      const stepper = await KbfgsStepper.create(await createBackend('cpu'), model, memory === undefined ? kbfgs(opts) : kbfgsL({ ...opts, history: memory }));
      expect(stepper.layers.map((l) => l.name)).to.have.length(sizes.length - 1);
      const ref = new KbfgsReference({ lr: 0.3, damping: 0.3, memory });
      const refNet = cloneRefMlp(net);
      try {
        for (let step = 1; step <= 6; step++) {
          const expected = ref.step(refNet, Float64Array.from(X), Float64Array.from(X));
          const outputs = await session.run({ ...batch, ...params });
          const loss = Number(outputs[augmented.outputs.loss].data[0]);
          expect(Math.abs(loss - expected.loss) / expected.loss, `loss at step ${step}`).to.be.below(1e-5);
          const result = await stepper.step({ params, outputs, loss, secondPass: (next) => session.run({ ...batch, ...next }) });
          expect(result.skipped).to.equal(false);
          params = result.params as Record<string, ort.Tensor>;
          expectParametersMatch(new Map(Object.entries(params).map(([k, t]) => [k, { data: t.data as Float32Array }])), refNet, step);
        }
      } finally {
        await stepper.release();
        await session.release();
      }
    });
  });
}

describe('KbfgsStepper: bad input', () => {
  it('names the missing output and how to capture it; a non-finite loss skips the step', async () => {
    const model = toOnnx(makeRefMlp(sizes, [...activations], spec, 3));
    const stepper = await KbfgsStepper.create(await createBackend('cpu'), model, kbfgs({ warmStart: false }));
    const params = { W0: new ort.Tensor('float32', new Float32Array(sizes[1] * sizes[0]), [sizes[1], sizes[0]]) };
    try {
      const skipped = await stepper.step({ params, outputs: {}, loss: NaN, secondPass: async () => ({}) });
      expect(skipped.skipped).to.equal(true);
      expect(skipped.params).to.equal(params);
      let message = '';
      try { await stepper.step({ params, outputs: {}, secondPass: async () => ({}) }); } catch (e) { message = (e as Error).message; }
      expect(message).to.match(/lack 'kfqn:A:.*'.*kfqn augment/);
    } finally {
      await stepper.release();
    }
  });

  it('refuses a curvature interval, which only the Trainer applies', async () => {
    const model = toOnnx(makeRefMlp(sizes, [...activations], spec, 3));
    let message = '';
    try { await KbfgsStepper.create(await createBackend('cpu'), model, kbfgs({ warmStart: false, curvatureInterval: 2 })); } catch (e) { message = (e as Error).message; }
    expect(message).to.match(/curvatureInterval 2 is an option of the Trainer/);
  });

  it('refuses gInit factor, whose gradient factor it is not handed', async () => {
    const model = toOnnx(makeRefMlp(sizes, [...activations], spec, 3));
    let message = '';
    try { await KbfgsStepper.create(await createBackend('cpu'), model, kbfgs({ warmStart: false, gInit: 'factor' })); } catch (e) { message = (e as Error).message; }
    expect(message).to.match(/gInit 'factor' needs the gradient factor G/);
  });
});
