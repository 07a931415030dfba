// npm run bench:scale -- [--n 1000000] [--dim 128] [--queries 1000] [--engines LIST]
//   [--runs R] [--seed S] [--ef LIST] [--payload-points N] [--check-limit DIM] [--json FILE]
//   [--keep DIR [--build-only]]
// A million points in one index:
//   1. seeded clustered n × dim (L2), exact ground truth for the queries
//      (bench/scale-data.ts, cached); every engine built in its own process
//      (bench/ann-build.ts), then swept interleaved (bench/ann-sweep.ts): build
//      time, index memory, QPS at recall 0.95, with ratios to hnswlib-node;
//      with --keep DIR the built indexes are kept there and reused by the next
//      run with the same parameters (so builds may run as separate commands,
//      --build-only, and the sweep after them);
//   2. the largest collection one Wasm instance holds per dimension under its
//      4 GiB memory, from the index's own layout arithmetic (WasmIndex.room);
//      with --check-limit DIM, filled for real to that count at one dimension;
//   3. JS heap bytes per point of a Collection with payloads (bench/payload-heap.ts).

import { fork } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { WasmIndex, VdbError } from '../ts/index.js';
import { MEMORY_LIMIT_BYTES } from '../ts/core/wasm-index.js';
import { loadDataset, prng } from './dataset.js';
import { ENGINES } from './engines.js';
import { buildInChild, sweep } from './ann-sweep.js';
import { qpsAtRecall } from './curves.js';
import type { SweepPoint } from './curves.js';
import type { BuildResult } from './ann-build.js';
import type { HeapResult } from './payload-heap.js';
import { ensureScale } from './scale-data.js';
import { intListOption, intOption } from './options.js';
import { progress } from './progress.js';

// SQ8 joins by default once the engine exists.
const DEFAULT_ENGINES = ['vdb-wasm', 'vdb-wasm-sq8', 'hnswlib-node'].filter((e) => e in ENGINES).join(',');
const LIMIT_DIMS = [64, 128, 384, 768, 1536];

const { values: opt } = parseArgs({
  options: {
    n: { type: 'string', default: '1000000' },
    dim: { type: 'string', default: '128' },
    queries: { type: 'string', default: '1000' },
    seed: { type: 'string', default: '1' },
    runs: { type: 'string', default: '3' },
    k: { type: 'string', default: '10' },
    m: { type: 'string', default: '16' },
    'ef-construction': { type: 'string', default: '200' },
    ef: { type: 'string', default: '10,16,24,32,48,64,96,128,192,256,400' },
    engines: { type: 'string', default: DEFAULT_ENGINES },
    'payload-points': { type: 'string', default: '200000' },
    'check-limit': { type: 'string' },
    'skip-ann': { type: 'boolean', default: false },
    keep: { type: 'string' },
    'build-only': { type: 'boolean', default: false },
    json: { type: 'string' },
  },
});

const n = intOption('n', opt.n, 1000);
const dim = intOption('dim', opt.dim, 1, 65536);
const nq = intOption('queries', opt.queries, 1, 100_000);
const runs = intOption('runs', opt.runs);
const k = intOption('k', opt.k, 1, 100);
const m = intOption('m', opt.m, 2, 256);
const efConstruction = intOption('ef-construction', opt['ef-construction']);
const seed = intOption('seed', opt.seed, 0);
const efs = intListOption('ef', opt.ef).filter((e) => e >= k);
const payloadPoints = intOption('payload-points', opt['payload-points'], 0);
const names = opt.engines.split(',');
for (const e of names) if (!(e in ENGINES)) throw new Error(`--engines: unknown engine ${e} (known: ${Object.keys(ENGINES).join(', ')})`);
const REFERENCE = 'hnswlib-node';

const fmt = (x: number | null, d = 0) => (x === null ? '—' : x.toFixed(d));
const ratio = (a: number | null, b: number | null) => (a === null || b === null ? '—' : (a / b).toFixed(2) + '×');
const row = (cells: string[], w = 13) => cells.map((s) => s.padStart(w)).join(' ');

interface EngineResult extends BuildResult { engine: string; sweep: SweepPoint[]; qps95: number | null }

async function ann(lines: string[]): Promise<{ dataset: string; results: EngineResult[] }> {
  const data = ensureScale(n, dim, nq);
  const ds = loadDataset(data);
  process.stderr.write(`${ds.name}: ${ds.nBase} × ${ds.dim} (${ds.metric}), ${nq} queries, k=${k}, M=${m}, efC=${efConstruction}, engines ${names.join(', ')}\n`);
  const keep = opt.keep;
  if (keep) mkdirSync(keep, { recursive: true });
  const tmp = keep ?? mkdtempSync(join(tmpdir(), 'vdb-scale-'));
  try {
    const builds: BuildResult[] = [];
    for (const engine of names) {
      const req = { engine, data, m, efConstruction, seed, out: join(tmp, engine) };
      const done = join(tmp, `${engine}.json`);
      const kept = existsSync(done) ? JSON.parse(readFileSync(done, 'utf8')) as { req: typeof req; result: BuildResult } : undefined;
      if (kept && JSON.stringify(kept.req) === JSON.stringify(req)) {
        process.stderr.write(`${engine}: the index built in ${done}\n`);
        builds.push(kept.result);
        continue;
      }
      const result = await buildInChild(req);
      if (keep) writeFileSync(done, JSON.stringify({ req, result }));
      builds.push(result);
    }
    if (opt['build-only']) return { dataset: ds.name, results: [] };
    const log = progress('[load]');
    const params = { dim: ds.dim, metric: ds.metric, m, efConstruction, capacity: ds.nBase, seed };
    const engines = names.map((e) => { log(e, true); return ENGINES[e].load(params, join(tmp, e)); });
    const sweeps = sweep(ds, engines, { k, efs, queries: nq, runs, block: 100 });
    const results = names.map((engine, i) => ({ engine, ...builds[i], sweep: sweeps[i], qps95: qpsAtRecall(sweeps[i], 0.95) }));
    lines.push(`\n${ds.name}  n=${ds.nBase} dim=${ds.dim} metric=${ds.metric} queries=${nq} k=${k} M=${m} efC=${efConstruction} (QPS: median of ${runs} runs, one query at a time, single thread, engines interleaved in blocks of 100 queries)\n`);
    lines.push(row(['ef', ...names.flatMap((e) => [`${e} recall`, 'QPS'])], 12));
    efs.forEach((ef, i) => lines.push(row([String(ef), ...results.flatMap((r) => [r.sweep[i].recall.toFixed(4), r.sweep[i].qps.toFixed(0)])], 12)));
    lines.push('');
    lines.push(row(['engine', 'build s', 'build CPU s', 'index MB', 'peak RSS MB', 'QPS@0.95']));
    for (const r of results) lines.push(row([r.engine, fmt(r.build_s, 1), fmt(r.cpu_s, 1), fmt(r.index_mb, 0), fmt(r.rss_mb, 0), fmt(r.qps95)]));
    const ref = results.find((r) => r.engine === REFERENCE);
    if (ref) {
      for (const r of results.filter((x) => x !== ref)) {
        lines.push(`${r.engine} / ${ref.engine}: build time ${ratio(r.build_s, ref.build_s)} (CPU ${ratio(r.cpu_s, ref.cpu_s)}), index memory ${ratio(r.index_mb, ref.index_mb)}, QPS@0.95 ${ratio(r.qps95, ref.qps95)}`);
      }
    }
    return { dataset: ds.name, results };
  } finally {
    if (!keep) rmSync(tmp, { recursive: true, force: true });
  }
}

/** The most points an index of `d` dimensions (M = m) holds in one Wasm memory. */
function limitFor(d: number): number {
  return WasmIndex.create({ dim: d, m, capacity: 0 }).room();
}

function limits(lines: string[]): { dim: number; points: number; bytes_per_point: number }[] {
  const out = LIMIT_DIMS.map((d) => {
    const points = limitFor(d);
    return { dim: d, points, bytes_per_point: MEMORY_LIMIT_BYTES / points };
  });
  lines.push(`\nLargest index one Wasm instance holds (float32 vectors, M=${m}; memory limit ${MEMORY_LIMIT_BYTES} bytes, from WasmIndex.room)\n`);
  lines.push(row(['dim', 'points', 'bytes/point', 'vector bytes']));
  for (const r of out) lines.push(row([String(r.dim), r.points.toLocaleString('en'), r.bytes_per_point.toFixed(0), String(4 * r.dim)]));
  return out;
}

/** Fills an index of `d` dimensions to its computed limit, then on until memory runs out. */
function checkLimit(d: number, lines: string[]): { dim: number; computed: number; added: number; memory_bytes: number; beyond: number } {
  const computed = limitFor(d);
  // The smallest efConstruction keeps the fill quick: memory depends on M and
  // the seeded levels, not on how well the graph is built.
  const idx = WasmIndex.create({ dim: d, m, efConstruction: 1, capacity: 0 });
  const rand = prng(5);
  const v = new Float32Array(d);
  const log = progress(`[limit ${d}]`);
  let added = 0;
  let beyond = 0;
  for (;;) {
    for (let j = 0; j < d; j++) v[j] = rand();
    try {
      idx.add(v);
    } catch (e) {
      if (e instanceof VdbError && e.code === 'OUT_OF_MEMORY') break;
      throw e;
    }
    if (added < computed) added++; else beyond++;
    if ((added + beyond) % 10_000 === 0) log(`${added + beyond} points, ${(idx.memoryBytes / 2 ** 20).toFixed(0)} MiB`);
  }
  log(`${added} points at the computed limit, ${beyond} more before OUT_OF_MEMORY`, true);
  lines.push(`\nFilled for real at dim ${d}: the computed limit of ${computed.toLocaleString('en')} points all fit; ${beyond.toLocaleString('en')} more fit before OUT_OF_MEMORY (memory ${idx.memoryBytes} bytes)`);
  return { dim: d, computed, added, memory_bytes: idx.memoryBytes, beyond };
}

function payloadHeap(points: number, lines: string[]): Promise<HeapResult> {
  return new Promise((resolve, reject) => {
    const child = fork(fileURLToPath(new URL('./payload-heap.js', import.meta.url)), [], {
      execArgv: ['--expose-gc'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    child.once('message', (msg: { ok: boolean; result?: HeapResult; error?: string }) => {
      if (!msg.ok) { reject(new Error(msg.error)); return; }
      const r = msg.result!;
      lines.push(`\nCollection with payloads: ${r.points.toLocaleString('en')} points, ${r.payload_bytes.toFixed(0)} bytes of payload JSON each, fields category and price indexed\n`);
      lines.push(row(['', 'heap B/point', 'RSS MB']));
      lines.push(row(['loaded', r.loaded.heap_per_point.toFixed(0), r.loaded.rss_mb.toFixed(0)]));
      lines.push(row(['reopened', r.reopened.heap_per_point.toFixed(0), r.reopened.rss_mb.toFixed(0)]));
      lines.push(`filtered search (k 10, exact), ms: from the indexes ${r.filter_ms.indexed.toFixed(1)}, indexed term's candidates read from SQLite ${r.filter_ms.candidates.toFixed(1)}, scan of every stored payload ${r.filter_ms.scan.toFixed(1)}`);
      resolve(r);
    });
    child.once('exit', (code) => { if (code !== 0) reject(new Error(`payload heap bench exited with ${code}`)); });
    child.send(points);
  });
}

const lines: string[] = [];
const report: Record<string, unknown> = {};
if (!opt['skip-ann']) report.ann = await ann(lines);
report.limits = limits(lines);
if (opt['check-limit'] !== undefined) report.limit_check = checkLimit(intOption('check-limit', opt['check-limit'], 1, 65536), lines);
if (payloadPoints > 0) report.payload_heap = await payloadHeap(payloadPoints, lines);
console.log(lines.join('\n'));
if (opt.json) {
  writeFileSync(opt.json, JSON.stringify(report, null, 2));
  process.stderr.write(`wrote ${opt.json}\n`);
}
