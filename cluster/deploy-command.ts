// `vdb deploy`: the command line of cluster/deploy.ts.

import { parseArgs } from 'node:util';
import type { ParseArgsConfig } from 'node:util';
import { ErrorCode, VdbError } from '../ts/errors.js';
import { DEFAULT_PATHS, DEFAULT_PORTS, addDeployUser, natsUrls, parseHosts, unitInstances, writeDeployment } from './deploy.js';
import type { Role } from './auth.js';
import type { DeployOptions } from './deploy.js';

const count = (v: string, flag: string): number => {
  if (!/^\d+$/.test(v)) throw new VdbError(ErrorCode.INVALID_ARGUMENT, `${flag} must be a non-negative integer, got ${JSON.stringify(v)}`);
  return Number(v);
};

/** parseArgs, with a mistyped flag reported as INVALID_ARGUMENT rather than an internal error. */
function parseFlags<T extends ParseArgsConfig>(config: T): ReturnType<typeof parseArgs<T>> {
  try {
    return parseArgs(config);
  } catch (e) {
    if (String((e as NodeJS.ErrnoException).code).startsWith('ERR_PARSE_ARGS')) throw new VdbError(ErrorCode.INVALID_ARGUMENT, (e as Error).message);
    throw e;
  }
}

export const DEPLOY_COMMAND = {
  summary: 'write the files of a deployment over several hosts (nats-server configs, credentials, systemd units)',
  help: `Usage: vdb deploy --hosts NAME=ADDRESS,... --out DIR [--shards-per-host 1] [--coordinators-per-host 1]
  [--tls] [--prefix vdb] [--user vdb] [--etc /etc/vdb] [--data /var/lib/vdb] [--node /usr/bin/node]
  [--cli /opt/vdb/dist/cluster/cli.js] [--nats-server /usr/sbin/nats-server]
  [--client-port 4222] [--cluster-port 6222] [--monitor-port 8222]
Writes DIR/credentials (0600: internal.json for the processes, admin/writer/reader.json for clients;
kept when present), DIR/NAME/etc (copy to --etc on host NAME: nats.conf, accounts.conf, internal.json,
tls/), DIR/NAME/systemd (copy to /etc/systemd/system: vdb-nats.service, vdb-shard@.service,
vdb-coordinator@.service) and DIR/cluster.json (hosts, processes, units to enable).
1 host, or 3 or more: NATS runs one cluster over them with JetStream replicas min(3, hosts).
--tls makes a CA and one server certificate for every host (openssl); clients trust DIR/tls/ca.pem.
       vdb deploy --out DIR --add-user NAME --role reader|writer|admin [--collections a,b]
adds a client user (or gives one a new key): DIR/credentials/NAME.json (0600) and every host's
DIR/NAME/etc/accounts.conf; copy those to the hosts and run systemctl reload vdb-nats on each.
See docs/deploy.md.`,
  async run(argv: string[]) {
    const { values: o } = parseFlags({
      args: argv,
      options: {
        hosts: { type: 'string' }, out: { type: 'string' }, 'shards-per-host': { type: 'string', default: '1' }, 'coordinators-per-host': { type: 'string', default: '1' },
        tls: { type: 'boolean', default: false }, prefix: { type: 'string', default: 'vdb' }, user: { type: 'string', default: 'vdb' },
        etc: { type: 'string', default: DEFAULT_PATHS.etc }, data: { type: 'string', default: DEFAULT_PATHS.data }, node: { type: 'string', default: DEFAULT_PATHS.node },
        cli: { type: 'string', default: DEFAULT_PATHS.cli }, 'nats-server': { type: 'string', default: DEFAULT_PATHS.natsServer },
        'client-port': { type: 'string', default: String(DEFAULT_PORTS.client) }, 'cluster-port': { type: 'string', default: String(DEFAULT_PORTS.cluster) }, 'monitor-port': { type: 'string', default: String(DEFAULT_PORTS.monitor) },
        'add-user': { type: 'string' }, role: { type: 'string' }, collections: { type: 'string' },
      },
    });
    if (o['add-user'] !== undefined) {
      if (o.out === undefined) throw new VdbError(ErrorCode.INVALID_ARGUMENT, '--add-user needs --out: the directory vdb deploy wrote');
      if (o.hosts !== undefined) throw new VdbError(ErrorCode.INVALID_ARGUMENT, '--add-user takes the hosts from DIR/cluster.json: no --hosts');
      const r = addDeployUser(o.out, { name: o['add-user'], role: (o.role ?? '') as Role, collections: o.collections?.split(',').map((c) => c.trim()) });
      console.log(`credentials of ${o['add-user']}: ${r.creds}`);
      console.log(`copy to each host's etc directory and run systemctl reload vdb-nats there: ${r.accounts.join(', ')}`);
      return;
    }
    if (o.role !== undefined || o.collections !== undefined) throw new VdbError(ErrorCode.INVALID_ARGUMENT, '--role and --collections go with --add-user');
    if (o.hosts === undefined) throw new VdbError(ErrorCode.INVALID_ARGUMENT, '--hosts is required, e.g. --hosts a=10.0.0.1,b=10.0.0.2,c=10.0.0.3');
    if (o.out === undefined) throw new VdbError(ErrorCode.INVALID_ARGUMENT, '--out is required: the directory the files go to');
    const opts: DeployOptions = {
      hosts: parseHosts(o.hosts),
      shardsPerHost: count(o['shards-per-host'], '--shards-per-host'),
      coordinatorsPerHost: count(o['coordinators-per-host'], '--coordinators-per-host'),
      prefix: o.prefix,
      tls: o.tls,
      user: o.user,
      paths: { etc: o.etc, data: o.data, node: o.node, cli: o.cli, natsServer: o['nats-server'] },
      ports: { client: count(o['client-port'], '--client-port'), cluster: count(o['cluster-port'], '--cluster-port'), monitor: count(o['monitor-port'], '--monitor-port') },
    };
    const w = writeDeployment(opts, o.out);
    const { nats, processes } = unitInstances(opts);
    for (const h of opts.hosts) console.log(`${h.name} (${h.address}): ${w.hosts[h.name].etc} -> ${opts.paths.etc}, ${w.hosts[h.name].systemd} -> /etc/systemd/system`);
    console.log(`on every host, first: systemctl enable --now ${nats}`);
    console.log(`then, once all NATS servers run: systemctl enable --now ${processes.join(' ')}`);
    console.log(`clients: --nats ${natsUrls(opts)} --creds one of ${Object.values(w.credentials).join(', ')}${opts.tls ? ` --tls-ca ${w.tlsCa}` : ''}`);
  },
};
