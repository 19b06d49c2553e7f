// Each loss × reduction against closed forms in plain TypeScript float64: the model is one
// Gemm (or MatMul+Add for a 3-D output), so the loss sees raw logits, which are computed here
// too; dLoss/dlogits is that layer's pre-activation gradient.
import { expect } from 'chai';
import { buildTrainingGraph, encodeModel, LOSSES, REDUCTIONS, type LossKind, type LossSpec, type Reduction, type TensorData } from '../../graph-tools/index.js';
import { createBackend, type Backend } from '../../lib/runtime/index.js';
import { computeGradients } from '../../lib/train/gradients.js';
import { ModelBuilder, tensor, type Rng } from '../helpers/models.js';

interface Setup {
  b: ModelBuilder;
  output: string;
  /** Logits in float64 from the float32 inputs and parameters, row-major. */
  logits: Float64Array;
  dims: number[];
}

const values = (b: ModelBuilder, name: string) => b.initializers.find((t) => t.name === name)!.values;

/** x [n, k] → Gemm(transB=1) → logits [n, c]. */
function gemmLogits(seed: number, n: number, k: number, c: number, weightScale = 0.8): Setup {
  const b = new ModelBuilder(seed);
  const x = b.input('x', ['N', k], [n, k]);
  const output = b.gemm(x, k, c, { transB: true, scale: weightScale });
  const xs = b.data.x.data as Float32Array; const w = values(b, 'W1'); const bias = values(b, 'b1');
  const logits = new Float64Array(n * c);
  for (let i = 0; i < n; i++) for (let j = 0; j < c; j++) {
    let s = bias[j];
    for (let q = 0; q < k; q++) s += xs[i * k + q] * w[j * k + q];
    logits[i * c + j] = s;
  }
  return { b, output, logits, dims: [n, c] };
}

/** x [n, s, k] → MatMul + Add → logits [n, s, c]. */
function matmulLogits3d(seed: number, n: number, s: number, k: number, c: number): Setup {
  const b = new ModelBuilder(seed);
  const x = b.input('x', ['N', s, k], [n, s, k]);
  const output = b.matmul(x, k, c, { bias: 'vec' });
  const xs = b.data.x.data as Float32Array; const w = values(b, 'W1'); const bias = values(b, 'b1');
  const logits = new Float64Array(n * s * c);
  for (let r = 0; r < n * s; r++) for (let j = 0; j < c; j++) {
    let v = bias[j];
    for (let q = 0; q < k; q++) v += xs[r * k + q] * w[q * c + j];
    logits[r * c + j] = v;
  }
  return { b, output, logits, dims: [n, s, c] };
}

function makeTarget(kind: LossKind, dims: number[], rng: Rng): { t: TensorData; values: number[] } {
  const n = dims.reduce((a, d) => a * d, 1);
  if (kind === 'cross-entropy') {
    const ids = Array.from({ length: dims[0] }, () => rng.int(dims[1]));
    return { t: tensor([dims[0]], ids, 'int64'), values: ids };
  }
  // bce: soft labels in [0, 1] with some exact 0s and 1s; mse: anything.
  const v = kind === 'bce-with-logits'
    ? Array.from({ length: n }, (_, i) => (i % 5 === 0 ? 0 : i % 5 === 1 ? 1 : Math.fround(rng.next())))
    : rng.array(n, -2, 2);
  return { t: tensor(dims, v), values: v };
}

/** The closed-form loss and dLoss/dlogits. */
function reference(kind: LossKind, reduction: Reduction, z: Float64Array, dims: number[], target: number[]): { loss: number; grad: Float64Array } {
  const n = dims[0];
  const total = z.length;
  const grad = new Float64Array(total);
  let sum = 0;
  if (kind === 'cross-entropy') {
    const c = dims[1];
    for (let i = 0; i < n; i++) {
      const row = z.subarray(i * c, (i + 1) * c);
      const m = Math.max(...row);
      let se = 0;
      for (const v of row) se += Math.exp(v - m);
      const lse = m + Math.log(se);
      sum += lse - row[target[i]];
      for (let j = 0; j < c; j++) grad[i * c + j] = Math.exp(row[j] - lse) - (j === target[i] ? 1 : 0);
    }
    // Mean over the batch for both 'mean' and 'per-sample-sum' (one term per sample).
    const scale = reduction === 'sum' ? 1 : 1 / n;
    return { loss: sum * scale, grad: grad.map((g) => g * scale) };
  }
  for (let i = 0; i < total; i++) {
    const x = z[i]; const t = target[i];
    if (kind === 'mse') {
      sum += (x - t) ** 2;
      grad[i] = 2 * (x - t);
    } else {
      sum += Math.max(x, 0) - x * t + Math.log1p(Math.exp(-Math.abs(x)));
      const sig = x >= 0 ? 1 / (1 + Math.exp(-x)) : Math.exp(x) / (1 + Math.exp(x));
      grad[i] = sig - t;
    }
  }
  const scale = reduction === 'sum' ? 1 : reduction === 'mean' ? 1 / total : 1 / n;
  return { loss: sum * scale, grad: grad.map((g) => g * scale) };
}

function maxRel(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  expect(actual.length).to.equal(expected.length);
  let d = 0; let s = 1e-300;
  for (let i = 0; i < actual.length; i++) { d = Math.max(d, Math.abs(actual[i] - expected[i])); s = Math.max(s, Math.abs(expected[i])); }
  return d / s;
}

describe('losses against closed forms (float64)', () => {
  let backend: Backend;
  before(async () => { backend = await createBackend('cpu'); });

  it('covers every loss and reduction', () => {
    expect([...LOSSES]).to.have.members(['cross-entropy', 'mse', 'bce-with-logits']);
    expect([...REDUCTIONS]).to.have.members(['mean', 'sum', 'per-sample-sum']);
  });

  async function check(setup: Setup, spec: LossSpec) {
    const { b, output, logits, dims } = setup;
    const target = makeTarget(spec.kind, dims, b.rng);
    const ref = reference(spec.kind, spec.reduction, logits, dims, target.values);
    const opts = { ...spec, inputs: b.data, target: target.t };
    const r = await computeGradients(backend, b.model(output), opts);
    expect(Math.abs(r.loss - ref.loss), `loss ${r.loss} vs ${ref.loss}`).to.be.below(1e-12 * Math.max(1, Math.abs(ref.loss)));
    expect([...r.preactivationGradients.keys()]).to.deep.equal([output]);
    expect(maxRel(r.preactivationGradients.get(output)!, ref.grad), 'dL/dlogits').to.be.below(1e-12);
    // The float32 graph: same values to float32 accuracy, and finite.
    const r32 = await computeGradients(backend, b.model(output), { ...opts, dtype: 'float32' });
    expect(Number.isFinite(r32.loss)).to.equal(true);
    expect(Math.abs(r32.loss - ref.loss), `float32 loss ${r32.loss} vs ${ref.loss}`).to.be.below(1e-5 * Math.max(1, Math.abs(ref.loss)));
    expect(maxRel(r32.preactivationGradients.get(output)!, ref.grad), 'float32 dL/dlogits').to.be.below(1e-5);
    return { ref, target };
  }

  for (const kind of LOSSES) {
    for (const reduction of REDUCTIONS) {
      it(`${kind}, ${reduction}: logits [5,3]`, async () => {
        await check(gemmLogits(21, 5, 4, 3), { kind, reduction });
      });
    }
  }

  for (const kind of ['mse', 'bce-with-logits'] as const) {
    for (const reduction of REDUCTIONS) {
      it(`${kind}, ${reduction}: 3-D output [4,2,3] (mean: over all 24 elements; per-sample-sum: sum / 4)`, async () => {
        const setup = matmulLogits3d(31, 4, 2, 5, 3);
        const { ref, target } = await check(setup, { kind, reduction });
        // The reductions relate as documented: sum = 24·mean = 4·per-sample-sum.
        const sum = reference(kind, 'sum', setup.logits, setup.dims, target.values).loss;
        const expected = reduction === 'sum' ? sum : reduction === 'mean' ? sum / 24 : sum / 4;
        expect(ref.loss).to.be.closeTo(expected, 1e-12 * Math.abs(sum));
      });
    }
  }

  describe('large logits (|x| ~ 50): stable in float64 and float32', () => {
    for (const reduction of REDUCTIONS) {
      it(`bce-with-logits, ${reduction}`, async () => {
        const setup = gemmLogits(41, 6, 4, 5, 50);
        const big = setup.logits.filter((v) => Math.abs(v) > 40).length;
        expect(big, 'logits beyond ±40').to.be.at.least(3);
        expect(Math.min(...setup.logits), 'some large negative logits').to.be.below(-30);
        expect(Math.max(...setup.logits), 'some large positive logits').to.be.above(30);
        await check(setup, { kind: 'bce-with-logits', reduction });
      });
    }
    it('bce-with-logits, mean, logits beyond ±100 (e^x overflows float32)', async () => {
      const setup = gemmLogits(41, 6, 4, 5, 150);
      expect(Math.min(...setup.logits)).to.be.below(-100);
      expect(Math.max(...setup.logits)).to.be.above(100);
      await check(setup, { kind: 'bce-with-logits', reduction: 'mean' });
    });
    it('cross-entropy, mean', async () => {
      const setup = gemmLogits(43, 6, 4, 5, 40);
      expect(Math.max(...setup.logits.map(Math.abs))).to.be.above(40);
      await check(setup, { kind: 'cross-entropy', reduction: 'mean' });
    });
  });
});

// KFAC's Fisher statistics take the loss against targets drawn from the model itself. At the
// output layer g = per-sample ∂ℓ/∂z, and E[g gᵀ] over the draws has a closed form per loss:
// bce: diag σ(1−σ); cross-entropy: diag p − p pᵀ; mse (ℓ = (z−t)², t ~ N(z, ½)): 2·I. Averaged
// over many session runs (fresh draws each run), the G factor must approach that mean.
describe('graph-tools/losses: targets sampled from the model (sampleTargets)', () => {
  let backend: Backend;
  before(async () => { backend = await createBackend('cpu'); });
  const n = 6; const c = 3; const runs = 400;
  const closedForms: Record<LossKind, (z: Float64Array) => number[]> = {
    'bce-with-logits': (z) => fisherMean(n, c, (i, p, q) => { const s = 1 / (1 + Math.exp(-z[i * c + p])); return p === q ? s * (1 - s) : 0; }),
    'cross-entropy': (z) => fisherMean(n, c, (i, p, q) => {
      const row = Array.from({ length: c }, (_, j) => Math.exp(z[i * c + j]));
      const sum = row.reduce((a, b) => a + b, 0);
      return (p === q ? row[p] / sum : 0) - (row[p] / sum) * (row[q] / sum);
    }),
    mse: () => fisherMean(n, c, (_i, p, q) => (p === q ? 2 : 0)),
  };
  for (const kind of LOSSES) {
    it(`${kind}: the mean G over ${runs} draws approaches the Fisher's closed form`, async () => {
      const s = gemmLogits(91, n, 4, c, 1.5);
      const tg = buildTrainingGraph(s.b.model(s.output), {
        kind, reduction: 'per-sample-sum', sampleTargets: true, parameterGradients: false,
        capture: { gradients: false, statistics: { gradientFactors: true } },
      });
      const session = await backend.createSession(encodeModel(tg.toModel()), { name: 'sampled Fisher' });
      const feeds = {
        x: backend.tensor('float32', s.b.data.x.data as Float32Array, s.b.data.x.dims),
        // The real target is declared but ignored: garbage must not change anything.
        [tg.target.name]: kind === 'cross-entropy' ? backend.tensor('int64', new BigInt64Array(n).fill(99n), [n]) : backend.tensor('float32', new Float32Array(n * c).fill(1e6), [n, c]),
        ...Object.fromEntries([...tg.initialParameters].map(([p, t]) => [p, backend.tensor('float32', t.data as Float32Array, t.dims)])),
      };
      const name = tg.outputs.statistics.get(tg.report.layers[0].name)!.g!;
      const mean = new Float64Array(c * c);
      const first = Array.from((await session.run(feeds))[name].data as Float32Array);
      let differs = false;
      for (let r = 0; r < runs; r++) {
        const g = (await session.run(feeds))[name].data as Float32Array;
        g.forEach((v, k) => { mean[k] += v / runs; });
        if (g.some((v, k) => v !== first[k])) differs = true;
      }
      await session.release();
      expect(differs, 'each run draws new targets').to.equal(true);
      const expected = closedForms[kind](s.logits);
      const scale = Math.max(...expected.map(Math.abs));
      for (let k = 0; k < c * c; k++) expect(Math.abs(mean[k] - expected[k]), `G[${k}]`).to.be.below(0.08 * scale);
    });
  }
});

/** (1/n) Σ_i F_i[p][q] as a row-major c × c matrix. */
function fisherMean(n: number, c: number, f: (i: number, p: number, q: number) => number): number[] {
  const out: number[] = [];
  for (let p = 0; p < c; p++) for (let q = 0; q < c; q++) { let s = 0; for (let i = 0; i < n; i++) s += f(i, p, q); out.push(s / n); }
  return out;
}
