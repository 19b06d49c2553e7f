// Learning-rate schedules, shared by every optimizer (its `lrSchedule` option): the step α_t of
// update t (1-based) is the optimizer's α times the schedule's factor. Counted in updates, so a
// checkpoint (which keeps the update count) resumes the schedule where it was.
//   step:   α·γ^⌊(t − 1)/every⌋                      (PyTorch's StepLR; the authors' CNN runs: ×0.1 every 40 epochs)
//   cosine: α·(f + (1 − f)·(1 + cos(π·min(t − 1, steps)/steps))/2)   (CosineAnnealingLR down to f·α)

export type LrSchedule =
  | { kind: 'step'; every: number; gamma: number }
  | { kind: 'cosine'; steps: number; floor?: number };

/** Checks a schedule's numbers; throws a RangeError naming the bad one. */
export function checkLrSchedule(s: LrSchedule | undefined): void {
  if (s === undefined) return;
  const integer = (name: string, v: number) => { if (!Number.isInteger(v) || v < 1) throw new RangeError(`lrSchedule.${name} must be an integer ≥ 1, got ${v}`); };
  if (s.kind === 'step') {
    integer('every', s.every);
    if (!(s.gamma >= 0 && s.gamma <= 1)) throw new RangeError(`lrSchedule.gamma must lie in [0, 1], got ${s.gamma}`);
  } else if (s.kind === 'cosine') {
    integer('steps', s.steps);
    if (s.floor !== undefined && !(s.floor >= 0 && s.floor <= 1)) throw new RangeError(`lrSchedule.floor must lie in [0, 1], got ${s.floor}`);
  } else {
    throw new RangeError(`lrSchedule.kind must be 'step' or 'cosine', got '${(s as { kind: unknown }).kind}'`);
  }
}

/** The factor on α at update t (1-based). */
export function lrFactor(s: LrSchedule | undefined, t: number): number {
  if (s === undefined) return 1;
  const k = Math.max(0, t - 1);
  if (s.kind === 'step') return s.gamma ** Math.floor(k / s.every);
  const f = s.floor ?? 0;
  return f + ((1 - f) * (1 + Math.cos((Math.PI * Math.min(k, s.steps)) / s.steps))) / 2;
}

/** The `lrSchedule` option every optimizer takes. */
export type Scheduled = { lrSchedule?: LrSchedule };

/**
 * An optimizer's options and learningRate under schedule `s`: α_t = base(t)·factor(t) (base: the
 * constant lr by default); `s` is kept in the options (a checkpoint's header) only when given.
 */
export function withLrSchedule<T extends { lr: number }>(options: T, s: LrSchedule | undefined, base: (t: number) => number = () => options.lr): { options: T & Scheduled; learningRate: (t: number) => number } {
  checkLrSchedule(s);
  if (s === undefined) return { options, learningRate: base };
  return { options: { ...options, lrSchedule: s }, learningRate: (t) => base(t) * lrFactor(s, t) };
}
