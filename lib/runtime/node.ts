// Backends for Node: onnxruntime-node (cpu, cuda, webgpu via its built-in Dawn) and
// onnxruntime-web's WASM build for 'wasm'.
import * as ortNode from 'onnxruntime-node';
import { availableParallelism } from 'node:os';
import { CheckedSession, RuntimeError, explainSessionError, type Backend, type ExecutionProvider, type Session, type SessionOptions, type Tensor, type TensorArray, type TensorType } from './backend.js';
import { createWebBackend } from './web.js';

class NodeBackend implements Backend {
  constructor(readonly ep: 'cpu' | 'cuda' | 'webgpu') {}

  async createSession(model: Uint8Array, options: SessionOptions): Promise<Session> {
    try {
      const s = await ortNode.InferenceSession.create(model, {
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
    return new ortNode.Tensor(type, data as never, dims) as unknown as Tensor;
  }

  async read(t: Tensor): Promise<TensorArray> {
    return (t.location === 'cpu' ? t.data : await t.getData()) as TensorArray;
  }
}

/** Creates the backend for an execution provider, failing with what is missing when it cannot run. */
export async function createBackend(ep: ExecutionProvider = 'cpu'): Promise<Backend> {
  switch (ep) {
    case 'cpu': case 'cuda': case 'webgpu':
      // A provider that cannot load fails at session creation; explainSessionError says why.
      return new NodeBackend(ep);
    case 'wasm':
      return createWebBackend('wasm', { numThreads: Math.min(4, availableParallelism()) });
    default:
      throw new RuntimeError(`unknown execution provider '${ep}'; use one of cpu, cuda, wasm, webgpu`);
  }
}
