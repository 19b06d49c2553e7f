// The training loop: batches in, one fused step graph run per step, parameters kept as runtime
// tensors, the user's own model out.
import { buildEvaluationGraph, encodeModel, withTrainedParameters, type BatchNormMode, type TrainingGraph, type Dim, type EvaluationGraph, type LossSpec, type onnx, type TensorData } from '../../graph-tools/index.js';
import { batches, batchesPerEpoch, type Batch, type Dataset } from '../data/index.js';
import type { ElementwiseOptimizer } from '../optim/optimizer.js';
import type { KroneckerOptimizer } from '../optim/kbfgs.js';
import type { FactoredOptimizer } from '../optim/kfac.js';
import { ElementwiseEngine, type EngineStep } from './elementwise-engine.js';
import { KroneckerEngine } from './kronecker-engine.js';
import { FactoredEngine } from './factored-engine.js';
import type { Backend, Session, Tensor, TensorArray } from '../runtime/backend.js';
import { InputError } from '../errors.js';
import {
  CHECKPOINT_FORMAT, CHECKPOINT_VERSION, checkSameTensors, decodeCheckpoint, encodeCheckpoint, type BatchPlan, type Checkpoint, type CheckpointHeader, type DataPosition,
} from './checkpoint.js';

export type TargetKind = 'label' | 'input';

export interface TrainerOptions extends LossSpec {
  optimizer: ElementwiseOptimizer | KroneckerOptimizer | FactoredOptimizer;
  /** 'label': the dataset's class labels; 'input': the input itself (autoencoders). */
  target?: TargetKind;
  /** The model output the loss applies to (default the first). */
  output?: string;
  source?: string;
  /** BatchNormalization: running statistics as constants (default 'frozen'), or batch statistics ('train'). */
  batchnorm?: BatchNormMode;
}

export interface StepInfo {
  step: number; epoch: number; loss: number; time: number; lr: number; skipped: boolean;
  /** Quasi-Newton methods: the share of layers whose G-side pair was Powell-damped, and whose update was skipped. */
  powellDamped?: number;
  skippedUpdates?: number;
}
export interface Evaluation {
  /** The loss over the whole evaluation set, with the training reduction (a sum for 'sum'). */
  loss: number;
  /** Share of argmax predictions equal to the label (cross-entropy only). */
  accuracy?: number;
  samples: number;
}
export interface EpochInfo { epoch: number; steps: number; meanLoss: number; time: number; evaluation?: Evaluation }

export interface FitOptions {
  batchSize: number;
  /** Stop after this many epochs (default 1) ... */
  epochs?: number;
  /** ... or after this many steps, whichever comes first. */
  steps?: number;
  shuffle?: boolean;
  seed?: number;
  /** Evaluated after every epoch (reported in onEpoch). */
  evaluationData?: Dataset;
  onStep?: (info: StepInfo) => void | Promise<void>;
  onEpoch?: (info: EpochInfo) => void | Promise<void>;
  /** Aborting it stops fit() before its next step (the step under way finishes): Ctrl-C in the CLI. */
  signal?: AbortSignal;
}

/** `epochs`: the epochs fit() went through, the one it finished from an earlier stop included; `interrupted`: stopped by `signal`. */
export interface FitResult { steps: number; epochs: number; skippedSteps: number; finalLoss: number; seconds: number; interrupted: boolean }

/** What restore() found: the optimizer options that differ from the checkpoint's run (this trainer's apply). */
export interface RestoreResult { changedOptions: { option: string; saved: unknown; now: unknown }[]; header: CheckpointHeader }

/** What the Trainer needs of an optimizer's driver (elementwise-engine.ts, kronecker-engine.ts). */
interface Engine {
  params: Map<string, Tensor>;
  buffers: Map<string, Tensor>;
  readonly optimizerState: ReadonlyMap<string, Tensor>;
  readonly training: Pick<TrainingGraph, 'dataInputs' | 'target' | 'output'>;
  step(data: Record<string, Tensor>, t: number, curvatureData?: Record<string, Tensor>): Promise<EngineStep>;
  release(): Promise<void>;
  /** Engines with curvature state set up from data: the warm start, or the first batch. */
  readonly initialized?: boolean;
  readonly wantsWarmStart?: boolean;
  /** KF-QN's convergent variant: curvature pairs from a batch independent of the step's. */
  readonly wantsCurvatureBatch?: boolean;
  initialise?(batchFeeds: Iterable<Record<string, Tensor>>): Promise<void>;
  /** The engine's counters, for a checkpoint: its update count and whether its curvature was set up. */
  readonly counters: EngineCounters;
  /** Every input of the engine's graphs: the optimizer state names it can take back. */
  readonly inputNames: ReadonlySet<string>;
  /** Replaces parameters, running statistics, optimizer state and counters (checked by the Trainer). */
  restore(s: EngineSnapshot): void;
}

export interface EngineCounters { t: number; initialised: boolean }
export interface EngineSnapshot { params: Map<string, Tensor>; buffers: Map<string, Tensor>; state: Map<string, Tensor>; counters: EngineCounters }

export class Trainer {
  /** Steps attempted (what logs count) and updates applied (what the optimizer's step t counts). */
  private t = 0;
  private updates = 0;
  private skipped = 0;
  private last?: EngineStep;
  private evaluation?: { graph: EvaluationGraph; session: Session };
  /** Where fit() stands in its batches; a checkpoint carries it, so that a restored run continues there. */
  private position: DataPosition = { epoch: 0, batch: 0, curvatureDraws: 0 };
  /** A restored position that fit() has not continued yet: it must get the same batch plan. */
  private resumePending = false;

  private constructor(
    readonly backend: Backend,
    private readonly model: onnx.ModelProto,
    private readonly engine: Engine,
    private readonly options: TrainerOptions,
  ) {}

  static async create(backend: Backend, model: onnx.ModelProto, options: TrainerOptions): Promise<Trainer> {
    const spec = graphOptions(options);
    if (options.optimizer.kind === 'kronecker') return new Trainer(backend, model, await KroneckerEngine.create(backend, model, spec, options.optimizer), options);
    if (options.optimizer.kind === 'factored') return new Trainer(backend, model, await FactoredEngine.create(backend, model, spec, options.optimizer), options);
    return new Trainer(backend, model, await ElementwiseEngine.create(backend, model, spec, options.optimizer), options);
  }

  /** Steps taken so far. */
  get step(): number { return this.t; }
  get skippedSteps(): number { return this.skipped; }

  /** Bytes of the optimizer state the engine holds now (compare optimizerStateReport). */
  get optimizerStateBytes(): number {
    let bytes = 0;
    for (const t of this.engine.optimizerState.values()) bytes += t.dims.reduce((a, b) => a * b, 1) * (t.type === 'float64' ? 8 : 4);
    return bytes;
  }
  get parameterNames(): string[] { return [...this.engine.params.keys()]; }
  private get params(): Map<string, Tensor> { return this.engine.params; }
  private get buffers(): Map<string, Tensor> { return this.engine.buffers; }

  /** Whether trainStep needs a second, independent batch for the curvature pairs (KF-QN's convergent variant). */
  get wantsCurvatureBatch(): boolean { return this.engine.wantsCurvatureBatch === true; }

  /**
   * One optimizer step on a batch; returns the batch loss before the update. `curvatureBatch`, drawn
   * independently of `batch`, feeds the curvature pairs when wantsCurvatureBatch.
   */
  async trainStep(batch: Batch, curvatureBatch?: Batch): Promise<{ loss: number; skipped: boolean }> {
    if (this.wantsCurvatureBatch && !curvatureBatch) throw new InputError(`${this.options.optimizer.name} (variant convergent) needs an independent curvature batch at each step`);
    const t = this.updates + 1;
    const result = await this.engine.step(this.batchFeeds(batch), t, curvatureBatch && this.batchFeeds(curvatureBatch));
    this.t++;
    this.last = result;
    // A non-finite loss means non-finite gradients: the engine kept the old parameters and state,
    // and the step does not count for the optimizer (as PyTorch's GradScaler skips optimizer.step()).
    if (result.skipped) { this.skipped++; return { loss: result.loss, skipped: true }; }
    this.updates = t;
    return { loss: result.loss, skipped: false };
  }

  /**
   * The warm start of K-BFGS's A, RMSprop's v, KFAC's and Shampoo's factors (ALGORITHMS.md §3.3, §7):
   * the mean of the batch statistics over the full batches of `data` in file order, as the authors'
   * loop (a last partial batch is left out, unless it is the only one). Without it, they come from
   * the first training batch. No-op for other optimizers.
   */
  async warmStart(data: Dataset, batchSize: number): Promise<void> {
    if (!this.engine.initialise) return;
    const dropLast = data.size >= batchSize;
    const feeds = (function* (self: Trainer) {
      for (const b of batches(data, { batchSize, shuffle: false, seed: 0, epoch: 0, dropLast })) yield self.batchFeeds(b);
    })(this);
    await this.engine.initialise(feeds);
  }

  /**
   * Trains on `data` for `epochs` more epochs (default 1) or `steps` more steps, whichever ends
   * first. It continues where the trainer stands: after a stop mid-epoch (`steps`, `signal`, or a
   * restored checkpoint) it first finishes that epoch with the same batches, which counts as one of
   * the `epochs`; epoch indices (and so the shuffles) continue from earlier fits.
   */
  async fit(data: Dataset, options: FitOptions): Promise<FitResult> {
    const epochs = options.epochs ?? (options.steps ? Infinity : 1);
    const maxSteps = options.steps ?? Infinity;
    if (!(options.batchSize >= 1)) throw new InputError('batch size must be ≥ 1');
    const plan: BatchPlan = { batchSize: options.batchSize, shuffle: options.shuffle ?? true, seed: options.seed ?? 0, samples: data.size };
    this.continueWith(plan);
    if (this.engine.initialise && !this.engine.initialized && this.engine.wantsWarmStart) await this.warmStart(data, options.batchSize);
    const start = performance.now();
    const perEpoch = batchesPerEpoch(data.size, plan.batchSize);
    let steps = 0; let epochsRun = 0; let finalLoss = NaN; let interrupted = false;
    const curvatureBatches = this.wantsCurvatureBatch ? independentBatches(data, plan, this.position.curvatureDraws) : undefined;
    while (epochsRun < epochs && steps < maxSteps && !interrupted) {
      const epoch = this.position.epoch;
      let sum = 0; let n = 0;
      for (const batch of batches(data, { ...plan, epoch, from: this.position.batch })) {
        if (steps >= maxSteps) break;
        if (options.signal?.aborted) { interrupted = true; break; }
        const { loss, skipped } = await this.trainStep(batch, curvatureBatches?.next().value);
        this.position.batch = batch.index + 1;
        if (curvatureBatches) this.position.curvatureDraws++;
        steps++;
        finalLoss = loss;
        if (!skipped) { sum += loss; n++; }
        await options.onStep?.({
          step: this.t, epoch, loss, time: (performance.now() - start) / 1000, lr: this.options.optimizer.learningRate(Math.max(1, this.updates)), skipped,
          ...(this.last?.powellShare !== undefined ? { powellDamped: this.last.powellShare, skippedUpdates: this.last.skippedShare } : {}),
        });
      }
      if (this.position.batch >= perEpoch) this.position = { ...this.position, epoch: epoch + 1, batch: 0 };
      epochsRun++;
      // An epoch cut short by `steps` reports what it trained; one cut by the signal does not.
      if (interrupted && n === 0) break;
      const evaluation = options.evaluationData && !interrupted ? await this.evaluate(options.evaluationData, options.batchSize) : undefined;
      await options.onEpoch?.({ epoch, steps: n, meanLoss: sum / Math.max(1, n), time: (performance.now() - start) / 1000, evaluation });
    }
    return { steps, epochs: epochsRun, skippedSteps: this.skipped, finalLoss, seconds: (performance.now() - start) / 1000, interrupted };
  }

  /**
   * Sets the batch plan of a fit: mid-epoch with the same plan, it goes on from the next batch;
   * with another plan it starts the next epoch, unless the position comes from a checkpoint, which
   * only the run's own plan continues faithfully.
   */
  private continueWith(plan: BatchPlan): void {
    const p = this.position;
    const same = p.plan !== undefined && (Object.keys(plan) as (keyof BatchPlan)[]).every((k) => p.plan![k] === plan[k]);
    if (p.batch > 0 && !same) {
      if (this.resumePending) {
        throw new InputError(`the checkpoint stopped after batch ${p.batch} of epoch ${p.epoch + 1} of ${describePlan(p.plan!)}; fit() was given ${describePlan(plan)}: `
          + 'give the same data, batch size, shuffle and seed to finish that epoch as the run would have');
      }
      this.position = { ...p, epoch: p.epoch + 1, batch: 0 };
    }
    this.position.plan = plan;
    this.resumePending = false;
  }

  /**
   * A checkpoint of the run: parameters, running statistics, the optimizer's state and counters and
   * where fit() stands in its batches (see checkpoint.ts). `run` is kept as given, for the caller
   * (the CLI keeps its command line there).
   */
  async checkpoint(run?: Record<string, unknown>): Promise<Uint8Array> {
    const opt = this.options.optimizer;
    const header: CheckpointHeader = {
      format: CHECKPOINT_FORMAT, version: CHECKPOINT_VERSION,
      optimizer: { name: opt.name, options: { ...opt.options } },
      training: { loss: this.options.kind, reduction: this.options.reduction, target: this.options.target ?? 'label', batchnorm: this.options.batchnorm ?? 'frozen' },
      trainer: { steps: this.t, updates: this.updates, skipped: this.skipped },
      engine: this.engine.counters,
      position: structuredClone(this.position),
      tensors: [],
      ...(run ? { run } : {}),
    };
    return encodeCheckpoint({ header, tensors: { param: await this.read(this.params), buffer: await this.read(this.buffers), state: await this.read(this.engine.optimizerState) } });
  }

  /**
   * Continues from a checkpoint of this model and optimizer: after restore(), fit() with the same
   * data and batch settings takes the steps the checkpointed run would have taken next. Every tensor
   * is checked before anything changes; a checkpoint of another model, optimizer or optimizer
   * setting is refused naming what differs. The optimizer's hyper-parameters are this trainer's:
   * those that differ from the checkpoint's run are returned. Takes the bytes, or what
   * decodeCheckpoint made of them.
   */
  async restore(checkpoint: Uint8Array | Checkpoint, source = 'checkpoint'): Promise<RestoreResult> {
    const { header, tensors } = checkpoint instanceof Uint8Array ? decodeCheckpoint(checkpoint, source) : checkpoint;
    const opt = this.options.optimizer;
    if (header.optimizer.name !== opt.name) throw new InputError(`${source} holds ${header.optimizer.name} state; this run's optimizer is ${opt.name}`);
    const shapes = (m: ReadonlyMap<string, Tensor>) => new Map([...m].map(([k, t]) => [k, { dtype: t.type as TensorData['dtype'], dims: t.dims }]));
    checkSameTensors('parameter', source, tensors.param, shapes(this.params), true);
    checkSameTensors('running statistic', source, tensors.buffer, shapes(this.buffers), true);
    // The state held now (before any step) must all be there; the rest (what initialisation adds) must be inputs of this optimizer's graphs.
    checkSameTensors('optimizer state', source, tensors.state, shapes(this.engine.optimizerState), false);
    const inputs = this.engine.inputNames;
    const foreign = [...tensors.state.keys()].find((k) => !inputs.has(k));
    if (foreign) throw new InputError(`${source} holds optimizer state '${foreign}' that this ${opt.name} setting does not use: it was saved with other options (${JSON.stringify(header.optimizer.options)})`);
    const toTensors = (m: Map<string, TensorData>) => new Map([...m].map(([k, t]) => [k, this.backend.tensor(t.dtype as 'float32', t.data as Float32Array, t.dims)]));
    this.engine.restore({ params: toTensors(tensors.param), buffers: toTensors(tensors.buffer), state: toTensors(tensors.state), counters: header.engine });
    this.t = header.trainer.steps;
    this.updates = header.trainer.updates;
    this.skipped = header.trainer.skipped;
    this.last = undefined;
    this.position = structuredClone(header.position);
    this.resumePending = true;
    const now = opt.options as Record<string, unknown>;
    const keys = new Set([...Object.keys(header.optimizer.options), ...Object.keys(now)]);
    const changedOptions = [...keys].filter((k) => JSON.stringify(header.optimizer.options[k]) !== JSON.stringify(now[k]))
      .map((option) => ({ option, saved: header.optimizer.options[option], now: now[option] }));
    return { changedOptions, header };
  }

  /** Current parameter values, copied out of the runtime. */
  async parameters(): Promise<Map<string, TensorData>> { return this.read(this.params); }

  /** Current BatchNormalization running statistics ('train' mode; empty otherwise). */
  async runningStatistics(): Promise<Map<string, TensorData>> { return this.read(this.buffers); }

  private async read(tensors: ReadonlyMap<string, Tensor>): Promise<Map<string, TensorData>> {
    const out = new Map<string, TensorData>();
    for (const [name, t] of tensors) {
      const data = await this.backend.read(t);
      out.set(name, { dtype: t.type as TensorData['dtype'], dims: [...t.dims], data: (data as TensorArray).slice() as TensorData['data'] });
    }
    return out;
  }

  /** The user's model with the trained weights in place, as ONNX bytes. */
  async exportModel(): Promise<Uint8Array> {
    const values = new Map([...await this.parameters(), ...await this.runningStatistics()]);
    return encodeModel(withTrainedParameters(this.model, values, this.options.source));
  }

  /** Loss (and accuracy for classifiers) of the current parameters on a dataset, in file order. */
  async evaluate(data: Dataset, batchSize = 1000): Promise<Evaluation> {
    if (!this.evaluation) {
      const graph = buildEvaluationGraph(this.model, graphOptions(this.options));
      const session = await this.backend.createSession(encodeModel(graph.model), { name: `evaluation graph of ${this.options.source ?? 'model'}` });
      this.evaluation = { graph, session };
    }
    const { graph, session } = this.evaluation;
    let loss = 0; let correct = 0; let samples = 0;
    for (const batch of batches(data, { batchSize, shuffle: false, seed: 0, epoch: 0 })) {
      const feeds: Record<string, Tensor> = { ...this.batchFeeds(batch, graph) };
      for (const [k, v] of this.params) feeds[k] = v;
      for (const [k, v] of this.buffers) feeds[k] = v;
      const out = await session.run(feeds);
      const batchLoss = Number((await this.backend.read(out[graph.outputs.loss]))[0]);
      // 'sum' adds up; 'mean' and 'per-sample-sum' average over samples, so weight by batch size.
      loss += this.options.reduction === 'sum' ? batchLoss : batchLoss * batch.size;
      if (graph.outputs.correct) correct += Number((await this.backend.read(out[graph.outputs.correct]))[0]);
      samples += batch.size;
    }
    return {
      loss: this.options.reduction === 'sum' ? loss : loss / samples,
      accuracy: graph.outputs.correct ? correct / samples : undefined,
      samples,
    };
  }

  async dispose(): Promise<void> {
    await this.engine.release();
    await this.evaluation?.session.release();
  }

  /** Shapes a batch for the model's input and builds the target. */
  private batchFeeds(batch: Batch, tg: Pick<EvaluationGraph, 'dataInputs' | 'target' | 'output'> = this.engine.training): Record<string, Tensor> {
    if (tg.dataInputs.length !== 1) throw new InputError(`the model has ${tg.dataInputs.length} inputs; training from a dataset needs exactly one`);
    const input = tg.dataInputs[0];
    const dims = sampleDims(input.type.shape!, batch, `model input '${input.name}'`);
    const feeds: Record<string, Tensor> = { [input.name]: this.backend.tensor('float32', batch.inputs, dims) };
    const target = tg.target;
    if ((this.options.target ?? 'label') === 'label') {
      if (!batch.labels) throw new InputError('the dataset has no labels; use --target input for an autoencoder');
      if (target.type.dtype !== 'int64') throw new InputError(`${this.options.kind} needs a ${target.type.dtype} target, not class labels; use --target input or --loss cross-entropy`);
      feeds[target.name] = this.backend.tensor('int64', batch.labels, [batch.size]);
    } else {
      if (target.type.dtype === 'int64') throw new InputError('cross-entropy needs class labels as the target, not the input');
      feeds[target.name] = this.backend.tensor('float32', batch.inputs, sampleDims(target.type.shape!, batch, `model output '${tg.output.name}' (the target is the input)`));
    }
    return feeds;
  }
}

/**
 * An endless stream of batches drawn independently of the training stream: its own shuffle seed
 * (even with --no-shuffle, whose file order would replay the step's own batches), epoch after epoch.
 */
function* independentBatches(data: Dataset, plan: BatchPlan, drawn: number): Generator<Batch, never> {
  const perEpoch = batchesPerEpoch(data.size, plan.batchSize);
  for (let epoch = Math.floor(drawn / perEpoch), from = drawn % perEpoch; ; epoch++, from = 0) {
    yield* batches(data, { batchSize: plan.batchSize, shuffle: true, seed: plan.seed + 0x9e3779b9, epoch, from });
  }
}

function describePlan(p: BatchPlan): string {
  return `batches of ${p.batchSize} from ${p.samples} samples, ${p.shuffle ? `shuffled with seed ${p.seed}` : 'in file order'}`;
}

function graphOptions(o: TrainerOptions) {
  return { kind: o.kind, reduction: o.reduction, output: o.output, source: o.source, batchnorm: o.batchnorm };
}

/** [batch, ...static sample dims], checking the sample size matches. */
function sampleDims(shape: Dim[], batch: Batch, what: string): number[] {
  const rest = shape.slice(1);
  if (rest.some((d) => typeof d !== 'number')) throw new InputError(`${what} has a dynamic non-batch dimension [${shape}]`);
  const per = (rest as number[]).reduce((a, b) => a * b, 1);
  const have = batch.inputs.length / batch.size;
  if (per !== have) throw new InputError(`${what} takes ${per} values per sample [${shape}], the data has ${have}`);
  return [batch.size, ...(rest as number[])];
}
