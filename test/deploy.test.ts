// docs/deploy.md for real, on one machine: three "hosts" are three network
// namespaces on a bridge of their own (a fourth namespace, where the test's
// client runs), with addresses 10.213.X.1-3 that exist only there. `vdb deploy
// --tls` writes the files (TLS on client connections and on routes); each host
// gets its copy of them, mounted at the paths the files name (a bind mount
// inside the host's `ip netns exec`, which has a mount namespace of its own),
// and runs the command lines of its systemd units. Then a whole host is
// SIGKILLed at once (NATS node, shard process, coordinator): writes are still
// acknowledged, searches still complete, and once the host returns every
// acknowledged write is there. With two hosts down no write is acknowledged.
// Needs root for `ip netns`.

import { execFileSync, spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { randomBytes, randomInt } from 'node:crypto';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { findNatsServer } from '../cluster/nats-server.js';
import type { DeployInventory } from '../cluster/deploy.js';
import { CLI, ROOT, requireDist, sleep, waitFor } from './cluster-helpers.js';

const ID = randomBytes(3).toString('hex');
const NET = randomInt(1, 255);
const HOSTS = ['a', 'b', 'c'] as const;
type Host = (typeof HOSTS)[number];
const address = (i: number) => `10.213.${NET}.${i + 1}`;
const CLIENT_ADDRESS = `10.213.${NET}.100`;
const ns = (h: Host | 'net') => `vdb-${ID}-${h}`;
const COLL = 'deployed';
const DIM = 8;

function ip(...args: string[]): void {
  execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

/** Root, iproute2 and curl, or a clear failure: this test never skips. */
function requireNetns(): void {
  if (process.getuid?.() !== 0) throw new Error('test/deploy.test.ts builds network namespaces (ip netns): run it as root');
  for (const [cmd, pkg] of [['ip', 'iproute2'], ['curl', 'curl']]) {
    try {
      execFileSync(cmd, ['-V'], { stdio: 'ignore' });
    } catch {
      throw new Error(`test/deploy.test.ts needs the ${cmd} command (apt-get install -y ${pkg})`);
    }
  }
}

/** The bridge namespace with the client's address, and each host's namespace on a veth pair to it. */
function buildNetwork(): void {
  ip('netns', 'add', ns('net'));
  ip('-n', ns('net'), 'link', 'set', 'lo', 'up');
  ip('-n', ns('net'), 'link', 'add', 'br0', 'type', 'bridge');
  ip('-n', ns('net'), 'addr', 'add', `${CLIENT_ADDRESS}/24`, 'dev', 'br0');
  ip('-n', ns('net'), 'link', 'set', 'br0', 'up');
  HOSTS.forEach((h, i) => {
    ip('netns', 'add', ns(h));
    ip('-n', ns(h), 'link', 'set', 'lo', 'up');
    ip('-n', ns('net'), 'link', 'add', `v-${h}`, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns(h));
    ip('-n', ns('net'), 'link', 'set', `v-${h}`, 'master', 'br0', 'up');
    ip('-n', ns(h), 'addr', 'add', `${address(i)}/24`, 'dev', 'eth0');
    ip('-n', ns(h), 'link', 'set', 'eth0', 'up');
  });
}

/** The ExecStart line of a unit file, as argv, with the template's instance. */
function execStart(unitFile: string, instance = '0'): string[] {
  const line = readFileSync(unitFile, 'utf8').split('\n').find((l) => l.startsWith('ExecStart='));
  if (!line) throw new Error(`${unitFile} has no ExecStart`);
  return line.slice('ExecStart='.length).replaceAll('%i', instance).split(' ');
}

interface Proc { child: ChildProcess; exited: Promise<void> }

function keep(child: ChildProcess, lines: string[], tag: string): Promise<void> {
  for (const s of [child.stdout, child.stderr]) {
    s?.setEncoding('utf8');
    s?.on('data', (d: string) => {
      for (const l of d.split('\n')) if (l !== '') lines.push(`${tag}: ${l}`);
      if (lines.length > 2000) lines.splice(0, lines.length - 2000);
    });
  }
  return new Promise((r) => child.once('exit', () => r()));
}

describe('a three-host deployment from the files of vdb deploy --tls', () => {
  let dir: string;
  let inv: DeployInventory;
  const procs = new Map<string, Proc>();
  const log: string[] = [];
  let client: ChildProcess | undefined;
  const clientLines: string[] = [];
  const pending = new Map<number, (a: Answer) => void>();
  let nextId = 0;

  interface Answer { id: number; ok: boolean; result?: any; error?: { code: string; message: string }; ms: number }

  function call(op: string, args?: unknown, timeoutMs = 20_000): Promise<Answer> {
    const id = nextId++;
    return new Promise<Answer>((resolve, reject) => {
      const t = setTimeout(() => { pending.delete(id); reject(new Error(`client: ${op} had no answer in ${timeoutMs} ms\n${clientLines.slice(-20).join('\n')}`)); }, timeoutMs);
      pending.set(id, (a) => { clearTimeout(t); resolve(a); });
      client!.stdin!.write(JSON.stringify({ id, op, args }) + '\n');
    });
  }
  async function must(op: string, args?: unknown): Promise<any> {
    const a = await call(op, args);
    if (!a.ok) throw new Error(`${op}: ${a.error!.code}: ${a.error!.message}`);
    return a.result;
  }
  const context = () => `${log.slice(-80).join('\n')}\nclient:\n${clientLines.slice(-20).join('\n')}`;
  /** The processes' lines without the NATS servers'. */
  const appContext = () => log.filter((l) => !/^[abc]\/nats: /.test(l)).slice(-60).join('\n');

  /** Runs a host's unit command inside its namespace, with its own files at the paths the files name. */
  function startOnHost(h: Host, unit: string, argv: string[]): void {
    const host = join(dir, 'hosts', h);
    const script = 'mount --bind "$1" "$2" && shift 2 && exec "$@"';
    const child = spawn('ip', ['netns', 'exec', ns(h), 'sh', '-c', script, 'vdb-host', host, join(dir, 'root'), ...argv], { stdio: ['ignore', 'pipe', 'pipe'] });
    procs.set(`${h}/${unit}`, { child, exited: keep(child, log, `${h}/${unit}`) });
  }
  function startNats(h: Host): void {
    startOnHost(h, 'nats', execStart(join(dir, 'out', h, 'systemd', 'vdb-nats.service')));
  }
  function startProcesses(h: Host): void {
    startOnHost(h, 'shard', execStart(join(dir, 'out', h, 'systemd', 'vdb-shard@.service')));
    startOnHost(h, 'coordinator', execStart(join(dir, 'out', h, 'systemd', 'vdb-coordinator@.service')));
  }
  /** SIGKILL to everything a host runs, at once, and wait until it is gone. */
  async function killHost(h: Host): Promise<void> {
    const mine = [...procs.entries()].filter(([k]) => k.startsWith(`${h}/`));
    for (const [, p] of mine) p.child.kill('SIGKILL');
    await Promise.all(mine.map(([, p]) => p.exited));
    for (const [k] of mine) procs.delete(k);
  }

  /** Every shard's replicas live and caught up with its log. */
  async function allCaughtUp(members: number): Promise<any | undefined> {
    const st = await must('status');
    const live = (st.members as { name: string }[]).length;
    const shards = (st.collections as any[]).find((c) => c.name === COLL)?.shards ?? [];
    const ok = live >= members && shards.length > 0 && shards.every((s: any) => s.replicas.length >= 2 && s.replicas.every((r: any) => r.live && r.lag === 0));
    if (ok) return st;
    // What is not there yet, for the failure message.
    const names = (st.members as { name: string }[]).map((m) => m.name).join(' ');
    const behind = shards.map((s: any) => `${s.shard}@${s.logSeq}: ${s.replicas.map((r: any) => `${r.member} ${r.live ? 'live' : 'down'} lag ${r.lag}`).join(', ')}`).join('; ');
    throw new Error(`members ${names}; shards ${behind}`);
  }

  beforeAll(async () => {
    requireNetns();
    requireDist();
    dir = mkdtempSync(join(tmpdir(), 'vdb-deploy-'));
    const root = join(dir, 'root');
    // The deployment's paths: every host's files get mounted at root/ inside its namespace.
    execFileSync(process.execPath, [CLI, 'deploy', '--tls', '--hosts', HOSTS.map((h, i) => `${h}=${address(i)}`).join(','), '--out', join(dir, 'out'),
      '--etc', join(root, 'etc'), '--data', join(root, 'data'), '--node', process.execPath, '--cli', CLI, '--nats-server', findNatsServer()], { cwd: ROOT, stdio: 'pipe' });
    inv = JSON.parse(readFileSync(join(dir, 'out', 'cluster.json'), 'utf8')) as DeployInventory;
    mkdirSync(root);
    // "Copy to the hosts": each host's etc directory, and an empty data directory.
    for (const h of HOSTS) {
      cpSync(join(dir, 'out', h, 'etc'), join(dir, 'hosts', h, 'etc'), { recursive: true });
      mkdirSync(join(dir, 'hosts', h, 'data'), { recursive: true });
    }
    buildNetwork();
    for (const h of HOSTS) startNats(h);
    const cfg = { nats: inv.nats, creds: join(dir, 'out', inv.credentials.admin), internal: join(dir, 'out', 'credentials', 'internal.json'), tlsCa: join(dir, 'out', inv.tls!.ca) };
    client = spawn('ip', ['netns', 'exec', ns('net'), process.execPath, join(ROOT, 'test', 'deploy-client.mjs'), JSON.stringify(cfg)], { cwd: ROOT, stdio: ['pipe', 'pipe', 'pipe'] });
    let partial = '';
    client.stdout!.setEncoding('utf8');
    client.stdout!.on('data', (d: string) => {
      partial += d;
      let nl;
      while ((nl = partial.indexOf('\n')) >= 0) {
        const line = partial.slice(0, nl);
        partial = partial.slice(nl + 1);
        try {
          const a = JSON.parse(line) as Answer;
          pending.get(a.id)?.(a);
          pending.delete(a.id);
        } catch {
          clientLines.push(line);
        }
      }
    });
    client.stderr!.setEncoding('utf8');
    client.stderr!.on('data', (d: string) => { clientLines.push(d); });
    // The processes start once the three servers are one JetStream cluster, as docs/deploy.md says:
    // the first process sizes the metadata buckets by the servers it sees.
    await waitFor('three NATS servers in one JetStream cluster', async () => {
      const a = await call('nats', undefined, 10_000);
      return a.ok && a.result.connectUrls.length === 3 ? a.result : undefined;
    }, 60_000, 500, context);
    // The check docs/deploy.md gives, on a host.
    await waitFor('the JetStream meta cluster of three, as host a\'s monitoring port reports it', async () => {
      const said = execFileSync('ip', ['netns', 'exec', ns('a'), 'sh', '-c', `curl -s http://127.0.0.1:${inv.hosts[0].ports.monitor}/jsz | grep -E '"(leader|cluster_size)"'`], { encoding: 'utf8' });
      return /"cluster_size": 3/.test(said) && /"leader": "[abc]"/.test(said) ? said : undefined;
    }, 30_000, 500, context);
    for (const h of HOSTS) startProcesses(h);
    await waitFor('six members', async () => {
      const st = await must('status');
      return (st.members as unknown[]).length === 6 ? st : undefined;
    }, 60_000, 500, context);
  }, 150_000);

  /** Everything this test made, gone; also on the worker's exit, should afterAll not run. */
  function removeAll(): void {
    for (const p of procs.values()) p.child.kill('SIGKILL');
    client?.kill('SIGKILL');
    for (const h of [...HOSTS, 'net'] as const) {
      try { ip('netns', 'del', ns(h)); } catch { /* not made, or gone already */ }
    }
  }
  process.once('exit', removeAll);

  afterAll(async () => {
    const exits = [...[...procs.values()].map((p) => p.exited), ...(client && client.exitCode === null ? [new Promise((r) => client!.once('exit', r))] : [])];
    removeAll();
    await Promise.all(exits);
    process.off('exit', removeAll);
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const vec = (i: number) => Array.from({ length: DIM }, (_, d) => Math.sin(i * 7.31 + d * 1.7) * 10);
  const acked = new Set<number>();
  let next = 0;
  /** Upserts the next batch; its ids count as acknowledged only on a reply with a sequence. */
  async function writeBatch(n = 20): Promise<Answer> {
    const ids = Array.from({ length: n }, () => next++);
    const a = await call('upsert', { collection: COLL, points: ids.map((i) => ({ id: i, vector: vec(i), payload: { i } })) });
    if (a.ok && typeof a.result.seq === 'number' && a.result.count === n) for (const i of ids) acked.add(i);
    return a;
  }
  /** An exact search for a stored point: its own id first, every shard answering. */
  async function searchFinds(i: number): Promise<Answer> {
    return call('search', { collection: COLL, vector: vec(i), opts: { k: 3, exact: true } });
  }
  const complete = (a: Answer, i: number) => a.ok && a.result.partial === false && a.result.hits[0]?.id === i;

  it('the generated files name every host and the deployment forms one NATS cluster with R3 logs', async () => {
    expect(inv.hosts.map((h) => h.address)).toEqual(HOSTS.map((_, i) => address(i)));
    expect(inv.jetstreamReplicas).toBe(3);
    await must('create', { name: COLL, dim: DIM, metric: 'l2', partitioner: { kind: 'hash', shards: 3 }, replicas: 2 });
    const streams = (await must('streams')) as { name: string; replicas: number; leader: string; peers: string[] }[];
    const logs = streams.filter((s) => s.name.includes(`_LOG_${COLL}_`));
    expect(logs).toHaveLength(3);
    // Each log has a copy on each host's NATS server (named after the host).
    for (const s of logs) {
      expect(s.replicas).toBe(3);
      expect(new Set([s.leader, ...s.peers])).toEqual(new Set(HOSTS));
    }
    for (let b = 0; b < 10; b++) expect((await writeBatch()).ok).toBe(true);
    expect(acked.size).toBe(200);
    // Every shard has its two replicas on two hosts.
    const st = await waitFor('every replica caught up', () => allCaughtUp(6), 60_000, 500, context);
    for (const s of (st.collections as any[]).find((c) => c.name === COLL).shards) {
      const hosts = new Set((s.replicas as { member: string }[]).map((r) => r.member.split('-').pop()));
      expect(hosts.size).toBe(s.replicas.length);
    }
    for (const i of [0, 77, 199]) expect(complete(await searchFinds(i), i)).toBe(true);
  });

  it('with host a down, writes are acknowledged and searches complete; back, it has lost nothing acknowledged', async () => {
    await killHost('a');
    log.push('----- host a down -----');
    const before = acked.size;
    // Leaders on a are re-elected on b and c; then writes are acknowledged again.
    await waitFor('a write acknowledged without host a', async () => ((await writeBatch()).ok ? true : undefined), 60_000, 200, context);
    let failed = 0;
    for (let b = 0; b < 10; b++) if (!(await writeBatch()).ok) failed++;
    expect(acked.size).toBeGreaterThanOrEqual(before + 20 * (1 + 10 - failed));
    expect(failed).toBeLessThanOrEqual(2);
    // Searches: once a's replicas' leases expire, every shard answers from b or c.
    const probe = [...acked].filter((i) => i >= before)[0];
    await waitFor('a complete search without host a', async () => (complete(await searchFinds(probe), probe) ? true : undefined), 60_000, 200, context);
    // Status lists a member until its heartbeat lease (5 s) expires; a search can be complete before that.
    await waitFor('status without host a\'s processes', async () => {
      const st = await must('status');
      return (st.members as { name: string }[]).some((m) => m.name.endsWith('-a')) ? undefined : true;
    }, 30_000, 200, context);
    const answers = await Promise.all([0, 77, 199, probe].map((i) => searchFinds(i)));
    answers.forEach((a, j) => expect(complete(a, [0, 77, 199, probe][j]), `${JSON.stringify(a)}\n${appContext()}`).toBe(true));
    console.log(`host a down: searches took ${answers.map((a) => a.ms).join(', ')} ms; ${failed} of 10 write batches failed after the first acknowledged one`);

    // Host a returns: its NATS node rejoins, its processes replay what they missed.
    startNats('a');
    startProcesses('a');
    await waitFor('every replica live and caught up with host a back', () => allCaughtUp(6), 90_000, 500, context);
    const ids = [...acked];
    const n = await must('count', { collection: COLL, opts: { consistency: 'strong' } });
    expect(n).toBeGreaterThanOrEqual(ids.length);
    expect(n).toBeLessThanOrEqual(next);
    const got = await must('get', { collection: COLL, ids, opts: { withVector: true } });
    const byId = new Map((got.points as { id: number; vector: number[]; payload: { i: number } }[]).map((p) => [p.id, p]));
    const lost = ids.filter((i) => !byId.has(i));
    expect(lost).toEqual([]);
    for (const i of ids) {
      expect(byId.get(i)!.payload.i).toBe(i);
      expect(byId.get(i)!.vector[3]).toBeCloseTo(vec(i)[3], 4);
    }
  });

  it('with two hosts of three down no write is acknowledged; back, nothing acknowledged is lost', async () => {
    await Promise.all([killHost('a'), killHost('b')]);
    log.push('----- hosts a and b down -----');
    // JetStream on c alone has no majority: the write is refused or times out, never acknowledged.
    const before = acked.size;
    const a = await writeBatch();
    expect(a.ok, JSON.stringify(a)).toBe(false);
    expect(['UNAVAILABLE', 'TIMEOUT']).toContain(a.error!.code);
    expect(acked.size).toBe(before);
    console.log(`hosts a and b down: the write got ${a.error!.code} after ${a.ms} ms`);
    for (const h of ['a', 'b'] as const) startNats(h);
    for (const h of ['a', 'b'] as const) startProcesses(h);
    await waitFor('every replica live and caught up with hosts a and b back', () => allCaughtUp(6), 90_000, 500, context);
    await waitFor('a write acknowledged again', async () => ((await writeBatch()).ok ? true : undefined), 60_000, 500, context);
    const ids = [...acked];
    const got = await must('get', { collection: COLL, ids });
    expect(ids.filter((i) => !(got.points as { id: number }[]).some((p) => p.id === i))).toEqual([]);
  });

  it('a user added with vdb deploy --add-user connects once every host has its accounts file and reloads', async () => {
    execFileSync(process.execPath, [CLI, 'deploy', '--out', join(dir, 'out'), '--add-user', 'alice', '--role', 'reader'], { cwd: ROOT, stdio: 'pipe' });
    const as = { collection: COLL, creds: join(dir, 'out', 'credentials', 'alice.json'), points: [{ id: 'alice', vector: vec(0) }] };
    expect((await call('as', as)).ok).toBe(false);
    // Copy to the hosts, then `systemctl reload vdb-nats` (ExecReload: SIGHUP) on each.
    for (const h of HOSTS) cpSync(join(dir, 'out', h, 'etc', 'accounts.conf'), join(dir, 'hosts', h, 'etc', 'accounts.conf'));
    for (const h of HOSTS) procs.get(`${h}/nats`)!.child.kill('SIGHUP');
    const r = await waitFor('alice connects', async () => {
      const a = await call('as', as);
      return a.ok ? a.result : undefined;
    }, 30_000, 500, context);
    expect(r.count).toBeGreaterThanOrEqual(acked.size);
    expect(r.upsert).toBe('PERMISSION_DENIED');
  });
});
