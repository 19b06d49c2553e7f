// Drives a K-BFGS or KF-QN step (ALGORITHMS.md §3.4, §4.2) through the graphs of
// lib/optim/kbfgs-graphs.ts: direction (θ⁺, momentum, A EMA or the minibatch A-side pair, means) →
// curvature pass at θ⁺ (means) → curvature update (H_g, H_a, s̄, ȳ). KF-QN's convergent variant
// takes its means and A-side pair from an independent batch (the action pass at θ, then the
// curvature pass at θ⁺ on that batch). Parameters and optimizer state stay runtime tensors between
// steps; only the loss and a few per-layer flags are read back.
import { encodeModel, LOSS_OUTPUT, statName, type Layer, type onnx, type TrainingGraphOptions } from '../../graph-tools/index.js';
import type { KroneckerOptimizer } from '../optim/kbfgs.js';
import {
  buildActionPassGraph, buildCurvaturePassGraph, buildDirectionGraph, buildInitGraph, buildUpdateGraph, kname, layerDamping, layerDims, SECOND_PASS,
  updatedState, type LayerDamping,
} from '../optim/kbfgs-graphs.js';
import { buildFactorEmaGraph, optimizerStepScalars, type StepGraph } from '../optim/preconditioned-step.js';
import type { Backend, Session, Tensor } from '../runtime/backend.js';
import { identities, PreconditionedEngine, sessionFeeds, zeros, type Feeds } from './preconditioned-engine.js';

/** A step's loss and skip; on a curvature step, the shares of G-side pairs Powell-damped and updates skipped (0 when the step was). */
export interface KroneckerStepInfo { loss: number; skipped: boolean; powellShare?: number; skippedShare?: number }

type Spec = Omit<TrainingGraphOptions, 'capture'>;


export class KroneckerEngine extends PreconditionedEngine {
  /** The largest patch matrix KF-QN's one-time A_B may build at once: 2²² floats (16 MiB). */
  static initSliceFloats = 2 ** 22;

  private constructor(
    backend: Backend,
    private readonly opt: KroneckerOptimizer,
    readonly direction: StepGraph & { secondPassFused: boolean },
    protected readonly sessions: { direction: Session; curvature?: Session; update: Session; action?: Session },
    private readonly model: onnx.ModelProto,
    private readonly spec: Spec,
    private readonly damping: LayerDamping,
  ) {
    super(backend, direction);
    initialCurvatureState(backend, direction.layers, opt, this.state);
  }

  static async create(backend: Backend, model: onnx.ModelProto, spec: Spec, opt: KroneckerOptimizer): Promise<KroneckerEngine> {
    const direction = buildDirectionGraph(model, spec, opt);
    const damping = layerDamping(direction.layers, opt, direction.training);
    const source = spec.source ?? 'model';
    const what = opt.aSource === 'ema' ? 'K-BFGS' : 'KF-QN';
    const session = (m: onnx.ModelProto, name: string) => backend.createSession(encodeModel(m), { name: `${what} ${name} of ${source}` });
    const sessions = {
      direction: await session(direction.model, 'direction graph'),
      ...(direction.secondPassFused ? {} : { curvature: await session(buildCurvaturePassGraph(model, spec).toModel(), 'curvature pass') }),
      update: await session(buildUpdateGraph(direction.layers, opt, direction.dtype, damping), 'curvature update'),
      ...(opt.independentCurvatureBatch ? { action: await session(buildActionPassGraph(model, spec, opt).toModel(), 'action pass') } : {}),
    };
    return new KroneckerEngine(backend, opt, direction, sessions, model, spec, damping);
  }

  get wantsWarmStart(): boolean { return this.opt.options.warmStart; }

  /** The convergent variant draws its curvature pairs from a batch independent of the step's. */
  get wantsCurvatureBatch(): boolean { return this.opt.independentCurvatureBatch; }

  /**
   * H_a⁰ from `batches`: (A + λ_A·I)⁻¹ with A the mean of their batch factors (K-BFGS's warm start
   * of §3.3, or the first minibatch alone, as KF-QN); an L-BFGS H_a starts from the first batch's
   * pair (ā, (A_B + λ_A·I)·ā), and with aInit 'factor' from the diagonal H0 = (diag(A_B) + λ_A)⁻¹.
   * With gInit 'factor', H_g⁰ = (G + μ2·I)⁻¹ from the same batches (an L-BFGS H_g: the diagonal
   * H0 = (diag(G) + μ2)⁻¹).
   */
  async initialise(batchFeeds: Iterable<Feeds>): Promise<void> {
    const gStart = this.opt.history === undefined ? 'dense' as const : 'diagonal' as const;
    const sides = { a: this.opt.aHistory === undefined, g: this.opt.options.gInit === 'factor' ? gStart : undefined };
    // KF-QN forms its factors once, from the first batch: in slices, so that its patch matrices
    // never outgrow what a step itself holds (the running mean weighted by slice size is the
    // batch's factor exactly).
    const first = this.opt.aSource === 'minibatch' ? firstOf(batchFeeds) : undefined;
    if (sides.a || sides.g) await this.initialiseFromFactors(first ? this.slices(first) : weighted(batchFeeds), sides);
    if (!sides.a) await this.seedLbfgsHa(first!);
    this.initialised = true;
  }

  /** Slices of a batch's feeds along the sample axis, each with its sample count as weight. */
  private *slices(data: Feeds): Generator<{ feeds: Feeds; weight: number }> {
    const input = data[this.direction.training.dataInputs[0].name];
    const size = input.dims[0];
    // Patch-matrix floats per sample: the largest layer's positions × d_a.
    const shapes = this.direction.training.emitter;
    const perSample = Math.max(1, ...this.direction.layers.map((l) => {
      const positions = shapes.shapeOf(l.preactivation).slice(l.kind === 'conv' ? 2 : 1, l.kind === 'conv' ? undefined : -1);
      return positions.reduce<number>((n, d) => n * (typeof d === 'number' ? d : 1), 1) * l.factors.a * l.groups;
    }));
    const step = Math.max(1, Math.floor(KroneckerEngine.initSliceFloats / perSample));
    for (let from = 0; from < size; from += step) {
      const to = Math.min(size, from + step);
      const feeds: Feeds = {};
      for (const [name, t] of Object.entries(data)) {
        const per = t.dims.slice(1).reduce((a, b) => a * b, 1);
        feeds[name] = this.backend.tensor(t.type as 'float32', (t.data as Float32Array).subarray(from * per, to * per), [to - from, ...t.dims.slice(1)]);
      }
      yield { feeds, weight: to - from };
    }
  }

  /** H_a⁰ and/or H_g⁰ (dense, or G's diagonal H0) as `sides` asks, from the weighted mean of the batches' factors. */
  private async initialiseFromFactors(batches: Iterable<{ feeds: Feeds; weight: number }>, sides: { a: boolean; g?: 'dense' | 'diagonal' }): Promise<void> {
    const layers = this.direction.layers;
    const factors = buildFactorEmaGraph(this.model, this.spec, layers, { activationFactors: sides.a, gradientFactors: !!sides.g });
    const session = await this.backend.createSession(encodeModel(factors.toModel()), { name: 'Kronecker factors for H⁰' });
    // Per factor computed: its state and next value names, and its zero start [G, d, d].
    const computed = layers.flatMap((l) => {
      const { G, da, dg } = layerDims(l);
      return [...(sides.a ? [{ state: kname.A(l.name), next: kname.newA(l.name), dims: [G, da, da] }] : []),
        ...(sides.g ? [{ state: kname.G(l.name), next: kname.newG(l.name), dims: [G, dg, dg] }] : [])];
    });
    try {
      for (const { state, dims } of computed) this.state.set(state, zeros(this.backend, dims));
      let total = 0;
      for (const { feeds, weight } of batches) {
        // The weighted running mean: β = total/(total + weight).
        total += weight;
        const out = await session.run(this.feeds(session, feeds, { beta: (total - weight) / total, oneMinusBeta: weight / total }));
        for (const { state, next } of computed) this.state.set(state, out[next]);
      }
    } finally {
      await session.release();
    }
    const init = await this.backend.createSession(encodeModel(buildInitGraph(layers, this.damping, this.direction.dtype, sides)), { name: 'H⁰ initialisation' });
    try {
      const out = await init.run(this.feeds(init, {}));
      const outputs = layers.flatMap((l) => [...(sides.a ? [kname.Ha(l.name)] : []), ...(sides.g ? [sides.g === 'dense' ? kname.Hg(l.name) : kname.Hg0(l.name)] : [])]);
      for (const H of outputs) this.state.set(H, out[H]);
    } finally {
      await init.release();
    }
    // G served only H_g⁰; KF-QN keeps no A either (§4.2).
    for (const l of layers) {
      this.state.delete(kname.G(l.name));
      if (this.opt.aSource === 'minibatch') this.state.delete(kname.A(l.name));
    }
  }

  private async seedLbfgsHa(data: Feeds): Promise<void> {
    const graph = buildActionPassGraph(this.model, this.spec, this.opt, true);
    const session = await this.backend.createSession(encodeModel(graph.toModel()), { name: 'L-BFGS H_a initialisation' });
    try {
      const out = await session.run(this.feeds(session, data));
      const p = this.opt.aHistory!;
      for (const l of this.direction.layers) {
        const { G, da } = layerDims(l);
        const { lambdaA } = this.damping.get(l.name)!;
        const abar = await this.backend.read(out[kname.aref(l.name)]);
        const Av = await this.backend.read(out[statName.av(l.name)]);
        const S = new Float32Array(G * p * da); const Y = new Float32Array(G * p * da); const rho = new Float32Array(G * p);
        for (let g = 0; g < G; g++) {
          // The newest slot (last row) holds the pair; the two-loop skips rows whose ρ is 0.
          let sTy = 0;
          for (let j = 0; j < da; j++) {
            const s = Number(abar[g * da + j]); const y = Number(Av[g * da + j]) + lambdaA * s;
            S[(g * p + p - 1) * da + j] = s; Y[(g * p + p - 1) * da + j] = y; sTy += s * y;
          }
          if (sTy > 0 && Number.isFinite(sTy)) rho[g * p + p - 1] = 1 / sTy;
        }
        if (this.opt.options.aInit === 'factor') {
          // H0 = (diag(A_B) + λ_A)⁻¹, d_a values per group.
          const diagonal = await this.backend.read(out[statName.adiag(l.name)]);
          this.state.set(kname.Ha0(l.name), this.backend.tensor('float32', Float32Array.from({ length: G * da }, (_, k) => 1 / (Number(diagonal[k]) + lambdaA)), [G, da]));
        }
        this.state.set(kname.Sa(l.name), this.backend.tensor('float32', S, [G, p, da]));
        this.state.set(kname.Ya(l.name), this.backend.tensor('float32', Y, [G, p, da]));
        this.state.set(kname.rhoa(l.name), this.backend.tensor('float32', rho, [G, p]));
      }
    } finally {
      await session.release();
    }
  }

  /** One step on a batch (its data and target feeds); the convergent variant also takes its curvature batch. */
  async step(data: Feeds, _t?: number, curvatureData?: Feeds): Promise<KroneckerStepInfo> {
    if (this.opt.independentCurvatureBatch && !curvatureData) throw new Error(`${this.opt.name} (variant convergent) needs an independent curvature batch each step`);
    if (!this.initialised) await this.initialise([data]);
    // Between curvature updates the direction graph runs without its curvature part (the fused
    // graph's gate; the convergent variant's graph has none, and its passes are not run).
    const curvatureStep = this.t % this.opt.options.curvatureInterval === 0;
    const scalars = { ...directionScalars(this.opt, this.t), curvature: curvatureStep ? 1 : 0 };
    if (!curvatureStep) return this.plainStep(data, scalars);
    const d = await this.sessions.direction.run(this.feeds(this.sessions.direction, data, scalars));
    const loss = await this.scalar(d[this.direction.training.outputs.loss]);
    if (!Number.isFinite(loss)) return { loss, skipped: true, powellShare: 0, skippedShare: 0 };

    // The pairs' batch: the step's own, or the convergent variant's independent one, whose means
    // and A-side pair at θ come from the action pass.
    const pairData = curvatureData ?? data;
    const first = this.sessions.action ? await this.sessions.action.run(this.feeds(this.sessions.action, pairData)) : d;
    // The curvature pass: the pairs' batch at θ⁺ (already run inside graph 1 when fused).
    const next = this.nextParams(d);
    const c = this.sessions.curvature && await this.sessions.curvature.run(this.feeds(this.sessions.curvature, pairData, {}, Object.fromEntries(next)));
    const second = (name: string) => (c ? c[name] : d[SECOND_PASS + name]);
    // A non-finite direction shows as a non-finite loss at θ⁺: skip the step, keep everything.
    if (!Number.isFinite(await this.scalar(second(LOSS_OUTPUT)))) return { loss, skipped: true, powellShare: 0, skippedShare: 0 };

    this.commitStep(d, next);
    const shares = await curvatureUpdate(this.backend, this.sessions.update, this.direction.layers, this.opt, this.state, d, (name) => first[name], second);
    return { loss, skipped: false, ...shares };
  }

  /** A step between curvature updates: θ⁺ from the held H_g, H_a; a non-finite loss or direction skips it. */
  private async plainStep(data: Feeds, scalars: Record<string, number>): Promise<KroneckerStepInfo> {
    const session = this.sessions.direction;
    const out = await session.run(this.feeds(session, data, scalars));
    const result = await this.checkStep(out);
    if (!result.skipped) this.commitStep(out);
    return result;
  }

  async release(): Promise<void> {
    await Promise.all(Object.values(this.sessions).map((s) => s.release()));
  }
}

/**
 * Step 3 of §3.4, shared by the engine and the plug-in stepper: H_g, H_a, s̄, ȳ from the first
 * pass's means and A-side values (K-BFGS's new A, `direction`'s output, and ā; KF-QN's s_a, A_B·s_a
 * and reference ā) and the second pass's means, by their graph names, written into `state`;
 * returns the shares of layer groups whose G-side pair was Powell-damped and whose G-side update was
 * skipped.
 */
export async function curvatureUpdate(
  backend: Backend, session: Session, layers: readonly Layer[], opt: KroneckerOptimizer, state: Map<string, Tensor>, direction: Feeds,
  first: (name: string) => Tensor, second: (name: string) => Tensor,
): Promise<{ powellShare: number; skippedShare: number }> {
  const feeds: Feeds = {};
  for (const l of layers) {
    const { G, dg, da } = layerDims(l);
    const n = l.name;
    const shaped = (t: Tensor, dims: number[]) => backend.tensor('float32', t.data as Float32Array, dims);
    if (opt.aSource === 'ema') state.set(kname.A(n), direction[kname.newA(n)]);
    feeds[kname.hbar(n)] = shaped(first(kname.hbar(n)), [G, dg]);
    feeds[kname.gbar(n)] = shaped(first(kname.gbar(n)), [G, dg]);
    for (const name of opt.aSource === 'ema' ? [kname.abar(n)] : [kname.sa(n), statName.av(n), kname.aref(n)]) feeds[name] = shaped(first(name), [G, da]);
    feeds[kname.hbar2(n)] = shaped(second(kname.hbar(n)), [G, dg]);
    feeds[kname.gbar2(n)] = shaped(second(kname.gbar(n)), [G, dg]);
  }
  const u = await session.run(sessionFeeds(backend, session, (name) => feeds[name] ?? state.get(name)));
  let powell = 0; let skipped = 0; let groups = 0;
  const scalar = async (t: Tensor) => Number((await backend.read(t))[0]);
  for (const l of layers) {
    const n = l.name;
    for (const name of updatedState(l, opt)) state.set(name, u[kname.next(name)]);
    powell += await scalar(u[kname.powell(n)]);
    skipped += l.groups - await scalar(u[kname.acceptedG(n)]);
    groups += l.groups;
  }
  return { powellShare: powell / Math.max(1, groups), skippedShare: skipped / Math.max(1, groups) };
}

function firstOf<T>(items: Iterable<T>): T {
  for (const item of items) return item;
  throw new Error('internal: initialisation needs at least one batch');
}

function* weighted(batchFeeds: Iterable<Feeds>): Generator<{ feeds: Feeds; weight: number }> {
  for (const feeds of batchFeeds) yield { feeds, weight: 1 };
}

/** The K-BFGS state of `layers` at step 0 (H_g = I or an empty L-BFGS memory; s̄ = ȳ = 0); H_a comes from initialisation. */
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
  return { ...optimizerStepScalars(o, opt.learningRate, t + 1), beta: first ? 1 : o.statDecay, oneMinusBeta: first ? 0 : 1 - o.statDecay };
}
