// The embedded Collection: a WasmIndex for search, SQLite for durability, and
// the map between application ids and index slots. SQLite is the truth: a call
// returns once its transaction has committed, and the index is rebuilt from a
// snapshot plus the changes after it whenever the collection is opened.

import { WasmIndex, AllowSet, MEMORY_LIMIT_BYTES, checkQuantization } from './core/wasm-index.js';
import type { Quantization } from './core/wasm-index.js';
import type { Metric, VectorLike } from './core/wasm-index.js';
import { Store } from './store/sqlite-store.js';
import { compileFilter } from './filter.js';
import type { Filter, FieldTerm } from './filter.js';
import { VdbError, ErrorCode, isRequestError } from './errors.js';
import { LIMITS, checkId, checkPoint, checkVector, checkCollectionName } from './validate.js';
import type { PointId, Payload } from './validate.js';

export { LIMITS };

export type { PointId, Payload };

export interface Point {
  id: PointId;
  vector: VectorLike;
  payload?: Payload | null;
}

export interface StoredPoint {
  id: PointId;
  vector?: Float32Array;
  payload?: Payload;
}

/** One entry of a write log, applied by `applyLog` at its sequence; `version`
 * as for `upsert` and `delete`, and for `horizon` the one of `raiseHorizon`;
 * `skip` records an entry the follower could not even read (its sequence still counts). */
export type LogEntry = { seq: number; version?: number } & ({ op: 'upsert'; points: Point[] } | { op: 'delete'; ids: PointId[] } | { op: 'horizon'; version: number } | { op: 'skip'; reason: string });

/** Longest reason kept for a skipped log entry. */
const SKIP_REASON_MAX = 1000;

/** Options of a write: `seq` from a write log (see `upsert`), `version` (see `upsert`). */
export interface WriteOptions {
  seq?: number;
  version?: number;
}

export interface Hit {
  id: PointId;
  /** The true metric: L2 distance, cosine similarity, or inner product. */
  score: number;
  payload?: Payload;
}

export interface HnswOptions {
  m?: number;
  efConstruction?: number;
  seed?: number;
}

export interface OpenOptions {
  name: string;
  /** Required to create the collection; checked against the stored schema otherwise. */
  dim?: number;
  metric?: Metric;
  hnsw?: HnswOptions;
  /** 8-bit codes in the index, f32 vectors host-side for re-ranking (docs/collection.md). Fixed at create. */
  quantization?: Quantization;
  /** Payload fields to index: eq, $in and range terms on them are served from the index. */
  indexes?: string[];
  /** Snapshot once this many points changed since the last one. Default max(10,000, 20 % of the count). */
  snapshotChanges?: number;
  /** Snapshot after this many ms with any change. Default 60,000. */
  snapshotMs?: number;
  /** Refuse upserts (RESOURCE_EXHAUSTED) whose points the index could not hold
   * within this many bytes of Wasm memory. Default: none below the 4 GiB a Wasm
   * memory can hold (past that, OUT_OF_MEMORY). Not kept: give it at each open. */
  maxIndexBytes?: number;
}

export interface SearchOptions {
  k?: number;
  ef?: number;
  filter?: Filter;
  exact?: boolean;
  withPayload?: boolean;
}

export interface ScrollOptions {
  after?: PointId;
  limit?: number;
  filter?: Filter;
  withVector?: boolean;
}

const SNAPSHOT_PART_BYTES = 8 * 1024 * 1024;

interface Schema { dim: number; metric: Metric; m: number; efConstruction: number; seed: number; quantization?: Quantization }

function deepFreeze<T>(v: T): T {
  if (v && typeof v === 'object') {
    Object.freeze(v);
    for (const x of Object.values(v)) deepFreeze(x);
  }
  return v;
}

/** A write's version: absent or 0 means unversioned. */
function checkVersion(v: unknown): number {
  if (v === undefined || v === null) return 0;
  if (!Number.isSafeInteger(v) || (v as number) < 0) throw new VdbError(ErrorCode.INVALID_ARGUMENT, `version must be a non-negative integer, got ${String(v)}`);
  return v as number;
}

/** A stored payload for internal use (filters, field indexes): not kept, not frozen. */
function readPayload(json: string | null | undefined): Payload | undefined {
  return json === null || json === undefined ? undefined : JSON.parse(json) as Payload;
}

/** A stored payload as returned to callers. */
function parsePayload(json: string | null | undefined): Payload | undefined {
  return deepFreeze(readPayload(json));
}

/** Stored payload JSON of ids about to be overwritten or deleted, read before
 * the write so that their field index entries can be removed after it. */
type PayloadsBefore = Map<PointId, string | null>;

/** The index of one payload field: value → slots, plus sorted views of the
 * number and string values for range terms, rebuilt lazily after writes. */
class FieldIndex {
  private readonly map = new Map<string, Set<number>>();
  private sorted?: { numbers: [number, Set<number>][]; strings: [string, Set<number>][] };
  constructor(readonly path: string) {}

  static key(v: unknown): string | undefined {
    if (v === null) return 'z';
    switch (typeof v) {
      case 'number': return `n${v}`;
      case 'string': return `s${v}`;
      case 'boolean': return v ? 't' : 'f';
      default: return undefined;
    }
  }

  private values(payload: Payload | undefined): unknown[] {
    let cur: unknown = payload;
    for (const seg of this.path.split('.')) {
      if (cur === null || typeof cur !== 'object' || Array.isArray(cur) || !Object.hasOwn(cur, seg)) return [];
      cur = (cur as Record<string, unknown>)[seg];
    }
    return Array.isArray(cur) ? cur : [cur];
  }

  add(slot: number, payload: Payload | undefined): void {
    for (const v of this.values(payload)) {
      const key = FieldIndex.key(v);
      if (key === undefined) continue;
      let set = this.map.get(key);
      if (!set) this.map.set(key, (set = new Set()));
      set.add(slot);
      this.sorted = undefined;
    }
  }

  remove(slot: number, payload: Payload | undefined): void {
    for (const v of this.values(payload)) {
      const key = FieldIndex.key(v);
      if (key !== undefined && this.map.get(key)?.delete(slot)) this.sorted = undefined;
    }
  }

  /** The value groups (slot sets) a term selects: its values for eq and $in,
   * the values within its bound for a range. A slot may be in several groups
   * when its field holds an array. */
  groups(t: FieldTerm): Set<number>[] {
    if (t.kind !== 'range') {
      const out: Set<number>[] = [];
      for (const v of t.values ?? []) {
        const key = FieldIndex.key(v);
        const set = key === undefined ? undefined : this.map.get(key);
        if (set) out.push(set);
      }
      return out;
    }
    if (!this.sorted) {
      const numbers: [number, Set<number>][] = [];
      const strings: [string, Set<number>][] = [];
      for (const [key, set] of this.map) {
        if (set.size === 0) continue;
        if (key[0] === 'n') numbers.push([Number(key.slice(1)), set]);
        else if (key[0] === 's') strings.push([key.slice(1), set]);
      }
      numbers.sort((a, b) => a[0] - b[0]);
      strings.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
      this.sorted = { numbers, strings };
    }
    const bound = t.gt ?? t.gte ?? t.lt ?? t.lte;
    const list: [number | string, Set<number>][] = typeof bound === 'number' ? this.sorted.numbers : this.sorted.strings;
    // First index whose value is >= (or >) the bound.
    const lowerIndex = (b: number | string, strict: boolean) => {
      let lo = 0, hi = list.length;
      while (lo < hi) {
        const mid = (lo + hi) >>> 1;
        if (list[mid][0] < b || (strict && list[mid][0] === b)) lo = mid + 1; else hi = mid;
      }
      return lo;
    };
    let from = 0, to = list.length;
    if (t.gt !== undefined) from = lowerIndex(t.gt, true);
    else if (t.gte !== undefined) from = lowerIndex(t.gte, false);
    else if (t.lt !== undefined) to = lowerIndex(t.lt, false);
    else if (t.lte !== undefined) to = lowerIndex(t.lte, true);
    return list.slice(from, to).map((e) => e[1]);
  }
}

export class Collection {
  readonly name: string;
  readonly dim: number;
  readonly metric: Metric;
  private readonly store: Store;
  private index!: WasmIndex; // set by recover(): from the snapshot, or a fresh one rebuilt
  private readonly schema: Schema;
  private readonly idToSlot = new Map<PointId, number>();
  private slotToId: (PointId | undefined)[] = [];
  private readonly fieldIndexes = new Map<string, FieldIndex>();
  private seq: number;
  /** Versioned writes below it are settled (see raiseHorizon). */
  private horizon = 0;
  private changes = 0;
  private lastSnapshot = Date.now();
  private snapshotting = false;
  /** Bumped when the sequence restarts, so a background snapshot of the old log is abandoned. */
  private lineage = 0;
  private closed = false;
  private readonly snapshotChanges?: number;
  private readonly snapshotMs: number;
  private readonly maxIndexBytes: number;

  private constructor(store: Store, name: string, schema: Schema, seq: number, opts: OpenOptions) {
    this.store = store;
    this.name = name;
    this.schema = schema;
    this.dim = schema.dim;
    this.metric = schema.metric;
    this.seq = seq;
    this.snapshotChanges = opts.snapshotChanges;
    this.snapshotMs = opts.snapshotMs ?? 60_000;
    this.maxIndexBytes = Math.min(opts.maxIndexBytes ?? MEMORY_LIMIT_BYTES, MEMORY_LIMIT_BYTES);
    for (const f of opts.indexes ?? []) this.fieldIndexes.set(f, new FieldIndex(f));
  }

  /** Creates or reopens a collection in a data directory. */
  static open(dir: string, opts: OpenOptions): Collection {
    if (!opts || typeof opts !== 'object') throw new VdbError(ErrorCode.INVALID_ARGUMENT, 'open takes options with at least a name');
    checkCollectionName(opts.name);
    if (opts.maxIndexBytes !== undefined && !(Number.isSafeInteger(opts.maxIndexBytes) && opts.maxIndexBytes > 0)) {
      throw new VdbError(ErrorCode.INVALID_ARGUMENT, `maxIndexBytes must be a positive integer, got ${opts.maxIndexBytes}`);
    }
    const store = Store.acquire(dir);
    if (store.openNames.has(opts.name)) {
      store.release();
      throw new VdbError(ErrorCode.LOCKED, `collection ${opts.name} is already open in this process`);
    }
    try {
      const schema = Collection.schemaFor(store, opts);
      const row = store.collection(opts.name)!;
      const c = new Collection(store, opts.name, schema, row.seq, opts);
      c.horizon = row.horizon;
      c.recover();
      store.openNames.add(opts.name);
      return c;
    } catch (e) {
      store.release();
      throw e;
    }
  }

  private static schemaFor(store: Store, opts: OpenOptions): Schema {
    const row = store.collection(opts.name);
    const h = opts.hnsw ?? {};
    if (!row) {
      if (opts.dim === undefined) throw new VdbError(ErrorCode.COLLECTION_NOT_FOUND, `no collection ${opts.name}; give dim (and metric) to create it`);
      const quantization = checkQuantization(opts.quantization);
      const schema: Schema = { dim: opts.dim, metric: opts.metric ?? 'l2', m: h.m ?? 16, efConstruction: h.efConstruction ?? 200, seed: h.seed ?? 42, quantization };
      WasmIndex.create({ ...schema, capacity: 0 }); // validates every parameter before anything is stored
      store.createCollection(opts.name, schema.dim, schema.metric, JSON.stringify({ m: schema.m, efConstruction: schema.efConstruction, seed: schema.seed, quantization }));
      return schema;
    }
    const p = JSON.parse(row.params) as { m: number; efConstruction: number; seed: number; quantization?: Quantization };
    const schema: Schema = { dim: row.dim, metric: row.metric as Metric, ...p };
    if (opts.quantization !== undefined && JSON.stringify(checkQuantization(opts.quantization)) !== JSON.stringify(schema.quantization)) {
      throw new VdbError(ErrorCode.SCHEMA_MISMATCH, `collection ${opts.name} has quantization ${JSON.stringify(schema.quantization ?? null)}, not ${JSON.stringify(opts.quantization)}`);
    }
    const want: Partial<Schema> = { dim: opts.dim, metric: opts.metric, m: h.m, efConstruction: h.efConstruction, seed: h.seed };
    for (const [k, v] of Object.entries(want)) {
      if (v !== undefined && v !== schema[k as keyof Schema]) {
        throw new VdbError(ErrorCode.SCHEMA_MISMATCH, `collection ${opts.name} has ${k} ${schema[k as keyof Schema]}, not ${v}`);
      }
    }
    return schema;
  }

  private freshIndex(): WasmIndex {
    const { dim, metric, m, efConstruction, seed, quantization } = this.schema;
    return WasmIndex.create({ dim, metric, m, efConstruction, seed, quantization });
  }

  // Snapshot if there is a good one, then the changes after it; else (or if
  // that does not add up to what is stored) a full rebuild.
  private recover(): void {
    const snap = this.store.snapshot(this.name);
    const stored = this.store.count(this.name);
    if (!(snap && this.loadSnapshot(snap) && this.replayAfter(snap.seq) === stored)) this.rebuild();
    // Payloads stay in SQLite; only the indexed fields' values are held.
    if (this.fieldIndexes.size > 0) {
      for (const { id, payload } of this.store.payloads(this.name)) this.indexFields(this.idToSlot.get(id)!, payload);
    }
    if (this.index.size !== stored || this.idToSlot.size !== stored) {
      throw new VdbError(ErrorCode.INTERNAL, `collection ${this.name}: index holds ${this.index.size} points, storage ${stored}`);
    }
  }

  /** Applies what changed after `seq`; returns the resulting point count. */
  private replayAfter(seq: number): number {
    for (const id of this.store.deletedAfter(this.name, seq)) {
      this.unindex(id);
      this.changes++;
    }
    for (const p of this.store.newerThan(this.name, seq)) {
      this.indexPoint(p.id, p.vector, null);
      this.changes++;
    }
    return this.idToSlot.size;
  }

  private rebuild(): void {
    this.index = this.freshIndex();
    this.idToSlot.clear();
    this.slotToId = [];
    this.changes = 0;
    for (const p of this.store.all(this.name)) {
      this.indexPoint(p.id, p.vector, null);
      this.changes++;
    }
  }

  private loadSnapshot(snap: { seq: number; parts: number; slotIds: string }): boolean {
    try {
      const parts: Buffer[] = [];
      for (let i = 0; i < snap.parts; i++) {
        const b = this.store.snapshotPart(this.name, snap.seq, i);
        if (!b) return false;
        parts.push(b);
      }
      const index = WasmIndex.load(new Uint8Array(Buffer.concat(parts)));
      const ids = JSON.parse(snap.slotIds) as (PointId | null)[];
      if (index.dim !== this.dim || index.metric !== this.metric || ids.length !== index.slots) return false;
      if (JSON.stringify(index.quantization) !== JSON.stringify(this.schema.quantization)) return false;
      this.index = index;
      this.slotToId = ids.map((id) => (id === null ? undefined : id));
      this.idToSlot.clear();
      this.slotToId.forEach((id, slot) => { if (id !== undefined) this.idToSlot.set(id, slot); });
      return this.idToSlot.size === index.size;
    } catch {
      return false;
    }
  }

  private indexFields(slot: number, payload: string | null): void {
    if (this.fieldIndexes.size === 0 || payload === null) return;
    const parsed = readPayload(payload);
    for (const f of this.fieldIndexes.values()) f.add(slot, parsed);
  }

  /** What `unindex` needs to know of `ids` before a write replaces them:
   * nothing without field indexes (the index is being rebuilt, or has none). */
  private payloadsBefore(ids: PointId[]): PayloadsBefore | undefined {
    if (this.fieldIndexes.size === 0) return undefined;
    const out: PayloadsBefore = new Map();
    for (const id of ids) if (this.idToSlot.has(id) && !out.has(id)) out.set(id, this.store.payloadOf(this.name, id) ?? null);
    return out;
  }

  private unindex(id: PointId, before?: PayloadsBefore): void {
    const slot = this.idToSlot.get(id);
    if (slot === undefined) return;
    const old = readPayload(before?.get(id));
    if (old !== undefined) for (const f of this.fieldIndexes.values()) f.remove(slot, old);
    this.slotToId[slot] = undefined;
    this.idToSlot.delete(id);
    this.index.remove(slot);
  }

  private indexPoint(id: PointId, vector: Float32Array, payload: string | null, before?: PayloadsBefore): void {
    this.unindex(id, before);
    const slot = this.index.add(vector);
    this.idToSlot.set(id, slot);
    this.slotToId[slot] = id;
    this.indexFields(slot, payload);
    // A later copy of the id in the same batch replaces this one.
    before?.set(id, payload);
  }

  private open_(): void {
    if (this.closed) throw new VdbError(ErrorCode.CLOSED, `collection ${this.name} is closed`);
  }

  /** The quantization fixed at create, or undefined for float vectors. */
  get quantization(): Quantization | undefined {
    return this.schema.quantization;
  }

  /** Bytes of Wasm memory the index holds. */
  get indexBytes(): number {
    return this.index.memoryBytes;
  }

  /** How many more points fit before the index needs more than `maxBytes` of
   * Wasm memory (default: all it can have); every upserted row counts as one. */
  indexRoom(maxBytes?: number): number {
    return this.index.room(maxBytes);
  }

  /** The sequence of the last applied write. */
  get appliedSeq(): number {
    return this.seq;
  }

  // A write log names each write's sequence; one at or below the applied
  // sequence was applied before (a replay) and is skipped.
  private nextSeq(given: number | undefined): number | undefined {
    if (given === undefined) return this.seq + 1;
    if (!Number.isSafeInteger(given) || given < 1) throw new VdbError(ErrorCode.INVALID_ARGUMENT, `seq must be a positive integer, got ${given}`);
    return given > this.seq ? given : undefined;
  }

  /** Inserts or replaces points by id; all or nothing. Returns once durable.
   * `seq` (from a write log) makes the call idempotent: at or below the applied sequence it does nothing.
   * `version` (a positive integer, one per write request, from a cluster-wide
   * order) makes the write apply only to the ids whose last applied write has a
   * lower version (a point's, or a versioned delete's tombstone): writes then
   * end the same in any order. Without it the write applies as it comes.
   * `count` is the points written. */
  upsert(points: Point[], opts: WriteOptions = {}): { count: number; seq: number } {
    this.open_();
    if (!Array.isArray(points)) throw new VdbError(ErrorCode.INVALID_ARGUMENT, 'upsert takes an array of points');
    const schema = { dim: this.dim, metric: this.metric };
    const rows = points.map((p, i) => {
      const { id, vector, payloadJson } = checkPoint(p, `points[${i}]`, schema);
      return { id, vector, payload: payloadJson };
    });
    const version = checkVersion(opts.version);
    const seq = this.nextSeq(opts.seq);
    if (seq === undefined || rows.length === 0) return { count: 0, seq: this.seq };
    // Below the horizon the tombstones it would lose to may be gone: it is settled, and skipped.
    if (version > 0 && version < this.horizon) return this.unchanged(seq);
    const newer = version === 0 ? rows : this.newerThanStored(rows, (r) => r.id, version);
    if (newer.length === 0) return this.unchanged(seq);
    // Room in the index first, so the only failure left after the commit is none.
    // Each row takes a slot (a replaced point's tombstone is reused only after
    // consolidation): free slots first, then new ones.
    const room = this.index.room(this.maxIndexBytes);
    if (room < newer.length) {
      if (this.maxIndexBytes < MEMORY_LIMIT_BYTES) {
        throw new VdbError(ErrorCode.RESOURCE_EXHAUSTED, `collection ${this.name}: ${newer.length} more points would pass its index memory limit of ${this.maxIndexBytes} bytes (maxIndexBytes; room for ${room}); nothing was written`);
      }
      throw new VdbError(ErrorCode.OUT_OF_MEMORY, `collection ${this.name}: ${newer.length} more points would pass the 4 GiB Wasm memory limit of its index (room for ${room}); nothing was written`);
    }
    this.index.reserve(this.index.size + this.index.pending + newer.length);
    const before = this.payloadsBefore(newer.map((r) => r.id));
    this.store.upsert(this.name, newer, seq, version);
    this.seq = seq;
    for (const r of newer) this.indexPoint(r.id, r.vector, r.payload, before);
    this.noteChanges(newer.length);
    return { count: newer.length, seq };
  }

  /** The items whose id's last applied write is older than `version` (judged
   * before the batch, so a batch's repeated id keeps its last copy). */
  private newerThanStored<T>(items: T[], idOf: (x: T) => PointId, version: number): T[] {
    const wins = new Map<PointId, boolean>();
    return items.filter((x) => {
      const id = idOf(x);
      if (!wins.has(id)) wins.set(id, this.store.version(this.name, id) < version);
      return wins.get(id)!;
    });
  }

  // A log entry that changes nothing is still applied: its sequence is recorded.
  private unchanged(seq: number): { count: number; seq: number } {
    this.store.setSeq(this.name, seq);
    this.seq = seq;
    return { count: 0, seq };
  }

  /** Settles the versioned writes below `horizon`: drops their tombstones, and
   * from then on skips a versioned upsert below it and lets a versioned delete
   * below it leave no tombstone. Only correct once no write below it can still
   * be acknowledged (the cluster's fence, docs/cluster.md). It never goes down.
   * `seq` as for upsert. */
  raiseHorizon(horizon: number, opts: { seq?: number } = {}): void {
    this.open_();
    const h = Math.max(checkVersion(horizon), this.horizon);
    const seq = this.nextSeq(opts.seq);
    if (seq === undefined) return;
    this.store.raiseHorizon(this.name, h, seq);
    this.horizon = h;
    this.seq = seq;
  }

  /** Version tombstones held: ids deleted or moved away by versioned writes (docs/cluster.md). */
  get versionTombstones(): number {
    this.open_();
    return this.store.versionTombstones(this.name);
  }

  /** Deletes points by id; returns how many existed. Returns once durable. `seq`
   * as for upsert; with `version`, only ids whose last applied write is older are
   * deleted, and each of them keeps a tombstone of the version (held or not), so
   * an older upsert arriving later does not bring it back. */
  delete(ids: PointId[], opts: WriteOptions = {}): { count: number; seq: number } {
    this.open_();
    if (!Array.isArray(ids)) throw new VdbError(ErrorCode.INVALID_ARGUMENT, 'delete takes an array of ids');
    const checked = ids.map((id, i) => checkId(id, `ids[${i}]`));
    const version = checkVersion(opts.version);
    const seq = this.nextSeq(opts.seq);
    if (seq === undefined || checked.length === 0) return { count: 0, seq: this.seq };
    const newer = version === 0 ? checked : this.newerThanStored(checked, (id) => id, version);
    if (newer.length === 0) return this.unchanged(seq);
    // Below the horizon no upsert it could hide is still applied: no tombstone.
    const before = this.payloadsBefore(newer);
    const count = this.store.remove(this.name, newer, seq, version >= this.horizon ? version : 0);
    this.seq = seq;
    for (const id of newer) this.unindex(id, before);
    this.noteChanges(count);
    return { count, seq };
  }

  /** Applies write-log entries in order in one transaction: one commit for a whole
   * backlog. Entries at or below the applied sequence are skipped. An entry the
   * collection refuses for what it holds (a request error: bad vector, id,
   * payload, shape) is not applied but recorded as skipped, with its reason, and
   * its sequence counts as applied: the same decision on every replica, so they
   * stay identical and the entries after it apply. Any other failure (storage,
   * memory) stores nothing of the batch and closes the collection (its index
   * may hold part of the batch): reopen it to recover from storage. Returns
   * the entries of this call that were skipped. */
  applyLog(entries: LogEntry[]): { seq: number; reason: string }[] {
    this.open_();
    const skipped: { seq: number; reason: string }[] = [];
    const skip = (seq: number, reason: string) => {
      if (this.skip(seq, reason)) skipped.push({ seq, reason });
    };
    try {
      this.store.transaction(() => {
        for (const e of entries) {
          const { seq } = e;
          try {
            if (e.op === 'upsert') this.upsert(e.points, { seq: e.seq, version: e.version });
            else if (e.op === 'delete') this.delete(e.ids, { seq: e.seq, version: e.version });
            else if (e.op === 'horizon') this.raiseHorizon(e.version, { seq: e.seq });
            else if (e.op === 'skip') skip(e.seq, e.reason);
            else throw new VdbError(ErrorCode.BAD_REQUEST, `log entry ${seq}: not an upsert, a delete or a horizon`);
          } catch (err) {
            if (!(err instanceof VdbError) || !isRequestError(err.code)) throw err;
            skip(seq, `${err.code}: ${err.message}`);
          }
        }
      });
    } catch (e) {
      this.abandon();
      throw e;
    }
    return skipped;
  }

  // Refusals happen before anything is written, so recording the skip is all
  // that the entry changes. False for an entry applied before (a replay).
  private skip(seq: number, reason: string): boolean {
    if (this.nextSeq(seq) === undefined) return false;
    this.store.skip(this.name, seq, reason.slice(0, SKIP_REASON_MAX));
    this.seq = seq;
    return true;
  }

  /** Log entries not applied (see applyLog), newest first. */
  skippedEntries(limit = 100): { seq: number; reason: string }[] {
    this.open_();
    return this.store.skipped(this.name, limit);
  }

  /** How many log entries were not applied (see applyLog). */
  get skippedCount(): number {
    return this.store.skippedCount(this.name);
  }

  /** Every stored id, in no particular order. */
  ids(): PointId[] {
    this.open_();
    return [...this.idToSlot.keys()];
  }

  /** Drops `ids` and restarts the applied sequence at 0, in one commit: the
   * collection stops following one write log to follow a new one (a shard split). */
  detach(ids: PointId[]): void {
    this.open_();
    const checked = ids.map((id, i) => checkId(id, `ids[${i}]`));
    const before = this.payloadsBefore(checked);
    this.store.transaction(() => {
      this.store.remove(this.name, checked, this.seq + 1);
      this.store.restartSequence(this.name);
    });
    this.seq = 0;
    this.lineage++;
    for (const id of checked) this.unindex(id, before);
    this.changes = 0;
    this.snapshot();
  }

  /** Copies the collection into a new database file, with a snapshot of the index at
   * the applied sequence (so the copy opens with exactly this index); returns that sequence. */
  exportTo(file: string): number {
    this.open_();
    const { seq, bytes, slotIds } = this.currentIndex();
    this.store.exportCollection(this.name, file, { seq, parts: Collection.parts(bytes), slotIds });
    return seq;
  }

  /** Replaces a collection of a data directory by an exported copy (of collection
   * `from`, by default the same name); it must not be open. */
  static importFrom(dir: string, name: string, file: string, from = name): void {
    checkCollectionName(name);
    checkCollectionName(from);
    const store = Store.acquire(dir);
    try {
      if (store.openNames.has(name)) throw new VdbError(ErrorCode.LOCKED, `collection ${name} is open in this process`);
      store.importCollection(name, file, from);
    } finally {
      store.release();
    }
  }

  /** The applied sequence stored for a collection, without opening it; 0 if it does not exist. */
  static storedSeq(dir: string, name: string): number {
    const store = Store.acquire(dir);
    try {
      return store.collection(name)?.seq ?? 0;
    } finally {
      store.release();
    }
  }

  /** The names of the collections stored in a data directory. */
  static storedNames(dir: string): string[] {
    const store = Store.acquire(dir);
    try {
      return store.names();
    } finally {
      store.release();
    }
  }

  /** Removes a collection from a data directory: its points, snapshots and schema
   * (nothing if it does not exist); it must not be open. */
  static drop(dir: string, name: string): void {
    checkCollectionName(name);
    const store = Store.acquire(dir);
    try {
      if (store.openNames.has(name)) throw new VdbError(ErrorCode.LOCKED, `collection ${name} is open in this process`);
      store.dropCollection(name);
    } finally {
      store.release();
    }
  }

  /** The stored points among `ids` (missing ones are left out), in the order asked. */
  get(ids: PointId[], opts: { withVector?: boolean } = {}): StoredPoint[] {
    this.open_();
    if (!Array.isArray(ids)) throw new VdbError(ErrorCode.INVALID_ARGUMENT, 'get takes an array of ids');
    const out: StoredPoint[] = [];
    for (const id of ids.map((x, i) => checkId(x, `ids[${i}]`))) {
      const slot = this.idToSlot.get(id);
      if (slot === undefined) continue;
      const p: StoredPoint = { id };
      const row = opts.withVector !== false ? this.store.get(this.name, id)! : { payload: this.store.payloadOf(this.name, id) ?? null, vector: undefined };
      const payload = parsePayload(row.payload);
      if (payload !== undefined) p.payload = payload;
      if (row.vector) p.vector = row.vector;
      out.push(p);
    }
    return out;
  }

  count(): number {
    this.open_();
    return this.idToSlot.size;
  }

  /** The slots whose payload passes the filter. A conjunction of terms all on
   * indexed fields is answered from the indexes alone; otherwise the payloads
   * are read from SQLite: those of the smallest indexed term's candidates one by
   * one, or all of them in one scan when no term is indexed or the candidates
   * are many (docs/filters.md). */
  private allowed(filter: Filter): AllowSet {
    const f = compileFilter(filter);
    const allow = new AllowSet(this.index.slots);
    const bits = allow.bits; // sized for every slot: set bits directly, no per-slot checks
    // Each indexed term's candidates, as value groups and their total size.
    const served = f.terms.flatMap((t) => {
      const idx = this.fieldIndexes.get(t.path);
      if (!idx) return [];
      const groups = idx.groups(t);
      return [{ groups, size: groups.reduce((n, g) => n + g.size, 0) }];
    });
    const mark = (into: Uint32Array, groups: Set<number>[]) => {
      for (const g of groups) for (const s of g) into[s >>> 5] |= 1 << (s & 31);
    };
    if (f.exact && served.length > 0 && served.length === f.terms.length) {
      mark(bits, served[0].groups);
      for (const term of served.slice(1)) {
        const other = new Uint32Array(bits.length);
        mark(other, term.groups);
        for (let i = 0; i < bits.length; i++) bits[i] &= other[i];
      }
      return allow;
    }
    const best = served.length === 0 ? undefined : served.reduce((a, b) => (b.size < a.size ? b : a));
    if (best && best.size * 4 <= this.idToSlot.size) {
      const ids = this.slotToId;
      for (const g of best.groups) {
        for (const s of g) {
          if ((bits[s >>> 5] & (1 << (s & 31))) !== 0 || ids[s] === undefined) continue;
          if (f.test(readPayload(this.store.payloadOf(this.name, ids[s]!)))) bits[s >>> 5] |= 1 << (s & 31);
        }
      }
      return allow;
    }
    for (const { id, payload } of this.store.payloads(this.name)) {
      if (!f.test(readPayload(payload))) continue;
      const s = this.idToSlot.get(id)!;
      bits[s >>> 5] |= 1 << (s & 31);
    }
    return allow;
  }

  private score(d: number): number {
    if (this.metric === 'l2') return Math.sqrt(Math.max(0, d));
    if (this.metric === 'cosine') return 1 - d;
    return -d;
  }

  search(vector: VectorLike, opts: SearchOptions = {}): Hit[] {
    this.open_();
    const k = opts.k ?? 10;
    if (!Number.isInteger(k) || k < 1 || k > LIMITS.k) throw new VdbError(ErrorCode.INVALID_K, `k must be an integer from 1 to ${LIMITS.k}, got ${k}`);
    const q = checkVector(vector, 'query', { dim: this.dim, metric: this.metric });
    const allow = opts.filter === undefined ? undefined : this.allowed(opts.filter);
    const res = opts.exact
      ? this.index.searchExact(q, k, allow)
      : this.index.search(q, k, { ef: opts.ef ?? Math.max(k, 64), allow });
    const hits: Hit[] = [];
    for (let i = 0; i < res.ids.length; i++) {
      const slot = res.ids[i];
      const hit: Hit = { id: this.slotToId[slot]!, score: this.score(res.distances[i]) };
      const payload = opts.withPayload ? parsePayload(this.store.payloadOf(this.name, hit.id)) : undefined;
      if (payload !== undefined) hit.payload = payload;
      hits.push(hit);
    }
    return hits;
  }

  /** Pages through points in id order (integers first, then strings). */
  scroll(opts: ScrollOptions = {}): { points: StoredPoint[]; next?: PointId } {
    this.open_();
    const limit = opts.limit ?? 100;
    if (!Number.isInteger(limit) || limit < 1 || limit > LIMITS.scroll) {
      throw new VdbError(ErrorCode.INVALID_ARGUMENT, `limit must be an integer from 1 to ${LIMITS.scroll}`);
    }
    const f = opts.filter === undefined ? undefined : compileFilter(opts.filter);
    let after = opts.after === undefined ? undefined : checkId(opts.after, 'after');
    const points: StoredPoint[] = [];
    while (points.length < limit) {
      const page = this.store.scroll(this.name, after, limit);
      for (const r of page) {
        const payload = parsePayload(r.payload);
        if (f && !f.test(payload)) continue;
        const p: StoredPoint = { id: r.id };
        if (payload !== undefined) p.payload = payload;
        if (opts.withVector) p.vector = r.vector;
        points.push(p);
        if (points.length === limit) return { points, next: r.id };
      }
      if (page.length < limit) return { points };
      after = page[page.length - 1].id;
    }
    return { points };
  }

  private noteChanges(n: number): void {
    this.changes += n;
    const threshold = this.snapshotChanges ?? Math.max(10_000, Math.floor(0.2 * this.idToSlot.size));
    if (this.changes >= threshold || (this.changes > 0 && Date.now() - this.lastSnapshot >= this.snapshotMs)) {
      this.snapshotInBackground();
    }
  }

  /** The index as a snapshot stores it: its bytes, the id of each slot, and the sequence. */
  private currentIndex(): { seq: number; bytes: Uint8Array; slotIds: string } {
    const ids = this.slotToId.slice(0, this.index.slots).map((id) => (id === undefined ? null : id));
    while (ids.length < this.index.slots) ids.push(null);
    return { seq: this.seq, bytes: this.index.save(), slotIds: JSON.stringify(ids) };
  }

  private captureSnapshot(): { seq: number; bytes: Uint8Array; slotIds: string } {
    this.changes = 0;
    this.lastSnapshot = Date.now();
    return this.currentIndex();
  }

  private static parts(bytes: Uint8Array): Uint8Array[] {
    const out: Uint8Array[] = [];
    for (let i = 0; i === 0 || i < bytes.length; i += SNAPSHOT_PART_BYTES) out.push(bytes.subarray(i, i + SNAPSHOT_PART_BYTES));
    return out;
  }

  /** Writes a snapshot now, in one transaction. */
  snapshot(): void {
    this.open_();
    const s = this.captureSnapshot();
    this.store.writeSnapshot(this.name, s.seq, Collection.parts(s.bytes), s.slotIds);
  }

  // The index is copied at once; its parts are written one per event-loop turn,
  // so writes wait at most for one part. Parts are keyed by sequence, so a
  // snapshot at the sequence that is already current (after a rebuild) is
  // written in one transaction instead, never over the current one's parts.
  private snapshotInBackground(): void {
    if (this.snapshotting) return;
    if (this.store.snapshot(this.name)?.seq === this.seq) {
      this.snapshot();
      return;
    }
    this.snapshotting = true;
    const s = this.captureSnapshot();
    const parts = Collection.parts(s.bytes);
    let i = 0;
    const lineage = this.lineage;
    const step = () => {
      if (this.closed || this.lineage !== lineage) { this.snapshotting = false; return; }
      try {
        if (i < parts.length) {
          this.store.writeSnapshotPart(this.name, s.seq, i, parts[i]);
          i++;
          setImmediate(step);
          return;
        }
        this.store.commitSnapshot(this.name, s.seq, parts.length, s.slotIds);
      } catch {
        // A failed snapshot loses nothing: the points are in SQLite, and the next one retries.
      }
      this.snapshotting = false;
    };
    setImmediate(step);
  }

  // Closes without a snapshot: memory may be ahead of what was committed.
  private abandon(): void {
    if (this.closed) return;
    this.closed = true;
    this.store.openNames.delete(this.name);
    this.store.release();
  }

  /** Snapshots unless the committed snapshot is current, then releases the directory. */
  close(): void {
    if (this.closed) return;
    try {
      if (this.changes > 0 || this.store.snapshot(this.name)?.seq !== this.seq) this.snapshot();
    } finally {
      this.closed = true;
      this.store.openNames.delete(this.name);
      this.store.release();
    }
  }
}
