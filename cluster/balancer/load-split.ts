// Load-driven splits (docs/cluster.md, "Splits for load"): a shard whose
// searches per replica stay above `splitSearches` per second for
// `hotWindowMs`, with all the load replicas it may have (read scaling first:
// a replica is cheaper than a split), splits in two as split.ts splits a
// shard by size. Only a shard that a routed share of the collection's searches
// reaches: when every search reaches every shard (hash; spatial without
// nprobe) both halves of a split would get every search, so a split would
// only add work, and split again and again.
//
// The collection's search rate Q comes from the coordinators' heartbeats (the
// searches each served, per collection); a shard's rate S from its replicas'
// (hot.ts). S/Q is the share of the collection's searches that reach it.
import { shardKey } from '../meta.js';
import type { Member, ShardMap } from '../meta.js';
import { nextSample, replicaRates } from './hot.js';
import type { Sample } from './hot.js';

/** A shard reached by at least this share of its collection's searches never
 * splits for load. Under full fan-out S/Q is about 1 (more with hedged
 * requests); the margin below 1 absorbs the noise of rates measured from
 * heartbeats that coordinators and shard processes send at different moments. */
export const ROUTED_SHARE = 0.75;

export interface LoadSplitOptions {
  /** Searches per second per replica that make a shard split; 0 turns load-driven splits off. */
  splitSearches: number;
  /** How long a shard must stay that hot before it splits. */
  hotWindowMs: number;
  /** Load-driven replicas (hot.ts): a shard waits for all of them first; with `hotSearches` 0 there are none. */
  hotSearches: number;
  maxLoadReplicas: number;
}

/** A shard's search load as one balancer round sees it. */
export interface ShardLoad {
  /** Searches per second per replica. */
  perReplica: number;
  /** S/Q: the share of the collection's searches that reach the shard (Infinity while Q is 0). */
  share: number;
  /** Load replicas the shard has now (ShardMap.extra). */
  extra: number;
}

/** What a round makes of a shard's load: since when it has been hot enough to
 * split, whether to split now, or what keeps a shard above the rate from splitting. */
export interface LoadVerdict { since?: number; split: boolean; wait?: 'replicas' | 'fanout' }

/** The verdict on a shard's load at `now`, given since when it has been hot enough to split. */
export function loadSplitStep(since: number | undefined, load: ShardLoad, now: number, o: LoadSplitOptions): LoadVerdict {
  if (o.splitSearches <= 0 || !(load.perReplica > o.splitSearches)) return { split: false };
  if (load.extra < (o.hotSearches > 0 ? o.maxLoadReplicas : 0)) return { split: false, wait: 'replicas' };
  if (!(load.share < ROUTED_SHARE)) return { split: false, wait: 'fanout' };
  const start = since ?? now;
  return now - start >= o.hotWindowMs ? { split: true } : { since: start, split: false };
}

/** What the balancer keeps between rounds for load-driven splits. */
export interface LoadSplitState {
  /** The last search count of each coordinator, by `coordinator collection`. */
  coordinators: Map<string, Sample>;
  /** Since when each shard has been hot enough to split, by `shardKey`. */
  since: Map<string, number>;
}

export const newLoadSplitState = (): LoadSplitState => ({ coordinators: new Map(), since: new Map() });

/** Forgets the state of collections no longer there. */
export function forgetLoadSplit(state: LoadSplitState, names: Set<string>): void {
  for (const k of state.coordinators.keys()) if (!names.has(k.slice(k.indexOf(' ') + 1))) state.coordinators.delete(k);
  for (const k of state.since.keys()) if (!names.has(k.slice(0, k.lastIndexOf('/')))) state.since.delete(k);
}

/** Each shard's load: Q summed over the live coordinators, S over a shard's live replicas
 * (their samples, `member shardKey`, are hot.ts's; a heartbeat seen twice gives the same rate). */
export function shardLoads(state: LoadSplitState, samples: Map<string, Sample>, name: string, map: ShardMap, live: Map<string, Member>, coordinators: Member[]): ShardLoad[] {
  let q = 0;
  for (const c of coordinators) {
    const count = c.searches?.[name];
    if (count === undefined) continue;
    const s = nextSample(state.coordinators.get(`${c.name} ${name}`), count, c.heartbeat);
    state.coordinators.set(`${c.name} ${name}`, s);
    q += s.rate;
  }
  return map.replicas.map((list, shard) => {
    const rates = replicaRates(samples, shardKey(name, shard), list, live);
    const sum = rates.reduce((a, b) => a + b, 0);
    return { perReplica: rates.length ? sum / rates.length : 0, share: q > 0 ? sum / q : Infinity, extra: map.extra?.[shard] ?? 0 };
  });
}

const pct = (share: number) => `${Math.round(share * 100)}%`;

/** The shard of `name` to split for its search load now, and why; or none.
 * What keeps a hot shard from splitting goes to `work` (for `vdb status`). */
export function loadSplitCandidate(state: LoadSplitState, samples: Map<string, Sample>, o: LoadSplitOptions, name: string, map: ShardMap,
  live: Map<string, Member>, coordinators: Member[], work: string[], now = Date.now()): { shard: number; reason: string } | undefined {
  if (o.splitSearches <= 0) return undefined;
  const loads = shardLoads(state, samples, name, map, live, coordinators);
  const secs = Math.round(o.hotWindowMs / 1000);
  let best: number | undefined;
  loads.forEach((load, s) => {
    const key = shardKey(name, s);
    const v = loadSplitStep(state.since.get(key), load, now, o);
    const rate = `${Math.round(load.perReplica)} searches/s per replica, past ${o.splitSearches}`;
    if (v.wait === 'replicas') work.push(`${key}: ${rate}; a split for load waits for its load replicas (${load.extra} of ${o.maxLoadReplicas})`);
    if (v.wait === 'fanout') {
      work.push(`${key}: ${rate}, but reached by ${load.share === Infinity ? 'all' : pct(load.share)} of searches: no split for load (both halves would get them)`);
    }
    if (v.since !== undefined) {
      state.since.set(key, v.since);
      work.push(`${key}: ${rate}, reached by ${pct(load.share)} of searches; splits for load if it stays so ${Math.ceil((o.hotWindowMs - (now - v.since)) / 1000)} s more`);
    } else if (!v.split) state.since.delete(key);
    if (v.split && (best === undefined || load.perReplica > loads[best].perReplica)) best = s;
  });
  if (best === undefined) return undefined;
  const moving = Object.keys(map.moves ?? {});
  if (moving.length) {
    work.push(`${shardKey(name, best)}: a split for load waits for the moves of shard ${moving.join(', ')}`);
    return undefined;
  }
  // The split changes every shard's share: each window starts again.
  for (const s of loads.keys()) state.since.delete(shardKey(name, s));
  return { shard: best, reason: `${Math.round(loads[best].perReplica)} searches/s per replica for ${secs} s, reached by ${pct(loads[best].share)} of searches` };
}
