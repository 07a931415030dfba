// npm run bench:catchup -- [--entries N] [--dims 16,128] [--ways replay,copy] [--points-per-entry P] [--runs R]
//
// How fast a restarted replica catches up on its write log, two ways:
//   replay: the only replica of a shard was down while N log entries were
//           written; it applies them all (an index insertion per point);
//   copy:   a second replica stayed up and applied them; the restarted one is
//           more than 2,000 entries behind it, so it copies the peer (rows and
//           index snapshot) and then tails the log.
// For each dimension and way: a private nats-server, a coordinator and the
// shard processes (child processes from dist/); the collection is created, the
// replica is stopped, N log entries (upserts of P points each, ids cycling
// over N·P/2 so half of them replace points; every tenth entry a delete) are
// appended straight to the shard's stream (and, for copy, applied by the peer
// before the clock starts), and the replica is started again. Timed: from its
// start until it has applied the last entry (polled on its own count
// endpoint), so process start, opening or copying, and following the log are
// all inside. Reported: entries/s, median of the runs.

import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { connectNats } from '../cluster/nats-connect.js';
import { openCredentials } from '../cluster/credentials.js';
import type { NatsConnection } from 'nats';
import { startNatsServer } from '../cluster/nats-server.js';
import { names } from '../cluster/subjects.js';
import { VdbClient } from '../ts/client.js';
import { decode, encode, float32Bytes } from '../ts/wire/codec.js';
import { mulberry32 } from '../ts/random.js';
import { progress } from './progress.js';
import { intListOption, intOption } from './options.js';

const { values: opt } = parseArgs({
  options: {
    entries: { type: 'string', default: '50000' },
    dims: { type: 'string', default: '16,128' },
    ways: { type: 'string', default: 'replay,copy' },
    'points-per-entry': { type: 'string', default: '1' },
    runs: { type: 'string', default: '3' },
  },
});
const entries = intOption('entries', opt.entries);
const perEntry = intOption('points-per-entry', opt['points-per-entry']);
const runs = intOption('runs', opt.runs);
const dims = intListOption('dims', opt.dims);
const ways = opt.ways.split(',');
for (const w of ways) if (w !== 'replay' && w !== 'copy') throw new Error(`--ways: expected replay and/or copy, got ${w}`);

const CLI = fileURLToPath(new URL('../cluster/cli.js', import.meta.url));
const n = names('vdb');
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)];

function start(role: 'shard' | 'coordinator', url: string, creds: string, name: string, args: string[]): ChildProcess {
  return spawn(process.execPath, [CLI, role, '--nats', url, '--creds', creds, '--name', name, ...args], { stdio: ['ignore', 'ignore', 'inherit'] });
}

async function stop(p: ChildProcess): Promise<void> {
  if (p.exitCode !== null || p.signalCode !== null) return;
  const done = new Promise((r) => p.once('exit', r));
  p.kill('SIGTERM');
  await done;
}

async function applied(nc: NatsConnection, c: string, member = 'replica'): Promise<number> {
  try {
    const m = await nc.request(n.replica(c, 0, member, 'count'), encode({}, false), { timeout: 1000 });
    return (decode(m.data, false) as { seq?: number }).seq ?? -1;
  } catch {
    return -1;
  }
}

type Mode = 'replay' | 'copy';

async function run(dim: number, mode: Mode, r: number): Promise<{ seconds: number; last: number; points: number }> {
  const dir = mkdtempSync(join(tmpdir(), 'vdb-catchup-'));
  // Authenticated as vdb up runs; this connection is internal (it reads replicas' sequences and the log).
  const creds = openCredentials(join(dir, 'credentials'), 'vdb');
  const nats = await startNatsServer({ dir: join(dir, 'nats'), auth: { accounts: creds.accounts, creds: creds.internal } });
  const nc = await connectNats(nats.url, 'vdb-bench-catchup', { creds: creds.internal });
  const coord = start('coordinator', nats.url, creds.internal, 'c-0', []);
  let shard = start('shard', nats.url, creds.internal, 'replica', ['--data', join(dir, 'replica')]);
  const peer = mode === 'copy' ? start('shard', nats.url, creds.internal, 'peer', ['--data', join(dir, 'peer')]) : undefined;
  try {
    const client = new VdbClient(nc, { timeoutMs: 30_000 });
    const c = `catchup${dim}`;
    for (;;) {
      try {
        await client.createCollection({ name: c, dim, metric: 'l2', partitioner: { kind: 'hash', shards: 1 }, replicas: peer ? 2 : 1 });
        break;
      } catch {
        await sleep(200); // processes still starting
      }
    }
    while ((await applied(nc, c)) < 0 || (peer && (await applied(nc, c, 'peer')) < 0)) await sleep(50);
    await stop(shard);

    const js = nc.jetstream();
    const rand = mulberry32(1000 * dim + r);
    const space = Math.max(1, Math.floor((entries * perEntry) / 2));
    const show = progress(`dim ${dim} ${mode} run ${r + 1}: appending`);
    let points = 0;
    const pending: Promise<unknown>[] = [];
    for (let e = 0; e < entries; e++) {
      let body: unknown;
      if (e % 10 === 9) {
        body = { op: 'delete', ids: Array.from({ length: perEntry }, () => Math.floor(rand() * space)) };
      } else {
        const pts = Array.from({ length: perEntry }, () => {
          const v = new Float32Array(dim);
          for (let i = 0; i < dim; i++) v[i] = rand();
          return { id: Math.floor(rand() * space), vector: float32Bytes(v), payload: { e } };
        });
        points += pts.length;
        body = { op: 'upsert', points: pts };
      }
      pending.push(js.publish(n.log(c, 0), encode(body, false)));
      if (pending.length >= 512) {
        await Promise.all(pending.splice(0));
        show(`${e + 1}/${entries} entries`);
      }
    }
    await Promise.all(pending);
    show(`${entries}/${entries} entries`, true);
    if (peer) {
      const applying = progress(`dim ${dim} ${mode} run ${r + 1}: the peer applies them`);
      let at = 0;
      while ((at = await applied(nc, c, 'peer')) < entries) {
        applying(`${Math.max(0, at)}/${entries}`);
        await sleep(200);
      }
      applying(`${entries}/${entries}`, true);
      await sleep(1500); // its heartbeat then says how far it is
    }

    const t0 = performance.now();
    shard = start('shard', nats.url, creds.internal, 'replica', ['--data', join(dir, 'replica')]);
    const catching = progress(`dim ${dim} ${mode} run ${r + 1}: catching up`);
    let last = -1;
    while ((last = await applied(nc, c)) < entries) {
      catching(`${Math.max(0, last)}/${entries}`);
      await sleep(20);
    }
    const seconds = (performance.now() - t0) / 1000;
    catching(`${entries}/${entries} in ${seconds.toFixed(2)} s`, true);
    return { seconds, last, points };
  } finally {
    await Promise.all([stop(shard), stop(coord), ...(peer ? [stop(peer)] : [])]);
    await nc.close();
    await nats.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

const rows: string[] = [];
for (const dim of dims) {
  for (const mode of ways as Mode[]) {
    const secs: number[] = [];
    for (let r = 0; r < runs; r++) secs.push((await run(dim, mode, r)).seconds);
    const s = median(secs);
    rows.push(`${String(dim).padStart(5)}  ${mode.padEnd(7)} ${String(entries).padStart(9)} ${String(perEntry).padStart(9)} ${s.toFixed(2).padStart(9)} ${Math.round(entries / s).toLocaleString('en').padStart(11)}   ${secs.map((x) => x.toFixed(2)).join(' ')}`);
  }
}
console.log(`\nCatch-up of a restarted replica (median of ${runs} runs; 1 in 10 entries is a delete)`);
console.log('  dim  way       entries pts/entry   seconds   entries/s   runs (s)');
for (const r of rows) console.log(r);
process.exit(0);
