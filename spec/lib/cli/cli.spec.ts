// The kfqn command line: grad, inspect, augment and train on the fixtures, their one-line errors
// and exit codes, and --help. Commands run in-process through main(argv) with the console
// captured; a few run as `node --import tsx lib/cli/main.ts` to check the process exit code.
import { expect } from 'chai';
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { tensorFromProto, type TensorData } from '../../../graph-tools/index.js';
import { readModelFile, readTensorFile } from '../../../lib/io/files.js';
import {
  tinyAutoencoderModel,
  flattenGemmModel, gemmThenModel, lines, readJsonLines, removeTempDir, runCli, spawnCli, tempDir, writeModel, writeTensor, type CliResult,
} from '../../helpers/cli.js';
import { relError } from '../../helpers/train.js';

const root = 'spec/fixtures/mlp';
const IDX = 'idx:spec/fixtures/idx';

interface Reference {
  loss: number; loss_kind: string; reduction: string; inputs: string[];
  gradients: Record<string, number[]>; preactivation_gradients: Record<string, number[]>; preactivations: Record<string, number[]>;
}

const fixture = (name: string) => ({
  dir: join(root, name),
  model: join(root, name, 'model.onnx'),
  x: join(root, name, 'input_x.pb'),
  target: join(root, name, 'target.pb'),
  ref: JSON.parse(readFileSync(join(root, name, 'reference.json'), 'utf8')) as Reference,
});

/** A successful run: exit 0, nothing on stderr. */
function expectOk(r: CliResult): void {
  expect(r.stderr, 'stderr').to.equal('');
  expect(r.code, `exit code (stderr: ${r.stderr})`).to.equal(0);
}

/** A failed run: the exit code, and exactly one line on stderr, prefixed and without a stack. */
function expectOneLineError(r: CliResult, prefix: string, pattern: RegExp, code: number): void {
  const errLines = lines(r.stderr);
  expect(errLines, `stderr: ${r.stderr}`).to.have.length(1);
  expect(errLines[0].startsWith(prefix), `'${errLines[0]}' starts with '${prefix}'`).to.equal(true);
  expect(errLines[0]).to.match(pattern);
  expect(errLines[0]).not.to.match(/\bat .*\(.*:\d+:\d+\)/);
  expect(r.code, 'exit code').to.equal(code);
}

/** The model's float initializers by name, as feeds for its training graph's parameter inputs. */
function initializerFeeds(modelPath: string): Record<string, ort.Tensor> {
  const feeds: Record<string, ort.Tensor> = {};
  for (const t of readModelFile(modelPath).graph!.initializer ?? []) {
    const d = tensorFromProto(t);
    if (d.dtype === 'float32') feeds[t.name!] = new ort.Tensor('float32', d.data as Float32Array, d.dims);
  }
  return feeds;
}

const ortTensor = (t: TensorData) => new ort.Tensor(t.dtype as 'float32', t.data as Float32Array, t.dims);

describe('kfqn CLI', function () {
  this.timeout(30000);
  let tmp: string;
  const gemm = fixture('gemm_relu_ce');

  before(() => { tmp = tempDir(); });
  after(() => removeTempDir(tmp));

  describe('grad --json', () => {
    for (const name of ['gemm_relu_ce', 'autoencoder_small']) {
      it(`${name}: one JSON object with PyTorch's loss and gradients (float64, 1e-7)`, async () => {
        const f = fixture(name);
        const r = await runCli(['grad', f.model, '--loss', f.ref.loss_kind, '--reduction', f.ref.reduction, '--input', `x=${f.x}`, '--target', f.target, '--json']);
        expectOk(r);
        expect(lines(r.stdout), 'stdout is one line').to.have.length(1);
        const out = JSON.parse(r.stdout) as { loss: number; gradients: Record<string, number[]>; preactivation_gradients: Record<string, number[]> };
        expect(Object.keys(out).sort()).to.deep.equal(['gradients', 'loss', 'preactivation_gradients']);
        expect(Math.abs(out.loss - f.ref.loss) / Math.abs(f.ref.loss)).to.be.below(1e-7);
        expect(Object.keys(out.gradients).sort(), 'initializer names').to.deep.equal(Object.keys(f.ref.gradients).sort());
        for (const [p, g] of Object.entries(f.ref.gradients)) expect(relError(out.gradients[p], g), p).to.be.below(1e-7);
        expect(Object.keys(out.preactivation_gradients).sort(), 'value names').to.deep.equal(Object.keys(f.ref.preactivation_gradients).sort());
        for (const [h, g] of Object.entries(f.ref.preactivation_gradients)) expect(relError(out.preactivation_gradients[h], g), h).to.be.below(1e-7);
      });
    }

    it('--float32 --ep wasm agrees with the reference to 1e-4', async () => {
      const r = await runCli(['grad', gemm.model, '--loss', 'cross-entropy', '--input', `x=${gemm.x}`, '--target', gemm.target, '--json', '--float32', '--ep', 'wasm']);
      expectOk(r);
      const out = JSON.parse(r.stdout) as { loss: number; gradients: Record<string, number[]> };
      expect(out.loss).to.be.closeTo(gemm.ref.loss, 1e-4 * gemm.ref.loss);
      for (const [p, g] of Object.entries(gemm.ref.gradients)) expect(relError(out.gradients[p], g), p).to.be.below(1e-4);
    });

    it('without --json prints the loss and a line per gradient', async () => {
      const r = await runCli(['grad', gemm.model, '--loss', 'cross-entropy', '--input', `x=${gemm.x}`, '--target', gemm.target]);
      expectOk(r);
      const out = lines(r.stdout);
      expect(out[0]).to.match(/^loss 1\.4952515682\d* \(float64\)$/);
      expect(out).to.have.length(1 + Object.keys(gemm.ref.gradients).length + Object.keys(gemm.ref.preactivation_gradients).length);
      expect(out[1]).to.match(/d\/d 0\.weight: 60 values, norm /);
    });
  });

  describe('inspect', () => {
    it('--json lists the layers with their Kronecker factor sizes (gemm_relu_ce)', async () => {
      const r = await runCli(['inspect', gemm.model, '--json']);
      expectOk(r);
      const s = JSON.parse(r.stdout) as {
        layers: { name: string; weight: string; bias: string | null; input: string; preactivation: string; in_features: number; out_features: number; factors: { A: number[]; G: number[] } }[];
        parameters: string[]; parameter_count: number; inputs: { name: string }[]; untied: unknown[];
      };
      expect(s.layers).to.have.length(2);
      expect(s.layers.map((l) => [l.weight, l.bias, l.in_features, l.out_features])).to.deep.equal([['0.weight', '0.bias', 6, 10], ['2.weight', '2.bias', 10, 4]]);
      for (const l of s.layers) {
        expect(l.factors.A, `${l.name} A (in + 1 for the bias)`).to.deep.equal([l.in_features + 1, l.in_features + 1]);
        expect(l.factors.G, `${l.name} G (out)`).to.deep.equal([l.out_features, l.out_features]);
      }
      expect(s.layers.map((l) => l.preactivation)).to.deep.equal(Object.keys(gemm.ref.preactivation_gradients));
      expect(s.layers[0].input).to.equal('x');
      expect([...s.parameters].sort()).to.deep.equal(Object.keys(gemm.ref.gradients).sort());
      expect(s.parameter_count).to.equal(6 * 10 + 10 + 10 * 4 + 4);
      expect(s.inputs.map((i) => i.name)).to.deep.equal(['x']);
      expect(s.untied).to.deep.equal([]);
    });

    it('--json reports each optimizer\'s state bytes per layer and in total, next to the parameter bytes (gemm_relu_ce)', async () => {
      const r = await runCli(['inspect', gemm.model, '--json']);
      expectOk(r);
      type State = { state_bytes: number; layers: { layer: string; parameter_bytes: number; state_bytes: number; parts: Record<string, number> }[] };
      const s = JSON.parse(r.stdout) as { parameter_bytes: number; optimizer_state: Record<string, State> };
      expect(s.parameter_bytes).to.equal(4 * (6 * 10 + 10 + 10 * 4 + 4));
      expect(Object.keys(s.optimizer_state)).to.include.members(['sgd', 'adam', 'rmsprop', 'kfac', 'shampoo', 'kbfgs', 'kbfgs-l', 'kfqn', 'kfqn-l', 'kfqn-l --a-side lbfgs']);
      // Layer 1: d_a = 7, d_g = 10. K-BFGS: momentum, A, H_a, H_g, s̄ and ȳ; KF-QN the same without A.
      const [l1] = s.optimizer_state.kbfgs.layers;
      expect(l1.parameter_bytes).to.equal(4 * 70);
      expect(l1.parts).to.deep.equal({ momentum: 4 * 70, A: 4 * 49, Ha: 4 * 49, Hg: 4 * 100, sbar_ybar: 4 * 20 });
      expect(s.optimizer_state.kfqn.layers[0].state_bytes).to.equal(4 * (70 + 49 + 100 + 20));
      for (const [name, st] of Object.entries(s.optimizer_state)) expect(st.state_bytes, name).to.equal(st.layers.reduce((n, l) => n + l.state_bytes, 0));
    });

    it('reports the untied Identity alias of aliased_bias (text and --json)', async () => {
      const model = join(root, 'aliased_bias', 'model.onnx');
      const r = await runCli(['inspect', model]);
      expectOk(r);
      expect(r.stdout).to.match(/3 trainable layer\(s\)/);
      expect(r.stdout).to.match(/untied: '2\.bias' was an Identity alias of '0\.bias' \(node [^)]+\); it is trained as its own parameter/);
      const j = await runCli(['inspect', model, '--json']);
      expectOk(j);
      const s = JSON.parse(j.stdout) as { untied: { parameter: string; source: string; node: string }[]; parameters: string[] };
      expect(s.untied.map((u) => [u.parameter, u.source])).to.deep.equal([['2.bias', '0.bias']]);
      expect(s.parameters).to.include('2.bias');
    });
  });

  describe('augment', () => {
    it('writes a training graph that onnxruntime-node loads and runs to the reference loss', async () => {
      const out = join(tmp, 'train_gemm.onnx');
      const r = await runCli(['augment', gemm.model, '--loss', 'cross-entropy', '-o', out]);
      expectOk(r);
      expect(r.stdout).to.match(/^wrote .*train_gemm\.onnx: inputs x, kfqn:target, .*; outputs kfqn:loss, kfqn:grad:/);
      const params = Object.keys(gemm.ref.gradients);
      const s = await ort.InferenceSession.create(out);
      try {
        expect(s.inputNames.slice(0, 2)).to.deep.equal(['x', 'kfqn:target']);
        expect(s.inputNames.slice(2).sort()).to.deep.equal([...params].sort());
        expect(s.outputNames[0]).to.equal('kfqn:loss');
        expect(s.outputNames.slice(1).sort()).to.deep.equal(params.map((p) => `kfqn:grad:${p}`).sort());
        const res = await s.run({ x: ortTensor(readTensorFile(gemm.x)), 'kfqn:target': ortTensor(readTensorFile(gemm.target)), ...initializerFeeds(gemm.model) });
        expect(Number(res['kfqn:loss'].data[0])).to.be.closeTo(gemm.ref.loss, 1e-5);
        for (const p of params) expect(relError(res[`kfqn:grad:${p}`].data as Float32Array, gemm.ref.gradients[p]), p).to.be.below(1e-4);
      } finally {
        await s.release();
      }
    });

    it('--capture activations,preactivations,preactivation-gradients adds those outputs', async () => {
      const f = fixture('mlp_acts_mse');
      const out = join(tmp, 'train_capture.onnx');
      const r = await runCli(['augment', f.model, '--loss', 'mse', '--capture', 'activations,preactivations,preactivation-gradients', '-o', out]);
      expectOk(r);
      const layers = (JSON.parse((await runCli(['inspect', f.model, '--json'])).stdout) as { layers: { input: string; preactivation: string }[] }).layers;
      const s = await ort.InferenceSession.create(out);
      try {
        const outputs = new Set(s.outputNames);
        expect(outputs.has('kfqn:loss')).to.equal(true);
        for (const p of Object.keys(f.ref.gradients)) expect(outputs.has(`kfqn:grad:${p}`), p).to.equal(true);
        for (const l of layers) {
          for (const name of [`kfqn:act:${l.input}`, `kfqn:preact:${l.preactivation}`, `kfqn:dpreact:${l.preactivation}`]) expect(outputs.has(name), name).to.equal(true);
        }
        const acts = new Set(layers.map((l) => l.input));
        expect(s.outputNames).to.have.length(1 + Object.keys(f.ref.gradients).length + acts.size + 2 * layers.length);
        const res = await s.run({ x: ortTensor(readTensorFile(f.x)), 'kfqn:target': ortTensor(readTensorFile(f.target)), ...initializerFeeds(f.model) });
        for (const [h, g] of Object.entries(f.ref.preactivation_gradients)) expect(relError(res[`kfqn:dpreact:${h}`].data as Float32Array, g), h).to.be.below(1e-4);
        for (const [h, v] of Object.entries(f.ref.preactivations)) expect(relError(res[`kfqn:preact:${h}`].data as Float32Array, v), h).to.be.below(1e-5);
      } finally {
        await s.release();
      }
    });
    it('--capture a-factors,means,hessian-action adds the Kronecker statistics and one v input per layer', async () => {
      const out = join(tmp, 'train_stats.onnx');
      const model = 'models/lenet5.onnx';
      expectOk(await runCli(['augment', model, '--loss', 'cross-entropy', '--capture', 'a-factors,means,hessian-action', '-o', out]));
      const layers = (JSON.parse((await runCli(['inspect', model, '--json'])).stdout) as { layers: { name: string; groups: number; factors: { A: number[] } }[] }).layers;
      const s = await ort.InferenceSession.create(out);
      try {
        for (const l of layers) {
          for (const k of ['A', 'abar', 'hbar', 'gbar', 'Av']) expect(s.outputNames, `kfqn:${k}:${l.name}`).to.include(`kfqn:${k}:${l.name}`);
          expect(s.inputNames).to.include(`kfqn:v:${l.name}`);
        }
      } finally {
        await s.release();
      }
    });
  });

  describe('train', () => {
    it('--eval idx:DIR evaluates on the t10k files after each epoch, on screen and in the log', async () => {
      const model = writeModel(join(tmp, 'flat_gemm_eval.onnx'), flattenGemmModel());
      const log = join(tmp, 'eval.jsonl');
      const r = await runCli(['train', model, '--data', IDX, '--eval', IDX, '--epochs', '2', '--batch-size', '4', '--log', log, '--quiet']);
      expectOk(r);
      expect(r.stdout.match(/eval loss [0-9.]+, accuracy [0-9.]+% on 6$/gm)).to.have.length(2);
      const evals = readJsonLines(log).filter((e) => 'eval_loss' in e);
      expect(evals.map((e) => e.epoch)).to.deep.equal([0, 1]);
      for (const e of evals) {
        expect(e).to.have.all.keys('epoch', 'eval_loss', 'eval_accuracy');
        // 6 test samples: the accuracy is a whole number of them.
        expect(Number.isInteger(Math.round((e.eval_accuracy as number) * 6 * 1e6) / 1e6)).to.equal(true);
      }
      const split = await runCli(['train', model, '--data', IDX, '--eval', 'split:0.25', '--epochs', '1', '--batch-size', '4', '--quiet']);
      expectOk(split);
      expect(split.stdout).to.match(/\(9 samples\)/).and.to.match(/on 3$/m);
    });

    it('trains a Flatten→Gemm model on idx:spec/fixtures/idx: a JSONL log of 3 steps and a loadable model', async () => {
      const model = writeModel(join(tmp, 'flat_gemm.onnx'), flattenGemmModel());
      const log = join(tmp, 'train.jsonl');
      const out = join(tmp, 'trained.onnx');
      const r = await runCli(['train', model, '--data', IDX, '--loss', 'cross-entropy', '--steps', '3', '--batch-size', '4', '--log', log, '--out', out, '--quiet']);
      expectOk(r);
      expect(r.stdout).to.match(/3 steps on cpu/);
      expect(r.stdout).to.match(/^done: 3 steps in /m);
      expect(r.stdout).to.include(`wrote ${out}`);

      const entries = readJsonLines(log);
      expect(entries).to.have.length(3);
      expect(entries.map((e) => e.step)).to.deep.equal([1, 2, 3]);
      let lastTime = 0;
      for (const e of entries) {
        expect(e).to.include.keys('step', 'epoch', 'loss', 'time');
        expect(e.epoch).to.equal(0);
        expect(Number.isFinite(e.loss), 'finite loss').to.equal(true);
        expect(e.time as number).to.be.at.least(lastTime);
        lastTime = e.time as number;
      }

      const [src, dst] = await Promise.all([ort.InferenceSession.create(model), ort.InferenceSession.create(out)]);
      try {
        expect(dst.inputNames).to.deep.equal(src.inputNames);
        expect(dst.outputNames).to.deep.equal(src.outputNames);
        const x = new ort.Tensor('float32', new Float32Array(2 * 16).fill(0.5), [2, 1, 4, 4]);
        const [a, b] = [await src.run({ x }), await dst.run({ x })];
        expect(b.logits.dims).to.deep.equal([2, 3]);
        expect(Array.from(b.logits.data as Float32Array)).not.to.deep.equal(Array.from(a.logits.data as Float32Array));
      } finally {
        await Promise.all([src.release(), dst.release()]);
      }
      // The trained weights are in place, same names and shapes.
      const w = (p: string) => readModelFile(p).graph!.initializer!.map((t) => [t.name, tensorFromProto(t).dims]);
      expect(w(out)).to.deep.equal(w(model));
    });
  });

  // The comparison command of issue 4, the same for every optimizer: file order, a fixed number of
  // steps, --lr and --damping (Shampoo's ε; ignored with a warning by first-order methods).
  describe('train: the papers\' comparison command for every optimizer', () => {
    for (const name of ['sgd', 'adam', 'rmsprop', 'kfac', 'shampoo', 'kbfgs', 'kbfgs-l', 'kfqn', 'kfqn-l']) {
      it(`--optimizer ${name}: a JSONL line per step with finite losses that fall`, async () => {
        const model = writeModel(join(tmp, `ae_${name}.onnx`), tinyAutoencoderModel());
        const log = join(tmp, `ae_${name}.jsonl`);
        const lr = { sgd: '0.003', adam: '0.01', rmsprop: '0.01', kfac: '0.3', shampoo: '0.03', kbfgs: '0.3', 'kbfgs-l': '0.3', kfqn: '0.3', 'kfqn-l': '0.3' }[name]!;
        const r = await runCli(['train', model, '--data', IDX, '--limit', '16', '--no-shuffle', '--batch-size', '8', '--steps', '6', '--target', 'input',
          '--loss', 'bce-with-logits', '--reduction', 'per-sample-sum', '--optimizer', name, '--lr', lr, '--damping', '1', '--log', log, '--quiet']);
        expect(r.code, `exit code (stderr: ${r.stderr})`).to.equal(0);
        expect(r.stderr).to.equal(['sgd', 'adam', 'rmsprop'].includes(name) ? `kfqn train: --damping does not apply to ${name}; ignored\n` : '');
        const entries = readJsonLines(log);
        expect(entries.map((e) => e.step)).to.deep.equal([1, 2, 3, 4, 5, 6]);
        expect(entries.every((e) => Number.isFinite(e.loss) && e.lr === Number(lr))).to.equal(true);
        if (name.startsWith('kbfgs') || name.startsWith('kfqn')) expect(entries[0]).to.include.keys('powell_damped', 'skipped_updates');
        // Steps 5 and 6 see the batches of steps 1 and 2 again (file order, 2 batches per epoch).
        expect((entries[4].loss as number) + (entries[5].loss as number)).to.be.below((entries[0].loss as number) + (entries[1].loss as number));
      });
    }
  });

  describe('train: KF-QN\'s own options', () => {
    it('--optimizer kfqn-l --a-side lbfgs --variant convergent: α_k = lr·k^(−β) in the log, finite losses', async () => {
      const model = writeModel(join(tmp, 'ae_kfqn_conv.onnx'), tinyAutoencoderModel());
      const log = join(tmp, 'ae_kfqn_conv.jsonl');
      const r = await runCli(['train', model, '--data', IDX, '--limit', '16', '--no-shuffle', '--batch-size', '8', '--steps', '4', '--target', 'input',
        '--loss', 'bce-with-logits', '--reduction', 'per-sample-sum', '--optimizer', 'kfqn-l', '--a-side', 'lbfgs', '--a-history', '3', '--history', '5',
        '--variant', 'convergent', '--step-power', '0.75', '--lr', '0.3', '--log', log, '--quiet']);
      expect(r.code, `exit code (stderr: ${r.stderr})`).to.equal(0);
      const entries = readJsonLines(log);
      expect(entries.map((e) => e.lr as number)).to.deep.equal([1, 2, 3, 4].map((k) => 0.3 * k ** -0.75));
      expect(entries.every((e) => Number.isFinite(e.loss))).to.equal(true);
    });

    it('flags that switch a default off reach the optimizer (--no-warm-start, --no-stat-warmup)', async () => {
      const model = writeModel(join(tmp, 'ae_switches.onnx'), tinyAutoencoderModel());
      const train = (extra: string[]) => runCli(['train', model, '--data', IDX, '--limit', '16', '--batch-size', '8', '--steps', '1', '--target', 'input', '--quiet', ...extra]);
      for (const [extra, setting] of [
        [['--optimizer', 'rmsprop', '--no-warm-start'], '"warmStart":false'],
        [['--optimizer', 'kbfgs', '--no-warm-start'], '"warmStart":false'],
        [['--optimizer', 'shampoo', '--no-warm-start'], '"warmStart":false'],
        [['--optimizer', 'kfac', '--no-stat-warmup', '--no-warm-start'], '"statWarmup":false'],
        [['--optimizer', 'kfac'], '"statWarmup":true'],
      ] as const) {
        const r = await train([...extra]);
        expect(r.code, r.stderr).to.equal(0);
        expect(lines(r.stdout)[0], extra.join(' ')).to.contain(setting);
      }
    });

    it('--curvature-interval 2: the Powell and skip shares are logged at the curvature steps only', async () => {
      const model = writeModel(join(tmp, 'ae_kfqn_interval.onnx'), tinyAutoencoderModel());
      const log = join(tmp, 'ae_kfqn_interval.jsonl');
      const r = await runCli(['train', model, '--data', IDX, '--limit', '16', '--no-shuffle', '--batch-size', '8', '--steps', '4', '--target', 'input',
        '--loss', 'bce-with-logits', '--reduction', 'per-sample-sum', '--optimizer', 'kfqn', '--curvature-interval', '2', '--log', log, '--quiet']);
      expect(r.code, `exit code (stderr: ${r.stderr})`).to.equal(0);
      const entries = readJsonLines(log);
      expect(entries.map((e) => 'powell_damped' in e && 'skipped_updates' in e)).to.deep.equal([true, false, true, false]);
      expect(entries.every((e) => Number.isFinite(e.loss))).to.equal(true);
    });

    it('rejects --a-history without --a-side lbfgs, --step-power without --variant convergent, and KF-QN flags on other optimizers', async () => {
      const base = ['train', '--steps', '1', '--quiet'];
      for (const [extra, error] of [
        [['--optimizer', 'kfqn', '--a-history', '5'], /--a-history is the memory of --a-side lbfgs/],
        [['--optimizer', 'kfqn', '--a-init', 'factor'], /--a-init sets the H0 of --a-side lbfgs/],
        [['--optimizer', 'kfqn', '--step-power', '0.7'], /--step-power sets the decay of --variant convergent/],
        [['--optimizer', 'kbfgs', '--a-side', 'lbfgs'], /--a-side is not an option of kbfgs/],
        [['--optimizer', 'kfqn', '--variant', 'fast'], /--variant/],
        [['--optimizer', 'kfqn', '--curvature-interval', '0'], /--curvature-interval/],
        [['--optimizer', 'adam', '--curvature-interval', '2'], /--curvature-interval is not an option of adam/],
        [['--optimizer', 'adam', '--g-init', 'factor'], /--g-init is not an option of adam/],
        [['--optimizer', 'kfqn', '--g-init', 'fisher'], /--g-init/],
        [['--optimizer', 'kfac', '--warm-start'], /--warm-start has no effect on kfac .*add --no-stat-warmup/],
        [['--optimizer', 'kfac', '--stat-warmup', '--no-stat-warmup'], /contradict/],
        [['--optimizer', 'shampoo', '--no-stat-warmup'], /--no-stat-warmup is not an option of shampoo/],
      ] as const) {
        const r = await runCli([...base, ...extra]);
        expect(r.code, extra.join(' ')).to.equal(2);
        expect(r.stderr).to.match(error);
      }
    });
  });

  describe('train: --lr-schedule', () => {
    const run = async (schedule: string, extra: string[] = ['--epochs', '3']) => {
      const model = writeModel(join(tmp, 'sched.onnx'), tinyAutoencoderModel());
      const log = join(tmp, 'sched.jsonl');
      const r = await runCli(['train', model, '--data', IDX, '--target', 'input', '--batch-size', '4', '--optimizer', 'sgd', '--lr', '0.1', '--lr-schedule', schedule, '--log', log, '--quiet', ...extra]);
      return { r, lrs: r.code === 0 ? readJsonLines(log).filter((e) => 'step' in e).map((e) => e.lr as number) : [] };
    };
    it('step:1e:0.5 halves α every epoch (3 steps of 4 samples), step:2:0.1 every 2 steps', async () => {
      const byEpoch = await run('step:1e:0.5');
      expectOk(byEpoch.r);
      expect(byEpoch.lrs).to.deep.equal([0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.025, 0.025, 0.025]);
      const bySteps = await run('step:2:0.1', ['--steps', '5']);
      expect(bySteps.lrs.map((x) => Number(x.toPrecision(6)))).to.deep.equal([0.1, 0.1, 0.01, 0.01, 0.001]);
    });
    it('cosine:0.1 goes from α to 0.1·α over the run\'s 9 steps', async () => {
      const { r, lrs } = await run('cosine:0.1');
      expectOk(r);
      expect(lrs).to.have.length(9);
      lrs.forEach((lr, k) => expect(lr).to.be.closeTo(0.1 * (0.1 + 0.9 * (1 + Math.cos((Math.PI * k) / 9)) / 2), 1e-12));
    });
    it('refuses a malformed schedule, bad numbers, and cosine without a run length', async () => {
      const model = writeModel(join(tmp, 'sched2.onnx'), tinyAutoencoderModel());
      const train = (schedule: string, extra: string[]) => runCli(['train', model, '--data', IDX, '--target', 'input', '--lr-schedule', schedule, ...extra]);
      expectOneLineError(await train('linear', ['--steps', '1']), 'kfqn train: ', /--lr-schedule 'linear': give step:N:G .* or cosine\[:F\]/, 2);
      expectOneLineError(await train('step:2:3', ['--steps', '1']), 'kfqn train: ', /--lr-schedule 'step:2:3': lrSchedule\.gamma must lie in \[0, 1\], got 3/, 2);
      expectOneLineError(await train('step:0:0.5', ['--steps', '1']), 'kfqn train: ', /every must be an integer ≥ 1, got 0/, 2);
    });
  });

  describe('train: checkpoints', () => {
    // The tiny autoencoder on the 12 fixture images, shuffled, batches of 4 (3 an epoch).
    const base = (model: string) => [model, '--data', IDX, '--target', 'input', '--loss', 'bce-with-logits', '--batch-size', '4', '--seed', '3',
      '--optimizer', 'kbfgs-l', '--history', '3', '--lr', '0.1', '--quiet'];
    const losses = (log: string) => readJsonLines(log).map((e) => [e.step, e.epoch, e.loss]);

    it('--checkpoint then --resume FILE alone: the run goes on from its step, with its own command line, as if never stopped', async () => {
      const model = writeModel(join(tmp, 'ck_ae.onnx'), tinyAutoencoderModel());
      const [log, straightLog, ck, out] = ['ck.jsonl', 'ck_straight.jsonl', 'run.kfqn', 'ck_out.onnx'].map((f) => join(tmp, f));
      expectOk(await runCli(['train', ...base(model), '--steps', '7', '--log', straightLog]));
      expectOk(await runCli(['train', ...base(model), '--steps', '4', '--log', log, '--checkpoint', ck]));
      expect(existsSync(ck)).to.equal(true);
      // Model, data, optimizer and log come from the checkpoint; --steps counts the whole run.
      const r = await runCli(['train', '--resume', ck, '--steps', '7', '--out', out]);
      expectOk(r);
      expect(r.stdout).to.match(/^resuming .*run\.kfqn at step 4 \(epoch 2, after its batch 1\)$/m);
      expect(r.stdout).to.match(/kbfgs-l .*"lr":0\.1.*3 steps on cpu/);
      expect(losses(log)).to.deep.equal(losses(straightLog));
      expect(existsSync(out)).to.equal(true);
      // The checkpoint was rewritten at the end: resuming it again has nothing left to do.
      const again = await runCli(['train', '--resume', ck, '--steps', '7']);
      expectOk(again);
      expect(again.stdout).to.match(/nothing to train: the checkpoint's run is at step 7/);
    });

    it('--resume with flags: they override the saved ones, and a changed hyper-parameter is said', async () => {
      const model = writeModel(join(tmp, 'ck_ae2.onnx'), tinyAutoencoderModel());
      const ck = join(tmp, 'run2.kfqn');
      expectOk(await runCli(['train', ...base(model), '--steps', '2', '--checkpoint', ck]));
      const r = await runCli(['train', '--resume', ck, '--steps', '3', '--lr', '0.05']);
      expectOk(r);
      expect(r.stdout).to.match(/^ {2}lr: 0\.05 \(the checkpoint's run had 0\.1\)$/m);
      expectOneLineError(await runCli(['train', '--resume', ck, '--optimizer', 'adam']), 'kfqn train: ', /holds a kbfgs-l run; --optimizer adam cannot continue it/, 2);
      expectOneLineError(await runCli(['train', '--resume', join(tmp, 'missing.kfqn')]), 'kfqn train: ', /checkpoint file not found: .*missing\.kfqn/, 1);
      expectOneLineError(await runCli(['train', '--resume', model]), 'kfqn train: ', /ck_ae2\.onnx is an ONNX model, not a kfqn checkpoint/, 1);
      expectOneLineError(await runCli(['train', ...base(model), '--steps', '1', '--checkpoint-every', '2']), 'kfqn train: ', /--checkpoint-every N needs --checkpoint FILE/, 2);
    });

    it('Ctrl-C (SIGINT) stops after the step under way, writes the checkpoint, exits 130; --resume then continues', async function () {
      this.timeout(60_000);
      const model = writeModel(join(tmp, 'ck_ae3.onnx'), tinyAutoencoderModel());
      const [log, ck] = ['sigint.jsonl', 'sigint.kfqn'].map((f) => join(tmp, f));
      const child = spawn(process.execPath, ['--import', 'tsx', 'lib/cli/main.ts', 'train', ...base(model), '--epochs', '100000', '--log', log, '--checkpoint', ck, '--checkpoint-every', '1000000'],
        { cwd: process.cwd(), stdio: ['ignore', 'pipe', 'pipe'] });
      let stderr = '';
      child.stderr.setEncoding('utf8').on('data', (d: string) => { stderr += d; });
      const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
      while (!existsSync(log) || lines(readFileSync(log, 'utf8')).length < 5) await new Promise((r) => setTimeout(r, 50));
      child.kill('SIGINT');
      expect(await exited, stderr).to.equal(130);
      expect(stderr).to.match(/interrupted, stopping after this step and writing .*sigint\.kfqn/);
      expect(stderr).to.match(/kfqn train: interrupted after step (\d+); .*sigint\.kfqn holds the run: continue it with --resume/);
      const stoppedAt = Number(/interrupted after step (\d+)/.exec(stderr)![1]);
      expect(readJsonLines(log)).to.have.length(stoppedAt);
      const r = await runCli(['train', '--resume', ck, '--steps', String(stoppedAt + 2)]);
      expectOk(r);
      expect(readJsonLines(log).map((e) => e.step)).to.deep.equal(Array.from({ length: stoppedAt + 2 }, (_, i) => i + 1));
    });
  });

  describe('bad input: one line on stderr, a non-zero exit code, no output file', () => {
    const flat = () => join(tmp, 'bad_flat.onnx');
    const x = gemm.x;
    const xArr = () => readTensorFile(x);
    const GRAD = () => ['grad', gemm.model, '--loss', 'cross-entropy'];

    before(() => {
      const bytes = new Uint8Array(512);
      for (let i = 0, s = 12345; i < bytes.length; i++) { s = (Math.imul(s, 1103515245) + 12345) >>> 0; bytes[i] = s >>> 24; }
      writeFileSync(join(tmp, 'x.onnx'), bytes);
      const m = readFileSync(gemm.model);
      writeFileSync(join(tmp, 'truncated.onnx'), m.subarray(0, Math.floor(m.length / 2)));
      writeModel(flat(), flattenGemmModel());
      writeModel(join(tmp, 'sin.onnx'), gemmThenModel('Sin'));
      writeModel(join(tmp, 'floor.onnx'), gemmThenModel('Floor'));
      const t = xArr();
      writeTensor(join(tmp, 'x_float64.pb'), { dtype: 'float64', dims: t.dims, data: Float64Array.from(t.data as Float32Array) });
      writeTensor(join(tmp, 'x_wide.pb'), { dtype: 'float32', dims: [t.dims[0], t.dims[1] + 1], data: new Float32Array(t.dims[0] * (t.dims[1] + 1)) });
      writeTensor(join(tmp, 'target_long.pb'), { dtype: 'int64', dims: [t.dims[0] + 1], data: new BigInt64Array(t.dims[0] + 1) });
    });

    interface Case { name: string; argv: () => string[]; prefix: string; error: RegExp; code: number; out?: string }
    const cases: Case[] = [
      {
        name: 'not an ONNX file', prefix: 'kfqn augment: ', code: 1, out: 'o_notonnx.onnx',
        argv: () => ['augment', join(tmp, 'x.onnx'), '--loss', 'mse', '-o', join(tmp, 'o_notonnx.onnx')],
        error: /x\.onnx is not an ONNX model/,
      },
      {
        name: 'a truncated model', prefix: 'kfqn train: ', code: 1, out: 'o_trunc.onnx',
        argv: () => ['train', join(tmp, 'truncated.onnx'), '--data', IDX, '--steps', '1', '--out', join(tmp, 'o_trunc.onnx'), '--quiet'],
        error: /truncated\.onnx is truncated or corrupt/,
      },
      {
        name: 'a missing model file', prefix: 'kfqn augment: ', code: 1, out: 'o_missing.onnx',
        argv: () => ['augment', join(tmp, 'no-such-model.onnx'), '--loss', 'mse', '-o', join(tmp, 'o_missing.onnx')],
        error: /model file not found: .*no-such-model\.onnx/,
      },
      {
        name: 'an unknown --input name', prefix: 'kfqn grad: ', code: 1,
        argv: () => [...GRAD(), '--input', `y=${x}`, '--target', gemm.target],
        error: /unknown input 'y'; the model's inputs are x/,
      },
      {
        name: 'a missing --input file', prefix: 'kfqn grad: ', code: 1,
        argv: () => [...GRAD(), '--input', `x=${join(tmp, 'nope.pb')}`, '--target', gemm.target],
        error: /tensor file not found: .*nope\.pb/,
      },
      {
        name: 'an input .pb of the wrong dtype', prefix: 'kfqn grad: ', code: 1,
        argv: () => [...GRAD(), '--input', `x=${join(tmp, 'x_float64.pb')}`, '--target', gemm.target],
        error: /input 'x' has dtype float64, expected float32/,
      },
      {
        name: 'an input .pb of the wrong shape', prefix: 'kfqn grad: ', code: 1,
        argv: () => [...GRAD(), '--input', `x=${join(tmp, 'x_wide.pb')}`, '--target', gemm.target],
        error: /input 'x' has shape \[7, 7\], expected \[N, 6\]/,
      },
      {
        name: 'a target whose shape does not match the batch', prefix: 'kfqn grad: ', code: 1,
        argv: () => [...GRAD(), '--input', `x=${x}`, '--target', join(tmp, 'target_long.pb')],
        error: /the target \(cross-entropy expects int64 of shape \[N\]\) has shape \[8\]: dimension 'N' is 7 elsewhere/,
      },
      {
        name: 'a target of the wrong dtype', prefix: 'kfqn grad: ', code: 1,
        argv: () => [...GRAD(), '--input', `x=${x}`, '--target', x],
        error: /the target \(cross-entropy expects int64 of shape \[N\]\) has dtype float32, expected int64/,
      },
      {
        name: 'a missing data directory', prefix: 'kfqn train: ', code: 1, out: 'o_nodata.onnx',
        argv: () => ['train', flat(), '--data', 'idx:/nonexistent', '--out', join(tmp, 'o_nodata.onnx'), '--quiet'],
        error: /\/nonexistent does not exist/,
      },
      {
        name: 'data that does not fit the model input', prefix: 'kfqn train: ', code: 1, out: 'o_misfit.onnx',
        argv: () => ['train', gemm.model, '--data', IDX, '--steps', '1', '--out', join(tmp, 'o_misfit.onnx'), '--quiet'],
        error: /model input 'x' takes 6 values per sample \[N,6\], the data has 16/,
      },
      {
        name: 'class labels for an mse loss', prefix: 'kfqn train: ', code: 1, out: 'o_mse.onnx',
        argv: () => ['train', flat(), '--data', IDX, '--loss', 'mse', '--steps', '1', '--out', join(tmp, 'o_mse.onnx'), '--quiet'],
        error: /mse needs a float32 target, not class labels/,
      },
      {
        name: 'an unknown option', prefix: 'kfqn grad: ', code: 2,
        argv: () => [...GRAD(), '--input', `x=${x}`, '--target', gemm.target, '--bogus'],
        error: /Unknown option '--bogus'.*\(see --help\)/,
      },
      {
        name: 'an unknown command', prefix: 'kfqn: ', code: 2,
        argv: () => ['frobnicate', gemm.model],
        error: /unknown command 'frobnicate'\. Commands: train, grad, inspect, augment/,
      },
      {
        name: 'an unknown execution provider', prefix: 'kfqn grad: ', code: 2,
        argv: () => [...GRAD(), '--input', `x=${x}`, '--target', gemm.target, '--ep', 'tpu'],
        error: /--ep must be one of cpu, cuda, wasm, webgpu; got 'tpu'/,
      },
      {
        name: 'an unknown loss', prefix: 'kfqn augment: ', code: 2, out: 'o_loss.onnx',
        argv: () => ['augment', gemm.model, '--loss', 'hinge', '-o', join(tmp, 'o_loss.onnx')],
        error: /--loss must be one of .*got 'hinge'/,
      },
      {
        name: 'grad without --target', prefix: 'kfqn grad: ', code: 2,
        argv: () => [...GRAD(), '--input', `x=${x}`],
        error: /grad needs --target/,
      },
      {
        name: 'augment without -o', prefix: 'kfqn augment: ', code: 2,
        argv: () => ['augment', gemm.model, '--loss', 'mse'],
        error: /augment needs -o/,
      },
      {
        name: 'augment with an op without a backward rule (Sin) after a Gemm', prefix: 'kfqn augment: ', code: 1, out: 'o_sin.onnx',
        argv: () => ['augment', join(tmp, 'sin.onnx'), '--loss', 'mse', '-o', join(tmp, 'o_sin.onnx')],
        error: /node 'the_sin' \(Sin\)/,
      },
      {
        name: 'augment with an op without a backward rule (Floor) after a Gemm', prefix: 'kfqn augment: ', code: 1, out: 'o_floor.onnx',
        argv: () => ['augment', join(tmp, 'floor.onnx'), '--loss', 'mse', '-o', join(tmp, 'o_floor.onnx')],
        error: /node 'the_floor' \(Floor\) lies between a trainable parameter and the loss, and kfqn has no backward rule for Floor\. Supported on that path: .*Gemm/,
      },
    ];

    for (const c of cases) {
      it(c.name, async () => {
        const before = new Set(readdirSync(tmp));
        const r = await runCli(c.argv());
        expectOneLineError(r, c.prefix, c.error, c.code);
        if (c.out) expect(existsSync(join(tmp, c.out)), `${c.out} was written`).to.equal(false);
        // Nothing new in the directory: no output, no temporary file.
        expect(readdirSync(tmp).filter((f) => !before.has(f))).to.deep.equal([]);
      });
    }

    it('train --ep cuda without the CUDA libraries says how to install them', async function () {
      const out = join(tmp, 'o_cuda.onnx');
      const r = await runCli(['train', flat(), '--data', IDX, '--steps', '1', '--ep', 'cuda', '--out', out, '--quiet']);
      if (r.code === 0) {
        if (this.test) this.test.title += ' (pending: the CUDA provider is installed here)';
        this.skip();
      }
      expectOneLineError(r, 'kfqn train: ', /cannot create an ORT session on 'cuda': the CUDA execution provider could not start.*ONNXRUNTIME_NODE_INSTALL=cuda12/, 1);
      expect(existsSync(out)).to.equal(false);
    });
  });

  describe('--help', () => {
    it('kfqn --help, -h, help and no arguments print the usage and exit 0', async () => {
      for (const argv of [['--help'], ['-h'], ['help'], []]) {
        const r = await runCli(argv);
        expectOk(r);
        expect(r.stdout, argv.join(' ')).to.match(/^kfqn — /);
        expect(r.stdout).to.include('Usage:');
        for (const cmd of ['train', 'grad', 'inspect', 'augment']) expect(r.stdout).to.include(`kfqn ${cmd}`);
      }
    });

    for (const cmd of ['train', 'grad', 'inspect', 'augment']) {
      it(`kfqn ${cmd} --help and kfqn help ${cmd} print its usage and exit 0`, async () => {
        const a = await runCli([cmd, '--help']);
        expectOk(a);
        expect(a.stdout).to.match(new RegExp(`^kfqn ${cmd} `));
        const b = await runCli(['help', cmd]);
        expectOk(b);
        expect(b.stdout).to.equal(a.stdout);
        const c = await runCli([cmd, '-h']);
        expect(c.stdout).to.equal(a.stdout);
      });
    }

    it('--version prints the version', async () => {
      const r = await runCli(['--version']);
      expectOk(r);
      expect(r.stdout).to.equal('kfqn 0.1.0\n');
    });
  });

  describe('as a process (node --import tsx lib/cli/main.ts)', () => {
    it('sets the exit code: 0 for --help and inspect, 1 for a missing model, 2 for an unknown command', async () => {
      const [help, inspect, missing, unknown] = await Promise.all([
        spawnCli(['--help']),
        spawnCli(['inspect', gemm.model, '--json']),
        spawnCli(['inspect', join(tmp, 'missing.onnx')]),
        spawnCli(['frobnicate']),
      ]);
      expect(help.code, help.stderr).to.equal(0);
      expect(help.stdout).to.include('Usage:');
      expect(inspect.code, inspect.stderr).to.equal(0);
      expect((JSON.parse(inspect.stdout) as { layers: unknown[] }).layers).to.have.length(2);
      expect(missing.code).to.equal(1);
      expect(lines(missing.stderr)).to.have.length(1);
      expect(missing.stderr).to.match(/^kfqn inspect: model file not found: .*missing\.onnx\n$/);
      expect(unknown.code).to.equal(2);
      expect(unknown.stderr).to.match(/^kfqn: unknown command 'frobnicate'/);
      expect(lines(unknown.stderr)).to.have.length(1);
    });
  });
});
