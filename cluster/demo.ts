// The demo data of `npm start`: the first 20,000 Fashion-MNIST training images
// (784-d, L2), read from the Debian package dataset-fashion-mnist, with their
// class as payload; else a seeded synthetic clustered set, and it says so.
// Imported into a collection "demo", then one sample search.

import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { VdbClient } from '../ts/client.js';
import type { Point } from '../ts/collection.js';
import { openReader } from './readers.js';
import { RateProgress } from './progress.js';
import { mulberry32 } from '../ts/random.js';

const POINTS = Number(process.env.DEMO_POINTS ?? 20_000);
const FASHION = process.env.VDB_FASHION_IDX_DIR ?? '/usr/share/datasets/fashion-mnist';
const CLASSES = ['T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot'];

/** Fashion-MNIST training images with their class, when the Debian package is installed. */
function* fashion(n: number): Generator<Point> {
  const images = openReader(join(FASHION, 'train-images-idx3-ubyte.gz'));
  const labels = openReader(join(FASHION, 'train-labels-idx1-ubyte.gz'));
  try {
    let done = 0;
    for (let b = images.next(500); b && done < n; b = images.next(500)) {
      const l = labels.next(b.points.length)!;
      for (let i = 0; i < b.points.length && done < n; i++, done++) {
        yield { ...b.points[i], payload: { class: CLASSES[l.points[i].vector[0] as number] } };
      }
    }
  } finally {
    images.close();
    labels.close();
  }
}

const hasFashion = () => existsSync(join(FASHION, 'train-images-idx3-ubyte.gz')) && existsSync(join(FASHION, 'train-labels-idx1-ubyte.gz'));

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
  const real = hasFashion();
  const dim = real ? 784 : 128;
  const name = 'demo';
  if (!(await client.listCollections()).includes(name)) {
    await client.createCollection({ name, dim, metric: 'l2', replicas, partitioner: { kind: 'hash', shards } });
  }
  console.log(`demo collection "${name}": ${real ? `Fashion-MNIST (the first ${POINTS} training images, from ${FASHION})` : `synthetic clustered ${POINTS} × 128 (Fashion-MNIST not found in ${FASHION}: apt-get install -y dataset-fashion-mnist for real data)`}, ${shards} shards × ${replicas} ${replicas === 1 ? 'replica' : 'replicas'}`);
  const bar = new RateProgress('import', 'points');
  let done = 0;
  let probe: Float32Array | undefined;
  let batch: Point[] = [];
  const send = async () => {
    await client.upsert(name, batch);
    done += batch.length;
    batch = [];
    bar.update(done, POINTS, done / POINTS);
  };
  for (const p of real ? fashion(POINTS) : synthetic(POINTS)) {
    probe ??= p.vector as Float32Array;
    batch.push(p);
    if (batch.length === 500) await send();
  }
  if (batch.length) await send();
  bar.update(done, POINTS, 1, true);
  // Writes are acknowledged once in the log; the shards index them as they apply it.
  const indexing = new RateProgress('indexing', 'points');
  for (let n = 0; n < done; ) {
    await new Promise((r) => setTimeout(r, 500));
    n = await client.count(name);
    indexing.update(n, done, n / done, n >= done);
  }
  const t = performance.now();
  const reply = await client.search(name, probe!, { k: 5, withPayload: true });
  console.log(`sample search (the first point's own vector, k = 5, ${(performance.now() - t).toFixed(1)} ms):`);
  for (const h of reply.hits) console.log(`  id ${String(h.id).padStart(6)}  distance ${h.score.toFixed(3)}${h.payload ? `  ${JSON.stringify(h.payload)}` : ''}`);
  if (reply.partial) console.log(`  (partial: shards ${reply.missing?.join(', ')} did not answer)`);
}
