// npm run bench:scale -- --payload-points N (or alone: node --expose-gc dist/bench/payload-heap.js N)
// What a Collection keeps in the JS heap per point: loads N points with
// payloads of a few fields (about 200 bytes of JSON each) into a fresh data
// directory, and prints the heap (after gc) and RSS once loaded and again after
// a close and reopen (recovery from the snapshot, where payloads are read back),
// and the time of a filtered search answered from the indexes, from the
// candidates of an indexed term, and from a scan of the stored payloads.
// Vectors are 16-d and the graph is small (M 8, efConstruction 16): the JS heap
// is what is measured, and the Wasm index lives outside it.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Collection } from '../ts/index.js';
import type { Filter, Point } from '../ts/index.js';
import { prng } from './dataset.js';
import { progress } from './progress.js';

export interface HeapResult {
  points: number;
  payload_bytes: number;
  loaded: { heap_per_point: number; rss_mb: number };
  reopened: { heap_per_point: number; rss_mb: number };
  /** ms per filtered search (k 10, exact), by how the filter is served. */
  filter_ms: { indexed: number; candidates: number; scan: number };
}

const FILTERS: Record<'indexed' | 'candidates' | 'scan', Filter> = {
  indexed: { category: 'toys', price: { $lt: 100 } },
  candidates: { category: 'toys', inStock: true },
  scan: { inStock: true, tags: 'amber' },
};

const DIM = 16;
const CATEGORIES = ['books', 'music', 'garden', 'toys', 'kitchen', 'sports', 'tools', 'health', 'games', 'office'];
const WORDS = ['red', 'quiet', 'steel', 'paper', 'river', 'amber', 'linen', 'north', 'maple', 'cobalt', 'velvet', 'harbor'];

function point(i: number, rand: () => number): Point {
  const pick = (xs: string[]) => xs[Math.floor(rand() * xs.length)];
  const vector = new Float32Array(DIM);
  for (let j = 0; j < DIM; j++) vector[j] = rand();
  return {
    id: i,
    vector,
    payload: {
      title: `${pick(WORDS)} ${pick(WORDS)} ${pick(WORDS)} ${pick(WORDS)} edition ${i}`,
      category: pick(CATEGORIES),
      price: Math.round(rand() * 100_000) / 100,
      tags: [pick(WORDS), pick(WORDS), pick(WORDS)],
      inStock: rand() < 0.7,
      created: new Date(1.6e12 + Math.floor(rand() * 1e11)).toISOString(),
      sku: `SKU-${(i * 2654435761 % 1e9).toString(36).toUpperCase()}`,
    },
  };
}

function heap(): number {
  global.gc!();
  global.gc!();
  return process.memoryUsage().heapUsed;
}

export function measureHeap(n: number): HeapResult {
  if (!global.gc) throw new Error('run with node --expose-gc');
  const dir = mkdtempSync(join(tmpdir(), 'vdb-heap-'));
  const opts = { name: 'items', dim: DIM, hnsw: { m: 8, efConstruction: 16 }, indexes: ['category', 'price'] };
  const log = progress('[payload heap]');
  try {
    const rand = prng(11);
    let payloadBytes = 0;
    const base = heap();
    let c = Collection.open(dir, opts);
    for (let i = 0; i < n; i += 1000) {
      const batch: Point[] = [];
      for (let j = i; j < Math.min(n, i + 1000); j++) batch.push(point(j, rand));
      for (const p of batch) payloadBytes += JSON.stringify(p.payload).length;
      c.upsert(batch);
      log(`upsert ${Math.min(n, i + 1000)}/${n}`, i + 1000 >= n);
    }
    const loaded = { heap_per_point: (heap() - base) / n, rss_mb: process.memoryUsage().rss / 2 ** 20 };
    c.close();
    const closed = heap();
    c = Collection.open(dir, { name: 'items', indexes: opts.indexes });
    const reopened = { heap_per_point: (heap() - closed) / n, rss_mb: process.memoryUsage().rss / 2 ** 20 };
    if (c.count() !== n) throw new Error(`reopened with ${c.count()} points, not ${n}`);
    const q = new Float32Array(DIM).fill(0.5);
    const time = (filter: Filter) => {
      const runs = 5;
      c.search(q, { k: 10, filter, exact: true }); // builds the sorted views of a range term once
      const t0 = process.hrtime.bigint();
      for (let i = 0; i < runs; i++) c.search(q, { k: 10, filter, exact: true });
      return Number(process.hrtime.bigint() - t0) / 1e6 / runs;
    };
    const filter_ms = { indexed: time(FILTERS.indexed), candidates: time(FILTERS.candidates), scan: time(FILTERS.scan) };
    c.close();
    return { points: n, payload_bytes: payloadBytes / n, loaded, reopened, filter_ms };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

// Run as a child of bench/scale.ts (over IPC), or directly with N as argument.
if (process.send) {
  process.once('message', (n: number) => {
    try {
      process.send!({ ok: true, result: measureHeap(n) }, () => process.exit(0));
    } catch (e) {
      process.send!({ ok: false, error: String((e as Error).stack ?? e) }, () => process.exit(1));
    }
  });
} else if (process.argv[2]) {
  console.log(JSON.stringify(measureHeap(Number(process.argv[2])), null, 2));
}
