// A storage fault is not a poison entry: a replica whose disk fills up (a real
// one: its data directory is a small tmpfs) stops applying its log, says so in
// its heartbeat and /healthz, answers no reads, is not routed to, and the
// balancer replaces it after the grace period by a copy on another process.
// Searches stay complete throughout and nothing acknowledged is lost.

import { afterEach, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Point, PointId } from '../ts/collection.js';
import { decode, encode, float32Bytes } from '../ts/wire/codec.js';
import { clusteredData, row } from './helpers.js';
import { TestCluster, waitFor } from './cluster-helpers.js';

const DIM = 64;
const { data, queries } = clusteredData({ n: 4000, queries: 10, dim: DIM, clusters: 8, seed: 7 });
const point = (i: number): Point => ({ id: i, vector: row(data, DIM, i % 4000), payload: { pad: 'x'.repeat(200) } });

let cl: TestCluster | undefined;
let mnt: string | undefined;
afterEach(async () => {
  await cl?.stop();
  cl = undefined;
  if (mnt) {
    spawnSync('umount', [mnt]);
    rmSync(mnt, { recursive: true, force: true });
    mnt = undefined;
  }
});

/** A directory on a tmpfs of `mb` MiB: writing past it fails with ENOSPC, as a full disk does. */
function smallDisk(mb: number): string {
  const dir = mkdtempSync(join(tmpdir(), 'vdb-small-disk-'));
  const r = spawnSync('mount', ['-t', 'tmpfs', '-o', `size=${mb}m`, 'tmpfs', dir], { encoding: 'utf8' });
  if (r.status !== 0) {
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`this test fills a real disk: it mounts a ${mb} MiB tmpfs, which needs root (CAP_SYS_ADMIN): ${r.stderr || r.error?.message}`);
  }
  return dir;
}

async function direct(c: string, s: number, member: string, op: string, body: Record<string, unknown>): Promise<Record<string, unknown>> {
  const m = await cl!.request(`vdb.shard.${c}.${s}.${member}.${op}`, encode(body, false), { timeout: 10_000 });
  return decode(m.data, false) as Record<string, unknown>;
}

describe('storage faults', () => {
  it('a replica whose disk fills stops, is reported failed, is not read from, and is replaced after the grace period', async () => {
    cl = await TestCluster.start({ shards: 0, coordinatorArgs: ['--grace-ms', '3000'] });
    mnt = smallDisk(6);
    // No disk floor: this replica is meant to run out of disk, not to have writes refused before.
    cl.startShard('shard-0', { data: mnt, args: ['--min-free-disk-mb', '0'] });
    cl.startShard('shard-1');
    cl.startShard('shard-2');
    await cl.waitMembers(['shard-0', 'shard-1', 'shard-2', 'c-0']);
    await cl.client.createCollection({ name: 'f', dim: DIM, metric: 'l2', partitioner: { kind: 'hash', shards: 1 }, replicas: 2 });
    const map0 = (await cl.client.describe('f')).shardMap as { replicas: string[][] };
    expect(map0.replicas[0]).toEqual(['shard-0', 'shard-1']);

    // Write until shard-0 reports its copy failed; every write is acknowledged (the log is on another disk).
    const acked: PointId[] = [];
    let partial = 0;
    let next = 0;
    const failed = await waitFor('shard-0 to report f/0 failed', async () => {
      const batch = Array.from({ length: 200 }, () => point(next++));
      await cl!.client.upsert('f', batch);
      acked.push(...batch.map((p) => p.id));
      const r = await cl!.client.search('f', row(queries, DIM, next % 10), { k: 5 });
      if (r.partial) partial++;
      const st = await cl!.client.status() as { collections: { shards: { replicas: { member: string; failed?: string }[] }[] }[] };
      return st.collections[0].shards[0].replicas.find((x) => x.member === 'shard-0')?.failed;
    }, 120_000, 0, () => cl!.logs());
    expect(failed).toMatch(/full|SQLITE_FULL|disk/i);

    // It says so and serves nothing; reads go to the healthy replica.
    const st = await cl.client.status() as { members: { name: string; metricsPort: number }[] };
    const port = st.members.find((m) => m.name === 'shard-0')!.metricsPort;
    const health = await fetch(`http://127.0.0.1:${port}/healthz`);
    expect(health.status).toBe(503);
    expect(JSON.stringify(await health.json())).toContain('f/0');
    const answer = await direct('f', 0, 'shard-0', 'count', {});
    expect((answer.error as { code: string } | undefined)?.code, JSON.stringify(answer)).toBe('UNAVAILABLE');
    for (let q = 0; q < 20; q++) {
      const r = await cl.client.search('f', row(queries, DIM, q % 10), { k: 5 });
      if (r.partial) partial++;
    }
    for (let b = 0; b < 5; b++) {
      const batch = Array.from({ length: 50 }, () => point(next++));
      await cl.client.upsert('f', batch);
      acked.push(...batch.map((p) => p.id));
    }

    // The balancer puts shard-2 in its place; it copies shard-1 and applies everything acknowledged.
    await waitFor('shard-0 replaced', async () => {
      const m = (await cl!.client.describe('f')).shardMap as { replicas: string[][] };
      return m.replicas[0].includes('shard-0') ? undefined : m.replicas[0];
    }, 60_000, 200, () => cl!.logs());
    const replicas = ((await cl.client.describe('f')).shardMap as { replicas: string[][] }).replicas[0];
    expect([...replicas].sort()).toEqual(['shard-1', 'shard-2']);
    for (const member of replicas) {
      const count = await waitFor(`${member} holding every acknowledged point`, async () => {
        const r = await direct('f', 0, member, 'count', {});
        return r.count === acked.length ? r.count : undefined;
      }, 60_000, 200, () => cl!.logs());
      expect(count).toBe(acked.length);
    }
    const got = await cl.client.get('f', acked, { withVector: false });
    expect(got.points.map((p) => p.id).sort((a, b) => Number(a) - Number(b))).toEqual(acked);
    expect(partial, 'searches stayed complete').toBe(0);
    const q = float32Bytes(row(queries, DIM, 0));
    const [a, b] = await Promise.all(replicas.map((m) => direct('f', 0, m, 'search', { vector: q, k: 10, exact: true })));
    expect(a.hits).toEqual(b.hits);
    cl.checkRunning();
  });
});
