// HNSW graph search: recall@10 against a float64 brute force on seeded clustered
// data for every metric, distances reported in the true metric, and determinism
// (the same seed and the same inserts give the same graph, hence identical results).

import { beforeAll, describe, expect, it } from 'vitest';
import { AllowSet, WasmIndex } from '../ts/index.js';
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

    it('stored-vector queries: itself first at k = 1 (l2, cosine), recall@10 ≥ 0.98 (ip)', () => {
      if (metric === 'ip') {
        // Under inner product a point need not be its own nearest: check recall@10
        // for stored-vector queries against the exact answer instead.
        let sum = 0;
        for (let i = 0; i < 200; i++) {
          const q = rows[i * 25];
          const res = index.search(q, K, { ef: 64 });
          sum += recallOne(res, bruteForce(metric, rows, q, K), (s) => dist64(metric, q, rows[s]), (s) => s < N);
        }
        expect(sum / 200).toBeGreaterThanOrEqual(0.98);
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

    it('every point is reachable: a graph walk with ef = n and everything allowed returns all n', () => {
      // With every slot allowed and ef above the size, the level-0 walk only stops
      // when it has run out of nodes, so it returns the whole connected component.
      // Inner product is not a metric: short vectors lie "inside" the data and
      // lose their in-links to longer ones (docs/core.md), so for ip a few may be
      // unreachable — they are never a top-1 answer to any query.
      const all = AllowSet.of(Array.from({ length: N }, (_, i) => i));
      const need = metric === 'ip' ? Math.ceil(N * 0.995) : N;
      for (const q of qs.slice(0, 3)) {
        const res = index.search(q, N, { ef: N, allow: all, plan: 'graph' });
        expect(res.ids.length, `${metric}: points reachable from the entry`).toBeGreaterThanOrEqual(need);
      }
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

  it('results stay the same across the 16-bit visited-tag wrap (70,000 searches)', () => {
    const dim = 4;
    const { data: d, queries: qq } = clusteredData({ n: 200, queries: 8, dim, clusters: 4, seed: 5 });
    const index = WasmIndex.create({ dim, seed: 1, m: 4, efConstruction: 16 });
    index.addBatch(d);
    const probes = rowsOf(qq, dim);
    const before = probes.map((q) => index.search(q, 5, { ef: 16 }));
    for (let i = 0; i < 70_000; i++) index.search(probes[i & 7], 1, { ef: 1 });
    probes.forEach((q, i) => {
      const after = index.search(q, 5, { ef: 16 });
      expect(Array.from(after.ids)).toEqual(Array.from(before[i].ids));
      expect(Array.from(after.distances)).toEqual(Array.from(before[i].distances));
    });
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
