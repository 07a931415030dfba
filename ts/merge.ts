// Merging per-shard top-k lists into the global top-k, as a coordinator does
// after a fan-out: a k-way merge driven by a binary heap of the list heads.
// The order of hits is total and documented (docs/partitioning.md), so the
// same inputs give the same answer whichever shard replied first.

import { ErrorCode, VdbError } from './errors.js';
import type { Hit, PointId } from './collection.js';

/** 'asc': smaller scores are better (L2 distance); 'desc': larger are better (cosine, inner product). */
export type ScoreOrder = 'asc' | 'desc';

/**
 * The id order used to break score ties: integers before strings, integers
 * numerically, strings by UTF-16 code units (JavaScript's `<`). Returns < 0
 * when `a` comes first, 0 for the same id.
 */
export function compareIds(a: PointId, b: PointId): number {
  const an = typeof a === 'number';
  const bn = typeof b === 'number';
  if (an !== bn) return an ? -1 : 1;
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * The order of hits: better score first (NaN, which no shard should send,
 * after every number), then `compareIds`. Returns < 0 when `a` comes first.
 */
export function compareHits(a: Hit, b: Hit, order: ScoreOrder): number {
  const x = a.score;
  const y = b.score;
  if (x !== y) {
    const xNaN = Number.isNaN(x);
    const yNaN = Number.isNaN(y);
    if (xNaN || yNaN) {
      if (!(xNaN && yNaN)) return xNaN ? 1 : -1;
    } else {
      return order === 'asc' ? (x < y ? -1 : 1) : x > y ? -1 : 1;
    }
  }
  return compareIds(a.id, b.id);
}

/** Is `list` already in `compareHits` order? */
function isSorted(list: readonly Hit[], order: ScoreOrder): boolean {
  for (let i = 1; i < list.length; i++) if (compareHits(list[i - 1], list[i], order) > 0) return false;
  return true;
}

/**
 * The best `k` hits of the union of `lists`, in `compareHits` order.
 *
 * Each list is one shard's answer, sorted by score in `order`. A shard breaks
 * ties its own way (by slot, say), so a list not in exact `compareHits` order
 * is sorted (a copy) first; the lists are never modified. An id present more
 * than once (a point caught on two shards while it moves) is returned once,
 * with its best-ordered hit; when two of its hits are equal in score, the one
 * from the earlier list wins. The hit objects are returned as given.
 *
 * Cost: O(total + k·log(lists)) once sorted.
 */
export function mergeTopK(lists: readonly (readonly Hit[])[], k: number, order: ScoreOrder): Hit[] {
  if (!Number.isSafeInteger(k) || k < 0) throw new VdbError(ErrorCode.INVALID_K, `k must be a non-negative integer, got ${k}`);
  if (order !== 'asc' && order !== 'desc') throw new VdbError(ErrorCode.INVALID_ARGUMENT, `order must be 'asc' or 'desc', got ${String(order)}`);
  const sources: (readonly Hit[])[] = [];
  for (const list of lists) {
    if (list.length === 0) continue;
    sources.push(isSorted(list, order) ? list : [...list].sort((a, b) => compareHits(a, b, order)));
  }
  // heap[i] is a source index; pos[s] is the next unread hit of source s.
  const pos = new Array<number>(sources.length).fill(0);
  const heap: number[] = [];
  const before = (s: number, t: number): boolean => {
    const c = compareHits(sources[s][pos[s]], sources[t][pos[t]], order);
    return c < 0 || (c === 0 && s < t);
  };
  const siftDown = (i: number): void => {
    const n = heap.length;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) return;
      const r = l + 1;
      const c = r < n && before(heap[r], heap[l]) ? r : l;
      if (!before(heap[c], heap[i])) return;
      [heap[c], heap[i]] = [heap[i], heap[c]];
      i = c;
    }
  };
  for (let s = 0; s < sources.length; s++) heap.push(s);
  for (let i = (heap.length >> 1) - 1; i >= 0; i--) siftDown(i);

  const out: Hit[] = [];
  const seen = new Set<PointId>();
  while (out.length < k && heap.length > 0) {
    const s = heap[0];
    const hit = sources[s][pos[s]++];
    if (!seen.has(hit.id)) {
      seen.add(hit.id);
      out.push(hit);
    }
    if (pos[s] === sources[s].length) {
      const last = heap.pop()!;
      if (heap.length === 0) break;
      heap[0] = last;
    }
    siftDown(0);
  }
  return out;
}
