// `vdb shard`: a process that owns a data directory and serves the shards the
// shard maps assign to it. Each shard is an embedded Collection that applies
// the shard's write log (a JetStream stream) in order, recording the applied
// sequence in the same SQLite transaction as the data, and answers searches,
// gets and counts on `<prefix>.shard.<collection>.<shard>.*`.

import { connect, DeliverPolicy } from 'nats';
import type { NatsConnection, JetStreamClient, Service, ConsumerMessages, QueuedIterator, ServiceMsg } from 'nats';
import { Collection } from '../ts/collection.js';
import { VdbError, ErrorCode } from '../ts/errors.js';
import { decode } from '../ts/wire/codec.js';
import { Meta, HEARTBEAT_MS } from './meta.js';
import type { CollectionMeta, ShardMap } from './meta.js';
import { names } from './subjects.js';
import type { Names } from './subjects.js';
import { handle, requestMetrics } from './service.js';
import type { Observe } from './service.js';
import { Registry, serveMetrics } from './metrics.js';
import { checkShardRequest, shardReplyBody } from './shard-requests.js';

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
export type LogEntry = { op: 'upsert'; points: { id: string | number; vector: Uint8Array; payload?: Record<string, unknown> }[] } | { op: 'delete'; ids: (string | number)[] };

/** How often a shard checks that it is still following its log. */
const WATCHDOG_MS = 5000;

class ServedShard {
  private waiters: { seq: number; resolve: () => void }[] = [];
  private consuming?: ConsumerMessages;
  private endpoints: QueuedIterator<ServiceMsg>[] = [];
  /** Log entries after the last one delivered, as JetStream last reported: the replica's lag. */
  pending = 0;
  private failed = false;
  private watchdog?: NodeJS.Timeout;

  constructor(readonly collection: string, readonly shard: number, readonly store: Collection) {}

  get applied(): number {
    return this.store.appliedSeq;
  }

  /** Resolves once the shard has applied `seq`, or rejects after `timeoutMs`. */
  waitFor(seq: number, timeoutMs: number): Promise<void> {
    if (this.applied >= seq) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const w = { seq, resolve: () => { clearTimeout(t); resolve(); } };
      const t = setTimeout(() => {
        this.waiters = this.waiters.filter((x) => x !== w);
        reject(new VdbError(ErrorCode.TIMEOUT, `shard ${this.collection}/${this.shard} has applied ${this.applied}, not yet ${seq}`));
      }, timeoutMs);
      this.waiters.push(w);
    });
  }

  apply(entry: LogEntry, seq: number): void {
    if (entry.op === 'upsert') this.store.upsert(entry.points, { seq });
    else this.store.delete(entry.ids, { seq });
    const ready = this.waiters.filter((w) => w.seq <= this.applied);
    this.waiters = this.waiters.filter((w) => w.seq > this.applied);
    for (const w of ready) w.resolve();
  }

  // Follows the write log from the entry after the last applied one. Few
  // entries are in flight and the loop yields after each, so a backlog never
  // makes the server drop this connection as a slow consumer, and searches are
  // answered while it drains.
  private async follow(js: JetStreamClient, stream: string, log: (line: string) => void): Promise<void> {
    this.consuming?.stop();
    const consumer = await js.consumers.get(stream, { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: this.applied + 1 });
    const it = await consumer.consume({ max_messages: 8 });
    this.consuming = it;
    void (async () => {
      for await (const m of it) {
        if (m.seq <= this.applied) continue;
        try {
          this.pending = m.info.pending;
          this.apply(decode(m.data, false) as LogEntry, m.seq);
        } catch (e) {
          // An entry the coordinator validated cannot fail here except on a
          // storage fault; stop applying rather than skip it.
          log(`shard ${this.collection}/${this.shard}: applying log entry ${m.seq} failed: ${(e as Error).message}`);
          this.failed = true;
          it.stop();
          return;
        }
        await new Promise((r) => setImmediate(r));
      }
    })();
  }

  async start(nc: NatsConnection, n: Names, service: Service, log: (line: string) => void, observe: (op: string) => Observe): Promise<void> {
    const { collection: c, shard: s } = this;
    const js = nc.jetstream();
    const jsm = await nc.jetstreamManager();
    const stream = n.stream(c, s);
    await this.follow(js, stream, log);
    // A consumer can stop delivering (a dropped connection, a server restart):
    // if the log is ahead and nothing was applied since the last look, resume.
    let seen = this.applied;
    this.watchdog = setInterval(() => {
      if (this.failed) return;
      jsm.streams.info(stream).then(async (info) => {
        if (info.state.last_seq > this.applied && this.applied === seen) {
          log(`shard ${c}/${s}: applied ${this.applied}, log at ${info.state.last_seq}, no progress: resuming the log`);
          await this.follow(js, stream, log);
        }
        seen = this.applied;
      }).catch(() => undefined);
    }, WATCHDOG_MS);
    const group = `${n.prefix}-shard-${c}-${s}`;
    const add = (op: string, fn: (body: unknown) => unknown) =>
      this.endpoints.push(service.addEndpoint(`${c}-${s}-${op}`, { subject: n.shard(c, s, op), queue: group, handler: handle(fn, observe(op)) }));
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
  }

  stop(): void {
    clearInterval(this.watchdog);
    this.consuming?.stop();
    for (const e of this.endpoints) e.stop();
    this.store.close();
  }
}

export async function runShard(opts: ShardOptions): Promise<{ stop(): Promise<void> }> {
  const log = opts.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const n = names(opts.prefix);
  const nc = await connect({ servers: opts.nats, name: opts.name, maxReconnectAttempts: -1, noAsyncTraces: true });
  const meta = await Meta.open(nc, n);
  const service = await nc.services.add({ name: 'vdb-shard', version: '0.1.0', description: `shard process ${opts.name}`, metadata: { member: opts.name } });
  const served = new Map<string, ServedShard>();
  const key = (c: string, s: number) => `${c}/${s}`;

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
    health: () => ({ ok: !nc.isClosed(), detail: { name: opts.name, shards: [...served.keys()] } }),
  });

  const beat = () => meta.heartbeat({ name: opts.name, role: 'shard', pid: process.pid, metricsPort: metrics.port }).catch(() => undefined);
  await beat();
  const timer = setInterval(beat, HEARTBEAT_MS);

  // Serializes topology changes: shard maps are applied one at a time.
  let chain = Promise.resolve();
  const assign = (collection: string, map: ShardMap | undefined) => {
    chain = chain.then(async () => {
      const mine = new Set<number>();
      map?.replicas.forEach((members, s) => { if (members.includes(opts.name)) mine.add(s); });
      for (const [k, sh] of served) {
        if (sh.collection === collection && !mine.has(sh.shard)) { sh.stop(); served.delete(k); }
      }
      if (mine.size === 0) return;
      const cm: CollectionMeta | undefined = await meta.collection(collection);
      if (!cm) return;
      for (const s of mine) {
        if (served.has(key(collection, s))) continue;
        const store = Collection.open(opts.data, {
          name: `${collection}__${s}`, dim: cm.dim, metric: cm.metric, hnsw: { ...cm.hnsw, seed: 42 },
        });
        const sh = new ServedShard(collection, s, store);
        await sh.start(nc, n, service, log, observe);
        served.set(key(collection, s), sh);
        log(`${opts.name}: serving ${collection}/${s} from sequence ${sh.applied}`);
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
      for (const sh of served.values()) sh.stop();
      await meta.leave(opts.name).catch(() => undefined);
      await service.stop();
      await metrics.close();
      meta.close();
      await nc.drain();
    },
  };
}
