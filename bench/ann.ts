// npm run bench:ann -- [--data DIR | --synthetic] [--json FILE] [--queries N] [--runs R]
// Builds our index and hnswlib-node on the same data with the same M and
// efConstruction, each in its own process (build time and memory are each
// engine's own), then loads both into this process and sweeps ef with the two
// engines interleaved in blocks of queries, so that noise on the machine falls
// on both alike. Prints both side by side with ratios; output contract: DESIGN §10.

import { fork } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { ensureSynthetic, fashionDir, loadDataset, recallOf } from './dataset.js';
import { ENGINES } from './engines.js';
import type { Engine } from './engines.js';
import { progress } from './progress.js';
import type { BuildRequest, BuildResult } from './ann-build.js';

const { values: opt } = parseArgs({
  options: {
    data: { type: 'string' },
    synthetic: { type: 'boolean', default: false },
    json: { type: 'string' },
    queries: { type: 'string', default: '10000' },
    runs: { type: 'string', default: '3' },
    k: { type: 'string', default: '10' },
    m: { type: 'string', default: '16' },
    'ef-construction': { type: 'string', default: '200' },
    ef: { type: 'string', default: '10,16,24,32,48,64,96,128,192,256,400' },
    engines: { type: 'string', default: 'vdb-wasm,hnswlib-node' },
  },
});

interface SweepPoint { ef: number; recall: number; qps: number; p50_ms: number; p99_ms: number }
interface Result extends BuildResult { engine: string; params: object; sweep: SweepPoint[] }

const data = opt.synthetic ? ensureSynthetic() : (opt.data ?? fashionDir());
const ds = loadDataset(data);
const k = Number(opt.k);
const m = Number(opt.m);
const efConstruction = Number(opt['ef-construction']);
const efs = opt.ef.split(',').map(Number).filter((e) => e >= k);
const nq = Math.min(Number(opt.queries), ds.nQueries);
const runs = Number(opt.runs);
const names = opt.engines.split(',');
const BLOCK = 100;

function buildIn(engine: string, out: string): Promise<BuildResult> {
  return new Promise((resolve, reject) => {
    const child = fork(fileURLToPath(new URL('./ann-build.js', import.meta.url)), [], {
      execArgv: ['--expose-gc'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    child.once('message', (msg: { ok: boolean; result?: BuildResult; error?: string }) => {
      if (msg.ok) resolve(msg.result!); else reject(new Error(msg.error));
    });
    child.once('exit', (code) => { if (code !== 0) reject(new Error(`${engine} build exited with ${code}`)); });
    const req: BuildRequest = { engine, data, m, efConstruction, out };
    child.send(req);
  });
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

function sweep(engines: Engine[]): SweepPoint[][] {
  const qs = engines.map((e) => Array.from({ length: nq }, (_, i) => e.prepare(ds.queries.subarray(i * ds.dim, (i + 1) * ds.dim))));
  const log = progress('[sweep]');
  engines.forEach((e, i) => { e.setEf(64); for (let q = 0; q < Math.min(nq, 500); q++) e.search(qs[i][q], k); });
  const out: SweepPoint[][] = engines.map(() => []);
  for (const ef of efs) {
    engines.forEach((e) => e.setEf(ef));
    const lat = engines.map(() => new Float64Array(nq * runs));
    const recall = engines.map(() => 0);
    for (let r = 0; r < runs; r++) {
      for (let b = 0; b * BLOCK < nq; b++) {
        const order = (b + r) % 2 === 0 ? engines.map((_, i) => i) : engines.map((_, i) => engines.length - 1 - i);
        for (const i of order) {
          for (let q = b * BLOCK; q < Math.min(nq, (b + 1) * BLOCK); q++) {
            const t0 = process.hrtime.bigint();
            const ids = engines[i].search(qs[i][q], k);
            lat[i][r * nq + q] = Number(process.hrtime.bigint() - t0) / 1e6;
            if (r === 0) recall[i] += recallOf(ds, q, ids, k);
          }
        }
      }
    }
    engines.forEach((e, i) => {
      const perRun = Array.from({ length: runs }, (_, r) => nq / (lat[i].subarray(r * nq, (r + 1) * nq).reduce((a, x) => a + x, 0) / 1000));
      const sorted = lat[i].slice().sort();
      const at = (p: number) => sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))];
      out[i].push({ ef, recall: recall[i] / nq, qps: median(perRun), p50_ms: at(0.5), p99_ms: at(0.99) });
    });
    log(`ef ${ef}: ` + engines.map((e, i) => `${e.name} ${out[i].at(-1)!.recall.toFixed(4)} @ ${out[i].at(-1)!.qps.toFixed(0)} QPS`).join(', '), true);
  }
  return out;
}

/** QPS where the recall curve crosses `target`, interpolated between sweep points. */
export function qpsAtRecall(sweep: SweepPoint[], target: number): number | null {
  const pts = [...sweep].sort((a, b) => a.recall - b.recall || b.qps - a.qps);
  for (let i = 0; i < pts.length; i++) {
    if (pts[i].recall < target) continue;
    // Best QPS among points at or above the target, or the crossing if faster.
    let best = Math.max(...pts.slice(i).map((p) => p.qps));
    if (i > 0) {
      const a = pts[i - 1], b = pts[i];
      const t = (target - a.recall) / (b.recall - a.recall);
      best = Math.max(best, a.qps + (b.qps - a.qps) * t);
    }
    return best;
  }
  return null;
}

const fmt = (x: number | null, d = 0) => (x === null ? '—' : x.toFixed(d));
const ratio = (a: number | null, b: number | null, invert = false) =>
  a === null || b === null ? '—' : (invert ? b / a : a / b).toFixed(2) + '×';

process.stderr.write(`${ds.name}: ${ds.nBase} × ${ds.dim} (${ds.metric}), ${nq} queries, k=${k}, M=${m}, efC=${efConstruction}, ${runs} runs\n`);
const tmp = mkdtempSync(join(tmpdir(), 'vdb-ann-'));
const results: Result[] = [];
try {
  const built: BuildResult[] = [];
  for (const e of names) built.push(await buildIn(e, join(tmp, e)));
  const params = { dim: ds.dim, metric: ds.metric, m, efConstruction, capacity: ds.nBase };
  const engines = names.map((e) => ENGINES[e].load(params, join(tmp, e)));
  const sweeps = sweep(engines);
  names.forEach((e, i) => results.push({ engine: e, params: { m, efConstruction, k, runs }, ...built[i], sweep: sweeps[i] }));
} finally {
  rmSync(tmp, { recursive: true, force: true });
}

const lines: string[] = [];
lines.push(`\n${ds.name}  n=${ds.nBase} dim=${ds.dim} metric=${ds.metric} queries=${nq} k=${k} M=${m} efC=${efConstruction} (QPS: median of ${runs} runs, one query at a time, single thread, engines interleaved in blocks of ${BLOCK} queries)\n`);
lines.push(['ef', ...names.flatMap((n) => [`${n} recall`, 'QPS', 'p50 ms', 'p99 ms'])].map((s) => s.padStart(10)).join(' '));
for (let i = 0; i < efs.length; i++) {
  const row = [String(efs[i])];
  for (const r of results) {
    const p = r.sweep[i];
    row.push(p.recall.toFixed(4), p.qps.toFixed(0), p.p50_ms.toFixed(3), p.p99_ms.toFixed(3));
  }
  lines.push(row.map((s) => s.padStart(10)).join(' '));
}
lines.push('');
lines.push(['engine', 'build s', 'index MB', 'peak RSS MB', 'QPS@0.95', 'QPS@0.99'].map((s) => s.padStart(13)).join(' '));
for (const r of results) {
  lines.push([r.engine, fmt(r.build_s, 1), fmt(r.index_mb, 0), fmt(r.rss_mb, 0), fmt(qpsAtRecall(r.sweep, 0.95)), fmt(qpsAtRecall(r.sweep, 0.99))].map((s) => s.padStart(13)).join(' '));
}
if (results.length === 2) {
  const [a, b] = results;
  lines.push(`\n${a.engine} / ${b.engine}: QPS@0.95 ${ratio(qpsAtRecall(a.sweep, 0.95), qpsAtRecall(b.sweep, 0.95))}, ` +
    `QPS@0.99 ${ratio(qpsAtRecall(a.sweep, 0.99), qpsAtRecall(b.sweep, 0.99))}, ` +
    `build time ${ratio(a.build_s, b.build_s)}, index memory ${ratio(a.index_mb, b.index_mb)}, peak RSS ${ratio(a.rss_mb, b.rss_mb)}`);
}
console.log(lines.join('\n'));

if (opt.json) {
  writeFileSync(opt.json, JSON.stringify({
    dataset: ds.name, dim: ds.dim, n_base: ds.nBase, n_queries: nq, metric: ds.metric, k,
    results: results.map((r) => ({ ...r, qps_at_recall: { '0.95': qpsAtRecall(r.sweep, 0.95), '0.99': qpsAtRecall(r.sweep, 0.99) } })),
  }, null, 2));
  process.stderr.write(`wrote ${opt.json}\n`);
}
