// Capacity is checked before the acknowledgement, with real processes and a
// real nats-server: shard processes with small limits (--max-index-mb,
// --max-points) are filled until a write is refused with RESOURCE_EXHAUSTED
// naming the limit; every write acknowledged before is applied on every
// replica, none refused is, the replicas stay healthy, apply later deletes,
// and take upserts again once deletes made room. Also: a disk below its floor,
// limits out of range, and `vdb up` handing its limits to its shard processes.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { RunningCluster, UpOptions } from '../cluster/launcher.js';
import type { Member } from '../cluster/meta.js';
import { VdbClient } from '../ts/client.js';
import type { Point, PointId } from '../ts/collection.js';
import { HashPartitioner } from '../ts/partition/index.js';
import { VdbError, ErrorCode } from '../ts/errors.js';
import { decode, encode } from '../ts/wire/codec.js';
import { mulberry32 } from './helpers.js';
import { CLI, ROOT, TestCluster, connectAs, requireDist, waitFor } from './cluster-helpers.js';

let cl: TestCluster;
beforeAll(async () => {
  cl = await TestCluster.start({ shards: 2, shardArgs: ['--max-index-mb', '2', '--max-points', '200'] });
});
afterAll(async () => {
  await cl?.stop();
});

const MEMBERS = ['shard-0', 'shard-1'];

function points(dim: number, from: number, n: number): Point[] {
  const rand = mulberry32(from + 1);
  return Array.from({ length: n }, (_, i) => ({ id: from + i, vector: Float32Array.from({ length: dim }, () => rand() - 0.5), payload: { i: from + i } }));
}

async function direct(c: string, s: number, member: string, op: string, body: Record<string, unknown>): Promise<Record<string, unknown>> {
  const m = await cl.request(`vdb.shard.${c}.${s}.${member}.${op}`, encode(body, false), { timeout: 10_000 });
  const r = decode(m.data, false) as Record<string, unknown> & { error?: { code: string; message: string } };
  if (r.error) throw new Error(`${member} ${op}: ${r.error.code}: ${r.error.message}`);
  return r;
}

async function logSeq(c: string, s: number): Promise<number> {
  const st = await cl.client.status() as { collections: { name: string; shards: { shard: number; logSeq: number }[] }[] };
  return st.collections.find((x) => x.name === c)!.shards[s].logSeq;
}

/** Upserts batches of `batch` new points until one is refused; returns the acknowledged ids and the refusal. */
async function fill(c: string, dim: number, batch: number, most: number): Promise<{ acked: PointId[]; refused: VdbError; refusedIds: PointId[] }> {
  const acked: PointId[] = [];
  for (let from = 0; from < most; from += batch) {
    const pts = points(dim, from, batch);
    try {
      await cl.client.upsert(c, pts);
    } catch (e) {
      return { acked, refused: e as VdbError, refusedIds: pts.map((p) => p.id) };
    }
    acked.push(...pts.map((p) => p.id));
  }
  throw new Error(`${c}: ${most} points were all accepted\n${cl.logs()}`);
}

/** Every replica of every shard has applied its whole log and holds exactly `expected` (by id) of `asked`. */
async function expectOnEveryReplica(c: string, shards: number, expected: PointId[], asked: PointId[]): Promise<void> {
  const p = new HashPartitioner(shards);
  for (let s = 0; s < shards; s++) {
    const last = await logSeq(c, s);
    const mine = new Set(expected.filter((id) => p.shardOf(id) === s));
    for (const member of MEMBERS) {
      const count = await waitFor(`${member} applying ${c}/${s} to ${last}`, async () => {
        const r = await direct(c, s, member, 'count', {});
        return (r.seq as number) >= last ? (r.count as number) : undefined;
      }, 60_000, 200, () => cl.logs());
      expect(count, `${member} ${c}/${s}`).toBe(mine.size);
      const got = await direct(c, s, member, 'get', { ids: [...new Set(asked)].filter((id) => p.shardOf(id) === s), withVector: false });
      expect((got.points as { id: PointId }[]).map((x) => x.id).sort((a, b) => Number(a) - Number(b))).toEqual([...mine].sort((a, b) => Number(a) - Number(b)));
    }
  }
  await cl.waitCount(c, expected.length);
  // A strong exact search over the whole collection finds exactly those points.
  const dim = ((await cl.client.describe(c)) as { dim: number }).dim;
  const r = await cl.client.search(c, points(dim, 999_999, 1)[0].vector, { k: expected.length, exact: true, consistency: 'strong' });
  expect(r.partial).toBe(false);
  expect(r.hits.map((h) => h.id).sort((a, b) => Number(a) - Number(b))).toEqual([...expected].sort((a, b) => Number(a) - Number(b)));
}

async function expectHealthy(): Promise<void> {
  const st = await cl.client.status();
  const shards = (st.members as { name: string; role: string; metricsPort: number }[]).filter((m) => m.role === 'shard');
  expect(shards.map((m) => m.name).sort()).toEqual(MEMBERS);
  for (const m of shards) {
    const res = await fetch(`http://127.0.0.1:${m.metricsPort}/healthz`);
    expect(res.status, `${m.name} /healthz: ${await res.text()}`).toBe(200);
  }
}

/** Retries an upsert refused only because heartbeats do not yet show the room deletes made. */
async function upsertOnceRoom(c: string, pts: Point[]): Promise<void> {
  await waitFor(`an upsert to ${c} accepted after deletes`, async () => {
    try {
      await cl.client.upsert(c, pts);
      return true;
    } catch (e) {
      if ((e as VdbError).code !== ErrorCode.RESOURCE_EXHAUSTED) throw e;
      return undefined;
    }
  }, 30_000, 300, () => cl.logs());
}

describe('capacity is checked before the acknowledgement', () => {
  it('refuses past --max-index-mb with RESOURCE_EXHAUSTED, and every acknowledged point is on every replica', async () => {
    const DIM = 4096;
    await cl.client.createCollection({ name: 'big', dim: DIM, metric: 'l2', replicas: 2, partitioner: { kind: 'hash', shards: 1 } });
    const { acked, refused, refusedIds } = await fill('big', DIM, 10, 2000);
    expect(refused).toBeInstanceOf(VdbError);
    expect(refused.code).toBe(ErrorCode.RESOURCE_EXHAUSTED);
    expect(refused.message).toMatch(/^shard big\/0 is full: replica shard-[01] has room for \d+ more points under its --max-index-mb limit of 2 MiB; .*the write was not applied$/);
    // 2 MiB of 16 KiB records, less the fixed part and the margins.
    expect(acked.length).toBeGreaterThanOrEqual(20);
    expect(acked.length).toBeLessThanOrEqual(130);
    await expectOnEveryReplica('big', 1, acked, [...acked, ...refusedIds]);
    await expectHealthy();

    // Deletes are applied, and once consolidated their slots are room again.
    const gone = acked.slice(0, Math.ceil(acked.length * 0.6));
    await cl.client.delete('big', gone);
    const kept = acked.filter((id) => !gone.includes(id));
    const again = points(DIM, 10_000, 10);
    await upsertOnceRoom('big', again);
    const all = [...kept, ...again.map((p) => p.id)];
    await expectOnEveryReplica('big', 1, all, [...acked, ...refusedIds, ...all]);
    await expectHealthy();
  });

  it('refuses past --max-points per shard, and every acknowledged point is on every replica', async () => {
    await cl.client.createCollection({ name: 'small', dim: 8, metric: 'l2', replicas: 2, partitioner: { kind: 'hash', shards: 2 } });
    const { acked, refused, refusedIds } = await fill('small', 8, 25, 5000);
    expect(refused.code).toBe(ErrorCode.RESOURCE_EXHAUSTED);
    expect(refused.message).toMatch(/^shard small\/[01] is full: replica shard-[01] has room for \d+ more points under its --max-points limit of 200 points; .*the write was not applied$/);
    expect(acked.length).toBeLessThanOrEqual(400);
    expect(acked.length).toBeGreaterThanOrEqual(100);
    await expectOnEveryReplica('small', 2, acked, [...acked, ...refusedIds]);
    await expectHealthy();

    await cl.client.delete('small', acked.slice(0, 100));
    const kept = acked.slice(100);
    const again = points(8, 20_000, 25);
    await upsertOnceRoom('small', again);
    const all = [...kept, ...again.map((p) => p.id)];
    await expectOnEveryReplica('small', 2, all, [...acked, ...refusedIds, ...all]);
    await expectHealthy();
  });

  it('vdb shard refuses limits out of range before it starts', () => {
    for (const [flag, value, why] of [['--max-index-mb', '5000', /max-index-mb must be an integer from 1 to 4095/], ['--max-points', '0', /max-points must be a positive integer/], ['--min-free-disk-mb', 'lots', /--min-free-disk-mb must be a non-negative integer/]] as const) {
      const r = spawnSync(process.execPath, [CLI, 'shard', '--nats', cl.natsUrl, '--creds', cl.credentials.internal, '--name', 'bad', '--data', join(cl.dir, 'bad'), flag, value], { encoding: 'utf8', timeout: 60_000 });
      expect(r.status, r.stderr).toBe(1);
      expect(r.stderr).toMatch(/INVALID_ARGUMENT/);
      expect(r.stderr).toMatch(why);
    }
  });
});

describe('a disk below its floor', () => {
  it('refuses upserts with RESOURCE_EXHAUSTED naming --min-free-disk-mb, and still takes deletes', async () => {
    // A floor no disk reaches: every upsert to a shard this process serves is refused.
    const low = await TestCluster.start({ shards: 1, shardArgs: ['--min-free-disk-mb', String(2 ** 40)] });
    try {
      await low.client.createCollection({ name: 'd', dim: 4, metric: 'l2', replicas: 1, partitioner: { kind: 'hash', shards: 1 } });
      const err = await low.client.upsert('d', points(4, 0, 3)).then(() => undefined, (e: VdbError) => e);
      expect(err?.code, `${err?.message}\n${low.logs()}`).toBe(ErrorCode.RESOURCE_EXHAUSTED);
      expect(err!.message).toMatch(/^shard d\/0: replica shard-0 has \d+ MiB of free disk, below its --min-free-disk-mb floor of 1099511627776; the write was not applied$/);
      const del = await low.client.delete('d', [0, 1]);
      expect(del.count).toBe(2);
      await low.waitCount('d', 0);
      const st = await low.client.status() as { collections: { name: string; shards: { logSeq: number }[] }[] };
      // Only the delete was logged.
      expect(st.collections.find((c) => c.name === 'd')!.shards[0].logSeq).toBe(1);
    } finally {
      await low.stop();
    }
  });
});

describe('vdb up', () => {
  it('gives its capacity limits to every shard process, which report them', async () => {
    requireDist();
    // up() spawns cli.js next to itself: the compiled one.
    const { up } = (await import(join(ROOT, 'dist', 'cluster', 'launcher.js'))) as { up: (o: UpOptions) => Promise<RunningCluster> };
    const dir = mkdtempSync(join(tmpdir(), 'vdb-up-capacity-'));
    const lines: string[] = [];
    const cluster = await up({ shards: 2, data: dir, limits: { maxIndexMb: 64, maxPoints: 7, minFreeDiskMb: 1 }, log: (l) => lines.push(l), output: (n, l) => lines.push(`${n}: ${l}`) });
    const nc = await connectAs(cluster.url, cluster.credentials!.files.admin);
    try {
      const client = new VdbClient(nc, { timeoutMs: 15_000 });
      const st = await client.status();
      const shards = (st.members as Member[]).filter((m) => m.role === 'shard');
      expect(shards.map((m) => m.name).sort(), lines.join('\n')).toEqual(['shard-0', 'shard-1']);
      for (const m of shards) {
        expect(m.limits).toEqual({ maxIndexBytes: 64 * 1024 * 1024, maxPoints: 7 });
        expect(m.disk?.floor).toBe(1024 * 1024);
        expect(m.disk?.free).toBeGreaterThan(0);
      }
      await client.createCollection({ name: 'up', dim: 8, metric: 'l2', replicas: 1, partitioner: { kind: 'hash', shards: 1 } });
      await expect(client.upsert('up', points(8, 0, 8))).rejects.toThrow(/--max-points limit of 7 points/);
    } finally {
      await nc.close();
      await cluster.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
