// The shape every endpoint handler shares, after nats.js services: decode the
// body (MessagePack, or JSON when the request says Content-Type:
// application/json), call the library, reply; errors go in the
// Nats-Service-Error / Nats-Service-Error-Code headers and an {error} body,
// and count in the endpoint's $SRV.STATS `num_errors`.

import type { QueuedIterator, Service, ServiceMsg } from 'nats';
import { logger } from './log.js';
import { decode, encode, isJsonContentType } from '../ts/wire/codec.js';
import { serviceError } from '../ts/wire/messages.js';
import { VdbError, ErrorCode, isFault } from '../ts/errors.js';
import type { Registry } from './metrics.js';

export type Handler = (body: unknown, msg: ServiceMsg) => Promise<unknown> | unknown;

/** Called once per request with its duration and, if it failed, the error code. */
export type Observe = (seconds: number, errorCode?: string) => void;

// A fault answers the caller with a code and a short message; the cause (and
// stack) goes to the process's log at `error`, where an operator can find it.
// Any other error reply (the caller's mistake, a missing collection) is logged
// at `debug`: seen with --log-level debug, not flooding the log by default.
function logError(subject: string, code: string, cause: unknown, fault: boolean): void {
  const l = logger();
  if (fault) l.error({ subject, code, cause }, `error answering ${subject}: ${code}`);
  else l.debug({ subject, code, cause }, `error answering ${subject}: ${code}`);
}

/** `countError` is told of every error reply (with its `Nats-Service-Error` line). */
export function handle(fn: Handler, observe?: Observe, countError?: (e: Error) => void): (err: Error | null, msg: ServiceMsg) => void {
  return (err, msg) => {
    if (err) return;
    const t0 = performance.now();
    const json = isJsonContentType(msg.headers?.get('Content-Type'));
    const fail = (e: unknown) => {
      const se = serviceError(e);
      logError(msg.subject, se.body.error.code, e, !(e instanceof VdbError) || isFault(e.code));
      msg.respondError(se.status, se.description, encode(se.body, json));
      countError?.(new Error(se.description));
      observe?.((performance.now() - t0) / 1000, se.body.error.code);
    };
    const reply = (body: unknown) => {
      try {
        msg.respond(encode(body, json));
      } catch (e) {
        fail(e);
        return;
      }
      observe?.((performance.now() - t0) / 1000);
    };
    // A handler that answers synchronously is replied to at once, without
    // the turns of a promise chain; one that returns a promise when it settles.
    let out: unknown;
    try {
      out = fn(decode(msg.data, json), msg);
    } catch (e) {
      fail(e);
      return;
    }
    if (out instanceof Promise) out.then(reply, fail);
    else reply(out);
  };
}

interface EndpointStats {
  countError(e: Error): void;
}

/**
 * The stats nats.js keeps for an endpoint. It counts an error only when a
 * handler throws synchronously, and then replies itself without our body; a
 * handler that replies with `respondError` (or later, from a promise) must
 * count it here. Not a public API of nats.js: a missing hook fails loudly.
 */
function endpointStats(service: Service, qi: QueuedIterator<ServiceMsg>): EndpointStats {
  const subs = (service as unknown as { handlers?: { qi?: unknown; stats?: Partial<EndpointStats> }[] }).handlers;
  const stats = subs?.find((h) => h.qi === qi)?.stats;
  if (typeof stats?.countError !== 'function') throw new VdbError(ErrorCode.INTERNAL, 'this nats.js version keeps no endpoint stats to count errors in');
  return stats as EndpointStats;
}

/** Adds an endpoint served by `fn` (see `handle`), its error replies counted in $SRV.STATS. */
export function addEndpoint(service: Service, name: string, opts: { subject: string; queue?: string }, fn: Handler, observe?: Observe): QueuedIterator<ServiceMsg> {
  let stats: EndpointStats | undefined;
  const qi = service.addEndpoint(name, { ...opts, handler: handle(fn, observe, (e) => stats?.countError(e)) });
  stats = endpointStats(service, qi);
  return qi;
}

/** Request metrics of one process: latency by operation, errors by operation and code. */
export function requestMetrics(registry: Registry, prefix: string): (op: string) => Observe {
  const latency = registry.histogram(`${prefix}_request_seconds`, 'Time to answer a request, by operation', { labels: ['op'] });
  const errors = registry.counter(`${prefix}_errors_total`, 'Requests answered with an error, by operation and code', { labels: ['op', 'code'] });
  return (op) => (seconds, code) => {
    latency.observe({ op }, seconds);
    if (code) errors.inc({ op, code });
  };
}
