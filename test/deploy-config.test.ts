// The files `vdb deploy` writes (cluster/deploy.ts), read as text: each host's
// nats-server config listens on its own address and routes to exactly the
// others, the units' command lines carry paths and never a secret, the files
// holding secrets are 0600, writing again keeps the keys, and nats-server
// itself accepts every generated config (`nats-server -t`).

import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { publishAllow } from '../cluster/auth.js';
import { planCollection } from '../cluster/collections-admin.js';
import { DEFAULT_PATHS, DEFAULT_PORTS, addDeployUser, checkOptions, inventory, natsConfig, natsUrls, parseHosts, shardCommand, units, writeDeployment } from '../cluster/deploy.js';
import type { DeployHost, DeployOptions } from '../cluster/deploy.js';
import { DEPLOY_COMMAND } from '../cluster/deploy-command.js';
import { findNatsServer } from '../cluster/nats-server.js';
import { ErrorCode, VdbError } from '../ts/errors.js';

const dirs: string[] = [];
const tmp = () => {
  const d = mkdtempSync(join(tmpdir(), 'vdb-deploy-config-'));
  dirs.push(d);
  return d;
};
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const options = (hosts: DeployHost[], more: Partial<DeployOptions> = {}): DeployOptions => ({
  hosts, shardsPerHost: 1, coordinatorsPerHost: 1, prefix: 'vdb', tls: false, user: 'vdb', paths: { ...DEFAULT_PATHS }, ports: { ...DEFAULT_PORTS }, ...more,
});
const THREE = parseHosts('a=10.0.0.1,b=10.0.0.2,c=10.0.0.3');

/** 1 host or 3..6, distinct names and IPv4 addresses. */
const hostSets = fc.oneof(fc.constant(1), fc.integer({ min: 3, max: 6 })).chain((n) => fc.tuple(
  fc.uniqueArray(fc.stringMatching(/^[a-z][a-z0-9-]{0,7}$/), { minLength: n, maxLength: n }),
  fc.uniqueArray(fc.tuple(fc.integer({ min: 1, max: 254 }), fc.integer({ min: 0, max: 255 }), fc.integer({ min: 1, max: 254 })).map(([x, y, z]) => `10.${x}.${y}.${z}`), { minLength: n, maxLength: n }),
)).map(([names, addrs]) => names.map((name, i) => ({ name, address: addrs[i] })));

/** The value of `key: "..."` lines and the route URLs of a config. */
const field = (conf: string, key: string) => [...conf.matchAll(new RegExp(`^\\s*${key}: "([^"]*)"`, 'gm'))].map((m) => m[1]);
const routes = (conf: string) => [...(conf.match(/routes: \[(.*)\]/)?.[1] ?? '').matchAll(/"([^"]+)"/g)].map((m) => m[1]);

const invalid = (fn: () => unknown, text: RegExp) => {
  let err: unknown;
  try { fn(); } catch (e) { err = e; }
  expect(err).toBeInstanceOf(VdbError);
  expect((err as VdbError).code).toBe(ErrorCode.INVALID_ARGUMENT);
  expect((err as VdbError).message).toMatch(text);
};

describe('parseHosts', () => {
  it('reads back what it is given', () => {
    fc.assert(fc.property(hostSets, (hosts) => {
      expect(parseHosts(hosts.map((h) => `${h.name}=${h.address}`).join(','))).toEqual(hosts);
    }));
  });
  it('refuses 2 hosts, repeated names or addresses, and malformed entries with INVALID_ARGUMENT', () => {
    invalid(() => parseHosts('a=10.0.0.1,b=10.0.0.2'), /majority/);
    invalid(() => parseHosts('a=10.0.0.1,a=10.0.0.2,c=10.0.0.3'), /name a appears twice/);
    invalid(() => parseHosts('a=10.0.0.1,b=10.0.0.1,c=10.0.0.3'), /address 10.0.0.1 appears twice/);
    invalid(() => parseHosts('a'), /NAME=ADDRESS/);
    invalid(() => parseHosts('A_1=10.0.0.1'), /host name/);
    invalid(() => parseHosts('a=0.0.0.0'), /not 0.0.0.0/);
    invalid(() => parseHosts('a=bad host'), /IP address or a DNS name/);
    invalid(() => parseHosts(''), /got 0/);
  });
  it('refuses paths a unit file or config would misread, and clashing ports', () => {
    invalid(() => checkOptions(options(THREE, { paths: { ...DEFAULT_PATHS, etc: '/etc/my vdb' } })), /etc path/);
    invalid(() => checkOptions(options(THREE, { paths: { ...DEFAULT_PATHS, data: 'relative' } })), /data path/);
    invalid(() => checkOptions(options(THREE, { paths: { ...DEFAULT_PATHS, cli: '/opt/%i/cli.js' } })), /cli path/);
    invalid(() => checkOptions(options(THREE, { ports: { client: 4222, cluster: 4222, monitor: 8222 } })), /ports/);
    invalid(() => checkOptions(options(THREE, { shardsPerHost: 0, coordinatorsPerHost: 0 })), /does nothing/);
  });
});

describe('natsConfig', () => {
  it('listens on its own address and routes to exactly the other hosts, with the route secret', () => {
    fc.assert(fc.property(hostSets, (hosts) => {
      const o = options(hosts);
      for (const h of hosts) {
        const conf = natsConfig(o, h, 'sEcReT');
        expect(field(conf, 'server_name')).toEqual([h.name]);
        expect(field(conf, 'listen')).toEqual(hosts.length === 1 ? [`${h.address}:4222`] : [`${h.address}:4222`, `${h.address}:6222`]);
        expect(field(conf, 'http')).toEqual(['127.0.0.1:8222']);
        expect(conf).toContain('include "accounts.conf"');
        const want = hosts.filter((x) => x !== h).map((x) => `nats-route://route:sEcReT@${x.address}:6222`);
        expect(routes(conf).sort()).toEqual(want.sort());
        expect(conf.includes('cluster {')).toBe(hosts.length > 1);
      }
    }));
  });
  it('writes an IPv6 address in brackets, in listen addresses and URLs', () => {
    const hosts = parseHosts('a=fd00::1,b=fd00::2,c=fd00::3');
    const conf = natsConfig(options(hosts), hosts[0], 'x');
    expect(field(conf, 'listen')).toEqual(['[fd00::1]:4222', '[fd00::1]:6222']);
    expect(routes(conf)).toContain('nats-route://route:x@[fd00::2]:6222');
    expect(natsUrls(options(hosts), 'b')).toBe('nats://[fd00::2]:4222,nats://[fd00::1]:4222,nats://[fd00::3]:4222');
  });
});

describe('units', () => {
  it('run each process with its own server first, its name, its data directory and credentials by path', () => {
    const o = options(THREE, { tls: true });
    const b = THREE[1];
    const u = units(o, b);
    expect(Object.keys(u).sort()).toEqual(['vdb-coordinator@.service', 'vdb-nats.service', 'vdb-shard@.service']);
    const exec = (name: string) => u[name].split('\n').find((l) => l.startsWith('ExecStart='))!.slice('ExecStart='.length).split(' ');
    expect(exec('vdb-nats.service')).toEqual(['/usr/sbin/nats-server', '-c', '/etc/vdb/nats.conf']);
    expect(exec('vdb-shard@.service')).toEqual(shardCommand(o, b));
    expect(exec('vdb-shard@.service')).toEqual(['/usr/bin/node', '/opt/vdb/dist/cluster/cli.js', 'shard', '--nats', 'nats://10.0.0.2:4222,nats://10.0.0.1:4222,nats://10.0.0.3:4222',
      '--prefix', 'vdb', '--creds', '/etc/vdb/internal.json', '--tls-ca', '/etc/vdb/tls/ca.pem', '--name', 'shard-%i-b', '--data', '/var/lib/vdb/shard-%i']);
    const coord = exec('vdb-coordinator@.service');
    expect(coord.slice(2, 3)).toEqual(['coordinator']);
    expect(coord.slice(coord.indexOf('--name'), coord.indexOf('--name') + 2)).toEqual(['--name', 'coordinator-%i-b']);
    for (const text of Object.values(u)) {
      expect(text).toMatch(/^User=vdb$/m);
      expect(text).toMatch(/^Restart=always$/m);
      expect(text).toMatch(/^WantedBy=multi-user.target$/m);
    }
    expect(u['vdb-shard@.service']).toMatch(/^After=network-online.target vdb-nats.service$/m);
  });
  it('names shard processes so that a collection\'s replicas land on different hosts', () => {
    fc.assert(fc.property(hostSets, fc.integer({ min: 1, max: 12 }), fc.integer({ min: 1, max: 24 }), fc.integer({ min: 1, max: 3 }), (hosts, perHost, shards, r) => {
      const replicas = Math.min(r, hosts.length);
      const inv = inventory(options(hosts, { shardsPerHost: perHost }), []);
      const hostOf = new Map(inv.hosts.flatMap((h) => h.processes.filter((p) => p.role === 'shard').map((p) => [p.name, h.name] as const)));
      // In the order the coordinator lists live members (cluster/meta.ts live()).
      const members = [...hostOf.keys()].sort((a, b) => a.localeCompare(b));
      const { map } = planCollection({ name: 'c', dim: 4, metric: 'l2', partitioner: { kind: 'hash', shards }, replicas }, members);
      for (const set of map.replicas) expect(new Set(set.map((m) => hostOf.get(m))).size).toBe(replicas);
    }));
  });
  it('the inventory lists every process once, with the units to enable, NATS first', () => {
    fc.assert(fc.property(hostSets, fc.integer({ min: 0, max: 3 }), fc.integer({ min: 1, max: 3 }), (hosts, s, c) => {
      const inv = inventory(options(hosts, { shardsPerHost: s, coordinatorsPerHost: c }), ['admin']);
      expect(inv.jetstreamReplicas).toBe(Math.min(3, hosts.length));
      const names = inv.hosts.flatMap((h) => h.processes.map((p) => `${p.role}:${p.name}`));
      expect(new Set(names).size).toBe(names.length);
      expect(names).toHaveLength(hosts.length * (1 + s + c));
      for (const h of inv.hosts) {
        expect(h.enable[0]).toBe('vdb-nats.service');
        expect(h.enable).toHaveLength(1 + s + c);
      }
    }));
  });
});

describe('writeDeployment', () => {
  const mode = (f: string) => statSync(f).mode & 0o777;
  const readJson = (f: string) => JSON.parse(readFileSync(f, 'utf8'));

  it('writes secrets 0600, the accounts of auth.ts from the generated users, and no secret in a unit or the inventory', () => {
    const out = join(tmp(), 'out');
    const w = writeDeployment(options(THREE), out);
    for (const f of ['internal', 'admin', 'writer', 'reader', 'users', 'route']) expect(mode(join(out, 'credentials', `${f}.json`))).toBe(0o600);
    const secrets = ['internal', 'admin', 'writer', 'reader'].map((u) => readJson(join(out, 'credentials', `${u}.json`)).seed as string);
    secrets.push(readJson(join(out, 'credentials', 'route.json')).password as string);
    const users = readJson(join(out, 'credentials', 'users.json')) as { internal: { nkey: string }[]; clients: { name: string; role: 'reader'; nkey: string }[] };
    for (const h of THREE) {
      const etc = w.hosts[h.name].etc;
      expect(mode(join(etc, 'nats.conf'))).toBe(0o600);
      expect(mode(join(etc, 'internal.json'))).toBe(0o600);
      expect(readFileSync(join(etc, 'internal.json'), 'utf8')).toBe(readFileSync(join(out, 'credentials', 'internal.json'), 'utf8'));
      const accounts = readFileSync(join(etc, 'accounts.conf'), 'utf8');
      expect(accounts).toContain(users.internal[0].nkey);
      for (const c of users.clients) {
        const line = accounts.split('\n').find((l) => l.includes(c.nkey))!;
        for (const s of publishAllow('vdb', c.role)) expect(line).toContain(`"${s}"`);
      }
      expect(accounts.split('\n').find((l) => l.includes(users.clients.find((c) => c.name === 'reader')!.nkey))).not.toContain('.upsert"');
      for (const f of ['vdb-nats.service', 'vdb-shard@.service', 'vdb-coordinator@.service', '../etc/accounts.conf', '../../cluster.json']) {
        const text = readFileSync(join(w.hosts[h.name].systemd, f), 'utf8');
        for (const s of secrets) expect(text).not.toContain(s);
      }
    }
    expect(readJson(w.inventory).credentials).toEqual({ admin: 'credentials/admin.json', writer: 'credentials/writer.json', reader: 'credentials/reader.json' });
  });

  it('written again, keeps the users and the route secret', () => {
    const out = join(tmp(), 'out');
    writeDeployment(options(THREE), out);
    const before = ['a/etc/nats.conf', 'a/etc/internal.json', 'credentials/admin.json'].map((f) => readFileSync(join(out, f), 'utf8'));
    writeDeployment(options(THREE), out);
    expect(['a/etc/nats.conf', 'a/etc/internal.json', 'credentials/admin.json'].map((f) => readFileSync(join(out, f), 'utf8'))).toEqual(before);
  });

  it('adds a client user to every host\'s accounts file, and a second time gives it a new key', () => {
    const out = join(tmp(), 'out');
    writeDeployment(options(THREE), out);
    const nkeyOf = () => (readJson(join(out, 'credentials', 'users.json')).clients as { name: string; nkey: string }[]).find((c) => c.name === 'alice')!.nkey;
    const r = addDeployUser(out, { name: 'alice', role: 'reader', collections: ['docs'] });
    expect(r.creds).toBe(join(out, 'credentials', 'alice.json'));
    expect(mode(r.creds)).toBe(0o600);
    const first = nkeyOf();
    for (const h of THREE) {
      const line = readFileSync(join(out, h.name, 'etc', 'accounts.conf'), 'utf8').split('\n').find((l) => l.includes(first))!;
      expect(line).toContain('"vdb.v1.docs.search"');
      expect(line).not.toContain('_admin');
    }
    addDeployUser(out, { name: 'alice', role: 'reader' });
    expect(nkeyOf()).not.toBe(first);
    expect(readFileSync(join(out, 'c', 'etc', 'accounts.conf'), 'utf8')).not.toContain(first);
    // Written again, the deployment keeps the user.
    writeDeployment(options(THREE), out);
    expect(readFileSync(join(out, 'a', 'etc', 'accounts.conf'), 'utf8')).toContain(nkeyOf());
    invalid(() => addDeployUser(tmp(), { name: 'bob', role: 'reader' }), /cluster.json does not exist/);
  });

  it('nats-server accepts every host\'s config, plain and with TLS (and refuses one whose files are not there)', () => {
    const nats = findNatsServer();
    const check = (conf: string) => spawnSync(nats, ['-t', '-c', conf], { encoding: 'utf8' });
    for (const tls of [false, true]) {
      const d = tmp();
      // The etc path the files name is a link to each host's copy in turn, as if on that host.
      const etc = join(d, 'etc-vdb');
      const w = writeDeployment(options(THREE, { tls, paths: { ...DEFAULT_PATHS, etc, data: join(d, 'data') } }), join(d, 'out'));
      for (const h of THREE) {
        symlinkSync(w.hosts[h.name].etc, etc);
        const r = check(join(etc, 'nats.conf'));
        unlinkSync(etc);
        expect(r.status, `nats-server -t on ${h.name}'s config (tls ${tls}): ${r.stderr}`).toBe(0);
        expect(r.stderr + r.stdout).toMatch(/is valid/);
        if (tls) {
          for (const key of ['server.key', 'route.key']) expect(mode(join(w.hosts[h.name].etc, 'tls', key))).toBe(0o600);
          // Routes carry the internal traffic between hosts: TLS there too, with the certificate that serves both ends.
          const cluster = readFileSync(join(w.hosts[h.name].etc, 'nats.conf'), 'utf8').split('cluster {')[1];
          expect(field(cluster, 'cert_file')).toEqual([join(etc, 'tls', 'route.pem')]);
        }
      }
      // Read from the output directory, a TLS config names certificate files that are not there yet.
      if (tls) expect(check(join(w.hosts.a.etc, 'nats.conf')).status).not.toBe(0);
    }
  });
});

describe('the units', () => {
  it('pass systemd-analyze verify, as the instances a host starts (it also checks the programs exist)', () => {
    const d = tmp();
    const w = writeDeployment(options(THREE, { paths: { ...DEFAULT_PATHS, node: process.execPath, natsServer: findNatsServer() } }), join(d, 'out'));
    const units = join(d, 'units');
    mkdirSync(units);
    const dir = w.hosts.c.systemd;
    // An instance of a template is what systemd starts: verify those, as named on a host.
    for (const [from, to] of [['vdb-nats.service', 'vdb-nats.service'], ['vdb-shard@.service', 'vdb-shard@0.service'], ['vdb-coordinator@.service', 'vdb-coordinator@3.service']]) {
      copyFileSync(join(dir, from), join(units, to));
    }
    const verify = (files: string[]) => spawnSync('systemd-analyze', ['verify', '--man=no', ...files], { cwd: units, encoding: 'utf8' });
    const r = verify(['vdb-nats.service', 'vdb-shard@0.service', 'vdb-coordinator@3.service']);
    if (r.error) throw new Error(`systemd-analyze: ${r.error.message} (Debian: apt-get install -y systemd)`);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toBe('');
    // And it does refuse: a program that is not there.
    writeFileSync(join(units, 'vdb-broken.service'), readFileSync(join(units, 'vdb-nats.service'), 'utf8').replace(findNatsServer(), join(d, 'no-such-nats-server')));
    expect(verify(['vdb-broken.service']).status).not.toBe(0);
  });
});

describe('vdb deploy', () => {
  it('says which flag is missing or wrong', async () => {
    await expect(DEPLOY_COMMAND.run(['--out', tmp()])).rejects.toThrow(/--hosts is required/);
    await expect(DEPLOY_COMMAND.run(['--hosts', 'a=10.0.0.1'])).rejects.toThrow(/--out is required/);
    await expect(DEPLOY_COMMAND.run(['--hosts', 'a=10.0.0.1', '--out', tmp(), '--shards-per-host', 'x'])).rejects.toThrow(/non-negative integer/);
    await expect(DEPLOY_COMMAND.run(['--hosts', 'a=10.0.0.1', '--out', tmp(), '--shard-per-host', '2'])).rejects.toMatchObject({ code: ErrorCode.INVALID_ARGUMENT, message: expect.stringMatching(/--shard-per-host/) });
  });
});
