// npm run bench:elastic -- [--points 100000] [--dim 128] [--searches 300]
//
// What moving a shard replica costs. A private nats-server, a coordinator and
// two shard processes (child processes from dist/): a collection of one
// shard, one replica, on `from`, filled with `--points` synthetic vectors
// (uniform in [0,1)^dim). Then `vdb drain from` (the admin request): the
// balancer adds `to` to the shard, `to` copies it from `from` (rows and index
// snapshot) and follows the log, and `from` leaves the map. Reported: the
// move's time (from the drain request until the map names only `to` with no
// move under way), the bytes the copy sent (from `to`'s log line), and search
// latency (k = 10, one at a time) before and during the move.

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
  },
});
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

const dir = mkdtempSync(join(tmpdir(), 'vdb-elastic-'));
const creds = openCredentials(join(dir, 'credentials'), 'vdb');
const nats = await startNatsServer({ dir: join(dir, 'nats'), auth: { accounts: creds.accounts, creds: creds.internal } });
const nc = await connectNats(nats.url, 'vdb-bench-elastic', { creds: creds.internal });
const coord = start('coordinator', nats.url, creds.internal, 'c-0', []);
const from = start('shard', nats.url, creds.internal, 'from', ['--data', join(dir, 'from')]);
const toLines: string[] = [];
let to: ChildProcess | undefined;
try {
  const client = new VdbClient(nc, { timeoutMs: 60_000 });
  const c = 'elastic';
  for (;;) {
    try {
      await client.createCollection({ name: c, dim, metric: 'l2', partitioner: { kind: 'hash', shards: 1 }, replicas: 1 });
      break;
    } catch {
      await sleep(200); // processes still starting
    }
  }
  const rand = mulberry32(dim);
  const vec = () => Array.from({ length: dim }, () => rand());
  const show = progress(`filling ${points} points of dim ${dim}`);
  for (let i = 0; i < points; i += 1000) {
    await client.upsert(c, Array.from({ length: Math.min(1000, points - i) }, (_, j) => ({ id: i + j, vector: vec() })));
    show(`${Math.min(points, i + 1000)}/${points}`);
  }
  show(`${points}/${points}`, true);
  while ((await client.count(c, { consistency: 'strong' })) < points) await sleep(500);

  const search = async (): Promise<number> => {
    const t0 = performance.now();
    const r = await client.search(c, vec(), { k: 10 });
    if (r.partial) throw new Error('a partial search');
    return performance.now() - t0;
  };
  const before: number[] = [];
  for (let i = 0; i < searches; i++) before.push(await search());

  to = start('shard', nats.url, creds.internal, 'to', ['--data', join(dir, 'to')], toLines);
  while (!((await client.status()).members as { name: string }[]).some((m) => m.name === 'to')) await sleep(100);
  const t0 = performance.now();
  await client.drain('from');
  const during: number[] = [];
  let moved = false;
  const watcher = (async () => {
    for (;;) {
      const m = (await client.describe(c)).shardMap as { replicas: string[][]; moves?: object };
      if (!m.moves && m.replicas[0].length === 1 && m.replicas[0][0] === 'to') return;
      await sleep(50);
    }
  })().then(() => { moved = true; });
  while (!moved) during.push(await search());
  await watcher;
  const seconds = (performance.now() - t0) / 1000;
  const copied = toLines.map((l) => /\((\d+) bytes in (\d+) ms\)/.exec(l)).find((m) => m);
  const count = await client.count(c, { consistency: 'strong' });
  if (count !== points) throw new Error(`after the move the shard holds ${count} points, not ${points}`);

  console.log(`\nMoving a shard replica of ${points.toLocaleString('en')} points, dim ${dim} (drain of its only process)`);
  console.log(`  move: ${seconds.toFixed(1)} s from the drain request to the map naming only the target`);
  console.log(copied ? `  copy: ${(Number(copied[1]) / 2 ** 20).toFixed(1)} MiB in ${(Number(copied[2]) / 1000).toFixed(1)} s` : '  copy: (no copy line in the target\'s log)');
  console.log('  search (k = 10)   searches   p50 ms   p99 ms');
  for (const [what, xs] of [['before the move', before], ['during the move', during]] as const) {
    console.log(`  ${what.padEnd(17)} ${String(xs.length).padStart(8)} ${pct(xs, 0.5).toFixed(1).padStart(8)} ${pct(xs, 0.99).toFixed(1).padStart(8)}`);
  }
} finally {
  await Promise.all([stop(from), stop(coord), ...(to ? [stop(to)] : [])]);
  await nc.close();
  await nats.stop();
  rmSync(dir, { recursive: true, force: true });
}
process.exit(0);
