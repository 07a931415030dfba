// What a replica weighs when the balancer spreads replicas (docs/cluster.md,
// "Rebalancing and drain"): the mean of three shares — its shard's points, its
// index memory, and the searches per second each replica of the shard answers
// — each divided by that quantity's mean over every replica in the cluster.
// The average replica weighs 1. Each quantity counts at least its floor
// (FLOOR), so small or idle shards weigh alike and are not moved for noise.
import { shardKey } from '../meta.js';
import type { Member, ShardMap } from '../meta.js';

export interface ShardMeasure {
  points: number;
  /** Index bytes of one replica. */
  memory: number;
  /** Searches per second per replica. */
  searches: number;
}

/** Below these a shard counts as this large or busy: 10,000 points, 16 MiB of index, 10 searches per second. */
export const FLOOR: ShardMeasure = { points: 10_000, memory: 16 * 2 ** 20, searches: 10 };

/** Each shard's load from the heartbeats of its live replicas: the most points and memory a replica reports, and the shard's search rate (`rate` gives a replica's) per replica. */
export function shardMeasures(maps: Map<string, ShardMap>, live: Map<string, Member>, rate: (member: string, key: string) => number | undefined): Map<string, ShardMeasure> {
  const loads = new Map<string, ShardMeasure>();
  for (const [name, m] of maps) {
    m.replicas.forEach((list, s) => {
      const key = shardKey(name, s);
      const l: ShardMeasure = { points: 0, memory: 0, searches: 0 };
      for (const r of list) {
        const h = live.get(r);
        if (!h) continue;
        l.points = Math.max(l.points, h.points?.[key] ?? 0);
        l.memory = Math.max(l.memory, h.memory?.[key] ?? 0);
        l.searches += rate(r, key) ?? 0;
      }
      // The shard's searches shared over its replicas: coordinators may send a
      // shard's searches to one replica more than another, and a new replica
      // has no rate yet, but the shard's total is what the replicas share.
      l.searches /= Math.max(1, list.length);
      loads.set(key, l);
    });
  }
  return loads;
}

/** Each shard's replica weight, by `shardKey` (a shard with no load known counts its floors). */
export function replicaWeights(maps: Map<string, ShardMap>, loads: Map<string, ShardMeasure>): Map<string, number> {
  const copies = new Map<string, number>();
  for (const [name, m] of maps) m.replicas.forEach((list, s) => copies.set(shardKey(name, s), list.length));
  const total = [...copies.values()].reduce((a, b) => a + b, 0);
  const value = (k: string, q: keyof ShardMeasure) => Math.max(FLOOR[q], loads.get(k)?.[q] ?? 0);
  const mean = (q: keyof ShardMeasure) => [...copies].reduce((a, [k, n]) => a + n * value(k, q), 0) / Math.max(1, total);
  const means = { points: mean('points'), memory: mean('memory'), searches: mean('searches') };
  const weights = new Map<string, number>();
  for (const k of copies.keys()) weights.set(k, (value(k, 'points') / means.points + value(k, 'memory') / means.memory + value(k, 'searches') / means.searches) / 3);
  return weights;
}
