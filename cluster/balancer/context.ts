// What every balancer action (one file each in this folder) gets: the
// metadata and JetStream handles, the options, and the round's view of the
// live shard processes. Actions are plain functions of these, so a unit test
// can call one with fakes.
import type { JetStreamClient, JetStreamManager, KvEntry } from 'nats';
import { shardKey } from '../meta.js';
import type { Meta, Member } from '../meta.js';
import type { Names } from '../subjects.js';
import { WRITE_IN_TIME_MS } from '../versions.js';
import type { Heat, Sample } from './hot.js';
import type { LoadSplitState } from './load-split.js';

export interface BalancerOptions {
  /** How long a replica may be gone before it is replaced. */
  graceMs: number;
  /** Log entries every replica has applied before the log is compacted below them. */
  compactAfter: number;
  /** Points in a shard that make it split (hash partitioner only); 0 never splits. */
  splitAt: number;
  intervalMs: number;
  /** The coordinators' write window for versioned writes (cluster/versions.ts); horizons wait twice it. */
  versionWindowMs: number;
  /** Moves replicas onto shard processes holding fewer (moves.ts); drains move them regardless. */
  rebalance: boolean;
  /** A move whose target has not caught up within this long is abandoned. */
  moveTimeoutMs: number;
  /** Points under which the newest shard and the one it was split from merge back (merge.ts); 0 never merges. */
  mergeBelow: number;
  /** The NATS server's max_payload: write-log entries stay under it. */
  maxPayload: number;
  /** Load-driven replicas (hot.ts): searches per second per replica that make a shard hot; 0: off. */
  hotSearches: number;
  /** How long a shard stays hot (cold) before it gains (loses) a load replica. */
  hotWindowMs: number;
  /** Most load replicas a shard gets beyond its collection's replica count. */
  maxLoadReplicas: number;
  /** Load-driven splits (load-split.ts): searches per second per replica that split a shard; 0: off. */
  splitSearches: number;
}

export const DEFAULT_BALANCER: BalancerOptions = {
  graceMs: 30_000, compactAfter: 10_000, splitAt: 0, mergeBelow: 0, maxPayload: 1024 * 1024, intervalMs: 1000, versionWindowMs: WRITE_IN_TIME_MS,
  rebalance: true, moveTimeoutMs: 10 * 60_000,
  hotSearches: 500, hotWindowMs: 60_000, maxLoadReplicas: 1, splitSearches: 1000,
};

/** What the balancer does, as `vdb_balancer_actions_total` counts it. */
export const BALANCER_ACTIONS = ['replace', 'add_replica', 'retain', 'split_start', 'split_fence', 'split_seal', 'split_done', 'split_abandon', 'merge_start', 'merge_seal', 'merge_done', 'merge_abandon', 'compact', 'move_start', 'move_done', 'move_abandon', 'load_add', 'load_remove'] as const;
export type BalancerAction = (typeof BALANCER_ACTIONS)[number];

/** A request to another process: its decoded reply, or a thrown coded error. */
export type Request = (subject: string, body: unknown) => Promise<unknown>;

export interface BalancerContext {
  meta: Meta;
  js: JetStreamClient;
  jsm: JetStreamManager;
  request: Request;
  n: Names;
  opts: BalancerOptions;
  /** Records an action taken (log, metric, the lease's `done`). */
  act(action: BalancerAction, line: string): void;
  /** Since when each shard process named in a map has been gone. */
  goneSince: Map<string, number>;
  /** Replicas whose copy of a shard stopped applying its log, by `member shard`. */
  failedSince: Map<string, number>;
  /** The last search count of each replica, by `member shard` (hot.ts). */
  samples: Map<string, Sample>;
  /** Since when each shard has been hot or cold, by `shardKey` (hot.ts). */
  heat: Map<string, Heat>;
  /** The move for balance planned in the last rounds, and in how many in a row (moves.ts). */
  planned?: { id: string; rounds: number };
  /** Coordinators' search counts and since when shards have been hot enough to split (load-split.ts). */
  loadSplit: LoadSplitState;
}

/** One round's view: live shard processes, replicas each holds (updated as the round places more), what waits. */
export interface Round {
  live: Map<string, Member>;
  load: Map<string, number>;
  work: string[];
  /** Shard processes being drained: they take no new replicas and give theirs away. */
  draining: Set<string>;
}

export const dec = <T>(e: KvEntry | null): T | undefined =>
  e && e.operation === 'PUT' && e.value.length > 0 ? (JSON.parse(new TextDecoder().decode(e.value)) as T) : undefined;

/** Live shard processes not in `exclude` nor draining, those holding the fewest
 * replicas first, then the fewest points (heartbeats), then by name. */
export function leastLoaded(round: Pick<Round, 'live' | 'load' | 'draining'>, exclude: string[]): Member[] {
  const points = (m: Member) => Object.values(m.points ?? {}).reduce((a, b) => a + b, 0);
  return [...round.live.values()].filter((m) => !exclude.includes(m.name) && !round.draining.has(m.name))
    .sort((a, b) => (round.load.get(a.name) ?? 0) - (round.load.get(b.name) ?? 0) || points(a) - points(b) || a.name.localeCompare(b.name));
}

/** Since when a replica of `name`/`s` has been down (its process gone, or
 * its copy of the shard failed), or undefined while it serves. */
export function downSince(ctx: Pick<BalancerContext, 'goneSince' | 'failedSince'>, r: string, name: string, s: number, live: Map<string, Member>, now = Date.now()): number | undefined {
  if (!live.has(r)) return ctx.goneSince.get(r);
  const key = `${r} ${shardKey(name, s)}`;
  if (!live.get(r)!.failed?.[shardKey(name, s)]) {
    ctx.failedSince.delete(key);
    return undefined;
  }
  if (!ctx.failedSince.has(key)) ctx.failedSince.set(key, now);
  return ctx.failedSince.get(key);
}

export const why = (r: string, name: string, s: number, live: Map<string, Member>) =>
  (live.has(r) ? `failed (${live.get(r)!.failed![shardKey(name, s)]})` : 'gone');
