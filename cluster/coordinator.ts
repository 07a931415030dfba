// `vdb coordinator`: stateless; any number run in one queue group. It validates
// requests, routes writes to the owning shards' write logs (acknowledged once
// JetStream has stored them), fans searches out to the shards in parallel with
// a deadline, merges their top-k, and reports the shards that did not answer.

import type { NatsConnection, JetStreamClient, JetStreamManager } from 'nats';
import { VdbError, ErrorCode } from '../ts/errors.js';
import { decode, encode } from '../ts/wire/codec.js';
import { shardSearchBody, readShardReply } from './shard-requests.js';
import type { ShardHits } from './shard-requests.js';
import {
  validateUpsert, validateDelete, validateGet, validateSearch, validateCount,
  validateDescribe, validateDropCollection, validateDrain, validateScroll, errorFromBody, COLLECTION_ENDPOINTS,
} from '../ts/wire/messages.js';
import type { ReadConsistency } from '../ts/wire/messages.js';
import { checkCollectionName } from '../ts/validate.js';
import type { PointId } from '../ts/validate.js';
import { HashPartitioner, SpatialPartitioner, partitionerFromJSON, shardOfPoint, shardsForId, shardsForSearch } from '../ts/partition/index.js';
import type { Partitioner } from '../ts/partition/index.js';
import { mergeTopK } from '../ts/merge.js';
import type { Hit, StoredPoint } from '../ts/collection.js';
import { parseVector } from '../ts/validate.js';
import { keepWatching } from './watch.js';
import { Meta, HEARTBEAT_MS, START_TIMEOUT_MS, holdsWrites, shardKey, whileJetStreamStarts } from './meta.js';
import type { CollectionMeta, Member, ShardMap } from './meta.js';
import { names } from './subjects.js';
import type { Names } from './subjects.js';
import { addEndpoint, handle, requestMetrics } from './service.js';
import { Requester } from './requester.js';
import { askReplicas, replicaOrder } from './replica-choice.js';
import type { Send } from './replica-choice.js';
import { Registry, serveMetrics } from './metrics.js';
import { coordinatorMetrics } from './coordinator-metrics.js';
import { natsMetrics } from './process-metrics.js';
import type { LogEntry } from './replica.js';
import { chunk, upsertEntries } from './log-entries.js';
import { startBalancer, balancerState, DEFAULT_BALANCER } from './balancer.js';
import { checkMergeBelow } from './balancer/merge.js';
import { draining, setDraining } from './balancer/drain.js';
import { planCollection, createCollection as createAdmin, dropCollection as dropAdmin } from './collections-admin.js';
import { connectNats } from './nats-connect.js';
import { logger } from './log.js';
import type { NatsAuth } from './nats-connect.js';
import { WriteGuard } from './capacity.js';
import { trackConnection, connectionDetail } from './nats-status.js';
import { waitApplied } from './wait-applied.js';
import { mergeScroll } from '../ts/scroll-merge.js';
import { WRITE_IN_TIME_MS, WRITE_WINDOW_MIN_MS, checkInTime, needsVersions, nextVersion, stamp } from './versions.js';

export interface CoordinatorOptions {
  nats: string;
  /** Credentials (an internal-account user) and TLS files to connect with. */
  auth?: NatsAuth;
  name: string;
  prefix?: string;
  /** Deadline for a shard's answer to a search, get or count. Default 2000 ms. */
  deadlineMs?: number;
  /** Port of /metrics and /healthz; 0 or absent picks a free one. */
  metricsPort?: number;
  /** Interface of /metrics and /healthz (default 127.0.0.1: other machines need a deliberate choice, docs/security.md). */
  metricsHost?: string;
  /** Balancer: how long a replica may be gone before it is replaced (default 30 s). */
  graceMs?: number;
  /** Balancer: log entries every replica has applied before the log is compacted below them (default 10,000). */
  compactAfter?: number;
  /** Balancer: points that make a hash-partitioned shard split (default 0: never). */
  splitAt?: number;
  /** Balancer: points under which the newest shard merges back into the one it was split from (default a quarter of splitAt; 0: never). */
  mergeBelow?: number;
  /** Balancer: move replicas onto shard processes holding fewer (default true; drains move regardless). */
  rebalance?: boolean;
  /** Balancer: searches per second per replica that make a shard hot and gain a replica (default 500; 0: off). */
  hotSearches?: number;
  /** Balancer: how long a shard stays hot (cold) before it gains (loses) a load replica (default 60,000). */
  hotWindowMs?: number;
  /** Balancer: most load replicas a shard gets beyond its collection's count (default 1). */
  maxLoadReplicas?: number;
  /** Balancer: searches per second per replica, with all its load replicas, that split a routed shard (default 1000; 0: off). */
  splitSearches?: number;
  /** Versioned writes (spatial, semantic) are acknowledged only if stored within this many ms of taking their version; the same on every coordinator (default 30,000). */
  versionWindowMs?: number;
}

/** How long a write to a shard being split waits for the split to finish, and how often it looks. */
const FENCE_WAIT_MS = 15_000;
const FENCE_POLL_MS = 20;
/** How often each cached shard map is compared with the stored one (should a watch stall without ending). */
const RECHECK_MS = 5000;


interface Known {
  meta: CollectionMeta;
  map: ShardMap;
  p: Partitioner;
}

/** What a shard's reply became: its body, or why it is missing. */
type ShardAnswer = { shard: number; body?: Record<string, unknown>; missing?: boolean };

export async function runCoordinator(opts: CoordinatorOptions): Promise<{ stop(): Promise<void> }> {
  for (const [k, v] of Object.entries({ deadlineMs: opts.deadlineMs, graceMs: opts.graceMs, compactAfter: opts.compactAfter, splitAt: opts.splitAt, mergeBelow: opts.mergeBelow, hotSearches: opts.hotSearches, hotWindowMs: opts.hotWindowMs, maxLoadReplicas: opts.maxLoadReplicas, splitSearches: opts.splitSearches })) {
    if (v !== undefined && !(Number.isSafeInteger(v) && v >= 0)) throw new VdbError(ErrorCode.INVALID_ARGUMENT, `${k}: expected a non-negative integer, got ${v}`);
  }
  const mergeBelow = checkMergeBelow(opts.mergeBelow, opts.splitAt ?? DEFAULT_BALANCER.splitAt);
  const versionWindowMs = opts.versionWindowMs ?? WRITE_IN_TIME_MS;
  if (!(Number.isSafeInteger(versionWindowMs) && versionWindowMs >= WRITE_WINDOW_MIN_MS)) {
    throw new VdbError(ErrorCode.INVALID_ARGUMENT, `versionWindowMs: expected an integer of at least ${WRITE_WINDOW_MIN_MS}, got ${versionWindowMs}`);
  }
  const n: Names = names(opts.prefix);
  const nc: NatsConnection = await connectNats(opts.nats, opts.name, opts.auth);
  const connection = trackConnection(nc);
  const js: JetStreamClient = nc.jetstream();
  const jsm: JetStreamManager = await whileJetStreamStarts(() => nc.jetstreamManager(), START_TIMEOUT_MS);
  const meta = await Meta.open(nc, n);
  const deadline = opts.deadlineMs ?? 2000;
  const cache = new Map<string, Known>();
  const maxPayload = nc.info?.max_payload ?? 1024 * 1024;
  const requester = new Requester(nc);
  /** Searches served per collection, for the balancer's load-driven splits (heartbeat `searches`). */
  const searched = new Map<string, number>();

  // Any change to a collection or its shard map drops the cached copy, and is
  // counted so a read that raced with it is not cached. The heartbeat follows
  // at once: a split waits for every coordinator to have seen its fence.
  const changes = new Map<string, number>();
  let beatNow: () => void = () => undefined; // the heartbeat, once the process is registered
  const changed = (key: string) => {
    changes.set(key, (changes.get(key) ?? 0) + 1);
    cache.delete(key);
    beatNow();
  };
  // A watch opened again may have missed changes: nothing cached is trusted.
  const forgetAll = () => { for (const key of new Set([...cache.keys(), ...changes.keys()])) changed(key); };
  const watches = [
    keepWatching(meta.collections, n.bucket('collections'), (e) => {
      if (e.operation !== 'PUT') searched.delete(e.key);
      changed(e.key);
    }, forgetAll),
    keepWatching(meta.shardmaps, n.bucket('shardmap'), (e) => changed(e.key), forgetAll),
  ];
  // A watch that stalls without ending delivers nothing and says nothing: a
  // cached map whose epoch or incarnation differs from the stored one goes.
  const recheck = setInterval(() => {
    for (const [name, k] of cache) {
      meta.shardMap(name).then((m) => {
        if (cache.get(name) === k && (m?.epoch !== k.map.epoch || m?.uid !== k.map.uid)) changed(name);
      }).catch(() => undefined);
    }
  }, RECHECK_MS);

  async function known(name: string): Promise<Known> {
    checkCollectionName(name, 'collection');
    const hit = cache.get(name);
    if (hit) return hit;
    const gen = changes.get(name) ?? 0;
    const [m, map] = await Promise.all([meta.collection(name), meta.shardMap(name)]);
    // Both entries, of one incarnation: anything else is a create or drop cut short.
    if (!m || !map || m.uid !== map.uid) throw new VdbError(ErrorCode.COLLECTION_NOT_FOUND, `no collection ${name}`);
    const k = { meta: m, map, p: partitionerFromJSON(map.partitioner ?? m.partitioner) };
    // A change seen while reading may be newer than what was read: do not keep it.
    if ((changes.get(name) ?? 0) === gen) cache.set(name, k);
    return k;
  }

  const guard = new WriteGuard(() => meta.live('shard'));
  /** Writes in flight, with the shard-map epoch each was routed with. */
  const inflight = new Set<{ c: string; epoch: number }>();
  /** Per collection, the oldest epoch this coordinator may still write with (for the balancer's split fence). */
  function epochsInUse(): Record<string, number> {
    const out: Record<string, number> = {};
    const note = (c: string, e: number) => { out[c] = Math.min(out[c] ?? Infinity, e); };
    for (const [c, k] of cache) note(c, k.map.epoch);
    for (const w of inflight) note(w.c, w.epoch);
    return out;
  }

  /** Routes and appends a write with the current shard map. While a split or a
   * merge holds writes to a shard (meta.ts `holdsWrites`), a write that
   * touches it waits for the next map, up to FENCE_WAIT_MS, then `restamp`s
   * (takes a new version) and plans again. Its epoch stays registered until
   * the append ends. */
  async function write(c: string, plan: (k: Known) => Map<number, LogEntry[]>, restamp?: () => Promise<void>): Promise<{ seqs: Record<number, number>; pending: number[] }> {
    const until = performance.now() + FENCE_WAIT_MS;
    let held = false;
    for (;;) {
      const k = await known(c);
      const entries = plan(k);
      const fence = [...entries.keys()].find((s) => holdsWrites(k.map, s));
      if (fence !== undefined) {
        if (performance.now() > until) throw new VdbError(ErrorCode.UNAVAILABLE, `shard ${c}/${fence} is being split or merged and takes no writes yet; retry`);
        await new Promise((r) => setTimeout(r, FENCE_POLL_MS));
        held = true;
        continue;
      }
      // A merge appends copies under a version taken while this write was held: the write must come after them.
      if (held && restamp) {
        held = false;
        await restamp();
        continue;
      }
      const token = { c, epoch: k.map.epoch };
      inflight.add(token);
      try {
        // Capacity is checked before the append: a write no replica could hold is refused, never logged.
        const seqs = await guard.append(k.meta, k.map.replicas, entries, () => append(c, entries));
        const live = new Set(meta.live('shard').map((m) => m.name));
        const pending = [...entries.keys()].filter((s) => !k.map.replicas[s].some((r) => live.has(r))).sort((a, b) => a - b);
        return { seqs, pending };
      } finally {
        inflight.delete(token);
      }
    }
  }

  let turn = 0;
  /** One shard's answer to a read: from the replica cluster/replica-choice.ts picks, or missing. */
  async function askShard(c: string, k: Known, s: number, op: string, body: Record<string, unknown>, minSeq: number | undefined, live: Map<string, Member>): Promise<ShardAnswer> {
    const { order, anyLive } = replicaOrder(k.map.replicas[s] ?? [], shardKey(c, s), live, minSeq, turn++);
    const send: Send = async (member, req, timeoutMs) => decode((await requester.request(n.replica(c, s, member, op), encode(req, false), timeoutMs)).data, false) as Record<string, unknown>;
    const onReplicaError = (member: string, err: VdbError) =>
      logger().warn({ subject: n.replica(c, s, member, op), code: err.code, cause: err }, `${n.replica(c, s, member, op)} answered ${err.code}: ${err.message}; asking the next replica`);
    const a = await askReplicas(order, anyLive, body, send, { deadlineMs: deadline, minSeq, onReplicaError, onHedge: () => counted.hedged(op) });
    // A missing shard makes a partial answer: an operator needs to know which replicas were asked.
    if (a.missing) logger().warn({ collection: c, shard: s, op }, `${op} of ${c}: shard ${s} missing after ${deadline} ms; asked ${order.join(', ') || 'no replica'} (live: ${anyLive})`);
    return { shard: s, ...a };
  }

  /** Asks shards in parallel; a shard none of whose replicas answers in time is missing. */
  function ask(c: string, k: Known, shards: number[], op: string, body: (s: number) => Record<string, unknown>, mins?: Map<number, number>): Promise<ShardAnswer[]> {
    const live = new Map(meta.live('shard').map((m) => [m.name, m]));
    return Promise.all(shards.map((s) => askShard(c, k, s, op, body(s), mins?.get(s), live)));
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

  const order = (k: Known) => (k.meta.metric === 'l2' ? 'asc' : 'desc') as 'asc' | 'desc';

  async function minSeqs(c: string, shards: number[], req: ReadConsistency): Promise<Map<number, number>> {
    const out = new Map<number, number>();
    if (req.consistency === 'strong') {
      await Promise.all(shards.map(async (s) => out.set(s, (await jsm.streams.info(n.stream(c, s))).state.last_seq)));
    } else if (req.consistency === 'session' && req.afterSeqs) {
      for (const s of shards) {
        const v = req.afterSeqs[String(s)];
        if (v !== undefined) out.set(s, v);
      }
    }
    return out;
  }

  /** With `wait`: asks every live replica of each written shard to confirm it applied its sequence. */
  async function confirmApplied(c: string, seqs: Record<number, number>): Promise<{ applied: boolean; unconfirmed: number[] }> {
    const k = await known(c);
    const live = new Set(meta.live('shard').map((m) => m.name));
    const writes = Object.entries(seqs).map(([s, seq]) => ({ shard: Number(s), seq, replicas: (k.map.replicas[Number(s)] ?? []).filter((r) => live.has(r)) }));
    return waitApplied(writes, async (s, r, seq, waitMs) => {
      const m = await requester.request(n.replica(c, s, r, 'count'), encode({ minSeq: seq, waitMs }, false), waitMs + 1000);
      return !errorFromBody(decode(m.data, false));
    });
  }

  /** `write` for upserts and deletes: with spatial or semantic placement the
   * request first takes a version its entries carry (`plan` gets `{version}`,
   * or nothing with hash placement; a new one after a split or merge held
   * it), and is acknowledged only if its appends ended in time
   * (cluster/versions.ts). */
  async function writeVersioned(c: string, plan: (k: Known, version: { version?: number }) => Map<number, LogEntry[]>) {
    const versioned = needsVersions((await known(c)).p);
    const take = () => stamp(versioned, () => nextVersion(js, jsm, n, c, meta.replicas));
    let v = await take();
    const done = await write(c, (k) => plan(k, v.entry), versioned ? async () => { v = await take(); } : undefined);
    checkInTime(v, undefined, versionWindowMs);
    return done;
  }

  /** A write's reply; `pending` lists shards that had no live replica to apply it yet. */
  const written = async (c: string, count: number, seqs: Record<number, number>, pending: number[], wait: boolean) => {
    const reply: Record<string, unknown> = { count, seq: Math.max(0, ...Object.values(seqs)), seqs };
    if (pending.length) reply.pending = pending;
    if (wait) {
      const { applied, unconfirmed } = await confirmApplied(c, seqs);
      reply.applied = applied;
      if (!applied) reply.unconfirmed = unconfirmed;
    }
    return reply;
  };

  const ops = {
    async upsert(c: string, body: unknown) {
      const req = validateUpsert(body, (await known(c)).meta);
      // The last write of an id in a batch wins; keeping only it also keeps an id
      // whose copies would be placed on different shards from landing on both.
      const points = [...new Map(req.points.map((p) => [p.id, p])).values()];
      const { seqs, pending } = await writeVersioned(c, (k, version) => {
        const byShard = new Map<number, typeof points>();
        const placed = points.map((p) => shardOfPoint(k.p, p));
        for (const [i, p] of points.entries()) {
          const s = placed[i];
          if (!byShard.has(s)) byShard.set(s, []);
          byShard.get(s)!.push(p);
        }
        const entries = new Map<number, LogEntry[]>();
        for (const [s, pts] of byShard) {
          entries.set(s, upsertEntries(pts, version, maxPayload));
        }
        // Placement by vector or label can move a point: remove it from the other shards.
        if (k.p.kind !== 'hash') {
          for (let s = 0; s < k.p.shards; s++) {
            const ids = points.filter((_, i) => placed[i] !== s).map((p) => p.id);
            if (ids.length) entries.set(s, [{ op: 'delete', ids, ...version }, ...(entries.get(s) ?? [])]);
          }
        }
        return entries;
      });
      return written(c, req.points.length, seqs, pending, req.wait);
    },

    async delete(c: string, body: unknown) {
      await known(c);
      const req = validateDelete(body);
      const { seqs, pending } = await writeVersioned(c, (k, version) => {
        const byShard = new Map<number, PointId[]>();
        for (const id of req.ids) for (const s of shardsForId(k.p, id)) {
          if (!byShard.has(s)) byShard.set(s, []);
          byShard.get(s)!.push(id);
        }
        const entries = new Map<number, LogEntry[]>();
        for (const [s, ids] of byShard) entries.set(s, chunk(ids, () => 600, maxPayload).map((part) => ({ op: 'delete', ids: part, ...version })));
        return entries;
      });
      return written(c, req.ids.length, seqs, pending, req.wait);
    },

    async get(c: string, body: unknown) {
      const k = await known(c);
      const req = validateGet(body);
      const shards = [...new Set(req.ids.flatMap((id) => shardsForId(k.p, id)))];
      const answers = await ask(c, k, shards, 'get', () => ({ ids: req.ids, withVector: req.withVector }), await minSeqs(c, shards, req));
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
      const req = validateCount(body);
      const shards = k.map.replicas.map((_, s) => s);
      const answers = await ask(c, k, shards, 'count', () => ({}), await minSeqs(c, shards, req));
      const missing = answers.filter((a) => a.missing).map((a) => a.shard);
      const count = answers.reduce((sum, a) => sum + ((a.body?.count as number | undefined) ?? 0), 0);
      return missing.length ? { count, partial: true, missing } : { count, partial: false };
    },

    async search(c: string, body: unknown) {
      const t0 = performance.now();
      const k = await known(c);
      const req = validateSearch(body, k.meta);
      searched.set(c, (searched.get(c) ?? 0) + 1);
      const shardBody = () => shardSearchBody(req, undefined, deadline);
      const read = (answers: ShardAnswer[]) => answers.map((a) => (a.body ? { shard: a.shard, reply: readShardReply(a.body) } : undefined));
      let answers: ShardAnswer[];
      let replies: ({ shard: number; reply: ShardHits } | undefined)[];
      if (req.exact && k.p instanceof SpatialPartitioner) {
        // Nearest leaf first; then only the leaves that can still hold a top-k hit.
        const first = k.p.route(req.vector, { nprobe: 1 });
        const mins = await minSeqs(c, k.p.route(req.vector, { nprobe: k.p.shards }), req);
        answers = await ask(c, k, first, 'search', shardBody, mins);
        replies = read(answers);
        const hits = replies[0]?.reply.hits ?? [];
        const kth = hits.length < req.k ? Infinity : hits[req.k - 1].score;
        const rest = k.p.exactRoute(req.vector, kth).filter((s) => !first.includes(s));
        const more = await ask(c, k, rest, 'search', shardBody, mins);
        answers = answers.concat(more);
        replies = replies.concat(read(more));
      } else {
        const shards = shardsForSearch(k.p, { vector: req.vector, filter: req.filter, nprobe: req.nprobe });
        answers = await ask(c, k, shards, 'search', shardBody, await minSeqs(c, shards, req));
        replies = read(answers);
      }
      // Until a split shard has dropped what moved away, it may still answer with
      // old copies: with hash placement, only a shard's own ids count.
      const p = k.p;
      const own = (shard: number, hits: Hit[]) => (p instanceof HashPartitioner ? hits.filter((h) => p.shardOf(h.id) === shard) : hits);
      const hits = mergeTopK(replies.flatMap((r) => (r ? [own(r.shard, r.reply.hits)] : [])), req.k, order(k));
      const missing = answers.filter((a) => a.missing).map((a) => a.shard).sort((a, b) => a - b);
      let searchMs = 0;
      let searchMsTotal = 0;
      for (const r of replies) {
        searchMs = Math.max(searchMs, r?.reply.searchMs ?? 0);
        searchMsTotal += r?.reply.searchMs ?? 0;
      }
      const reply: Record<string, unknown> = { hits, partial: missing.length > 0, tookMs: performance.now() - t0, searchMs, searchMsTotal };
      if (missing.length) reply.missing = missing;
      return reply;
    },

    // Every shard's first page after the cursor, merged (ts/scroll-merge.ts). A
    // page without some shard would skip its points for good: that is an error.
    async scroll(c: string, body: unknown) {
      const k = await known(c);
      const req = validateScroll(body);
      const shards = k.map.replicas.map((_, s) => s);
      const shardBody = () => ({ after: req.after, limit: req.limit, filter: req.filter, withVector: req.withVector, withPayload: req.withPayload });
      const answers = await ask(c, k, shards, 'scroll', shardBody, await minSeqs(c, shards, req));
      const missing = answers.filter((a) => a.missing).map((a) => a.shard);
      if (missing.length) throw new VdbError(ErrorCode.SHARD_UNAVAILABLE, `shards ${missing.join(', ')} of ${c} did not answer; retry the page`);
      const p = k.p;
      const pages = answers.map((a) => {
        // As in search: until a split shard drops what moved away, only its own ids count.
        const points = ((a.body?.points as StoredPoint[] | undefined) ?? []).filter((pt) => !(p instanceof HashPartitioner) || p.shardOf(pt.id) === a.shard);
        return { points, end: a.body?.next as PointId | undefined };
      });
      const page = mergeScroll(pages, req.limit);
      const points = page.points.map((pt) => (pt.vector ? { ...pt, vector: parseVector(pt.vector, 'vector') } : pt));
      return page.next === undefined ? { points } : { points, next: page.next };
    },
  };

  async function createCollection(body: unknown) {
    const { cm, map } = planCollection(body, meta.live('shard').map((m) => m.name));
    await createAdmin({ meta, jsm, n }, cm, map);
    return describe(cm, map);
  }

  function describe(m: CollectionMeta, map: ShardMap) {
    const { partitioner, ...rest } = m;
    return { ...rest, partitioner: { kind: partitioner.kind, shards: partitioner.shards }, shardMap: map };
  }

  const admin = {
    'collections.create': createCollection,
    async 'collections.drop'(body: unknown) {
      return dropAdmin({ meta, jsm, n }, validateDropCollection(body).name);
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
      const members = meta.live();
      const byName = new Map(members.map((m) => [m.name, m]));
      const collections = [];
      for (const name of meta.list()) {
        const k = await known(name).catch(() => undefined);
        if (!k) continue;
        const shards = await Promise.all(k.map.replicas.map(async (list, s) => {
          const info = await jsm.streams.info(n.stream(name, s)).catch(() => undefined);
          const logSeq = info?.state.last_seq ?? null;
          const replicas = list.map((member) => {
            const m = byName.get(member);
            const key = shardKey(name, s);
            const applied = m?.shards?.[key] ?? null;
            const r: Record<string, unknown> = { member, live: !!m, applied, lag: applied !== null && logSeq !== null ? logSeq - applied : null, skipped: m?.skipped?.[key] ?? null };
            if (m?.failed?.[key]) r.failed = m.failed[key];
            return r;
          });
          const [a] = await ask(name, k, [s], 'count', () => ({}));
          const move = k.map.moves?.[s];
          return { shard: s, logSeq, firstSeq: info?.state.first_seq ?? null, count: a.body?.count ?? null, replicas, ...(move ? { move } : {}) };
        }));
        collections.push({ name, shards, ...(k.map.merge ? { merge: k.map.merge } : {}) });
      }
      return { members, collections, balancer: (await balancerState(meta)) ?? null, draining: [...await draining(meta)] };
    },
    async drain(body: unknown) {
      const { process: name, cancel } = validateDrain(body);
      return { draining: await setDraining(meta, name, cancel) };
    },
  };

  const registry = new Registry();
  const observe = requestMetrics(registry, 'vdb_coordinator');
  const counted = coordinatorMetrics(registry, { collections: () => meta.list(), shardMap: async (c) => (await known(c)).map, live: () => meta.live() });
  natsMetrics(registry, connection.state);
  const metrics = await serveMetrics(registry, {
    port: opts.metricsPort,
    host: opts.metricsHost,
    health: () => {
      const conn = connection.state();
      return { ok: conn.connected, detail: { name: opts.name, nats: connectionDetail(nc, conn), collectionsCached: cache.size } };
    },
  });
  const service = await nc.services.add({ name: 'vdb-coord', version: '0.1.0', description: 'vdb coordinator', queue: `${n.prefix}-coord`, metadata: { member: opts.name } });
  for (const op of COLLECTION_ENDPOINTS) {
    addEndpoint(service, op, { subject: n.api('*', op) }, async (body, msg) => {
      const reply = await ops[op](msg.subject.split('.')[2], body) as { partial?: boolean };
      if (reply.partial) counted.partial(op);
      return reply;
    }, observe(op));
  }
  for (const [op, fn] of Object.entries(admin)) {
    addEndpoint(service, `admin-${op.replace('.', '-')}`, { subject: n.admin(op) }, (body) => fn(body), observe(op));
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

  const beat = () => meta.heartbeat({ name: opts.name, role: 'coordinator', pid: process.pid, metricsPort: metrics.port, epochs: epochsInUse(), searches: Object.fromEntries(searched) }).catch(() => undefined);
  await beat();
  beatNow = () => void beat();
  const timer = setInterval(beat, HEARTBEAT_MS);
  const request = async (subject: string, body: unknown) => {
    const reply = decode((await requester.request(subject, encode(body, false), deadline)).data, false) as Record<string, unknown>;
    const err = errorFromBody(reply);
    if (err) throw err;
    return reply;
  };
  const balancer = startBalancer(meta, js, jsm, request, n, opts.name, {
    ...DEFAULT_BALANCER,
    graceMs: opts.graceMs ?? DEFAULT_BALANCER.graceMs,
    compactAfter: opts.compactAfter ?? DEFAULT_BALANCER.compactAfter,
    splitAt: opts.splitAt ?? DEFAULT_BALANCER.splitAt,
    mergeBelow,
    maxPayload,
    rebalance: opts.rebalance ?? DEFAULT_BALANCER.rebalance,
    hotSearches: opts.hotSearches ?? DEFAULT_BALANCER.hotSearches,
    hotWindowMs: opts.hotWindowMs ?? DEFAULT_BALANCER.hotWindowMs,
    maxLoadReplicas: opts.maxLoadReplicas ?? DEFAULT_BALANCER.maxLoadReplicas,
    splitSearches: opts.splitSearches ?? DEFAULT_BALANCER.splitSearches,
    versionWindowMs,
  }, (line) => logger().info(line), counted.balancerAction);

  return {
    async stop() {
      clearInterval(timer);
      clearInterval(recheck);
      balancer.stop();
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
