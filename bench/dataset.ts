// Benchmark data folders: base.f32, queries.f32, gt.i32, gt_dist.f32 and
// meta.json ({dim, n_base, n_queries, metric}), all little-endian row-major.

import { readFileSync, writeFileSync, mkdirSync, existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import type { Metric } from '../ts/index.js';
import { progress } from './progress.js';

export interface Dataset {
  name: string;
  dir: string;
  dim: number;
  metric: Metric;
  base: Float32Array;
  queries: Float32Array;
  nBase: number;
  nQueries: number;
  gt: Int32Array;
  gtDist: Float32Array;
  gtK: number;
}

function readF32(path: string): Float32Array {
  const b = readFileSync(path);
  return new Float32Array(b.buffer, b.byteOffset, b.byteLength / 4);
}

function readI32(path: string): Int32Array {
  const b = readFileSync(path);
  return new Int32Array(b.buffer, b.byteOffset, b.byteLength / 4);
}

export function cacheRoot(): string {
  return process.env.VDB_DATA_DIR ?? join(homedir(), '.cache', 'vdb-data');
}

export function loadDataset(dir: string): Dataset {
  const metaPath = join(dir, 'meta.json');
  if (!existsSync(metaPath)) {
    throw new Error(`${dir} has no meta.json. For fashion-mnist run: node dist/bench/fashion.js (reads the Debian package dataset-fashion-mnist)`);
  }
  const meta = JSON.parse(readFileSync(metaPath, 'utf8'));
  const dim = Number(meta.dim);
  const metric: Metric = meta.metric === 'euclidean' || meta.metric === undefined ? 'l2' : meta.metric;
  if (!['l2', 'ip', 'cosine'].includes(metric)) throw new Error(`unknown metric ${meta.metric} in ${metaPath}`);
  const base = readF32(join(dir, 'base.f32'));
  const queries = readF32(join(dir, 'queries.f32'));
  const nBase = Number(meta.n_base ?? base.length / dim);
  const nQueries = Number(meta.n_queries ?? queries.length / dim);
  if (base.length !== nBase * dim || queries.length !== nQueries * dim) {
    throw new Error(`${dir}: file sizes do not match meta.json (dim ${dim}, n_base ${nBase}, n_queries ${nQueries})`);
  }
  const gt = readI32(join(dir, 'gt.i32'));
  const gtDist = readF32(join(dir, 'gt_dist.f32'));
  const gtK = gt.length / nQueries;
  return { name: meta.name ?? dir.split('/').filter(Boolean).pop()!, dir, dim, metric, base, queries, nBase, nQueries, gt, gtDist, gtK };
}

import { mulberry32 as prng } from '../ts/random.js';

export { prng };

export function gaussian(rand: () => number): () => number {
  return () => Math.sqrt(-2 * Math.log(1 - rand())) * Math.cos(2 * Math.PI * rand());
}

/** Seeded clusters: points around `clusters` random centres. */
export function clustered(n: number, dim: number, clusters: number, spread: number, seed: number): Float32Array {
  const rand = prng(seed);
  const g = gaussian(rand);
  const centres = new Float32Array(clusters * dim);
  for (let i = 0; i < centres.length; i++) centres[i] = g();
  const out = new Float32Array(n * dim);
  for (let i = 0; i < n; i++) {
    const c = Math.floor(rand() * clusters) * dim;
    for (let j = 0; j < dim; j++) out[i * dim + j] = centres[c + j] + spread * g();
  }
  return out;
}

/** Puts (d, i) into the ascending top-k lists `bestD`/`bestI` if it is closer than their last. */
export function insertTopK(bestD: Float64Array, bestI: Int32Array, d: number, i: number): void {
  const k = bestD.length;
  if (d >= bestD[k - 1]) return;
  let p = k - 1;
  while (p > 0 && bestD[p - 1] > d) {
    bestD[p] = bestD[p - 1];
    bestI[p] = bestI[p - 1];
    p--;
  }
  bestD[p] = d;
  bestI[p] = i;
}

/** Exact L2 ground truth (float64 sums): ids and Euclidean distances, nearest first. */
export function groundTruth(base: Float32Array, queries: Float32Array, dim: number, k: number,
                            progress?: (done: number, total: number) => void): { gt: Int32Array; dist: Float32Array } {
  const nb = base.length / dim;
  const nq = queries.length / dim;
  const gt = new Int32Array(nq * k);
  const dist = new Float32Array(nq * k);
  const bestD = new Float64Array(k);
  const bestI = new Int32Array(k);
  for (let q = 0; q < nq; q++) {
    bestD.fill(Infinity);
    bestI.fill(-1);
    const qo = q * dim;
    for (let i = 0; i < nb; i++) {
      const bo = i * dim;
      let s = 0;
      for (let j = 0; j < dim; j++) {
        const d = base[bo + j] - queries[qo + j];
        s += d * d;
      }
      insertTopK(bestD, bestI, s, i);
    }
    for (let j = 0; j < k; j++) {
      gt[q * k + j] = bestI[j];
      dist[q * k + j] = Math.sqrt(bestD[j]);
    }
    if (progress && (q % 50 === 49 || q === nq - 1)) progress(q + 1, nq);
  }
  return { gt, dist };
}

/** The seeded clustered 100k × 128 set, written once to the cache. */
export function ensureSynthetic(n = 100_000, dim = 128, nQueries = 1000): string {
  const dir = join(cacheRoot(), `synthetic-${n / 1000}k-${dim}`);
  if (existsSync(join(dir, 'meta.json'))) return dir;
  mkdirSync(dir, { recursive: true });
  process.stderr.write(`generating ${dir}\n`);
  const all = clustered(n + nQueries, dim, 100, 0.35, 7);
  const base = all.slice(0, n * dim);
  const queries = all.slice(n * dim);
  const log = progress('ground truth');
  const { gt, dist } = groundTruth(base, queries, dim, 100, (d, t) => log(`${d}/${t} queries`, d === t));
  writeFileSync(join(dir, 'base.f32'), base);
  writeFileSync(join(dir, 'queries.f32'), queries);
  writeFileSync(join(dir, 'gt.i32'), gt);
  writeFileSync(join(dir, 'gt_dist.f32'), dist);
  writeFileSync(join(dir, 'meta.json'), JSON.stringify({
    name: `synthetic-clustered-${n / 1000}k-${dim}`, dim, n_base: n, n_queries: nQueries, metric: 'l2',
    generator: 'bench/dataset.ts clustered(n + nQueries, dim, 100 clusters, spread 0.35, seed 7)',
  }, null, 2));
  return dir;
}

export function fashionDir(): string {
  return join(cacheRoot(), 'fashion-mnist-784');
}

/** The metric's distance between base row `i` and query row `q`, in the ground
 * truth's units: Euclidean for l2, 1 − cosine for cosine, −dot for ip. */
export function trueDistance(ds: Dataset, q: number, i: number): number {
  const qo = q * ds.dim;
  const bo = i * ds.dim;
  let s = 0, qq = 0, bb = 0;
  for (let j = 0; j < ds.dim; j++) {
    const a = ds.queries[qo + j];
    const b = ds.base[bo + j];
    if (ds.metric === 'l2') s += (a - b) * (a - b);
    else { s += a * b; qq += a * a; bb += b * b; }
  }
  if (ds.metric === 'l2') return Math.sqrt(s);
  if (ds.metric === 'ip') return -s;
  return 1 - s / Math.sqrt(qq * bb);
}

/**
 * recall@k of one result list: hits among the true k nearest; a result that is
 * not among them but lies at the k-th distance (a tie) counts too, its distance
 * recomputed from the data rather than taken from the engine.
 */
export function recallOf(ds: Dataset, q: number, ids: ArrayLike<number>, k: number): number {
  const row = q * ds.gtK;
  const kth = ds.gtDist[row + k - 1];
  const limit = kth + Math.abs(kth) * 1e-4;
  let hits = 0;
  const n = Math.min(k, ids.length);
  for (let i = 0; i < n; i++) {
    let found = false;
    for (let j = 0; j < k; j++) if (ds.gt[row + j] === ids[i]) { found = true; break; }
    if (found || trueDistance(ds, q, ids[i]) <= limit) hits++;
  }
  return hits / k;
}
