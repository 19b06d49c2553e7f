// The training loop: batches in, one fused step graph run per step, parameters kept as runtime
// tensors, the user's own model out.
import { buildEvaluationGraph, encodeModel, withTrainedParameters, type BatchNormMode, type TrainingGraph, type Dim, type EvaluationGraph, type LossSpec, type onnx, type TensorData } from '../../graph-tools/index.js';
import { batches, type Batch, type Dataset } from '../data/index.js';
import type { ElementwiseOptimizer } from '../optim/optimizer.js';
import type { KroneckerOptimizer } from '../optim/kbfgs.js';
import type { FactoredOptimizer } from '../optim/kfac.js';
import { ElementwiseEngine, type EngineStep } from './elementwise-engine.js';
import { KroneckerEngine } from './kronecker-engine.js';
import { FactoredEngine } from './factored-engine.js';
import type { Backend, Session, Tensor, TensorArray } from '../runtime/backend.js';
import { InputError } from '../errors.js';

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
}

export interface FitResult { steps: number; epochs: number; skippedSteps: number; finalLoss: number; seconds: number }

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
}

export class Trainer {
  /** Steps attempted (what logs count) and updates applied (what the optimizer's step t counts). */
  private t = 0;
  private updates = 0;
  private skipped = 0;
  private last?: EngineStep;
  private evaluation?: { graph: EvaluationGraph; session: Session };

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

  async fit(data: Dataset, options: FitOptions): Promise<FitResult> {
    const epochs = options.epochs ?? (options.steps ? Infinity : 1);
    const maxSteps = options.steps ?? Infinity;
    if (!(options.batchSize >= 1)) throw new InputError('batch size must be ≥ 1');
    if (this.engine.initialise && !this.engine.initialized && this.engine.wantsWarmStart) await this.warmStart(data, options.batchSize);
    const start = performance.now();
    let steps = 0; let epoch = 0; let finalLoss = NaN;
    const curvatureBatches = this.wantsCurvatureBatch ? independentBatches(data, options.batchSize, options.seed ?? 0) : undefined;
    for (; epoch < epochs && steps < maxSteps; epoch++) {
      let sum = 0; let n = 0;
      for (const batch of batches(data, { batchSize: options.batchSize, shuffle: options.shuffle ?? true, seed: options.seed ?? 0, epoch })) {
        if (steps >= maxSteps) break;
        const { loss, skipped } = await this.trainStep(batch, curvatureBatches?.next().value);
        steps++;
        finalLoss = loss;
        if (!skipped) { sum += loss; n++; }
        await options.onStep?.({
          step: this.t, epoch, loss, time: (performance.now() - start) / 1000, lr: this.options.optimizer.learningRate(Math.max(1, this.updates)), skipped,
          ...(this.last?.powellShare !== undefined ? { powellDamped: this.last.powellShare, skippedUpdates: this.last.skippedShare } : {}),
        });
      }
      const evaluation = options.evaluationData ? await this.evaluate(options.evaluationData, options.batchSize) : undefined;
      await options.onEpoch?.({ epoch, steps: n, meanLoss: sum / Math.max(1, n), time: (performance.now() - start) / 1000, evaluation });
    }
    return { steps, epochs: epoch, skippedSteps: this.skipped, finalLoss, seconds: (performance.now() - start) / 1000 };
  }

  /** Current parameter values, copied out of the runtime. */
  async parameters(): Promise<Map<string, TensorData>> { return this.read(this.params); }

  /** Current BatchNormalization running statistics ('train' mode; empty otherwise). */
  async runningStatistics(): Promise<Map<string, TensorData>> { return this.read(this.buffers); }

  private async read(tensors: Map<string, Tensor>): Promise<Map<string, TensorData>> {
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
function* independentBatches(data: Dataset, batchSize: number, seed: number): Generator<Batch, never> {
  for (let epoch = 0; ; epoch++) yield* batches(data, { batchSize, shuffle: true, seed: seed + 0x9e3779b9, epoch });
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
