// `vdb up` supervises what it started: the back-off rule on its own, then a
// real cluster started with up() from dist/ (own nats-server, two shard
// processes, a coordinator): a SIGKILLed shard process gets a new pid in
// cluster.json, heartbeats and serves its shard again (including writes
// acknowledged while it was down), a killed coordinator comes back too, and
// after stop() no process of the cluster is left and none is restarted.
// DIR/prometheus/targets.json follows the restarts.
// `vdb up --replicas R` with fewer than R shard processes is refused.

import { afterAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { nextDelay, DEFAULT_BACKOFF } from '../cluster/supervisor.js';
import type { ClusterFile, ClusterProcess, RunningCluster, UpOptions } from '../cluster/launcher.js';
import type { TargetGroup } from '../cluster/scrape-config.js';
import { VdbClient } from '../ts/client.js';
import { decode, encode } from '../ts/wire/codec.js';
import type { Point } from '../ts/collection.js';
import { CLI, ROOT, connectAs, pidAlive, requireDist, sleep, waitFor } from './cluster-helpers.js';
import { mulberry32 } from './helpers.js';

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function tmp(): string {
  const d = mkdtempSync(join(tmpdir(), 'vdb-up-'));
  dirs.push(d);
  return d;
}

describe('restart back-off', () => {
  it('starts at minMs, doubles while the process keeps dying young, caps at maxMs, and resets after a stable run', () => {
    const b = DEFAULT_BACKOFF;
    let d = 0;
    const waits: number[] = [];
    for (let i = 0; i < 9; i++) {
      d = nextDelay(d, 100, b);
      waits.push(d);
    }
    expect(waits).toEqual([500, 1000, 2000, 4000, 8000, 16_000, 30_000, 30_000, 30_000]);
    expect(nextDelay(30_000, b.stableMs, b)).toBe(500);
    expect(nextDelay(4000, b.stableMs - 1, b)).toBe(8000);
  });
});

describe('vdb up --replicas', () => {
  it('refuses more replicas than shard processes, before starting anything', () => {
    requireDist();
    const data = join(tmp(), 'data');
    const r = spawnSync(process.execPath, [CLI, 'up', '--shards', '2', '--replicas', '3', '--data', data], { encoding: 'utf8', timeout: 30_000 });
    expect(r.status, r.stderr).toBe(1);
    expect(r.stderr).toMatch(/^vdb up: INVALID_ARGUMENT: 3 replicas need at least 3 shard processes/m);
    expect(spawnSync('test', ['-e', data]).status).not.toBe(0);
  });
});

describe('up() supervision', () => {
  it('restarts a killed shard process and coordinator with their data; stop() leaves no process and restarts none', async () => {
    requireDist();
    // up() spawns cli.js next to itself: the compiled one.
    const { up } = (await import(join(ROOT, 'dist', 'cluster', 'launcher.js'))) as { up: (o: UpOptions) => Promise<RunningCluster> };
    const dir = tmp();
    const lines: string[] = [];
    const cluster = await up({ shards: 2, data: dir, backoff: { minMs: 200 }, log: (l) => lines.push(l), output: (n, l) => lines.push(`${n}: ${l}`) });
    const file = join(dir, 'cluster.json');
    const read = () => JSON.parse(readFileSync(file, 'utf8')) as ClusterFile;
    const proc = (name: string) => read().processes.find((p) => p.name === name)!;
    // Prometheus's discovery file follows cluster.json: the metrics host:port of each process by name.
    const target = (name: string) => (JSON.parse(readFileSync(join(dir, 'prometheus', 'targets.json'), 'utf8')) as TargetGroup[]).find((t) => t.labels.name === name)?.targets[0];
    const context = () => lines.slice(-40).join('\n');
    const seen: ClusterProcess[] = [...read().processes];
    const nc = await connectAs(cluster.url, cluster.credentials!.files.admin);
    try {
      const client = new VdbClient(nc, { timeoutMs: 15_000 });
      const rand = mulberry32(5);
      const pts = (from: number, n: number): Point[] => Array.from({ length: n }, (_, i) => ({ id: from + i, vector: Array.from({ length: 8 }, rand) }));
      await client.createCollection({ name: 'sup', dim: 8, metric: 'l2', replicas: 1, partitioner: { kind: 'hash', shards: 2 } });
      const map = (await client.describe('sup')).shardMap as { replicas: string[][] };
      expect(map.replicas).toEqual([['shard-0'], ['shard-1']]);
      await client.upsert('sup', pts(0, 200));
      await waitFor('count 200', async () => ((await client.count('sup')) === 200 ? true : undefined));

      const before = proc('shard-0');
      expect(before.restarts).toBe(0);
      expect(target('shard-0')).toBe(new URL(before.metrics!).host);
      expect(target('coordinator-0')).toBe(new URL(proc('coordinator-0').metrics!).host);
      expect(pidAlive(before.pid)).toBe(true);
      process.kill(before.pid, 'SIGKILL');
      // Acknowledged while shard 0 has no process: the log keeps it for the restart.
      await client.upsert('sup', pts(200, 100));

      const after = await waitFor('a new shard-0 in cluster.json', async () => {
        const p = proc('shard-0');
        return p.pid !== before.pid && p.metrics ? p : undefined;
      }, 30_000, 100, context);
      seen.push(after);
      expect(after.restarts).toBe(1);
      expect(target('shard-0')).toBe(new URL(after.metrics!).host);
      expect(pidAlive(after.pid)).toBe(true);
      expect(pidAlive(before.pid)).toBe(false);
      expect(proc('shard-1').restarts).toBe(0);
      await waitFor('shard-0 heartbeating with its new pid', async () => {
        const members = (await client.status()).members as { name: string; pid: number }[];
        return members.some((m) => m.name === 'shard-0' && m.pid === after.pid) ? true : undefined;
      }, 30_000, 100, context);
      // Every shard answers and the new process has applied the writes made while it was down.
      await waitFor('count 300 with no shard missing', async () => {
        const r = await nc.request('vdb.v1.sup.count', encode({}, false), { timeout: 5000 });
        const body = decode(r.data, false) as { count: number; partial: boolean };
        return body.count === 300 && !body.partial ? true : undefined;
      }, 30_000, 200, context);
      const got = await client.get('sup', [0, 2, 4, 250, 252, 254]);
      expect(got.points.map((p) => p.id)).toEqual([0, 2, 4, 250, 252, 254]);
      expect(lines.some((l) => /shard-0 \(pid \d+\) was killed by SIGKILL/.test(l)), context()).toBe(true);

      const coord = proc('coordinator-0');
      process.kill(coord.pid, 'SIGKILL');
      const coordAfter = await waitFor('a new coordinator-0', async () => {
        const p = proc('coordinator-0');
        return p.pid !== coord.pid && p.metrics ? p : undefined;
      }, 30_000, 100, context);
      seen.push(coordAfter);
      expect(coordAfter.restarts).toBe(1);
      expect(await waitFor('count through the new coordinator', async () => client.count('sup'), 30_000, 200, context)).toBe(300);
    } finally {
      await nc.close();
      await cluster.stop();
    }
    const last = read();
    // Longer than the back-off: a restart after stop() would have happened by now.
    await sleep(1000);
    expect(read()).toEqual(last);
    for (const p of [...seen, ...last.processes]) expect(pidAlive(p.pid), `${p.role} ${p.name ?? ''} pid ${p.pid} still runs`).toBe(false);
  });
});
