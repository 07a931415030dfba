// npm run bench:elastic -- [--points 100000] [--dim 128] [--searches 300] [--only drain|join]
//
// What moving shard replicas costs, in two runs, each with a private
// nats-server, a coordinator and shard processes (child processes from dist/),
// and `--points` synthetic vectors (uniform in [0,1)^dim):
// - drain: a collection of one shard, one replica, on `from`; then `vdb drain
//   from` (the admin request): the balancer adds `to` to the shard, `to`
//   copies it from `from` (rows and index snapshot) and follows the log, and
//   `from` leaves the map. Reported: the move's time (from the drain request
//   until the map names only `to` with no move under way), the bytes the copy
//   sent (from `to`'s log line).
// - join: a collection of 4 shards, 2 replicas, on `p1` and `p2`; then `p3`
//   starts and rebalancing (on by default) moves replicas onto it. Reported:
//   the time from its start until it holds its share (2 of the 8 replicas)
//   with no move under way.
// Both report search latency (k = 10, one at a time) before and during the
// moves; a partial search stops the bench.

import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { connectNats } from '../cluster/nats-connect.js';
import { openCredentials } from '../cluster/credentials.js';
import { startNatsServer } from '../cluster/nats-server.js';
import { VdbClient } from '../ts/client.js';
import { mulberry32 } from '../ts/random.js';
import { progress } from './progress.js';
import { intOption } from './options.js';

const { values: opt } = parseArgs({
  options: {
    points: { type: 'string', default: '100000' },
    dim: { type: 'string', default: '128' },
    searches: { type: 'string', default: '300' },
    only: { type: 'string' },
  },
});
if (opt.only !== undefined && opt.only !== 'drain' && opt.only !== 'join') throw new Error(`--only: expected drain or join, got ${opt.only}`);
const points = intOption('points', opt.points);
const dim = intOption('dim', opt.dim);
const searches = intOption('searches', opt.searches);

const CLI = fileURLToPath(new URL('../cluster/cli.js', import.meta.url));
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const pct = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * p))];

function start(role: 'shard' | 'coordinator', url: string, creds: string, name: string, args: string[], lines?: string[]): ChildProcess {
  // Processes log JSON lines on stderr; the target's are kept to read its copy line.
  const p = spawn(process.execPath, [CLI, role, '--nats', url, '--creds', creds, '--name', name, ...args], { stdio: ['ignore', 'ignore', lines ? 'pipe' : 'inherit'] });
  p.stderr?.on('data', (d: Buffer) => lines?.push(...d.toString().split('\n')));
  return p;
}

async function stop(p: ChildProcess): Promise<void> {
  if (p.exitCode !== null || p.signalCode !== null) return;
  const done = new Promise((r) => p.once('exit', r));
  p.kill('SIGTERM');
  await done;
}

type Phases = { before: number[]; during: number[] };

/** A private cluster: nats-server, a coordinator, shard processes started on demand. */
async function cluster(run: (c: { client: VdbClient; shard: (name: string, lines?: string[]) => ChildProcess }) => Promise<void>): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'vdb-elastic-'));
  const creds = openCredentials(join(dir, 'credentials'), 'vdb');
  const nats = await startNatsServer({ dir: join(dir, 'nats'), auth: { accounts: creds.accounts, creds: creds.internal }, log: (l: string) => { if (/Slow|Error|WRN/.test(l)) console.error('nats: ' + l); } });
  const nc = await connectNats(nats.url, 'vdb-bench-elastic', { creds: creds.internal });
  const procs: ChildProcess[] = [start('coordinator', nats.url, creds.internal, 'c-0', [])];
  try {
    await run({
      client: new VdbClient(nc, { timeoutMs: 60_000 }),
      shard: (name, lines) => {
        const p = start('shard', nats.url, creds.internal, name, ['--data', join(dir, name)], lines);
        procs.push(p);
        return p;
      },
    });
  } finally {
    await Promise.all(procs.map(stop));
    await nc.close();
    await nats.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Creates collection `c` (retrying while processes start) and fills it with `points` vectors. */
async function fill(client: VdbClient, c: string, shards: number, replicas: number, vec: () => number[]): Promise<void> {
  for (;;) {
    try {
      await client.createCollection({ name: c, dim, metric: 'l2', partitioner: { kind: 'hash', shards }, replicas });
      break;
    } catch {
      await sleep(200); // processes still starting
    }
  }
  const show = progress(`${c}: filling ${points} points of dim ${dim} (${shards} shards, ${replicas} replicas)`);
  for (let i = 0; i < points; i += 1000) {
    await client.upsert(c, Array.from({ length: Math.min(1000, points - i) }, (_, j) => ({ id: i + j, vector: vec() })));
    show(`${Math.min(points, i + 1000)}/${points}`);
  }
  show(`${points}/${points}`, true);
  while ((await client.count(c, { consistency: 'strong' })) < points) await sleep(500);
}

/** Search latencies: `searches` before `act`, then as many as fit until `done` says the moves are over. */
async function measure(client: VdbClient, c: string, vec: () => number[], act: () => Promise<void>, done: () => Promise<boolean>): Promise<Phases & { seconds: number }> {
  const search = async (): Promise<number> => {
    const t0 = performance.now();
    const r = await client.search(c, vec(), { k: 10 });
    if (r.partial) throw new Error('a partial search');
    return performance.now() - t0;
  };
  const before: number[] = [];
  for (let i = 0; i < searches; i++) before.push(await search());
  const t0 = performance.now();
  await act();
  const during: number[] = [];
  let over = false;
  // A look that fails (a coordinator busy past the timeout) is a look that says "not yet".
  const watcher = (async () => {
    while (!(await done().catch((e: Error) => { console.error(`  (looking at the map failed: ${e.message})`); return false; }))) await sleep(50);
  })().then(() => { over = true; });
  while (!over) during.push(await search());
  await watcher;
  const count = await client.count(c, { consistency: 'strong' });
  if (count !== points) throw new Error(`after the moves ${c} holds ${count} points, not ${points}`);
  return { before, during, seconds: (performance.now() - t0) / 1000 };
}

function table(p: Phases): void {
  console.log('  search (k = 10)   searches   p50 ms   p99 ms');
  for (const [what, xs] of [['before', p.before], ['during', p.during]] as const) {
    console.log(`  ${what.padEnd(17)} ${String(xs.length).padStart(8)} ${pct(xs, 0.5).toFixed(1).padStart(8)} ${pct(xs, 0.99).toFixed(1).padStart(8)}`);
  }
}

const rand = mulberry32(dim);
const vec = () => Array.from({ length: dim }, () => rand());
type Map1 = { replicas: string[][]; moves?: object };

if (opt.only !== 'join') {
  await cluster(async ({ client, shard }) => {
    const c = 'elastic';
    shard('from');
    await fill(client, c, 1, 1, vec);
    const toLines: string[] = [];
    shard('to', toLines);
    while (!((await client.status()).members as { name: string }[]).some((m) => m.name === 'to')) await sleep(100);
    const r = await measure(client, c, vec, () => client.drain('from').then(() => undefined), async () => {
      const m = (await client.describe(c)).shardMap as Map1;
      return !m.moves && m.replicas[0].length === 1 && m.replicas[0][0] === 'to';
    });
    const copied = toLines.map((l) => /\((\d+) bytes in (\d+) ms\)/.exec(l)).find((m) => m);
    console.log(`\nDrain: moving a shard replica of ${points.toLocaleString('en')} points, dim ${dim}, off its only process`);
    console.log(`  move: ${r.seconds.toFixed(1)} s from the drain request to the map naming only the target`);
    console.log(copied ? `  copy: ${(Number(copied[1]) / 2 ** 20).toFixed(1)} MiB in ${(Number(copied[2]) / 1000).toFixed(1)} s` : '  copy: (no copy line in the target\'s log)');
    table(r);
  });
}

if (opt.only !== 'drain') {
  await cluster(async ({ client, shard }) => {
    const c = 'joined';
    shard('p1');
    shard('p2');
    await fill(client, c, 4, 2, vec);
    let held = 0;
    const r = await measure(client, c, vec, async () => { shard('p3'); }, async () => {
      const m = (await client.describe(c)).shardMap as Map1;
      held = m.replicas.filter((l) => l.includes('p3')).length;
      return !m.moves && held >= 2;
    });
    console.log(`\nJoin: a third shard process joins two holding ${points.toLocaleString('en')} points, dim ${dim}, in 4 shards × 2 replicas`);
    console.log(`  share: ${r.seconds.toFixed(1)} s from its start until it holds ${held} of the 8 replicas with no move under way`);
    table(r);
  });
}
process.exit(0);
