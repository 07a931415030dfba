// Load-driven splits on a real cluster (a private nats-server, two shard
// processes and a coordinator from dist/, with short windows and low
// thresholds): searches with nprobe 1, most of them near one region of a
// spatial collection, make that region's shard split, while writes go on;
// a hash collection under the same load, whose searches reach every shard,
// does not split. Every acknowledged write is there and exact searches equal
// a brute-force model before and after. Fails (never skips) without
// nats-server or dist/.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rmSync } from 'node:fs';
import { mulberry32 } from '../ts/random.js';
import { SpatialPartitioner } from '../ts/partition/index.js';
import { TestCluster, sleep, waitFor } from './cluster-helpers.js';

const DIM = 4;
const SP = 'sp';
const HS = 'hs';
const SHARDS = 3;
const rand = mulberry32(11);
const vec = () => Array.from({ length: DIM }, () => rand());
/** The acknowledged points of each collection: id → vector. */
const model = new Map<string, Map<number, number[]>>([[SP, new Map()], [HS, new Map()]]);
let cl: TestCluster;
const sample = Array.from({ length: 300 }, vec);

interface MapView { replicas: string[][]; split?: unknown; retain?: unknown; settle?: unknown }
const shardMap = async (c: string) => (await cl.client.describe(c)).shardMap as MapView;
const work = async () => ((await cl.client.status()).balancer as { work: string[] } | null)?.work ?? [];

/** Upserts until acknowledged (an upsert is idempotent), then records the points. */
async function write(c: string, ids: number[]): Promise<void> {
  const points = ids.map((id) => ({ id, vector: vec() }));
  for (let tries = 0; ; tries++) {
    try {
      await cl.client.upsert(c, points);
      break;
    } catch (e) {
      if (tries > 20) throw e;
      await sleep(200);
    }
  }
  for (const p of points) model.get(c)!.set(p.id, p.vector);
}

const dist = (a: number[], b: ArrayLike<number>) => Math.sqrt(a.reduce((s, x, i) => s + (x - b[i]) ** 2, 0));

/** Every acknowledged point is stored with its vector, nothing else is, and exact searches equal brute force. */
async function checkModel(c: string): Promise<void> {
  const want = model.get(c)!;
  expect(await cl.client.count(c, { consistency: 'strong' })).toBe(want.size);
  const got = await cl.client.get(c, [...want.keys()], { consistency: 'strong' });
  expect(got.points).toHaveLength(want.size);
  for (const p of got.points) {
    const v = want.get(p.id as number)!;
    expect(v, `id ${p.id}`).toBeDefined();
    expect(Array.from(p.vector!)).toEqual(Array.from(Float32Array.from(v)));
  }
  for (let i = 0; i < 8; i++) {
    const q = vec();
    const brute = [...want].map(([id, v]) => ({ id, d: dist(Array.from(Float32Array.from(v)), q) })).sort((a, b) => a.d - b.d).slice(0, 10);
    const r = await cl.client.search(c, q, { k: 10, exact: true, consistency: 'strong' });
    expect(r.partial).toBe(false);
    expect(r.hits.map((h) => h.id)).toEqual(brute.map((b) => b.id));
    r.hits.forEach((h, j) => expect(h.score).toBeCloseTo(brute[j].d, 4));
  }
}

beforeAll(async () => {
  // Load replicas off (--max-load-replicas 0): a hot routed shard splits at once after its window.
  cl = await TestCluster.start({ shards: 2, clientTimeoutMs: 30_000, coordinatorArgs: ['--hot-searches', '10', '--split-searches', '10', '--max-load-replicas', '0', '--hot-window-ms', '3000'] });
  await cl.client.createCollection({ name: SP, dim: DIM, metric: 'l2', replicas: 1, partitioner: { kind: 'spatial', shards: SHARDS, sample } });
  await cl.client.createCollection({ name: HS, dim: DIM, metric: 'l2', replicas: 1, partitioner: { kind: 'hash', shards: 2 } });
  const ids = Array.from({ length: 600 }, (_, i) => i);
  for (const c of [SP, HS]) for (let i = 0; i < ids.length; i += 200) await write(c, ids.slice(i, i + 200));
}, 120_000);

afterAll(async () => {
  const dir = cl?.dir;
  await cl?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('load-driven splits', () => {
  it('the shard most routed searches reach splits while writes go on; the hash collection, every search reaching every shard, does not; nothing acknowledged is lost and exact searches equal brute force', async () => {
    await checkModel(SP);
    await checkModel(HS);
    // Queries at stored points of each leaf: with nprobe 1 each reaches exactly its leaf.
    // The coordinators build the same kd tree from the same sample.
    const p = SpatialPartitioner.build(Float32Array.from(sample.flat()), DIM, SHARDS, 'l2');
    const byLeaf: number[][][] = Array.from({ length: SHARDS }, () => []);
    for (const v of model.get(SP)!.values()) byLeaf[p.route(Float32Array.from(v), { nprobe: 1 })[0]].push(v);
    expect(byLeaf.every((l) => l.length > 0)).toBe(true);
    const hotLeaf = 0;
    // 60 % of the searches at leaf 0, 20 % at each other leaf, about 36 per second:
    // leaf 0 above the threshold (10 per second) with a routed share under 75 %, the others below.
    const leafOf = (i: number) => (i % 5 < 3 ? hotLeaf : 1 + (i % 2));
    let stop = false;
    const bad: string[] = [];
    let searches = 0;
    const loadWorker = async (w: number) => {
      for (let i = w; !stop; i += 3) {
        const t0 = Date.now();
        const leaf = byLeaf[leafOf(i)];
        const q = leaf[i % leaf.length];
        const [a, b] = await Promise.all([
          cl.client.search(SP, q, { k: 5, nprobe: 1 }),
          cl.client.search(HS, q, { k: 5 }),
        ]).catch((e: Error) => { bad.push(e.message); return []; });
        if (a?.partial || b?.partial) bad.push('partial');
        searches++;
        await sleep(Math.max(0, 83 - (Date.now() - t0)));
      }
    };
    let nextId = 1000;
    let writes = 0;
    const writer = async () => {
      while (!stop) {
        const ids = Array.from({ length: 5 }, () => nextId++);
        await write(SP, ids);
        await write(HS, ids);
        writes++;
        await sleep(200);
      }
    };
    const running = [loadWorker(0), loadWorker(1), loadWorker(2), writer()];
    let fanout = '';
    try {
      await waitFor('a fourth shard of the spatial collection', async () => {
        const w = (await work()).find((l) => l.startsWith(`${HS}/`) && l.includes('no split for load'));
        if (w) fanout = w;
        return (await shardMap(SP)).replicas.length === SHARDS + 1 ? true : undefined;
      }, 90_000, 200, () => cl.logs());
    } finally {
      stop = true;
      await Promise.all(running);
    }
    expect(bad).toEqual([]);
    expect(searches).toBeGreaterThan(50);
    expect(writes).toBeGreaterThan(0);
    // The hash collection was just as hot, and the balancer said why it did not split it.
    expect(fanout).toMatch(/^hs\/[01]: \d+ searches\/s per replica, past 10, but reached by (\d+%|all) of searches: no split for load/);
    const done = await waitFor('the split to settle', async () => {
      const m = await shardMap(SP);
      return !m.split && !m.retain && !m.settle ? m : undefined;
    }, 60_000, 200, () => cl.logs());
    expect(done.replicas).toHaveLength(SHARDS + 1);
    const actions = ((await cl.client.status()).balancer as { done: string[] }).done.join('\n');
    expect(actions).toMatch(new RegExp(`${SP}/${hotLeaf}: \\d+ searches/s per replica for 3 s, reached by \\d+% of searches: splitting into ${SP}/${SHARDS}`));
    expect((await shardMap(HS)).replicas).toHaveLength(2);
    await checkModel(SP);
    await checkModel(HS);
  }, 200_000);
});
