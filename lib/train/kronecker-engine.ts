// Drives a K-BFGS step (ALGORITHMS.md §3.4) through the graphs of lib/optim/kbfgs-graphs.ts:
// direction (θ⁺, momentum, A EMA, means) → curvature pass at θ⁺ (means) → curvature update
// (H_g, H_a, s̄, ȳ). Parameters and optimizer state stay runtime tensors between steps; only the
// loss and a few per-layer flags are read back.
import { encodeModel, type onnx, type TrainingGraph } from '../../graph-tools/index.js';
import type { KroneckerOptimizer } from '../optim/kbfgs.js';
import {
  buildCurvaturePassGraph, buildDirectionGraph, buildFactorGraph, buildInitGraph, buildUpdateGraph, kname, layerDims, type DirectionGraph,
} from '../optim/kbfgs-graphs.js';
import type { Backend, Session, Tensor } from '../runtime/backend.js';

export interface KroneckerStepInfo { loss: number; skipped: boolean; powellShare: number; skippedShare: number }

type Spec = Parameters<typeof buildDirectionGraph>[1];

export class KroneckerEngine {
  params = new Map<string, Tensor>();
  buffers = new Map<string, Tensor>();
  private state = new Map<string, Tensor>();
  private initialised = false;
  private t = 0;

  private constructor(
    private readonly backend: Backend,
    private readonly opt: KroneckerOptimizer,
    readonly direction: DirectionGraph,
    private readonly sessions: { direction: Session; curvature: Session; update: Session },
    private readonly curvature: TrainingGraph,
    private readonly model: onnx.ModelProto,
    private readonly spec: Spec,
  ) {
    const tg = direction.training;
    for (const [p, t] of tg.initialParameters) {
      this.params.set(p, this.tensor(t.data as Float32Array, t.dims));
      if (tg.grads.of(p)) this.state.set(kname.momentum(p), this.zeros(t.dims));
    }
    for (const [b, t] of tg.initialBuffers) this.buffers.set(b, this.tensor(t.data as Float32Array, t.dims));
    for (const l of direction.layers) {
      const { G, dg } = layerDims(l);
      const n = l.name;
      if (opt.history === undefined) this.state.set(kname.Hg(n), this.tensor(identity(G, dg), [G, dg, dg]));
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
    const dtype = direction.training.initialParameters.values().next().value!.dtype;
    const source = spec.source ?? 'model';
    const sessions = {
      direction: await backend.createSession(encodeModel(direction.model), { name: `K-BFGS direction graph of ${source}` }),
      curvature: await backend.createSession(encodeModel(curvature.toModel()), { name: `K-BFGS curvature pass of ${source}` }),
      update: await backend.createSession(encodeModel(buildUpdateGraph(direction.layers, opt, dtype)), { name: `K-BFGS curvature update of ${source}` }),
    };
    return new KroneckerEngine(backend, opt, direction, sessions, curvature, model, spec);
  }

  get initialized(): boolean { return this.initialised; }

  /** The first pass's training graph: data inputs, target and output, for the batch feeds. */
  get training(): TrainingGraph { return this.direction.training; }

  /**
   * A from the mean of the batch factors over `batches` (the warm start of §3.3, or the first
   * minibatch alone), then H_a⁰ = (A + λ_A·I)⁻¹.
   */
  async initialise(batchFeeds: Iterable<Record<string, Tensor>>): Promise<void> {
    const factors = buildFactorGraph(this.model, this.spec);
    const session = await this.backend.createSession(encodeModel(factors.toModel()), { name: 'K-BFGS warm start' });
    const sums = new Map<string, Float64Array>();
    let count = 0;
    try {
      for (const data of batchFeeds) {
        const feeds: Record<string, Tensor> = { ...data };
        for (const [k, v] of this.params) feeds[k] = v;
        for (const [k, v] of this.buffers) feeds[k] = v;
        const out = await session.run(feeds);
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
    const dtype = this.direction.training.initialParameters.values().next().value!.dtype;
    const init = await this.backend.createSession(encodeModel(buildInitGraph(this.direction.layers, Math.sqrt(this.opt.options.damping), dtype)), { name: 'K-BFGS H_a initialisation' });
    try {
      const feeds: Record<string, Tensor> = {};
      for (const l of this.direction.layers) {
        const { G, da } = layerDims(l);
        const A = this.tensor(Float32Array.from(sums.get(l.name)!, (v) => v / count), [G, da, da]);
        this.state.set(kname.A(l.name), A);
        feeds[kname.A(l.name)] = A;
      }
      const out = await init.run(feeds);
      for (const l of this.direction.layers) this.state.set(kname.Ha(l.name), out[kname.Ha(l.name)]);
    } finally {
      await init.release();
    }
    this.initialised = true;
  }

  /** One K-BFGS step on a batch (its data and target feeds); t is counted here. */
  async step(data: Record<string, Tensor>): Promise<KroneckerStepInfo> {
    if (!this.initialised) await this.initialise([data]);
    const o = this.opt.options;
    const first = this.t === 0;
    const scalars = {
      neglr: -this.opt.learningRate(this.t + 1), betaA: first ? 1 : o.statDecay, oneMinusBetaA: first ? 0 : 1 - o.statDecay,
      l2: o.weightDecay, rho: o.momentum, oneMinusRho: 1 - o.momentum,
    };
    const feeds: Record<string, Tensor> = { ...data };
    for (const [k, v] of this.params) feeds[k] = v;
    for (const [k, v] of this.buffers) feeds[k] = v;
    for (const [k, v] of Object.entries(scalars)) feeds[kname.scalar(k)] = this.tensor(Float32Array.of(v), []);
    for (const l of this.direction.layers) {
      const n = l.name;
      for (const name of [kname.A(n), kname.Ha(n), ...(this.opt.history === undefined ? [kname.Hg(n)] : [kname.S(n), kname.Y(n), kname.rho(n)])]) feeds[name] = this.state.get(name)!;
    }
    for (const [p] of this.params) if (this.state.has(kname.momentum(p))) feeds[kname.momentum(p)] = this.state.get(kname.momentum(p))!;
    const d = await this.sessions.direction.run(feeds);
    const loss = Number((await this.backend.read(d[this.direction.training.outputs.loss]))[0]);
    if (!Number.isFinite(loss)) return { loss, skipped: true, powellShare: 0, skippedShare: 0 };

    // The curvature pass: the same batch at θ⁺.
    const next = new Map(this.params);
    for (const p of this.params.keys()) if (d[kname.newParam(p)]) next.set(p, d[kname.newParam(p)]);
    const cFeeds: Record<string, Tensor> = { ...data };
    for (const [k, v] of next) cFeeds[k] = v;
    for (const [k, v] of this.buffers) cFeeds[k] = v;
    const c = await this.sessions.curvature.run(cFeeds);
    // A non-finite direction shows as a non-finite loss at θ⁺: skip the step, keep everything.
    if (!Number.isFinite(Number((await this.backend.read(c[this.curvature.outputs.loss]))[0]))) return { loss, skipped: true, powellShare: 0, skippedShare: 0 };

    const uFeeds: Record<string, Tensor> = {};
    const dStats = this.direction.training.outputs.statistics;
    const cStats = this.curvature.outputs.statistics;
    for (const l of this.direction.layers) {
      const { G, dg, da } = layerDims(l);
      const n = l.name;
      const shaped = (t: Tensor, dims: number[]) => this.tensor(t.data as Float32Array, dims);
      uFeeds[kname.Ha(n)] = this.state.get(kname.Ha(n))!;
      uFeeds[kname.A(n)] = d[kname.newA(n)];
      uFeeds[kname.sbar(n)] = this.state.get(kname.sbar(n))!;
      uFeeds[kname.ybar(n)] = this.state.get(kname.ybar(n))!;
      uFeeds[kname.hbar(n)] = shaped(d[dStats.get(n)!.hbar!], [G, dg]);
      uFeeds[kname.gbar(n)] = shaped(d[dStats.get(n)!.gbar!], [G, dg]);
      uFeeds[kname.abar(n)] = shaped(d[dStats.get(n)!.abar!], [G, da]);
      uFeeds[kname.hbar2(n)] = shaped(c[cStats.get(n)!.hbar!], [G, dg]);
      uFeeds[kname.gbar2(n)] = shaped(c[cStats.get(n)!.gbar!], [G, dg]);
      for (const name of this.opt.history === undefined ? [kname.Hg(n)] : [kname.S(n), kname.Y(n), kname.rho(n)]) uFeeds[name] = this.state.get(name)!;
    }
    const u = await this.sessions.update.run(uFeeds);

    // Commit θ⁺ and the new state.
    this.t++;
    this.params = next;
    for (const [p] of this.params) if (d[kname.newMomentum(p)]) this.state.set(kname.momentum(p), d[kname.newMomentum(p)]);
    for (const b of this.direction.training.buffers) this.buffers.set(b.input, d[b.output!]);
    let powell = 0; let skippedUpdates = 0; let groups = 0;
    for (const l of this.direction.layers) {
      const n = l.name;
      this.state.set(kname.A(n), d[kname.newA(n)]);
      for (const name of [kname.Ha(n), kname.sbar(n), kname.ybar(n), ...(this.opt.history === undefined ? [kname.Hg(n)] : [kname.S(n), kname.Y(n), kname.rho(n)])]) {
        this.state.set(name, u[kname.next(name)]);
      }
      powell += Number((await this.backend.read(u[kname.powell(n)]))[0]);
      skippedUpdates += l.groups - Number((await this.backend.read(u[kname.acceptedG(n)]))[0]);
      groups += l.groups;
    }
    return { loss, skipped: false, powellShare: powell / Math.max(1, groups), skippedShare: skippedUpdates / Math.max(1, groups) };
  }

  async release(): Promise<void> {
    await Promise.all(Object.values(this.sessions).map((s) => s.release()));
  }

  private tensor(data: Float32Array, dims: readonly number[]): Tensor { return this.backend.tensor('float32', data, dims); }
  private zeros(dims: readonly number[]): Tensor { return this.tensor(new Float32Array(dims.reduce((a, b) => a * b, 1)), dims); }
}

function identity(G: number, d: number): Float32Array {
  const out = new Float32Array(G * d * d);
  for (let g = 0; g < G; g++) for (let i = 0; i < d; i++) out[g * d * d + i * d + i] = 1;
  return out;
}

