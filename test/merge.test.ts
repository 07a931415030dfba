// mergeTopK against a reference that sorts the union: per-shard lists with
// many tied scores, ids mixing integers and strings (including "1" next to
// 1), duplicates across and within lists, lists whose ties are in shard
// order rather than id order, both score orders, and k beyond the total.

import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { compareHits, compareIds, mergeTopK } from '../ts/merge.js';
import type { ScoreOrder } from '../ts/merge.js';
import type { Hit, PointId } from '../ts/index.js';
import { expectVdbError } from './helpers.js';

const SEED = 0x3e49e;

/** The documented id order, written out independently: integers (numerically), then strings (by code units). */
function refIdOrder(a: PointId, b: PointId): number {
  if (typeof a === 'number' && typeof b === 'number') return a - b;
  if (typeof a === 'number') return -1;
  if (typeof b === 'number') return 1;
  for (let i = 0; i < Math.min(a.length, b.length); i++) {
    const d = a.charCodeAt(i) - b.charCodeAt(i);
    if (d !== 0) return d;
  }
  return a.length - b.length;
}

interface Tagged {
  hit: Hit;
  list: number;
  pos: number;
}

/**
 * Global top-k by sorting the union: better score, then id, then (for the
 * same id and score) the earlier list and position; the first hit of each id wins.
 */
function reference(lists: Hit[][], k: number, order: ScoreOrder): Hit[] {
  const all: Tagged[] = lists.flatMap((l, list) => l.map((hit, pos) => ({ hit, list, pos })));
  all.sort((x, y) => {
    const ds = order === 'asc' ? x.hit.score - y.hit.score : y.hit.score - x.hit.score;
    return ds || refIdOrder(x.hit.id, y.hit.id) || x.list - y.list || x.pos - y.pos;
  });
  const seen = new Set<PointId>();
  const out: Hit[] = [];
  for (const { hit } of all) {
    if (seen.has(hit.id)) continue;
    seen.add(hit.id);
    out.push(hit);
  }
  return out.slice(0, k);
}

const idArb: fc.Arbitrary<PointId> = fc.oneof(
  fc.integer({ min: -3, max: 12 }),
  fc.constantFrom('1', '2', '10', '-1', 'a', 'b', 'B', 'ab', 'é', 'e\u0301', '\u{1F600}', '\uFFFF', 'z'),
);
const scoreArb = fc.constantFrom(0, -0, 0.25, 0.5, 0.5, 1, 2, -1.5);
const hitArb: fc.Arbitrary<Hit> = fc.record({ id: idArb, score: scoreArb, payload: fc.record({ tag: fc.nat(1000) }) });

/**
 * A shard's answer: sorted by score only, ties left in their arbitrary
 * (generated) order, as a shard ordering ties by slot would send them; or,
 * sometimes, already in the exact documented order.
 */
function shardList(hits: Hit[], order: ScoreOrder, exact: boolean): Hit[] {
  const byScore = (a: Hit, b: Hit) => (order === 'asc' ? a.score - b.score : b.score - a.score);
  return [...hits].sort(exact ? (a, b) => byScore(a, b) || refIdOrder(a.id, b.id) : byScore);
}

describe('mergeTopK', () => {
  it('equals the global top-k of the union, ties and duplicates included, in both orders', () => {
    let dupes = 0;
    let ties = 0;
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.array(hitArb, { maxLength: 14 }), fc.boolean()), { maxLength: 7 }),
        fc.integer({ min: 0, max: 120 }),
        fc.constantFrom<ScoreOrder>('asc', 'desc'),
        (raw, k, order) => {
          const lists = raw.map(([hits, exact]) => shardList(hits, order, exact));
          const snapshot = JSON.stringify(lists);
          const got = mergeTopK(lists, k, order);
          const want = reference(lists, k, order);
          // The very same hit objects, in the same order (so the same duplicate wins).
          expect(got.length).toBe(want.length);
          for (let i = 0; i < got.length; i++) expect(got[i]).toBe(want[i]);
          // Ordered, unique, as long as it can be; inputs untouched.
          const ids = new Set(lists.flat().map((h) => h.id));
          expect(got.length).toBe(Math.min(k, ids.size));
          expect(new Set(got.map((h) => h.id)).size).toBe(got.length);
          for (let i = 1; i < got.length; i++) expect(compareHits(got[i - 1], got[i], order)).toBeLessThan(0);
          expect(JSON.stringify(lists)).toBe(snapshot);
          if (ids.size < lists.flat().length) dupes++;
          if (got.some((h, i) => i > 0 && h.score === got[i - 1].score)) ties++;
        },
      ),
      { seed: SEED, numRuns: 1500 },
    );
    // The generator really exercises duplicates and ties.
    expect(dupes).toBeGreaterThan(500);
    expect(ties).toBeGreaterThan(500);
  });

  it('merges realistic per-shard top-k lists into the top-k of the whole', () => {
    // Disjoint shards, each returning its own top-k: the merge equals the top-k of all points.
    fc.assert(
      fc.property(
        fc.array(fc.record({ id: fc.oneof(fc.nat(200), fc.string({ maxLength: 3 })), score: fc.integer({ min: 0, max: 8 }) }), { maxLength: 150 }),
        fc.integer({ min: 1, max: 6 }),
        fc.integer({ min: 1, max: 40 }),
        fc.constantFrom<ScoreOrder>('asc', 'desc'),
        (points, shards, k, order) => {
          // One hit per id (a point lives on one shard), placed by a simple hash.
          const unique = new Map<PointId, Hit>();
          for (const p of points) if (!unique.has(p.id)) unique.set(p.id, p);
          const perShard: Hit[][] = Array.from({ length: shards }, () => []);
          for (const h of unique.values()) perShard[String(h.id).length % shards].push(h);
          const topEach = perShard.map((l) => reference([l], k, order));
          const want = reference([[...unique.values()]], k, order);
          expect(mergeTopK(topEach, k, order)).toEqual(want);
        },
      ),
      { seed: SEED, numRuns: 500 },
    );
  });

  it('handles no lists, empty lists, k = 0 and k above the total', () => {
    expect(mergeTopK([], 10, 'asc')).toEqual([]);
    expect(mergeTopK([[], [], []], 10, 'desc')).toEqual([]);
    const a: Hit[] = [{ id: 1, score: 0.1 }, { id: 2, score: 0.3 }];
    const b: Hit[] = [{ id: 'x', score: 0.2 }];
    expect(mergeTopK([a, [], b], 0, 'asc')).toEqual([]);
    expect(mergeTopK([a, [], b], 100, 'asc').map((h) => h.id)).toEqual([1, 'x', 2]);
    expect(mergeTopK([a, [], b], 2, 'desc').map((h) => h.id)).toEqual([2, 'x']);
  });

  it('keeps a duplicated id once, with its best score (the earlier list on a tie)', () => {
    const a: Hit[] = [{ id: 7, score: 0.9, payload: { from: 'a' } }, { id: 8, score: 0.5 }];
    const b: Hit[] = [{ id: 7, score: 0.95, payload: { from: 'b' } }, { id: 9, score: 0.4 }];
    expect(mergeTopK([a, b], 3, 'desc')).toEqual([{ id: 7, score: 0.95, payload: { from: 'b' } }, { id: 8, score: 0.5 }, { id: 9, score: 0.4 }]);
    expect(mergeTopK([a, b], 3, 'asc').map((h) => [h.id, h.score])).toEqual([[9, 0.4], [8, 0.5], [7, 0.9]]);
    const c: Hit[] = [{ id: 'p', score: 1, payload: { from: 'c' } }];
    const d: Hit[] = [{ id: 'p', score: 1, payload: { from: 'd' } }];
    expect(mergeTopK([c, d], 5, 'asc')).toEqual([c[0]]);
    expect(mergeTopK([d, c], 5, 'asc')).toEqual([d[0]]);
  });

  it('breaks score ties by id: integers first, numerically, then strings by code units', () => {
    const hits: Hit[] = ['b', 10, 'B', '1', 2, -3, 'é', 'e', '\u{1F600}', '\uFFFF'].map((id) => ({ id, score: 1 }));
    const merged = mergeTopK([hits.slice(0, 4), hits.slice(4)], 100, 'desc');
    expect(merged.map((h) => h.id)).toEqual([-3, 2, 10, '1', 'B', 'b', 'e', 'é', '\u{1F600}', '\uFFFF']);
    expect(compareIds(1, '1')).toBeLessThan(0);
    expect(compareIds('1', 1)).toBeGreaterThan(0);
    expect(compareIds(2, 10)).toBeLessThan(0);
    expect(compareIds('10', '2')).toBeLessThan(0);
    expect(compareIds('x', 'x')).toBe(0);
  });

  it('puts NaN scores last and refuses a bad k or order', () => {
    const hits: Hit[] = [{ id: 1, score: NaN }, { id: 2, score: 5 }, { id: 3, score: -Infinity }];
    expect(mergeTopK([hits], 3, 'asc').map((h) => h.id)).toEqual([3, 2, 1]);
    expect(mergeTopK([hits], 3, 'desc').map((h) => h.id)).toEqual([2, 3, 1]);
    for (const k of [-1, 1.5, NaN, Infinity]) expectVdbError(() => mergeTopK([hits], k, 'asc'), 'INVALID_K');
    expectVdbError(() => mergeTopK([hits], 1, 'up' as ScoreOrder), 'INVALID_ARGUMENT');
  });
});
