// One engine's side of the ANN benchmark, run in its own process so its peak
// RSS is its own. Invoked by bench/ann.ts; sends its result over IPC.

import { loadDataset, recallOf } from './dataset.js';
import { ENGINES } from './engines.js';
import { progress } from './progress.js';

export interface RunRequest {
  engine: string;
  data: string;
  k: number;
  m: number;
  efConstruction: number;
  efs: number[];
  queries: number;
  runs: number;
}

export interface SweepPoint { ef: number; recall: number; qps: number; p50_ms: number; p99_ms: number }

export interface RunResult {
  engine: string;
  params: { m: number; efConstruction: number; k: number; runs: number };
  build_s: number;
  rss_mb: number;
  index_mb: number;
  sweep: SweepPoint[];
}

const mb = (b: number) => b / (1024 * 1024);

function percentile(sorted: Float64Array, p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))];
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

function run(req: RunRequest): RunResult {
  const ds = loadDataset(req.data);
  const nq = Math.min(req.queries, ds.nQueries);
  const engine = ENGINES[req.engine]({ dim: ds.dim, metric: ds.metric, m: req.m, efConstruction: req.efConstruction, capacity: ds.nBase });
  const log = progress(`[${engine.name}]`);

  const rows = Array.from({ length: ds.nBase }, (_, i) => engine.prepare(ds.base.subarray(i * ds.dim, (i + 1) * ds.dim)));
  const qs = Array.from({ length: nq }, (_, i) => engine.prepare(ds.queries.subarray(i * ds.dim, (i + 1) * ds.dim)));
  global.gc?.();
  const rssBefore = process.memoryUsage().rss;

  let buildNs = 0n;
  const step = 1000;
  for (let i = 0; i < ds.nBase; i += step) {
    const end = Math.min(ds.nBase, i + step);
    const t0 = process.hrtime.bigint();
    for (let j = i; j < end; j++) engine.add(rows[j], j);
    buildNs += process.hrtime.bigint() - t0;
    const s = Number(buildNs) / 1e9;
    log(`build ${end}/${ds.nBase}  ${(end / s).toFixed(0)} points/s`, end === ds.nBase);
  }
  const build_s = Number(buildNs) / 1e9;
  // What the build added to the process, measured the same way for every engine.
  const indexBytes = process.memoryUsage().rss - rssBefore;
  rows.length = 0;

  engine.setEf(64);
  for (let i = 0; i < Math.min(nq, 500); i++) engine.search(qs[i], req.k);

  const sweep: SweepPoint[] = [];
  const lat = new Float64Array(nq * req.runs);
  for (const ef of req.efs) {
    engine.setEf(ef);
    let recall = 0;
    const qps: number[] = [];
    for (let r = 0; r < req.runs; r++) {
      let total = 0;
      for (let q = 0; q < nq; q++) {
        const t0 = process.hrtime.bigint();
        const ids = engine.search(qs[q], req.k);
        const dt = Number(process.hrtime.bigint() - t0) / 1e6;
        lat[r * nq + q] = dt;
        total += dt;
        if (r === 0) recall += recallOf(ds, q, ids, req.k);
      }
      qps.push(nq / (total / 1000));
    }
    const sorted = lat.slice(0, nq * req.runs).sort();
    const point = { ef, recall: recall / nq, qps: median(qps), p50_ms: percentile(sorted, 0.5), p99_ms: percentile(sorted, 0.99) };
    sweep.push(point);
    log(`ef ${ef}: recall ${point.recall.toFixed(4)}  ${point.qps.toFixed(0)} QPS`, true);
  }
  return {
    engine: engine.name,
    params: { m: req.m, efConstruction: req.efConstruction, k: req.k, runs: req.runs },
    build_s,
    rss_mb: process.resourceUsage().maxRSS / 1024,
    index_mb: mb(indexBytes),
    sweep,
  };
}

process.once('message', (req: RunRequest) => {
  try {
    process.send!({ ok: true, result: run(req) }, () => process.exit(0));
  } catch (e) {
    process.send!({ ok: false, error: String((e as Error).stack ?? e) }, () => process.exit(1));
  }
});
