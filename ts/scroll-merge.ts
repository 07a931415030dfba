// Paging through a sharded collection: every shard returns its first `limit`
// points after the cursor in one total order on ids, the order SQLite keeps
// them in (integers before strings, integers numerically, strings by their
// UTF-8 bytes); the first `limit` of the merged pages are then the first
// `limit` of the whole collection, and the last of them is the next cursor.

import type { PointId } from './validate.js';

/**
 * The scroll order: integers before strings, integers numerically, strings
 * by UTF-8 bytes (code points; JavaScript's `<` compares UTF-16 units, which
 * differs past U+FFFF). Returns < 0 when `a` comes first, 0 for the same id.
 */
export function compareScrollIds(a: PointId, b: PointId): number {
  const an = typeof a === 'number';
  const bn = typeof b === 'number';
  if (an !== bn) return an ? -1 : 1;
  if (an) return (a as number) - (b as number);
  return Buffer.compare(Buffer.from(a as string, 'utf8'), Buffer.from(b as string, 'utf8'));
}

/**
 * One shard's answer: its points in scroll order, and when it sent a full
 * page, `end`: the last id it read (it may hold more after it). `points` may
 * have fewer than it read (copies a shard no longer owns, left out).
 */
export interface ScrollPage<P extends { id: PointId }> {
  points: P[];
  end?: PointId;
}

/**
 * The first `limit` points of the pages together, in scroll order, each id
 * once (a copy on a second shard, as during a move, is dropped), and the next
 * cursor, absent when no shard holds more. Points past the smallest `end` are
 * left for the next page: the shard that sent it may hold points before them.
 */
export function mergeScroll<P extends { id: PointId }>(pages: ScrollPage<P>[], limit: number): { points: P[]; next?: PointId } {
  let bound: PointId | undefined;
  for (const p of pages) if (p.end !== undefined && (bound === undefined || compareScrollIds(p.end, bound) < 0)) bound = p.end;
  const all = pages.flatMap((p) => p.points).sort((a, b) => compareScrollIds(a.id, b.id));
  const points: P[] = [];
  for (const p of all) {
    if (bound !== undefined && compareScrollIds(p.id, bound) > 0) break;
    if (points.length > 0 && compareScrollIds(points[points.length - 1].id, p.id) === 0) continue;
    if (points.length === limit) return { points, next: points[limit - 1].id };
    points.push(p);
  }
  if (points.length === limit) return { points, next: points[limit - 1].id };
  // Every point up to the bound is returned: the next page starts after it.
  return bound === undefined ? { points } : { points, next: bound };
}
