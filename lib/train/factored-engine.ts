// Drives KFAC and Shampoo (lib/optim/factored-graphs.ts). A step: refresh the factors on the
// statistics interval (KFAC: its own pass with sampled targets; Shampoo: inside the step graph,
// from the raw gradient), recompute the preconditioners on their interval, then one step-graph
// run. Only the loss, the direction's squared norm and (KFAC) the statistics pass's loss are read
// back.
import { encodeModel, type onnx, type TrainingGraph, type TrainingGraphOptions } from '../../graph-tools/index.js';
import { buildFactoredStepGraph, buildKfacStatisticsGraph, buildPreconditionerGraph } from '../optim/factored-graphs.js';
import type { FactoredOptimizer } from '../optim/kfac.js';
import { kname, layerDims, type StepGraph } from '../optim/preconditioned-step.js';
import type { Backend, Session } from '../runtime/backend.js';
import { identities, PreconditionedEngine, zeros, type Feeds } from './preconditioned-engine.js';

type Spec = Omit<TrainingGraphOptions, 'capture'>;

export class FactoredEngine extends PreconditionedEngine {
  private constructor(
    backend: Backend,
    private readonly opt: FactoredOptimizer,
    graph: StepGraph,
    private readonly sessions: { step: Session; plainStep?: Session; statistics?: Session; preconditioners: Session },
    private readonly statistics: TrainingGraph | undefined,
  ) {
    super(backend, graph);
    for (const l of graph.layers) {
      const { G, dg, da } = layerDims(l);
      this.state.set(kname.G(l.name), zeros(backend, [G, dg, dg]));
      this.state.set(kname.A(l.name), zeros(backend, [G, da, da]));
      this.state.set(kname.Hg(l.name), identities(backend, G, dg));
      this.state.set(kname.Ha(l.name), identities(backend, G, da));
    }
  }

  static async create(backend: Backend, model: onnx.ModelProto, spec: Spec, opt: FactoredOptimizer): Promise<FactoredEngine> {
    const source = spec.source ?? 'model';
    const label = opt.name === 'kfac' ? 'KFAC' : 'Shampoo';
    const session = (m: onnx.ModelProto, what: string) => backend.createSession(encodeModel(m), { name: `${label} ${what} of ${source}` });
    const shampoo = opt.name === 'shampoo';
    const graph = buildFactoredStepGraph(model, spec, opt, shampoo);
    const statistics = opt.name === 'kfac' ? buildKfacStatisticsGraph(model, spec, graph.layers, opt.options.fisher) : undefined;
    const sessions = {
      step: await session(graph.model, 'step graph'),
      // Shampoo between factor refreshes: the same step without the gradient products.
      plainStep: shampoo && opt.options.statInterval > 1 ? await session(buildFactoredStepGraph(model, spec, opt, false).model, 'step graph') : undefined,
      statistics: statistics ? await session(statistics.toModel(), 'statistics pass') : undefined,
      preconditioners: await session(buildPreconditionerGraph(graph.layers, opt, graph.dtype), opt.name === 'kfac' ? 'inverses' : 'inverse roots'),
    };
    return new FactoredEngine(backend, opt, graph, sessions, statistics);
  }

  get wantsWarmStart(): boolean { return this.opt.options.warmStart; }

  /** The factors as the mean over `batches` (the warm start, or the first minibatch), then the preconditioners. */
  async initialise(batchFeeds: Iterable<Feeds>): Promise<void> {
    let k = 0;
    for (const data of batchFeeds) {
      await this.refreshFactors(data, { beta: k / (k + 1), oneMinusBeta: 1 / (k + 1) }, true);
      k++;
    }
    await this.refreshPreconditioners();
    this.initialised = true;
  }

  async step(data: Feeds): Promise<{ loss: number; skipped: boolean }> {
    if (!this.initialised) await this.initialise([data]);
    const o = this.opt.options;
    const statStep = this.t % o.statInterval === 0;
    const ema = { beta: o.statDecay, oneMinusBeta: 1 - o.statDecay };
    if (this.opt.name === 'kfac') {
      if (statStep) await this.refreshFactors(data, ema, false);
      const every = this.opt.options.inverseInterval;
      if (this.t % every === 0 || this.t < every) await this.refreshPreconditioners();
    } else if (this.t > 0 && this.t % this.opt.options.rootInterval === 0) {
      await this.refreshPreconditioners();
    }
    const session = statStep || !this.sessions.plainStep ? this.sessions.step : this.sessions.plainStep;
    const scalars = { neglr: -this.opt.learningRate(this.t + 1), l2: o.decoupledWeightDecay ? 0 : o.weightDecay, decay: o.decoupledWeightDecay ? o.weightDecay : 0, rho: o.momentum, oneMinusRho: 1 - o.momentum, ...ema };
    const out = await session.run(this.feeds(session, data, scalars));
    const loss = await this.scalar(out[this.training.outputs.loss]);
    // A non-finite loss (non-finite gradients) or direction (a broken preconditioner) skips the step.
    if (!Number.isFinite(loss) || !Number.isFinite(await this.scalar(out[kname.directionNorm]))) return { loss, skipped: true };
    if (session === this.sessions.step && this.opt.name === 'shampoo') this.commitFactors(out);
    this.commitStep(out);
    return { loss, skipped: false };
  }

  /** KFAC: its statistics pass; Shampoo: the step graph's factor outputs (the step itself is dropped). */
  private async refreshFactors(data: Feeds, scalars: { beta: number; oneMinusBeta: number }, warm: boolean): Promise<void> {
    const session = this.sessions.statistics ?? this.sessions.step;
    const all = { ...scalars, neglr: 0, l2: 0, decay: 0, rho: 0, oneMinusRho: 1 };
    const outputs = this.stepGraph.layers.flatMap((l) => [kname.newA(l.name), kname.newG(l.name)]);
    const loss = this.statistics?.outputs.loss ?? this.training.outputs.loss;
    const out = await session.run(this.feeds(session, data, all), [...outputs, loss]);
    // A batch with non-finite values must not poison the factors for good.
    if (!Number.isFinite(await this.scalar(out[loss]))) {
      if (warm) throw new Error(`${this.opt.name}: a warm-start batch gives a non-finite loss; check the data`);
      return;
    }
    this.commitFactors(out);
  }

  private commitFactors(out: Feeds): void {
    for (const l of this.stepGraph.layers) {
      this.state.set(kname.A(l.name), out[kname.newA(l.name)]);
      this.state.set(kname.G(l.name), out[kname.newG(l.name)]);
    }
  }

  private async refreshPreconditioners(): Promise<void> {
    const out = await this.sessions.preconditioners.run(this.feeds(this.sessions.preconditioners, {}));
    for (const l of this.stepGraph.layers) {
      this.state.set(kname.Hg(l.name), out[kname.Hg(l.name)]);
      this.state.set(kname.Ha(l.name), out[kname.Ha(l.name)]);
    }
  }

  async release(): Promise<void> {
    await Promise.all(Object.values(this.sessions).filter((s): s is Session => !!s).map((s) => s.release()));
  }
}
