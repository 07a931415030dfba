// The raw Wasm ABI, driven the way a runtime without AssemblyScript's loader
// would: plain WebAssembly.instantiate with only env.abort, numbers in and out,
// vectors and results through linear memory. See docs/wasm-abi.md.

import { readFileSync } from 'node:fs';
import { describe, it, expect, beforeAll } from 'vitest';
import { mulberry32 } from '../ts/random.js';
import type { CoreExports } from '../ts/core/abi.js';

type Abi = CoreExports;

const EXPORTED_FUNCTIONS = [
  'scratch_ptr', 'index_init', 'index_reserve', 'index_input_ptr', 'index_result_ids_ptr',
  'index_result_dist_ptr', 'index_filter_ptr', 'index_size', 'index_slots', 'index_capacity',
  'index_pending', 'index_dim', 'index_metric', 'index_max_level', 'index_upper_bytes', 'index_layout_bytes', 'index_layout_bytes_for', 'index_add', 'index_remove',
  'index_slot_state', 'index_vector_ptr', 'index_consolidate', 'index_search',
  'index_search_exact', 'index_save_begin', 'index_section_count', 'index_section_ptr',
  'index_section_len', 'index_load_begin', 'index_load_end', 'kernel_l2sq',
  'kernel_l2sq_scalar', 'kernel_dot', 'kernel_dot_scalar', 'kernel_bench',
  'index_init_sq8', 'index_quantization', 'index_sq8_params_ptr', 'index_train_ptr', 'index_train', 'kernel_row_distances',
];

const L2 = 0, IP = 1, COSINE = 2;
const FILTER_NONE = 0, FILTER_AUTO = 1, FILTER_GRAPH = 2;
const LIVE = 0, DELETED = 1, FREE = 2;
const ERR_STATE = -1, ERR_ARGUMENT = -2, ERR_MEMORY = -3, ERR_SLOT = -4, ERR_CORRUPT = -5, ERR_NOT_FINITE = -6,
  ERR_ZERO_VECTOR = -7;
const HEADER_BYTES = 128;

const wasmBytes = readFileSync(new URL('../build/vdb.wasm', import.meta.url));
let compiled: WebAssembly.Module;

function abort(msg: number, file: number, line: number, col: number): never {
  throw new Error(`vdb.wasm abort (${msg}, ${file}) at ${line}:${col}`);
}

beforeAll(async () => {
  // The byte form of instantiate, exactly as a host without a loader would call it.
  const { module } = await WebAssembly.instantiate(wasmBytes, { env: { abort } });
  compiled = module;
});

/** A fresh instance: one instance holds one index. */
async function fresh(): Promise<Abi> {
  const instance = await WebAssembly.instantiate(compiled, { env: { abort } });
  return instance.exports as unknown as Abi;
}

/** Typed views over the instance's memory. Views die when memory grows, so every
 * accessor re-creates them when the buffer has changed. */
class Mem {
  private buf: ArrayBuffer | undefined;
  private f32v = new Float32Array(0);
  private u32v = new Uint32Array(0);
  private u8v = new Uint8Array(0);
  constructor(private readonly w: Abi) {}
  private refresh(): void {
    const b = this.w.memory.buffer;
    if (b !== this.buf) {
      this.buf = b;
      this.f32v = new Float32Array(b);
      this.u32v = new Uint32Array(b);
      this.u8v = new Uint8Array(b);
    }
  }
  get f32(): Float32Array { this.refresh(); return this.f32v; }
  get u32(): Uint32Array { this.refresh(); return this.u32v; }
  get u8(): Uint8Array { this.refresh(); return this.u8v; }
}

/** An index plus the host-side helpers of the ABI. */
class Raw {
  readonly mem: Mem;
  constructor(readonly w: Abi, readonly dim: number) {
    this.mem = new Mem(w);
  }
  static async create(dim: number, metric = L2, m = 8, efc = 64, cap = 0): Promise<Raw> {
    const w = await fresh();
    expect(w.index_init(dim, metric, m, efc, 1234, 0, cap)).toBe(0);
    return new Raw(w, dim);
  }
  setInput(v: ArrayLike<number>): void {
    this.mem.f32.set(v, this.w.index_input_ptr() >>> 2);
  }
  add(v: ArrayLike<number>): number {
    this.setInput(v);
    return this.w.index_add(); // may grow memory: Mem re-creates its views on next use
  }
  results(n: number): { ids: number[]; dist: number[] } {
    const ip = this.w.index_result_ids_ptr() >>> 2;
    const dp = this.w.index_result_dist_ptr() >>> 2;
    return {
      ids: Array.from(this.mem.u32.subarray(ip, ip + n)),
      dist: Array.from(this.mem.f32.subarray(dp, dp + n)),
    };
  }
  search(q: ArrayLike<number>, k: number, ef: number, mode = FILTER_NONE): { ids: number[]; dist: number[] } {
    this.setInput(q);
    const n = this.w.index_search(k, ef, mode);
    expect(n).toBeGreaterThanOrEqual(0);
    return this.results(n);
  }
  exact(q: ArrayLike<number>, k: number, filtered = 0): { ids: number[]; dist: number[] } {
    this.setInput(q);
    const n = this.w.index_search_exact(k, filtered);
    expect(n).toBeGreaterThanOrEqual(0);
    return this.results(n);
  }
  /** Writes the allow bitmap: bit s of word s >> 5 allows slot s. */
  setFilter(allowed: (slot: number) => boolean): void {
    const slots = this.w.index_slots();
    const words = Math.ceil(slots / 32);
    const base = this.w.index_filter_ptr() >>> 2; // moves when memory grows: read it each time
    const u32 = this.mem.u32;
    u32.fill(0, base, base + words);
    for (let s = 0; s < slots; s++) if (allowed(s)) u32[base + (s >>> 5)] |= 1 << (s & 31);
  }
  /** Snapshot through the section protocol: header, then the sections in order. */
  save(): Uint8Array {
    const w = this.w;
    expect(w.index_save_begin()).toBe(0);
    const count = w.index_section_count();
    const lens: number[] = [];
    for (let i = 0; i < count; i++) lens.push(w.index_section_len(i) >>> 0);
    const out = new Uint8Array(HEADER_BYTES + lens.reduce((a, b) => a + b, 0));
    const h = w.scratch_ptr() >>> 0;
    out.set(this.mem.u8.subarray(h, h + HEADER_BYTES), 0);
    let off = HEADER_BYTES;
    for (let i = 0; i < count; i++) {
      const p = w.index_section_ptr(i) >>> 0;
      out.set(this.mem.u8.subarray(p, p + lens[i]), off);
      off += lens[i];
    }
    return out;
  }
  /** Loads a snapshot into a fresh instance; returns the index or the failing status. */
  static async load(bytes: Uint8Array): Promise<Raw | number> {
    const w = await fresh();
    const mem = new Mem(w);
    mem.u8.set(bytes.subarray(0, HEADER_BYTES), w.scratch_ptr() >>> 0);
    const begin = w.index_load_begin(); // grows memory: views must be re-created after it
    if (begin !== 0) return begin;
    let off = HEADER_BYTES;
    for (let i = 0; i < w.index_section_count(); i++) {
      const len = w.index_section_len(i) >>> 0;
      const p = w.index_section_ptr(i) >>> 0;
      mem.u8.set(bytes.subarray(off, off + len), p);
      off += len;
    }
    expect(off).toBe(bytes.length);
    const end = w.index_load_end();
    if (end !== 0) return end;
    return new Raw(w, w.index_dim());
  }
}

const rng = mulberry32;

function randomVectors(n: number, dim: number, seed: number): Float32Array[] {
  const r = rng(seed);
  return Array.from({ length: n }, () => Float32Array.from({ length: dim }, () => r() * 2 - 1));
}

function l2sq(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) { const d = a[i] - b[i]; s += d * d; }
  return s;
}
function dot(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}

/** Brute-force top-k in JS: [slot, distance] nearest first, ties to the lower slot. */
function bruteForce(data: Float32Array[], q: ArrayLike<number>, k: number, dist: (a: ArrayLike<number>, b: ArrayLike<number>) => number,
                    keep: (slot: number) => boolean = () => true): Array<[number, number]> {
  const all: Array<[number, number]> = [];
  data.forEach((v, s) => { if (keep(s)) all.push([s, dist(q, v)]); });
  all.sort((x, y) => x[1] - y[1] || x[0] - y[0]);
  return all.slice(0, k);
}

const DIM = 24;
const N = 600;

describe('raw ABI: module shape', () => {
  it('exports every documented function and a memory, and imports at most env.abort', () => {
    const exports = WebAssembly.Module.exports(compiled);
    const funcs = exports.filter((e) => e.kind === 'function').map((e) => e.name).sort();
    expect(funcs).toEqual([...EXPORTED_FUNCTIONS].sort());
    expect(exports).toContainEqual({ name: 'memory', kind: 'memory' });
    for (const imp of WebAssembly.Module.imports(compiled)) {
      expect(`${imp.module}.${imp.name}`).toBe('env.abort');
    }
  });
});

describe('raw ABI: state before init', () => {
  it('rejects every index call with -1 (ERR_STATE) and returns null pointers', async () => {
    const w = await fresh();
    expect(w.index_search(1, 10, 0)).toBe(ERR_STATE);
    expect(w.index_search_exact(1, 0)).toBe(ERR_STATE);
    expect(w.index_add()).toBe(ERR_STATE);
    expect(w.index_remove(0)).toBe(ERR_STATE);
    expect(w.index_slot_state(0)).toBe(ERR_STATE);
    expect(w.index_consolidate()).toBe(ERR_STATE);
    expect(w.index_reserve(100)).toBe(ERR_STATE);
    expect(w.index_save_begin()).toBe(ERR_STATE);
    expect(w.index_load_end()).toBe(ERR_STATE);
    expect(w.index_vector_ptr(0)).toBe(0);
    expect(w.index_input_ptr()).toBe(0);
    expect(w.index_filter_ptr()).toBe(0);
    expect(w.index_size()).toBe(0);
    expect(w.index_dim()).toBe(0);
    expect(w.index_section_count()).toBe(4);
    expect(w.scratch_ptr()).toBeGreaterThan(0);
  });
});

describe('raw ABI: init', () => {
  it('initialises once; a second init is -1', async () => {
    const w = await fresh();
    expect(w.index_init(DIM, COSINE, 12, 100, 1, 2, 500)).toBe(0);
    expect(w.index_dim()).toBe(DIM);
    expect(w.index_metric()).toBe(COSINE);
    expect(w.index_capacity()).toBeGreaterThanOrEqual(500);
    expect(w.index_size()).toBe(0);
    expect(w.index_slots()).toBe(0);
    expect(w.index_init(DIM, COSINE, 12, 100, 1, 2, 500)).toBe(ERR_STATE);
    expect(w.index_init(8, L2, 16, 100, 0, 0, 0)).toBe(ERR_STATE);
    expect(w.index_dim()).toBe(DIM);
  });

  it('rejects invalid parameters with -2 and stays uninitialised', async () => {
    const w = await fresh();
    expect(w.index_init(0, L2, 16, 100, 0, 0, 0)).toBe(ERR_ARGUMENT); // dim < 1
    expect(w.index_init(65537, L2, 16, 100, 0, 0, 0)).toBe(ERR_ARGUMENT); // dim > 65536
    expect(w.index_init(8, 3, 16, 100, 0, 0, 0)).toBe(ERR_ARGUMENT); // unknown metric
    expect(w.index_init(8, -1, 16, 100, 0, 0, 0)).toBe(ERR_ARGUMENT);
    expect(w.index_init(8, L2, 1, 100, 0, 0, 0)).toBe(ERR_ARGUMENT); // m < 2
    expect(w.index_init(8, L2, 257, 100, 0, 0, 0)).toBe(ERR_ARGUMENT); // m > 256
    expect(w.index_init(8, L2, 16, 0, 0, 0, 0)).toBe(ERR_ARGUMENT); // efConstruction < 1
    expect(w.index_add()).toBe(ERR_STATE);
    expect(w.index_init(8, IP, 16, 100, 0, 0, 0)).toBe(0);
    expect(w.index_metric()).toBe(IP);
  });

  it('an init that cannot get its memory fails with -3 and can be retried', async () => {
    const w = await fresh();
    expect(w.index_init(DIM, L2, 16, 100, 0, 0, 0xffffffff)).toBe(ERR_MEMORY);
    expect(w.index_metric()).toBe(ERR_STATE);
    expect(w.index_add()).toBe(ERR_STATE);
    expect(w.index_init(DIM, L2, 16, 100, 0, 0, 10)).toBe(0);
    expect(w.index_metric()).toBe(L2);
  });

  it('fixes the input and result buffers at init, inside memory and apart', async () => {
    const w = await fresh();
    expect(w.index_init(DIM, L2, 8, 50, 0, 0, 0)).toBe(0);
    const input = w.index_input_ptr(), ids = w.index_result_ids_ptr(), dist = w.index_result_dist_ptr();
    const scratch = w.scratch_ptr();
    expect(input).toBeGreaterThanOrEqual(scratch + 16384 * 4); // after the 64 KiB scratch
    expect(ids).toBeGreaterThanOrEqual(input + DIM * 4);
    expect(dist).toBeGreaterThanOrEqual(ids + 10000 * 4);
    expect(dist + 10000 * 4).toBeLessThanOrEqual(w.memory.buffer.byteLength);
    expect(w.index_reserve(50_000)).toBe(0);
    expect([w.index_input_ptr(), w.index_result_ids_ptr(), w.index_result_dist_ptr()]).toEqual([input, ids, dist]);
  });
});

describe('raw ABI: add and search (l2)', () => {
  let ix: Raw;
  const data = randomVectors(N, DIM, 1);
  const queries = randomVectors(30, DIM, 2);

  beforeAll(async () => {
    ix = await Raw.create(DIM, L2, 8, 64);
    data.forEach((v, i) => expect(ix.add(v)).toBe(i)); // slots are dense 0..n-1
  });

  it('counts live points and slots, and grew past the initial capacity', () => {
    expect(ix.w.index_size()).toBe(N);
    expect(ix.w.index_slots()).toBe(N);
    expect(ix.w.index_capacity()).toBeGreaterThanOrEqual(N);
    expect(ix.w.index_pending()).toBe(0);
    expect(ix.w.index_max_level()).toBeGreaterThanOrEqual(1);
  });

  it('stores each vector as given (l2) at index_vector_ptr', () => {
    for (const s of [0, 17, N - 1]) {
      const p = ix.w.index_vector_ptr(s) >>> 2;
      expect(p).toBeGreaterThan(0);
      expect(Array.from(ix.mem.f32.subarray(p, p + DIM))).toEqual(Array.from(data[s]));
    }
    expect(ix.w.index_vector_ptr(N)).toBe(0);
  });

  it('finds a stored vector itself at distance 0 first', () => {
    const r = ix.search(data[123], 5, 64);
    expect(r.ids.length).toBe(5);
    expect(r.ids[0]).toBe(123);
    expect(r.dist[0]).toBe(0);
  });

  it('returns k results nearest first, with squared-L2 distances of the returned slots', () => {
    for (const q of queries.slice(0, 5)) {
      const r = ix.search(q, 10, 50);
      expect(r.ids.length).toBe(10);
      for (let i = 1; i < r.dist.length; i++) expect(r.dist[i]).toBeGreaterThanOrEqual(r.dist[i - 1]);
      r.ids.forEach((s, i) => expect(r.dist[i]).toBeCloseTo(l2sq(q, data[s]), 4));
    }
  });

  it('has high recall against brute force', () => {
    let hits = 0;
    for (const q of queries) {
      const truth = new Set(bruteForce(data, q, 10, l2sq).map(([s]) => s));
      for (const s of ix.search(q, 10, 100).ids) if (truth.has(s)) hits++;
    }
    expect(hits / (queries.length * 10)).toBeGreaterThanOrEqual(0.9);
  });

  it('index_search_exact equals a JS brute-force scan', () => {
    for (const q of queries.slice(0, 10)) {
      const r = ix.exact(q, 15);
      const truth = bruteForce(data, q, 15, l2sq);
      expect(r.ids).toEqual(truth.map(([s]) => s));
      r.dist.forEach((d, i) => expect(d).toBeCloseTo(truth[i][1], 4));
    }
  });

  it('returns fewer than k when fewer points exist', async () => {
    const small = await Raw.create(4);
    expect(small.search([1, 2, 3, 4], 3, 10).ids).toEqual([]); // empty index: 0 results
    small.add([0, 0, 0, 0]);
    small.add([1, 1, 1, 1]);
    const r = small.search([1, 1, 1, 1], 5, 10);
    expect(r.ids).toEqual([1, 0]);
    expect(r.dist).toEqual([0, 4]);
    expect(small.exact([0, 0, 0, 0], 10).ids).toEqual([0, 1]);
  });
});

describe('raw ABI: metrics', () => {
  const data = randomVectors(200, 16, 3);
  const q = randomVectors(1, 16, 4)[0];

  it('ip reports the negated dot product', async () => {
    const ix = await Raw.create(16, IP);
    data.forEach((v) => ix.add(v));
    const r = ix.exact(q, 5);
    const truth = bruteForce(data, q, 5, (a, b) => -dot(a, b));
    expect(r.ids).toEqual(truth.map(([s]) => s));
    r.ids.forEach((s, i) => expect(r.dist[i]).toBeCloseTo(-dot(q, data[s]), 4));
  });

  it('cosine stores unit vectors and reports 1 − cosine similarity', async () => {
    const ix = await Raw.create(16, COSINE);
    data.forEach((v) => ix.add(v));
    const p = ix.w.index_vector_ptr(7) >>> 2;
    const stored = ix.mem.f32.subarray(p, p + 16);
    expect(Math.sqrt(dot(stored, stored))).toBeCloseTo(1, 5);
    const cos = (a: ArrayLike<number>, b: ArrayLike<number>) => dot(a, b) / Math.sqrt(dot(a, a) * dot(b, b));
    const r = ix.exact(q, 5);
    expect(r.ids).toEqual(bruteForce(data, q, 5, (a, b) => 1 - cos(a, b)).map(([s]) => s));
    r.ids.forEach((s, i) => expect(r.dist[i]).toBeCloseTo(1 - cos(q, data[s]), 4));
    // A scaled copy of a stored vector has the same direction: distance ~0.
    const g = ix.search(data[42].map((x) => x * 3), 1, 32);
    expect(g.ids).toEqual([42]);
    expect(Math.abs(g.dist[0])).toBeLessThan(1e-5);
  });
});

describe('raw ABI: remove and slot states', () => {
  it('tombstones, consolidates, and reuses slots', async () => {
    const data = randomVectors(100, 8, 5);
    const ix = await Raw.create(8);
    data.forEach((v) => ix.add(v));
    const w = ix.w;

    expect(w.index_slot_state(3)).toBe(LIVE);
    expect(w.index_remove(3)).toBe(0);
    expect(w.index_slot_state(3)).toBe(DELETED);
    expect(w.index_size()).toBe(99);
    expect(w.index_slots()).toBe(100);
    expect(w.index_pending()).toBe(1);
    expect(w.index_vector_ptr(3)).toBe(0);
    // A tombstone is never returned, by the graph or the scan.
    expect(ix.search(data[3], 5, 50).ids).not.toContain(3);
    expect(ix.exact(data[3], 5).ids).not.toContain(3);
    expect(ix.exact(data[3], 100).ids.length).toBe(99);
    // Removing it again, or a slot never handed out, is -4.
    expect(w.index_remove(3)).toBe(ERR_SLOT);
    expect(w.index_remove(100)).toBe(ERR_SLOT);
    expect(w.index_remove(0xffffffff)).toBe(ERR_SLOT);
    expect(w.index_slot_state(100)).toBe(ERR_SLOT);

    expect(w.index_consolidate()).toBe(0);
    expect(w.index_slot_state(3)).toBe(FREE);
    expect(w.index_pending()).toBe(0);
    expect(w.index_remove(3)).toBe(ERR_SLOT);

    // The next add takes the free slot back.
    expect(ix.add(data[3])).toBe(3);
    expect(w.index_slot_state(3)).toBe(LIVE);
    expect(w.index_size()).toBe(100);
    expect(w.index_slots()).toBe(100);
    expect(ix.search(data[3], 1, 20).ids).toEqual([3]);
  });

  it('consolidates by itself once a tenth of the slots are tombstones, keeping search intact', async () => {
    const data = randomVectors(200, 8, 6);
    const ix = await Raw.create(8);
    data.forEach((v) => ix.add(v));
    for (let s = 0; s < 19; s++) expect(ix.w.index_remove(s * 2)).toBe(0);
    expect(ix.w.index_pending()).toBe(19);
    expect(ix.w.index_remove(38)).toBe(0); // 20 of 200 slots: threshold reached
    expect(ix.w.index_pending()).toBe(0);
    for (let s = 0; s <= 38; s += 2) expect(ix.w.index_slot_state(s)).toBe(FREE);
    const gone = (s: number) => s <= 38 && s % 2 === 0;
    for (const q of data.slice(100, 110)) {
      const truth = bruteForce(data, q, 5, l2sq, (s) => !gone(s)).map(([s]) => s);
      expect(ix.exact(q, 5).ids).toEqual(truth);
      expect(ix.search(q, 1, 64).ids).toEqual([truth[0]]);
    }
  });

  it('removing the last live point empties the index', async () => {
    const ix = await Raw.create(4);
    ix.add([1, 0, 0, 0]);
    expect(ix.w.index_remove(0)).toBe(0);
    expect(ix.w.index_size()).toBe(0);
    expect(ix.w.index_slot_state(0)).toBe(FREE);
    expect(ix.search([1, 0, 0, 0], 1, 1).ids).toEqual([]);
  });
});

describe('raw ABI: filter bitmap', () => {
  const data = randomVectors(N, DIM, 7);
  const queries = randomVectors(10, DIM, 8);
  let ix: Raw;

  beforeAll(async () => {
    ix = await Raw.create(DIM);
    data.forEach((v) => ix.add(v));
  });

  it('exact filtered search equals brute force over the allowed slots', () => {
    const allowed = (s: number) => s % 7 === 3;
    for (const q of queries) {
      ix.setFilter(allowed);
      const r = ix.exact(q, 10, 1);
      expect(r.ids).toEqual(bruteForce(data, q, 10, l2sq, allowed).map(([s]) => s));
    }
  });

  it('graph and auto modes return only allowed slots', () => {
    const allowed = (s: number) => s % 3 === 0;
    for (const mode of [FILTER_AUTO, FILTER_GRAPH]) {
      for (const q of queries) {
        ix.setFilter(allowed);
        const r = ix.search(q, 10, 64, mode);
        expect(r.ids.length).toBe(10);
        for (const s of r.ids) expect(allowed(s)).toBe(true);
      }
    }
  });

  it('auto mode is exact when very few slots are allowed', () => {
    const few = new Set([5, 77, 300, 301, 599]);
    for (const q of queries) {
      ix.setFilter((s) => few.has(s));
      const r = ix.search(q, 3, 10, FILTER_AUTO);
      expect(r.ids).toEqual(bruteForce(data, q, 3, l2sq, (s) => few.has(s)).map(([s]) => s));
    }
  });

  it('an empty allow set returns nothing', () => {
    ix.setFilter(() => false);
    expect(ix.search(queries[0], 5, 20, FILTER_AUTO).ids).toEqual([]);
    ix.setFilter(() => false);
    expect(ix.search(queries[0], 5, 20, FILTER_GRAPH).ids).toEqual([]);
    ix.setFilter(() => false);
    expect(ix.exact(queries[0], 5, 1).ids).toEqual([]);
  });

  it('mode 0 ignores the bitmap', () => {
    ix.setFilter(() => false);
    expect(ix.search(queries[0], 5, 20, FILTER_NONE).ids.length).toBe(5);
    expect(ix.exact(queries[0], 5, 0).ids.length).toBe(5);
  });

  it('the filter pointer moves when the index grows, and old views are detached', async () => {
    const g = await Raw.create(DIM, L2, 8, 32, 64);
    const before = g.w.index_filter_ptr();
    const staleView = new Float32Array(g.w.memory.buffer);
    expect(staleView.length).toBeGreaterThan(0);
    for (const v of data.slice(0, 300)) g.add(v);
    expect(g.w.index_capacity()).toBeGreaterThanOrEqual(300);
    expect(g.w.index_filter_ptr()).not.toBe(before);
    expect(staleView.length).toBe(0); // memory grew: a view made before is dead
    const allowed = (s: number) => s >= 250;
    g.setFilter(allowed);
    const r = g.exact(data[10], 5, 1);
    expect(r.ids).toEqual(bruteForce(data.slice(0, 300), data[10], 5, l2sq, allowed).map(([s]) => s));
  });
});

describe('raw ABI: snapshot save/load through sections', () => {
  const data = randomVectors(400, DIM, 9);
  const queries = randomVectors(20, DIM, 10);

  async function build(): Promise<Raw> {
    const ix = await Raw.create(DIM, COSINE, 10, 80);
    data.forEach((v) => ix.add(v));
    for (const s of [1, 50, 51, 200]) expect(ix.w.index_remove(s)).toBe(0); // leaves tombstones pending
    return ix;
  }

  it('writes a header with the documented fields', async () => {
    const ix = await build();
    const bytes = ix.save();
    const h = new DataView(bytes.buffer, bytes.byteOffset, HEADER_BYTES);
    expect(new TextDecoder().decode(bytes.subarray(0, 4))).toBe('VDBI');
    expect(h.getUint32(4, true)).toBe(2); // version
    expect(h.getInt32(8, true)).toBe(DIM);
    expect(h.getInt32(12, true)).toBe(COSINE);
    expect(h.getInt32(16, true)).toBe(10); // M
    expect(h.getInt32(20, true)).toBe(80); // efConstruction
    expect(h.getUint32(32, true)).toBe(400); // slots
    expect(h.getUint32(36, true)).toBe(396); // live
    expect(h.getUint32(40, true)).toBe(4); // pending
    expect(h.getInt32(56, true)).toBe(ix.w.index_max_level());
    // Sections: 32 free-list heads, one flag byte per slot, the level-0 records, the arena.
    expect(ix.w.index_section_len(0)).toBe(128);
    expect(ix.w.index_section_len(1)).toBe(400);
    const recSize = h.getUint32(64, true);
    const vecOff = h.getUint32(68, true);
    expect(vecOff).toBe(Math.ceil((16 + 4 * 20) / 64) * 64); // M0 = 2M = 20 links, on a cache line
    expect(recSize).toBe(Math.ceil((vecOff + 4 * Math.ceil(DIM / 4) * 4) / 64) * 64);
    expect(ix.w.index_section_len(2)).toBe(400 * recSize);
    expect(ix.w.index_section_len(3)).toBe(h.getUint32(60, true));
    expect(bytes.length).toBe(128 + 128 + 400 + 400 * recSize + h.getUint32(60, true));
    const flags = bytes.subarray(256, 256 + 400);
    expect(flags[50]).toBe(DELETED);
    expect(flags[49]).toBe(LIVE);
  });

  it('a fresh instance loaded from the sections gives identical results', async () => {
    const a = await build();
    const bytes = a.save();
    const loaded = await Raw.load(bytes);
    expect(typeof loaded).not.toBe('number');
    const b = loaded as Raw;
    for (const f of ['index_size', 'index_slots', 'index_pending', 'index_dim', 'index_metric', 'index_max_level'] as const) {
      expect(b.w[f]()).toBe(a.w[f]());
    }
    for (let s = 0; s < 400; s++) expect(b.w.index_slot_state(s)).toBe(a.w.index_slot_state(s));
    for (const q of queries) {
      expect(b.search(q, 10, 40)).toEqual(a.search(q, 10, 40));
      expect(b.exact(q, 10)).toEqual(a.exact(q, 10));
      a.setFilter((s) => s % 5 === 0);
      b.setFilter((s) => s % 5 === 0);
      expect(b.search(q, 5, 40, FILTER_GRAPH)).toEqual(a.search(q, 5, 40, FILTER_GRAPH));
    }
    // Both continue identically: same level generator state, same slot reuse.
    for (const v of queries.slice(0, 5)) expect(b.add(v)).toBe(a.add(v));
    expect(b.save()).toEqual(a.save());
  });

  it('the saved bytes are a pure function of the index', async () => {
    const a = await build();
    const b = await build();
    expect(a.save()).toEqual(b.save());
  });

  it('load_begin on an initialised instance is -1', async () => {
    const a = await build();
    const bytes = a.save();
    const w = (await Raw.create(DIM)).w;
    new Uint8Array(w.memory.buffer).set(bytes.subarray(0, HEADER_BYTES), w.scratch_ptr());
    expect(w.index_load_begin()).toBe(ERR_STATE);
  });

  it('load_end without a pending load is -1 and leaves the index as it was', async () => {
    const a = await build();
    const before = a.w.index_size();
    expect(before).toBeGreaterThan(0);
    expect(a.w.index_load_end()).toBe(ERR_STATE);
    expect(a.w.index_size()).toBe(before);
    expect(a.search(data[0], 1, 16).ids).toEqual([0]);
  });

  it('a damaged header or section is refused with -5', async () => {
    const bytes = (await build()).save();
    const badHeader = bytes.slice();
    badHeader[8] ^= 1; // dim
    expect(await Raw.load(badHeader)).toBe(ERR_CORRUPT);
    const badMagic = bytes.slice();
    badMagic[0] = 0;
    expect(await Raw.load(badMagic)).toBe(ERR_CORRUPT);
    const badSection = bytes.slice();
    badSection[bytes.length - 3] ^= 0x40; // inside the arena or the last record
    expect(await Raw.load(badSection)).toBe(ERR_CORRUPT);
  });

  it('an empty index round-trips', async () => {
    const a = await Raw.create(5, IP);
    const b = (await Raw.load(a.save())) as Raw;
    expect(typeof b).toBe('object');
    expect(b.w.index_size()).toBe(0);
    expect(b.w.index_metric()).toBe(IP);
    expect(b.add([1, 2, 3, 4, 5])).toBe(0);
    expect(b.search([1, 2, 3, 4, 5], 1, 1).dist).toEqual([-55]);
  });
});

describe('raw ABI: error codes', () => {
  let ix: Raw;
  beforeAll(async () => {
    ix = await Raw.create(4, L2);
    for (let i = 0; i < 20; i++) ix.add([i, 1, 2, 3]);
  });

  it('k and ef out of range are -2', () => {
    const w = ix.w;
    ix.setInput([0, 1, 2, 3]);
    expect(w.index_search(0, 10, 0)).toBe(ERR_ARGUMENT);
    expect(w.index_search(-1, 10, 0)).toBe(ERR_ARGUMENT);
    expect(w.index_search(10001, 20000, 0)).toBe(ERR_ARGUMENT);
    expect(w.index_search(5, 4, 0)).toBe(ERR_ARGUMENT); // ef < k
    expect(w.index_search(5, (1 << 20) + 1, 0)).toBe(ERR_ARGUMENT);
    expect(w.index_search(5, 10, 3)).toBe(ERR_ARGUMENT); // unknown filter mode
    expect(w.index_search(5, 10, -1)).toBe(ERR_ARGUMENT);
    expect(w.index_search_exact(0, 0)).toBe(ERR_ARGUMENT);
    expect(w.index_search_exact(10001, 0)).toBe(ERR_ARGUMENT);
    expect(w.index_search_exact(5, 2)).toBe(ERR_ARGUMENT);
    // The valid neighbours of those calls succeed.
    expect(w.index_search(10000, 10000, 0)).toBe(20);
    expect(w.index_search(1, 1, 0)).toBe(1);
  });

  it('NaN or infinite components are -6, for add and search', () => {
    const w = ix.w;
    for (const bad of [[NaN, 0, 0, 0], [0, 0, 0, Infinity], [0, -Infinity, 0, 0]]) {
      ix.setInput(bad);
      expect(w.index_add()).toBe(ERR_NOT_FINITE);
      expect(w.index_search(1, 10, 0)).toBe(ERR_NOT_FINITE);
      expect(w.index_search_exact(1, 0)).toBe(ERR_NOT_FINITE);
    }
    expect(w.index_size()).toBe(20);
    expect(w.index_slots()).toBe(20);
  });

  it('a zero vector with cosine is -7', async () => {
    const c = await Raw.create(4, COSINE);
    c.setInput([0, 0, 0, 0]);
    expect(c.w.index_add()).toBe(ERR_ZERO_VECTOR);
    expect(c.w.index_search(1, 1, 0)).toBe(ERR_ZERO_VECTOR);
    expect(c.w.index_size()).toBe(0);
    // ... but fine with l2.
    expect(ix.add([0, 0, 0, 0])).toBe(20);
  });

  it('unknown slots are -4', () => {
    expect(ix.w.index_remove(12345)).toBe(ERR_SLOT);
    expect(ix.w.index_slot_state(12345)).toBe(ERR_SLOT);
    expect(ix.w.index_vector_ptr(12345)).toBe(0);
  });

  it('a reserve past 4 GiB is -3 and leaves the index intact', () => {
    const cap = ix.w.index_capacity();
    expect(ix.w.index_reserve(0xffffffff)).toBe(-3);
    expect(ix.w.index_capacity()).toBe(cap);
    expect(ix.search([3, 1, 2, 3], 1, 10).ids).toEqual([3]);
  });

  it('out-of-range section indices give 0', () => {
    expect(ix.w.index_section_ptr(4)).toBe(0);
    expect(ix.w.index_section_len(4)).toBe(0);
    expect(ix.w.index_section_len(-1)).toBe(0);
  });
});

describe('raw ABI: kernels', () => {
  it('SIMD and scalar kernels agree with each other and with JS at any length', async () => {
    const w = await fresh(); // no index: the 64 KiB scratch is mapped from the start
    const mem = new Mem(w);
    const s = w.scratch_ptr();
    const r = rng(11);
    for (const n of [0, 1, 3, 4, 15, 16, 17, 63, 64, 65, 960, 8192]) {
      const a = Float32Array.from({ length: n }, () => r() * 4 - 2);
      const b = Float32Array.from({ length: n }, () => r() * 4 - 2);
      const pa = s, pb = s + 8192 * 4;
      mem.f32.set(a, pa >>> 2);
      mem.f32.set(b, pb >>> 2);
      const l2 = l2sq(a, b), ip = dot(a, b);
      // Worst-case f32 summation error, relative to the magnitude of the terms.
      let absDot = 0;
      for (let i = 0; i < n; i++) absDot += Math.abs(a[i] * b[i]);
      const bound = (m: number) => (n + 2) * 2 ** -24 * m + 1e-7;
      expect(Math.abs(w.kernel_l2sq(pa, pb, n) - l2)).toBeLessThanOrEqual(bound(l2));
      expect(Math.abs(w.kernel_l2sq_scalar(pa, pb, n) - l2)).toBeLessThanOrEqual(bound(l2));
      expect(Math.abs(w.kernel_dot(pa, pb, n) - ip)).toBeLessThanOrEqual(bound(absDot));
      expect(Math.abs(w.kernel_dot_scalar(pa, pb, n) - ip)).toBeLessThanOrEqual(bound(absDot));
      expect(w.kernel_l2sq(pa, pb, n)).toBeGreaterThanOrEqual(0);
    }
  });

  it('kernel_bench sums the chosen kernel over the iterations', async () => {
    const w = (await Raw.create(4)).w;
    const s = w.scratch_ptr();
    new Float32Array(w.memory.buffer).set([1, 2, 3, 4, 0, 0, 0, 1], s >>> 2);
    const a = s, b = s + 16;
    expect(w.kernel_bench(0, a, b, 4, 10)).toBe(10 * (1 + 4 + 9 + 9));
    expect(w.kernel_bench(1, a, b, 4, 10)).toBe(10 * (1 + 4 + 9 + 9));
    expect(w.kernel_bench(2, a, b, 4, 10)).toBe(40);
    expect(w.kernel_bench(3, a, b, 4, 10)).toBe(40);
    expect(w.kernel_bench(0, a, b, 4, 0)).toBe(0);
  });
});
