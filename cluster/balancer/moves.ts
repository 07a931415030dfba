// Moves (docs/cluster.md, "Rebalancing and drain"): a replica of a shard goes
// from one shard process to another without the shard ever having fewer
// replicas than its collection asks for. A move is kept in the shard map
// (`moves[shard] = {from, to, since}`) so a new lease holder carries it on:
//   1. start: `to` joins the shard's replica list (one compare-and-set); it
//      copies the shard from a live peer and follows the log;
//   2. done: once `to`'s heartbeat shows it applied up to the log's last
//      sequence (within MARGIN) and not failed, `from` leaves the list (one
//      compare-and-set) and so drops its store;
//   abandoned: `to` gone or failed, or not caught up within the timeout:
//      `to` leaves the list instead. A `from` that dies completes the move
//      once `to` caught up or `from` is past the grace period (then `to` is
//      its replacement).
// What starts a move (planMove): a draining process holding a replica, or
// live shard processes whose weighted loads (weights.ts) a move would bring
// closer by at least MIN_GAIN average replicas.
import { shardKey } from '../meta.js';
import type { Member, ShardMap, ShardMove } from '../meta.js';
import { dec, leastLoaded } from './context.js';
import type { BalancerContext, Round } from './context.js';
import { replicaWeights, shardMeasures } from './weights.js';

/** A target this many log entries behind the last sequence counts as caught up (writes keep coming meanwhile). */
export const MARGIN = 50;
/** Moves under way at once over the whole cluster: each copies a shard. */
export const MAX_MOVES = 2;

export type MoveStep = { kind: 'wait'; why: string } | { kind: 'done'; why: string } | { kind: 'abandon'; why: string };

/**
 * What to do with the move of a replica of shard `key`: `lastSeq` is the
 * shard log's last sequence, `sourceGoneMs` how long `from` has been gone
 * (undefined while live).
 */
export function stepMove(mv: ShardMove, key: string, live: Map<string, Member>, lastSeq: number, now: number, o: { timeoutMs: number; graceMs: number; sourceGoneMs?: number }): MoveStep {
  const target = live.get(mv.to);
  if (!target) return { kind: 'abandon', why: `target ${mv.to} gone` };
  if (target.failed?.[key]) return { kind: 'abandon', why: `target ${mv.to} failed (${target.failed[key]})` };
  const applied = target.shards?.[key];
  const caughtUp = applied !== undefined && applied >= lastSeq - MARGIN;
  if (caughtUp) return { kind: 'done', why: `${mv.to} applied ${applied} of ${lastSeq}` };
  if (o.sourceGoneMs !== undefined && o.sourceGoneMs >= o.graceMs) return { kind: 'done', why: `source ${mv.from} gone; ${mv.to} replaces it` };
  if (now - mv.since > o.timeoutMs) return { kind: 'abandon', why: `${mv.to} did not catch up within ${Math.round(o.timeoutMs / 1000)} s` };
  return { kind: 'wait', why: applied === undefined ? `${mv.to} copying` : `${mv.to} ${lastSeq - applied} entries behind` };
}

/** A shard map's replica list for shard `s` once the move's step is taken. */
export function afterStep(list: string[], mv: ShardMove, step: MoveStep): string[] {
  if (step.kind === 'done') return list.filter((r) => r !== mv.from);
  if (step.kind === 'abandon') return list.filter((r) => r !== mv.to);
  return list;
}

export interface PlannedMove { collection: string; shard: number; from: string; to: string; why: string; kind: 'drain' | 'balance' }

/** A move for balance starts once the same plan came up this many rounds in a row: weights follow the load, and a move copies a whole shard. */
export const PLAN_ROUNDS = 3;

/** A move must cut the weighted load between two processes by this much (in average replicas): no moves for noise. */
export const MIN_GAIN = 0.5;

/** What each live process will hold once the moves under way are done: the sum of `weight` over its replicas (1 each: a count). */
export function settledLoad(maps: Map<string, ShardMap>, weight: (key: string) => number = () => 1): Map<string, number> {
  const load = new Map<string, number>();
  const add = (r: string, w: number) => load.set(r, (load.get(r) ?? 0) + w);
  for (const [name, m] of maps) {
    const leaving = (s: number) => m.moves?.[s]?.from;
    m.replicas.forEach((list, s) => { for (const r of list) if (r !== leaving(s)) add(r, weight(shardKey(name, s))); });
    for (const r of m.split?.replicas ?? []) add(r, 1);
  }
  return load;
}

/**
 * The next move to start, or none: first a replica off a draining process;
 * then, with `rebalance`, the replica whose move from a heavier process to a
 * lighter one (by `weights`, weights.ts; 1 each when absent) cuts the
 * difference between them the most, if by at least MIN_GAIN. Only shards with
 * no move, every replica live and not failed, of a collection with no split or merge
 * under way, move; the target never holds the shard.
 */
export function planMove(maps: Map<string, ShardMap>, live: Map<string, Member>, draining: Set<string>, rebalance: boolean, weights?: Map<string, number>): PlannedMove | undefined {
  const round = { live, load: settledLoad(maps), draining };
  const movable: { collection: string; shard: number; list: string[]; weight: number }[] = [];
  for (const [collection, m] of [...maps].sort(([a], [b]) => a.localeCompare(b))) {
    if (m.split || m.merge || m.retain?.length || m.settle) continue;
    m.replicas.forEach((list, shard) => {
      const healthy = list.every((r) => live.has(r) && !live.get(r)!.failed?.[shardKey(collection, shard)]);
      if (healthy && !m.moves?.[shard]) movable.push({ collection, shard, list, weight: weights?.get(shardKey(collection, shard)) ?? 1 });
    });
  }
  for (const d of [...draining].sort()) {
    if (!live.has(d)) continue;
    for (const c of movable) {
      if (!c.list.includes(d)) continue;
      const to = leastLoaded(round, c.list)[0];
      if (to) return { collection: c.collection, shard: c.shard, from: d, to: to.name, why: `${d} is draining`, kind: 'drain' };
    }
  }
  if (!rebalance) return undefined;
  const load = settledLoad(maps, (k) => weights?.get(k) ?? 1);
  const at = (p: string) => load.get(p) ?? 0;
  const order = leastLoaded(round, []).sort((a, b) => at(a.name) - at(b.name) || a.name.localeCompare(b.name));
  const fmt = (x: number) => (Number.isInteger(x) ? String(x) : x.toFixed(2));
  for (const hi of [...order].reverse()) {
    for (const lo of order) {
      const diff = at(hi.name) - at(lo.name);
      if (diff < MIN_GAIN) break;
      // Moving weight w turns the difference d into |d − 2w|: the gain is d − |d − 2w|.
      let best: { c: (typeof movable)[number]; gain: number } | undefined;
      for (const c of movable) {
        if (!c.list.includes(hi.name) || c.list.includes(lo.name)) continue;
        const gain = diff - Math.abs(diff - 2 * c.weight);
        if (!best || gain > best.gain) best = { c, gain };
      }
      if (best && best.gain >= MIN_GAIN) {
        const unit = weights ? ' (weighted)' : '';
        return { collection: best.c.collection, shard: best.c.shard, from: hi.name, to: lo.name, why: `${hi.name} holds ${fmt(at(hi.name))} replicas${unit}, ${lo.name} ${fmt(at(lo.name))}`, kind: 'balance' };
      }
    }
  }
  return undefined;
}

/** Whether this round's plan starts now (a drain at once; a move for balance
 * once planned PLAN_ROUNDS rounds in a row), and what to remember of it. */
export function confirmPlan(prev: { id: string; rounds: number } | undefined, p: PlannedMove | undefined): { start: boolean; planned?: { id: string; rounds: number } } {
  if (!p) return { start: false };
  if (p.kind === 'drain') return { start: true };
  const id = `${shardKey(p.collection, p.shard)} ${p.from} ${p.to}`;
  const rounds = prev?.id === id ? prev.rounds + 1 : 1;
  return rounds >= PLAN_ROUNDS ? { start: true } : { start: false, planned: { id, rounds } };
}

/** Takes a step of each move under way in `name` (one compare-and-set for all of them). */
export async function stepMoves(ctx: BalancerContext, name: string, round: Round): Promise<void> {
  const e = await ctx.meta.shardmaps.get(name);
  const map = dec<ShardMap>(e);
  if (!e || !map?.moves) return;
  const now = Date.now();
  const replicas = map.replicas.map((l) => [...l]);
  const moves = { ...map.moves };
  const lines: [('move_done' | 'move_abandon'), string][] = [];
  for (const [k, mv] of Object.entries(map.moves)) {
    const s = Number(k);
    const key = shardKey(name, s);
    const { state } = await ctx.jsm.streams.info(ctx.n.stream(name, s));
    const gone = ctx.goneSince.get(mv.from);
    const step = stepMove(mv, key, round.live, state.last_seq, now, { timeoutMs: ctx.opts.moveTimeoutMs, graceMs: ctx.opts.graceMs, sourceGoneMs: round.live.has(mv.from) || gone === undefined ? undefined : now - gone });
    if (step.kind === 'wait') {
      round.work.push(`${key}: moving ${mv.from} → ${mv.to}: ${step.why}`);
      continue;
    }
    replicas[s] = afterStep(replicas[s], mv, step);
    delete moves[s];
    lines.push(step.kind === 'done' ? ['move_done', `${key}: moved ${mv.from} → ${mv.to} (${step.why})`] : ['move_abandon', `${key}: move ${mv.from} → ${mv.to} abandoned: ${step.why}`]);
  }
  if (lines.length === 0) return;
  await ctx.meta.updateShardMap(name, e.revision, () => ({ replicas, moves: Object.keys(moves).length ? moves : undefined }));
  for (const [action, line] of lines) ctx.act(action, line);
}

/** Starts the next move planMove chooses, if fewer than MAX_MOVES are under way. */
export async function startMove(ctx: BalancerContext, maps: Map<string, ShardMap>, round: Round): Promise<void> {
  const under = [...maps.values()].reduce((a, m) => a + Object.keys(m.moves ?? {}).length, 0);
  if (under >= MAX_MOVES) return;
  const rate = (r: string, key: string) => ctx.samples.get(`${r} ${key}`)?.rate;
  const p = planMove(maps, round.live, round.draining, ctx.opts.rebalance, replicaWeights(maps, shardMeasures(maps, round.live, rate)));
  const c = confirmPlan(ctx.planned, p);
  ctx.planned = c.planned;
  if (!p) return;
  if (!c.start) {
    round.work.push(`${shardKey(p.collection, p.shard)}: to move ${p.from} → ${p.to} (${p.why}) if still so in ${PLAN_ROUNDS - c.planned!.rounds} more rounds`);
    return;
  }
  const e = await ctx.meta.shardmaps.get(p.collection);
  const now = dec<ShardMap>(e);
  // Planned from the maps read at the round's start: this round may have changed them.
  const list = now?.replicas[p.shard];
  if (!e || !list || !list.includes(p.from) || list.includes(p.to) || now.moves?.[p.shard]) return;
  await ctx.meta.updateShardMap(p.collection, e.revision, (m) => ({
    replicas: m.replicas.map((l, s) => (s === p.shard ? [...l, p.to] : l)),
    moves: { ...m.moves, [p.shard]: { from: p.from, to: p.to, since: Date.now() } },
  }));
  ctx.act('move_start', `${shardKey(p.collection, p.shard)}: moving ${p.from} → ${p.to} (${p.why})`);
}
