// Drives KFAC and Shampoo (lib/optim/factored-graphs.ts). On a statistics step the step graph
// also refreshes the factors (KFAC: a backward from sampled targets sharing the step's forward;
// Shampoo: from the raw gradient); other steps run the same step without them. KFAC's inverses are
// refreshed from the step's own statistics before its direction: on those steps the graph runs
// once for the factors and once more for the step. Only the loss and the direction's squared norm
// are read back.
import { encodeModel, type onnx, type TrainingGraphOptions } from '../../graph-tools/index.js';
import { buildFactoredStepGraph, buildKfacStepGraph, buildPreconditionerGraph } from '../optim/factored-graphs.js';
import type { FactoredOptimizer } from '../optim/kfac.js';
import { kname, layerDims, optimizerStepScalars, type StepGraph } from '../optim/preconditioned-step.js';
import type { Backend, Session } from '../runtime/backend.js';
import { identities, PreconditionedEngine, zeros, type Feeds } from './preconditioned-engine.js';

type Spec = Omit<TrainingGraphOptions, 'capture'>;

export class FactoredEngine extends PreconditionedEngine {
  private constructor(
    backend: Backend,
    private readonly opt: FactoredOptimizer,
    graph: StepGraph,
    protected readonly sessions: { step: Session; preconditioners: Session },
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
    const graph = opt.name === 'kfac' ? buildKfacStepGraph(model, spec, opt) : buildFactoredStepGraph(model, spec, opt);
    const sessions = {
      step: await session(graph.model, 'step graph'),
      preconditioners: await session(buildPreconditionerGraph(graph.layers, opt, graph.dtype), opt.name === 'kfac' ? 'inverses' : 'inverse roots'),
    };
    return new FactoredEngine(backend, opt, graph, sessions);
  }

  /** KFAC's statistics warm-up restarts the factors at step 0, which makes a warm start moot. */
  get wantsWarmStart(): boolean { return this.opt.options.warmStart && !this.statWarmup; }

  private get statWarmup(): boolean { return this.opt.name === 'kfac' && this.opt.options.statWarmup; }

  /** The factors' EMA at this step's refresh: β = statDecay, or KFAC's warm-up min(1 − 1/(k+1), statDecay) at the k-th refresh. */
  private emaScalars(): { beta: number; oneMinusBeta: number } {
    const o = this.opt.options;
    const k = Math.floor(this.t / o.statInterval);
    const beta = this.statWarmup ? Math.min(1 - 1 / (k + 1), o.statDecay) : o.statDecay;
    return { beta, oneMinusBeta: 1 - beta };
  }

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
    const ema = this.emaScalars();
    const every = this.opt.name === 'kfac' ? this.opt.options.inverseInterval : this.opt.options.rootInterval;
    const refresh = this.opt.name === 'kfac' ? this.t % every === 0 || this.t < every : this.t > 0 && this.t % every === 0;
    let factorsFromStep = statStep;
    if (this.opt.name === 'kfac' && refresh) {
      // KFAC inverts the factors with this step's statistics in them: factors first, then the step
      // with the factors held (β = 1), or without statistics.
      if (statStep) await this.refreshFactors(data, ema, false);
      await this.refreshPreconditioners();
      factorsFromStep = false;
    } else if (refresh) {
      await this.refreshPreconditioners();
    }
    // Without this step's statistics the factors are held (β = 1); with a statistics interval the
    // graph's `statistics` gate skips computing them.
    const held = { beta: 1, oneMinusBeta: 0 };
    const session = this.sessions.step;
    const scalars = { ...optimizerStepScalars(o, this.opt.learningRate, this.t + 1), ...(factorsFromStep ? ema : held), statistics: factorsFromStep ? 1 : 0 };
    const out = await session.run(this.feeds(session, data, scalars));
    // A non-finite loss (non-finite gradients) or direction (a broken preconditioner) skips the step.
    const result = await this.checkStep(out);
    if (result.skipped) return result;
    if (factorsFromStep) this.commitFactors(out);
    this.commitStep(out);
    return result;
  }

  /** The factors from the step graph's statistics outputs (the step itself is dropped). */
  private async refreshFactors(data: Feeds, scalars: { beta: number; oneMinusBeta: number }, warm: boolean): Promise<void> {
    const session = this.sessions.step;
    const all = { ...scalars, neglr: 0, l2: 0, decay: 0, rho: 0, oneMinusRho: 1, statistics: 1 };
    const outputs = this.stepGraph.layers.flatMap((l) => [kname.newA(l.name), kname.newG(l.name)]);
    const loss = this.training.outputs.loss;
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
