// payloadIndexes at collections.create, with real processes and a real
// nats-server: the fields are kept in the collection's meta (describe shows
// them), every replica opens its store with them, and filtered searches on
// indexed, unindexed and mixed fields return exactly the matching points with
// their payloads, also after a replica is killed and restarted (its indexes
// rebuilt from the payloads it stored).

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Point } from '../ts/collection.js';
import { compileFilter } from '../ts/filter.js';
import type { Filter } from '../ts/filter.js';
import { ErrorCode } from '../ts/errors.js';
import { mulberry32 } from './helpers.js';
import { TestCluster, waitFor } from './cluster-helpers.js';

let cl: TestCluster;
beforeAll(async () => {
  cl = await TestCluster.start({ shards: 2 });
});
afterAll(async () => {
  await cl?.stop();
});

const DIM = 4;
const COLORS = ['red', 'green', 'blue'];

function points(n: number): Point[] {
  const rand = mulberry32(3);
  return Array.from({ length: n }, (_, i) => ({
    id: i,
    vector: Float32Array.from({ length: DIM }, () => rand() - 0.5),
    payload: { color: COLORS[i % 3], size: i % 5, note: `point ${i}` },
  }));
}

const FILTERS: Filter[] = [
  { color: 'red' },
  { color: 'blue', size: { $gte: 3 } },
  { size: 2 },
  { color: 'green', note: 'point 4' },
  { $or: [{ color: 'red' }, { size: 0 }] },
];

describe('payloadIndexes in the cluster', () => {
  it('are kept in the meta, and filters on indexed and unindexed fields are exact, before and after a replica restarts', async () => {
    await cl.client.createCollection({ name: 'items', dim: DIM, metric: 'l2', replicas: 2, partitioner: { kind: 'hash', shards: 2 }, payloadIndexes: ['color', 'size'] });
    const d = await cl.client.describe('items');
    expect(d.payloadIndexes).toEqual(['color', 'size']);
    const pts = points(120);
    await cl.client.upsert('items', pts);
    const check = async () => {
      for (const filter of FILTERS) {
        const test = compileFilter(filter).test;
        const want = pts.filter((p) => test(p.payload)).map((p) => p.id as number).sort((a, b) => a - b);
        const r = await cl.client.search('items', [0, 0, 0, 0], { k: 200, filter, exact: true, withPayload: true, consistency: 'strong' });
        expect(r.partial).toBe(false);
        expect(r.hits.map((h) => h.id as number).sort((a, b) => a - b), JSON.stringify(filter)).toEqual(want);
        for (const h of r.hits) expect(h.payload).toEqual(pts[h.id as number].payload);
      }
    };
    await check();
    await cl.kill('shard-0');
    cl.startShard('shard-0');
    await waitFor('every shard answering again', async () => {
      const r = await cl.client.search('items', [0, 0, 0, 0], { k: 1, filter: { size: 1 }, consistency: 'strong' }).catch(() => undefined);
      return r && !r.partial ? true : undefined;
    }, 90_000, 500);
    await check();
  });

  it('a bad payloadIndexes is refused with INVALID_ARGUMENT and creates nothing', async () => {
    await expect(cl.client.createCollection({ name: 'bad', dim: DIM, metric: 'l2', partitioner: { kind: 'hash', shards: 1 }, payloadIndexes: ['ok', '$no'] }))
      .rejects.toMatchObject({ code: ErrorCode.INVALID_ARGUMENT });
    expect(await cl.client.listCollections()).not.toContain('bad');
  });
});
