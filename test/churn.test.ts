// Deletes and slot reuse: after heavy churn the graph must answer as well as a
// fresh build of the same live set, deleted points must never come back, and
// size/slot accounting must stay right. The test keeps its own slot → point map:
// a removed slot may legitimately be handed out again to a new point.

import { describe, expect, it } from 'vitest';
import { AllowSet, WasmIndex } from '../ts/index.js';
import type { Metric } from '../ts/index.js';
import { bruteForce, clusterModel, dist64, mulberry32, recallOne, row, rowsOf, shuffled } from './helpers.js';

const DIM = 24;
const N = 4000;
const K = 10;
// A low ef keeps recall below saturation, so a damaged graph would show.
const EF = 24;

const model = clusterModel({ dim: DIM, clusters: 25, seed: 4242, centerScale: 1.5 });
const queries = rowsOf(model.sample(150, 777), DIM);

/** An index plus the test's own record of which point each live slot holds. */
class Tracked {
  readonly holder = new Map<number, Float32Array>(); // live slot → vector
  readonly everRemoved = new Set<number>();
  constructor(readonly index: WasmIndex) {}

  add(vectors: Float32Array): void {
    const before = this.index.size;
    const n = vectors.length / DIM;
    const slots = this.index.addBatch(vectors);
    expect(slots.length).toBe(n);
    expect(new Set(slots).size).toBe(n);
    slots.forEach((s, i) => {
      // A slot handed out must not hold a live point.
      expect(this.holder.has(s), `slot ${s} handed out while live`).toBe(false);
      this.holder.set(s, vectors.slice(i * DIM, (i + 1) * DIM));
    });
    expect(this.index.size).toBe(before + n);
  }

  remove(slot: number): void {
    expect(this.holder.has(slot)).toBe(true);
    this.index.remove(slot);
    this.holder.delete(slot);
    this.everRemoved.add(slot);
    expect(this.index.has(slot)).toBe(false);
  }

  /** Searches and checks that only live slots come back; returns mean recall@K. */
  recall(metric: Metric, qs: Float32Array[] = queries): number {
    let sum = 0;
    for (const q of qs) {
      const res = this.index.search(q, K, { ef: EF });
      expect(res.ids.length).toBe(Math.min(K, this.holder.size));
      for (const s of res.ids) expect(this.holder.has(s), `dead slot ${s} returned`).toBe(true);
      const truth = bruteForce(metric, this.holder, q, K);
      sum += recallOne(res, truth, (s) => dist64(metric, q, this.holder.get(s)!), (s) => this.holder.has(s));
    }
    return sum / qs.length;
  }

  liveVectors(): Float32Array {
    const out = new Float32Array(this.holder.size * DIM);
    let i = 0;
    for (const v of this.holder.values()) out.set(v, DIM * i++);
    return out;
  }
}

function freshRecall(metric: Metric, live: Float32Array): number {
  const t = new Tracked(WasmIndex.create({ dim: DIM, metric, m: 16, efConstruction: 100, seed: 11 }));
  t.add(live);
  return t.recall(metric);
}

describe('churn', () => {
  for (const metric of ['l2', 'cosine'] as const) {
    it(`${metric}: delete half, insert N/2 new: recall within 0.01 of a fresh build and ≥ 0.95`, () => {
      const t = new Tracked(WasmIndex.create({ dim: DIM, metric, m: 16, efConstruction: 100, seed: 11 }));
      t.add(model.sample(N, 1));
      expect(t.index.size).toBe(N);
      expect(t.index.slots).toBe(N);

      const rand = mulberry32(99);
      const victims = shuffled([...t.holder.keys()], rand).slice(0, N / 2);
      victims.forEach((s, i) => {
        t.remove(s);
        expect(t.index.size).toBe(N - i - 1);
        // Search while tombstones are pending and after consolidations alike.
        if (i % 250 === 0) t.recall(metric, queries.slice(0, 10));
      });
      expect(t.index.size).toBe(N / 2);
      for (const s of victims) expect(t.index.has(s)).toBe(false);
      expect(t.recall(metric)).toBeGreaterThanOrEqual(0.95);

      t.add(model.sample(N / 2, 2));
      expect(t.index.size).toBe(N);
      // Freed slots were reused rather than the slot range growing by N/2.
      expect(t.index.slots).toBeLessThanOrEqual(Math.ceil(N * 1.1));
      // Every live slot is reported live, every other used slot is not.
      for (let s = 0; s < t.index.slots; s++) expect(t.index.has(s)).toBe(t.holder.has(s));

      const churned = t.recall(metric);
      const fresh = freshRecall(metric, t.liveVectors());
      expect(churned).toBeGreaterThanOrEqual(0.95);
      expect(churned).toBeGreaterThanOrEqual(fresh - 0.01);

      // Repair kept the graph connected: a walk that cannot stop early reaches every live point.
      const all = AllowSet.of(Array.from({ length: t.index.slots }, (_, i) => i));
      const reach = t.index.search(queries[0], N, { ef: N, allow: all, plan: 'graph' });
      expect(reach.ids.length).toBe(N);
    });
  }

  it('l2: recall does not decay over repeated rounds of 30 % churn', () => {
    const metric = 'l2';
    const t = new Tracked(WasmIndex.create({ dim: DIM, metric, m: 16, efConstruction: 100, seed: 5 }));
    t.add(model.sample(N / 2, 10));
    const rand = mulberry32(5);
    for (let round = 0; round < 4; round++) {
      const victims = shuffled([...t.holder.keys()], rand).slice(0, Math.floor(t.holder.size * 0.3));
      for (const s of victims) t.remove(s);
      t.add(model.sample(victims.length, 100 + round));
      expect(t.index.size).toBe(N / 2);
    }
    const churned = t.recall(metric);
    const fresh = freshRecall(metric, t.liveVectors());
    expect(churned).toBeGreaterThanOrEqual(0.95);
    expect(churned).toBeGreaterThanOrEqual(fresh - 0.01);
    expect(t.index.slots).toBeLessThanOrEqual(Math.ceil((N / 2) * 1.1));
  });

  it('a deleted point is never returned, even before consolidation (queried by its own vector)', () => {
    for (const metric of ['l2', 'ip', 'cosine'] as const) {
      const data = model.sample(1000, 3);
      const t = new Tracked(WasmIndex.create({ dim: DIM, metric, seed: 2 }));
      t.add(data);
      // 5 % of the slots: below any consolidation threshold, so they stay tombstones.
      const victims = shuffled([...t.holder.keys()], mulberry32(8)).slice(0, 50);
      for (const s of victims) t.remove(s);
      expect(t.index.size).toBe(950);
      for (const s of victims) {
        const q = row(data, DIM, s);
        for (const res of [t.index.search(q, K), t.index.search(q, 1, { ef: 1 }), t.index.searchExact(q, K)]) {
          for (const id of res.ids) expect(t.holder.has(id), `${metric}: deleted slot ${id} returned`).toBe(true);
        }
        expect(() => t.index.vector(s)).toThrow();
      }
      expect(t.recall(metric)).toBeGreaterThanOrEqual(0.95);
    }
  });

  it('after consolidate(), new points reuse the deleted slots', () => {
    const t = new Tracked(WasmIndex.create({ dim: DIM, seed: 4 }));
    t.add(model.sample(500, 5));
    const victims = [3, 77, 150, 151, 499];
    for (const s of victims) t.remove(s);
    t.index.consolidate();
    expect(t.index.size).toBe(495);
    const slotsBefore = t.index.slots;
    t.add(model.sample(victims.length, 6));
    expect(t.index.slots).toBe(slotsBefore);
    expect([...t.holder.keys()].filter((s) => victims.includes(s)).sort((a, b) => a - b)).toEqual(victims);
    expect(t.recall('l2')).toBeGreaterThanOrEqual(0.95);
  });

  it('delete everything, then insert again', () => {
    for (const metric of ['l2', 'cosine'] as const) {
      const t = new Tracked(WasmIndex.create({ dim: DIM, metric, seed: 9 }));
      t.add(model.sample(300, 20));
      for (const s of shuffled([...t.holder.keys()], mulberry32(1))) t.remove(s);
      expect(t.index.size).toBe(0);
      expect(t.index.search(queries[0], K).ids.length).toBe(0);
      expect(t.index.searchExact(queries[0], K).ids.length).toBe(0);
      t.add(model.sample(300, 21));
      expect(t.index.size).toBe(300);
      expect(t.index.slots).toBe(300);
      expect(t.recall(metric)).toBeGreaterThanOrEqual(0.95);
    }
  });

  it('the capacity option is only a hint: the same operations give the same slots and answers', () => {
    // Both indexes see identical inserts and deletes; only the reserved capacity differs.
    const small = WasmIndex.create({ dim: DIM, seed: 21, capacity: 100 });
    const large = WasmIndex.create({ dim: DIM, seed: 21, capacity: 5000 });
    const rand = mulberry32(12);
    const live: number[] = [];
    for (let round = 0; round < 4; round++) {
      const batch = model.sample(150, 40 + round);
      const a = small.addBatch(batch);
      const b = large.addBatch(batch);
      expect(Array.from(b), `slots of round ${round}`).toEqual(Array.from(a));
      live.push(...a);
      for (const s of shuffled(live, rand).slice(0, 5)) {
        small.remove(s);
        large.remove(s);
        live.splice(live.indexOf(s), 1);
      }
    }
    expect(large.size).toBe(small.size);
    for (const q of queries.slice(0, 50)) {
      const a = small.search(q, K, { ef: EF });
      const b = large.search(q, K, { ef: EF });
      expect(Array.from(b.ids)).toEqual(Array.from(a.ids));
      expect(Array.from(b.distances)).toEqual(Array.from(a.distances));
    }
  });

  it('remove of a slot twice fails the second time and leaves size alone', () => {
    const t = new Tracked(WasmIndex.create({ dim: DIM, seed: 4 }));
    t.add(model.sample(100, 30));
    t.remove(10);
    expect(() => t.index.remove(10)).toThrow();
    expect(t.index.size).toBe(99);
  });
});
