// SGD and Adam/AdamW run through the real Trainer (float32, update fused into the ORT step graph)
// against a float64 reference of PyTorch's update rules written here from PyTorch's documentation
// (torch.optim.SGD, torch.optim.Adam, torch.optim.AdamW), with float64 gradients from
// computeGradients at the reference's own parameters at every step.
import { expect } from 'chai';
import { adam, rmsprop, sgd, type AdamOptions, type ElementwiseOptimizer, type SgdOptions } from '../../../lib/optim/index.js';
import { createBackend } from '../../../lib/runtime/index.js';
import type { Backend } from '../../../lib/runtime/backend.js';
import { computeGradients } from '../../../lib/train/gradients.js';
import { Trainer } from '../../../lib/train/trainer.js';
import type { onnx } from '../../../graph-tools/index.js';
import { datasetTensors, fixtureModel, initializerValues, randomDataset, relError, withInitializers } from '../../helpers/train.js';

const STEPS = 5;
/** The trainer runs in float32; the reference in float64. */
const TOL = 1e-5;
const LOSS = { kind: 'cross-entropy', reduction: 'mean' } as const;

// ------------------------------------------------------------------------------------------
// The reference: PyTorch's documented algorithms, one parameter tensor at a time, in float64.

interface RefSgdOptions { lr: number; momentum?: number; dampening?: number; nesterov?: boolean; weightDecay?: number; decoupled?: boolean; zeroStart?: boolean }
interface RefAdamOptions { lr?: number; beta1?: number; beta2?: number; eps?: number; weightDecay?: number; decoupled?: boolean; paperCompat?: boolean }

interface RefOptimizer {
  /** One step: params (updated in place) with their gradients at the current params. */
  step(params: Map<string, Float64Array>, grads: Map<string, Float64Array>): void;
}

/**
 * torch.optim.SGD: g ← g + λθ (weight decay); if μ ≠ 0: b ← g at t = 1, else b ← μb + (1−τ)g;
 * g ← g + μb (nesterov) or g ← b; θ ← θ − γg. Decoupled decay (AdamW-style) instead scales
 * θ ← θ(1 − γλ) and leaves the gradient alone.
 */
class RefSgd implements RefOptimizer {
  private readonly buf = new Map<string, Float64Array>();
  private t = 0;
  constructor(private readonly o: RefSgdOptions) {}

  step(params: Map<string, Float64Array>, grads: Map<string, Float64Array>): void {
    this.t++;
    const { lr, momentum: mu = 0, dampening: tau = 0, nesterov = false, weightDecay: wd = 0, decoupled = false } = this.o;
    for (const [name, theta] of params) {
      const grad = grads.get(name)!;
      let b = this.buf.get(name);
      if (!b) this.buf.set(name, (b = new Float64Array(theta.length)));
      for (let i = 0; i < theta.length; i++) {
        let g = grad[i];
        if (wd !== 0 && !decoupled) g += wd * theta[i];
        if (mu !== 0) {
          b[i] = this.t === 1 && !this.o.zeroStart ? g : mu * b[i] + (1 - tau) * g;
          g = nesterov ? g + mu * b[i] : b[i];
        }
        const decayed = wd !== 0 && decoupled ? theta[i] * (1 - lr * wd) : theta[i];
        theta[i] = decayed - lr * g;
      }
    }
  }
}

/**
 * torch.optim.Adam / AdamW: g ← g + λθ (Adam's weight decay) or θ ← θ(1 − γλ) (AdamW);
 * m ← β1·m + (1−β1)g; v ← β2·v + (1−β2)g²; m̂ = m/(1−β1ᵗ); v̂ = v/(1−β2ᵗ); θ ← θ − γ·m̂/(√v̂ + ε).
 */
class RefAdam implements RefOptimizer {
  private readonly m = new Map<string, Float64Array>();
  private readonly v = new Map<string, Float64Array>();
  private t = 0;
  constructor(private readonly o: RefAdamOptions) {}

  step(params: Map<string, Float64Array>, grads: Map<string, Float64Array>): void {
    this.t++;
    // PyTorch's defaults.
    const { lr = 1e-3, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weightDecay: wd = 0, decoupled = false } = this.o;
    for (const [name, theta] of params) {
      const grad = grads.get(name)!;
      if (!this.m.has(name)) { this.m.set(name, new Float64Array(theta.length)); this.v.set(name, new Float64Array(theta.length)); }
      const m = this.m.get(name)!; const v = this.v.get(name)!;
      for (let i = 0; i < theta.length; i++) {
        let g = grad[i];
        let p = theta[i];
        if (wd !== 0) {
          if (decoupled) p *= 1 - lr * wd;
          else g += wd * p;
        }
        m[i] = beta1 * m[i] + (1 - beta1) * g;
        const mHat = m[i] / (1 - beta1 ** this.t);
        // The K-BFGS authors' Adam: v from the bias-corrected first moment.
        const source = this.o.paperCompat ? mHat : g;
        v[i] = beta2 * v[i] + (1 - beta2) * source * source;
        const vHat = v[i] / (1 - beta2 ** this.t);
        theta[i] = p - lr * mHat / (Math.sqrt(vHat) + eps);
      }
    }
  }
}

/**
 * The K-BFGS papers' RMSprop (ALGORITHMS.md §7.2), written out independently: ĝ = g + τθ;
 * m ← ρm + (1−ρ)ĝ; v ← βv + (1−β)m²; θ ← θ − α·m/(√v + ε).
 */
class RefRmsprop implements RefOptimizer {
  private readonly m = new Map<string, Float64Array>();
  private readonly v = new Map<string, Float64Array>();
  /** warmStart: v starts at the squared gradient at the initial point (one pass over a one-batch set). */
  constructor(private readonly o: { lr: number; momentum: number; decay: number; eps: number; l2: number; warmStart?: boolean }) {}

  step(params: Map<string, Float64Array>, grads: Map<string, Float64Array>): void {
    const { lr, momentum: rho, decay: beta, eps, l2 } = this.o;
    for (const [name, theta] of params) {
      const grad = grads.get(name)!;
      if (!this.m.has(name)) { this.m.set(name, new Float64Array(theta.length)); this.v.set(name, this.o.warmStart ? grad.map((g) => g * g) : new Float64Array(theta.length)); }
      const m = this.m.get(name)!; const v = this.v.get(name)!;
      for (let i = 0; i < theta.length; i++) {
        m[i] = rho * m[i] + (1 - rho) * (grad[i] + l2 * theta[i]);
        v[i] = beta * v[i] + (1 - beta) * m[i] * m[i];
        theta[i] -= lr * m[i] / (Math.sqrt(v[i]) + eps);
      }
    }
  }
}

// ------------------------------------------------------------------------------------------

interface Trajectory {
  /** Loss at the parameters before step t, t = 1..STEPS. */
  losses: number[];
  /** Parameters after step t, t = 1..STEPS. */
  params: Map<string, Float64Array>[];
}

interface Case {
  name: string;
  optimizer: () => ElementwiseOptimizer;
  reference: () => RefOptimizer;
  /** A reference without the feature this case is about: the trainer must be clearly away from it. */
  without?: string;
}

const sgdCase = (name: string, o: SgdOptions & { lr: number }, without?: string): Case => ({
  name, without, optimizer: () => sgd(o),
  reference: () => new RefSgd({ lr: o.lr, momentum: o.momentum, dampening: o.dampening, nesterov: o.nesterov, weightDecay: o.weightDecay, decoupled: o.decoupledWeightDecay }),
});
const adamCase = (name: string, o: AdamOptions, without?: string): Case => ({
  name, without, optimizer: () => adam(o),
  reference: () => new RefAdam({
    lr: o.lr, beta1: o.beta1, beta2: o.beta2 ?? (o.paperCompat ? 0.9 : undefined), eps: o.eps ?? (o.paperCompat ? 1e-4 : undefined),
    weightDecay: o.weightDecay ?? (o.paperCompat ? 1e-5 : undefined), decoupled: o.decoupledWeightDecay, paperCompat: o.paperCompat,
  }),
});

const CASES: Case[] = [
  sgdCase('SGD', { lr: 0.1 }),
  sgdCase('SGD momentum 0.9', { lr: 0.1, momentum: 0.9 }, 'SGD'),
  sgdCase('SGD momentum 0.9, dampening 0.1', { lr: 0.1, momentum: 0.9, dampening: 0.1 }, 'SGD momentum 0.9'),
  sgdCase('SGD Nesterov momentum 0.9', { lr: 0.1, momentum: 0.9, nesterov: true }, 'SGD momentum 0.9'),
  // With momentum, so L2 and decoupled decay differ (plain SGD makes them the same update).
  sgdCase('SGD momentum 0.9, L2 weight decay 0.01', { lr: 0.1, momentum: 0.9, weightDecay: 0.01 }, 'SGD momentum 0.9'),
  sgdCase('SGD momentum 0.9, decoupled weight decay 0.01', { lr: 0.1, momentum: 0.9, weightDecay: 0.01, decoupledWeightDecay: true }, 'SGD momentum 0.9, L2 weight decay 0.01'),
  {
    name: 'SGD paper-compat (the papers\' SGD-m: m ← 0.9m + 0.1ĝ from 0, τ 1e-5)', optimizer: () => sgd({ lr: 0.1, paperCompat: true }),
    reference: () => new RefSgd({ lr: 0.1, momentum: 0.9, dampening: 0.9, weightDecay: 1e-5, zeroStart: true }), without: 'SGD momentum 0.9, dampening 0.1',
  },
  adamCase('Adam (defaults)', {}),
  adamCase('Adam lr 0.01', { lr: 0.01 }, 'Adam (defaults)'),
  // A large ε and other betas: ε goes on √v̂ after the bias correction, as in PyTorch.
  adamCase('Adam lr 0.01, betas (0.8, 0.99), eps 0.01', { lr: 0.01, beta1: 0.8, beta2: 0.99, eps: 0.01 }, 'Adam lr 0.01'),
  adamCase('Adam lr 0.01, L2 weight decay 0.1', { lr: 0.01, weightDecay: 0.1 }, 'Adam lr 0.01'),
  adamCase('AdamW lr 0.01, decoupled weight decay 0.1', { lr: 0.01, weightDecay: 0.1, decoupledWeightDecay: true }, 'Adam lr 0.01, L2 weight decay 0.1'),
  adamCase('Adam paper-compat (v from m̂², β2 0.9, ε 1e-4, τ 1e-5) lr 0.01', { lr: 0.01, paperCompat: true }, 'Adam lr 0.01'),
  {
    name: 'RMSprop (papers\' form) lr 0.01, L2 0.01, no warm start', optimizer: () => rmsprop({ lr: 0.01, weightDecay: 0.01, warmStart: false }),
    reference: () => new RefRmsprop({ lr: 0.01, momentum: 0.9, decay: 0.9, eps: 1e-4, l2: 0.01 }), without: 'Adam lr 0.01',
  },
  {
    name: 'RMSprop (papers\' form) lr 0.01, L2 0.01, v warm-started by one pass', optimizer: () => rmsprop({ lr: 0.01, weightDecay: 0.01 }),
    reference: () => new RefRmsprop({ lr: 0.01, momentum: 0.9, decay: 0.9, eps: 1e-4, l2: 0.01, warmStart: true }),
    without: 'RMSprop (papers\' form) lr 0.01, L2 0.01, no warm start',
  },
];

describe('first-order optimizers against a float64 PyTorch-rule reference', () => {
  const data = randomDataset(11, 8, 6, 4);
  const { x, labels } = datasetTensors(data);
  let backend: Backend;
  let model: onnx.ModelProto;
  const references = new Map<string, Promise<Trajectory>>();

  before(async () => {
    backend = await createBackend('cpu');
    model = fixtureModel('gemm_relu_ce');
  });

  /** The reference trajectory of a case (memoised: cases also serve as others' `without`). */
  function reference(name: string): Promise<Trajectory> {
    let r = references.get(name);
    if (!r) {
      const c = CASES.find((k) => k.name === name)!;
      r = (async () => {
        const opt = c.reference();
        const params = initializerValues(model);
        const out: Trajectory = { losses: [], params: [] };
        for (let t = 1; t <= STEPS; t++) {
          const g = await computeGradients(backend, withInitializers(model, params), { ...LOSS, inputs: { x }, target: labels! });
          expect([...g.gradients.keys()].sort()).to.deep.equal([...params.keys()].sort());
          out.losses.push(g.loss);
          opt.step(params, g.gradients);
          out.params.push(new Map([...params].map(([k, v]) => [k, v.slice()])));
        }
        return out;
      })();
      references.set(name, r);
    }
    return r;
  }

  async function train(c: Case): Promise<Trajectory> {
    const trainer = await Trainer.create(backend, model, { ...LOSS, optimizer: c.optimizer(), target: 'label', source: 'gemm_relu_ce' });
    try {
      const out: Trajectory = { losses: [], params: [] };
      const result = await trainer.fit(data, {
        batchSize: data.size, epochs: STEPS, shuffle: false,
        onStep: async (s) => {
          expect(s.skipped, `step ${s.step} skipped`).to.equal(false);
          out.losses.push(s.loss);
          const p = await trainer.parameters();
          out.params.push(new Map([...p].map(([k, v]) => [k, Float64Array.from(v.data as Float32Array)])));
        },
      });
      expect(result.steps).to.equal(STEPS);
      expect(result.skippedSteps).to.equal(0);
      return out;
    } finally {
      await trainer.dispose();
    }
  }

  for (const c of CASES) {
    it(`${c.name}: ${STEPS} steps match the reference (parameters and losses)`, async () => {
      const [got, want] = await Promise.all([train(c), reference(c.name)]);
      expect(got.params.length).to.equal(STEPS);
      for (let t = 0; t < STEPS; t++) {
        const loss = Math.abs(got.losses[t] - want.losses[t]) / Math.abs(want.losses[t]);
        expect(loss, `step ${t + 1} loss ${got.losses[t]} vs ${want.losses[t]}`).to.be.below(TOL);
        expect([...got.params[t].keys()].sort()).to.deep.equal([...want.params[t].keys()].sort());
        for (const [p, v] of want.params[t]) {
          expect(relError(got.params[t].get(p)!, v), `step ${t + 1} parameter ${p}`).to.be.below(TOL);
        }
      }
      // Not vacuous: the parameters moved well beyond the tolerance ...
      const initial = initializerValues(model);
      const moved = Math.max(...[...initial].map(([p, v]) => relError(got.params[STEPS - 1].get(p)!, v)));
      expect(moved, 'how far the parameters moved').to.be.above(100 * TOL);
      // ... and the option under test makes a difference the comparison would catch.
      if (c.without) {
        const other = await reference(c.without);
        const apart = Math.max(...[...other.params[STEPS - 1]].map(([p, v]) => relError(got.params[STEPS - 1].get(p)!, v)));
        expect(apart, `distance from '${c.without}'`).to.be.above(10 * TOL);
      }
    });
  }

  it('the loss goes down over the steps (SGD momentum, Adam lr 0.01)', async () => {
    for (const name of ['SGD momentum 0.9', 'Adam lr 0.01']) {
      const r = await reference(name);
      expect(r.losses[STEPS - 1], name).to.be.below(r.losses[0]);
    }
  });
});

describe('first-order optimizer options', () => {
  it('use PyTorch defaults', () => {
    expect(sgd().options).to.include({ lr: 0.01, momentum: 0, dampening: 0, nesterov: false, weightDecay: 0 });
    expect(adam().options).to.include({ lr: 0.001, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0 });
    // The K-BFGS authors' baselines: their code's ε 1e-4 and τ 1e-5.
    expect(adam({ paperCompat: true }).options).to.include({ beta2: 0.9, eps: 1e-4, weightDecay: 1e-5 });
    expect(rmsprop().options).to.include({ momentum: 0.9, decay: 0.9, eps: 1e-4, weightDecay: 1e-5, warmStart: true });
    expect(adam().name).to.equal('adam');
    expect(adam({ weightDecay: 0.01, decoupledWeightDecay: true }).name).to.equal('adamw');
    expect(sgd({ momentum: 0.9 }).stateNames).to.deep.equal(['momentum']);
    expect(sgd().stateNames).to.deep.equal([]);
    expect(adam().stateNames).to.deep.equal(['m', 'v']);
  });

  it('reject a negative or non-finite learning rate with a RangeError', () => {
    expect(() => sgd({ lr: -0.1 })).to.throw(RangeError, /lr/);
    expect(() => adam({ lr: -1e-3 })).to.throw(RangeError, /lr/);
    expect(() => sgd({ lr: NaN })).to.throw(RangeError, /lr/);
    expect(() => adam({ lr: Infinity })).to.throw(RangeError, /lr/);
  });

  it('reject Adam betas outside [0, 1) with a RangeError', () => {
    expect(() => adam({ beta1: 1 })).to.throw(RangeError, /beta/i);
    expect(() => adam({ beta2: 1 })).to.throw(RangeError, /beta/i);
    expect(() => adam({ beta1: 1.5 })).to.throw(RangeError, /beta/i);
    expect(() => adam({ beta2: -0.1 })).to.throw(RangeError, /beta/i);
    expect(() => adam({ beta1: 0, beta2: 0.5 })).not.to.throw();
  });

  it('reject Nesterov without momentum (or with dampening) with a RangeError', () => {
    expect(() => sgd({ nesterov: true })).to.throw(RangeError, /Nesterov/i);
    expect(() => sgd({ nesterov: true, momentum: 0 })).to.throw(RangeError, /Nesterov/i);
    expect(() => sgd({ nesterov: true, momentum: 0.9, dampening: 0.1 })).to.throw(RangeError, /Nesterov/i);
    expect(() => sgd({ nesterov: true, momentum: 0.9 })).not.to.throw();
  });

  it('reject negative momentum, eps and weight decay with a RangeError', () => {
    expect(() => sgd({ momentum: -0.9 })).to.throw(RangeError, /momentum/);
    expect(() => sgd({ weightDecay: -0.01 })).to.throw(RangeError, /weightDecay/);
    expect(() => adam({ weightDecay: -0.01 })).to.throw(RangeError, /weightDecay/);
    expect(() => adam({ eps: -1e-8 })).to.throw(RangeError, /eps/);
  });
});
