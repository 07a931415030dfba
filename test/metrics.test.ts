// The Prometheus registry of cluster/metrics.ts: its text output, read back by
// an independent parser of the exposition format 0.0.4, holds the recorded
// values; histogram buckets are cumulative with +Inf equal to the count; label
// values and help text survive escaping; and the HTTP endpoint answers /metrics
// and /healthz with the right status codes and content types.

import { afterEach, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { ErrorCode } from '../ts/errors.js';
import { LATENCY_BUCKETS, METRICS_CONTENT_TYPE, Registry, serveMetrics } from '../cluster/metrics.js';
import type { MetricsServer } from '../cluster/metrics.js';

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
  if (s === 'NaN') return NaN;
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
  const s = p.samples.filter((x) => x.name === name && JSON.stringify(x.labels) === JSON.stringify(labels));
  expect(s.length).toBeLessThanOrEqual(1);
  return s[0]?.value;
}

// ------------------------------------------------------------- registry

describe('registry render', () => {
  it('counters and gauges, labelled and not, read back', () => {
    const r = new Registry();
    const req = r.counter('vdb_requests_total', 'Requests served.', { labels: ['op', 'code'] });
    const boot = r.counter('vdb_restarts_total', 'Restarts.');
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

    const p = parse(r.render());
    expect(p.type.get('vdb_requests_total')).toBe('counter');
    expect(p.type.get('vdb_shard_points')).toBe('gauge');
    expect(p.help.get('vdb_requests_total')).toBe('Requests served.');
    expect(find(p, 'vdb_requests_total', { op: 'search', code: 'OK' })).toBe(3);
    expect(find(p, 'vdb_requests_total', { op: 'upsert', code: 'TIMEOUT' })).toBe(1);
    expect(find(p, 'vdb_restarts_total')).toBe(0); // unlabelled: shown before the first inc
    expect(find(p, 'vdb_shard_points', { shard: '0' })).toBe(990);
    expect(find(p, 'vdb_shard_points', { shard: '1' })).toBe(8);
    expect(find(p, 'vdb_wasm_memory_bytes')).toBe(65536);
    expect(find(parse(r.render()), 'vdb_wasm_memory_bytes')).toBe(131072); // collectors run per render
    expect(req.get({ op: 'search', code: 'OK' })).toBe(3);
  });

  it('histogram buckets are cumulative, +Inf equals the count, sum is the total', () => {
    const r = new Registry();
    const h = r.histogram('vdb_op_seconds', 'Latency.', { labels: ['op'] });
    const values = [0.0001, 0.0005, 0.0007, 0.003, 0.2, 0.2, 1, 9.9, 10, 42];
    for (const v of values) h.observe({ op: 'search' }, v);
    h.labels({ op: 'get' }).observe(0.01);

    const p = parse(r.render());
    expect(p.type.get('vdb_op_seconds')).toBe('histogram');
    const buckets = p.samples.filter((s) => s.name === 'vdb_op_seconds_bucket' && s.labels.op === 'search');
    expect(buckets.map((b) => b.labels.le)).toEqual([...LATENCY_BUCKETS.map(String), '+Inf']);
    for (const b of buckets) {
      const le = parseValue(b.labels.le!);
      expect(b.value, `le=${b.labels.le}`).toBe(values.filter((v) => v <= le).length);
    }
    expect(buckets.at(-1)!.value).toBe(values.length);
    expect(find(p, 'vdb_op_seconds_count', { op: 'search' })).toBe(values.length);
    expect(find(p, 'vdb_op_seconds_sum', { op: 'search' })).toBeCloseTo(values.reduce((a, b) => a + b, 0), 9);
    expect(find(p, 'vdb_op_seconds_bucket', { op: 'get', le: '0.005' })).toBe(0);
    expect(find(p, 'vdb_op_seconds_bucket', { op: 'get', le: '0.01' })).toBe(1);
    expect(find(p, 'vdb_op_seconds_count', { op: 'get' })).toBe(1);
  });

  it('any observations: buckets cumulative and exact (property)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.double({ min: 0, max: 20, noNaN: true }), { maxLength: 60 }),
        fc.uniqueArray(fc.double({ min: 0.001, max: 15, noNaN: true }), { minLength: 1, maxLength: 6 }),
        (values, rawBuckets) => {
          const buckets = [...rawBuckets].sort((a, b) => a - b);
          const r = new Registry();
          const h = r.histogram('h', 'h', { buckets });
          for (const v of values) h.observe(v);
          const p = parse(r.render());
          const bs = p.samples.filter((s) => s.name === 'h_bucket');
          expect(bs.length).toBe(buckets.length + 1);
          let prev = 0;
          for (const b of bs) {
            expect(b.value).toBeGreaterThanOrEqual(prev);
            prev = b.value;
            expect(b.value).toBe(values.filter((v) => v <= parseValue(b.labels.le!)).length);
          }
          expect(bs.at(-1)!.labels.le).toBe('+Inf');
          expect(bs.at(-1)!.value).toBe(find(p, 'h_count'));
          expect(find(p, 'h_count')).toBe(values.length);
        },
      ),
      { numRuns: 100 },
    );
  });

  it('timers observe elapsed seconds', async () => {
    const r = new Registry();
    const h = r.histogram('t_seconds', 'Timer.');
    const end = h.startTimer();
    await new Promise((ok) => setTimeout(ok, 20));
    const secs = end();
    expect(secs).toBeGreaterThan(0.01);
    expect(h.get().count).toBe(1);
    expect(h.get().sum).toBe(secs);
    expect(h.get().buckets.find((b) => b.le === 0.01)!.count).toBe(0);
    expect(h.get().buckets.at(-1)!.count).toBe(1);
  });

  it('label values and help text are escaped and read back intact', () => {
    const r = new Registry();
    const c = r.counter('esc_total', 'Help with \\ backslash\nand a second line "quoted".', { labels: ['v'] });
    const nasty = ['a"b', 'back\\slash', 'new\nline', '\\"\n\\n', '', 'ünïcode ✓', '{x="y"},z'];
    nasty.forEach((v, i) => c.inc({ v }, i + 1));
    const text = r.render();
    expect(text).toContain('esc_total{v="a\\"b"} 1');
    expect(text).toContain('esc_total{v="back\\\\slash"} 2');
    expect(text).toContain('esc_total{v="new\\nline"} 3');
    expect(text).toContain('# HELP esc_total Help with \\\\ backslash\\nand a second line "quoted".');
    const p = parse(text);
    expect(p.help.get('esc_total')).toBe('Help with \\ backslash\nand a second line "quoted".');
    nasty.forEach((v, i) => expect(find(p, 'esc_total', { v })).toBe(i + 1));
  });

  it('any label value round-trips (property)', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.string({ unit: 'binary', maxLength: 20 }),
          // the characters escaping is about, dense
          fc.string({ unit: fc.constantFrom('"', '\\', '\n', 'n', 'a', '{', '}', ',', '=', ' '), maxLength: 12 }),
        ),
        (v) => {
        const r = new Registry();
        r.gauge('g', 'g', { labels: ['x'] }).set({ x: v }, 7);
        const p = parse(r.render());
        expect(p.samples).toEqual([{ name: 'g', labels: { x: v }, value: 7 }]);
        },
      ),
      { numRuns: 200 },
    );
  });

  it('special values render as Prometheus reads them', () => {
    const r = new Registry();
    const g = r.gauge('s', 's', { labels: ['k'] });
    g.set({ k: 'inf' }, Infinity);
    g.set({ k: 'ninf' }, -Infinity);
    g.set({ k: 'nan' }, NaN);
    g.set({ k: 'tiny' }, 1e-9);
    const p = parse(r.render());
    expect(find(p, 's', { k: 'inf' })).toBe(Infinity);
    expect(find(p, 's', { k: 'ninf' })).toBe(-Infinity);
    expect(find(p, 's', { k: 'nan' })).toBeNaN();
    expect(find(p, 's', { k: 'tiny' })).toBe(1e-9);
  });

  it('refuses bad names, labels and values with INVALID_ARGUMENT', () => {
    const r = new Registry();
    const invalid = { code: ErrorCode.INVALID_ARGUMENT };
    expect(() => r.counter('1abc', 'x')).toThrow(expect.objectContaining(invalid));
    expect(() => r.counter('a-b', 'x')).toThrow(expect.objectContaining(invalid));
    expect(() => r.counter('ok', 'x', { labels: ['bad-label'] })).toThrow(expect.objectContaining(invalid));
    expect(() => r.counter('ok2', 'x', { labels: ['__reserved'] })).toThrow(expect.objectContaining(invalid));
    expect(() => r.counter('ok3', 'x', { labels: ['a', 'a'] })).toThrow(expect.objectContaining(invalid));
    expect(() => r.histogram('h1', 'x', { labels: ['le'] })).toThrow(expect.objectContaining(invalid));
    expect(() => r.histogram('h2', 'x', { buckets: [1, 1] })).toThrow(expect.objectContaining(invalid));
    expect(() => r.histogram('h3', 'x', { buckets: [1, Infinity] })).toThrow(expect.objectContaining(invalid));

    const c = r.counter('c_total', 'x', { labels: ['op'] });
    expect(() => c.inc()).toThrow(expect.objectContaining(invalid)); // missing label
    expect(() => c.inc({ op: 'a', extra: 'b' })).toThrow(expect.objectContaining(invalid));
    expect(() => c.inc({ op: 'a' }, -1)).toThrow(expect.objectContaining(invalid));
    expect(() => c.inc({ op: 'a' }, NaN)).toThrow(expect.objectContaining(invalid));
    expect(() => r.histogram('h4', 'x').observe(NaN)).toThrow(expect.objectContaining(invalid));

    // Same declaration again: the same metric; a different one: refused.
    expect(r.counter('c_total', 'x', { labels: ['op'] })).toBe(c);
    expect(() => r.gauge('c_total', 'x', { labels: ['op'] })).toThrow(expect.objectContaining(invalid));
    expect(() => r.counter('c_total', 'x', { labels: ['other'] })).toThrow(expect.objectContaining(invalid));
  });

  it('an empty registry renders nothing', () => {
    expect(new Registry().render()).toBe('');
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
    const r = new Registry();
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
