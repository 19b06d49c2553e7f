// onnxruntime-web backends: WASM (browsers and Node) and WebGPU (browsers). No Node built-ins.
import { OrtBackend, type Backend, type OrtModule } from './backend.js';

export interface WebBackendOptions {
  /** WASM threads; browsers need cross-origin isolation (COOP/COEP) for more than one. */
  numThreads?: number;
  /** Where the .wasm files are served from, when the bundler does not resolve them. */
  wasmPaths?: string;
}

export async function createWebBackend(ep: 'wasm' | 'webgpu', options: WebBackendOptions = {}): Promise<Backend> {
  const ort = await import('onnxruntime-web');
  if (options.numThreads) ort.env.wasm.numThreads = options.numThreads;
  if (options.wasmPaths) ort.env.wasm.wasmPaths = options.wasmPaths;
  return new OrtBackend(ep, ort as unknown as OrtModule);
}
