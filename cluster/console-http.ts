// The web console's HTTP side: the login token, and routing each request to a
// VdbClient call or a static file. Every request but the login form must carry
// the token (the cookie the login sets, or `Authorization: Bearer`); handlers
// decode, call, reply, and errors are `{error: {code, message}}` with the
// status of their code (docs/protocol.md).

import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { extname, join } from 'node:path';
import { ErrorCode, VdbError } from '../ts/errors.js';
import { errorBody, errorStatus } from '../ts/wire/messages.js';
import type { Filter } from '../ts/filter.js';
import type { PointId } from '../ts/collection.js';

export const COOKIE = 'vdb_console';
/** Request bodies above this are refused unread: a search of 65,536 dimensions as JSON fits. */
export const MAX_BODY = 4 * 1024 * 1024;

/** A fresh login token: 32 random bytes, base64url. */
export function newToken(): string {
  return randomBytes(32).toString('base64url');
}

/** Whether `given` is the token, in time independent of where they differ. */
export function sameToken(given: string, token: string): boolean {
  const h = (s: string) => createHash('sha256').update(s).digest();
  return timingSafeEqual(h(given), h(token));
}

/** The token a request presents: its `Authorization: Bearer` header, else its console cookie. */
export function presented(headers: Record<string, string | string[] | undefined>): string | undefined {
  const auth = headers.authorization;
  if (typeof auth === 'string' && auth.startsWith('Bearer ')) return auth.slice(7).trim();
  const cookie = headers.cookie;
  if (typeof cookie !== 'string') return undefined;
  for (const part of cookie.split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === COOKIE) {
      try {
        return decodeURIComponent(part.slice(eq + 1).trim());
      } catch {
        return undefined; // malformed escapes: no token
      }
    }
  }
  return undefined;
}

export interface Reply {
  status: number;
  headers: Record<string, string>;
  body: string | Buffer;
}

const SECURITY_HEADERS = {
  'Content-Security-Policy': "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
  'X-Content-Type-Options': 'nosniff',
  'Referrer-Policy': 'no-referrer',
  'Cache-Control': 'no-store',
};

/** Vectors come back as Float32Array, which JSON would write as an object of indexes. */
const arrays = (_: string, v: unknown) => (v instanceof Float32Array ? Array.from(v) : v);

export function json(status: number, body: unknown): Reply {
  return { status, headers: { ...SECURITY_HEADERS, 'Content-Type': 'application/json; charset=utf-8' }, body: JSON.stringify(body, arrays) };
}

export function errorReply(e: unknown): Reply {
  const body = errorBody(e);
  return json(errorStatus(body.error.code), body);
}

const TYPES: Record<string, string> = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.css': 'text/css; charset=utf-8' };

/** The console's static files, read once: the page, its script and style, and the login form. */
export function staticFiles(dir: string): Map<string, Reply> {
  const files = new Map<string, Reply>();
  for (const [path, file] of [['/', 'index.html'], ['/console.js', 'console.js'], ['/console.css', 'console.css'], ['/login', 'login.html']]) {
    files.set(path, { status: 200, headers: { ...SECURITY_HEADERS, 'Content-Type': TYPES[extname(file)] }, body: readFileSync(join(dir, file)) });
  }
  return files;
}

/** What the API handlers call: VdbClient's methods, with the connection of the user who started the console. */
export interface ConsoleApi {
  overview(): unknown;
  describe(name: string): Promise<unknown>;
  get(collection: string, ids: PointId[], opts: { withVector: boolean }): Promise<unknown>;
  search(collection: string, vector: number[], opts: { k?: number; ef?: number; filter?: Filter; exact?: boolean; withPayload: boolean }): Promise<unknown>;
}

export interface Request {
  method: string;
  /** Path and query, as in the request line. */
  url: string;
  headers: Record<string, string | string[] | undefined>;
  /** The body, already limited to MAX_BODY. */
  body: string;
}

function bad(message: string): never {
  throw new VdbError(ErrorCode.INVALID_ARGUMENT, message);
}

function decode(body: string): Record<string, unknown> {
  let v: unknown;
  try {
    v = JSON.parse(body);
  } catch (e) {
    throw new VdbError(ErrorCode.BAD_REQUEST, `the body is not JSON: ${(e as Error).message}`);
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new VdbError(ErrorCode.BAD_REQUEST, 'the body must be a JSON object');
  return v as Record<string, unknown>;
}

function collectionOf(b: Record<string, unknown>): string {
  if (typeof b.collection !== 'string' || b.collection === '') bad('collection must be a collection name');
  return b.collection;
}

function optionalInt(b: Record<string, unknown>, field: string): number | undefined {
  const v = b[field];
  if (v === undefined || v === null || v === '') return undefined;
  if (typeof v !== 'number' || !Number.isInteger(v)) bad(`${field} must be an integer`);
  return v;
}

/** The search fields of a playground request, checked for type (the coordinator checks the rest). */
export function searchRequest(b: Record<string, unknown>) {
  const collection = collectionOf(b);
  const vector = b.vector;
  if (!Array.isArray(vector) || !vector.every((x) => typeof x === 'number')) throw new VdbError(ErrorCode.INVALID_VECTOR, 'vector must be an array of numbers');
  const filter = b.filter ?? undefined;
  if (filter !== undefined && (typeof filter !== 'object' || Array.isArray(filter))) throw new VdbError(ErrorCode.INVALID_FILTER, 'filter must be a JSON object');
  if (b.exact !== undefined && typeof b.exact !== 'boolean') bad('exact must be true or false');
  return { collection, vector: vector as number[], opts: { k: optionalInt(b, 'k'), ef: optionalInt(b, 'ef'), filter: filter as Filter | undefined, exact: b.exact as boolean | undefined, withPayload: true } };
}

/** Where a request goes, once its token is checked. */
export async function route(api: ConsoleApi, files: ReadonlyMap<string, Reply>, req: Request): Promise<Reply> {
  const { pathname, searchParams } = new URL(req.url, 'http://console');
  const file = files.get(pathname);
  if (file && req.method === 'GET') return file;
  if (req.method === 'GET' && pathname === '/api/overview') {
    const o = api.overview();
    return o === undefined ? errorReply(new VdbError(ErrorCode.UNAVAILABLE, 'the console has not polled the cluster yet')) : json(200, o);
  }
  if (req.method === 'GET' && pathname === '/api/describe') return json(200, await api.describe(searchParams.get('name') ?? bad('name is required')));
  if (req.method === 'POST' && pathname === '/api/point') {
    const b = decode(req.body);
    const id = b.id;
    if (typeof id !== 'string' && typeof id !== 'number') throw new VdbError(ErrorCode.INVALID_ID, 'id must be a string or an integer');
    return json(200, await api.get(collectionOf(b), [id], { withVector: true }));
  }
  if (req.method === 'POST' && pathname === '/api/search') {
    const s = searchRequest(decode(req.body));
    return json(200, await api.search(s.collection, s.vector, s.opts));
  }
  throw new VdbError(ErrorCode.UNKNOWN_ENDPOINT, `no ${req.method} ${pathname} in the console`);
}

/** The login form's answer: the cookie and a redirect to the page, or 401 and the form again. */
export function login(files: ReadonlyMap<string, Reply>, token: string, req: Request): Reply {
  const given = new URLSearchParams(req.body).get('token') ?? '';
  if (!sameToken(given, token)) return { ...files.get('/login')!, status: 401 };
  // HttpOnly: the page's script never needs it; SameSite=Strict: another site's page cannot use it.
  const cookie = `${COOKIE}=${encodeURIComponent(token)}; Path=/; HttpOnly; SameSite=Strict`;
  return { status: 303, headers: { ...SECURITY_HEADERS, Location: '/', 'Set-Cookie': cookie }, body: '' };
}

/** Any request: the login form is open, everything else needs the token (401 and the form otherwise). */
export async function handle(api: ConsoleApi, files: ReadonlyMap<string, Reply>, token: string, req: Request): Promise<Reply> {
  try {
    const { pathname } = new URL(req.url, 'http://console');
    if (pathname === '/login' && req.method === 'POST') return login(files, token, req);
    // The login form and its style are open: they hold nothing of the cluster.
    if ((pathname === '/login' || pathname === '/console.css') && req.method === 'GET') return files.get(pathname)!;
    const given = presented(req.headers);
    if (given === undefined || !sameToken(given, token)) {
      if (pathname.startsWith('/api/')) return errorReply(new VdbError(ErrorCode.UNAUTHENTICATED, 'this console needs its login token: a Bearer token or the cookie that /login sets'));
      return { ...files.get('/login')!, status: 401 };
    }
    return await route(api, files, req);
  } catch (e) {
    return errorReply(e);
  }
}
