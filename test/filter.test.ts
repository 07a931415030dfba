// Filtered search with an AllowSet at 50 %, 10 % and 1 % selectivity: only
// allowed live slots come back, and recall@10 against the exact filtered brute
// force is at least 0.95, for plan 'auto' (graph or scan, the index decides)
// and plan 'graph' where a graph walk is meaningful (50 %, 10 %).

import { beforeAll, describe, expect, it } from 'vitest';
import { AllowSet, WasmIndex } from '../ts/index.js';
import { bruteForce, clusterModel, dist64, mulberry32, recallOne, rowsOf, shuffled } from './helpers.js';

const N = 5000;
const DIM = 32;
const K = 10;
const EF = 64;

const model = clusterModel({ dim: DIM, clusters: 30, seed: 31337, centerScale: 1.5 });
const data = model.sample(N, 1);
const rows = rowsOf(data, DIM);
const queries = rowsOf(model.sample(100, 2), DIM);

interface Case {
  sel: number;
  allowed: Set<number>;
  allow: AllowSet;
}

function makeCase(sel: number, seed: number): Case {
  const r = mulberry32(seed);
  const allowed = new Set<number>();
  for (let s = 0; s < N; s++) if (r() < sel) allowed.add(s);
  return { sel, allowed, allow: AllowSet.of(allowed) };
}

for (const metric of ['l2', 'ip', 'cosine'] as const) {
  describe(`filtered search, ${metric}`, () => {
    let index: WasmIndex;
    const live = new Set<number>();
    const cases = [makeCase(0.5, 1), makeCase(0.1, 2), makeCase(0.01, 3)];

    beforeAll(() => {
      index = WasmIndex.create({ dim: DIM, metric, m: 16, efConstruction: 100, seed: 3 });
      index.addBatch(data);
      for (let s = 0; s < N; s++) live.add(s);
      // 4 % tombstones (below the consolidation threshold), some of them allowed.
      for (const s of shuffled([...live], mulberry32(77)).slice(0, 200)) {
        index.remove(s);
        live.delete(s);
      }
    });

    function run(c: Case, plan: 'auto' | 'graph', assertRecall: boolean): void {
      const keep = (s: number) => live.has(s) && c.allowed.has(s);
      const candidates = [...c.allowed].filter(keep).length;
      let sum = 0;
      for (const q of queries) {
        const res = index.search(q, K, { ef: EF, allow: c.allow, plan });
        for (const s of res.ids) {
          expect(c.allowed.has(s), `slot ${s} not allowed (sel ${c.sel}, ${plan})`).toBe(true);
          expect(live.has(s), `slot ${s} deleted (sel ${c.sel}, ${plan})`).toBe(true);
        }
        expect(new Set(res.ids).size).toBe(res.ids.length);
        if (!assertRecall) continue;
        expect(res.ids.length).toBe(Math.min(K, candidates));
        const truth = bruteForce(metric, rows, q, K, keep);
        sum += recallOne(res, truth, (s) => dist64(metric, q, rows[s]), keep);
      }
      if (assertRecall) expect(sum / queries.length, `recall at sel ${c.sel}, ${plan}`).toBeGreaterThanOrEqual(0.95);
    }

    it('plan auto: 50 %, 10 %, 1 % — only allowed slots, recall ≥ 0.95', () => {
      for (const c of cases) run(c, 'auto', true);
    });

    it('plan graph: 50 % and 10 % — only allowed slots, recall ≥ 0.95', () => {
      run(cases[0], 'graph', true);
      run(cases[1], 'graph', true);
    });

    it('plan graph at 1 % still returns only allowed live slots', () => {
      run(cases[2], 'graph', false);
    });

    it('the filter applies to one search only; an unfiltered search afterwards is unaffected', () => {
      const q = queries[0];
      const before = index.search(q, K, { ef: EF });
      index.search(q, K, { ef: EF, allow: cases[2].allow });
      const after = index.search(q, K, { ef: EF });
      expect(Array.from(after.ids)).toEqual(Array.from(before.ids));
      expect(Array.from(after.distances)).toEqual(Array.from(before.distances));
    });
  });
}

describe('filtered search edge cases', () => {
  const small = rowsOf(model.sample(600, 9), DIM);
  let index: WasmIndex;

  beforeAll(() => {
    index = WasmIndex.create({ dim: DIM, seed: 1 });
    index.addBatch(small);
  });

  it('an empty AllowSet gives no results under both plans', () => {
    for (const plan of ['auto', 'graph'] as const) {
      expect(index.search(small[0], K, { allow: new AllowSet(), plan }).ids.length).toBe(0);
      expect(index.search(small[0], K, { allow: new AllowSet(5000), plan }).ids.length).toBe(0);
    }
  });

  it('a single allowed slot is found from anywhere', () => {
    const r = mulberry32(4);
    for (let t = 0; t < 20; t++) {
      const target = Math.floor(r() * small.length);
      for (const plan of ['auto', 'graph'] as const) {
        const res = index.search(small[(target + 300) % small.length], K, { allow: AllowSet.of([target]), plan });
        expect(Array.from(res.ids)).toEqual([target]);
      }
    }
  });

  it('allowing only deleted slots gives no results', () => {
    const idx = WasmIndex.create({ dim: DIM, seed: 1 });
    idx.addBatch(small.slice(0, 200));
    const gone = [5, 6, 7];
    for (const s of gone) idx.remove(s);
    for (const plan of ['auto', 'graph'] as const) {
      expect(idx.search(small[5], K, { allow: AllowSet.of(gone), plan }).ids.length).toBe(0);
      const res = idx.search(small[5], K, { allow: AllowSet.of([...gone, 8]), plan });
      expect(Array.from(res.ids)).toEqual([8]);
    }
  });

  it('a filter correlated with the data (allowed points all in other clusters) keeps only allowed slots', () => {
    // Allowed: the points farthest from the query, so the graph must walk away from it.
    const q = small[0];
    const order = small.map((v, s) => ({ s, d: dist64('l2', q, v) })).sort((a, b) => b.d - a.d);
    const allowed = new Set(order.slice(0, 60).map((h) => h.s));
    for (const plan of ['auto', 'graph'] as const) {
      const res = index.search(q, K, { ef: EF, allow: AllowSet.of(allowed), plan });
      expect(res.ids.length).toBe(K);
      for (const s of res.ids) expect(allowed.has(s)).toBe(true);
    }
    const auto = index.search(q, K, { ef: EF, allow: AllowSet.of(allowed), plan: 'auto' });
    const truth = bruteForce('l2', small, q, K, (s) => allowed.has(s));
    expect(recallOne(auto, truth, (s) => dist64('l2', q, small[s]), (s) => allowed.has(s))).toBeGreaterThanOrEqual(0.9);
  });
});

