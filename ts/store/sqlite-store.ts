// SQLite persistence (better-sqlite3) for the collections of one data
// directory: one file, WAL mode, synchronous=FULL, and an exclusive lock held
// for the life of the process so a second process gets a clear LOCKED error.
// Every statement is prepared once; writes run in one transaction per batch.

import Database from 'better-sqlite3';
import type { Database as Db, Statement } from 'better-sqlite3';
import { mkdirSync, realpathSync } from 'node:fs';
import { join } from 'node:path';
import { VdbError, ErrorCode } from '../errors.js';

import type { PointId } from '../validate.js';

export type { PointId };

export interface CollectionRow {
  name: string;
  dim: number;
  metric: string;
  params: string;
  seq: number;
  /** Versioned writes below it are settled: their tombstones are gone (ts/collection.ts). */
  horizon: number;
}

export interface StoredPoint {
  id: PointId;
  vector: Float32Array;
  payload: string | null;
}

export interface SnapshotInfo {
  seq: number;
  parts: number;
  slotIds: string;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS collections(
  name TEXT PRIMARY KEY, dim INTEGER NOT NULL, metric TEXT NOT NULL,
  params TEXT NOT NULL, seq INTEGER NOT NULL DEFAULT 0, horizon INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS points(
  collection TEXT NOT NULL, id NOT NULL, vector BLOB NOT NULL, payload TEXT, seq INTEGER NOT NULL,
  version INTEGER NOT NULL DEFAULT 0);
CREATE UNIQUE INDEX IF NOT EXISTS points_id ON points(collection, id);
CREATE INDEX IF NOT EXISTS points_seq ON points(collection, seq);
CREATE TABLE IF NOT EXISTS tombstones(collection TEXT NOT NULL, id NOT NULL, seq INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS tombstones_seq ON tombstones(collection, seq);
CREATE TABLE IF NOT EXISTS snapshot_parts(
  collection TEXT NOT NULL, seq INTEGER NOT NULL, part INTEGER NOT NULL, bytes BLOB NOT NULL,
  PRIMARY KEY(collection, seq, part));
CREATE TABLE IF NOT EXISTS snapshots(
  collection TEXT PRIMARY KEY, seq INTEGER NOT NULL, parts INTEGER NOT NULL, slot_ids TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value);
CREATE TABLE IF NOT EXISTS skipped(
  collection TEXT NOT NULL, seq INTEGER NOT NULL, reason TEXT NOT NULL, PRIMARY KEY(collection, seq));
CREATE TABLE IF NOT EXISTS version_tombstones(
  collection TEXT NOT NULL, id NOT NULL, version INTEGER NOT NULL, PRIMARY KEY(collection, id));
`;

/** Databases written before write versions lack the points' version and the
 * collections' horizon columns (the tombstone table is added by SCHEMA). */
function migrate(db: Db, schema = 'main'): void {
  const has = (table: string, col: string) => (db.prepare(`PRAGMA ${schema}.table_info(${table})`).all() as { name: string }[]).some((c) => c.name === col);
  if (!has('points', 'version')) db.exec(`ALTER TABLE ${schema}.points ADD COLUMN version INTEGER NOT NULL DEFAULT 0`);
  if (!has('collections', 'horizon')) db.exec(`ALTER TABLE ${schema}.collections ADD COLUMN horizon INTEGER NOT NULL DEFAULT 0`);
}

function toVector(b: Buffer): Float32Array {
  // Copy: the Buffer may share a pool and need not be 4-byte aligned.
  const out = new Float32Array(b.byteLength / 4);
  new Uint8Array(out.buffer).set(b);
  return out;
}

function toBlob(v: Float32Array): Buffer {
  return Buffer.from(v.buffer, v.byteOffset, v.byteLength);
}

/** One open data directory, shared by every Collection of this process in it. */
export class Store {
  readonly db: Db;
  readonly path: string;
  private refs = 0;
  /** Collections open in this process: each may be open once, or two would hand out the same sequences. */
  readonly openNames = new Set<string>();
  private readonly st: Record<string, Statement>;
  private static open = new Map<string, Store>();

  private constructor(path: string) {
    this.path = path;
    let db: Db;
    try {
      db = new Database(path, { timeout: 0 });
      db.pragma('locking_mode = EXCLUSIVE');
      db.pragma('journal_mode = WAL');
      db.pragma('synchronous = FULL');
      // Take the write lock now: in exclusive mode it is then held until close.
      db.exec('BEGIN IMMEDIATE; COMMIT;');
    } catch (e) {
      const code = (e as { code?: string }).code ?? '';
      if (code.startsWith('SQLITE_BUSY') || code.startsWith('SQLITE_LOCKED')) {
        throw new VdbError(ErrorCode.LOCKED, `${path} is open for writing in another process`);
      }
      throw new VdbError(ErrorCode.STORAGE, `cannot open ${path}: ${(e as Error).message}`);
    }
    db.exec(SCHEMA);
    migrate(db);
    this.db = db;
    const p = (sql: string) => db.prepare(sql);
    this.st = {
      getCollection: p('SELECT name, dim, metric, params, seq, horizon FROM collections WHERE name = ?'),
      setHorizon: p('UPDATE collections SET horizon = ? WHERE name = ?'),
      dropTombsBelow: p('DELETE FROM version_tombstones WHERE collection = ? AND version < ?'),
      addCollection: p('INSERT INTO collections(name, dim, metric, params) VALUES (?, ?, ?, ?)'),
      setSeq: p('UPDATE collections SET seq = ? WHERE name = ?'),
      upsert: p(`INSERT INTO points(collection, id, vector, payload, seq, version) VALUES (?, ?, ?, ?, ?, ?)
                 ON CONFLICT(collection, id) DO UPDATE SET vector = excluded.vector, payload = excluded.payload, seq = excluded.seq, version = excluded.version`),
      pointVersion: p('SELECT version FROM points WHERE collection = ? AND id = ?'),
      tombVersion: p('SELECT version FROM version_tombstones WHERE collection = ? AND id = ?'),
      setTomb: p('INSERT OR REPLACE INTO version_tombstones(collection, id, version) VALUES (?, ?, ?)'),
      dropTomb: p('DELETE FROM version_tombstones WHERE collection = ? AND id = ?'),
      tombCount: p('SELECT count(*) AS n FROM version_tombstones WHERE collection = ?'),
      dropAllTombs: p('DELETE FROM version_tombstones WHERE collection = ?'),
      remove: p('DELETE FROM points WHERE collection = ? AND id = ?'),
      tombstone: p('INSERT INTO tombstones(collection, id, seq) VALUES (?, ?, ?)'),
      get: p('SELECT id, vector, payload FROM points WHERE collection = ? AND id = ?'),
      count: p('SELECT count(*) AS n FROM points WHERE collection = ?'),
      all: p('SELECT id, vector, payload FROM points WHERE collection = ?'),
      payloads: p('SELECT id, payload FROM points WHERE collection = ?'),
      payloadOf: p('SELECT payload FROM points WHERE collection = ? AND id = ?'),
      newer: p('SELECT id, vector, payload FROM points WHERE collection = ? AND seq > ?'),
      tombstonesNewer: p('SELECT id FROM tombstones WHERE collection = ? AND seq > ? ORDER BY seq'),
      scrollFirst: p('SELECT id, vector, payload FROM points WHERE collection = ? ORDER BY id LIMIT ?'),
      scrollAfter: p('SELECT id, vector, payload FROM points WHERE collection = ? AND id > ? ORDER BY id LIMIT ?'),
      snapshot: p('SELECT seq, parts, slot_ids AS slotIds FROM snapshots WHERE collection = ?'),
      snapshotPart: p('SELECT bytes FROM snapshot_parts WHERE collection = ? AND seq = ? AND part = ?'),
      addPart: p('INSERT OR REPLACE INTO snapshot_parts(collection, seq, part, bytes) VALUES (?, ?, ?, ?)'),
      setSnapshot: p('INSERT OR REPLACE INTO snapshots(collection, seq, parts, slot_ids) VALUES (?, ?, ?, ?)'),
      dropOldParts: p('DELETE FROM snapshot_parts WHERE collection = ? AND seq <> ?'),
      dropTombstones: p('DELETE FROM tombstones WHERE collection = ? AND seq <= ?'),
      zeroRowSeqs: p('UPDATE points SET seq = 0 WHERE collection = ?'),
      dropAllTombstones: p('DELETE FROM tombstones WHERE collection = ?'),
      dropSnapshot: p('DELETE FROM snapshots WHERE collection = ?'),
      skip: p('INSERT OR REPLACE INTO skipped(collection, seq, reason) VALUES (?, ?, ?)'),
      skipped: p('SELECT seq, reason FROM skipped WHERE collection = ? ORDER BY seq DESC LIMIT ?'),
      skippedCount: p('SELECT count(*) AS n FROM skipped WHERE collection = ?'),
      dropSkipped: p('DELETE FROM skipped WHERE collection = ?'),
      names: p('SELECT name FROM collections ORDER BY name'),
      dropPoints: p('DELETE FROM points WHERE collection = ?'),
      dropAllParts: p('DELETE FROM snapshot_parts WHERE collection = ?'),
      dropCollection: p('DELETE FROM collections WHERE name = ?'),
    };
  }

  /** The collection's schema and rows, and the given index snapshot, written into a
   * new database file in one read. The file is a transfer copy: it is written
   * without a journal or syncs (the importer checks it whole). */
  exportCollection(name: string, file: string, snap: { seq: number; parts: Uint8Array[]; slotIds: string }): void {
    this.db.prepare('ATTACH ? AS x').run(file);
    try {
      this.db.exec('PRAGMA x.journal_mode = OFF; PRAGMA x.synchronous = OFF;');
      this.db.exec(SCHEMA.replace(/EXISTS (\w+)/g, 'EXISTS x.$1'));
      this.db.transaction(() => {
        this.db.prepare('INSERT INTO x.collections(name, dim, metric, params, seq, horizon) SELECT name, dim, metric, params, seq, horizon FROM main.collections WHERE name = ?').run(name);
        this.db.prepare('INSERT INTO x.points(collection, id, vector, payload, seq, version) SELECT collection, id, vector, payload, seq, version FROM main.points WHERE collection = ?').run(name);
        this.db.prepare('INSERT INTO x.version_tombstones SELECT collection, id, version FROM main.version_tombstones WHERE collection = ?').run(name);
        this.db.prepare('INSERT INTO x.skipped SELECT * FROM main.skipped WHERE collection = ?').run(name);
        this.db.prepare('INSERT INTO x.snapshots(collection, seq, parts, slot_ids) VALUES (?, ?, ?, ?)').run(name, snap.seq, snap.parts.length, snap.slotIds);
        const part = this.db.prepare('INSERT INTO x.snapshot_parts(collection, seq, part, bytes) VALUES (?, ?, ?, ?)');
        snap.parts.forEach((b, i) => part.run(name, snap.seq, i, Buffer.from(b.buffer, b.byteOffset, b.byteLength)));
      })();
    } finally {
      this.db.exec('DETACH x');
    }
  }

  /** Replaces everything stored for `name` by what an exported file holds for `from`, in one transaction. */
  importCollection(name: string, file: string, from = name): void {
    this.db.prepare('ATTACH ? AS x').run(file);
    try {
      // A copy from a replica of an older release has no versions: its points get version 0.
      this.db.exec(SCHEMA.replace(/EXISTS (\w+)/g, 'EXISTS x.$1'));
      migrate(this.db, 'x');
      this.db.transaction(() => {
        const found = this.db.prepare('SELECT count(*) AS n FROM x.collections WHERE name = ?').get(from) as { n: number };
        if (found.n !== 1) throw new VdbError(ErrorCode.STORAGE, `${file} holds no collection ${from}`);
        for (const t of ['points', 'tombstones', 'version_tombstones', 'snapshots', 'snapshot_parts', 'skipped']) this.db.prepare(`DELETE FROM main.${t} WHERE collection = ?`).run(name);
        this.db.prepare('DELETE FROM main.collections WHERE name = ?').run(name);
        this.db.prepare('INSERT INTO main.collections(name, dim, metric, params, seq, horizon) SELECT ?, dim, metric, params, seq, horizon FROM x.collections WHERE name = ?').run(name, from);
        this.db.prepare('INSERT INTO main.points(collection, id, vector, payload, seq, version) SELECT ?, id, vector, payload, seq, version FROM x.points WHERE collection = ?').run(name, from);
        this.db.prepare('INSERT INTO main.version_tombstones(collection, id, version) SELECT ?, id, version FROM x.version_tombstones WHERE collection = ?').run(name, from);
        this.db.prepare('INSERT INTO main.snapshots(collection, seq, parts, slot_ids) SELECT ?, seq, parts, slot_ids FROM x.snapshots WHERE collection = ?').run(name, from);
        this.db.prepare('INSERT INTO main.skipped(collection, seq, reason) SELECT ?, seq, reason FROM x.skipped WHERE collection = ?').run(name, from);
        this.db.prepare('INSERT INTO main.snapshot_parts(collection, seq, part, bytes) SELECT ?, seq, part, bytes FROM x.snapshot_parts WHERE collection = ?').run(name, from);
      })();
    } finally {
      this.db.exec('DETACH x');
    }
  }

  /** Restarts the applied sequence at 0 for a new write log: rows, tombstones,
   * snapshots and skipped entries carry sequences of the old log, so rows go to
   * 0 and the rest is dropped. */
  restartSequence(collection: string): void {
    this.db.transaction(() => {
      this.st.dropSkipped.run(collection);
      this.st.setSeq.run(0, collection);
      this.st.zeroRowSeqs.run(collection);
      this.st.dropAllTombstones.run(collection);
      this.st.dropSnapshot.run(collection);
      this.st.dropOldParts.run(collection, -1);
    })();
  }

  /** Runs `fn` in one transaction (nested store writes become part of it). */
  transaction<T>(fn: () => T): T {
    return this.db.transaction(fn)();
  }

  /** Opens (or shares) the store of a data directory. */
  static acquire(dir: string): Store {
    mkdirSync(dir, { recursive: true });
    const path = join(realpathSync(dir), 'vdb.sqlite');
    let s = Store.open.get(path);
    if (!s) {
      s = new Store(path);
      Store.open.set(path, s);
    }
    s.refs++;
    return s;
  }

  release(): void {
    if (--this.refs > 0) return;
    Store.open.delete(this.path);
    this.db.close();
  }

  collection(name: string): CollectionRow | undefined {
    return this.st.getCollection.get(name) as CollectionRow | undefined;
  }

  /** The names of the collections stored here. */
  names(): string[] {
    return (this.st.names.all() as { name: string }[]).map((r) => r.name);
  }

  /** Removes a collection with its points, tombstones (of both kinds), snapshots and skipped-entry records, in one transaction. */
  dropCollection(name: string): void {
    this.db.transaction(() => {
      this.st.dropSkipped.run(name);
      this.st.dropAllTombs.run(name);
      this.st.dropPoints.run(name);
      this.st.dropAllTombstones.run(name);
      this.st.dropSnapshot.run(name);
      this.st.dropAllParts.run(name);
      this.st.dropCollection.run(name);
    })();
  }

  createCollection(name: string, dim: number, metric: string, params: string): void {
    this.st.addCollection.run(name, dim, metric, params);
  }

  /** Inserts or replaces points and records `seq`, in one transaction. A
   * versioned write (`version` > 0) also drops the ids' version tombstones,
   * which it supersedes. */
  upsert(collection: string, points: { id: PointId; vector: Float32Array; payload: string | null }[], seq: number, version = 0): void {
    this.db.transaction(() => {
      for (const p of points) {
        this.st.upsert.run(collection, p.id, toBlob(p.vector), p.payload, seq, version);
        if (version > 0) this.st.dropTomb.run(collection, p.id);
      }
      this.st.setSeq.run(seq, collection);
    })();
  }

  /** Records `seq` as applied without changing any point (a write whose versions lost). */
  setSeq(collection: string, seq: number): void {
    this.st.setSeq.run(seq, collection);
  }

  /** The version of the last write applied to `id`: its point's, or its version tombstone's; 0 if none. */
  version(collection: string, id: PointId): number {
    const p = this.st.pointVersion.get(collection, id) as { version: number } | undefined;
    const t = this.st.tombVersion.get(collection, id) as { version: number } | undefined;
    return Math.max(p?.version ?? 0, t?.version ?? 0);
  }

  /** Raises the horizon and drops the version tombstones below it, and records `seq`, in one transaction. */
  raiseHorizon(collection: string, horizon: number, seq: number): void {
    this.db.transaction(() => {
      this.st.setHorizon.run(horizon, collection);
      this.st.dropTombsBelow.run(collection, horizon);
      this.st.setSeq.run(seq, collection);
    })();
  }

  /** Version tombstones held for the collection (ids deleted or moved away by a versioned write). */
  versionTombstones(collection: string): number {
    return (this.st.tombCount.get(collection) as { n: number }).n;
  }

  /** Deletes points, leaving tombstones for replay past a snapshot; returns how
   * many existed. A versioned delete (`version` > 0) also leaves a version
   * tombstone for each id, held or not, so an older write arriving later loses. */
  remove(collection: string, ids: PointId[], seq: number, version = 0): number {
    return this.db.transaction(() => {
      let n = 0;
      for (const id of ids) {
        if (this.st.remove.run(collection, id).changes > 0) {
          this.st.tombstone.run(collection, id, seq);
          n++;
        }
        if (version > 0) this.st.setTomb.run(collection, id, version);
      }
      this.st.setSeq.run(seq, collection);
      return n;
    })();
  }

  /** Records a log entry that was not applied, and its sequence as applied, in one transaction. */
  skip(collection: string, seq: number, reason: string): void {
    this.db.transaction(() => {
      this.st.skip.run(collection, seq, reason);
      this.st.setSeq.run(seq, collection);
    })();
  }

  /** The entries skipped, newest first. */
  skipped(collection: string, limit: number): { seq: number; reason: string }[] {
    return this.st.skipped.all(collection, limit) as { seq: number; reason: string }[];
  }

  skippedCount(collection: string): number {
    return (this.st.skippedCount.get(collection) as { n: number }).n;
  }

  get(collection: string, id: PointId): StoredPoint | undefined {
    const r = this.st.get.get(collection, id) as { id: PointId; vector: Buffer; payload: string | null } | undefined;
    return r && { id: r.id, vector: toVector(r.vector), payload: r.payload };
  }

  count(collection: string): number {
    return (this.st.count.get(collection) as { n: number }).n;
  }

  *all(collection: string): IterableIterator<StoredPoint> {
    for (const r of this.st.all.iterate(collection) as IterableIterator<{ id: PointId; vector: Buffer; payload: string | null }>) {
      yield { id: r.id, vector: toVector(r.vector), payload: r.payload };
    }
  }

  *payloads(collection: string): IterableIterator<{ id: PointId; payload: string | null }> {
    yield* this.st.payloads.iterate(collection) as IterableIterator<{ id: PointId; payload: string | null }>;
  }

  /** The stored payload JSON of one point: null without one, undefined without the point. */
  payloadOf(collection: string, id: PointId): string | null | undefined {
    return (this.st.payloadOf.get(collection, id) as { payload: string | null } | undefined)?.payload;
  }

  *newerThan(collection: string, seq: number): IterableIterator<StoredPoint> {
    for (const r of this.st.newer.iterate(collection, seq) as IterableIterator<{ id: PointId; vector: Buffer; payload: string | null }>) {
      yield { id: r.id, vector: toVector(r.vector), payload: r.payload };
    }
  }

  deletedAfter(collection: string, seq: number): PointId[] {
    return (this.st.tombstonesNewer.all(collection, seq) as { id: PointId }[]).map((r) => r.id);
  }

  scroll(collection: string, after: PointId | undefined, limit: number): StoredPoint[] {
    const rows = (after === undefined
      ? this.st.scrollFirst.all(collection, limit)
      : this.st.scrollAfter.all(collection, after, limit)) as { id: PointId; vector: Buffer; payload: string | null }[];
    return rows.map((r) => ({ id: r.id, vector: toVector(r.vector), payload: r.payload }));
  }

  snapshot(collection: string): SnapshotInfo | undefined {
    return this.st.snapshot.get(collection) as SnapshotInfo | undefined;
  }

  snapshotPart(collection: string, seq: number, part: number): Buffer | undefined {
    return (this.st.snapshotPart.get(collection, seq, part) as { bytes: Buffer } | undefined)?.bytes;
  }

  writeSnapshotPart(collection: string, seq: number, part: number, bytes: Uint8Array): void {
    this.st.addPart.run(collection, seq, part, Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
  }

  /** Writes every part and makes the snapshot current in one transaction. */
  writeSnapshot(collection: string, seq: number, parts: Uint8Array[], slotIds: string): void {
    this.db.transaction(() => {
      parts.forEach((b, i) => this.writeSnapshotPart(collection, seq, i, b));
      this.commitSnapshot(collection, seq, parts.length, slotIds);
    })();
  }

  /** Makes a fully written snapshot current and drops what it supersedes. */
  commitSnapshot(collection: string, seq: number, parts: number, slotIds: string): void {
    this.db.transaction(() => {
      this.st.setSnapshot.run(collection, seq, parts, slotIds);
      this.st.dropOldParts.run(collection, seq);
      this.st.dropTombstones.run(collection, seq);
    })();
  }
}
