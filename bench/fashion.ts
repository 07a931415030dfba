// fashion-mnist-784 as a benchmark data folder (bench/dataset.ts format), made
// from the Debian package dataset-fashion-mnist: the 60,000 training images
// are the base and the 10,000 test images the queries (the ann-benchmarks
// split), pixels 0..255 as float32, metric L2, with exact ground truth that
// this script computes by a full scan in our own Wasm kernels.
//
//   node dist/bench/fashion.js      prints the folder (made once, then cached)

import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { WasmIndex } from '../ts/index.js';
import { openReader } from '../cluster/readers.js';
import type { VectorReader } from '../cluster/readers.js';
import { fashionDir } from './dataset.js';
import { progress } from './progress.js';

const IDX_DIR = process.env.VDB_FASHION_IDX_DIR ?? '/usr/share/datasets/fashion-mnist';
const DIM = 784;
const GT_K = 100;

function readAll(file: string): { rows: Float32Array; n: number; dim: number } {
  const path = join(IDX_DIR, file);
  if (!existsSync(path)) throw new Error(`${path} is missing: install the Debian package with apt-get install -y dataset-fashion-mnist`);
  const r: VectorReader = openReader(path);
  try {
    const rows = new Float32Array(r.count! * r.dim);
    let at = 0;
    for (let b = r.next(4096); b; b = r.next(4096)) for (const p of b.points) { rows.set(p.vector as Float32Array, at); at += r.dim; }
    return { rows, n: r.count!, dim: r.dim };
  } finally {
    r.close();
  }
}

/** Exact L2 neighbours of every query (ids, Euclidean distances), by our SIMD full scan. */
function exactNeighbours(base: Float32Array, nBase: number, queries: Float32Array, nQueries: number): { gt: Int32Array; dist: Float32Array } {
  // A graph is not needed, only the stored vectors: the smallest build parameters.
  const index = WasmIndex.create({ dim: DIM, metric: 'l2', m: 2, efConstruction: 2, capacity: nBase });
  for (let i = 0; i < nBase; i++) index.add(base.subarray(i * DIM, (i + 1) * DIM));
  const gt = new Int32Array(nQueries * GT_K);
  const dist = new Float32Array(nQueries * GT_K);
  const log = progress('ground truth');
  for (let q = 0; q < nQueries; q++) {
    const r = index.searchExact(queries.subarray(q * DIM, (q + 1) * DIM), GT_K);
    gt.set(r.ids, q * GT_K);
    for (let j = 0; j < GT_K; j++) dist[q * GT_K + j] = Math.sqrt(r.distances[j]);
    if (q % 500 === 499 || q === nQueries - 1) log(`${q + 1}/${nQueries} queries`, q === nQueries - 1);
  }
  return { gt, dist };
}

/** Writes the folder unless it is there; returns its path. */
export function prepareFashion(dir = fashionDir()): string {
  if (existsSync(join(dir, 'meta.json'))) return dir;
  const base = readAll('train-images-idx3-ubyte.gz');
  const queries = readAll('t10k-images-idx3-ubyte.gz');
  const baseLabels = readAll('train-labels-idx1-ubyte.gz');
  const queryLabels = readAll('t10k-labels-idx1-ubyte.gz');
  const { gt, dist } = exactNeighbours(base.rows, base.n, queries.rows, queries.n);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'base.f32'), base.rows);
  writeFileSync(join(dir, 'queries.f32'), queries.rows);
  writeFileSync(join(dir, 'gt.i32'), gt);
  writeFileSync(join(dir, 'gt_dist.f32'), dist);
  writeFileSync(join(dir, 'base_labels.u8'), Uint8Array.from(baseLabels.rows));
  writeFileSync(join(dir, 'query_labels.u8'), Uint8Array.from(queryLabels.rows));
  writeFileSync(join(dir, 'meta.json'), JSON.stringify({
    name: 'fashion-mnist-784', dim: DIM, n_base: base.n, n_queries: queries.n, metric: 'euclidean',
    source: `Debian package dataset-fashion-mnist (${IDX_DIR}; Fashion-MNIST, MIT): training images as base, test images as queries`,
    gt: `exact L2 neighbours by a full scan (bench/fashion.ts), ${GT_K} per query, Euclidean distances`,
  }, null, 2));
  return dir;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) console.log(prepareFashion());
