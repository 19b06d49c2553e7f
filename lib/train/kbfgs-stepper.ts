// The plug-in surface: K-BFGS / K-BFGS(L) for a training loop that is not kfqn's Trainer. The
// caller runs its own ORT sessions (for instance on a graph from `kfqn augment --capture
// gradients,a-factors,means`) and hands each step's outputs over as ORT tensors, with a callback
// that runs the second pass at θ⁺; the stepper keeps the optimizer state as runtime tensors and
// returns θ⁺. The graphs are those of the Trainer's engine, with gradients and factors as inputs.
import { encodeModel, outName, statName, type Layer, type onnx } from '../../graph-tools/index.js';
import type { KroneckerOptimizer } from '../optim/kbfgs.js';
import { buildInitGraph, buildStandaloneDirectionGraph, buildUpdateGraph, kname, layerDamping } from '../optim/kbfgs-graphs.js';
import type { Backend, Session, Tensor } from '../runtime/backend.js';
import { InputError } from '../errors.js';
import { curvatureUpdate, directionScalars, initialCurvatureState } from './kronecker-engine.js';
import { sessionFeeds, zeros } from './preconditioned-engine.js';

/** Tensors by graph output name, as a session returns them. */
export type Outputs = Record<string, Tensor>;

export interface StepperStep {
  /** The current parameters, by initializer name. */
  params: Record<string, Tensor>;
  /**
   * The first pass at θ: `kfqn:grad:<param>` for every parameter, and per Kronecker layer
   * `kfqn:A:<layer>`, `kfqn:abar:<layer>`, `kfqn:hbar:<layer>`, `kfqn:gbar:<layer>`.
   */
  outputs: Outputs;
  /** The loss of the first pass, if the caller has it: a non-finite one skips the step. */
  loss?: number;
  /** Runs the same batch at θ⁺ and returns at least `kfqn:hbar:<layer>` and `kfqn:gbar:<layer>`. */
  secondPass: (next: Record<string, Tensor>) => Promise<Outputs>;
}

export interface StepperResult {
  /** θ⁺, or the parameters given when the step was skipped. */
  params: Record<string, Tensor>;
  skipped: boolean;
  powellShare: number;
  skippedShare: number;
}

export class KbfgsStepper {
  private state = new Map<string, Tensor>();
  private t = 0;
  private initialised = false;

  private constructor(
    private readonly backend: Backend,
    private readonly opt: KroneckerOptimizer,
    /** The Kronecker layers the stepper preconditions; every other parameter follows its momentum. */
    readonly layers: readonly Layer[],
    readonly parameterShapes: ReadonlyMap<string, readonly number[]>,
    private readonly sessions: { direction: Session; update: Session; init: Session },
  ) {
    initialCurvatureState(backend, layers, opt, this.state);
    for (const [p, dims] of parameterShapes) this.state.set(kname.momentum(p), zeros(backend, dims));
  }

  /** For `model` (the inference model whose parameters the caller trains) and a kbfgs() or kbfgsL() optimizer. */
  static async create(backend: Backend, model: onnx.ModelProto, opt: KroneckerOptimizer, source = 'model'): Promise<KbfgsStepper> {
    if (opt.options.curvatureInterval !== 1) {
      throw new InputError(`K-BFGS stepper: curvatureInterval ${opt.options.curvatureInterval} is an option of the Trainer; the stepper updates the curvature at every step (run your own direction-only steps in between, or use curvatureInterval 1)`);
    }
    if (opt.options.gInit !== 'identity') {
      throw new InputError(`K-BFGS stepper: gInit '${opt.options.gInit}' needs the gradient factor G, which the stepper is not handed; it starts from H_g⁰ = I (use gInit 'identity', or the Trainer)`);
    }
    const graph = buildStandaloneDirectionGraph(model, opt, source);
    const shapes = new Map([...graph.parameters].map(([p, t]) => [p, t.dims] as const));
    const session = (m: onnx.ModelProto, what: string) => backend.createSession(encodeModel(m), { name: `K-BFGS ${what} of ${source}` });
    const damping = layerDamping(graph.layers, opt);
    return new KbfgsStepper(backend, opt, graph.layers, shapes, {
      direction: await session(graph.model, 'direction'),
      update: await session(buildUpdateGraph(graph.layers, opt, graph.dtype, damping), 'curvature update'),
      init: await session(buildInitGraph(graph.layers, damping, graph.dtype), 'H_a initialisation'),
    });
  }

  /**
   * A (e.g. averaged over a pass, the warm start of §3.3) by layer name [groups, d_a, d_a], and
   * H_a⁰ = (A + λ_A·I)⁻¹. Without it, the first step's batch factors serve.
   */
  async initialise(factors: Record<string, Tensor>): Promise<void> {
    const feeds: Outputs = {};
    for (const l of this.layers) {
      const A = factors[l.name] ?? factors[statName.a(l.name)];
      if (!A) throw new InputError(`no A factor for layer '${l.name}' (give it as '${l.name}' or '${statName.a(l.name)}')`);
      this.state.set(kname.A(l.name), A);
      feeds[kname.A(l.name)] = A;
    }
    const out = await this.sessions.init.run(feeds);
    for (const l of this.layers) this.state.set(kname.Ha(l.name), out[kname.Ha(l.name)]);
    this.initialised = true;
  }

  async step(s: StepperStep): Promise<StepperResult> {
    const unchanged = { params: s.params, skipped: true, powellShare: 0, skippedShare: 0 };
    if (s.loss !== undefined && !Number.isFinite(s.loss)) return unchanged;
    if (!this.initialised) await this.initialise(Object.fromEntries(this.layers.map((l) => [l.name, this.need(s.outputs, statName.a(l.name))])));
    const d = await this.sessions.direction.run(sessionFeeds(this.backend, this.sessions.direction, (name) => (
      this.parameterShapes.has(name) ? this.need(s.params, name, 'params')
        : name.startsWith('kfqn:grad:') || name.startsWith('kfqn:A:') ? this.need(s.outputs, name)
          : this.state.get(name)), directionScalars(this.opt, this.t)));
    if (!Number.isFinite(Number((await this.backend.read(d[kname.directionNorm]))[0]))) return unchanged;
    const next = Object.fromEntries([...this.parameterShapes.keys()].map((p) => [p, d[kname.newParam(p)] ?? s.params[p]]));
    const second = await s.secondPass(next);
    for (const [p] of this.parameterShapes) if (d[kname.newMomentum(p)]) this.state.set(kname.momentum(p), d[kname.newMomentum(p)]);
    const shares = await curvatureUpdate(this.backend, this.sessions.update, this.layers, this.opt, this.state, d,
      (name) => this.need(s.outputs, name), (name) => this.need(second, name, 'the second pass\'s outputs'));
    this.t++;
    return { params: next, skipped: false, ...shares };
  }

  async release(): Promise<void> {
    await Promise.all(Object.values(this.sessions).map((x) => x.release()));
  }

  private need(from: Outputs, name: string, what = 'outputs'): Tensor {
    const t = from[name];
    if (!t) throw new InputError(`K-BFGS stepper: ${what} lack '${name}'${name.startsWith('kfqn:') ? ` (capture it with kfqn augment, e.g. --capture gradients,a-factors,means; ${outName.grad('<param>')} for gradients)` : ''}`);
    return t;
  }
}

