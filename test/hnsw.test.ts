// HNSW graph search: recall@10 against a float64 brute force on seeded clustered
// data for every metric, distances reported in the true metric, and determinism
// (the same seed and the same inserts give the same graph, hence identical results).

import { beforeAll, describe, expect, it } from 'vitest';
import { WasmIndex } from '../ts/index.js';
import type { Metric, SearchResult } from '../ts/index.js';
import { bruteForce, clusteredData, dist64, distTol, expectOrdered, recallOne, rowsOf } from './helpers.js';
import type { Hit } from './helpers.js';

const N = 5000;
const DIM = 32;
const Q = 200;
const K = 10;

const { data, queries } = clusteredData({ n: N, queries: Q, dim: DIM, clusters: 30, seed: 1234, centerScale: 1.5 });
const rows = rowsOf(data, DIM);
const qs = rowsOf(queries, DIM);

function build(metric: Metric, seed: number): WasmIndex {
  const index = WasmIndex.create({ dim: DIM, metric, m: 16, efConstruction: 100, seed });
  const slots = index.addBatch(data);
  expect(slots.length).toBe(N);
  expect(index.size).toBe(N);
  return index;
}

function meanRecall(index: WasmIndex, metric: Metric, truth: Hit[][], ef: number): number {
  let sum = 0;
  qs.forEach((q, i) => {
    const res = index.search(q, K, { ef });
    expect(res.ids.length).toBe(K);
    sum += recallOne(res, truth[i], (s) => dist64(metric, q, rows[s]), (s) => s < N);
  });
  return sum / Q;
}

for (const metric of ['l2', 'ip', 'cosine'] as const) {
  describe(`hnsw ${metric}`, () => {
    let index: WasmIndex;
    let truth: Hit[][];

    beforeAll(() => {
      index = build(metric, 7);
      truth = qs.map((q) => bruteForce(metric, rows, q, K));
    });

    it('recall@10 ≥ 0.98 at ef = 64 and at ef = 100', () => {
      const r64 = meanRecall(index, metric, truth, 64);
      const r100 = meanRecall(index, metric, truth, 100);
      expect(r64).toBeGreaterThanOrEqual(0.98);
      expect(r100).toBeGreaterThanOrEqual(0.98);
    });

    it('results are sorted, distinct, and carry the true metric distance', () => {
      for (const q of qs) {
        const res = index.search(q, K, { ef: 64 });
        expectOrdered(res, false);
        for (let i = 0; i < res.ids.length; i++) {
          const s = res.ids[i];
          expect(s).toBeLessThan(N);
          const d = dist64(metric, q, rows[s]);
          expect(Math.abs(res.distances[i] - d)).toBeLessThanOrEqual(distTol(d) * 10);
        }
      }
    });

    it('a stored vector finds itself first (k = 1)', () => {
      if (metric === 'ip') {
        // Under inner product a point need not be its own nearest; compare with the exact answer instead.
        let agree = 0;
        for (let i = 0; i < 200; i++) {
          const q = rows[i * 25];
          const best = bruteForce(metric, rows, q, 1)[0];
          const got = index.search(q, 1, { ef: 64 });
          if (got.ids.length === 1 && dist64(metric, q, rows[got.ids[0]]) <= best.d + distTol(best.d)) agree++;
        }
        expect(agree).toBeGreaterThanOrEqual(196);
        return;
      }
      let self = 0;
      for (let i = 0; i < 200; i++) {
        const s = i * 25;
        const res = index.search(rows[s], 1, { ef: 64 });
        expect(res.ids.length).toBe(1);
        if (res.ids[0] === s) {
          self++;
          expect(Math.abs(res.distances[0])).toBeLessThanOrEqual(1e-5);
        }
      }
      expect(self).toBeGreaterThanOrEqual(198);
    });

    it('the same seed and inserts give identical results for every query', () => {
      const twin = WasmIndex.create({ dim: DIM, metric, m: 16, efConstruction: 100, seed: 7 });
      // Same inserts, one at a time this time: the path must not matter.
      for (let i = 0; i < N; i++) expect(twin.add(rows[i])).toBe(i);
      for (const q of qs) {
        for (const ef of [10, 64]) {
          const a = index.search(q, K, { ef });
          const b = twin.search(q, K, { ef });
          expect(Array.from(b.ids)).toEqual(Array.from(a.ids));
          expect(Array.from(b.distances)).toEqual(Array.from(a.distances));
        }
      }
    });

    it('repeating a query gives the same answer (no state leaks between searches)', () => {
      const first: SearchResult[] = qs.slice(0, 50).map((q) => index.search(q, K, { ef: 40 }));
      // Interleave other searches, exact scans and filtered searches.
      for (const q of qs.slice(50, 100)) {
        index.search(q, 50, { ef: 200 });
        index.searchExact(q, 5);
      }
      qs.slice(0, 50).forEach((q, i) => {
        const again = index.search(q, K, { ef: 40 });
        expect(Array.from(again.ids)).toEqual(Array.from(first[i].ids));
        expect(Array.from(again.distances)).toEqual(Array.from(first[i].distances));
      });
    });
  });
}

describe('hnsw edge cases', () => {
  it('k larger than the index returns every point once', () => {
    const index = WasmIndex.create({ dim: 4, seed: 3 });
    const pts = [
      [0, 0, 0, 1],
      [0, 0, 1, 0],
      [0, 1, 0, 0],
      [1, 0, 0, 0],
      [1, 1, 1, 1],
    ];
    index.addBatch(pts);
    const res = index.search([0, 0, 0, 0.9], 20);
    expect(res.ids.length).toBe(5);
    expect(new Set(res.ids).size).toBe(5);
    expect(res.ids[0]).toBe(0);
    expect(res.distances[0]).toBeCloseTo(0.01, 6);
  });

  it('an empty index returns no results', () => {
    const index = WasmIndex.create({ dim: 8, metric: 'cosine' });
    const res = index.search([1, 0, 0, 0, 0, 0, 0, 0], 5);
    expect(res.ids.length).toBe(0);
  });

  it('a dimension that is not a multiple of 4 (dim 13) gives exact-quality results on small data', () => {
    const dim = 13;
    const { data: d, queries: qq } = clusteredData({ n: 400, queries: 30, dim, clusters: 8, seed: 99 });
    const rr = rowsOf(d, dim);
    for (const metric of ['l2', 'ip', 'cosine'] as const) {
      const index = WasmIndex.create({ dim, metric, seed: 5 });
      index.addBatch(d);
      let sum = 0;
      for (const q of rowsOf(qq, dim)) {
        // ef ≥ n: the graph search sees every reachable point.
        const res = index.search(q, 10, { ef: 400 });
        sum += recallOne(res, bruteForce(metric, rr, q, 10), (s) => dist64(metric, q, rr[s]), (s) => s < 400);
      }
      expect(sum / 30).toBeGreaterThanOrEqual(0.999);
    }
  });
});
