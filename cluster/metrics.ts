// A small Prometheus registry (counters, gauges, fixed-bucket histograms, with
// labels) rendered in the text exposition format 0.0.4, and the HTTP endpoint
// every cluster process serves: GET /metrics and GET /healthz on loopback.

import { createServer } from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { ErrorCode, VdbError } from '../ts/errors.js';

/** Latency buckets in seconds, 0.5 ms to 10 s. */
export const LATENCY_BUCKETS: readonly number[] = Object.freeze([
  0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
]);

export const METRICS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

export type LabelValues = Readonly<Record<string, string | number | boolean>>;
export type MetricType = 'counter' | 'gauge' | 'histogram';

const NAME_RE = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_RE = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

function bad(message: string): never {
  throw new VdbError(ErrorCode.INVALID_ARGUMENT, message);
}

/** A sample value as Prometheus (Go's ParseFloat) reads it. */
export function formatValue(v: number): string {
  if (Number.isNaN(v)) return 'NaN';
  if (v === Infinity) return '+Inf';
  if (v === -Infinity) return '-Inf';
  return String(v);
}

/** A label value inside double quotes: backslash, double quote and newline escaped. */
export function escapeLabelValue(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

/** HELP text: backslash and newline escaped. */
function escapeHelp(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
}

function renderLabels(pairs: ReadonlyArray<readonly [string, string]>): string {
  if (pairs.length === 0) return '';
  return `{${pairs.map(([k, v]) => `${k}="${escapeLabelValue(v)}"`).join(',')}}`;
}

interface MetricOptions {
  /** Label names every sample of this metric carries, in this order. */
  labels?: readonly string[];
}

interface HistogramOptions extends MetricOptions {
  /** Upper bounds, strictly increasing, finite (+Inf is implied). Default LATENCY_BUCKETS. */
  buckets?: readonly number[];
}

/** What the metrics share: name, help, label names and the series keyed by their label values. */
abstract class Metric<S> {
  abstract readonly type: MetricType;
  protected readonly series = new Map<string, { labels: Array<readonly [string, string]>; state: S }>();

  constructor(
    readonly name: string,
    readonly help: string,
    readonly labelNames: readonly string[],
  ) {}

  protected abstract fresh(): S;

  /** The series for these label values (created on first use); exactly the declared labels. */
  protected state(values: LabelValues | undefined): S {
    const names = this.labelNames;
    const given = values ? Object.keys(values) : [];
    if (given.length !== names.length || given.some((k) => !names.includes(k))) {
      bad(`metric ${this.name}: labels must be {${names.join(', ')}}, got {${given.join(', ')}}`);
    }
    const strs = names.map((n) => String(values![n]));
    const key = strs.join('\u0000');
    let s = this.series.get(key);
    if (!s) {
      s = { labels: names.map((n, i) => [n, strs[i]!] as const), state: this.fresh() };
      this.series.set(key, s);
    }
    return s.state;
  }

  /** Forgets every series (or the one with these label values). */
  reset(values?: LabelValues): void {
    if (values === undefined) this.series.clear();
    else this.series.delete(this.labelNames.map((n) => String(values[n])).join('\u0000'));
  }

  /** Sample lines, without HELP/TYPE. */
  abstract samples(): string[];

  render(): string {
    return [`# HELP ${this.name} ${escapeHelp(this.help)}`, `# TYPE ${this.name} ${this.type}`, ...this.samples()].join('\n');
  }

  /** An unlabelled metric shows 0 before its first update, as clients expect. */
  protected ensureDefault(): void {
    if (this.labelNames.length === 0 && this.series.size === 0) this.state(undefined);
  }
}

/** Splits `(labels?, value?)` call forms. */
function args(a: LabelValues | number | undefined, b: number | undefined, fallback: number): [LabelValues | undefined, number] {
  return typeof a === 'number' ? [undefined, a] : [a, b ?? fallback];
}

export class Counter extends Metric<{ v: number }> {
  readonly type = 'counter';
  protected fresh() {
    return { v: 0 };
  }

  /** inc(), inc(by), inc(labels), inc(labels, by); `by` must be finite and ≥ 0. */
  inc(labelsOrBy?: LabelValues | number, by?: number): void {
    const [labels, n] = args(labelsOrBy, by, 1);
    if (!(n >= 0) || !Number.isFinite(n)) bad(`counter ${this.name}: increment must be a finite number ≥ 0, got ${n}`);
    this.state(labels).v += n;
  }

  /** A handle bound to these label values (no per-call label lookup). */
  labels(values: LabelValues): { inc(by?: number): void } {
    const s = this.state(values);
    return {
      inc: (by = 1) => {
        if (!(by >= 0) || !Number.isFinite(by)) bad(`counter ${this.name}: increment must be a finite number ≥ 0, got ${by}`);
        s.v += by;
      },
    };
  }

  get(labels?: LabelValues): number {
    return this.state(labels).v;
  }

  samples(): string[] {
    this.ensureDefault();
    return [...this.series.values()].map((s) => `${this.name}${renderLabels(s.labels)} ${formatValue(s.state.v)}`);
  }
}

export class Gauge extends Metric<{ v: number }> {
  readonly type = 'gauge';
  protected fresh() {
    return { v: 0 };
  }

  /** set(v) or set(labels, v). */
  set(labelsOrValue: LabelValues | number, value?: number): void {
    const [labels, v] = args(labelsOrValue, value, NaN);
    if (typeof v !== 'number' || (typeof labelsOrValue !== 'number' && value === undefined)) {
      bad(`gauge ${this.name}: set needs a value`);
    }
    this.state(labels).v = v;
  }

  inc(labelsOrBy?: LabelValues | number, by?: number): void {
    const [labels, n] = args(labelsOrBy, by, 1);
    this.state(labels).v += n;
  }

  dec(labelsOrBy?: LabelValues | number, by?: number): void {
    const [labels, n] = args(labelsOrBy, by, 1);
    this.state(labels).v -= n;
  }

  labels(values: LabelValues): { set(v: number): void; inc(by?: number): void; dec(by?: number): void } {
    const s = this.state(values);
    return {
      set: (v) => void (s.v = v),
      inc: (by = 1) => void (s.v += by),
      dec: (by = 1) => void (s.v -= by),
    };
  }

  get(labels?: LabelValues): number {
    return this.state(labels).v;
  }

  samples(): string[] {
    this.ensureDefault();
    return [...this.series.values()].map((s) => `${this.name}${renderLabels(s.labels)} ${formatValue(s.state.v)}`);
  }
}

interface HistogramState {
  /** Per-bucket (non-cumulative) counts; the last slot is +Inf. */
  counts: number[];
  sum: number;
  count: number;
}

export interface HistogramSnapshot {
  /** Cumulative counts per upper bound, the last one +Inf (equal to count). */
  buckets: Array<{ le: number; count: number }>;
  sum: number;
  count: number;
}

export class Histogram extends Metric<HistogramState> {
  readonly type = 'histogram';
  readonly buckets: readonly number[];

  constructor(name: string, help: string, labelNames: readonly string[], buckets: readonly number[]) {
    super(name, help, labelNames);
    if (labelNames.includes('le')) bad(`histogram ${name}: "le" is reserved for buckets`);
    if (buckets.length === 0) bad(`histogram ${name}: at least one bucket is needed`);
    for (let i = 0; i < buckets.length; i++) {
      const b = buckets[i]!;
      if (!Number.isFinite(b)) bad(`histogram ${name}: bucket bounds must be finite (+Inf is implied), got ${b}`);
      if (i > 0 && !(b > buckets[i - 1]!)) bad(`histogram ${name}: bucket bounds must increase strictly`);
    }
    this.buckets = Object.freeze([...buckets]);
  }

  protected fresh(): HistogramState {
    return { counts: new Array<number>(this.buckets.length + 1).fill(0), sum: 0, count: 0 };
  }

  private record(s: HistogramState, v: number): void {
    if (typeof v !== 'number' || Number.isNaN(v)) bad(`histogram ${this.name}: observed value must be a number, got ${v}`);
    const b = this.buckets;
    // Buckets are few (≈14): a linear scan beats a binary search here.
    let i = 0;
    while (i < b.length && v > b[i]!) i++;
    s.counts[i]!++;
    s.sum += v;
    s.count++;
  }

  /** observe(v) or observe(labels, v). */
  observe(labelsOrValue: LabelValues | number, value?: number): void {
    const [labels, v] = args(labelsOrValue, value, NaN);
    if (typeof labelsOrValue !== 'number' && value === undefined) bad(`histogram ${this.name}: observe needs a value`);
    this.record(this.state(labels), v);
  }

  /** Starts a clock; the returned function observes the elapsed seconds and returns them. */
  startTimer(labels?: LabelValues): () => number {
    const s = this.state(labels);
    const t0 = process.hrtime.bigint();
    return () => {
      const secs = Number(process.hrtime.bigint() - t0) / 1e9;
      this.record(s, secs);
      return secs;
    };
  }

  labels(values: LabelValues): { observe(v: number): void; startTimer(): () => number } {
    const s = this.state(values);
    return {
      observe: (v) => this.record(s, v),
      startTimer: () => {
        const t0 = process.hrtime.bigint();
        return () => {
          const secs = Number(process.hrtime.bigint() - t0) / 1e9;
          this.record(s, secs);
          return secs;
        };
      },
    };
  }

  get(labels?: LabelValues): HistogramSnapshot {
    const s = this.state(labels);
    let acc = 0;
    const buckets = s.counts.map((c, i) => ({ le: i < this.buckets.length ? this.buckets[i]! : Infinity, count: (acc += c) }));
    return { buckets, sum: s.sum, count: s.count };
  }

  samples(): string[] {
    this.ensureDefault();
    const out: string[] = [];
    for (const { labels, state } of this.series.values()) {
      let acc = 0;
      for (let i = 0; i <= this.buckets.length; i++) {
        acc += state.counts[i]!;
        const le = i < this.buckets.length ? formatValue(this.buckets[i]!) : '+Inf';
        out.push(`${this.name}_bucket${renderLabels([...labels, ['le', le]])} ${formatValue(acc)}`);
      }
      out.push(`${this.name}_sum${renderLabels(labels)} ${formatValue(state.sum)}`);
      out.push(`${this.name}_count${renderLabels(labels)} ${formatValue(state.count)}`);
    }
    return out;
  }
}

type AnyMetric = Counter | Gauge | Histogram;

export class Registry {
  private readonly metrics = new Map<string, AnyMetric>();
  private readonly collectors: Array<() => void> = [];

  private add<M extends AnyMetric>(type: MetricType, name: string, help: string, labels: readonly string[], make: () => M): M {
    if (!NAME_RE.test(name)) bad(`metric name ${JSON.stringify(name)} is not valid (${NAME_RE})`);
    for (const l of labels) {
      if (!LABEL_RE.test(l) || l.startsWith('__')) bad(`metric ${name}: label name ${JSON.stringify(l)} is not valid`);
    }
    if (new Set(labels).size !== labels.length) bad(`metric ${name}: duplicate label names`);
    const existing = this.metrics.get(name);
    if (existing) {
      // Registering the same metric again (same type and labels) returns it: modules can declare what they use.
      if (existing.type === type && existing.labelNames.join(',') === labels.join(',')) return existing as M;
      bad(`metric ${name} is already registered as a ${existing.type} with labels {${existing.labelNames.join(', ')}}`);
    }
    const m = make();
    this.metrics.set(name, m);
    return m;
  }

  counter(name: string, help: string, opts: MetricOptions = {}): Counter {
    const labels = opts.labels ?? [];
    return this.add('counter', name, help, labels, () => new Counter(name, help, labels));
  }

  gauge(name: string, help: string, opts: MetricOptions = {}): Gauge {
    const labels = opts.labels ?? [];
    return this.add('gauge', name, help, labels, () => new Gauge(name, help, labels));
  }

  histogram(name: string, help: string, opts: HistogramOptions = {}): Histogram {
    const labels = opts.labels ?? [];
    const h = this.add('histogram', name, help, labels, () => new Histogram(name, help, labels, opts.buckets ?? LATENCY_BUCKETS));
    if (opts.buckets && h.buckets.join(',') !== opts.buckets.join(',')) bad(`histogram ${name} is already registered with other buckets`);
    return h;
  }

  /** A function run before every render, to refresh gauges sampled on demand (sizes, memory). */
  onCollect(fn: () => void): void {
    this.collectors.push(fn);
  }

  get(name: string): AnyMetric | undefined {
    return this.metrics.get(name);
  }

  /** The text exposition format 0.0.4, ending with a newline. */
  render(): string {
    for (const c of this.collectors) c();
    const blocks = [...this.metrics.values()].map((m) => m.render());
    return blocks.length === 0 ? '' : `${blocks.join('\n')}\n`;
  }
}

// ---------------------------------------------------------------- HTTP

export interface Health {
  ok: boolean;
  detail: object;
}

export interface MetricsServerOptions {
  /** Port to listen on; 0 or absent picks a free one. */
  port?: number;
  /** Interface (default 127.0.0.1). */
  host?: string;
  health: () => Health | Promise<Health>;
}

export interface MetricsServer {
  port: number;
  close(): Promise<void>;
}

function send(res: ServerResponse, status: number, type: string, body: string, head: boolean, extra: Record<string, string> = {}): void {
  res.writeHead(status, {
    'Content-Type': type,
    'Content-Length': Buffer.byteLength(body),
    'Cache-Control': 'no-store',
    ...extra,
  });
  res.end(head ? undefined : body);
}

async function handle(registry: Registry, health: MetricsServerOptions['health'], req: IncomingMessage, res: ServerResponse): Promise<void> {
  const path = (req.url ?? '/').split('?')[0];
  const head = req.method === 'HEAD';
  const known = path === '/metrics' || path === '/healthz';
  if (!known) return send(res, 404, 'text/plain; charset=utf-8', 'not found: try /metrics or /healthz\n', head);
  if (req.method !== 'GET' && !head) {
    return send(res, 405, 'text/plain; charset=utf-8', 'method not allowed\n', false, { Allow: 'GET, HEAD' });
  }
  if (path === '/metrics') {
    let text: string;
    try {
      text = registry.render();
    } catch (e) {
      return send(res, 500, 'text/plain; charset=utf-8', `metrics: ${(e as Error).message}\n`, head);
    }
    return send(res, 200, METRICS_CONTENT_TYPE, text, head);
  }
  let h: Health;
  try {
    h = await health();
  } catch (e) {
    h = { ok: false, detail: { error: (e as Error).message } };
  }
  const body = `${JSON.stringify({ ok: h.ok === true, detail: h.detail ?? {} })}\n`;
  return send(res, h.ok === true ? 200 : 503, 'application/json; charset=utf-8', body, head);
}

/** Serves GET /metrics and GET /healthz (200 when healthy, 503 when not) over HTTP. */
export async function serveMetrics(registry: Registry, opts: MetricsServerOptions): Promise<MetricsServer> {
  const host = opts.host ?? '127.0.0.1';
  const port = opts.port ?? 0;
  if (!Number.isInteger(port) || port < 0 || port > 65535) bad(`metrics port must be an integer in 0..65535, got ${port}`);
  const server = createServer((req, res) => {
    handle(registry, opts.health, req, res).catch((e: unknown) => {
      if (!res.headersSent) send(res, 500, 'text/plain; charset=utf-8', `${(e as Error).message}\n`, false);
      else res.destroy();
    });
  });
  return await new Promise<MetricsServer>((resolve, reject) => {
    server.once('error', (e) => reject(new VdbError(ErrorCode.UNAVAILABLE, `metrics: cannot listen on ${host}:${port}: ${e.message}`)));
    server.listen({ port, host }, () => {
      server.on('error', () => {}); // after listening, a socket error must not take the process down
      const addr = server.address();
      const bound = typeof addr === 'object' && addr !== null ? addr.port : port;
      let closing: Promise<void> | undefined;
      resolve({
        port: bound,
        close: () =>
          (closing ??= new Promise<void>((done) => {
            server.close(() => done());
            server.closeAllConnections();
          })),
      });
    });
  });
}
