// The recall–QPS chart (bench/plot.ts): well-formed SVG, one curve and one band
// per engine, every mark inside the plot area, a log QPS axis.

import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { AREA, logTicks, qpsDomain, recallDomain, recallQpsSvg, recallTicks, xScale, yScale } from '../bench/plot.js';
import type { PlotPoint, PlotSeries } from '../bench/plot.js';

/** Checks that `xml` is one well-formed element (tags balanced, attributes quoted, entities known); returns the start tags. */
function parseTags(xml: string): { name: string; attrs: Record<string, string> }[] {
  const tags: { name: string; attrs: Record<string, string> }[] = [];
  const stack: string[] = [];
  const token = /<(\/?)([A-Za-z][\w:-]*)((?:\s+[\w:-]+="[^"<]*")*)\s*(\/?)>|<|>/g;
  let roots = 0;
  let last = 0;
  for (let m = token.exec(xml); m; m = token.exec(xml)) {
    const text = xml.slice(last, m.index);
    expect(text.replace(/&(amp|lt|gt|quot|apos);/g, '')).not.toMatch(/[&<>]/);
    last = token.lastIndex;
    if (m[2] === undefined) throw new Error(`stray ${m[0]} at ${m.index}`);
    const [, close, name, attrText, selfClose] = m;
    if (close) {
      expect(stack.pop(), `closing </${name}>`).toBe(name);
      continue;
    }
    if (stack.length === 0) roots++;
    const attrs: Record<string, string> = {};
    for (const a of attrText.matchAll(/([\w:-]+)="([^"]*)"/g)) {
      expect(attrs[a[1]], `attribute ${a[1]} twice on <${name}>`).toBeUndefined();
      expect(a[2].replace(/&(amp|lt|gt|quot|apos);/g, '')).not.toMatch(/[&<>]/);
      attrs[a[1]] = a[2];
    }
    tags.push({ name, attrs });
    if (!selfClose) stack.push(name);
  }
  expect(xml.slice(last).trim()).toBe('');
  expect(stack).toEqual([]);
  expect(roots).toBe(1);
  return tags;
}

const inArea = (x: number, y: number) => x >= AREA.x0 - 1e-6 && x <= AREA.x1 + 1e-6 && y >= AREA.y0 - 1e-6 && y <= AREA.y1 + 1e-6;

function pathPoints(d: string): [number, number][] {
  return [...d.matchAll(/[ML](-?[\d.]+),(-?[\d.]+)/g)].map((m) => [Number(m[1]), Number(m[2])]);
}

/** A falling curve of `n` efs with a spread around each point. */
const seriesArb = (name: string) => fc.array(fc.record({
  recall: fc.double({ min: 0.3, max: 1, noNaN: true }),
  dr: fc.double({ min: 0, max: 0.05, noNaN: true }),
  qps: fc.double({ min: 50, max: 1e5, noNaN: true }),
  f: fc.double({ min: 1, max: 1.5, noNaN: true }),
}), { minLength: 1, maxLength: 11 }).map((raw): PlotSeries => ({
  name,
  points: raw.map((p): PlotPoint => ({
    recall: p.recall, qps: p.qps,
    recall_min: Math.max(0, p.recall - p.dr), recall_max: Math.min(1, p.recall + p.dr),
    qps_min: p.qps / p.f, qps_max: p.qps * p.f,
  })).sort((a, b) => a.recall - b.recall),
}));

describe('recallQpsSvg', () => {
  it('(the well-formedness check itself refuses broken documents)', () => {
    for (const bad of ['<svg><g></svg>', '<svg a="1" a="2"/>', '<svg>a & b</svg>', '<svg/><svg/>', '<svg x=1/>']) {
      expect(() => parseTags(bad), bad).toThrow();
    }
    expect(parseTags('<svg><g a="&amp;"><text>x &lt; y</text></g></svg>').map((t) => t.name)).toEqual(['svg', 'g', 'text']);
  });

  it('is well-formed SVG with the title, one curve and one band per engine, and every mark inside the plot area', () => {
    fc.assert(fc.property(seriesArb('vdb-wasm'), seriesArb('hnswlib <node> & co'), (a, b) => {
      const svg = recallQpsSvg({ title: 'words-100-cosine-100k "angular"', subtitle: 'seeds 1,2,3', series: [a, b] });
      const tags = parseTags(svg);
      expect(tags[0].name).toBe('svg');
      expect(svg).toContain('words-100-cosine-100k &quot;angular&quot;');
      const curves = tags.filter((t) => t.name === 'path');
      expect(curves.map((t) => t.attrs['data-engine'])).toEqual(['vdb-wasm', 'hnswlib &lt;node&gt; &amp; co']);
      expect(tags.filter((t) => t.name === 'polygon')).toHaveLength(2);
      curves.forEach((c, i) => {
        const pts = pathPoints(c.attrs.d);
        expect(pts).toHaveLength([a, b][i].points.length);
        for (const [x, y] of pts) expect(inArea(x, y), `${x},${y}`).toBe(true);
      });
      for (const poly of tags.filter((t) => t.name === 'polygon')) {
        for (const xy of poly.attrs.points.split(' ')) {
          const [x, y] = xy.split(',').map(Number);
          expect(inArea(x, y), xy).toBe(true);
        }
      }
      // Marks of the curves inside the plot area; the legend's (one per engine) above it.
      const circles = tags.filter((t) => t.name === 'circle');
      expect(circles.filter((c) => inArea(Number(c.attrs.cx), Number(c.attrs.cy)))).toHaveLength(a.points.length + b.points.length);
      expect(circles.filter((c) => Number(c.attrs.cy) < AREA.y0)).toHaveLength(2);
    }), { numRuns: 50 });
  });

  it('draws a higher QPS higher up and a higher recall further right', () => {
    const p = (recall: number, qps: number): PlotPoint => ({ recall, qps, recall_min: recall, recall_max: recall, qps_min: qps, qps_max: qps });
    const svg = recallQpsSvg({ title: 't', series: [{ name: 'e', points: [p(0.7, 20000), p(0.9, 5000), p(0.99, 1000)] }] });
    const pts = pathPoints(parseTags(svg).find((t) => t.name === 'path')!.attrs.d);
    expect(pts[0][0]).toBeLessThan(pts[1][0]);
    expect(pts[1][0]).toBeLessThan(pts[2][0]);
    expect(pts[0][1]).toBeLessThan(pts[1][1]);
    expect(pts[1][1]).toBeLessThan(pts[2][1]);
  });

  it('refuses what a log axis cannot show', () => {
    const p: PlotPoint = { recall: 0.9, qps: 0, recall_min: 0.9, recall_max: 0.9, qps_min: 0, qps_max: 0 };
    expect(() => recallQpsSvg({ title: 't', series: [{ name: 'e', points: [p] }] })).toThrow(/positive/);
    expect(() => recallQpsSvg({ title: 't', series: [{ name: 'e', points: [] }] })).toThrow(/nothing to plot/);
  });
});

describe('axes', () => {
  it('log scale: monotone, and equal QPS ratios give equal distances', () => {
    fc.assert(fc.property(fc.double({ min: 1, max: 1e4, noNaN: true }), fc.double({ min: 1.5, max: 1e3, noNaN: true }),
      fc.double({ min: 0, max: 1, noNaN: true }), fc.double({ min: 0, max: 1, noNaN: true }), (lo, span, u, v) => {
        const dom: [number, number] = [lo, lo * span];
        const y = yScale(dom);
        expect(y(dom[0])).toBeCloseTo(AREA.y1, 6);
        expect(y(dom[1])).toBeCloseTo(AREA.y0, 6);
        const a = lo * span ** Math.min(u, v), b = lo * span ** Math.max(u, v);
        expect(y(a)).toBeGreaterThanOrEqual(y(b) - 1e-9);
        expect(y(a) - y(a * 2)).toBeCloseTo(y(b) - y(b * 2), 6);
      }));
  });

  it('log ticks are increasing, inside the domain, at least 2 of them (the domain spans a factor ≥ 1.44)', () => {
    fc.assert(fc.property(fc.double({ min: 1, max: 1e5, noNaN: true }), fc.double({ min: 1.44, max: 1e4, noNaN: true }), (lo, span) => {
      const t = logTicks(lo, lo * span);
      expect(t.length).toBeGreaterThanOrEqual(2);
      for (let i = 0; i < t.length; i++) {
        expect(t[i]).toBeGreaterThanOrEqual(lo);
        expect(t[i]).toBeLessThanOrEqual(lo * span);
        if (i > 0) expect(t[i]).toBeGreaterThan(t[i - 1]);
      }
    }));
    expect(logTicks(800, 25000)).toEqual([1000, 2000, 5000, 10000, 20000]);
  });

  it('the recall axis runs from a multiple of 0.05 at or below the lowest band to 1, with ticks on it', () => {
    const s = (lo: number): PlotSeries => ({ name: 'e', points: [{ recall: lo + 0.01, qps: 10, recall_min: lo, recall_max: lo + 0.02, qps_min: 9, qps_max: 11 }] });
    expect(recallDomain([s(0.684)])).toEqual([0.65, 1]);
    expect(recallDomain([s(0.9), s(0.7)])).toEqual([0.7, 1]);
    expect(recallTicks(0.65, 1)).toEqual([0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 1]);
    expect(recallTicks(0, 1)).toEqual([0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1]);
    expect(recallTicks(0.9, 1)).toEqual([0.9, 0.91, 0.92, 0.93, 0.94, 0.95, 0.96, 0.97, 0.98, 0.99, 1]);
    const [qlo, qhi] = qpsDomain([s(0.7)]);
    expect(qlo).toBeLessThan(9);
    expect(qhi).toBeGreaterThan(11);
    expect(xScale([0.65, 1])(1)).toBeCloseTo(AREA.x1, 9);
  });
});
