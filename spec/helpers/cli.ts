// Runs the kfqn CLI in-process (console captured) or as a child process, and builds the small
// models and tensor files the CLI specs feed it.
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { main } from '../../lib/cli/index.js';
import { A, valueInfoProto, type Dim } from '../../graph-tools/ir/graph.js';
import { encodeModel, encodeTensor, onnx, tensorToProto, type TensorData } from '../../graph-tools/onnx/index.js';

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** main(argv) with console.log/info/warn/error captured; the console is restored afterwards. */
export async function runCli(argv: string[]): Promise<CliResult> {
  const out: string[] = [];
  const err: string[] = [];
  const saved = { log: console.log, info: console.info, warn: console.warn, error: console.error };
  const fmt = (args: unknown[]) => args.map((a) => (typeof a === 'string' ? a : String(a))).join(' ');
  console.log = (...a: unknown[]) => void out.push(fmt(a));
  console.info = console.log;
  console.warn = (...a: unknown[]) => void err.push(fmt(a));
  console.error = console.warn;
  let code: number;
  try {
    code = await main(argv);
  } finally {
    Object.assign(console, saved);
  }
  return { code, stdout: out.map((l) => `${l}\n`).join(''), stderr: err.map((l) => `${l}\n`).join('') };
}

/** `node --import tsx lib/cli/main.ts ...argv` from the repository root. */
export function spawnCli(argv: string[], timeoutMs = 30000): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'lib/cli/main.ts', ...argv], {
      cwd: process.cwd(), stdio: ['ignore', 'pipe', 'pipe'], timeout: timeoutMs,
    });
    let stdout = ''; let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => { stdout += d; });
    child.stderr.setEncoding('utf8').on('data', (d: string) => { stderr += d; });
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code: code ?? (signal ? 128 : -1), stdout, stderr }));
  });
}

/** The lines of a captured stream, without the empty last one. */
export function lines(s: string): string[] {
  return s.split('\n').filter((l) => l.length > 0);
}

/** A fresh temporary directory; remove it with removeTempDir. */
export function tempDir(prefix = 'kfqn-cli-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

export function removeTempDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}

export interface TinyNode { op: string; inputs: string[]; outputs: string[]; name: string; attrs?: onnx.IAttributeProto[] }

/** A float32 ModelProto from one input, float32 initializers, nodes and one output. */
export function tinyModel(spec: {
  input: { name: string; shape: Dim[] };
  initializers: { name: string; dims: number[]; values: number[] }[];
  nodes: TinyNode[];
  output: { name: string; shape?: Dim[] };
  opset?: number;
}): onnx.ModelProto {
  return onnx.ModelProto.create({
    irVersion: 8,
    producerName: 'kfqn-cli-spec',
    opsetImport: [{ domain: '', version: spec.opset ?? 13 }],
    graph: onnx.GraphProto.create({
      name: 'cli_spec',
      node: spec.nodes.map((n) => onnx.NodeProto.create({ name: n.name, opType: n.op, input: n.inputs, output: n.outputs, attribute: n.attrs ?? [] })),
      initializer: spec.initializers.map((t) => tensorToProto(t.name, { dtype: 'float32', dims: t.dims, data: Float32Array.from(t.values) })),
      input: [valueInfoProto(spec.input.name, { dtype: 'float32', shape: spec.input.shape })],
      output: [valueInfoProto(spec.output.name, { dtype: 'float32', shape: spec.output.shape })],
    }),
  });
}

/** Deterministic small values in ±scale. */
export function values(n: number, seed: number, scale = 0.5): number[] {
  let s = seed >>> 0;
  return Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return Math.fround(((s / 4294967296) * 2 - 1) * scale);
  });
}

/** x [N,1,4,4] → Flatten → Gemm(W [3,16], transB=1, b [3]) → logits [N,3]: fits idx:spec/fixtures/idx. */
export function flattenGemmModel(): onnx.ModelProto {
  return tinyModel({
    input: { name: 'x', shape: ['N', 1, 4, 4] },
    initializers: [{ name: 'fc.weight', dims: [3, 16], values: values(48, 1) }, { name: 'fc.bias', dims: [3], values: values(3, 2, 0.1) }],
    nodes: [
      { op: 'Flatten', inputs: ['x'], outputs: ['flat'], name: 'flatten', attrs: [A.int('axis', 1)] },
      { op: 'Gemm', inputs: ['flat', 'fc.weight', 'fc.bias'], outputs: ['logits'], name: 'fc', attrs: [A.int('transB', 1)] },
    ],
    output: { name: 'logits', shape: ['N', 3] },
  });
}

/**
 * x [N,4] → Gemm 'fc' (W [4,3], b [3]) → `op` (node 'the_<op in lower case>') → y [N,3]: puts `op`
 * between a trainable parameter and the loss.
 */
export function gemmThenModel(op: string): onnx.ModelProto {
  return tinyModel({
    input: { name: 'x', shape: ['N', 4] },
    initializers: [{ name: 'W', dims: [4, 3], values: values(12, 3) }, { name: 'b', dims: [3], values: values(3, 4, 0.1) }],
    nodes: [
      { op: 'Gemm', inputs: ['x', 'W', 'b'], outputs: ['h'], name: 'fc' },
      { op, inputs: ['h'], outputs: ['y'], name: `the_${op.toLowerCase()}` },
    ],
    output: { name: 'y', shape: ['N', 3] },
  });
}

export function writeModel(path: string, model: onnx.ModelProto): string {
  writeFileSync(path, encodeModel(model));
  return path;
}

/** Writes a TensorProto .pb (what onnx.numpy_helper.from_array(a).SerializeToString() gives). */
export function writeTensor(path: string, t: TensorData): string {
  writeFileSync(path, encodeTensor(tensorToProto('', t)));
  return path;
}

export function readJsonLines(path: string): Record<string, unknown>[] {
  return lines(readFileSync(path, 'utf8')).map((l) => JSON.parse(l) as Record<string, unknown>);
}

/** x [N,1,4,4] → Flatten → Gemm 16→6 → Relu → Gemm 6→16 → logits [N,16]: an autoencoder for idx:spec/fixtures/idx. */
export function tinyAutoencoderModel(): onnx.ModelProto {
  return tinyModel({
    input: { name: 'x', shape: ['N', 1, 4, 4] },
    initializers: [
      { name: 'enc.weight', dims: [6, 16], values: values(96, 5) }, { name: 'enc.bias', dims: [6], values: values(6, 6, 0.1) },
      { name: 'dec.weight', dims: [16, 6], values: values(96, 7) }, { name: 'dec.bias', dims: [16], values: values(16, 8, 0.1) },
    ],
    nodes: [
      { op: 'Flatten', inputs: ['x'], outputs: ['flat'], name: 'flatten', attrs: [A.int('axis', 1)] },
      { op: 'Gemm', inputs: ['flat', 'enc.weight', 'enc.bias'], outputs: ['h'], name: 'enc', attrs: [A.int('transB', 1)] },
      { op: 'Relu', inputs: ['h'], outputs: ['code'], name: 'relu' },
      { op: 'Gemm', inputs: ['code', 'dec.weight', 'dec.bias'], outputs: ['logits'], name: 'dec', attrs: [A.int('transB', 1)] },
    ],
    output: { name: 'logits', shape: ['N', 16] },
  });
}
