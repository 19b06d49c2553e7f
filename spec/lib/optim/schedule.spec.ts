// Learning-rate schedules: the factors' closed forms, their checks, and every engine stepping with
// the scheduled α (a schedule that drops α to 0 after two steps must freeze the parameters there).
import { expect } from 'chai';
import { fromArrays } from '../../../lib/data/index.js';
import { adam, checkLrSchedule, kbfgs, kfac, kfqn, kfqnL, lrFactor, rmsprop, sgd, shampoo, type LrSchedule } from '../../../lib/optim/index.js';
import { createBackend } from '../../../lib/runtime/index.js';
import { Trainer, type TrainerOptions } from '../../../lib/train/trainer.js';
import { makeRefMlp } from '../../helpers/mlp-reference.js';
import { activations, data as autoencoderData, M, sizes, toOnnx } from '../../helpers/tiny-autoencoder.js';

describe('learning-rate schedules', () => {
  it('step: α·γ^⌊(t−1)/every⌋', () => {
    const s: LrSchedule = { kind: 'step', every: 3, gamma: 0.1 };
    expect([1, 2, 3, 4, 6, 7, 10].map((t) => lrFactor(s, t))).to.deep.equal([1, 1, 1, 0.1, 0.1, 0.1 ** 2, 0.1 ** 3]);
  });

  it('cosine: from 1 down to the floor over `steps` updates, then the floor', () => {
    const s: LrSchedule = { kind: 'cosine', steps: 4, floor: 0.2 };
    const want = [0, 1, 2, 3, 4, 5].map((k) => 0.2 + 0.8 * (1 + Math.cos(Math.PI * Math.min(k, 4) / 4)) / 2);
    [1, 2, 3, 4, 5, 6].forEach((t, i) => expect(lrFactor(s, t)).to.be.closeTo(want[i], 1e-15));
    expect(lrFactor(s, 1)).to.equal(1);
    expect(lrFactor(s, 5)).to.be.closeTo(0.2, 1e-15);
    expect(lrFactor({ kind: 'cosine', steps: 2 }, 3)).to.be.closeTo(0, 1e-15);
    expect(lrFactor(undefined, 7)).to.equal(1);
  });

  it('refuses bad numbers, an unknown kind, and a schedule on the convergent variant (it has its own α_k)', () => {
    expect(() => checkLrSchedule({ kind: 'step', every: 0, gamma: 0.5 })).to.throw(RangeError, /every must be an integer ≥ 1, got 0/);
    expect(() => checkLrSchedule({ kind: 'step', every: 2, gamma: 1.5 })).to.throw(RangeError, /gamma must lie in \[0, 1\], got 1.5/);
    expect(() => checkLrSchedule({ kind: 'cosine', steps: 10, floor: -1 })).to.throw(RangeError, /floor must lie in \[0, 1\]/);
    expect(() => checkLrSchedule({ kind: 'linear' } as never)).to.throw(RangeError, /kind must be 'step' or 'cosine', got 'linear'/);
    expect(() => sgd({ lrSchedule: { kind: 'step', every: 1.5, gamma: 0.5 } })).to.throw(RangeError, /every must be an integer/);
    expect(() => kfqn({ variant: 'convergent', lrSchedule: { kind: 'step', every: 2, gamma: 0.5 } })).to.throw(RangeError, /convergent variant has its own step sizes/);
  });

  it('is an option of every optimizer, kept in its options (so a checkpoint keeps it), absent when not given', () => {
    const s: LrSchedule = { kind: 'step', every: 2, gamma: 0.5 };
    for (const make of [sgd, adam, rmsprop, kfac, shampoo, kbfgs, kfqn, kfqnL] as ((o: { lr: number; lrSchedule?: LrSchedule }) => TrainerOptions['optimizer'])[]) {
      const o = make({ lr: 0.4, lrSchedule: s });
      expect(o.options.lrSchedule, o.name).to.deep.equal(s);
      expect([1, 2, 3, 5].map((t) => o.learningRate(t)), o.name).to.deep.equal([0.4, 0.4, 0.2, 0.1]);
      expect(make({ lr: 0.4 }).options, o.name).to.not.have.property('lrSchedule');
    }
  });

  describe('every engine steps with the scheduled α: γ = 0 after 2 steps freezes the parameters', function () {
    this.timeout(60_000);
    const model = toOnnx(makeRefMlp(sizes, [...activations], { kind: 'mse', reduction: 'mean' }, 1));
    const data = fromArrays('tiny', autoencoderData(3), [sizes[0]]);
    const freeze: LrSchedule = { kind: 'step', every: 2, gamma: 0 };
    const cases: Record<string, (s?: LrSchedule) => TrainerOptions['optimizer']> = {
      'sgd (momentum)': (s) => sgd({ lr: 0.05, momentum: 0.9, lrSchedule: s }), adam: (s) => adam({ lr: 0.01, lrSchedule: s }),
      kfac: (s) => kfac({ lr: 0.1, lrSchedule: s }), shampoo: (s) => shampoo({ lr: 0.05, lrSchedule: s }),
      kbfgs: (s) => kbfgs({ lr: 0.1, lrSchedule: s }), 'kfqn-l': (s) => kfqnL({ lr: 0.1, history: 3, lrSchedule: s }),
    };
    for (const [name, make] of Object.entries(cases)) {
      it(name, async () => {
        const run = async (steps: number, s?: LrSchedule) => {
          const trainer = await Trainer.create(await createBackend('cpu'), model, { kind: 'mse', reduction: 'mean', target: 'input', optimizer: make(s) });
          try {
            const lrs: number[] = [];
            await trainer.fit(data, { batchSize: M / 2, steps, shuffle: false, onStep: (st) => { lrs.push(st.lr); } });
            return { lrs, params: [...(await trainer.parameters()).values()].map((t) => Array.from(t.data as Float32Array)) };
          } finally {
            await trainer.dispose();
          }
        };
        const two = await run(2, freeze);
        const four = await run(4, freeze);
        expect(four.lrs).to.deep.equal([make().options.lr, make().options.lr, 0, 0]);
        expect(four.params).to.deep.equal(two.params);
        expect((await run(4)).params, 'without the schedule the last two steps move them').to.not.deep.equal(two.params);
      });
    }
  });
});
