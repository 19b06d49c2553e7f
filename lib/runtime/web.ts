// onnxruntime-web backends: WASM (browsers and Node) and WebGPU (browsers). No Node built-ins.
import { CheckedSession, explainSessionError, type Backend, type Session, type SessionOptions, type Tensor, type TensorArray, type TensorType } from './backend.js';

type OrtWeb = typeof import('onnxruntime-web');

export interface WebBackendOptions {
  /** WASM threads; browsers need cross-origin isolation (COOP/COEP) for more than one. */
  numThreads?: number;
  /** Where the .wasm files are served from, when the bundler does not resolve them. */
  wasmPaths?: string;
}

class WebBackend implements Backend {
  constructor(readonly ep: 'wasm' | 'webgpu', private readonly ort: OrtWeb) {}

  async createSession(model: Uint8Array, options: SessionOptions): Promise<Session> {
    try {
      const s = await this.ort.InferenceSession.create(model, {
        executionProviders: [this.ep],
        graphOptimizationLevel: options.graphOptimizationLevel ?? 'extended',
        logSeverityLevel: 3,
      });
      return new CheckedSession(options.name, s);
    } catch (e) {
      throw explainSessionError(this.ep, options.name, e);
    }
  }

  tensor(type: TensorType, data: TensorArray, dims: readonly number[]): Tensor {
    return new this.ort.Tensor(type, data as never, dims) as unknown as Tensor;
  }

  async read(t: Tensor): Promise<TensorArray> {
    return (t.location === 'cpu' ? t.data : await t.getData()) as TensorArray;
  }
}

export async function createWebBackend(ep: 'wasm' | 'webgpu', options: WebBackendOptions = {}): Promise<Backend> {
  const ort = await import('onnxruntime-web');
  if (options.numThreads) ort.env.wasm.numThreads = options.numThreads;
  if (options.wasmPaths) ort.env.wasm.wasmPaths = options.wasmPaths;
  return new WebBackend(ep, ort);
}
