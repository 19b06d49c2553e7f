// Drives a K-BFGS step (ALGORITHMS.md §3.4) through the graphs of lib/optim/kbfgs-graphs.ts:
// direction (θ⁺, momentum, A EMA, means) → curvature pass at θ⁺ (means) → curvature update
// (H_g, H_a, s̄, ȳ). Parameters and optimizer state stay runtime tensors between steps; only the
// loss and a few per-layer flags are read back.
import { encodeModel, type Layer, type onnx, type TrainingGraph, type TrainingGraphOptions } from '../../graph-tools/index.js';
import type { KroneckerOptimizer } from '../optim/kbfgs.js';
import { buildCurvaturePassGraph, buildDirectionGraph, buildInitGraph, buildUpdateGraph, kname, layerDims } from '../optim/kbfgs-graphs.js';
import { buildFactorEmaGraph, type StepGraph } from '../optim/preconditioned-step.js';
import type { Backend, Session, Tensor } from '../runtime/backend.js';
import { identities, PreconditionedEngine, sessionFeeds, zeros, type Feeds } from './preconditioned-engine.js';

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
    initialCurvatureState(backend, direction.layers, opt, this.state);
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
    const factors = buildFactorEmaGraph(this.model, this.spec, this.direction.layers, { gradientFactors: false });
    const session = await this.backend.createSession(encodeModel(factors.toModel()), { name: 'K-BFGS warm start' });
    try {
      for (const l of this.direction.layers) {
        const { G, da } = layerDims(l);
        this.state.set(kname.A(l.name), zeros(this.backend, [G, da, da]));
      }
      let k = 0;
      for (const data of batchFeeds) {
        // The running mean: β = k/(k+1) at the k-th batch.
        const out = await session.run(this.feeds(session, data, { beta: k / (k + 1), oneMinusBeta: 1 / (k + 1) }));
        for (const l of this.direction.layers) this.state.set(kname.A(l.name), out[kname.newA(l.name)]);
        k++;
      }
    } finally {
      await session.release();
    }
    const init = await this.backend.createSession(encodeModel(buildInitGraph(this.direction.layers, Math.sqrt(this.opt.options.damping), this.direction.dtype)), { name: 'K-BFGS H_a initialisation' });
    try {
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
    const scalars = directionScalars(this.opt, this.t);
    const d = await this.sessions.direction.run(this.feeds(this.sessions.direction, data, scalars));
    const loss = await this.scalar(d[this.direction.training.outputs.loss]);
    if (!Number.isFinite(loss)) return { loss, skipped: true, powellShare: 0, skippedShare: 0 };

    // The curvature pass: the same batch at θ⁺.
    const next = this.nextParams(d);
    const c = await this.sessions.curvature.run(this.feeds(this.sessions.curvature, data, {}, Object.fromEntries(next)));
    // A non-finite direction shows as a non-finite loss at θ⁺: skip the step, keep everything.
    if (!Number.isFinite(await this.scalar(c[this.curvature.outputs.loss]))) return { loss, skipped: true, powellShare: 0, skippedShare: 0 };

    const dStats = this.direction.training.outputs.statistics;
    const cStats = this.curvature.outputs.statistics;
    const means = (out: Feeds, stats: typeof dStats) => (l: string, key: 'abar' | 'hbar' | 'gbar') => out[stats.get(l)![key]!];
    this.commitStep(d, next);
    const shares = await curvatureUpdate(this.backend, this.sessions.update, this.direction.layers, this.opt, this.state, d, means(d, dStats), means(c, cStats));
    return { loss, skipped: false, ...shares };
  }

  async release(): Promise<void> {
    await Promise.all(Object.values(this.sessions).map((s) => s.release()));
  }
}

/**
 * Step 3 of §3.4, shared by the engine and the plug-in stepper: H_g, H_a, s̄, ȳ from the new A
 * (`direction`'s output) and the two passes' means, written into `state`; returns the shares of
 * layer groups whose G-side pair was Powell-damped and whose G-side update was skipped.
 */
export async function curvatureUpdate(
  backend: Backend, session: Session, layers: readonly Layer[], opt: KroneckerOptimizer, state: Map<string, Tensor>, direction: Feeds,
  first: (layer: string, key: 'abar' | 'hbar' | 'gbar') => Tensor, second: (layer: string, key: 'hbar' | 'gbar') => Tensor,
): Promise<{ powellShare: number; skippedShare: number }> {
  const feeds: Feeds = {};
  for (const l of layers) {
    const { G, dg, da } = layerDims(l);
    const n = l.name;
    const shaped = (t: Tensor, dims: number[]) => backend.tensor('float32', t.data as Float32Array, dims);
    state.set(kname.A(n), direction[kname.newA(n)]);
    feeds[kname.hbar(n)] = shaped(first(n, 'hbar'), [G, dg]);
    feeds[kname.gbar(n)] = shaped(first(n, 'gbar'), [G, dg]);
    feeds[kname.abar(n)] = shaped(first(n, 'abar'), [G, da]);
    feeds[kname.hbar2(n)] = shaped(second(n, 'hbar'), [G, dg]);
    feeds[kname.gbar2(n)] = shaped(second(n, 'gbar'), [G, dg]);
  }
  const u = await session.run(sessionFeeds(backend, session, (name) => feeds[name] ?? state.get(name)));
  let powell = 0; let skipped = 0; let groups = 0;
  const scalar = async (t: Tensor) => Number((await backend.read(t))[0]);
  for (const l of layers) {
    const n = l.name;
    for (const name of [kname.Ha(n), kname.sbar(n), kname.ybar(n), ...(opt.history === undefined ? [kname.Hg(n)] : [kname.S(n), kname.Y(n), kname.rho(n)])]) {
      state.set(name, u[kname.next(name)]);
    }
    powell += await scalar(u[kname.powell(n)]);
    skipped += l.groups - await scalar(u[kname.acceptedG(n)]);
    groups += l.groups;
  }
  return { powellShare: powell / Math.max(1, groups), skippedShare: skipped / Math.max(1, groups) };
}

/** The K-BFGS state of `layers` at step 0 (H_g = I or an empty L-BFGS memory; s̄ = ȳ = 0). */
export function initialCurvatureState(backend: Backend, layers: readonly Layer[], opt: KroneckerOptimizer, state: Map<string, Tensor>): void {
  for (const l of layers) {
    const { G, dg } = layerDims(l);
    const n = l.name;
    if (opt.history === undefined) state.set(kname.Hg(n), identities(backend, G, dg));
    else {
      state.set(kname.S(n), zeros(backend, [G, opt.history, dg]));
      state.set(kname.Y(n), zeros(backend, [G, opt.history, dg]));
      state.set(kname.rho(n), zeros(backend, [G, opt.history]));
    }
    state.set(kname.sbar(n), zeros(backend, [G, dg]));
    state.set(kname.ybar(n), zeros(backend, [G, dg]));
  }
}

/** The direction graph's scalars at update t (0-based); A's EMA is skipped at t = 0 (§3.4). */
export function directionScalars(opt: KroneckerOptimizer, t: number): Record<string, number> {
  const o = opt.options;
  const first = t === 0;
  return {
    neglr: -opt.learningRate(t + 1), beta: first ? 1 : o.statDecay, oneMinusBeta: first ? 0 : 1 - o.statDecay,
    l2: o.decoupledWeightDecay ? 0 : o.weightDecay, decay: o.decoupledWeightDecay ? o.weightDecay : 0, rho: o.momentum, oneMinusRho: 1 - o.momentum,
  };
}
