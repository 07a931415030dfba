// Cluster metadata in JetStream KV buckets (replicated by NATS itself): the
// collections' schemas, each collection's shard map with an epoch, and the
// members with their heartbeats. Changes use compare-and-set on the revision;
// nothing else is a source of truth for topology.

import { randomBytes } from 'node:crypto';
import { StorageType } from 'nats';
import type { JetStreamClient, JetStreamManager, KV, KvEntry, NatsConnection } from 'nats';
import { VdbError, ErrorCode } from '../ts/errors.js';
import type { Metric, Quantization } from '../ts/core/wasm-index.js';
import type { PartitionerJSON } from '../ts/partition/index.js';
import type { Names } from './subjects.js';
import type { Room, Disk, Limits } from './capacity.js';
import { keepWatching } from './watch.js';
import type { KeptWatch } from './watch.js';

export interface CollectionMeta {
  name: string;
  dim: number;
  metric: Metric;
  replicas: number;
  hnsw: { m: number; efConstruction: number };
  /** SQ8 codes in every replica's index; absent for float vectors. */
  quantization?: Quantization;
  /** Payload fields every replica indexes in memory (`payloadIndexes` at create). */
  payloadIndexes?: string[];
  partitioner: PartitionerJSON;
  /** This incarnation of the name, random at create: replicas name their local
   * stores with it, so a store left from a dropped collection of the same name
   * is never reopened. Absent for collections created before it existed. */
  uid?: string;
  createdAt: number;
}

export interface ShardMap {
  epoch: number;
  /** The incarnation of the collection this map belongs to (CollectionMeta.uid). */
  uid?: string;
  /** Shard i is served by the members named in `replicas[i]`. */
  replicas: string[][];
  /** The partitioner once shards have been split (it then replaces the collection's). */
  partitioner?: PartitionerJSON;
  /** A split in progress (cluster/balancer.ts): the members in `replicas` build shard
   * `into` from `shard`; `fenced` holds writes to `shard`; `sealedAt` is its last
   * log sequence under the old layout, once every coordinator holds them;
   * `partitioner` is the one the split leads to. */
  split?: { shard: number; into: number; replicas: string[]; fenced: boolean; sealedAt?: number; partitioner: PartitionerJSON };
  /** A merge in progress (cluster/balancer/merge.ts): shard `from` (the last)
   * goes back into `shard`; `fenced` holds writes to `from`; `sealedAt` is
   * `from`'s last log sequence once every coordinator holds them; `copied` is
   * `shard`'s log sequence once all of `from`'s points are appended to it;
   * `partitioner` is the one the merge leads to; `done` once the map has it:
   * `from`'s former replicas serve it until every coordinator routes with
   * the merged map; `since` when it started (ms since the epoch). */
  merge?: { shard: number; from: number; fenced: true; since: number; sealedAt?: number; copied?: number; partitioner: PartitionerJSON; done?: { replicas: string[]; at: number } };
  /** Replica moves under way, by shard (cluster/balancer/moves.ts): `to` is in the shard's list until `from` leaves it. */
  moves?: Record<number, ShardMove>;
  /** Replicas each shard has for load beyond its collection's count (cluster/balancer/hot.ts). */
  extra?: Record<number, number>;
  /** Shards whose log still needs the `retain` entry that drops what a split moved away. */
  retain?: number[];
  /** The sequence of each retain entry, until every replica of its shard has applied it. */
  settle?: Record<number, number>;
}

/** Whether writes to shard `s` wait for the next map: it is being split, or merged away (docs/cluster.md). */
export function holdsWrites(map: ShardMap, s: number): boolean {
  return (map.split?.fenced === true && map.split.shard === s) || (map.merge?.from === s && !map.merge.done);
}

/** A replica of a shard moving from one shard process to another, since a time (ms since the epoch). */
export interface ShardMove { from: string; to: string; since: number }

export interface Member {
  name: string;
  role: 'shard' | 'coordinator';
  pid: number;
  heartbeat: number;
  metricsPort?: number;
  /** For a shard process: the applied log sequence of each shard it serves, by `shardKey`. */
  shards?: Record<string, number>;
  /** For a shard process: points in each shard it serves. */
  points?: Record<string, number>;
  /** For a shard process: shards it serves that stopped applying their log (a
   * storage fault), with the reason; they answer no reads and are replaced. */
  failed?: Record<string, string>;
  /** For a shard process: index bytes of each shard it serves (the balancer weighs replicas by it). */
  memory?: Record<string, number>;
  /** For a shard process: searches each shard answered since the process opened it, by `shardKey`;
   * for a coordinator: searches it served since it started, by collection. The balancer derives rates. */
  searches?: Record<string, number>;
  /** For a shard process: log entries each shard skipped (refused by every replica alike). */
  skipped?: Record<string, number>;
  /** For a shard process: shards it builds for a split, by `shardKey` of the new shard:
   * the sequence applied of the source shard's log, and whether it is ready. */
  building?: Record<string, { applied: number; ready: boolean }>;
  /** For a shard process: how many more points each shard it serves can take, and the limit that bounds it, by `shardKey` (cluster/capacity.ts). */
  room?: Record<string, Room>;
  /** For a shard process: the free disk of its data directory and its floor. */
  disk?: Disk;
  /** For a shard process: its index memory and point limits per shard replica. */
  limits?: Pick<Limits, 'maxIndexBytes' | 'maxPoints'>;
  /** For a coordinator: the oldest shard-map epoch it may still write with, per collection. */
  epochs?: Record<string, number>;
}

/** How a shard is named in heartbeats and logs: `collection/shard`. */
export const shardKey = (collection: string, shard: number) => `${collection}/${shard}`;

/** How long a member counts as alive after its last heartbeat. */
export const LEASE_MS = 5000;
export const HEARTBEAT_MS = 1000;

/**
 * Replicas for JetStream assets: min(3, servers in the NATS cluster). A
 * clustered server names its cluster in the INFO it sends on connect and lists
 * every member's client URL (itself included) in `connect_urls`; a standalone
 * server has no cluster, so 1. The count is of the members connected to that
 * server at that moment: an asset created while a node is down gets fewer
 * replicas (docs/durability.md).
 */
export function jetstreamReplicas(nc: NatsConnection): number {
  const info = nc.info;
  if (!info?.cluster) return 1;
  return Math.max(1, Math.min(3, info.connect_urls?.length ?? 1));
}

/** Creates the write log of a shard: file storage, `replicas` copies in the NATS cluster. */
export async function addLogStream(jsm: JetStreamManager, n: Names, collection: string, shard: number, replicas: number): Promise<void> {
  await jsm.streams.add({ name: n.stream(collection, shard), subjects: [n.log(collection, shard)], storage: StorageType.File, max_msg_size: -1, num_replicas: replicas });
}

/** A new incarnation id: 12 hex digits. */
export const newUid = () => randomBytes(6).toString('hex');

/** The name of a replica's local store of a shard (in its SQLite file). */
export function storeName(collection: string, uid: string | undefined, shard: number): string {
  return uid ? `${collection}__${uid}__${shard}` : `${collection}__${shard}`;
}

/** The collection, incarnation and shard a local store name stands for, if it is
 * one: `collection__uid__shard`, or the older `collection__shard` (a collection
 * created before incarnations, or whose name ends in `__` and 12 hex digits, is read wrongly). */
export function parseStoreName(name: string): { collection: string; uid?: string; shard: number } | undefined {
  const m = /^(.+)__([0-9a-f]{12})__(\d+)$/.exec(name);
  if (m) return { collection: m[1], uid: m[2], shard: Number(m[3]) };
  const old = /^(.+)__(\d+)$/.exec(name);
  return old ? { collection: old[1], shard: Number(old[2]) } : undefined;
}

/** A shard map with `patch` applied: the fields it names replaced (removed when
 * `undefined`), every other field kept, the epoch one more. */
export function nextShardMap(map: ShardMap, patch: Partial<ShardMap>): ShardMap {
  const next: ShardMap = { ...map, ...patch, epoch: map.epoch + 1 };
  for (const k of Object.keys(next) as (keyof ShardMap)[]) if (next[k] === undefined) delete next[k];
  return next;
}

/** How long a process waits at start for JetStream to answer. */
export const START_TIMEOUT_MS = 60_000;
/** A members watch that delivered nothing for this long while heartbeats were written is reopened. */
const STALE_WATCH_MS = 10 * HEARTBEAT_MS;
/** How long opening waits for the watches' first delivery before going on without it. */
const WATCH_LOAD_MS = 5000;

/**
 * Runs `fn` again while JetStream does not answer yet: a NATS cluster that has
 * just formed, or is electing a leader, times out or has no responder for its
 * API; creating a replicated bucket there can take longer than one API
 * timeout. Any other error, or the deadline, ends it.
 */
export async function whileJetStreamStarts<T>(fn: () => Promise<T>, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (let wait = 100; ; wait = Math.min(2000, wait * 2)) {
    try {
      return await fn();
    } catch (e) {
      const code = (e as { code?: string }).code;
      const starting = code === 'TIMEOUT' || code === '503' || /temporarily unavailable|no suitable peers/i.test((e as Error).message);
      if (!starting) throw e;
      if (Date.now() + wait > deadline) {
        throw new VdbError(ErrorCode.UNAVAILABLE, `JetStream did not answer within ${timeoutMs} ms: ${(e as Error).message}`);
      }
      await new Promise((r) => setTimeout(r, wait));
    }
  }
}

const enc = (v: unknown) => new TextEncoder().encode(JSON.stringify(v));
const dec = <T>(e: KvEntry | null): T | undefined =>
  e && e.operation === 'PUT' && e.value.length > 0 ? (JSON.parse(new TextDecoder().decode(e.value)) as T) : undefined;

export class Meta {
  /** Members as last seen by a watch on their bucket (key listings can miss keys written meanwhile). */
  private readonly seen = new Map<string, Member>();
  private readonly names = new Set<string>();
  private readonly watches: { stop(): void }[] = [];
  private memberWatch?: KeptWatch;

  private constructor(
    /** Replicas of the KV buckets and the write logs (see jetstreamReplicas). */
    readonly replicas: number,
    readonly collections: KV,
    readonly shardmaps: KV,
    readonly members: KV,
    /** Leases, such as the balancer's: held by compare-and-set, expiring unless renewed. */
    readonly leases: KV,
  ) {}

  static async open(nc: NatsConnection, n: Names, opts: { startTimeoutMs?: number } = {}): Promise<Meta> {
    const js: JetStreamClient = nc.jetstream();
    const replicas = jetstreamReplicas(nc);
    // The replica count counts only when a bucket is created; an existing one is used as it is.
    const kv = (kind: 'collections' | 'shardmap' | 'members' | 'leases') =>
      whileJetStreamStarts(() => js.views.kv(n.bucket(kind), { history: 1, replicas }), opts.startTimeoutMs ?? START_TIMEOUT_MS);
    const meta = new Meta(replicas, await kv('collections'), await kv('shardmap'), await kv('members'), await kv('leases'));
    // Opened once both watches have delivered what the buckets hold: a process
    // that looks for live peers right after start (a new replica choosing to
    // copy rather than replay) must see them.
    const forget = <T>(known: Map<string, T> | Set<string>) => (present: Set<string>) => {
      for (const k of [...known.keys()]) if (!present.has(k)) known.delete(k);
    };
    meta.memberWatch = keepWatching(meta.members, n.bucket('members'), (e) => {
      const m = dec<Member>(e);
      if (m) meta.seen.set(e.key, m); else meta.seen.delete(e.key);
    }, forget(meta.seen));
    const collections = keepWatching(meta.collections, n.bucket('collections'), (e) => {
      if (e.operation === 'PUT') meta.names.add(e.key); else meta.names.delete(e.key);
    }, forget(meta.names));
    meta.watches.push(meta.memberWatch, collections);
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([Promise.all([meta.memberWatch.ready, collections.ready]), new Promise<void>((resolve) => { timer = setTimeout(resolve, WATCH_LOAD_MS); })]);
    clearTimeout(timer);
    return meta;
  }

  close(): void {
    for (const w of this.watches) w.stop();
  }

  /** Writes the shard map of a new incarnation over whatever a dropped or
   * half-created one left (one compare-and-set on that entry's revision), then
   * the collection entry, which commits the create: COLLECTION_EXISTS if the
   * name is taken. The write logs must exist before (collections-admin.ts). */
  async create(meta: CollectionMeta, map: ShardMap): Promise<void> {
    const left = await this.shardmaps.get(meta.name);
    try {
      if (left) await this.shardmaps.update(meta.name, enc(map), left.revision);
      else await this.shardmaps.create(meta.name, enc(map));
    } catch (e) {
      throw new VdbError(ErrorCode.CONFLICT, `collection ${meta.name} is being created or dropped at the same time: ${(e as Error).message}`);
    }
    try {
      await this.collections.create(meta.name, enc(meta));
    } catch {
      throw new VdbError(ErrorCode.COLLECTION_EXISTS, `collection ${meta.name} already exists`);
    }
  }

  /**
   * Changes a shard map with one compare-and-set: `change` gets the whole
   * current map and returns only the fields it changes (`undefined` removes
   * one); every other field is kept and the epoch goes up by one. Refused with
   * CONFLICT when the map is no longer at `revision` (someone changed it since
   * it was read) or is gone.
   */
  async updateShardMap(name: string, revision: number, change: (map: ShardMap) => Partial<ShardMap>): Promise<ShardMap> {
    const e = await this.shardmaps.get(name);
    const map = dec<ShardMap>(e);
    if (!e || !map || e.revision !== revision) throw new VdbError(ErrorCode.CONFLICT, `the shard map of ${name} changed since revision ${revision}`);
    const next = nextShardMap(map, change(structuredClone(map)));
    try {
      await this.shardmaps.update(name, enc(next), revision);
    } catch (err) {
      throw new VdbError(ErrorCode.CONFLICT, `the shard map of ${name} changed since revision ${revision}: ${(err as Error).message}`);
    }
    return next;
  }

  async collection(name: string): Promise<CollectionMeta | undefined> {
    return dec<CollectionMeta>(await this.collections.get(name));
  }

  async shardMap(name: string): Promise<ShardMap | undefined> {
    return dec<ShardMap>(await this.shardmaps.get(name));
  }

  /** Collection names as last seen by the watch (it follows creates and drops within milliseconds). */
  list(): string[] {
    return [...this.names].sort();
  }

  /** Deletes the collection entry (the name is free from then on), then the shard map
   * (its replicas stop serving and remove their stores); either may be absent. */
  async drop(name: string): Promise<void> {
    await this.collections.delete(name);
    await this.shardmaps.delete(name);
  }

  async heartbeat(m: Omit<Member, 'heartbeat'>): Promise<void> {
    await this.members.put(m.name, enc({ ...m, heartbeat: Date.now() }));
    // Every member's heartbeat, this one's included, passes through the watch:
    // a watch that delivered nothing for long has stopped without saying so.
    const w = this.memberWatch;
    if (w && Date.now() - w.lastDelivery > STALE_WATCH_MS) w.restart(`nothing delivered for ${Date.now() - w.lastDelivery} ms while heartbeats were written`);
  }

  async leave(name: string): Promise<void> {
    await this.members.delete(name);
  }

  /** Members whose lease has not expired. */
  live(role?: Member['role']): Member[] {
    const now = Date.now();
    return [...this.seen.values()]
      .filter((m) => now - m.heartbeat <= LEASE_MS && (!role || m.role === role))
      .sort((a, b) => a.name.localeCompare(b.name));
  }
}
