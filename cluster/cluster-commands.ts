// The `vdb` sub-commands that run or talk to a cluster: up, shard, coordinator,
// create, status, and the --nats forms of import and search.

import { parseArgs } from 'node:util';
import { connect } from 'nats';
import type { NatsConnection } from 'nats';
import { VdbClient } from '../ts/client.js';
import { VdbError, ErrorCode } from '../ts/errors.js';
import type { Metric } from '../ts/core/wasm-index.js';
import { runShard } from './shard.js';
import { DEFAULT_LIMITS, limitsFrom } from './capacity.js';
import type { ShardLimits } from './capacity.js';
import { runCoordinator } from './coordinator.js';
import { up } from './launcher.js';
import type { UpOptions } from './launcher.js';
import { openReader } from './readers.js';
import { DEPLOY_COMMAND } from './deploy-command.js';
import { RateProgress } from './progress.js';
import { runDemo } from './demo.js';
import { AUTH_FLAGS, authFromFlags, authOptions, natsServers } from './nats-connect.js';
import type { NatsAuth } from './nats-connect.js';
import { createLogger, logCrashes, logLevel, logger, setLogger, LOG_LEVELS } from './log.js';

type Opts = NonNullable<Parameters<typeof parseArgs>[0]>['options'];

function args(argv: string[], options: Opts): { values: Record<string, string | boolean | undefined>; positionals: string[] } {
  const r = parseArgs({ args: argv, options, allowPositionals: true });
  return { values: r.values as Record<string, string | boolean | undefined>, positionals: r.positionals };
}

function need(v: unknown, flag: string): string {
  if (typeof v !== 'string' || v === '') throw new VdbError(ErrorCode.INVALID_ARGUMENT, `${flag} is required`);
  return v;
}

/** Runs until SIGINT or SIGTERM, then stops cleanly. */
// Stops once: Ctrl-C in a terminal reaches every process of the group, and
// `vdb up` then sends its own SIGTERM; a second stop would drain a draining
// connection and die with a stack trace.
function untilSignal(stop: () => Promise<void>): Promise<void> {
  return new Promise((resolve, reject) => {
    let stopping: Promise<void> | undefined;
    const done = (signal: string) => {
      if (!stopping) logger().info(`${signal}: stopping`);
      stopping ??= stop().then(resolve, reject);
    };
    process.once('SIGINT', done);
    process.once('SIGTERM', done);
  });
}

async function withClient<T>(url: string, prefix: string | undefined, auth: NatsAuth, fn: (c: VdbClient) => Promise<T>): Promise<T> {
  const nc: NatsConnection = await connect({ servers: natsServers(url), ...authOptions(auth) });
  try {
    return await fn(new VdbClient(nc, { prefix }));
  } finally {
    await nc.close();
  }
}

const COMMON = { nats: { type: 'string' }, prefix: { type: 'string' }, name: { type: 'string' }, ...AUTH_FLAGS } as const;

/** Where a process serves /metrics and /healthz: loopback unless opened deliberately. */
const METRICS_FLAGS = { 'metrics-host': { type: 'string' } } as const;
const METRICS_HELP = `--metrics-host: the interface of /metrics and /healthz (default 127.0.0.1; 0.0.0.0 opens them to
the network, unauthenticated: see docs/security.md).`;

/** Every process's log: JSON lines on stderr (readable on a terminal), at --log-level and above. */
const LOG_FLAGS = { 'log-level': { type: 'string' } } as const;
const LOG_HELP = `--log-level: ${LOG_LEVELS.join(', ')} (default info); the log is one JSON object per line on
stderr, readable lines when stderr is a terminal (docs/operations.md).`;

/** Files only, never a secret: a command line is visible to every user of the machine. */
const AUTH_USAGE = '[--creds FILE] [--tls-ca FILE] [--tls-cert FILE --tls-key FILE]';
const AUTH_HELP = `--creds: a credentials file (or $VDB_CREDS; see docs/security.md); --tls-ca: the CA that
signed the server's certificate (or $VDB_TLS_CA); --tls-cert/--tls-key: a client certificate
for a server that verifies clients (or $VDB_TLS_CERT/$VDB_TLS_KEY).`;
const auth = (o: Record<string, unknown>) => authFromFlags(o);

/** `vdb up`'s TLS for its own nats-server: generated (--tls) or the server's files (--tls-cert, --tls-key, --tls-ca). */
function tlsOption(o: Record<string, unknown>): UpOptions['tls'] {
  const files = o['tls-cert'] !== undefined || o['tls-key'] !== undefined || o['tls-ca'] !== undefined;
  if (files && o.tls) throw new VdbError(ErrorCode.INVALID_ARGUMENT, '--tls generates the certificates; --tls-cert, --tls-key and --tls-ca give them: not both');
  if (files) {
    const f = (k: string) => need(o[k], `--${k}`);
    return { files: { cert: f('tls-cert'), key: f('tls-key'), ca: f('tls-ca') }, verifyClients: o['tls-verify-clients'] === true };
  }
  if (o['tls-verify-clients'] && !o.tls) throw new VdbError(ErrorCode.INVALID_ARGUMENT, '--tls-verify-clients needs --tls');
  return o.tls ? { generate: true, verifyClients: o['tls-verify-clients'] === true } : undefined;
}

/** A shard process's capacity limits (cluster/capacity.ts), on `vdb shard` and `vdb up`. */
const LIMIT_FLAGS = { 'max-index-mb': { type: 'string' }, 'max-points': { type: 'string' }, 'min-free-disk-mb': { type: 'string' } } as const;
const LIMIT_USAGE = '[--max-index-mb MB] [--max-points N] [--min-free-disk-mb MB]';
const LIMIT_HELP = `Capacity per shard replica: coordinators refuse upserts (RESOURCE_EXHAUSTED) that would take
a shard past them. --max-index-mb: Wasm memory of a shard's index (default ${DEFAULT_LIMITS.maxIndexMb},
the Wasm limit of 4095 MiB less 256); --max-points: points per shard (default none);
--min-free-disk-mb: free disk of the data directory below which no upsert is taken (default ${DEFAULT_LIMITS.minFreeDiskMb}).`;

/** The limits given on the command line, checked; absent ones take their defaults. */
function limitOptions(o: Record<string, string | boolean | undefined>): ShardLimits {
  const num = (flag: string) => {
    const v = o[flag];
    if (v === undefined) return undefined;
    if (typeof v !== 'string' || !/^\d+$/.test(v)) throw new VdbError(ErrorCode.INVALID_ARGUMENT, `--${flag} must be a non-negative integer, got ${JSON.stringify(v)}`);
    return Number(v);
  };
  const limits = { maxIndexMb: num('max-index-mb'), maxPoints: num('max-points'), minFreeDiskMb: num('min-free-disk-mb') };
  limitsFrom(limits);
  return limits;
}

export const CLUSTER_COMMANDS = {
  up: {
    summary: 'start a local cluster: its own nats-server, N shard processes, a coordinator',
    help: `Usage: vdb up [--shards N] [--replicas R] [--data DIR] [--nats URL] [--prefix P] [--demo]
  [--tls [--tls-verify-clients] | --tls-cert FILE --tls-key FILE --tls-ca FILE] ${AUTH_USAGE}
  [--metrics-host H] ${LIMIT_USAGE} [--log-level L]
Without --nats, the nats-server it starts requires credentials: it makes them in
DIR/credentials (0600 files: admin.json, writer.json, reader.json for clients,
internal.json for its processes; add users with vdb user add). --tls generates a CA
and certificates in DIR/tls (openssl) and serves TLS; --tls-verify-clients also
requires client certificates; or --tls-cert/--tls-key/--tls-ca give the server's own.
With --nats, --creds and the --tls-* files are what every process connects with.
--metrics-host goes to every process: ${METRICS_HELP}
Starts nats-server with JetStream in DIR/nats (unless --nats), N shard processes
and a coordinator, and supervises them: a process that dies is restarted with
the same name and data directory (back-off 0.5 s doubling to 30 s). Writes
DIR/cluster.json (pids, restart counts, metrics URLs); Ctrl-C or SIGTERM stops
everything. --replicas R (at most N, default 1) is the replica count of the demo
collection. --demo also creates a collection "demo", imports sample data and
runs a search. The capacity flags go to every shard process:
${LIMIT_HELP}
Each process's log is appended to DIR/logs/<name>.log; --log-level goes to every process.
${LOG_HELP}`,
    async run(argv: string[]) {
      const { values: o } = args(argv, {
        ...COMMON, ...LIMIT_FLAGS, ...METRICS_FLAGS, ...LOG_FLAGS, tls: { type: 'boolean' }, 'tls-verify-clients': { type: 'boolean' }, shards: { type: 'string', default: '2' }, replicas: { type: 'string', default: '1' }, data: { type: 'string', default: './data' }, demo: { type: 'boolean' },
      });
      const level = logLevel(o['log-level']);
      setLogger(createLogger({ role: 'up', name: 'vdb-up', level }));
      const shards = Number(o.shards);
      if (!Number.isInteger(shards) || shards < 1 || shards > 64) throw new VdbError(ErrorCode.INVALID_ARGUMENT, '--shards must be 1 to 64');
      const replicas = Number(o.replicas);
      if (!Number.isInteger(replicas) || replicas < 1) throw new VdbError(ErrorCode.INVALID_ARGUMENT, `--replicas must be an integer of at least 1, got ${JSON.stringify(o.replicas)}`);
      if (o.nats && (o.tls || o['tls-verify-clients'])) {
        throw new VdbError(ErrorCode.INVALID_ARGUMENT, "--tls and --tls-verify-clients configure the nats-server vdb up starts; with --nats give that server's CA and a client certificate as --tls-ca, --tls-cert, --tls-key");
      }
      if (!o.nats && o.creds !== undefined) throw new VdbError(ErrorCode.INVALID_ARGUMENT, '--creds goes with --nats: without it vdb up makes its own credentials in DIR/credentials');
      const cluster = await up({ shards, replicas, data: o.data as string, nats: o.nats as string | undefined, auth: o.nats ? auth(o) : undefined, tls: o.nats ? undefined : tlsOption(o), prefix: o.prefix as string | undefined, limits: limitOptions(o), metricsHost: o['metrics-host'] as string | undefined, logLevel: level, log: (line) => logger().info(line) });
      console.log(`NATS URL: ${cluster.url}${cluster.tls ? ` (TLS: trust ${cluster.tls.ca}; client certificate ${cluster.tls.clientCert ?? 'none'})` : ''}`);
      if (cluster.credentials) console.log(`credentials (0600 files, pass one as --creds FILE or VDB_CREDS): ${Object.entries(cluster.credentials.files).map(([u, f]) => `${u} ${f}`).join(', ')}`);
      if (o.demo) await withClient(cluster.url, o.prefix as string | undefined, cluster.clientAuth('admin') ?? auth(o), (c) => runDemo(c, shards, replicas));
      // Listening before saying so: a SIGTERM right after the line stops cleanly.
      const stopped = untilSignal(cluster.stop);
      console.log('serving; Ctrl-C stops the cluster');
      await stopped;
    },
  },
  shard: {
    summary: 'run a shard process (serves the shards assigned to it)',
    help: `Usage: vdb shard --nats URL --name NAME --data DIR [--prefix P] ${AUTH_USAGE} [--metrics-host H] ${LIMIT_USAGE} [--log-level L]
${AUTH_HELP}
${LOG_HELP}
${METRICS_HELP}
${LIMIT_HELP}`,
    async run(argv: string[]) {
      const { values: o } = args(argv, { ...COMMON, ...LIMIT_FLAGS, ...METRICS_FLAGS, ...LOG_FLAGS, data: { type: 'string' } });
      setLogger(createLogger({ role: 'shard', name: need(o.name, '--name'), level: logLevel(o['log-level']) }));
      logCrashes();
      const s = await runShard({ metricsHost: o['metrics-host'] as string | undefined, nats: need(o.nats, '--nats'), auth: auth(o), name: need(o.name, '--name'), data: need(o.data, '--data'), prefix: o.prefix as string | undefined, ...limitOptions(o) });
      logger().info(`shard process started: data ${o.data as string}`);
      await untilSignal(s.stop);
    },
  },
  coordinator: {
    summary: 'run a coordinator (any number, in one queue group)',
    help: `Usage: vdb coordinator --nats URL [--name NAME] [--prefix P] ${AUTH_USAGE} [--metrics-host H] [--deadline-ms 2000]
  [--grace-ms 30000] [--compact-after 10000] [--split-at 0] [--merge-below N] [--rebalance on|off]
  [--hot-searches 500] [--hot-window-ms 60000] [--max-load-replicas 1] [--split-searches 1000]
  [--version-window-ms 30000] [--log-level L]
--grace-ms: how long a replica may be gone before the balancer replaces it;
--rebalance: move replicas between shard processes to even out their load, weighing points, index memory
  and searches (on by default; drains move regardless);
--hot-searches: searches per second per replica that, kept up for --hot-window-ms, give a shard one more
  replica (up to --max-load-replicas more than its collection asks for); below a quarter of it for the
  window, it loses one again (0: off);
--compact-after: log entries every replica has applied before the log is compacted below them;
--split-at: points that make a shard split in two (0: never);
--split-searches: searches per second per replica that, kept up for --hot-window-ms by a shard with all
  its load replicas and reached by under 75% of its collection's searches (routed: spatial with nprobe,
  semantic with a label filter), split it in two (0: never); a shard every search reaches never splits for load;
--merge-below: points under which the newest shard of a collection and the one it was split from,
  both cold for --hot-window-ms, merge back into one (default a quarter of --split-at; 0: never;
  less than half of --split-at);
--version-window-ms: a write to a spatial or semantic collection is acknowledged only if stored
  within this long of taking its version; version tombstones live about twice it (at least 1000;
  give every coordinator of a cluster the same value).
${AUTH_HELP}
${LOG_HELP}
${METRICS_HELP}`,
    async run(argv: string[]) {
      const { values: o } = args(argv, { ...COMMON, ...METRICS_FLAGS, ...LOG_FLAGS, 'deadline-ms': { type: 'string' }, 'grace-ms': { type: 'string' }, 'compact-after': { type: 'string' }, 'split-at': { type: 'string' }, 'merge-below': { type: 'string' }, rebalance: { type: 'string', default: 'on' }, 'hot-searches': { type: 'string' }, 'hot-window-ms': { type: 'string' }, 'max-load-replicas': { type: 'string' }, 'split-searches': { type: 'string' }, 'version-window-ms': { type: 'string' } });
      if (o.rebalance !== 'on' && o.rebalance !== 'off') throw new VdbError(ErrorCode.INVALID_ARGUMENT, `--rebalance: expected on or off, got ${o.rebalance as string}`);
      const num = (k: string) => (o[k] === undefined ? undefined : Number(o[k]));
      const name = (o.name as string | undefined) ?? `coordinator-${process.pid}`;
      setLogger(createLogger({ role: 'coordinator', name, level: logLevel(o['log-level']) }));
      logCrashes();
      const c = await runCoordinator({
        nats: need(o.nats, '--nats'), auth: auth(o), name, prefix: o.prefix as string | undefined,
        metricsHost: o['metrics-host'] as string | undefined, deadlineMs: num('deadline-ms'), graceMs: num('grace-ms'), compactAfter: num('compact-after'), splitAt: num('split-at'), mergeBelow: num('merge-below'), rebalance: o.rebalance === 'on', hotSearches: num('hot-searches'), hotWindowMs: num('hot-window-ms'), maxLoadReplicas: num('max-load-replicas'), splitSearches: num('split-searches'), versionWindowMs: num('version-window-ms'),
      });
      logger().info('coordinator started');
      await untilSignal(c.stop);
    },
  },
  create: {
    summary: 'create a collection in a cluster',
    help: `Usage: vdb create --nats URL ${AUTH_USAGE} --collection NAME --dim D [--metric l2|ip|cosine]
  [--partitioner hash|spatial|semantic] [--shards N] [--field F] [--sample FILE] [--replicas R]
  [--quantization sq8 [--rescore N]]
A spatial collection takes its kd splits from a sample: up to 10,000 rows of FILE (any import format).
--quantization sq8 keeps 8-bit codes in the index and re-ranks the best N (default: 4·k, at most ef) by the f32 vectors.
${AUTH_HELP}`,
    async run(argv: string[]) {
      const { values: o } = args(argv, {
        ...COMMON, collection: { type: 'string' }, dim: { type: 'string' }, metric: { type: 'string', default: 'l2' },
        partitioner: { type: 'string', default: 'hash' }, shards: { type: 'string', default: '1' }, field: { type: 'string' },
        sample: { type: 'string' }, replicas: { type: 'string', default: '1' },
        quantization: { type: 'string' }, rescore: { type: 'string' },
      });
      const quantization = o.quantization === undefined ? undefined
        : { kind: o.quantization as 'sq8', ...(o.rescore === undefined ? {} : { rescore: Number(o.rescore) }) };
      let sample: Float32Array[] | undefined;
      if (o.sample) {
        const r = await openReader(o.sample as string);
        sample = (r.next(10_000)?.points ?? []).map((p) => Float32Array.from(p.vector as ArrayLike<number>));
      }
      const reply = await withClient(need(o.nats, '--nats'), o.prefix as string | undefined, auth(o), (c) => c.createCollection({
        name: need(o.collection, '--collection'), dim: Number(o.dim), metric: o.metric as Metric, replicas: Number(o.replicas),
        partitioner: { kind: o.partitioner as 'hash' | 'spatial' | 'semantic', shards: Number(o.shards), field: o.field as string | undefined, sample },
        ...(quantization ? { quantization } : {}),
      }));
      console.log(JSON.stringify(reply, null, 2));
    },
  },
  status: {
    summary: 'members, shards, log sequences and counts of a cluster',
    help: `Usage: vdb status --nats URL [--prefix P] ${AUTH_USAGE} [--json]
Prints members, each shard's replicas with applied sequence and lag, and the balancer's work.
${AUTH_HELP}`,
    async run(argv: string[]) {
      const { values: o } = args(argv, { ...COMMON, json: { type: 'boolean' } });
      const st = await withClient(need(o.nats, '--nats'), o.prefix as string | undefined, auth(o), (c) => c.status());
      console.log(o.json ? JSON.stringify(st, null, 2) : formatStatus(st as unknown as Status));
    },
  },
  drain: {
    summary: 'move every replica off a shard process (admin), or stop that with --cancel',
    help: `Usage: vdb drain --nats URL [--prefix P] ${AUTH_USAGE} [--cancel] PROCESS
The balancer moves the process's replicas to other live shard processes, one
move per shard at a time; \`vdb status\` shows what is left. Once it holds none,
the process can be stopped with nothing lost. It stays draining (takes no new
replicas) until --cancel.
${AUTH_HELP}`,
    async run(argv: string[]) {
      const { values: o, positionals } = args(argv, { ...COMMON, cancel: { type: 'boolean' } });
      const proc = positionals[0];
      if (!proc) throw new VdbError(ErrorCode.INVALID_ARGUMENT, 'give the PROCESS to drain');
      const list = await withClient(need(o.nats, '--nats'), o.prefix as string | undefined, auth(o), (c) => c.drain(proc, o.cancel === true));
      console.log(list.length ? `draining: ${list.join(', ')}` : 'draining: none');
    },
  },
  deploy: DEPLOY_COMMAND,
};

/** `vdb import --nats URL --collection NAME FILE`: upserts through the coordinators. */
export async function clusterImport(argv: string[]): Promise<void> {
  const { values: o, positionals } = args(argv, { ...COMMON, collection: { type: 'string' }, batch: { type: 'string', default: '500' }, format: { type: 'string' } });
  const file = positionals[0];
  if (!file) throw new VdbError(ErrorCode.INVALID_ARGUMENT, 'give the FILE to import');
  const reader = await openReader(file);
  const name = need(o.collection, '--collection');
  await withClient(need(o.nats, '--nats'), o.prefix as string | undefined, auth(o), async (c) => {
    const bar = new RateProgress('import', 'points');
    let done = 0;
    for (let b = reader.next(Number(o.batch)); b; b = reader.next(Number(o.batch))) {
      await c.upsert(name, b.points);
      done += b.points.length;
      bar.update(done, reader.count, reader.fraction());
    }
    bar.update(done, reader.count ?? done, 1, true);
  });
}

/** `vdb search --nats URL --collection NAME --vector JSON [...]`. */
export async function clusterSearch(argv: string[]): Promise<void> {
  const { values: o } = args(argv, {
    ...COMMON, collection: { type: 'string' }, vector: { type: 'string' }, k: { type: 'string', default: '10' }, ef: { type: 'string' },
    exact: { type: 'boolean' }, filter: { type: 'string' }, 'with-payload': { type: 'boolean' }, nprobe: { type: 'string' },
  });
  const vector = JSON.parse(need(o.vector, '--vector')) as number[];
  const reply = await withClient(need(o.nats, '--nats'), o.prefix as string | undefined, auth(o), (c) => c.search(need(o.collection, '--collection'), vector, {
    k: Number(o.k), ef: o.ef === undefined ? undefined : Number(o.ef), exact: o.exact as boolean | undefined,
    filter: o.filter === undefined ? undefined : JSON.parse(o.filter as string), withPayload: o['with-payload'] as boolean | undefined,
    nprobe: o.nprobe === undefined ? undefined : Number(o.nprobe),
  }));
  console.log(JSON.stringify(reply, null, 2));
}

interface Status {
  members: { name: string; role: string; pid: number; heartbeat: number }[];
  collections: { name: string; shards: { shard: number; logSeq: number | null; firstSeq: number | null; count: number | null;
    replicas: { member: string; live: boolean; applied: number | null; lag: number | null; skipped?: number | null; failed?: string }[];
    move?: { from: string; to: string; since: number } }[];
    merge?: { shard: number; from: number; sealedAt?: number; copied?: number; done?: { replicas: string[] } } }[];
  balancer: { holder: string; work: string[]; done: string[] } | null;
  draining?: string[];
}

/** `vdb status` as text: one line per member, per shard and per replica. */
export function formatStatus(st: Status): string {
  const out = ['members:'];
  for (const m of st.members) out.push(`  ${m.role.padEnd(11)} ${m.name.padEnd(16)} pid ${m.pid}, heartbeat ${Date.now() - m.heartbeat} ms ago`);
  for (const c of st.collections) {
    out.push(`collection ${c.name}:`);
    for (const sh of c.shards) {
      out.push(`  shard ${sh.shard}: ${sh.count ?? '?'} points, log ${sh.firstSeq ?? '?'}..${sh.logSeq ?? '?'}`);
      for (const r of sh.replicas) {
        const notes = `${r.skipped ? `  skipped ${r.skipped}` : ''}${r.failed ? `  FAILED: ${r.failed}` : ''}`;
        out.push(`    ${r.member.padEnd(16)} ${r.live ? 'live' : 'GONE'}  applied ${r.applied ?? '?'}  lag ${r.lag ?? '?'}${notes}`);
      }
      if (sh.move) out.push(`    moving ${sh.move.from} → ${sh.move.to} for ${Math.round((Date.now() - sh.move.since) / 1000)} s`);
    }
    const mg = c.merge;
    if (mg) {
      const step = mg.done ? `done, ${mg.done.replicas.join(', ')} still serving shard ${mg.from} for searches routed before` : mg.copied !== undefined ? `copied, shard ${mg.shard} applying up to ${mg.copied}` : mg.sealedAt !== undefined ? `sealed at ${mg.sealedAt}, copying` : 'writes held, sealing';
      out.push(`  merging shard ${mg.from} into shard ${mg.shard}: ${step}`);
    }
  }
  for (const d of st.draining ?? []) {
    const left = st.collections.flatMap((c) => c.shards.filter((sh) => sh.replicas.some((r) => r.member === d)).map((sh) => `${c.name}/${sh.shard}`));
    out.push(`draining ${d}: ${left.length ? `${left.length} replicas left (${left.join(', ')})` : 'holds no replicas: it can be stopped'}`);
  }
  out.push(st.balancer ? `balancer: ${st.balancer.holder}` : 'balancer: none holds the lease');
  for (const w of st.balancer?.work ?? []) out.push(`  waiting: ${w}`);
  for (const d of (st.balancer?.done ?? []).slice(-5)) out.push(`  done: ${d}`);
  return out.join('\n');
}
