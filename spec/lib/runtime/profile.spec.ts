// KFQN_ORT_PROFILE (lib/runtime/node.ts) → OrtBackend's profileDir: each session writes ORT's
// per-node profile, named after the session, when released.
import { expect } from 'chai';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ortNode from 'onnxruntime-node';
import { encodeModel } from '../../../graph-tools/index.js';
import { OrtBackend, type OrtModule } from '../../../lib/runtime/backend.js';
import { ModelBuilder } from '../../helpers/models.js';

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
});
