// The files of a deployment over several machines (docs/deploy.md): per host
// a nats-server config (JetStream, one NATS cluster with routes to every other
// host, the accounts of cluster/auth.ts), the processes' credentials and the
// systemd units with their exact command lines; for the operator the client
// users' credentials and an inventory. Everything here is text from options,
// so a unit test can read it; writeDeployment is the only function that
// touches the disk.

import { randomBytes } from 'node:crypto';
import { chmodSync, copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { join, posix, resolve } from 'node:path';
import { ErrorCode, VdbError } from '../ts/errors.js';
import { addUser, openCredentials, writeSecret } from './credentials.js';
import type { Role } from './auth.js';
import { generateRouteTls, generateTls } from './tls.js';

export interface DeployHost {
  /** Short name: the NATS server name and the prefix of its processes' names. */
  name: string;
  /** The address (IP or DNS name) the other hosts and the clients reach it at; its servers listen on it. */
  address: string;
}

/** Where things are on every host: the same paths on all of them. */
export interface DeployPaths {
  /** Config and credentials (nats.conf, accounts.conf, internal.json, tls/). */
  etc: string;
  /** Data: the JetStream store (nats/) and one directory per shard process (shard-N/). */
  data: string;
  node: string;
  /** The vdb command's script: dist/cluster/cli.js of the installed package. */
  cli: string;
  natsServer: string;
}

export interface DeployOptions {
  hosts: DeployHost[];
  shardsPerHost: number;
  coordinatorsPerHost: number;
  prefix: string;
  tls: boolean;
  paths: DeployPaths;
  /** The system user the units run as. */
  user: string;
  ports: { client: number; cluster: number; monitor: number };
}

export const DEFAULT_PATHS: DeployPaths = { etc: '/etc/vdb', data: '/var/lib/vdb', node: '/usr/bin/node', cli: '/opt/vdb/dist/cluster/cli.js', natsServer: '/usr/sbin/nats-server' };
export const DEFAULT_PORTS = { client: 4222, cluster: 6222, monitor: 8222 } as const;
/** The NATS cluster's name in every host's config. */
export const NATS_CLUSTER = 'vdb';

const HOST_NAME = /^[a-z0-9][a-z0-9-]{0,31}$/;
const DNS_NAME = /^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;
/** Paths go into unit files and configs unquoted: nothing systemd or nats-server would read as syntax. */
const SAFE_PATH = /^\/[A-Za-z0-9._/+-]*$/;

const bad = (msg: string) => new VdbError(ErrorCode.INVALID_ARGUMENT, msg);

/** `a=10.0.0.1,b=10.0.0.2,c=10.0.0.3` → the hosts, checked: names and addresses unique. */
export function parseHosts(spec: string): DeployHost[] {
  const hosts = spec.split(',').map((s) => s.trim()).filter((s) => s !== '').map((s) => {
    const eq = s.indexOf('=');
    if (eq < 0) throw bad(`--hosts: each host is NAME=ADDRESS, got ${JSON.stringify(s)}`);
    return { name: s.slice(0, eq), address: s.slice(eq + 1) };
  });
  checkHosts(hosts);
  return hosts;
}

function checkHosts(hosts: DeployHost[]): void {
  // Raft needs a majority: two servers stop when either does, so they are worse than one.
  if (hosts.length === 2 || hosts.length < 1 || hosts.length > 32) throw bad(`--hosts: give 1 host, or 3 to 32 (JetStream needs a majority of its servers up: 2 stop with either), got ${hosts.length}`);
  for (const h of hosts) {
    if (!HOST_NAME.test(h.name)) throw bad(`--hosts: a host name is 1..32 of a-z 0-9 -, got ${JSON.stringify(h.name)}`);
    if (isIP(h.address) === 0 && !DNS_NAME.test(h.address)) throw bad(`--hosts: ${h.name}'s address must be an IP address or a DNS name, got ${JSON.stringify(h.address)}`);
    if (['0.0.0.0', '::'].includes(h.address)) throw bad(`--hosts: ${h.name} needs the address the other hosts reach it at, not ${h.address}`);
  }
  for (const k of ['name', 'address'] as const) {
    const seen = new Set<string>();
    for (const h of hosts) {
      if (seen.has(h[k])) throw bad(`--hosts: ${k} ${h[k]} appears twice`);
      seen.add(h[k]);
    }
  }
}

/** Checks the options a command line gave. */
export function checkOptions(o: DeployOptions): void {
  checkHosts(o.hosts);
  for (const [k, v] of [['shards-per-host', o.shardsPerHost], ['coordinators-per-host', o.coordinatorsPerHost]] as const) {
    if (!Number.isInteger(v) || v < 0 || v > 64) throw bad(`--${k} must be an integer in 0..64, got ${v}`);
  }
  if (o.coordinatorsPerHost === 0 && o.shardsPerHost === 0) throw bad('a deployment with neither shard processes nor coordinators does nothing');
  if (!/^[A-Za-z0-9_-]{1,32}$/.test(o.prefix)) throw bad(`--prefix must be 1..32 of A-Z a-z 0-9 _ -, got ${JSON.stringify(o.prefix)}`);
  if (!/^[a-z_][a-z0-9_-]{0,31}$/.test(o.user)) throw bad(`--user must be a system user name, got ${JSON.stringify(o.user)}`);
  for (const [k, p] of Object.entries(o.paths)) {
    if (!SAFE_PATH.test(p)) throw bad(`the ${k} path must be absolute, of A-Z a-z 0-9 . _ / + -, got ${JSON.stringify(p)}`);
  }
  const ports = Object.values(o.ports);
  if (ports.some((p) => !Number.isInteger(p) || p < 1 || p > 65535) || new Set(ports).size !== ports.length) throw bad(`ports must be three different integers in 1..65535, got ${ports.join(', ')}`);
}

const q = (s: string): string => JSON.stringify(s);
/** host:port as a URL or a listen address writes it (IPv6 in brackets). */
const hostPort = (address: string, port: number) => `${isIP(address) === 6 ? `[${address}]` : address}:${port}`;

/** The client URLs of all the servers, `first` leading: what every process and client gets as --nats. */
export function natsUrls(o: DeployOptions, first?: string): string {
  const hosts = [...o.hosts.filter((h) => h.name === first), ...o.hosts.filter((h) => h.name !== first)];
  return hosts.map((h) => `nats://${hostPort(h.address, o.ports.client)}`).join(',');
}

// Instance first, host last: a collection's replicas go to consecutive shard
// processes in name order (collections-admin.ts planCollection), and so the
// consecutive ones are on different hosts.
export const shardName = (host: string, i: number | string) => `shard-${i}-${host}`;
export const coordinatorName = (host: string, i: number | string) => `coordinator-${i}-${host}`;

/**
 * One host's nats-server config. Routes authenticate with a shared secret
 * (`routePassword`), which makes this file a secret (0600); the accounts file
 * it includes holds only public keys.
 */
export function natsConfig(o: DeployOptions, host: DeployHost, routePassword: string): string {
  const etc = o.paths.etc;
  const lines = [
    `# Written by vdb deploy (cluster/deploy.ts) for host ${host.name}. Holds the route secret: keep it 0600.`,
    `server_name: ${q(host.name)}`,
    `listen: ${q(hostPort(host.address, o.ports.client))}`,
    // Monitoring is unauthenticated: loopback only (docs/deploy.md).
    `http: ${q(`127.0.0.1:${o.ports.monitor}`)}`,
    'max_payload: 8388608',
    'jetstream {',
    `  store_dir: ${q(posix.join(o.paths.data, 'nats'))}`,
    '}',
    `include ${q('accounts.conf')}`,
  ];
  if (o.tls) {
    lines.push('tls {', `  cert_file: ${q(posix.join(etc, 'tls', 'server.pem'))}`, `  key_file: ${q(posix.join(etc, 'tls', 'server.key'))}`, `  ca_file: ${q(posix.join(etc, 'tls', 'ca.pem'))}`, '  timeout: 5', '}');
  }
  if (o.hosts.length > 1) {
    const others = o.hosts.filter((h) => h.name !== host.name);
    lines.push(
      'cluster {',
      `  name: ${q(NATS_CLUSTER)}`,
      `  listen: ${q(hostPort(host.address, o.ports.cluster))}`,
      `  authorization { user: "route", password: ${q(routePassword)} }`,
      ...(o.tls ? ['  tls {', `    cert_file: ${q(posix.join(etc, 'tls', 'route.pem'))}`, `    key_file: ${q(posix.join(etc, 'tls', 'route.key'))}`, `    ca_file: ${q(posix.join(etc, 'tls', 'ca.pem'))}`, '    timeout: 5', '  }'] : []),
      `  routes: [${others.map((h) => q(`nats-route://route:${routePassword}@${hostPort(h.address, o.ports.cluster)}`)).join(', ')}]`,
      '}',
    );
  }
  return lines.join('\n') + '\n';
}

/** The connection flags of a process on `host`: its own server first, the credentials by path. */
function connectArgs(o: DeployOptions, host: DeployHost): string[] {
  return ['--nats', natsUrls(o, host.name), '--prefix', o.prefix, '--creds', posix.join(o.paths.etc, 'internal.json'), ...(o.tls ? ['--tls-ca', posix.join(o.paths.etc, 'tls', 'ca.pem')] : [])];
}

/** The command line of a shard process (`%i`: the instance number of the template unit). */
export function shardCommand(o: DeployOptions, host: DeployHost, instance = '%i'): string[] {
  return [o.paths.node, o.paths.cli, 'shard', ...connectArgs(o, host), '--name', shardName(host.name, instance), '--data', posix.join(o.paths.data, `shard-${instance}`)];
}

export function coordinatorCommand(o: DeployOptions, host: DeployHost, instance = '%i'): string[] {
  return [o.paths.node, o.paths.cli, 'coordinator', ...connectArgs(o, host), '--name', coordinatorName(host.name, instance)];
}

export function natsCommand(o: DeployOptions): string[] {
  return [o.paths.natsServer, '-c', posix.join(o.paths.etc, 'nats.conf')];
}

function unit(description: string, after: string[], service: string[]): string {
  return [
    '# Written by vdb deploy (cluster/deploy.ts).',
    '[Unit]',
    `Description=${description}`,
    `After=${['network-online.target', ...after].join(' ')}`,
    'Wants=network-online.target',
    '',
    '[Service]',
    ...service,
    '',
    '[Install]',
    'WantedBy=multi-user.target',
    '',
  ].join('\n');
}

/** The unit files of one host by file name. */
export function units(o: DeployOptions, host: DeployHost): Record<string, string> {
  const common = [`User=${o.user}`, `Group=${o.user}`, 'Restart=always', 'RestartSec=2', 'TimeoutStopSec=30', 'NoNewPrivileges=true', 'PrivateTmp=true'];
  return {
    'vdb-nats.service': unit(`NATS server of vdb (host ${host.name})`, [], [
      'Type=simple', `ExecStart=${natsCommand(o).join(' ')}`, 'ExecReload=/bin/kill -HUP $MAINPID', 'LimitNOFILE=65536', ...common,
    ]),
    'vdb-shard@.service': unit(`vdb shard process ${shardName(host.name, '%i')}`, ['vdb-nats.service'], [
      'Type=simple', `ExecStart=${shardCommand(o, host).join(' ')}`, ...common,
    ]),
    'vdb-coordinator@.service': unit(`vdb coordinator ${coordinatorName(host.name, '%i')}`, ['vdb-nats.service'], [
      'Type=simple', `ExecStart=${coordinatorCommand(o, host).join(' ')}`, ...common,
    ]),
  };
}

/** The units to enable on a host, NATS first. */
export function unitInstances(o: DeployOptions): { nats: string; processes: string[] } {
  const n = (count: number) => Array.from({ length: count }, (_, i) => i);
  return {
    nats: 'vdb-nats.service',
    processes: [...n(o.shardsPerHost).map((i) => `vdb-shard@${i}.service`), ...n(o.coordinatorsPerHost).map((i) => `vdb-coordinator@${i}.service`)],
  };
}

/** DIR/cluster.json of a deployment: where everything runs; paths, never secrets. */
export interface DeployInventory {
  nats: string;
  prefix: string;
  /** The replica count JetStream gives the logs and the metadata buckets: min(3, servers). */
  jetstreamReplicas: number;
  /** Client users' credentials files, relative to the output directory. */
  credentials: Record<string, string>;
  tls?: { ca: string };
  hosts: {
    name: string;
    address: string;
    ports: { client: number; cluster: number; monitor: number };
    enable: string[];
    processes: { role: 'nats-server' | 'shard' | 'coordinator'; name: string; unit: string; data?: string }[];
  }[];
}

export function inventory(o: DeployOptions, clientUsers: string[]): DeployInventory {
  const { nats, processes } = unitInstances(o);
  return {
    nats: natsUrls(o),
    prefix: o.prefix,
    jetstreamReplicas: Math.min(3, o.hosts.length),
    credentials: Object.fromEntries(clientUsers.map((u) => [u, posix.join('credentials', `${u}.json`)])),
    ...(o.tls ? { tls: { ca: posix.join('tls', 'ca.pem') } } : {}),
    hosts: o.hosts.map((h) => ({
      name: h.name,
      address: h.address,
      ports: { ...o.ports },
      enable: [nats, ...processes],
      processes: [
        { role: 'nats-server' as const, name: h.name, unit: nats, data: posix.join(o.paths.data, 'nats') },
        ...Array.from({ length: o.shardsPerHost }, (_, i) => ({ role: 'shard' as const, name: shardName(h.name, i), unit: `vdb-shard@${i}.service`, data: posix.join(o.paths.data, `shard-${i}`) })),
        ...Array.from({ length: o.coordinatorsPerHost }, (_, i) => ({ role: 'coordinator' as const, name: coordinatorName(h.name, i), unit: `vdb-coordinator@${i}.service` })),
      ],
    })),
  };
}

/** What writeDeployment wrote: the per-host directories and the inventory file. */
export interface Written {
  hosts: Record<string, { etc: string; systemd: string }>;
  inventory: string;
  credentials: Record<string, string>;
  /** With --tls: the CA clients trust. */
  tlsCa?: string;
}

/** The route secret of the deployment: made once, kept, so writing again changes no running host's routes. */
function routePassword(dir: string): string {
  const file = join(dir, 'route.json');
  if (existsSync(file)) return (JSON.parse(readFileSync(file, 'utf8')) as { password: string }).password;
  const password = randomBytes(24).toString('hex');
  writeSecret(file, JSON.stringify({ password }) + '\n');
  return password;
}

/**
 * Writes `out/`: `credentials/` (every user's 0600 file, users.json, the route
 * secret; kept when present, so running it again keeps the keys), `tls/` with
 * --tls, `<host>/etc/` (copy to the etc path) and `<host>/systemd/` (copy to
 * /etc/systemd/system) per host, and `cluster.json`.
 */
export function writeDeployment(o: DeployOptions, outDir: string): Written {
  checkOptions(o);
  const out = resolve(outDir);
  mkdirSync(out, { recursive: true, mode: 0o700 });
  const creds = openCredentials(join(out, 'credentials'), o.prefix);
  const password = routePassword(creds.dir);
  // One server certificate and one route certificate, valid for every host's name and address.
  const names = o.hosts.flatMap((h) => [h.name, h.address]);
  const tls = o.tls ? { ...generateTls(join(out, 'tls'), names), route: generateRouteTls(join(out, 'tls'), names) } : undefined;
  const written: Written = { hosts: {}, inventory: join(out, 'cluster.json'), credentials: creds.files, ...(tls ? { tlsCa: tls.ca } : {}) };
  for (const h of o.hosts) {
    const etc = join(out, h.name, 'etc');
    const systemd = join(out, h.name, 'systemd');
    mkdirSync(etc, { recursive: true, mode: 0o700 });
    mkdirSync(systemd, { recursive: true });
    writeSecret(join(etc, 'nats.conf'), natsConfig(o, h, password));
    writeFileSync(join(etc, 'accounts.conf'), creds.accounts, { mode: 0o644 });
    copyFileSync(creds.internal, join(etc, 'internal.json'));
    chmodSync(join(etc, 'internal.json'), 0o600);
    if (tls) {
      mkdirSync(join(etc, 'tls'), { recursive: true, mode: 0o700 });
      for (const [src, name, mode] of [[tls.ca, 'ca.pem', 0o644], [tls.cert, 'server.pem', 0o644], [tls.key, 'server.key', 0o600], [tls.route.cert, 'route.pem', 0o644], [tls.route.key, 'route.key', 0o600]] as const) {
        copyFileSync(src, join(etc, 'tls', name));
        chmodSync(join(etc, 'tls', name), mode);
      }
    }
    for (const [name, text] of Object.entries(units(o, h))) writeFileSync(join(systemd, name), text, { mode: 0o644 });
    written.hosts[h.name] = { etc, systemd };
  }
  writeFileSync(written.inventory, JSON.stringify(inventory(o, Object.keys(creds.files)), null, 2) + '\n', { mode: 0o644 });
  return written;
}

/**
 * Adds a client user to the deployment written in `outDir` (or gives one of
 * that name a new key): its 0600 credentials file, and every host's
 * accounts.conf rewritten. Each host takes it once its copy is there and its
 * nats-server reloads (`systemctl reload vdb-nats`): no connection drops.
 */
export function addDeployUser(outDir: string, u: { name: string; role: Role; collections?: string[] }): { creds: string; accounts: string[] } {
  const out = resolve(outDir);
  const file = join(out, 'cluster.json');
  if (!existsSync(file)) throw bad(`${file} does not exist: --out names the directory vdb deploy wrote`);
  const inv = JSON.parse(readFileSync(file, 'utf8')) as DeployInventory;
  const store = addUser(join(out, 'credentials'), inv.prefix, u);
  const accounts = inv.hosts.map((h) => join(out, h.name, 'etc', 'accounts.conf'));
  for (const f of accounts) writeFileSync(f, store.accounts, { mode: 0o644 });
  return { creds: store.files[u.name], accounts };
}
