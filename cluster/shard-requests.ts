// The internal search request a coordinator sends to a shard: a public search
// request plus the sequence the shard must have applied first (session and
// strong consistency) and how long it may wait for it.

import { validateSearch } from '../ts/wire/messages.js';
import type { SearchRequest } from '../ts/wire/messages.js';
import { VdbError, ErrorCode } from '../ts/errors.js';

export interface ShardSearch extends SearchRequest {
  minSeq?: number;
  waitMs: number;
}

export const DEFAULT_WAIT_MS = 2000;

export function checkShardRequest(body: unknown, dim: number): ShardSearch {
  const req = validateSearch(body, dim);
  const b = body as { minSeq?: unknown; waitMs?: unknown };
  const out: ShardSearch = { ...req, waitMs: DEFAULT_WAIT_MS };
  if (b.minSeq !== undefined && b.minSeq !== null) {
    if (!Number.isSafeInteger(b.minSeq) || (b.minSeq as number) < 0) throw new VdbError(ErrorCode.BAD_REQUEST, 'minSeq: expected a non-negative integer');
    out.minSeq = b.minSeq as number;
  }
  if (b.waitMs !== undefined && b.waitMs !== null) {
    if (!Number.isSafeInteger(b.waitMs) || (b.waitMs as number) < 0 || (b.waitMs as number) > 60_000) throw new VdbError(ErrorCode.BAD_REQUEST, 'waitMs: expected 0 to 60000');
    out.waitMs = b.waitMs as number;
  }
  return out;
}
