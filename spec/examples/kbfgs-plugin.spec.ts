// The README's plug-in example runs as documented and trains: the bundled autoencoder's loss
// falls from the untrained 784·ln 2 ≈ 543.4 over its first K-BFGS steps.
import { expect } from 'chai';
import { trainWithStepper } from '../../examples/kbfgs-plugin.js';

describe('examples/kbfgs-plugin.ts', () => {
  it('trains the bundled autoencoder with KbfgsStepper on an onnxruntime-node session of its own', async () => {
    const lines: string[] = [];
    const losses = await trainWithStepper(5, (l) => lines.push(l));
    expect(lines).to.have.length(5);
    expect(losses[0]).to.be.closeTo(784 * Math.LN2, 2);
    for (let i = 2; i < losses.length; i++) expect(losses[i], `step ${i + 1}`).to.be.below(losses[i - 1]);
    expect(losses[4]).to.be.below(losses[0] - 30);
  });
});
