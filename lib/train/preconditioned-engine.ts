// What the Kronecker-factored engines (K-BFGS, KFAC, Shampoo) share: parameters, running
// statistics and optimizer state kept as runtime tensors by graph name; feeds picked by name for
// each session; the commit of a step graph's θ⁺, momentum and running statistics.
import type { TensorData } from '../../graph-tools/index.js';
import { kname, type StepGraph } from '../optim/preconditioned-step.js';
import type { Backend, Session, Tensor } from '../runtime/backend.js';
import type { EngineCounters, EngineSnapshot } from './trainer.js';

export type Feeds = Record<string, Tensor>;

/**
 * Exactly the inputs `session` declares: the scalars (`kfqn:scalar:<name>`) from `scalars`, every
 * other input from `lookup`. A missing value is a bug in the graph/engine pairing.
 */
export function sessionFeeds(backend: Backend, session: Session, lookup: (name: string) => Tensor | undefined, scalars: Record<string, number> = {}): Feeds {
  const out: Feeds = {};
  for (const name of session.inputNames) {
    const scalar = name.startsWith('kfqn:scalar:') ? scalars[name.slice('kfqn:scalar:'.length)] : undefined;
    const t = scalar !== undefined ? backend.tensor('float32', Float32Array.of(scalar), []) : lookup(name);
    if (!t) throw new Error(`internal: no value for input '${name}' of ${session.name}`);
    out[name] = t;
  }
  return out;
}

export function zeros(backend: Backend, dims: readonly number[]): Tensor {
  return backend.tensor('float32', new Float32Array(dims.reduce((a, b) => a * b, 1)), dims);
}

/** G identity matrices d × d, as [G, d, d]. */
export function identities(backend: Backend, G: number, d: number): Tensor {
  const out = new Float32Array(G * d * d);
  for (let g = 0; g < G; g++) for (let i = 0; i < d; i++) out[g * d * d + i * d + i] = 1;
  return backend.tensor('float32', out, [G, d, d]);
}

export abstract class PreconditionedEngine {
  params = new Map<string, Tensor>();
  buffers = new Map<string, Tensor>();
  protected state = new Map<string, Tensor>();
  protected initialised = false;
  /** Updates applied so far. */
  protected t = 0;

  protected constructor(protected readonly backend: Backend, readonly stepGraph: StepGraph) {
    const tg = stepGraph.training;
    for (const [p, t] of tg.initialParameters) {
      this.params.set(p, this.tensor(t));
      if (tg.grads.of(p)) this.state.set(kname.momentum(p), zeros(backend, t.dims));
    }
    for (const [b, t] of tg.initialBuffers) this.buffers.set(b, this.tensor(t));
  }

  get initialized(): boolean { return this.initialised; }

  /** The optimizer state kept between steps (momenta, factors, inverses, pairs), by graph name. */
  get optimizerState(): ReadonlyMap<string, Tensor> { return this.state; }

  /** The training graph of the step: data inputs, target and output, for the batch feeds. */
  get training() { return this.stepGraph.training; }

  get counters(): EngineCounters { return { t: this.t, initialised: this.initialised }; }

  /** Every input of the sessions a step runs. */
  protected abstract readonly sessions: Readonly<Record<string, Session | undefined>>;
  get inputNames(): ReadonlySet<string> {
    return new Set(Object.values(this.sessions).flatMap((s) => (s ? s.inputNames : [])));
  }

  restore(s: EngineSnapshot): void {
    this.params = s.params;
    this.buffers = s.buffers;
    this.state = s.state;
    this.t = s.counters.t;
    this.initialised = s.counters.initialised;
  }

  /** Exactly the inputs `session` declares, from the batch, the scalars, parameters, buffers and state. */
  protected feeds(session: Session, data: Feeds, scalars: Record<string, number> = {}, extra: Feeds = {}): Feeds {
    return sessionFeeds(this.backend, session,
      (name) => extra[name] ?? data[name] ?? this.params.get(name) ?? this.buffers.get(name) ?? this.state.get(name), scalars);
  }

  /** θ⁺ (given, or the step graph's), the new momentum and running statistics. */
  protected commitStep(out: Feeds, next = this.nextParams(out)): void {
    this.params = next;
    for (const p of this.params.keys()) if (out[kname.newMomentum(p)]) this.state.set(kname.momentum(p), out[kname.newMomentum(p)]);
    for (const b of this.stepGraph.training.buffers) this.buffers.set(b.input, out[b.output!]);
    this.t++;
  }

  protected nextParams(out: Feeds): Map<string, Tensor> {
    const next = new Map(this.params);
    for (const p of this.params.keys()) if (out[kname.newParam(p)]) next.set(p, out[kname.newParam(p)]);
    return next;
  }

  protected async scalar(t: Tensor): Promise<number> { return Number((await this.backend.read(t))[0]); }

  /** A step graph's loss, and whether its step must be skipped: a non-finite loss (gradients) or direction. */
  protected async checkStep(out: Feeds): Promise<{ loss: number; skipped: boolean }> {
    const loss = await this.scalar(out[this.stepGraph.training.outputs.loss]);
    return { loss, skipped: !Number.isFinite(loss) || !Number.isFinite(await this.scalar(out[kname.directionNorm])) };
  }

  protected tensor(t: Pick<TensorData, 'data' | 'dims'>): Tensor { return this.backend.tensor('float32', t.data as Float32Array, t.dims); }
}
