// KFQN_ORT_PROFILE (lib/runtime/node.ts) → OrtBackend's profileDir: each session writes ORT's
// per-node profile, named after the session, when released.
import { expect } from 'chai';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ortNode from 'onnxruntime-node';
import { encodeModel } from '../../../graph-tools/index.js';
import { OrtBackend, type OrtModule } from '../../../lib/runtime/backend.js';
import { createBackend } from '../../../lib/runtime/node.js';
import { matrixWork, readProfile } from '../../../scripts/bench/profile.js';
import { A, ModelBuilder } from '../../helpers/models.js';

describe('lib/runtime: ORT profiles on request', () => {
  it('writes one JSON profile per session, named after it, with a model_run event per run and the nodes timed', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'kfqn-profile-'));
    try {
      const backend = new OrtBackend('cpu', ortNode as unknown as OrtModule, dir);
      const b = new ModelBuilder(1, 13);
      const model = encodeModel(b.model(b.node('Relu', [b.input('x', [2, 3], [2, 3])])));
      const s = await backend.createSession(model, { name: 'relu check' });
      for (let i = 0; i < 3; i++) await s.run({ x: backend.tensor('float32', Float32Array.from([1, -2, 3, -4, 5, -6]), [2, 3]) });
      await s.release();
      const files = readdirSync(dir);
      expect(files).to.have.length(1);
      expect(files[0]).to.match(/^relu_check.*\.json$/);
      const events = JSON.parse(readFileSync(join(dir, files[0]), 'utf8')) as Array<{ cat?: string; name: string; args?: { op_name?: string } }>;
      expect(events.filter((e) => e.cat === 'Session' && e.name === 'model_run')).to.have.length(3);
      expect(events.some((e) => e.cat === 'Node' && e.args?.op_name === 'Relu')).to.equal(true);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('createBackend with KFQN_ORT_PROFILE makes the directory, which ORT itself does not', async () => {
    const root = mkdtempSync(join(tmpdir(), 'kfqn-profile-'));
    const dir = join(root, 'not', 'there');
    const saved = process.env.KFQN_ORT_PROFILE;
    process.env.KFQN_ORT_PROFILE = dir;
    try {
      const backend = await createBackend('cpu');
      const b = new ModelBuilder(1, 13);
      const s = await backend.createSession(encodeModel(b.model(b.node('Relu', [b.input('x', [2], [2])]))), { name: 'made dir' });
      await s.run({ x: backend.tensor('float32', Float32Array.from([1, -1]), [2]) });
      await s.release();
      expect(readdirSync(dir).filter((f) => f.startsWith('made_dir'))).to.have.length(1);
    } finally {
      if (saved === undefined) delete process.env.KFQN_ORT_PROFILE; else process.env.KFQN_ORT_PROFILE = saved;
      rmSync(root, { recursive: true, force: true });
    }
  });

  it('scripts/bench/profile.ts counts the matrix work of Gemm, MatMul, Conv and ConvTranspose from the recorded shapes', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'kfqn-profile-'));
    try {
      const backend = new OrtBackend('cpu', ortNode as unknown as OrtModule, dir);
      const b = new ModelBuilder(1, 13);
      // Gemm with transB: [4, 5]·[3, 5]ᵀ → 2·4·3·5 = 120; batched MatMul [2, 4, 5]·[5, 6] → 2·2·4·6·5 = 480;
      // Conv 2 → 3 channels, 3×3 on 5×5, no pads → 2·(3·3·3)·(2·3·3) = 972; ConvTranspose back
      // 3 → 2 channels → 2·(3·3·3)·(2·3·3) = 972.
      // ORT records the shapes of fed inputs, not of constant initializers: the weights are fed,
      // and one more Gemm has a constant B, so its work cannot be sized.
      const x = b.input('x', [4, 5], [4, 5]);
      const gemm = b.node('Gemm', [x, b.input('B', [3, 5], [3, 5])], [A.int('transB', 1)]);
      const unsized = b.node('Gemm', [x, b.init('K', [5, 2], 0.1)]);
      const mm = b.node('MatMul', [b.input('y', [2, 4, 5], [2, 4, 5]), b.input('C', [5, 6], [5, 6])]);
      const conv = b.node('Conv', [b.input('z', [1, 2, 5, 5], [1, 2, 5, 5]), b.input('W', [3, 2, 3, 3], [3, 2, 3, 3])], [A.ints('kernel_shape', [3, 3])]);
      const back = b.node('ConvTranspose', [conv, b.input('V', [3, 2, 3, 3], [3, 2, 3, 3])], [A.ints('kernel_shape', [3, 3])]);
      const model = encodeModel(b.model([gemm, unsized, mm, back]));
      const s = await backend.createSession(model, { name: 'matrix work' });
      const ones = (dims: number[]) => backend.tensor('float32', new Float32Array(dims.reduce((p, q) => p * q, 1)).fill(1), dims);
      const feeds = { x: [4, 5], B: [3, 5], y: [2, 4, 5], C: [5, 6], z: [1, 2, 5, 5], W: [3, 2, 3, 3], V: [3, 2, 3, 3] };
      for (let i = 0; i < 2; i++) await s.run(Object.fromEntries(Object.entries(feeds).map(([k, d]) => [k, ones(d)])));
      await s.release();
      const [file] = readdirSync(dir);
      const profile = readProfile(join(dir, file));
      expect(profile.runs).to.have.length(2);
      const work = matrixWork(profile.kernels);
      expect(work.flop / 2).to.equal(120 + 480 + 972 + 972);
      expect(work.unsized / 2, 'a Gemm whose constant B ORT does not record').to.equal(1);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
