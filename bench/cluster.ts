// npm run bench:cluster -- [--data DIR | --synthetic] [--points N] [--queries N] [--concurrency C,C2,...]
//                          [--runs R] [--ef EF] [--configs hash:1,hash:2,hash:4,spatial:2,spatial:4]
//                          [--write-ahead N] [--json FILE]
//
// Search through the cluster (client → NATS → coordinator → NATS → shard
// processes → merge → client) against an embedded Collection in this process,
// on the same points with the same M, efConstruction, seed (42, as the shard
// processes use), k and ef. For every configuration a fresh cluster is started
// with `up()` on loopback (its own nats-server, S shard processes, one
// coordinator), the collection is created, the points are written in batches of
// 500 and the bench waits until the shards have applied them all (`count` = n);
// with --write-ahead N the writes are paced to stay at most N points ahead of
// what the shards have applied (default 0: unpaced, as an application would
// write; see waitForCount). Then, with
// `consistency: 'eventual'`:
//   - one client, one query at a time: recall@k, QPS, p50/p99 latency; blocks
//     of 50 queries alternate with the same queries on the embedded Collection
//     (which goes first alternates too), so noise on the machine (2 cores,
//     other work) falls on both alike;
//   - throughput: C requests in flight from one connection, against the
//     embedded Collection's single-thread QPS, runs alternating; for each C
//     of --concurrency (default 8,16,32; the first is the one of tables 1
//     and 3). The client connects with nats.js's noAsyncTraces, as the
//     cluster's own processes do, and sends through cluster/requester.ts (one
//     inbox subscription and a table of pending replies), as the coordinator
//     does: nc.request builds Errors and timer promises per request, CPU the
//     client would take from the cluster on the same two cores;
//   - after the cluster has stopped, the shards' own Collections are opened
//     in this process from the shard data directories and searched one after
//     the other on the same queries: "shard work" is the sum of the probed
//     shards' search times, "slowest shard" the largest, and their merged
//     top-k must equal what the cluster answered (a check of routing and merge).
//
// What the figures mean:
//   - recall@k is against exact search on the embedded Collection (brute force
//     over the same n points), ties at the k-th distance counting as hits.
//   - "overhead p50" = cluster p50 − embedded p50, both from the interleaved
//     single-client run: what a search pays for going through the cluster.
//     With one shard the work done is identical (the same graph: same points,
//     same batches, same seed), so this is purely coordinator + NATS (two
//     request/reply hops, four MessagePack codings, the fan-out and merge).
//     With S shards it also holds the change in search work: hash partitioning
//     puts n/S points on each shard but sends every query to all S shards,
//     each searching its own graph at the full ef, so the work per query grows
//     (S searches of a graph a little shallower than the whole one) while
//     recall rises (S × ef candidates are examined); on a 2-core machine the
//     S shard processes also compete for the cores with the coordinator,
//     nats-server and this client. The second table separates the two:
//     "− slowest" is what the cluster adds over perfectly parallel shards,
//     "− shard work" over doing the same shard searches in one thread.
//   - "shard search" is measured inside the shard processes during the run:
//     each shard times its own Collection.search and reports it with its hits
//     (the reply's searchMs is the slowest of the probed shards, searchMsTotal
//     their sum). "− slowest" in table 2 = p50 over queries of (end-to-end
//     latency − that query's slowest shard search): what the client ↔
//     coordinator ↔ shard messaging, the codecs, the fan-out and the merge add
//     if the shards searched in parallel; anything a shard lost to the others
//     while searching counts as search, but waiting for a core before its
//     search started counts as overhead. "− all" subtracts the sum instead,
//     as if the searches ran one after the other (S shards on 2 cores can
//     run at most 2 at a time). The true figure lies between the two.
//   - spatial partitioning (a kd tree built from a sample of the first 2,000
//     points) sends a query only to its nprobe nearest leaves: nprobe = 1 does
//     one search on one leaf's graph (fewer messages and less work, but
//     neighbours across a leaf boundary are lost, so recall drops), nprobe = S
//     is hash-like. Leaves hold n/S points only if the tree's cuts are balanced;
//     the table prints the points per shard.
//   - QPS(1) is 1 / mean latency of one client; QPS(C) is queries completed per
//     second with C requests outstanding; "×emb" divides by the embedded
//     Collection's single-thread QPS measured alongside.
//   - CPU per query (throughput runs, Linux /proc): user + system time of
//     nats-server, the coordinator, the shard processes and this client over
//     the queries completed; "cores" is that times the QPS, i.e. how many of
//     the machine's cores the cluster kept busy. The embedded Collection costs
//     1 / QPS of one core.
//   - "load s": from the first write until every shard has applied every point
//     (the write log is applied asynchronously); for the embedded Collection,
//     its upserts.

import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { connectNats } from '../cluster/nats-connect.js';
import type { NatsConnection } from 'nats';
import { up } from '../cluster/launcher.js';
import { Requester } from '../cluster/requester.js';
import { storeName } from '../cluster/meta.js';
import type { RunningCluster } from '../cluster/launcher.js';
import { Collection, VdbClient } from '../ts/index.js';
import type { Hit, Point } from '../ts/index.js';
import { HashPartitioner, SpatialPartitioner } from '../ts/partition/index.js';
import { mergeTopK } from '../ts/merge.js';
import { ensureSynthetic, loadDataset } from './dataset.js';
import { prepareFashion } from './fashion.js';
import { progress } from './progress.js';
import { intListOption, intOption } from './options.js';

const { values: opt } = parseArgs({
  options: {
    data: { type: 'string' },
    synthetic: { type: 'boolean', default: false },
    points: { type: 'string', default: '20000' },
    queries: { type: 'string', default: '500' },
    concurrency: { type: 'string', default: '8,16,32' },
    runs: { type: 'string', default: '3' },
    k: { type: 'string', default: '10' },
    ef: { type: 'string', default: '64' },
    m: { type: 'string', default: '16' },
    'ef-construction': { type: 'string', default: '200' },
    batch: { type: 'string', default: '500' },
    sample: { type: 'string', default: '2000' },
    configs: { type: 'string', default: 'hash:1,hash:2,hash:4,spatial:2,spatial:4' },
    'write-ahead': { type: 'string', default: '0' },
    json: { type: 'string' },
  },
});

const ds = loadDataset(opt.synthetic ? ensureSynthetic() : (opt.data ?? prepareFashion()));
const dim = ds.dim;
const n = Math.min(intOption('points', opt.points), ds.nBase);
const nq = Math.min(intOption('queries', opt.queries), ds.nQueries);
const concs = intListOption('concurrency', opt.concurrency);
const conc = concs[0];
const runs = intOption('runs', opt.runs);
const k = intOption('k', opt.k);
const ef = intOption('ef', opt.ef, k);
const m = intOption('m', opt.m);
const efConstruction = intOption('ef-construction', opt['ef-construction']);
const batch = intOption('batch', opt.batch);
const nSample = Math.min(intOption('sample', opt.sample), n);
const writeAhead = intOption('write-ahead', opt['write-ahead'], 0);

interface Config { kind: 'hash' | 'spatial'; shards: number }
const configs: Config[] = opt.configs.split(',').map((s) => {
  const [kind, shards] = s.split(':');
  if ((kind !== 'hash' && kind !== 'spatial') || !/^[1-9]\d*$/.test(shards ?? '')) {
    throw new Error(`--configs: expected kind:shards with kind hash or spatial, got ${s}`);
  }
  return { kind, shards: Number(shards) };
});
for (const c of configs) if (c.kind === 'spatial' && c.shards > nSample) throw new Error(`spatial:${c.shards} needs a sample of at least ${c.shards} points`);

const COLL = 'bench';
const BLOCK = 50;
const now = () => performance.now();
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const yieldToEventLoop = () => new Promise<void>((r) => setImmediate(r));
const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
/** Percentile of a pooled sample (nearest rank). */
const pct = (xs: ArrayLike<number>, p: number) => {
  const s = Float64Array.from(xs).sort();
  return s[Math.min(s.length - 1, Math.floor(p * s.length))];
};

// ------------------------------------------------------------ inputs, prepared

const batches: Point[][] = [];
for (let i = 0; i < n; i += batch) {
  const pts: Point[] = [];
  for (let j = i; j < Math.min(n, i + batch); j++) pts.push({ id: j, vector: ds.base.subarray(j * dim, (j + 1) * dim) });
  batches.push(pts);
}
const queries = Array.from({ length: nq }, (_, q) => ds.queries.subarray(q * dim, (q + 1) * dim));
const sample = Array.from({ length: nSample }, (_, i) => ds.base.subarray(i * dim, (i + 1) * dim));
const order = ds.metric === 'l2' ? 'asc' : 'desc';

const tmp = mkdtempSync(join(tmpdir(), 'vdb-bench-cluster-'));
let current: RunningCluster | undefined;
const onSignal = () => {
  process.stderr.write('\ninterrupted: stopping the cluster\n');
  void (current?.stop() ?? Promise.resolve()).finally(() => {
    rmSync(tmp, { recursive: true, force: true });
    process.exit(130);
  });
};
process.once('SIGINT', onSignal);
process.once('SIGTERM', onSignal);

process.stderr.write(`${ds.name}: ${n} of ${ds.nBase} points × ${dim} (${ds.metric}), ${nq} queries, k=${k}, ef=${ef}, M=${m}, efC=${efConstruction}, ` +
  `concurrency ${concs.join('/')}, ${runs} runs; data in ${tmp}; load average ${loadavg()[0].toFixed(2)}\n`);

/** recall@k against the exact top-k; a hit at the k-th distance (a tie) counts too. */
function recallOf(approx: readonly Hit[], exact: readonly Hit[]): number {
  if (exact.length === 0) return 1;
  const ids = new Set(exact.map((h) => h.id));
  const kth = exact[exact.length - 1].score;
  const tol = 1e-5 * Math.max(1, Math.abs(kth));
  const within = order === 'asc' ? (s: number) => s <= kth + tol : (s: number) => s >= kth - tol;
  const seen = new Set<unknown>();
  let hits = 0;
  for (const h of approx) {
    if (seen.has(h.id)) continue;
    seen.add(h.id);
    if (ids.has(h.id) || within(h.score)) hits++;
  }
  return Math.min(hits, exact.length) / exact.length;
}

const sameIds = (a: readonly Hit[], b: readonly Hit[]) => a.length === b.length && a.every((h, i) => h.id === b[i].id);

// CPU time of the cluster's processes (user + system, ms) from /proc; undefined where there is no /proc.
const CLK_TCK = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
})();
type Role = 'nats' | 'coordinator' | 'shards';
interface CpuSample { nats: number; coordinator: number; shards: number; client: number }
function procCpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(f[11]) + Number(f[12])) * 1000) / CLK_TCK; // utime, stime (fields 14, 15)
}
/** nats-server's count of slow-consumer events (connections it cut off because they did not read fast enough). */
async function slowConsumers(dataDir: string): Promise<number | undefined> {
  try {
    const procs = (JSON.parse(readFileSync(join(dataDir, 'cluster.json'), 'utf8')) as { processes: { role: string; monitorPort?: number }[] }).processes;
    const port = procs.find((p) => p.role === 'nats-server')?.monitorPort;
    if (port === undefined) return undefined;
    return ((await (await fetch(`http://127.0.0.1:${port}/varz`)).json()) as { slow_consumers?: number }).slow_consumers;
  } catch {
    return undefined;
  }
}

function cpuSampler(dataDir: string): (() => CpuSample) | undefined {
  if (!existsSync('/proc/self/stat')) return undefined;
  const procs = (JSON.parse(readFileSync(join(dataDir, 'cluster.json'), 'utf8')) as { processes: { role: string; pid: number }[] }).processes;
  const roles = procs.map((p): [Role, number] => [p.role === 'nats-server' ? 'nats' : p.role === 'coordinator' ? 'coordinator' : 'shards', p.pid]);
  return () => {
    const out: CpuSample = { nats: 0, coordinator: 0, shards: 0, client: 0 };
    for (const [role, pid] of roles) out[role] += procCpuMs(pid);
    const self = process.cpuUsage();
    out.client = (self.user + self.system) / 1000;
    return out;
  };
}

// ------------------------------------------------------- the embedded baseline

const embDir = join(tmp, 'embedded');
const emb = Collection.open(embDir, { name: COLL, dim, metric: ds.metric, hnsw: { m, efConstruction, seed: 42 } });
let embLoadS: number;
{
  const log = progress('[embedded]');
  const t0 = now();
  for (let b = 0; b < batches.length; b++) {
    emb.upsert(batches[b]);
    await yieldToEventLoop(); // lets the background snapshot write its parts, as a server would
    const done = Math.min(n, (b + 1) * batch);
    log(`upserted ${done}/${n} points (${(done / ((now() - t0) / 1000)).toFixed(0)} points/s)`, done === n);
  }
  embLoadS = (now() - t0) / 1000;
  if (emb.count() !== n) throw new Error(`the embedded collection holds ${emb.count()} points, expected ${n}`);
  // A snapshot now, and turns of the event loop for any background one to finish before the clocks run.
  emb.snapshot();
  for (let i = 0; i < 200; i++) await yieldToEventLoop();
}
const exact: Hit[][] = [];
{
  const log = progress('[ground truth]');
  for (let q = 0; q < nq; q++) {
    exact.push(emb.search(queries[q], { k, exact: true }));
    log(`exact search ${q + 1}/${nq}`, q === nq - 1);
  }
}
const embHits = queries.map((q) => emb.search(q, { k, ef }));
const embRecall = embHits.reduce((a, h, q) => a + recallOf(h, exact[q]), 0) / nq;
for (let r = 0; r < 2; r++) for (const q of queries) emb.search(q, { k, ef }); // warm-up

// ------------------------------------------------------------- measurements

interface Row {
  config: string;
  kind: Config['kind'];
  shards: number;
  /** Shards asked per query: S for hash, nprobe for spatial. */
  probed: number;
  recall: number;
  qps1: number;
  p50_ms: number;
  p99_ms: number;
  /** The coordinator's own time (tookMs of the reply), p50. */
  coord_p50_ms: number;
  qpsC: number;
  /** QPS with each number of requests in flight, and the embedded Collection's single-thread QPS alongside. */
  sweep: { c: number; qps: number; emb_qps: number }[];
  /** Shard search time (the slowest probed shard's, as it reported), p50, and p50 of latency − it per query. */
  search_p50_ms: number;
  own_p50_ms: number;
  /** p50 of latency − the sum of the probed shards' own searches. */
  own_all_p50_ms: number;
  /** The embedded Collection's figures measured alongside this row. */
  emb_qps1: number;
  emb_p50_ms: number;
  emb_p99_ms: number;
  emb_qpsT: number;
  /** CPU µs per query in the throughput runs, per role (null without /proc). */
  cpu_us: CpuSample | null;
  partial: number;
  /** Queries whose ids differ from the in-process search of the shards' own collections. */
  differ: number;
  /** Filled after the cluster stopped: the shards' collections searched in this process. */
  shardwork_p50_ms: number;
  slowest_p50_ms: number;
  /** The embedded Collection, searched in blocks alternating with the shards' collections. */
  emb_ref_p50_ms: number;
  load_s: number;
}

interface ConfigResult {
  config: string; kind: Config['kind']; shards: number; load_s: number; ack_s: number;
  placement: string[][]; shard_counts: number[]; slow_consumers: number | null; rows: Row[];
}

/** One client, one query at a time, alternating blocks with the embedded Collection. */
async function latencyPhase(search: (q: number) => Promise<{ hits: Hit[]; partial: boolean; tookMs: number; searchMs?: number; searchMsTotal?: number }>, label: string) {
  const log = progress(label);
  const lat = new Float64Array(nq * runs);
  const embLat = new Float64Array(nq * runs);
  const took = new Float64Array(nq * runs);
  const searchMs = new Float64Array(nq * runs);
  const own = new Float64Array(nq * runs);
  const ownAll = new Float64Array(nq * runs);
  const hits: Hit[][] = new Array(nq);
  let partial = 0;
  for (let r = 0; r < runs; r++) {
    for (let b = 0; b * BLOCK < nq; b++) {
      const from = b * BLOCK;
      const to = Math.min(nq, from + BLOCK);
      for (const side of (b + r) % 2 === 0 ? ['cluster', 'embedded'] : ['embedded', 'cluster']) {
        if (side === 'cluster') {
          for (let q = from; q < to; q++) {
            const t = now();
            const reply = await search(q);
            lat[r * nq + q] = now() - t;
            took[r * nq + q] = reply.tookMs;
            searchMs[r * nq + q] = reply.searchMs ?? NaN;
            own[r * nq + q] = lat[r * nq + q] - (reply.searchMs ?? NaN);
            ownAll[r * nq + q] = lat[r * nq + q] - (reply.searchMsTotal ?? NaN);
            if (reply.partial) partial++;
            if (r === 0) hits[q] = reply.hits;
          }
        } else {
          for (let q = from; q < to; q++) {
            const t = now();
            emb.search(queries[q], { k, ef });
            embLat[r * nq + q] = now() - t;
          }
        }
      }
      log(`run ${r + 1}/${runs}: ${to}/${nq} queries`);
    }
  }
  const qps = (xs: Float64Array) => median(Array.from({ length: runs }, (_, r) => nq / (xs.subarray(r * nq, (r + 1) * nq).reduce((a, x) => a + x, 0) / 1000)));
  const recall = hits.reduce((a, h, q) => a + recallOf(h, exact[q]), 0) / nq;
  const out = {
    hits, partial, recall,
    qps1: qps(lat), p50: pct(lat, 0.5), p99: pct(lat, 0.99), coordP50: pct(took, 0.5), searchP50: pct(searchMs, 0.5), ownP50: pct(own, 0.5), ownAllP50: pct(ownAll, 0.5),
    embQps1: qps(embLat), embP50: pct(embLat, 0.5), embP99: pct(embLat, 0.99),
  };
  log(`recall ${recall.toFixed(4)}, ${out.qps1.toFixed(0)} QPS, p50 ${out.p50.toFixed(3)} ms (embedded ${out.embQps1.toFixed(0)} QPS, p50 ${out.embP50.toFixed(3)} ms)`, true);
  return out;
}

/** C requests in flight against the embedded Collection's single-thread QPS, runs alternating. */
async function throughputPhase(search: (q: number) => Promise<{ partial: boolean }>, label: string, cpu: (() => CpuSample) | undefined, conc: number) {
  const log = progress(label);
  const cpuUs: CpuSample = { nats: 0, coordinator: 0, shards: 0, client: 0 };
  const cl: number[] = [];
  const em: number[] = [];
  let partial = 0;
  for (let r = 0; r < runs; r++) {
    for (const side of r % 2 === 0 ? ['cluster', 'embedded'] : ['embedded', 'cluster']) {
      if (side === 'cluster') {
        let next = 0;
        const c0 = cpu?.();
        const t = now();
        await Promise.all(Array.from({ length: conc }, async () => {
          while (next < nq) {
            const q = next++;
            if ((await search(q)).partial) partial++;
          }
        }));
        cl.push(nq / ((now() - t) / 1000));
        const c1 = cpu?.();
        if (c0 && c1) for (const key of Object.keys(cpuUs) as (keyof CpuSample)[]) cpuUs[key] += ((c1[key] - c0[key]) * 1000) / (nq * runs);
      } else {
        const t = now();
        for (let q = 0; q < nq; q++) emb.search(queries[q], { k, ef });
        em.push(nq / ((now() - t) / 1000));
      }
    }
    log(`run ${r + 1}/${runs}: ${cl[r].toFixed(0)} QPS with ${conc} in flight, embedded ${em[r].toFixed(0)} QPS`, r === runs - 1);
  }
  return { qpsC: median(cl), embQps: median(em), partial, cpuUs: cpu ? cpuUs : null };
}

/**
 * Polls `count` until the shards hold at least `target` points. A shard that
 * applies nothing for 60 s has stalled; the message says whether nats-server
 * reported slow consumers (a shard cut off while applying its log).
 */
async function waitForCount(client: VdbClient, target: number, label: string, t0: number, dataDir: string, quiet = false): Promise<void> {
  const log = progress(label);
  let last = -1;
  let lastChange = now();
  for (;;) {
    const c = await client.count(COLL).catch(() => last);
    if (c !== last) { last = c; lastChange = now(); }
    if (!quiet) log(`shards applied ${c}/${n} points (${(c / ((now() - t0) / 1000)).toFixed(0)} points/s)`, c >= target);
    if (c >= target) return;
    if (now() - lastChange > 60_000) {
      const slow = await slowConsumers(dataDir);
      throw new Error(`${label}: the shards have applied ${c} of ${target} points and made no progress for 60 s` +
        (slow ? `; nats-server reports ${slow} slow-consumer event(s): a shard process was cut off while applying its log` : ''));
    }
    await sleep(quiet ? 20 : 250);
  }
}

async function runConfig(cfg: Config): Promise<ConfigResult> {
  const name = `${cfg.kind}×${cfg.shards}`;
  const dir = join(tmp, `${cfg.kind}-${cfg.shards}`);
  const tag = `[${name}]`;
  const rows: Row[] = [];
  const probes = cfg.kind === 'hash' ? [undefined] : Array.from({ length: cfg.shards }, (_, i) => i + 1);
  const found: { probe: number | undefined; hits: Hit[][] }[] = [];
  let ackS = 0;
  let loadS = 0;
  let placement: string[][] = [];
  let uid: string | undefined;
  let slow: number | undefined;
  const cluster = await up({ shards: cfg.shards, data: dir, log: (line) => process.stderr.write(`${tag} ${line}\n`) });
  current = cluster;
  let nc: NatsConnection | undefined;
  try {
    nc = await connectNats(cluster.url, 'vdb-bench-cluster', { creds: cluster.credentials!.files.admin });
    // Requests go through the coordinator's own inbox table rather than nc.request (see cluster/requester.ts).
    const requester = new Requester(nc);
    const client = new VdbClient({ request: (subject, data, o) => requester.request(subject, data, o.timeout) }, { timeoutMs: 30_000 });
    await client.createCollection({
      name: COLL, dim, metric: ds.metric, hnsw: { m, efConstruction },
      partitioner: cfg.kind === 'hash' ? { kind: 'hash', shards: cfg.shards } : { kind: 'spatial', shards: cfg.shards, sample },
    });
    const t0 = now();
    const log = progress(`${tag} [write]`);
    for (let b = 0; b < batches.length; b++) {
      const written = Math.min(n, (b + 1) * batch);
      await client.upsert(COLL, batches[b]);
      log(`${written}/${n} points acknowledged`, b === batches.length - 1);
      if (writeAhead > 0 && b < batches.length - 1 && written > writeAhead) await waitForCount(client, written - writeAhead, `${tag} [write]`, t0, dir, true);
    }
    ackS = (now() - t0) / 1000;
    await waitForCount(client, n, `${tag} [apply]`, t0, dir);
    slow = await slowConsumers(dir);
    if (slow) process.stderr.write(`${tag} WARNING: nats-server reports ${slow} slow-consumer event(s) during the load\n`);
    loadS = (now() - t0) / 1000;
    const described = await client.describe(COLL);
    placement = (described.shardMap as { replicas: string[][] }).replicas;
    uid = described.uid as string | undefined;
    if (new Set(placement.map((r) => r[0])).size !== cfg.shards) {
      process.stderr.write(`${tag} WARNING: ${cfg.shards} shards were placed on fewer processes: ${JSON.stringify(placement)}\n`);
    }
    await sleep(1000); // background snapshots in the shard processes settle
    const cpu = cpuSampler(dir);
    for (const probe of probes) {
      const search = (q: number) => client.search(COLL, queries[q], { k, ef, consistency: 'eventual', nprobe: probe });
      for (let q = 0; q < Math.min(nq, 200); q++) await search(q); // warm-up
      const label = `${tag}${probe === undefined ? '' : ` [nprobe ${probe}]`}`;
      const l = await latencyPhase(search, `${label} [latency]`);
      const sweep = [];
      for (const c of concs) sweep.push({ c, ...(await throughputPhase(search, `${label} [throughput ${c}]`, cpu, c)) });
      const t = sweep[0];
      found.push({ probe, hits: l.hits });
      rows.push({
        config: cfg.kind === 'hash' ? `hash, ${cfg.shards} shard${cfg.shards > 1 ? 's' : ''}` : `spatial ${cfg.shards}, nprobe ${probe}`,
        kind: cfg.kind, shards: cfg.shards, probed: probe ?? cfg.shards, recall: l.recall,
        qps1: l.qps1, p50_ms: l.p50, p99_ms: l.p99, coord_p50_ms: l.coordP50, qpsC: t.qpsC,
        sweep: sweep.map((x) => ({ c: x.c, qps: x.qpsC, emb_qps: x.embQps })), search_p50_ms: l.searchP50, own_p50_ms: l.ownP50, own_all_p50_ms: l.ownAllP50,
        emb_qps1: l.embQps1, emb_p50_ms: l.embP50, emb_p99_ms: l.embP99, emb_qpsT: t.embQps, cpu_us: t.cpuUs,
        partial: l.partial + sweep.reduce((a, x) => a + x.partial, 0), differ: NaN, shardwork_p50_ms: NaN, slowest_p50_ms: NaN, emb_ref_p50_ms: NaN, load_s: loadS,
      });
    }
  } finally {
    await nc?.close();
    await cluster.stop();
    current = undefined;
  }

  // The shards' own collections, searched in this process (each shard process closed its
  // collection with a snapshot on SIGTERM, so these open from it).
  const shardColls: Collection[] = [];
  try {
    for (let s = 0; s < cfg.shards; s++) shardColls.push(Collection.open(join(dir, placement[s][0]), { name: storeName(COLL, uid, s) }));
    const counts = shardColls.map((c) => c.count());
    // The same partitioner, built here: its placement must match what the shards hold.
    const local = cfg.kind === 'hash' ? new HashPartitioner(cfg.shards)
      : SpatialPartitioner.build(ds.base.subarray(0, nSample * dim), dim, cfg.shards, ds.metric);
    const expect = new Array<number>(cfg.shards).fill(0);
    for (let i = 0; i < n; i++) expect[local instanceof HashPartitioner ? local.shardOf(i) : local.shardOf(ds.base.subarray(i * dim, (i + 1) * dim))]++;
    if (counts.some((c, s) => c !== expect[s])) {
      process.stderr.write(`${tag} WARNING: shards hold ${counts.join('/')} points, the partitioner places ${expect.join('/')}\n`);
    }
    for (const c of shardColls) for (let q = 0; q < Math.min(nq, 200); q++) c.search(queries[q], { k, ef }); // warm-up
    const log = progress(`${tag} [shards in-process]`);
    found.forEach(({ probe, hits }, i) => {
      const sum = new Float64Array(nq * runs);
      const max = new Float64Array(nq * runs);
      const embLat = new Float64Array(nq * runs);
      let differ = 0;
      const routes = queries.map((v) => (local instanceof SpatialPartitioner ? local.route(v, { nprobe: probe! }) : local.shardsFor()));
      for (let r = 0; r < runs; r++) {
        for (let b = 0; b * BLOCK < nq; b++) {
          const from = b * BLOCK;
          const to = Math.min(nq, from + BLOCK);
          for (const side of (b + r) % 2 === 0 ? ['shards', 'embedded'] : ['embedded', 'shards']) {
            for (let q = from; q < to; q++) {
              if (side === 'embedded') {
                const t = now();
                emb.search(queries[q], { k, ef });
                embLat[r * nq + q] = now() - t;
                continue;
              }
              const lists: Hit[][] = [];
              let total = 0;
              let slowest = 0;
              for (const s of routes[q]) {
                const t = now();
                lists.push(shardColls[s].search(queries[q], { k, ef }));
                const dt = now() - t;
                total += dt;
                slowest = Math.max(slowest, dt);
              }
              sum[r * nq + q] = total;
              max[r * nq + q] = slowest;
              if (r === 0 && !sameIds(mergeTopK(lists, k, order), hits[q])) differ++;
            }
          }
        }
      }
      rows[i].shardwork_p50_ms = pct(sum, 0.5);
      rows[i].slowest_p50_ms = pct(max, 0.5);
      rows[i].emb_ref_p50_ms = pct(embLat, 0.5);
      rows[i].differ = differ;
      log(`${rows[i].config}: shard work p50 ${rows[i].shardwork_p50_ms.toFixed(3)} ms, slowest shard ${rows[i].slowest_p50_ms.toFixed(3)} ms; ` +
        `${differ} of ${nq} answers differ from the cluster's`, true);
    });
    return { config: name, kind: cfg.kind, shards: cfg.shards, load_s: loadS, ack_s: ackS, placement, shard_counts: counts, slow_consumers: slow ?? null, rows };
  } finally {
    for (const c of shardColls) c.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

const results: ConfigResult[] = [];
try {
  for (const cfg of configs) results.push(await runConfig(cfg));
} finally {
  emb.close();
  rmSync(tmp, { recursive: true, force: true });
  process.off('SIGINT', onSignal);
  process.off('SIGTERM', onSignal);
}

// -------------------------------------------------------------------- report

const rows = results.flatMap((r) => r.rows);
const pooled = {
  qps1: median(rows.map((r) => r.emb_qps1)),
  p50: median(rows.map((r) => r.emb_p50_ms)),
  p99: median(rows.map((r) => r.emb_p99_ms)),
  qpsT: median(rows.map((r) => r.emb_qpsT)),
};
const f = (x: number, d: number) => (Number.isFinite(x) ? x.toFixed(d) : '—');
const signed = (x: number, d = 3) => (x >= 0 ? '+' : '') + x.toFixed(d);
const x = (a: number, b: number) => `${(a / b).toFixed(2)}×`;
const pad = (cells: string[], w: number[]) => cells.map((c, i) => (i === 0 ? c.padEnd(w[i]) : c.padStart(w[i]))).join('  ');
process.stderr.write(`load average at the end ${loadavg()[0].toFixed(2)}\n`);

const lines: string[] = [];
lines.push(`\n${ds.name}  n=${n} dim=${dim} metric=${ds.metric} queries=${nq} k=${k} ef=${ef} M=${m} efC=${efConstruction} ` +
  `(loopback, one nats-server, one coordinator; consistency eventual; QPS median of ${runs} runs, p50/p99 pooled; ` +
  `the embedded figures are measured alongside each row, the embedded line is their median)`);
lines.push(`\n1. Search through the cluster against the embedded Collection (QPS(1): one client, one query at a time; QPS(${conc}): ${conc} requests in flight)`);
const w1 = [22, 7, 6, 9, 7, 7, 8, 6, 8, 10, 8, 6];
lines.push(pad(['', 'load s', 'probed', `recall@${k}`, 'QPS(1)', '×emb', 'p50 ms', 'p99 ms', 'overhead', `QPS(${conc})`, '×emb', 'diff'], w1));
lines.push(pad(['embedded Collection', embLoadS.toFixed(1), '—', embRecall.toFixed(4), pooled.qps1.toFixed(0), '1.00×', pooled.p50.toFixed(3), pooled.p99.toFixed(3), '—',
  `${pooled.qpsT.toFixed(0)}*`, '1.00×', ''], w1));
for (const r of rows) {
  lines.push(pad([r.config, r.load_s.toFixed(1), `${r.probed}/${r.shards}`, r.recall.toFixed(4), r.qps1.toFixed(0), x(r.qps1, r.emb_qps1),
    r.p50_ms.toFixed(3), r.p99_ms.toFixed(3), signed(r.p50_ms - r.emb_p50_ms), r.qpsC.toFixed(0), x(r.qpsC, r.emb_qpsT), f(r.differ, 0)], w1));
}
lines.push(`* single thread. overhead = cluster p50 − embedded p50 (ms). diff: answers (of ${nq}) whose ids differ from the shards' own collections searched in-process and merged.`);

lines.push('\n2. Where a search\'s time goes, p50 ms');
const w2 = [22, 9, 9, 12, 11, 13, 10, 9, 2, 9, 11, 9, 12, 10];
lines.push(pad(['', 'embedded', 'cluster', 'coordinator', '− embedded', 'shard search', '− slowest', '− all', '|', 'embedded', 'shard work', 'slowest', '− shard work', '− slowest'], w2));
for (const r of rows) {
  const minus = (v: number) => (Number.isFinite(v) ? signed(r.p50_ms - v) : '—');
  lines.push(pad([r.config, r.emb_p50_ms.toFixed(3), r.p50_ms.toFixed(3), r.coord_p50_ms.toFixed(3), signed(r.p50_ms - r.emb_p50_ms),
    f(r.search_p50_ms, 3), Number.isFinite(r.own_p50_ms) ? signed(r.own_p50_ms) : '—', Number.isFinite(r.own_all_p50_ms) ? signed(r.own_all_p50_ms) : '—', '|',
    f(r.emb_ref_p50_ms, 3), f(r.shardwork_p50_ms, 3), f(r.slowest_p50_ms, 3), minus(r.shardwork_p50_ms), minus(r.slowest_p50_ms)], w2));
}
lines.push('left: measured together while the cluster ran; coordinator = its own time per search (tookMs: validation, fan-out and the wait for the shards, merge),');
lines.push('so cluster − coordinator is the client↔coordinator hop; shard search = the slowest probed shard\'s own search time as it reported it (searchMs);');
lines.push('− slowest / − all = p50 over queries of (latency − that query\'s slowest shard search / − the sum of its shard searches): what the cluster adds to');
lines.push('searches running in parallel / one after the other. right: after the cluster stopped, the shards\' own collections searched in this process');
lines.push('in blocks alternating with the embedded Collection: shard work = the probed shards one after the other, slowest = the largest of them;');
lines.push('the last two columns subtract these from the cluster p50 on the left (different moments: compare the two embedded columns for drift).');
lines.push(`points per shard: ${results.map((c) => `${c.config} ${c.shard_counts.join('/')}`).join(', ')}`);

if (concs.length > 1) {
  lines.push(`\n2b. Throughput by requests in flight: QPS (× the embedded Collection's single-thread QPS measured alongside)`);
  const wb = [22, ...concs.map(() => 16)];
  lines.push(pad(['', ...concs.map((c) => `QPS(${c})`)], wb));
  for (const r of rows) lines.push(pad([r.config, ...r.sweep.map((x) => `${x.qps.toFixed(0)} (${x.emb_qps > 0 ? (x.qps / x.emb_qps).toFixed(2) : '—'}×)`)], wb));
}

if (rows.some((r) => r.cpu_us)) {
  lines.push(`\n3. CPU per query with ${conc} requests in flight, µs (user + system from /proc; cores = CPU per query × QPS(${conc}))`);
  const w3 = [22, 12, 12, 9, 9, 8, 8];
  lines.push(pad(['', 'nats-server', 'coordinator', 'shards', 'client', 'total', 'cores'], w3));
  lines.push(pad(['embedded Collection', '', '', '', '', (1e6 / pooled.qpsT).toFixed(0), '1.00'], w3));
  for (const r of rows) {
    const c = r.cpu_us;
    if (!c) continue;
    const total = c.nats + c.coordinator + c.shards + c.client;
    lines.push(pad([r.config, c.nats.toFixed(0), c.coordinator.toFixed(0), c.shards.toFixed(0), c.client.toFixed(0), total.toFixed(0), ((total * r.qpsC) / 1e6).toFixed(2)], w3));
  }
}

const row = (kind: string, shards: number, probed?: number) => rows.find((r) => r.kind === kind && r.shards === shards && (probed === undefined || r.probed === probed));
lines.push('\nTargets');
const h4 = row('hash', 4);
if (h4) {
  const o = h4.p50_ms - h4.emb_p50_ms;
  lines.push(`what the coordinator and NATS add to one search with 4 shards (hash), p50 of latency − the shards' own searches: ` +
    `${signed(h4.own_p50_ms)} ms over the slowest, ${signed(h4.own_all_p50_ms)} ms over all four; target ≤ 1 ms: ` +
    `${h4.own_p50_ms <= 1 ? 'met' : h4.own_all_p50_ms <= 1 ? 'met only counting all four searches as sequential' : 'NOT met'} ` +
    `(end to end ${signed(o)} ms over the embedded Collection, ${signed(h4.p50_ms - h4.slowest_p50_ms)} ms over the slowest shard searched alone after the run)`);
}
const h1 = row('hash', 1);
if (h1) {
  const ratio = h1.qpsC / h1.emb_qpsT;
  lines.push(`throughput through the cluster with one shard process and ${conc} requests in flight: ${h1.qpsC.toFixed(0)} QPS = ${ratio.toFixed(2)}× ` +
    `the embedded Collection's ${h1.emb_qpsT.toFixed(0)} QPS, target ≥ 0.7×: ${ratio >= 0.7 ? 'met' : 'NOT met'}`);
  const best = h1.sweep.reduce((a, b) => (b.qps / b.emb_qps > a.qps / a.emb_qps ? b : a));
  if (h1.sweep.length > 1) {
    lines.push(`  best of ${concs.join('/')} in flight: ${best.qps.toFixed(0)} QPS with ${best.c} = ${(best.qps / best.emb_qps).toFixed(2)}×, target ≥ 0.7×: ${best.qps / best.emb_qps >= 0.7 ? 'met' : 'NOT met'}`);
  }
  lines.push(`one shard, one client: ${signed(h1.p50_ms - h1.emb_p50_ms)} ms p50 over the embedded Collection, ${signed(h1.own_p50_ms)} ms over the shard's own search (same graph: ${f(h1.differ, 0)} answers differ)`);
}
lines.push('\nFrom 1 to 2 shard processes (recall@10 and throughput, relative to hash with 1 shard)');
if (h1) {
  for (const r of rows.filter((r) => r.shards === 2)) {
    lines.push(`${r.config.padEnd(22)} recall ${h1.recall.toFixed(4)} → ${r.recall.toFixed(4)} (${signed(r.recall - h1.recall, 4)}), ` +
      `QPS(1) ${h1.qps1.toFixed(0)} → ${r.qps1.toFixed(0)} (${x(r.qps1, h1.qps1)}), QPS(${conc}) ${h1.qpsC.toFixed(0)} → ${r.qpsC.toFixed(0)} (${x(r.qpsC, h1.qpsC)})`);
  }
}
const partial = rows.filter((r) => r.partial > 0);
if (partial.length) lines.push(`WARNING: partial answers (shards missing the deadline): ${partial.map((r) => `${r.config}: ${r.partial}`).join(', ')}`);
const differ = rows.filter((r) => r.differ > 0);
if (differ.length) lines.push(`WARNING: the cluster's answers differ from the shards' own collections merged in-process: ${differ.map((r) => `${r.config}: ${r.differ}`).join(', ')}`);
console.log(lines.join('\n'));

if (opt.json) {
  writeFileSync(opt.json, JSON.stringify({
    dataset: ds.name, dim, n, n_queries: nq, metric: ds.metric, k, ef, m, efConstruction, concurrency: conc, runs, batch, sample: nSample, write_ahead: writeAhead,
    embedded: { load_s: embLoadS, recall: embRecall, qps1: pooled.qps1, p50_ms: pooled.p50, p99_ms: pooled.p99 },
    configs: results,
  }, null, 2));
  process.stderr.write(`wrote ${opt.json}\n`);
}
