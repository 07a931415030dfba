// `vdb console`: the web console as a process of its own. It connects to NATS
// with the credentials of the user who starts it (a client account: NATS
// enforces that user's role), polls the cluster, and serves the page and its
// API on loopback to browsers that present its login token.

import { createServer } from 'node:http';
import type { IncomingMessage, Server } from 'node:http';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import type { NatsConnection } from 'nats';
import { VdbClient } from '../ts/client.js';
import { ErrorCode, VdbError } from '../ts/errors.js';
import { AUTH_FLAGS, authFromFlags, connectNats } from './nats-connect.js';
import type { NatsAuth } from './nats-connect.js';
import { MAX_BODY, errorReply, handle, newToken, staticFiles } from './console-http.js';
import type { Reply } from './console-http.js';
import { poller } from './console-state.js';
import type { StatusReply } from './console-state.js';

const STATIC_DIR = join(dirname(fileURLToPath(import.meta.url)), 'console');
const POLL_MS = 2000;
const FETCH_TIMEOUT_MS = 1500;

/** The login token: the first line of --token-file, else $VDB_CONSOLE_TOKEN, else a fresh one (printed). */
export function tokenFrom(file: string | undefined, env: NodeJS.ProcessEnv = process.env): { token: string; generated: boolean } {
  let token = file === undefined ? env.VDB_CONSOLE_TOKEN : readFileSync(file, 'utf8').split('\n')[0];
  token = token?.trim();
  if (token === undefined || token === '') return { token: newToken(), generated: true };
  if (token.length < 16) throw new VdbError(ErrorCode.INVALID_ARGUMENT, `the console token must have at least 16 characters (${file === undefined ? '$VDB_CONSOLE_TOKEN' : file})`);
  return { token, generated: false };
}

/** Any answer's body: an unhealthy process's /healthz is a 503 with the detail the console shows. */
async function fetchText(url: string): Promise<string> {
  const r = await fetch(url, { signal: AbortSignal.timeout(FETCH_TIMEOUT_MS) });
  return r.text();
}

/** The body, refused past MAX_BODY. */
function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      // Past the limit the rest is read and dropped, so that the 413 reaches the client.
      if (size > MAX_BODY) reject(new VdbError(ErrorCode.REQUEST_TOO_LARGE, `the body is over ${MAX_BODY} bytes`));
      else chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

export interface ConsoleOptions {
  nats: string;
  auth: NatsAuth;
  prefix?: string;
  host: string;
  port: number;
  metricsHost: string;
  token: string;
}

/** Connects, polls and serves; `stop()` ends all three. */
export async function runConsole(o: ConsoleOptions): Promise<{ url: string; stop(): Promise<void> }> {
  const nc: NatsConnection = await connectNats(o.nats, 'vdb-console', o.auth);
  const client = new VdbClient(nc, { prefix: o.prefix, timeoutMs: 5000 });
  const files = staticFiles(STATIC_DIR);
  const state = poller({ status: async () => (await client.status()) as unknown as StatusReply, fetchText, metricsHost: o.metricsHost });
  const api = {
    overview: state.latest,
    describe: (name: string) => client.describe(name),
    get: client.get.bind(client),
    search: client.search.bind(client),
  };
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  const loop = async () => {
    await state.poll().catch(() => undefined);
    if (!stopped) timer = setTimeout(loop, POLL_MS);
  };
  await loop();

  const server: Server = createServer((req, res) => {
    const send = (r: Reply) => res.writeHead(r.status, r.headers).end(r.body);
    readBody(req)
      .then((body) => handle(api, files, o.token, { method: req.method ?? 'GET', url: req.url ?? '/', headers: req.headers, body }))
      .then(send, (e) => send(errorReply(e)));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.port, o.host, resolve);
  });
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : o.port;
  const url = `http://${o.host.includes(':') ? `[${o.host}]` : o.host}:${port}/`;
  return {
    url,
    async stop() {
      stopped = true;
      clearTimeout(timer);
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
      await nc.close();
    },
  };
}

export const CONSOLE_COMMANDS = {
  console: {
    summary: 'serve the web console: processes, shards, lag, charts and a search playground',
    help: `Usage: vdb console --nats URL [--prefix P] [--creds FILE] [--tls-ca FILE] [--tls-cert FILE --tls-key FILE]
  [--host 127.0.0.1] [--port 8700] [--metrics-host 127.0.0.1] [--token-file FILE]
Connects as the user of --creds (or $VDB_CREDS): the console sees and searches what that
user's role allows. Serves on --host:--port (loopback by default; another --host opens the
console to that network: see docs/security.md). Every request needs the login token: the
first line of --token-file, else $VDB_CONSOLE_TOKEN, else a fresh random one it prints.
Open the printed URL, paste the token; scripts send "Authorization: Bearer TOKEN".
--metrics-host: where the processes' /metrics and /healthz are reached (their --metrics-host).
See docs/console.md.`,
    async run(argv: string[]) {
      const flags = (() => {
        try {
          return parseArgs({
            args: argv, allowPositionals: false,
            options: { nats: { type: 'string' }, prefix: { type: 'string' }, ...AUTH_FLAGS, host: { type: 'string', default: '127.0.0.1' }, port: { type: 'string', default: '8700' }, 'metrics-host': { type: 'string', default: '127.0.0.1' }, 'token-file': { type: 'string' } },
          });
        } catch (e) {
          throw new VdbError(ErrorCode.INVALID_ARGUMENT, (e as Error).message);
        }
      })();
      const o = flags.values;
      if (!o.nats) throw new VdbError(ErrorCode.INVALID_ARGUMENT, '--nats is required');
      const port = Number(o.port);
      if (!Number.isInteger(port) || port < 0 || port > 65535) throw new VdbError(ErrorCode.INVALID_ARGUMENT, `--port must be 0 to 65535, got ${JSON.stringify(o.port)}`);
      const { token, generated } = tokenFrom(o['token-file']);
      const c = await runConsole({ nats: o.nats, auth: authFromFlags(o), prefix: o.prefix, host: o.host!, port, metricsHost: o['metrics-host']!, token });
      console.log(`console: ${c.url}`);
      if (generated) console.log(`login token (paste it at ${c.url}login): ${token}`);
      await new Promise<void>((resolve) => {
        const done = () => void c.stop().then(resolve);
        process.once('SIGINT', done);
        process.once('SIGTERM', done);
      });
    },
  },
};
