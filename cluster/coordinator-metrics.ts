// What a coordinator's /metrics says about the cluster as the metadata shows
// it: for each shard of each collection, its replicas, the live ones (their
// process heartbeats) and the failed ones (they stopped applying their log).
// Every coordinator reports the same view; alerts aggregate with max/min.
// Also the coordinator's own counters: partial answers, hedged requests,
// balancer actions.

import type { Registry } from './metrics.js';
import type { Member, ShardMap } from './meta.js';
import { shardKey } from './meta.js';
import { BALANCER_ACTIONS } from './balancer.js';
import type { BalancerAction } from './balancer.js';

export interface ShardHealth {
  collection: string;
  shard: number;
  replicas: number;
  live: number;
  failed: number;
}

/** Per shard of `collection`, how many of its replicas are placed, live, and failed. */
export function shardHealth(collection: string, map: Pick<ShardMap, 'replicas'>, live: readonly Member[]): ShardHealth[] {
  const byName = new Map(live.map((m) => [m.name, m]));
  return map.replicas.map((list, shard) => {
    const key = shardKey(collection, shard);
    // Live: its process heartbeats and serves the shard (not still copying it).
    const up = list.map((r) => byName.get(r)).filter((m): m is Member => m?.shards?.[key] !== undefined);
    const failed = up.filter((m) => m.failed?.[key] !== undefined).length;
    return { collection, shard, replicas: list.length, live: up.length - failed, failed };
  });
}

export interface ClusterView {
  collections: () => string[];
  /** The shard map of a collection, or undefined while it is being created or dropped. */
  shardMap: (collection: string) => Promise<Pick<ShardMap, 'replicas'> | undefined>;
  live: () => Member[];
}

/** The reads a shard may miss (partial answers) or a replica be hedged for: shown at 0 from the start. */
const READS = ['search', 'get', 'count', 'scroll'];

export interface CoordinatorMetrics {
  partial(op: string): void;
  hedged(op: string): void;
  balancerAction(action: BalancerAction): void;
}

export function coordinatorMetrics(registry: Registry, view: ClusterView): CoordinatorMetrics {
  const labels = ['collection', 'shard'];
  const replicas = registry.gauge('vdb_cluster_shard_replicas', 'Replicas the shard map places for the shard', { labels });
  const live = registry.gauge('vdb_cluster_shard_live_replicas', 'Replicas of the shard that serve it: their process heartbeats, and they hold the shard and apply its log', { labels });
  const failed = registry.gauge('vdb_cluster_shard_failed_replicas', 'Replicas of the shard that stopped applying their log (a storage fault)', { labels });
  const partial = registry.counter('vdb_coordinator_partial_total', 'Answers without some shards (no replica answered within the deadline), by operation', { labels: ['op'] });
  const hedged = registry.counter('vdb_coordinator_hedged_total', 'Extra replicas asked because the first had not answered within a quarter of the deadline, by operation', { labels: ['op'] });
  const actions = registry.counter('vdb_balancer_actions_total', 'Actions this coordinator\'s balancer took while it held the lease, by action', { labels: ['action'] });
  for (const op of READS) {
    partial.inc({ op }, 0);
    hedged.inc({ op }, 0);
  }
  for (const a of BALANCER_ACTIONS) actions.inc({ action: a }, 0);

  registry.onCollect(async () => {
    const members = view.live().filter((m) => m.role === 'shard');
    const rows = (await Promise.all(view.collections().map(async (c) => {
      const map = await view.shardMap(c).catch(() => undefined);
      return map ? shardHealth(c, map, members) : [];
    }))).flat();
    for (const g of [replicas, live, failed]) g.reset();
    for (const r of rows) {
      const l = { collection: r.collection, shard: r.shard };
      replicas.set(l, r.replicas);
      live.set(l, r.live);
      failed.set(l, r.failed);
    }
  });
  return {
    partial: (op) => partial.inc({ op }),
    hedged: (op) => hedged.inc({ op }),
    balancerAction: (action) => actions.inc({ action }),
  };
}
