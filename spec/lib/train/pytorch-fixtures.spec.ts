// kfqn's loss, parameter gradients and pre-activation gradients against PyTorch float64
// references exported by scripts/fixtures/make_mlp_fixtures.py.
import { expect } from 'chai';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { readModelFile, readTensorFile } from '../../../lib/io/files.js';
import { createBackend } from '../../../lib/runtime/index.js';
import { computeGradients } from '../../../lib/train/gradients.js';
import type { LossKind, Reduction } from '../../../graph-tools/index.js';
import { relError } from '../../helpers/train.js';

// MLPs run in float64 (to 1e-7); graphs with Conv run in float32 (ORT has no float64 Conv), which
// the check allows: loss within 1e-5 and gradients within 1e-4 of PyTorch float64.
const suites = [{ root: 'spec/fixtures/mlp', min: 10 }, { root: 'spec/fixtures/cnn', min: 8 }];

interface Reference {
  loss: number; loss_kind: LossKind; reduction: Reduction; inputs: string[];
  gradients: Record<string, number[]>; preactivation_gradients: Record<string, number[]>;
  identity_aliases?: Record<string, string>; alias_gradients?: Record<string, number[]>;
  /** Frozen BatchNormalization scale and bias gradients (CNN fixtures with BN nodes kept). */
  batchnorm_gradients?: Record<string, number[]>;
  /** LayerNormalization scale and bias gradients. */
  normalization_gradients?: Record<string, number[]>;
  /** 'train': the reference normalises with batch statistics (PyTorch train-mode BatchNorm). */
  batchnorm_mode?: 'frozen' | 'train';
}

for (const { root, min } of suites) describe(`gradients against PyTorch float64 fixtures (${root})`, () => {
  const cases = readdirSync(root).filter((d) => existsSync(join(root, d, 'reference.json')));
  it('has fixtures', () => expect(cases.length).to.be.at.least(min));
  for (const name of cases) {
    it(name, async () => {
      const dir = join(root, name);
      const ref = JSON.parse(readFileSync(join(dir, 'reference.json'), 'utf8')) as Reference;
      const inputs = Object.fromEntries(ref.inputs.map((i) => [i, readTensorFile(join(dir, `input_${i}.pb`))]));
      const result = await computeGradients(await createBackend('cpu'), readModelFile(join(dir, 'model.onnx')), {
        kind: ref.loss_kind, reduction: ref.reduction, inputs, target: readTensorFile(join(dir, 'target.pb')), batchnorm: ref.batchnorm_mode,
      });
      const tol = result.dtype === 'float64' ? { loss: 1e-9, grad: 1e-7, floor: 1e-6 } : { loss: 1e-6, grad: 1e-4, floor: 1e-2 };
      expect(Math.abs(result.loss - ref.loss)).to.be.below(tol.loss * Math.max(1, Math.abs(ref.loss)));
      // An Identity-aliased parameter is untied, as PyTorch's own parameters are: each layer
      // gets its own share; the shared initializer keeps the rest.
      const expected = { ...ref.gradients, ...ref.batchnorm_gradients, ...ref.normalization_gradients };
      for (const [alias, source] of Object.entries(ref.identity_aliases ?? {})) {
        const share = ref.alias_gradients![alias];
        expected[alias] = share;
        expected[source] = expected[source].map((v, i) => v - share[i]);
      }
      expect([...result.gradients.keys()].sort()).to.deep.equal(Object.keys(expected).sort());
      // Relative to the tensor's own scale, floored at a share of the largest gradient (1e-6 in
      // float64, 1e-2 in float32): a bias right before a batch-statistics BatchNormalization has an
      // exactly-zero gradient, of which both sides hold only rounding noise.
      const largest = Math.max(...Object.values(expected).flatMap((g) => g.map(Math.abs)));
      for (const [p, g] of Object.entries(expected)) {
        const actual = result.gradients.get(p)!;
        const diff = Math.max(...g.map((v, i) => Math.abs(actual[i] - v)));
        expect(diff / Math.max(...g.map(Math.abs), tol.floor * largest), p).to.be.below(tol.grad);
      }
      expect([...result.preactivationGradients.keys()].sort()).to.deep.equal(Object.keys(ref.preactivation_gradients).sort());
      for (const [h, g] of Object.entries(ref.preactivation_gradients)) expect(relError(result.preactivationGradients.get(h)!, g), h).to.be.below(tol.grad);
    });
  }
});
