// `vdb shard`: a process that owns a data directory and serves the shards the
// shard maps assign to it, one replica each (replica.ts). It follows the maps:
// a replica that is new, wiped, far behind or past a compacted log first
// copies a live peer (snapshot-copy.ts); a shard being split off is built here
// from a copy of its source that follows the source's log until the balancer
// seals it. It heartbeats what it serves and serves /metrics and /healthz.

import { mkdirSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { Collection } from '../ts/collection.js';
import type { OpenOptions } from '../ts/collection.js';
import { checkCollectionName } from '../ts/validate.js';
import { partitionerFromJSON } from '../ts/partition/index.js';
import { VdbError, ErrorCode } from '../ts/errors.js';
import { keepWatching, listKeys } from './watch.js';
import { Meta, HEARTBEAT_MS, START_TIMEOUT_MS, shardKey, storeName, parseStoreName, whileJetStreamStarts } from './meta.js';
import type { CollectionMeta, ShardMap } from './meta.js';
import { names } from './subjects.js';
import { requestMetrics } from './service.js';
import { Registry, serveMetrics } from './metrics.js';
import { shardMetrics } from './shard-metrics.js';
import { natsMetrics, diskMetrics } from './process-metrics.js';
import { CopySource, copyFromPeer } from './snapshot-copy.js';
import { ServedShard, placedElsewhere } from './replica.js';
import { connectNats } from './nats-connect.js';
import type { KvEntry, JetStreamManager } from 'nats';
import type { NatsAuth } from './nats-connect.js';
import { limitsFrom, shardRoom, diskOf } from './capacity.js';
import type { ShardLimits } from './capacity.js';
import { trackConnection, connectionDetail } from './nats-status.js';
import { logger } from './log.js';

export interface ShardOptions extends ShardLimits {
  nats: string;
  /** Credentials (an internal-account user) and TLS files to connect with. */
  auth?: NatsAuth;
  name: string;
  data: string;
  prefix?: string;
  log?: (line: string) => void;
  /** Port of /metrics and /healthz; 0 or absent picks a free one. */
  metricsPort?: number;
  /** Interface of /metrics and /healthz (default 127.0.0.1: other machines need a deliberate choice, docs/security.md). */
  metricsHost?: string;
}

/** A replica this many log entries behind a live peer copies the peer instead of replaying. */
const COPY_WHEN_BEHIND = 2000;
/** How often every shard map is looked at, besides the watch. */
const RESYNC_MS = 10_000;
/** A shard that cannot be prepared (no peer to copy from yet) is retried after this long. */
const RETRY_MS = 3000;

export async function runShard(opts: ShardOptions): Promise<{ stop(): Promise<void> }> {
  const log = opts.log ?? ((line: string) => logger().info(line));
  checkCollectionName(opts.name, 'name');
  const limits = limitsFrom(opts);
  mkdirSync(opts.data, { recursive: true }); // its free disk is reported from the first heartbeat
  const n = names(opts.prefix);
  const nc = await connectNats(opts.nats, opts.name, opts.auth);
  const connection = trackConnection(nc);
  const meta = await Meta.open(nc, n);
  const service = await nc.services.add({ name: 'vdb-shard', version: '0.1.0', description: `shard process ${opts.name}`, metadata: { member: opts.name } });
  const served = new Map<string, ServedShard>();
  /** Shards being built for a split (by the new shard's key), and those built and waiting to be served. */
  const building = new Map<string, ServedShard>();
  const built = new Set<string>();
  const sealers = new Map<string, () => void>();

  const registry = new Registry();
  const observe = requestMetrics(registry, 'vdb_shard');
  // A replica whose store cannot be read (closed after a fault) reports no room.
  const roomOf = (sh: ServedShard) => {
    try {
      return shardRoom(sh.store, limits);
    } catch {
      return undefined;
    }
  };
  // JetStream's manager once it answers (set below with `copies`), for the logs' sequences; copies received now.
  let logs: JetStreamManager | undefined;
  let receiving = 0;
  shardMetrics(registry, {
    served: () => served.values(),
    limits,
    room: (sh) => roomOf(sh)?.points ?? 0,
    sqliteFile: join(opts.data, 'vdb.sqlite'),
    stream: (sh) => n.stream(sh.collection, sh.source),
    jsm: () => logs,
    copies: () => ({ serving: logs ? copies.inFlight : 0, receiving }),
  });
  natsMetrics(registry, connection.state);
  diskMetrics(registry, opts.data, limits.minFreeDiskBytes);
  const metrics = await serveMetrics(registry, {
    port: opts.metricsPort,
    host: opts.metricsHost,
    health: () => {
      const failed = Object.fromEntries([...served].filter(([, sh]) => sh.failed).map(([k, sh]) => [k, sh.failed]));
      const conn = connection.state();
      return { ok: conn.connected && Object.keys(failed).length === 0, detail: { name: opts.name, shards: [...served.keys()], failed, nats: connectionDetail(nc, conn) } };
    },
  });

  const beat = () => {
    const stats = new Map([...served].map(([k, sh]) => [k, sh.stats()]));
    return meta.heartbeat({
      name: opts.name, role: 'shard', pid: process.pid, metricsPort: metrics.port,
      shards: Object.fromEntries([...served].map(([k, sh]) => [k, sh.applied])),
      points: Object.fromEntries([...stats].map(([k, st]) => [k, st.points])),
      failed: Object.fromEntries([...served].filter(([, sh]) => sh.failed).map(([k, sh]) => [k, sh.failed!])),
      skipped: Object.fromEntries([...stats].map(([k, st]) => [k, st.skipped])),
      memory: Object.fromEntries([...stats].map(([k, st]) => [k, st.indexBytes])),
      searches: Object.fromEntries([...served].map(([k, sh]) => [k, sh.searches])),
      // Taken with `shards` above, so a coordinator counts its writes past that sequence against this room.
      room: Object.fromEntries([...served].flatMap(([k, sh]) => { const r = roomOf(sh); return r ? [[k, r]] : []; })),
      disk: diskOf(opts.data, limits),
      limits: { maxIndexBytes: limits.maxIndexBytes, maxPoints: limits.maxPoints },
      building: Object.fromEntries([
        ...[...building].map(([k, sh]) => [k, { applied: sh.applied, ready: false }]),
        ...[...built].map((k) => [k, { applied: 0, ready: true }]),
      ]),
    }).catch(() => undefined);
  };
  await beat();
  const timer = setInterval(beat, HEARTBEAT_MS);

  const jsm = await whileJetStreamStarts(() => nc.jetstreamManager(), START_TIMEOUT_MS);
  const copies = new CopySource(join(opts.data, 'copies'), Math.min(1024 * 1024, Math.floor((nc.info?.max_payload ?? 1024 * 1024) / 2)));
  logs = jsm;

  // A replica with nothing applied, or whose next entry was compacted out of
  // the log, first copies the shard from a live peer; otherwise it replays.
  // A replica far behind also copies, when a peer is far ahead: copying costs
  // the shard's size, replaying costs an index insertion per point written.
  // A shard being built for a split always copies its source (`force`).
  async function prepare(collection: string, s: number, replicas: string[], name: string, force = false): Promise<void> {
    const { state } = await jsm.streams.info(n.stream(collection, s));
    const applied = Collection.storedSeq(opts.data, name);
    const gap = applied < state.first_seq - 1;
    const ahead = Math.max(0, ...meta.live('shard')
      .filter((m) => m.name !== opts.name && replicas.includes(m.name))
      .map((m) => m.shards?.[shardKey(collection, s)] ?? 0));
    const far = ahead - applied > COPY_WHEN_BEHIND;
    if (!force && !gap && !far && !(applied === 0 && state.last_seq > 0)) return;
    const local = served.get(shardKey(collection, s));
    if (local && name !== local.store.name) {
      // This process serves the source itself: copy it through a file here.
      const file = join(opts.data, `copy-${name}-${process.pid}.sqlite`);
      rmSync(file, { force: true });
      try {
        const seq = local.store.exportTo(file);
        Collection.importFrom(opts.data, name, file, local.store.name);
        log(`${opts.name}: copied ${collection}/${s} locally at sequence ${seq}`);
      } finally {
        rmSync(file, { force: true });
      }
      return;
    }
    const peers = meta.live('shard')
      .filter((m) => m.name !== opts.name && replicas.includes(m.name) && (m.shards?.[shardKey(collection, s)] ?? 0) > 0)
      .sort((a, b) => b.shards![shardKey(collection, s)] - a.shards![shardKey(collection, s)]);
    for (const p of peers) {
      try {
        const t0 = Date.now();
        receiving++;
        const r = await copyFromPeer(nc, n.replica(collection, s, p.name, 'snapshot'), opts.data, name).finally(() => receiving--);
        log(`${opts.name}: copied ${collection}/${s} from ${p.name} at sequence ${r.seq} (${r.bytes} bytes in ${Date.now() - t0} ms)`);
        return;
      } catch (e) {
        log(`${opts.name}: copying ${collection}/${s} from ${p.name} failed: ${(e as Error).message}`);
      }
    }
    if (gap || force) throw new VdbError(ErrorCode.SHARD_UNAVAILABLE, `the log of ${collection}/${s} starts at ${state.first_seq}, this replica has applied ${applied}, and no live peer could be copied`);
  }

  // Builds shard `into` of a split: a copy of the source shard that follows the
  // source's log until the balancer seals it, then keeps only what the split
  // partitioner places on `into` and restarts at sequence 0 of its own log.
  async function build(collection: string, cm: CollectionMeta, map: ShardMap, split: NonNullable<ShardMap['split']>): Promise<void> {
    const key = shardKey(collection, split.into);
    if (building.has(key)) sealers.get(key)?.();
    if (building.has(key) || built.has(key) || served.has(key)) return;
    const name = storeName(collection, cm.uid, split.into);
    await prepare(collection, split.shard, map.replicas[split.shard], name, true);
    const options: OpenOptions = { name, dim: cm.dim, metric: cm.metric, hnsw: { ...cm.hnsw, seed: 42 }, quantization: cm.quantization, indexes: cm.payloadIndexes };
    const seal = () => {
      const sh = building.get(key);
      const now = latest.get(collection)?.split;
      if (!sh || now?.into !== split.into || now.sealedAt === undefined || sh.applied < now.sealedAt) return;
      sh.stopFollowing();
      sh.store.detach(placedElsewhere(sh.store, partitionerFromJSON(now.partitioner), split.into));
      const kept = sh.store.count();
      sh.stop();
      building.delete(key);
      sealers.delete(key);
      built.add(key);
      log(`${opts.name}: built ${key} from ${shardKey(collection, split.shard)} at sequence ${now.sealedAt} (${kept} points)`);
      void beat();
    };
    const sh = new ServedShard(collection, split.into, split.shard, Collection.open(opts.data, options), () => Collection.open(opts.data, options), seal);
    building.set(key, sh);
    sealers.set(key, seal);
    await sh.start(nc, n, opts.name, undefined, copies, log, observe);
    log(`${opts.name}: building ${key} from ${shardKey(collection, split.shard)}, at sequence ${sh.applied}`);
    seal();
  }

  // Removes the local stores of incarnations that no longer exist, and of shards
  // merged away (a later split may make a shard of that number again, with a
  // new log), with any copy files left of them: `current(c)` is collection c's
  // map now (undefined: it has none), or false for a collection not being
  // looked at. Stores must be closed.
  function removeStale(current: (collection: string) => ShardMap | undefined | false): void {
    for (const name of Collection.storedNames(opts.data)) {
      const r = parseStoreName(name);
      const map = r && current(r.collection);
      if (!r || map === false) continue;
      const merged = map !== undefined && map.uid === r.uid && r.shard >= map.replicas.length && r.shard !== map.split?.into && r.shard !== map.merge?.from;
      if (map?.uid === r.uid && !merged) continue;
      Collection.drop(opts.data, name);
      for (const f of readdirSync(opts.data)) if (f.startsWith(`copy-${name}-`)) rmSync(join(opts.data, f), { force: true });
      log(`${opts.name}: removed ${name}: ${merged ? 'a shard merged away of' : map ? 'a dropped incarnation of' : 'dropped'} ${r.collection}`);
    }
  }

  // Serializes topology changes: shard maps are applied one at a time.
  let chain = Promise.resolve();
  const retries = new Map<string, NodeJS.Timeout>();
  const latest = new Map<string, ShardMap | undefined>();
  const incarnation = new Map<string, string | undefined>();
  const assign = (collection: string, map: ShardMap | undefined) => {
    latest.set(collection, map);
    clearTimeout(retries.get(collection));
    chain = chain.then(async () => {
      if (latest.get(collection) !== map) return; // a newer map is queued
      const uid = map?.uid;
      const mine = new Set<number>();
      map?.replicas.forEach((members, s) => { if (members.includes(opts.name)) mine.add(s); });
      // A store of another incarnation (the collection was dropped, maybe created again) stops here.
      const current = (sh: ServedShard) => map !== undefined && sh.store.name === storeName(collection, uid, sh.shard);
      // A shard merged away is still served until every coordinator routes with the merged map (balancer/merge.ts).
      const retiring = map?.merge?.done?.replicas.includes(opts.name) ? map.merge.from : undefined;
      for (const [k, sh] of served) {
        if (sh.collection === collection && ((!mine.has(sh.shard) && sh.shard !== retiring) || !current(sh))) {
          sh.stop();
          served.delete(k);
          log(`${opts.name}: no longer serving ${k}`);
          void beat(); // its applied sequence must not be read as one of a new log of the same name
        }
      }
      const split = map?.split?.replicas.includes(opts.name) ? map.split : undefined;
      for (const [k, sh] of building) {
        if (sh.collection === collection && (!split || k !== shardKey(collection, split.into) || !current(sh))) {
          sh.stop();
          building.delete(k);
          sealers.delete(k);
          log(`${opts.name}: stopped building ${k}`);
        }
      }
      const renewed = !map || incarnation.get(collection) !== uid;
      incarnation.set(collection, uid);
      for (const k of built) if (k.startsWith(`${collection}/`) && (renewed || (!served.has(k) && !split && !mine.has(Number(k.slice(collection.length + 1)))))) built.delete(k);
      removeStale((c) => c === collection && map);
      if ((mine.size === 0 && !split) || !map) return;
      const cm: CollectionMeta | undefined = await meta.collection(collection);
      // Not created yet (the map comes first), or an entry of another incarnation: the collections watch comes back.
      if (!cm || cm.uid !== uid) return;
      if (split) {
        await build(collection, cm, map, split).catch((e: Error) => {
          log(`${opts.name}: building ${shardKey(collection, split.into)}: ${e.message}; retrying in ${RETRY_MS} ms`);
          retries.set(collection, setTimeout(() => assign(collection, latest.get(collection)), RETRY_MS));
        });
      }
      for (const s of mine) {
        if (served.has(shardKey(collection, s))) continue;
        let sh: ServedShard | undefined;
        try {
          const name = storeName(collection, uid, s);
          await prepare(collection, s, map.replicas[s], name);
          const options: OpenOptions = { name, dim: cm.dim, metric: cm.metric, hnsw: { ...cm.hnsw, seed: 42 }, quantization: cm.quantization, indexes: cm.payloadIndexes };
          sh = new ServedShard(collection, s, s, Collection.open(opts.data, options), () => Collection.open(opts.data, options));
          await sh.start(nc, n, opts.name, service, copies, log, observe);
        } catch (e) {
          sh?.stop();
          log(`${opts.name}: ${collection}/${s}: ${(e as Error).message}; retrying in ${RETRY_MS} ms`);
          retries.set(collection, setTimeout(() => assign(collection, latest.get(collection)), RETRY_MS));
          continue;
        }
        served.set(shardKey(collection, s), sh);
        built.delete(shardKey(collection, s));
        log(`${opts.name}: serving ${collection}/${s} from sequence ${sh.applied}`);
        void beat(); // coordinators route by what heartbeats say a replica serves
      }
    }).catch((e) => log(`${opts.name}: ${collection}: ${(e as Error).message}`));
  };

  // Before serving anything: the stores of collections dropped while this process was away go.
  chain = chain.then(async () => {
    const maps = new Map<string, ShardMap>();
    for (const k of await listKeys(jsm, n.bucket('shardmap'))) {
      const m = await meta.shardMap(k);
      if (m) maps.set(k, m);
    }
    removeStale((c) => maps.get(c));
  }).catch((e) => log(`${opts.name}: removing the stores of dropped collections: ${(e as Error).message}`));

  // The newest shard-map change handed to `assign`, per collection (KV revisions only grow).
  const seen = new Map<string, { revision: number; present: boolean }>();
  const follow = (key: string, revision: number, map: ShardMap | undefined) => {
    if (revision < (seen.get(key)?.revision ?? 0)) return;
    seen.set(key, { revision, present: map !== undefined });
    assign(key, map);
  };
  const parse = (e: KvEntry) => (e.operation === 'PUT' ? (JSON.parse(new TextDecoder().decode(e.value)) as ShardMap) : undefined);
  // A map deleted while no watch was open (it is opened again after an error) is gone now.
  const watch = keepWatching(meta.shardmaps, n.bucket('shardmap'), (e) => follow(e.key, e.revision, parse(e)), (present) => {
    for (const [k, last] of seen) if (last.present && !present.has(k)) follow(k, last.revision, undefined);
  });
  // The watch is edge-triggered: should it miss a change, a periodic look at
  // every map (level-triggered) hands it over all the same.
  const resync = setInterval(() => {
    void (async () => {
      const listed = await listKeys(jsm, n.bucket('shardmap'));
      for (const k of new Set([...listed, ...seen.keys()])) {
        const e = await meta.shardmaps.get(k);
        const last = seen.get(k);
        if (e && e.revision > (last?.revision ?? 0)) {
          log(`${opts.name}: the shard map of ${k} at revision ${e.revision} was not seen by the watch; applying it`);
          follow(k, e.revision, parse(e));
        } else if (!e && last?.present) {
          log(`${opts.name}: the deletion of the shard map of ${k} was not seen by the watch; applying it`);
          follow(k, last.revision, undefined);
        }
      }
    })().catch(() => undefined);
  }, RESYNC_MS);
  // The map comes before the collection entry that commits a create: serve once the entry is there.
  const created = keepWatching(meta.collections, n.bucket('collections'), (e) => {
    if (e.operation === 'PUT' && latest.get(e.key)) assign(e.key, latest.get(e.key));
  }, () => undefined);

  return {
    async stop() {
      clearInterval(timer);
      clearInterval(resync);
      watch.stop();
      created.stop();
      await chain;
      for (const t of retries.values()) clearTimeout(t);
      for (const sh of [...served.values(), ...building.values()]) sh.stop();
      copies.close();
      await meta.leave(opts.name).catch(() => undefined);
      await service.stop();
      await metrics.close();
      meta.close();
      await nc.drain();
    },
  };
}
