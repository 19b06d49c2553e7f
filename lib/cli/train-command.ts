// kfqn train: the training loop from the command line.
import { createWriteStream, type WriteStream } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { loadDataSpec } from '../data/node.js';
import { limit, split, type Dataset } from '../data/index.js';
import { readCheckpointFile, readModelFile, writeFileAtomic } from '../io/files.js';
import { DEFAULT_MODEL, packageRoot } from '../io/package-root.js';
import { checkLrSchedule, createOptimizer, OPTIMIZER_FACTORIES, type LrSchedule, type OptimizerName } from '../optim/index.js';
import { createBackend } from '../runtime/node.js';
import { decodeCheckpoint, type Checkpoint, type CheckpointHeader } from '../train/checkpoint.js';
import { Trainer, type StepInfo } from '../train/trainer.js';
import { Progress } from './progress.js';
import { InterruptedError, UsageError } from './errors.js';
import { epFrom, lossFrom, lossOptions, number, oneOf, parse } from './options.js';

const HELP = `kfqn train [MODEL.onnx] [options]
  With no MODEL: the K-BFGS paper's MNIST autoencoder (784-1000-500-250-30-250-500-1000-784) on the
  bundled 10,000 MNIST digits, sigmoid BCE on logits summed per sample, Adam, 10 epochs.

Data
  --data mnist|idx:DIR       bundled digits (default; first 9,000 for training) or an IDX directory
                             (train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz])
  --limit N                  keep the first N samples
  --eval mnist|idx:DIR|split:F  after each epoch, the loss (and accuracy for labels) on held-out data:
                             the bundled digits' last 1,000, an IDX directory's t10k-* files, or the
                             last fraction F of the training data (default run: mnist)
  --target label|input       class labels (default), or the input itself (autoencoders)
  --batch-size N             default 1000 for the bundled autoencoder, else 128
  --epochs N | --steps N     stop after N epochs (default 1; 10 for the default run) or N steps
  --no-shuffle               batches in file order (default: seeded shuffle per epoch)
  --seed N                   shuffle seed (default 0)
Loss
  --loss cross-entropy|mse|bce-with-logits   (default cross-entropy for labels, mse for --target input)
  --reduction mean|sum|per-sample-sum     (default mean)
  --output NAME              the model output the loss applies to (default the first)
  --batchnorm frozen|train   BatchNormalization: running statistics as constants, scale and bias
                             trained (default; what an eval-mode export computes), or batch
                             statistics with the running statistics updated and written by --out
Optimizer
  --optimizer sgd|adam|rmsprop|kfac|shampoo|kbfgs|kbfgs-l|kfqn|kfqn-l   (default adam)
  --lr X                     learning rate (sgd 0.01, adam/rmsprop 0.001, kfac 1, shampoo 0.1,
                             kbfgs, kfqn 0.3)
  --lr-schedule S            α times a schedule, counted in steps: step:N:G (×G every N steps;
                             Ne: every N epochs), cosine[:F] (cosine from α down to F·α over the
                             run's --epochs or --steps; F default 0); default constant
  --momentum X               sgd: PyTorch momentum (default 0), --nesterov; rmsprop, kfac, shampoo,
                             kbfgs, kfqn: ρ of m ← ρm + (1−ρ)ĝ (default 0.9)
  --paper-compat             sgd: the papers' SGD-m (m ← 0.9m + 0.1ĝ from 0, τ 1e-5); adam: the
                             K-BFGS authors' Adam (v from m̂², β2 0.9, ε 1e-4, τ 1e-5)
  --beta1 X --beta2 X --eps X  adam (0.9, 0.999, 1e-8)
                             rmsprop: --beta2 = decay of v (0.9), --eps (1e-4); shampoo: --eps = ε (10)
  --weight-decay X           L2 added to the gradient (default 0; rmsprop, kfac, shampoo, kbfgs,
                             kfqn 1e-5)
  --decoupled-weight-decay   decoupled decay instead (AdamW, SGDW)
  --damping X                kfac: √λ added to each factor (3); kbfgs, kfqn: λ, λ_A = √λ added to
                             A, μ2 = √λ (0.3); shampoo: ε; ignored with a warning by sgd/adam/rmsprop
  --history N                kbfgs-l, kfqn-l: L-BFGS memory p of the G side (default 100)
  --stat-decay X             kfac, shampoo, kbfgs: EMA decay of the factors (default 0.9)
  --damping-mode neurips|lm  kbfgs, kfqn: the second damping step (kbfgs neurips, kfqn lm = DDV2)
  --abar-bias mean|one       kbfgs, kfqn: ā's homogeneous entry in the Hessian-action pair: the mean
                             of its other entries (kbfgs default, the authors' code), or 1 (kfqn)
  --a-side dense|lbfgs       kfqn: H_a a dense BFGS inverse (default) or L-BFGS pairs (memory
                             O(p·(d_a + d_g)) per layer)
  --a-history N              kfqn --a-side lbfgs: L-BFGS memory of the A side (default 100)
  --a-init pair|factor       kfqn --a-side lbfgs: H0 of the A side, γI from the newest pair
                             (default), or (diag(A_B) + λ_A)⁻¹ from the first batch
  --conv-damping plain|sqrt-t  kfqn: conv layers' λ_A = μ2 = √λ (default), or λ_A = √(λ|T|),
                             μ2 = √(λ/|T|) with |T| the output positions
  --variant default|convergent  kfqn: curvature pairs from the step's batch at constant α
                             (default), or from an independent batch with α_k = lr·k^(−β)
  --step-power X             kfqn --variant convergent: β in (0.5, 1) (default 0.6)
  --curvature-interval N     kbfgs, kfqn: second pass and curvature update every N steps, H_g·X·H_a
                             with the curvature held between (default 1, the authors')
  --g-init identity|factor   kbfgs, kfqn: H_g⁰ = I (default, the authors'), or (G + μ2·I)⁻¹ from
                             the gradient factor G of the batches that give H_a⁰ (-l: the diagonal)
  --warm-start | --no-warm-start   rmsprop (v), kfac, shampoo, kbfgs (the factors): one pass over
                             the data first (default), or the first batch (kfqn always)
  --stat-interval N          kfac, shampoo: refresh the factors every N steps (default 1)
  --inverse-interval N       kfac: invert every N steps and at each of the first N (default 20)
  --fisher sampled|empirical kfac: G from targets sampled from the model (default) or the data's
  --stat-warmup | --no-stat-warmup   kfac: the factors' decay min(1 − 1/(k+1), β) at the k-th
                             refresh, restarting at step 0 (default, the authors' code; no warm start
                             then), or β from the warm start
  --root-interval N          shampoo: inverse fourth roots every N steps (default 20)
  --root-iterations N        shampoo: coupled Newton iterations per root (default 25)
Checkpoints
  --checkpoint FILE          after every epoch, at the end and on Ctrl-C, write the run's state
                             (weights, optimizer state, position in the data) to FILE
  --checkpoint-every N       also every N steps
  --resume FILE              continue the run FILE holds, exactly where it stopped: its command
                             line is the default, flags given now override it (--epochs and --steps
                             count the whole run); the log is appended to
Runtime and output
  --ep cpu|wasm|webgpu|cuda  execution provider (default cpu)
  --log FILE.jsonl           one JSON line per step: {"step","epoch","loss","time","lr"} (kbfgs, kfqn
                             add "powell_damped", "skipped_updates" on curvature steps), and per
                             evaluated epoch: {"epoch","eval_loss","eval_accuracy"}
  --out FILE.onnx            your model with the trained weights in place
  --quiet                    no progress display`;

export async function train(args: string[]): Promise<void> {
  const given = parse(args, TRAIN_OPTIONS, 1);
  if (given.values.help) return void console.log(HELP);
  const resumed = given.values.resume === undefined ? undefined : readResume(given.values.resume as string);
  const { values, positionals } = resumed ? resumedCommandLine(given, resumed.header) : given;
  const isDefault = positionals.length === 0;
  const modelPath = positionals[0] ?? join(packageRoot(), DEFAULT_MODEL);
  // The default run is the K-BFGS paper's autoencoder setting (ALGORITHMS.md §8.1).
  const targetKind = oneOf(values.target, ['label', 'input'] as const, '--target', isDefault ? 'input' : 'label');
  const loss = lossFrom(values, isDefault ? 'bce-with-logits' : targetKind === 'label' ? 'cross-entropy' : 'mse');
  if (isDefault && values.reduction === undefined) loss.reduction = 'per-sample-sum';

  const name = oneOf(values.optimizer, OPTIMIZERS, '--optimizer', 'adam');
  const settings = optimizerSettings(name, values);
  let data = loadDataSpec((values.data as string | undefined) ?? 'mnist', 'train');
  const lim = number(values.limit, '--limit', { integer: true, min: 1 });
  if (lim) data = limit(data, lim);
  const evalSpec = (values.eval as string | undefined) ?? (isDefault ? 'mnist' : undefined);
  let evaluationData: Dataset | undefined;
  if (evalSpec?.startsWith('split:')) {
    const fraction = number(evalSpec.slice(6), '--eval split:F');
    if (!(fraction! > 0 && fraction! < 1)) throw new UsageError(`--eval split:F needs 0 < F < 1; got '${evalSpec}'`);
    ({ train: data, test: evaluationData } = split(data, 1 - fraction!));
  } else if (evalSpec) {
    evaluationData = loadDataSpec(evalSpec, 'test');
  }
  const batchSize = number(values['batch-size'], '--batch-size', { integer: true, min: 1 }) ?? (isDefault ? 1000 : 128);
  const steps = number(values.steps, '--steps', { integer: true, min: 1 });
  const epochs = number(values.epochs, '--epochs', { integer: true, min: 1 }) ?? (steps ? undefined : isDefault ? 10 : 1);
  // Resuming: the checkpoint's hyper-parameters, with the flags given over them.
  const saved = resumed && cliName(resumed.header.optimizer.name) === name ? resumed.header.optimizer.options : {};
  const perEpoch = Math.ceil(data.size / batchSize);
  const runSteps = Math.min(steps ?? Infinity, epochs !== undefined ? epochs * perEpoch : Infinity);
  const schedule = lrSchedule(values['lr-schedule'] as string | undefined, perEpoch, runSteps);
  const optimizer = createOptimizer(name, { ...saved, ...settings, ...(schedule ? { lrSchedule: schedule } : {}) });
  const checkpointPath = values.checkpoint as string | undefined;
  const checkpointEvery = number(values['checkpoint-every'], '--checkpoint-every', { integer: true, min: 1 });
  if (checkpointEvery && !checkpointPath) throw new UsageError('--checkpoint-every N needs --checkpoint FILE');

  const model = readModelFile(modelPath);
  const backend = await createBackend(epFrom(values.ep));
  const trainer = await Trainer.create(backend, model, { ...loss, optimizer, target: targetKind, source: basename(modelPath) });
  // --epochs and --steps count the whole run: a resumed one trains what is left.
  let done = { steps: 0, epochs: 0 };
  if (resumed) {
    const { changedOptions, header } = await trainer.restore(resumed.checkpoint, resumed.path);
    done = { steps: header.trainer.steps, epochs: header.position.epoch };
    const { epoch, batch } = header.position;
    console.log(`resuming ${resumed.path} at step ${header.trainer.steps} (${batch ? `epoch ${epoch + 1}, after its batch ${batch}` : `after epoch ${epoch}`})`);
    for (const c of changedOptions) console.log(`  ${c.option}: ${JSON.stringify(c.now)} (the checkpoint's run had ${JSON.stringify(c.saved)})`);
  }
  const stepsLeft = steps === undefined ? undefined : steps - done.steps;
  const epochsLeft = epochs === undefined ? undefined : epochs - done.epochs;
  // Opened at the first step, so a run that fails before training leaves no empty log behind; a resumed run appends.
  let log: WriteStream | undefined;
  const writeLog = (line: string) => { log ??= createWriteStream(values.log as string, { flags: resumed ? 'a' : 'w' }); log.write(line); };
  const progress = values.quiet || !process.stderr.isTTY ? undefined : new Progress(process.stderr);
  const totalSteps = Math.min(stepsLeft ?? Infinity, epochsLeft !== undefined ? epochsLeft * perEpoch : Infinity);
  // The command line a checkpoint keeps, with its paths made absolute, for --resume.
  const commandLine = savedCommandLine(values, positionals);
  const saveCheckpoint = async () => {
    if (!checkpointPath) return;
    writeFileAtomic(checkpointPath, await trainer.checkpoint({ commandLine }));
  };
  // Ctrl-C: stop after the step under way and save; a second Ctrl-C quits at once.
  const stop = new AbortController();
  const onInterrupt = () => {
    if (stop.signal.aborted) process.exit(130);
    stop.abort();
    progress?.clear();
    console.error(`kfqn train: interrupted, stopping after this step${checkpointPath ? ` and writing ${checkpointPath}` : ' (no --checkpoint: the run is not saved)'}; Ctrl-C again to quit now`);
  };
  process.on('SIGINT', onInterrupt);
  console.log(`kfqn train: ${basename(modelPath)} on ${data.name} (${data.size} samples), ${optimizer.name} ${JSON.stringify(optimizer.options)}, `
    + `${loss.kind}/${loss.reduction}, batch ${batchSize}, ${Number.isFinite(totalSteps) ? `${totalSteps} steps` : ''} on ${backend.ep}`);
  try {
    if (!((stepsLeft ?? 1) > 0 && (epochsLeft ?? 1) > 0)) {
      console.log(`nothing to train: the checkpoint's run is at step ${done.steps}, which --epochs and --steps do not go past`);
    } else {
      const result = await trainer.fit(data, {
        batchSize, epochs: epochsLeft, steps: stepsLeft, evaluationData, shuffle: values['no-shuffle'] !== true, seed: number(values.seed, '--seed', { integer: true }) ?? 0,
        signal: stop.signal,
        onStep: async (s: StepInfo) => {
          if (values.log) {
            const extra = s.powellDamped !== undefined ? { powell_damped: s.powellDamped, skipped_updates: s.skippedUpdates } : {};
            writeLog(`${JSON.stringify({ step: s.step, epoch: s.epoch, loss: s.loss, time: s.time, lr: s.lr, ...extra })}\n`);
          }
          progress?.update(s, totalSteps, batchSize);
          if (checkpointEvery && s.step % checkpointEvery === 0) await saveCheckpoint();
        },
        onEpoch: async (e) => {
          progress?.clear();
          const ev = e.evaluation;
          const evalText = ev ? `; eval loss ${ev.loss.toFixed(4)}${ev.accuracy !== undefined ? `, accuracy ${(100 * ev.accuracy).toFixed(2)}%` : ''} on ${ev.samples}` : '';
          console.log(`epoch ${e.epoch + 1}: mean loss ${e.meanLoss.toFixed(4)} (${e.steps} steps, ${e.time.toFixed(1)} s)${evalText}`);
          if (ev && values.log) writeLog(`${JSON.stringify({ epoch: e.epoch, eval_loss: ev.loss, ...(ev.accuracy !== undefined ? { eval_accuracy: ev.accuracy } : {}) })}\n`);
          await saveCheckpoint();
        },
      });
      progress?.clear();
      await saveCheckpoint();
      if (result.interrupted) {
        throw new InterruptedError(`interrupted after step ${trainer.step}${checkpointPath ? `; ${checkpointPath} holds the run: continue it with --resume ${checkpointPath}` : ''}`);
      }
      console.log(`done: ${result.steps} steps in ${result.seconds.toFixed(1)} s, final minibatch loss ${result.finalLoss.toFixed(4)}${result.skippedSteps ? `, ${result.skippedSteps} non-finite steps skipped` : ''}`);
    }
    if (values.out) {
      writeFileAtomic(values.out as string, await trainer.exportModel());
      console.log(`wrote ${values.out}`);
    }
  } finally {
    process.off('SIGINT', onInterrupt);
    progress?.clear();
    await new Promise<void>((resolve) => (log ? log.end(() => resolve()) : resolve()));
    await trainer.dispose();
  }
}

const TRAIN_OPTIONS = {
  ...lossOptions, data: { type: 'string' }, limit: { type: 'string' }, eval: { type: 'string' }, target: { type: 'string' },
  'batch-size': { type: 'string' }, epochs: { type: 'string' }, steps: { type: 'string' },
  'no-shuffle': { type: 'boolean' }, seed: { type: 'string' },
  optimizer: { type: 'string' }, lr: { type: 'string' }, momentum: { type: 'string' }, nesterov: { type: 'boolean' },
  beta1: { type: 'string' }, beta2: { type: 'string' }, eps: { type: 'string' },
  'weight-decay': { type: 'string' }, 'decoupled-weight-decay': { type: 'boolean' },
  damping: { type: 'string' }, history: { type: 'string' }, 'stat-decay': { type: 'string' }, 'damping-mode': { type: 'string' },
  'warm-start': { type: 'boolean' }, 'no-warm-start': { type: 'boolean' }, 'stat-interval': { type: 'string' }, 'inverse-interval': { type: 'string' },
  'root-interval': { type: 'string' }, 'root-iterations': { type: 'string' }, fisher: { type: 'string' }, 'stat-warmup': { type: 'boolean' }, 'no-stat-warmup': { type: 'boolean' }, 'paper-compat': { type: 'boolean' }, 'abar-bias': { type: 'string' },
  'a-side': { type: 'string' }, 'a-history': { type: 'string' }, 'conv-damping': { type: 'string' }, variant: { type: 'string' }, 'step-power': { type: 'string' },
  'curvature-interval': { type: 'string' }, 'g-init': { type: 'string' }, 'a-init': { type: 'string' }, ep: { type: 'string' }, log: { type: 'string' }, out: { type: 'string', short: 'o' }, quiet: { type: 'boolean' },
  checkpoint: { type: 'string' }, 'checkpoint-every': { type: 'string' }, resume: { type: 'string' }, 'lr-schedule': { type: 'string' },
} as const;

const OPTIMIZERS = Object.keys(OPTIMIZER_FACTORIES) as OptimizerName[];

/** Which optimizers take each optimizer-specific flag (the rest take --lr, --weight-decay, --decoupled-weight-decay). */
const FLAG_OWNERS: Record<string, readonly OptimizerName[]> = {
  momentum: ['sgd', 'rmsprop', 'kfac', 'shampoo', 'kbfgs', 'kbfgs-l', 'kfqn', 'kfqn-l'], nesterov: ['sgd'], beta1: ['adam'], beta2: ['adam', 'rmsprop'],
  eps: ['adam', 'rmsprop', 'shampoo'], damping: ['kfac', 'shampoo', 'kbfgs', 'kbfgs-l', 'kfqn', 'kfqn-l'], history: ['kbfgs-l', 'kfqn-l'],
  'damping-mode': ['kbfgs', 'kbfgs-l', 'kfqn', 'kfqn-l'], 'curvature-interval': ['kbfgs', 'kbfgs-l', 'kfqn', 'kfqn-l'], 'abar-bias': ['kbfgs', 'kbfgs-l', 'kfqn', 'kfqn-l'],
  'g-init': ['kbfgs', 'kbfgs-l', 'kfqn', 'kfqn-l'],
  'a-side': ['kfqn', 'kfqn-l'], 'a-history': ['kfqn', 'kfqn-l'], 'a-init': ['kfqn', 'kfqn-l'], 'conv-damping': ['kfqn', 'kfqn-l'], variant: ['kfqn', 'kfqn-l'], 'step-power': ['kfqn', 'kfqn-l'],
  'stat-decay': ['kfac', 'shampoo', 'kbfgs', 'kbfgs-l'], 'warm-start': ['rmsprop', 'kfac', 'shampoo', 'kbfgs', 'kbfgs-l'],
  'no-warm-start': ['rmsprop', 'kfac', 'shampoo', 'kbfgs', 'kbfgs-l'], 'paper-compat': ['sgd', 'adam'],
  'stat-interval': ['kfac', 'shampoo'], 'inverse-interval': ['kfac'], fisher: ['kfac'], 'root-interval': ['shampoo'], 'root-iterations': ['shampoo'],
  'stat-warmup': ['kfac'], 'no-stat-warmup': ['kfac'],
};

/** --lr-schedule step:N[e]:G or cosine[:F], in steps: N epochs are N·perEpoch steps, cosine spans the run's `runSteps`. */
function lrSchedule(spec: string | undefined, perEpoch: number, runSteps: number): LrSchedule | undefined {
  if (spec === undefined) return undefined;
  const step = /^step:(\d+)(e?):([0-9.eE+-]+)$/.exec(spec);
  const cosine = /^cosine(?::([0-9.eE+-]+))?$/.exec(spec);
  const bad = (why: string) => new UsageError(`--lr-schedule '${spec}': ${why}`);
  let s: LrSchedule;
  if (step) s = { kind: 'step', every: Number(step[1]) * (step[2] ? perEpoch : 1), gamma: Number(step[3]) };
  else if (cosine) {
    if (!Number.isFinite(runSteps)) throw bad('cosine spans the run, which needs --epochs or --steps');
    s = { kind: 'cosine', steps: runSteps, ...(cosine[1] !== undefined ? { floor: Number(cosine[1]) } : {}) };
  } else throw bad('give step:N:G (every N steps), step:Ne:G (every N epochs) or cosine[:F]');
  try {
    checkLrSchedule(s);
  } catch (e) {
    throw bad((e as Error).message);
  }
  return s;
}

/** The options of optimizer `name` that the flags in `values` set (the rest are left to its defaults). */
function optimizerSettings(name: OptimizerName, values: Record<string, unknown>): Record<string, unknown> {
  // One command line for every optimizer (the papers' comparisons pass --lr and --damping to each):
  // Shampoo's damping is its ε; a first-order method has none, which is said, not fatal.
  if (values.damping !== undefined && name === 'shampoo') {
    if (values.eps !== undefined) throw new UsageError('--damping and --eps both set Shampoo\'s ε; give one');
    values = { ...values, eps: values.damping, damping: undefined };
  }
  if (values.damping !== undefined && !FLAG_OWNERS.damping.includes(name)) {
    console.error(`kfqn train: --damping does not apply to ${name}; ignored`);
    values = { ...values, damping: undefined };
  }
  for (const [flag, owners] of Object.entries(FLAG_OWNERS)) {
    if (values[flag] !== undefined && !owners.includes(name)) throw new UsageError(`--${flag} is not an option of ${name} (it is for ${owners.join(', ')})`);
  }
  if (values['warm-start'] && values['no-warm-start']) throw new UsageError('--warm-start and --no-warm-start contradict each other');
  if (values['stat-warmup'] && values['no-stat-warmup']) throw new UsageError('--stat-warmup and --no-stat-warmup contradict each other');
  if (name === 'kfac' && values['warm-start'] && !values['no-stat-warmup']) {
    throw new UsageError('--warm-start has no effect on kfac with its statistics warm-up (the default, as the authors: the factors restart at step 0); add --no-stat-warmup');
  }
  const num = (flag: string, opts: { integer?: boolean; min?: number } = { min: 0 }) => number(values[flag], `--${flag}`, opts);
  const int = (flag: string) => num(flag, { integer: true, min: 1 });
  const common = defined({
    lr: num('lr'), weightDecay: num('weight-decay'), decoupledWeightDecay: values['decoupled-weight-decay'] === true, momentum: num('momentum'),
  });
  const curvature = { ...common, ...defined({ statDecay: num('stat-decay'), warmStart: values['no-warm-start'] === true ? false : undefined }) };
  switch (name) {
    case 'kbfgs': case 'kbfgs-l': case 'kfqn': case 'kfqn-l': {
      const choice = <T extends string>(flag: string, options: readonly T[]) => (values[flag] === undefined ? undefined : oneOf(values[flag], options, `--${flag}`));
      const quasiNewton = defined({
        damping: num('damping'), dampingMode: choice('damping-mode', ['neurips', 'lm'] as const), abarBias: choice('abar-bias', ['mean', 'one'] as const),
        history: int('history'), curvatureInterval: int('curvature-interval'), gInit: choice('g-init', ['identity', 'factor'] as const),
      });
      if (name === 'kbfgs' || name === 'kbfgs-l') return { ...curvature, ...quasiNewton };
      const o = {
        ...common, ...quasiNewton, ...defined({
          aSide: choice('a-side', ['dense', 'lbfgs'] as const), aHistory: int('a-history'), aInit: choice('a-init', ['pair', 'factor'] as const), convDamping: choice('conv-damping', ['plain', 'sqrt-t'] as const),
          variant: choice('variant', ['default', 'convergent'] as const), stepPower: num('step-power'),
        }),
      };
      if (values['a-history'] !== undefined && o.aSide !== 'lbfgs') throw new UsageError('--a-history is the memory of --a-side lbfgs; give --a-side lbfgs too');
      if (values['a-init'] !== undefined && o.aSide !== 'lbfgs') throw new UsageError('--a-init sets the H0 of --a-side lbfgs (a dense H_a starts from (A_B + λ_A·I)⁻¹); give --a-side lbfgs too');
      if (values['step-power'] !== undefined && o.variant !== 'convergent') throw new UsageError('--step-power sets the decay of --variant convergent; give --variant convergent too');
      return o;
    }
    case 'kfac':
      return {
        ...curvature, ...defined({
          damping: num('damping'), statInterval: int('stat-interval'), inverseInterval: int('inverse-interval'),
          fisher: values.fisher === undefined ? undefined : oneOf(values.fisher, ['sampled', 'empirical'] as const, '--fisher'),
          statWarmup: values['no-stat-warmup'] === true ? false : undefined,
        }),
      };
    case 'shampoo':
      return { ...curvature, ...defined({ epsilon: num('eps'), statInterval: int('stat-interval'), rootInterval: int('root-interval'), rootIterations: int('root-iterations') }) };
    case 'sgd': return { ...common, ...defined({ nesterov: values.nesterov === true, paperCompat: values['paper-compat'] === true }) };
    case 'rmsprop': return { ...common, ...defined({ decay: num('beta2', {}), eps: num('eps'), warmStart: values['no-warm-start'] === true ? false : undefined }) };
    case 'adam': {
      const { momentum: _, ...rest } = common;
      return { ...rest, ...defined({ beta1: num('beta1', {}), beta2: num('beta2', {}), eps: num('eps'), paperCompat: values['paper-compat'] === true }) };
    }
  }
}

/** The options the command line sets: undefined ones are left to the optimizer's defaults (false is a setting: --no-warm-start). */
function defined<T extends Record<string, unknown>>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

// ---------------------------------------------------------------------------------------------
// --resume: the checkpoint's command line under the flags given now

interface SavedCommandLine { values: Record<string, unknown>; positionals: string[] }

/** Flags whose value is a path, and data specs that hold one (idx:DIR). */
const PATH_FLAGS = ['log', 'out', 'checkpoint'];
const DATA_FLAGS = ['data', 'eval'];

/** The command line to keep in a checkpoint: paths absolute, so that --resume works from any directory. */
function savedCommandLine(values: Record<string, unknown>, positionals: string[]): SavedCommandLine {
  const kept: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(values)) {
    if (v === undefined || k === 'resume' || k === 'help') continue;
    if (PATH_FLAGS.includes(k)) kept[k] = resolve(v as string);
    else if (DATA_FLAGS.includes(k) && typeof v === 'string' && v.startsWith('idx:')) kept[k] = `idx:${resolve(v.slice(4))}`;
    else kept[k] = v;
  }
  return { values: kept, positionals: positionals.map((p) => resolve(p)) };
}

function readResume(path: string): { path: string; checkpoint: Checkpoint; header: CheckpointHeader } {
  const checkpoint = decodeCheckpoint(readCheckpointFile(path), path);
  return { path, checkpoint, header: checkpoint.header };
}

/** The --optimizer of an optimizer name: AdamW is adam with --decoupled-weight-decay (kept in its options). */
function cliName(name: string): string {
  return name === 'adamw' ? 'adam' : name;
}

/**
 * The run to resume: the checkpoint's command line (for one written by the API: its optimizer, loss
 * and batch plan) with the flags given now over it.
 */
function resumedCommandLine(given: { values: Record<string, unknown>; positionals: string[] }, header: CheckpointHeader): { values: Record<string, unknown>; positionals: string[] } {
  const named = given.values.optimizer;
  if (named !== undefined && named !== cliName(header.optimizer.name)) throw new UsageError(`the checkpoint holds a ${header.optimizer.name} run; --optimizer ${named} cannot continue it`);
  const saved = header.run?.commandLine as SavedCommandLine | undefined;
  const plan = header.position.plan;
  const base: Record<string, unknown> = saved?.values ?? {
    optimizer: cliName(header.optimizer.name), loss: header.training.loss, reduction: header.training.reduction, target: header.training.target, batchnorm: header.training.batchnorm,
    ...(plan ? { 'batch-size': String(plan.batchSize), seed: String(plan.seed), ...(plan.shuffle ? {} : { 'no-shuffle': true }) } : {}),
  };
  // A switch given now replaces its opposite on the saved command line.
  const kept = { ...base };
  for (const [on, off] of [['warm-start', 'no-warm-start'], ['stat-warmup', 'no-stat-warmup']]) {
    if (given.values[on] !== undefined) delete kept[off];
    if (given.values[off] !== undefined) delete kept[on];
  }
  return { values: { ...kept, ...given.values }, positionals: given.positionals.length ? given.positionals : saved?.positionals ?? [] };
}
