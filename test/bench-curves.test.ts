// The ANN benchmark's summary of seeds (bench/curves.ts): medians, the median
// curve with its spread, and QPS at a recall target.

import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { median, medianCurve, qpsAtRecall, spread } from '../bench/curves.js';
import type { SweepPoint } from '../bench/curves.js';

const value = fc.double({ min: -1e6, max: 1e6, noNaN: true });

describe('median and spread', () => {
  it('takes the middle value, or the mean of the two middle values', () => {
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 3, 2])).toBe(2.5);
    expect(median([7])).toBe(7);
    expect(() => median([])).toThrow(/no values/);
  });

  it('has at most half the values on either side, ignores order and lies within min–max', () => {
    fc.assert(fc.property(fc.array(value, { minLength: 1, maxLength: 30 }), fc.nat(), (xs, shift) => {
      const m = median(xs);
      expect(xs.filter((x) => x < m).length).toBeLessThanOrEqual(xs.length / 2);
      expect(xs.filter((x) => x > m).length).toBeLessThanOrEqual(xs.length / 2);
      const rotated = xs.map((_, i) => xs[(i + shift) % xs.length]);
      expect(median(rotated)).toBe(m);
      const s = spread(xs);
      expect(s.median).toBe(m);
      expect(s.min).toBe(Math.min(...xs));
      expect(s.max).toBe(Math.max(...xs));
      expect(s.min).toBeLessThanOrEqual(m);
      expect(m).toBeLessThanOrEqual(s.max);
    }));
  });
});

const point = (ef: number) => fc.record({
  recall: fc.double({ min: 0, max: 1, noNaN: true }),
  qps: fc.double({ min: 1, max: 1e5, noNaN: true }),
  p50_ms: fc.double({ min: 0, max: 10, noNaN: true }),
  p99_ms: fc.double({ min: 0, max: 10, noNaN: true }),
}).map((p) => ({ ef, ...p }));
const EFS = [10, 16, 32, 64];
const sweepsArb = fc.array(fc.tuple(...EFS.map(point)), { minLength: 1, maxLength: 7 }) as fc.Arbitrary<SweepPoint[][]>;

describe('medianCurve', () => {
  it('gives per ef the median recall and QPS over seeds with their min and max', () => {
    fc.assert(fc.property(sweepsArb, (sweeps) => {
      const curve = medianCurve(sweeps);
      expect(curve.map((p) => p.ef)).toEqual(EFS);
      curve.forEach((p, i) => {
        const recalls = sweeps.map((s) => s[i].recall);
        const qps = sweeps.map((s) => s[i].qps);
        expect(p.recall).toBe(median(recalls));
        expect(p.qps).toBe(median(qps));
        expect(p.p50_ms).toBe(median(sweeps.map((s) => s[i].p50_ms)));
        expect([p.recall_min, p.recall_max]).toEqual([Math.min(...recalls), Math.max(...recalls)]);
        expect([p.qps_min, p.qps_max]).toEqual([Math.min(...qps), Math.max(...qps)]);
        expect(p.recall_min).toBeLessThanOrEqual(p.recall);
        expect(p.qps).toBeLessThanOrEqual(p.qps_max);
      });
    }));
  });

  it('takes the middle seed of three, not the mean, so one bad seed does not move it', () => {
    const s = (recall: number, qps: number): SweepPoint[] => [{ ef: 64, recall, qps, p50_ms: 1, p99_ms: 2 }];
    const [p] = medianCurve([s(0.878, 5000), s(0.857, 9000), s(0.884, 5100)]);
    expect(p).toMatchObject({ recall: 0.878, qps: 5100, recall_min: 0.857, recall_max: 0.884, qps_min: 5000, qps_max: 9000 });
  });

  it('refuses sweeps over different efs, and no sweeps at all', () => {
    const a: SweepPoint[] = [{ ef: 10, recall: 0.5, qps: 10, p50_ms: 1, p99_ms: 1 }];
    expect(() => medianCurve([a, [{ ...a[0], ef: 16 }]])).toThrow(/different efs/);
    expect(() => medianCurve([a, []])).toThrow(/different efs/);
    expect(() => medianCurve([])).toThrow(/no sweeps/);
  });
});

describe('qpsAtRecall', () => {
  const curve = [{ recall: 0.8, qps: 1000 }, { recall: 0.9, qps: 800 }, { recall: 0.96, qps: 500 }, { recall: 0.99, qps: 200 }];

  it('interpolates between the two points that bracket the target', () => {
    expect(qpsAtRecall(curve, 0.95)).toBeCloseTo(550, 9);
    expect(qpsAtRecall(curve, 0.85)).toBeCloseTo(900, 9);
  });

  it('takes a point that lies on the target, the fastest point for a target below the curve, and null above it', () => {
    expect(qpsAtRecall(curve, 0.96)).toBe(500);
    expect(qpsAtRecall(curve, 0.5)).toBe(1000);
    expect(qpsAtRecall(curve, 0.995)).toBeNull();
  });

  it('takes a faster point beyond the crossing (a noisy curve)', () => {
    expect(qpsAtRecall([{ recall: 0.9, qps: 800 }, { recall: 0.96, qps: 500 }, { recall: 0.97, qps: 700 }], 0.95)).toBe(700);
  });

  it('on any curve: null exactly when no point reaches the target, else at least every reaching point and within the QPS range; falls as the target rises', () => {
    const pts = fc.array(fc.record({ recall: fc.double({ min: 0, max: 1, noNaN: true }), qps: fc.double({ min: 1, max: 1e5, noNaN: true }) }), { minLength: 1, maxLength: 12 });
    fc.assert(fc.property(pts, fc.double({ min: 0, max: 1, noNaN: true }), fc.double({ min: 0, max: 1, noNaN: true }), (ps, t1, t2) => {
      const [lo, hi] = t1 <= t2 ? [t1, t2] : [t2, t1];
      const q = qpsAtRecall(ps, lo);
      const reaching = ps.filter((p) => p.recall >= lo);
      if (reaching.length === 0) { expect(q).toBeNull(); return; }
      expect(q).not.toBeNull();
      expect(q!).toBeGreaterThanOrEqual(Math.max(...reaching.map((p) => p.qps)));
      expect(q!).toBeLessThanOrEqual(Math.max(...ps.map((p) => p.qps)) * (1 + 1e-12));
      const q2 = qpsAtRecall(ps, hi);
      if (q2 !== null) expect(q2).toBeLessThanOrEqual(q! * (1 + 1e-12));
    }));
  });
});
