// Runs a private nats-server with JetStream for `npm start` / `vdb up` and for
// tests: finds the binary, picks free loopback ports, writes a config file into
// the data directory, spawns the server and returns once it accepts clients
// AND JetStream answers (so callers can create KV buckets straight away).

import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { accessSync, constants, mkdirSync, statSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { delimiter, join, resolve } from 'node:path';
import { connect } from 'nats';
import { ErrorCode, VdbError } from '../ts/errors.js';
import { readCreds, writeSecret } from './credentials.js';
import type { TlsFiles } from './tls.js';

export interface NatsServerOptions {
  /** Data directory: holds the config file and the JetStream store (`dir/jetstream`). Created if missing. */
  dir: string;
  /** Client port; a free one is picked when absent or 0. */
  port?: number;
  /** Interface to listen on (default 127.0.0.1). */
  host?: string;
  /** Largest message the server accepts, bytes (default 8 MiB, at most 64 MiB). */
  maxPayload?: number;
  /** Receives every line the server logs (its stderr and stdout). */
  log?: (line: string) => void;
  /** How long to wait for clients and JetStream to be served, ms (default 10 000). */
  readyTimeoutMs?: number;
  /** The server's name; a random one when absent. A cluster node keeps its name across restarts (Raft knows it by it). */
  serverName?: string;
  /**
   * JetStream `sync_interval`: `always` fsyncs every stored message before the
   * publish is acknowledged; a duration (`1s`, `500ms`) bounds what a power loss
   * can take. Absent: the server's default (every 2 minutes). Needs nats-server 2.10+.
   */
  sync?: string;
  /** Makes the server a member of a cluster: its route port and the route URLs of the members. */
  cluster?: { name: string; port: number; routes: string[] };
  /**
   * Accounts and users (cluster/auth.ts): the `accounts` block, written to
   * `dir/accounts.conf` and included, and the credentials file the readiness
   * probe connects with. Absent: no authorization at all (only for tests of that).
   */
  auth?: { accounts: string; creds: string };
  /**
   * TLS on the client port: the server's certificate and key, the CA clients
   * verify it with; `verifyClients` requires a client certificate signed by that
   * CA (the readiness probe presents clientCert/clientKey).
   */
  tls?: TlsFiles & { verifyClients?: boolean };
}

export interface RunningNats {
  /** Client URL, e.g. nats://127.0.0.1:4222. */
  url: string;
  port: number;
  /** HTTP monitoring port (on 127.0.0.1): /varz, /jsz, /healthz. */
  monitorPort: number;
  pid: number;
  /** The config file written for this server. */
  configFile: string;
  /** The included accounts file (with auth): rewrite it and reload() to change users. */
  accountsFile?: string;
  /** Makes the server read its config again (SIGHUP), and resolves once it has: users change without a restart. */
  reload(): Promise<void>;
  /** Settles when the server process ends, whether by stop() or not (a crash, a kill). */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** SIGTERM, wait for the exit, SIGKILL after a few seconds. Safe to call twice. */
  stop(): Promise<void>;
  /** SIGKILL (a crash: nothing is flushed), and wait for the exit. */
  kill(): Promise<void>;
}

export const DEFAULT_MAX_PAYLOAD = 8 * 1024 * 1024;
/** nats-server refuses a max_payload above its max_pending (64 MiB). */
const MAX_MAX_PAYLOAD = 64 * 1024 * 1024;
const STOP_GRACE_MS = 5_000;
const PORT_ATTEMPTS = 5;
const LOG_TAIL_LINES = 40;

export const NATS_SERVER_MISSING =
  'nats-server not found: install it with `apt-get install -y nats-server` (Debian) or put it on PATH';

function isExecutableFile(path: string): boolean {
  try {
    if (!statSync(path).isFile()) return false;
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * The path of the nats-server binary: `$VDB_NATS_SERVER` if set (and then only
 * that), else the first on PATH, /usr/sbin or /usr/bin. Throws UNAVAILABLE
 * with an install hint when there is none.
 */
export function findNatsServer(env: NodeJS.ProcessEnv = process.env): string {
  const override = env.VDB_NATS_SERVER;
  if (override !== undefined && override !== '') {
    const path = resolve(override);
    if (isExecutableFile(path)) return path;
    throw new VdbError(
      ErrorCode.UNAVAILABLE,
      `${NATS_SERVER_MISSING} (VDB_NATS_SERVER=${override} is not an executable file)`,
    );
  }
  const dirs = (env.PATH ?? '').split(delimiter).filter((d) => d !== '');
  for (const dir of [...dirs, '/usr/sbin', '/usr/bin', '/usr/local/bin']) {
    const path = join(dir, 'nats-server');
    if (isExecutableFile(path)) return path;
  }
  throw new VdbError(ErrorCode.UNAVAILABLE, NATS_SERVER_MISSING);
}

/** A port that was free on `host` a moment ago (bound to 0, read, released). */
export function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const srv = createServer();
    srv.unref();
    srv.once('error', reject);
    srv.listen({ port: 0, host, exclusive: true }, () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr !== null ? addr.port : 0;
      srv.close(() => (port > 0 ? resolvePort(port) : reject(new Error(`no port bound on ${host}`))));
    });
  });
}

function checkOptions(opts: NatsServerOptions): void {
  if (typeof opts.dir !== 'string' || opts.dir === '') {
    throw new VdbError(ErrorCode.INVALID_ARGUMENT, 'nats-server: dir is required');
  }
  if (opts.port !== undefined && (!Number.isInteger(opts.port) || opts.port < 0 || opts.port > 65535)) {
    throw new VdbError(ErrorCode.INVALID_ARGUMENT, `nats-server: port must be an integer in 0..65535, got ${opts.port}`);
  }
  const mp = opts.maxPayload;
  if (mp !== undefined && (!Number.isInteger(mp) || mp < 1024 || mp > MAX_MAX_PAYLOAD)) {
    throw new VdbError(
      ErrorCode.INVALID_ARGUMENT,
      `nats-server: maxPayload must be an integer in 1024..${MAX_MAX_PAYLOAD} bytes, got ${mp}`,
    );
  }
  if (opts.sync !== undefined && !/^(always|\d+(ms|s|m|h))$/.test(opts.sync)) {
    throw new VdbError(ErrorCode.INVALID_ARGUMENT, `nats-server: sync must be "always" or a duration such as 1s or 500ms, got ${JSON.stringify(opts.sync)}`);
  }
}

/** A string in nats-server's config syntax (double-quoted, JSON escapes). */
const q = (s: string): string => JSON.stringify(s);

function configText(c: {
  host: string; port: number; monitorPort: number; maxPayload: number; storeDir: string; serverName: string;
  sync?: string; cluster?: NatsServerOptions['cluster']; accountsFile?: string; tls?: NatsServerOptions['tls'];
}): string {
  const lines = [
    '# Written by vdb (cluster/nats-server.ts) on every start; edits are overwritten.',
    `server_name: ${q(c.serverName)}`,
    `listen: ${q(`${c.host}:${c.port}`)}`,
    `http: ${q(`127.0.0.1:${c.monitorPort}`)}`,
    `max_payload: ${c.maxPayload}`,
    'jetstream {',
    `  store_dir: ${q(c.storeDir)}`,
    ...(c.sync === undefined ? [] : [`  sync_interval: ${q(c.sync)}`]),
    '}',
    ...(c.accountsFile === undefined ? [] : [`include ${q(c.accountsFile)}`]),
    ...(c.tls === undefined ? [] : [
      'tls {',
      `  cert_file: ${q(c.tls.cert)}`,
      `  key_file: ${q(c.tls.key)}`,
      `  ca_file: ${q(c.tls.ca)}`,
      ...(c.tls.verifyClients ? ['  verify: true'] : []),
      '  timeout: 5',
      '}',
    ]),
  ];
  if (c.cluster) {
    lines.push(
      'cluster {',
      `  name: ${q(c.cluster.name)}`,
      `  listen: ${q(`${c.host}:${c.cluster.port}`)}`,
      `  routes: [${c.cluster.routes.map(q).join(', ')}]`,
      '}',
    );
  }
  return lines.join('\n') + '\n';
}

/** The host a client on this machine dials for a server listening on `host`. */
function dialHost(host: string): string {
  if (host === '0.0.0.0' || host === '' || host === '::') return '127.0.0.1';
  return host.includes(':') ? `[${host}]` : host;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Keeps the last lines of a stream, handing each full line to `log`. */
class LineTail {
  readonly lines: string[] = [];
  /** Error and fatal lines, kept apart so the banner cannot push them out. */
  readonly errors: string[] = [];
  private partial = '';

  constructor(private readonly log?: (line: string) => void) {}

  push(chunk: Buffer | string): void {
    const parts = (this.partial + chunk.toString()).split('\n');
    this.partial = parts.pop() ?? '';
    for (const p of parts) this.line(p.replace(/\r$/, ''));
  }

  flush(): void {
    if (this.partial !== '') this.line(this.partial);
    this.partial = '';
  }

  private line(l: string): void {
    this.lines.push(l);
    if (this.lines.length > LOG_TAIL_LINES) this.lines.shift();
    if (/\[(FTL|ERR)\]/.test(l) && this.errors.length < LOG_TAIL_LINES) this.errors.push(l);
    if (this.log) {
      try {
        this.log(l);
      } catch {
        // a failing logger must not take the server down with it
      }
    }
  }

  text(): string {
    return this.lines.join('\n');
  }
}

/** The child's exit as a promise (already settled if it has exited). */
function exitOf(child: ChildProcess): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  return new Promise((r) => {
    if (child.exitCode !== null || child.signalCode !== null) r({ code: child.exitCode, signal: child.signalCode });
    else child.once('exit', (code, signal) => r({ code, signal }));
  });
}

/** The server could not bind its ports (someone took one after we probed it). */
class BindFailure extends VdbError {
  constructor(message: string) {
    super(ErrorCode.UNAVAILABLE, message);
  }
}

/**
 * Starts nats-server with JetStream, stored under `dir`, and resolves once it
 * serves clients and JetStream. Fails (killing the server) after
 * `readyTimeoutMs` with the server's log tail in the message.
 */
export async function startNatsServer(opts: NatsServerOptions): Promise<RunningNats> {
  checkOptions(opts);
  const bin = findNatsServer();
  const dir = resolve(opts.dir);
  const storeDir = join(dir, 'jetstream');
  mkdirSync(storeDir, { recursive: true });
  const host = opts.host ?? '127.0.0.1';
  const fixedPort = opts.port !== undefined && opts.port !== 0 ? opts.port : undefined;

  for (let attempt = 1; ; attempt++) {
    const port = fixedPort ?? (await freePort(host));
    const monitorPort = await freePort('127.0.0.1');
    try {
      return await launch({ bin, dir, storeDir, host, port, monitorPort, opts });
    } catch (e) {
      // Someone took a port between our probe and the server's bind: new ports, again.
      if (e instanceof BindFailure && fixedPort === undefined && attempt < PORT_ATTEMPTS) continue;
      throw e;
    }
  }
}

async function launch(a: {
  bin: string;
  dir: string;
  storeDir: string;
  host: string;
  port: number;
  monitorPort: number;
  opts: NatsServerOptions;
}): Promise<RunningNats> {
  const serverName = a.opts.serverName ?? `vdb_${randomBytes(6).toString('hex')}`;
  const configFile = join(a.dir, 'nats-server.conf');
  const accountsFile = a.opts.auth ? join(a.dir, 'accounts.conf') : undefined;
  if (a.opts.auth) writeSecret(accountsFile!, a.opts.auth.accounts);
  writeFileSync(
    configFile,
    configText({
      host: a.host,
      port: a.port,
      monitorPort: a.monitorPort,
      maxPayload: a.opts.maxPayload ?? DEFAULT_MAX_PAYLOAD,
      storeDir: a.storeDir,
      serverName,
      sync: a.opts.sync,
      cluster: a.opts.cluster,
      accountsFile: accountsFile && 'accounts.conf',
      tls: a.opts.tls,
    }),
  );

  const tail = new LineTail(a.opts.log);
  const child = spawn(a.bin, ['-c', configFile], { cwd: a.dir, stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout!.on('data', (d: Buffer) => tail.push(d));
  child.stderr!.on('data', (d: Buffer) => tail.push(d));
  const spawned = new Promise<void>((ok, fail) => {
    child.once('spawn', ok);
    child.once('error', fail);
  });
  const exited = exitOf(child);
  void exited.then(() => tail.flush());

  // A server left behind by a parent that exits without stop() is killed with it.
  const killOnExit = () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  };
  process.once('exit', killOnExit);
  void exited.then(() => process.removeListener('exit', killOnExit));

  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      // (No pid: the spawn itself failed, there is nothing to wait for.)
      if (child.pid !== undefined && child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const timer = new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), STOP_GRACE_MS).unref());
        if ((await Promise.race([exited, timer])) === 'timeout') {
          child.kill('SIGKILL');
          await exited;
        }
      }
      process.removeListener('exit', killOnExit);
    })();
    return stopping;
  };
  const reload = (): Promise<void> => reloadNats(child.pid!, a.monitorPort);
  const kill = async (): Promise<void> => {
    if (child.pid !== undefined && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await exited;
    process.removeListener('exit', killOnExit);
  };

  try {
    await spawned;
  } catch (e) {
    await stop();
    throw new VdbError(ErrorCode.UNAVAILABLE, `nats-server: cannot run ${a.bin}: ${(e as Error).message}`);
  }

  const url = `nats://${dialHost(a.host)}:${a.port}`;
  const timeoutMs = a.opts.readyTimeoutMs ?? 10_000;
  const deadline = Date.now() + timeoutMs;
  let lastError = 'not tried';
  let dead = false;
  void exited.then(() => (dead = true));

  while (!dead && Date.now() < deadline) {
    try {
      const probe = ready(url, serverName, Math.max(250, Math.min(2_000, deadline - Date.now())), a.opts.auth?.creds, a.opts.tls);
      probe.catch(() => {}); // may settle after the server's exit has ended the race
      if ((await Promise.race([probe.then(() => 'ready' as const), exited])) === 'ready') {
        return { url, port: a.port, monitorPort: a.monitorPort, pid: child.pid!, configFile, accountsFile, reload, exited, stop, kill };
      }
    } catch (e) {
      lastError = (e as Error).message;
    }
    if (dead) break;
    await Promise.race([sleep(100), exited]);
  }

  const diedEarly = dead; // before stop(), which ends it too
  await stop();
  const log = tail.text();
  // The banner is long; the lines that say what went wrong come first.
  const errors = tail.errors;
  const how = diedEarly
    ? `exited (${child.exitCode !== null ? `status ${child.exitCode}` : `signal ${child.signalCode}`}) before it was ready`
    : `did not serve clients and JetStream within ${timeoutMs} ms (last error: ${lastError})`;
  const message =
    `nats-server on ${url} ${how}` +
    (errors.length > 0 ? `: ${errors.join('\n')}` : '') +
    `\nlast lines of its log:\n${log || '(empty)'}`;
  if (diedEarly && /address already in use|bind: /i.test(log)) throw new BindFailure(message);
  if (diedEarly && /unknown field "sync_interval"/.test(log)) {
    throw new VdbError(ErrorCode.UNAVAILABLE, `nats-server: the sync option needs nats-server 2.10 or later (${a.bin} does not know sync_interval)`);
  }
  throw new VdbError(ErrorCode.UNAVAILABLE, message);
}

async function configLoadTime(monitorPort: number): Promise<string> {
  const r = await fetch(`http://127.0.0.1:${monitorPort}/varz`);
  return ((await r.json()) as { config_load_time?: string }).config_load_time ?? '';
}

/**
 * Sends nats-server `pid` its reload signal (SIGHUP) and waits until its
 * monitoring port reports a new config load time: a client that connects
 * while the server is swapping its users can be refused, one after it is not.
 */
export async function reloadNats(pid: number, monitorPort: number, timeoutMs = 10_000): Promise<void> {
  const before = await configLoadTime(monitorPort);
  process.kill(pid, 'SIGHUP');
  const deadline = Date.now() + timeoutMs;
  while ((await configLoadTime(monitorPort)) === before) {
    if (Date.now() > deadline) throw new VdbError(ErrorCode.UNAVAILABLE, `nats-server (pid ${pid}) did not reload its configuration within ${timeoutMs} ms: see its log`);
    await sleep(50);
  }
}

/** One readiness probe: a client connection to *our* server, then a JetStream account info. */
async function ready(url: string, serverName: string, timeout: number, creds: string | undefined, tls: NatsServerOptions['tls']): Promise<void> {
  const nc = await connect({
    servers: url, timeout, reconnect: false, name: 'vdb-nats-ready', ...(creds === undefined ? {} : readCreds(creds)),
    ...(tls === undefined ? {} : { tls: { caFile: tls.ca, ...(tls.clientCert && tls.clientKey ? { certFile: tls.clientCert, keyFile: tls.clientKey } : {}) } }),
  });
  try {
    const name = nc.info?.server_name;
    if (name !== serverName) throw new Error(`port ${url} is served by another server (${name ?? 'unknown'})`);
    const jsm = await nc.jetstreamManager({ timeout });
    await jsm.getAccountInfo();
  } finally {
    await nc.close().catch(() => {});
  }
}

export interface NatsClusterOptions {
  /** Holds one directory per node (`dir/n0`, `dir/n1`, …). Created if missing. */
  dir: string;
  /** Number of servers (default 3). */
  nodes?: number;
  host?: string;
  maxPayload?: number;
  sync?: string;
  /** Receives every line a node logs, with the node's name. */
  log?: (node: string, line: string) => void;
  readyTimeoutMs?: number;
  /** Accounts and users, the same on every node (see NatsServerOptions.auth). */
  auth?: NatsServerOptions['auth'];
}

/** One server of a cluster: its name, store and ports stay the same across restarts. */
export interface NatsClusterNode {
  name: string;
  url: string;
  port: number;
  clusterPort: number;
  /** The running server, or undefined while the node is down. */
  server: RunningNats | undefined;
  /** Starts the node again (same name, ports and JetStream store). */
  start(): Promise<void>;
  stop(): Promise<void>;
  /** SIGKILL: the node crashes. */
  kill(): Promise<void>;
}

export interface RunningNatsCluster {
  nodes: NatsClusterNode[];
  /** Every node's client URL. */
  urls: string[];
  /** The client URLs joined by commas, as the processes' --nats flag takes them. */
  url: string;
  stop(): Promise<void>;
}

/**
 * Starts a cluster of nats-servers on loopback: each with its own client port,
 * route port, JetStream store and name, all in one cluster with routes to each
 * other. Resolves once every node serves JetStream and sees all the others.
 */
export async function startNatsCluster(opts: NatsClusterOptions): Promise<RunningNatsCluster> {
  const count = opts.nodes ?? 3;
  if (!Number.isInteger(count) || count < 1 || count > 9) {
    throw new VdbError(ErrorCode.INVALID_ARGUMENT, `nats cluster: nodes must be an integer in 1..9, got ${count}`);
  }
  const host = opts.host ?? '127.0.0.1';
  const ports: { port: number; clusterPort: number }[] = [];
  for (let i = 0; i < count; i++) ports.push({ port: await freePort(host), clusterPort: await freePort(host) });
  const clusterName = `vdb_${randomBytes(4).toString('hex')}`;
  const routes = ports.map((p) => `nats-route://${dialHost(host)}:${p.clusterPort}`);

  const nodes: NatsClusterNode[] = ports.map((p, i) => {
    const name = `${clusterName}_n${i}`;
    const node: NatsClusterNode = {
      name,
      url: `nats://${dialHost(host)}:${p.port}`,
      port: p.port,
      clusterPort: p.clusterPort,
      server: undefined,
      async start() {
        if (node.server) throw new VdbError(ErrorCode.INVALID_ARGUMENT, `nats cluster: node ${name} is running`);
        node.server = await startNatsServer({
          dir: join(opts.dir, `n${i}`), port: p.port, host, maxPayload: opts.maxPayload, sync: opts.sync,
          readyTimeoutMs: opts.readyTimeoutMs, serverName: name, auth: opts.auth, log: opts.log && ((l) => opts.log!(name, l)),
          cluster: { name: clusterName, port: p.clusterPort, routes: routes.filter((_, j) => j !== i) },
        });
      },
      async stop() {
        await node.server?.stop();
        node.server = undefined;
      },
      async kill() {
        await node.server?.kill();
        node.server = undefined;
      },
    };
    return node;
  });

  const stop = async () => {
    await Promise.all(nodes.map((n) => n.stop()));
  };
  try {
    // Together: JetStream answers only once a majority of the nodes has elected a meta leader.
    await Promise.all(nodes.map((n) => n.start()));
    await waitMeshed(nodes, opts.readyTimeoutMs ?? 10_000);
  } catch (e) {
    await stop();
    throw e;
  }
  const urls = nodes.map((n) => n.url);
  return { nodes, urls, url: urls.join(','), stop };
}

/** Waits until every node's JetStream meta group counts all the nodes, so a stream can be placed on each of them. */
async function waitMeshed(nodes: NatsClusterNode[], timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = 'not tried';
  for (;;) {
    try {
      const sizes = await Promise.all(nodes.map(async (n) => {
        const r = await fetch(`http://127.0.0.1:${n.server!.monitorPort}/jsz`);
        const jsz = (await r.json()) as { meta_cluster?: { cluster_size?: number; leader?: string } };
        return jsz.meta_cluster?.leader ? (jsz.meta_cluster.cluster_size ?? 0) : 0;
      }));
      if (sizes.every((s) => s === nodes.length)) return;
      last = `meta group sizes ${sizes.join(', ')}`;
    } catch (e) {
      last = (e as Error).message;
    }
    if (Date.now() > deadline) {
      throw new VdbError(ErrorCode.UNAVAILABLE, `nats cluster: the ${nodes.length} nodes did not form one JetStream cluster within ${timeoutMs} ms (${last})`);
    }
    await sleep(100);
  }
}
