// Structured logs (docs/operations.md, "Logs"): every process writes one JSON
// object per line to stderr through pino, with `level` (a name), `time` (ISO
// 8601), the process's `role`, `name` and `pid`, and `msg`; an error adds its
// `subject`, `code` and `cause`. On a terminal the same records are printed as
// readable lines instead. One logger per process: the process sets it up at
// start (`setLogger`), and code far from the command line (an endpoint's error
// reply) logs through `logger()`.

import { pino } from 'pino';
import type { DestinationStream, Logger } from 'pino';
import { VdbError, ErrorCode } from '../ts/errors.js';

export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];
export type { Logger };

/** A `--log-level` value, checked. */
export function logLevel(v: unknown): LogLevel {
  if (v === undefined) return 'info';
  if (typeof v !== 'string' || !(LOG_LEVELS as readonly string[]).includes(v)) {
    throw new VdbError(ErrorCode.INVALID_ARGUMENT, `--log-level must be one of ${LOG_LEVELS.join(', ')}, got ${JSON.stringify(v)}`);
  }
  return v as LogLevel;
}

// Defence in depth: no code logs credentials, but a field of one of these names
// never reaches a log whatever object carries it (docs/security.md).
const SECRET_FIELDS = ['seed', 'jwt', 'password', 'nkey', 'pass', 'auth_token'];
const REDACT = SECRET_FIELDS.flatMap((f) => [f, `*.${f}`]);

export interface LoggerOptions {
  role: string;
  name: string;
  level?: LogLevel;
  /** Where the lines go; default stderr, readable lines when stderr is a terminal. */
  stream?: DestinationStream;
}

export function createLogger(o: LoggerOptions): Logger {
  const stream = o.stream ?? (process.stderr.isTTY ? readableStderr() : pino.destination({ dest: 2, sync: true }));
  return pino({
    level: o.level ?? 'info',
    base: { role: o.role, name: o.name, pid: process.pid },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
    // `cause` carries an error: its type, message, stack (and a VdbError's code).
    serializers: { cause: pino.stdSerializers.err, err: pino.stdSerializers.err },
    redact: { paths: REDACT, censor: '[redacted]' },
  }, stream);
}

let current: Logger | undefined;

/** The process's logger: the one set at start, else one for an unnamed process at info. */
export function logger(): Logger {
  current ??= createLogger({ role: 'vdb', name: `vdb-${process.pid}` });
  return current;
}

export function setLogger(l: Logger): Logger {
  current = l;
  return l;
}

/** An exception nothing caught (or a rejection nothing handled) ends the process
 * as Node would, exit status 1, but logged as one `fatal` record with its cause. */
export function logCrashes(): void {
  process.once('uncaughtException', (e) => {
    logger().fatal({ cause: e }, `uncaught exception: ${e instanceof Error ? e.message : String(e)}`);
    process.exit(1);
  });
}

const LEVEL_WIDTH = 5;
/** Fields every record has, shown in the line's head rather than after it. */
const HEAD = new Set(['level', 'time', 'role', 'name', 'pid', 'hostname', 'msg']);

/** One JSON record as a terminal line: `12:00:00.123 INFO  shard-0: message key=value ...`; anything else unchanged. */
export function readableLine(json: string): string {
  let r: Record<string, unknown>;
  try {
    r = JSON.parse(json) as Record<string, unknown>;
  } catch {
    return json.replace(/\n$/, '');
  }
  if (r === null || typeof r !== 'object') return json.replace(/\n$/, '');
  const time = typeof r.time === 'string' ? r.time.slice(11, 23) : '';
  const level = String(r.level ?? '').toUpperCase().padEnd(LEVEL_WIDTH);
  const rest = Object.entries(r).filter(([k]) => !HEAD.has(k)).map(([k, v]) => {
    if (k === 'cause' && v && typeof v === 'object') {
      const c = v as { type?: string; message?: string; stack?: string };
      return `cause=${c.stack ?? `${c.type}: ${c.message}`}`;
    }
    return `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`;
  });
  return `${time} ${level} ${r.name ?? ''}: ${r.msg ?? ''}${rest.length ? `  ${rest.join(' ')}` : ''}`;
}

function readableStderr(): DestinationStream {
  return { write: (s: string) => void process.stderr.write(`${readableLine(s)}\n`) };
}
