// Crash safety of the embedded Collection. A child process (fixtures/crash-writer.mjs,
// running the compiled library from dist/) writes seeded random batches to one data
// directory and logs every call it has seen return; the test SIGKILLs it at a random
// moment, reopens the directory and checks that everything acknowledged is there
// exactly, that nothing acknowledged as deleted came back, that the batch in flight
// at the kill is all-or-nothing, that the index agrees with storage and that SQLite
// is intact. State accumulates across rounds, so recovery from snapshots written
// (or half written) by earlier rounds is exercised too. A second test checks that a
// directory held by one process is refused to another with LOCKED.

import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, realpathSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isDeepStrictEqual } from 'node:util';
import Database from 'better-sqlite3';
import { Collection, ErrorCode, VdbError } from '../ts/index.js';
import type { Payload, PointId } from '../ts/index.js';
import { mulberry32, randInt, shuffled } from './helpers.js';

const WRITER = fileURLToPath(new URL('./fixtures/crash-writer.mjs', import.meta.url));
const DIST_LIB = fileURLToPath(new URL('../dist/ts/collection.js', import.meta.url));
const WASM = fileURLToPath(new URL('../build/vdb.wasm', import.meta.url));

// Must match the writer.
const NAME = 'crash';
const DIM = 16;

const ROUNDS = 16;
const SEED = 20_261_126;
/** Exact-search every point up to this many; a seeded sample of this size beyond. */
const SEARCH_SAMPLE = 1500;
/** Approximate search must find the point itself (or an identical vector) this often. */
const MIN_SELF_RECALL = 0.9;

interface Rec { vector: Float32Array; payload: Payload | undefined }
type Model = Map<PointId, Rec>;

interface Batch {
  b: number;
  op: 'upsert' | 'delete';
  ids: PointId[];
  vectors?: number[][];
  payloads?: (Payload | null)[];
  res?: { count: number; seq: number };
}

interface Output {
  ready?: Record<string, unknown>;
  acked: Batch[];
  inFlight?: Batch;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

// ---- the child process ------------------------------------------------------

interface Writer {
  child: ChildProcess;
  outFile: string;
  closed: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  stderr(): string;
}

/** Writers still running, with the promise of their end. */
const children = new Map<ChildProcess, Promise<unknown>>();

function startWriter(dir: string, mode: 'write' | 'hold', seed: number, outFile: string): Writer {
  // stdout goes to a regular file: every writeSync the child completed is in it
  // after the kill, and a full pipe can never block or fail the child.
  const fd = openSync(outFile, 'w');
  let child: ChildProcess;
  try {
    child = spawn(process.execPath, [WRITER, dir, mode, String(seed)], { stdio: ['ignore', fd, 'pipe'] });
  } finally {
    closeSync(fd);
  }
  let err = '';
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (d: string) => { err += d; });
  const closed = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.on('close', (code, signal) => {
      children.delete(child);
      resolve({ code, signal });
    });
  });
  children.set(child, closed);
  return { child, outFile, closed, stderr: () => err };
}

async function waitReady(w: Writer): Promise<void> {
  let exited: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  void w.closed.then((x) => { exited = x; });
  // A guard against a hung child, not a timing assertion.
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (readFileSync(w.outFile, 'utf8').includes('\n')) return;
    if (exited) throw new Error(`writer exited before it was ready (code ${exited.code}, signal ${exited.signal}):\n${w.stderr()}`);
    if (Date.now() > deadline) throw new Error(`writer not ready after 60 s:\n${w.stderr()}`);
    await sleep(5);
  }
}

async function killWriter(w: Writer): Promise<void> {
  w.child.kill('SIGKILL');
  const { code, signal } = await w.closed;
  // Anything else means the writer died on its own: a library error, most likely.
  expect(signal, `writer should die of our SIGKILL, but exited with code ${code}; stderr:\n${w.stderr()}`).toBe('SIGKILL');
}

// ---- the writer's log -------------------------------------------------------

function parseOutput(text: string, label: string): Output {
  const lines = text.split('\n');
  lines.pop(); // '' after the final newline, or a line cut by the kill
  const out: Output = { acked: [] };
  let pending: Batch | undefined;
  lines.forEach((line, i) => {
    let msg: Batch & { t: string };
    try {
      msg = JSON.parse(line) as Batch & { t: string };
    } catch {
      throw new Error(`${label}: line ${i + 1} of the writer's output is not JSON: ${line.slice(0, 200)}`);
    }
    if (i === 0) {
      expect(msg.t, `${label}: first line`).toBe('ready');
      out.ready = msg as unknown as Record<string, unknown>;
      return;
    }
    if (msg.t === 'intent') {
      expect(pending, `${label}: intent ${msg.b} while batch ${pending?.b} is unacknowledged`).toBeUndefined();
      pending = msg;
    } else {
      expect(msg.t, `${label}: line ${i + 1}`).toBe('ack');
      expect(pending?.b, `${label}: ack ${msg.b} without its intent`).toBe(msg.b);
      const { t: _t, res, ...ackBody } = msg;
      const { t: _u, ...intentBody } = pending as Batch & { t: string };
      expect(ackBody, `${label}: ack ${msg.b} differs from its intent`).toEqual(intentBody);
      out.acked.push({ ...ackBody, res });
      pending = undefined;
    }
  });
  out.inFlight = pending;
  return out;
}

// ---- the model --------------------------------------------------------------

function f32(v: number[]): Float32Array {
  return Float32Array.from(v);
}

function vecEq(a: Float32Array | undefined, b: Float32Array): boolean {
  if (!a || a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function recEq(got: { vector?: Float32Array; payload?: Payload } | undefined, want: Rec | undefined): boolean {
  if (!got || !want) return got === want;
  return vecEq(got.vector, want.vector) && isDeepStrictEqual(got.payload, want.payload);
}

/** Applies a batch to the model; `gone` holds ids whose latest acknowledged state is deleted. */
function apply(model: Model, gone: Set<PointId>, batch: Batch): void {
  if (batch.op === 'upsert') {
    batch.ids.forEach((id, i) => {
      model.set(id, { vector: f32(batch.vectors![i]), payload: batch.payloads![i] ?? undefined });
      gone.delete(id);
    });
  } else {
    for (const id of batch.ids) if (model.delete(id)) gone.add(id);
  }
}

function showId(id: PointId): string {
  const s = JSON.stringify(id);
  return s.length > 60 ? `${s.slice(0, 40)}…(${s.length} chars)` : s;
}

function describeRec(r: { id?: PointId; vector?: Float32Array; payload?: unknown } | undefined): string {
  if (!r) return 'absent';
  return JSON.stringify({ vector: r.vector && Array.from(r.vector), payload: r.payload });
}

/**
 * The batch in flight at the kill committed entirely or not at all. Decides which
 * from what is stored, fails on anything in between, and updates the model.
 */
function resolveInFlight(col: Collection, model: Model, gone: Set<PointId>, batch: Batch, label: string): boolean {
  const ids = [...new Set(batch.ids)];
  const after: Model = new Map(ids.filter((id) => model.has(id)).map((id) => [id, model.get(id)!]));
  apply(after, new Set(), batch);
  const got = new Map(col.get(ids).map((p) => [p.id, p]));
  const isAfter = ids.every((id) => recEq(got.get(id), after.get(id)));
  const isBefore = ids.every((id) => recEq(got.get(id), model.get(id)));
  if (!isAfter && !isBefore) {
    const applied = ids.filter((id) => recEq(got.get(id), after.get(id)));
    const notApplied = ids.filter((id) => !recEq(got.get(id), after.get(id)));
    const show = (id: PointId) =>
      `  ${showId(id)}: stored ${describeRec(got.get(id))}; before the batch ${describeRec(model.get(id))}; after it ${describeRec(after.get(id))}`;
    expect.fail(`${label}: the ${batch.op} in flight at the kill (batch ${batch.b}, ${ids.length} distinct ids) was partly applied: ` +
      `${applied.length} ids hold the batch's values, ${notApplied.length} do not. Not applied:\n` +
      `${notApplied.slice(0, 3).map(show).join('\n')}\nApplied:\n${applied.slice(0, 2).map(show).join('\n')}`);
  }
  if (isAfter) apply(model, gone, batch);
  return isAfter && !isBefore;
}

// ---- checks -----------------------------------------------------------------

function verify(col: Collection, model: Model, gone: Set<PointId>, label: string, rand: () => number): void {
  expect(col.count(), `${label}: count()`).toBe(model.size);

  // Every acknowledged point, with exactly its vector and payload, through get().
  const ids = [...model.keys()];
  const got = col.get(ids);
  const gotById = new Map(got.map((p) => [p.id, p]));
  const missing = ids.filter((id) => !gotById.has(id));
  expect(missing.slice(0, 10).map(showId), `${label}: ${missing.length} acknowledged points missing from get()`).toEqual([]);
  expect(got.map((p) => p.id), `${label}: get() order`).toEqual(ids);
  const wrong: string[] = [];
  for (const id of ids) {
    const p = gotById.get(id)!;
    if (!recEq(p, model.get(id))) wrong.push(`${showId(id)}: stored ${describeRec(p)}, acknowledged ${describeRec(model.get(id))}`);
  }
  expect(wrong.slice(0, 5), `${label}: ${wrong.length} points differ from what was acknowledged`).toEqual([]);

  // Nothing acknowledged as deleted is back.
  const back = col.get([...gone]).map((p) => p.id);
  expect(back.slice(0, 10).map(showId), `${label}: ${back.length} deleted points came back`).toEqual([]);

  // Storage holds exactly the model: no extra points, same vectors (scroll reads SQLite).
  const scrolled = new Map<PointId, Float32Array>();
  for (let after: PointId | undefined; ;) {
    const page = col.scroll({ after, limit: 1000, withVector: true });
    for (const p of page.points) {
      expect(scrolled.has(p.id), `${label}: scroll returned ${showId(p.id)} twice`).toBe(false);
      scrolled.set(p.id, p.vector!);
    }
    if (page.next === undefined) break;
    after = page.next;
  }
  const extra = [...scrolled.keys()].filter((id) => !model.has(id));
  expect(extra.slice(0, 10).map(showId), `${label}: ${extra.length} stored points were never acknowledged`).toEqual([]);
  expect(scrolled.size, `${label}: points seen by scroll`).toBe(model.size);
  const badScroll = ids.filter((id) => !vecEq(scrolled.get(id), model.get(id)!.vector));
  expect(badScroll.slice(0, 10).map(showId), `${label}: scroll vectors differ`).toEqual([]);

  // The index holds exactly the stored points: exact search finds each vector
  // at distance 0, as its own id or an id with the identical vector.
  const sample = ids.length <= SEARCH_SAMPLE ? ids : shuffled(ids, rand).slice(0, SEARCH_SAMPLE);
  const isSelf = (id: PointId, hit: { id: PointId; score: number } | undefined) =>
    hit !== undefined && hit.score === 0 && (hit.id === id || vecEq(model.get(hit.id)?.vector, model.get(id)!.vector));
  const notFound: string[] = [];
  let approxSelf = 0;
  for (const id of sample) {
    const v = model.get(id)!.vector;
    const hits = col.search(v, { k: 1, exact: true });
    if (hits.length !== 1 || !isSelf(id, hits[0])) notFound.push(`${showId(id)} → ${JSON.stringify(hits)}`);
    if (isSelf(id, col.search(v, { k: 1 })[0])) approxSelf++;
  }
  expect(notFound.slice(0, 5), `${label}: exact search misses ${notFound.length} of ${sample.length} stored vectors`).toEqual([]);
  if (sample.length > 0) {
    expect(approxSelf / sample.length, `${label}: HNSW self-recall@1 over ${sample.length} points`).toBeGreaterThanOrEqual(MIN_SELF_RECALL);
  }
}

/** After the collection is closed: SQLite is intact and holds model.size points. */
function checkSqlite(dir: string, model: Model, label: string): void {
  const db = new Database(join(dir, 'vdb.sqlite'), { readonly: true, fileMustExist: true });
  try {
    expect(db.pragma('integrity_check'), `${label}: PRAGMA integrity_check`).toEqual([{ integrity_check: 'ok' }]);
    const n = (db.prepare('SELECT count(*) AS n FROM points WHERE collection = ?').get(NAME) as { n: number }).n;
    expect(n, `${label}: rows in points`).toBe(model.size);
  } finally {
    db.close();
  }
}

// ---- tests ------------------------------------------------------------------

let root: string;

beforeAll(() => {
  if (!existsSync(DIST_LIB) || !existsSync(WASM)) {
    throw new Error(`the crash test runs the compiled library in a child process, and ${existsSync(DIST_LIB) ? WASM : DIST_LIB} is missing: run npm run build`);
  }
  root = mkdtempSync(join(tmpdir(), 'vdb-crash-'));
});

afterEach(async () => {
  for (const [c, closed] of [...children]) {
    c.kill('SIGKILL');
    await closed;
  }
});

afterAll(() => {
  if (root) rmSync(root, { recursive: true, force: true });
});

describe('crash safety (SIGKILL of a writing process)', () => {
  it(`${ROUNDS} rounds of kill -9 during random upserts, deletes and background snapshots lose nothing acknowledged`, async () => {
    const dir = join(root, 'data');
    const model: Model = new Map();
    const gone = new Set<PointId>();
    const stats = { acked: 0, inFlight: 0, inFlightApplied: 0, killedBeforeReady: 0, maxSize: 0 };
    let lastSeq = 0;

    for (let r = 0; r < ROUNDS; r++) {
      const label = `round ${r} (data in ${dir})`;
      const rand = mulberry32(SEED + r);
      const waitMs = 50 + randInt(rand, 551);
      // Every fourth round is killed counting from the spawn, so some kills land
      // while the child is still opening and recovering the directory.
      const early = r % 4 === 3;
      const w = startWriter(dir, 'write', SEED + r, join(root, `round-${r}.out`));
      if (!early) await waitReady(w);
      await Promise.race([sleep(waitMs), w.closed]);
      await killWriter(w);

      const out = parseOutput(readFileSync(w.outFile, 'utf8'), label);
      if (!out.ready) stats.killedBeforeReady++;
      if (out.ready) expect(out.ready.count, `${label}: count() seen by the writer at start`).toBe(model.size);
      for (const batch of out.acked) {
        // upsert counts every point given; delete counts the distinct ids that existed.
        const expected = batch.op === 'upsert' ? batch.ids.length : [...new Set(batch.ids)].filter((id) => model.has(id)).length;
        expect(batch.res?.count, `${label}: batch ${batch.b} (${batch.op}) returned count`).toBe(expected);
        expect(batch.res!.seq, `${label}: batch ${batch.b} seq after ${lastSeq}`).toBeGreaterThan(lastSeq);
        lastSeq = batch.res!.seq;
        apply(model, gone, batch);
      }
      stats.acked += out.acked.length;

      const col = Collection.open(dir, { name: NAME, dim: DIM, metric: 'l2' });
      try {
        if (out.inFlight) {
          stats.inFlight++;
          if (resolveInFlight(col, model, gone, out.inFlight, label)) stats.inFlightApplied++;
        }
        stats.maxSize = Math.max(stats.maxSize, model.size);
        verify(col, model, gone, `${label}, after the kill`, rand);
      } finally {
        col.close();
      }
      checkSqlite(dir, model, label);

      // Once more from the snapshot close() just wrote.
      const again = Collection.open(dir, { name: NAME, dim: DIM, metric: 'l2' });
      try {
        verify(again, model, gone, `${label}, reopened after a clean close`, rand);
      } finally {
        again.close();
      }
    }

    console.log(`crash test: ${ROUNDS} rounds, ${stats.acked} acknowledged batches, ${stats.inFlight} in flight at the kill ` +
      `(${stats.inFlightApplied} had committed), ${stats.killedBeforeReady} killed before ready, ` +
      `${model.size} points at the end (max ${stats.maxSize}), ${gone.size} deleted ids checked`);
    // The rounds must actually have written something for the checks to mean anything.
    expect(stats.acked, 'acknowledged batches over all rounds').toBeGreaterThan(ROUNDS);
    expect(model.size + gone.size, 'ids ever written').toBeGreaterThan(100);
  });

  it('a second process opening a held directory gets LOCKED, and can open it once the holder is gone', async () => {
    const dir = join(root, 'held');
    const w = startWriter(dir, 'hold', 1, join(root, 'held.out'));
    await waitReady(w);
    const ready = parseOutput(readFileSync(w.outFile, 'utf8'), 'holder').ready as
      { held: { ids: string[]; vectors: number[][]; res: { count: number } } };
    expect(ready.held.res.count).toBe(10);

    for (const name of [NAME, NAME, 'another']) {
      let err: unknown;
      try {
        const c = Collection.open(dir, { name, dim: DIM, metric: 'l2' });
        c.close();
      } catch (e) {
        err = e;
      }
      expect(err, `opening ${name} while another process holds ${dir}`).toBeInstanceOf(VdbError);
      expect((err as VdbError).code).toBe(ErrorCode.LOCKED);
      expect((err as VdbError).message, 'the error names the directory').toContain(realpathSync(dir));
    }

    await killWriter(w);
    const col = Collection.open(dir, { name: NAME, dim: DIM, metric: 'l2' });
    try {
      expect(col.count()).toBe(10);
      const got = col.get(ready.held.ids);
      expect(got.map((p) => p.id)).toEqual(ready.held.ids);
      got.forEach((p, i) => {
        expect(Array.from(p.vector!)).toEqual(Array.from(f32(ready.held.vectors[i])));
        expect(p.payload).toEqual({ i });
      });
    } finally {
      col.close();
    }
    checkSqlite(dir, new Map(ready.held.ids.map((id) => [id, { vector: new Float32Array(DIM), payload: undefined }])), 'held');
  });
});
