// The cluster end to end: a private nats-server, shard processes and
// coordinators run from dist/ as child processes, driven through VdbClient and
// raw NATS requests. Exact searches must equal an embedded Collection holding
// the same data; approximate ones must reach recall@10 ≥ 0.95 against a
// float64 brute force. Also: session consistency, a killed shard process
// (partial answers, writes still acknowledged, catch-up after restart), error
// replies over raw NATS, JSON bodies, two coordinators in one queue group, and
// micro-service discovery. Fails (never skips) without nats-server or dist/.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rmSync } from 'node:fs';
import { RequestStrategy } from 'nats';
import type { Msg, ServiceInfo, ServiceStats, ServiceIdentity } from 'nats';
import { Collection } from '../ts/collection.js';
import type { Hit, Point, PointId } from '../ts/collection.js';
import type { Metric } from '../ts/core/wasm-index.js';
import { HashPartitioner, SemanticPartitioner } from '../ts/partition/index.js';
import { VdbClient } from '../ts/client.js';
import { decode, encode } from '../ts/wire/codec.js';
import type { SearchReply } from '../ts/wire/messages.js';
import { clusterModel, clusteredData, dist64, row } from './helpers.js';
import { TestCluster, isRunning, pidAlive, tempDir, waitFor } from './cluster-helpers.js';
import { FASHION_DIM, fashionSubset } from './fashion.js';

const DIM = 32;
const N = 3000;
const Q = 50;
const K = 10;
const { data, queries } = clusteredData({ n: N, queries: Q, dim: DIM, clusters: 20, seed: 17 });
const query = (q: number) => row(queries, DIM, q);

/** Ids mix strings and integers, as applications do. */
const idOf = (i: number): PointId => (i % 3 === 0 ? `p${i}` : i);
const rowOfId = new Map<PointId, number>(Array.from({ length: N }, (_, i) => [idOf(i), i]));
const labelOf = (i: number) => i % 5;
const points = (from: number, to: number): Point[] =>
  Array.from({ length: to - from }, (_, j) => ({ id: idOf(from + j), vector: row(data, DIM, from + j), payload: { label: labelOf(from + j) } }));

/** Relative closeness of two scores (the cluster's and the embedded library's). */
function closeScore(a: number, b: number): boolean {
  return Math.abs(a - b) <= 1e-4 * Math.max(Math.abs(b), 1e-6);
}

/** Asserts the cluster's hits are the reference hits: same ids, same order, scores within 1e-4 relative. */
function expectSameHits(got: Hit[], want: Hit[], what: string): void {
  expect(got.map((h) => h.id), `${what}: ids`).toEqual(want.map((h) => h.id));
  got.forEach((h, i) => {
    expect(closeScore(h.score, want[i].score), `${what}: hit ${i} (${String(h.id)}) score ${h.score}, embedded ${want[i].score}`).toBe(true);
  });
}

/** True k nearest rows (float64), optionally among the rows `keep` accepts. */
function truth(metric: Metric, q: Float32Array, k: number, keep: (i: number) => boolean = () => true): { i: number; d: number }[] {
  const all: { i: number; d: number }[] = [];
  for (let i = 0; i < N; i++) if (keep(i)) all.push({ i, d: dist64(metric, q, row(data, DIM, i)) });
  all.sort((a, b) => a.d - b.d || a.i - b.i);
  return all.slice(0, k);
}

/** recall@k of hits against the float64 truth, robust to ties (a hit counts if its true distance is within the k-th). */
function recall(metric: Metric, q: Float32Array, hits: Hit[], k: number): number {
  const t = truth(metric, q, k);
  const kth = t[t.length - 1].d;
  const seen = new Set<PointId>();
  let good = 0;
  for (const h of hits) {
    const i = rowOfId.get(h.id);
    if (i === undefined || seen.has(h.id)) continue;
    seen.add(h.id);
    if (dist64(metric, q, row(data, DIM, i)) <= kth + 1e-5 * Math.max(1, Math.abs(kth))) good++;
  }
  return Math.min(good, k) / k;
}

/** The score a hit on row i must carry (the true metric, as Collection reports it). */
function trueScore(metric: Metric, q: Float32Array, i: number): number {
  const d = dist64(metric, q, row(data, DIM, i));
  return metric === 'l2' ? Math.sqrt(d) : metric === 'cosine' ? 1 - d : -d;
}

/** Asserts a hit list is well-formed: distinct known ids, ordered best first, each score its true metric value. */
function expectValidHits(metric: Metric, q: Float32Array, hits: Hit[], what: string): void {
  expect(new Set(hits.map((h) => h.id)).size, `${what}: duplicate ids`).toBe(hits.length);
  hits.forEach((h, j) => {
    const i = rowOfId.get(h.id);
    expect(i, `${what}: hit ${String(h.id)} is not a stored id`).toBeDefined();
    expect(Math.abs(h.score - trueScore(metric, q, i!)) <= 1e-3 * Math.max(1, Math.abs(h.score)), `${what}: hit ${String(h.id)} score ${h.score}, true ${trueScore(metric, q, i!)}`).toBe(true);
    if (j > 0) {
      const prev = hits[j - 1].score;
      expect(metric === 'l2' ? prev <= h.score : prev >= h.score, `${what}: hits not ordered at ${j}`).toBe(true);
    }
  });
}

async function upsertAll(cl: TestCluster, name: string, pts: Point[], batch = 500): Promise<void> {
  for (let b = 0; b < pts.length; b += batch) {
    const part = pts.slice(b, b + batch);
    const r = await cl.client.upsert(name, part);
    expect(r.count).toBe(part.length);
    expect(r.seq).toBeGreaterThan(0);
  }
}

/** Asserts a reply is an error reply: both micro headers and the {error: {code, message}} body, in the request's format. */
function expectServiceError(m: Msg, code: string, status: number, json = false): void {
  const h = m.headers;
  expect(h, `no headers on the reply; body: ${new TextDecoder().decode(m.data).slice(0, 200)}`).toBeDefined();
  expect(h!.get('Nats-Service-Error-Code')).toBe(String(status));
  expect(h!.get('Nats-Service-Error').startsWith(`${code}: `), `Nats-Service-Error: ${h!.get('Nats-Service-Error')}`).toBe(true);
  const body = json ? JSON.parse(new TextDecoder().decode(m.data)) : decode(m.data, false);
  expect(body).toEqual({ error: { code, message: expect.any(String) } });
  expect((body as { error: { message: string } }).error.message.length).toBeGreaterThan(0);
}

/** A request that must get a reply; a NATS-level failure (no responders, timeout) fails with what happened. */
async function mustReply(cl: TestCluster, subject: string, bytes: Uint8Array, json = false): Promise<Msg> {
  try {
    return await cl.request(subject, bytes, { json, timeout: 10_000 });
  } catch (e) {
    const err = e as { code?: string; message: string };
    const why = err.code === '503' ? 'no responders (nothing serves this subject, so no error reply came back)' : `${err.code ?? ''} ${err.message}`;
    throw new Error(`request to ${subject} got no reply: ${why}`);
  }
}

async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

const MiB = 1024 * 1024;

// ---------------------------------------------------------------------------

describe('cluster: 3 shard processes, one coordinator', () => {
  let cl: TestCluster;
  const refDirs: string[] = [];

  beforeAll(async () => {
    // max_payload above the protocol's 8 MiB body limit, so an oversized body reaches the coordinator.
    cl = await TestCluster.start({ shards: 3, coordinators: 1, maxPayload: 16 * MiB });
  });

  afterAll(async () => {
    await cl?.stop();
    for (const d of refDirs) rmSync(d, { recursive: true, force: true });
  });

  /** An embedded Collection with the same data, the reference for exact searches. */
  function reference(metric: Metric): Collection {
    const dir = tempDir();
    refDirs.push(dir);
    const c = Collection.open(dir, { name: 'ref', dim: DIM, metric });
    c.upsert(points(0, N));
    return c;
  }

  const cases: { kind: 'hash' | 'spatial' | 'semantic'; metric: Metric }[] = [
    { kind: 'hash', metric: 'l2' },
    { kind: 'spatial', metric: 'cosine' },
    { kind: 'semantic', metric: 'ip' },
  ];

  for (const { kind, metric } of cases) {
    it(`${kind} partitioner (3 shards, ${metric}): exact top-k equals the embedded Collection, ANN recall@10 ≥ 0.95`, async () => {
      const name = `p-${kind}`;
      const partitioner =
        kind === 'hash' ? { kind, shards: 3 }
          : kind === 'spatial' ? { kind, shards: 3, sample: Array.from({ length: 1000 }, (_, i) => row(data, DIM, i * 3)) }
            : { kind, shards: 3, field: 'label' };
      const created = await cl.client.createCollection({ name, dim: DIM, metric, partitioner });
      expect(created).toMatchObject({ name, dim: DIM, metric, partitioner: { kind, shards: 3 } });
      await upsertAll(cl, name, points(0, N));
      await cl.waitCount(name, N);
      expect(await cl.client.count(name)).toBe(N);

      const ref = reference(metric);
      try {
        // Exact: the same ids in the same order as the embedded library, with the same scores.
        for (let q = 0; q < Q; q++) {
          const r = await cl.client.search(name, query(q), { k: K, exact: true });
          expect(r.partial, `query ${q}: partial, missing ${r.missing}`).toBe(false);
          expect(r.missing).toBeUndefined();
          expectSameHits(r.hits, ref.search(query(q), { k: K, exact: true }), `${name} exact query ${q}`);
        }

        // ANN over every shard (spatial: no nprobe = every leaf).
        let sum = 0;
        for (let q = 0; q < Q; q++) {
          const r = await cl.client.search(name, query(q), { k: K });
          expect(r.partial).toBe(false);
          expect(r.hits).toHaveLength(K);
          expectValidHits(metric, query(q), r.hits, `${name} ANN query ${q}`);
          sum += recall(metric, query(q), r.hits, K);
        }
        expect(sum / Q, `${name}: mean recall@10`).toBeGreaterThanOrEqual(0.95);

        if (kind === 'spatial') {
          // nprobe = 1: one leaf answers; its hits are stored ids with their true scores, best first.
          for (let q = 0; q < Q; q++) {
            const r = await cl.client.search(name, query(q), { k: K, nprobe: 1 });
            expect(r.partial).toBe(false);
            expect(r.hits).toHaveLength(K); // every leaf holds far more than k points
            expectValidHits(metric, query(q), r.hits, `${name} nprobe=1 query ${q}`);
          }
        }

        if (kind === 'semantic') {
          // A label filter: only label-3 points, equal to the embedded filtered exact result.
          const filter = { label: 3 };
          for (let q = 0; q < Q; q++) {
            const exact = await cl.client.search(name, query(q), { k: K, exact: true, filter, withPayload: true });
            expect(exact.partial).toBe(false);
            for (const h of exact.hits) expect(h.payload, `hit ${String(h.id)}`).toEqual({ label: 3 });
            expectSameHits(exact.hits, ref.search(query(q), { k: K, exact: true, filter }), `${name} filtered exact query ${q}`);
            const ann = await cl.client.search(name, query(q), { k: K, filter, withPayload: true });
            expect(ann.partial).toBe(false);
            expect(ann.hits).toHaveLength(K);
            for (const h of ann.hits) {
              expect(labelOf(rowOfId.get(h.id)!), `ANN hit ${String(h.id)}`).toBe(3);
              expect(h.payload).toEqual({ label: 3 });
            }
          }
        }
      } finally {
        ref.close();
      }
    });
  }

  it('on a Fashion-MNIST subset (3,000 images, 784-d, l2), every partitioner reaches ANN recall@10 ≥ 0.95', async () => {
    const FN = 3000;
    const FQ = 50;
    const f = fashionSubset(FN, FQ);
    const frow = (i: number) => f.base.subarray(i * FASHION_DIM, (i + 1) * FASHION_DIM);
    const fq = (q: number) => f.queries.subarray(q * FASHION_DIM, (q + 1) * FASHION_DIM);
    const truthOf = (q: number) => {
      const d = Array.from({ length: FN }, (_, i) => ({ i, d: dist64('l2', fq(q), frow(i)) })).sort((a, b) => a.d - b.d);
      return { ids: new Set(d.slice(0, K).map((x) => x.i)), kth: d[K - 1].d };
    };
    const truths = Array.from({ length: FQ }, (_, q) => truthOf(q));
    const pts = Array.from({ length: FN }, (_, i) => ({ id: i, vector: frow(i), payload: { label: f.baseLabels[i] } }));
    for (const kind of ['hash', 'spatial', 'semantic'] as const) {
      const name = `fashion-${kind}`;
      const partitioner =
        kind === 'hash' ? { kind, shards: 3 }
          : kind === 'spatial' ? { kind, shards: 3, sample: Array.from({ length: 1000 }, (_, i) => frow(i * 3)) }
            : { kind, shards: 3, field: 'label' };
      await cl.client.createCollection({ name, dim: FASHION_DIM, metric: 'l2', partitioner });
      await upsertAll(cl, name, pts, 250);
      await cl.waitCount(name, FN);
      let sum = 0;
      for (let q = 0; q < FQ; q++) {
        const r = await cl.client.search(name, fq(q), { k: K, ef: 64 });
        expect(r.partial).toBe(false);
        expect(r.hits).toHaveLength(K);
        // A hit counts if it is a true neighbour or ties with the k-th (pixel data has exact ties).
        sum += r.hits.filter((h) => truths[q].ids.has(h.id as number) || dist64('l2', fq(q), frow(h.id as number)) <= truths[q].kth).length / K;
      }
      expect(sum / FQ, `${name}: mean recall@10`).toBeGreaterThanOrEqual(0.95);
    }
  });

  // A small collection shared by the tests below (each compares within itself).
  const MISC = 'misc';
  const MISC_N = 1000;
  let miscReady: Promise<void> | undefined;
  function misc(): Promise<void> {
    miscReady ??= (async () => {
      await cl.client.createCollection({ name: MISC, dim: DIM, metric: 'l2', partitioner: { kind: 'hash', shards: 3 } });
      await upsertAll(cl, MISC, points(0, MISC_N));
      await cl.waitCount(MISC, MISC_N);
    })();
    return miscReady;
  }

  it('session consistency: a point just upserted is the first hit of a search with its vector (20 fresh ids)', async () => {
    const SESSION = 'session';
    await cl.client.createCollection({ name: SESSION, dim: DIM, metric: 'l2', partitioner: { kind: 'hash', shards: 3 } });
    await upsertAll(cl, SESSION, points(0, 1000));
    await cl.waitCount(SESSION, 1000);
    const fresh = clusterModel({ dim: DIM, clusters: 20, seed: 17 }).sample(20, 999);
    for (let r = 0; r < 20; r++) {
      // A batch just before keeps the shards busy applying, so the point's own
      // log entry is usually not applied yet when the search reaches a shard.
      const filler = Array.from({ length: 100 }, (_, j) => ({ id: `filler-${r}-${j}`, vector: row(data, DIM, 1000 + r * 100 + j) }));
      await cl.client.upsert(SESSION, filler);
      const id = `fresh-${r}`;
      const v = row(fresh, DIM, r);
      const w = await cl.client.upsert(SESSION, [{ id, vector: v, payload: { r } }]);
      expect(w.count).toBe(1);
      const s = await cl.client.search(SESSION, v, { k: 5, withPayload: true });
      expect(s.partial).toBe(false);
      expect(s.hits[0], `round ${r}: first hit ${JSON.stringify(s.hits[0])}`).toEqual({ id, score: 0, payload: { r } });
    }
    // `strong` needs no session: another client that never wrote sees the latest acknowledged write.
    const other = new VdbClient(cl.nc);
    for (let r = 0; r < 5; r++) {
      const id = `strong-${r}`;
      const v = row(fresh, DIM, 10 + r).map((x) => x + 0.5);
      await cl.client.upsert(SESSION, Array.from({ length: 100 }, (_, j) => ({ id: `filler-s${r}-${j}`, vector: row(data, DIM, 2000 + r * 100 + j) })));
      await cl.client.upsert(SESSION, [{ id, vector: v }]);
      const s = await other.search(SESSION, v, { k: 1, consistency: 'strong' });
      expect(s.partial).toBe(false);
      expect(s.hits[0], `strong round ${r}`).toEqual({ id, score: 0 });
    }
  });

  it('semantic: an upsert that changes a point\'s label moves it (one copy, findable under the new label only)', async () => {
    const MOVES = 'moves';
    const n = 300;
    await cl.client.createCollection({ name: MOVES, dim: DIM, metric: 'l2', partitioner: { kind: 'semantic', shards: 3, field: 'label' } });
    await upsertAll(cl, MOVES, points(0, n));
    await cl.waitCount(MOVES, n);
    const sp = new SemanticPartitioner({ shards: 3, field: 'label' });
    const moved = points(0, 40).map((p) => ({ ...p, payload: { label: (labelOf(rowOfId.get(p.id)!) + 1) % 5 } }));
    const across = moved.filter((p) => sp.shardOf(p.payload, p.id) !== sp.shardOf({ label: labelOf(rowOfId.get(p.id)!) }, p.id));
    expect(across.length, 'some relabelled points change shard').toBeGreaterThan(0);
    await cl.client.upsert(MOVES, moved);
    for (const p of across) {
      const oldLabel = labelOf(rowOfId.get(p.id)!);
      const r = await cl.client.search(MOVES, p.vector, { k: 3, exact: true, withPayload: true });
      expect(r.partial).toBe(false);
      expect(r.hits[0]).toEqual({ id: p.id, score: 0, payload: p.payload });
      expect(r.hits.filter((h) => h.id === p.id), `${String(p.id)} appears once`).toHaveLength(1);
      const under = await cl.client.search(MOVES, p.vector, { k: 1, exact: true, filter: { label: p.payload.label } });
      expect(under.hits[0]).toEqual({ id: p.id, score: 0 });
      const old = await cl.client.search(MOVES, p.vector, { k: 5, exact: true, filter: { label: oldLabel } });
      expect(old.hits.map((h) => h.id), `${String(p.id)} still under label ${oldLabel}`).not.toContain(p.id);
    }
    const got = await cl.client.get(MOVES, across.map((p) => p.id), { withVector: false });
    expect(got.points).toEqual(across.map((p) => ({ id: p.id, payload: p.payload })));
    await cl.waitCount(MOVES, n);

    // One batch writing an id twice with labels on different shards: the last one wins, once.
    const [p0] = across;
    const first = { ...p0, payload: { label: labelOf(rowOfId.get(p0.id)!) } };
    const twice = await cl.client.upsert(MOVES, [p0, first]);
    expect(twice.count).toBe(2);
    const r = await cl.client.search(MOVES, p0.vector, { k: 5, exact: true, withPayload: true });
    expect(r.hits.filter((h) => h.id === p0.id)).toEqual([{ id: p0.id, score: 0, payload: first.payload }]);
    await cl.waitCount(MOVES, n);
  });

  it('JSON requests get JSON replies with the same hits as MessagePack', async () => {
    await misc();
    for (let q = 0; q < 10; q++) {
      for (const exact of [true, false]) {
        const body = { vector: Array.from(query(q)), k: K, exact, withPayload: true };
        const jm = await mustReply(cl, `vdb.v1.${MISC}.search`, new TextEncoder().encode(JSON.stringify(body)), true);
        expect(jm.headers?.get('Nats-Service-Error') ?? '', 'JSON search failed').toBe('');
        const text = new TextDecoder().decode(jm.data);
        const j = JSON.parse(text) as SearchReply; // a JSON reply, not MessagePack
        const mm = await mustReply(cl, `vdb.v1.${MISC}.search`, encode({ ...body, vector: Float32Array.from(body.vector) }, false));
        const m = decode(mm.data, false) as SearchReply;
        expect(j.partial).toBe(false);
        expect(m.partial).toBe(false);
        expect(j.hits).toHaveLength(K);
        expect(j.hits).toEqual(m.hits);
        expect(typeof j.tookMs).toBe('number');
      }
    }
  });

  describe('bad requests over raw NATS get coded error replies', () => {
    const S = `vdb.v1.${MISC}.search`;
    const q0 = () => query(0);

    it('malformed MessagePack → BAD_REQUEST', async () => {
      await misc();
      // 0xc1 is never used; 0x82 0xa1 is a map cut short.
      expectServiceError(await mustReply(cl, S, Uint8Array.of(0xc1)), 'BAD_REQUEST', 400);
      expectServiceError(await mustReply(cl, S, Uint8Array.of(0x82, 0xa1)), 'BAD_REQUEST', 400);
    });

    it('invalid JSON with Content-Type: application/json → BAD_REQUEST, as JSON', async () => {
      await misc();
      expectServiceError(await mustReply(cl, S, new TextEncoder().encode('{"vector": [1, 2'), true), 'BAD_REQUEST', 400, true);
    });

    it('unknown collection → COLLECTION_NOT_FOUND', async () => {
      await misc();
      expectServiceError(await mustReply(cl, 'vdb.v1.no-such-collection.search', encode({ vector: q0(), k: K }, false)), 'COLLECTION_NOT_FOUND', 404);
      expectServiceError(await mustReply(cl, 'vdb.v1.no-such-collection.count', encode({}, false)), 'COLLECTION_NOT_FOUND', 404);
    });

    it('wrong dimension → DIMENSION_MISMATCH (search and upsert)', async () => {
      await misc();
      expectServiceError(await mustReply(cl, S, encode({ vector: new Float32Array(DIM - 1).fill(1), k: K }, false)), 'DIMENSION_MISMATCH', 400);
      expectServiceError(await mustReply(cl, `vdb.v1.${MISC}.upsert`, encode({ points: [{ id: 'bad', vector: new Float32Array(DIM + 1).fill(1) }] }, false)), 'DIMENSION_MISMATCH', 400);
    });

    it('k = 0 → INVALID_K', async () => {
      await misc();
      expectServiceError(await mustReply(cl, S, encode({ vector: q0(), k: 0 }, false)), 'INVALID_K', 400);
    });

    it('a body over 8 MiB → REQUEST_TOO_LARGE', async () => {
      await misc();
      expect(cl.nc.info?.max_payload, 'the test server accepts messages above 8 MiB').toBe(16 * MiB);
      const big = encode({ vector: new Uint8Array(8 * MiB + 1024), k: K }, false);
      expect(big.length).toBeGreaterThan(8 * MiB);
      expectServiceError(await mustReply(cl, S, big), 'REQUEST_TOO_LARGE', 413);
      expectServiceError(await mustReply(cl, `vdb.v1.${MISC}.upsert`, big), 'REQUEST_TOO_LARGE', 413);
    });

    it('unknown admin operation → UNKNOWN_ENDPOINT', async () => {
      await misc();
      expectServiceError(await mustReply(cl, 'vdb.v1._admin.no-such-op', encode({}, false)), 'UNKNOWN_ENDPOINT', 404);
    });

    it('unknown collection operation → UNKNOWN_ENDPOINT', async () => {
      await misc();
      expectServiceError(await mustReply(cl, `vdb.v1.${MISC}.no-such-op`, encode({}, false)), 'UNKNOWN_ENDPOINT', 404);
    });

    it('afterwards every process is alive and a normal search still works', async () => {
      await misc();
      for (const p of cl.procs.values()) {
        expect(isRunning(p), `${p.name} exited\n${cl.logs()}`).toBe(true);
        expect(pidAlive(p.child.pid!), `${p.name} pid ${p.child.pid}`).toBe(true);
      }
      expect(pidAlive(cl.nats.pid)).toBe(true);
      const r = await cl.client.search(MISC, q0(), { k: K, exact: true });
      expect(r.partial).toBe(false);
      const want = truth('l2', q0(), K, (i) => i < MISC_N).map((t) => idOf(t.i));
      expect(r.hits.map((h) => h.id)).toEqual(want);
    });
  });

  it('$SRV.PING and $SRV.INFO discover vdb-coord and vdb-shard', async () => {
    await misc();
    const svc = cl.nc.services.client({ strategy: RequestStrategy.Timer, maxWait: 1500 });
    const pings = await collect<ServiceIdentity>(await svc.ping());
    const byName = (n: string) => pings.filter((p) => p.name === n);
    expect(byName('vdb-coord').map((p) => p.metadata?.member).sort()).toEqual(['c-0']);
    expect(byName('vdb-shard').map((p) => p.metadata?.member).sort()).toEqual(['shard-0', 'shard-1', 'shard-2']);
    for (const p of pings) expect(p.id.length).toBeGreaterThan(0);

    const coordInfo = await collect<ServiceInfo>(await svc.info('vdb-coord'));
    expect(coordInfo).toHaveLength(1);
    const subjects = coordInfo[0].endpoints.map((e) => e.subject).sort();
    for (const op of ['upsert', 'delete', 'get', 'search', 'count']) expect(subjects).toContain(`vdb.v1.*.${op}`);
    for (const op of ['collections.create', 'collections.drop', 'collections.list', 'describe', 'status']) expect(subjects).toContain(`vdb.v1._admin.${op}`);
    // The API endpoints share queue group vdb-coord; the catch-all for unknown
    // subjects (vdb.v1.>) needs a group of its own so it never takes their requests.
    for (const e of coordInfo[0].endpoints) expect(e.queue_group, e.subject).toBe(e.subject === 'vdb.v1.>' ? 'vdb-coord-unknown' : 'vdb-coord');

    const shardInfo = await collect<ServiceInfo>(await svc.info('vdb-shard'));
    expect(shardInfo).toHaveLength(3);
    const shardSubjects = shardInfo.flatMap((i) => i.endpoints.map((e) => e.subject));
    // The misc collection's three shards are each served by some shard process.
    for (let s = 0; s < 3; s++) expect(shardSubjects).toContain(`vdb.shard.${MISC}.${s}.search`);
  });

  it('two coordinators share the load and answer exactly as one does', async () => {
    await misc();
    const qs = Array.from({ length: 40 }, (_, i) => query(i % Q));
    const strip = (r: SearchReply) => ({ hits: r.hits, partial: r.partial, missing: r.missing });
    const single: unknown[] = [];
    for (const q of qs) single.push(strip(await cl.client.search(MISC, q, { k: K, withPayload: true })));

    const svc = cl.nc.services.client({ strategy: RequestStrategy.Timer, maxWait: 1500 });
    const searches = async () => {
      const out = new Map<string, number>();
      for (const s of await collect<ServiceStats>(await svc.stats('vdb-coord'))) {
        out.set(s.id, s.endpoints?.find((e) => e.name === 'search')?.num_requests ?? 0);
      }
      return out;
    };

    cl.startCoordinator('c-1');
    try {
      await cl.waitMembers(['c-0', 'c-1']);
      const before = await searches();
      expect(before.size, 'vdb-coord instances').toBe(2);
      const double: unknown[] = [];
      for (const q of qs) double.push(strip(await cl.client.search(MISC, q, { k: K, withPayload: true })));
      const after = await searches();
      expect([...after.keys()].sort()).toEqual([...before.keys()].sort());
      const answered = [...after].map(([id, n]) => n - before.get(id)!);
      expect(answered.reduce((a, b) => a + b, 0)).toBe(40);
      for (const n of answered) expect(n, `per-coordinator searches ${answered}`).toBeGreaterThan(0);
      expect(double).toEqual(single);
    } finally {
      await cl.kill('c-1', 'SIGTERM');
    }
  });
});

// ---------------------------------------------------------------------------

describe('cluster: a shard process dies and comes back', () => {
  let cl: TestCluster;
  const NAME = 'fail';
  const N0 = 1000;
  const DEADLINE = 1000;

  beforeAll(async () => {
    cl = await TestCluster.start({ shards: 2, coordinators: 1, deadlineMs: DEADLINE, clientTimeoutMs: 5 * DEADLINE });
  });

  afterAll(async () => {
    await cl?.stop();
  });

  it('searches are partial without it, writes are acknowledged, and it catches up after a restart', async () => {
    await cl.client.createCollection({ name: NAME, dim: DIM, metric: 'l2', partitioner: { kind: 'hash', shards: 2 } });
    await upsertAll(cl, NAME, points(0, N0));
    await cl.waitCount(NAME, N0);

    // Which process serves shard 1, from the shard map.
    const d = await cl.client.describe(NAME);
    const replicas = (d.shardMap as { replicas: string[][] }).replicas;
    expect(replicas).toHaveLength(2);
    const victim = replicas[1][0];
    expect(replicas[0][0], 'the two shards are on different processes').not.toBe(victim);
    const hp = new HashPartitioner(2);
    const stored = new Set<number>(Array.from({ length: N0 }, (_, i) => i));
    const exactIds = (q: Float32Array, keep: (i: number) => boolean) => truth('l2', q, K, (i) => stored.has(i) && keep(i)).map((t) => idOf(t.i));

    // Complete before the kill.
    for (let q = 0; q < 5; q++) {
      const r = await cl.client.search(NAME, query(q), { k: K, exact: true });
      expect(r.partial).toBe(false);
      expect(r.hits.map((h) => h.id)).toEqual(exactIds(query(q), () => true));
    }

    // A shard process that stops answering (SIGSTOP): the coordinator's deadline makes it missing.
    const frozen = cl.proc(victim).child;
    expect(frozen.kill('SIGSTOP')).toBe(true);
    try {
      for (let q = 0; q < 2; q++) {
        for (const exact of [true, false]) {
          const r = await cl.client.search(NAME, query(q), { k: K, exact });
          expect(r.partial, `stopped shard, query ${q} exact=${exact}`).toBe(true);
          expect(r.missing).toEqual([1]);
          for (const h of r.hits) expect(hp.shardOf(h.id), `hit ${String(h.id)} comes from shard 0`).toBe(0);
          if (exact) expect(r.hits.map((h) => h.id)).toEqual(exactIds(query(q), (i) => hp.shardOf(idOf(i)) === 0));
        }
      }
    } finally {
      frozen.kill('SIGCONT');
    }
    await waitFor('complete searches after SIGCONT', async () => ((await cl.client.search(NAME, query(0), { k: K })).partial ? undefined : true), 15_000);

    const how = await cl.kill(victim, 'SIGKILL');
    expect(how.signal).toBe('SIGKILL');

    // Searches answer (within the client's 5 s, the coordinator's deadline being 1 s) with shard 1 missing.
    for (let q = 0; q < 10; q++) {
      for (const exact of [true, false]) {
        const r = await cl.client.search(NAME, query(q), { k: K, exact });
        expect(r.partial, `query ${q} exact=${exact}`).toBe(true);
        expect(r.missing).toEqual([1]);
        for (const h of r.hits) expect(hp.shardOf(h.id), `hit ${String(h.id)} comes from shard 0`).toBe(0);
        if (exact) expect(r.hits.map((h) => h.id)).toEqual(exactIds(query(q), (i) => hp.shardOf(idOf(i)) === 0));
      }
    }
    const partialCount = await cl.rawCount(NAME);
    expect(partialCount.partial).toBe(true);
    expect(partialCount.missing).toEqual([1]);
    expect(partialCount.count).toBe([...stored].filter((i) => hp.shardOf(idOf(i)) === 0).length);

    // Writes while it is down are acknowledged: the log stores them. Once its
    // heartbeat lease has expired, the reply flags the shard as pending.
    await waitFor(`${victim} gone from the live members`, async () => {
      const st = await cl.client.status();
      return (st.members as { name: string }[]).some((m) => m.name === victim) ? undefined : true;
    }, 15_000);
    const added = points(N0, N0 + 200);
    const w = await cl.client.upsert(NAME, added);
    expect(w.count).toBe(200);
    expect(w.pending).toEqual([1]);
    for (let i = N0; i < N0 + 200; i++) stored.add(i);
    const onShard1 = added.filter((p) => hp.shardOf(p.id) === 1);
    expect(onShard1.length).toBeGreaterThan(0);
    expect(Object.keys(w.seqs).sort()).toEqual(['0', '1']);
    const gone = Array.from({ length: 60 }, (_, j) => j * 7).filter((i) => hp.shardOf(idOf(i)) === 1);
    const del = await cl.client.delete(NAME, gone.map(idOf));
    expect(del.seq).toBeGreaterThan(0);
    for (const i of gone) stored.delete(i);
    // A new point on the live shard is found at once (session consistency on shard 0).
    const live0 = added.find((p) => hp.shardOf(p.id) === 0)!;
    const s0 = await cl.client.search(NAME, live0.vector, { k: 1 });
    expect(s0.partial).toBe(true);
    expect(s0.hits[0]).toEqual({ id: live0.id, score: 0 });

    // Restart with the same data directory: it replays the log from where it was.
    cl.startShard(victim);
    await cl.waitCount(NAME, stored.size);
    for (let q = 0; q < 10; q++) {
      const r = await cl.client.search(NAME, query(q), { k: K, exact: true });
      expect(r.partial, `query ${q} after restart: missing ${r.missing}`).toBe(false);
      expect(r.missing).toBeUndefined();
      expect(r.hits.map((h) => h.id)).toEqual(exactIds(query(q), () => true));
    }
    for (const p of onShard1.slice(0, 10)) {
      const r = await cl.client.search(NAME, p.vector, { k: 1 });
      expect(r.partial).toBe(false);
      expect(r.hits[0]).toEqual({ id: p.id, score: 0 });
    }
    const got = await cl.client.get(NAME, [...onShard1.map((p) => p.id), ...gone.map(idOf)], { withVector: false });
    expect(got.points.map((p) => p.id)).toEqual(onShard1.map((p) => p.id));
    cl.checkRunning();
  });

  it('a request above the server max_payload (8 MiB here) is refused by the client, and the cluster is unaffected', async () => {
    expect(cl.nc.info?.max_payload).toBe(8 * MiB);
    const big = encode({ vector: new Uint8Array(8 * MiB + 1024), k: K }, false);
    let err: { code?: string; message?: string } | undefined;
    try {
      await cl.request(`vdb.v1.${NAME}.search`, big, { timeout: 5_000 });
    } catch (e) {
      err = e as { code?: string };
    }
    expect(err, 'the oversized request was not refused').toBeDefined();
    expect(err!.code).toBe('MAX_PAYLOAD_EXCEEDED');
    cl.checkRunning();
    const r = await waitFor('a complete search', async () => {
      const s = await cl.client.search(NAME, query(0), { k: K });
      return s.partial ? undefined : s;
    }, 10_000);
    expect(r.hits).toHaveLength(K);
  });
});
