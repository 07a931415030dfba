// Who gets in where (docs/security.md), against a real nats-server configured
// as `vdb up` configures it: connections without or with wrong credentials are
// refused, each role reaches only its operations, a client-account connection
// reaches nothing internal, and a user restricted to collections only those.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, nkeys } from 'nats';
import type { NatsConnection } from 'nats';
import { readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { VdbClient } from '../ts/client.js';
import { ErrorCode, VdbError } from '../ts/errors.js';
import { encode } from '../ts/wire/codec.js';
import { addUser, writeSecret } from '../cluster/credentials.js';
import { names } from '../cluster/subjects.js';
import { authOptions } from '../cluster/nats-connect.js';
import type { NatsAuth } from '../cluster/nats-connect.js';
import { openCredentials } from '../cluster/credentials.js';
import { startNatsServer } from '../cluster/nats-server.js';
import { generateTls } from '../cluster/tls.js';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import type { ClusterFile, RunningCluster, UpOptions } from '../cluster/launcher.js';
import { CLI, ROOT, TestCluster, connectAs, requireDist, waitFor } from './cluster-helpers.js';

let cl: TestCluster;
const opened: NatsConnection[] = [];

async function as(creds: string): Promise<VdbClient> {
  const nc = await connectAs(cl.natsUrl, creds, 'vdb-security-test');
  opened.push(nc);
  return new VdbClient(nc, { timeoutMs: 15_000 });
}

const points = (from: number, n: number) => Array.from({ length: n }, (_, i) => ({ id: from + i, vector: [from + i, 1, 2, 3] }));

async function denied(p: Promise<unknown>): Promise<void> {
  const e = await p.then(() => undefined, (x: unknown) => x);
  expect(e, 'refused').toBeInstanceOf(VdbError);
  expect((e as VdbError).code, (e as Error).message).toBe(ErrorCode.PERMISSION_DENIED);
}

beforeAll(async () => {
  cl = await TestCluster.start({ shards: 1 });
  for (const name of ['a', 'b']) {
    await cl.client.createCollection({ name, dim: 4, metric: 'l2', replicas: 1, partitioner: { kind: 'hash', shards: 1 } });
    await cl.client.upsert(name, points(0, 10));
    await cl.waitCount(name, 10); // other users' reads carry no session: they see what is applied
  }
});

afterAll(async () => {
  for (const nc of opened) await nc.close().catch(() => undefined);
  await cl?.stop();
});

describe('connecting', () => {
  it('refuses a connection without credentials', async () => {
    const e = await connect({ servers: cl.natsUrl, reconnect: false, timeout: 10_000 }).then((nc) => nc.close().then(() => undefined), (x: { code?: string }) => x);
    expect(e?.code).toBe('AUTHORIZATION_VIOLATION');
  });

  it('refuses a key the server does not know (a wrong secret)', async () => {
    const file = join(cl.dir, 'stranger.json');
    writeSecret(file, JSON.stringify({ user: 'stranger', seed: new TextDecoder().decode(nkeys.createUser().getSeed()) }));
    const e = await connectAs(cl.natsUrl, file).then((nc) => nc.close().then(() => undefined), (x: { code?: string }) => x);
    expect(e?.code).toBe('AUTHORIZATION_VIOLATION');
  });

  it('says which file is wrong, and never its content', async () => {
    const file = join(cl.dir, 'broken.json');
    writeFileSync(file, '{"password": "hunter2-secret"}');
    expect(() => connectAs(cl.natsUrl, file)).toThrow(/credentials file .*broken\.json: needs "seed", "user" and "password", or "token"/);
    expect(() => connectAs(cl.natsUrl, file)).not.toThrow(/hunter2/);
  });
});

describe('roles', () => {
  it('a reader searches, gets, counts, scrolls and describes, but may not upsert, delete, create or drop', async () => {
    const reader = await as(cl.credentials.files.reader);
    expect((await reader.search('a', [0, 1, 2, 3], { k: 3 })).hits[0].id).toBe(0);
    expect((await reader.get('a', [1])).points.map((p) => p.id)).toEqual([1]);
    expect(await reader.count('a')).toBe(10);
    expect((await reader.scroll('a', { limit: 5 })).points).toHaveLength(5);
    expect((await reader.describe('a')).name).toBe('a');
    expect((await reader.listCollections()).sort()).toEqual(['a', 'b']);
    await denied(reader.upsert('a', points(100, 1)));
    await denied(reader.delete('a', [0]));
    await denied(reader.createCollection({ name: 'c', dim: 4, metric: 'l2', replicas: 1, partitioner: { kind: 'hash', shards: 1 } }));
    await denied(reader.dropCollection('a'));
    expect(await cl.client.count('a')).toBe(10);
  });

  it('a writer upserts and deletes, but may not create or drop; an admin may', async () => {
    const writer = await as(cl.credentials.files.writer);
    await writer.upsert('b', points(10, 2));
    await writer.delete('b', [10]);
    expect(await writer.count('b')).toBe(11);
    await denied(writer.createCollection({ name: 'c', dim: 4, metric: 'l2', replicas: 1, partitioner: { kind: 'hash', shards: 1 } }));
    await denied(writer.dropCollection('b'));
    expect((await cl.client.listCollections()).sort()).toEqual(['a', 'b']);

    const admin = await as(cl.credentials.files.admin);
    await admin.createCollection({ name: 'c', dim: 4, metric: 'l2', replicas: 1, partitioner: { kind: 'hash', shards: 1 } });
    expect((await admin.listCollections()).sort()).toEqual(['a', 'b', 'c']);
    await admin.dropCollection('c');
    expect((await admin.listCollections()).sort()).toEqual(['a', 'b']);
  });
});

describe('the client account', () => {
  const n = names('vdb');
  // Every kind of internal subject: a write log, the JetStream API, a KV bucket, shard and replica subjects (a snapshot copy), the system account.
  const internal = [n.log('a', 0), '$JS.API.INFO', `$JS.API.STREAM.PURGE.${n.stream('a', 0)}`, `$KV.${n.bucket('collections')}.a`, n.shard('a', 0, 'search'), n.replica('a', 0, 'shard-0', 'snapshot'), '$SYS.REQ.SERVER.PING', n.version('a')];

  it('cannot publish to anything internal, even as admin: the log and KV are untouched', async () => {
    const nc = await connectAs(cl.natsUrl, cl.credentials.files.admin);
    opened.push(nc);
    const jsm = await cl.nc.jetstreamManager();
    const before = (await jsm.streams.info(n.stream('a', 0))).state;
    for (const subject of internal) {
      const e = await nc.request(subject, encode({ op: 'delete', ids: [0] }, false), { timeout: 5_000 }).then(() => undefined, (x: { code?: string }) => x);
      expect(e?.code, subject).toBe('PERMISSIONS_VIOLATION');
    }
    const after = (await jsm.streams.info(n.stream('a', 0))).state;
    expect(after.last_seq).toBe(before.last_seq);
    expect(after.messages).toBe(before.messages);
    expect(await cl.client.count('a')).toBe(10);
  });

  it('cannot subscribe to anything internal: the subscription is refused and delivers nothing while the cluster works', async () => {
    const nc = await connectAs(cl.natsUrl, cl.credentials.files.admin);
    opened.push(nc);
    const got: string[] = [];
    const refused = new Set<string>();
    for (const subject of [`${n.prefix}.log.>`, '$JS.API.>', '$KV.>', `${n.prefix}.shard.>`, '$SYS.>', '>']) {
      nc.subscribe(subject, { callback: (err, m) => (err ? refused.add(subject) : got.push(m.subject)) });
    }
    await nc.flush();
    // Internal traffic of every kind: a write (log, shard subjects), a create (KV, JetStream API), connections ($SYS events).
    await cl.client.upsert('a', points(20, 3));
    await cl.client.search('a', [0, 1, 2, 3], { k: 1, consistency: 'strong' });
    await cl.client.createCollection({ name: 'd', dim: 4, metric: 'l2', replicas: 1, partitioner: { kind: 'hash', shards: 1 } });
    await cl.client.dropCollection('d');
    await (await connectAs(cl.natsUrl, cl.credentials.files.reader)).close();
    await waitFor('every subscription refused', async () => (refused.size === 6 ? true : undefined), 10_000);
    expect(got).toEqual([]);
  });
});

describe('a user restricted to collections', () => {
  it('reads and writes its collection only, once added and the server reloaded', async () => {
    const store = addUser(cl.credentials.dir, 'vdb', { name: 'only-a', role: 'writer', collections: ['a'] });
    writeSecret(cl.nats.accountsFile!, store.accounts);
    await cl.nats.reload();
    const nc = await connectAs(cl.natsUrl, store.files['only-a']);
    opened.push(nc);
    const onlyA = new VdbClient(nc, { timeoutMs: 15_000 });
    await onlyA.upsert('a', points(30, 1));
    expect((await onlyA.get('a', [30])).points.map((p) => p.id)).toEqual([30]);
    await denied(onlyA.search('b', [0, 1, 2, 3], { k: 1 }));
    await denied(onlyA.get('b', [0]));
    await denied(onlyA.upsert('b', points(40, 1)));
    await denied(onlyA.describe('a'));
    await denied(onlyA.status());
  });

  it('an admin cannot be restricted, and names are checked', () => {
    expect(() => addUser(cl.credentials.dir, 'vdb', { name: 'x', role: 'admin', collections: ['a'] })).toThrow(/an admin cannot be restricted/);
    expect(() => addUser(cl.credentials.dir, 'vdb', { name: 'x y', role: 'reader' })).toThrow(/user name must be/);
    expect(() => addUser(cl.credentials.dir, 'vdb', { name: 'x', role: 'reader', collections: ['a.>'] })).toThrow(/collection names are/);
    expect(() => addUser(cl.credentials.dir, 'vdb', { name: 'internal', role: 'reader' })).toThrow(/the processes' own user/);
  });
});

describe('credentials files', () => {
  it('are written 0600, with the server config holding public keys only', () => {
    for (const f of readdirSync(cl.credentials.dir)) expect(statSync(join(cl.credentials.dir, f)).mode & 0o777, f).toBe(0o600);
    const seed = JSON.parse(readFileSync(cl.credentials.files.admin, 'utf8')) as { seed: string };
    expect(seed.seed).toMatch(/^SU/);
    expect(readFileSync(cl.nats.accountsFile!, 'utf8')).not.toContain(seed.seed);
    expect(readFileSync(cl.nats.configFile, 'utf8')).not.toContain(seed.seed);
  });
});


describe('vdb up and vdb user add', () => {
  it('up authenticates by default; user add adds a user (and rotates its key) with a reload, not a restart', async () => {
    requireDist();
    // up() spawns cli.js next to itself: the compiled one.
    const { up } = (await import(join(ROOT, 'dist', 'cluster', 'launcher.js'))) as { up: (o: UpOptions) => Promise<RunningCluster> };
    const dir = mkdtempSync(join(tmpdir(), 'vdb-up-security-'));
    const lines: string[] = [];
    const cluster = await up({ shards: 1, data: dir, log: (l) => lines.push(l), output: (n, l) => lines.push(`${n}: ${l}`) });
    const conns: NatsConnection[] = [];
    try {
      const info = JSON.parse(readFileSync(join(dir, 'cluster.json'), 'utf8')) as ClusterFile;
      const text = readFileSync(join(dir, 'cluster.json'), 'utf8');
      expect(Object.keys(info.credentials!).sort()).toEqual(['admin', 'internal', 'reader', 'writer']);
      for (const f of Object.values(info.credentials!)) expect(text).not.toContain((JSON.parse(readFileSync(f, 'utf8')) as { seed: string }).seed);
      const e = await connect({ servers: cluster.url, reconnect: false }).then((nc) => nc.close().then(() => undefined), (x: { code?: string }) => x);
      expect(e?.code).toBe('AUTHORIZATION_VIOLATION');

      const adminNc = await connectAs(cluster.url, info.credentials!.admin);
      conns.push(adminNc);
      const admin = new VdbClient(adminNc, { timeoutMs: 15_000 });
      await admin.createCollection({ name: 'u', dim: 4, metric: 'l2', replicas: 1, partitioner: { kind: 'hash', shards: 1 } });
      await admin.upsert('u', points(0, 5));
      const natsPid = info.processes.find((p) => p.role === 'nats-server')!.pid;

      const add = (args: string[]) => spawnSync(process.execPath, [CLI, 'user', 'add', ...args, '--data', dir], { encoding: 'utf8', timeout: 60_000 });
      const r = add(['carol', '--role', 'reader', '--collections', 'u']);
      expect(r.status, r.stderr).toBe(0);
      const carolFile = join(dir, 'credentials', 'carol.json');
      expect(r.stdout).toContain(carolFile);
      expect(statSync(carolFile).mode & 0o777).toBe(0o600);
      // The command returns once the server has reloaded.
      const carolNc = await connectAs(cluster.url, carolFile);
      conns.push(carolNc);
      const carol = new VdbClient(carolNc, { timeoutMs: 15_000 });
      expect(await carol.count('u', { consistency: 'strong' })).toBe(5);
      await denied(carol.upsert('u', points(10, 1)));
      // A reload, not a restart: the same server, and the connections made before it still work.
      expect(adminNc.isClosed()).toBe(false);
      expect(await admin.count('u')).toBe(5);
      expect((JSON.parse(readFileSync(join(dir, 'cluster.json'), 'utf8')) as ClusterFile).processes.find((p) => p.role === 'nats-server')!.pid).toBe(natsPid);

      // Rotation: adding carol again gives her a new key; the old one is refused from then on.
      const oldSeed = readFileSync(carolFile, 'utf8');
      const oldFile = join(dir, 'carol-old.json');
      writeSecret(oldFile, oldSeed);
      expect(add(['carol', '--role', 'reader']).status).toBe(0);
      const old = await connectAs(cluster.url, oldFile).then((nc) => nc.close().then(() => undefined), (x: { code?: string }) => x);
      expect(old?.code).toBe('AUTHORIZATION_VIOLATION');
      const again = await connectAs(cluster.url, carolFile);
      conns.push(again);
      expect(await new VdbClient(again).count('u')).toBe(5);

      const bad = add(['dave', '--role', 'root']);
      expect(bad.status).toBe(1);
      expect(bad.stderr).toMatch(/^vdb user: INVALID_ARGUMENT: role must be one of reader, writer, admin/m);
    } finally {
      for (const nc of conns) await nc.close().catch(() => undefined);
      await cluster.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('TLS', () => {
  const tryConnect = (url: string, auth: NatsAuth) =>
    connect({ servers: url, reconnect: false, timeout: 10_000, ...authOptions(auth) }).then(async (nc) => {
      await nc.flush();
      await nc.close();
      return 'connected';
    }, (e: Error) => e.message);

  it('a client verifies the server: trusting another CA, or none, it is refused', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vdb-tls-'));
    try {
      const ours = generateTls(join(dir, 'ours'));
      const theirs = generateTls(join(dir, 'theirs'));
      expect(statSync(ours.key).mode & 0o777).toBe(0o600);
      const creds = openCredentials(join(dir, 'credentials'), 'vdb');
      const srv = await startNatsServer({ dir: join(dir, 'nats'), auth: { accounts: creds.accounts, creds: creds.internal }, tls: ours });
      try {
        expect(await tryConnect(srv.url, { creds: creds.files.reader, tlsCa: ours.ca })).toBe('connected');
        expect(await tryConnect(srv.url, { creds: creds.files.reader, tlsCa: theirs.ca })).toMatch(/certificate/i);
        expect(await tryConnect(srv.url, { creds: creds.files.reader })).toMatch(/certificate/i);
      } finally {
        await srv.stop();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('vdb up with mutual TLS: its processes and clients connect with certificates, a client without one is refused', async () => {
    requireDist();
    const { up } = (await import(join(ROOT, 'dist', 'cluster', 'launcher.js'))) as { up: (o: UpOptions) => Promise<RunningCluster> };
    const dir = mkdtempSync(join(tmpdir(), 'vdb-up-tls-'));
    const lines: string[] = [];
    const cluster = await up({ shards: 1, data: dir, tls: { generate: true, verifyClients: true }, log: (l) => lines.push(l), output: (n, l) => lines.push(`${n}: ${l}`) });
    try {
      const info = JSON.parse(readFileSync(join(dir, 'cluster.json'), 'utf8')) as ClusterFile;
      expect(info.tls?.ca).toBe(join(dir, 'tls', 'ca.pem'));
      expect(readFileSync(join(dir, 'cluster.json'), 'utf8')).not.toMatch(/PRIVATE KEY/);
      const admin = cluster.clientAuth('admin')!;
      // The shard and coordinator are up: they connected over mutual TLS.
      const nc = await connect({ servers: cluster.url, ...authOptions(admin) });
      try {
        const client = new VdbClient(nc, { timeoutMs: 15_000 });
        await client.createCollection({ name: 't', dim: 4, metric: 'l2', replicas: 1, partitioner: { kind: 'hash', shards: 1 } });
        await client.upsert('t', points(0, 3));
        expect(await client.count('t', { consistency: 'strong' })).toBe(3);
      } finally {
        await nc.close();
      }
      // Good credentials, the right CA, but no client certificate: the server ends the handshake
      // (with TLS 1.3 the client may see its alert, or only the connection reset after it).
      const refused = await tryConnect(cluster.url, { creds: admin.creds, tlsCa: admin.tlsCa });
      expect(refused).not.toBe('connected');
      expect(refused).toMatch(/certificate|ECONNRESET/i);
      expect(await tryConnect(cluster.url, admin)).toBe('connected');
    } finally {
      await cluster.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('the metrics listeners', () => {
  /** The local address a listening TCP socket on `port` is bound to, from the kernel's table (hex, e.g. 0100007F = 127.0.0.1). */
  const boundTo = (port: number): string | undefined => {
    const hexPort = port.toString(16).toUpperCase().padStart(4, '0');
    const rows = readFileSync('/proc/net/tcp', 'utf8').split('\n').slice(1).map((l) => l.trim().split(/\s+/));
    return rows.find((r) => r[1]?.endsWith(`:${hexPort}`) && r[3] === '0A')?.[1].split(':')[0];
  };
  const members = async () => (await cl.client.status()).members as { name: string; metricsPort: number }[];

  it('stay on loopback by default, and open only with --metrics-host', async () => {
    for (const m of await members()) expect(boundTo(m.metricsPort), m.name).toBe('0100007F');
    const child = spawn(process.execPath, [CLI, 'coordinator', '--nats', cl.natsUrl, '--creds', cl.credentials.internal, '--name', 'c-open', '--metrics-host', '0.0.0.0'], { stdio: 'ignore' });
    try {
      const m = await waitFor('c-open heartbeating', async () => (await members()).find((x) => x.name === 'c-open'), 30_000, 200);
      expect(boundTo(m.metricsPort)).toBe('00000000');
    } finally {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
    }
  });
});
