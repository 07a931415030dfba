// How writes become write-log entries (cluster/replica.ts `LogEntry`): the
// coordinator's upserts and the balancer's merge copies are encoded by the
// same function, so a replica cannot tell them apart. Entries stay under the
// server's max_payload: a large batch becomes several entries.

import { float32Bytes } from '../ts/wire/codec.js';
import type { PointId } from '../ts/validate.js';
import type { LogEntry } from './replica.js';

/** `items` in order, cut into groups whose estimated sizes add up to at most
 * 90% of `maxPayload` (a single larger item makes a group of its own). */
export function chunk<T>(items: T[], size: (x: T) => number, maxPayload: number): T[][] {
  const out: T[][] = [];
  let cur: T[] = [];
  let bytes = 0;
  const limit = Math.floor(maxPayload * 0.9);
  for (const x of items) {
    const b = size(x);
    if (cur.length > 0 && bytes + b > limit) { out.push(cur); cur = []; bytes = 0; }
    cur.push(x);
    bytes += b;
  }
  if (cur.length) out.push(cur);
  return out;
}

/** The upsert entries of `points` for one shard's log, each carrying `version` (empty with hash placement). */
export function upsertEntries(points: { id: PointId; vector: Float32Array; payload?: Record<string, unknown> }[], version: { version?: number }, maxPayload: number): LogEntry[] {
  return chunk(points, (p) => p.vector.length * 4 + (p.payload ? JSON.stringify(p.payload).length : 0) + 64, maxPayload)
    .map((part) => ({ op: 'upsert', points: part.map((p) => ({ id: p.id, vector: float32Bytes(p.vector), payload: p.payload })), ...version }));
}
