// Reads and writes through a real cluster (2 shard processes, a coordinator,
// a collection of 2 shards × 2 replicas, a private nats-server):
//  - scroll pages through the collection under concurrent upserts of new ids
//    and deletes of others: every point that existed throughout is seen
//    exactly once, no id twice, in the scroll order;
//  - count, get and scroll read this client's writes at once (session), and
//    any client's at `strong`;
//  - `wait: true` writes are applied by every replica when acknowledged, and
//    say so (applied: false, with the shards) when a replica cannot confirm;
//  - error replies keep their headers and body and count in $SRV.STATS;
//  - /healthz answers 503 while a process is cut from NATS, 200 once back.
// Fails (never skips) without nats-server or dist/.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ErrorCode } from '../ts/errors.js';
import { VdbClient } from '../ts/client.js';
import { decode, encode } from '../ts/wire/codec.js';
import { compareScrollIds } from '../ts/scroll-merge.js';
import type { PointId } from '../ts/validate.js';
import { mulberry32 } from './helpers.js';
import { TestCluster, sleep, waitFor } from './cluster-helpers.js';

const DIM = 4;
const COLL = 'rd';

function vectorOf(id: PointId): Float32Array {
  const rand = mulberry32(typeof id === 'number' ? id + 1 : [...id].reduce((h, c) => (h * 31 + c.charCodeAt(0)) >>> 0, 7));
  return Float32Array.from({ length: DIM }, () => rand() + 0.01);
}
const point = (id: PointId) => ({ id, vector: vectorOf(id), payload: { kind: typeof id, tag: typeof id === 'number' && id % 2 === 0 ? 'even' : 'other' } });

let cl: TestCluster;

beforeAll(async () => {
  // A long deadline: 2 cores shared with other work, and replicas applying backlogs of HNSW inserts.
  cl = await TestCluster.start({ shards: 2, deadlineMs: 10_000, clientTimeoutMs: 30_000 });
  await cl.client.createCollection({ name: COLL, dim: DIM, metric: 'l2', partitioner: { kind: 'hash', shards: 2 }, replicas: 2 });
}, 120_000);

afterAll(async () => {
  await cl?.stop();
});

/** A raw request and its decoded body, with the reply's headers. */
async function raw(subject: string, body: unknown): Promise<{ body: Record<string, unknown>; headers?: { get(k: string): string } }> {
  const m = await cl.request(subject, encode(body, false));
  return { body: decode(m.data, false) as Record<string, unknown>, headers: m.headers };
}

describe('scroll', () => {
  it('sees every point that existed throughout exactly once, under concurrent upserts and deletes', async () => {
    // Integer and string ids; a third of them are deleted while the scroll runs.
    const initial: PointId[] = [];
    for (let i = 0; i < 1500; i++) initial.push(i, `s-${i}`);
    for (let i = 0; i < initial.length; i += 500) await cl.client.upsert(COLL, initial.slice(i, i + 500).map(point));
    const doomed = initial.filter((_, i) => i % 3 === 0);
    const stable = new Set(initial.filter((_, i) => i % 3 !== 0));
    await cl.waitCount(COLL, initial.length);

    let running = true;
    const added = new Set<PointId>();
    let writes = 0;
    const writer = (async () => {
      let next = 0;
      let d = 0;
      // Paced: replicas apply a backlog in long synchronous batches, and a
      // writer far ahead of them would keep every read past its deadline.
      while (running) {
        const fresh = Array.from({ length: 5 }, () => next++).flatMap((i): PointId[] => [100_000 + i, `n-${i}`]);
        await cl.client.upsert(COLL, fresh.map(point));
        for (const id of fresh) added.add(id);
        if (d < doomed.length) await cl.client.delete(COLL, doomed.slice(d, (d += 20)));
        writes++;
        await sleep(30);
      }
    })();

    const seen = new Map<PointId, number>();
    const order: PointId[] = [];
    let after: PointId | undefined;
    let pages = 0;
    let retries = 0;
    try {
      for (;;) {
        // A reader that is not the writer: no session to wait for. A page
        // without some shard is refused, and asked again (as documented).
        let page;
        try {
          page = await cl.client.scroll(COLL, { after, limit: 97, consistency: 'eventual' });
        } catch (e) {
          if ((e as { code?: string }).code !== ErrorCode.SHARD_UNAVAILABLE || ++retries > 20) throw e;
          continue;
        }
        expect(page.points.length).toBeLessThanOrEqual(97);
        for (const p of page.points) {
          seen.set(p.id, (seen.get(p.id) ?? 0) + 1);
          order.push(p.id);
          expect(p.payload).toEqual(point(p.id).payload);
          expect(p.vector).toBeUndefined();
        }
        if (page.next !== undefined && after !== undefined) expect(compareScrollIds(page.next, after)).toBeGreaterThan(0);
        after = page.next;
        pages++;
        if (after === undefined) break;
        await sleep(20); // let the writer interleave with the pages
      }
    } finally {
      running = false;
      await writer;
    }
    expect(writes, 'the writer ran during the scroll').toBeGreaterThan(1);
    expect(pages).toBeGreaterThan(20);
    const twice = [...seen].filter(([, n]) => n > 1).map(([id]) => id);
    expect(twice, 'ids seen more than once').toEqual([]);
    const lost = [...stable].filter((id) => !seen.has(id));
    expect(lost, 'points that existed throughout and were not seen').toEqual([]);
    const unknown = [...seen.keys()].filter((id) => !stable.has(id) && !added.has(id) && !doomed.includes(id));
    expect(unknown).toEqual([]);
    for (let i = 1; i < order.length; i++) expect(compareScrollIds(order[i - 1], order[i])).toBeLessThan(0);
  });

  it('filters, includes vectors when asked, leaves payloads out when asked, and validates', async () => {
    const page = await cl.client.scroll(COLL, { limit: 50, filter: { tag: 'even' }, withVector: true });
    expect(page.points.length).toBe(50);
    for (const p of page.points) {
      expect(p.payload).toEqual({ kind: 'number', tag: 'even' });
      expect(p.vector).toEqual(vectorOf(p.id));
    }
    const bare = await cl.client.scroll(COLL, { limit: 3, withPayload: false });
    expect(bare.points.map((p) => Object.keys(p))).toEqual([['id'], ['id'], ['id']]);
    // After the last integer id come the strings.
    const strings = await cl.client.scroll(COLL, { after: Number.MAX_SAFE_INTEGER, limit: 5 });
    expect(strings.points.every((p) => typeof p.id === 'string')).toBe(true);
    await expect(cl.client.scroll(COLL, { limit: 10_001 })).rejects.toMatchObject({ code: ErrorCode.INVALID_ARGUMENT });
    await expect(cl.client.scroll(COLL, { after: 1.5 })).rejects.toMatchObject({ code: ErrorCode.INVALID_ID });
  });
});

describe('read your writes', () => {
  it('count, get and scroll see this client\'s writes at once (session), and anyone\'s at strong', async () => {
    const base = await cl.client.count(COLL, { consistency: 'strong' });
    const other = new VdbClient(cl.nc, { timeoutMs: 15_000 });
    let total = base;
    for (let round = 0; round < 8; round++) {
      const ids = Array.from({ length: 300 }, (_, i) => `rw-${round}-${i}`);
      await cl.client.upsert(COLL, ids.map(point));
      total += ids.length;
      expect(await cl.client.count(COLL)).toBe(total);
      expect(await other.count(COLL, { consistency: 'strong' })).toBe(total);
      const got = await cl.client.get(COLL, [ids[0], ids[299]], { withVector: false });
      expect(got.points.map((p) => p.id)).toEqual([ids[0], ids[299]]);
      const page = await cl.client.scroll(COLL, { after: `rw-${round}-`, limit: 300 });
      expect(page.points.filter((p) => String(p.id).startsWith(`rw-${round}-`)).length).toBe(300);
    }
    await cl.client.delete(COLL, Array.from({ length: 300 }, (_, i) => `rw-0-${i}`));
    expect(await cl.client.count(COLL)).toBe(total - 300);
  });

  it('wrong-typed read fields are refused with their code', async () => {
    const bad = await raw(`vdb.v1.${COLL}.count`, { afterSeqs: 'x' });
    expect((bad.body.error as { code: string }).code).toBe(ErrorCode.INVALID_ARGUMENT);
    const search = await raw(`vdb.v1.${COLL}.search`, { vector: [1, 2, 3, 4], k: 1, after: 'x' });
    expect((search.body.error as { code: string }).code).toBe(ErrorCode.INVALID_ARGUMENT);
  });
});

describe('wait: true', () => {
  it('acknowledges a write once every replica applied it', async () => {
    const before = (await raw(`vdb.v1.${COLL}.count`, { consistency: 'strong' })).body.count as number;
    for (let round = 0; round < 5; round++) {
      const ids = Array.from({ length: 200 }, (_, i) => 200_000 + round * 1000 + i);
      // A plain request: no session sequences, only the wait.
      const w = await raw(`vdb.v1.${COLL}.upsert`, { points: ids.map(point), wait: true });
      expect(w.body).toMatchObject({ count: 200, applied: true });
      expect(w.body.unconfirmed).toBeUndefined();
      // Every replica of both shards has it: an eventual count from each replica agrees.
      let sum = 0;
      for (const s of [0, 1]) {
        const counts = await Promise.all(['shard-0', 'shard-1'].map(async (m) => (await raw(`vdb.shard.${COLL}.${s}.${m}.count`, {})).body.count as number));
        expect(counts[0]).toBe(counts[1]);
        sum += counts[0];
      }
      expect(sum).toBe(before + 200 * (round + 1));
    }
    const d = await cl.client.delete(COLL, [200_000, 200_001], { wait: true });
    expect(d.applied).toBe(true);
    expect((await cl.client.get(COLL, [200_000, 200_001, 200_002], { consistency: 'eventual' })).points.map((p) => p.id)).toEqual([200_002]);
  });

  it('says applied: false, with the shards, when a live replica cannot confirm in time', async () => {
    const frozen = cl.proc('shard-1').child;
    frozen.kill('SIGSTOP');
    try {
      const w = await cl.client.upsert(COLL, [point(300_000), point(300_001), point(300_002)], { wait: true });
      expect(w.applied).toBe(false);
      expect(w.unconfirmed).toEqual(Object.keys(w.seqs).map(Number).sort());
    } finally {
      frozen.kill('SIGCONT');
    }
    // Acknowledged all the same: it is applied once the replica runs again.
    await waitFor('the write after the freeze', async () => ((await cl.client.get(COLL, [300_002], { consistency: 'strong' })).points.length === 1 ? true : undefined));
    await cl.waitMembers(['shard-0', 'shard-1', 'c-0']);
  });
});

describe('$SRV.STATS', () => {
  it('counts error replies per endpoint, and the replies keep their headers and body', async () => {
    const r = await raw(`vdb.v1.${COLL}.search`, { vector: [1, 2, 3, 4], k: 0 });
    expect(r.body).toMatchObject({ error: { code: ErrorCode.INVALID_K } });
    expect(r.headers?.get('Nats-Service-Error-Code')).toBe('400');
    expect(r.headers?.get('Nats-Service-Error')).toMatch(/^INVALID_K: k:/);
    // A shard endpoint too: a malformed internal request.
    const s = await raw(`vdb.shard.${COLL}.0.shard-0.count`, { minSeq: 'x' });
    expect(s.body).toMatchObject({ error: { code: ErrorCode.BAD_REQUEST } });

    const stats = cl.nc.services.client();
    const endpoint = async (service: string, name: string) => {
      for await (const st of await stats.stats(service)) {
        const e = st.endpoints?.find((x) => x.name === name);
        if (e) return e;
      }
      return undefined;
    };
    const search = await endpoint('vdb-coord', 'search');
    expect(search?.num_errors).toBeGreaterThan(0);
    expect(search?.last_error).toMatch(/INVALID_K/);
    const count = await endpoint('vdb-shard', `${COLL}-0-shard-0-count`);
    expect(count?.num_errors).toBeGreaterThan(0);
    // A good request does not count as an error.
    const upserts = await endpoint('vdb-coord', 'upsert');
    expect(upserts?.num_requests).toBeGreaterThan(0);
    expect(upserts?.num_errors).toBe(0);
  });
});

describe('/healthz', () => {
  it('answers 503 while the process is cut from NATS, and 200 once it is back', async () => {
    const members = (await cl.client.status()).members as { name: string; metricsPort: number }[];
    const ports = ['shard-0', 'c-0'].map((name) => members.find((m) => m.name === name)!.metricsPort);
    const health = async (port: number) => {
      const res = await fetch(`http://127.0.0.1:${port}/healthz`);
      return { status: res.status, body: (await res.json()) as { detail: { nats: { connected: boolean; disconnects: number } } } };
    };
    for (const port of ports) {
      const h = await health(port);
      expect(h.status).toBe(200);
      expect(h.body.detail.nats).toMatchObject({ connected: true, disconnects: 0 });
    }
    const restarted = cl.restartNats(10_000);
    try {
      const down = await Promise.all(ports.map((port) => waitFor('503 while NATS is down', async () => {
        const h = await health(port);
        return h.status === 503 ? h : undefined;
      }, 9000, 100)));
      for (const h of down) expect(h.body.detail.nats.connected).toBe(false);
    } finally {
      await restarted;
    }
    for (const port of ports) {
      const up = await waitFor('200 once NATS is back', async () => {
        const h = await health(port);
        return h.status === 200 ? h : undefined;
      }, 30_000, 200);
      expect(up.body.detail.nats).toMatchObject({ connected: true, disconnects: 1 });
    }
  });
});
