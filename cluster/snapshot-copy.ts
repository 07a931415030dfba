// Copying a shard replica from a live peer over request-reply (docs/cluster.md): the
// peer exports its collection (rows and an index snapshot at its applied
// sequence) into one file and serves it in chunks; the new replica writes the
// chunks, checks the digest, imports the file and then tails the log from that
// sequence. Replaying entries after it is safe: applying the log is idempotent.

import { createHash, randomUUID } from 'node:crypto';
import { closeSync, mkdirSync, openSync, readSync, rmSync, statSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import type { NatsConnection } from 'nats';
import { Collection } from '../ts/collection.js';
import { VdbError, ErrorCode } from '../ts/errors.js';
import { decode, encode } from '../ts/wire/codec.js';
import { errorFromBody } from '../ts/wire/messages.js';

/** An export nobody has read for this long is removed. */
const IDLE_MS = 5 * 60_000;
/** Exports one process serves at once (each is a file the size of its shard). */
const MAX_OPEN = 4;
/** Chunks in flight while copying. */
const WINDOW = 4;

/** A copy in progress: the exported collection's name, size, sequence and digest. */
export interface CopyBegin { token: string; name: string; bytes: number; seq: number; sha256: string; chunk: number }

/** The file's SHA-256, read in pieces: a shard's copy can be larger than memory allows at once. */
function sha256(file: string): string {
  const hash = createHash('sha256');
  const buf = Buffer.alloc(4 * 1024 * 1024);
  const fd = openSync(file, 'r');
  try {
    for (let n; (n = readSync(fd, buf, 0, buf.length, null)) > 0;) hash.update(buf.subarray(0, n));
  } finally {
    closeSync(fd);
  }
  return hash.digest('hex');
}

/** The serving side: begin (export), read (a chunk at an offset), end (remove). */
export class CopySource {
  private readonly open = new Map<string, { file: string; fd: number; bytes: number; timer: NodeJS.Timeout }>();

  constructor(private readonly dir: string, private readonly chunk: number) {}

  /** Copies being sent now. */
  get inFlight(): number {
    return this.open.size;
  }

  handle(store: Collection, body: unknown): unknown {
    const b = body as { op?: unknown; token?: unknown; offset?: unknown };
    if (b?.op === 'begin') {
      if (this.open.size >= MAX_OPEN) throw new VdbError(ErrorCode.UNAVAILABLE, `${MAX_OPEN} copies are in progress here; retry later`);
      mkdirSync(this.dir, { recursive: true });
      const token = randomUUID();
      const file = join(this.dir, `${token}.sqlite`);
      const seq = store.exportTo(file);
      const bytes = statSync(file).size;
      const entry = { file, fd: openSync(file, 'r'), bytes, timer: setTimeout(() => this.end(token), IDLE_MS) };
      this.open.set(token, entry);
      return { token, name: store.name, bytes, seq, sha256: sha256(file), chunk: this.chunk } satisfies CopyBegin;
    }
    const e = typeof b?.token === 'string' ? this.open.get(b.token) : undefined;
    if (!e) throw new VdbError(ErrorCode.BAD_REQUEST, 'token: no copy in progress with this token');
    if (b.op === 'read') {
      if (!Number.isSafeInteger(b.offset) || (b.offset as number) < 0 || (b.offset as number) >= e.bytes) {
        throw new VdbError(ErrorCode.BAD_REQUEST, `offset: expected 0 to ${e.bytes - 1}`);
      }
      e.timer.refresh();
      const out = Buffer.alloc(Math.min(this.chunk, e.bytes - (b.offset as number)));
      readSync(e.fd, out, 0, out.length, b.offset as number);
      return { data: out };
    }
    if (b.op === 'end') {
      this.end(b.token as string);
      return {};
    }
    throw new VdbError(ErrorCode.BAD_REQUEST, 'op: expected begin, read or end');
  }

  private end(token: string): void {
    const e = this.open.get(token);
    if (!e) return;
    clearTimeout(e.timer);
    closeSync(e.fd);
    rmSync(e.file, { force: true });
    this.open.delete(token);
  }

  close(): void {
    for (const t of [...this.open.keys()]) this.end(t);
  }
}

/** A peer's answer to `begin`, checked before it drives the copy. */
function checkBegin(r: Record<string, unknown>, subject: string): CopyBegin {
  const count = (v: unknown, min: number) => Number.isSafeInteger(v) && (v as number) >= min;
  // The token names a file here: letters, digits and '-' only.
  if (typeof r.token !== 'string' || !/^[A-Za-z0-9-]{1,64}$/.test(r.token) || typeof r.name !== 'string' || typeof r.sha256 !== 'string' || !count(r.bytes, 0) || !count(r.seq, 0) || !count(r.chunk, 1)) {
    throw new VdbError(ErrorCode.BAD_REQUEST, `${subject}: a malformed answer to begin`);
  }
  return r as unknown as CopyBegin;
}

async function call(nc: NatsConnection, subject: string, body: unknown, timeout: number): Promise<Record<string, unknown>> {
  const m = await nc.request(subject, encode(body, false), { timeout });
  const reply = decode(m.data, false) as Record<string, unknown>;
  const err = errorFromBody(reply);
  if (err) throw err;
  return reply;
}

/** Fetches the export a peer serves on `subject` (its snapshot endpoint) into
 * `file`, checked against its digest; returns what `begin` answered (the
 * sequence the export is at). `vdb backup` keeps the file as it is. */
export async function fetchSnapshot(nc: NatsConnection, subject: string, file: string, timeoutMs = 30_000): Promise<CopyBegin> {
  const begin = checkBegin(await call(nc, subject, { op: 'begin' }, timeoutMs), subject);
  try {
    const fd = openSync(file, 'w');
    try {
      let next = 0;
      const worker = async () => {
        while (next < begin.bytes) {
          const offset = next;
          next += begin.chunk;
          const { data } = (await call(nc, subject, { op: 'read', token: begin.token, offset }, timeoutMs)) as { data: unknown };
          if (!(data instanceof Uint8Array) || data.length !== Math.min(begin.chunk, begin.bytes - offset)) {
            throw new VdbError(ErrorCode.STORAGE, `${subject}: the chunk at ${offset} has the wrong size`);
          }
          writeSync(fd, data, 0, data.length, offset);
        }
      };
      await Promise.all(Array.from({ length: WINDOW }, worker));
    } finally {
      closeSync(fd);
    }
    if (sha256(file) !== begin.sha256) throw new VdbError(ErrorCode.STORAGE, `the copy from ${subject} does not match its digest`);
    return begin;
  } finally {
    await call(nc, subject, { op: 'end', token: begin.token }, timeoutMs).catch(() => undefined);
  }
}

/** Copies a replica's collection from `subject` (a peer's snapshot endpoint) into `dir` as `name`; returns its sequence. */
export async function copyFromPeer(nc: NatsConnection, subject: string, dir: string, name: string, timeoutMs = 30_000): Promise<{ seq: number; bytes: number }> {
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `copy-${name}-${randomUUID()}.sqlite`);
  try {
    const begin = await fetchSnapshot(nc, subject, file, timeoutMs);
    Collection.importFrom(dir, name, file, begin.name);
    return { seq: begin.seq, bytes: begin.bytes };
  } finally {
    rmSync(file, { force: true });
  }
}
