// Backends for Node: onnxruntime-node (cpu, cuda, webgpu via its built-in Dawn) and
// onnxruntime-web's WASM build for 'wasm'.
import * as ortNode from 'onnxruntime-node';
import { mkdirSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { OrtBackend, RuntimeError, type Backend, type ExecutionProvider, type OrtModule } from './backend.js';
import { createWebBackend } from './web.js';

/**
 * Creates the backend for an execution provider; one that cannot start fails at its first session,
 * saying what is missing. With KFQN_ORT_PROFILE=DIR in the environment, onnxruntime-node's sessions
 * write their per-node profiles to DIR (a development aid: profiling slows every run).
 */
export async function createBackend(ep: ExecutionProvider = 'cpu'): Promise<Backend> {
  switch (ep) {
    case 'cpu': case 'cuda': case 'webgpu':
      return new OrtBackend(ep, ortNode as unknown as OrtModule, profileDir());
    case 'wasm':
      return createWebBackend('wasm', { numThreads: Math.min(4, availableParallelism()) });
    default:
      throw new RuntimeError(`unknown execution provider '${ep}'; use one of cpu, cuda, wasm, webgpu`);
  }
}

/** KFQN_ORT_PROFILE's directory, created if missing (ORT writes its profile files into it but does not make it). */
function profileDir(): string | undefined {
  const dir = process.env.KFQN_ORT_PROFILE;
  if (!dir) return undefined;
  mkdirSync(dir, { recursive: true });
  return dir;
}
