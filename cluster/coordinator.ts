// `vdb coordinator`: stateless; any number run in one queue group. It validates
// requests, routes writes to the owning shards' write logs (acknowledged once
// JetStream has stored them), fans searches out to the shards in parallel with
// a deadline, merges their top-k, and reports the shards that did not answer.

import { connect, StorageType } from 'nats';
import type { NatsConnection, JetStreamClient, JetStreamManager, Msg } from 'nats';
import { VdbError, ErrorCode } from '../ts/errors.js';
import { decode, encode, float32Bytes } from '../ts/wire/codec.js';
import { shardSearchBody, readShardReply } from './shard-requests.js';
import type { ShardHits } from './shard-requests.js';
import {
  validateCreateCollection, validateUpsert, validateDelete, validateGet, validateSearch, validateCount,
  validateDescribe, validateDropCollection, errorFromBody, COLLECTION_ENDPOINTS,
} from '../ts/wire/messages.js';
import type { SearchRequest } from '../ts/wire/messages.js';
import { checkCollectionName } from '../ts/validate.js';
import type { PointId } from '../ts/validate.js';
import { HashPartitioner, SemanticPartitioner, SpatialPartitioner, partitionerFromJSON, shardOfPoint, shardsForId, shardsForSearch } from '../ts/partition/index.js';
import type { Partitioner, PartitionerJSON } from '../ts/partition/index.js';
import { mergeTopK } from '../ts/merge.js';
import type { StoredPoint } from '../ts/collection.js';
import { parseVector } from '../ts/validate.js';
import { Meta, HEARTBEAT_MS } from './meta.js';
import type { CollectionMeta, ShardMap } from './meta.js';
import { names } from './subjects.js';
import type { Names } from './subjects.js';
import { handle, requestMetrics } from './service.js';
import { Requester } from './requester.js';
import { Registry, serveMetrics } from './metrics.js';
import type { LogEntry } from './shard.js';

export interface CoordinatorOptions {
  nats: string;
  name: string;
  prefix?: string;
  /** Deadline for a shard's answer to a search, get or count. Default 2000 ms. */
  deadlineMs?: number;
  /** Port of /metrics and /healthz; 0 or absent picks a free one. */
  metricsPort?: number;
}

interface Known {
  meta: CollectionMeta;
  map: ShardMap;
  p: Partitioner;
}

/** What a shard's reply became: its body, or why it is missing. */
type ShardAnswer = { shard: number; body?: Record<string, unknown>; missing?: boolean };

export async function runCoordinator(opts: CoordinatorOptions): Promise<{ stop(): Promise<void> }> {
  const n: Names = names(opts.prefix);
  const nc: NatsConnection = await connect({ servers: opts.nats, name: opts.name, maxReconnectAttempts: -1, noAsyncTraces: true });
  const js: JetStreamClient = nc.jetstream();
  const jsm: JetStreamManager = await nc.jetstreamManager();
  const meta = await Meta.open(nc, n);
  const deadline = opts.deadlineMs ?? 2000;
  const cache = new Map<string, Known>();
  const maxPayload = nc.info?.max_payload ?? 1024 * 1024;
  const requester = new Requester(nc);

  // Any change to a collection or its shard map drops the cached copy.
  const watches = [await meta.collections.watch(), await meta.shardmaps.watch()];
  for (const w of watches) void (async () => { for await (const e of w) cache.delete(e.key); })();

  async function known(name: string): Promise<Known> {
    checkCollectionName(name, 'collection');
    const hit = cache.get(name);
    if (hit) return hit;
    const [m, map] = await Promise.all([meta.collection(name), meta.shardMap(name)]);
    if (!m || !map) throw new VdbError(ErrorCode.COLLECTION_NOT_FOUND, `no collection ${name}`);
    const k = { meta: m, map, p: partitionerFromJSON(m.partitioner) };
    cache.set(name, k);
    return k;
  }

  /** Asks shards in parallel; a shard that does not answer in time is missing. */
  async function ask(c: string, shards: number[], op: string, body: (s: number) => unknown): Promise<ShardAnswer[]> {
    return Promise.all(shards.map(async (s): Promise<ShardAnswer> => {
      let m: Msg;
      try {
        m = await requester.request(n.shard(c, s, op), encode(body(s), false), deadline);
      } catch {
        return { shard: s, missing: true };
      }
      const reply = decode(m.data, false) as Record<string, unknown>;
      const err = errorFromBody(reply);
      if (err) {
        if (err.code === ErrorCode.TIMEOUT) return { shard: s, missing: true };
        throw err;
      }
      return { shard: s, body: reply };
    }));
  }

  /** Appends entries to shard logs; returns each shard's last sequence. */
  async function append(c: string, entries: Map<number, LogEntry[]>): Promise<Record<number, number>> {
    const seqs: Record<number, number> = {};
    await Promise.all([...entries].map(async ([s, list]) => {
      for (const e of list) {
        try {
          const ack = await js.publish(n.log(c, s), encode(e, false));
          seqs[s] = ack.seq;
        } catch (err) {
          throw new VdbError(ErrorCode.UNAVAILABLE, `the write log of ${c}/${s} did not store the write: ${(err as Error).message}`);
        }
      }
    }));
    return seqs;
  }

  // Entries stay under the server's max_payload: large batches become several entries.
  function chunk<T>(items: T[], size: (x: T) => number): T[][] {
    const out: T[][] = [];
    let cur: T[] = [];
    let bytes = 0;
    const limit = Math.floor(maxPayload * 0.9);
    for (const x of items) {
      const b = size(x);
      if (cur.length > 0 && bytes + b > limit) { out.push(cur); cur = []; bytes = 0; }
      cur.push(x);
      bytes += b;
    }
    if (cur.length) out.push(cur);
    return out;
  }

  const order = (k: Known) => (k.meta.metric === 'l2' ? 'asc' : 'desc') as 'asc' | 'desc';

  async function minSeqs(c: string, shards: number[], req: SearchRequest, after: unknown): Promise<Map<number, number>> {
    const out = new Map<number, number>();
    if (req.consistency === 'strong') {
      await Promise.all(shards.map(async (s) => out.set(s, (await jsm.streams.info(n.stream(c, s))).state.last_seq)));
    } else if (req.consistency === 'session' && after && typeof after === 'object') {
      for (const s of shards) {
        const v = (after as Record<string, unknown>)[String(s)];
        if (Number.isSafeInteger(v)) out.set(s, v as number);
      }
    }
    return out;
  }

  const ops = {
    async upsert(c: string, body: unknown) {
      const k = await known(c);
      const req = validateUpsert(body, k.meta.dim);
      // The last write of an id in a batch wins; keeping only it also keeps an id
      // whose copies would be placed on different shards from landing on both.
      const points = [...new Map(req.points.map((p) => [p.id, p])).values()];
      const byShard = new Map<number, typeof points>();
      const placed = points.map((p) => shardOfPoint(k.p, p));
      for (const [i, p] of points.entries()) {
        const s = placed[i];
        if (!byShard.has(s)) byShard.set(s, []);
        byShard.get(s)!.push(p);
      }
      const entries = new Map<number, LogEntry[]>();
      for (const [s, pts] of byShard) {
        entries.set(s, chunk(pts, (p) => p.vector.length * 4 + (p.payload ? JSON.stringify(p.payload).length : 0) + 64)
          .map((part) => ({ op: 'upsert', points: part.map((p) => ({ id: p.id, vector: float32Bytes(p.vector), payload: p.payload })) })));
      }
      // Placement by vector or label can move a point: remove it from the other shards.
      if (k.p.kind !== 'hash') {
        for (let s = 0; s < k.p.shards; s++) {
          const ids = points.filter((_, i) => placed[i] !== s).map((p) => p.id);
          if (ids.length) entries.set(s, [{ op: 'delete', ids }, ...(entries.get(s) ?? [])]);
        }
      }
      const seqs = await append(c, entries);
      return { count: req.points.length, seq: Math.max(0, ...Object.values(seqs)), seqs };
    },

    async delete(c: string, body: unknown) {
      const k = await known(c);
      const req = validateDelete(body);
      const byShard = new Map<number, PointId[]>();
      for (const id of req.ids) for (const s of shardsForId(k.p, id)) {
        if (!byShard.has(s)) byShard.set(s, []);
        byShard.get(s)!.push(id);
      }
      const entries = new Map<number, LogEntry[]>();
      for (const [s, ids] of byShard) entries.set(s, chunk(ids, () => 600).map((part) => ({ op: 'delete', ids: part })));
      const seqs = await append(c, entries);
      return { count: req.ids.length, seq: Math.max(0, ...Object.values(seqs)), seqs };
    },

    async get(c: string, body: unknown) {
      const k = await known(c);
      const req = validateGet(body);
      const shards = [...new Set(req.ids.flatMap((id) => shardsForId(k.p, id)))];
      const answers = await ask(c, shards, 'get', () => ({ ids: req.ids, withVector: req.withVector }));
      const found = new Map<PointId, StoredPoint>();
      for (const a of answers) for (const p of (a.body?.points as StoredPoint[] | undefined) ?? []) found.set(p.id, p);
      const missing = answers.filter((a) => a.missing).map((a) => a.shard);
      const points = req.ids.filter((id) => found.has(id)).map((id) => {
        const p = found.get(id)!;
        return p.vector ? { ...p, vector: parseVector(p.vector, 'vector') } : p;
      });
      return missing.length ? { points, partial: true, missing } : { points, partial: false };
    },

    async count(c: string, body: unknown) {
      const k = await known(c);
      validateCount(body);
      const answers = await ask(c, k.map.replicas.map((_, s) => s), 'count', () => ({}));
      const missing = answers.filter((a) => a.missing).map((a) => a.shard);
      const count = answers.reduce((sum, a) => sum + ((a.body?.count as number | undefined) ?? 0), 0);
      return missing.length ? { count, partial: true, missing } : { count, partial: false };
    },

    async search(c: string, body: unknown) {
      const t0 = performance.now();
      const k = await known(c);
      const req = validateSearch(body, k.meta.dim);
      const after = (body as { after?: unknown }).after;
      const shardBody = (mins: Map<number, number>) => (s: number) => shardSearchBody(req, mins.get(s), deadline);
      const read = (answers: ShardAnswer[]) => answers.map((a) => (a.body ? readShardReply(a.body) : undefined));
      let answers: ShardAnswer[];
      let replies: (ShardHits | undefined)[];
      if (req.exact && k.p instanceof SpatialPartitioner) {
        // Nearest leaf first; then only the leaves that can still hold a top-k hit.
        const first = k.p.route(req.vector, { nprobe: 1 });
        const mins = await minSeqs(c, k.p.route(req.vector, { nprobe: k.p.shards }), req, after);
        answers = await ask(c, first, 'search', shardBody(mins));
        replies = read(answers);
        const hits = replies[0]?.hits ?? [];
        const kth = hits.length < req.k ? Infinity : hits[req.k - 1].score;
        const rest = k.p.exactRoute(req.vector, kth).filter((s) => !first.includes(s));
        const more = await ask(c, rest, 'search', shardBody(mins));
        answers = answers.concat(more);
        replies = replies.concat(read(more));
      } else {
        const shards = shardsForSearch(k.p, { vector: req.vector, filter: req.filter, nprobe: req.nprobe });
        answers = await ask(c, shards, 'search', shardBody(await minSeqs(c, shards, req, after)));
        replies = read(answers);
      }
      const hits = mergeTopK(replies.flatMap((r) => (r ? [r.hits] : [])), req.k, order(k));
      const missing = answers.filter((a) => a.missing).map((a) => a.shard).sort((a, b) => a - b);
      let searchMs = 0;
      let searchMsTotal = 0;
      for (const r of replies) {
        searchMs = Math.max(searchMs, r?.searchMs ?? 0);
        searchMsTotal += r?.searchMs ?? 0;
      }
      const reply: Record<string, unknown> = { hits, partial: missing.length > 0, tookMs: performance.now() - t0, searchMs, searchMsTotal };
      if (missing.length) reply.missing = missing;
      return reply;
    },
  };

  async function createCollection(body: unknown) {
    const req = validateCreateCollection(body);
    const shards = req.partitioner.shards;
    let partitioner: PartitionerJSON;
    if (req.partitioner.kind === 'hash') partitioner = new HashPartitioner(shards).toJSON();
    else if (req.partitioner.kind === 'semantic') partitioner = new SemanticPartitioner({ shards, field: req.partitioner.field!, map: (body as { partitioner: { map?: Record<string, number[]> } }).partitioner.map }).toJSON();
    else {
      const sample = (body as { partitioner: { sample?: unknown } }).partitioner.sample;
      if (!Array.isArray(sample) || sample.length < shards) {
        throw new VdbError(ErrorCode.INVALID_PARTITIONER, `partitioner.sample: a spatial collection needs a sample of at least ${shards} vectors to place its splits`);
      }
      const flat = new Float32Array(sample.length * req.dim);
      sample.forEach((v, i) => flat.set(parseVector(v, `partitioner.sample[${i}]`, req.dim), i * req.dim));
      partitioner = SpatialPartitioner.build(flat, req.dim, shards, req.metric).toJSON();
    }
    const members = (await meta.live('shard')).map((m) => m.name);
    if (members.length === 0) throw new VdbError(ErrorCode.UNAVAILABLE, 'no shard process is alive to place the shards on');
    if (members.length < req.replicas) throw new VdbError(ErrorCode.UNAVAILABLE, `${req.replicas} replicas need ${req.replicas} shard processes, ${members.length} are alive`);
    const replicas = Array.from({ length: shards }, (_, s) => Array.from({ length: req.replicas }, (_, r) => members[(s + r) % members.length]));
    if (await meta.collection(req.name)) throw new VdbError(ErrorCode.COLLECTION_EXISTS, `collection ${req.name} already exists`);
    for (let s = 0; s < shards; s++) {
      await jsm.streams.add({ name: n.stream(req.name, s), subjects: [n.log(req.name, s)], storage: StorageType.File, max_msg_size: -1 });
    }
    const cm: CollectionMeta = { name: req.name, dim: req.dim, metric: req.metric, replicas: req.replicas, hnsw: req.hnsw, partitioner, createdAt: Date.now() };
    await meta.create(cm, { epoch: 1, replicas });
    return describe(cm, { epoch: 1, replicas });
  }

  function describe(m: CollectionMeta, map: ShardMap) {
    const { partitioner, ...rest } = m;
    return { ...rest, partitioner: { kind: partitioner.kind, shards: partitioner.shards }, shardMap: map };
  }

  const admin = {
    'collections.create': createCollection,
    async 'collections.drop'(body: unknown) {
      const { name } = validateDropCollection(body);
      const k = await known(name);
      await meta.drop(name);
      for (let s = 0; s < k.map.replicas.length; s++) await jsm.streams.delete(n.stream(name, s)).catch(() => undefined);
      return { dropped: name };
    },
    async 'collections.list'() {
      return { collections: await meta.list() };
    },
    async describe(body: unknown) {
      const { name } = validateDescribe(body);
      const k = await known(name);
      return describe(k.meta, k.map);
    },
    async status() {
      const members = await meta.live();
      const collections = [];
      for (const name of await meta.list()) {
        const k = await known(name).catch(() => undefined);
        if (!k) continue;
        const shards = await Promise.all(k.map.replicas.map(async (replicas, s) => {
          const info = await jsm.streams.info(n.stream(name, s)).catch(() => undefined);
          const [a] = await ask(name, [s], 'count', () => ({}));
          return { shard: s, replicas, logSeq: info?.state.last_seq ?? null, count: a.body?.count ?? null, applied: a.body?.seq ?? null };
        }));
        collections.push({ name, shards });
      }
      return { members, collections };
    },
  };

  const registry = new Registry();
  const observe = requestMetrics(registry, 'vdb_coordinator');
  const partials = registry.counter('vdb_coordinator_partial_total', 'Answers without some shards, by operation', { labels: ['op'] });
  const metrics = await serveMetrics(registry, {
    port: opts.metricsPort,
    health: () => ({ ok: !nc.isClosed(), detail: { name: opts.name, nats: nc.getServer(), collectionsCached: cache.size } }),
  });
  const service = await nc.services.add({ name: 'vdb-coord', version: '0.1.0', description: 'vdb coordinator', queue: `${n.prefix}-coord`, metadata: { member: opts.name } });
  for (const op of COLLECTION_ENDPOINTS) {
    service.addEndpoint(op, {
      subject: n.api('*', op),
      handler: handle(async (body, msg) => {
        const reply = await ops[op](msg.subject.split('.')[2], body) as { partial?: boolean };
        if (reply.partial) partials.inc({ op });
        return reply;
      }, observe(op)),
    });
  }
  for (const [op, fn] of Object.entries(admin)) {
    service.addEndpoint(`admin-${op.replace('.', '-')}`, { subject: n.admin(op), handler: handle((body) => fn(body), observe(op)) });
  }

  // Everything else under vdb.v1 gets UNKNOWN_ENDPOINT rather than silence.
  // This subscription also sees the known subjects and leaves them to their
  // endpoints. It needs a queue group of its own: NATS picks one member per
  // group name, so sharing vdb-coord would steal the known endpoints' requests.
  const apiPrefix = `${n.prefix}.v1.`;
  const isKnown = (subject: string) => {
    const rest = subject.slice(apiPrefix.length).split('.');
    if (rest[0] === '_admin') return Object.hasOwn(admin, rest.slice(1).join('.'));
    return rest.length === 2 && (COLLECTION_ENDPOINTS as readonly string[]).includes(rest[1]);
  };
  service.addEndpoint('unknown', {
    subject: `${n.prefix}.v1.>`,
    queue: `${n.prefix}-coord-unknown`,
    handler: (err, msg) => {
      if (err || isKnown(msg.subject)) return;
      handle(() => { throw new VdbError(ErrorCode.UNKNOWN_ENDPOINT, `no endpoint ${msg.subject}`); })(null, msg);
    },
  });

  const beat = () => meta.heartbeat({ name: opts.name, role: 'coordinator', pid: process.pid, metricsPort: metrics.port }).catch(() => undefined);
  await beat();
  const timer = setInterval(beat, HEARTBEAT_MS);

  return {
    async stop() {
      clearInterval(timer);
      for (const w of watches) w.stop();
      await meta.leave(opts.name).catch(() => undefined);
      await service.stop();
      requester.close();
      await metrics.close();
      meta.close();
      await nc.drain();
    },
  };
}
