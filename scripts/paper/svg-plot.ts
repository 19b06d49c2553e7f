// A dependency-free SVG line chart for the paper reproductions: several named series, linear x,
// linear or log y, ticks, grid lines and a legend. Pure: data in, SVG text out.

export interface Point { x: number; y: number }
export interface Series { name: string; points: readonly Point[] }

export interface PlotOptions {
  xLabel: string;
  yLabel: string;
  title?: string;
  /** 'log': base-10 y axis; points with y ≤ 0 are dropped like non-finite ones. */
  yScale?: 'linear' | 'log';
  /** Stretch the x axis down to this value when the data start above it (0 for time and epochs). */
  xMin?: number;
  /** Whole picture in pixels (default 800 × 450). */
  width?: number;
  height?: number;
}

/** Space around the plot area, in pixels; the legend sits in the right margin. */
export const PLOT_MARGIN = { left: 72, right: 190, top: 36, bottom: 52 } as const;

/** Tableau 10: ten colours that stay distinct on screen and in print. */
export const PALETTE = ['#4e79a7', '#f28e2b', '#e15759', '#76b7b2', '#59a14f', '#edc948', '#b07aa1', '#ff9da7', '#9c755f', '#bab0ac'] as const;

/** Renders one line chart; throws when no series has a plottable point. */
export function linePlot(series: readonly Series[], options: PlotOptions): string {
  const { width = 800, height = 450, yScale = 'linear' } = options;
  const m = PLOT_MARGIN;
  const plotW = width - m.left - m.right;
  const plotH = height - m.top - m.bottom;
  if (!(plotW > 0 && plotH > 0)) throw new RangeError(`a ${width}×${height} picture leaves no room for the plot area`);
  if (series.length === 0) throw new RangeError('linePlot needs at least one series');

  const log = yScale === 'log';
  const usable = (p: Point) => Number.isFinite(p.x) && Number.isFinite(p.y) && (!log || p.y > 0);
  const kept = series.flatMap((s) => s.points.filter(usable));
  if (kept.length === 0) throw new RangeError(`no finite${log ? ', positive' : ''} points to plot`);

  const xDomain = padded(extent([...kept.map((p) => p.x), ...(options.xMin !== undefined ? [options.xMin] : [])]));
  // On a log axis everything below works in log10(y); only the tick labels go back to y.
  const yDomain = padded(extent(kept.map((p) => (log ? Math.log10(p.y) : p.y))));
  const px = (x: number) => m.left + ((x - xDomain[0]) / (xDomain[1] - xDomain[0])) * plotW;
  const py = (v: number) => m.top + plotH - ((v - yDomain[0]) / (yDomain[1] - yDomain[0])) * plotH;

  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`);
  out.push(`<rect x="0" y="0" width="${width}" height="${height}" fill="white"/>`);
  if (options.title) out.push(`<text x="${fmt(m.left + plotW / 2)}" y="${fmt(m.top / 2 + 5)}" text-anchor="middle" font-size="14">${escapeXml(options.title)}</text>`);

  for (const t of linearTicks(xDomain)) {
    const x = fmt(px(t.value));
    out.push(`<line x1="${x}" y1="${m.top}" x2="${x}" y2="${m.top + plotH}" stroke="#e5e5e5"/>`);
    out.push(`<text class="x-tick" x="${x}" y="${m.top + plotH + 16}" text-anchor="middle">${escapeXml(t.label)}</text>`);
  }
  for (const t of log ? logTicks(yDomain) : linearTicks(yDomain)) {
    const y = fmt(py(t.value));
    out.push(`<line x1="${m.left}" y1="${y}" x2="${m.left + plotW}" y2="${y}" stroke="#e5e5e5"/>`);
    out.push(`<text class="y-tick" x="${m.left - 6}" y="${y}" text-anchor="end" dominant-baseline="middle">${escapeXml(t.label)}</text>`);
  }
  out.push(`<rect x="${m.left}" y="${m.top}" width="${plotW}" height="${plotH}" fill="none" stroke="#333"/>`);
  out.push(`<text x="${fmt(m.left + plotW / 2)}" y="${height - 12}" text-anchor="middle">${escapeXml(options.xLabel)}</text>`);
  const yMid = fmt(m.top + plotH / 2);
  out.push(`<text x="16" y="${yMid}" text-anchor="middle" transform="rotate(-90 16 ${yMid})">${escapeXml(options.yLabel)}</text>`);

  const legend: string[] = [];
  series.forEach((s, i) => {
    const colour = PALETTE[i % PALETTE.length];
    // One path per series; a dropped point starts a new subpath so no line bridges the gap.
    const d: string[] = [];
    let pen = 'M';
    for (const p of s.points) {
      if (!usable(p)) { pen = 'M'; continue; }
      d.push(`${pen}${fmt(px(p.x))},${fmt(py(log ? Math.log10(p.y) : p.y))}`);
      pen = 'L';
    }
    out.push(`<path class="series" d="${d.join(' ')}" fill="none" stroke="${colour}" stroke-width="1.5" stroke-linejoin="round"><title>${escapeXml(s.name)}</title></path>`);
    const ly = m.top + 10 + i * 18;
    const lx = m.left + plotW + 14;
    legend.push(`<line x1="${lx}" y1="${ly}" x2="${lx + 22}" y2="${ly}" stroke="${colour}" stroke-width="3"/>`);
    legend.push(`<text x="${lx + 28}" y="${ly}" dominant-baseline="middle">${escapeXml(s.name)}</text>`);
  });
  out.push('<g class="legend">', ...legend, '</g>');
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}

export function escapeXml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;' })[c]!);
}

function extent(values: number[]): [number, number] {
  let lo = Infinity; let hi = -Infinity;
  for (const v of values) { if (v < lo) lo = v; if (v > hi) hi = v; }
  return [lo, hi];
}

/** A single value gets a unit-wide domain around it, so the mapping never divides by zero. */
function padded([lo, hi]: [number, number]): [number, number] {
  return lo === hi ? [lo - 0.5, hi + 0.5] : [lo, hi];
}

interface Tick { value: number; label: string }

/** Multiples of 1, 2 or 5 × 10^k, about six inside the domain. */
function linearTicks([lo, hi]: [number, number]): Tick[] {
  const raw = (hi - lo) / 6;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((f) => f * mag).find((s) => s >= raw)!;
  const decimals = Math.max(0, -Math.floor(Math.log10(step) + 1e-9));
  const ticks: Tick[] = [];
  for (let k = Math.ceil(lo / step - 1e-9); k * step <= hi + step * 1e-9; k++) {
    const value = k * step;
    ticks.push({ value, label: label(value, decimals) });
  }
  return ticks;
}

/** Ticks in log10 units: powers of ten, filled in with 2 and 5 (then every digit) when a domain holds too few. */
function logTicks([lo, hi]: [number, number]): Tick[] {
  for (const mantissas of [[1], [1, 2, 5], [1, 2, 3, 4, 5, 6, 7, 8, 9]]) {
    const ticks: Tick[] = [];
    for (let k = Math.floor(lo); k <= Math.ceil(hi); k++) {
      for (const mt of mantissas) {
        const v = Math.log10(mt) + k;
        if (v >= lo - 1e-9 && v <= hi + 1e-9) ticks.push({ value: v, label: label(Number(`${mt}e${k}`), Math.max(0, -k)) });
      }
    }
    if (ticks.length >= 4 || mantissas.length === 9) return ticks;
  }
  return [];
}

/** Plain decimals for everyday magnitudes, 1e-5-style beyond them. */
function label(v: number, decimals: number): string {
  if (v === 0) return v.toFixed(decimals);
  const a = Math.abs(v);
  if (a >= 1e6 || a < 1e-3) return v.toExponential().replace('e+', 'e');
  return v.toFixed(Math.min(decimals, 20));
}

/** Two decimals are finer than any screen; shorter numbers keep the files small. */
function fmt(v: number): string {
  return String(Math.round(v * 100) / 100);
}
