// `vdb shard`: a process that owns a data directory and serves the shards the
// shard maps assign to it. Each shard is an embedded Collection that applies
// the shard's write log (a JetStream stream) in order, recording the applied
// sequence in the same SQLite transaction as the data, and answers searches,
// gets and counts on `<prefix>.shard.<collection>.<shard>[.<member>].*`. A
// replica that is new, wiped, far behind or past a compacted log first copies
// a live peer (snapshot-copy.ts); a shard being split off is built here from a
// copy of its source that follows the source's log until the balancer seals it.

import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { DeliverPolicy } from 'nats';
import type { NatsConnection, JetStreamClient, Service, ConsumerMessages, QueuedIterator, ServiceMsg } from 'nats';
import { Collection } from '../ts/collection.js';
import type { LogEntry as AppliedEntry, OpenOptions } from '../ts/collection.js';
import { checkCollectionName } from '../ts/validate.js';
import { HashPartitioner, partitionerFromJSON, shardOfPoint } from '../ts/partition/index.js';
import type { Partitioner, PartitionerJSON } from '../ts/partition/index.js';
import type { PointId } from '../ts/validate.js';
import { decode, float32Bytes } from '../ts/wire/codec.js';
import { mulberry32 } from '../ts/random.js';
import { VdbError, ErrorCode } from '../ts/errors.js';
import { Meta, HEARTBEAT_MS, shardKey } from './meta.js';
import type { CollectionMeta, ShardMap } from './meta.js';
import { names } from './subjects.js';
import type { Names } from './subjects.js';
import { handle, requestMetrics } from './service.js';
import type { Observe } from './service.js';
import { Registry, serveMetrics } from './metrics.js';
import { checkShardRequest, shardReplyBody } from './shard-requests.js';
import { CopySource, copyFromPeer } from './snapshot-copy.js';
import { connectNats } from './nats-connect.js';

export interface ShardOptions {
  nats: string;
  name: string;
  data: string;
  prefix?: string;
  log?: (line: string) => void;
  /** Port of /metrics and /healthz; 0 or absent picks a free one. */
  metricsPort?: number;
}

/** A write-log entry, as the coordinator publishes it. */
export type LogEntry =
  | { op: 'upsert'; points: { id: string | number; vector: Uint8Array; payload?: Record<string, unknown> }[] }
  | { op: 'delete'; ids: (string | number)[] }
  /** After a split: drop every point the partitioner does not place on `shard`. */
  | { op: 'retain'; partitioner: PartitionerJSON; shard: number };

/** The ids `store` holds that `p` places on another shard than `shard` (by id, vector or payload). */
function placedElsewhere(store: Collection, p: Partitioner, shard: number): PointId[] {
  const ids = store.ids();
  if (p instanceof HashPartitioner) return ids.filter((id) => p.shardOf(id) !== shard);
  const out: PointId[] = [];
  for (let i = 0; i < ids.length; i += 1000) {
    for (const pt of store.get(ids.slice(i, i + 1000), { withVector: true })) {
      if (shardOfPoint(p, { id: pt.id, vector: pt.vector!, payload: pt.payload }) !== shard) out.push(pt.id);
    }
  }
  return out;
}

/** Most vectors a `sample` request returns. */
const SAMPLE_MAX = 10_000;

/** How often a shard checks that it is still following its log. */
const WATCHDOG_MS = 5000;
/** Most log entries applied in one commit, and most bytes of them. */
const BATCH_ENTRIES = 512;
const BATCH_BYTES = 16 * 1024 * 1024;
/** A replica this many log entries behind a live peer copies the peer instead of replaying. */
const COPY_WHEN_BEHIND = 2000;
/** A shard that cannot be prepared (no peer to copy from yet) is retried after this long. */
const RETRY_MS = 3000;

class ServedShard {
  private waiters: { seq: number; resolve: () => void }[] = [];
  private consuming?: ConsumerMessages;
  private endpoints: QueuedIterator<ServiceMsg>[] = [];
  /** Log entries after the last one delivered, as JetStream last reported: the replica's lag. */
  pending = 0;
  private stopped = false;
  /** Set when the shard stopped applying its log (a storage fault, or a log behind what was applied). */
  failed = false;
  private watchdog?: NodeJS.Timeout;

  /** `shard` is the shard this store holds; it follows the log of `source` (itself,
   * or the shard it is being split from). `onApplied` runs after each commit. */
  constructor(
    readonly collection: string,
    readonly shard: number,
    readonly source: number,
    public store: Collection,
    private readonly reopen: () => Collection,
    private readonly onApplied: () => void = () => undefined,
  ) {}

  get applied(): number {
    return this.store.appliedSeq;
  }

  /** Resolves once the shard has applied `seq`; LAGGING after `timeoutMs`, so the caller can ask another replica. */
  waitFor(seq: number, timeoutMs: number): Promise<void> {
    if (this.applied >= seq) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const w = { seq, resolve: () => { clearTimeout(t); resolve(); } };
      const t = setTimeout(() => {
        this.waiters = this.waiters.filter((x) => x !== w);
        reject(new VdbError(ErrorCode.LAGGING, `shard ${this.collection}/${this.shard} has applied ${this.applied}, not yet ${seq}`));
      }, timeoutMs);
      this.waiters.push(w);
    });
  }

  // One commit for the batch; on a storage fault the collection is reopened at
  // what was committed and the shard stops applying rather than skip an entry.
  private applyBatch(batch: AppliedEntry[], log: (line: string) => void): boolean {
    try {
      this.store.applyLog(batch);
    } catch (e) {
      log(`shard ${this.collection}/${this.shard}: applying log entries ${batch[0].seq}..${batch[batch.length - 1].seq} failed: ${(e as Error).message}; stopped applying`);
      this.failed = true;
      this.store = this.reopen();
      return false;
    }
    const ready = this.waiters.filter((w) => w.seq <= this.applied);
    this.waiters = this.waiters.filter((w) => w.seq > this.applied);
    for (const w of ready) w.resolve();
    this.onApplied();
    return true;
  }

  // A retain entry becomes the delete of what this replica holds and the
  // partitioner places elsewhere: every replica computes it from the same state.
  private retained(e: { partitioner: unknown; shard: unknown }, seq: number): AppliedEntry {
    if (!Number.isInteger(e.shard)) throw new VdbError(ErrorCode.BAD_REQUEST, `log entry ${seq}: a retain needs a shard`);
    return { seq, op: 'delete', ids: placedElsewhere(this.store, partitionerFromJSON(e.partitioner), e.shard as number) };
  }

  /** Stops following the log (the shard is complete, or leaves). */
  stopFollowing(): void {
    this.stopped = true;
    clearInterval(this.watchdog);
    this.consuming?.stop();
  }

  // Follows the write log from the entry after the last applied one. A backlog
  // is applied in batches (one SQLite commit each); when the log is drained each
  // entry is applied as it comes. The loop yields after each batch, so searches
  // are answered while it catches up.
  private async follow(js: JetStreamClient, stream: string, log: (line: string) => void): Promise<void> {
    this.consuming?.stop();
    const consumer = await js.consumers.get(stream, { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: this.applied + 1 });
    const it = await consumer.consume({ max_messages: BATCH_ENTRIES });
    this.consuming = it;
    void (async () => {
      let batch: AppliedEntry[] = [];
      let bytes = 0;
      let last = this.applied;
      for await (const m of it) {
        if (this.stopped) break;
        if (m.seq <= last) continue;
        last = m.seq;
        this.pending = m.info.pending;
        const entry = decode(m.data, false) as LogEntry;
        if (entry.op === 'retain') {
          let ok = batch.length === 0 || this.applyBatch(batch, log);
          batch = [];
          bytes = 0;
          try {
            if (ok) ok = this.applyBatch([this.retained(entry, m.seq)], log);
          } catch (e) {
            log(`shard ${this.collection}/${this.shard}: ${(e as Error).message}; stopped applying`);
            this.failed = true;
            ok = false;
          }
          if (!ok) { it.stop(); return; }
          continue;
        }
        batch.push({ ...entry, seq: m.seq } as AppliedEntry);
        bytes += m.data.length;
        // More entries already received here (beyond this one) or still on the server: keep batching.
        const more = it.getPending() > 1 || m.info.pending > 0;
        if (more && batch.length < BATCH_ENTRIES && bytes < BATCH_BYTES) continue;
        const ok = this.applyBatch(batch, log);
        batch = [];
        bytes = 0;
        if (!ok) { it.stop(); return; }
        await new Promise((r) => setImmediate(r));
      }
    })();
  }

  /** Follows the source log; with `serve`, also answers on the shard's subjects. */
  async start(nc: NatsConnection, n: Names, member: string, service: Service | undefined, copies: CopySource, log: (line: string) => void, observe: (op: string) => Observe): Promise<void> {
    const { collection: c, shard: s } = this;
    const js = nc.jetstream();
    const jsm = await nc.jetstreamManager();
    const stream = n.stream(c, this.source);
    await this.follow(js, stream, log);
    // A consumer can stop delivering (a dropped connection, a server restart):
    // if the log is ahead and nothing was applied since the last look, resume.
    let seen = this.applied;
    this.watchdog = setInterval(() => {
      if (this.failed) return;
      jsm.streams.info(stream).then(async (info) => {
        if (info.state.last_seq < this.applied) {
          // The log lost entries this replica applied (a NATS store lost or
          // recreated): new writes would reuse applied sequences and be skipped.
          log(`shard ${c}/${s}: applied ${this.applied} but the log ends at ${info.state.last_seq}: the log lost acknowledged entries; stopped applying`);
          this.failed = true;
          this.consuming?.stop();
          return;
        }
        if (info.state.last_seq > this.applied && this.applied === seen) {
          log(`shard ${c}/${s}: applied ${this.applied}, log at ${info.state.last_seq}, no progress: resuming the log`);
          await this.follow(js, stream, log);
        }
        seen = this.applied;
      }).catch(() => undefined);
    }, WATCHDOG_MS);
    if (!service) return;
    // Each operation on the shard's subject (any replica, a queue group) and on
    // this replica's own subject, which coordinators use to pick the replica.
    const group = `${n.prefix}-shard-${c}-${s}`;
    const add = (op: string, fn: (body: unknown) => unknown, shared = true) => {
      const handler = handle(fn, observe(op));
      if (shared) this.endpoints.push(service.addEndpoint(`${c}-${s}-${op}`, { subject: n.shard(c, s, op), queue: group, handler }));
      this.endpoints.push(service.addEndpoint(`${c}-${s}-${member}-${op}`, { subject: n.replica(c, s, member, op), handler }));
    };
    add('search', (body) => {
      const r = checkShardRequest(body);
      const search = () => {
        const t0 = performance.now();
        const hits = this.store.search(r.vector, { k: r.k, ef: r.ef, filter: r.filter, exact: r.exact, withPayload: r.withPayload });
        return shardReplyBody({ hits, seq: this.applied, searchMs: performance.now() - t0 }, r.withPayload);
      };
      // Without a sequence to wait for the reply is built synchronously: no extra turns of the event loop.
      return r.minSeq === undefined ? search() : this.waitFor(r.minSeq, r.waitMs).then(search);
    });
    add('get', (body) => {
      const b = body as { ids?: unknown; withVector?: unknown };
      if (!Array.isArray(b?.ids)) throw new VdbError(ErrorCode.BAD_REQUEST, 'ids: expected an array');
      return { points: this.store.get(b.ids, { withVector: b.withVector !== false }), seq: this.applied };
    });
    add('count', () => ({ count: this.store.count(), seq: this.applied }));
    add('snapshot', (body) => copies.handle(this.store, body), false);
    // Vectors of random points (seeded by the request), for placing a split.
    add('sample', (body) => {
      const b = body as { n?: unknown; seed?: unknown };
      if (!Number.isInteger(b?.n) || (b.n as number) < 1 || (b.n as number) > SAMPLE_MAX) throw new VdbError(ErrorCode.BAD_REQUEST, `n: expected 1 to ${SAMPLE_MAX}`);
      const ids = this.store.ids();
      const rand = mulberry32(Number.isInteger(b.seed) ? (b.seed as number) : 1);
      for (let i = ids.length - 1; i > 0; i--) {
        const j = Math.floor(rand() * (i + 1));
        [ids[i], ids[j]] = [ids[j], ids[i]];
      }
      const points = this.store.get(ids.slice(0, b.n as number), { withVector: true });
      return { vectors: points.map((p) => float32Bytes(p.vector!)), payloads: points.map((p) => p.payload ?? null) };
    }, false);
  }

  stop(): void {
    this.stopFollowing();
    for (const e of this.endpoints) e.stop();
    this.store.close();
  }
}

export async function runShard(opts: ShardOptions): Promise<{ stop(): Promise<void> }> {
  const log = opts.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  checkCollectionName(opts.name, 'name');
  const n = names(opts.prefix);
  const nc = await connectNats(opts.nats, opts.name);
  const meta = await Meta.open(nc, n);
  const service = await nc.services.add({ name: 'vdb-shard', version: '0.1.0', description: `shard process ${opts.name}`, metadata: { member: opts.name } });
  const served = new Map<string, ServedShard>();
  /** Shards being built for a split (by the new shard's key), and those built and waiting to be served. */
  const building = new Map<string, ServedShard>();
  const built = new Set<string>();
  const sealers = new Map<string, () => void>();

  const registry = new Registry();
  const observe = requestMetrics(registry, 'vdb_shard');
  const labels = ['collection', 'shard'];
  const points = registry.gauge('vdb_shard_points', 'Points stored in the shard', { labels });
  const applied = registry.gauge('vdb_shard_applied_seq', 'Last write-log sequence applied', { labels });
  const lag = registry.gauge('vdb_shard_lag', 'Write-log entries not yet applied, as of the last delivery', { labels });
  const memory = registry.gauge('vdb_shard_index_bytes', 'Wasm memory held by the shard\'s index', { labels });
  registry.onCollect(() => {
    for (const g of [points, applied, lag, memory]) g.reset();
    for (const sh of served.values()) {
      const l = { collection: sh.collection, shard: sh.shard };
      points.set(l, sh.store.count());
      applied.set(l, sh.applied);
      lag.set(l, sh.pending);
      memory.set(l, sh.store.indexBytes);
    }
  });
  const metrics = await serveMetrics(registry, {
    port: opts.metricsPort,
    health: () => {
      const failed = [...served].filter(([, sh]) => sh.failed).map(([k]) => k);
      return { ok: !nc.isClosed() && failed.length === 0, detail: { name: opts.name, shards: [...served.keys()], failed } };
    },
  });

  const beat = () => meta.heartbeat({
    name: opts.name, role: 'shard', pid: process.pid, metricsPort: metrics.port,
    shards: Object.fromEntries([...served].map(([k, sh]) => [k, sh.applied])),
    points: Object.fromEntries([...served].map(([k, sh]) => [k, sh.store.count()])),
    building: Object.fromEntries([
      ...[...building].map(([k, sh]) => [k, { applied: sh.applied, ready: false }]),
      ...[...built].map((k) => [k, { applied: 0, ready: true }]),
    ]),
  }).catch(() => undefined);
  await beat();
  const timer = setInterval(beat, HEARTBEAT_MS);

  const jsm = await nc.jetstreamManager();
  const copies = new CopySource(join(opts.data, 'copies'), Math.min(1024 * 1024, Math.floor((nc.info?.max_payload ?? 1024 * 1024) / 2)));

  // A replica with nothing applied, or whose next entry was compacted out of
  // the log, first copies the shard from a live peer; otherwise it replays.
  // A replica far behind also copies, when a peer is far ahead: copying costs
  // the shard's size, replaying costs an index insertion per point written.
  // A shard being built for a split always copies its source (`force`).
  async function prepare(collection: string, s: number, replicas: string[], name = `${collection}__${s}`, force = false): Promise<void> {
    const { state } = await jsm.streams.info(n.stream(collection, s));
    const applied = Collection.storedSeq(opts.data, name);
    const gap = applied < state.first_seq - 1;
    const ahead = Math.max(0, ...meta.live('shard')
      .filter((m) => m.name !== opts.name && replicas.includes(m.name))
      .map((m) => m.shards?.[shardKey(collection, s)] ?? 0));
    const far = ahead - applied > COPY_WHEN_BEHIND;
    if (!force && !gap && !far && !(applied === 0 && state.last_seq > 0)) return;
    const local = served.get(shardKey(collection, s));
    if (local && name !== `${collection}__${s}`) {
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
        const r = await copyFromPeer(nc, n.replica(collection, s, p.name, 'snapshot'), opts.data, name);
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
    const name = `${collection}__${split.into}`;
    await prepare(collection, split.shard, map.replicas[split.shard], name, true);
    const options: OpenOptions = { name, dim: cm.dim, metric: cm.metric, hnsw: { ...cm.hnsw, seed: 42 } };
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

  // Serializes topology changes: shard maps are applied one at a time.
  let chain = Promise.resolve();
  const retries = new Map<string, NodeJS.Timeout>();
  const latest = new Map<string, ShardMap | undefined>();
  const assign = (collection: string, map: ShardMap | undefined) => {
    latest.set(collection, map);
    clearTimeout(retries.get(collection));
    chain = chain.then(async () => {
      if (latest.get(collection) !== map) return; // a newer map is queued
      const mine = new Set<number>();
      map?.replicas.forEach((members, s) => { if (members.includes(opts.name)) mine.add(s); });
      for (const [k, sh] of served) {
        if (sh.collection === collection && !mine.has(sh.shard)) { sh.stop(); served.delete(k); log(`${opts.name}: no longer serving ${k}`); }
      }
      const split = map?.split?.replicas.includes(opts.name) ? map.split : undefined;
      for (const [k, sh] of building) {
        if (sh.collection === collection && (!split || k !== shardKey(collection, split.into))) {
          sh.stop();
          building.delete(k);
          sealers.delete(k);
          log(`${opts.name}: stopped building ${k}`);
        }
      }
      for (const k of built) if (k.startsWith(`${collection}/`) && !served.has(k) && !split && !mine.has(Number(k.slice(collection.length + 1)))) built.delete(k);
      if ((mine.size === 0 && !split) || !map) return;
      const cm: CollectionMeta | undefined = await meta.collection(collection);
      if (!cm) return;
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
          await prepare(collection, s, map.replicas[s]);
          const options: OpenOptions = { name: `${collection}__${s}`, dim: cm.dim, metric: cm.metric, hnsw: { ...cm.hnsw, seed: 42 } };
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

  const watch = await meta.shardmaps.watch();
  void (async () => {
    for await (const e of watch) {
      assign(e.key, e.operation === 'PUT' ? (JSON.parse(new TextDecoder().decode(e.value)) as ShardMap) : undefined);
    }
  })();

  return {
    async stop() {
      clearInterval(timer);
      watch.stop();
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
