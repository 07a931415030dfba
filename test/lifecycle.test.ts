// A collection's metadata through its life, with real processes and a real
// nats-server: a replica of a split shard replaced by the balancer keeps the
// split (the partitioner, every log, every acknowledged id); a drop removes the
// replicas' stores, also on a replica that was down during it, and the name
// created again is a new, empty collection; a create cut short can be dropped
// and created again.

import { afterEach, describe, expect, it } from 'vitest';
import type { JetStreamManager } from 'nats';
import type { Point, PointId } from '../ts/collection.js';
import { Collection } from '../ts/collection.js';
import { HashPartitioner, partitionerFromJSON } from '../ts/partition/index.js';
import { decode, encode } from '../ts/wire/codec.js';
import { Meta, addLogStream, storeName, parseStoreName } from '../cluster/meta.js';
import { names } from '../cluster/subjects.js';
import { logStreams, planCollection } from '../cluster/collections-admin.js';
import { join } from 'node:path';
import { clusteredData, row } from './helpers.js';
import { TestCluster, sleep, waitFor } from './cluster-helpers.js';

const DIM = 16;
const N = 3000;
const { data, queries } = clusteredData({ n: N, queries: 10, dim: DIM, clusters: 12, seed: 41 });
const idOf = (i: number): PointId => (i % 2 ? `p${i}` : i);
const point = (i: number, dim = DIM): Point => ({ id: idOf(i), vector: dim === DIM ? row(data, DIM, i % N) : row(data, DIM, i % N).subarray(0, dim), payload: { i } });
const points = (from: number, to: number, dim = DIM) => Array.from({ length: to - from }, (_, j) => point(from + j, dim));
const n = names();

let cl: TestCluster | undefined;
afterEach(async () => {
  await cl?.stop();
  cl = undefined;
});

interface MapView { epoch: number; uid?: string; replicas: string[][]; partitioner?: unknown; split?: unknown; retain?: unknown; settle?: unknown }

const shardMap = async (c: string) => (await cl!.client.describe(c)).shardMap as MapView;

async function direct(c: string, s: number, member: string, op: string, body: Record<string, unknown>): Promise<Record<string, unknown>> {
  const m = await cl!.request(`vdb.shard.${c}.${s}.${member}.${op}`, encode(body, false), { timeout: 10_000 });
  const r = decode(m.data, false) as Record<string, unknown> & { error?: { code: string; message: string } };
  if (r.error) throw new Error(`${member} ${op}: ${r.error.code}: ${r.error.message}`);
  return r;
}

/** Each log stream of a collection with its first and last sequence and message count. */
async function streams(jsm: JetStreamManager, c: string): Promise<Record<string, { first: number; last: number; messages: number }>> {
  const out: Record<string, { first: number; last: number; messages: number }> = {};
  for (const s of await logStreams(jsm, n, c)) {
    const { state } = await jsm.streams.info(s);
    out[s] = { first: state.first_seq, last: state.last_seq, messages: state.messages };
  }
  return out;
}

/** Waits until no count of `c` is partial and the total is `want` (processes may be down on purpose). */
async function waitTotal(c: string, want: number): Promise<void> {
  await waitFor(`count(${c}) = ${want}`, async () => {
    const r = await cl!.rawCount(c);
    return r.count === want && !r.partial ? true : undefined;
  }, 60_000, 200, () => cl!.logs());
}

const exact = async (c: string, dim = DIM) => Promise.all([0, 1, 2, 3, 4].map(async (q) =>
  (await cl!.client.search(c, row(queries, DIM, q).subarray(0, dim), { k: 10, exact: true })).hits.map((h) => h.id)));

describe('collection lifecycle', () => {
  it('a replica of a split shard, killed and replaced after its grace period: the map keeps the split, no log is deleted, routing and exact results are unchanged, no acknowledged id lost', async () => {
    cl = await TestCluster.start({ shards: 3, coordinatorArgs: ['--split-at', '1500', '--grace-ms', '1500'] });
    await cl.client.createCollection({ name: 'r', dim: DIM, metric: 'l2', partitioner: { kind: 'hash', shards: 1 }, replicas: 2 });
    const acked = new Set<PointId>();
    for (let b = 0; b < 2000; b += 100) {
      await cl.client.upsert('r', points(b, b + 100));
      for (const p of points(b, b + 100)) acked.add(p.id);
    }
    // The split, finished: two shards, the split partitioner, no step pending.
    const split = await waitFor('the split to finish', async () => {
      const m = await shardMap('r');
      return m.replicas.length === 2 && !m.split && !m.retain && !m.settle ? m : undefined;
    }, 120_000, 250, () => cl!.logs());
    expect(split.partitioner, 'the split partitioner is in the map').toBeDefined();
    for (let b = 2000; b < 2200; b += 50) {
      await cl.client.upsert('r', points(b, b + 50));
      for (const p of points(b, b + 50)) acked.add(p.id);
    }
    await waitTotal('r', acked.size);
    const jsm = await cl.nc.jetstreamManager();
    const logsBefore = await streams(jsm, 'r');
    expect(Object.keys(logsBefore)).toEqual([n.stream('r', 0), n.stream('r', 1)]);
    const before = await exact('r');

    const victim = split.replicas[1][0];
    const peer = split.replicas[1][1];
    await cl.kill(victim, 'SIGKILL');
    const after = await waitFor(`${victim} replaced in r/1`, async () => {
      const m = await shardMap('r');
      return m.replicas[1].includes(victim) ? undefined : m;
    }, 60_000, 250, () => cl!.logs());
    const spare = after.replicas[1].find((r) => r !== peer)!;
    expect(after.replicas[1]).toEqual([spare, peer]);
    expect(after.partitioner, 'the replacement kept the split partitioner').toEqual(split.partitioner);
    expect(after.uid).toBe(split.uid);
    expect(after.replicas[0]).toEqual(split.replicas[0]);
    expect(after.epoch).toBeGreaterThan(split.epoch);
    const st = await cl.client.status() as { balancer: { done: string[] } };
    expect(st.balancer.done.some((l) => l.includes(`${spare} replaces it`))).toBe(true);

    // The new replica copies r/1 and holds what its peer holds.
    await waitFor(`${spare} serving r/1 as ${peer} does`, async () => {
      const [a, b] = await Promise.all([direct('r', 1, spare, 'count', {}), direct('r', 1, peer, 'count', {})]);
      return a.count === b.count && a.seq === b.seq ? true : undefined;
    }, 60_000, 250, () => cl!.logs());
    expect(await exact('r'), 'exact results after the replacement').toEqual(before);
    expect(await cl.client.count('r')).toBe(acked.size);

    // Writes after the replacement are routed by the split partitioner: each id lands on its own shard.
    for (let b = 2200; b < 2400; b += 50) {
      await cl.client.upsert('r', points(b, b + 50));
      for (const p of points(b, b + 50)) acked.add(p.id);
    }
    await waitTotal('r', acked.size);
    const p = partitionerFromJSON(after.partitioner as never) as HashPartitioner;
    expect(p).toBeInstanceOf(HashPartitioner);
    const ids = points(2200, 2400).map((x) => x.id);
    for (const s of [0, 1]) {
      for (const member of after.replicas[s]) {
        const want = ids.filter((id) => p.shardOf(id) === s).map(String).sort();
        const held = await waitFor(`${member} holding the new ids of r/${s}`, async () => {
          const got = ((await direct('r', s, member, 'get', { ids, withVector: false })).points as { id: PointId }[]).map((x) => String(x.id)).sort();
          return got.length >= want.length ? got : undefined;
        }, 30_000, 200, () => cl!.logs());
        expect(held, `${member}: r/${s} holds exactly the new ids the split partitioner places on it`).toEqual(want);
      }
    }

    // No log deleted or emptied: each still holds at least what it held.
    const logsAfter = await streams(jsm, 'r');
    expect(Object.keys(logsAfter)).toEqual(Object.keys(logsBefore));
    for (const [s, v] of Object.entries(logsBefore)) {
      expect(logsAfter[s].first, s).toBe(v.first);
      expect(logsAfter[s].last, s).toBeGreaterThanOrEqual(v.last);
      expect(logsAfter[s].messages, s).toBeGreaterThanOrEqual(v.messages);
    }
    expect((await shardMap('r')).partitioner).toEqual(split.partitioner);
    const got = await cl.client.get('r', [...acked], { withVector: false });
    expect(got.points.length, 'every acknowledged id is there').toBe(acked.size);
    expect(await cl.client.count('r')).toBe(acked.size);
  });

  it('drop, with a replica down, then create the same name with another dim: a new empty collection; no replica keeps a row of the old one', async () => {
    cl = await TestCluster.start({ shards: 3 });
    const created = await cl.client.createCollection({ name: 'd', dim: DIM, metric: 'l2', partitioner: { kind: 'hash', shards: 2 }, replicas: 2 });
    const oldUid = created.uid as string;
    expect(oldUid).toMatch(/^[0-9a-f]{12}$/);
    await cl.client.upsert('d', points(0, 300));
    await waitTotal('d', 300);
    const placed = (created.shardMap as MapView).replicas;
    // Every replica has opened its store and applied every write.
    const jsm = await cl.nc.jetstreamManager();
    for (const [s, members] of placed.entries()) {
      const last = (await jsm.streams.info(n.stream('d', s))).state.last_seq;
      await waitFor(`every replica of d/${s} at sequence ${last}`, async () => {
        const v = await Promise.all(members.map((m) => direct('d', s, m, 'count', {})));
        return v.every((x) => x.seq === last) ? true : undefined;
      }, 60_000, 200, () => cl!.logs());
    }
    // A replica holding both shards goes down before the drop.
    const down = placed[0].find((r) => placed[1].includes(r))!;
    await cl.kill(down, 'SIGKILL');
    expect(await cl.client.dropCollection('d')).toEqual({ dropped: 'd' });
    expect(await logStreams(jsm, n, 'd')).toEqual([]);
    await waitFor('d gone from the list', async () => ((await cl!.client.listCollections()).includes('d') ? undefined : true), 10_000);
    const up = ['shard-0', 'shard-1', 'shard-2'].filter((m) => m !== down);
    for (const m of up) {
      await waitFor(`${m} removing its stores of d`, async () => (cl!.proc(m).lines.some((l) => l.includes(`removed d__${oldUid}__`)) ? true : undefined), 60_000, 200, () => cl!.logs());
    }
    // They stopped serving it: their own subjects for d say so (no answer from a closed store).
    for (const [s, members] of placed.entries()) {
      for (const m of members.filter((x) => x !== down)) {
        await expect(direct('d', s, m, 'count', {}), `${m} d/${s}`).rejects.toThrow(/SHARD_UNAVAILABLE/);
      }
    }

    const again = await cl.client.createCollection({ name: 'd', dim: 8, metric: 'l2', partitioner: { kind: 'hash', shards: 2 }, replicas: 2 });
    const newUid = again.uid as string;
    expect(newUid).not.toBe(oldUid);
    expect(again.dim).toBe(8);
    await waitTotal('d', 0);
    expect((await cl.client.get('d', points(0, 300).map((x) => x.id), { withVector: false })).points).toEqual([]);
    await cl.client.upsert('d', points(1000, 1100, 8));
    await waitTotal('d', 100);
    const hits = (await cl.client.search('d', row(queries, DIM, 0).subarray(0, 8), { k: 10, exact: true })).hits;
    expect(hits).toHaveLength(10);
    for (const h of hits) expect(points(1000, 1100, 8).map((x) => x.id)).toContain(h.id);

    // The replica that was down comes back: it removes its stores of the dropped incarnation on start.
    cl.startShard(down);
    await cl.waitMembers([down]);
    await waitFor(`${down} removing its stores of d`, async () => (cl!.proc(down).lines.some((l) => l.includes(`removed d__${oldUid}__`)) ? true : undefined), 60_000, 200, () => cl!.logs());
    expect(await cl.client.count('d')).toBe(100);

    // Every data directory, read once its process has stopped: of d, only stores of the new incarnation.
    for (const m of ['shard-0', 'shard-1', 'shard-2']) await cl.kill(m, 'SIGTERM');
    let rows = 0;
    for (const m of ['shard-0', 'shard-1', 'shard-2']) {
      const dir = join(cl.dir, m);
      for (const name of Collection.storedNames(dir)) {
        const r = parseStoreName(name);
        if (r?.collection !== 'd') continue;
        expect(r.uid, `${m} holds ${name}`).toBe(newUid);
        const c = Collection.open(dir, { name });
        expect(c.dim).toBe(8);
        rows += c.count();
        c.close();
      }
      expect(Collection.storedSeq(dir, storeName('d', oldUid, 0))).toBe(0);
      expect(Collection.storedSeq(dir, storeName('d', oldUid, 1))).toBe(0);
    }
    expect(rows, 'two replicas of 100 points').toBe(200);
  });

  it('a create cut short after its logs and shard map can be dropped, and created again over', async () => {
    cl = await TestCluster.start({ shards: 2 });
    const meta = await Meta.open(cl.nc, n);
    const jsm = await cl.nc.jetstreamManager();
    try {
      // What a coordinator killed between the shard map and the collection entry leaves.
      const halfCreate = async (dim: number) => {
        const { map } = planCollection({ name: 'h', dim, metric: 'l2', partitioner: { kind: 'hash', shards: 2 }, replicas: 1 }, ['shard-0', 'shard-1']);
        for (let s = 0; s < 2; s++) await addLogStream(jsm, n, 'h', s, 1);
        await cl!.nc.jetstream().publish(n.log('h', 0), encode({ op: 'upsert', points: [{ id: 'ghost', vector: new Uint8Array(4 * dim) }] }, false));
        await meta.shardmaps.put('h', new TextEncoder().encode(JSON.stringify(map)));
      };
      await halfCreate(4);
      await expect(cl.client.describe('h')).rejects.toMatchObject({ code: 'COLLECTION_NOT_FOUND' });
      await expect(cl.client.count('h')).rejects.toMatchObject({ code: 'COLLECTION_NOT_FOUND' });
      expect(await cl.client.dropCollection('h')).toEqual({ dropped: 'h' });
      expect(await logStreams(jsm, n, 'h')).toEqual([]);
      expect(await meta.shardMap('h')).toBeUndefined();
      await expect(cl.client.dropCollection('h')).rejects.toMatchObject({ code: 'COLLECTION_NOT_FOUND' });

      // Cut short again, then created over without a drop: the leftovers (the ghost write in the old log) are gone.
      await halfCreate(4);
      await sleep(500); // the shard processes see the leftover map (and must not serve it)
      await cl.client.createCollection({ name: 'h', dim: DIM, metric: 'l2', partitioner: { kind: 'hash', shards: 2 }, replicas: 1 });
      await waitTotal('h', 0);
      expect((await cl.client.get('h', ['ghost'])).points).toEqual([]);
      await cl.client.upsert('h', points(0, 200));
      await waitTotal('h', 200);
      expect((await cl.client.search('h', row(queries, DIM, 1), { k: 5 })).hits).toHaveLength(5);
      await waitFor('h in the list', async () => ((await cl!.client.listCollections()).includes('h') ? true : undefined), 10_000);
    } finally {
      meta.close();
    }
  });

  it('collections dropped while their replicas are starting leave every shard process serving what it is given next', async () => {
    cl = await TestCluster.start({ shards: 3 });
    // Each drop races the replicas' start of the shards just created.
    for (let i = 0; i < 15; i++) {
      await cl.client.createCollection({ name: `q${i}`, dim: DIM, metric: 'l2', partitioner: { kind: 'hash', shards: 3 }, replicas: 2 });
      await cl.client.dropCollection(`q${i}`);
    }
    await cl.client.createCollection({ name: 'final', dim: DIM, metric: 'l2', partitioner: { kind: 'hash', shards: 3 }, replicas: 2 });
    await cl.client.upsert('final', points(0, 300));
    type Status = { members: { name: string; shards?: Record<string, number> }[]; collections: { name: string; shards: { replicas: { member: string; applied: number | null }[] }[] }[] };
    const st = await waitFor('every replica of final applying its log', async () => {
      const x = await cl!.client.status() as Status;
      const f = x.collections.find((c) => c.name === 'final');
      return f && f.shards.every((sh) => sh.replicas.every((r) => r.applied !== null && r.applied > 0)) ? x : undefined;
    }, 60_000, 200, () => cl!.logs());
    // No process still serves a dropped collection.
    for (const m of st.members) expect(Object.keys(m.shards ?? {}).filter((k) => !k.startsWith('final/')), m.name).toEqual([]);
    expect(await cl.client.count('final')).toBe(300);
  });
});
