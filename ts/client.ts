// VdbClient: the cluster's protocol (docs/protocol.md) for applications. It
// takes any connection with a nats.js-shaped `request` — pass the NatsConnection
// from `connect()` — so this library never depends on NATS itself.

import { VdbError, ErrorCode } from './errors.js';
import { decode, encode } from './wire/codec.js';
import { errorFromBody, readCountReply, readGetReply, readScrollReply, readSearchReply } from './wire/messages.js';
import type { CreateCollectionRequest, SearchReply, GetReply, ScrollReply, Consistency } from './wire/messages.js';
import type { Point, PointId, StoredPoint } from './collection.js';
import type { Filter } from './filter.js';
import type { VectorLike } from './core/wasm-index.js';

export interface Transport {
  request(subject: string, data: Uint8Array, opts: { timeout: number }): Promise<{ data: Uint8Array }>;
}

export interface ClientOptions {
  prefix?: string;
  timeoutMs?: number;
}

export interface ClusterSearchOptions {
  k?: number;
  ef?: number;
  filter?: Filter;
  exact?: boolean;
  withPayload?: boolean;
  consistency?: Consistency;
  nprobe?: number;
}

/** Reads: which replicas may answer (default 'session': ones that applied this client's writes). */
export interface ReadOptions {
  consistency?: Consistency;
}

export interface ScrollOptions extends ReadOptions {
  /** The `next` of the previous page; absent for the first. */
  after?: PointId;
  /** 1..10,000, default 100. */
  limit?: number;
  filter?: Filter;
  /** Default false. */
  withVector?: boolean;
  /** Default true. */
  withPayload?: boolean;
}

export interface WriteOptions {
  /** Reply once every live replica of the written shards has applied the write (or the wait ran out: see `applied`). */
  wait?: boolean;
}

export interface WriteResult {
  count: number;
  seq: number;
  /** Per shard, the log sequence of this write. */
  seqs: Record<string, number>;
  /** Shards of this write with no live replica at the time: stored in their logs, applied when one is back. */
  pending?: number[];
  /** With `wait`: every live replica confirmed the write in time. */
  applied?: boolean;
  /** With `wait`, when not `applied`: the shards that did not confirm. */
  unconfirmed?: number[];
}

export class VdbClient {
  private readonly prefix: string;
  private readonly timeout: number;
  /** Per collection and shard, the last sequence this client wrote: `session` reads wait for it. */
  private readonly written = new Map<string, Record<string, number>>();

  constructor(private readonly nc: Transport, opts: ClientOptions = {}) {
    this.prefix = opts.prefix ?? 'vdb';
    this.timeout = opts.timeoutMs ?? 10_000;
  }

  private async call(subject: string, body: unknown): Promise<Record<string, unknown>> {
    let reply: { data: Uint8Array };
    try {
      reply = await this.nc.request(subject, encode(body, false), { timeout: this.timeout });
    } catch (e) {
      const code = (e as { code?: string }).code;
      if (code === '503') throw new VdbError(ErrorCode.UNAVAILABLE, `no coordinator answers on ${subject}`);
      if (code === 'TIMEOUT') throw new VdbError(ErrorCode.TIMEOUT, `no answer on ${subject} within ${this.timeout} ms`);
      if (code === 'PERMISSIONS_VIOLATION') throw new VdbError(ErrorCode.PERMISSION_DENIED, `this connection's user may not publish to ${subject}`);
      throw e;
    }
    const out = decode(reply.data, false);
    const err = errorFromBody(out);
    if (err) throw err;
    return out as Record<string, unknown>;
  }

  private api(collection: string, op: string): string {
    return `${this.prefix}.v1.${collection}.${op}`;
  }

  private admin(op: string): string {
    return `${this.prefix}.v1._admin.${op}`;
  }

  createCollection(req: Omit<CreateCollectionRequest, 'hnsw' | 'replicas'> & Partial<Pick<CreateCollectionRequest, 'hnsw' | 'replicas'>> & {
    partitioner: CreateCollectionRequest['partitioner'] & { sample?: VectorLike[]; map?: Record<string, number[]> };
  }): Promise<Record<string, unknown>> {
    const partitioner = { ...req.partitioner, sample: req.partitioner.sample?.map((v) => Array.from(v)) };
    return this.call(this.admin('collections.create'), { replicas: 1, ...req, partitioner });
  }

  dropCollection(name: string): Promise<Record<string, unknown>> {
    return this.call(this.admin('collections.drop'), { name });
  }

  async listCollections(): Promise<string[]> {
    return (await this.call(this.admin('collections.list'), {})).collections as string[];
  }

  describe(name: string): Promise<Record<string, unknown>> {
    return this.call(this.admin('describe'), { name });
  }

  status(): Promise<Record<string, unknown>> {
    return this.call(this.admin('status'), {});
  }

  /** Moves every replica off a shard process (or, with `cancel`, stops that); the processes draining then. */
  async drain(process: string, cancel = false): Promise<string[]> {
    return (await this.call(this.admin('drain'), { process, cancel })).draining as string[];
  }

  private remember(collection: string, seqs: Record<string, number>): void {
    const mine = this.written.get(collection) ?? {};
    for (const [s, v] of Object.entries(seqs)) mine[s] = Math.max(mine[s] ?? 0, v);
    this.written.set(collection, mine);
  }

  async upsert(collection: string, points: Point[], opts: WriteOptions = {}): Promise<WriteResult> {
    const body = { points: points.map((p) => ({ ...p, vector: p.vector instanceof Float32Array ? p.vector : Float32Array.from(p.vector) })), wait: opts.wait };
    const r = (await this.call(this.api(collection, 'upsert'), body)) as unknown as WriteResult;
    this.remember(collection, r.seqs ?? {});
    return r;
  }

  async delete(collection: string, ids: PointId[], opts: WriteOptions = {}): Promise<WriteResult> {
    const r = (await this.call(this.api(collection, 'delete'), { ids, wait: opts.wait })) as unknown as WriteResult;
    this.remember(collection, r.seqs ?? {});
    return r;
  }

  async get(collection: string, ids: PointId[], opts: { withVector?: boolean } & ReadOptions = {}): Promise<GetReply> {
    const body = { ids, withVector: opts.withVector ?? true, consistency: opts.consistency, afterSeqs: this.written.get(collection) };
    return readGetReply(await this.call(this.api(collection, 'get'), body));
  }

  async count(collection: string, opts: ReadOptions = {}): Promise<number> {
    return readCountReply(await this.call(this.api(collection, 'count'), { consistency: opts.consistency, afterSeqs: this.written.get(collection) })).count;
  }

  /** One page of points in id order; pass its `next` as `after` for the following page. */
  async scroll(collection: string, opts: ScrollOptions = {}): Promise<ScrollReply> {
    const body = { ...opts, afterSeqs: this.written.get(collection) };
    return readScrollReply(await this.call(this.api(collection, 'scroll'), body));
  }

  /** Every point (matching `filter`), page by page. */
  async *scrollAll(collection: string, opts: Omit<ScrollOptions, 'after'> = {}): AsyncGenerator<StoredPoint> {
    let after: PointId | undefined;
    do {
      const page = await this.scroll(collection, { ...opts, after });
      yield* page.points;
      after = page.next;
    } while (after !== undefined);
  }

  async search(collection: string, vector: VectorLike, opts: ClusterSearchOptions = {}): Promise<SearchReply> {
    const body = {
      vector: vector instanceof Float32Array ? vector : Float32Array.from(vector),
      k: opts.k ?? 10, ef: opts.ef, filter: opts.filter, exact: opts.exact, withPayload: opts.withPayload,
      consistency: opts.consistency, nprobe: opts.nprobe, afterSeqs: this.written.get(collection),
    };
    return readSearchReply(await this.call(this.api(collection, 'search'), body));
  }
}
