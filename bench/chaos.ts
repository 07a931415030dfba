// npm run chaos -- [--seconds S] [--processes P] [--shards N] [--replicas R] [--dim D]
//                  [--ids I] [--rate Q] [--kill-every K] [--seed X] [--json FILE]
//
// Kills shard processes at random moments under load and checks that nothing
// acknowledged was lost. On loopback only: a cluster started with `up()` (its own
// nats-server, P shard processes supervised by the launcher, one coordinator), a
// collection of N hash shards × R replicas, then for S seconds:
//   - writers upsert and delete batches of ids drawn from a bounded id space
//     (0..I-1, so deletes hit existing points), about Q requests a second;
//   - readers search (k = 10, the default `session` consistency) and get random
//     ids, about Q requests a second;
//   - a killer SIGKILLs a random shard process (pid from cluster.json) every
//     K/2..3K/2 seconds, never leaving more than R−1 of them down or still
//     catching up, so every shard keeps an up-to-date replica; the launcher
//     restarts the victim (back-off 0.5 s doubling to 2 s here).
// Each id carries its last acknowledged operation. An id whose request got no
// acknowledgement (error or timeout) is ambiguous: the write may or may not be
// in the log, so it is written no more and left out of the checks.
// At the end the killer stops, every process must be back, and every replica
// must have applied its shard's whole log (its /metrics `vdb_shard_applied_seq`
// against the stream's last sequence). Then:
//   - through the cluster (`get` of every id): an id whose last acknowledged
//     operation was an upsert must be there with exactly that vector, else it is
//     an "acked write lost"; one whose last was a delete must be absent, else a
//     "delete resurrected"; an id never written must be absent ("phantom");
//   - after stopping the cluster, every replica's own copy on disk (the shard
//     Collections in each process's data directory) gets the same checks.
// The exit status is 1 if anything was lost, resurrected or phantom, or the
// replicas did not catch up.
//
// The table: "writes acknowledged" counts requests (and the id operations in
// them); "read availability" is the share of reads (searches and gets) answered
// completely (`partial: false`, no error); search latency is over all searches,
// partial ones included (a shard that does not answer costs the coordinator's 2 s
// deadline). For each kill: when (seconds into the load), which process and the
// shards it served, "back" = from the kill until the restarted process heartbeats
// (the supervisor's back-off included), "caught up" = until it had applied its
// shards' logs as far as they reached then, "first complete" = from the kill until
// the first search sent after it came back complete — with hash partitioning
// every search touches every shard, so this is how long reads of the victim's
// shards went without a full answer.

import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { connectNats } from '../cluster/nats-connect.js';
import type { JetStreamManager, NatsConnection } from 'nats';
import { up } from '../cluster/launcher.js';
import { names } from '../cluster/subjects.js';
import { storeName } from '../cluster/meta.js';
import type { ClusterFile, RunningCluster } from '../cluster/launcher.js';
import { Collection, VdbClient } from '../ts/index.js';
import { HashPartitioner, shardsForId } from '../ts/partition/index.js';
import { mulberry32 } from '../ts/random.js';
import { progress } from './progress.js';
import { intOption } from './options.js';

const { values: opt } = parseArgs({
  options: {
    seconds: { type: 'string', default: '60' },
    processes: { type: 'string', default: '3' },
    shards: { type: 'string', default: '2' },
    replicas: { type: 'string', default: '2' },
    dim: { type: 'string', default: '32' },
    ids: { type: 'string', default: '2000' },
    rate: { type: 'string', default: '40' },
    'kill-every': { type: 'string', default: '3' },
    seed: { type: 'string', default: '1' },
    json: { type: 'string' },
  },
});

const int = (name: keyof typeof opt, min: number, max?: number) => intOption(name, opt[name] as string | undefined, min, max);

const SECONDS = int('seconds', 1, 3600);
const PROCESSES = int('processes', 1, 16);
const SHARDS = int('shards', 1, 16);
const REPLICAS = int('replicas', 1, PROCESSES);
const DIM = int('dim', 1, 4096);
const IDS = int('ids', 10, 1_000_000);
const RATE = int('rate', 1, 10_000);
const SEED = int('seed', 0, 2 ** 32 - 1);
const KILL_EVERY = Number(opt['kill-every']);
if (!(KILL_EVERY > 0)) throw new Error('--kill-every must be a positive number of seconds');
const COLL = 'chaos';
const K = 10;
/**
 * The supervisor's back-off, capped lower than `vdb up`'s 30 s: a process killed
 * again soon after its restart would otherwise stay down long enough to stall
 * the kills (at most R−1 down) for the rest of a short run.
 */
const BACKOFF = { minMs: 500, maxMs: 2000 };
/** How long the end waits for processes to come back and replicas to catch up. */
const SETTLE_MS = 90_000;

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const now = () => performance.now();
const rand = mulberry32(SEED);
// The kill schedule has its own generator, so it does not shift with the load's timing.
const killRand = mulberry32(SEED ^ 0x9e3779b9);
const randInt = (n: number) => Math.floor(rand() * n);
const randomVector = () => Float32Array.from({ length: DIM }, () => rand() * 2 - 1);

// ---- what the run saw ---------------------------------------------------------

type Last = { op: 'upsert'; vector: Float32Array } | { op: 'delete' };
/** Per id, the last acknowledged operation. */
const acked = new Map<number, Last>();
/** Ids with a request that got no acknowledgement: excluded from the checks. */
const ambiguous = new Set<number>();
/** Ids with a request in flight: no second one until it returns, so the log order is the acknowledgement order. */
const busy = new Set<number>();

interface Kill {
  n: number;
  name: string;
  pid: number;
  /** ms since the load began. */
  at: number;
  shards: number[];
  backMs?: number;
  /** From the kill until the restarted process had applied its shards' logs as far as they were when it looked. */
  caughtUpMs?: number;
  firstCompleteMs?: number;
}

const stats = {
  writesAcked: 0, idOpsAcked: 0, writesFailed: 0,
  reads: 0, readsComplete: 0, searchMs: [] as number[],
  kills: [] as Kill[],
  /** The largest `vdb_shard_lag_entries` any replica reported: log entries it had not applied, as of its last delivery. */
  maxLag: 0,
};

// ---- output ---------------------------------------------------------------------

const bar = progress('[chaos]');
const tty = process.stderr.isTTY;
function event(line: string): void {
  process.stderr.write(`${tty ? '\r\x1b[K' : ''}[chaos] ${line}\n`);
}
/** The last lines of each cluster process, shown when the run fails. */
const tails = new Map<string, string[]>();
function keep(name: string, line: string): void {
  const t = tails.get(name) ?? [];
  t.push(line);
  if (t.length > 30) t.shift();
  tails.set(name, t);
}

// ---- the cluster -------------------------------------------------------------------

const dir = mkdtempSync(join(tmpdir(), 'vdb-chaos-'));
const clusterFile = join(dir, 'cluster.json');
const readCluster = () => JSON.parse(readFileSync(clusterFile, 'utf8')) as ClusterFile;
let cluster: RunningCluster | undefined;

// If this process ends without stopping the cluster, its processes must not outlive it.
process.once('exit', () => {
  if (!cluster) return;
  try {
    for (const p of readCluster().processes) process.kill(p.pid, 'SIGKILL');
  } catch { /* already gone */ }
});
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    event(`${sig}: stopping the cluster`);
    void (cluster?.stop() ?? Promise.resolve()).finally(() => process.exit(130));
  });
}

/** Shard processes that are up: their current pid heartbeats (cluster.json has its metrics URL). */
function upShards(): { name: string; pid: number; metrics: string }[] {
  return readCluster().processes
    .filter((p) => p.role === 'shard' && p.metrics)
    .map((p) => ({ name: p.name!, pid: p.pid, metrics: p.metrics! }));
}

/** Whether the process `name` has applied each of `shards`' logs up to the last sequence the stream has now. */
async function replicaCaughtUp(jsm: JetStreamManager, name: string, shards: number[]): Promise<boolean> {
  try {
    const logs = await Promise.all(shards.map(async (s) => (await jsm.streams.info(names().stream(COLL, s))).state.last_seq));
    const applied = (await perReplica('vdb_shard_applied_seq')).get(name);
    return shards.every((s, i) => (applied?.get(s) ?? -1) >= logs[i]);
  } catch {
    return false;
  }
}

/** Per replica (process name), per shard, a gauge's value from its /metrics. */
async function perReplica(gauge: string): Promise<Map<string, Map<number, number>>> {
  const out = new Map<string, Map<number, number>>();
  const line = new RegExp(`^${gauge}\\{collection="${COLL}",shard="(\\d+)"\\} (\\d+)$`, 'gm');
  await Promise.all(upShards().map(async (p) => {
    const text = await (await fetch(p.metrics, { signal: AbortSignal.timeout(3000) })).text();
    out.set(p.name, new Map([...text.matchAll(line)].map((m) => [Number(m[1]), Number(m[2])])));
  }));
  return out;
}

/** Waits until every replica has applied its shard's whole log (as it is now), or `until`; whether they did. */
async function catchUp(client: VdbClient, placement: string[][], until: number): Promise<boolean> {
  const st = await client.status();
  const shards = (st.collections as { name: string; shards: { shard: number; logSeq: number | null }[] }[]).find((c) => c.name === COLL)?.shards ?? [];
  const logSeq = new Map(shards.map((s) => [s.shard, s.logSeq ?? 0]));
  for (;;) {
    const applied = await perReplica('vdb_shard_applied_seq').catch(() => new Map<string, Map<number, number>>());
    if (placement.every((members, s) => members.every((m) => applied.get(m)?.get(s) === logSeq.get(s)))) return true;
    if (now() > until) return false;
    await sleep(250);
  }
}

// ---- load ----------------------------------------------------------------------------

/** Up to n random ids that are neither in flight nor ambiguous. */
function pickIds(n: number): number[] {
  const ids = new Set<number>();
  for (let tries = 0; ids.size < n && tries < n * 20; tries++) {
    const id = randInt(IDS);
    if (!busy.has(id) && !ambiguous.has(id)) ids.add(id);
  }
  return [...ids];
}

async function write(client: VdbClient): Promise<void> {
  const upsert = rand() < 0.6;
  const ids = pickIds(1 + randInt(upsert ? 10 : 6));
  if (ids.length === 0) return;
  for (const id of ids) busy.add(id);
  const vectors = ids.map(randomVector);
  try {
    if (upsert) await client.upsert(COLL, ids.map((id, i) => ({ id, vector: vectors[i] })));
    else await client.delete(COLL, ids);
    ids.forEach((id, i) => acked.set(id, upsert ? { op: 'upsert', vector: vectors[i] } : { op: 'delete' }));
    stats.writesAcked++;
    stats.idOpsAcked += ids.length;
  } catch (e) {
    stats.writesFailed++;
    for (const id of ids) ambiguous.add(id);
    event(`write not acknowledged (${ids.length} ids left out of the checks): ${(e as Error).message}`);
  } finally {
    for (const id of ids) busy.delete(id);
  }
}

async function read(client: VdbClient, t0: number): Promise<void> {
  stats.reads++;
  if (rand() < 0.75) {
    const sent = now();
    let complete = false;
    try {
      complete = !(await client.search(COLL, randomVector(), { k: K })).partial;
    } catch {
      complete = false;
    }
    const done = now();
    stats.searchMs.push(done - sent);
    if (complete) {
      stats.readsComplete++;
      for (const k of stats.kills) if (k.firstCompleteMs === undefined && sent - t0 >= k.at) k.firstCompleteMs = done - t0 - k.at;
    }
  } else {
    try {
      const r = await client.get(COLL, Array.from({ length: 1 + randInt(4) }, () => randInt(IDS)), { withVector: false });
      if (!r.partial) stats.readsComplete++;
    } catch { /* counted as incomplete */ }
  }
}

/** Runs `op` about `perSecond` times a second until `until` (ms, performance.now()). */
async function paced(perSecond: number, until: number, op: () => Promise<void>): Promise<void> {
  const gap = 1000 / perSecond;
  for (let next = now(); now() < until; ) {
    await op();
    next += gap;
    await sleep(Math.max(0, next - now()));
  }
}

async function killer(jsm: JetStreamManager, placement: string[][], t0: number, until: number): Promise<void> {
  for (;;) {
    await sleep(Math.min((0.5 + killRand()) * KILL_EVERY * 1000, until - now()));
    // At most R−1 replicas down or catching up at once (one with a single
    // replica): each shard keeps a replica that is up to date.
    while (now() < until && stats.kills.filter((k) => k.caughtUpMs === undefined).length >= Math.max(1, REPLICAS - 1)) await sleep(100);
    if (now() >= until) return;
    const alive = upShards();
    if (alive.length === 0) continue;
    const v = alive[Math.floor(killRand() * alive.length)];
    const shards = placement.flatMap((members, s) => (members.includes(v.name) ? [s] : []));
    const kill: Kill = { n: stats.kills.length + 1, name: v.name, pid: v.pid, at: now() - t0, shards };
    try {
      process.kill(v.pid, 'SIGKILL');
    } catch {
      continue;
    }
    stats.kills.push(kill);
    event(`kill #${kill.n}: ${v.name} (pid ${v.pid}), serving shard${shards.length === 1 ? '' : 's'} ${shards.join(', ') || '-'}`);
    void (async () => {
      while (kill.backMs === undefined && cluster) {
        const p = readCluster().processes.find((x) => x.name === kill.name);
        if (p && p.pid !== kill.pid && p.metrics) kill.backMs = now() - t0 - kill.at;
        else await sleep(50);
      }
      while (kill.caughtUpMs === undefined && cluster) {
        if (await replicaCaughtUp(jsm, kill.name, kill.shards)) kill.caughtUpMs = now() - t0 - kill.at;
        else await sleep(200);
      }
    })();
  }
}

// ---- checks -------------------------------------------------------------------------

interface Verdict { lost: number; resurrected: number; phantom: number; examples: string[] }

/** Compares what `lookup` finds for `ids` with what was acknowledged. */
function verdict(ids: number[], found: Map<number, Float32Array | undefined>): Verdict {
  const v: Verdict = { lost: 0, resurrected: 0, phantom: 0, examples: [] };
  for (const id of ids) {
    if (ambiguous.has(id)) continue;
    const last = acked.get(id);
    const got = found.get(id);
    const has = found.has(id);
    if (last?.op === 'upsert') {
      if (!has || !got || got.length !== DIM || got.some((x, i) => x !== last.vector[i])) {
        v.lost++;
        if (v.examples.length < 5) v.examples.push(`id ${id}: acknowledged upsert ${has ? 'has another vector' : 'is missing'}`);
      }
    } else if (has) {
      if (last) v.resurrected++; else v.phantom++;
      if (v.examples.length < 5) v.examples.push(`id ${id}: ${last ? 'acknowledged delete' : 'never written'} but present`);
    }
  }
  return v;
}

async function checkThroughCluster(client: VdbClient): Promise<Verdict> {
  const all = Array.from({ length: IDS }, (_, i) => i);
  const found = new Map<number, Float32Array | undefined>();
  for (let i = 0; i < IDS; i += 500) {
    const batch = all.slice(i, i + 500);
    for (let attempt = 0; ; attempt++) {
      const r = await client.get(COLL, batch, { withVector: true });
      if (!r.partial) {
        for (const p of r.points) found.set(p.id as number, p.vector as Float32Array | undefined);
        break;
      }
      if (attempt === 20) throw new Error(`get of ids ${i}..${i + batch.length - 1} stayed partial`);
      await sleep(250);
    }
  }
  return verdict(all, found);
}

function checkReplicasOnDisk(placement: string[][], uid: string | undefined): { copies: number; v: Verdict } {
  const p = new HashPartitioner(SHARDS);
  const byShard = placement.map(() => [] as number[]);
  for (let id = 0; id < IDS; id++) for (const s of shardsForId(p, id)) byShard[s].push(id);
  const total: Verdict = { lost: 0, resurrected: 0, phantom: 0, examples: [] };
  let copies = 0;
  placement.forEach((members, s) => {
    for (const m of members) {
      const c = Collection.open(join(dir, m), { name: storeName(COLL, uid, s) });
      try {
        const found = new Map(c.get(byShard[s], { withVector: true }).map((x) => [x.id as number, x.vector as Float32Array | undefined]));
        const v = verdict(byShard[s], found);
        total.lost += v.lost;
        total.resurrected += v.resurrected;
        total.phantom += v.phantom;
        total.examples.push(...v.examples.map((e) => `${m} shard ${s}: ${e}`));
        copies++;
      } finally {
        c.close();
      }
    }
  });
  return { copies, v: total };
}

// ---- the run -----------------------------------------------------------------------------

const pct = (xs: number[], p: number) => {
  if (xs.length === 0) return NaN;
  const s = Float64Array.from(xs).sort();
  return s[Math.min(s.length - 1, Math.floor(p * s.length))];
};

async function main(): Promise<number> {
  event(`${SECONDS} s, ${PROCESSES} shard processes, collection ${SHARDS} shards × ${REPLICAS} replicas, dim ${DIM}, ids 0..${IDS - 1}, ~${RATE} writes/s and ~${RATE} reads/s, a kill every ~${KILL_EVERY} s, seed ${SEED}; data in ${dir}`);
  cluster = await up({
    shards: PROCESSES, replicas: REPLICAS, data: dir, backoff: BACKOFF,
    log: (line) => { keep('launcher', line); if (/killed|exited|is back/.test(line)) event(line); },
    output: keep,
  });
  let nc: NatsConnection | undefined;
  let clientNc: NatsConnection | undefined;
  let placement: string[][] = [];
  let uid: string | undefined;
  let caughtUp = false;
  let api: Verdict | undefined;
  let disk: { copies: number; v: Verdict } | undefined;
  let loadS = 0;
  try {
    // The log inspection needs the internal account; the API calls go as an application's would, through the client account.
    nc = await connectNats(cluster.url, 'vdb-chaos', { creds: cluster.credentials!.internal });
    clientNc = await connectNats(cluster.url, 'vdb-chaos-client', { creds: cluster.credentials!.files.admin });
    const client = new VdbClient(clientNc, { timeoutMs: 10_000 });
    await client.createCollection({ name: COLL, dim: DIM, metric: 'l2', replicas: REPLICAS, partitioner: { kind: 'hash', shards: SHARDS } });
    const described = await client.describe(COLL);
    placement = (described.shardMap as { replicas: string[][] }).replicas;
    uid = described.uid as string | undefined;
    event(`placement: ${placement.map((m, s) => `shard ${s} on ${m.join(' + ')}`).join('; ')}`);
    // Half the id space exists, and every replica has it, before the chaos starts.
    for (let i = 0; i < IDS / 2; i += 250) {
      const ids = Array.from({ length: Math.min(250, IDS / 2 - i) }, (_, j) => i + j);
      const vectors = ids.map(randomVector);
      await client.upsert(COLL, ids.map((id, j) => ({ id, vector: vectors[j] })));
      ids.forEach((id, j) => acked.set(id, { op: 'upsert', vector: vectors[j] }));
    }
    if (!(await catchUp(client, placement, now() + SETTLE_MS))) throw new Error('the replicas did not apply the first points');

    const jsm = await nc.jetstreamManager();
    const t0 = now();
    const until = t0 + SECONDS * 1000;
    const ticker = setInterval(() => {
      const down = stats.kills.filter((k) => k.backMs === undefined).length;
      const avail = stats.reads ? (100 * stats.readsComplete / stats.reads).toFixed(1) : '-';
      bar(`${((now() - t0) / 1000).toFixed(0)}/${SECONDS} s  writes ${stats.writesAcked} acked, ${stats.writesFailed} not  reads ${stats.reads} (${avail} % complete)  kills ${stats.kills.length} (${down} down)`);
    }, 250);
    const lagSampler = setInterval(() => {
      perReplica('vdb_shard_lag_entries').then((m) => {
        for (const shards of m.values()) for (const lag of shards.values()) stats.maxLag = Math.max(stats.maxLag, lag);
      }).catch(() => undefined);
    }, 1000);
    await Promise.all([
      ...[0, 1].map(() => paced(RATE / 2, until, () => write(client))),
      // Four readers: a read in flight to a killed replica holds its reader for the coordinator's deadline.
      ...[0, 1, 2, 3].map(() => paced(RATE / 4, until, () => read(client, t0))),
      killer(jsm, placement, t0, until),
    ]);
    clearInterval(ticker);
    clearInterval(lagSampler);
    loadS = (now() - t0) / 1000;
    bar(`load done after ${loadS.toFixed(1)} s; waiting for every process and replica`, true);

    // Every victim back, then every replica at its shard's last log sequence.
    const settle = now() + SETTLE_MS;
    while (now() < settle && (stats.kills.some((k) => k.backMs === undefined) || upShards().length < PROCESSES)) await sleep(100);
    caughtUp = await catchUp(client, placement, settle);
    if (!caughtUp) event(`replicas did not reach the end of their logs within ${SETTLE_MS / 1000} s`);
    else api = await checkThroughCluster(client);
  } finally {
    if (nc && !nc.isClosed()) await nc.close();
    if (clientNc && !clientNc.isClosed()) await clientNc.close();
    await cluster.stop();
  }
  const pids = readCluster().processes;
  cluster = undefined;
  if (caughtUp) disk = checkReplicasOnDisk(placement, uid);

  const failed = !caughtUp || !api || !disk || api.lost + api.resurrected + api.phantom > 0 || disk.v.lost + disk.v.resurrected + disk.v.phantom > 0;
  const avail = stats.reads ? stats.readsComplete / stats.reads : NaN;
  const rows: [string, string][] = [
    ['run', `${loadS.toFixed(1)} s load, ${PROCESSES} shard processes, ${SHARDS} shards × ${REPLICAS} replicas, seed ${SEED}`],
    ['writes acknowledged', `${stats.writesAcked} (${stats.idOpsAcked} id operations)`],
    ['writes not acknowledged', `${stats.writesFailed} (${ambiguous.size} ids left out of the checks)`],
    ['replicas caught up', caughtUp ? 'yes' : 'NO'],
    ['acked writes lost', api ? String(api.lost) : '-'],
    ['deletes resurrected', api ? String(api.resurrected) : '-'],
    ['phantom ids', api ? String(api.phantom) : '-'],
    ['replica copies on disk', disk ? `${disk.copies} checked: ${disk.v.lost} lost, ${disk.v.resurrected} resurrected, ${disk.v.phantom} phantom` : '-'],
    ['read availability', `${(100 * avail).toFixed(2)} % (${stats.readsComplete} / ${stats.reads} complete)`],
    ['search latency', `p50 ${pct(stats.searchMs, 0.5).toFixed(1)} ms, p99 ${pct(stats.searchMs, 0.99).toFixed(1)} ms (${stats.searchMs.length} searches)`],
    ['largest replica lag', `${stats.maxLag} log entries (sampled each second)`],
    ['kills', `${stats.kills.length}; restarts in cluster.json: ${pids.filter((p) => p.role === 'shard').reduce((n, p) => n + (p.restarts ?? 0), 0)}`],
  ];
  const w = Math.max(...rows.map((r) => r[0].length));
  console.log(rows.map(([k, v]) => `${k.padEnd(w)}  ${v}`).join('\n'));
  if (stats.kills.length) {
    const ms = (x: number | undefined) => (x === undefined ? '-' : x >= 1000 ? `${(x / 1000).toFixed(2)} s` : `${x.toFixed(0)} ms`);
    console.log('\n   #     t s  process   shards  back      caught up  first complete search');
    for (const k of stats.kills) {
      console.log(`${String(k.n).padStart(4)}  ${(k.at / 1000).toFixed(1).padStart(6)}  ${k.name.padEnd(8)}  ${k.shards.join(',').padEnd(6)}  ${ms(k.backMs).padEnd(8)}  ${ms(k.caughtUpMs).padEnd(9)}  ${ms(k.firstCompleteMs)}`);
    }
  }
  for (const e of [...(api?.examples ?? []), ...(disk?.v.examples ?? [])]) console.log(`  ${e}`);
  if (failed) {
    for (const [name, lines] of tails) process.stderr.write(`--- ${name}:\n${lines.join('\n')}\n`);
  }
  if (opt.json) {
    writeFileSync(opt.json, JSON.stringify({
      seconds: loadS, processes: PROCESSES, shards: SHARDS, replicas: REPLICAS, seed: SEED,
      writesAcked: stats.writesAcked, idOpsAcked: stats.idOpsAcked, writesFailed: stats.writesFailed, ambiguousIds: ambiguous.size,
      caughtUp, api, disk, reads: stats.reads, readsComplete: stats.readsComplete,
      searchP50Ms: pct(stats.searchMs, 0.5), searchP99Ms: pct(stats.searchMs, 0.99), maxLag: stats.maxLag,
      kills: stats.kills, pids: pids.map((p) => p.pid),
    }, null, 2));
  }
  return failed ? 1 : 0;
}

const status = await main().catch((e) => {
  event(`failed: ${(e as Error).stack ?? e}`);
  for (const [name, lines] of tails) process.stderr.write(`--- ${name}:\n${lines.join('\n')}\n`);
  return 1;
}).finally(() => rmSync(dir, { recursive: true, force: true }));
process.exit(status);
