// The paper scripts' SVG line chart, checked by parsing its output with a small XML reader written
// here and recomputing pixel positions from the documented margins (a closed form).
import { expect } from 'chai';
import { linePlot, PALETTE, PLOT_MARGIN, type PlotOptions, type Series } from '../../../scripts/paper/svg-plot.js';

interface Element { name: string; attrs: Record<string, string>; children: Element[]; text: string }

const unescape = (s: string) => s.replace(/&(lt|gt|quot|apos|amp);/g, (_, e: string) => ({ lt: '<', gt: '>', quot: '"', apos: "'", amp: '&' })[e]!);

/** Enough of XML for our own output: tags, attributes, text; throws on anything unbalanced. */
function parseXml(xml: string): Element {
  const root: Element = { name: '#document', attrs: {}, children: [], text: '' };
  const stack = [root];
  const token = /<(\/?)([A-Za-z][\w:-]*)((?:\s+[\w:-]+="[^"<]*")*)\s*(\/?)>|([^<]+)/gy;
  let match: RegExpExecArray | null;
  let at = 0;
  while (at < xml.length) {
    token.lastIndex = at;
    match = token.exec(xml);
    if (!match) throw new Error(`malformed XML at ${at}: ${xml.slice(at, at + 40)}`);
    at = token.lastIndex;
    const [, close, name, attrText, selfClose, text] = match;
    const top = stack[stack.length - 1];
    if (text !== undefined) {
      if (/[<>]/.test(text) || /&(?!(lt|gt|quot|apos|amp);)/.test(text)) throw new Error(`unescaped text: ${text}`);
      top.text += unescape(text);
    } else if (close) {
      if (top.name !== name) throw new Error(`</${name}> closes <${top.name}>`);
      stack.pop();
    } else {
      const attrs: Record<string, string> = {};
      for (const [, k, v] of attrText.matchAll(/([\w:-]+)="([^"]*)"/g)) {
        if (k in attrs) throw new Error(`duplicate attribute ${k}`);
        attrs[k] = unescape(v);
      }
      const el: Element = { name, attrs, children: [], text: '' };
      top.children.push(el);
      if (!selfClose) stack.push(el);
    }
  }
  if (stack.length !== 1) throw new Error(`unclosed <${stack[stack.length - 1].name}>`);
  if (root.text.trim() !== '') throw new Error('text outside the root element');
  return root;
}

function all(el: Element, pred: (e: Element) => boolean): Element[] {
  return [...(pred(el) ? [el] : []), ...el.children.flatMap((c) => all(c, pred))];
}

/** A path's subpaths as lists of [x, y]. */
function subpaths(d: string): Array<Array<[number, number]>> {
  const out: Array<Array<[number, number]>> = [];
  for (const [, cmd, x, y] of d.matchAll(/([ML])(-?[\d.]+),(-?[\d.]+)/g)) {
    if (cmd === 'M') out.push([]);
    out[out.length - 1].push([Number(x), Number(y)]);
  }
  return out;
}

const OPTIONS: PlotOptions = { xLabel: 'seconds', yLabel: 'training loss', title: 'loss vs time' };
const W = 800; const H = 450;
const plotW = W - PLOT_MARGIN.left - PLOT_MARGIN.right;
const plotH = H - PLOT_MARGIN.top - PLOT_MARGIN.bottom;

function render(series: Series[], options: Partial<PlotOptions> = {}) {
  const doc = parseXml(linePlot(series, { ...OPTIONS, ...options }));
  const paths = all(doc, (e) => e.name === 'path' && e.attrs.class === 'series');
  return { doc, paths };
}

describe('scripts/paper/svg-plot', () => {
  const two: Series[] = [
    { name: 'a', points: [{ x: 0, y: 0 }, { x: 10, y: 100 }] },
    { name: 'b', points: [{ x: 5, y: 50 }, { x: 7.5, y: 25 }] },
  ];

  it('is well-formed XML with one <svg> root of the requested size', () => {
    const { doc } = render(two);
    expect(doc.children).to.have.length(1);
    const svg = doc.children[0];
    expect(svg.name).to.equal('svg');
    expect(svg.attrs.xmlns).to.equal('http://www.w3.org/2000/svg');
    expect([svg.attrs.width, svg.attrs.height]).to.deep.equal([String(W), String(H)]);
    const texts = all(doc, (e) => e.name === 'text').map((e) => e.text);
    expect(texts).to.include.members(['seconds', 'training loss', 'loss vs time']);
  });

  it('draws one path per series, each in its own colour', () => {
    const series: Series[] = Array.from({ length: 7 }, (_, i) => ({ name: `s${i}`, points: [{ x: i, y: i * i }, { x: i + 1, y: 1 }] }));
    const { paths } = render(series);
    expect(paths).to.have.length(7);
    const colours = paths.map((p) => p.attrs.stroke);
    expect(new Set(colours).size).to.equal(7);
    expect(colours).to.deep.equal(PALETTE.slice(0, 7));
  });

  it('maps points to pixels through the margins (linear axes, domain = data extent)', () => {
    const { paths } = render(two);
    const x = (v: number) => PLOT_MARGIN.left + (v / 10) * plotW;
    const y = (v: number) => PLOT_MARGIN.top + plotH - (v / 100) * plotH;
    const expected = [[[x(0), y(0)], [x(10), y(100)]], [[x(5), y(50)], [x(7.5), y(25)]]];
    paths.forEach((p, i) => {
      const got = subpaths(p.attrs.d);
      expect(got).to.have.length(1);
      got[0].forEach(([gx, gy], j) => {
        expect(gx).to.be.closeTo(expected[i][j][0], 0.006);
        expect(gy).to.be.closeTo(expected[i][j][1], 0.006);
      });
    });
    // Corners of the data are the corners of the plot area.
    expect(subpaths(paths[0].attrs.d)[0][0]).to.deep.equal([PLOT_MARGIN.left, PLOT_MARGIN.top + plotH]);
    expect(subpaths(paths[0].attrs.d)[0][1]).to.deep.equal([PLOT_MARGIN.left + plotW, PLOT_MARGIN.top]);
  });

  it('writes the series names, XML-escaped, as the legend', () => {
    const names = ['kbfgs (lr 0.3, λ 0.3)', 'a<b & "c" \'d\'', 'adam'];
    const xml = linePlot(names.map((name, i) => ({ name, points: [{ x: i, y: 1 }, { x: i + 1, y: 2 }] })), OPTIONS);
    expect(xml).to.include('a&lt;b &amp; &quot;c&quot; &apos;d&apos;');
    const legend = all(parseXml(xml), (e) => e.name === 'g' && e.attrs.class === 'legend');
    expect(legend).to.have.length(1);
    expect(all(legend[0], (e) => e.name === 'text').map((e) => e.text)).to.deep.equal(names);
  });

  it('puts readable round numbers on the ticks', () => {
    const { doc } = render([{ name: 'a', points: [{ x: 0, y: 0 }, { x: 1, y: 250 }] }]);
    const labels = (cls: string) => all(doc, (e) => e.attrs.class === cls).map((e) => e.text);
    expect(labels('x-tick')).to.deep.equal(['0.0', '0.2', '0.4', '0.6', '0.8', '1.0']);
    expect(labels('y-tick')).to.deep.equal(['0', '50', '100', '150', '200', '250']);
  });

  it('stretches the x axis down to xMin, and ignores an xMin above the data', () => {
    const { doc, paths } = render([{ name: 'a', points: [{ x: 2, y: 1 }, { x: 10, y: 2 }] }], { xMin: 0 });
    const [[p0, p1]] = subpaths(paths[0].attrs.d);
    expect(p0[0]).to.be.closeTo(PLOT_MARGIN.left + 0.2 * plotW, 0.006);
    expect(p1[0]).to.be.closeTo(PLOT_MARGIN.left + plotW, 0.006);
    expect(all(doc, (e) => e.attrs.class === 'x-tick').map((e) => e.text)).to.deep.equal(['0', '2', '4', '6', '8', '10']);
    const [[q0]] = subpaths(render([{ name: 'a', points: [{ x: 2, y: 1 }, { x: 10, y: 2 }] }], { xMin: 5 }).paths[0].attrs.d);
    expect(q0[0]).to.equal(PLOT_MARGIN.left);
  });

  it('on a log y axis, equal ratios are equal distances and ticks are 1-2-5 × 10^k', () => {
    const { doc, paths } = render([{ name: 'a', points: [{ x: 0, y: 1 }, { x: 1, y: 10 }, { x: 2, y: 100 }] }], { yScale: 'log' });
    const [[p0, p1, p2]] = subpaths(paths[0].attrs.d);
    expect(p0[1]).to.be.closeTo(PLOT_MARGIN.top + plotH, 0.006);
    expect(p1[1]).to.be.closeTo(PLOT_MARGIN.top + plotH / 2, 0.006);
    expect(p2[1]).to.be.closeTo(PLOT_MARGIN.top, 0.006);
    const ticks = all(doc, (e) => e.attrs.class === 'y-tick');
    expect(ticks.map((e) => e.text)).to.deep.equal(['1', '2', '5', '10', '20', '50', '100']);
    // The tick '20' sits at log10(20) of the way up two decades.
    const at20 = Number(all(doc, (e) => e.name === 'line' && e.attrs.y1 === e.attrs.y2 && e.attrs.stroke === '#e5e5e5')[4].attrs.y1);
    expect(at20).to.be.closeTo(PLOT_MARGIN.top + plotH - (Math.log10(20) / 2) * plotH, 0.006);
  });

  it('labels tiny and huge log ticks in exponent form', () => {
    const { doc } = render([{ name: 'a', points: [{ x: 0, y: 1e-6 }, { x: 1, y: 1e-2 }] }], { yScale: 'log' });
    expect(all(doc, (e) => e.attrs.class === 'y-tick').map((e) => e.text)).to.deep.equal(['1e-6', '1e-5', '1e-4', '0.001', '0.01']);
    const huge = render([{ name: 'a', points: [{ x: 0, y: 1e4 }, { x: 1, y: 1e8 }] }], { yScale: 'log' }).doc;
    expect(all(huge, (e) => e.attrs.class === 'y-tick').map((e) => e.text)).to.deep.equal(['10000', '100000', '1e6', '1e7', '1e8']);
  });

  it('breaks a series at non-finite points and, on a log axis, at y ≤ 0', () => {
    const { paths } = render([{ name: 'a', points: [{ x: 0, y: 3 }, { x: 1, y: 2 }, { x: 2, y: NaN }, { x: 3, y: 1 }, { x: 4, y: 0 }, { x: 5, y: 0.5 }] }], { yScale: 'log' });
    expect(subpaths(paths[0].attrs.d).map((s) => s.length)).to.deep.equal([2, 1, 1]);
  });

  it('handles a single point (degenerate domain) without dividing by zero', () => {
    const { paths } = render([{ name: 'a', points: [{ x: 2, y: 7 }] }]);
    const [[[x, y]]] = subpaths(paths[0].attrs.d);
    expect(x).to.be.closeTo(PLOT_MARGIN.left + plotW / 2, 0.006);
    expect(y).to.be.closeTo(PLOT_MARGIN.top + plotH / 2, 0.006);
  });

  it('keeps a series with no usable points in the legend, with an empty path', () => {
    const { doc, paths } = render([{ name: 'ok', points: [{ x: 0, y: 1 }, { x: 1, y: 2 }] }, { name: 'diverged', points: [{ x: 0, y: NaN }] }]);
    expect(paths).to.have.length(2);
    expect(paths[1].attrs.d).to.equal('');
    expect(all(doc, (e) => e.name === 'g').flatMap((g) => all(g, (e) => e.name === 'text')).map((e) => e.text)).to.deep.equal(['ok', 'diverged']);
  });

  it('throws when there is nothing to plot', () => {
    expect(() => linePlot([], OPTIONS)).to.throw(RangeError, /at least one series/);
    expect(() => linePlot([{ name: 'a', points: [] }], OPTIONS)).to.throw(RangeError, /no finite/);
    expect(() => linePlot([{ name: 'a', points: [{ x: NaN, y: 1 }, { x: 1, y: NaN }, { x: Infinity, y: 2 }] }], OPTIONS)).to.throw(RangeError, /no finite/);
    expect(() => linePlot([{ name: 'a', points: [{ x: 0, y: 0 }, { x: 1, y: -1 }] }], { ...OPTIONS, yScale: 'log' })).to.throw(RangeError, /positive/);
    expect(() => linePlot([{ name: 'a', points: [{ x: 0, y: 1 }] }], { ...OPTIONS, width: 100 })).to.throw(RangeError, /no room/);
  });
});
