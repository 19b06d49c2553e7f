// A training checkpoint: the parameters, the running statistics, every optimizer state tensor and
// the counters that drive the next step, so that a restored Trainer continues the run exactly
// (ARCHITECTURE.md: named tensors plus a JSON header). Stored as an ONNX ModelProto whose graph
// holds only initializers and whose metadata holds the header: any ONNX tool can open it
// (onnx.load, numpy_helper.to_array), and it needs no codec beyond the one models use. Pure module
// (no Node built-ins): bytes in, bytes out.
import { decodeModel, encodeModel, onnx, OnnxFormatError, tensorFromProto, tensorToProto, type DataType, type TensorData } from '../../graph-tools/index.js';
import { InputError } from '../errors.js';

export const CHECKPOINT_FORMAT = 'kfqn-checkpoint';
export const CHECKPOINT_VERSION = 1;
const HEADER_KEY = 'kfqn.checkpoint';

/** Where the tensors of a checkpoint belong. */
export type TensorGroup = 'param' | 'buffer' | 'state';
const GROUPS: readonly TensorGroup[] = ['param', 'buffer', 'state'];

/** How fit() walked the data: the batch plan and how far it got. */
export interface DataPosition {
  /** Epoch index of the next batch. */
  epoch: number;
  /** Index, within that epoch, of the next batch (0: the epoch has not started). */
  batch: number;
  /** Batches drawn so far from the independent curvature stream (KF-QN's convergent variant). */
  curvatureDraws: number;
  /** The plan those indices refer to (absent before the first fit). */
  plan?: BatchPlan;
}

export interface BatchPlan { batchSize: number; shuffle: boolean; seed: number; samples: number }

export interface CheckpointHeader {
  format: typeof CHECKPOINT_FORMAT;
  version: number;
  /** The optimizer's name and resolved options (every hyper-parameter, defaults included). */
  optimizer: { name: string; options: Record<string, unknown> };
  /** The loss and how the model was trained (informative; a restore does not require them equal). */
  training: { loss: string; reduction: string; target: string; batchnorm: string };
  /** Steps attempted, updates applied and non-finite steps skipped. */
  trainer: { steps: number; updates: number; skipped: number };
  /** The optimizer engine's own counters (its update count, whether its curvature was initialised). */
  engine: { t: number; initialised: boolean };
  position: DataPosition;
  /** Every tensor's group and name, so that a file cut at a tensor boundary is caught. */
  tensors: { group: TensorGroup; name: string }[];
  /** Whatever the caller keeps with the run (the CLI: its command line), as given. */
  run?: Record<string, unknown>;
}

export interface Checkpoint {
  header: CheckpointHeader;
  tensors: Record<TensorGroup, Map<string, TensorData>>;
}

export function encodeCheckpoint(c: Checkpoint): Uint8Array {
  const initializer: onnx.TensorProto[] = [];
  const listed: CheckpointHeader['tensors'] = [];
  for (const group of GROUPS) {
    for (const [name, t] of c.tensors[group]) {
      initializer.push(tensorToProto(`${group}/${name}`, t));
      listed.push({ group, name });
    }
  }
  const header: CheckpointHeader = { ...c.header, tensors: listed };
  return encodeModel({
    irVersion: 8, producerName: 'kfqn', docString: 'kfqn training checkpoint: parameters, running statistics and optimizer state',
    opsetImport: [{ domain: '', version: 13 }],
    graph: { name: 'kfqn checkpoint', initializer },
    metadataProps: [{ key: HEADER_KEY, value: JSON.stringify(header) }],
  });
}

/** Decodes a checkpoint; `source` names it in errors (a file path, say). */
export function decodeCheckpoint(bytes: Uint8Array, source = 'checkpoint'): Checkpoint {
  let model: onnx.ModelProto;
  try {
    model = decodeModel(bytes, { source });
  } catch (e) {
    if (e instanceof OnnxFormatError) throw new InputError(`${e.message.replace(/an ONNX model/, 'a kfqn checkpoint')}; it cannot be resumed from`);
    throw e;
  }
  const header = readHeader(model, source);
  const tensors: Checkpoint['tensors'] = { param: new Map(), buffer: new Map(), state: new Map() };
  const stored = new Map((model.graph!.initializer ?? []).map((t) => [t.name ?? '', t]));
  for (const { group, name } of header.tensors) {
    const proto = stored.get(`${group}/${name}`);
    if (!proto) throw new InputError(`${source} is truncated or corrupt: it lists ${group} '${name}' but does not hold it`);
    try {
      tensors[group].set(name, tensorFromProto(proto));
    } catch (e) {
      throw new InputError(`${source} is corrupt: ${group} '${name}': ${(e as Error).message}`);
    }
  }
  if (stored.size !== header.tensors.length) throw new InputError(`${source} is corrupt: it holds ${stored.size} tensors, its header lists ${header.tensors.length}`);
  return { header, tensors };
}

/** The header alone (what the CLI reads to default a resumed run's settings). */
export function readHeader(model: onnx.ModelProto, source: string): CheckpointHeader {
  const entry = model.metadataProps.find((p) => p.key === HEADER_KEY);
  if (!entry) throw new InputError(`${source} is an ONNX model, not a kfqn checkpoint (no '${HEADER_KEY}' metadata); a checkpoint is what 'kfqn train --checkpoint' writes`);
  let header: CheckpointHeader;
  try {
    header = JSON.parse(entry.value ?? '');
  } catch (e) {
    throw new InputError(`${source} is corrupt: its header is not JSON (${(e as Error).message})`);
  }
  if (header?.format !== CHECKPOINT_FORMAT || !Array.isArray(header.tensors)) throw new InputError(`${source} is corrupt: its header is not a ${CHECKPOINT_FORMAT} header`);
  if (header.version !== CHECKPOINT_VERSION) {
    throw new InputError(`${source} is a ${CHECKPOINT_FORMAT} of version ${header.version}; this kfqn reads version ${CHECKPOINT_VERSION}`);
  }
  return header;
}

/**
 * Checks that `saved` holds every `current` tensor with the same dtype and shape (and, `exact`,
 * nothing else), naming the first difference.
 */
export function checkSameTensors(
  what: string, source: string, saved: ReadonlyMap<string, TensorData>, current: ReadonlyMap<string, { dtype: DataType; dims: readonly number[] }>, exact: boolean,
): void {
  for (const [name, t] of current) {
    const s = saved.get(name);
    if (!s) throw new InputError(`${source} has no ${what} '${name}': it was saved from another model or optimizer setting`);
    if (s.dtype !== t.dtype || s.dims.length !== t.dims.length || s.dims.some((d, i) => d !== t.dims[i])) {
      throw new InputError(`${source}: ${what} '${name}' is ${s.dtype}[${s.dims}], this run's is ${t.dtype}[${t.dims}]: it was saved from another model or optimizer setting`);
    }
  }
  const extra = exact ? [...saved.keys()].find((k) => !current.has(k)) : undefined;
  if (extra) throw new InputError(`${source} has a ${what} '${extra}' that this model does not: it was saved from another model`);
}
