// The embedded Collection: API, persistence, snapshot + replay, filters, errors.

import { describe, it, expect, afterEach } from 'vitest';
import fc from 'fast-check';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { Collection } from '../ts/collection.js';
import type { Point } from '../ts/collection.js';
import { clusteredData, mulberry32, row, expectVdbError, dist64 } from './helpers.js';

const dirs: string[] = [];
function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'vdb-coll-'));
  dirs.push(d);
  return d;
}
afterEach(() => {
  while (dirs.length) rmSync(dirs.pop()!, { recursive: true, force: true });
});

const DIM = 16;
const { data, queries } = clusteredData({ n: 3000, queries: 50, dim: DIM, clusters: 20, seed: 5 });
const pointsOf = (n: number, offset = 0): Point[] =>
  Array.from({ length: n }, (_, i) => ({
    id: (i + offset) % 3 === 0 ? `p${i + offset}` : i + offset,
    vector: Array.from(row(data, DIM, i)),
    payload: { bucket: (i + offset) % 1000, tag: (i + offset) % 2 ? 'odd' : 'even', nested: { v: i + offset } },
  }));

describe('Collection basics', () => {
  it('upserts, gets, counts, deletes and searches with true-metric scores', () => {
    const dir = tempDir();
    const c = Collection.open(dir, { name: 'c', dim: DIM, metric: 'l2' });
    const pts = pointsOf(500);
    expect(c.upsert(pts)).toEqual({ count: 500, seq: 1 });
    expect(c.count()).toBe(500);
    const got = c.get([pts[3].id, 'missing', pts[0].id]);
    expect(got.map((p) => p.id)).toEqual([pts[3].id, pts[0].id]);
    expect(Array.from(got[0].vector!)).toEqual(Array.from(Float32Array.from(pts[3].vector as number[])));
    expect(got[0].payload).toEqual(pts[3].payload);
    const hits = c.search(pts[7].vector, { k: 5, exact: true, withPayload: true });
    expect(hits[0].id).toBe(pts[7].id);
    expect(hits[0].score).toBe(0);
    expect(hits[0].payload).toEqual(pts[7].payload);
    for (const h of hits) {
      const p = pts.find((x) => x.id === h.id)!;
      expect(h.score).toBeCloseTo(Math.sqrt(dist64('l2', p.vector as number[], pts[7].vector as number[])), 3);
    }
    expect(c.delete([pts[7].id, 'nope'])).toEqual({ count: 1, seq: 2 });
    expect(c.count()).toBe(499);
    expect(c.search(pts[7].vector, { k: 5, exact: true }).map((h) => h.id)).not.toContain(pts[7].id);
    c.close();
  });

  it('replacing a point replaces its vector in the index and its payload', () => {
    const c = Collection.open(tempDir(), { name: 'c', dim: DIM });
    c.upsert(pointsOf(100));
    const v = Array.from(row(data, DIM, 2000));
    c.upsert([{ id: 5, vector: v, payload: { new: true } }]);
    expect(c.count()).toBe(100);
    const hit = c.search(v, { k: 1, withPayload: true })[0];
    expect(hit).toEqual({ id: 5, score: 0, payload: { new: true } });
    c.close();
  });

  it('reports cosine similarity and inner product as scores', () => {
    const cos = Collection.open(tempDir(), { name: 'cos', dim: 2, metric: 'cosine' });
    cos.upsert([{ id: 1, vector: [1, 0] }, { id: 2, vector: [0, 3] }]);
    const [a, b] = cos.search([2, 2], { k: 2, exact: true });
    expect(a.score).toBeCloseTo(Math.SQRT1_2, 5);
    expect(b.score).toBeCloseTo(Math.SQRT1_2, 5);
    cos.close();
    const ip = Collection.open(tempDir(), { name: 'ip', dim: 2, metric: 'ip' });
    ip.upsert([{ id: 1, vector: [1, 2] }, { id: 2, vector: [3, -1] }]);
    expect(ip.search([1, 1], { k: 2, exact: true })).toEqual([{ id: 1, score: 3 }, { id: 2, score: 2 }]);
    ip.close();
  });

  it('scrolls in id order (integers, then strings), with a filter', () => {
    const c = Collection.open(tempDir(), { name: 'c', dim: DIM });
    const pts = pointsOf(60);
    c.upsert(pts);
    const seen: (string | number)[] = [];
    let after: string | number | undefined;
    for (;;) {
      const page = c.scroll({ after, limit: 7 });
      seen.push(...page.points.map((p) => p.id));
      if (page.next === undefined) break;
      after = page.next;
    }
    const ints = pts.map((p) => p.id).filter((id) => typeof id === 'number').sort((a, b) => (a as number) - (b as number));
    const strs = pts.map((p) => p.id).filter((id) => typeof id === 'string').sort();
    expect(seen).toEqual([...ints, ...strs]);
    const odd = c.scroll({ limit: 1000, filter: { tag: 'odd' } }).points;
    expect(odd.length).toBe(30);
    expect(odd.every((p) => (p.payload as { tag: string }).tag === 'odd')).toBe(true);
    c.close();
  });
});

describe('Collection persistence', () => {
  it('reopens from its snapshot plus newer changes with the same results as a full rebuild', () => {
    const dir = tempDir();
    let c = Collection.open(dir, { name: 'c', dim: DIM, hnsw: { m: 8, efConstruction: 64 } });
    c.upsert(pointsOf(1500));
    c.snapshot();
    c.upsert(pointsOf(400, 1500)); // after the snapshot
    c.delete([10, 11, 'p12', 2000]);
    c.upsert([{ id: 13, vector: Array.from(row(data, DIM, 2500)), payload: { moved: 1 } }]);
    const expected = Array.from({ length: 50 }, (_, q) => c.search(row(queries, DIM, q), { k: 10, exact: true }));
    c.close(); // snapshots again
    // Reopen from the snapshot…
    c = Collection.open(dir, { name: 'c' });
    expect(c.count()).toBe(1500 + 400 - 3); // 2000 never existed
    const fromSnapshot = Array.from({ length: 50 }, (_, q) => c.search(row(queries, DIM, q), { k: 10, exact: true }));
    const annSnap = Array.from({ length: 50 }, (_, q) => c.search(row(queries, DIM, q), { k: 10, ef: 32 }));
    c.close();
    // …and from a replay of changes newer than an older snapshot…
    const db = new Database(join(dir, 'vdb.sqlite'));
    db.exec('DELETE FROM snapshots; DELETE FROM snapshot_parts;');
    db.close();
    c = Collection.open(dir, { name: 'c' });
    const rebuilt = Array.from({ length: 50 }, (_, q) => c.search(row(queries, DIM, q), { k: 10, exact: true }));
    const annRebuilt = Array.from({ length: 50 }, (_, q) => c.search(row(queries, DIM, q), { k: 10, ef: 32 }));
    expect(c.get([13])[0].payload).toEqual({ moved: 1 });
    c.close();
    expect(fromSnapshot).toEqual(expected);
    expect(rebuilt).toEqual(expected);
    // The graphs differ (one was built in a different order) but both find the truth.
    const recall = (ann: typeof expected) => ann.reduce((s, hits, q) => s + hits.filter((h) => expected[q].some((e) => e.id === h.id)).length, 0) / 500;
    expect(recall(annSnap)).toBeGreaterThanOrEqual(0.95);
    expect(recall(annRebuilt)).toBeGreaterThanOrEqual(0.95);
  });

  it('replays from a snapshot taken before deletes and re-inserts of the same ids', () => {
    const dir = tempDir();
    let c = Collection.open(dir, { name: 'c', dim: DIM });
    c.upsert(pointsOf(300));
    c.snapshot();
    c.delete([1, 2, 'p3']);
    c.upsert([{ id: 2, vector: Array.from(row(data, DIM, 2900)) }]);
    c.upsert([{ id: 'fresh', vector: Array.from(row(data, DIM, 2901)) }]);
    c.delete(['fresh']);
    // Simulate a crash before the closing snapshot: close without writing one.
    (c as unknown as { snapshot: () => void }).snapshot = () => {};
    c.close();
    c = Collection.open(dir, { name: 'c' });
    expect(c.count()).toBe(298);
    expect(c.get([1, 'p3', 'fresh'])).toEqual([]);
    expect(c.search(row(data, DIM, 2900), { k: 1, exact: true })[0]).toEqual({ id: 2, score: 0 });
    c.close();
  });

  it('close() writes a snapshot even while a background one is still being written', async () => {
    const dir = tempDir();
    let c = Collection.open(dir, { name: 'c', dim: DIM, snapshotChanges: 100 });
    for (let b = 0; b < 10; b++) {
      c.upsert(pointsOf(150, b * 150));
      await new Promise((r) => setImmediate(r));
    }
    c.close();
    const db = new Database(join(dir, 'vdb.sqlite'), { readonly: true });
    const snap = db.prepare('SELECT seq FROM snapshots WHERE collection = ?').get('c') as { seq: number };
    db.close();
    expect(snap.seq).toBe(10);
    c = Collection.open(dir, { name: 'c' });
    expect(c.count()).toBe(1500);
    c.close();
  });

  it('keeps the schema and refuses a mismatch or an unknown collection', () => {
    const dir = tempDir();
    Collection.open(dir, { name: 'c', dim: DIM, metric: 'cosine' }).close();
    expectVdbError(() => Collection.open(dir, { name: 'c', dim: DIM + 1 }), 'SCHEMA_MISMATCH');
    expectVdbError(() => Collection.open(dir, { name: 'c', metric: 'l2' }), 'SCHEMA_MISMATCH');
    expectVdbError(() => Collection.open(dir, { name: 'other' }), 'COLLECTION_NOT_FOUND');
    const c = Collection.open(dir, { name: 'c' });
    expect(c.metric).toBe('cosine');
    c.close();
  });

  it('a closed collection refuses every call', () => {
    const c = Collection.open(tempDir(), { name: 'c', dim: 2 });
    c.close();
    expectVdbError(() => c.count(), 'CLOSED');
    expectVdbError(() => c.upsert([{ id: 1, vector: [1, 2] }]), 'CLOSED');
    expectVdbError(() => c.search([1, 2]), 'CLOSED');
  });
});

describe('Collection log apply and copies', () => {
  it('applyLog applies a batch in order in one commit, skips what was applied, and equals one call per entry', () => {
    const pts = pointsOf(300);
    const entries = [
      { seq: 1, op: 'upsert' as const, points: pts.slice(0, 200) },
      { seq: 2, op: 'delete' as const, ids: pts.slice(0, 50).map((p) => p.id) },
      { seq: 3, op: 'upsert' as const, points: pts.slice(100, 300) },
    ];
    const a = Collection.open(tempDir(), { name: 'a', dim: DIM });
    a.applyLog(entries.slice(0, 2));
    a.applyLog(entries);
    const b = Collection.open(tempDir(), { name: 'b', dim: DIM });
    for (const e of entries) {
      if (e.op === 'upsert') b.upsert(e.points, { seq: e.seq }); else b.delete(e.ids, { seq: e.seq });
    }
    expect(a.appliedSeq).toBe(3);
    expect(a.count()).toBe(250);
    for (const q of [0, 1, 2]) {
      expect(a.search(row(queries, DIM, q), { k: 10 })).toEqual(b.search(row(queries, DIM, q), { k: 10 }));
    }
  });

  it('a refused entry in a batch is skipped and the rest of the batch applies in the same commit', () => {
    const dir = tempDir();
    const c = Collection.open(dir, { name: 'c', dim: DIM });
    c.applyLog([{ seq: 1, op: 'upsert', points: pointsOf(10) }]);
    c.applyLog([
      { seq: 2, op: 'upsert', points: pointsOf(10, 10) },
      { seq: 3, op: 'upsert', points: [{ id: 'bad', vector: [1, 2] }] },
      { seq: 4, op: 'delete', ids: ['p0'] },
    ]);
    c.close();
    const again = Collection.open(dir, { name: 'c' });
    expect(again.appliedSeq).toBe(4);
    expect(again.count()).toBe(19);
    expect(again.skippedEntries().map((e) => [e.seq, e.reason.split(':')[0]])).toEqual([[3, 'DIMENSION_MISMATCH']]);
  });

  it('detach drops ids and restarts the sequence at 0; the collection then follows a new log and reopens the same', () => {
    const dir = tempDir();
    const c = Collection.open(dir, { name: 'd', dim: DIM, snapshotChanges: 100 });
    c.applyLog([{ seq: 1, op: 'upsert', points: pointsOf(400) }, { seq: 2, op: 'delete', ids: ['p3'] }]);
    c.snapshot();
    c.applyLog([{ seq: 3, op: 'upsert', points: pointsOf(100, 400) }]);
    const drop = c.ids().filter((id) => typeof id === 'number' && id % 2 === 0);
    c.detach(drop);
    expect(c.appliedSeq).toBe(0);
    expect(c.count()).toBe(499 - drop.length);
    c.applyLog([{ seq: 1, op: 'upsert', points: pointsOf(10, 1000) }, { seq: 2, op: 'delete', ids: [1001] }]);
    expect(c.appliedSeq).toBe(2);
    const want = [0, 1, 2].map((q) => c.search(row(queries, DIM, q), { k: 10, exact: true }));
    const n = c.count();
    c.close();
    const again = Collection.open(dir, { name: 'd' });
    expect(again.appliedSeq).toBe(2);
    expect(again.count()).toBe(n);
    expect(again.get([1000, 1001, drop[0]]).map((p) => p.id)).toEqual([1000]);
    expect([0, 1, 2].map((q) => again.search(row(queries, DIM, q), { k: 10, exact: true }))).toEqual(want);
  });

  it('an exported copy imported elsewhere opens with the same sequence, points and search results (graph included)', () => {
    const src = Collection.open(tempDir(), { name: 's', dim: DIM });
    src.upsert(pointsOf(1500));
    src.delete(pointsOf(100).map((p) => p.id));
    src.upsert(pointsOf(200, 1500));
    const file = join(tempDir(), 'copy.sqlite');
    const seq = src.exportTo(file);
    expect(seq).toBe(3);
    const dir = tempDir();
    const stale = Collection.open(dir, { name: 's', dim: DIM });
    stale.upsert(pointsOf(5, 9000));
    stale.close();
    Collection.importFrom(dir, 's', file);
    expect(Collection.storedSeq(dir, 's')).toBe(3);
    const copy = Collection.open(dir, { name: 's' });
    expect(copy.appliedSeq).toBe(3);
    expect(copy.count()).toBe(src.count());
    expect(copy.get(['p9000'])).toEqual([]);
    for (let q = 0; q < 20; q++) {
      expect(copy.search(row(queries, DIM, q), { k: 10, ef: 20 })).toEqual(src.search(row(queries, DIM, q), { k: 10, ef: 20 }));
    }
    expectVdbError(() => Collection.importFrom(dir, 's', file), 'LOCKED');
    expect(Collection.storedSeq(dir, 'none')).toBe(0);
  });
});

describe('Collection filters', () => {
  const N = 3000;
  const dir = mkdtempSync(join(tmpdir(), 'vdb-filt-'));
  const rand = mulberry32(77);
  const buckets = Array.from({ length: N }, () => Math.floor(rand() * 1000));
  const c = Collection.open(dir, { name: 'f', dim: DIM, indexes: ['bucket'] });
  c.upsert(Array.from({ length: N }, (_, i) => ({ id: i, vector: row(data, DIM, i), payload: { bucket: buckets[i], even: i % 2 === 0 } })));

  const cases: [string, object][] = [
    ['50 %', { bucket: { $lt: 500 } }],
    ['10 %', { bucket: { $lt: 100 } }],
    ['1 %', { bucket: { $in: Array.from({ length: 10 }, (_, i) => i * 7) } }],
    ['0.1 %', { bucket: 3 }],
    ['10 % (no index)', { $and: [{ even: true }, { bucket: { $gte: 800 } }] }],
  ];
  for (const [name, filter] of cases) {
    it(`only matching points, recall@10 ≥ 0.95 against the exact filtered result at ${name}`, () => {
      let hits = 0, total = 0;
      for (let q = 0; q < 50; q++) {
        const exact = c.search(row(queries, DIM, q), { k: 10, filter, exact: true, withPayload: true });
        const ann = c.search(row(queries, DIM, q), { k: 10, filter, withPayload: true });
        for (const h of [...exact, ...ann]) expect(c.get([h.id])[0].payload).toEqual(h.payload);
        const ok = new Set(exact.map((h) => h.id));
        hits += ann.filter((h) => ok.has(h.id)).length;
        total += exact.length;
        expect(ann.length).toBe(exact.length);
      }
      expect(hits / total).toBeGreaterThanOrEqual(0.95);
    });
  }

  it('filtered results equal a brute force over payloads and vectors', () => {
    const filter = { bucket: { $gte: 100, $lt: 300 }, even: false };
    const q = row(queries, DIM, 1);
    const want = Array.from({ length: N }, (_, i) => i)
      .filter((i) => buckets[i] >= 100 && buckets[i] < 300 && i % 2 === 1)
      .map((i) => ({ id: i, d: dist64('l2', row(data, DIM, i), q) }))
      .sort((a, b) => a.d - b.d || a.id - b.id)
      .slice(0, 10);
    const got = c.search(q, { k: 10, filter, exact: true });
    expect(got.map((h) => h.id)).toEqual(want.map((w) => w.id));
  });

  it('a malformed filter is a coded error and the collection keeps working', () => {
    expectVdbError(() => c.search(row(queries, DIM, 0), { filter: { bucket: { $bogus: 1 } } }), 'INVALID_FILTER');
    expect(c.search(row(queries, DIM, 0), { k: 3 }).length).toBe(3);
  });
});

describe('Collection payload indexes', () => {
  it('an indexed field gives exactly the results of an unindexed one, for eq, $in and ranges, across writes', () => {
    const dir = tempDir();
    const plain = Collection.open(dir, { name: 'plain', dim: DIM });
    const indexed = Collection.open(dir, { name: 'indexed', dim: DIM, indexes: ['v', 'tag'] });
    const rand = mulberry32(9);
    const tags = ['a', 'b', 'c', 'dd', 'e'];
    const payload = () => {
      const r = rand();
      if (r < 0.1) return {};
      if (r < 0.2) return { v: [Math.floor(rand() * 50), Math.floor(rand() * 50)], tag: tags[Math.floor(rand() * 5)] };
      if (r < 0.25) return { v: String(Math.floor(rand() * 50)), tag: null };
      return { v: Math.floor(rand() * 50) + (rand() < 0.2 ? 0.5 : 0), tag: tags[Math.floor(rand() * 5)] };
    };
    const pts = Array.from({ length: 800 }, (_, i) => ({ id: i, vector: row(data, DIM, i), payload: payload() }));
    for (const c of [plain, indexed]) c.upsert(pts);
    const again = Array.from({ length: 100 }, (_, i) => ({ id: i * 3, vector: row(data, DIM, 1000 + i), payload: payload() }));
    for (const c of [plain, indexed]) { c.upsert(again); c.delete(Array.from({ length: 50 }, (_, i) => i * 7)); }
    const bound = fc.oneof(fc.integer({ min: -5, max: 55 }), fc.double({ min: -5, max: 55, noNaN: true }), fc.constantFrom('1', '25', '4', 'b', 'dd'));
    const cond = fc.oneof(
      fc.record({ v: fc.integer({ min: 0, max: 50 }) }),
      fc.record({ v: fc.record({ $in: fc.array(fc.oneof(fc.integer({ min: 0, max: 50 }), fc.constantFrom('3', 'x')), { maxLength: 4 }) }) }),
      fc.record({ v: fc.oneof(fc.record({ $gt: bound }), fc.record({ $gte: bound }), fc.record({ $lt: bound }), fc.record({ $lte: bound }), fc.record({ $gt: bound, $lt: bound })) }),
      fc.record({ tag: fc.oneof(fc.constantFrom(...tags), fc.record({ $gte: fc.constantFrom('b', 'c', 'd') })) }),
    );
    const filter = fc.oneof(cond, fc.tuple(cond, cond).map(([a, b]) => ({ $and: [a, b] })));
    fc.assert(fc.property(filter, fc.integer({ min: 0, max: 49 }), (f, q) => {
      const a = plain.search(row(queries, DIM, q), { k: 20, filter: f, exact: true });
      const b = indexed.search(row(queries, DIM, q), { k: 20, filter: f, exact: true });
      expect(b).toEqual(a);
      const sa = plain.scroll({ limit: 10_000, filter: f }).points.map((p) => p.id);
      expect(sa.length).toBeGreaterThanOrEqual(a.length);
    }), { seed: 42, numRuns: 300 });
    plain.close();
    indexed.close();
  });
});

describe('Collection bad input', () => {
  it('rejects each bad input with its code, stores nothing from a failed batch, keeps working', () => {
    const c = Collection.open(tempDir(), { name: 'c', dim: 3, metric: 'cosine' });
    c.upsert([{ id: 1, vector: [1, 2, 3], payload: { a: 1 } }]);
    const good = { id: 2, vector: [3, 2, 1] };
    const bad: [unknown, string][] = [
      [{ id: 3, vector: [1, 2] }, 'DIMENSION_MISMATCH'],
      [{ id: 3, vector: [1, NaN, 2] }, 'INVALID_VECTOR'],
      [{ id: 3, vector: [1, Infinity, 2] }, 'INVALID_VECTOR'],
      [{ id: 3, vector: [1e39, 1, 2] }, 'INVALID_VECTOR'],
      [{ id: 3, vector: [0, 0, 0] }, 'INVALID_VECTOR'],
      [{ id: 3, vector: 'abc' }, 'INVALID_VECTOR'],
      [{ id: '', vector: [1, 2, 3] }, 'INVALID_ID'],
      [{ id: 'x'.repeat(513), vector: [1, 2, 3] }, 'INVALID_ID'],
      [{ id: 1.5, vector: [1, 2, 3] }, 'INVALID_ID'],
      [{ id: null, vector: [1, 2, 3] }, 'INVALID_ID'],
      [{ id: 3, vector: [1, 2, 3], payload: { big: 'x'.repeat(70_000) } }, 'PAYLOAD_TOO_LARGE'],
      [{ id: 3, vector: [1, 2, 3], payload: [1, 2] }, 'INVALID_PAYLOAD'],
      [{ id: 3, vector: [1, 2, 3], payload: { n: NaN } }, 'INVALID_PAYLOAD'],
      [{ id: 3, vector: [1, 2, 3], payload: { d: new Date() } }, 'INVALID_PAYLOAD'],
    ];
    for (const [p, code] of bad) {
      expectVdbError(() => c.upsert([good, p as Point]), code);
      expect(c.count()).toBe(1);
      expect(c.get([2])).toEqual([]);
    }
    expectVdbError(() => c.search([1, 2, 3], { k: 0 }), 'INVALID_K');
    expectVdbError(() => c.search([1, 2, 3], { k: 10_001 }), 'INVALID_K');
    expectVdbError(() => c.search([1, 2], { k: 1 }), 'DIMENSION_MISMATCH');
    expectVdbError(() => c.delete([{}] as never), 'INVALID_ID');
    expect(c.upsert([good]).count).toBe(1);
    expect(c.search([3, 2, 1], { k: 1 })[0].id).toBe(2);
    c.close();
  });

  it('a second open of the same directory in this process shares it; invalid names are refused', () => {
    const dir = tempDir();
    const a = Collection.open(dir, { name: 'a', dim: 2 });
    expectVdbError(() => Collection.open(dir, { name: 'a' }), 'LOCKED');
    const b = Collection.open(dir, { name: 'b', dim: 3 });
    a.upsert([{ id: 1, vector: [1, 1] }]);
    b.upsert([{ id: 1, vector: [1, 1, 1] }]);
    a.close();
    expect(b.count()).toBe(1);
    b.close();
    expectVdbError(() => Collection.open(dir, { name: 'no spaces', dim: 2 }), 'INVALID_ARGUMENT');
  });
});

describe('applyLog: entries the collection refuses are skipped and recorded, storage faults are not', () => {
  const vec = (x: number) => [x, 1, 2, 3];
  const open = (dir: string, name = 'log') => Collection.open(dir, { name, dim: 4, metric: 'cosine' });

  it('a refused entry is recorded with its reason, its sequence counts as applied, and the entries after it apply', () => {
    const dir = tempDir();
    const c = open(dir);
    const skippedNow = c.applyLog([
      { seq: 1, op: 'upsert', points: [{ id: 'a', vector: vec(1) }] },
      { seq: 2, op: 'upsert', points: [{ id: 'z', vector: [0, 0, 0, 0] }] },
      { seq: 3, op: 'skip', reason: 'BAD_REQUEST: unreadable' },
      { seq: 4, op: 'delete', ids: [{} as unknown as string] },
      { seq: 5, op: 'rename' } as unknown as { seq: number; op: 'skip'; reason: string },
      { seq: 6, op: 'upsert', points: [{ id: 'b', vector: vec(2) }] },
    ]);
    expect(c.appliedSeq).toBe(6);
    expect(c.ids().sort()).toEqual(['a', 'b']);
    expect(skippedNow.map((x) => x.seq)).toEqual([2, 3, 4, 5]);
    expect(c.skippedCount).toBe(4);
    const skipped = c.skippedEntries();
    expect(skipped.map((s) => s.seq)).toEqual([5, 4, 3, 2]);
    expect(skipped.find((s) => s.seq === 2)!.reason).toMatch(/^INVALID_VECTOR: .*zero vector/);
    expect(skipped.find((s) => s.seq === 4)!.reason).toMatch(/^INVALID_ID/);
    // A replay of the same entries changes nothing.
    expect(c.applyLog([{ seq: 2, op: 'upsert', points: [{ id: 'z', vector: [0, 0, 0, 0] }] }, { seq: 6, op: 'delete', ids: ['b'] }])).toEqual([]);
    expect(c.skippedCount).toBe(4);
    expect(c.ids().sort()).toEqual(['a', 'b']);

    // The record survives a reopen and travels with an exported copy.
    c.close();
    const again = open(dir);
    expect(again.skippedCount).toBe(4);
    const file = join(dir, 'copy.sqlite');
    expect(again.exportTo(file)).toBe(6);
    const other = tempDir();
    Collection.importFrom(other, 'log', file);
    const copy = open(other);
    expect(copy.skippedEntries()).toEqual(again.skippedEntries());
    expect(copy.appliedSeq).toBe(6);
    copy.close();
    again.close();
  });

  it('a storage fault (the database cannot grow) fails the whole batch instead of skipping an entry', () => {
    const dir = tempDir();
    const c = open(dir);
    c.applyLog([{ seq: 1, op: 'upsert', points: [{ id: 'a', vector: vec(1) }] }]);
    // The collection's own connection: it is shared by every collection of the directory in this process.
    const probe = Collection.open(dir, { name: 'probe', dim: 4, metric: 'l2' });
    const store = (probe as unknown as { store: { db: { pragma(s: string): unknown } } }).store;
    const pages = (store.db.pragma('page_count', { simple: true } as never) as number);
    store.db.pragma(`max_page_count = ${pages + 2}`);
    const big = Array.from({ length: 500 }, (_, i) => ({ id: `p${i}`, vector: vec(i + 1), payload: { pad: 'x'.repeat(2000) } }));
    expect(() => c.applyLog([{ seq: 2, op: 'upsert', points: big }, { seq: 3, op: 'upsert', points: [{ id: 'b', vector: vec(2) }] }])).toThrow(/full/i);
    store.db.pragma('max_page_count = 1073741823');
    probe.close();
    const reopened = open(dir);
    expect(reopened.appliedSeq).toBe(1);
    expect(reopened.skippedCount).toBe(0);
    expect(reopened.ids()).toEqual(['a']);
    reopened.close();
  });
});
