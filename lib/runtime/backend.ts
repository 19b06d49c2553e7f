// One interface over onnxruntime-node and onnxruntime-web. Optimizers and the Trainer see only
// this; a concrete runtime package is imported by the implementations (node.ts, web.ts) alone.
import type { InferenceSession, Tensor } from 'onnxruntime-common';

export type { Tensor };
export type ExecutionProvider = 'cpu' | 'cuda' | 'wasm' | 'webgpu';
export const EXECUTION_PROVIDERS: readonly ExecutionProvider[] = ['cpu', 'cuda', 'wasm', 'webgpu'];
export type TensorType = 'float32' | 'float64' | 'int64' | 'int32' | 'bool' | 'uint8';
export type TensorArray = Float32Array | Float64Array | BigInt64Array | Int32Array | Uint8Array;

export class RuntimeError extends Error {
  constructor(message: string) { super(message); this.name = 'RuntimeError'; }
}

export interface SessionOptions {
  /** Name used in error messages (what graph this is). */
  name: string;
  /** ORT graph optimisation level; 'extended' measured fastest for MLP training graphs. */
  graphOptimizationLevel?: 'disabled' | 'basic' | 'extended' | 'layout' | 'all';
}

export interface Session {
  readonly name: string;
  readonly inputNames: readonly string[];
  readonly outputNames: readonly string[];
  /** Runs with exactly the graph's inputs; returns the requested outputs (default all). */
  run(feeds: Record<string, Tensor>, outputs?: readonly string[]): Promise<Record<string, Tensor>>;
  release(): Promise<void>;
}

export interface Backend {
  readonly ep: ExecutionProvider;
  createSession(model: Uint8Array, options: SessionOptions): Promise<Session>;
  tensor(type: TensorType, data: TensorArray, dims: readonly number[]): Tensor;
  /** The tensor's values in JavaScript memory (downloads from a device when needed). */
  read(t: Tensor): Promise<TensorArray>;
}

type OrtSession = InferenceSession;

/** What kfqn uses of an ORT package; onnxruntime-node and onnxruntime-web both provide it. */
export interface OrtModule {
  InferenceSession: { create(model: Uint8Array, options: InferenceSession.SessionOptions): Promise<InferenceSession> };
  Tensor: new (type: TensorType, data: TensorArray, dims: readonly number[]) => unknown;
}

/** A Backend over one ORT package and one execution provider. */
export class OrtBackend implements Backend {
  /**
   * With `profileDir`, every session writes ORT's per-node profile (JSON, one file per session,
   * named after it) there when released; `scripts/bench/ort-profile.ts` sums one up.
   */
  constructor(readonly ep: ExecutionProvider, private readonly ort: OrtModule, private readonly profileDir?: string) {}

  async createSession(model: Uint8Array, options: SessionOptions): Promise<Session> {
    try {
      const s = await this.ort.InferenceSession.create(model, {
        executionProviders: [this.ep],
        graphOptimizationLevel: options.graphOptimizationLevel ?? 'extended',
        logSeverityLevel: 3,
        // ORT's pool threads spin after each run by default. The engines run two to four sessions a
        // step with JavaScript between them, and on few cores those spinning threads starve the next
        // run: off, an Adam step of the autoencoder went from 60 to 55 ms and a K-BFGS step from 215
        // to 168 ms (scripts/bench/step-time.ts, 2 cores).
        extra: { session: { intra_op: { allow_spinning: '0' }, inter_op: { allow_spinning: '0' } } },
        ...(this.profileDir ? { enableProfiling: true, profileFilePrefix: `${this.profileDir}/${options.name.replace(/\W+/g, '_')}` } : {}),
      });
      return new CheckedSession(options.name, s);
    } catch (e) {
      throw explainSessionError(this.ep, options.name, e);
    }
  }

  tensor(type: TensorType, data: TensorArray, dims: readonly number[]): Tensor {
    return new this.ort.Tensor(type, data, dims) as Tensor;
  }

  async read(t: Tensor): Promise<TensorArray> {
    return (t.location === 'cpu' ? t.data : await t.getData()) as TensorArray;
  }
}

/** Wraps an ORT session with feed validation (onnxruntime-node silently ignores unknown names). */
export class CheckedSession implements Session {
  readonly inputNames: readonly string[];
  readonly outputNames: readonly string[];
  private readonly inputs: Set<string>;

  constructor(readonly name: string, private readonly session: OrtSession) {
    this.inputNames = session.inputNames;
    this.outputNames = session.outputNames;
    this.inputs = new Set(session.inputNames);
  }

  async run(feeds: Record<string, Tensor>, outputs?: readonly string[]): Promise<Record<string, Tensor>> {
    const unknown = Object.keys(feeds).filter((k) => !this.inputs.has(k));
    if (unknown.length) throw new RuntimeError(`${this.name}: unknown input(s) ${unknown.map((u) => `'${u}'`).join(', ')}; inputs are ${this.inputNames.join(', ')}`);
    const missing = this.inputNames.filter((k) => !(k in feeds));
    if (missing.length) throw new RuntimeError(`${this.name}: missing input(s) ${missing.map((m) => `'${m}'`).join(', ')}`);
    try {
      const f = feeds as InferenceSession.FeedsType;
      return (await (outputs ? this.session.run(f, outputs as string[]) : this.session.run(f))) as Record<string, Tensor>;
    } catch (e) {
      throw new RuntimeError(`${this.name}: ${(e as Error).message}`);
    }
  }

  release(): Promise<void> { return this.session.release(); }
}

/** Turns an ORT session-creation failure into a message that says what is missing. */
export function explainSessionError(ep: ExecutionProvider, name: string, err: unknown): RuntimeError {
  // ORT's messages carry source paths and assertion text; keep the human part on one line.
  const raw = ((err as Error)?.message ?? String(err)).replace(/\s+/g, ' ').trim();
  const msg = raw.replace(/\/onnxruntime_src\/\S+ (\S+::)*\S+ /g, '').replace(/^.* was false\. /, '');
  const hints: Record<ExecutionProvider, string> = {
    cpu: '',
    cuda: 'the CUDA execution provider could not start. onnxruntime-node ships without its CUDA 12 libraries; '
      + 'install them with `ONNXRUNTIME_NODE_INSTALL=cuda12 npm rebuild onnxruntime-node` (needs internet, an NVIDIA driver, CUDA 12 and cuDNN 9), or use --ep cpu.',
    webgpu: 'the WebGPU execution provider found no usable adapter. In Node it runs on Vulkan: install a GPU Vulkan driver, or a software one '
      + '(Mesa lavapipe: see scripts/ci/install-vulkan.sh) and set VK_ICD_FILENAMES to its ICD json; or use --ep cpu.',
    wasm: 'the WASM backend of onnxruntime-web could not start.',
  };
  // Only messages about the provider failing to start get the install hint (not, say, an op the EP lacks).
  const startFailure: Record<ExecutionProvider, RegExp | null> = {
    cpu: null, wasm: /backend not found|wasm/i,
    cuda: /Failed to load shared library|libonnxruntime_providers|CUDA/i,
    webgpu: /adapter|vulkan|dawn/i,
  };
  const looksLikeEp = startFailure[ep]?.test(msg) ?? false;
  return new RuntimeError(`${name}: cannot create an ORT session on '${ep}': ${looksLikeEp ? `${hints[ep]} (ORT said: ${msg})` : msg}`);
}
