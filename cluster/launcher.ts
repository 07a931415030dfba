// `vdb up`: a local cluster on this machine. Starts its own nats-server (unless
// given one), N shard processes and a coordinator, writes DIR/cluster.json with
// every process's role, pid and ports, and stops everything on SIGINT/SIGTERM.

import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { connect } from 'nats';
import { startNatsServer } from './nats-server.js';
import type { RunningNats } from './nats-server.js';
import { Meta } from './meta.js';
import { names } from './subjects.js';
import { VdbError, ErrorCode } from '../ts/errors.js';

export interface UpOptions {
  shards: number;
  data: string;
  nats?: string;
  prefix?: string;
  log?: (line: string) => void;
}

export interface RunningCluster {
  url: string;
  stop(): Promise<void>;
}

interface Child { role: 'shard' | 'coordinator'; name: string; proc: ChildProcess }

const CLI = fileURLToPath(new URL('./cli.js', import.meta.url));

export async function up(opts: UpOptions): Promise<RunningCluster> {
  const log = opts.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const data = resolve(opts.data);
  mkdirSync(data, { recursive: true });
  let server: RunningNats | undefined;
  if (!opts.nats) {
    server = await startNatsServer({ dir: join(data, 'nats') });
    log(`nats-server ${server.url} (pid ${server.pid}, monitoring http://127.0.0.1:${server.monitorPort}), JetStream in ${join(data, 'nats')}`);
  }
  const url = opts.nats ?? server!.url;
  const prefix = opts.prefix ?? 'vdb';
  // The metadata buckets exist before any process starts, so none races to create them.
  const nc = await connect({ servers: url });
  const meta = await Meta.open(nc, names(prefix));
  const children: Child[] = [];
  const start = (role: Child['role'], name: string, args: string[]) => {
    const proc = spawn(process.execPath, [CLI, role, '--nats', url, '--name', name, '--prefix', prefix, ...args], { stdio: ['ignore', 'inherit', 'inherit'] });
    children.push({ role, name, proc });
  };
  for (let i = 0; i < opts.shards; i++) start('shard', `shard-${i}`, ['--data', join(data, `shard-${i}`)]);
  start('coordinator', 'coordinator-0', []);

  const stop = async () => {
    await Promise.all(children.map((c) => new Promise<void>((res) => {
      if (c.proc.exitCode !== null || c.proc.signalCode !== null) return res();
      c.proc.once('exit', () => res());
      c.proc.kill('SIGTERM');
      setTimeout(() => c.proc.kill('SIGKILL'), 5000).unref();
    })));
    await server?.stop();
  };

  // Ready when every process has a heartbeat in the members bucket.
  const ports = new Map<string, number | undefined>();
  try {
    const until = Date.now() + 20_000;
    for (;;) {
      const live = new Map(meta.live().map((m) => [m.name, m.metricsPort]));
      if (children.every((c) => live.has(c.name))) {
        for (const [k, v] of live) ports.set(k, v);
        break;
      }
      const dead = children.find((c) => c.proc.exitCode !== null);
      if (dead || Date.now() > until) {
        await stop();
        throw new VdbError(ErrorCode.UNAVAILABLE, dead ? `${dead.name} exited with status ${dead.proc.exitCode}` : 'the cluster did not come up within 20 s');
      }
      await new Promise((r) => setTimeout(r, 200));
    }
  } finally {
    meta.close();
    await nc.close();
  }
  writeFileSync(join(data, 'cluster.json'), JSON.stringify({
    nats: url,
    prefix,
    processes: [
      ...(server ? [{ role: 'nats-server', pid: server.pid, port: server.port, monitorPort: server.monitorPort }] : []),
      ...children.map((c) => ({ role: c.role, name: c.name, pid: c.proc.pid, metrics: `http://127.0.0.1:${ports.get(c.name)}/metrics` })),
    ],
  }, null, 2));
  for (const c of children) log(`${c.name}: pid ${c.proc.pid}, http://127.0.0.1:${ports.get(c.name)}/metrics and /healthz`);
  log(`cluster up: ${opts.shards} shard processes and a coordinator; ${join(data, 'cluster.json')}`);
  return { url, stop };
}
