// npm run bench:collection -- [--data DIR] [--points N] [--queries N] [--runs R] [--ef LIST] [--json FILE]
// What the embedded Collection's persistence costs, on the same data and with
// the same M / efConstruction / seed as a bare WasmIndex:
//   1. upsert throughput into a fresh data directory (SQLite transactions, id
//      maps, payloads, background snapshots), batch for batch against the bare
//      index's addBatch; the two are interleaved batch by batch (alternating
//      which goes first) so noise on the machine falls on both alike;
//   2. open time from the snapshot against a full rebuild from the points table
//      (snapshot rows deleted with better-sqlite3);
//   3. filtered search: QPS and recall@10 at selectivities 50 %, 10 %, 1 %, 0.1 %,
//      recall against the exact search with the same filter.
// Every point carries a payload {bucket}, a seeded random integer 0..999.
// Inputs are prepared in their native form (Float32Array rows, point objects)
// before any clock starts.

import Database from 'better-sqlite3';
import { existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Collection, WasmIndex } from '../ts/index.js';
import type { Filter, Hit, OpenOptions, Point } from '../ts/index.js';
import { loadDataset, prng } from './dataset.js';
import { prepareFashion } from './fashion.js';
import { progress } from './progress.js';
import { intListOption, intOption } from './options.js';

const { values: opt } = parseArgs({
  options: {
    data: { type: 'string' },
    points: { type: 'string' },
    queries: { type: 'string', default: '1000' },
    runs: { type: 'string', default: '3' },
    k: { type: 'string', default: '10' },
    ef: { type: 'string', default: '64' },
    m: { type: 'string', default: '16' },
    'ef-construction': { type: 'string', default: '200' },
    batch: { type: 'string', default: '1000' },
    json: { type: 'string' },
  },
});

const ds = loadDataset(opt.data ?? prepareFashion());
const dim = ds.dim;
const n = Math.min(opt.points === undefined ? ds.nBase : intOption('points', opt.points), ds.nBase);
const nq = Math.min(intOption('queries', opt.queries), ds.nQueries);
const runs = intOption('runs', opt.runs);
const k = intOption('k', opt.k);
const efs = intListOption('ef', opt.ef, k);
const m = intOption('m', opt.m);
const efConstruction = intOption('ef-construction', opt['ef-construction']);
const batch = intOption('batch', opt.batch);

const now = () => performance.now();
const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const yieldToEventLoop = () => new Promise<void>((resolve) => setImmediate(resolve));

// ------------------------------------------------------------ inputs, prepared

const rand = prng(20240601);
const bucket = new Int32Array(n);
for (let i = 0; i < n; i++) bucket[i] = Math.floor(rand() * 1000);

const flatBatches: Float32Array[] = [];
const pointBatches: Point[][] = [];
for (let i = 0; i < n; i += batch) {
  const end = Math.min(n, i + batch);
  flatBatches.push(ds.base.subarray(i * dim, end * dim));
  const pts: Point[] = [];
  for (let j = i; j < end; j++) pts.push({ id: j, vector: ds.base.subarray(j * dim, (j + 1) * dim), payload: { bucket: bucket[j] } });
  pointBatches.push(pts);
}
const queries = Array.from({ length: nq }, (_, q) => ds.queries.subarray(q * dim, (q + 1) * dim));

const tmp = mkdtempSync(join(tmpdir(), 'vdb-bench-collection-'));
const dataDir = join(tmp, 'data');
const openOpts: OpenOptions = { name: 'bench', dim, metric: ds.metric, hnsw: { m, efConstruction }, indexes: ['bucket'] };

process.stderr.write(`${ds.name}: ${n} of ${ds.nBase} points × ${dim} (${ds.metric}), ${nq} queries, M=${m}, efC=${efConstruction}, ` +
  `batches of ${batch}, data in ${dataDir}; load average ${loadavg()[0].toFixed(2)}\n`);

function fileBytes(p: string): number {
  return existsSync(p) ? statSync(p).size : 0;
}

// ------------------------------------------------------------------ 1. upsert

interface UpsertResult { bare_s: number; collection_s: number; close_s: number; sqlite_mb: number }

async function upsertBench(): Promise<UpsertResult> {
  let bare: WasmIndex | undefined = WasmIndex.create({ dim, metric: ds.metric, m, efConstruction });
  const c = Collection.open(dataDir, openOpts);
  const log = progress('[upsert]');
  let tBare = 0;
  let tColl = 0;
  const t0 = now();
  for (let b = 0; b < flatBatches.length; b++) {
    for (const side of b % 2 === 0 ? ['bare', 'collection'] : ['collection', 'bare']) {
      const t = now();
      if (side === 'bare') {
        bare!.addBatch(flatBatches[b]);
        tBare += now() - t;
      } else {
        c.upsert(pointBatches[b]);
        // A turn of the event loop, as any server gives it: the background snapshot writes its parts here.
        await yieldToEventLoop();
        tColl += now() - t;
      }
    }
    const done = Math.min(n, (b + 1) * batch);
    const eta = ((now() - t0) / done) * (n - done) / 1000;
    log(`${done}/${n} points: bare ${(done / (tBare / 1000)).toFixed(0)} points/s, collection ${(done / (tColl / 1000)).toFixed(0)} points/s, ETA ${eta.toFixed(0)} s`, done === n);
  }
  if (bare.size !== n || c.count() !== n) throw new Error(`built ${bare.size} and ${c.count()} points, expected ${n}`);
  bare = undefined;
  // The final snapshot is written explicitly: close() alone skips it when a background
  // snapshot is in flight (and abandons that one), which would make the next open replay.
  const t = now();
  c.snapshot();
  c.close();
  const tClose = now() - t;
  const sqlite = fileBytes(join(dataDir, 'vdb.sqlite')) + fileBytes(join(dataDir, 'vdb.sqlite-wal'));
  return { bare_s: tBare / 1000, collection_s: tColl / 1000, close_s: tClose / 1000, sqlite_mb: sqlite / 2 ** 20 };
}

// -------------------------------------------------------------------- 2. open

interface OpenResult { snapshot_s: number; rebuild_s: number }

function openBench(): OpenResult {
  const log = progress('[open]');
  const fromSnapshot: number[] = [];
  for (let r = 0; r < runs; r++) {
    const t = now();
    const c = Collection.open(dataDir, openOpts);
    fromSnapshot.push(now() - t);
    if (c.count() !== n) throw new Error(`reopened with ${c.count()} points, expected ${n}`);
    c.close();
    log(`from snapshot ${(fromSnapshot[r] / 1000).toFixed(3)} s (run ${r + 1}/${runs})`, true);
  }
  const db = new Database(join(dataDir, 'vdb.sqlite'));
  db.exec('DELETE FROM snapshots; DELETE FROM snapshot_parts;');
  db.close();
  log('snapshot deleted; rebuilding from the points table ...', true);
  const t = now();
  const c = Collection.open(dataDir, openOpts);
  const rebuild = now() - t;
  if (c.count() !== n) throw new Error(`rebuilt with ${c.count()} points, expected ${n}`);
  c.close(); // snapshots again, for the searches
  log(`full rebuild ${(rebuild / 1000).toFixed(2)} s`, true);
  return { snapshot_s: median(fromSnapshot) / 1000, rebuild_s: rebuild / 1000 };
}

// ---------------------------------------------------------- 3. filtered search

interface Case { label: string; filter: Filter | undefined; match: (b: number) => boolean }
interface SearchRow { filter: string; selectivity: number; matching: number; ef: number; recall: number; qps: number; p50_ms: number; exact_qps: number; violations: number }

const CASES: Case[] = [
  { label: 'none', filter: undefined, match: () => true },
  { label: '{"bucket":{"$lt":500}}', filter: { bucket: { $lt: 500 } }, match: (b) => b < 500 },
  { label: '{"bucket":{"$lt":100}}', filter: { bucket: { $lt: 100 } }, match: (b) => b < 100 },
  { label: '{"bucket":{"$lt":10}}', filter: { bucket: { $lt: 10 } }, match: (b) => b < 10 },
  { label: '{"bucket":0}', filter: { bucket: 0 }, match: (b) => b === 0 },
];

/** recall@k against the exact filtered hits; a tie at the k-th score counts, a hit outside the filter does not. */
function recallOf(approx: Hit[], exact: Hit[], match: (b: number) => boolean): { recall: number; violations: number } {
  let violations = 0;
  if (exact.length === 0) return { recall: approx.length === 0 ? 1 : 0, violations: approx.length };
  const ids = new Set(exact.map((h) => h.id));
  const kth = exact[exact.length - 1].score;
  const tol = 1e-5 * Math.max(1, Math.abs(kth));
  const within = ds.metric === 'l2' ? (s: number) => s <= kth + tol : (s: number) => s >= kth - tol;
  const seen = new Set<unknown>();
  let hits = 0;
  for (const h of approx) {
    if (seen.has(h.id)) continue;
    seen.add(h.id);
    if (!match(bucket[h.id as number])) { violations++; continue; }
    if (ids.has(h.id) || within(h.score)) hits++;
  }
  return { recall: Math.min(hits, exact.length) / exact.length, violations };
}

function searchBench(): SearchRow[] {
  const c = Collection.open(dataDir, openOpts);
  const log = progress('[search]');
  const rows: SearchRow[] = [];
  try {
    for (let q = 0; q < Math.min(nq, 200); q++) c.search(queries[q], { k, ef: efs[0] }); // warm-up
    for (const cs of CASES) {
      let matching = 0;
      for (let i = 0; i < n; i++) if (cs.match(bucket[i])) matching++;
      const exact: Hit[][] = [];
      let tExact = 0;
      for (const q of queries) {
        const t = now();
        exact.push(c.search(q, { k, filter: cs.filter, exact: true }));
        tExact += now() - t;
      }
      for (const ef of efs) {
        const lat = new Float64Array(nq * runs);
        let recall = 0;
        let violations = 0;
        for (let r = 0; r < runs; r++) {
          for (let q = 0; q < nq; q++) {
            const t = now();
            const hits = c.search(queries[q], { k, ef, filter: cs.filter });
            lat[r * nq + q] = now() - t;
            if (r === 0) {
              const rc = recallOf(hits, exact[q], cs.match);
              recall += rc.recall;
              violations += rc.violations;
            }
          }
        }
        const perRun = Array.from({ length: runs }, (_, r) => nq / (lat.subarray(r * nq, (r + 1) * nq).reduce((a, x) => a + x, 0) / 1000));
        const sorted = lat.slice().sort();
        rows.push({
          filter: cs.label, selectivity: matching / n, matching, ef, recall: recall / nq, qps: median(perRun),
          p50_ms: sorted[Math.floor(sorted.length / 2)], exact_qps: nq / (tExact / 1000), violations,
        });
        const row = rows[rows.length - 1];
        log(`${cs.label} ef ${ef}: recall ${row.recall.toFixed(4)} @ ${row.qps.toFixed(0)} QPS (exact ${row.exact_qps.toFixed(0)} QPS)`, true);
      }
    }
  } finally {
    c.close();
  }
  return rows;
}

// -------------------------------------------------------------------- report

let upsert: UpsertResult, open: OpenResult, search: SearchRow[];
try {
  upsert = await upsertBench();
  open = openBench();
  search = searchBench();
} finally {
  rmSync(tmp, { recursive: true, force: true });
}

const pct = (x: number) => `${x >= 0 ? '+' : ''}${(100 * x).toFixed(1)} %`;
const rate = (s: number) => (n / s).toFixed(0);
const pad = (cells: string[], w: number[]) => cells.map((c, i) => (i === 0 ? c.padEnd(w[i]) : c.padStart(w[i]))).join('  ');
const lines: string[] = [];
process.stderr.write(`load average at the end ${loadavg()[0].toFixed(2)}\n`);
lines.push(`\n${ds.name}  n=${n} dim=${dim} metric=${ds.metric} M=${m} efC=${efConstruction} batch=${batch} queries=${nq} k=${k} ` +
  `(payload {bucket: seeded random 0..999}, field index on bucket; QPS single thread, one query at a time, median of ${runs} runs)`);

lines.push('\n1. Upsert throughput (same batches, interleaved; the collection time includes its background snapshots)');
const w1 = [44, 10, 12, 14];
lines.push(pad(['', 'seconds', 'points/s', 'vs bare'], w1));
lines.push(pad(['bare WasmIndex.addBatch', upsert.bare_s.toFixed(2), rate(upsert.bare_s), ''], w1));
lines.push(pad(['Collection.upsert (SQLite, durable)', upsert.collection_s.toFixed(2), rate(upsert.collection_s), pct(upsert.collection_s / upsert.bare_s - 1)], w1));
const withClose = upsert.collection_s + upsert.close_s;
lines.push(pad(['Collection.upsert + final snapshot + close', withClose.toFixed(2), rate(withClose), pct(withClose / upsert.bare_s - 1)], w1));
lines.push(`persistence cost: ${pct(upsert.collection_s / upsert.bare_s - 1)} time (${pct(withClose / upsert.bare_s - 1)} with close), target ≤ +15 %; ` +
  `SQLite file ${upsert.sqlite_mb.toFixed(0)} MiB`);

lines.push('\n2. Open time of the populated collection');
const w2 = [44, 10];
lines.push(pad(['', 'seconds'], w2));
lines.push(pad([`from snapshot (median of ${runs})`, open.snapshot_s.toFixed(3)], w2));
lines.push(pad(['full rebuild (snapshot rows deleted)', open.rebuild_s.toFixed(2)], w2));
lines.push(`rebuild / snapshot: ${(open.rebuild_s / open.snapshot_s).toFixed(1)}×, target ≥ 20×`);

lines.push(`\n3. Filtered search, k=${k} (recall@${k} against exact search with the same filter)`);
const w3 = [24, 11, 9, 5, 10, 9, 8, 10, 10];
lines.push(pad(['filter', 'selectivity', 'matching', 'ef', `recall@${k}`, 'QPS', 'p50 ms', 'exact QPS', 'vs exact'], w3));
for (const r of search) {
  lines.push(pad([r.filter, `${(100 * r.selectivity).toFixed(r.selectivity < 0.01 ? 2 : 1)} %`, String(r.matching), String(r.ef),
    r.recall.toFixed(4), r.qps.toFixed(0), r.p50_ms.toFixed(3), r.exact_qps.toFixed(0), `${(r.qps / r.exact_qps).toFixed(1)}×`], w3));
}
const bad = search.filter((r) => r.violations > 0);
if (bad.length) lines.push(`WARNING: hits outside the filter: ${bad.map((r) => `${r.filter} ef ${r.ef}: ${r.violations}`).join(', ')}`);
console.log(lines.join('\n'));

if (opt.json) {
  writeFileSync(opt.json, JSON.stringify({
    dataset: ds.name, dim, n, n_queries: nq, metric: ds.metric, k, m, efConstruction, batch, runs,
    upsert: { ...upsert, bare_points_s: n / upsert.bare_s, collection_points_s: n / upsert.collection_s, cost: upsert.collection_s / upsert.bare_s - 1 },
    open: { ...open, ratio: open.rebuild_s / open.snapshot_s },
    search,
  }, null, 2));
  process.stderr.write(`wrote ${opt.json}\n`);
}
