// The `vdb` command, run as a child process from dist/ (build first): import
// from every format, then read the collection back and search it; bad files
// end with exit status 1 and one line "vdb import: CODE: message".

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { gzipSync } from 'node:zlib';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Collection } from '../ts/index.js';
import type { Payload, PointId } from '../ts/index.js';
import { gaussian, mulberry32 } from './helpers.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const CLI = join(ROOT, 'dist', 'cluster', 'cli.js');

let tmp: string;

interface Run { status: number | null; stdout: string; stderr: string }

function vdb(...args: string[]): Run {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 60_000 });
  if (r.error) throw r.error;
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function ok(r: Run): Run {
  expect(r.status, `exit status ${r.status}; stderr:\n${r.stderr}`).toBe(0);
  return r;
}

/** Exit status 1 and exactly one line on stderr: "vdb <cmd>: CODE: message". */
function fails(r: Run, cmd: string, code: string, message: RegExp): void {
  expect(r.status, `expected exit 1; stdout:\n${r.stdout}\nstderr:\n${r.stderr}`).toBe(1);
  const lines = r.stderr.split('\n').filter((l) => l.startsWith(`vdb ${cmd}: `));
  expect(lines, r.stderr).toHaveLength(1);
  expect(lines[0].startsWith(`vdb ${cmd}: ${code}: `), lines[0]).toBe(true);
  expect(lines[0]).toMatch(message);
}

// ------------------------------------------------------------------ writers

const DIM = 12;
const N = 37; // not a multiple of the --batch 10 used below

function rows(seed: number, n = N, dim = DIM): number[][] {
  const g = gaussian(mulberry32(seed));
  return Array.from({ length: n }, () => Array.from({ length: dim }, () => g() * 10));
}

const f32rows = (rs: number[][]) => rs.map((r) => r.map(Math.fround));

function texmex(rs: number[][], kind: 'f' | 'b', dims = rs.map((r) => r.length)): Buffer {
  const per = kind === 'f' ? 4 : 1;
  const out = Buffer.alloc(rs.reduce((a, r) => a + 4 + per * r.length, 0));
  let off = 0;
  rs.forEach((r, i) => {
    off = out.writeInt32LE(dims[i], off);
    for (const x of r) off = kind === 'f' ? out.writeFloatLE(x, off) : out.writeUInt8(x, off);
  });
  return out;
}

function rawF32(rs: number[][]): Buffer {
  const out = Buffer.alloc(rs.length * rs[0].length * 4);
  let off = 0;
  for (const r of rs) for (const x of r) off = out.writeFloatLE(x, off);
  return out;
}

/** An .npy file, version 1.0, with the header dict given as Python text. */
function npy(header: string, data: Buffer): Buffer {
  let h = header;
  while ((10 + h.length + 1) % 64 !== 0) h += ' ';
  h += '\n';
  const pre = Buffer.alloc(10);
  Buffer.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0]).copy(pre);
  pre.writeUInt16LE(h.length, 8);
  return Buffer.concat([pre, Buffer.from(h, 'latin1'), data]);
}

function npyMatrix(rs: number[][], descr: '<f4' | '<f8'): Buffer {
  const item = descr === '<f4' ? 4 : 8;
  const data = Buffer.alloc(rs.length * rs[0].length * item);
  let off = 0;
  for (const r of rs) for (const x of r) off = item === 4 ? data.writeFloatLE(x, off) : data.writeDoubleLE(x, off);
  return npy(`{'descr': '${descr}', 'fortran_order': False, 'shape': (${rs.length}, ${rs[0].length}), }`, data);
}

function file(name: string, bytes: Buffer | string): string {
  const p = join(tmp, name);
  mkdirSync(dirname(p), { recursive: true });
  writeFileSync(p, bytes);
  return p;
}

/** Reads a whole collection back (in a closed-again Collection) for checking. */
function readBack(dir: string, name: string, ids: PointId[]): { count: number; metric: string; dim: number; points: { id: PointId; vector: number[]; payload?: Payload }[] } {
  const c = Collection.open(dir, { name });
  try {
    const points = c.get(ids).map((p) => ({ id: p.id, vector: Array.from(p.vector!), ...(p.payload ? { payload: p.payload } : {}) }));
    return { count: c.count(), metric: c.metric, dim: c.dim, points };
  } finally {
    c.close();
  }
}

const range = (n: number) => Array.from({ length: n }, (_, i) => i);

beforeAll(() => {
  if (!existsSync(CLI)) {
    throw new Error(`${CLI} is missing: these tests run the built command; build it first with \`npx tsc -p tsconfig.json\` (or \`npm run build\`)`);
  }
  tmp = mkdtempSync(join(tmpdir(), 'vdb-cli-test-'));
});

afterAll(() => {
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

// ---------------------------------------------------------------- importing

describe('vdb import', () => {
  it('imports .fvecs exactly, ids = row numbers, in several batches', () => {
    const rs = f32rows(rows(1));
    const dir = join(tmp, 'db-fvecs');
    const r = ok(vdb('import', '--dir', dir, '--collection', 'v', '--batch', '10', file('a.fvecs', texmex(rs, 'f'))));
    expect(r.stdout).toMatch(/imported 37 points/);
    const back = readBack(dir, 'v', range(N));
    expect(back).toMatchObject({ count: N, dim: DIM, metric: 'l2' });
    expect(back.points.map((p) => p.vector)).toEqual(rs);
    expect(back.points.map((p) => p.id)).toEqual(range(N));
    expect(back.points.every((p) => p.payload === undefined)).toBe(true);
  });

  it('imports .bvecs as floats 0..255', () => {
    const rand = mulberry32(2);
    const rs = Array.from({ length: N }, () => Array.from({ length: 7 }, () => Math.floor(rand() * 256)));
    rs[0][0] = 0;
    rs[0][1] = 255;
    const dir = join(tmp, 'db-bvecs');
    ok(vdb('import', '--dir', dir, '--collection', 'b', '--batch', '10', file('b.bvecs', texmex(rs, 'b'))));
    const back = readBack(dir, 'b', range(N));
    expect(back).toMatchObject({ count: N, dim: 7 });
    expect(back.points.map((p) => p.vector)).toEqual(rs);
  });

  it('imports IDX unsigned bytes (MNIST images, gzipped) and big-endian float32, rows flattened', () => {
    const rand = mulberry32(4);
    const imgs = Array.from({ length: N }, () => Array.from({ length: 6 }, () => Math.floor(rand() * 256)));
    const head = Buffer.alloc(16);
    head.writeUInt32BE(0x00000803, 0);
    [N, 2, 3].forEach((n, i) => head.writeUInt32BE(n, 4 + 4 * i));
    const gz = file('train-images-idx3-ubyte.gz', gzipSync(Buffer.concat([head, Buffer.from(imgs.flat())])));
    const dirU = join(tmp, 'db-idx-u8');
    ok(vdb('import', '--dir', dirU, '--collection', 'u', '--batch', '10', gz));
    expect(readBack(dirU, 'u', range(N))).toMatchObject({ count: N, dim: 6, points: imgs.map((vector) => ({ vector })) });

    const rs = f32rows(rows(4, N, 5));
    const fh = Buffer.alloc(12 + 4 * 5 * N);
    fh.writeUInt32BE(0x00000d02, 0);
    fh.writeUInt32BE(N, 4);
    fh.writeUInt32BE(5, 8);
    rs.flat().forEach((x, i) => fh.writeFloatBE(x, 12 + 4 * i));
    const dirF = join(tmp, 'db-idx-f32');
    ok(vdb('import', '--dir', dirF, '--collection', 'f', '--batch', '10', file('vectors.idx', fh)));
    expect(readBack(dirF, 'f', range(N)).points.map((q) => q.vector)).toEqual(rs);
  });

  it('imports .f32 with the dim (and metric) of meta.json beside it', () => {
    const rs = f32rows(rows(3));
    const p = file('folder/base.f32', rawF32(rs));
    file('folder/meta.json', JSON.stringify({ dim: DIM, n_base: N, metric: 'angular' }));
    const dir = join(tmp, 'db-f32');
    ok(vdb('import', '--dir', dir, '--collection', 'f', '--batch', '10', p));
    const back = readBack(dir, 'f', range(N));
    expect(back).toMatchObject({ count: N, dim: DIM, metric: 'cosine' });
    expect(back.points.map((q) => q.vector)).toEqual(rs);
  });

  it('imports .npy float32 and float64 (rounded to float32)', () => {
    const rs = rows(4); // float64 values, most not representable in float32
    const dir = join(tmp, 'db-npy');
    ok(vdb('import', '--dir', dir, '--collection', 'n32', '--metric', 'ip', '--batch', '10', file('a32.npy', npyMatrix(f32rows(rs), '<f4'))));
    ok(vdb('import', '--dir', dir, '--collection', 'n64', '--batch', '10', file('a64.npy', npyMatrix(rs, '<f8'))));
    const b32 = readBack(dir, 'n32', range(N));
    const b64 = readBack(dir, 'n64', range(N));
    expect(b32).toMatchObject({ count: N, dim: DIM, metric: 'ip' });
    expect(b64).toMatchObject({ count: N, dim: DIM, metric: 'l2' });
    expect(b32.points.map((p) => p.vector)).toEqual(f32rows(rs));
    expect(b64.points.map((p) => p.vector)).toEqual(f32rows(rs));
  });

  it('imports into a new SQ8 collection with --quantization sq8 --rescore N, and refuses a bad one', () => {
    const rs = f32rows(rows(6));
    const dir = join(tmp, 'db-sq8');
    ok(vdb('import', '--dir', dir, '--collection', 'q', '--quantization', 'sq8', '--rescore', '12', '--batch', '10', file('q.npy', npyMatrix(rs, '<f4'))));
    const c = Collection.open(dir, { name: 'q' });
    try {
      expect(c.quantization).toEqual({ kind: 'sq8', rescore: 12 });
      expect(c.count()).toBe(N);
      expect(c.search(rs[3], { k: 1 })[0].id).toBe(3);
    } finally {
      c.close();
    }
    fails(vdb('import', '--dir', join(tmp, 'db-sq8-bad'), '--collection', 'q', '--quantization', 'pq', join(tmp, 'q.npy')), 'import', 'INVALID_ARGUMENT', /quantization\.kind must be "sq8"/);
  });

  it('imports .npy of format version 2.0, header keys in any order', () => {
    const rs = f32rows(rows(5, 3, 4));
    const v1 = npy(`{'shape': (3, 4), 'fortran_order': False, 'descr': '<f4'}`, rawF32(rs));
    // Version 2.0: a 4-byte header length.
    const headerLen = v1.readUInt16LE(8);
    const v2 = Buffer.concat([Buffer.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 2, 0]), Buffer.alloc(4), v1.subarray(10)]);
    v2.writeUInt32LE(headerLen, 8);
    const dir = join(tmp, 'db-npy2');
    ok(vdb('import', '--dir', dir, '--collection', 'a', file('v1.npy', v1)));
    ok(vdb('import', '--dir', dir, '--collection', 'b', file('v2.npy', v2)));
    expect(readBack(dir, 'a', range(3)).points.map((p) => p.vector)).toEqual(rs);
    expect(readBack(dir, 'b', range(3)).points.map((p) => p.vector)).toEqual(rs);
  });

  it('imports .jsonl with string ids and payloads, skipping blank lines', () => {
    const rs = f32rows(rows(6));
    const payload = (i: number): Payload | undefined =>
      i % 5 === 4 ? undefined : { group: i % 2 === 0 ? 'even' : 'odd', i, tags: ['x', `é✓${i}`], nested: { ok: i % 3 === 0, none: null } };
    const lines = rs.map((v, i) => JSON.stringify({ id: `doc-${i}`, vector: v, ...(payload(i) ? { payload: payload(i) } : {}) }));
    lines.splice(10, 0, '', '   '); // blank lines are skipped
    const text = lines.join('\n').replace('\n', '\r\n') + '\n';
    const p = file('docs.jsonl', text);
    const dir = join(tmp, 'db-jsonl');
    ok(vdb('import', '--dir', dir, '--collection', 'docs', '--batch', '10', p));
    const ids = range(N).map((i) => `doc-${i}`);
    const back = readBack(dir, 'docs', ids);
    expect(back.count).toBe(N);
    expect(back.points.map((q) => q.id)).toEqual(ids);
    expect(back.points.map((q) => q.vector)).toEqual(rs);
    expect(back.points.map((q) => q.payload)).toEqual(range(N).map(payload));
  });

  it('adds to an existing collection, replacing points with the same id', () => {
    const dir = join(tmp, 'db-again');
    const a = f32rows(rows(7, 5));
    const b = f32rows(rows(8, 8));
    ok(vdb('import', '--dir', dir, '--collection', 'c', file('again-a.fvecs', texmex(a, 'f'))));
    const r = ok(vdb('import', '--dir', dir, '--collection', 'c', file('again-b.npy', npyMatrix(b, '<f4'))));
    expect(r.stdout).toMatch(/c now holds 8 points/);
    expect(readBack(dir, 'c', range(8)).points.map((p) => p.vector)).toEqual(b);
  });
});

// ---------------------------------------------------------------- searching

describe('vdb search', () => {
  let dir: string;
  let rs: number[][];

  beforeAll(() => {
    rs = f32rows(rows(9, 60));
    dir = join(tmp, 'db-search');
    const lines = rs.map((v, i) => JSON.stringify({ id: i % 2 ? `s${i}` : i, vector: v, payload: { color: i % 3 === 0 ? 'red' : 'blue', i } }));
    ok(vdb('import', '--dir', dir, '--collection', 's', file('search.jsonl', lines.join('\n'))));
    file('search-q.fvecs', texmex(rs, 'f'));
  });

  const idOf = (i: number) => (i % 2 ? `s${i}` : i);
  const hits = (r: Run) => r.stdout.trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as { id: PointId; score: number; payload?: Payload });

  it('finds a stored vector given as --vector JSON, as JSON lines', () => {
    const h = hits(ok(vdb('search', '--dir', dir, '--collection', 's', '--k', '5', '--output', 'jsonl', '--vector', JSON.stringify(rs[17]))));
    expect(h).toHaveLength(5);
    expect(h[0]).toEqual({ id: idOf(17), score: 0 });
    for (let i = 1; i < h.length; i++) expect(h[i].score).toBeGreaterThanOrEqual(h[i - 1].score);
  });

  it('takes the query from a file row; --exact agrees with the graph on a small set', () => {
    const a = hits(ok(vdb('search', '--dir', dir, '--collection', 's', '--output', 'jsonl', '--query-file', join(tmp, 'search-q.fvecs'), '--row', '42')));
    const b = hits(ok(vdb('search', '--dir', dir, '--collection', 's', '--output', 'jsonl', '--exact', '--query-file', join(tmp, 'search.jsonl'), '--row', '42')));
    expect(a[0]).toEqual({ id: idOf(42), score: 0 });
    expect(a).toHaveLength(10);
    expect(b.map((x) => x.id)).toEqual(a.map((x) => x.id));
  });

  it('filters and returns payloads; prints a table on request', () => {
    const h = hits(ok(vdb('search', '--dir', dir, '--collection', 's', '--output', 'jsonl', '--k', '30', '--with-payload',
      '--filter', '{"color": "red", "i": {"$gte": 30}}', '--vector', JSON.stringify(rs[0]))));
    const want = range(60).filter((i) => i % 3 === 0 && i >= 30);
    expect(h.map((x) => x.payload!.i).sort((x, y) => (x as number) - (y as number))).toEqual(want);
    expect(h.every((x) => x.payload!.color === 'red')).toBe(true);
    const t = ok(vdb('search', '--dir', dir, '--collection', 's', '--output', 'table', '--k', '3', '--with-payload', '--vector', JSON.stringify(rs[3])));
    const lines = t.stdout.trim().split('\n');
    expect(lines[0]).toMatch(/#\s+id\s+score\s+payload/);
    expect(lines[1]).toMatch(/^1\s+s3\s+0\s+\{"color":"red","i":3\}$/);
    expect(lines).toHaveLength(4);
  });

  it('reports errors with their codes', () => {
    fails(vdb('search', '--dir', dir, '--collection', 's', '--vector', '[1, 2, 3]'), 'search', 'DIMENSION_MISMATCH', /query: expected 12 numbers, got 3/);
    fails(vdb('search', '--dir', dir, '--collection', 's', '--vector', '[1, 2'), 'search', 'INVALID_VECTOR', /--vector is not valid JSON/);
    fails(vdb('search', '--dir', dir, '--collection', 's', '--vector', JSON.stringify(rs[0]), '--filter', '{"a": {"$near": 1}}'), 'search', 'INVALID_FILTER', /\$near/);
    fails(vdb('search', '--dir', dir, '--collection', 's', '--vector', JSON.stringify(rs[0]), '--k', '10001'), 'search', 'INVALID_K', /k must be/);
    fails(vdb('search', '--dir', dir, '--collection', 'nope', '--vector', '[1]'), 'search', 'COLLECTION_NOT_FOUND', /no collection nope/);
    const missing = join(tmp, 'no-such-dir');
    fails(vdb('search', '--dir', missing, '--collection', 's', '--vector', '[1]'), 'search', 'COLLECTION_NOT_FOUND', /holds no vdb data/);
    expect(existsSync(missing), 'search must not create a data directory').toBe(false);
    fails(vdb('search', '--dir', dir, '--collection', 's', '--query-file', join(tmp, 'search-q.fvecs'), '--row', '60'), 'search', 'INVALID_ARGUMENT', /rows 0 to 59, not 60/);
  });
});

// ------------------------------------------------------------------- errors

describe('bad input', () => {
  const dir = () => join(tmp, 'db-bad');
  let serial = 0;
  const imp = (p: string) => vdb('import', '--dir', dir(), '--collection', `bad${serial++}`, p);

  it('refuses malformed TEXMEX files', () => {
    const good = texmex(f32rows(rows(10, 4)), 'f');
    fails(imp(file('trunc.fvecs', good.subarray(0, good.length - 3))), 'import', 'INVALID_ARGUMENT', /trunc\.fvecs: .*not a whole number of 52-byte records/);
    fails(imp(file('dims.fvecs', texmex(f32rows(rows(10, 4)), 'f', [12, 12, 11, 12]))), 'import', 'DIMENSION_MISMATCH', /row 2 has dim 11/);
    fails(imp(file('zero.fvecs', Buffer.alloc(0))), 'import', 'INVALID_ARGUMENT', /is empty/);
    fails(imp(file('huge.bvecs', Buffer.from([0xff, 0xff, 0xff, 0x7f, 1, 2, 3]))), 'import', 'INVALID_ARGUMENT', /not a bvecs file/);
  });

  it('refuses IDX files of other element types, with a bad magic, truncated, or not gzip', () => {
    const idx = (magic: number, sizes: number[], body: number) => {
      const b = Buffer.alloc(4 + 4 * sizes.length + body);
      b.writeUInt32BE(magic, 0);
      sizes.forEach((n, i) => b.writeUInt32BE(n, 4 + 4 * i));
      return b;
    };
    fails(imp(file('i32.idx', idx(0x00000c02, [2, 3], 24))), 'import', 'INVALID_ARGUMENT', /element type 0xc/);
    fails(imp(file('magic.idx', idx(0x01000802, [2, 3], 6))), 'import', 'INVALID_ARGUMENT', /IDX magic/);
    fails(imp(file('short.idx', idx(0x00000802, [3, 3], 6))), 'import', 'INVALID_ARGUMENT', /truncated, or not an IDX file/);
    fails(imp(file('a-idx1-ubyte.gz', Buffer.from('not gzip'))), 'import', 'INVALID_ARGUMENT', /not a valid gzip file/);
  });

  it('refuses .npy files that are not 2-D little-endian float32/float64 in C order', () => {
    const data = rawF32(f32rows(rows(11, 2, 3)));
    fails(imp(file('int.npy', npy(`{'descr': '<i4', 'fortran_order': False, 'shape': (2, 3), }`, data))), 'import', 'INVALID_ARGUMENT', /dtype '<i4' is not supported/);
    fails(imp(file('be.npy', npy(`{'descr': '>f4', 'fortran_order': False, 'shape': (2, 3), }`, data))), 'import', 'INVALID_ARGUMENT', /big-endian/);
    fails(imp(file('fort.npy', npy(`{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }`, data))), 'import', 'INVALID_ARGUMENT', /Fortran order/);
    fails(imp(file('1d.npy', npy(`{'descr': '<f4', 'fortran_order': False, 'shape': (6,), }`, data))), 'import', 'INVALID_ARGUMENT', /shape \(6\); vdb imports a 2-D array/);
    fails(imp(file('short.npy', npy(`{'descr': '<f4', 'fortran_order': False, 'shape': (3, 3), }`, data))), 'import', 'INVALID_ARGUMENT', /truncated/);
    fails(imp(file('rec.npy', npy(`{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2, 3), }`, data))), 'import', 'INVALID_ARGUMENT', /structured dtype/);
    fails(imp(file('hdr.npy', npy(`{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3)`, data))), 'import', 'INVALID_ARGUMENT', /malformed \.npy header/);
    fails(imp(file('magic.npy', Buffer.from('PK\x03\x04 a zip, not an array'))), 'import', 'INVALID_ARGUMENT', /not an \.npy file/);
  });

  it('refuses .f32 files without a usable meta.json', () => {
    fails(imp(file('lone/base.f32', rawF32([[1, 2, 3, 4]]))), 'import', 'INVALID_ARGUMENT', /needs a meta\.json/);
    file('odd/meta.json', JSON.stringify({ dim: 3 }));
    fails(imp(file('odd/base.f32', rawF32([[1, 2, 3, 4]]))), 'import', 'INVALID_ARGUMENT', /not a whole number of float32 rows of dim 3/);
    file('nodim/meta.json', JSON.stringify({ n_base: 1 }));
    fails(imp(file('nodim/base.f32', rawF32([[1, 2, 3, 4]]))), 'import', 'INVALID_ARGUMENT', /"dim" must be an integer/);
    file('count/meta.json', JSON.stringify({ dim: 2, n_base: 5 }));
    fails(imp(file('count/base.f32', rawF32([[1, 2, 3, 4]]))), 'import', 'INVALID_ARGUMENT', /holds 2 rows of dim 2, but .* says 5/);
  });

  it('names the line of a bad .jsonl point, keeping the batches before it', () => {
    const v = (x: number) => JSON.stringify([x, 1, 2]);
    fails(imp(file('syntax.jsonl', `{"id": 1, "vector": ${v(1)}}\n{"id": 2, "vector": [1, 2,\n`)), 'import', 'INVALID_ARGUMENT', /syntax\.jsonl: line 2: not valid JSON/);
    fails(imp(file('dim.jsonl', `{"id": 1, "vector": ${v(1)}}\n\n{"id": 2, "vector": [1, 2]}\n`)), 'import', 'DIMENSION_MISMATCH', /line 3: vector has 2 dimensions, the first line's has 3/);
    fails(imp(file('field.jsonl', `{"id": 1, "vector": ${v(1)}, "payloads": {}}\n`)), 'import', 'INVALID_ARGUMENT', /line 1: unknown field "payloads"/);
    fails(imp(file('id.jsonl', `{"id": 1.5, "vector": ${v(1)}}\n`)), 'import', 'INVALID_ID', /line 1: "id" must be a string or an integer/);
    fails(imp(file('payload.jsonl', `{"id": 1, "vector": ${v(1)}, "payload": [1]}\n`)), 'import', 'INVALID_PAYLOAD', /line 1: "payload" must be a JSON object/);
    fails(imp(file('empty.jsonl', '\n\n')), 'import', 'INVALID_ARGUMENT', /holds no points/);
    const big = JSON.stringify({ text: 'x'.repeat(70_000) });
    fails(imp(file('big.jsonl', [1, 2, 3].map((i) => `{"id": ${i}, "vector": ${v(i)}${i === 3 ? `, "payload": ${big}` : ''}}`).join('\n'))),
      'import', 'PAYLOAD_TOO_LARGE', /big\.jsonl line 3: payload: \d+ bytes of JSON, the limit is 65536/);

    // A value float32 cannot hold, refused by the collection on line 25: two batches of 10 are in.
    const lines = range(30).map((i) => `{"id": "p${i}", "vector": ${i === 24 ? '[1e40, 0, 0]' : v(i)}}`);
    const d = join(tmp, 'db-partial');
    const r = vdb('import', '--dir', d, '--collection', 'p', '--batch', '10', file('inf.jsonl', lines.join('\n')));
    fails(r, 'import', 'INVALID_VECTOR', /inf\.jsonl line 25: vector\[0\]: 1e\+40 is not a finite float32 \(the 20 points before it were imported\)/);
    expect(readBack(d, 'p', []).count).toBe(20);
  });

  it('refuses a file whose dim differs from the collection, unknown formats and missing files', () => {
    const d = join(tmp, 'db-dim');
    ok(vdb('import', '--dir', d, '--collection', 'c', file('dim-a.fvecs', texmex(f32rows(rows(12, 3, 5)), 'f'))));
    fails(vdb('import', '--dir', d, '--collection', 'c', file('dim-b.fvecs', texmex(f32rows(rows(12, 3, 6)), 'f'))), 'import', 'DIMENSION_MISMATCH', /has dim 6, collection c has dim 5/);
    fails(vdb('import', '--dir', d, '--collection', 'c', '--metric', 'cosine', join(tmp, 'dim-a.fvecs')), 'import', 'SCHEMA_MISMATCH', /metric l2, not cosine/);
    expect(readBack(d, 'c', []).count).toBe(3);
    fails(imp(file('vectors.txt', '1 2 3\n')), 'import', 'INVALID_ARGUMENT', /unknown format \(extension \.txt\)/);
    fails(imp(join(tmp, 'missing.fvecs')), 'import', 'INVALID_ARGUMENT', /missing\.fvecs: cannot open: no such file/);
    // --format overrides the extension.
    ok(vdb('import', '--dir', d, '--collection', 'txt', '--format', 'fvecs', file('fvecs.bin', texmex(f32rows(rows(13, 2, 3)), 'f'))));
  });

  it('gives usage errors exit status 2, and help exit status 0', () => {
    const r = vdb('import', '--collection', 'x', join(tmp, 'a.fvecs'));
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/--dir is required/);
    expect(vdb('import', '--dir', dir(), '--collection', 'x', '--batch', 'many', 'f.fvecs').status).toBe(2);
    expect(vdb('import', '--dir', dir(), '--collection', 'x', '--bogus', 'f.fvecs').status).toBe(2);
    expect(vdb('frobnicate').status).toBe(2);
    const help = ok(vdb('--help'));
    expect(help.stdout).toMatch(/import/);
    expect(help.stdout).toMatch(/search/);
    expect(ok(vdb('import', '--help')).stdout).toMatch(/Usage: vdb import/);
    expect(ok(vdb('help', 'search')).stdout).toMatch(/Usage: vdb search/);
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string };
    expect(ok(vdb('--version')).stdout.trim()).toBe(pkg.version);
  });
});
