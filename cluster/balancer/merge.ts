// Merges (docs/cluster.md, "Merges"): the reverse of a split. The newest
// shard t goes back into the shard s it was split from (so shard numbers stay
// dense) once both hold fewer than `mergeBelow` points and both have been cold
// (hot.ts) for the hot window. One compare-and-set of the shard map per step,
// the merge recorded in the map (`merge`) so a new lease holder carries it on:
//   1. start: `merge {shard: s, from: t, fenced: true, partitioner}`:
//      coordinators hold writes that touch t (meta.ts `holdsWrites`);
//   2. seal: once every live coordinator writes with that map or a newer one
//      (their heartbeats say which epoch), `sealedAt` = t's last sequence;
//   3. copy: every point of t, read from a live replica of t that applied
//      `sealedAt`, is appended to s's log as ordinary upserts (acked by
//      JetStream); `copied` = s's sequence after them. Copying again is
//      harmless: writes to t's ids are held, and the copies are the same;
//   4. done: once every live replica of s applied `copied`, the map takes the
//      merged partitioner and loses t's replicas; writes resume. t's former
//      replicas still serve it (`done`) for searches routed with the old map;
//   5. once every live coordinator routes with the merged map, and RETIRE_MS
//      later (searches under way end within their deadline), `merge` goes:
//      t's replicas stop serving it and drop their copies; t's log goes.
// With spatial or semantic placement the copies carry a version taken for
// them (newer than any write acknowledged before the seal), and writes held
// meanwhile take a new version once released (coordinator.ts `write`), so
// they come after the copies.
// Searches stay complete: until step 4 t answers for its ids, and s's copies
// never show twice (hash: coordinators count only a shard's own ids; spatial,
// semantic: they are identical to t's and merged by id). If t's log moves
// past `sealedAt` (a coordinator missed the fence) the merge is abandoned:
// `merge` goes and a `retain` entry on s's log (split.ts appends it) drops
// the copies.

import { VdbError, ErrorCode } from '../../ts/errors.js';
import { partitionerFromJSON } from '../../ts/partition/index.js';
import type { Partitioner, PartitionerJSON } from '../../ts/partition/index.js';
import { parseVector } from '../../ts/validate.js';
import type { PointId } from '../../ts/validate.js';
import { encode } from '../../ts/wire/codec.js';
import { shardKey } from '../meta.js';
import type { CollectionMeta, Member, ShardMap } from '../meta.js';
import { upsertEntries } from '../log-entries.js';
import { needsVersions, nextVersion } from '../versions.js';
import { dec } from './context.js';
import type { BalancerContext, BalancerOptions, Round } from './context.js';

export interface MergePlan {
  /** The shard that stays. */
  shard: number;
  /** The newest shard, merged into `shard`. */
  from: number;
  /** The partitioner once merged. */
  partitioner: PartitionerJSON;
}

/** What a merge decision looks at. */
export interface MergeView {
  name: string;
  map: ShardMap;
  /** The partitioner the map places with. */
  p: Partitioner;
  /** Shards the collection was created with: merges never go below them. */
  created: number;
  /** Live shard processes, by name (their heartbeats). */
  live: Map<string, Member>;
  /** Since when shard `key` (shardKey) has been cold (hot.ts), or undefined while it is not. */
  coldSince: (key: string) => number | undefined;
  now: number;
  opts: Pick<BalancerOptions, 'mergeBelow' | 'hotSearches' | 'hotWindowMs'>;
}

/** Points in shard `s` of `name`: the most any live replica's heartbeat reports, or undefined when none does. */
export function shardPoints(name: string, s: number, list: string[], live: Map<string, Member>): number | undefined {
  const counts = list.flatMap((r) => {
    const n = live.get(r)?.points?.[shardKey(name, s)];
    return n === undefined ? [] : [n];
  });
  return counts.length ? Math.max(...counts) : undefined;
}

/** The merge to start now, or none: the newest shard and the one it was split
 * from both small and cold, and nothing else under way on them. */
export function planMerge(v: MergeView): MergePlan | undefined {
  const { name, map, p, opts } = v;
  if (opts.mergeBelow <= 0) return undefined;
  if (map.split || map.merge || map.retain?.length || map.settle) return undefined;
  if (p.shards <= v.created || map.replicas.length !== p.shards) return undefined;
  const back = p.unsplit();
  if (!back) return undefined;
  const from = p.shards - 1;
  for (const s of [back.shard, from]) {
    if (map.moves?.[s] || map.extra?.[s]) return undefined;
    const points = shardPoints(name, s, map.replicas[s], v.live);
    if (points === undefined || points >= opts.mergeBelow) return undefined;
    // Without load measurement (hotSearches 0) size alone decides.
    if (opts.hotSearches > 0) {
      const since = v.coldSince(shardKey(name, s));
      if (since === undefined || v.now - since < opts.hotWindowMs) return undefined;
    }
  }
  return { shard: back.shard, from, partitioner: back.partitioner.toJSON() };
}

/** The merge threshold a coordinator runs with: by default a quarter of
 * `splitAt` (0, never, without splits); refused unless below half of a
 * non-zero `splitAt`, so that a merged shard never splits again at once. */
export function checkMergeBelow(mergeBelow: number | undefined, splitAt: number): number {
  if (mergeBelow === undefined) return Math.floor(splitAt / 4);
  if (mergeBelow > 0 && splitAt > 0 && !(mergeBelow < splitAt / 2)) {
    throw new VdbError(ErrorCode.INVALID_ARGUMENT, `mergeBelow: expected less than half of splitAt (${splitAt}), got ${mergeBelow}: a merged shard would split again`);
  }
  return mergeBelow;
}

/** Points per scroll page read from the merged-away shard: pages stay well under a NATS message. */
export function copyPage(dim: number): number {
  return Math.max(1, Math.min(1000, Math.floor((256 * 1024) / (dim * 4 + 512))));
}

/** How long t's former replicas serve it after the merged map, at least (a search's deadline is 2 s by default). */
export const RETIRE_MS = 5000;

/** One step of merging a shard of `name`, or none; true while a merge is under way. */
export async function merge(ctx: BalancerContext, name: string, cm: CollectionMeta, round: Round): Promise<boolean> {
  const { meta, jsm, n, opts, act } = ctx;
  const { live, work } = round;
  const e = await meta.shardmaps.get(name);
  const map = dec<ShardMap>(e);
  if (!e || !map) return false;
  const cas = (patch: Partial<ShardMap>) => meta.updateShardMap(name, e.revision, () => patch);
  const mg = map.merge;
  if (!mg) {
    const p = partitionerFromJSON(map.partitioner ?? cm.partitioner);
    const plan = planMerge({ name, map, p, created: cm.partitioner.shards, live, coldSince: (key) => ctx.heat.get(key)?.coldSince, now: Date.now(), opts });
    if (!plan) return false;
    await cas({ merge: { ...plan, fenced: true, since: Date.now() } });
    const size = (s: number) => shardPoints(name, s, map.replicas[s], live);
    act('merge_start', `${name}/${plan.from} (${size(plan.from)} points) and ${name}/${plan.shard} (${size(plan.shard)}) under ${opts.mergeBelow} and cold: merging ${name}/${plan.from} into ${name}/${plan.shard}; writes to ${name}/${plan.from} held`);
    return true;
  }
  const { shard: s, from: t } = mg;
  const stale = () => meta.live('coordinator').filter((c) => (c.epochs?.[name] ?? Infinity) < map.epoch).map((c) => c.name);
  if (mg.done) {
    const waiting = stale();
    if (waiting.length || Date.now() - mg.done.at < RETIRE_MS) {
      work.push(`${name}/${t}: merged; still served by ${mg.done.replicas.join(', ')} until ${waiting.length ? `${waiting.join(', ')} route with the merged map` : 'searches routed before the merge end'}`);
      return true;
    }
    await cas({ merge: undefined });
    await jsm.streams.delete(n.stream(name, t)).catch(() => undefined);
    // A later split makes a new shard of this number: its heat starts over.
    ctx.heat.delete(shardKey(name, t));
    for (const r of mg.done.replicas) ctx.samples.delete(`${r} ${shardKey(name, t)}`);
    return true;
  }
  const { state } = await jsm.streams.info(n.stream(name, t));
  if (mg.sealedAt === undefined) {
    const waiting = stale();
    if (waiting.length) {
      work.push(`${name}/${t} → ${s}: waiting for ${waiting.join(', ')} to hold writes`);
      return true;
    }
    await cas({ merge: { ...mg, sealedAt: state.last_seq } });
    act('merge_seal', `${name}/${t}: sealed at sequence ${state.last_seq} for merging into ${name}/${s}`);
    return true;
  }
  if (state.last_seq !== mg.sealedAt) {
    // A write reached t after the seal (a coordinator that missed the fence): s drops its copies, try later.
    await cas({ merge: undefined, retain: [s] });
    act('merge_abandon', `${name}/${t}: merge into ${name}/${s} abandoned, the log moved past its seal (${state.last_seq} > ${mg.sealedAt})`);
    return true;
  }
  // Writes to t are held meanwhile: a merge that cannot go on for the grace period gives up.
  const giveUp = async (why: string) => {
    if (Date.now() - mg.since < opts.graceMs) {
      work.push(`${name}/${t} → ${s}: ${why}`);
      return true;
    }
    await cas({ merge: undefined, retain: [s] });
    act('merge_abandon', `${name}/${t}: merge into ${name}/${s} abandoned after ${Math.round((Date.now() - mg.since) / 1000)} s: ${why}`);
    return true;
  };
  const serving = (r: string, shard: number) => live.has(r) && !live.get(r)!.failed?.[shardKey(name, shard)];
  const applied = (r: string, shard: number) => live.get(r)?.shards?.[shardKey(name, shard)] ?? -1;
  if (mg.copied === undefined) {
    const holder = map.replicas[t].find((r) => serving(r, t) && applied(r, t) >= mg.sealedAt!);
    if (!holder) return giveUp(`no live replica of ${name}/${t} has applied sequence ${mg.sealedAt}`);
    const copied = await copyShard(ctx, name, cm, t, s, holder, mg.sealedAt);
    // The map may have changed meanwhile (a replica replaced): record the copy on whatever it is now.
    const now = await meta.shardmaps.get(name);
    if (dec<ShardMap>(now)?.merge?.sealedAt !== mg.sealedAt) return true;
    await meta.updateShardMap(name, now!.revision, (m) => ({ merge: { ...m.merge!, copied: copied.seq } }));
    work.push(`${name}/${t} → ${s}: ${copied.points} points copied from ${holder}, up to sequence ${copied.seq} of ${name}/${s}`);
    return true;
  }
  const servingS = map.replicas[s].filter((r) => serving(r, s));
  const behind = servingS.filter((r) => applied(r, s) < mg.copied!);
  if (servingS.length === 0) return giveUp(`no live replica of ${name}/${s}`);
  if (behind.length) {
    work.push(`${name}/${t} → ${s}: waiting for ${behind.join(', ')} to apply sequence ${mg.copied}`);
    return true;
  }
  await cas({ merge: { ...mg, done: { replicas: map.replicas[t], at: Date.now() } }, partitioner: mg.partitioner, replicas: map.replicas.slice(0, t) });
  act('merge_done', `${name}/${t}: merged into ${name}/${s}; ${name} has ${t} shards`);
  return true;
}

/** Appends every point of shard `from` (as `holder` has it at `minSeq`) to the log of `into`,
 * page by page, each entry acked by JetStream, under one new version when the
 * collection's writes are versioned; returns `into`'s last sequence after them. */
async function copyShard(ctx: BalancerContext, name: string, cm: CollectionMeta, from: number, into: number, holder: string, minSeq: number): Promise<{ seq: number; points: number }> {
  const { js, jsm, meta, request, n, opts } = ctx;
  const version = needsVersions(cm.partitioner) ? { version: await nextVersion(js, jsm, n, name, meta.replicas) } : {};
  let after: PointId | undefined;
  let seq = 0;
  let points = 0;
  for (;;) {
    const page = (await request(n.replica(name, from, holder, 'scroll'), { after, limit: copyPage(cm.dim), withVector: true, minSeq })) as { points: { id: PointId; vector: unknown; payload?: Record<string, unknown> }[]; next?: PointId };
    const batch = page.points.map((pt) => ({ id: pt.id, vector: parseVector(pt.vector, 'vector', cm.dim), payload: pt.payload }));
    for (const entry of upsertEntries(batch, version, opts.maxPayload)) seq = (await js.publish(n.log(name, into), encode(entry, false))).seq;
    points += batch.length;
    if (page.next === undefined) break;
    after = page.next;
  }
  if (seq === 0) seq = (await jsm.streams.info(n.stream(name, into))).state.last_seq;
  return { seq, points };
}
