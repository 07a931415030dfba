// Load-driven replicas (docs/cluster.md, "Rebalancing and drain"): a shard
// whose searches per replica stay above `hotSearches` per second for
// `hotWindowMs` gains a replica (up to `maxLoadReplicas` more than its
// collection asks for); one whose rate stays below a quarter of that for the
// window loses one of them again. The rate comes from the heartbeats: each
// shard process counts the searches each replica answered (`searches`).
// The extra replicas are kept in the shard map (`extra[shard]`), so
// re-replication keeps them and a new lease holder knows them.
import { shardKey } from '../meta.js';
import type { Member, ShardMap } from '../meta.js';
import { dec, leastLoaded } from './context.js';
import type { BalancerContext, Round } from './context.js';

export interface HotOptions {
  /** Searches per second per replica that make a shard hot; 0 turns load-driven replicas off. */
  hotSearches: number;
  /** How long a shard must stay hot (or cold) before a replica is added (or removed). */
  hotWindowMs: number;
  /** Most replicas a shard gets for load, beyond its collection's count. */
  maxLoadReplicas: number;
}

/** A replica's last search count seen in a heartbeat, when, and the rate since the one before. */
export interface Sample { count: number; at: number; rate: number }
/** Since when a shard has been hot or cold (at most one of them). */
export interface Heat { hotSince?: number; coldSince?: number }

/** The rate a replica's new count gives over its last sample (a count that went down is a restarted process). */
export function nextSample(prev: Sample | undefined, count: number, at: number): Sample {
  if (!prev || count < prev.count) return { count, at, rate: 0 };
  if (at <= prev.at) return prev;
  return { count, at, rate: ((count - prev.count) * 1000) / (at - prev.at) };
}

/** The heat after a rate per replica is seen, and whether to add or remove a load replica (`extra` are there now). */
export function heatStep(h: Heat, rate: number, now: number, extra: number, o: HotOptions): { heat: Heat; action?: 'add' | 'remove' } {
  if (o.hotSearches <= 0) return { heat: {} };
  const hot = rate > o.hotSearches;
  const cold = rate < o.hotSearches / 4;
  const heat: Heat = { hotSince: hot ? (h.hotSince ?? now) : undefined, coldSince: cold ? (h.coldSince ?? now) : undefined };
  // After an action the window starts again: the new replica's effect is measured first.
  if (hot && now - heat.hotSince! >= o.hotWindowMs && extra < o.maxLoadReplicas) return { heat: {}, action: 'add' };
  if (cold && now - heat.coldSince! >= o.hotWindowMs && extra > 0) return { heat: {}, action: 'remove' };
  return { heat };
}

/** Forgets the samples and heat of collections no longer there. */
export function forgetGone(ctx: Pick<BalancerContext, 'samples' | 'heat'>, names: Set<string>): void {
  const collection = (key: string) => key.slice(key.lastIndexOf(' ') + 1, key.lastIndexOf('/'));
  for (const m of [ctx.samples, ctx.heat]) for (const k of m.keys()) if (!names.has(collection(k))) m.delete(k);
}

/** The search rate of each live replica of shard `key` that reports a count,
 * updating its sample (`member key` in `samples`); a heartbeat seen twice gives the same rate. */
export function replicaRates(samples: Map<string, Sample>, key: string, list: string[], live: Map<string, Member>): number[] {
  const rates: number[] = [];
  for (const r of list) {
    const m = live.get(r);
    const count = m?.searches?.[key];
    if (!m || count === undefined) continue;
    const s = nextSample(samples.get(`${r} ${key}`), count, m.heartbeat);
    samples.set(`${r} ${key}`, s);
    rates.push(s.rate);
  }
  return rates;
}

/** Searches per second per replica of shard `key`, from the samples of its live replicas. */
function shardRate(ctx: BalancerContext, key: string, list: string[], live: Map<string, Member>): number {
  const rates = replicaRates(ctx.samples, key, list, live);
  return rates.length ? rates.reduce((a, b) => a + b, 0) / rates.length : 0;
}

/** Adds or removes a load replica of each shard of `name` whose heat says so (one compare-and-set). */
export async function scaleForLoad(ctx: BalancerContext, name: string, want: number, round: Round): Promise<void> {
  const e = await ctx.meta.shardmaps.get(name);
  const map = dec<ShardMap>(e);
  if (!e || !map || map.split || map.merge) return;
  const now = Date.now();
  const replicas = map.replicas.map((l) => [...l]);
  const extra = { ...map.extra };
  const lines: ['load_add' | 'load_remove', string][] = [];
  map.replicas.forEach((list, s) => {
    const key = shardKey(name, s);
    const rate = shardRate(ctx, key, list, round.live);
    const had = extra[s] ?? 0;
    const step = heatStep(ctx.heat.get(key) ?? {}, rate, now, had, ctx.opts);
    ctx.heat.set(key, step.heat);
    if (!step.action || map.moves?.[s]) return;
    if (step.action === 'add') {
      const spare = leastLoaded(round, list)[0];
      if (!spare) { round.work.push(`${key}: ${Math.round(rate)} searches/s per replica; no spare shard process for another`); return; }
      replicas[s] = [...list, spare.name];
      round.load.set(spare.name, (round.load.get(spare.name) ?? 0) + 1);
      extra[s] = had + 1;
      lines.push(['load_add', `${key}: ${Math.round(rate)} searches/s per replica for ${Math.round(ctx.opts.hotWindowMs / 1000)} s; ${spare.name} added`]);
    } else if (list.length > want) {
      // The replica on the fullest process goes.
      const drop = [...list].sort((a, b) => (round.load.get(b) ?? 0) - (round.load.get(a) ?? 0) || b.localeCompare(a))[0];
      replicas[s] = list.filter((r) => r !== drop);
      extra[s] = had - 1;
      lines.push(['load_remove', `${key}: ${Math.round(rate)} searches/s per replica for ${Math.round(ctx.opts.hotWindowMs / 1000)} s; ${drop} removed`]);
    }
  });
  if (lines.length === 0) return;
  for (const k of Object.keys(extra)) if (!extra[Number(k)]) delete extra[Number(k)];
  await ctx.meta.updateShardMap(name, e.revision, () => ({ replicas, extra: Object.keys(extra).length ? extra : undefined }));
  for (const [action, line] of lines) ctx.act(action, line);
}
