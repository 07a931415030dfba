// A real cluster for tests: a private nats-server or NATS cluster (cluster/nats-server.ts) and
// shard and coordinator processes run from dist/ as child processes, each
// with its output kept so a failure can show what the processes said. Ready
// means every named process has a heartbeat that a coordinator reports.

import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { connect, headers as natsHeaders } from 'nats';
import type { Msg, NatsConnection } from 'nats';
import { startNatsCluster, startNatsServer } from '../cluster/nats-server.js';
import type { RunningNats, RunningNatsCluster } from '../cluster/nats-server.js';
import { authOptions, natsServers } from '../cluster/nats-connect.js';
import { openCredentials } from '../cluster/credentials.js';
import type { CredentialsStore } from '../cluster/credentials.js';
import { VdbClient } from '../ts/client.js';
import { decode, encode } from '../ts/wire/codec.js';

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
export const CLI = join(ROOT, 'dist', 'cluster', 'cli.js');

/** Throws a clear message when the compiled cluster code the child processes run is absent. */
export function requireDist(): void {
  for (const f of [CLI, join(ROOT, 'dist', 'cluster', 'shard.js'), join(ROOT, 'dist', 'cluster', 'coordinator.js')]) {
    if (!existsSync(f)) throw new Error(`${f} is missing: the cluster tests run the compiled processes from dist/ — run npm run build`);
  }
  if (!existsSync(join(ROOT, 'build', 'vdb.wasm'))) throw new Error('build/vdb.wasm is missing: run npm run build');
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Polls `fn` until it returns something other than undefined; fails with `what` and the last error after `timeoutMs`. */
export async function waitFor<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs = 30_000, intervalMs = 100, context?: () => string): Promise<T> {
  const until = Date.now() + timeoutMs;
  let last = 'no attempt';
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined) return v;
      last = 'not yet';
    } catch (e) {
      last = (e as Error).message;
    }
    if (Date.now() > until) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what} (last: ${last})${context ? `\n${context()}` : ''}`);
    await sleep(intervalMs);
  }
}

const LOG_LINES = 60;

export interface Proc {
  name: string;
  role: 'shard' | 'coordinator';
  args: string[];
  child: ChildProcess;
  /** The last lines the process wrote (stdout and stderr). */
  lines: string[];
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

export function isRunning(p: Proc): boolean {
  return p.child.exitCode === null && p.child.signalCode === null;
}

/** Whether the OS still has a process with this pid (signal 0 probes without sending). */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code !== 'ESRCH';
  }
}

export interface ClusterOptions {
  shards: number;
  coordinators?: number;
  /** --deadline-ms of the coordinators. */
  deadlineMs?: number;
  /** nats-server max_payload (default that of startNatsServer, 8 MiB). */
  maxPayload?: number;
  /** VdbClient request timeout. */
  clientTimeoutMs?: number;
  /** More arguments for every coordinator (e.g. --grace-ms). */
  coordinatorArgs?: string[];
  /** More arguments for every shard process (e.g. --max-points). */
  shardArgs?: string[];
  /** Run a NATS cluster of this many servers instead of one server; every process gets all their URLs. */
  natsNodes?: number;
}

/**
 * A connection as one of the cluster's users: `internal` (the processes'
 * account: logs, KV, shard subjects) or a client user (admin, writer, reader,
 * or one added with addUser), which reaches only the public API.
 */
export function connectAs(url: string, creds: string, name = 'vdb-cluster-test'): Promise<NatsConnection> {
  return connect({ servers: natsServers(url), name, maxReconnectAttempts: -1, ...authOptions({ creds }) });
}

export class TestCluster {
  readonly procs = new Map<string, Proc>();
  private maxPayload: number | undefined;
  private readonly killOnExit = () => {
    for (const p of this.procs.values()) if (isRunning(p)) p.child.kill('SIGKILL');
  };

  private constructor(
    readonly dir: string,
    private server: RunningNats | undefined,
    readonly natsCluster: RunningNatsCluster | undefined,
    /** What the processes get as --nats: one URL, or a NATS cluster's URLs joined by commas. */
    readonly natsUrl: string,
    /** The credentials every process and `nc` connect with, and the client users' files. */
    readonly credentials: CredentialsStore,
    /** A connection in the internal account (as the processes): logs, KV, shard subjects. */
    readonly nc: NatsConnection,
    /** A client-account connection as the `admin` user: the public API only, as an application sees it. */
    readonly clientNc: NatsConnection,
    readonly client: VdbClient,
    readonly deadlineMs: number | undefined,
    readonly coordinatorArgs: string[] = [],
    readonly shardArgs: string[] = [],
  ) {
    process.once('exit', this.killOnExit);
  }

  /** The single nats-server (not in a NATS-cluster run). */
  get nats(): RunningNats {
    if (!this.server) throw new Error(this.natsCluster ? 'this test cluster runs a NATS cluster: use natsCluster' : 'nats-server is down');
    return this.server;
  }

  /** Kills the single nats-server (SIGKILL) and starts it again on the same port with the same JetStream directory. */
  async restartNats(downMs = 0): Promise<void> {
    const { port } = this.nats;
    await this.nats.kill();
    this.server = undefined;
    await sleep(downMs);
    this.server = await startNatsServer({ dir: join(this.dir, 'nats'), port, maxPayload: this.maxPayload, auth: this.auth() });
  }

  private auth() {
    return { accounts: this.credentials.accounts, creds: this.credentials.internal };
  }

  /** Starts nats-server, `shards` shard processes (shard-0..) and the coordinators (c-0..), and waits until all are members. */
  static async start(opts: ClusterOptions): Promise<TestCluster> {
    requireDist();
    const dir = mkdtempSync(join(tmpdir(), 'vdb-cluster-'));
    let nats: RunningNats | undefined;
    let natsCluster: RunningNatsCluster | undefined;
    let nc: NatsConnection | undefined;
    let clientNc: NatsConnection | undefined;
    try {
      // Authenticated, as `vdb up` runs: every process and connection has credentials.
      const credentials = openCredentials(join(dir, 'credentials'), 'vdb');
      const auth = { accounts: credentials.accounts, creds: credentials.internal };
      // Throws the install hint when nats-server is missing: the suite fails, it does not skip.
      if (opts.natsNodes === undefined) nats = await startNatsServer({ dir: join(dir, 'nats'), maxPayload: opts.maxPayload, auth });
      else natsCluster = await startNatsCluster({ dir: join(dir, 'nats'), nodes: opts.natsNodes, maxPayload: opts.maxPayload, auth });
      const url = nats?.url ?? natsCluster!.url;
      // Reconnect for as long as the test runs: some tests restart or kill nats-servers.
      nc = await connectAs(url, credentials.internal);
      clientNc = await connectAs(url, credentials.files.admin, 'vdb-cluster-test-client');
      const client = new VdbClient(clientNc, { timeoutMs: opts.clientTimeoutMs ?? 15_000 });
      const cl = new TestCluster(dir, nats, natsCluster, url, credentials, nc, clientNc, client, opts.deadlineMs, opts.coordinatorArgs, opts.shardArgs);
      cl.maxPayload = opts.maxPayload;
      try {
        for (let i = 0; i < opts.shards; i++) cl.startShard(`shard-${i}`);
        for (let i = 0; i < (opts.coordinators ?? 1); i++) cl.startCoordinator(`c-${i}`);
        await cl.waitMembers([...cl.procs.keys()]);
      } catch (e) {
        await cl.stop();
        throw e;
      }
      return cl;
    } catch (e) {
      if (nc && !nc.isClosed()) await nc.close();
      if (clientNc && !clientNc.isClosed()) await clientNc.close();
      await nats?.stop();
      await natsCluster?.stop();
      rmSync(dir, { recursive: true, force: true });
      throw e;
    }
  }

  private spawn(role: Proc['role'], name: string, args: string[]): Proc {
    const old = this.procs.get(name);
    if (old && isRunning(old)) throw new Error(`${name} is still running`);
    const child = spawn(process.execPath, [CLI, role, '--nats', this.natsUrl, '--creds', this.credentials.internal, '--name', name, ...args], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const lines: string[] = old?.lines ?? [];
    if (old) lines.push(`----- ${name} restarted -----`);
    let partial = '';
    const push = (d: Buffer) => {
      const parts = (partial + d.toString()).split('\n');
      partial = parts.pop() ?? '';
      for (const l of parts) {
        lines.push(l);
        if (lines.length > LOG_LINES) lines.shift();
      }
    };
    child.stdout!.on('data', push);
    child.stderr!.on('data', push);
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) => child.once('exit', (code, signal) => r({ code, signal })));
    const p: Proc = { name, role, args, child, lines, exited };
    this.procs.set(name, p);
    return p;
  }

  /** `node dist/cluster/cli.js shard --nats URL --name NAME --data DIR/NAME` (the same data directory on a restart),
   * or `--data` elsewhere, with more arguments. */
  startShard(name: string, opts: { data?: string; args?: string[] } = {}): Proc {
    return this.spawn('shard', name, ['--data', opts.data ?? join(this.dir, name), ...this.shardArgs, ...(opts.args ?? [])]);
  }

  startCoordinator(name: string): Proc {
    return this.spawn('coordinator', name, [...(this.deadlineMs === undefined ? [] : ['--deadline-ms', String(this.deadlineMs)]), ...this.coordinatorArgs]);
  }

  proc(name: string): Proc {
    const p = this.procs.get(name);
    if (!p) throw new Error(`no process ${name}`);
    return p;
  }

  /** Sends `signal` and waits for the process to end (SIGKILL after 5 s). */
  async kill(name: string, signal: NodeJS.Signals = 'SIGKILL'): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    const p = this.proc(name);
    if (isRunning(p)) {
      p.child.kill(signal);
      const t = setTimeout(() => p.child.kill('SIGKILL'), 5_000);
      try {
        return await p.exited;
      } finally {
        clearTimeout(t);
      }
    }
    return p.exited;
  }

  /** Each process's state and its last lines, for failure messages. */
  logs(): string {
    return [...this.procs.values()]
      .map((p) => `--- ${p.role} ${p.name} (pid ${p.child.pid}, ${isRunning(p) ? 'running' : `exited ${p.child.exitCode ?? p.child.signalCode}`}):\n${p.lines.slice(-20).join('\n')}`)
      .join('\n');
  }

  /** Fails at once, with the logs, if a process that should run has exited. */
  checkRunning(names: string[] = [...this.procs.keys()]): void {
    for (const n of names) {
      const p = this.proc(n);
      if (!isRunning(p)) throw new Error(`${p.role} ${n} exited (${p.child.exitCode ?? p.child.signalCode})\n${this.logs()}`);
    }
  }

  /** Waits until a coordinator answers `status` and lists every name among the live members. */
  async waitMembers(names: string[], timeoutMs = 30_000): Promise<void> {
    await waitFor(`members ${names.join(', ')}`, async () => {
      this.checkRunning(names);
      // Asked in the internal account: there a request nobody serves yet fails at once (no responders),
      // while through the client account's import it waits out the client's whole timeout.
      const st = await new VdbClient(this.nc, { timeoutMs: 5_000 }).status();
      const live = new Set(((st.members as { name: string }[] | undefined) ?? []).map((m) => m.name));
      return names.every((n) => live.has(n)) ? true : undefined;
    }, timeoutMs, 150, () => this.logs());
  }

  /** A raw request: bytes as given, with Content-Type: application/json when `json`. */
  request(subject: string, data: Uint8Array, opts: { json?: boolean; timeout?: number } = {}): Promise<Msg> {
    let h;
    if (opts.json) {
      h = natsHeaders();
      h.set('Content-Type', 'application/json');
    }
    return this.nc.request(subject, data, { timeout: opts.timeout ?? 15_000, headers: h });
  }

  /** `count` with its partial flag (VdbClient.count returns the number only). */
  async rawCount(collection: string): Promise<{ count: number; partial: boolean; missing?: number[] }> {
    const m = await this.request(`vdb.v1.${collection}.count`, encode({}, false));
    const body = decode(m.data, false) as { count: number; partial: boolean; missing?: number[]; error?: { code: string; message: string } };
    if (body.error) throw new Error(`count ${collection}: ${body.error.code}: ${body.error.message}`);
    return body;
  }

  /** Waits until every shard of the collection answers count and the total is `n`. */
  async waitCount(collection: string, n: number, timeoutMs = 45_000): Promise<void> {
    let last: unknown;
    await waitFor(`count(${collection}) = ${n} from every shard`, async () => {
      this.checkRunning();
      const c = await this.rawCount(collection);
      last = c;
      return c.count === n && !c.partial ? true : undefined;
    }, timeoutMs, 100, () => `last count reply: ${JSON.stringify(last)}\n${this.logs()}`);
  }

  /** Stops every process still running (SIGTERM, SIGKILL after 5 s), the connection, nats-server, and removes the data. */
  async stop(): Promise<void> {
    await Promise.all([...this.procs.keys()].map((n) => this.kill(n, 'SIGTERM')));
    process.removeListener('exit', this.killOnExit);
    if (!this.nc.isClosed()) await this.nc.close().catch(() => undefined);
    if (!this.clientNc.isClosed()) await this.clientNc.close().catch(() => undefined);
    await this.server?.stop();
    await this.natsCluster?.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** A temp directory for embedded reference collections. */
export function tempDir(prefix = 'vdb-ref-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}
