// Erf has no float64 kernel in ORT, so GELU (x·½·(1 + erf(x/√2)), as PyTorch exports it) is checked
// in float32 against a closed-form float64 backward pass written out in TypeScript.
import { expect } from 'chai';
import { createBackend } from '../../../lib/runtime/index.js';
import { computeGradients } from '../../../lib/train/gradients.js';
import { ModelBuilder } from '../../helpers/models.js';
import { relError } from '../../helpers/train.js';

/** erf to ~1e-12 (Taylor series for |x| < 3, continued fraction beyond). */
function erf(x: number): number {
  const ax = Math.abs(x);
  if (ax < 3) {
    let sum = 0; let term = ax;
    for (let n = 0; n < 60; n++) { sum += term / (2 * n + 1); term *= -ax * ax / (n + 1); }
    return Math.sign(x) * (2 / Math.sqrt(Math.PI)) * sum;
  }
  let f = 0;
  for (let n = 60; n >= 1; n--) f = (n / 2) / (ax + f);
  return Math.sign(x) * (1 - Math.exp(-ax * ax) / Math.sqrt(Math.PI) / (ax + f));
}

describe('autodiff: Erf (GELU) against a closed-form float64 reference', () => {
  it('x → Gemm → GELU → Gemm → squared error: every gradient within 1e-4', async () => {
    const [n, i, h, o] = [5, 3, 4, 2];
    const b = new ModelBuilder(21);
    const x = b.input('x', ['N', i], [n, i], -2, 2);
    const hv = b.gemm(x, i, h, { transB: true, scale: 1.2 });
    const erfOut = b.node('Erf', [b.node('Div', [hv, b.init('sqrt2', [], [Math.SQRT2])])]);
    const gelu = b.node('Mul', [b.node('Mul', [hv, b.node('Add', [erfOut, b.init('one', [], [1])])]), b.init('half', [], [0.5])]);
    const model = b.model(b.gemm(gelu, h, o, { transB: true }));
    const [W1, b1, W2, b2] = b.initializers.filter((t) => t.dtype === 'float32' && t.dims.length > 0 && t.name !== 'sqrt2').map((t) => t.values);
    const X = Array.from(b.data.x.data as Float32Array);
    const T = Array.from({ length: n * o }, (_, k) => Math.sin(k));

    // Forward and backward in float64.
    const H = Array.from({ length: n * h }, (_, k) => b1[k % h] + Array.from({ length: i }, (_, q) => X[Math.floor(k / h) * i + q] * W1[(k % h) * i + q]).reduce((s, v) => s + v, 0));
    const Phi = H.map((v) => 0.5 * (1 + erf(v / Math.SQRT2)));
    const Agelu = H.map((v, k) => v * Phi[k]);
    const Y = Array.from({ length: n * o }, (_, k) => b2[k % o] + Array.from({ length: h }, (_, q) => Agelu[Math.floor(k / o) * h + q] * W2[(k % o) * h + q]).reduce((s, v) => s + v, 0));
    const dY = Y.map((v, k) => 2 * (v - T[k]));
    const gW2 = Array.from({ length: o * h }, (_, k) => Array.from({ length: n }, (_, r) => dY[r * o + Math.floor(k / h)] * Agelu[r * h + (k % h)]).reduce((s, v) => s + v, 0));
    const gb2 = Array.from({ length: o }, (_, c) => Array.from({ length: n }, (_, r) => dY[r * o + c]).reduce((s, v) => s + v, 0));
    const dA = Array.from({ length: n * h }, (_, k) => Array.from({ length: o }, (_, c) => dY[Math.floor(k / h) * o + c] * W2[c * h + (k % h)]).reduce((s, v) => s + v, 0));
    const dH = dA.map((v, k) => v * (Phi[k] + H[k] * Math.exp(-H[k] * H[k] / 2) / Math.sqrt(2 * Math.PI)));
    const gW1 = Array.from({ length: h * i }, (_, k) => Array.from({ length: n }, (_, r) => dH[r * h + Math.floor(k / i)] * X[r * i + (k % i)]).reduce((s, v) => s + v, 0));
    const gb1 = Array.from({ length: h }, (_, c) => Array.from({ length: n }, (_, r) => dH[r * h + c]).reduce((s, v) => s + v, 0));

    const r = await computeGradients(await createBackend('cpu'), model, {
      kind: 'mse', reduction: 'sum', inputs: b.data, target: { dtype: 'float32', dims: [n, o], data: Float32Array.from(T) },
    });
    expect(r.dtype, 'Erf forces float32').to.equal('float32');
    const names = [...r.gradients.keys()];
    expect(names).to.have.length(4);
    const expected = [gW1, gb1, gW2, gb2];
    names.forEach((p, k) => expect(relError(r.gradients.get(p)!, expected[k]), p).to.be.below(1e-4));
    expect(relError(r.preactivationGradients.get(hv)!, dH), 'dL/dh').to.be.below(1e-4);
    expect(Math.abs(r.loss - Y.reduce((s, v, k) => s + (v - T[k]) ** 2, 0))).to.be.below(1e-4);
  });
});
