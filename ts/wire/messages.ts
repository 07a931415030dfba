// Request and reply bodies of the wire protocol (docs/protocol.md).
// A validator takes what `decode` returned and gives back a typed, normalised
// request, or throws a VdbError whose code says what is wrong and whose message
// starts with the path of the field (`points[3].vector: expected 128 numbers,
// got 127`). Fields not named here are ignored, so newer clients can send more;
// a named field of the wrong type is an error. An optional field may be absent
// or null.

import { DIM_MAX, HNSW_LIMITS, checkQuantization } from '../core/wasm-index.js';
import { SHARDS_MAX } from '../partition/hash.js';
import type { Metric, Quantization } from '../core/wasm-index.js';
import type { Hit, StoredPoint } from '../collection.js';
import { compileFilter } from '../filter.js';
import type { Filter } from '../filter.js';
import { ErrorCode, VdbError } from '../errors.js';
import { LIMITS, fail, describe, isPlainObject, checkId, parseVector, checkPayload, checkPoint, checkVector, checkCollectionName } from '../validate.js';
import type { Payload, PointId, PointSchema } from '../validate.js';

export { checkId, parseVector, checkPayload, checkCollectionName };

// ------------------------------------------------------------------ limits

/** Bounds of the wire requests: the core's HNSW limits and the partitioners' shard limit, plus replicas. */
export const WIRE_LIMITS = {
  shards: SHARDS_MAX,
  replicas: 16,
  ...HNSW_LIMITS,
  nprobe: SHARDS_MAX,
  /** Payload fields a collection indexes. */
  payloadIndexes: 64,
} as const;

export const METRICS: readonly Metric[] = ['l2', 'ip', 'cosine'];
export const PARTITIONER_KINDS = ['hash', 'spatial', 'semantic'] as const;
export type PartitionerKind = (typeof PARTITIONER_KINDS)[number];
export const CONSISTENCIES = ['eventual', 'session', 'strong'] as const;
export type Consistency = (typeof CONSISTENCIES)[number];

/** `vdb.v1.<collection>.<endpoint>` */
export const COLLECTION_ENDPOINTS = ['upsert', 'delete', 'get', 'search', 'count', 'scroll'] as const;
export type CollectionEndpoint = (typeof COLLECTION_ENDPOINTS)[number];
/** `vdb.v1._admin.<endpoint>` */
export const ADMIN_ENDPOINTS = ['collections.create', 'collections.drop', 'collections.list', 'describe', 'status', 'drain'] as const;
export type AdminEndpoint = (typeof ADMIN_ENDPOINTS)[number];

export const HNSW_DEFAULTS = { m: 16, efConstruction: 200 } as const;

// ------------------------------------------------------------------- types

export interface PartitionerSpec {
  kind: PartitionerKind;
  shards: number;
  /** The payload field whose value (a label) picks the shard; semantic only. */
  field?: string;
}

export interface HnswParams {
  m: number;
  efConstruction: number;
}

/** `collections.create`; `hnsw` is filled with HNSW_DEFAULTS where not given. */
export interface CreateCollectionRequest {
  name: string;
  dim: number;
  metric: Metric;
  partitioner: PartitionerSpec;
  replicas: number;
  hnsw: HnswParams;
  /** 8-bit codes in every replica's index (docs/collection.md); absent: float vectors. */
  quantization?: Quantization;
  /** Payload fields whose values are indexed in memory for filters; absent: none. */
  payloadIndexes?: string[];
}

/** `collections.drop` and `describe`. */
export interface NameRequest {
  name: string;
}

/** `collections.list`, `status`: no fields. */
export type EmptyRequest = Record<string, never>;

/** Per shard (its number as a string), the log sequence a read must see: the `seqs` of the client's write replies. */
export type SessionSeqs = Record<string, number>;

/** Which replicas may answer a read, and what it must see (docs/cluster.md). */
export interface ReadConsistency {
  /** Default 'session'. */
  consistency: Consistency;
  /** `session`: the sequences to have applied first. */
  afterSeqs?: SessionSeqs;
}

export interface WirePoint {
  id: PointId;
  vector: Float32Array;
  payload?: Payload;
}

export interface UpsertRequest {
  points: WirePoint[];
  /** Reply once every live replica of the written shards has applied the write. Default false. */
  wait: boolean;
}

export interface DeleteRequest {
  ids: PointId[];
  /** As for upsert. */
  wait: boolean;
}

export interface GetRequest extends ReadConsistency {
  ids: PointId[];
  /** Default true, as `Collection.get`. */
  withVector: boolean;
}

export type CountRequest = ReadConsistency;

/** `scroll`: a page of points in id order (integers, then strings by UTF-8 bytes), after the cursor. */
export interface ScrollRequest extends ReadConsistency {
  /** The cursor: the `next` of the previous page; absent for the first page. */
  after?: PointId;
  /** 1..LIMITS.scroll, default 100. */
  limit: number;
  filter?: Filter;
  /** Default false. */
  withVector: boolean;
  /** Default true. */
  withPayload: boolean;
}

export interface SearchRequest extends ReadConsistency {
  vector: Float32Array;
  k: number;
  ef?: number;
  /** Validated by compileFilter; passed on as sent. */
  filter?: Filter;
  /** Default false. */
  exact: boolean;
  /** Default false. */
  withPayload: boolean;
  /** Spatial collections: search only the nprobe nearest leaves. */
  nprobe?: number;
}

/** `upsert` and `delete`: points written (or ids deleted that existed) and the log sequence. */
export interface WriteReply {
  count: number;
  seq: number;
  /** With `wait`: whether every live replica of every written shard confirmed it applied the write in time. */
  applied?: boolean;
  /** With `wait`, when `applied` is false: the shards not confirmed. */
  unconfirmed?: number[];
}

/** `get`: the stored points among the ids, in the order asked; missing ids are left out. */
export interface GetReply {
  points: StoredPoint[];
  /** True when some shards did not answer in time (their points are absent); they are listed in `missing`. */
  partial?: boolean;
  missing?: number[];
}

export interface CountReply {
  count: number;
}

export interface ScrollReply {
  points: StoredPoint[];
  /** The cursor of the next page; absent after the last page. */
  next?: PointId;
}

export interface SearchReply {
  hits: Hit[];
  /** True when some shards did not answer in time; they are listed in `missing`. */
  partial: boolean;
  /** Shard numbers (within the collection) that did not answer. */
  missing?: number[];
  tookMs: number;
  /** The longest of the answering shards' own search times (inside the shard process), ms. */
  searchMs?: number;
  /** The sum of the answering shards' own search times, ms. */
  searchMsTotal?: number;
}

export interface ErrorReply {
  error: { code: string; message: string };
}

// ----------------------------------------------------------------- helpers

/** An own field; null counts as absent. */
function get(o: Record<string, unknown>, key: string): unknown {
  const v = Object.hasOwn(o, key) ? o[key] : undefined;
  return v === null ? undefined : v;
}

function requestBody(x: unknown, what: string): Record<string, unknown> {
  if (!isPlainObject(x)) throw new VdbError(ErrorCode.BAD_REQUEST, `${what}: the body must be a map, got ${describe(x)}`);
  return x;
}

function map(x: unknown, path: string, code: ErrorCode): Record<string, unknown> {
  if (!isPlainObject(x)) fail(code, path, `expected a map, got ${describe(x)}`);
  return x;
}

function integer(x: unknown, path: string, lo: number, hi: number, code: ErrorCode): number {
  if (x === undefined) fail(code, path, `required: an integer from ${lo} to ${hi}`);
  if (typeof x !== 'number' || !Number.isInteger(x) || x < lo || x > hi) {
    fail(code, path, `expected an integer from ${lo} to ${hi}, got ${describe(x)}`);
  }
  return x;
}

function optionalBoolean(o: Record<string, unknown>, key: string, fallback: boolean): boolean {
  const x = get(o, key);
  if (x === undefined) return fallback;
  if (typeof x !== 'boolean') fail(ErrorCode.INVALID_ARGUMENT, key, `expected true or false, got ${describe(x)}`);
  return x;
}

function oneOf<T extends string>(x: unknown, path: string, options: readonly T[], code: ErrorCode): T {
  if (typeof x !== 'string' || !(options as readonly string[]).includes(x)) {
    fail(code, path, `expected one of ${options.map((o) => JSON.stringify(o)).join(', ')}, got ${describe(x)}`);
  }
  return x as T;
}

// ------------------------------------------------------- ids, vectors, payloads

function idList(x: unknown, path: string): PointId[] {
  if (!Array.isArray(x)) fail(ErrorCode.INVALID_ARGUMENT, path, `expected an array of ids, got ${describe(x)}`);
  const out = new Array<PointId>(x.length);
  for (let i = 0; i < x.length; i++) out[i] = checkId(x[i], `${path}[${i}]`);
  return out;
}

// -------------------------------------------------------------- validators

export function validateCreateCollection(body: unknown): CreateCollectionRequest {
  const o = requestBody(body, 'collections.create');
  const name = checkCollectionName(get(o, 'name'));
  const dim = integer(get(o, 'dim'), 'dim', 1, DIM_MAX, ErrorCode.INVALID_ARGUMENT);
  const metric = oneOf(get(o, 'metric'), 'metric', METRICS, ErrorCode.INVALID_ARGUMENT);

  const p = get(o, 'partitioner');
  if (p === undefined) fail(ErrorCode.INVALID_PARTITIONER, 'partitioner', 'required: {kind, shards, field?}');
  const pm = map(p, 'partitioner', ErrorCode.INVALID_PARTITIONER);
  const kind = oneOf(get(pm, 'kind'), 'partitioner.kind', PARTITIONER_KINDS, ErrorCode.INVALID_PARTITIONER);
  const shards = integer(get(pm, 'shards'), 'partitioner.shards', 1, WIRE_LIMITS.shards, ErrorCode.INVALID_PARTITIONER);
  const partitioner: PartitionerSpec = { kind, shards };
  const field = get(pm, 'field');
  if (kind === 'semantic') {
    if (typeof field !== 'string' || field === '' || field.startsWith('$') || field.split('.').includes('')) {
      fail(ErrorCode.INVALID_PARTITIONER, 'partitioner.field', `a semantic partitioner needs the payload field of its label (a dotted path), got ${describe(field)}`);
    }
    partitioner.field = field;
  } else if (field !== undefined) {
    fail(ErrorCode.INVALID_PARTITIONER, 'partitioner.field', `only a semantic partitioner reads a field, not ${kind}`);
  }

  const replicas = integer(get(o, 'replicas'), 'replicas', 1, WIRE_LIMITS.replicas, ErrorCode.INVALID_ARGUMENT);

  const hnsw: HnswParams = { ...HNSW_DEFAULTS };
  const h = get(o, 'hnsw');
  if (h !== undefined) {
    const hm = map(h, 'hnsw', ErrorCode.INVALID_ARGUMENT);
    const m = get(hm, 'm');
    if (m !== undefined) hnsw.m = integer(m, 'hnsw.m', WIRE_LIMITS.mMin, WIRE_LIMITS.mMax, ErrorCode.INVALID_ARGUMENT);
    const efc = get(hm, 'efConstruction');
    if (efc !== undefined) hnsw.efConstruction = integer(efc, 'hnsw.efConstruction', 1, WIRE_LIMITS.efConstruction, ErrorCode.INVALID_ARGUMENT);
  }
  const req: CreateCollectionRequest = { name, dim, metric, partitioner, replicas, hnsw };
  const quantization = checkQuantization(get(o, 'quantization'));
  if (quantization) req.quantization = quantization;
  const pi = get(o, 'payloadIndexes');
  if (pi !== undefined) req.payloadIndexes = payloadIndexes(pi);
  return req;
}

/** Distinct dotted payload paths, as a filter names them. */
function payloadIndexes(x: unknown): string[] {
  if (!Array.isArray(x) || x.length > WIRE_LIMITS.payloadIndexes) {
    fail(ErrorCode.INVALID_ARGUMENT, 'payloadIndexes', `expected an array of at most ${WIRE_LIMITS.payloadIndexes} payload field paths, got ${describe(x)}`);
  }
  x.forEach((f, i) => {
    if (typeof f !== 'string' || f === '' || f.startsWith('$') || f.split('.').includes('')) {
      fail(ErrorCode.INVALID_ARGUMENT, `payloadIndexes[${i}]`, `expected a payload field path (dotted, no empty segment, not starting with $), got ${describe(f)}`);
    }
  });
  return [...new Set(x as string[])];
}

export function validateDropCollection(body: unknown): NameRequest {
  return { name: checkCollectionName(get(requestBody(body, 'collections.drop'), 'name')) };
}

export function validateDescribe(body: unknown): NameRequest {
  return { name: checkCollectionName(get(requestBody(body, 'describe'), 'name')) };
}

export function validateListCollections(body: unknown): EmptyRequest {
  requestBody(body, 'collections.list');
  return {};
}

export function validateStatus(body: unknown): EmptyRequest {
  requestBody(body, 'status');
  return {};
}

/** `afterSeqs`: a map of shard number → log sequence. */
function sessionSeqs(x: unknown, path: string): SessionSeqs {
  const m = map(x, path, ErrorCode.INVALID_ARGUMENT);
  const out: SessionSeqs = {};
  for (const [shard, seq] of Object.entries(m)) {
    if (!/^(0|[1-9][0-9]{0,5})$/.test(shard) || Number(shard) >= WIRE_LIMITS.shards) fail(ErrorCode.INVALID_ARGUMENT, `${path}`, `keys are shard numbers, got ${JSON.stringify(shard.slice(0, 32))}`);
    out[shard] = integer(seq, `${path}.${shard}`, 0, Number.MAX_SAFE_INTEGER, ErrorCode.INVALID_ARGUMENT);
  }
  return out;
}

/** `consistency` and `afterSeqs` of a read; `aliasAfter`: the older name of `afterSeqs`, `after` (search, get, count; in scroll `after` is the cursor). */
function readConsistency(o: Record<string, unknown>, aliasAfter = false): ReadConsistency {
  const out: ReadConsistency = { consistency: 'session' };
  const consistency = get(o, 'consistency');
  if (consistency !== undefined) out.consistency = oneOf(consistency, 'consistency', CONSISTENCIES, ErrorCode.INVALID_ARGUMENT);
  let key = 'afterSeqs';
  if (aliasAfter && get(o, key) === undefined) key = 'after';
  const seqs = get(o, key);
  if (seqs !== undefined) out.afterSeqs = sessionSeqs(seqs, key);
  return out;
}

export function validateCount(body: unknown): CountRequest {
  return readConsistency(requestBody(body, 'count'), true);
}

export function validateScroll(body: unknown): ScrollRequest {
  const o = requestBody(body, 'scroll');
  const limit = get(o, 'limit');
  const req: ScrollRequest = {
    ...readConsistency(o),
    limit: limit === undefined ? 100 : integer(limit, 'limit', 1, LIMITS.scroll, ErrorCode.INVALID_ARGUMENT),
    withVector: optionalBoolean(o, 'withVector', false),
    withPayload: optionalBoolean(o, 'withPayload', true),
  };
  const after = get(o, 'after');
  if (after !== undefined) req.after = checkId(after, 'after');
  const filter = get(o, 'filter');
  if (filter !== undefined) {
    compileFilter(filter); // INVALID_FILTER, with the path from `filter`
    req.filter = filter as Filter;
  }
  return req;
}

/** `upsert`; give the collection's schema to check every point as the collection
 * itself will (`checkPoint`, the same function): what this accepts, a replica applies. */
export function validateUpsert(body: unknown, schema?: PointSchema): UpsertRequest {
  const o = requestBody(body, 'upsert');
  const list = get(o, 'points');
  if (!Array.isArray(list)) fail(ErrorCode.INVALID_ARGUMENT, 'points', `expected an array of points, got ${describe(list)}`);
  const points = new Array<WirePoint>(list.length);
  for (let i = 0; i < list.length; i++) {
    const at = `points[${i}]`;
    map(list[i], at, ErrorCode.INVALID_ARGUMENT);
    // Without a schema only the shape is checked: any dimension, any metric but cosine's zero rule.
    const { id, vector, payload } = checkPoint(list[i], at, schema ?? { dim: vectorLength(list[i]), metric: 'l2' });
    points[i] = payload === undefined ? { id, vector } : { id, vector, payload };
  }
  return { points, wait: optionalBoolean(o, 'wait', false) };
}

/** The length a point's vector claims, so a schema-less check takes any dimension. */
function vectorLength(p: unknown): number {
  const v = (p as { vector?: unknown }).vector;
  if (v instanceof Uint8Array) return Math.floor(v.length / 4);
  return Array.isArray(v) || v instanceof Float32Array ? v.length : 0;
}

export function validateDelete(body: unknown): DeleteRequest {
  const o = requestBody(body, 'delete');
  return { ids: idList(get(o, 'ids'), 'ids'), wait: optionalBoolean(o, 'wait', false) };
}

export function validateGet(body: unknown): GetRequest {
  const o = requestBody(body, 'get');
  return { ...readConsistency(o, true), ids: idList(get(o, 'ids'), 'ids'), withVector: optionalBoolean(o, 'withVector', true) };
}

/** `search`; give the collection's schema to check the query as the collection will. */
export function validateSearch(body: unknown, schema?: PointSchema): SearchRequest {
  const o = requestBody(body, 'search');
  const vector = schema ? checkVector(get(o, 'vector'), 'vector', schema) : parseVector(get(o, 'vector'), 'vector');
  const k = integer(get(o, 'k'), 'k', 1, LIMITS.k, ErrorCode.INVALID_K);
  const req: SearchRequest = {
    ...readConsistency(o, true),
    vector,
    k,
    exact: optionalBoolean(o, 'exact', false),
    withPayload: optionalBoolean(o, 'withPayload', false),
  };
  const ef = get(o, 'ef');
  if (ef !== undefined) req.ef = integer(ef, 'ef', k, WIRE_LIMITS.ef, ErrorCode.INVALID_EF);
  const filter = get(o, 'filter');
  if (filter !== undefined) {
    compileFilter(filter); // INVALID_FILTER, with the path from `filter`
    req.filter = filter as Filter;
  }
  const nprobe = get(o, 'nprobe');
  if (nprobe !== undefined) req.nprobe = integer(nprobe, 'nprobe', 1, WIRE_LIMITS.nprobe, ErrorCode.INVALID_ARGUMENT);
  return req;
}

export interface DrainRequest { process: string; cancel: boolean }

/** `drain`: the shard process to move every replica off (or, with `cancel`, to stop draining). */
export function validateDrain(body: unknown): DrainRequest {
  const o = requestBody(body, 'drain');
  const p = get(o, 'process');
  if (typeof p !== 'string' || p.length === 0 || p.length > 256) fail(ErrorCode.INVALID_ARGUMENT, 'process', `expected the name of a shard process (1 to 256 characters), got ${describe(p)}`);
  return { process: p, cancel: optionalBoolean(o, 'cancel', false) };
}

/** The validator of every endpoint, by name (collection endpoints take the collection's dim). */
export const REQUEST_VALIDATORS = {
  upsert: validateUpsert,
  delete: validateDelete,
  get: validateGet,
  search: validateSearch,
  count: validateCount,
  scroll: validateScroll,
  'collections.create': validateCreateCollection,
  'collections.drop': validateDropCollection,
  'collections.list': validateListCollections,
  describe: validateDescribe,
  status: validateStatus,
  drain: validateDrain,
} as const satisfies Record<CollectionEndpoint | AdminEndpoint, (body: unknown, schema?: PointSchema) => unknown>;

// ------------------------------------------------------------------ replies

/**
 * Client side: an error body is thrown as its VdbError; other reply bodies
 * are checked too, and a malformed one is INTERNAL.
 */
function readReply<T>(body: unknown, read: (o: Record<string, unknown>) => T): T {
  const err = errorFromBody(body);
  if (err) throw err;
  try {
    return read(map(body, 'reply', ErrorCode.INTERNAL));
  } catch (e) {
    if (e instanceof VdbError) throw new VdbError(ErrorCode.INTERNAL, `malformed reply: ${e.message}`);
    throw e;
  }
}

function count(o: Record<string, unknown>, key: string): number {
  return integer(get(o, key), key, 0, Number.MAX_SAFE_INTEGER, ErrorCode.INTERNAL);
}

export function readWriteReply(body: unknown): WriteReply {
  return readReply(body, (o) => {
    const reply: WriteReply = { count: count(o, 'count'), seq: count(o, 'seq') };
    const applied = get(o, 'applied');
    if (applied !== undefined) {
      if (typeof applied !== 'boolean') fail(ErrorCode.INTERNAL, 'applied', `expected true or false, got ${describe(applied)}`);
      reply.applied = applied;
    }
    const unconfirmed = shardList(o, 'unconfirmed');
    if (unconfirmed) reply.unconfirmed = unconfirmed;
    return reply;
  });
}

export function readScrollReply(body: unknown): ScrollReply {
  return readReply(body, (o) => {
    const reply: ScrollReply = { points: readPoints(o) };
    const next = get(o, 'next');
    if (next !== undefined) reply.next = checkId(next, 'next');
    return reply;
  });
}

export function readCountReply(body: unknown): CountReply {
  return readReply(body, (o) => ({ count: count(o, 'count') }));
}

function readPoints(o: Record<string, unknown>): StoredPoint[] {
  const list = get(o, 'points');
  if (!Array.isArray(list)) fail(ErrorCode.INTERNAL, 'points', `expected an array, got ${describe(list)}`);
  return list.map((x, i) => {
    const p = map(x, `points[${i}]`, ErrorCode.INTERNAL);
    const point: StoredPoint = { id: checkId(get(p, 'id'), `points[${i}].id`) };
    const vector = get(p, 'vector');
    if (vector !== undefined) point.vector = parseVector(vector, `points[${i}].vector`);
    const payload = checkPayload(get(p, 'payload'), `points[${i}].payload`);
    if (payload !== undefined) point.payload = payload;
    return point;
  });
}

export function readGetReply(body: unknown): GetReply {
  return readReply(body, (o) => {
    const reply: GetReply = { points: readPoints(o) };
    const partial = get(o, 'partial');
    if (partial !== undefined) {
      if (typeof partial !== 'boolean') fail(ErrorCode.INTERNAL, 'partial', `expected true or false, got ${describe(partial)}`);
      reply.partial = partial;
    }
    const missing = readMissing(o);
    if (missing) reply.missing = missing;
    return reply;
  });
}

export function readSearchReply(body: unknown): SearchReply {
  return readReply(body, (o) => {
    const list = get(o, 'hits');
    if (!Array.isArray(list)) fail(ErrorCode.INTERNAL, 'hits', `expected an array, got ${describe(list)}`);
    const hits = list.map((x, i): Hit => {
      const h = map(x, `hits[${i}]`, ErrorCode.INTERNAL);
      const score = get(h, 'score');
      if (typeof score !== 'number') fail(ErrorCode.INTERNAL, `hits[${i}].score`, `expected a number, got ${describe(score)}`);
      const hit: Hit = { id: checkId(get(h, 'id'), `hits[${i}].id`), score };
      const payload = checkPayload(get(h, 'payload'), `hits[${i}].payload`);
      if (payload !== undefined) hit.payload = payload;
      return hit;
    });
    const partial = get(o, 'partial');
    if (typeof partial !== 'boolean') fail(ErrorCode.INTERNAL, 'partial', `expected true or false, got ${describe(partial)}`);
    const tookMs = get(o, 'tookMs');
    if (typeof tookMs !== 'number' || !(tookMs >= 0)) fail(ErrorCode.INTERNAL, 'tookMs', `expected a number ≥ 0, got ${describe(tookMs)}`);
    const reply: SearchReply = { hits, partial, tookMs };
    for (const key of ['searchMs', 'searchMsTotal'] as const) {
      const ms = get(o, key);
      if (ms === undefined) continue;
      if (typeof ms !== 'number' || !(ms >= 0)) fail(ErrorCode.INTERNAL, key, `expected a number ≥ 0, got ${describe(ms)}`);
      reply[key] = ms;
    }
    const missing = readMissing(o);
    if (missing) reply.missing = missing;
    return reply;
  });
}

/** The shard numbers of a reply's `key`, if it has one. */
function shardList(o: Record<string, unknown>, key: string): number[] | undefined {
  const list = get(o, key);
  if (list === undefined) return undefined;
  if (!Array.isArray(list)) fail(ErrorCode.INTERNAL, key, `expected an array, got ${describe(list)}`);
  return list.map((s, i) => integer(s, `${key}[${i}]`, 0, Number.MAX_SAFE_INTEGER, ErrorCode.INTERNAL));
}

const readMissing = (o: Record<string, unknown>) => shardList(o, 'missing');

// ------------------------------------------------------------------- errors

const KNOWN_CODES = new Set<string>(Object.values(ErrorCode));

/** The number sent as `Nats-Service-Error-Code`, HTTP-like, for each stable code. */
const STATUS: Record<ErrorCode, number> = {
  BAD_REQUEST: 400,
  INVALID_ARGUMENT: 400,
  DIMENSION_MISMATCH: 400,
  INVALID_VECTOR: 400,
  INVALID_K: 400,
  INVALID_EF: 400,
  INVALID_FILTER: 400,
  INVALID_PARTITIONER: 400,
  INVALID_ID: 400,
  INVALID_PAYLOAD: 400,
  COLLECTION_NOT_FOUND: 404,
  UNKNOWN_ENDPOINT: 404,
  SCHEMA_MISMATCH: 409,
  COLLECTION_EXISTS: 409,
  LOCKED: 409,
  CONFLICT: 409,
  PAYLOAD_TOO_LARGE: 413,
  REQUEST_TOO_LARGE: 413,
  TIMEOUT: 504,
  UNAVAILABLE: 503,
  SHARD_UNAVAILABLE: 503,
  LAGGING: 503,
  CLOSED: 503,
  OUT_OF_MEMORY: 507,
  RESOURCE_EXHAUSTED: 507,
  PERMISSION_DENIED: 403,
  UNAUTHENTICATED: 401,
  STORAGE: 500,
  CORRUPT_INDEX: 500,
  CORRUPT_BACKUP: 400,
  UNKNOWN_SLOT: 500,
  INTERNAL: 500,
};

/** The numeric status for a code (500 for codes this version does not know). */
export function errorStatus(code: string): number {
  return KNOWN_CODES.has(code) ? STATUS[code as ErrorCode] : 500;
}

const CODE_RE = /^[A-Z][A-Z0-9_]{0,63}$/;

/**
 * The error body for anything thrown: a VdbError keeps its code and message
 * (also a code this version does not know, relayed from a newer peer);
 * anything else is INTERNAL, its details not sent.
 */
export function errorBody(e: unknown): ErrorReply {
  if (e instanceof VdbError && typeof e.code === 'string' && CODE_RE.test(e.code)) {
    return { error: { code: e.code, message: String(e.message) } };
  }
  return { error: { code: ErrorCode.INTERNAL, message: 'internal error' } };
}

/**
 * Everything a service reply needs for an error: `status` for
 * `Nats-Service-Error-Code`, `description` (`CODE: message`, one line, at most
 * 1024 characters) for `Nats-Service-Error`, and the body to encode.
 */
export function serviceError(e: unknown): { status: number; description: string; body: ErrorReply } {
  const body = errorBody(e);
  const line = `${body.error.code}: ${body.error.message}`.replace(/[\r\n\0]+/g, ' ');
  return { status: errorStatus(body.error.code), description: line.length > 1024 ? `${line.slice(0, 1021)}...` : line, body };
}

/**
 * Client side: the VdbError an error body stands for, or undefined when the
 * body is not `{error: {code, message}}`. A code this version does not know is
 * kept as it is (a newer server may send it).
 */
export function errorFromBody(body: unknown): VdbError | undefined {
  if (!isPlainObject(body) || !Object.hasOwn(body, 'error')) return undefined;
  const e = body.error;
  if (!isPlainObject(e) || typeof e.code !== 'string') return undefined;
  return new VdbError(e.code as ErrorCode, typeof e.message === 'string' ? e.message : e.code);
}
