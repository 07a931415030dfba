// npm start (until the cluster exists): builds an index over a real data set and
// prints recall@10 and QPS at a few ef values, with exact ground truth.
// Uses fashion-mnist-784 when prepared (../shared/data/fashion-mnist-784/prepare.mjs),
// else the seeded synthetic clustered set.

import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { WasmIndex } from '../ts/index.js';
import { clustered, fashionDir, loadDataset } from './dataset.js';
import { progress } from './progress.js';

const N = Number(process.env.DEMO_POINTS ?? 20000);
const NQ = 500;
const k = 10;

let name: string, dim: number, base: Float32Array, queries: Float32Array;
if (existsSync(join(fashionDir(), 'meta.json'))) {
  const ds = loadDataset(fashionDir());
  name = `fashion-mnist-784 (first ${Math.min(N, ds.nBase)} of ${ds.nBase})`;
  dim = ds.dim;
  base = ds.base.subarray(0, Math.min(N, ds.nBase) * dim);
  queries = ds.queries.subarray(0, NQ * dim);
} else {
  name = 'synthetic clustered (fashion-mnist not prepared: node ../shared/data/fashion-mnist-784/prepare.mjs)';
  dim = 128;
  const all = clustered(N + NQ, dim, 100, 0.35, 7);
  base = all.subarray(0, N * dim);
  queries = all.subarray(N * dim);
}
const n = base.length / dim;
console.log(`${name}: ${n} × ${dim}, L2, M=16, efConstruction=200`);

const index = WasmIndex.create({ dim, metric: 'l2', m: 16, efConstruction: 200, capacity: n });
const log = progress('build');
const t0 = performance.now();
for (let i = 0; i < n; i += 1000) {
  index.addBatch(base.subarray(i * dim, Math.min(n, i + 1000) * dim));
  const done = Math.min(n, i + 1000);
  log(`${done}/${n}  ${(done / ((performance.now() - t0) / 1000)).toFixed(0)} points/s`, done === n);
}
console.log(`built in ${((performance.now() - t0) / 1000).toFixed(1)} s, ${(index.memoryBytes / 2 ** 20).toFixed(0)} MiB of Wasm memory`);

const rows = Array.from({ length: NQ }, (_, q) => queries.subarray(q * dim, (q + 1) * dim));
const truth = rows.map((q) => new Set(index.searchExact(q, k).ids));
console.log('\n    ef  recall@10       QPS');
for (const ef of [10, 32, 64, 128]) {
  let hits = 0;
  const t = performance.now();
  const results = rows.map((q) => index.search(q, k, { ef }));
  const s = (performance.now() - t) / 1000;
  results.forEach((r, q) => r.ids.forEach((id) => { if (truth[q].has(id)) hits++; }));
  console.log(`${String(ef).padStart(6)}  ${(hits / (NQ * k)).toFixed(4).padStart(9)}  ${(NQ / s).toFixed(0).padStart(8)}`);
}
