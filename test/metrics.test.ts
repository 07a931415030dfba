// The registry of cluster/metrics.ts (prom-client with a registry per
// process): its text output, read back by an independent parser of the
// exposition format 0.0.4 and checked by `promtool check metrics`, holds the
// recorded values and Node's process metrics; histogram buckets are
// cumulative with +Inf equal to the count; label values survive escaping; the
// shard and coordinator metric helpers compute what they say; and the HTTP
// endpoint answers /metrics and /healthz with the right status codes.

import { afterEach, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { ErrorCode } from '../ts/errors.js';
import { LATENCY_BUCKETS, METRICS_CONTENT_TYPE, Registry, serveMetrics } from '../cluster/metrics.js';
import type { MetricsServer } from '../cluster/metrics.js';
import { lagSeconds, shardMetrics } from '../cluster/shard-metrics.js';
import type { ServedShard } from '../cluster/replica.js';
import type { JetStreamManager } from 'nats';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from './cluster-helpers.js';
import { coordinatorMetrics, shardHealth } from '../cluster/coordinator-metrics.js';
import { natsMetrics } from '../cluster/process-metrics.js';
import type { Member } from '../cluster/meta.js';
import { promtool } from './prometheus-helpers.js';

// ------------------------------------------------ a small exposition parser

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

interface Parsed {
  help: Map<string, string>;
  type: Map<string, string>;
  samples: Sample[];
}

function unescape(s: string, quotes: boolean): string {
  let out = '';
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    if (c !== '\\') {
      out += c;
      continue;
    }
    const n = s[++i];
    if (n === '\\') out += '\\';
    else if (n === 'n') out += '\n';
    else if (n === '"' && quotes) out += '"';
    else throw new Error(`bad escape \\${n} in ${JSON.stringify(s)}`);
  }
  return out;
}

function parseValue(s: string): number {
  if (s === '+Inf') return Infinity;
  if (s === '-Inf') return -Infinity;
  if (/^nan$/i.test(s)) return NaN; // Go's ParseFloat, as Prometheus reads it, takes any case
  if (!/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(s)) throw new Error(`bad value ${JSON.stringify(s)}`);
  return Number(s);
}

/** Parses the labels between `{` and `}` starting at text[i] === '{'; returns them and the index after `}`. */
function parseLabels(text: string, i: number): [Record<string, string>, number] {
  const labels: Record<string, string> = {};
  i++; // {
  while (text[i] !== '}') {
    const m = /^[a-zA-Z_][a-zA-Z0-9_]*/.exec(text.slice(i));
    if (!m) throw new Error(`bad label name at ${i} in ${text}`);
    const name = m[0];
    i += name.length;
    if (text[i] !== '=' || text[i + 1] !== '"') throw new Error(`expected =" at ${i} in ${text}`);
    i += 2;
    let raw = '';
    while (text[i] !== '"') {
      if (i >= text.length) throw new Error(`unterminated label value in ${text}`);
      if (text[i] === '\\') raw += text[i++];
      raw += text[i++];
    }
    i++; // closing quote
    if (name in labels) throw new Error(`duplicate label ${name}`);
    labels[name] = unescape(raw, true);
    if (text[i] === ',') i++;
    else if (text[i] !== '}') throw new Error(`expected , or } at ${i} in ${text}`);
  }
  return [labels, i + 1];
}

function parse(text: string): Parsed {
  expect(text.endsWith('\n')).toBe(true);
  const out: Parsed = { help: new Map(), type: new Map(), samples: [] };
  for (const line of text.slice(0, -1).split('\n')) {
    let m: RegExpExecArray | null;
    if (line === '') continue; // blank lines are allowed between families
    if ((m = /^# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) (.*)$/.exec(line))) {
      expect(out.help.has(m[1]!), `second HELP for ${m[1]}`).toBe(false);
      out.help.set(m[1]!, unescape(m[2]!, false));
    } else if ((m = /^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped)$/.exec(line))) {
      expect(out.type.has(m[1]!), `second TYPE for ${m[1]}`).toBe(false);
      out.type.set(m[1]!, m[2]!);
    } else if (line.startsWith('#')) {
      throw new Error(`unexpected comment ${line}`);
    } else {
      const nm = /^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(line);
      if (!nm) throw new Error(`bad sample line ${JSON.stringify(line)}`);
      let i = nm[0].length;
      let labels: Record<string, string> = {};
      if (line[i] === '{') [labels, i] = parseLabels(line, i);
      if (line[i] !== ' ') throw new Error(`expected a space at ${i} in ${line}`);
      const value = parseValue(line.slice(i + 1));
      // A sample belongs to a family whose TYPE came before it.
      const family = nm[0].replace(/_(bucket|sum|count)$/, '');
      expect(out.type.has(nm[0]) || out.type.get(family) === 'histogram', `TYPE before ${nm[0]}`).toBe(true);
      out.samples.push({ name: nm[0], labels, value });
    }
  }
  return out;
}

function find(p: Parsed, name: string, labels: Record<string, string> = {}): number | undefined {
  // Label order is not significant.
  const key = (l: Record<string, string>) => JSON.stringify(Object.entries(l).sort(([a], [b]) => a.localeCompare(b)));
  const s = p.samples.filter((x) => x.name === name && key(x.labels) === key(labels));
  expect(s.length).toBeLessThanOrEqual(1);
  return s[0]?.value;
}

// ------------------------------------------------------------- registry

/** A registry without Node's process metrics, for tests about exact output. */
const bare = () => new Registry({ defaults: false });

describe('registry render', () => {
  it('counters and gauges, labelled and not, read back', async () => {
    const r = bare();
    const req = r.counter('vdb_requests_total', 'Requests served.', { labels: ['op', 'code'] });
    r.counter('vdb_restarts_total', 'Restarts.');
    const size = r.gauge('vdb_shard_points', 'Points per shard.', { labels: ['shard'] });
    const mem = r.gauge('vdb_wasm_memory_bytes', 'Wasm memory.');
    req.inc({ op: 'search', code: 'OK' });
    req.inc({ op: 'search', code: 'OK' }, 2);
    req.labels({ op: 'upsert', code: 'TIMEOUT' }).inc();
    size.set({ shard: 0 }, 1000);
    size.set({ shard: 1 }, 5);
    size.labels({ shard: 1 }).inc(3);
    size.dec({ shard: 0 }, 10);
    let collected = 0;
    r.onCollect(() => mem.set(++collected * 65536));

    const p = parse(await r.render());
    expect(p.type.get('vdb_requests_total')).toBe('counter');
    expect(p.type.get('vdb_shard_points')).toBe('gauge');
    expect(p.help.get('vdb_requests_total')).toBe('Requests served.');
    expect(find(p, 'vdb_requests_total', { op: 'search', code: 'OK' })).toBe(3);
    expect(find(p, 'vdb_requests_total', { op: 'upsert', code: 'TIMEOUT' })).toBe(1);
    expect(find(p, 'vdb_restarts_total')).toBe(0); // unlabelled: shown before the first inc
    expect(find(p, 'vdb_shard_points', { shard: '0' })).toBe(990);
    expect(find(p, 'vdb_shard_points', { shard: '1' })).toBe(8);
    expect(find(p, 'vdb_wasm_memory_bytes')).toBe(65536);
    expect(find(parse(await r.render()), 'vdb_wasm_memory_bytes')).toBe(131072); // collectors run per render
  });

  it('histogram buckets are cumulative, +Inf equals the count, sum is the total', async () => {
    const r = bare();
    const h = r.histogram('vdb_op_seconds', 'Latency.', { labels: ['op'] });
    const values = [0.0001, 0.0005, 0.0007, 0.003, 0.2, 0.2, 1, 9.9, 10, 42];
    for (const v of values) h.observe({ op: 'search' }, v);
    h.labels({ op: 'get' }).observe(0.01);

    const p = parse(await r.render());
    expect(p.type.get('vdb_op_seconds')).toBe('histogram');
    const buckets = p.samples.filter((s) => s.name === 'vdb_op_seconds_bucket' && s.labels.op === 'search');
    expect(buckets.map((b) => b.labels.le)).toEqual([...LATENCY_BUCKETS.map(String), '+Inf']);
    for (const b of buckets) {
      const le = parseValue(b.labels.le!);
      expect(b.value, `le=${b.labels.le}`).toBe(values.filter((v) => v <= le).length);
    }
    expect(find(p, 'vdb_op_seconds_count', { op: 'search' })).toBe(values.length);
    expect(find(p, 'vdb_op_seconds_sum', { op: 'search' })).toBeCloseTo(values.reduce((a, b) => a + b, 0), 9);
    expect(find(p, 'vdb_op_seconds_bucket', { op: 'get', le: '0.005' })).toBe(0);
    expect(find(p, 'vdb_op_seconds_bucket', { op: 'get', le: '0.01' })).toBe(1);
  });

  it('any observations: buckets cumulative and exact (property)', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.double({ min: 0, max: 20, noNaN: true }), { maxLength: 60 }),
        fc.uniqueArray(fc.double({ min: 0.001, max: 15, noNaN: true }), { minLength: 1, maxLength: 6 }),
        async (values, rawBuckets) => {
          const buckets = [...rawBuckets].sort((a, b) => a - b);
          const r = bare();
          const h = r.histogram('h', 'h', { buckets });
          for (const v of values) h.observe(v);
          const p = parse(await r.render());
          const bs = p.samples.filter((s) => s.name === 'h_bucket');
          expect(bs.length).toBe(buckets.length + 1);
          let prev = 0;
          for (const b of bs) {
            expect(b.value).toBeGreaterThanOrEqual(prev);
            prev = b.value;
            expect(b.value).toBe(values.filter((v) => v <= parseValue(b.labels.le!)).length);
          }
          expect(bs.at(-1)!.labels.le).toBe('+Inf');
          expect(find(p, 'h_count')).toBe(values.length);
        },
      ),
      { numRuns: 100 },
    );
  });

  it('any label value round-trips (property)', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          fc.string({ unit: 'binary', maxLength: 20 }),
          // the characters escaping is about, dense
          fc.string({ unit: fc.constantFrom('"', '\\', '\n', 'n', 'a', '{', '}', ',', '=', ' '), maxLength: 12 }),
        ),
        async (v) => {
          const r = bare();
          r.gauge('g', 'g', { labels: ['x'] }).set({ x: v }, 7);
          const p = parse(await r.render());
          expect(p.samples).toEqual([{ name: 'g', labels: { x: v }, value: 7 }]);
        },
      ),
      { numRuns: 200 },
    );
  });

  it('special values render as Prometheus reads them', async () => {
    const r = bare();
    const g = r.gauge('s', 's', { labels: ['k'] });
    g.set({ k: 'inf' }, Infinity);
    g.set({ k: 'ninf' }, -Infinity);
    g.set({ k: 'nan' }, NaN);
    g.set({ k: 'tiny' }, 1e-9);
    const p = parse(await r.render());
    expect(find(p, 's', { k: 'inf' })).toBe(Infinity);
    expect(find(p, 's', { k: 'ninf' })).toBe(-Infinity);
    expect(find(p, 's', { k: 'nan' })).toBeNaN();
    expect(find(p, 's', { k: 'tiny' })).toBe(1e-9);
  });

  it('declaring a metric again returns it; another type or labels is INVALID_ARGUMENT', () => {
    const r = bare();
    const c = r.counter('c_total', 'x', { labels: ['op'] });
    expect(r.counter('c_total', 'x', { labels: ['op'] })).toBe(c);
    const invalid = { code: ErrorCode.INVALID_ARGUMENT };
    expect(() => r.gauge('c_total', 'x', { labels: ['op'] })).toThrow(expect.objectContaining(invalid));
    expect(() => r.counter('c_total', 'x', { labels: ['other'] })).toThrow(expect.objectContaining(invalid));
    expect(() => c.inc({ op: 'a', extra: 'b' })).toThrow(); // prom-client refuses undeclared labels
  });

  it("Node's process metrics, per registry: two registries do not share series", async () => {
    const a = new Registry();
    const b = new Registry();
    a.counter('only_a_total', 'x').inc(5);
    await new Promise((ok) => setTimeout(ok, 50)); // lets the event-loop monitor take samples
    const pa = parse(await a.render());
    const pb = parse(await b.render());
    for (const name of ['process_cpu_seconds_total', 'process_resident_memory_bytes', 'nodejs_heap_size_used_bytes', 'nodejs_eventloop_lag_seconds', 'nodejs_gc_duration_seconds']) {
      expect(pa.type.has(name), name).toBe(true);
      expect(pb.type.has(name), name).toBe(true);
    }
    expect(find(pa, 'only_a_total')).toBe(5);
    expect(pb.type.has('only_a_total')).toBe(false);
    // Gauges named like counters are left out (promtool would flag them).
    for (const [name, type] of pa.type) if (name.endsWith('_total')) expect(type, name).toBe('counter');
  });

  it('the output passes promtool check metrics', async () => {
    const r = new Registry();
    r.counter('vdb_x_total', 'Things.', { labels: ['op'] }).inc({ op: 'a"b' });
    r.gauge('vdb_y_bytes', 'Bytes.').set(3);
    r.histogram('vdb_z_seconds', 'Latency.', { labels: ['op'] }).observe({ op: 'search' }, 0.3);
    const out = promtool(['check', 'metrics'], await r.render());
    expect(out.status, out.output).toBe(0);
  });
});

describe('lag in seconds', () => {
  it('is the age of the entry being applied while more wait, never negative, 0 when none waits', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 2e12 }), fc.integer({ min: -5000, max: 1e9 }), (entryTime, age) => {
        expect(lagSeconds(entryTime, entryTime + age)).toBe(Math.max(0, age / 1000));
        expect(lagSeconds(undefined, entryTime + age)).toBe(0);
      }),
    );
  });
});

describe('shard metrics', () => {
  /** A served replica as the metrics read it. */
  const replica = (collection: string, shard: number, o: { points: number; applied: number; pending: number; pendingSince?: number; failed?: string }) =>
    ({ collection, shard, source: shard, applied: o.applied, pending: o.pending, pendingSince: o.pendingSince, failed: o.failed,
      stats: () => ({ points: o.points, skipped: 2, indexBytes: 65536 }) }) as unknown as ServedShard;

  it('a series per served replica, gone once it is not served; log sequences from JetStream, absent when it fails', async () => {
    const dir = tempDir('vdb-metrics-');
    try {
      writeFileSync(join(dir, 'vdb.sqlite'), Buffer.alloc(4096));
      writeFileSync(join(dir, 'vdb.sqlite-wal'), Buffer.alloc(100));
      let served = [
        replica('docs', 0, { points: 10, applied: 40, pending: 0 }),
        replica('docs', 1, { points: 7, applied: 30, pending: 5, pendingSince: Date.now() - 90_000, failed: 'disk I/O error' }),
      ];
      const jsm = { streams: { info: async (stream: string) => {
        if (stream === 'log-1') throw new Error('stream not found');
        return { state: { first_seq: 3, last_seq: 41 } };
      } } } as unknown as JetStreamManager;
      const r = bare();
      shardMetrics(r, {
        served: () => served, limits: { maxIndexBytes: 1 << 20, minFreeDiskBytes: 0 }, room: (sh) => sh.shard * 100,
        sqliteFile: join(dir, 'vdb.sqlite'), stream: (sh) => `log-${sh.shard}`, jsm: () => jsm, copies: () => ({ serving: 1, receiving: 0 }),
      });
      let p = parse(await r.render());
      const s0 = { collection: 'docs', shard: '0' };
      const s1 = { collection: 'docs', shard: '1' };
      expect(find(p, 'vdb_shard_points', s0)).toBe(10);
      expect(find(p, 'vdb_shard_applied_seq', s1)).toBe(30);
      expect(find(p, 'vdb_shard_lag_entries', s1)).toBe(5);
      expect(find(p, 'vdb_shard_lag_seconds', s0)).toBe(0);
      expect(find(p, 'vdb_shard_lag_seconds', s1)).toBeGreaterThanOrEqual(90);
      expect(find(p, 'vdb_shard_failed', s0)).toBe(0);
      expect(find(p, 'vdb_shard_failed', s1)).toBe(1);
      expect(find(p, 'vdb_shard_room_points', s1)).toBe(100);
      expect(find(p, 'vdb_shard_wasm_memory_limit_bytes', s0)).toBe(1 << 20);
      expect(find(p, 'vdb_shard_log_first_seq', s0)).toBe(3);
      expect(find(p, 'vdb_shard_log_last_seq', s0)).toBe(41);
      expect(find(p, 'vdb_shard_log_last_seq', s1)).toBeUndefined();
      expect(find(p, 'vdb_shard_sqlite_bytes')).toBe(4196);
      expect(find(p, 'vdb_shard_copies_in_flight', { direction: 'serving' })).toBe(1);

      served = served.slice(0, 1);
      p = parse(await r.render());
      expect(find(p, 'vdb_shard_points', s0)).toBe(10);
      expect(find(p, 'vdb_shard_points', s1)).toBeUndefined();
      const out = promtool(['check', 'metrics'], await r.render());
      expect(out.status, out.output).toBe(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('NATS connection metrics', () => {
  it('follow the connection state; disconnects count up as a counter', async () => {
    let state = { connected: true, since: 0, disconnects: 0 };
    const r = bare();
    natsMetrics(r, () => state);
    let p = parse(await r.render());
    expect(find(p, 'vdb_nats_connected')).toBe(1);
    expect(find(p, 'vdb_nats_disconnects_total')).toBe(0);
    state = { connected: false, since: 1, disconnects: 2 };
    p = parse(await r.render());
    expect(find(p, 'vdb_nats_connected')).toBe(0);
    expect(find(p, 'vdb_nats_disconnects_total')).toBe(2);
    expect(find(parse(await r.render()), 'vdb_nats_disconnects_total')).toBe(2); // read again: not counted twice
  });
});

describe('shard health from the metadata', () => {
  const member = (name: string, shards: Record<string, number>, failed?: Record<string, string>): Member =>
    ({ name, role: 'shard', pid: 1, heartbeat: 0, shards, ...(failed ? { failed } : {}) });

  it("a coordinator's gauges; a collection whose map cannot be read is left out", async () => {
    const r = bare();
    const counted = coordinatorMetrics(r, {
      collections: () => ['c', 'dropping'],
      shardMap: async (c) => (c === 'c' ? { replicas: [['a'], ['b']] } : Promise.reject(new Error('no collection'))),
      live: () => [member('a', { 'c/0': 1 }), { name: 'c-0', role: 'coordinator', pid: 1, heartbeat: 0 }],
    });
    counted.hedged('search');
    counted.balancerAction('compact');
    const p = parse(await r.render());
    expect(find(p, 'vdb_cluster_shard_live_replicas', { collection: 'c', shard: '0' })).toBe(1);
    expect(find(p, 'vdb_cluster_shard_live_replicas', { collection: 'c', shard: '1' })).toBe(0);
    expect(find(p, 'vdb_cluster_shard_replicas', { collection: 'c', shard: '1' })).toBe(1);
    expect(p.samples.some((x) => x.labels.collection === 'dropping')).toBe(false);
    expect(find(p, 'vdb_coordinator_hedged_total', { op: 'search' })).toBe(1);
    expect(find(p, 'vdb_coordinator_hedged_total', { op: 'get' })).toBe(0);
    expect(find(p, 'vdb_coordinator_partial_total', { op: 'count' })).toBe(0);
    expect(find(p, 'vdb_balancer_actions_total', { action: 'compact' })).toBe(1);
    expect(find(p, 'vdb_balancer_actions_total', { action: 'replace' })).toBe(0);
  });

  it('counts replicas placed, serving, and failed per shard', () => {
    const live = [
      member('a', { 'c/0': 5, 'c/1': 3 }),
      member('b', { 'c/0': 5, 'c/1': 0 }, { 'c/1': 'disk I/O error' }),
      member('d', {}), // placed on c/1 but still copying it: not serving yet
    ];
    expect(shardHealth('c', { replicas: [['a', 'b'], ['a', 'b', 'd'], ['gone']] }, live)).toEqual([
      { collection: 'c', shard: 0, replicas: 2, live: 2, failed: 0 },
      { collection: 'c', shard: 1, replicas: 3, live: 1, failed: 1 },
      { collection: 'c', shard: 2, replicas: 1, live: 0, failed: 0 },
    ]);
  });
});

// ----------------------------------------------------------------- HTTP

describe('serveMetrics', () => {
  let server: MetricsServer | undefined;
  afterEach(async () => {
    await server?.close();
    server = undefined;
  });

  it('serves /metrics and /healthz with the right status codes and content types', async () => {
    const r = bare();
    r.counter('hits_total', 'Hits.', { labels: ['op'] }).inc({ op: 'search' }, 4);
    let health: { ok: boolean; detail: object } = { ok: true, detail: { shards: 2, nats: 'connected' } };
    server = await serveMetrics(r, { health: () => health });
    expect(server.port).toBeGreaterThan(0);
    const base = `http://127.0.0.1:${server.port}`;

    const m = await fetch(`${base}/metrics`);
    expect(m.status).toBe(200);
    expect(m.headers.get('content-type')).toBe(METRICS_CONTENT_TYPE);
    expect(m.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
    expect(find(parse(await m.text()), 'hits_total', { op: 'search' })).toBe(4);

    const ok = await fetch(`${base}/healthz`);
    expect(ok.status).toBe(200);
    expect(ok.headers.get('content-type')).toMatch(/^application\/json/);
    expect(await ok.json()).toEqual({ ok: true, detail: { shards: 2, nats: 'connected' } });

    health = { ok: false, detail: { nats: 'disconnected' } };
    const down = await fetch(`${base}/healthz`);
    expect(down.status).toBe(503);
    expect(down.headers.get('content-type')).toMatch(/^application\/json/);
    expect(await down.json()).toEqual({ ok: false, detail: { nats: 'disconnected' } });

    expect((await fetch(`${base}/metrics?x=1`)).status).toBe(200);
    const nf = await fetch(`${base}/nope`);
    expect(nf.status).toBe(404);
    await nf.text();
    const post = await fetch(`${base}/metrics`, { method: 'POST', body: 'x' });
    expect(post.status).toBe(405);
    expect(post.headers.get('allow')).toBe('GET, HEAD');
    await post.text();
    const head = await fetch(`${base}/metrics`, { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(await head.text()).toBe('');
  });

  it('a throwing health check is 503, a throwing collector is 500', async () => {
    const r = new Registry();
    r.onCollect(() => {
      throw new Error('collector broke');
    });
    server = await serveMetrics(r, {
      health: async () => {
        throw new Error('meta store unreachable');
      },
    });
    const base = `http://127.0.0.1:${server.port}`;
    const h = await fetch(`${base}/healthz`);
    expect(h.status).toBe(503);
    expect(await h.json()).toEqual({ ok: false, detail: { error: 'meta store unreachable' } });
    const m = await fetch(`${base}/metrics`);
    expect(m.status).toBe(500);
    expect(await m.text()).toContain('collector broke');
  });

  it('close() frees the port, even with a keep-alive connection open', async () => {
    server = await serveMetrics(new Registry(), { health: () => ({ ok: true, detail: {} }) });
    const base = `http://127.0.0.1:${server.port}`;
    await (await fetch(`${base}/healthz`)).text(); // leaves a keep-alive socket in fetch's pool
    await server.close();
    await expect(fetch(`${base}/healthz`)).rejects.toThrow();
    await server.close(); // twice is fine
    server = undefined;
  });
});
