// The internal search request a coordinator sends to a shard, and the shard's
// reply. The coordinator has validated the public request, so this one is
// compact: the query as binary little-endian float32, fields already
// normalised, plus the sequence the shard must have applied first (session and
// strong consistency) and how long it may wait for it. The shard still checks
// the shape (it is a boundary: anything on NATS may send it) but does not
// parse the request twice: the vector, k, ef and filter are checked by
// Collection.search itself, with the same coded errors. Hits come back as
// parallel arrays, with the shard's own search time.

import { VdbError, ErrorCode } from '../ts/errors.js';
import { float32Bytes } from '../ts/wire/codec.js';
import type { SearchRequest } from '../ts/wire/messages.js';
import type { Filter } from '../ts/filter.js';
import type { Hit } from '../ts/collection.js';
import { isPlainObject } from '../ts/validate.js';

export interface ShardSearch {
  /** Little-endian float32; its length is checked against the collection's dim by Collection.search. */
  vector: Uint8Array;
  k: number;
  ef?: number;
  filter?: Filter;
  exact: boolean;
  withPayload: boolean;
  minSeq?: number;
  waitMs: number;
}

export const DEFAULT_WAIT_MS = 2000;
export const MAX_WAIT_MS = 60_000;

/** What a shard answers: its hits, the sequence it had applied, and how long the search itself took. */
export interface ShardHits {
  hits: Hit[];
  seq: number;
  searchMs: number;
}

/** The body a coordinator sends for a validated public request. */
export function shardSearchBody(req: SearchRequest, minSeq: number | undefined, waitMs: number): Record<string, unknown> {
  const body: Record<string, unknown> = { vector: float32Bytes(req.vector), k: req.k, waitMs };
  if (req.ef !== undefined) body.ef = req.ef;
  if (req.filter !== undefined) body.filter = req.filter;
  if (req.exact) body.exact = true;
  if (req.withPayload) body.withPayload = true;
  if (minSeq !== undefined) body.minSeq = minSeq;
  return body;
}

function bad(field: string, expected: string): never {
  throw new VdbError(ErrorCode.BAD_REQUEST, `internal search request: ${field}: expected ${expected}`);
}

const isCount = (x: unknown, max: number): x is number => typeof x === 'number' && Number.isSafeInteger(x) && x >= 0 && x <= max;

/** The shard side: the request's shape, BAD_REQUEST when it is not what shardSearchBody makes. */
export function checkShardRequest(body: unknown): ShardSearch {
  if (!isPlainObject(body)) bad('body', 'a map');
  const { vector, k, ef, filter, exact, withPayload, minSeq, waitMs } = body;
  if (!(vector instanceof Uint8Array)) bad('vector', 'a binary of little-endian float32');
  if (!isCount(k, Number.MAX_SAFE_INTEGER)) bad('k', 'an integer');
  const out: ShardSearch = { vector, k, exact: exact === true, withPayload: withPayload === true, waitMs: DEFAULT_WAIT_MS };
  if (exact != null && typeof exact !== 'boolean') bad('exact', 'true or false');
  if (withPayload != null && typeof withPayload !== 'boolean') bad('withPayload', 'true or false');
  if (ef != null) {
    if (!isCount(ef, Number.MAX_SAFE_INTEGER)) bad('ef', 'an integer');
    out.ef = ef;
  }
  if (filter != null) out.filter = filter as Filter;
  if (minSeq != null) {
    if (!isCount(minSeq, Number.MAX_SAFE_INTEGER)) bad('minSeq', 'a non-negative integer');
    out.minSeq = minSeq;
  }
  if (waitMs != null) {
    if (!isCount(waitMs, MAX_WAIT_MS)) bad('waitMs', `0 to ${MAX_WAIT_MS}`);
    out.waitMs = waitMs;
  }
  return out;
}

/** The shard's reply: ids, scores and (when asked) payloads as parallel arrays. */
export function shardReplyBody(r: ShardHits, withPayload: boolean): Record<string, unknown> {
  const ids = new Array<unknown>(r.hits.length);
  const scores = new Array<number>(r.hits.length);
  for (let i = 0; i < r.hits.length; i++) {
    ids[i] = r.hits[i].id;
    scores[i] = r.hits[i].score;
  }
  const body: Record<string, unknown> = { ids, scores, seq: r.seq, searchMs: r.searchMs };
  if (withPayload) body.payloads = r.hits.map((h) => h.payload ?? null);
  return body;
}

function malformed(field: string): never {
  throw new VdbError(ErrorCode.INTERNAL, `malformed shard reply: ${field}`);
}

/** The coordinator side: the hits of a shard's reply; INTERNAL when it is malformed. */
export function readShardReply(body: unknown): ShardHits {
  if (!isPlainObject(body)) malformed('not a map');
  const { ids, scores, payloads, seq, searchMs } = body;
  if (!Array.isArray(ids) || !Array.isArray(scores) || ids.length !== scores.length) malformed('ids and scores must be arrays of one length');
  if (payloads != null && (!Array.isArray(payloads) || payloads.length !== ids.length)) malformed('payloads must be an array as long as ids');
  if (!isCount(seq, Number.MAX_SAFE_INTEGER)) malformed('seq');
  if (typeof searchMs !== 'number' || !(searchMs >= 0)) malformed('searchMs');
  const hits = new Array<Hit>(ids.length);
  for (let i = 0; i < ids.length; i++) {
    const id: unknown = ids[i];
    const score: unknown = scores[i];
    if ((typeof id !== 'string' && !Number.isSafeInteger(id)) || typeof score !== 'number') malformed(`hit ${i}`);
    const hit: Hit = { id: id as Hit['id'], score };
    const payload: unknown = payloads?.[i];
    if (payload != null) {
      if (!isPlainObject(payload)) malformed(`payloads[${i}]`);
      hit.payload = payload;
    }
    hits[i] = hit;
  }
  return { hits, seq, searchMs };
}

/** What a read on a replica (get, count, scroll) must see first: `minSeq`, waited for up to `waitMs`. */
export interface ShardWait {
  minSeq?: number;
  waitMs: number;
}

/** The shard side of `minSeq`/`waitMs` in an internal get, count or scroll request. */
export function checkShardWait(body: unknown, op: string): ShardWait {
  if (!isPlainObject(body)) throw new VdbError(ErrorCode.BAD_REQUEST, `internal ${op} request: body: expected a map`);
  const { minSeq, waitMs } = body;
  const out: ShardWait = { waitMs: DEFAULT_WAIT_MS };
  if (minSeq != null) {
    if (!isCount(minSeq, Number.MAX_SAFE_INTEGER)) throw new VdbError(ErrorCode.BAD_REQUEST, `internal ${op} request: minSeq: expected a non-negative integer`);
    out.minSeq = minSeq;
  }
  if (waitMs != null) {
    if (!isCount(waitMs, MAX_WAIT_MS)) throw new VdbError(ErrorCode.BAD_REQUEST, `internal ${op} request: waitMs: expected 0 to ${MAX_WAIT_MS}`);
    out.waitMs = waitMs;
  }
  return out;
}
