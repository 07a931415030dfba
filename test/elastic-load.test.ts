// Load-driven replicas on a real cluster (a private nats-server, two shard
// processes and a coordinator from dist/, with a low threshold): a shard
// searched faster than the threshold for the window gains a replica; once the
// searches stop, it loses it again. Searches stay complete and exact
// throughout. Fails (never skips) without nats-server or dist/.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rmSync } from 'node:fs';
import { mulberry32 } from '../ts/random.js';
import { TestCluster, sleep, waitFor } from './cluster-helpers.js';

const DIM = 4;
const C = 'hot';
let cl: TestCluster;

interface Map_ { replicas: string[][]; extra?: Record<string, number> }
const shardMap = async () => (await cl.client.describe(C)).shardMap as Map_;

beforeAll(async () => {
  cl = await TestCluster.start({ shards: 2, clientTimeoutMs: 30_000, coordinatorArgs: ['--hot-searches', '5', '--hot-window-ms', '2000', '--max-load-replicas', '1'] });
  await cl.client.createCollection({ name: C, dim: DIM, metric: 'l2', partitioner: { kind: 'hash', shards: 1 }, replicas: 1 });
  const rand = mulberry32(7);
  await cl.client.upsert(C, Array.from({ length: 500 }, (_, i) => ({ id: i, vector: Array.from({ length: DIM }, () => rand()) })));
}, 120_000);

afterAll(async () => {
  const dir = cl?.dir;
  await cl?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('load-driven replicas', () => {
  it('a hot shard gains a replica, and loses it once the load stops; searches complete and exact throughout', async () => {
    expect((await shardMap()).replicas[0]).toHaveLength(1);
    let stop = false;
    const bad: string[] = [];
    let done = 0;
    const want = (await cl.client.search(C, [0.5, 0.5, 0.5, 0.5], { k: 10, exact: true, consistency: 'strong' })).hits.map((h) => h.id);
    const load = (async () => {
      while (!stop) {
        const r = await cl.client.search(C, [0.5, 0.5, 0.5, 0.5], { k: 10, exact: true });
        done++;
        if (r.partial) bad.push(`partial: missing ${JSON.stringify(r.missing)}`);
        else if (JSON.stringify(r.hits.map((h) => h.id)) !== JSON.stringify(want)) bad.push('other hits');
        await sleep(10);
      }
    })();
    const hot = await waitFor('a load replica added', async () => {
      const m = await shardMap();
      return m.replicas[0].length === 2 && m.extra?.[0] === 1 ? m : undefined;
    }, 60_000, 200, () => cl.logs());
    expect(new Set(hot.replicas[0]).size).toBe(2);
    // The new replica serves before the load stops.
    await waitFor('the load replica serving', async () => {
      const st = await cl.client.status();
      const shard = (st.collections as { shards: { replicas: { applied: number | null }[] }[] }[])[0].shards[0];
      return shard.replicas.every((r) => r.applied !== null) ? true : undefined;
    }, 60_000, 200);
    stop = true;
    await load;
    expect(done).toBeGreaterThan(20);
    const cold = await waitFor('the load replica removed', async () => {
      const m = await shardMap();
      return m.replicas[0].length === 1 && m.extra === undefined ? m : undefined;
    }, 60_000, 200, () => cl.logs());
    expect(cold.replicas[0]).toHaveLength(1);
    expect(bad).toEqual([]);
    expect(await cl.client.count(C, { consistency: 'strong' })).toBe(500);
    const after = await cl.client.search(C, [0.5, 0.5, 0.5, 0.5], { k: 10, exact: true, consistency: 'strong' });
    expect(after.hits.map((h) => h.id)).toEqual(want);
  }, 150_000);
});
