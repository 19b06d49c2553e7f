// Drives an elementwise optimizer (SGD, Adam): its update is fused into the training graph
// (step-graph.ts), so one run takes the batch, parameters and state and returns the loss and the
// new parameters and state.
import { buildTrainingGraph, encodeModel, type onnx, type TrainingGraph, type TrainingGraphOptions } from '../../graph-tools/index.js';
import type { ElementwiseOptimizer } from '../optim/optimizer.js';
import type { Backend, Session, Tensor } from '../runtime/backend.js';
import { buildStepGraph, stepName, type StepGraph } from './step-graph.js';
import type { EngineCounters, EngineSnapshot } from './trainer.js';

export interface EngineStep { loss: number; skipped: boolean; powellShare?: number; skippedShare?: number }

export class ElementwiseEngine {
  params = new Map<string, Tensor>();
  buffers = new Map<string, Tensor>();
  /** Optimizer state tensors by step-graph input name, with the output that replaces each. */
  private state = new Map<string, Tensor>();

  /** The optimizer state kept between steps (momenta, moments), by graph name. */
  get optimizerState(): ReadonlyMap<string, Tensor> { return this.state; }
  private stateOutputs = new Map<string, string>();

  private initialised = false;

  private constructor(
    private readonly backend: Backend, private readonly opt: ElementwiseOptimizer, readonly graph: StepGraph, private readonly session: Session,
    private readonly gradientGraph: () => TrainingGraph,
  ) {
    for (const p of graph.parameters) {
      const init = graph.training.initialParameters.get(p.name)!;
      this.params.set(p.name, backend.tensor(init.dtype as 'float32', init.data as Float32Array, init.dims));
      if (!graph.updated.includes(p.name)) continue;
      for (const s of opt.stateNames) {
        this.state.set(stepName.state(p.name, s), backend.tensor(init.dtype as 'float32', new (init.data.constructor as Float32ArrayConstructor)(init.data.length), init.dims));
        this.stateOutputs.set(stepName.state(p.name, s), stepName.newState(p.name, s));
      }
    }
    for (const [name, t] of graph.training.initialBuffers) this.buffers.set(name, backend.tensor(t.dtype as 'float32', t.data as Float32Array, t.dims));
  }

  static async create(backend: Backend, model: onnx.ModelProto, spec: Omit<TrainingGraphOptions, 'capture'>, opt: ElementwiseOptimizer): Promise<ElementwiseEngine> {
    const graph = buildStepGraph(model, spec, opt);
    const session = await backend.createSession(encodeModel(graph.model), { name: `training step graph of ${spec.source ?? 'model'}` });
    return new ElementwiseEngine(backend, opt, graph, session, () => buildTrainingGraph(model, spec));
  }

  get initialized(): boolean { return this.initialised || !this.opt.warmStartState; }
  get wantsWarmStart(): boolean { return !!this.opt.warmStartState; }

  /** RMSprop's warm start (ALGORITHMS.md §7.2): v = the mean over `batchFeeds` of the squared gradients. */
  async initialise(batchFeeds: Iterable<Record<string, Tensor>>): Promise<void> {
    const name = this.opt.warmStartState;
    if (!name) return;
    const tg = this.gradientGraph();
    const session = await this.backend.createSession(encodeModel(tg.toModel()), { name: `${this.opt.name} warm start` });
    const sums = new Map<string, Float64Array>();
    let count = 0;
    try {
      for (const data of batchFeeds) {
        const feeds: Record<string, Tensor> = { ...data };
        for (const [k, v] of this.params) feeds[k] = v;
        for (const [k, v] of this.buffers) feeds[k] = v;
        const out = await session.run(feeds);
        if (!Number.isFinite(Number((await this.backend.read(out[tg.outputs.loss]))[0]))) throw new Error(`${this.opt.name} warm start: a batch gives a non-finite loss; check the data`);
        for (const [p, output] of tg.outputs.gradients) {
          if (!this.state.has(stepName.state(p, name))) continue;
          const g = await this.backend.read(out[output]) as Float32Array;
          const acc = sums.get(p) ?? new Float64Array(g.length);
          for (let i = 0; i < g.length; i++) acc[i] += g[i] * g[i];
          sums.set(p, acc);
        }
        count++;
      }
    } finally {
      await session.release();
    }
    for (const [p, acc] of sums) {
      const key = stepName.state(p, name);
      this.state.set(key, this.backend.tensor('float32', Float32Array.from(acc, (v) => v / count), this.state.get(key)!.dims));
    }
    this.initialised = true;
  }

  get training() { return this.graph.training; }

  /** The step count comes from the Trainer each step; only the warm start is the engine's. */
  get counters(): EngineCounters { return { t: 0, initialised: this.initialised }; }
  get inputNames(): ReadonlySet<string> { return new Set(this.session.inputNames); }

  restore(s: EngineSnapshot): void {
    this.params = s.params;
    this.buffers = s.buffers;
    this.state = s.state;
    this.initialised = s.counters.initialised;
  }

  /** One update at optimizer step t (1-based); a non-finite loss leaves everything unchanged. */
  async step(data: Record<string, Tensor>, t: number): Promise<EngineStep> {
    const feeds: Record<string, Tensor> = { ...data };
    for (const [k, v] of this.params) feeds[k] = v;
    for (const [k, v] of this.state) feeds[k] = v;
    for (const [k, v] of this.buffers) feeds[k] = v;
    const scalars = this.opt.scalars(t, this.opt.learningRate(t));
    const dtype = this.graph.parameters[0].type.dtype as 'float32';
    for (const s of this.graph.scalars) feeds[stepName.scalar(s)] = this.backend.tensor(dtype, (dtype === 'float32' ? Float32Array : Float64Array).of(scalars[s]), []);
    const out = await this.session.run(feeds);
    const loss = Number((await this.backend.read(out[this.graph.training.outputs.loss]))[0]);
    if (!Number.isFinite(loss)) return { loss, skipped: true };
    for (const p of this.params.keys()) {
      const next = out[stepName.newParam(p)];
      if (next) this.params.set(p, next);
    }
    for (const [input, output] of this.stateOutputs) if (out[output]) this.state.set(input, out[output]);
    for (const b of this.graph.training.buffers) this.buffers.set(b.input, out[b.output!]);
    return { loss, skipped: false };
  }

  release(): Promise<void> { return this.session.release(); }
}
