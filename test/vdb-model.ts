// The in-memory model the model-based cluster test (test/model.test.ts)
// compares the cluster with: per collection its schema and a map id → {vector,
// payload}. It also says which error code the cluster must refuse a write with,
// and checks search, get, count and scroll answers against the model. Pure
// functions and plain data, so the checks themselves can be unit-tested.

import type { PointId } from '../ts/validate.js';

export type Metric = 'l2' | 'ip' | 'cosine';
export type Kind = 'hash' | 'spatial' | 'semantic';

export interface Schema {
  name: string;
  dim: number;
  metric: Metric;
  kind: Kind;
  shards: number;
  replicas: number;
}

export interface ModelPoint {
  vector: Float32Array;
  payload?: Record<string, unknown>;
}

export interface ModelCollection {
  schema: Schema;
  points: Map<PointId, ModelPoint>;
}

/** A point as a command sends it: a vector of plain numbers (rounded to float32 by the wire), a payload of anything. */
export interface SentPoint {
  id: unknown;
  vector: number[];
  payload?: unknown;
}

export const PAYLOAD_LIMIT = 64 * 1024;
const ID_BYTES = 512;
const PAYLOAD_DEPTH = 64;

export class Model {
  /** Live collections, oldest first; commands pick one by index modulo the length. */
  readonly collections: ModelCollection[] = [];
  /** Shard processes killed and not restarted yet. */
  readonly down = new Set<string>();

  create(schema: Schema): void {
    this.collections.push({ schema, points: new Map() });
  }

  drop(name: string): void {
    const i = this.collections.findIndex((c) => c.schema.name === name);
    if (i >= 0) this.collections.splice(i, 1);
  }

  pick(slot: number): ModelCollection {
    return this.collections[slot % this.collections.length];
  }
}

function depth(x: unknown): number {
  if (Array.isArray(x)) return 1 + Math.max(0, ...x.map(depth));
  if (x !== null && typeof x === 'object') return 1 + Math.max(0, ...Object.values(x).map(depth));
  return 0;
}

/**
 * The codes the cluster may refuse an upsert of `points` with (documented in
 * docs/protocol.md), or an empty set when it must accept it. A batch is all or
 * nothing; with several faults any of their codes is right.
 */
export function upsertFaults(c: ModelCollection, points: SentPoint[]): Set<string> {
  const codes = new Set<string>();
  for (const p of points) {
    const id = p.id;
    const idOk = (typeof id === 'number' && Number.isSafeInteger(id))
      || (typeof id === 'string' && Buffer.byteLength(id, 'utf8') >= 1 && Buffer.byteLength(id, 'utf8') <= ID_BYTES);
    if (!idOk) codes.add('INVALID_ID');
    if (p.vector.length !== c.schema.dim) codes.add('DIMENSION_MISMATCH');
    const f = Float32Array.from(p.vector);
    if (f.some((x) => !Number.isFinite(x))) codes.add('INVALID_VECTOR');
    if (c.schema.metric === 'cosine' && f.every((x) => x === 0)) codes.add('INVALID_VECTOR');
    if (p.payload !== undefined && p.payload !== null) {
      if (typeof p.payload !== 'object' || Array.isArray(p.payload)) codes.add('INVALID_PAYLOAD');
      else if (depth(p.payload) > PAYLOAD_DEPTH + 1) codes.add('INVALID_PAYLOAD');
      else if (Buffer.byteLength(JSON.stringify(p.payload), 'utf8') > PAYLOAD_LIMIT) codes.add('PAYLOAD_TOO_LARGE');
    }
  }
  return codes;
}

/** Applies an acknowledged upsert as the cluster does: the last write of an id in the batch wins. */
export function applyUpsert(c: ModelCollection, points: SentPoint[]): void {
  for (const p of points) {
    const mp: ModelPoint = { vector: Float32Array.from(p.vector) };
    if (p.payload !== undefined && p.payload !== null) mp.payload = p.payload as Record<string, unknown>;
    c.points.set(p.id as PointId, mp);
  }
}

export function applyDelete(c: ModelCollection, ids: PointId[]): void {
  for (const id of ids) c.points.delete(id);
}

// ---- Scores: the true metric as the core reports it, compared on a scale where
// float32 rounding error has a simple bound (squared distance for l2).

const norm2 = (v: ArrayLike<number>) => { let s = 0; for (let i = 0; i < v.length; i++) s += v[i] * v[i]; return s; };

/** `key` is squared L2, inner product or cosine similarity; `tol` bounds the cluster's float32 error on that key. */
function keyOf(metric: Metric, q: Float32Array, v: Float32Array): { key: number; tol: number } {
  const qq = norm2(q);
  const vv = norm2(v);
  if (metric === 'l2') {
    let s = 0;
    for (let i = 0; i < q.length; i++) s += (q[i] - v[i]) ** 2;
    return { key: s, tol: 1e-5 * (qq + vv) + 1e-30 };
  }
  let dot = 0;
  for (let i = 0; i < q.length; i++) dot += q[i] * v[i];
  if (metric === 'ip') return { key: dot, tol: 1e-5 * Math.sqrt(qq * vv) + 1e-30 };
  return { key: dot / Math.sqrt(qq * vv), tol: 1e-5 };
}

/** A reported score on the key's scale. */
const scoreKey = (metric: Metric, score: number) => (metric === 'l2' ? score * score : score);
/** Whether key `a` is nearer than key `b` by more than `tol`. */
const nearer = (metric: Metric, a: number, b: number, tol: number) => (metric === 'l2' ? a < b - tol : a > b + tol);

export interface SeenHit { id: PointId; score: number }

/**
 * Why `hits` is not a right exact top-k of `query` in the model, or undefined.
 * Right means: min(k, n) distinct ids that exist, each with its true score
 * (within tolerance), nearest first, and no point left out that is nearer than
 * the farthest hit by more than the tolerance (ties at the k-th score may go
 * either way).
 */
export function checkSearch(c: ModelCollection, query: number[], k: number, hits: SeenHit[]): string | undefined {
  const { metric } = c.schema;
  const q = Float32Array.from(query);
  const want = Math.min(k, c.points.size);
  if (hits.length !== want) return `expected ${want} hits (k=${k}, ${c.points.size} points), got ${hits.length}`;
  const seen = new Set<PointId>();
  let worst: { key: number; tol: number; id: PointId } | undefined;
  for (const [i, h] of hits.entries()) {
    if (seen.has(h.id)) return `hit ${i}: id ${JSON.stringify(h.id)} twice`;
    seen.add(h.id);
    const p = c.points.get(h.id);
    if (!p) return `hit ${i}: id ${JSON.stringify(h.id)} is not in the collection`;
    const t = keyOf(metric, q, p.vector);
    if (!(Math.abs(scoreKey(metric, h.score) - t.key) <= t.tol)) return `hit ${i}: id ${JSON.stringify(h.id)} scored ${h.score}, expected ${metric === 'l2' ? Math.sqrt(t.key) : t.key}`;
    if (i > 0 && nearer(metric, scoreKey(metric, h.score), scoreKey(metric, hits[i - 1].score), 0)) return `hit ${i} (score ${h.score}) is nearer than hit ${i - 1} (score ${hits[i - 1].score})`;
    if (!worst || nearer(metric, worst.key, t.key, 0)) worst = { ...t, id: h.id };
  }
  if (!worst) return undefined;
  for (const [id, p] of c.points) {
    if (seen.has(id)) continue;
    const t = keyOf(metric, q, p.vector);
    if (nearer(metric, t.key, worst.key, t.tol + worst.tol)) {
      return `id ${JSON.stringify(id)} (score ${metric === 'l2' ? Math.sqrt(t.key) : t.key}) is missing: it is nearer than hit ${JSON.stringify(worst.id)}`;
    }
  }
  return undefined;
}

/** JSON with sorted keys, so payloads compare by content (and -0 as 0, as JSON stores it). */
export function canonical(x: unknown): string {
  return JSON.stringify(x, (_, v: unknown) => (v !== null && typeof v === 'object' && !Array.isArray(v)
    ? Object.fromEntries(Object.entries(v as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
    : v));
}

export interface SeenPoint { id: PointId; vector?: ArrayLike<number>; payload?: unknown }

/** Why a point read back differs from the model's, or undefined. */
export function checkPoint(c: ModelCollection, got: SeenPoint, withVector: boolean): string | undefined {
  const p = c.points.get(got.id);
  if (!p) return `id ${JSON.stringify(got.id)} is not in the collection`;
  if (withVector) {
    if (!got.vector || got.vector.length !== p.vector.length || p.vector.some((x, i) => got.vector![i] !== x)) {
      return `id ${JSON.stringify(got.id)}: vector ${got.vector ? `[${Array.from(got.vector).join(', ')}]` : 'absent'}, expected [${Array.from(p.vector).join(', ')}]`;
    }
  }
  if ((got.payload === undefined) !== (p.payload === undefined) || canonical(got.payload) !== canonical(p.payload)) {
    return `id ${JSON.stringify(got.id)}: payload ${canonical(got.payload)}, expected ${canonical(p.payload)}`;
  }
  return undefined;
}

/** `get`: the points among `ids` that exist, in the order asked (an id asked twice comes twice). */
export function checkGet(c: ModelCollection, ids: PointId[], got: SeenPoint[]): string | undefined {
  const want = ids.filter((id) => c.points.has(id));
  const gotIds = got.map((p) => p.id);
  if (canonical(gotIds) !== canonical(want) || gotIds.some((id, i) => typeof id !== typeof want[i])) {
    return `ids ${JSON.stringify(gotIds)}, expected ${JSON.stringify(want)}`;
  }
  for (const p of got) {
    const why = checkPoint(c, p, true);
    if (why) return why;
  }
  return undefined;
}

/** A whole scroll (every page): each point once, exactly the model's. */
export function checkScroll(c: ModelCollection, got: SeenPoint[]): string | undefined {
  const seen = new Set<PointId>();
  for (const p of got) {
    if (seen.has(p.id)) return `id ${JSON.stringify(p.id)} scrolled twice`;
    seen.add(p.id);
    const why = checkPoint(c, p, true);
    if (why) return why;
  }
  if (seen.size !== c.points.size) return `scrolled ${seen.size} points, the collection has ${c.points.size}`;
  return undefined;
}
