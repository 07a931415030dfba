// Re-replication (docs/cluster.md): a replica gone (or failed) past the grace
// period is replaced by the least-loaded live shard process, and a shard with
// fewer replicas than its collection asks for gets more; one compare-and-set
// of the shard map.
import type { ShardMap } from '../meta.js';
import { dec, downSince, leastLoaded, why } from './context.js';
import type { BalancerContext, Round } from './context.js';

export async function replace(ctx: BalancerContext, name: string, want: number, round: Round): Promise<void> {
  const e = await ctx.meta.shardmaps.get(name);
  const map = dec<ShardMap>(e);
  if (!e || !map) return;
  const { live, load, work } = round;
  const now = Date.now();
  let changed = false;
  const replicas = map.replicas.map((list, s) => {
    const next = [...list];
    for (const r of list) {
      const since = downSince(ctx, r, name, s, live, now);
      if (since === undefined) continue;
      if (now - since < ctx.opts.graceMs) {
        work.push(`${name}/${s}: replica ${r} ${why(r, name, s, live)} for ${Math.round((now - since) / 1000)} s; replaced after ${Math.round(ctx.opts.graceMs / 1000)} s`);
        continue;
      }
      const spare = leastLoaded(round, next)[0];
      if (!spare) {
        work.push(`${name}/${s}: replica ${r} gone; no spare shard process to replace it`);
        continue;
      }
      next[next.indexOf(r)] = spare.name;
      load.set(spare.name, (load.get(spare.name) ?? 0) + 1);
      changed = true;
      ctx.act('replace', `${name}/${s}: replica ${r} ${why(r, name, s, live)} for ${Math.round((now - since) / 1000)} s; ${spare.name} replaces it`);
    }
    // Replicas added for load (hot.ts) count too.
    while (next.length < want + (map.extra?.[s] ?? 0)) {
      const spare = leastLoaded(round, next)[0];
      if (!spare) { work.push(`${name}/${s}: ${next.length} of ${want + (map.extra?.[s] ?? 0)} replicas; no spare shard process`); break; }
      next.push(spare.name);
      load.set(spare.name, (load.get(spare.name) ?? 0) + 1);
      changed = true;
      ctx.act('add_replica', `${name}/${s}: ${spare.name} added as a replica`);
    }
    return next;
  });
  if (changed) await ctx.meta.updateShardMap(name, e.revision, () => ({ replicas }));
}
