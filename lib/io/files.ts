// Node file I/O: models with external data, TensorProto files, and writes that never leave a
// half-written file behind.
import { existsSync, readFileSync, renameSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { decodeModel, decodeTensor, tensorFromProto, onnx, type TensorData } from '../../graph-tools/onnx/index.js';

import { InputError } from '../errors.js';

export { InputError };

function readBytes(path: string, what: string): Uint8Array {
  if (!existsSync(path)) throw new InputError(`${what} not found: ${path}`);
  try {
    return new Uint8Array(readFileSync(path));
  } catch (e) {
    throw new InputError(`cannot read ${what} ${path}: ${(e as Error).message}`);
  }
}

/** Loads an .onnx file, resolving external data files beside it. */
export function readModelFile(path: string): onnx.ModelProto {
  const bytes = readBytes(path, 'model file');
  const dir = dirname(resolve(path));
  return decodeModel(bytes, { source: basename(path), readExternal: (location) => readBytes(join(dir, location), 'external data file') });
}

/** Loads a TensorProto .pb file (as onnx.numpy_helper writes). */
export function readTensorFile(path: string): TensorData {
  return tensorFromProto(decodeTensor(readBytes(path, 'tensor file'), basename(path)));
}

/** The bytes of a checkpoint file (decode them with Trainer.restore). */
export function readCheckpointFile(path: string): Uint8Array {
  return readBytes(path, 'checkpoint file');
}

/** Writes through a temporary file and a rename, so a failure leaves no partial output. */
export function writeFileAtomic(path: string, data: Uint8Array | string): void {
  mkdirSync(dirname(resolve(path)), { recursive: true });
  const tmp = `${path}.tmp-${process.pid}`;
  try {
    writeFileSync(tmp, data);
    renameSync(tmp, path);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw e;
  }
}
