// A one-line progress display on a terminal: step, loss, samples/s, ETA.
import type { StepInfo } from '../train/trainer.js';

export class Progress {
  private lastDraw = 0;
  constructor(private readonly out: NodeJS.WriteStream) {}

  update(s: StepInfo, totalSteps: number, batchSize: number): void {
    const now = performance.now();
    if (now - this.lastDraw < 100 && s.step !== totalSteps) return;
    this.lastDraw = now;
    const rate = (s.step * batchSize) / Math.max(s.time, 1e-9);
    const eta = Number.isFinite(totalSteps) ? ((totalSteps - s.step) * s.time) / s.step : NaN;
    const width = 24;
    const done = Number.isFinite(totalSteps) ? Math.round((width * s.step) / totalSteps) : 0;
    const bar = Number.isFinite(totalSteps) ? `[${'#'.repeat(done)}${'.'.repeat(width - done)}] ` : '';
    this.out.write(`\r${bar}step ${s.step}${Number.isFinite(totalSteps) ? `/${totalSteps}` : ''}  loss ${s.loss.toFixed(4)}  ${rate.toFixed(0)} samples/s${Number.isFinite(eta) ? `  ETA ${eta.toFixed(0)} s` : ''}\x1b[K`);
  }

  clear(): void { this.out.write('\r\x1b[K'); }
}
