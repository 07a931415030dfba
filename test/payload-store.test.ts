// Payloads live in SQLite, not in the JS heap: a Collection keeps only its
// field indexes in memory. Against a model (a Map of what was written), after
// any mix of upserts (ids repeated within a batch), deletes, log batches and
// reopens: filtered searches on indexed, unindexed and mixed fields select
// exactly the points whose payload passes, and get/search return the payloads
// last written.

import { describe, it, expect, afterEach } from 'vitest';
import fc from 'fast-check';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Collection } from '../ts/collection.js';
import type { Payload, Point } from '../ts/collection.js';
import { compileFilter } from '../ts/filter.js';
import type { Filter } from '../ts/filter.js';

const dirs: string[] = [];
afterEach(() => {
  while (dirs.length) rmSync(dirs.pop()!, { recursive: true, force: true });
});

const DIM = 4;
const COLORS = ['red', 'green', 'blue'];
const OPTS = { name: 'items', indexes: ['color', 'n'] };

const payloadArb: fc.Arbitrary<Payload | undefined> = fc.option(
  fc.record({
    color: fc.constantFrom(...COLORS),
    n: fc.oneof(fc.integer({ min: 0, max: 9 }), fc.array(fc.integer({ min: 0, max: 9 }), { maxLength: 2 })),
    size: fc.integer({ min: 0, max: 3 }),
  }, { requiredKeys: ['color'] }),
  { nil: undefined, freq: 5 },
);

const pointArb: fc.Arbitrary<Point> = fc.record({
  id: fc.integer({ min: 0, max: 30 }),
  vector: fc.array(fc.integer({ min: -4, max: 4 }), { minLength: DIM, maxLength: DIM }).map((v) => [v[0] + 0.5, ...v.slice(1)]),
  payload: payloadArb,
});

type Op =
  | { kind: 'upsert'; points: Point[] }
  | { kind: 'delete'; ids: number[] }
  | { kind: 'log'; points: Point[]; ids: number[] }
  | { kind: 'reopen' };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 4, arbitrary: fc.array(pointArb, { minLength: 1, maxLength: 12 }).map((points) => ({ kind: 'upsert' as const, points })) },
  { weight: 2, arbitrary: fc.array(fc.integer({ min: 0, max: 30 }), { minLength: 1, maxLength: 6 }).map((ids) => ({ kind: 'delete' as const, ids })) },
  { weight: 1, arbitrary: fc.record({ points: fc.array(pointArb, { minLength: 1, maxLength: 6 }), ids: fc.array(fc.integer({ min: 0, max: 30 }), { maxLength: 4 }) }).map((r) => ({ kind: 'log' as const, ...r })) },
  { weight: 1, arbitrary: fc.constant({ kind: 'reopen' as const }) },
);

const term: fc.Arbitrary<Filter> = fc.oneof(
  fc.record({ color: fc.constantFrom(...COLORS) }),
  fc.record({ color: fc.record({ $in: fc.subarray(COLORS) }) }),
  fc.record({ n: fc.integer({ min: 0, max: 9 }) }),
  fc.record({ n: fc.oneof(fc.record({ $gte: fc.integer({ min: 0, max: 9 }) }), fc.record({ $lt: fc.integer({ min: 0, max: 9 }) })) }),
  fc.record({ size: fc.integer({ min: 0, max: 3 }) }), // not indexed
  fc.record({ size: fc.record({ $exists: fc.boolean() }) }),
);
const filterArb: fc.Arbitrary<Filter> = fc.oneof(
  term,
  fc.tuple(term, term).map(([a, b]) => ({ $and: [a, b] })),
  fc.tuple(term, term, term).map(([a, b, c]) => ({ $and: [a, b, c] })),
  fc.tuple(term, term).map(([a, b]) => ({ $or: [a, b] })),
  fc.tuple(term, term).map(([a, b]) => ({ ...a, $not: b })),
);

describe('Collection payloads in SQLite', () => {
  it('filters, get and search payloads equal the model after any writes and reopens', () => {
    fc.assert(fc.property(fc.array(opArb, { minLength: 1, maxLength: 12 }), fc.array(filterArb, { minLength: 3, maxLength: 3 }), (ops, filters) => {
      const dir = mkdtempSync(join(tmpdir(), 'vdb-payload-'));
      dirs.push(dir);
      let c = Collection.open(dir, { ...OPTS, dim: DIM });
      const model = new Map<number, Payload | undefined>();
      const write = (points: Point[]) => { for (const p of points) model.set(p.id as number, p.payload ?? undefined); };
      const remove = (ids: number[]) => { for (const id of ids) model.delete(id); };
      try {
        for (const op of ops) {
          if (op.kind === 'upsert') { c.upsert(op.points); write(op.points); }
          else if (op.kind === 'delete') { c.delete(op.ids); remove(op.ids); }
          else if (op.kind === 'log') {
            const seq = c.appliedSeq;
            c.applyLog([{ seq: seq + 1, op: 'upsert', points: op.points }, { seq: seq + 2, op: 'delete', ids: op.ids }]);
            write(op.points);
            remove(op.ids);
          } else { c.close(); c = Collection.open(dir, OPTS); }
          expect(c.count()).toBe(model.size);
          for (const f of filters) {
            const test = compileFilter(f).test;
            const want = [...model].filter(([, p]) => test(p)).map(([id]) => id).sort((a, b) => a - b);
            const hits = c.search([0.5, 0, 0, 0], { k: 100, filter: f, exact: true, withPayload: true });
            expect(hits.map((h) => h.id as number).sort((a, b) => a - b)).toEqual(want);
            for (const h of hits) expect(h.payload).toEqual(model.get(h.id as number));
          }
          const ids = [...model.keys()];
          const got = c.get(ids, { withVector: false });
          expect(got.map((p) => p.id)).toEqual(ids);
          for (const p of got) expect(p.payload).toEqual(model.get(p.id as number));
        }
      } finally {
        c.close();
      }
    }), { seed: 11, numRuns: 150 });
  });

  it('a payload returned is frozen and a fresh read each time: changing it changes nothing stored', () => {
    const dir = mkdtempSync(join(tmpdir(), 'vdb-payload-'));
    dirs.push(dir);
    const c = Collection.open(dir, { ...OPTS, dim: DIM });
    c.upsert([{ id: 1, vector: [1, 0, 0, 0], payload: { color: 'red', tags: ['a'] } }]);
    const [p] = c.get([1]);
    expect(Object.isFrozen(p.payload)).toBe(true);
    expect(() => { (p.payload!.tags as string[]).push('b'); }).toThrow(TypeError);
    expect(c.search([1, 0, 0, 0], { k: 1, withPayload: true })[0].payload).toEqual({ color: 'red', tags: ['a'] });
    c.close();
  });
});
