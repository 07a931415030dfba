// npm run bench:ann -- [--data DIR | --synthetic] [--json FILE] [--queries N] [--runs R]
// Builds our index and hnswlib-node on the same data with the same M and
// efConstruction, each in its own process, sweeps ef, and prints both side by
// side with ratios. Output contract: DESIGN §10.

import { fork } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { ensureSynthetic, fashionDir, loadDataset } from './dataset.js';
import type { RunRequest, RunResult, SweepPoint } from './ann-run.js';

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

const data = opt.synthetic ? ensureSynthetic() : (opt.data ?? fashionDir());
const ds = loadDataset(data);
const k = Number(opt.k);
const base: Omit<RunRequest, 'engine'> = {
  data, k, m: Number(opt.m), efConstruction: Number(opt['ef-construction']),
  efs: opt.ef.split(',').map(Number).filter((e) => e >= k), queries: Number(opt.queries), runs: Number(opt.runs),
};

function runEngine(engine: string): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = fork(fileURLToPath(new URL('./ann-run.js', import.meta.url)), [], {
      execArgv: ['--expose-gc'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    child.once('message', (m: { ok: boolean; result?: RunResult; error?: string }) => {
      if (m.ok) resolve(m.result!); else reject(new Error(m.error));
    });
    child.once('exit', (code) => { if (code !== 0) reject(new Error(`${engine} run exited with ${code}`)); });
    child.send({ ...base, engine });
  });
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

const nq = Math.min(base.queries, ds.nQueries);
process.stderr.write(`${ds.name}: ${ds.nBase} × ${ds.dim} (${ds.metric}), ${nq} queries, k=${k}, M=${base.m}, efC=${base.efConstruction}, ${base.runs} runs\n`);
const results: RunResult[] = [];
for (const e of opt.engines.split(',')) results.push(await runEngine(e));

const lines: string[] = [];
lines.push(`\n${ds.name}  n=${ds.nBase} dim=${ds.dim} metric=${ds.metric} queries=${nq} k=${k} M=${base.m} efC=${base.efConstruction} (QPS: median of ${base.runs} runs, one query at a time, single thread)\n`);
const names = results.map((r) => r.engine);
lines.push(['ef', ...names.flatMap((n) => [`${n} recall`, 'QPS', 'p50 ms', 'p99 ms'])].map((s) => s.padStart(10)).join(' '));
for (let i = 0; i < base.efs.length; i++) {
  const row = [String(base.efs[i])];
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
