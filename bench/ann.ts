// npm run bench:ann -- [--data DIR | --data words | --words | --synthetic] [--seeds N]
//                      [--json FILE] [--plot FILE.svg] [--queries N] [--runs R]
// Builds our index and hnswlib-node on the same data with the same M and
// efConstruction, each in its own process (build time and memory are each
// engine's own), then loads both into this process and sweeps ef with the two
// engines interleaved in blocks of queries, so that noise on the machine falls
// on both alike. A build is one draw of the graph (its level generator's seed
// decides it), so each engine is built with seeds 1..N, one seed's pair at a
// time, and the report is the median curve over seeds with its spread; ratios
// come from the median curves. Output contract: docs/benchmarks.md (--json).

import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { ensureSynthetic, loadDataset } from './dataset.js';
import { buildInChild, sweep } from './ann-sweep.js';
import { prepareFashion } from './fashion.js';
import { ENGINES } from './engines.js';
import { intListOption, intOption } from './options.js';
import { medianCurve, qpsAtRecall, spread } from './curves.js';
import type { BandPoint, Spread, SweepPoint } from './curves.js';
import { recallQpsSvg } from './plot.js';
import { prepareWords } from './words.js';
import type { BuildResult } from './ann-build.js';

const { values: opt } = parseArgs({
  options: {
    data: { type: 'string' },
    synthetic: { type: 'boolean', default: false },
    words: { type: 'boolean', default: false },
    json: { type: 'string' },
    plot: { type: 'string' },
    seeds: { type: 'string', default: '3' },
    queries: { type: 'string', default: '10000' },
    runs: { type: 'string', default: '3' },
    k: { type: 'string', default: '10' },
    m: { type: 'string', default: '16' },
    'ef-construction': { type: 'string', default: '200' },
    ef: { type: 'string', default: '10,16,24,32,48,64,96,128,192,256,400' },
    engines: { type: 'string', default: 'vdb-wasm,hnswlib-node' },
  },
});

interface SeedResult extends BuildResult { seed: number; sweep: SweepPoint[] }
interface Result {
  engine: string;
  params: object;
  build_s: number;
  index_mb: number;
  rss_mb: number;
  /** The median curve over seeds, with the spread of recall and QPS per ef. */
  sweep: BandPoint[];
  spread: { build_s: Spread; index_mb: Spread; rss_mb: Spread };
  per_seed: SeedResult[];
}

const data = opt.synthetic ? ensureSynthetic() : opt.words || opt.data === 'words' ? prepareWords() : (opt.data ?? prepareFashion());
const ds = loadDataset(data);
const k = intOption('k', opt.k);
const m = intOption('m', opt.m, 2);
const efConstruction = intOption('ef-construction', opt['ef-construction']);
const efs = intListOption('ef', opt.ef).filter((e) => e >= k);
const nq = Math.min(intOption('queries', opt.queries), ds.nQueries);
const runs = intOption('runs', opt.runs);
// The same seeds on every run, so that two runs of the bench compare the same graphs.
const seeds = Array.from({ length: intOption('seeds', opt.seeds, 1, 100) }, (_, i) => i + 1);
const names = opt.engines.split(',');
for (const n of names) if (!ENGINES[n]) throw new Error(`unknown engine ${n}: one of ${Object.keys(ENGINES).join(', ')}`);
const BLOCK = 100;

const fmt = (x: number | null, d = 0) => (x === null ? '—' : x.toFixed(d));
const ratio = (a: number | null, b: number | null) => (a === null || b === null ? '—' : (a / b).toFixed(2) + '×');
const withSpread = (s: Spread, d: number) => `${s.median.toFixed(d)} (${s.min.toFixed(d)}–${s.max.toFixed(d)})`;

process.stderr.write(`${ds.name}: ${ds.nBase} × ${ds.dim} (${ds.metric}), ${nq} queries, k=${k}, M=${m}, efC=${efConstruction}, ` +
  `${runs} runs, seeds ${seeds.join(',')}\n`);
const tmp = mkdtempSync(join(tmpdir(), 'vdb-ann-'));
const perSeed: SeedResult[][] = names.map(() => []);
try {
  for (const seed of seeds) {
    const dir = join(tmp, `seed-${seed}`);
    mkdirSync(dir);
    const built: BuildResult[] = [];
    for (const e of names) built.push(await buildInChild({ engine: e, data, m, efConstruction, seed, out: join(dir, e) }));
    const params = { dim: ds.dim, metric: ds.metric, m, efConstruction, capacity: ds.nBase, seed };
    const sweeps = sweep(ds, names.map((e) => ENGINES[e].load(params, join(dir, e))), { k, efs, queries: nq, runs, block: BLOCK, label: `sweep seed ${seed}` });
    names.forEach((_, i) => perSeed[i].push({ seed, ...built[i], sweep: sweeps[i] }));
    rmSync(dir, { recursive: true, force: true });
  }
} finally {
  rmSync(tmp, { recursive: true, force: true });
}

const results: Result[] = names.map((engine, i) => {
  const s = perSeed[i];
  const sp = { build_s: spread(s.map((r) => r.build_s)), index_mb: spread(s.map((r) => r.index_mb)), rss_mb: spread(s.map((r) => r.rss_mb)) };
  return {
    engine, params: { m, efConstruction, k, runs, seeds },
    build_s: sp.build_s.median, index_mb: sp.index_mb.median, rss_mb: sp.rss_mb.median,
    sweep: medianCurve(s.map((r) => r.sweep)), spread: sp, per_seed: s,
  };
});

const lines: string[] = [];
lines.push(`\n${ds.name}  n=${ds.nBase} dim=${ds.dim} metric=${ds.metric} queries=${nq} k=${k} M=${m} efC=${efConstruction}, seeds ${seeds.join(',')}`);
lines.push(`(median over seeds, min–max in brackets; QPS of one seed: median of ${runs} runs, one query at a time, single thread, engines interleaved in blocks of ${BLOCK} queries)\n`);
const twoWay = results.length === 2;
const head = ['ef'.padStart(4), ...names.flatMap((n) => [`${n} recall`.padStart(22), 'QPS'.padStart(20)])];
if (twoWay) head.push('Δ recall'.padStart(9));
lines.push(head.join(' '));
for (let i = 0; i < efs.length; i++) {
  const row = [String(efs[i]).padStart(4)];
  for (const r of results) {
    const p = r.sweep[i];
    row.push(`${p.recall.toFixed(4)} (${p.recall_min.toFixed(3)}–${p.recall_max.toFixed(3)})`.padStart(22));
    row.push(`${p.qps.toFixed(0)} (${p.qps_min.toFixed(0)}–${p.qps_max.toFixed(0)})`.padStart(20));
  }
  if (twoWay) row.push((results[0].sweep[i].recall - results[1].sweep[i].recall).toFixed(4).padStart(9));
  lines.push(row.join(' '));
}
if (twoWay) lines.push(`Δ recall: ${names[0]} median − ${names[1]} median at the same ef`);
lines.push('');
lines.push(['engine'.padStart(13), 'build s'.padStart(18), 'index MB'.padStart(16), 'peak RSS MB'.padStart(16), 'QPS@0.95'.padStart(9), 'QPS@0.99'.padStart(9)].join(' '));
for (const r of results) {
  lines.push([r.engine.padStart(13), withSpread(r.spread.build_s, 1).padStart(18), withSpread(r.spread.index_mb, 0).padStart(16),
    withSpread(r.spread.rss_mb, 0).padStart(16), fmt(qpsAtRecall(r.sweep, 0.95)).padStart(9), fmt(qpsAtRecall(r.sweep, 0.99)).padStart(9)].join(' '));
}
if (twoWay) {
  const [a, b] = results;
  lines.push(`\n${a.engine} / ${b.engine} (median curves and medians over seeds): QPS@0.95 ${ratio(qpsAtRecall(a.sweep, 0.95), qpsAtRecall(b.sweep, 0.95))}, ` +
    `QPS@0.99 ${ratio(qpsAtRecall(a.sweep, 0.99), qpsAtRecall(b.sweep, 0.99))}, ` +
    `build time ${ratio(a.build_s, b.build_s)}, index memory ${ratio(a.index_mb, b.index_mb)}, peak RSS ${ratio(a.rss_mb, b.rss_mb)}`);
  // Each seed's pair ran interleaved, so its ratio holds even when the load on
  // the machine changed between seeds (which widens the QPS spread above).
  const perSeedRatio = (target: number) => a.per_seed.map((sa, j) => ratio(qpsAtRecall(sa.sweep, target), qpsAtRecall(b.per_seed[j].sweep, target))).join(', ');
  lines.push(`per seed ${seeds.join(', ')}: QPS@0.95 ${perSeedRatio(0.95)}; QPS@0.99 ${perSeedRatio(0.99)}`);
}
console.log(lines.join('\n'));

if (opt.json) {
  writeFileSync(opt.json, JSON.stringify({
    dataset: ds.name, dim: ds.dim, n_base: ds.nBase, n_queries: nq, metric: ds.metric, k, seeds,
    results: results.map((r) => ({ ...r, qps_at_recall: { '0.95': qpsAtRecall(r.sweep, 0.95), '0.99': qpsAtRecall(r.sweep, 0.99) } })),
  }, null, 2));
  process.stderr.write(`wrote ${opt.json}\n`);
}
if (opt.plot) {
  writeFileSync(opt.plot, recallQpsSvg({
    title: `${ds.name} (${ds.nBase.toLocaleString('en')} × ${ds.dim}, ${ds.metric})`,
    subtitle: `recall@${k} against single-thread QPS, M ${m}, efConstruction ${efConstruction}; line: median over seeds ${seeds.join(',')}, band: min–max`,
    series: results.map((r) => ({ name: r.engine, points: r.sweep })),
  }));
  process.stderr.write(`wrote ${opt.plot}\n`);
}
