// The web console's plain functions: the exposition-format parser, readings
// and chart series, process and shard states, the token and the routing.
// The browser test against a real cluster is test/console.test.ts.

import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseMetrics, quantile, reading, series } from '../cluster/console-metrics.js';
import type { Reading } from '../cluster/console-metrics.js';
import { overview, poller, processState, shardHealth } from '../cluster/console-state.js';
import type { StatusReply } from '../cluster/console-state.js';
import { COOKIE, handle, presented, sameToken } from '../cluster/console-http.js';
import type { ConsoleApi, Reply, Request } from '../cluster/console-http.js';
import { tokenFrom } from '../cluster/console-command.js';
import { VdbError } from '../ts/errors.js';

const escape = (v: string) => v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');

describe('parseMetrics', () => {
  it('reads back every sample of a rendered exposition, labels with quotes, backslashes and newlines included', () => {
    const name = fc.stringMatching(/^[a-zA-Z_:][a-zA-Z0-9_:]{0,20}$/);
    const labels = fc.dictionary(fc.stringMatching(/^[a-zA-Z_][a-zA-Z0-9_]{0,10}$/), fc.string({ maxLength: 12 }), { maxKeys: 3 });
    const value = fc.oneof(fc.double({ noNaN: true }), fc.integer());
    fc.assert(fc.property(fc.array(fc.record({ name, labels, value }), { maxLength: 8 }), (samples) => {
      const text = ['# HELP x some help', '# TYPE x gauge', '',
        ...samples.map((s) => {
          const ls = Object.entries(s.labels).map(([k, v]) => `${k}="${escape(v)}"`).join(',');
          const v = s.value === Infinity ? '+Inf' : s.value === -Infinity ? '-Inf' : String(s.value);
          return `${s.name}${ls ? `{${ls}}` : ''} ${v}`;
        })].join('\n');
      const got = parseMetrics(text);
      // + 0: String(-0) is "0".
      expect(got).toEqual(samples.map((s) => ({ name: s.name, labels: s.labels, value: s.value + 0 })));
    }));
  });

  it('leaves out malformed lines and keeps the rest', () => {
    expect(parseMetrics('ok 1\nbad{x="1" 2\n{x="1"} 3\nalso_ok{a="b"} 4 1700000000000\nnot_a_number abc')).toEqual([
      { name: 'ok', labels: {}, value: 1 },
      { name: 'also_ok', labels: { a: 'b' }, value: 4 },
    ]);
  });
});

const shardText = (rows: [string, number, number][]) => rows.map(([c, s, n]) => `vdb_shard_points{collection="${c}",shard="${s}"} ${n}`).join('\n');

function coordText(op: string, count: number, sum: number, buckets: [string, number][]): string {
  return [
    ...buckets.map(([le, n]) => `vdb_coordinator_request_seconds_bucket{op="${op}",le="${le}"} ${n}`),
    `vdb_coordinator_request_seconds_sum{op="${op}"} ${sum}`,
    `vdb_coordinator_request_seconds_count{op="${op}"} ${count}`,
  ].join('\n');
}

describe('reading and series', () => {
  it('counts each shard once however many replicas report it, and sums coordinators', () => {
    const r = reading(1000, [shardText([['a', 0, 10], ['a', 1, 5]]), shardText([['a', 0, 9], ['b', 0, 3]])],
      [coordText('search', 4, 0.4, [['0.1', 4], ['+Inf', 4]]), coordText('search', 6, 1.2, [['0.1', 2], ['+Inf', 6]])]);
    expect(r.points).toEqual({ a: 15, b: 3 });
    expect(r.requests.search).toEqual({ count: 10, sum: 1.6, buckets: [[0.1, 6], [Infinity, 10]] });
  });

  it('rates and latency per interval; an interval where a counter went back is blank', () => {
    const at = (t: number, count: number, sum: number, fast: number): Reading => reading(t, [shardText([['a', 0, count]])],
      [coordText('search', count, sum, [['0.01', fast], ['0.1', count], ['+Inf', count]])]);
    const s = series([at(0, 0, 0, 0), at(2000, 100, 2, 100), at(4000, 300, 12, 200), at(6000, 10, 1, 10)]);
    expect(s.t).toEqual([2000, 4000, 6000]);
    expect(s.rate.search).toEqual([50, 100, null]);
    expect(s.searchMeanMs[0]).toBeCloseTo(20);
    expect(s.searchMeanMs[1]).toBeCloseTo(50);
    expect(s.searchMeanMs[2]).toBeNull();
    expect(s.searchP99Ms[0]).toBeCloseTo(9.9); // all 100 under 10 ms: 99th of 100 at 0.99 of the bucket
    expect(s.searchP99Ms[1]).toBeCloseTo(10 + 90 * (198 - 100) / 100); // 100 fast, 100 in (10 ms, 100 ms]
    expect(s.points.a).toEqual([100, 300, 10]);
  });

  it('a quantile lies in the bucket holding its rank and grows with q', () => {
    const hist = fc.array(fc.tuple(fc.integer({ min: 1, max: 1000 }), fc.nat(50)), { minLength: 1, maxLength: 10 }).map((raw) => {
      const bounds = [...new Set(raw.map(([b]) => b / 100))].sort((a, b) => a - b);
      let cum = 0;
      const buckets: [number, number][] = bounds.map((le, i) => [le, (cum += raw[i]?.[1] ?? 0)]);
      buckets.push([Infinity, cum + (raw[0][1] % 3)]);
      return buckets;
    });
    fc.assert(fc.property(hist, fc.double({ min: 0, max: 1, noNaN: true }), fc.double({ min: 0, max: 1, noNaN: true }), (b, q1, q2) => {
      const total = b[b.length - 1][1];
      const [lo, hi] = [Math.min(q1, q2), Math.max(q1, q2)];
      const a = quantile(lo, b);
      const z = quantile(hi, b);
      if (total === 0) {
        expect(a).toBeUndefined();
        return;
      }
      expect(a).toBeLessThanOrEqual(z! + 1e-12);
      const i = b.findIndex(([, cum]) => cum >= hi * total);
      const lower = i === 0 ? 0 : b[i - 1][0];
      const upper = b[i][0] === Infinity ? lower : b[i][0];
      expect(z).toBeGreaterThanOrEqual(lower - 1e-12);
      expect(z).toBeLessThanOrEqual(upper + 1e-12);
    }));
  });
});

describe('states', () => {
  it('a process is down once its lease ran out, whatever its probe; else as its /healthz says', () => {
    expect(processState(false, { reachable: true, ok: true })).toBe('down');
    expect(processState(true, undefined)).toBe('up');
    expect(processState(true, { reachable: false, ok: false })).toBe('unreachable');
    expect(processState(true, { reachable: true, ok: false })).toBe('unhealthy');
    expect(processState(true, { reachable: true, ok: true })).toBe('up');
  });

  it('a shard is down with no serving replica, degraded with some', () => {
    const r = (live: boolean, failed?: string) => ({ member: 'm', live, applied: 1, lag: 0, failed });
    expect(shardHealth([r(true), r(true)])).toBe('ok');
    expect(shardHealth([r(true), r(false)])).toBe('degraded');
    expect(shardHealth([r(true), r(true, 'disk')])).toBe('degraded');
    expect(shardHealth([r(false), r(true, 'disk')])).toBe('down');
  });

  it('keeps a member seen before on the page, down, with its replicas', () => {
    const gone = { name: 'shard-1', role: 'shard', pid: 2, heartbeat: 1000, metricsPort: 9 };
    const live = { name: 'shard-0', role: 'shard', pid: 1, heartbeat: 9000, metricsPort: 8 };
    const st = {
      members: [live], balancer: null,
      collections: [{ name: 'c', shards: [
        { shard: 0, logSeq: 5, firstSeq: 1, count: 3, replicas: [{ member: 'shard-0', live: true, applied: 5, lag: 0 }] },
        { shard: 1, logSeq: 5, firstSeq: 1, count: null, replicas: [{ member: 'shard-1', live: false, applied: null, lag: null }] },
      ] }],
    };
    const o = overview(st, new Map([[gone.name, gone], [live.name, live]]), new Map(), series([]), 10_000);
    expect(o.processes.map((p) => [p.name, p.state, p.shards])).toEqual([['shard-0', 'up', ['c/0']], ['shard-1', 'down', ['c/1']]]);
    expect(o.processes[1].heartbeatAgeMs).toBe(9000);
    expect(o.collections[0].points).toBeNull();
    expect(o.collections[0].shards.map((s) => s.health)).toEqual(['ok', 'down']);
  });
});

describe('poller', () => {
  it('asks status and every live process, shows their states, and keeps the last answer when status fails', async () => {
    let t = 10_000;
    const member = (name: string, role: string, port: number) => ({ name, role, pid: port, heartbeat: t - 500, metricsPort: port });
    let reply: StatusReply | Error = {
      members: [member('c-0', 'coordinator', 1), member('shard-0', 'shard', 2), member('shard-1', 'shard', 3), member('shard-2', 'shard', 4)],
      collections: [{ name: 'c', shards: [{ shard: 0, logSeq: 4, firstSeq: 1, count: 7, replicas: [{ member: 'shard-0', live: true, applied: 3, lag: 1 }] }] }],
      balancer: null,
    };
    const asked: string[] = [];
    const texts: Record<string, string> = {
      'http://127.0.0.1:1/healthz': '{"ok":true}',
      'http://127.0.0.1:1/metrics': coordText('search', 5, 0.05, [['0.01', 5], ['+Inf', 5]]),
      'http://127.0.0.1:2/healthz': '{"ok":true}',
      'http://127.0.0.1:2/metrics': shardText([['c', 0, 7]]),
      'http://127.0.0.1:3/healthz': '{"ok":false,"detail":{}}',
      'http://127.0.0.1:3/metrics': '',
    };
    const p = poller({
      metricsHost: '127.0.0.1',
      now: () => t,
      status: async () => {
        if (reply instanceof Error) throw reply;
        return reply;
      },
      fetchText: async (url) => {
        asked.push(url);
        if (texts[url] === undefined) throw new Error('ECONNREFUSED');
        return texts[url];
      },
    });
    expect(p.latest()).toBeUndefined();
    const first = await p.poll();
    expect(asked.sort()).toEqual([1, 2, 3, 4].flatMap((n) => [`http://127.0.0.1:${n}/healthz`, `http://127.0.0.1:${n}/metrics`]));
    expect(first.processes.map((x) => [x.name, x.state])).toEqual([['c-0', 'up'], ['shard-0', 'up'], ['shard-1', 'unhealthy'], ['shard-2', 'unreachable']]);
    expect(first.collections[0].shards[0].replicas[0].lag).toBe(1);
    t += 2000;
    texts['http://127.0.0.1:1/metrics'] = coordText('search', 25, 0.45, [['0.01', 15], ['+Inf', 25]]);
    const second = await p.poll();
    expect(second.charts.rate.search).toEqual([10]);
    expect(second.charts.searchMeanMs[0]).toBeCloseTo(20);
    expect(second.charts.points.c).toEqual([7]);
    t += 2000;
    reply = new VdbError('PERMISSION_DENIED', 'not allowed');
    const third = await p.poll();
    expect(third.error).toEqual({ code: 'PERMISSION_DENIED', message: 'not allowed' });
    expect(third.collections).toEqual(second.collections);
    expect(third.charts.t).toEqual(second.charts.t);
    expect(p.latest()).toBe(third);
  });
});

describe('token and routing', () => {
  const TOKEN = 'unit-test-token-0123456789';
  const files = new Map<string, Reply>([
    ['/', { status: 200, headers: {}, body: 'page' }],
    ['/login', { status: 200, headers: {}, body: 'login form' }],
    ['/console.css', { status: 200, headers: {}, body: 'css' }],
  ]);
  const calls: unknown[][] = [];
  const api: ConsoleApi = {
    overview: () => ({ processes: [] }),
    describe: async (name) => {
      if (name !== 'c') throw new VdbError('COLLECTION_NOT_FOUND', `no collection ${name}`);
      return { name };
    },
    get: async (...a) => {
      calls.push(['get', ...a]);
      return { points: [{ id: 1, vector: new Float32Array([0.5, 1]) }] };
    },
    search: async (...a) => {
      calls.push(['search', ...a]);
      return { hits: [], partial: false, tookMs: 1 };
    },
  };
  const req = (method: string, url: string, headers: Request['headers'] = {}, body = ''): Request => ({ method, url, headers, body });
  const auth = { authorization: `Bearer ${TOKEN}` };
  const body = (r: Reply) => JSON.parse(String(r.body)) as Record<string, any>;

  it('compares tokens exactly and reads them from the header or the cookie', () => {
    fc.assert(fc.property(fc.string(), fc.string(), (a, b) => {
      expect(sameToken(a, b)).toBe(a === b);
    }));
    expect(presented({ authorization: 'Bearer abc' })).toBe('abc');
    expect(presented({ cookie: `other=1; ${COOKIE}=xyz; more=2` })).toBe('xyz');
    expect(presented({ cookie: 'other=1' })).toBeUndefined();
    expect(presented({})).toBeUndefined();
    expect(presented({ cookie: `${COOKIE}=%E0%A4%A` })).toBeUndefined();
  });

  it('refuses everything but the login form and its style without the token', async () => {
    for (const [method, url] of [['GET', '/'], ['GET', '/api/overview'], ['POST', '/api/search'], ['GET', '/nothing']]) {
      for (const headers of [{}, { authorization: 'Bearer nope' }, { cookie: `${COOKIE}=nope` }]) {
        const r = await handle(api, files, TOKEN, req(method, url, headers, '{}'));
        expect(r.status, `${method} ${url}`).toBe(401);
        if (url.startsWith('/api/')) expect(body(r).error.code).toBe('UNAUTHENTICATED');
      }
    }
    expect((await handle(api, files, TOKEN, req('GET', '/login'))).status).toBe(200);
    expect((await handle(api, files, TOKEN, req('GET', '/console.css'))).body).toBe('css');
    expect(calls).toEqual([]);
  });

  it('logs in: the right token gets the cookie and a redirect, a wrong one 401', async () => {
    const ok = await handle(api, files, TOKEN, req('POST', '/login', {}, `token=${encodeURIComponent(TOKEN)}`));
    expect(ok.status).toBe(303);
    expect(ok.headers['Set-Cookie']).toMatch(new RegExp(`^${COOKIE}=${TOKEN}; .*HttpOnly; SameSite=Strict`));
    const cookie = ok.headers['Set-Cookie'].split(';')[0];
    expect((await handle(api, files, TOKEN, req('GET', '/', { cookie }))).body).toBe('page');
    expect((await handle(api, files, TOKEN, req('POST', '/login', {}, 'token=wrong'))).status).toBe(401);
    expect((await handle(api, files, TOKEN, req('POST', '/login', {}, ''))).status).toBe(401);
  });

  it('routes to the client calls; bad input and unknown paths get coded errors', async () => {
    calls.length = 0;
    const got = await handle(api, files, TOKEN, req('POST', '/api/point', auth, JSON.stringify({ collection: 'c', id: 1 })));
    expect(body(got)).toEqual({ points: [{ id: 1, vector: [0.5, 1] }] });
    await handle(api, files, TOKEN, req('POST', '/api/search', auth, JSON.stringify({ collection: 'c', vector: [1, 2], k: 3, filter: { a: 1 } })));
    expect(calls).toEqual([['get', 'c', [1], { withVector: true }], ['search', 'c', [1, 2], { k: 3, ef: undefined, filter: { a: 1 }, exact: undefined, withPayload: true }]]);
    const cases: [string, string, string, number, string][] = [
      ['POST', '/api/search', 'nope', 400, 'BAD_REQUEST'],
      ['POST', '/api/search', '[1]', 400, 'BAD_REQUEST'],
      ['POST', '/api/search', JSON.stringify({ vector: [1] }), 400, 'INVALID_ARGUMENT'],
      ['POST', '/api/search', JSON.stringify({ collection: 'c', vector: [1, 'x'] }), 400, 'INVALID_VECTOR'],
      ['POST', '/api/search', JSON.stringify({ collection: 'c', vector: [1], k: 1.5 }), 400, 'INVALID_ARGUMENT'],
      ['POST', '/api/search', JSON.stringify({ collection: 'c', vector: [1], filter: [1] }), 400, 'INVALID_FILTER'],
      ['POST', '/api/point', JSON.stringify({ collection: 'c', id: { x: 1 } }), 400, 'INVALID_ID'],
      ['GET', '/api/describe?name=zz', '', 404, 'COLLECTION_NOT_FOUND'],
      ['GET', '/api/describe', '', 400, 'INVALID_ARGUMENT'],
      ['GET', '/api/nothing', '', 404, 'UNKNOWN_ENDPOINT'],
      ['DELETE', '/', '', 404, 'UNKNOWN_ENDPOINT'],
    ];
    for (const [method, url, b, status, code] of cases) {
      const r = await handle(api, files, TOKEN, req(method, url, auth, b));
      expect([r.status, body(r).error?.code], `${method} ${url} ${b}`).toEqual([status, code]);
    }
  });

  it('takes the token from a file, else the environment, else makes one; a short one is refused', () => {
    const dir = mkdtempSync(join(tmpdir(), 'vdb-console-'));
    const file = join(dir, 'token');
    writeFileSync(file, 'from-the-file-0123456789\nsecond line\n', { mode: 0o600 });
    expect(tokenFrom(file, { VDB_CONSOLE_TOKEN: 'from-the-environment-0123' })).toEqual({ token: 'from-the-file-0123456789', generated: false });
    expect(tokenFrom(undefined, { VDB_CONSOLE_TOKEN: 'from-the-environment-0123' })).toEqual({ token: 'from-the-environment-0123', generated: false });
    const a = tokenFrom(undefined, {});
    expect(a.generated).toBe(true);
    expect(a.token).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(tokenFrom(undefined, {}).token).not.toBe(a.token);
    expect(() => tokenFrom(undefined, { VDB_CONSOLE_TOKEN: 'short' })).toThrow(/at least 16/);
  });
});
