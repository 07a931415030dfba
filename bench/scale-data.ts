// The million-point data set of bench:scale: seeded clusters as bench/dataset.ts
// makes them, written once to the cache with exact ground truth. The truth is
// our own exact scan (a WasmIndex's SIMD flat search) rather than the float64
// loop of dataset.ts, which would take many minutes at a million points.

import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { WasmIndex } from '../ts/index.js';
import { cacheRoot, clustered } from './dataset.js';
import { progress } from './progress.js';

/** Nearest neighbours kept per query. */
const GT_K = 100;

/** Exact L2 neighbours of each query: ids and Euclidean distances, nearest first. */
export function exactTruth(base: Float32Array, queries: Float32Array, dim: number, k = GT_K): { gt: Int32Array; dist: Float32Array } {
  const nb = base.length / dim;
  const nq = queries.length / dim;
  // The graph is not used: the smallest one makes loading the vectors quick.
  const idx = WasmIndex.create({ dim, metric: 'l2', m: 2, efConstruction: 1, capacity: nb });
  const log = progress('ground truth');
  for (let i = 0; i < nb; i++) {
    idx.add(base.subarray(i * dim, (i + 1) * dim));
    if (i % 10_000 === 9_999 || i === nb - 1) log(`load ${i + 1}/${nb}`, i === nb - 1);
  }
  const gt = new Int32Array(nq * k);
  const dist = new Float32Array(nq * k);
  for (let q = 0; q < nq; q++) {
    // A fresh index hands out slots in insertion order: slot = row.
    const r = idx.searchExact(queries.subarray(q * dim, (q + 1) * dim), k);
    for (let j = 0; j < k; j++) {
      gt[q * k + j] = r.ids[j];
      dist[q * k + j] = Math.sqrt(Math.max(0, r.distances[j]));
    }
    if (q % 50 === 49 || q === nq - 1) log(`${q + 1}/${nq} queries`, q === nq - 1);
  }
  return { gt, dist };
}

/** n × dim seeded clustered points and nQueries queries, in a cached data folder. */
export function ensureScale(n: number, dim: number, nQueries: number): string {
  const dir = join(cacheRoot(), `scale-${n}-${dim}-${nQueries}`);
  if (existsSync(join(dir, 'meta.json'))) return dir;
  mkdirSync(dir, { recursive: true });
  process.stderr.write(`generating ${dir}\n`);
  const all = clustered(n + nQueries, dim, 100, 0.35, 7);
  const base = all.subarray(0, n * dim);
  const queries = all.subarray(n * dim);
  const { gt, dist } = exactTruth(base, queries, dim);
  writeFileSync(join(dir, 'base.f32'), base);
  writeFileSync(join(dir, 'queries.f32'), queries);
  writeFileSync(join(dir, 'gt.i32'), gt);
  writeFileSync(join(dir, 'gt_dist.f32'), dist);
  // meta.json last: its presence means the folder is complete.
  writeFileSync(join(dir, 'meta.json'), JSON.stringify({
    name: `clustered-${n >= 1e6 ? `${n / 1e6}M` : `${n / 1000}k`}-${dim}`, dim, n_base: n, n_queries: nQueries, metric: 'l2',
    generator: `bench/dataset.ts clustered(n + nQueries, dim, 100 clusters, spread 0.35, seed 7); ground truth by exact SIMD scan (bench/scale-data.ts)`,
  }, null, 2));
  return dir;
}
