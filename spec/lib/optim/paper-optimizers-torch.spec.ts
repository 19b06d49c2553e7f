// Issue 4's check, run here: `kfqn train` with the issue's flags on an autoencoder and digits in
// file order, against the per-step losses of an independent PyTorch implementation of the K-BFGS
// paper's optimizers that follows the authors' public code (scripts/fixtures/
// paper_optimizers_torch.py; fixtures made by make_paper_optimizer_fixtures.py in float64). Not
// our float64 TypeScript references: those are written from ALGORITHMS.md, so a misreading shared
// by them and the engines would pass there and fail here.
import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { tensorFromProto } from '../../../graph-tools/index.js';
import { readModelFile } from '../../../lib/io/files.js';
import { readJsonLines, removeTempDir, runCli, tempDir } from '../../helpers/cli.js';

const dir = 'spec/fixtures/paper-optimizers';

interface Case {
  /** The case's flags after the common ones (optimizer, α, λ, ...). */
  cli: string[];
  losses: number[]; final: Record<string, Summary>;
  /** K-BFGS: the shares of layers whose G-side pair was Powell-damped, and whose update was skipped, each step. */
  powell_damped?: number[]; skipped_updates?: number[];
  /** The same PyTorch run in float32. */
  float32_losses: number[]; float32_final: Record<string, Summary>;
}
/** A trained parameter: its size, its Frobenius norm and a few [flat index, value] entries. */
interface Summary { size: number; norm: number; entries: [number, number][] }
const reference = JSON.parse(readFileSync(join(dir, 'reference.json'), 'utf8')) as { limit: number; batch_size: number; steps: number; cases: Record<string, Case> };

/** The command line for a case, with extra flags (the mutations below). */
async function train(c: Case, out: string, extra: string[] = []) {
  const log = join(out, 'log.jsonl');
  const model = join(out, 'trained.onnx');
  const r = await runCli([
    'train', join(dir, 'autoencoder.onnx'), '--data', `idx:${dir}`, '--limit', String(reference.limit), '--no-shuffle',
    '--batch-size', String(reference.batch_size), '--steps', String(reference.steps), '--target', 'input', '--loss', 'bce-with-logits',
    '--reduction', 'per-sample-sum', ...c.cli, '--log', log, '--out', model, '--quiet', ...extra,
  ]);
  expect(r.code, r.stderr).to.equal(0);
  const steps = readJsonLines(log).filter((l) => 'step' in l) as { loss: number; powell_damped?: number; skipped_updates?: number }[];
  return { steps, model };
}

/** The largest relative deviation of a run's per-step losses from the reference's. */
const lossDeviation = (ours: number[], theirs: number[]) => Math.max(...theirs.map((t, i) => Math.abs(ours[i] - t) / Math.abs(t)));

// We run in float32 against a float64 reference, so each tolerance is a multiple of how far the
// same PyTorch run moves in float32 (4×, with a floor): room for ORT's other summation order, not
// for another algorithm (the mutations below move the losses by 1e-3 and more).
const SLACK = 4;
const lossTolerance = (c: Case) => Math.max(2e-4, SLACK * lossDeviation(c.float32_losses, c.losses));
/** Our trained parameter, summarised at the reference's entries. */
const summarise = (w: Float32Array, ref: Summary): Summary => ({ size: w.length, norm: Math.hypot(...w), entries: ref.entries.map(([i]) => [i, w[i]]) });
/** A summary's deviation from the reference's: the norm's, relative, and the entries', relative to the RMS (entries near 0 are not held to a share of themselves). */
function deviation(s: Summary, ref: Summary) {
  const rms = ref.norm / Math.sqrt(ref.size);
  return { norm: Math.abs(s.norm - ref.norm) / ref.norm, entries: Math.max(...ref.entries.map(([, v], k) => Math.abs(s.entries[k][1] - v) / rms)) };
}

describe('The K-BFGS paper\'s optimizers against a PyTorch implementation of the authors\' code (issue 4\'s check)', function () {
  this.timeout(120000);
  let out: string;
  beforeEach(() => { out = tempDir(); });
  afterEach(() => removeTempDir(out));

  for (const [name, c] of Object.entries(reference.cases)) {
    it(`${name} (${c.cli.join(' ')}): per-step losses${c.powell_damped ? ', Powell and skip shares' : ''}, and the trained weights`, async () => {
      const { steps, model } = await train(c, out);
      expect(steps).to.have.length(reference.steps);
      const ours = steps.map((s) => s.loss);
      expect(lossDeviation(ours, c.losses), `losses ${ours.join(', ')} vs ${c.losses.join(', ')}`).to.be.below(lossTolerance(c));
      if (c.powell_damped) {
        expect(steps.map((s) => s.powell_damped), 'Powell-damped shares').to.deep.equal(c.powell_damped);
        expect(steps.map((s) => s.skipped_updates), 'skipped shares').to.deep.equal(c.skipped_updates);
      }
      const trained = new Map((readModelFile(model).graph!.initializer ?? []).map((t) => [t.name!, tensorFromProto(t).data as Float32Array]));
      for (const [param, ref] of Object.entries(c.final)) {
        const w = trained.get(param);
        expect(w, param).to.not.equal(undefined);
        const ours = deviation(summarise(w!, ref), ref);
        const float32 = deviation(c.float32_final[param], ref);
        expect(ours.norm, `‖${param}‖`).to.be.below(Math.max(2e-4, SLACK * float32.norm));
        expect(ours.entries, `${param}'s entries`).to.be.below(Math.max(2e-3, SLACK * float32.entries));
      }
    });
  }

  // The check can fail: each of these departs from the authors' step in one detail.
  for (const [name, what, flags] of [
    ['kbfgs', 'ā\'s homogeneous entry 1 instead of the mean of the others', ['--abar-bias', 'one']],
    ['kbfgs', 'the Levenberg–Marquardt second damping instead of the authors\'', ['--damping-mode', 'lm']],
    ['kbfgs', 'H_g⁰ from the gradient factor instead of I', ['--g-init', 'factor']],
    ['kbfgs', 'an A decay of 0.95 instead of 0.9', ['--stat-decay', '0.95']],
    ['kbfgs', 'decoupled weight decay instead of L2 in the gradient (τ 1e-2)', ['--weight-decay', '1e-2', '--decoupled-weight-decay']],
    ['kfac-interval4', 'the factors\' decay 0.9 from the warm start instead of the authors\' warm-up', ['--no-stat-warmup']],
  ] as const) {
    it(`tells a different algorithm apart: ${name} with ${what}`, async () => {
      const c = reference.cases[name];
      const { steps } = await train(c, out, [...flags]);
      expect(lossDeviation(steps.map((s) => s.loss), c.losses)).to.be.above(lossTolerance(c));
    });
  }
});
