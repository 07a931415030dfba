// `vdb up`: a local cluster on this machine. Starts its own nats-server (unless
// given one), N shard processes and a coordinator, supervises them (a process
// that dies is restarted, cluster/supervisor.ts), keeps DIR/cluster.json with
// every process's role, pid, restart count and ports (and DIR/prometheus with
// the scrape targets from them, cluster/scrape-config.ts), and stops
// everything on SIGINT/SIGTERM.

import { renameSync, mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startNatsServer } from './nats-server.js';
import { authArgs, connectNats } from './nats-connect.js';
import type { NatsAuth } from './nats-connect.js';
import { generateTls } from './tls.js';
import type { TlsFiles } from './tls.js';
import { openCredentials } from './credentials.js';
import type { CredentialsStore } from './credentials.js';
import type { RunningNats } from './nats-server.js';
import { Meta } from './meta.js';
import { names } from './subjects.js';
import { Supervisor } from './supervisor.js';
import type { Backoff, Supervised } from './supervisor.js';
import { VdbError, ErrorCode } from '../ts/errors.js';
import { limitsFrom } from './capacity.js';
import { writePrometheusConfig, writeTargets } from './scrape-config.js';
import type { ShardLimits } from './capacity.js';
import type { LogLevel } from './log.js';

export interface UpOptions {
  shards: number;
  data: string;
  /** The replica count the cluster is meant for (the demo collection's); needs at least this many shard processes. Default 1. */
  replicas?: number;
  nats?: string;
  /** With `nats`: how every process connects to that server (credentials of an internal-account user, TLS files). */
  auth?: NatsAuth;
  /**
   * Without `nats`: TLS on the client port of the nats-server `up` starts, with
   * these files or, with `generate`, a CA and certificates made in DIR/tls;
   * `verifyClients` requires client certificates (mutual TLS; the processes
   * present the generated client certificate, so it needs `generate`).
   */
  tls?: { generate?: boolean; files?: TlsFiles; verifyClients?: boolean };
  prefix?: string;
  log?: (line: string) => void;
  /** Each line a shard or coordinator writes; absent: they write to this process's stdout and stderr. */
  output?: (name: string, line: string) => void;
  /** Restart back-off (default 0.5 s doubling to 30 s, reset after 10 s up). */
  backoff?: Partial<Backoff>;
  /** Interface of every process's /metrics and /healthz (default 127.0.0.1). */
  metricsHost?: string;
  /** Capacity limits of every shard process (their flags). */
  limits?: ShardLimits;
  /** --log-level of every process (default info). */
  logLevel?: LogLevel;
}

export interface RunningCluster {
  url: string;
  /** The credentials `up` made for its own nats-server (absent with `nats`). */
  credentials?: CredentialsStore;
  /** The TLS files of its own nats-server, when it runs TLS. */
  tls?: TlsFiles;
  /** How a client connects as one of `credentials`' users (with the TLS files); undefined with `nats`. */
  clientAuth(user: string): NatsAuth | undefined;
  stop(): Promise<void>;
}

/** One process as DIR/cluster.json lists it. */
export interface ClusterProcess {
  role: 'nats-server' | 'shard' | 'coordinator';
  name?: string;
  pid: number;
  restarts?: number;
  /** The /metrics URL; null while a restarted process has not yet heartbeated. */
  metrics?: string | null;
  port?: number;
  monitorPort?: number;
}

export interface ClusterFile {
  nats: string;
  prefix: string;
  replicas: number;
  /** The credentials file of each user by name, and `internal` (the processes' own); paths, never secrets. */
  credentials?: Record<string, string>;
  /** With TLS: the CA clients verify the server with, and the client certificate and key (for mutual TLS). */
  tls?: { ca: string; clientCert?: string; clientKey?: string };
  processes: ClusterProcess[];
}

const CLI = fileURLToPath(new URL('./cli.js', import.meta.url));

export async function up(opts: UpOptions): Promise<RunningCluster> {
  const log = opts.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const replicas = opts.replicas ?? 1;
  if (!Number.isInteger(replicas) || replicas < 1) throw new VdbError(ErrorCode.INVALID_ARGUMENT, `replicas must be an integer of at least 1, got ${replicas}`);
  if (replicas > opts.shards) {
    throw new VdbError(ErrorCode.INVALID_ARGUMENT, `${replicas} replicas need at least ${replicas} shard processes, but ${opts.shards} ${opts.shards === 1 ? 'is' : 'are'} asked for (--shards ${replicas} or more)`);
  }
  if (opts.limits) limitsFrom(opts.limits);
  const data = resolve(opts.data);
  mkdirSync(data, { recursive: true });
  const prefix = opts.prefix ?? 'vdb';
  let server: RunningNats | undefined;
  let credentials: CredentialsStore | undefined;
  let tls: TlsFiles | undefined;
  if (opts.tls && opts.nats) throw new VdbError(ErrorCode.INVALID_ARGUMENT, 'TLS of a NATS server vdb up does not start is that server\'s configuration: give its CA and client certificate as --tls-ca, --tls-cert, --tls-key');
  if (!opts.nats) {
    credentials = openCredentials(join(data, 'credentials'), prefix);
    if (opts.tls) {
      tls = opts.tls.files ?? (opts.tls.generate ? generateTls(join(data, 'tls')) : undefined);
      if (!tls) throw new VdbError(ErrorCode.INVALID_ARGUMENT, 'TLS needs the server\'s certificate, key and CA, or generate');
      if (opts.tls.verifyClients && !tls.clientCert) throw new VdbError(ErrorCode.INVALID_ARGUMENT, 'mutual TLS needs a client certificate for the processes: let vdb up generate the certificates (--tls)');
    }
    server = await startNatsServer({ dir: join(data, 'nats'), auth: { accounts: credentials.accounts, creds: credentials.internal }, tls: tls && { ...tls, verifyClients: opts.tls?.verifyClients } });
    log(`nats-server ${server.url} (pid ${server.pid}, monitoring http://127.0.0.1:${server.monitorPort}), JetStream in ${join(data, 'nats')}`);
    log(`credentials in ${credentials.dir}: ${Object.keys(credentials.files).join(', ')} (client users), internal.json (the processes')`);
  }
  const url = opts.nats ?? server!.url;
  const as = (creds: string): NatsAuth => ({ creds, ...(tls ? { tlsCa: tls.ca, tlsCert: tls.clientCert, tlsKey: tls.clientKey } : {}) });
  const auth = credentials ? as(credentials.internal) : (opts.auth ?? {});
  const clientAuth = (user: string) => (credentials?.files[user] === undefined ? undefined : as(credentials.files[user]));
  // The metadata buckets exist before any process starts, so none races to create them.
  // The connection stays open: restarted processes are seen heartbeating through it.
  const nc = await connectNats(url, 'vdb-up', auth);
  const meta = await Meta.open(nc, names(prefix));
  const ports = new Map<string, number | undefined>();
  const file = join(data, 'cluster.json');
  const promDir = join(data, 'prometheus');
  let stopped = false;

  const logDir = join(data, 'logs');
  mkdirSync(logDir, { recursive: true });
  const supervisor = new Supervisor({
    command: [process.execPath, CLI],
    backoff: opts.backoff,
    log,
    output: opts.output,
    logDir,
    onRestart: (c) => {
      ports.delete(c.name);
      write();
      void backAgain(c, c.proc.pid!);
    },
  });
  const common = ['--nats', url, '--prefix', prefix, ...authArgs(auth), ...(opts.metricsHost === undefined ? [] : ['--metrics-host', opts.metricsHost]), ...(opts.logLevel === undefined ? [] : ['--log-level', opts.logLevel])];
  // The metrics URLs as this machine reaches them.
  const mhost = opts.metricsHost === undefined || ['0.0.0.0', '::', ''].includes(opts.metricsHost) ? '127.0.0.1' : opts.metricsHost.includes(':') ? `[${opts.metricsHost}]` : opts.metricsHost;
  const limitArgs = Object.entries({ 'max-index-mb': opts.limits?.maxIndexMb, 'max-points': opts.limits?.maxPoints, 'min-free-disk-mb': opts.limits?.minFreeDiskMb })
    .flatMap(([flag, v]) => (v === undefined ? [] : [`--${flag}`, String(v)]));
  for (let i = 0; i < opts.shards; i++) supervisor.add('shard', `shard-${i}`, [...common, '--data', join(data, `shard-${i}`), ...limitArgs]);
  supervisor.add('coordinator', 'coordinator-0', common);

  // Written whole to a temporary file and renamed, so a reader never sees half of it.
  function write(): void {
    const body: ClusterFile = {
      nats: url,
      prefix,
      replicas,
      ...(credentials ? { credentials: { internal: credentials.internal, ...credentials.files } } : {}),
      ...(tls ? { tls: { ca: tls.ca, clientCert: tls.clientCert, clientKey: tls.clientKey } } : {}),
      processes: [
        ...(server ? [{ role: 'nats-server' as const, pid: server.pid, port: server.port, monitorPort: server.monitorPort }] : []),
        ...supervisor.children.map((c) => {
          const port = ports.get(c.name);
          return { role: c.role, name: c.name, pid: c.proc.pid!, restarts: c.restarts, metrics: port === undefined ? null : `http://${mhost}:${port}/metrics` };
        }),
      ],
    };
    writeFileSync(`${file}.tmp`, JSON.stringify(body, null, 2));
    renameSync(`${file}.tmp`, file);
    writeTargets(promDir, body.processes);
  }

  // A restarted process counts as back once its own pid heartbeats.
  async function backAgain(c: Supervised, pid: number): Promise<void> {
    while (!stopped && c.proc.pid === pid && c.proc.exitCode === null && c.proc.signalCode === null) {
      const m = meta.live().find((x) => x.name === c.name && x.pid === pid);
      if (m) {
        ports.set(c.name, m.metricsPort);
        write();
        log(`${c.name} is back: pid ${pid} heartbeats, http://${mhost}:${m.metricsPort}/metrics`);
        return;
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  const stop = async () => {
    if (stopped) return;
    stopped = true;
    await supervisor.stop();
    meta.close();
    if (!nc.isClosed()) await nc.close();
    await server?.stop();
  };

  // Ready when every process has a heartbeat in the members bucket.
  const until = Date.now() + 20_000;
  for (;;) {
    const live = new Map(meta.live().map((m) => [m.name, m.metricsPort]));
    if (supervisor.children.every((c) => live.has(c.name))) {
      for (const [k, v] of live) ports.set(k, v);
      break;
    }
    const dead = supervisor.children.find((c) => c.proc.exitCode !== null || c.proc.signalCode !== null);
    if (dead || Date.now() > until) {
      await stop();
      throw new VdbError(ErrorCode.UNAVAILABLE, dead ? `${dead.name} exited (${dead.proc.exitCode ?? dead.proc.signalCode}) while starting` : 'the cluster did not come up within 20 s');
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  supervisor.supervise();
  write();
  writePrometheusConfig(promDir);
  for (const c of supervisor.children) log(`${c.name}: pid ${c.proc.pid}, http://${mhost}:${ports.get(c.name)}/metrics and /healthz`);
  log(`cluster up: ${opts.shards} shard processes and a coordinator, supervised; ${file}; logs in ${logDir}`);
  log(`Prometheus: prometheus --config.file=${join(promDir, 'prometheus.yml')} (targets.json follows restarts; docs/operations.md)`);
  return { url, credentials, tls, clientAuth, stop };
}
