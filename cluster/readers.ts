// Readers for the files `vdb import` takes, all streamed in chunks so a
// multi-gigabyte file never sits in memory at once:
//   .fvecs / .bvecs  TEXMEX: per vector an int32 dim, then dim float32 / uint8
//   .f32             raw little-endian float32 rows; dim from meta.json beside it
//   .npy             NumPy float32 or float64, 2-D, C order, little-endian
//   .jsonl           one {id, vector, payload?} object per line
//   IDX              MNIST's format (…-idx3-ubyte, .idx, either gzipped): unsigned
//                    byte or float32 tensors, one row per first-axis entry;
//                    a gzipped file is decompressed into memory whole
// Row-format files give each vector its row number (from 0) as id. Every
// problem is a VdbError naming the file and the row or line.

import { closeSync, existsSync, fstatSync, openSync, readFileSync, readSync } from 'node:fs';
import { endianness } from 'node:os';
import { gunzipSync } from 'node:zlib';
import { basename, dirname, extname, join } from 'node:path';
import { DIM_MAX, ErrorCode, VdbError } from '../ts/index.js';
import type { Metric, Payload, Point } from '../ts/index.js';

export const FORMATS = ['fvecs', 'bvecs', 'f32', 'npy', 'jsonl', 'idx'] as const;
export type Format = (typeof FORMATS)[number];

/** A batch of points and where each came from, for error messages. */
export interface Batch {
  points: Point[];
  /** "row 17" or "line 18" of point i of the batch. */
  where(i: number): string;
}

export interface VectorReader {
  readonly path: string;
  readonly format: Format;
  readonly dim: number;
  /** Rows in the file, when the format says (not for JSONL). */
  readonly count: number | undefined;
  /** A metric named by the file's metadata (meta.json), if any. */
  readonly metric: Metric | undefined;
  /** How much of the file is consumed, 0..1. */
  fraction(): number;
  /** The next up to `n` points; undefined at the end. */
  next(n: number): Batch | undefined;
  /** The vector of row `i` (from 0), without disturbing `next`. */
  row(i: number): Float32Array;
  close(): void;
}

/** MNIST-style IDX names: `train-images-idx3-ubyte`, `x.idx`, each maybe `.gz`. */
const IDX_NAME = /(-idx\d+-ubyte|\.idx)(\.gz)?$/i;

const EXTENSIONS: Record<string, Format> = {
  '.fvecs': 'fvecs', '.bvecs': 'bvecs', '.f32': 'f32', '.npy': 'npy', '.jsonl': 'jsonl', '.ndjson': 'jsonl',
};

export function formatOf(path: string): Format {
  if (IDX_NAME.test(basename(path))) return 'idx';
  const ext = extname(path).toLowerCase();
  const f = EXTENSIONS[ext];
  if (!f) {
    throw new VdbError(ErrorCode.INVALID_ARGUMENT,
      `${path}: unknown format${ext ? ` (extension ${ext})` : ' (no extension)'}; vdb reads .fvecs, .bvecs, .f32 with meta.json, .npy, .jsonl, IDX (or give --format)`);
  }
  return f;
}

/** Opens a reader for `path`, by its extension unless `format` is given. */
export function openReader(path: string, format: Format = formatOf(path)): VectorReader {
  const file = FileBytes.open(path);
  try {
    switch (format) {
      case 'fvecs': return TexmexReader.open(file, 'fvecs');
      case 'bvecs': return TexmexReader.open(file, 'bvecs');
      case 'f32': return RawF32Reader.open(file);
      case 'npy': return NpyReader.open(file);
      case 'jsonl': return JsonlReader.open(file);
      case 'idx': return IdxReader.open(file.path.toLowerCase().endsWith('.gz') ? file.gunzipped() : file);
      default: throw new VdbError(ErrorCode.INVALID_ARGUMENT, `unknown format ${String(format)}; one of ${FORMATS.join(', ')}`);
    }
  } catch (e) {
    file.close();
    throw e;
  }
}

function bad(path: string, msg: string, code: ErrorCode = ErrorCode.INVALID_ARGUMENT): VdbError {
  return new VdbError(code, `${path}: ${msg}`);
}

// ------------------------------------------------------------------ file access

/** A file read with explicit offsets. */
class FileBytes {
  private constructor(readonly path: string, private fd: number | undefined, readonly size: number, private readonly bytes?: Uint8Array) {}

  /** The file's gzip-decompressed content, in memory (this file is closed). */
  gunzipped(): FileBytes {
    const packed = this.read(0, this.size);
    this.close();
    let bytes: Uint8Array;
    try {
      bytes = gunzipSync(packed);
    } catch (e) {
      throw bad(this.path, `is not a valid gzip file (${(e as Error).message})`);
    }
    return new FileBytes(this.path, -1, bytes.length, bytes);
  }

  static open(path: string): FileBytes {
    let fd: number;
    try {
      fd = openSync(path, 'r');
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      const why = code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'is a directory' : (e as Error).message;
      throw bad(path, `cannot open: ${why}`);
    }
    const st = fstatSync(fd);
    if (!st.isFile()) {
      closeSync(fd);
      throw bad(path, 'not a regular file');
    }
    return new FileBytes(path, fd, st.size);
  }

  /** Exactly `len` bytes at `pos` (into `into` when given and big enough). */
  read(pos: number, len: number, into?: Uint8Array): Uint8Array {
    if (this.fd === undefined) throw new VdbError(ErrorCode.CLOSED, `${this.path} is closed`);
    if (this.bytes) {
      if (pos + len > this.size) throw bad(this.path, `unexpected end of file at byte ${this.size}`);
      return this.bytes.subarray(pos, pos + len);
    }
    const buf = into && into.length >= len ? into.subarray(0, len) : new Uint8Array(len);
    let got = 0;
    while (got < len) {
      const n = readSync(this.fd, buf, got, len - got, pos + got);
      if (n === 0) throw bad(this.path, `unexpected end of file at byte ${pos + got}`);
      got += n;
    }
    return buf;
  }

  /** Up to `len` bytes at `pos`; fewer only at the end of the file. */
  readSome(pos: number, len: number): Uint8Array {
    return this.read(pos, Math.max(0, Math.min(len, this.size - pos)));
  }

  close(): void {
    if (this.fd !== undefined && !this.bytes) closeSync(this.fd);
    this.fd = undefined;
  }
}

const LITTLE = endianness() === 'LE';

/** `n` little-endian float32 at `off`, as a fresh (aligned) array. */
function f32At(bytes: Uint8Array, off: number, n: number): Float32Array {
  if (LITTLE) return new Float32Array(bytes.buffer.slice(bytes.byteOffset + off, bytes.byteOffset + off + 4 * n));
  const dv = new DataView(bytes.buffer, bytes.byteOffset + off, 4 * n);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = dv.getFloat32(4 * i, true);
  return out;
}

/** `n` little-endian float64 at `off`, rounded to float32. */
function f64At(bytes: Uint8Array, off: number, n: number): Float32Array {
  if (LITTLE) return new Float32Array(new Float64Array(bytes.buffer.slice(bytes.byteOffset + off, bytes.byteOffset + off + 8 * n)));
  const dv = new DataView(bytes.buffer, bytes.byteOffset + off, 8 * n);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = dv.getFloat64(8 * i, true);
  return out;
}

function u8At(bytes: Uint8Array, off: number, n: number): Float32Array {
  return Float32Array.from(bytes.subarray(off, off + n));
}

function i32At(bytes: Uint8Array, off: number): number {
  return new DataView(bytes.buffer, bytes.byteOffset + off, 4).getInt32(0, true);
}

const CHUNK_BYTES = 4 * 1024 * 1024;
/** A point of 65,536 dims and a 64 KiB payload is a few MiB of JSON at most. */
const MAX_LINE_BYTES = 64 * 1024 * 1024;

// --------------------------------------------------------- fixed-size records

/** Files of equal-sized records after a header; the id of a row is its number. */
abstract class RecordReader implements VectorReader {
  abstract readonly format: Format;
  readonly metric: Metric | undefined = undefined;
  private cur = 0;
  private buf = new Uint8Array(0);

  constructor(
    protected readonly file: FileBytes,
    readonly dim: number,
    readonly count: number,
    protected readonly start: number,
    protected readonly recordBytes: number,
  ) {}

  get path(): string { return this.file.path; }

  /** The vector of the record at `off` in `bytes`; `row` for messages. */
  protected abstract decode(bytes: Uint8Array, off: number, row: number): Float32Array;

  fraction(): number {
    return this.count === 0 ? 1 : this.cur / this.count;
  }

  next(n: number): Batch | undefined {
    const take = Math.min(Math.max(1, n), this.count - this.cur);
    if (take <= 0) return undefined;
    const bytes = take * this.recordBytes;
    if (this.buf.length < bytes) this.buf = new Uint8Array(bytes);
    const data = this.file.read(this.start + this.cur * this.recordBytes, bytes, this.buf);
    const first = this.cur;
    const points: Point[] = new Array(take);
    for (let i = 0; i < take; i++) {
      points[i] = { id: first + i, vector: this.decode(data, i * this.recordBytes, first + i) };
    }
    this.cur += take;
    return { points, where: (i) => `row ${first + i}` };
  }

  row(i: number): Float32Array {
    if (!Number.isSafeInteger(i) || i < 0 || i >= this.count) {
      throw bad(this.path, `has rows 0 to ${this.count - 1}, not ${i}`);
    }
    return this.decode(this.file.read(this.start + i * this.recordBytes, this.recordBytes), 0, i);
  }

  close(): void {
    this.file.close();
  }
}

class TexmexReader extends RecordReader {
  constructor(file: FileBytes, readonly format: 'fvecs' | 'bvecs', dim: number, count: number, recordBytes: number) {
    super(file, dim, count, 0, recordBytes);
  }

  static open(file: FileBytes, format: 'fvecs' | 'bvecs'): TexmexReader {
    const p = file.path;
    if (file.size === 0) throw bad(p, 'is empty');
    if (file.size < 4) throw bad(p, `is ${file.size} bytes, too short for a ${format} record`);
    const dim = i32At(file.read(0, 4), 0);
    if (dim < 1 || dim > DIM_MAX) throw bad(p, `the first record says dim ${dim}; not a ${format} file (dim must be 1 to ${DIM_MAX})`);
    const recordBytes = 4 + dim * (format === 'fvecs' ? 4 : 1);
    if (file.size % recordBytes !== 0) {
      throw bad(p, `${file.size} bytes is not a whole number of ${recordBytes}-byte records of dim ${dim}: truncated, or not a ${format} file`);
    }
    return new TexmexReader(file, format, dim, file.size / recordBytes, recordBytes);
  }

  protected decode(bytes: Uint8Array, off: number, row: number): Float32Array {
    const d = i32At(bytes, off);
    if (d !== this.dim) throw bad(this.path, `row ${row} has dim ${d}, the first row ${this.dim}`, ErrorCode.DIMENSION_MISMATCH);
    return this.format === 'fvecs' ? f32At(bytes, off + 4, this.dim) : u8At(bytes, off + 4, this.dim);
  }
}

/** Benchmark-folder metric names to ours. */
function metricName(m: unknown): Metric | undefined {
  switch (m) {
    case 'l2': case 'euclidean': return 'l2';
    case 'cosine': case 'angular': return 'cosine';
    case 'ip': case 'dot': return 'ip';
    default: return undefined;
  }
}

class RawF32Reader extends RecordReader {
  readonly format = 'f32' as const;
  override readonly metric: Metric | undefined;

  constructor(file: FileBytes, dim: number, count: number, metric: Metric | undefined) {
    super(file, dim, count, 0, 4 * dim);
    this.metric = metric;
  }

  static open(file: FileBytes): RawF32Reader {
    const p = file.path;
    const metaPath = join(dirname(p), 'meta.json');
    if (!existsSync(metaPath)) throw bad(p, `a .f32 file needs a meta.json beside it giving {"dim": N}; ${metaPath} does not exist`);
    let meta: Record<string, unknown>;
    try {
      meta = JSON.parse(readFileSync(metaPath, 'utf8')) as Record<string, unknown>;
    } catch (e) {
      throw bad(metaPath, `not valid JSON (${(e as Error).message})`);
    }
    if (meta === null || typeof meta !== 'object' || Array.isArray(meta)) throw bad(metaPath, 'is not a JSON object');
    const dim = meta.dim;
    if (typeof dim !== 'number' || !Number.isInteger(dim) || dim < 1 || dim > DIM_MAX) {
      throw bad(metaPath, `"dim" must be an integer from 1 to ${DIM_MAX}, got ${JSON.stringify(dim)}`);
    }
    if (file.size % (4 * dim) !== 0) {
      throw bad(p, `${file.size} bytes is not a whole number of float32 rows of dim ${dim} (from ${metaPath})`);
    }
    const count = file.size / (4 * dim);
    // The benchmark folder layout names the row counts of its two vector files.
    const expected = ({ 'base.f32': meta.n_base, 'queries.f32': meta.n_queries } as Record<string, unknown>)[basename(p)];
    if (typeof expected === 'number' && expected !== count) {
      throw bad(p, `holds ${count} rows of dim ${dim}, but ${metaPath} says ${expected}`);
    }
    return new RawF32Reader(file, dim, count, metricName(meta.metric));
  }

  protected decode(bytes: Uint8Array, off: number): Float32Array {
    return f32At(bytes, off, this.dim);
  }
}

// --------------------------------------------------------------------- IDX

/** IDX element types vdb reads: unsigned byte and float32 (both big-endian in the file). */
const IDX_TYPES: Record<number, { name: string; bytes: number }> = { 0x08: { name: 'unsigned byte', bytes: 1 }, 0x0d: { name: 'float32', bytes: 4 } };

class IdxReader extends RecordReader {
  readonly format = 'idx' as const;

  constructor(file: FileBytes, dim: number, count: number, start: number, private readonly type: number) {
    super(file, dim, count, start, dim * IDX_TYPES[type].bytes);
  }

  static open(file: FileBytes): IdxReader {
    const p = file.path;
    if (file.size < 8) throw bad(p, `is ${file.size} bytes, too short for an IDX header`);
    const head = file.read(0, 4);
    const type = head[2];
    const axes = head[3];
    if (head[0] !== 0 || head[1] !== 0 || axes < 1) throw bad(p, 'does not start with an IDX magic number (0, 0, type, axes)');
    if (!IDX_TYPES[type]) throw bad(p, `holds IDX element type 0x${type.toString(16)}; vdb reads unsigned byte (0x08) and float32 (0x0d)`);
    const start = 4 + 4 * axes;
    if (file.size < start) throw bad(p, `is ${file.size} bytes, too short for an IDX header of ${axes} axes`);
    const sizes = Array.from({ length: axes }, (_, i) => {
      const b = file.read(4 + 4 * i, 4);
      return new DataView(b.buffer, b.byteOffset, 4).getUint32(0, false);
    });
    const count = sizes[0];
    const dim = sizes.slice(1).reduce((a, b) => a * b, 1);
    if (dim < 1 || dim > DIM_MAX) throw bad(p, `rows of ${sizes.slice(1).join(' × ')} = ${dim} values; dim must be 1 to ${DIM_MAX}`);
    const want = start + count * dim * IDX_TYPES[type].bytes;
    if (file.size !== want) throw bad(p, `is ${file.size} bytes, but its header (${sizes.join(' × ')} ${IDX_TYPES[type].name}) needs ${want}: truncated, or not an IDX file`);
    return new IdxReader(file, dim, count, start, type);
  }

  protected decode(bytes: Uint8Array, off: number): Float32Array {
    if (this.type === 0x08) return u8At(bytes, off, this.dim);
    const dv = new DataView(bytes.buffer, bytes.byteOffset + off, 4 * this.dim);
    const out = new Float32Array(this.dim);
    for (let i = 0; i < this.dim; i++) out[i] = dv.getFloat32(4 * i, false);
    return out;
  }
}

// -------------------------------------------------------------------- .npy

type PyValue = string | number | boolean | null | PyValue[] | { [k: string]: PyValue };

/** A parser for the Python literal in an .npy header: dicts, tuples, lists, strings, ints, True/False/None. */
export function parsePyLiteral(text: string): PyValue {
  let i = 0;
  const fail = (what: string): never => {
    throw new Error(`${what} at character ${i} of ${JSON.stringify(text.trim())}`);
  };
  const ws = () => { while (i < text.length && /\s/.test(text[i])) i++; };
  const value = (): PyValue => {
    ws();
    const c = text[i];
    if (c === '{') {
      i++;
      const out: Record<string, PyValue> = Object.create(null) as Record<string, PyValue>;
      for (;;) {
        ws();
        if (text[i] === '}') { i++; return out; }
        const k = value();
        if (typeof k !== 'string') fail('a dict key that is not a string');
        ws();
        if (text[i] !== ':') fail("expected ':'");
        i++;
        out[k as string] = value();
        ws();
        if (text[i] === ',') i++;
        else if (text[i] !== '}') fail("expected ',' or '}'");
      }
    }
    if (c === '(' || c === '[') {
      const close = c === '(' ? ')' : ']';
      i++;
      const out: PyValue[] = [];
      for (;;) {
        ws();
        if (text[i] === close) { i++; return out; }
        out.push(value());
        ws();
        if (text[i] === ',') i++;
        else if (text[i] !== close) fail(`expected ',' or '${close}'`);
      }
    }
    if (c === "'" || c === '"') {
      i++;
      let s = '';
      while (i < text.length && text[i] !== c) {
        if (text[i] === '\\') {
          i++;
          if (i >= text.length) break;
        }
        s += text[i++];
      }
      if (text[i] !== c) fail('unterminated string');
      i++;
      return s;
    }
    const m = /^(?:True|False|None|-?\d+L?)/.exec(text.slice(i));
    if (!m) return fail('unexpected input');
    i += m[0].length;
    if (m[0] === 'True') return true;
    if (m[0] === 'False') return false;
    if (m[0] === 'None') return null;
    return Number(m[0].replace('L', ''));
  };
  const v = value();
  ws();
  if (i !== text.length) fail('trailing input');
  return v;
}

class NpyReader extends RecordReader {
  readonly format = 'npy' as const;

  constructor(file: FileBytes, dim: number, count: number, start: number, private readonly itemBytes: 4 | 8) {
    super(file, dim, count, start, itemBytes * dim);
  }

  static open(file: FileBytes): NpyReader {
    const p = file.path;
    const head = file.readSome(0, 12);
    const magic = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]; // \x93NUMPY
    if (head.length < 10 || !magic.every((b, i) => head[i] === b)) throw bad(p, 'not an .npy file (no \\x93NUMPY magic)');
    const major = head[6];
    let headerLen: number, headerStart: number;
    if (major === 1) {
      headerLen = head[8] | (head[9] << 8);
      headerStart = 10;
    } else if (major === 2 || major === 3) {
      if (head.length < 12) throw bad(p, 'truncated .npy header');
      headerLen = i32At(head, 8) >>> 0;
      headerStart = 12;
    } else {
      throw bad(p, `.npy format version ${major}.${head[7]} is not supported (1.0 to 3.0 are)`);
    }
    if (headerStart + headerLen > file.size) throw bad(p, 'truncated .npy header');
    const raw = file.read(headerStart, headerLen);
    const text = new TextDecoder(major === 3 ? 'utf-8' : 'latin1').decode(raw);
    let header: PyValue;
    try {
      header = parsePyLiteral(text);
    } catch (e) {
      throw bad(p, `malformed .npy header: ${(e as Error).message}`);
    }
    if (header === null || typeof header !== 'object' || Array.isArray(header)) throw bad(p, 'malformed .npy header: not a dict');
    const { descr, fortran_order: fortran, shape } = header;
    if (typeof descr !== 'string') {
      throw bad(p, `dtype ${JSON.stringify(descr)} is a structured dtype; vdb imports plain float32 ('<f4') or float64 ('<f8') arrays`);
    }
    const itemBytes = ({ '<f4': 4, '<f8': 8 } as Record<string, 4 | 8>)[descr];
    if (itemBytes === undefined) {
      const why = descr === '>f4' || descr === '>f8' ? 'big-endian floats are not supported, save as little-endian' : 'only float32 and float64 are';
      throw bad(p, `dtype '${descr}' is not supported (${why}); convert with arr.astype('<f4')`);
    }
    if (fortran !== false) throw bad(p, "the array is in Fortran order; save it in C order (np.ascontiguousarray)");
    if (!Array.isArray(shape) || !shape.every((x) => typeof x === 'number' && Number.isSafeInteger(x) && x >= 0)) {
      throw bad(p, `malformed .npy header: shape ${JSON.stringify(shape)}`);
    }
    if (shape.length !== 2) {
      throw bad(p, `the array has shape (${shape.join(', ')}); vdb imports a 2-D array of shape (rows, dim)`);
    }
    const [rows, dim] = shape as number[];
    if (dim < 1 || dim > DIM_MAX) throw bad(p, `dim ${dim} is out of range (1 to ${DIM_MAX})`);
    const start = headerStart + headerLen;
    const want = start + rows * dim * itemBytes;
    if (file.size !== want) {
      throw bad(p, `${file.size} bytes, but the header's shape (${rows}, ${dim}) of ${descr} needs ${want}: ${file.size < want ? 'truncated' : 'trailing bytes'}`);
    }
    return new NpyReader(file, dim, rows, start, itemBytes);
  }

  protected decode(bytes: Uint8Array, off: number): Float32Array {
    return this.itemBytes === 4 ? f32At(bytes, off, this.dim) : f64At(bytes, off, this.dim);
  }
}

// ------------------------------------------------------------------- JSONL

const JSONL_KEYS = new Set(['id', 'vector', 'payload']);

interface JsonlPoint { point: Point; line: number }

class JsonlReader implements VectorReader {
  readonly format = 'jsonl' as const;
  readonly count = undefined;
  readonly metric = undefined;
  private pos = 0; // file offset of the next unread chunk
  private buf: Buffer = Buffer.alloc(0);
  private at = 0; // first unconsumed byte of buf
  private line = 0; // number of the last line handed out
  private pending: JsonlPoint | undefined;
  dim = 0;

  private constructor(private readonly file: FileBytes) {}

  get path(): string { return this.file.path; }

  static open(file: FileBytes): JsonlReader {
    const r = new JsonlReader(file);
    const first = r.nextPoint();
    if (!first) throw bad(file.path, 'holds no points');
    r.pending = first;
    r.dim = (first.point.vector as number[]).length;
    return r;
  }

  fraction(): number {
    return this.file.size === 0 ? 1 : (this.pos - (this.buf.length - this.at)) / this.file.size;
  }

  /** The next line's text, or undefined at the end of the file. */
  private nextLine(): string | undefined {
    for (;;) {
      const nl = this.buf.indexOf(10, this.at);
      if (nl >= 0) {
        const s = this.buf.toString('utf8', this.at, nl);
        this.at = nl + 1;
        this.line++;
        return s;
      }
      if (this.pos >= this.file.size) {
        if (this.at >= this.buf.length) return undefined;
        const s = this.buf.toString('utf8', this.at);
        this.at = this.buf.length;
        this.line++;
        return s;
      }
      if (this.buf.length - this.at > MAX_LINE_BYTES) {
        throw bad(this.path, `line ${this.line + 1} is longer than ${MAX_LINE_BYTES / 2 ** 20} MiB; not a JSONL file?`);
      }
      // Splitting on the byte 0x0A is safe in UTF-8: it never occurs inside a character.
      const chunk = this.file.readSome(this.pos, CHUNK_BYTES);
      this.pos += chunk.length;
      this.buf = Buffer.concat([this.buf.subarray(this.at), chunk]);
      this.at = 0;
    }
  }

  private nextPoint(): JsonlPoint | undefined {
    for (;;) {
      let text = this.nextLine();
      if (text === undefined) return undefined;
      if (this.line === 1 && text.charCodeAt(0) === 0xfeff) text = text.slice(1);
      if (text.trim() === '') continue;
      return { point: this.parse(text, this.line), line: this.line };
    }
  }

  private parse(text: string, line: number): Point {
    const at = `line ${line}`;
    let o: unknown;
    try {
      o = JSON.parse(text);
    } catch (e) {
      throw bad(this.path, `${at}: not valid JSON (${(e as Error).message})`);
    }
    if (o === null || typeof o !== 'object' || Array.isArray(o)) throw bad(this.path, `${at}: expected an object {id, vector, payload?}`);
    const rec = o as Record<string, unknown>;
    for (const k of Object.keys(rec)) {
      if (!JSONL_KEYS.has(k)) throw bad(this.path, `${at}: unknown field ${JSON.stringify(k)} (a line is {"id", "vector", "payload"?})`);
    }
    if (!('id' in rec)) throw bad(this.path, `${at}: no "id"`, ErrorCode.INVALID_ID);
    const id = rec.id;
    if (typeof id !== 'string' && !(typeof id === 'number' && Number.isSafeInteger(id))) {
      throw bad(this.path, `${at}: "id" must be a string or an integer, got ${JSON.stringify(id)}`, ErrorCode.INVALID_ID);
    }
    const v = rec.vector;
    if (!Array.isArray(v)) throw bad(this.path, `${at}: "vector" must be an array of numbers`, ErrorCode.INVALID_VECTOR);
    if (this.dim !== 0 && v.length !== this.dim) {
      throw bad(this.path, `${at}: vector has ${v.length} dimensions, the first line's has ${this.dim}`, ErrorCode.DIMENSION_MISMATCH);
    }
    if (v.length === 0) throw bad(this.path, `${at}: empty vector`, ErrorCode.INVALID_VECTOR);
    const p = rec.payload;
    if (p !== undefined && p !== null && (typeof p !== 'object' || Array.isArray(p))) {
      throw bad(this.path, `${at}: "payload" must be a JSON object`, ErrorCode.INVALID_PAYLOAD);
    }
    const point: Point = { id, vector: v as number[] };
    if (p !== undefined && p !== null) point.payload = p as Payload;
    return point;
  }

  next(n: number): Batch | undefined {
    const points: Point[] = [];
    const lines: number[] = [];
    while (points.length < Math.max(1, n)) {
      const p = this.pending ?? this.nextPoint();
      this.pending = undefined;
      if (!p) break;
      points.push(p.point);
      lines.push(p.line);
    }
    if (points.length === 0) return undefined;
    return { points, where: (i) => `line ${lines[i]}` };
  }

  /** Row `i` is the i-th non-empty line (from 0). Reads the file from the start. */
  row(i: number): Float32Array {
    if (!Number.isSafeInteger(i) || i < 0) throw bad(this.path, `row must be a non-negative integer, not ${i}`);
    const again = JsonlReader.open(FileBytes.open(this.path));
    try {
      let seen = 0;
      for (let b = again.next(1); b; b = again.next(1)) {
        if (seen++ === i) return Float32Array.from(b.points[0].vector as number[]);
      }
      throw bad(this.path, `has ${seen} rows, no row ${i}`);
    } finally {
      again.close();
    }
  }

  close(): void {
    this.file.close();
  }
}
