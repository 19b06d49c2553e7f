// Drives a K-BFGS step (ALGORITHMS.md §3.4) through the graphs of lib/optim/kbfgs-graphs.ts:
// direction (θ⁺, momentum, A EMA, means) → curvature pass at θ⁺ (means) → curvature update
// (H_g, H_a, s̄, ȳ). Parameters and optimizer state stay runtime tensors between steps; only the
// loss and a few per-layer flags are read back.
import { encodeModel, type onnx, type TrainingGraph, type TrainingGraphOptions } from '../../graph-tools/index.js';
import type { KroneckerOptimizer } from '../optim/kbfgs.js';
import { buildCurvaturePassGraph, buildDirectionGraph, buildFactorGraph, buildInitGraph, buildUpdateGraph, kname, layerDims } from '../optim/kbfgs-graphs.js';
import type { StepGraph } from '../optim/preconditioned-step.js';
import type { Backend, Session } from '../runtime/backend.js';
import { PreconditionedEngine, type Feeds } from './preconditioned-engine.js';

export interface KroneckerStepInfo { loss: number; skipped: boolean; powellShare: number; skippedShare: number }

type Spec = Omit<TrainingGraphOptions, 'capture'>;

export class KroneckerEngine extends PreconditionedEngine {
  private constructor(
    backend: Backend,
    private readonly opt: KroneckerOptimizer,
    readonly direction: StepGraph,
    private readonly sessions: { direction: Session; curvature: Session; update: Session },
    private readonly curvature: TrainingGraph,
    private readonly model: onnx.ModelProto,
    private readonly spec: Spec,
  ) {
    super(backend, direction);
    for (const l of direction.layers) {
      const { G, dg } = layerDims(l);
      const n = l.name;
      if (opt.history === undefined) this.state.set(kname.Hg(n), this.identities(G, dg));
      else {
        this.state.set(kname.S(n), this.zeros([opt.history, dg]));
        this.state.set(kname.Y(n), this.zeros([opt.history, dg]));
        this.state.set(kname.rho(n), this.zeros([opt.history]));
      }
      this.state.set(kname.sbar(n), this.zeros([G, dg]));
      this.state.set(kname.ybar(n), this.zeros([G, dg]));
    }
  }

  static async create(backend: Backend, model: onnx.ModelProto, spec: Spec, opt: KroneckerOptimizer): Promise<KroneckerEngine> {
    const direction = buildDirectionGraph(model, spec, opt);
    const curvature = buildCurvaturePassGraph(model, spec);
    const source = spec.source ?? 'model';
    const sessions = {
      direction: await backend.createSession(encodeModel(direction.model), { name: `K-BFGS direction graph of ${source}` }),
      curvature: await backend.createSession(encodeModel(curvature.toModel()), { name: `K-BFGS curvature pass of ${source}` }),
      update: await backend.createSession(encodeModel(buildUpdateGraph(direction.layers, opt, direction.dtype)), { name: `K-BFGS curvature update of ${source}` }),
    };
    return new KroneckerEngine(backend, opt, direction, sessions, curvature, model, spec);
  }

  get wantsWarmStart(): boolean { return this.opt.options.warmStart; }

  /**
   * A from the mean of the batch factors over `batches` (the warm start of §3.3, or the first
   * minibatch alone), then H_a⁰ = (A + λ_A·I)⁻¹.
   */
  async initialise(batchFeeds: Iterable<Feeds>): Promise<void> {
    const factors = buildFactorGraph(this.model, this.spec);
    const session = await this.backend.createSession(encodeModel(factors.toModel()), { name: 'K-BFGS warm start' });
    const sums = new Map<string, Float64Array>();
    let count = 0;
    try {
      for (const data of batchFeeds) {
        const out = await session.run(this.feeds(session, data));
        for (const l of this.direction.layers) {
          const a = await this.backend.read(out[factors.outputs.statistics.get(l.name)!.a!]) as Float32Array;
          const acc = sums.get(l.name) ?? new Float64Array(a.length);
          for (let i = 0; i < a.length; i++) acc[i] += a[i];
          sums.set(l.name, acc);
        }
        count++;
      }
    } finally {
      await session.release();
    }
    const init = await this.backend.createSession(encodeModel(buildInitGraph(this.direction.layers, Math.sqrt(this.opt.options.damping), this.direction.dtype)), { name: 'K-BFGS H_a initialisation' });
    try {
      for (const l of this.direction.layers) {
        const { G, da } = layerDims(l);
        this.state.set(kname.A(l.name), this.tensor({ data: Float32Array.from(sums.get(l.name)!, (v) => v / count), dims: [G, da, da] }));
      }
      const out = await init.run(this.feeds(init, {}));
      for (const l of this.direction.layers) this.state.set(kname.Ha(l.name), out[kname.Ha(l.name)]);
    } finally {
      await init.release();
    }
    this.initialised = true;
  }

  /** One K-BFGS step on a batch (its data and target feeds). */
  async step(data: Feeds): Promise<KroneckerStepInfo> {
    if (!this.initialised) await this.initialise([data]);
    const o = this.opt.options;
    const first = this.t === 0;
    const scalars = {
      neglr: -this.opt.learningRate(this.t + 1), beta: first ? 1 : o.statDecay, oneMinusBeta: first ? 0 : 1 - o.statDecay,
      l2: o.decoupledWeightDecay ? 0 : o.weightDecay, decay: o.decoupledWeightDecay ? o.weightDecay : 0, rho: o.momentum, oneMinusRho: 1 - o.momentum,
    };
    const d = await this.sessions.direction.run(this.feeds(this.sessions.direction, data, scalars));
    const loss = await this.scalar(d[this.direction.training.outputs.loss]);
    if (!Number.isFinite(loss)) return { loss, skipped: true, powellShare: 0, skippedShare: 0 };

    // The curvature pass: the same batch at θ⁺.
    const next = this.nextParams(d);
    const c = await this.sessions.curvature.run(this.feeds(this.sessions.curvature, data, {}, Object.fromEntries(next)));
    // A non-finite direction shows as a non-finite loss at θ⁺: skip the step, keep everything.
    if (!Number.isFinite(await this.scalar(c[this.curvature.outputs.loss]))) return { loss, skipped: true, powellShare: 0, skippedShare: 0 };

    const extra: Feeds = {};
    const dStats = this.direction.training.outputs.statistics;
    const cStats = this.curvature.outputs.statistics;
    for (const l of this.direction.layers) {
      const { G, dg, da } = layerDims(l);
      const n = l.name;
      const shaped = (t: Feeds[string], dims: number[]) => this.tensor({ data: t.data as Float32Array, dims });
      extra[kname.A(n)] = d[kname.newA(n)];
      extra[kname.hbar(n)] = shaped(d[dStats.get(n)!.hbar!], [G, dg]);
      extra[kname.gbar(n)] = shaped(d[dStats.get(n)!.gbar!], [G, dg]);
      extra[kname.abar(n)] = shaped(d[dStats.get(n)!.abar!], [G, da]);
      extra[kname.hbar2(n)] = shaped(c[cStats.get(n)!.hbar!], [G, dg]);
      extra[kname.gbar2(n)] = shaped(c[cStats.get(n)!.gbar!], [G, dg]);
    }
    const u = await this.sessions.update.run(this.feeds(this.sessions.update, {}, {}, extra));

    // Commit θ⁺ and the new state.
    this.commitStep(d, next);
    let powell = 0; let skippedUpdates = 0; let groups = 0;
    for (const l of this.direction.layers) {
      const n = l.name;
      this.state.set(kname.A(n), d[kname.newA(n)]);
      for (const name of [kname.Ha(n), kname.sbar(n), kname.ybar(n), ...(this.opt.history === undefined ? [kname.Hg(n)] : [kname.S(n), kname.Y(n), kname.rho(n)])]) {
        this.state.set(name, u[kname.next(name)]);
      }
      powell += await this.scalar(u[kname.powell(n)]);
      skippedUpdates += l.groups - await this.scalar(u[kname.acceptedG(n)]);
      groups += l.groups;
    }
    return { loss, skipped: false, powellShare: powell / Math.max(1, groups), skippedShare: skippedUpdates / Math.max(1, groups) };
  }

  async release(): Promise<void> {
    await Promise.all(Object.values(this.sessions).map((s) => s.release()));
  }
}
