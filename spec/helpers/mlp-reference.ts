// Plain-TypeScript float64 MLP with hand-written forward/backward, used as an independent oracle
// (no ONNX, no autodiff). Weights use PyTorch's Linear layout: W is out×in row-major, h = a Wᵀ + b.
// Losses and reductions match graph-tools/losses.ts exactly:
//   mean: over all elements (cross-entropy: over samples); sum; per-sample-sum: sum / batch size.

export type Activation = 'relu' | 'tanh' | 'sigmoid' | 'linear';
export type RefLossKind = 'mse' | 'bce-with-logits' | 'cross-entropy';
export type RefReduction = 'mean' | 'sum' | 'per-sample-sum';
export interface RefLossSpec { kind: RefLossKind; reduction: RefReduction }

export interface RefLayer { W: Float64Array; b: Float64Array }

/** layers[l] maps sizes[l] → sizes[l+1]; activations[l] is applied to its pre-activation. */
export interface RefMlp {
  sizes: number[];
  layers: RefLayer[];
  activations: Activation[];
  loss: RefLossSpec;
}

/** Targets: M×out values for mse / bce-with-logits, M class ids for cross-entropy. */
export type RefTarget = ArrayLike<number>;

export interface ForwardBackward {
  loss: number;
  /** Network output (M×out), after the last activation. */
  output: Float64Array;
  /** ∂L/∂W (out×in) and ∂L/∂b per layer. */
  grads: RefLayer[];
  /**
   * Per layer: input activations a (rows×in), pre-activations h (rows×out), ∂L/∂h (rows×out); rows
   * = M for a dense layer, M·positions for a convolution's patches (spec/helpers/tiny-cnn.ts).
   */
  a: Float64Array[];
  h: Float64Array[];
  dh: Float64Array[];
  /** M, the batch's samples, when not X.length / sizes[0]. */
  samples?: number;
}

/** Deterministic PRNG (mulberry32), so the helpers depend on nothing else in the repository. */
export class RefRng {
  private state: number;
  constructor(seed: number) { this.state = seed >>> 0; }
  next(): number {
    let t = (this.state = (this.state + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  uniform(lo: number, hi: number): number { return lo + (hi - lo) * this.next(); }
  normal(): number {
    const u = Math.max(this.next(), 1e-300);
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * this.next());
  }
}

/** PyTorch-style init: W, b ~ U(−1/√in, 1/√in). */
export function makeRefMlp(sizes: number[], activations: Activation[], loss: RefLossSpec, seed = 1): RefMlp {
  if (activations.length !== sizes.length - 1) throw new Error('makeRefMlp: one activation per layer');
  const rng = new RefRng(seed);
  const layers: RefLayer[] = [];
  for (let l = 0; l + 1 < sizes.length; l++) {
    const nin = sizes[l], nout = sizes[l + 1], bound = 1 / Math.sqrt(nin);
    const W = new Float64Array(nout * nin), b = new Float64Array(nout);
    for (let i = 0; i < W.length; i++) W[i] = rng.uniform(-bound, bound);
    for (let i = 0; i < b.length; i++) b[i] = rng.uniform(-bound, bound);
    layers.push({ W, b });
  }
  return { sizes: [...sizes], layers, activations: [...activations], loss: { ...loss } };
}

export function cloneRefMlp(net: RefMlp): RefMlp {
  return {
    sizes: [...net.sizes],
    layers: net.layers.map((p) => ({ W: Float64Array.from(p.W), b: Float64Array.from(p.b) })),
    activations: [...net.activations],
    loss: { ...net.loss },
  };
}

function act(kind: Activation, x: number): number {
  switch (kind) {
    case 'relu': return x > 0 ? x : 0;
    case 'tanh': return Math.tanh(x);
    case 'sigmoid': return 1 / (1 + Math.exp(-x));
    case 'linear': return x;
  }
}

/** dφ/dh, from h (relu'(0) = 0, as PyTorch). */
function actGrad(kind: Activation, x: number): number {
  switch (kind) {
    case 'relu': return x > 0 ? 1 : 0;
    case 'tanh': { const t = Math.tanh(x); return 1 - t * t; }
    case 'sigmoid': { const s = 1 / (1 + Math.exp(-x)); return s * (1 - s); }
    case 'linear': return 1;
  }
}

/** Loss value and ∂L/∂output for the whole batch. */
export function lossAndGrad(spec: RefLossSpec, out: Float64Array, M: number, K: number, target: RefTarget): { loss: number; dOut: Float64Array } {
  const dOut = new Float64Array(M * K);
  let total = 0;
  let scale: number;
  if (spec.reduction === 'sum') scale = 1;
  else if (spec.reduction === 'per-sample-sum' || spec.kind === 'cross-entropy') scale = 1 / M;
  else scale = 1 / (M * K);
  if (spec.kind === 'cross-entropy') {
    if (target.length !== M) throw new Error('cross-entropy: one class id per sample');
    for (let i = 0; i < M; i++) {
      let mx = -Infinity;
      for (let k = 0; k < K; k++) mx = Math.max(mx, out[i * K + k]);
      let se = 0;
      for (let k = 0; k < K; k++) se += Math.exp(out[i * K + k] - mx);
      const lse = mx + Math.log(se), label = target[i];
      total += lse - out[i * K + label];
      for (let k = 0; k < K; k++) dOut[i * K + k] = (Math.exp(out[i * K + k] - lse) - (k === label ? 1 : 0)) * scale;
    }
  } else {
    if (target.length !== M * K) throw new Error(`${spec.kind}: target must be M×out`);
    for (let j = 0; j < M * K; j++) {
      const x = out[j], t = target[j];
      if (spec.kind === 'mse') {
        total += (x - t) * (x - t);
        dOut[j] = 2 * (x - t) * scale;
      } else {
        total += Math.max(x, 0) - x * t + Math.log1p(Math.exp(-Math.abs(x)));
        dOut[j] = (1 / (1 + Math.exp(-x)) - t) * scale;
      }
    }
  }
  return { loss: total * scale, dOut };
}

/** Forward and backward pass over a batch X (M×in, row-major). */
export function forwardBackward(net: RefMlp, X: ArrayLike<number>, target: RefTarget): ForwardBackward {
  const L = net.layers.length;
  const M = X.length / net.sizes[0];
  if (!Number.isInteger(M)) throw new Error('forwardBackward: X is not M×in');
  const a: Float64Array[] = [], h: Float64Array[] = [];
  let cur = Float64Array.from(X);
  for (let l = 0; l < L; l++) {
    const nin = net.sizes[l], nout = net.sizes[l + 1], { W, b } = net.layers[l];
    a.push(cur);
    const hl = new Float64Array(M * nout), next = new Float64Array(M * nout);
    for (let i = 0; i < M; i++) {
      for (let r = 0; r < nout; r++) {
        let s = b[r];
        for (let c = 0; c < nin; c++) s += W[r * nin + c] * cur[i * nin + c];
        hl[i * nout + r] = s;
        next[i * nout + r] = act(net.activations[l], s);
      }
    }
    h.push(hl);
    cur = next;
  }
  const K = net.sizes[L];
  const { loss, dOut } = lossAndGrad(net.loss, cur, M, K, target);
  const dh: Float64Array[] = new Array(L);
  const grads: RefLayer[] = new Array(L);
  let dNext = dOut; // ∂L/∂(output of layer l)
  for (let l = L - 1; l >= 0; l--) {
    const nin = net.sizes[l], nout = net.sizes[l + 1], { W } = net.layers[l];
    const dhl = new Float64Array(M * nout);
    for (let j = 0; j < M * nout; j++) dhl[j] = dNext[j] * actGrad(net.activations[l], h[l][j]);
    dh[l] = dhl;
    const gW = new Float64Array(nout * nin), gb = new Float64Array(nout);
    const da = new Float64Array(M * nin);
    for (let i = 0; i < M; i++) {
      for (let r = 0; r < nout; r++) {
        const d = dhl[i * nout + r];
        if (d === 0) continue;
        gb[r] += d;
        for (let c = 0; c < nin; c++) {
          gW[r * nin + c] += d * a[l][i * nin + c];
          da[i * nin + c] += d * W[r * nin + c];
        }
      }
    }
    grads[l] = { W: gW, b: gb };
    dNext = da;
  }
  return { loss, output: cur, grads, a, h, dh };
}

/** Loss only (for finite differences and evaluations). */
export function refLoss(net: RefMlp, X: ArrayLike<number>, target: RefTarget): number {
  return forwardBackward(net, X, target).loss;
}
