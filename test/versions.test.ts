// Versioned writes on the embedded Collection (docs/cluster.md, "Points that
// move"): with placement by vector or label, one write request becomes an
// upsert on the shard that places each point and deletes on every other
// shard, all with the request's version. Whatever order each shard receives
// its entries in, every id must end on exactly one shard with the write of the
// highest version, or on none when that write is a delete.

import { describe, it, expect, afterEach } from 'vitest';
import fc from 'fast-check';
import Database from 'better-sqlite3';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Collection } from '../ts/collection.js';
import type { LogEntry, PointId } from '../ts/collection.js';
import { VdbError, ErrorCode } from '../ts/errors.js';

const dirs: string[] = [];
const tmp = () => {
  const d = mkdtempSync(join(tmpdir(), 'vdb-ver-'));
  dirs.push(d);
  return d;
};
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** One write request: upserts of distinct ids to the shards that place them, or deletes. */
type Write = { version: number } & ({ op: 'upsert'; points: { id: number; shard: number }[] } | { op: 'delete'; ids: number[] });

const vectorOf = (id: number, version: number) => [id, version];

/** A log entry before the log gives it a sequence. */
type Unnumbered = LogEntry extends infer E ? (E extends LogEntry ? Omit<E, 'seq'> : never) : never;

/** The entries each shard's log receives for one write, as the coordinator plans them. */
function route(w: Write, shards: number): Unnumbered[][] {
  const out: Unnumbered[][] = Array.from({ length: shards }, () => []);
  if (w.op === 'delete') {
    for (let s = 0; s < shards; s++) out[s].push({ op: 'delete', ids: w.ids, version: w.version });
    return out;
  }
  for (let s = 0; s < shards; s++) {
    const here = w.points.filter((p) => p.shard === s);
    const away = w.points.filter((p) => p.shard !== s).map((p) => p.id);
    if (away.length) out[s].push({ op: 'delete', ids: away, version: w.version });
    if (here.length) out[s].push({ op: 'upsert', points: here.map((p) => ({ id: p.id, vector: vectorOf(p.id, w.version), payload: { v: w.version } })), version: w.version });
  }
  return out;
}

/** For each id, the last write (by version) that touched it: the shard it must be on, or none. */
function expected(writes: Write[]): Map<number, { shard: number; version: number } | null> {
  const out = new Map<number, { shard: number; version: number } | null>();
  for (const w of [...writes].sort((a, b) => a.version - b.version)) {
    if (w.op === 'delete') for (const id of w.ids) out.set(id, null);
    else for (const p of w.points) out.set(p.id, { shard: p.shard, version: w.version });
  }
  return out;
}

/** Where each id is, shard by shard, with the version its vector and payload hold. */
function state(cols: Collection[], ids: number[]): Map<number, { shard: number; version: number }[]> {
  const out = new Map<number, { shard: number; version: number }[]>();
  for (const id of ids) out.set(id, []);
  cols.forEach((c, shard) => {
    for (const p of c.get(ids, { withVector: true })) {
      const version = (p.payload as { v: number }).v;
      expect(Array.from(p.vector!)).toEqual(vectorOf(p.id as number, version));
      out.get(p.id as number)!.push({ shard, version });
    }
  });
  return out;
}

function checkFinal(cols: Collection[], writes: Write[], ids: number[]): void {
  const want = expected(writes);
  const got = state(cols, ids);
  for (const id of ids) {
    const w = want.get(id);
    expect({ id, where: got.get(id) }).toEqual({ id, where: w ? [w] : [] });
  }
}

const SHARDS = 3;
const IDS = [1, 2, 3, 4, 5];

const writeArb = fc.oneof(
  fc.record({
    op: fc.constant('upsert' as const),
    points: fc.uniqueArray(fc.record({ id: fc.constantFrom(...IDS), shard: fc.integer({ min: 0, max: SHARDS - 1 }) }), { selector: (p) => p.id, minLength: 1, maxLength: 3 }),
  }),
  fc.record({ op: fc.constant('delete' as const), ids: fc.uniqueArray(fc.constantFrom(...IDS), { minLength: 1, maxLength: 3 }) }),
);

/** Writes with distinct versions (not in version order), and a delivery order key per entry. */
const scenario = fc.record({
  writes: fc.array(writeArb, { minLength: 1, maxLength: 14 }).chain((ws) =>
    fc.shuffledSubarray(Array.from({ length: ws.length * 3 }, (_, i) => i + 1), { minLength: ws.length, maxLength: ws.length })
      .map((versions) => ws.map((w, i) => ({ ...w, version: versions[i] }) as Write))),
  order: fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { minLength: 200, maxLength: 200 }),
  replay: fc.array(fc.nat(), { maxLength: 10 }),
});

function openShards(dir: string): Collection[] {
  return Array.from({ length: SHARDS }, (_, s) => Collection.open(dir, { name: `s${s}`, dim: 2 }));
}

/** Each shard's log: its entries in an arbitrary order of its own, numbered
 * from 1. With `horizon`, each log also gets a horizon entry somewhere after
 * every entry below it, as the cluster's fence guarantees. */
function logs(writes: Write[], order: number[], horizon?: number): LogEntry[][] {
  const perShard: Unnumbered[][] = Array.from({ length: SHARDS }, () => []);
  for (const w of writes) route(w, SHARDS).forEach((list, s) => perShard[s].push(...list));
  let k = 0;
  return perShard.map((list) => {
    const sorted = list.map((e) => ({ e, key: order[k++ % order.length] })).sort((a, b) => a.key - b.key).map(({ e }) => e);
    if (horizon !== undefined) {
      const after = sorted.reduce((last, e, i) => (e.version! < horizon ? i + 1 : last), 0);
      const at = after + Math.floor(order[k++ % order.length] * (sorted.length - after + 1));
      sorted.splice(at, 0, { op: 'horizon', version: horizon });
    }
    return sorted.map((e, i) => ({ ...e, seq: i + 1 }) as LogEntry);
  });
}

describe('versioned writes across shards', () => {
  it('any per-shard order of the entries leaves each id on one shard with its last write, or on none after a delete', () => {
    fc.assert(fc.property(scenario, ({ writes, order, replay }) => {
      const dir = tmp();
      const cols = openShards(dir);
      try {
        const shardLogs = logs(writes, order);
        // Entries one by one on some shards, as one batch on others: the same rules either way.
        shardLogs.forEach((log, s) => {
          if (s % 2 === 0) cols[s].applyLog(log);
          else for (const e of log) cols[s].applyLog([e]);
        });
        checkFinal(cols, writes, IDS);
        // Reopened (recovered from storage), then replaying entries, at their
        // own sequences or again at later ones (a write appended twice), changes nothing.
        cols.forEach((c, s) => { c.close(); cols[s] = Collection.open(dir, { name: `s${s}` }); });
        checkFinal(cols, writes, IDS);
        shardLogs.forEach((log, s) => cols[s].applyLog(log));
        for (const r of replay) {
          const s = r % SHARDS;
          const log = shardLogs[s];
          if (log.length === 0) continue;
          cols[s].applyLog([{ ...log[r % log.length], seq: cols[s].appliedSeq + 1 }]);
        }
        checkFinal(cols, writes, IDS);
      } finally {
        for (const c of cols) c.close();
      }
    }), { numRuns: 150 });
  });

  it('a horizon appended after every entry below it changes no outcome, drops the tombstones below it, and settles older upserts', () => {
    fc.assert(fc.property(scenario, fc.double({ min: 0, max: 1, noNaN: true }), ({ writes, order }, cut) => {
      const dir = tmp();
      const cols = openShards(dir);
      try {
        const versions = writes.map((w) => w.version).sort((a, b) => a - b);
        const horizon = versions[Math.floor(cut * versions.length)] ?? versions[versions.length - 1] + 1;
        const shardLogs = logs(writes, order, horizon);
        shardLogs.forEach((log, s) => cols[s].applyLog(log));
        checkFinal(cols, writes, IDS);
        // A horizon above every version: no tombstone is left, and no stale upsert comes back.
        const top = versions[versions.length - 1] + 1;
        for (const c of cols) c.applyLog([{ op: 'horizon', version: top, seq: c.appliedSeq + 1 }]);
        expect(cols.map((c) => c.versionTombstones)).toEqual(cols.map(() => 0));
        shardLogs.forEach((log, s) => {
          for (const e of log) if (e.op === 'upsert') cols[s].applyLog([{ ...e, seq: cols[s].appliedSeq + 1 }]);
        });
        checkFinal(cols, writes, IDS);
        // The horizon outlives a reopen and a copy.
        cols.forEach((c, s) => { c.close(); cols[s] = Collection.open(dir, { name: `s${s}` }); });
        const to = tmp();
        cols[0].exportTo(join(to, 'copy.sqlite'));
        Collection.importFrom(to, 'copy', join(to, 'copy.sqlite'), 's0');
        const copy = Collection.open(to, { name: 'copy' });
        for (const c of [cols[0], copy]) {
          const before = c.get(IDS).length;
          c.upsert(IDS.map((id) => ({ id, vector: [0, 0], payload: { v: 0 } })), { version: top - 1 });
          expect(c.get(IDS).length).toBe(before);
        }
        copy.close();
      } finally {
        for (const c of cols) c.close();
      }
    }), { numRuns: 60 });
  });

  it('an export and import keeps versions and tombstones: older entries still lose on the copy', () => {
    fc.assert(fc.property(scenario, ({ writes, order }) => {
      const dir = tmp();
      const cols = openShards(dir);
      const shardLogs = logs(writes, order);
      const sorted = [...writes].sort((a, b) => a.version - b.version);
      // The newer half of the writes first, exported, then the older half applied to the copies.
      const cut = sorted[Math.floor(sorted.length / 2)].version;
      const copies: Collection[] = [];
      try {
        shardLogs.forEach((log, s) => cols[s].applyLog(log.filter((e) => e.version! >= cut).map((e, i) => ({ ...e, seq: i + 1 }))));
        const tombs = cols.map((c) => c.versionTombstones);
        const to = tmp();
        cols.forEach((c, s) => {
          const file = join(to, `copy${s}.sqlite`);
          c.exportTo(file);
          Collection.importFrom(to, `s${s}`, file);
        });
        for (let s = 0; s < SHARDS; s++) copies.push(Collection.open(to, { name: `s${s}` }));
        expect(copies.map((c) => c.versionTombstones)).toEqual(tombs);
        shardLogs.forEach((log, s) => {
          const older = log.filter((e) => e.version! < cut);
          copies[s].applyLog(older.map((e, i) => ({ ...e, seq: copies[s].appliedSeq + i + 1 })));
        });
        checkFinal(copies, writes, IDS);
      } finally {
        for (const c of [...cols, ...copies]) c.close();
      }
    }), { numRuns: 60 });
  });
});

describe('versioned writes on one collection', () => {
  const open = () => Collection.open(tmp(), { name: 'c', dim: 2 });

  it('an older upsert after a newer delete of an id never held stays deleted', () => {
    const c = open();
    expect(c.delete([7], { version: 10 }).count).toBe(0);
    expect(c.versionTombstones).toBe(1);
    expect(c.upsert([{ id: 7, vector: [1, 1] }], { version: 9 }).count).toBe(0);
    expect(c.get([7])).toEqual([]);
    expect(c.upsert([{ id: 7, vector: [2, 2] }], { version: 11 }).count).toBe(1);
    expect(c.versionTombstones).toBe(0); // superseded by the point's own version
    expect(Array.from(c.get([7])[0].vector!)).toEqual([2, 2]);
    c.close();
  });

  it('an unversioned write applies as it comes, as before versions', () => {
    const c = open();
    c.upsert([{ id: 1, vector: [1, 1] }], { version: 5 });
    c.upsert([{ id: 1, vector: [2, 2] }]);
    expect(Array.from(c.get([1])[0].vector!)).toEqual([2, 2]);
    expect(c.delete([1]).count).toBe(1);
    expect(c.count()).toBe(0);
    c.close();
  });

  it('a write whose versions all lose still records its sequence', () => {
    const c = open();
    c.applyLog([{ seq: 1, op: 'upsert', points: [{ id: 1, vector: [1, 1] }], version: 5 }]);
    c.applyLog([{ seq: 2, op: 'upsert', points: [{ id: 1, vector: [0, 0] }], version: 4 }]);
    expect(c.appliedSeq).toBe(2);
    expect(Array.from(c.get([1])[0].vector!)).toEqual([1, 1]);
    c.close();
    const again = Collection.open(dirs[dirs.length - 1], { name: 'c' });
    expect(again.appliedSeq).toBe(2);
    again.close();
  });

  it('a bad version is INVALID_ARGUMENT, and nothing is written', () => {
    const c = open();
    for (const version of [-1, 1.5, Number.NaN, '3' as unknown as number]) {
      const e = (() => { try { c.upsert([{ id: 1, vector: [1, 1] }], { version }); } catch (x) { return x; } })();
      expect(e).toBeInstanceOf(VdbError);
      expect((e as VdbError).code).toBe(ErrorCode.INVALID_ARGUMENT);
      expect(() => c.delete([1], { version })).toThrow(VdbError);
    }
    expect(c.count()).toBe(0);
    c.close();
  });

  it('a database written before versions opens with version 0 everywhere and then takes versioned writes', () => {
    const dir = tmp();
    const c = Collection.open(dir, { name: 'c', dim: 2 });
    c.upsert([{ id: 1, vector: [1, 1] }, { id: 2, vector: [2, 2] }]);
    c.close();
    const db = new Database(join(dir, 'vdb.sqlite'));
    db.exec('ALTER TABLE points DROP COLUMN version; DROP TABLE version_tombstones;');
    db.close();
    const again = Collection.open(dir, { name: 'c' });
    expect(again.count()).toBe(2);
    expect(again.upsert([{ id: 1, vector: [3, 3] }], { version: 1 }).count).toBe(1);
    expect(again.delete([2], { version: 2 }).count).toBe(1);
    expect(again.upsert([{ id: 2, vector: [4, 4] }], { version: 1 }).count).toBe(0);
    expect(again.get([1, 2]).map((p) => [p.id, Array.from(p.vector!)])).toEqual([[1, [3, 3]]] as [PointId, number[]][]);
    again.close();
  });
});
