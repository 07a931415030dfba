// One replica of a shard in a shard process: an embedded Collection that
// follows a write log (its shard's, or while a split builds it, its source's)
// in order, applying backlogs in batches with the applied sequence in the same
// commit, and answers searches, gets, counts, copies and samples on the
// shard's subject (any replica) and its own (`…<shard>.<member>.<op>`).

import type { NatsConnection, JetStreamClient, Service, ConsumerMessages } from 'nats';
import { DeliverPolicy } from 'nats';
import type { Collection, LogEntry as AppliedEntry } from '../ts/collection.js';
import { HashPartitioner, partitionerFromJSON, shardOfPoint } from '../ts/partition/index.js';
import type { Partitioner, PartitionerJSON } from '../ts/partition/index.js';
import type { PointId } from '../ts/validate.js';
import type { Filter } from '../ts/filter.js';
import { decode, float32Bytes } from '../ts/wire/codec.js';
import { mulberry32 } from '../ts/random.js';
import { VdbError, ErrorCode } from '../ts/errors.js';
import type { Names } from './subjects.js';
import { addEndpoint } from './service.js';
import type { Observe } from './service.js';
import { checkShardRequest, checkShardWait, shardReplyBody } from './shard-requests.js';
import type { CopySource } from './snapshot-copy.js';
import { logger } from './log.js';

/** A write-log entry, as the coordinator publishes it; `version` for collections not placed by id (cluster/versions.ts). */
export type LogEntry =
  | { op: 'upsert'; points: { id: string | number; vector: Uint8Array; payload?: Record<string, unknown> }[]; version?: number }
  | { op: 'delete'; ids: (string | number)[]; version?: number }
  /** Versioned writes below `version` are settled (cluster/versions.ts). */
  | { op: 'horizon'; version: number }
  /** After a split: drop every point the partitioner does not place on `shard`. */
  | { op: 'retain'; partitioner: PartitionerJSON; shard: number };

/** A log entry as stored, checked for its kind (its fields are checked when
 * applied); one that cannot be read becomes a `skip` with the reason, the same
 * on every replica. */
function readEntry(data: Uint8Array, seq: number): LogEntry | { op: 'skip'; reason: string } {
  let entry: unknown;
  try {
    entry = decode(data, false);
  } catch (e) {
    return { op: 'skip', reason: `${ErrorCode.BAD_REQUEST}: log entry ${seq} cannot be decoded: ${(e as Error).message}` };
  }
  const op = (entry as { op?: unknown } | null)?.op;
  if (op !== 'upsert' && op !== 'delete' && op !== 'retain' && op !== 'horizon') return { op: 'skip', reason: `${ErrorCode.BAD_REQUEST}: log entry ${seq} is not an upsert, delete, retain or horizon` };
  return entry as LogEntry;
}

/** The ids `store` holds that `p` places on another shard than `shard` (by id, vector or payload). */
export function placedElsewhere(store: Collection, p: Partitioner, shard: number): PointId[] {
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

/** What answers each shard endpoint of a service, by endpoint name. nats.js cannot
 * remove one endpoint (the end of its subscription closes the whole service), so a
 * name is added once and answers through the shard that holds it now; a stopped
 * shard unbinds, and until another binds the endpoint says SHARD_UNAVAILABLE. */
const routes = new WeakMap<Service, Map<string, ((body: unknown) => unknown) | undefined>>();

/** Most vectors a `sample` request returns. */
const SAMPLE_MAX = 10_000;

/** How often a shard checks that it is still following its log. */
const WATCHDOG_MS = 5000;
/** Log entries a replica asks the server for at a time: what it asked for and
 * has not read waits at the server, for every shard of the process (see
 * BATCH_POINTS); 32 bulk entries of 250 points at dim 128 are about 5 MiB.
 * (By bytes would be tighter, but nats.js's ordered consumer reuses the
 * options it was given after parsing them, and a reset with max_bytes then
 * throws "only specify one of max_messages or max_bytes" outside any caller.) */
const PULL_ENTRIES = 32;
/** Pause before following the log again after its consumer ended with an error. */
const RESUME_MS = 500;
/** Most log entries applied in one commit, most bytes of them, and most points
 * they upsert. A batch runs without yielding (250 points: about 0.1 s, up to
 * 0.2 s on a busy core), and every shard a process serves takes a batch
 * between two reads of its NATS socket, each of which takes about 2 MiB: with
 * longer batches (16 MiB held 32,000 points) the server's writes to the
 * process wait past its 10 s write deadline and it drops the process as a
 * slow consumer (measured with bench:elastic's join: 4 shards a process). */
const BATCH_ENTRIES = 512;
const BATCH_BYTES = 16 * 1024 * 1024;
const BATCH_POINTS = 250;

export class ServedShard {
  private waiters: { seq: number; resolve: () => void }[] = [];
  private consuming?: ConsumerMessages;
  private bound: { table: Map<string, ((body: unknown) => unknown) | undefined>; name: string; fn: (body: unknown) => unknown }[] = [];
  /** Log entries after the last one delivered, as JetStream last reported: the replica's lag. */
  pending = 0;
  /** While entries wait behind the last one delivered, that entry's time in the log (ms): the lag in seconds (shard-metrics.ts). */
  pendingSince?: number;
  private stopped = false;
  /** Why the shard stopped applying its log (a storage fault, or a log behind
   * what was applied); it then answers no reads and says so in heartbeats. */
  failed?: string;
  private watchdog?: NodeJS.Timeout;
  /** Which call of follow() owns the log now. */
  private generation = 0;

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

  /** Points and skipped entries for heartbeats and metrics; zeros when a failed
   * replica's store cannot even be read (it is closed after a storage fault). */
  /** Searches answered since this process opened the shard (heartbeats carry it, for load-driven replicas). */
  searches = 0;

  stats(): { points: number; skipped: number; indexBytes: number } {
    try {
      return { points: this.store.count(), skipped: this.store.skippedCount, indexBytes: this.store.indexBytes };
    } catch {
      return { points: 0, skipped: 0, indexBytes: 0 };
    }
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

  // One commit for the batch. Entries a replica refuses are skipped inside it
  // (Collection.applyLog); what is left to fail is storage or memory: the
  // collection is reopened at what was committed and the shard stops applying
  // rather than lose an entry.
  private applyBatch(batch: AppliedEntry[], log: (line: string) => void): boolean {
    let skipped: { seq: number; reason: string }[];
    try {
      skipped = this.store.applyLog(batch);
    } catch (e) {
      this.halt(`applying log entries ${batch[0].seq}..${batch[batch.length - 1].seq} failed: ${(e as Error).message}`);
      try {
        this.store = this.reopen();
      } catch (again) {
        log(`shard ${this.collection}/${this.shard}: reopening after the failure failed too: ${(again as Error).message}`);
      }
      return false;
    }
    for (const sk of skipped) log(`shard ${this.collection}/${this.shard}: log entry ${sk.seq} skipped: ${sk.reason}`);
    const ready = this.waiters.filter((w) => w.seq <= this.applied);
    this.waiters = this.waiters.filter((w) => w.seq > this.applied);
    for (const w of ready) w.resolve();
    this.onApplied();
    return true;
  }

  // A retain entry becomes the delete of what this replica holds and the
  // partitioner places elsewhere: every replica computes it from the same state.
  private retained(e: { partitioner: unknown; shard: unknown }, seq: number): AppliedEntry {
    try {
      if (!Number.isInteger(e.shard)) throw new VdbError(ErrorCode.BAD_REQUEST, `log entry ${seq}: a retain needs a shard`);
      return { seq, op: 'delete', ids: placedElsewhere(this.store, partitionerFromJSON(e.partitioner), e.shard as number) };
    } catch (err) {
      if (!(err instanceof VdbError)) throw err;
      return { seq, op: 'skip', reason: `${err.code}: ${err.message}` };
    }
  }

  // An operator must act on this one: at `error`, not through the shard's info lines.
  private halt(why: string): void {
    logger().error({ collection: this.collection, shard: this.shard }, `shard ${this.collection}/${this.shard}: ${why}; stopped applying`);
    this.failed = why;
  }

  /** Answers reads only while applying its log: a failed replica's data is stale. */
  private serving(): void {
    if (this.failed) throw new VdbError(ErrorCode.UNAVAILABLE, `replica of ${this.collection}/${this.shard} stopped applying its log: ${this.failed}`);
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
    // Only the newest loop applies: one the watchdog or a resume replaced ends.
    const gen = ++this.generation;
    this.consuming?.stop();
    const consumer = await js.consumers.get(stream, { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: this.applied + 1 });
    // A log deleted meanwhile (its collection dropped) fails here instead of
    // being waited for: an ordered consumer would retry for many minutes, and
    // the shard process applies shard maps one at a time behind this call.
    const it = await consumer.consume({ max_messages: PULL_ENTRIES, abort_on_missing_resource: true });
    this.consuming = it;
    void (async () => {
      let batch: AppliedEntry[] = [];
      let bytes = 0;
      let points = 0;
      let last = this.applied;
      for await (const m of it) {
        if (this.stopped || gen !== this.generation) break;
        if (m.seq <= last) continue;
        last = m.seq;
        this.pending = m.info.pending;
        this.pendingSince = this.pending > 0 ? m.info.timestampNanos / 1e6 : undefined;
        const entry = readEntry(m.data, m.seq);
        if (entry.op === 'retain') {
          let ok = batch.length === 0 || this.applyBatch(batch, log);
          batch = [];
          bytes = 0;
          points = 0;
          if (ok) ok = this.applyBatch([this.retained(entry, m.seq)], log);
          if (!ok) { it.stop(); return; }
          continue;
        }
        batch.push({ ...entry, seq: m.seq } as AppliedEntry);
        bytes += m.data.length;
        if (entry.op === 'upsert' && Array.isArray(entry.points)) points += entry.points.length;
        // More entries already received here (beyond this one) or still on the server: keep batching.
        const more = it.getPending() > 1 || m.info.pending > 0;
        if (more && batch.length < BATCH_ENTRIES && bytes < BATCH_BYTES && points < BATCH_POINTS) continue;
        const ok = this.applyBatch(batch, log);
        batch = [];
        bytes = 0;
        points = 0;
        if (!ok) { it.stop(); return; }
        await new Promise((r) => setImmediate(r));
      }
      // Only a newer loop, a stop or a halt ends it on purpose.
      if (!this.stopped && !this.failed && gen === this.generation) throw new Error('the consumer ended');
    })().catch((e: Error) => {
      // A consumer deleted under it (its stream's leader moved, a server
      // restarted): resume at once rather than wait for the watchdog, as
      // reads that wait for a sequence wait on this.
      if (this.stopped || this.failed || gen !== this.generation) return;
      log(`shard ${this.collection}/${this.shard}: following the log stopped: ${e.message}; resuming in ${RESUME_MS} ms`);
      setTimeout(() => {
        if (this.stopped || this.failed || gen !== this.generation) return;
        this.follow(js, stream, log).catch((again: Error) => log(`shard ${this.collection}/${this.shard}: resuming the log failed: ${again.message}; the watchdog resumes it`));
      }, RESUME_MS);
    });
  }

  /** Follows the source log; with `serve`, also answers on the shard's subjects. */
  async start(nc: NatsConnection, n: Names, member: string, service: Service | undefined, copies: CopySource, log: (line: string) => void, observe: (op: string) => Observe): Promise<void> {
    const { collection: c, shard: s } = this;
    const js = nc.jetstream();
    const jsm = await nc.jetstreamManager({ checkAPI: false }); // the process checked the API when it started
    const stream = n.stream(c, this.source);
    await this.follow(js, stream, log);
    // A consumer can stop delivering (a dropped connection, a server restart):
    // if the log is ahead and nothing was applied since the last look, resume.
    let seen = this.applied;
    this.watchdog = setInterval(() => {
      if (this.failed) return;
      // Taken before asking: the log's end, read after, can only be at or past it.
      const applied = this.applied;
      jsm.streams.info(stream).then(async (info) => {
        if (info.state.last_seq < applied) {
          // The log lost entries this replica applied (a NATS store lost or
          // recreated): new writes would reuse applied sequences and be skipped.
          this.halt(`applied ${applied} but the log ends at ${info.state.last_seq}: the log lost acknowledged entries`);
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
    let table = routes.get(service);
    if (!table) routes.set(service, (table = new Map()));
    const routed = table;
    const bind = (op: string, name: string, subject: string, fn: (body: unknown) => unknown, queue?: string) => {
      if (!routed.has(name)) {
        addEndpoint(service, name, queue ? { subject, queue } : { subject }, (body) => {
          const now = routed.get(name);
          if (!now) throw new VdbError(ErrorCode.SHARD_UNAVAILABLE, `${member} does not serve ${c}/${s}`);
          return now(body);
        }, observe(op));
      }
      routed.set(name, fn);
      this.bound.push({ table: routed, name, fn });
    };
    const add = (op: string, fn: (body: unknown) => unknown, shared = true) => {
      if (shared) bind(op, `${c}-${s}-${op}`, n.shard(c, s, op), fn, group);
      bind(op, `${c}-${s}-${member}-${op}`, n.replica(c, s, member, op), fn);
    };
    add('search', (body) => {
      this.serving();
      const r = checkShardRequest(body);
      const search = () => {
        this.searches++;
        const t0 = performance.now();
        const hits = this.store.search(r.vector, { k: r.k, ef: r.ef, filter: r.filter, exact: r.exact, withPayload: r.withPayload });
        return shardReplyBody({ hits, seq: this.applied, searchMs: performance.now() - t0 }, r.withPayload);
      };
      // Without a sequence to wait for the reply is built synchronously: no extra turns of the event loop.
      return r.minSeq === undefined ? search() : this.waitFor(r.minSeq, r.waitMs).then(search);
    });
    // A read waits, when asked, until this replica has applied `minSeq` (LAGGING after `waitMs`).
    const at = (body: unknown, op: string, read: () => unknown) => {
      this.serving();
      const w = checkShardWait(body, op);
      return w.minSeq === undefined ? read() : this.waitFor(w.minSeq, w.waitMs).then(read);
    };
    add('get', (body) => {
      const b = body as { ids?: unknown; withVector?: unknown };
      if (!Array.isArray(b?.ids)) throw new VdbError(ErrorCode.BAD_REQUEST, 'ids: expected an array');
      return at(body, 'get', () => ({ points: this.store.get(b.ids as PointId[], { withVector: b.withVector !== false }), seq: this.applied }));
    });
    add('count', (body) => at(body, 'count', () => ({ count: this.store.count(), seq: this.applied, versionTombstones: this.store.versionTombstones })));
    // A page in id order; `next` (the last id read) when the page is full.
    add('scroll', (body) => {
      const b = body as { after?: PointId; limit?: number; filter?: Filter; withVector?: unknown; withPayload?: unknown };
      return at(body, 'scroll', () => {
        const page = this.store.scroll({ after: b.after ?? undefined, limit: b.limit, filter: b.filter ?? undefined, withVector: b.withVector === true });
        const points = b.withPayload === false ? page.points.map((p) => (p.vector ? { id: p.id, vector: p.vector } : { id: p.id })) : page.points;
        return page.next === undefined ? { points, seq: this.applied } : { points, next: page.next, seq: this.applied };
      });
    });
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
    for (const b of this.bound) if (b.table.get(b.name) === b.fn) b.table.set(b.name, undefined);
    this.bound = [];
    try {
      this.store.close();
    } catch {
      // Closing takes a last snapshot, which a failed store (a full disk) may
      // not take: what was committed stays, and a reopen rebuilds the index.
    }
  }
}
