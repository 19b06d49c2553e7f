// Shared by the benchmarks: medians of timed runs after warm-up, and what machine ran them.
import { cpus } from 'node:os';

export const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** Seconds per call of `fn`: `runs` timed calls after `warmup` untimed ones. */
export async function timeRuns(fn: () => Promise<unknown>, runs: number, warmup = 3): Promise<number[]> {
  for (let i = 0; i < warmup; i++) await fn();
  const out: number[] = [];
  for (let i = 0; i < runs; i++) { const t = performance.now(); await fn(); out.push((performance.now() - t) / 1000); }
  return out;
}

export function machine() {
  return { cpus: cpus().length, model: cpus()[0]?.model, node: process.version };
}
