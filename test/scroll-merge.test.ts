import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import Database from 'better-sqlite3';
import { compareScrollIds, mergeScroll } from '../ts/scroll-merge.js';
import type { ScrollPage } from '../ts/scroll-merge.js';
import type { PointId } from '../ts/validate.js';

const idArb: fc.Arbitrary<PointId> = fc.oneof(
  fc.integer({ min: -1000, max: 1000 }),
  fc.constantFrom(Number.MAX_SAFE_INTEGER, -Number.MAX_SAFE_INTEGER),
  fc.string({ minLength: 1, maxLength: 4, unit: 'binary' }),
  fc.constantFrom('a', 'B', 'é', 'e\u0301', '\u{1F600}', '\uFFFF', '\uE000', '10', '9'),
);

describe('compareScrollIds', () => {
  it('is the order SQLite keeps ids in (integers, then strings by UTF-8 bytes)', () => {
    const db = new Database(':memory:');
    db.exec('CREATE TABLE t(id NOT NULL)');
    const insert = db.prepare('INSERT INTO t(id) VALUES (?)');
    const all = db.prepare('SELECT id FROM t ORDER BY id');
    fc.assert(fc.property(fc.uniqueArray(idArb, { maxLength: 40 }), (ids) => {
      db.exec('DELETE FROM t');
      for (const id of ids) insert.run(id);
      const sqlite = (all.all() as { id: PointId }[]).map((r) => r.id);
      expect([...ids].sort(compareScrollIds)).toEqual(sqlite);
    }), { numRuns: 300 });
    db.close();
  });

  it('is a total order: antisymmetric, zero only for the same id', () => {
    fc.assert(fc.property(idArb, idArb, (a, b) => {
      const x = compareScrollIds(a, b);
      expect(Math.sign(x) + Math.sign(compareScrollIds(b, a))).toBe(0);
      expect(x === 0).toBe(a === b);
    }));
  });
});

/** A shard's page as a replica makes it: its first `limit` ids after the cursor; `end` when full. */
function shardPage(held: PointId[], after: PointId | undefined, limit: number, owns: (id: PointId) => boolean): ScrollPage<{ id: PointId }> {
  const read = held.filter((id) => after === undefined || compareScrollIds(id, after) > 0).slice(0, limit);
  const page: ScrollPage<{ id: PointId }> = { points: read.filter(owns).map((id) => ({ id })) };
  if (read.length === limit) page.end = read[read.length - 1];
  return page;
}

describe('mergeScroll', () => {
  it('pages through shards in order, every owned point exactly once, with stale copies elsewhere', () => {
    const arb = fc.record({
      ids: fc.uniqueArray(idArb, { maxLength: 60 }),
      shards: fc.integer({ min: 1, max: 4 }),
      limit: fc.integer({ min: 1, max: 7 }),
      seed: fc.array(fc.nat(), { minLength: 60, maxLength: 60 }),
      stale: fc.array(fc.boolean(), { minLength: 60, maxLength: 60 }),
    });
    fc.assert(fc.property(arb, ({ ids, shards, limit, seed, stale }) => {
      const owner = new Map(ids.map((id, i) => [id, seed[i] % shards]));
      // A stale copy: the id is also held by the next shard, which does not own it.
      const held = Array.from({ length: shards }, (_, s) => ids
        .filter((id, i) => owner.get(id) === s || (shards > 1 && stale[i] && (owner.get(id)! + 1) % shards === s))
        .sort(compareScrollIds));
      const seen: PointId[] = [];
      let after: PointId | undefined;
      for (let pages = 0; ; pages++) {
        expect(pages).toBeLessThanOrEqual(2 * ids.length + 2);
        const r = mergeScroll(held.map((h, s) => shardPage(h, after, limit, (id) => owner.get(id) === s)), limit);
        expect(r.points.length).toBeLessThanOrEqual(limit);
        seen.push(...r.points.map((p) => p.id));
        if (r.next === undefined) break;
        if (after !== undefined) expect(compareScrollIds(r.next, after)).toBeGreaterThan(0);
        after = r.next;
      }
      expect(seen).toEqual([...ids].sort(compareScrollIds));
    }), { numRuns: 500 });
  });

  it('drops a second copy of an id and keeps the first limit', () => {
    const r = mergeScroll([{ points: [{ id: 1 }, { id: 3 }] }, { points: [{ id: 1 }, { id: 2 }, { id: 'a' }] }], 3);
    expect(r).toEqual({ points: [{ id: 1 }, { id: 2 }, { id: 3 }], next: 3 });
    expect(mergeScroll([{ points: [] }, { points: [] }], 5)).toEqual({ points: [] });
  });
});
