// The balancer (DESIGN §5, §7): every coordinator runs one, and the one that
// holds the lease in KV acts. It restores a shard's replica count when a
// replica has been gone longer than the grace period (one compare-and-set of
// the shard map; the new replica copies the shard from a live peer), and it
// compacts each shard's write log below the sequence every replica has
// committed. What it is doing is kept in the lease, for `status`.

import type { JetStreamManager, KvEntry } from 'nats';
import { LEASE_MS, shardKey } from './meta.js';
import type { Meta, ShardMap, Member } from './meta.js';
import type { Names } from './subjects.js';

export interface BalancerOptions {
  /** How long a replica may be gone before it is replaced. */
  graceMs: number;
  /** Log entries every replica has applied before the log is compacted below them. */
  compactAfter: number;
  intervalMs: number;
}

export const DEFAULT_BALANCER: BalancerOptions = { graceMs: 30_000, compactAfter: 10_000, intervalMs: 1000 };

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
const dec = <T>(e: KvEntry | null): T | undefined =>
  e && e.operation === 'PUT' && e.value.length > 0 ? (JSON.parse(new TextDecoder().decode(e.value)) as T) : undefined;

export async function balancerState(meta: Meta): Promise<BalancerState | undefined> {
  const s = dec<BalancerState>(await meta.leases.get(KEY));
  return s && s.until >= Date.now() ? s : undefined;
}

export function startBalancer(meta: Meta, jsm: JetStreamManager, n: Names, me: string, opts: BalancerOptions, log: (line: string) => void): { stop(): void } {
  const goneSince = new Map<string, number>();
  let done: string[] = [];
  let running = false;

  const act = (line: string) => {
    log(`balancer ${me}: ${line}`);
    done = [...done, `${new Date().toISOString()} ${line}`].slice(-KEEP_DONE);
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

  async function replace(name: string, want: number, live: Map<string, Member>, load: Map<string, number>, work: string[]): Promise<void> {
    const e = await meta.shardmaps.get(name);
    const map = dec<ShardMap>(e);
    if (!e || !map) return;
    const now = Date.now();
    let changed = false;
    const replicas = map.replicas.map((list, s) => {
      const next = [...list];
      for (const r of list) {
        if (live.has(r)) continue;
        const since = goneSince.get(r)!;
        if (now - since < opts.graceMs) {
          work.push(`${name}/${s}: replica ${r} gone for ${Math.round((now - since) / 1000)} s; replaced after ${Math.round(opts.graceMs / 1000)} s`);
          continue;
        }
        const spare = [...live.values()].filter((m) => !next.includes(m.name))
          .sort((a, b) => (load.get(a.name) ?? 0) - (load.get(b.name) ?? 0) || a.name.localeCompare(b.name))[0];
        if (!spare) {
          work.push(`${name}/${s}: replica ${r} gone; no spare shard process to replace it`);
          continue;
        }
        next[next.indexOf(r)] = spare.name;
        load.set(spare.name, (load.get(spare.name) ?? 0) + 1);
        changed = true;
        act(`${name}/${s}: replica ${r} gone for ${Math.round((now - since) / 1000)} s; ${spare.name} replaces it`);
      }
      while (next.length < want) {
        const spare = [...live.values()].filter((m) => !next.includes(m.name))
          .sort((a, b) => (load.get(a.name) ?? 0) - (load.get(b.name) ?? 0) || a.name.localeCompare(b.name))[0];
        if (!spare) { work.push(`${name}/${s}: ${next.length} of ${want} replicas; no spare shard process`); break; }
        next.push(spare.name);
        load.set(spare.name, (load.get(spare.name) ?? 0) + 1);
        changed = true;
        act(`${name}/${s}: ${spare.name} added as a replica`);
      }
      return next;
    });
    if (changed) await meta.shardmaps.update(name, enc({ epoch: map.epoch + 1, replicas } satisfies ShardMap), e.revision);
  }

  async function compact(name: string, map: ShardMap, live: Map<string, Member>): Promise<void> {
    for (const [s, list] of map.replicas.entries()) {
      const applied = list.map((r) => live.get(r)?.shards?.[shardKey(name, s)]);
      if (applied.some((a) => a === undefined)) continue;
      const min = Math.min(...(applied as number[]));
      const stream = n.stream(name, s);
      const { state } = await jsm.streams.info(stream);
      if (min - (state.first_seq - 1) < opts.compactAfter) continue;
      await jsm.streams.purge(stream, { seq: min + 1 });
      act(`${name}/${s}: log compacted below ${min + 1} (every replica has applied ${min})`);
    }
  }

  async function tick(): Promise<void> {
    const shardMembers = meta.live('shard');
    const live = new Map(shardMembers.map((m) => [m.name, m]));
    const now = Date.now();
    const maps = new Map<string, ShardMap>();
    for (const name of meta.list()) {
      const m = await meta.shardMap(name);
      if (m) maps.set(name, m);
    }
    const load = new Map<string, number>();
    for (const m of maps.values()) for (const list of m.replicas) for (const r of list) {
      load.set(r, (load.get(r) ?? 0) + 1);
      if (live.has(r)) goneSince.delete(r); else if (!goneSince.has(r)) goneSince.set(r, now);
    }
    const work: string[] = [];
    if (!(await lease(work))) return;
    for (const [name, map] of maps) {
      const cm = await meta.collection(name);
      if (!cm) continue;
      await replace(name, cm.replicas, live, load, work);
      await compact(name, map, live);
    }
    await lease(work);
  }

  const timer = setInterval(() => {
    if (running) return;
    running = true;
    tick().catch((e) => log(`balancer ${me}: ${(e as Error).message}`)).finally(() => { running = false; });
  }, opts.intervalMs);

  return {
    stop() {
      clearInterval(timer);
    },
  };
}
