// The balancer (docs/cluster.md): every coordinator runs one, and the one that
// holds the lease in KV acts. Each round it restores replica counts
// (balancer/replace.ts), takes a step of a split (balancer/split.ts; a split
// may also be for load, balancer/load-split.ts) or of a merge
// (balancer/merge.ts) and compacts the write logs (balancer/compact.ts); it
// moves replicas off draining processes and onto emptier ones
// (balancer/moves.ts) and adds or removes replicas of shards by their search
// load (balancer/hot.ts). What it is doing is kept in the lease, for `status`.

import type { JetStreamClient, JetStreamManager } from 'nats';
import { LEASE_MS } from './meta.js';
import type { Meta, ShardMap } from './meta.js';
import type { Names } from './subjects.js';
import { Horizons, horizonAge, needsVersions, nextVersion } from './versions.js';
import { dec } from './balancer/context.js';
import type { BalancerAction, BalancerContext, BalancerOptions, Request, Round } from './balancer/context.js';
import { replace } from './balancer/replace.js';
import { split } from './balancer/split.js';
import { merge } from './balancer/merge.js';
import { compact } from './balancer/compact.js';
import { startMove, stepMoves } from './balancer/moves.js';
import { draining } from './balancer/drain.js';
import { forgetGone, scaleForLoad } from './balancer/hot.js';
import { forgetLoadSplit, newLoadSplitState } from './balancer/load-split.js';

export { DEFAULT_BALANCER, BALANCER_ACTIONS } from './balancer/context.js';
export type { BalancerAction, BalancerOptions, Request } from './balancer/context.js';

/** While a split or a merge is under way the balancer looks this often. */
const BUSY_MS = 100;

export interface BalancerState {
  holder: string;
  until: number;
  /** What waits: replicas gone but within grace, shards with no spare process. */
  work: string[];
  /** The last actions taken, newest last. */
  done: string[];
}

const KEY = 'balancer';
const KEEP_DONE = 20;
const enc = (v: unknown) => new TextEncoder().encode(JSON.stringify(v));

export async function balancerState(meta: Meta): Promise<BalancerState | undefined> {
  const s = dec<BalancerState>(await meta.leases.get(KEY));
  return s && s.until >= Date.now() ? s : undefined;
}

export function startBalancer(meta: Meta, js: JetStreamClient, jsm: JetStreamManager, request: Request, n: Names, me: string, opts: BalancerOptions, log: (line: string) => void, onAction?: (action: BalancerAction) => void): { stop(): void } {
  let done: string[] = [];
  const horizons = new Horizons(js, n, (c) => nextVersion(js, jsm, n, c, meta.replicas), horizonAge(opts.versionWindowMs));
  const ctx: BalancerContext = {
    meta, js, jsm, request, n, opts, goneSince: new Map(), failedSince: new Map(), samples: new Map(), heat: new Map(), loadSplit: newLoadSplitState(),
    act(action, line) {
      onAction?.(action);
      log(`balancer ${me}: ${line}`);
      done = [...done, `${new Date().toISOString()} ${line}`].slice(-KEEP_DONE);
    },
  };

  /** Takes or renews the lease (compare-and-set on its revision); false if another coordinator holds it. */
  async function lease(work: string[]): Promise<boolean> {
    const e = await meta.leases.get(KEY);
    const held = dec<BalancerState>(e);
    const value = enc({ holder: me, until: Date.now() + LEASE_MS, work, done } satisfies BalancerState);
    try {
      if (!e) await meta.leases.create(KEY, value);
      else if (!held || held.holder === me || held.until < Date.now()) await meta.leases.update(KEY, value, e.revision);
      else return false;
      if (held?.holder !== me) done = held?.done ?? done;
      return true;
    } catch {
      return false;
    }
  }

  /** One round; true while a split is under way (the next round comes sooner). */
  async function tick(): Promise<boolean> {
    const live = new Map(meta.live('shard').map((m) => [m.name, m]));
    const now = Date.now();
    const maps = new Map<string, ShardMap>();
    for (const name of meta.list()) {
      const m = await meta.shardMap(name);
      if (m) maps.set(name, m);
    }
    const round: Round = { live, load: new Map(), work: [], draining: await draining(meta) };
    for (const r of live.keys()) ctx.goneSince.delete(r);
    for (const m of maps.values()) for (const r of [...m.replicas.flat(), ...(m.split?.replicas ?? [])]) {
      round.load.set(r, (round.load.get(r) ?? 0) + 1);
      if (!live.has(r) && !ctx.goneSince.has(r)) ctx.goneSince.set(r, now);
    }
    if (!(await lease(round.work))) return false;
    let busy = false;
    for (const [name, map] of maps) {
      const cm = await meta.collection(name);
      if (!cm) continue;
      // Moves first: one whose source died completes here rather than being replaced.
      await stepMoves(ctx, name, round);
      await replace(ctx, name, cm.replicas, round);
      await scaleForLoad(ctx, name, cm.replicas, round);
      if ((await split(ctx, name, cm, round)) || (await merge(ctx, name, cm, round))) busy = true;
      else {
        await compact(ctx, name, map, round);
        // Not during a split (its new shard's log is not followed yet) nor a merge (a horizon on the sealed log would abandon it).
        const h = needsVersions(map.partitioner ?? cm.partitioner) && !map.split && !map.merge ? await horizons.step(name, map.replicas.length) : undefined;
        if (h !== undefined) log(`balancer ${me}: ${name}: versions below ${h} settled (a horizon appended to every shard's log)`);
      }
    }
    horizons.keep(new Set(maps.keys()));
    forgetGone(ctx, new Set(maps.keys()));
    forgetLoadSplit(ctx.loadSplit, new Set(maps.keys()));
    if (!busy) {
      // Planned on the maps as this round left them.
      const fresh = new Map<string, ShardMap>();
      for (const name of maps.keys()) {
        const m = await meta.shardMap(name);
        if (m) fresh.set(name, m);
      }
      await startMove(ctx, fresh, round);
    }
    for (const d of round.draining) {
      const left = [...maps].flatMap(([c, m]) => m.replicas.flatMap((l, s) => (l.includes(d) ? [`${c}/${s}`] : [])));
      if (left.length) round.work.push(`draining ${d}: ${left.length} replicas left (${left.join(', ')})`);
    }
    await lease(round.work);
    return busy;
  }

  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  const loop = (delay: number) => {
    timer = setTimeout(() => {
      tick().catch((e) => { log(`balancer ${me}: ${(e as Error).message}`); return false; })
        .then((busy) => { if (!stopped) loop(busy ? BUSY_MS : opts.intervalMs); });
    }, delay);
  };
  loop(opts.intervalMs);

  return {
    stop() {
      stopped = true;
      clearTimeout(timer);
    },
  };
}
