// The demo data of `npm start`: fashion-mnist-784 when it has been prepared
// (node ../shared/data/fashion-mnist-784/prepare.mjs), else a seeded synthetic
// clustered set; imported into a collection "demo", then one sample search.

import { existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import type { VdbClient } from '../ts/client.js';
import type { Point } from '../ts/collection.js';
import { openReader } from './readers.js';
import { RateProgress } from './progress.js';
import { mulberry32 } from '../ts/random.js';

const POINTS = Number(process.env.DEMO_POINTS ?? 20_000);

function fashionBase(): string | undefined {
  const dir = join(process.env.VDB_DATA_DIR ?? join(homedir(), '.cache', 'vdb-data'), 'fashion-mnist-784');
  const f = join(dir, 'base.f32');
  return existsSync(f) && existsSync(join(dir, 'meta.json')) ? f : undefined;
}

// A seeded gaussian mixture (mulberry32 + Box–Muller), 128 dimensions.
function* synthetic(n: number, dim = 128): Generator<Point> {
  const rand = mulberry32(7);
  const g = () => Math.sqrt(-2 * Math.log(1 - rand())) * Math.cos(2 * Math.PI * rand());
  const centres = Array.from({ length: 50 }, () => Float32Array.from({ length: dim }, g));
  for (let i = 0; i < n; i++) {
    const label = Math.floor(rand() * centres.length);
    yield { id: i, vector: centres[label].map((c) => c + 0.35 * g()), payload: { label } };
  }
}

export async function runDemo(client: VdbClient, shards: number, replicas = 1): Promise<void> {
  const file = fashionBase();
  const dim = file ? 784 : 128;
  const name = 'demo';
  if (!(await client.listCollections()).includes(name)) {
    await client.createCollection({ name, dim, metric: 'l2', replicas, partitioner: { kind: 'hash', shards } });
  }
  console.log(`demo collection "${name}": ${file ? `fashion-mnist-784 (first ${POINTS})` : `synthetic clustered ${POINTS} × 128 (fashion-mnist not prepared)`}, ${shards} shards × ${replicas} ${replicas === 1 ? 'replica' : 'replicas'}`);
  const bar = new RateProgress('import', 'points');
  let done = 0;
  let probe: Float32Array | undefined;
  const send = async (batch: Point[]) => {
    await client.upsert(name, batch);
    done += batch.length;
    bar.update(done, POINTS, done / POINTS);
  };
  if (file) {
    const r = openReader(file);
    for (let b = r.next(500); b && done < POINTS; b = r.next(500)) {
      const pts = b.points.slice(0, POINTS - done);
      probe ??= Float32Array.from(pts[0].vector as ArrayLike<number>);
      await send(pts);
    }
  } else {
    let batch: Point[] = [];
    for (const p of synthetic(POINTS)) {
      probe ??= p.vector as Float32Array;
      batch.push(p);
      if (batch.length === 500) { await send(batch); batch = []; }
    }
    if (batch.length) await send(batch);
  }
  bar.update(done, POINTS, 1, true);
  // Writes are acknowledged once in the log; the shards index them as they apply it.
  const indexing = new RateProgress('indexing', 'points');
  for (let n = 0; n < done; ) {
    await new Promise((r) => setTimeout(r, 500));
    n = await client.count(name);
    indexing.update(n, done, n / done, n >= done);
  }
  const t = performance.now();
  const reply = await client.search(name, probe!, { k: 5 });
  console.log(`sample search (the first point's own vector, k = 5, ${(performance.now() - t).toFixed(1)} ms):`);
  for (const h of reply.hits) console.log(`  id ${String(h.id).padStart(6)}  distance ${h.score.toFixed(3)}`);
  if (reply.partial) console.log(`  (partial: shards ${reply.missing?.join(', ')} did not answer)`);
}
