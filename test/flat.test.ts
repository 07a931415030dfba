// searchExact (the flat scan) against a plain float64 JavaScript brute force:
// the same slots in the same order — by (distance, slot) — and the same
// distances, for l2 (squared), ip (−dot) and cosine (1 − cos), with ties,
// deletions and AllowSet filters.

import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { AllowSet, WasmIndex } from '../ts/index.js';
import type { Metric, SearchResult } from '../ts/index.js';
import { bruteForce, dist64, expectOrdered, mulberry32, randInt } from './helpers.js';

const z = (x: number) => x + 0; // folds −0 into +0

/**
 * Integer-valued data small enough that float32 arithmetic is exact for l2 and ip:
 * distances are exact integers, so the expected order (including ties) is exact.
 */
function integerData(n: number, dim: number, seed: number, dupRate: number, nonZero: boolean): number[][] {
  const r = mulberry32(seed);
  const rows: number[][] = [];
  for (let i = 0; i < n; i++) {
    if (i > 0 && r() < dupRate) {
      rows.push(rows[randInt(r, i)].slice()); // exact duplicate → a tie
      continue;
    }
    let v: number[];
    do v = Array.from({ length: dim }, () => randInt(r, 17) - 8);
    while (nonZero && v.every((x) => x === 0));
    rows.push(v);
  }
  return rows;
}

function build(metric: Metric, dim: number, rows: ArrayLike<number>[], seed = 1): WasmIndex {
  const index = WasmIndex.create({ dim, metric, seed, m: 8, efConstruction: 32 });
  const slots = index.addBatch(rows as number[][]);
  // Slots of a fresh index are handed out in order.
  expect(Array.from(slots)).toEqual(rows.map((_, i) => i));
  return index;
}

function expectExactMatch(res: SearchResult, metric: Metric, points: Map<number, ArrayLike<number>>, q: ArrayLike<number>, k: number, keep?: (s: number) => boolean): void {
  const ref = bruteForce(metric, points, q, k, keep);
  expect(Array.from(res.ids)).toEqual(ref.map((h) => h.slot));
  expect(Array.from(res.distances, z)).toEqual(ref.map((h) => z(h.d)));
}

/**
 * For float data (cosine, or non-integer values) the index computes in float32:
 * distances must match within a tolerance relative to the magnitudes, the order
 * must be by (distance, slot) as computed, every slot must be valid, and wherever
 * the true distance is separated from its neighbours by more than the tolerance
 * the slot must be exactly the reference one.
 */
function expectTolerantMatch(res: SearchResult, metric: Metric, points: Map<number, ArrayLike<number>>, q: ArrayLike<number>, k: number, keep: (s: number) => boolean = () => true): void {
  const all = bruteForce(metric, points, q, points.size, keep);
  const n = Math.min(k, all.length);
  expect(res.ids.length).toBe(n);
  expectOrdered(res, true);
  let qn = 0;
  for (let i = 0; i < q.length; i++) qn += q[i] * q[i];
  let vmax = 0;
  for (const v of points.values()) {
    let s = 0;
    for (let i = 0; i < v.length; i++) s += v[i] * v[i];
    vmax = Math.max(vmax, s);
  }
  const dmax = all.reduce((m, h) => Math.max(m, Math.abs(h.d)), 0);
  const tol = metric === 'cosine' ? 1e-5 : 1e-5 * (dmax + Math.sqrt(qn * vmax)) + 1e-30;
  const trueOf = new Map(all.map((h) => [h.slot, h.d]));
  for (let i = 0; i < n; i++) {
    const s = res.ids[i];
    expect(trueOf.has(s), `slot ${s} is not a valid candidate`).toBe(true);
    expect(Math.abs(res.distances[i] - trueOf.get(s)!)).toBeLessThanOrEqual(tol);
    expect(Math.abs(res.distances[i] - all[i].d)).toBeLessThanOrEqual(tol);
    const isolated = (i === 0 || all[i].d - all[i - 1].d > 2 * tol) && (i + 1 >= all.length || all[i + 1].d - all[i].d > 2 * tol);
    if (isolated) expect(s).toBe(all[i].slot);
  }
  // Nothing clearly closer than the last result was left out.
  if (n > 0) {
    const last = res.distances[n - 1];
    const returned = new Set(res.ids);
    for (const h of all) if (h.d < last - 2 * tol) expect(returned.has(h.slot), `slot ${h.slot} (d=${h.d}) missing`).toBe(true);
  }
}

const pointMap = (rows: ArrayLike<number>[]) => new Map(rows.map((v, i) => [i, v] as [number, ArrayLike<number>]));

describe('searchExact vs brute force', () => {
  for (const metric of ['l2', 'ip'] as const) {
    it(`${metric}: exact ids and distances on integer data with duplicates and deletes (property)`, () => {
      fc.assert(
        fc.property(
          fc.record({
            n: fc.integer({ min: 1, max: 80 }),
            dim: fc.integer({ min: 1, max: 24 }),
            seed: fc.integer(),
            dupRate: fc.constantFrom(0, 0.2, 0.6),
            k: fc.integer({ min: 1, max: 100 }),
            delRate: fc.constantFrom(0, 0.1, 0.5),
          }),
          ({ n, dim, seed, dupRate, k, delRate }) => {
            const rows = integerData(n, dim, seed, dupRate, false);
            const index = build(metric, dim, rows);
            const points = pointMap(rows);
            const r = mulberry32(seed ^ 0x5bd1e995);
            for (let s = 0; s < n; s++) {
              if (r() < delRate) {
                index.remove(s);
                points.delete(s);
              }
            }
            expect(index.size).toBe(points.size);
            const queries = integerData(5, dim, seed + 1, 0, false);
            queries.push(rows[randInt(r, n)]); // a query equal to a stored vector
            for (const q of queries) {
              const res = index.searchExact(q, k);
              expectExactMatch(res, metric, points, q, k);
              expectOrdered(res, true);
            }
          },
        ),
        { seed: 201, numRuns: 120 },
      );
    });
  }

  it('ties are broken by the lower slot (many exact duplicates)', () => {
    for (const metric of ['l2', 'ip', 'cosine'] as const) {
      const base = [
        [1, 2, 3, 4, 5],
        [5, 4, 3, 2, 1],
        [1, -1, 1, -1, 1],
      ];
      const rows: number[][] = [];
      for (let i = 0; i < 30; i++) rows.push(base[i % 3].slice());
      const index = build(metric, 5, rows);
      const res = index.searchExact([1, 2, 3, 4, 5], 12);
      // Group 0 are slots 0, 3, 6, ... all at the same distance: the first ten of
      // them come first (for l2 and cosine they are the nearest).
      if (metric !== 'ip') {
        expect(Array.from(res.ids.subarray(0, 10))).toEqual([0, 3, 6, 9, 12, 15, 18, 21, 24, 27]);
        expect(new Set(Array.from(res.distances.subarray(0, 10))).size).toBe(1);
      }
      expectOrdered(res, true);
      expectTolerantMatch(res, metric, pointMap(rows), [1, 2, 3, 4, 5], 12);
    }
  });

  it('cosine: scaled copies (×2, ×0.5, ×4) are exact ties broken by slot (property)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 33 }), fc.integer(), fc.integer({ min: 1, max: 40 }), (dim, seed, k) => {
        const r = mulberry32(seed);
        const rows: number[][] = [];
        for (let i = 0; i < 40; i++) {
          if (i > 0 && r() < 0.5) {
            const scale = [2, 0.5, 4, 1][randInt(r, 4)];
            rows.push(rows[randInt(r, i)].map((x) => x * scale));
          } else {
            let v: number[];
            do v = Array.from({ length: dim }, () => (r() * 2 - 1) * 10);
            while (v.every((x) => x === 0));
            rows.push(v);
          }
        }
        const index = build('cosine', dim, rows);
        const q = Array.from({ length: dim }, () => r() * 2 - 1);
        const res = index.searchExact(q, k);
        expectTolerantMatch(res, 'cosine', pointMap(rows), q, k);
        // Distances are 1 − cos in [0, 2].
        for (const d of res.distances) {
          expect(d).toBeGreaterThanOrEqual(-1e-6);
          expect(d).toBeLessThanOrEqual(2 + 1e-6);
        }
      }),
      { seed: 202, numRuns: 100 },
    );
  });

  for (const metric of ['l2', 'ip', 'cosine'] as const) {
    it(`${metric}: float data matches a float64 brute force (property)`, () => {
      fc.assert(
        fc.property(
          fc.record({
            n: fc.integer({ min: 1, max: 120 }),
            dim: fc.integer({ min: 1, max: 40 }),
            seed: fc.integer(),
            k: fc.integer({ min: 1, max: 130 }),
            scale: fc.constantFrom(1e-3, 1, 1e3),
          }),
          ({ n, dim, seed, k, scale }) => {
            const r = mulberry32(seed);
            const rows = Array.from({ length: n }, () => Float32Array.from({ length: dim }, () => (r() * 2 - 1) * scale));
            const index = build(metric, dim, rows);
            const points = pointMap(rows);
            for (let t = 0; t < 4; t++) {
              const q = Float32Array.from({ length: dim }, () => (r() * 2 - 1) * scale);
              expectTolerantMatch(index.searchExact(q, k), metric, points, q, k);
            }
          },
        ),
        { seed: 203 + metric.length, numRuns: 80 },
      );
    });
  }

  it('cosine distances are 1 − cos of the original (unnormalised) vectors', () => {
    const rows = [
      [3, 4],
      [-3, -4],
      [4, -3],
      [30, 40],
    ];
    const index = build('cosine', 2, rows);
    const res = index.searchExact([6, 8], 4);
    expect(Array.from(res.ids)).toEqual([0, 3, 2, 1]);
    expect(res.distances[0]).toBeCloseTo(0, 6);
    expect(res.distances[1]).toBeCloseTo(0, 6);
    expect(res.distances[2]).toBeCloseTo(1, 6);
    expect(res.distances[3]).toBeCloseTo(2, 6);
    // The stored vector is unit length.
    const v = index.vector(3);
    expect(Math.hypot(v[0], v[1])).toBeCloseTo(1, 6);
    expect(dist64('cosine', [6, 8], rows[2])).toBeCloseTo(1, 12);
  });

  it('k above the number of live points returns all of them; k = 10000 works', () => {
    const rows = integerData(37, 6, 9, 0.1, false);
    const index = build('l2', 6, rows);
    const q = [1, 0, -1, 2, 0, 3];
    for (const k of [37, 38, 500, 10000]) expectExactMatch(index.searchExact(q, k), 'l2', pointMap(rows), q, k);
    expect(index.searchExact(q, 10000).ids.length).toBe(37);
  });

  it('an empty index and a fully deleted index return no results', () => {
    const index = WasmIndex.create({ dim: 3 });
    expect(index.searchExact([1, 2, 3], 5).ids.length).toBe(0);
    const slots = index.addBatch([
      [1, 1, 1],
      [2, 2, 2],
    ]);
    for (const s of slots) index.remove(s);
    expect(index.size).toBe(0);
    const res = index.searchExact([1, 2, 3], 5);
    expect(res.ids.length).toBe(0);
    expect(res.distances.length).toBe(0);
  });
});

describe('filtered searchExact with an AllowSet', () => {
  for (const metric of ['l2', 'ip', 'cosine'] as const) {
    it(`${metric}: only allowed live slots, exactly the filtered brute force (property)`, () => {
      fc.assert(
        fc.property(
          fc.record({
            n: fc.integer({ min: 1, max: 100 }),
            dim: fc.integer({ min: 1, max: 16 }),
            seed: fc.integer(),
            k: fc.integer({ min: 1, max: 50 }),
            sel: fc.constantFrom(0, 0.05, 0.3, 0.8, 1),
            delRate: fc.constantFrom(0, 0.2),
          }),
          ({ n, dim, seed, k, sel, delRate }) => {
            const rows = integerData(n, dim, seed, 0.2, metric === 'cosine');
            const index = build(metric, dim, rows);
            const points = pointMap(rows);
            const r = mulberry32(seed ^ 0x1234567);
            for (let s = 0; s < n; s++) {
              if (r() < delRate) {
                index.remove(s);
                points.delete(s);
              }
            }
            const allowed = new Set<number>();
            for (let s = 0; s < n; s++) if (r() < sel) allowed.add(s);
            // Slots past the end are allowed too: they must be ignored.
            const allow = AllowSet.of([...allowed, n + 3, n + 40]);
            const keep = (s: number) => allowed.has(s);
            for (let t = 0; t < 4; t++) {
              const q = integerData(1, dim, seed + 7 + t, 0, metric === 'cosine')[0];
              const res = index.searchExact(q, k, allow);
              for (const s of res.ids) {
                expect(allowed.has(s)).toBe(true);
                expect(points.has(s)).toBe(true);
              }
              if (metric === 'cosine') expectTolerantMatch(res, metric, points, q, k, keep);
              else expectExactMatch(res, metric, points, q, k, keep);
            }
          },
        ),
        { seed: 210 + metric.length, numRuns: 100 },
      );
    });
  }

  it('an empty AllowSet returns nothing; a full one equals the unfiltered search', () => {
    const rows = integerData(200, 8, 3, 0.1, false);
    const index = build('l2', 8, rows);
    const q = [1, 2, 3, 4, -1, -2, -3, -4];
    expect(index.searchExact(q, 10, new AllowSet()).ids.length).toBe(0);
    expect(index.searchExact(q, 10, new AllowSet(1000)).ids.length).toBe(0);
    const all = AllowSet.of(rows.map((_, i) => i));
    const a = index.searchExact(q, 25, all);
    const b = index.searchExact(q, 25);
    expect(Array.from(a.ids)).toEqual(Array.from(b.ids));
    expect(Array.from(a.distances)).toEqual(Array.from(b.distances));
    // A filtered search does not leave the filter behind for the next one.
    expectExactMatch(index.searchExact(q, 25), 'l2', pointMap(rows), q, 25);
  });
});
