// Replication and failure with real processes and SIGKILL (issue: kill any
// process at any moment and lose nothing acknowledged): a replica killed under
// load, every replica of a shard killed, a replica replaced by the balancer
// after its grace period (copying the shard from a live peer past a compacted
// log), a wiped replica, and session consistency with a frozen replica.
// Replicas are compared through their own subjects (vdb.shard.<c>.<s>.<member>.*).

import { afterEach, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import type { Hit, Point, PointId } from '../ts/collection.js';
import { HashPartitioner } from '../ts/partition/index.js';
import { decode, encode, float32Bytes } from '../ts/wire/codec.js';
import { clusteredData, row } from './helpers.js';
import { CLI, TestCluster, sleep, waitFor } from './cluster-helpers.js';

const DIM = 16;
const N = 4000;
const { data, queries } = clusteredData({ n: N, queries: 20, dim: DIM, clusters: 16, seed: 29 });
const idOf = (i: number): PointId => (i % 2 ? `p${i}` : i);
const point = (i: number): Point => ({ id: idOf(i), vector: row(data, DIM, i % N), payload: { i, label: `l${i % 5}` } });
const points = (from: number, to: number) => Array.from({ length: to - from }, (_, j) => point(from + j));

let cl: TestCluster | undefined;
afterEach(async () => {
  await cl?.stop();
  cl = undefined;
});

interface ReplicaView { count: number; seq: number }

/** A request to one replica's own subject; throws on an error reply. */
async function direct(c: string, s: number, member: string, op: string, body: Record<string, unknown>): Promise<Record<string, unknown>> {
  const m = await cl!.request(`vdb.shard.${c}.${s}.${member}.${op}`, encode(body, false), { timeout: 10_000 });
  const r = decode(m.data, false) as Record<string, unknown> & { error?: { code: string; message: string } };
  if (r.error) throw Object.assign(new Error(`${member} ${op}: ${r.error.code}: ${r.error.message}`), { code: r.error.code });
  return r;
}

async function replicaSearch(c: string, s: number, member: string, q: number, exact: boolean): Promise<Hit[]> {
  const r = await direct(c, s, member, 'search', { vector: float32Bytes(row(queries, DIM, q)), k: 10, ef: 16, exact });
  return r.hits as Hit[];
}

async function shardMap(c: string): Promise<string[][]> {
  return ((await cl!.client.describe(c)).shardMap as { replicas: string[][] }).replicas;
}

async function logSeq(c: string, s: number): Promise<number> {
  const st = await cl!.client.status() as { collections: { name: string; shards: { shard: number; logSeq: number }[] }[] };
  return st.collections.find((x) => x.name === c)!.shards[s].logSeq;
}

/** Waits until every replica of every shard has applied its whole log, then asserts they hold the same points and answer alike. */
async function expectReplicasIdentical(c: string, opts: { ann?: boolean; queries?: number } = {}): Promise<void> {
  const map = await shardMap(c);
  for (const [s, members] of map.entries()) {
    const last = await logSeq(c, s);
    const views = await waitFor(`every replica of ${c}/${s} at sequence ${last}`, async () => {
      const v = await Promise.all(members.map((m) => direct(c, s, m, 'count', {}) as Promise<unknown> as Promise<ReplicaView>));
      return v.every((x) => x.seq === last) ? v : undefined;
    }, 60_000, 200, () => cl!.logs());
    for (const v of views) expect(v.count, `${c}/${s}: counts of ${members.join(', ')}`).toBe(views[0].count);
    for (let q = 0; q < (opts.queries ?? 10); q++) {
      for (const exact of opts.ann ? [true, false] : [true]) {
        const [first, ...rest] = await Promise.all(members.map((m) => replicaSearch(c, s, m, q, exact)));
        for (const [i, hits] of rest.entries()) expect(hits, `${c}/${s} query ${q} exact=${exact}: ${members[i + 1]} vs ${members[0]}`).toEqual(first);
      }
    }
  }
}

describe('replication', () => {
  it('a replica killed with SIGKILL during writes and reads: no acknowledged write lost, reads stay complete, replicas end identical', async () => {
    cl = await TestCluster.start({ shards: 3 });
    await cl.client.createCollection({ name: 'r', dim: DIM, metric: 'l2', partitioner: { kind: 'hash', shards: 2 }, replicas: 2 });
    const map = await shardMap('r');
    expect(map).toEqual([['shard-0', 'shard-1'], ['shard-1', 'shard-2']]);
    for (let b = 0; b < 1000; b += 250) await cl.client.upsert('r', points(b, b + 250));

    const acked = new Set<PointId>();
    const searches = { done: 0, partial: 0, seen: [] as string[] };
    const t0 = Date.now();
    let next = 1000;
    let stop = false;
    const writer = (async () => {
      while (!stop) {
        const batch = points(next, next + 10);
        next += 10;
        await cl!.client.upsert('r', batch);
        for (const p of batch) acked.add(p.id);
      }
    })();
    const reader = (async () => {
      for (let q = 0; !stop; q++) {
        const r = await cl!.client.search('r', row(queries, DIM, q % 20), { k: 10 });
        searches.done++;
        if (r.partial) {
          searches.partial++;
          searches.seen.push(`at ${Date.now() - t0} ms: missing ${JSON.stringify(r.missing)} after ${Math.round(r.tookMs)} ms`);
        }
      }
    })();
    await sleep(1000);
    await cl.kill('shard-1', 'SIGKILL');
    const before = searches.done;
    // At least 2.5 s and 20 searches with the replica down, however loaded the machine.
    await sleep(2500);
    await waitFor('20 searches during the outage', async () => (searches.done - before >= 20 ? true : undefined), 60_000);
    cl.startShard('shard-1');
    await sleep(1500);
    stop = true;
    await Promise.all([writer, reader]);

    expect(acked.size, 'writes were acknowledged during the run').toBeGreaterThan(50);
    expect(searches.partial, `${searches.partial} of ${searches.done} searches were partial with a live replica for every shard (kill at 1000 ms, restart at 3500 ms): ${searches.seen.join('; ')}\n${cl.logs()}`).toBe(0);
    await expectReplicasIdentical('r');
    const got = await cl.client.get('r', [...acked], { withVector: false });
    expect(got.points.length, 'every acknowledged point is stored').toBe(acked.size);
    expect(await cl.client.count('r')).toBe(next);
  });

  it('every replica of a shard killed: writes are still acknowledged, searches say partial, and after a restart everything is there', async () => {
    cl = await TestCluster.start({ shards: 3, deadlineMs: 1000 });
    await cl.client.createCollection({ name: 'r', dim: DIM, metric: 'l2', partitioner: { kind: 'hash', shards: 2 }, replicas: 2 });
    await cl.client.upsert('r', points(0, 500));
    await cl.waitCount('r', 500);
    await Promise.all([cl.kill('shard-1', 'SIGKILL'), cl.kill('shard-2', 'SIGKILL')]);
    const w = await cl.client.upsert('r', points(500, 800));
    expect(w.count).toBe(300);
    const d = await cl.client.delete('r', points(0, 100).map((p) => p.id));
    expect(d.count).toBe(100);
    const r = await cl.client.search('r', row(queries, DIM, 0), { k: 10, consistency: 'eventual' });
    expect(r.partial).toBe(true);
    expect(r.missing).toEqual([1]);
    const hp = new HashPartitioner(2);
    for (const h of r.hits) expect(hp.shardOf(h.id)).toBe(0);
    cl.startShard('shard-1');
    cl.startShard('shard-2');
    await cl.waitCount('r', 700);
    await expectReplicasIdentical('r');
    const got = await cl.client.get('r', points(0, 800).map((p) => p.id), { withVector: false });
    expect(got.points.map((p) => p.id)).toEqual(points(100, 800).map((p) => p.id));
  });

  it('the balancer replaces a replica gone past its grace period; the new one copies the shard past a compacted log and answers exactly as its peer; so does a wiped one', async () => {
    cl = await TestCluster.start({ shards: 3, coordinatorArgs: ['--grace-ms', '1500', '--compact-after', '50'] });
    await cl.client.createCollection({ name: 'r', dim: DIM, metric: 'cosine', partitioner: { kind: 'hash', shards: 1 }, replicas: 2 });
    expect(await shardMap('r')).toEqual([['shard-0', 'shard-1']]);
    for (let b = 0; b < 2000; b += 20) await cl.client.upsert('r', points(b, b + 20));
    await cl.client.delete('r', points(0, 50).map((p) => p.id));
    const firstSeq = async () => {
      const st = await cl!.client.status() as { collections: { shards: { firstSeq: number }[] }[] };
      return st.collections[0].shards[0].firstSeq;
    };
    await waitFor('the log compacted', async () => ((await firstSeq()) > 1 ? true : undefined), 30_000, 200, () => cl!.logs());

    await cl.kill('shard-1', 'SIGKILL');
    await waitFor('shard-2 in the shard map', async () => ((await shardMap('r'))[0].includes('shard-2') ? true : undefined), 30_000, 200, () => cl!.logs());
    expect((await shardMap('r'))[0]).toEqual(['shard-0', 'shard-2']);
    await cl.client.upsert('r', points(2000, 2100));
    await expectReplicasIdentical('r', { ann: true, queries: 20 });
    expect(cl.proc('shard-2').lines.some((l) => l.includes('copied r/0 from shard-0'))).toBe(true);

    // A wiped replica: its data directory is gone when it restarts.
    await cl.kill('shard-0', 'SIGTERM');
    rmSync(join(cl.dir, 'shard-0'), { recursive: true, force: true });
    await cl.client.upsert('r', points(2100, 2200));
    cl.startShard('shard-0');
    await expectReplicasIdentical('r', { ann: true, queries: 20 });
    expect(cl.proc('shard-0').lines.some((l) => l.includes('copied r/0 from shard-2'))).toBe(true);
    expect(await cl.client.count('r')).toBe(2150);
    const st = await cl.client.status() as { balancer: { done: string[] } };
    expect(st.balancer.done.some((l) => l.includes('shard-2 replaces it'))).toBe(true);

    // `vdb status` shows each replica with its applied sequence and lag, and the balancer's work.
    await waitFor('both replicas in the heartbeats at the log end', async () => {
      const s2 = await cl!.client.status() as { collections: { shards: { replicas: { lag: number | null }[] }[] }[] };
      return s2.collections[0].shards[0].replicas.every((r) => r.lag === 0) ? true : undefined;
    });
    const out = spawnSync(process.execPath, [CLI, 'status', '--nats', cl.natsUrl, '--creds', cl.credentials.files.reader], { encoding: 'utf8', timeout: 30_000 });
    expect(out.status, out.stderr).toBe(0);
    expect(out.stdout).toMatch(/collection r:\n {2}shard 0: 2150 points, log \d+\.\.\d+/);
    expect(out.stdout).toMatch(/shard-0 +live {2}applied \d+ {2}lag 0/);
    expect(out.stdout).toMatch(/shard-2 +live {2}applied \d+ {2}lag 0/);
    expect(out.stdout).toMatch(/balancer: c-0\n/);
    expect(out.stdout).toMatch(/\n {2}done: \d{4}-/);
  });

  for (const kind of ['hash', 'spatial', 'semantic'] as const) it(`a ${kind} shard split under writes and searches: no point lost or duplicated, and exact results the same before and after`, async () => {
    cl = await TestCluster.start({ shards: 2, coordinatorArgs: ['--split-at', '1500'] });
    const partitioner = kind === 'hash' ? { kind, shards: 1 }
      : kind === 'spatial' ? { kind, shards: 2, sample: Array.from({ length: 400 }, (_, i) => row(data, DIM, i * 7)) }
        : { kind, shards: 1, field: 'label' };
    await cl.client.createCollection({ name: 'r', dim: DIM, metric: 'l2', partitioner, replicas: 1 });
    const initialShards = partitioner.shards;
    for (let b = 0; b < 1200; b += 200) await cl.client.upsert('r', points(b, b + 200));
    const exact = async () => Promise.all([0, 1, 2, 3, 4].map(async (q) => (await cl!.client.search('r', row(queries, DIM, q), { k: 10, exact: true })).hits.map((h) => h.id)));

    // Writes that cross the threshold and go on while the shard splits; searches all along.
    const stored = new Set<PointId>(points(0, 1200).map((p) => p.id));
    let next = 1200;
    let stop = false;
    const searches = { done: 0, partial: 0, seen: [] as string[] };
    const writer = (async () => {
      while (!stop) {
        const batch = points(next, next + 20);
        next += 20;
        await cl!.client.upsert('r', batch);
        for (const p of batch) stored.add(p.id);
        await sleep(10);
        if (next % 200 === 0) {
          const gone = batch.slice(0, 5).map((p) => p.id);
          await cl!.client.delete('r', gone);
          for (const id of gone) stored.delete(id);
        }
      }
    })();
    const reader = (async () => {
      for (let q = 0; !stop; q++) {
        const r = await cl!.client.search('r', row(queries, DIM, q % 20), { k: 10 });
        searches.done++;
        if (r.partial) {
          searches.partial++;
          searches.seen.push(`missing ${JSON.stringify(r.missing)} after ${Math.round(r.tookMs)} ms, map ${JSON.stringify(await shardMap('r').catch(() => null))}`);
        }
      }
    })();
    try {
      await waitFor('the split', async () => ((await shardMap('r')).length > initialShards ? true : undefined), 60_000, 200, () => cl!.logs());
      await sleep(1000);
    } finally {
      stop = true;
      await Promise.all([writer, reader]);
    }
    expect(searches.partial, `searches during the split were complete: ${searches.seen.join('; ')}\n${cl.logs()}`).toBe(0);
    expect(searches.done).toBeGreaterThan(0);
    const before = await exact();

    // Every shard has applied its log (the retain included): each stored id is in exactly one shard.
    await expectReplicasIdentical('r');
    const map = await shardMap('r');
    const held = await Promise.all(map.map(async (members, s) => {
      const r = await direct('r', s, members[0], 'get', { ids: points(0, next).map((p) => p.id), withVector: false });
      return (r.points as { id: PointId }[]).map((p) => p.id);
    }));
    const all = held.flat();
    expect(all.length, `no id is on two shards (per shard: ${held.map((h) => h.length).join(', ')})\n${cl.logs()}`).toBe(new Set(all).size);
    expect(new Set(all)).toEqual(stored);
    expect(held[initialShards].length, 'the new shard holds part of the points').toBeGreaterThan(0);
    expect(await cl.client.count('r')).toBe(stored.size);
    expect(await exact()).toEqual(before);
    const st = await cl.client.status() as { balancer: { done: string[] } };
    expect(st.balancer.done.some((l) => l.includes('split done'))).toBe(true);
  });

  it('entries in the log that no replica can apply are skipped alike by every replica and recorded; every later entry is applied', async () => {
    cl = await TestCluster.start({ shards: 2 });
    await cl.client.createCollection({ name: 'r', dim: DIM, metric: 'cosine', partitioner: { kind: 'hash', shards: 1 }, replicas: 2 });
    await cl.client.upsert('r', points(0, 10));
    // Through the API, a point no replica would apply is refused before it is acknowledged.
    const refused = await cl.client.upsert('r', [{ id: 'zero', vector: new Float32Array(DIM) }]).catch((e: { code?: string }) => e);
    expect((refused as { code?: string }).code).toBe('INVALID_VECTOR');
    // Published straight into the log, as an older version or a stray client could have.
    const poison = [
      new Uint8Array([0xc1, 0xff, 0x00]), // not MessagePack
      encode({ op: 'rename', ids: [1] }, false), // no such kind
      encode({ op: 'upsert', points: [{ id: 'zero', vector: float32Bytes(new Float32Array(DIM)) }] }, false), // no cosine
      encode({ op: 'upsert', points: [{ id: 'short', vector: float32Bytes(new Float32Array(DIM - 1).fill(1)) }] }, false),
      encode({ op: 'upsert', points: [{ id: 'nan', vector: float32Bytes(new Float32Array(DIM).fill(Number.NaN)) }] }, false),
      encode({ op: 'delete', ids: [{ x: 1 }] }, false),
      encode({ op: 'upsert', points: 'x' }, false),
      encode({ op: 'retain', partitioner: { kind: 'nope' }, shard: 0 }, false),
    ];
    const js = cl.nc.jetstream();
    for (const b of poison) await js.publish('vdb.log.r.0', b);
    await cl.client.upsert('r', points(10, 20));
    await cl.client.delete('r', [idOf(0)]);
    await expectReplicasIdentical('r', { ann: true });
    expect(await cl.client.count('r')).toBe(19);

    type Status = { members: { name: string; metricsPort: number }[]; collections: { shards: { replicas: { member: string; applied: number; lag: number; skipped: number; failed?: string }[] }[] }[] };
    const last = poison.length + 3;
    // vdb status reads heartbeats: they follow within a second.
    const st = await waitFor('status showing both replicas at the end of the log', async () => {
      const x = await cl!.client.status() as Status;
      return x.collections[0].shards[0].replicas.every((r) => r.applied === last) ? x : undefined;
    });
    const replicas = st.collections[0].shards[0].replicas;
    expect(replicas.map((r) => [r.applied, r.lag, r.skipped, r.failed])).toEqual([[last, 0, poison.length, undefined], [last, 0, poison.length, undefined]]);
    for (const m of st.members.filter((x) => x.name.startsWith('shard-'))) {
      expect((await fetch(`http://127.0.0.1:${m.metricsPort}/healthz`)).status, `${m.name} healthy`).toBe(200);
      const text = await (await fetch(`http://127.0.0.1:${m.metricsPort}/metrics`)).text();
      expect(text, `${m.name} /metrics`).toMatch(new RegExp(`vdb_shard_skipped_entries\\{collection="r",shard="0"\\} ${poison.length}\\b`));
    }
    for (const name of ['shard-0', 'shard-1']) {
      const lines = cl.proc(name).lines.join('\n');
      expect(lines).toContain('log entry 2 skipped: BAD_REQUEST: log entry 2 cannot be decoded');
      expect(lines).toContain('log entry 4 skipped: INVALID_VECTOR');
    }
    cl.checkRunning();
  });

  it('session consistency: a search right after an acknowledged upsert sees it, also with one replica frozen', async () => {
    cl = await TestCluster.start({ shards: 2 });
    await cl.client.createCollection({ name: 'r', dim: DIM, metric: 'l2', partitioner: { kind: 'hash', shards: 2 }, replicas: 2 });
    await cl.client.upsert('r', points(0, 1000));
    const check = async (i: number) => {
      // Far from every other point, so it is the only nearest neighbour of its own vector.
      const p = { id: `fresh-${i}`, vector: new Float32Array(DIM).fill(100 + i) };
      await cl!.client.upsert('r', [p]);
      const r = await cl!.client.search('r', p.vector, { k: 1 });
      expect(r.partial, `search right after the upsert of ${p.id}: ${JSON.stringify(r)}`).toBe(false);
      expect(r.hits[0]?.id, `search right after the upsert of ${p.id}`).toBe(p.id);
    };
    for (let i = 0; i < 20; i++) await check(i);
    const frozen = cl.proc('shard-1').child;
    frozen.kill('SIGSTOP');
    try {
      for (let i = 20; i < 30; i++) await check(i);
    } finally {
      frozen.kill('SIGCONT');
    }
    // A replica asked for a sequence it cannot reach in time says so with a code.
    const err = await direct('r', 0, 'shard-0', 'search', { vector: float32Bytes(row(queries, DIM, 0)), k: 1, minSeq: 1e9, waitMs: 50 }).catch((e: Error & { code?: string }) => e);
    expect((err as { code?: string }).code).toBe('LAGGING');
  });
});
