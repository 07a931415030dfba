// Each process's metrics, through prom-client: a registry of its own (tests
// run several processes in one Node process, so never the global one) with
// Node's process metrics (CPU, memory, heap, event-loop lag, GC), and the HTTP
// endpoint every cluster process serves: GET /metrics and GET /healthz.

import { createServer } from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Counter, Gauge, Histogram, Registry as PromRegistry, collectDefaultMetrics } from 'prom-client';
import { ErrorCode, VdbError } from '../ts/errors.js';

export { Counter, Gauge, Histogram };

/** Latency buckets in seconds, 0.5 ms to 10 s. */
export const LATENCY_BUCKETS: readonly number[] = Object.freeze([
  0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
]);

export const METRICS_CONTENT_TYPE = PromRegistry.PROMETHEUS_CONTENT_TYPE;

/** Gauges prom-client's defaults name `_total`, which Prometheus reserves for
 * counters (`promtool check metrics` says so); the same counts, by type, stay
 * in `nodejs_active_handles`, `nodejs_active_requests` and `nodejs_active_resources`. */
const MISNAMED_DEFAULTS = ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total'];

interface MetricOptions {
  /** Label names every sample of this metric carries. */
  labels?: readonly string[];
}

interface HistogramOptions extends MetricOptions {
  /** Upper bounds, increasing (+Inf is implied). Default LATENCY_BUCKETS. */
  buckets?: readonly number[];
}

function bad(message: string): never {
  throw new VdbError(ErrorCode.INVALID_ARGUMENT, message);
}

/** One process's metrics. Declaring a metric again with the same type and
 * labels returns the first, so modules can declare what they use. */
export class Registry {
  readonly prom = new PromRegistry();
  private readonly collectors: Array<() => void | Promise<void>> = [];

  constructor(opts: { defaults?: boolean } = {}) {
    if (opts.defaults !== false) {
      collectDefaultMetrics({ register: this.prom });
      for (const name of MISNAMED_DEFAULTS) this.prom.removeSingleMetric(name);
    }
  }

  private existing<M>(name: string, type: string, labels: readonly string[]): M | undefined {
    const m = this.prom.getSingleMetric(name) as unknown as { type?: string; labelNames?: string[] } | undefined;
    if (!m) return undefined;
    const sameLabels = (m.labelNames ?? []).join(',') === labels.join(',');
    if (m.type !== type || !sameLabels) bad(`metric ${name} is already registered as a ${m.type} with labels {${(m.labelNames ?? []).join(', ')}}`);
    return m as M;
  }

  counter(name: string, help: string, opts: MetricOptions = {}): Counter<string> {
    const labelNames = [...(opts.labels ?? [])];
    return this.existing<Counter<string>>(name, 'counter', labelNames) ?? new Counter({ name, help, labelNames, registers: [this.prom] });
  }

  gauge(name: string, help: string, opts: MetricOptions = {}): Gauge<string> {
    const labelNames = [...(opts.labels ?? [])];
    return this.existing<Gauge<string>>(name, 'gauge', labelNames) ?? new Gauge({ name, help, labelNames, registers: [this.prom] });
  }

  histogram(name: string, help: string, opts: HistogramOptions = {}): Histogram<string> {
    const labelNames = [...(opts.labels ?? [])];
    const buckets = [...(opts.buckets ?? LATENCY_BUCKETS)];
    return this.existing<Histogram<string>>(name, 'histogram', labelNames) ?? new Histogram({ name, help, labelNames, buckets, registers: [this.prom] });
  }

  /** A function run before every scrape, to refresh gauges sampled on demand (sizes, memory). */
  onCollect(fn: () => void | Promise<void>): void {
    this.collectors.push(fn);
  }

  /** The text exposition format, ending with a newline. */
  async render(): Promise<string> {
    for (const c of this.collectors) await c();
    return await this.prom.metrics();
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
      text = await registry.render();
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
