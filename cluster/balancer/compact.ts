// Log compaction (docs/cluster.md): once every serving replica of a shard has
// applied `compactAfter` entries past the log's first sequence, the log is
// purged below the smallest applied sequence.
import { shardKey } from '../meta.js';
import type { ShardMap } from '../meta.js';
import type { BalancerContext, Round } from './context.js';

export async function compact(ctx: BalancerContext, name: string, map: ShardMap, { live }: Pick<Round, 'live'>): Promise<void> {
  for (const [s, list] of map.replicas.entries()) {
    // A failed replica will be replaced by a copy: it holds no compaction back.
    const serving = list.filter((r) => !live.get(r)?.failed?.[shardKey(name, s)]);
    const applied = serving.map((r) => live.get(r)?.shards?.[shardKey(name, s)]);
    if (applied.length === 0 || applied.some((a) => a === undefined)) continue;
    const min = Math.min(...(applied as number[]));
    const stream = ctx.n.stream(name, s);
    const { state } = await ctx.jsm.streams.info(stream);
    // A sequence past the log's end was applied from another log (a heartbeat of a dropped incarnation).
    if (min > state.last_seq || min - (state.first_seq - 1) < ctx.opts.compactAfter) continue;
    await ctx.jsm.streams.purge(stream, { seq: min + 1 });
    ctx.act('compact', `${name}/${s}: log compacted below ${min + 1} (every replica has applied ${min})`);
  }
}
