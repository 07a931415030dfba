// SQ8 in a cluster of real processes: the quantization given at create reaches
// every replica over the wire and the collection meta, searches re-rank to a
// recall close to exact, and a wiped replica's snapshot copy carries it.

import { afterEach, describe, expect, it } from 'vitest';
import { rmSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import type { Hit } from '../ts/collection.js';
import { decode, encode, float32Bytes } from '../ts/wire/codec.js';
import { clusteredData, row, rowsOf, bruteForce } from './helpers.js';
import { CLI, TestCluster, waitFor } from './cluster-helpers.js';

const DIM = 16;
const N = 1500;
const { data, queries } = clusteredData({ n: N, queries: 20, dim: DIM, clusters: 10, seed: 41 });
const points = (from: number, to: number) => Array.from({ length: to - from }, (_, j) => ({ id: from + j, vector: row(data, DIM, from + j) }));

let cl: TestCluster | undefined;
afterEach(async () => {
  await cl?.stop();
  cl = undefined;
});

async function direct(member: string, op: string, body: Record<string, unknown>): Promise<Record<string, unknown>> {
  const m = await cl!.request(`vdb.shard.q.0.${member}.${op}`, encode(body, false), { timeout: 15_000 });
  const r = decode(m.data, false) as Record<string, unknown> & { error?: { code: string; message: string } };
  if (r.error) throw new Error(`${member} ${op}: ${r.error.code}: ${r.error.message}`);
  return r;
}

describe('SQ8 in a cluster', () => {
  it('create carries quantization to every replica; searches reach recall ≥ 0.9; a wiped replica copies it from its peer', async () => {
    cl = await TestCluster.start({ shards: 2 });
    await expect(cl.client.createCollection({ name: 'bad', dim: DIM, metric: 'l2', partitioner: { kind: 'hash', shards: 1 }, quantization: { kind: 'pq' } as never }))
      .rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    const created = await cl.client.createCollection({ name: 'q', dim: DIM, metric: 'l2', partitioner: { kind: 'hash', shards: 1 }, replicas: 2, quantization: { kind: 'sq8', rescore: 40 } });
    expect(created.quantization).toEqual({ kind: 'sq8', rescore: 40 });
    expect((await cl.client.describe('q')).quantization).toEqual({ kind: 'sq8', rescore: 40 });
    for (let b = 0; b < 1000; b += 100) await cl.client.upsert('q', points(b, b + 100));

    const rows = rowsOf(data, DIM);
    const recall = async (n: number) => {
      let hits = 0;
      for (let q = 0; q < 20; q++) {
        const query = row(queries, DIM, q);
        const truth = new Set(bruteForce('l2', rows.slice(0, n), query, 10).map((t) => t.slot));
        const r = await cl!.client.search('q', query, { k: 10, ef: 32, consistency: 'strong' });
        hits += r.hits.filter((h) => truth.has(h.id as number)).length;
      }
      return hits / 200;
    };
    expect(await recall(1000)).toBeGreaterThanOrEqual(0.9);

    // A wiped replica starts empty and copies the shard (index snapshot included)
    // from a peer whose heartbeat shows it holds the shard: wait for that heartbeat.
    await waitFor('shard-1 reported at the log end', async () => {
      const st = await cl!.client.status() as { collections: { name: string; shards: { logSeq: number; replicas: { member: string; applied: number }[] }[] }[] };
      const sh = st.collections.find((c) => c.name === 'q')!.shards[0];
      return sh.logSeq > 0 && sh.replicas.find((r) => r.member === 'shard-1')?.applied === sh.logSeq ? true : undefined;
    }, 30_000);
    await cl.kill('shard-0', 'SIGTERM');
    rmSync(join(cl.dir, 'shard-0'), { recursive: true, force: true });
    await cl.client.upsert('q', points(1000, N));
    cl.startShard('shard-0');
    await waitFor('shard-0 copied q/0', async () => (cl!.proc('shard-0').lines.some((l) => l.includes('copied q/0 from shard-1')) ? true : undefined), 90_000, 200, () => cl!.logs());
    await waitFor('both replicas at the log end', async () => {
      const v = await Promise.all(['shard-0', 'shard-1'].map((m) => direct(m, 'count', {}).catch(() => undefined)));
      return v.every((x) => x && x.count === N && x.seq === v[0]!.seq) ? true : undefined;
    }, 90_000, 200, () => cl!.logs());
    for (let q = 0; q < 10; q++) {
      const body = { vector: float32Bytes(row(queries, DIM, q)), k: 10, ef: 32 };
      const [a, b] = await Promise.all(['shard-0', 'shard-1'].map((m) => direct(m, 'search', body)));
      expect(a.hits as Hit[]).toEqual(b.hits as Hit[]);
    }
    expect(await recall(N)).toBeGreaterThanOrEqual(0.9);

    // `vdb create --quantization sq8 --rescore N` sends the same field.
    const out = spawnSync(process.execPath, [CLI, 'create', '--nats', cl.natsUrl, '--creds', cl.credentials.files.admin, '--collection', 'c2', '--dim', '4', '--quantization', 'sq8', '--rescore', '12'], { encoding: 'utf8', timeout: 60_000 });
    expect(out.status, out.stderr).toBe(0);
    expect((await cl.client.describe('c2')).quantization).toEqual({ kind: 'sq8', rescore: 12 });
  });
});
