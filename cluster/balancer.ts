// The balancer (docs/cluster.md): every coordinator runs one, and the one that
// holds the lease in KV acts. It restores a shard's replica count when a
// replica has been gone (or failed: stopped applying its log) longer than the
// grace period (one compare-and-set of
// the shard map; the new replica copies the shard from a live peer), splits a
// hash-partitioned shard that has grown past a threshold, and compacts each
// shard's write log below the sequence every replica has committed. What it is
// doing is kept in the lease, for `status`.
//
// A split of shard s into a new shard t (the split partitioner is chosen
// first and carried in the map) goes through the shard map, one
// compare-and-set per step (docs/cluster.md):
//   1. split {s, t, replicas}: the chosen members copy s from a live replica
//      and follow s's log (the new log of t exists, empty);
//   2. fenced: once they are close behind, coordinators hold writes to s;
//   3. sealedAt: once every live coordinator routes with the fenced map (their
//      heartbeats say which epoch they write with), s's last sequence is final;
//      the builders apply up to it, keep what the split places on t, restart at
//      sequence 0 and say they are ready;
//   4. the map takes the split partitioner and t's replicas; writes resume,
//      to s or t; then a `retain` entry on s's log drops what moved to t.
// Searches keep working throughout: until step 4 s holds everything; after it
// coordinators count only a shard's own ids, so s's old copies never show.

import type { JetStreamClient, JetStreamManager, KvEntry } from 'nats';
import { HashPartitioner, SpatialPartitioner, labelKey, partitionerFromJSON, shardOfPoint } from '../ts/partition/index.js';
import type { Partitioner } from '../ts/partition/index.js';
import { float32FromBytes } from '../ts/validate.js';
import type { PartitionerJSON } from '../ts/partition/index.js';
import { encode } from '../ts/wire/codec.js';
import { LEASE_MS, shardKey, addLogStream } from './meta.js';
import type { Meta, ShardMap, Member, CollectionMeta } from './meta.js';
import type { Names } from './subjects.js';
import { Horizons, WRITE_IN_TIME_MS, horizonAge, needsVersions, nextVersion } from './versions.js';

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
}

export const DEFAULT_BALANCER: BalancerOptions = { graceMs: 30_000, compactAfter: 10_000, splitAt: 0, intervalMs: 1000, versionWindowMs: WRITE_IN_TIME_MS };

/** A split is fenced when every builder is at most this many entries behind the source log. */
const FENCE_WHEN_BEHIND = 1000;
/** Points sampled from a spatial or semantic shard to place its split. */
const SAMPLE = 2000;
/** Least share of the sample a split must move to be made. */
const MIN_MOVED = 0.1;
/** While a split is under way the balancer looks this often. */
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
const dec = <T>(e: KvEntry | null): T | undefined =>
  e && e.operation === 'PUT' && e.value.length > 0 ? (JSON.parse(new TextDecoder().decode(e.value)) as T) : undefined;

/** Live shard processes not in `exclude`, those holding the fewest shards first (then by name). */
function leastLoaded(live: Map<string, Member>, load: Map<string, number>, exclude: string[]): Member[] {
  return [...live.values()].filter((m) => !exclude.includes(m.name))
    .sort((a, b) => (load.get(a.name) ?? 0) - (load.get(b.name) ?? 0) || a.name.localeCompare(b.name));
}

export async function balancerState(meta: Meta): Promise<BalancerState | undefined> {
  const s = dec<BalancerState>(await meta.leases.get(KEY));
  return s && s.until >= Date.now() ? s : undefined;
}

/** A request to another process: its decoded reply, or a thrown coded error. */
export type Request = (subject: string, body: unknown) => Promise<unknown>;

/** What the balancer does, as `vdb_balancer_actions_total` counts it. */
export const BALANCER_ACTIONS = ['replace', 'add_replica', 'retain', 'split_start', 'split_fence', 'split_seal', 'split_done', 'split_abandon', 'compact'] as const;
export type BalancerAction = (typeof BALANCER_ACTIONS)[number];

export function startBalancer(meta: Meta, js: JetStreamClient, jsm: JetStreamManager, request: Request, n: Names, me: string, opts: BalancerOptions, log: (line: string) => void, onAction?: (action: BalancerAction) => void): { stop(): void } {
  const goneSince = new Map<string, number>();
  /** Replicas whose copy of a shard stopped applying its log, by `member shard`. */
  const failedSince = new Map<string, number>();
  let done: string[] = [];
  const horizons = new Horizons(js, n, (c) => nextVersion(js, jsm, n, c, meta.replicas), horizonAge(opts.versionWindowMs));

  const act = (action: BalancerAction, line: string) => {
    onAction?.(action);
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

  /** Since when a replica of `name`/`s` has been down (its process gone, or
   * its copy of the shard failed), or undefined while it serves. */
  function downSince(r: string, name: string, s: number, live: Map<string, Member>): number | undefined {
    if (!live.has(r)) return goneSince.get(r);
    const key = `${r} ${shardKey(name, s)}`;
    if (!live.get(r)!.failed?.[shardKey(name, s)]) {
      failedSince.delete(key);
      return undefined;
    }
    if (!failedSince.has(key)) failedSince.set(key, Date.now());
    return failedSince.get(key);
  }

  const why = (r: string, name: string, s: number, live: Map<string, Member>) =>
    (live.has(r) ? `failed (${live.get(r)!.failed![shardKey(name, s)]})` : 'gone');

  async function replace(name: string, want: number, live: Map<string, Member>, load: Map<string, number>, work: string[]): Promise<void> {
    const e = await meta.shardmaps.get(name);
    const map = dec<ShardMap>(e);
    if (!e || !map) return;
    const now = Date.now();
    let changed = false;
    const replicas = map.replicas.map((list, s) => {
      const next = [...list];
      for (const r of list) {
        const gone = downSince(r, name, s, live);
        if (gone === undefined) continue;
        const since = gone;
        if (now - since < opts.graceMs) {
          work.push(`${name}/${s}: replica ${r} ${why(r, name, s, live)} for ${Math.round((now - since) / 1000)} s; replaced after ${Math.round(opts.graceMs / 1000)} s`);
          continue;
        }
        const spare = leastLoaded(live, load, next)[0];
        if (!spare) {
          work.push(`${name}/${s}: replica ${r} gone; no spare shard process to replace it`);
          continue;
        }
        next[next.indexOf(r)] = spare.name;
        load.set(spare.name, (load.get(spare.name) ?? 0) + 1);
        changed = true;
        act('replace', `${name}/${s}: replica ${r} ${why(r, name, s, live)} for ${Math.round((now - since) / 1000)} s; ${spare.name} replaces it`);
      }
      while (next.length < want) {
        const spare = leastLoaded(live, load, next)[0];
        if (!spare) { work.push(`${name}/${s}: ${next.length} of ${want} replicas; no spare shard process`); break; }
        next.push(spare.name);
        load.set(spare.name, (load.get(spare.name) ?? 0) + 1);
        changed = true;
        act('add_replica', `${name}/${s}: ${spare.name} added as a replica`);
      }
      return next;
    });
    if (changed) await meta.updateShardMap(name, e.revision, () => ({ replicas }));
  }

  /** One step of splitting a shard of `name`, or none; true while a split is under way. */
  async function split(name: string, cm: CollectionMeta, live: Map<string, Member>, load: Map<string, number>, work: string[]): Promise<boolean> {
    const e = await meta.shardmaps.get(name);
    const map = dec<ShardMap>(e);
    if (!e || !map) return false;
    const p = partitionerFromJSON(map.partitioner ?? cm.partitioner);
    const cas = (patch: Partial<ShardMap>) => meta.updateShardMap(name, e.revision, () => patch);
    if (map.retain?.length) {
      const settle: Record<number, number> = {};
      for (const s of map.retain) {
        settle[s] = (await js.publish(n.log(name, s), encode({ op: 'retain', partitioner: p.toJSON() as PartitionerJSON, shard: s }, false))).seq;
        act('retain', `${name}/${s}: retain appended at ${settle[s]} (drops what a split moved away)`);
      }
      await cas({ retain: undefined, settle });
      return true;
    }
    // Shard sizes count only once every replica has applied the retain.
    if (map.settle) {
      const waiting = Object.entries(map.settle).filter(([s, seq]) =>
        map.replicas[Number(s)].some((r) => (live.get(r)?.shards?.[shardKey(name, Number(s))] ?? 0) < seq));
      if (waiting.length === 0) {
        await cas({ settle: undefined });
      } else {
        work.push(`${name}: waiting for the replicas of shard ${waiting.map(([s]) => s).join(', ')} to apply their retain`);
      }
      return true;
    }
    const sp = map.split;
    if (!sp) {
      if (opts.splitAt <= 0) return false;
      const sizes = map.replicas.map((list, s) => Math.max(0, ...list.map((r) => live.get(r)?.points?.[shardKey(name, s)] ?? 0)));
      const s = sizes.indexOf(Math.max(...sizes));
      if (sizes[s] < opts.splitAt) return false;
      const builders = leastLoaded(live, load, []).slice(0, cm.replicas).map((m) => m.name);
      if (builders.length < cm.replicas) {
        work.push(`${name}/${s}: ${sizes[s]} points, past ${opts.splitAt}; a split needs ${cm.replicas} live shard processes`);
        return false;
      }
      const into = p.shards;
      // The partitioner and the map must agree on the shards, or `into` could name a live shard and delete its log.
      if (into !== map.replicas.length) {
        work.push(`${name}: the partitioner has ${into} shards, the shard map ${map.replicas.length}; no split`);
        return false;
      }
      // Hash splits by one more id bit; spatial cuts the leaf where a sample of
      // its vectors spreads widest; semantic moves labels (or shares its one label).
      let next: Partitioner;
      if (p instanceof HashPartitioner) next = p.split(s);
      else {
        const holder = map.replicas[s].find((r) => live.has(r));
        if (!holder) return false;
        const reply = (await request(n.replica(name, s, holder, 'sample'), { n: SAMPLE, seed: map.epoch })) as { vectors: Uint8Array[]; payloads: unknown[] };
        const sample = reply.vectors.map((v, i) => ({ id: i, vector: float32FromBytes(v), payload: reply.payloads[i] }));
        if (p instanceof SpatialPartitioner) {
          const flat = new Float32Array(sample.length * cm.dim);
          sample.forEach((pt, i) => flat.set(pt.vector, i * cm.dim));
          next = p.split(s, flat);
        } else {
          const labels = new Map<string, number>();
          for (const pt of sample) {
            const key = labelKey(p.labelOf(pt.payload));
            if (key !== undefined) labels.set(key, (labels.get(key) ?? 0) + 1);
          }
          next = p.split(s, labels);
        }
        // A split that would move almost nothing (one label, shared already) is not worth a shard.
        const moving = sample.filter((pt) => shardOfPoint(next, pt) !== s).length;
        if (moving < sample.length * MIN_MOVED) {
          work.push(`${name}/${s}: ${sizes[s]} points, past ${opts.splitAt}, but a split would move ${moving} of ${sample.length} sampled points`);
          return false;
        }
      }
      await jsm.streams.delete(n.stream(name, into)).catch(() => undefined); // left by an abandoned split
      await addLogStream(jsm, n, name, into, meta.replicas);
      await cas({ split: { shard: s, into, replicas: builders, fenced: false, partitioner: next.toJSON() } });
      act('split_start', `${name}/${s}: ${sizes[s]} points, past ${opts.splitAt}: splitting into ${name}/${into} on ${builders.join(', ')}`);
      return true;
    }
    const key = shardKey(name, sp.into);
    const gone = sp.replicas.filter((r) => !live.has(r));
    if (gone.some((r) => Date.now() - goneSince.get(r)! >= opts.graceMs)) {
      await cas({ split: undefined });
      await jsm.streams.delete(n.stream(name, sp.into)).catch(() => undefined);
      act('split_abandon', `${name}/${sp.shard}: split abandoned, ${gone.join(', ')} gone`);
      return true;
    }
    const states = sp.replicas.map((r) => live.get(r)?.building?.[key]);
    const { state } = await jsm.streams.info(n.stream(name, sp.shard));
    if (!sp.fenced) {
      const behind = Math.max(...states.map((st) => (st ? state.last_seq - st.applied : Infinity)));
      if (behind <= FENCE_WHEN_BEHIND) {
        await cas({ split: { ...sp, fenced: true } });
        act('split_fence', `${name}/${sp.shard}: builders of ${key} ${behind} entries behind; writes to ${name}/${sp.shard} held`);
      } else {
        work.push(`${name}/${sp.shard} → ${sp.into}: building, ${behind === Infinity ? 'copying' : `${behind} entries behind`}`);
      }
      return true;
    }
    if (sp.sealedAt === undefined) {
      const stale = meta.live('coordinator').filter((c) => (c.epochs?.[name] ?? Infinity) < map.epoch).map((c) => c.name);
      if (stale.length) {
        work.push(`${name}/${sp.shard} → ${sp.into}: waiting for ${stale.join(', ')} to hold writes`);
        return true;
      }
      await cas({ split: { ...sp, sealedAt: state.last_seq } });
      act('split_seal', `${name}/${sp.shard}: sealed at sequence ${state.last_seq}`);
      return true;
    }
    if (state.last_seq !== sp.sealedAt) {
      // A write reached the log after the seal (a coordinator that missed the fence): start over.
      await cas({ split: undefined });
      await jsm.streams.delete(n.stream(name, sp.into)).catch(() => undefined);
      act('split_abandon', `${name}/${sp.shard}: split abandoned, the log moved past its seal (${state.last_seq} > ${sp.sealedAt})`);
      return true;
    }
    if (!states.every((st) => st?.ready)) {
      work.push(`${name}/${sp.shard} → ${sp.into}: builders finishing at sequence ${sp.sealedAt}`);
      return true;
    }
    await cas({ split: undefined, replicas: [...map.replicas, sp.replicas], partitioner: sp.partitioner, retain: [sp.shard] });
    act('split_done', `${name}/${sp.shard}: split done; ${key} served by ${sp.replicas.join(', ')}`);
    return true;
  }

  async function compact(name: string, map: ShardMap, live: Map<string, Member>): Promise<void> {
    for (const [s, list] of map.replicas.entries()) {
      // A failed replica will be replaced by a copy: it holds no compaction back.
      const serving = list.filter((r) => !live.get(r)?.failed?.[shardKey(name, s)]);
      const applied = serving.map((r) => live.get(r)?.shards?.[shardKey(name, s)]);
      if (applied.length === 0 || applied.some((a) => a === undefined)) continue;
      const min = Math.min(...(applied as number[]));
      const stream = n.stream(name, s);
      const { state } = await jsm.streams.info(stream);
      // A sequence past the log's end was applied from another log (a heartbeat of a dropped incarnation).
      if (min > state.last_seq || min - (state.first_seq - 1) < opts.compactAfter) continue;
      await jsm.streams.purge(stream, { seq: min + 1 });
      act('compact', `${name}/${s}: log compacted below ${min + 1} (every replica has applied ${min})`);
    }
  }

  /** One round; true while a split is under way (the next round comes sooner). */
  async function tick(): Promise<boolean> {
    const shardMembers = meta.live('shard');
    const live = new Map(shardMembers.map((m) => [m.name, m]));
    const now = Date.now();
    const maps = new Map<string, ShardMap>();
    for (const name of meta.list()) {
      const m = await meta.shardMap(name);
      if (m) maps.set(name, m);
    }
    const load = new Map<string, number>();
    for (const r of live.keys()) goneSince.delete(r);
    for (const m of maps.values()) for (const r of [...m.replicas.flat(), ...(m.split?.replicas ?? [])]) {
      load.set(r, (load.get(r) ?? 0) + 1);
      if (!live.has(r) && !goneSince.has(r)) goneSince.set(r, now);
    }
    const work: string[] = [];
    if (!(await lease(work))) return false;
    let busy = false;
    for (const [name, map] of maps) {
      const cm = await meta.collection(name);
      if (!cm) continue;
      await replace(name, cm.replicas, live, load, work);
      if (await split(name, cm, live, load, work)) busy = true;
      else {
        await compact(name, map, live);
        // Not during a split: its new shard's log is not followed yet.
        const h = needsVersions(map.partitioner ?? cm.partitioner) && !map.split ? await horizons.step(name, map.replicas.length) : undefined;
        if (h !== undefined) log(`balancer ${me}: ${name}: versions below ${h} settled (a horizon appended to every shard's log)`);
      }
    }
    horizons.keep(new Set(maps.keys()));
    await lease(work);
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
