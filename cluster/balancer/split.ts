// Splits (docs/cluster.md): a shard past `splitAt` points, or searched past
// `splitSearches` per replica by a routed share of its collection's searches
// (load-split.ts), is split in two.
//
// A split of shard s into a new shard t (the split partitioner is chosen
// first and carried in the map) goes through the shard map, one
// compare-and-set per step (docs/cluster.md):
//   1. split {s, t, replicas}: the chosen members copy s from a live replica
//      and follow s's log (the new log of t exists, empty);
//   2. fenced: once they are close behind, coordinators hold writes to s;
//   3. sealedAt: once every live coordinator routes with the fenced map (their
//      heartbeats say which epoch they write with), s's last sequence is final;
//      the builders apply up to it, keep what the split places on t, restart at
//      sequence 0 and say they are ready;
//   4. the map takes the split partitioner and t's replicas; writes resume,
//      to s or t; then a `retain` entry on s's log drops what moved to t.
// Searches keep working throughout: until step 4 s holds everything; after it
// coordinators count only a shard's own ids, so s's old copies never show.

import { HashPartitioner, SpatialPartitioner, labelKey, partitionerFromJSON, shardOfPoint } from '../../ts/partition/index.js';
import type { Partitioner, PartitionerJSON } from '../../ts/partition/index.js';
import { float32FromBytes } from '../../ts/validate.js';
import { encode } from '../../ts/wire/codec.js';
import { shardKey, addLogStream } from '../meta.js';
import type { ShardMap, CollectionMeta } from '../meta.js';
import { dec, leastLoaded } from './context.js';
import { loadSplitCandidate } from './load-split.js';
import type { BalancerContext, Round } from './context.js';

/** A split is fenced when every builder is at most this many entries behind the source log. */
const FENCE_WHEN_BEHIND = 1000;
/** Points sampled from a spatial or semantic shard to place its split. */
const SAMPLE = 2000;
/** Least share of the sample a split must move to be made. */
const MIN_MOVED = 0.1;

/** One step of splitting a shard of `name`, or none; true while a split is under way. */
export async function split(ctx: BalancerContext, name: string, cm: CollectionMeta, round: Round): Promise<boolean> {
  const { meta, js, jsm, request, n, opts, act, goneSince } = ctx;
  const { live, work } = round;
  const e = await meta.shardmaps.get(name);
  const map = dec<ShardMap>(e);
  if (!e || !map) return false;
  const p = partitionerFromJSON(map.partitioner ?? cm.partitioner);
  const cas = (patch: Partial<ShardMap>) => meta.updateShardMap(name, e.revision, () => patch);
  if (map.retain?.length) {
    const settle: Record<number, number> = {};
    for (const s of map.retain) {
      settle[s] = (await js.publish(n.log(name, s), encode({ op: 'retain', partitioner: p.toJSON() as PartitionerJSON, shard: s }, false))).seq;
      act('retain', `${name}/${s}: retain appended at ${settle[s]} (drops what a split moved away)`);
    }
    await cas({ retain: undefined, settle });
    return true;
  }
  // Shard sizes count only once every replica has applied the retain.
  if (map.settle) {
    const waiting = Object.entries(map.settle).filter(([s, seq]) =>
      map.replicas[Number(s)].some((r) => (live.get(r)?.shards?.[shardKey(name, Number(s))] ?? 0) < seq));
    if (waiting.length === 0) {
      await cas({ settle: undefined });
    } else {
      work.push(`${name}: waiting for the replicas of shard ${waiting.map(([s]) => s).join(', ')} to apply their retain`);
    }
    return true;
  }
  const sp = map.split;
  if (!sp) {
    if (map.merge) return false;
    const sizes = map.replicas.map((list, s) => Math.max(0, ...list.map((r) => live.get(r)?.points?.[shardKey(name, s)] ?? 0)));
    let s = sizes.indexOf(Math.max(...sizes));
    let reason = `${sizes[s]} points, past ${opts.splitAt}`;
    // By size first; else by search load (load-split.ts): the trigger differs, the steps do not.
    if (opts.splitAt <= 0 || sizes[s] < opts.splitAt) {
      const hot = loadSplitCandidate(ctx.loadSplit, ctx.samples, opts, name, map, live, meta.live('coordinator'), work);
      if (!hot) return false;
      ({ shard: s, reason } = hot);
    }
    const builders = leastLoaded(round, []).slice(0, cm.replicas).map((m) => m.name);
    if (builders.length < cm.replicas) {
      work.push(`${name}/${s}: ${reason}; a split needs ${cm.replicas} live shard processes`);
      return false;
    }
    const into = p.shards;
    // The partitioner and the map must agree on the shards, or `into` could name a live shard and delete its log.
    if (into !== map.replicas.length) {
      work.push(`${name}: the partitioner has ${into} shards, the shard map ${map.replicas.length}; no split`);
      return false;
    }
    // Hash splits by one more id bit; spatial cuts the leaf where a sample of
    // its vectors spreads widest; semantic moves labels (or shares its one label).
    let next: Partitioner;
    if (p instanceof HashPartitioner) next = p.split(s);
    else {
      const holder = map.replicas[s].find((r) => live.has(r));
      if (!holder) return false;
      const reply = (await request(n.replica(name, s, holder, 'sample'), { n: SAMPLE, seed: map.epoch })) as { vectors: Uint8Array[]; payloads: unknown[] };
      const sample = reply.vectors.map((v, i) => ({ id: i, vector: float32FromBytes(v), payload: reply.payloads[i] }));
      if (p instanceof SpatialPartitioner) {
        const flat = new Float32Array(sample.length * cm.dim);
        sample.forEach((pt, i) => flat.set(pt.vector, i * cm.dim));
        next = p.split(s, flat);
      } else {
        const labels = new Map<string, number>();
        for (const pt of sample) {
          const key = labelKey(p.labelOf(pt.payload));
          if (key !== undefined) labels.set(key, (labels.get(key) ?? 0) + 1);
        }
        next = p.split(s, labels);
      }
      // A split that would move almost nothing (one label, shared already) is not worth a shard.
      const moving = sample.filter((pt) => shardOfPoint(next, pt) !== s).length;
      if (moving < sample.length * MIN_MOVED) {
        work.push(`${name}/${s}: ${reason}, but a split would move ${moving} of ${sample.length} sampled points`);
        return false;
      }
    }
    await jsm.streams.delete(n.stream(name, into)).catch(() => undefined); // left by an abandoned split
    await addLogStream(jsm, n, name, into, meta.replicas);
    await cas({ split: { shard: s, into, replicas: builders, fenced: false, partitioner: next.toJSON() } });
    act('split_start', `${name}/${s}: ${reason}: splitting into ${name}/${into} on ${builders.join(', ')}`);
    return true;
  }
  const key = shardKey(name, sp.into);
  const gone = sp.replicas.filter((r) => !live.has(r));
  if (gone.some((r) => Date.now() - goneSince.get(r)! >= opts.graceMs)) {
    await cas({ split: undefined });
    await jsm.streams.delete(n.stream(name, sp.into)).catch(() => undefined);
    act('split_abandon', `${name}/${sp.shard}: split abandoned, ${gone.join(', ')} gone`);
    return true;
  }
  const states = sp.replicas.map((r) => live.get(r)?.building?.[key]);
  const { state } = await jsm.streams.info(n.stream(name, sp.shard));
  if (!sp.fenced) {
    const behind = Math.max(...states.map((st) => (st ? state.last_seq - st.applied : Infinity)));
    if (behind <= FENCE_WHEN_BEHIND) {
      await cas({ split: { ...sp, fenced: true } });
      act('split_fence', `${name}/${sp.shard}: builders of ${key} ${behind} entries behind; writes to ${name}/${sp.shard} held`);
    } else {
      work.push(`${name}/${sp.shard} → ${sp.into}: building, ${behind === Infinity ? 'copying' : `${behind} entries behind`}`);
    }
    return true;
  }
  if (sp.sealedAt === undefined) {
    const stale = meta.live('coordinator').filter((c) => (c.epochs?.[name] ?? Infinity) < map.epoch).map((c) => c.name);
    if (stale.length) {
      work.push(`${name}/${sp.shard} → ${sp.into}: waiting for ${stale.join(', ')} to hold writes`);
      return true;
    }
    await cas({ split: { ...sp, sealedAt: state.last_seq } });
    act('split_seal', `${name}/${sp.shard}: sealed at sequence ${state.last_seq}`);
    return true;
  }
  if (state.last_seq !== sp.sealedAt) {
    // A write reached the log after the seal (a coordinator that missed the fence): start over.
    await cas({ split: undefined });
    await jsm.streams.delete(n.stream(name, sp.into)).catch(() => undefined);
    act('split_abandon', `${name}/${sp.shard}: split abandoned, the log moved past its seal (${state.last_seq} > ${sp.sealedAt})`);
    return true;
  }
  if (!states.every((st) => st?.ready)) {
    work.push(`${name}/${sp.shard} → ${sp.into}: builders finishing at sequence ${sp.sealedAt}`);
    return true;
  }
  await cas({ split: undefined, replicas: [...map.replicas, sp.replicas], partitioner: sp.partitioner, retain: [sp.shard] });
  act('split_done', `${name}/${sp.shard}: split done; ${key} served by ${sp.replicas.join(', ')}`);
  return true;
}
