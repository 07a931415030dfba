// A real nats-server started by cluster/nats-server.ts: clients connect to it,
// request/reply and JetStream (stream publish, KV) work, stop() leaves no
// process and no bound port behind, and a missing binary is a clear coded
// error. These tests FAIL, never skip, when nats-server is not installed: the
// cluster cannot run without it, and the failure says how to install it.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, StringCodec } from 'nats';
import { ErrorCode, VdbError } from '../ts/errors.js';
import { execFileSync } from 'node:child_process';
import { DEFAULT_MAX_PAYLOAD, findNatsServer, freePort, startNatsCluster, startNatsServer } from '../cluster/nats-server.js';
import { jetstreamReplicas } from '../cluster/meta.js';
import { natsServers } from '../cluster/nats-connect.js';

const sc = StringCodec();
let tmp: string;

beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), 'vdb-nats-'));
});

afterAll(() => {
  rmSync(tmp, { recursive: true, force: true });
});

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code !== 'ESRCH';
  }
}

/** Resolves true if `port` can be bound on 127.0.0.1 right now. */
function portFree(port: number): Promise<boolean> {
  return new Promise((r) => {
    const srv = createServer();
    srv.once('error', () => r(false));
    srv.listen({ port, host: '127.0.0.1', exclusive: true }, () => srv.close(() => r(true)));
  });
}

/** Runs `fn` with VDB_NATS_SERVER set to `value`, restoring it afterwards. */
async function withBinary<T>(value: string, fn: () => Promise<T>): Promise<T> {
  const before = process.env.VDB_NATS_SERVER;
  process.env.VDB_NATS_SERVER = value;
  try {
    return await fn();
  } finally {
    if (before === undefined) delete process.env.VDB_NATS_SERVER;
    else process.env.VDB_NATS_SERVER = before;
  }
}

describe('nats-server', () => {
  it('is installed (apt-get install -y nats-server)', () => {
    // Throws the install hint when missing, so the suite fails with it.
    expect(findNatsServer()).toMatch(/nats-server$/);
  });

  it('starts with JetStream, serves request/reply, streams and KV, and stops cleanly', async () => {
    const dir = join(tmp, 'a');
    const logged: string[] = [];
    const srv = await startNatsServer({ dir, log: (l) => logged.push(l) });
    let stopped = false;
    try {
      expect(srv.url).toBe(`nats://127.0.0.1:${srv.port}`);
      expect(srv.port).toBeGreaterThan(0);
      expect(srv.monitorPort).toBeGreaterThan(0);
      expect(srv.monitorPort).not.toBe(srv.port);
      expect(alive(srv.pid)).toBe(true);
      expect(existsSync(srv.configFile)).toBe(true);
      expect(logged.some((l) => /Server is ready/.test(l))).toBe(true);

      const nc = await connect({ servers: srv.url });
      try {
        expect(nc.info?.max_payload).toBe(DEFAULT_MAX_PAYLOAD);

        // Core request/reply.
        const sub = nc.subscribe('echo', {
          callback: (err, msg) => {
            if (!err) msg.respond(sc.encode(`echo: ${sc.decode(msg.data)}`));
          },
        });
        const reply = await nc.request('echo', sc.encode('hi'), { timeout: 2_000 });
        expect(sc.decode(reply.data)).toBe('echo: hi');
        sub.unsubscribe();

        // JetStream stream publish, acknowledged and stored.
        const jsm = await nc.jetstreamManager();
        await jsm.streams.add({ name: 'T', subjects: ['t.>'] });
        const js = nc.jetstream();
        const ack1 = await js.publish('t.a', sc.encode('one'));
        const ack2 = await js.publish('t.b', sc.encode('two'));
        expect([ack1.seq, ack2.seq]).toEqual([1, 2]);
        expect((await jsm.streams.info('T')).state.messages).toBe(2);
        expect(sc.decode((await jsm.streams.getMessage('T', { seq: 2 })).data)).toBe('two');

        // KV put/get, with the revision compare-and-set the metadata relies on.
        const kv = await js.views.kv('meta');
        const rev = await kv.put('shards', sc.encode('{"epoch":1}'));
        const entry = await kv.get('shards');
        expect(entry && sc.decode(entry.value)).toBe('{"epoch":1}');
        expect(entry?.revision).toBe(rev);
        await kv.update('shards', sc.encode('{"epoch":2}'), rev);
        await expect(kv.update('shards', sc.encode('{"epoch":3}'), rev)).rejects.toThrow();
      } finally {
        await nc.close();
      }
      // The store lives under dir/jetstream.
      expect(readdirSync(join(dir, 'jetstream')).length).toBeGreaterThan(0);

      await srv.stop();
      stopped = true;
      expect(alive(srv.pid)).toBe(false);
      const how = await srv.exited;
      // nats-server shuts down gracefully on SIGTERM but exits with status 1.
      expect(how.code === 0 || how.code === 1 || how.signal === 'SIGTERM', JSON.stringify(how)).toBe(true);
      expect(await portFree(srv.port)).toBe(true);
      expect(await portFree(srv.monitorPort)).toBe(true);
      await srv.stop(); // a second stop is a no-op
    } finally {
      if (!stopped) await srv.stop();
    }
  });

  it('keeps JetStream data across a stop and a new start on the same dir', async () => {
    const dir = join(tmp, 'b');
    const first = await startNatsServer({ dir });
    try {
      const nc = await connect({ servers: first.url });
      const kv = await nc.jetstream().views.kv('meta');
      await kv.put('k', sc.encode('v'));
      await nc.close();
    } finally {
      await first.stop();
    }
    const second = await startNatsServer({ dir });
    try {
      const nc = await connect({ servers: second.url });
      const kv = await nc.jetstream().views.kv('meta');
      const e = await kv.get('k');
      expect(e && sc.decode(e.value)).toBe('v');
      await nc.close();
    } finally {
      await second.stop();
    }
  });

  it('honours port and maxPayload', async () => {
    const port = await freePort();
    const srv = await startNatsServer({ dir: join(tmp, 'c'), port, maxPayload: 2 * 1024 * 1024 });
    try {
      expect(srv.port).toBe(port);
      const nc = await connect({ servers: srv.url });
      expect(nc.info?.max_payload).toBe(2 * 1024 * 1024);
      await nc.close();
    } finally {
      await srv.stop();
    }
  });

  it('reports a port in use with the server log', async () => {
    const sockets = new Set<Socket>();
    const blocker = createServer((s) => sockets.add(s));
    await new Promise<void>((r) => blocker.listen({ port: 0, host: '127.0.0.1' }, r));
    const port = (blocker.address() as { port: number }).port;
    try {
      const err = await startNatsServer({ dir: join(tmp, 'd'), port }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(VdbError);
      expect((err as VdbError).code).toBe(ErrorCode.UNAVAILABLE);
      expect((err as VdbError).message).toMatch(/exited \(status 1\) before it was ready: .*\[FTL\].*address already in use/);
    } finally {
      for (const s of sockets) s.destroy();
      await new Promise((r) => blocker.close(r));
    }
  });

  it('a server that dies or never gets ready fails with its log, and is not left running', async () => {
    const dies = join(tmp, 'dies.sh');
    writeFileSync(dies, '#!/bin/sh\necho "[1] [FTL] something broke" >&2\nexit 3\n', { mode: 0o755 });
    const e1 = await withBinary(dies, () => startNatsServer({ dir: join(tmp, 'g') }).catch((e: unknown) => e));
    expect(e1).toMatchObject({ code: ErrorCode.UNAVAILABLE });
    expect((e1 as Error).message).toMatch(/exited \(status 3\) before it was ready: \[1\] \[FTL\] something broke/);

    const pidFile = join(tmp, 'hang.pid');
    const hangs = join(tmp, 'hangs.sh');
    writeFileSync(hangs, `#!/bin/sh\necho $$ > ${pidFile}\nexec sleep 30\n`, { mode: 0o755 });
    const t0 = Date.now();
    const e2 = await withBinary(hangs, () => startNatsServer({ dir: join(tmp, 'h'), readyTimeoutMs: 600 }).catch((e: unknown) => e));
    expect(Date.now() - t0).toBeLessThan(5_000);
    expect(e2).toMatchObject({ code: ErrorCode.UNAVAILABLE });
    expect((e2 as Error).message, (e2 as Error).message).toMatch(/did not serve clients and JetStream within 600 ms/);
    expect(alive(Number(readFileSync(pidFile, 'utf8')))).toBe(false);
  });

  it('picks new ports when a free port was taken before the server bound it', async () => {
    // A wrapper that fails to bind the first time, then runs the real server.
    const count = join(tmp, 'bind-count');
    const flaky = join(tmp, 'flaky.sh');
    writeFileSync(
      flaky,
      `#!/bin/sh\nif [ ! -e ${count} ]; then touch ${count}; ` +
        `echo '[1] [FTL] Error listening on port: 127.0.0.1:1, "listen tcp 127.0.0.1:1: bind: address already in use"' >&2; exit 1; fi\n` +
        `exec ${findNatsServer()} "$@"\n`,
      { mode: 0o755 },
    );
    const srv = await withBinary(flaky, () => startNatsServer({ dir: join(tmp, 'i') }));
    try {
      expect(existsSync(count)).toBe(true);
      const nc = await connect({ servers: srv.url });
      await nc.jetstreamManager();
      await nc.close();
    } finally {
      await srv.stop();
    }
  });

  it('refuses bad options', async () => {
    for (const o of [{ maxPayload: 0 }, { maxPayload: 128 * 1024 * 1024 }, { port: 70000 }, { port: 1.5 }, { sync: 'sometimes' }, { sync: '5' }]) {
      await expect(startNatsServer({ dir: join(tmp, 'e'), ...o })).rejects.toMatchObject({ code: ErrorCode.INVALID_ARGUMENT });
    }
  });

  it('a missing binary is UNAVAILABLE with the install hint', async () => {
    const missing = join(tmp, 'no-such-dir', 'nats-server');
    const err = await withBinary(missing, () => startNatsServer({ dir: join(tmp, 'f') }).catch((e: unknown) => e));
    expect(err).toBeInstanceOf(VdbError);
    expect((err as VdbError).code).toBe(ErrorCode.UNAVAILABLE);
    expect((err as VdbError).message).toContain(
      'nats-server not found: install it with `apt-get install -y nats-server` (Debian) or put it on PATH',
    );
    expect((err as VdbError).message).toContain(missing);
    // Nothing is searched on PATH either.
    expect(() => findNatsServer({ PATH: '/nonexistent', VDB_NATS_SERVER: missing })).toThrow(/apt-get install -y nats-server/);
  });

  it('sync writes sync_interval into the config; a server older than 2.10 refuses it with a clear error', async () => {
    // A stand-in for nats-server 2.9, which does not know the field.
    const old = join(tmp, 'old.sh');
    writeFileSync(old, '#!/bin/sh\necho \'[1] [FTL] nats-server.conf:9:2: unknown field "sync_interval"\' >&2\nexit 1\n', { mode: 0o755 });
    const err = await withBinary(old, () => startNatsServer({ dir: join(tmp, 's1'), sync: 'always' }).catch((e: unknown) => e));
    expect(err).toMatchObject({ code: ErrorCode.UNAVAILABLE });
    expect((err as Error).message).toMatch(/needs nats-server 2\.10 or later/);
    expect(readFileSync(join(tmp, 's1', 'nats-server.conf'), 'utf8')).toMatch(/jetstream \{[^}]*sync_interval: "always"/);

    // The installed server: starts with it from 2.10 on, refuses it before.
    const [major, minor] = (/v(\d+)\.(\d+)/.exec(execFileSync(findNatsServer(), ['--version'], { encoding: 'utf8' })) ?? []).slice(1).map(Number);
    const real = await startNatsServer({ dir: join(tmp, 's2'), sync: 'always' }).catch((e: unknown) => e);
    if (major > 2 || (major === 2 && minor >= 10)) {
      expect(real).not.toBeInstanceOf(Error);
      await (real as Awaited<ReturnType<typeof startNatsServer>>).stop();
    } else {
      expect((real as Error).message).toMatch(/needs nats-server 2\.10 or later/);
    }
  });

  it('a standalone server asks for 1 replica', async () => {
    const srv = await startNatsServer({ dir: join(tmp, 'r1') });
    try {
      const nc = await connect({ servers: srv.url });
      expect(jetstreamReplicas(nc)).toBe(1);
      await nc.close();
    } finally {
      await srv.stop();
    }
  });

  it('startNatsCluster: three nodes in one cluster; an R3 stream keeps taking writes when a node is killed, and the node catches up after a restart', async () => {
    const cluster = await startNatsCluster({ dir: join(tmp, 'cluster') });
    try {
      expect(cluster.nodes).toHaveLength(3);
      expect(natsServers(cluster.url)).toEqual(cluster.urls);
      const ports = cluster.nodes.flatMap((n) => [n.port, n.clusterPort]);
      expect(new Set(ports).size).toBe(6);
      expect(new Set(cluster.nodes.map((n) => n.name)).size).toBe(3);

      const nc = await connect({ servers: cluster.urls, maxReconnectAttempts: -1 });
      expect(jetstreamReplicas(nc)).toBe(3);
      const jsm = await nc.jetstreamManager();
      await jsm.streams.add({ name: 'R3', subjects: ['r3'], num_replicas: 3 });
      const js = nc.jetstream();
      for (let i = 0; i < 10; i++) await js.publish('r3', sc.encode(`m${i}`));
      expect((await jsm.streams.info('R3')).cluster?.replicas).toHaveLength(2);

      const victim = cluster.nodes[0];
      const pid = victim.server!.pid;
      await victim.kill();
      expect(alive(pid)).toBe(false);
      expect(victim.server).toBeUndefined();
      // A majority is left: writes go on once the stream has a leader (at once, or after an election).
      let stored = 10;
      for (let i = 0; stored < 20 && i < 200; i++) {
        try {
          await js.publish('r3', sc.encode(`after${stored}`), { timeout: 1_000 });
          stored++;
        } catch {
          await new Promise((r) => setTimeout(r, 100));
        }
      }
      expect(stored).toBe(20);

      await victim.start();
      expect(victim.server!.port).toBe(victim.port);
      // The restarted node catches up: asked directly, it has all 20 messages.
      const direct = await connect({ servers: victim.url, ignoreClusterUpdates: true });
      try {
        expect(direct.info?.server_name).toBe(victim.name);
        let messages = 0;
        for (let i = 0; messages < 20 && i < 100; i++) {
          const r = await direct.request('$JS.API.STREAM.INFO.R3', undefined, { timeout: 2_000 }).catch(() => undefined);
          messages = r ? (JSON.parse(sc.decode(r.data)) as { state?: { messages: number } }).state?.messages ?? 0 : 0;
          if (messages < 20) await new Promise((res) => setTimeout(res, 100));
        }
        expect(messages).toBe(20);
      } finally {
        await direct.close();
      }
      await nc.close();
    } finally {
      await cluster.stop();
    }
    for (const n of cluster.nodes) expect(n.server).toBeUndefined();
  }, 60_000);
});
