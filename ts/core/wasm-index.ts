// WasmIndex: the typed wrapper over build/vdb.wasm. One instance of the module
// per index. Slots (dense u32, reused after removal) are the ids at this level;
// mapping application ids to slots is the caller's business.

import { readFileSync, existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { instantiateSync } from '@assemblyscript/loader';
import { VdbError, ErrorCode } from '../errors.js';
import type { CoreExports } from './abi.js';
import { FloatStore, prepared, rerank } from './rescore.js';

export type Metric = 'l2' | 'ip' | 'cosine';
export type VectorLike = Float32Array | ArrayLike<number>;

const METRIC_CODE: Record<Metric, number> = { l2: 0, ip: 1, cosine: 2 };
const METRICS: Metric[] = ['l2', 'ip', 'cosine'];

export const K_MAX = 10000;
export const DIM_MAX = 65536;
export const HEADER_BYTES = 128;
/** The most Wasm memory an index can have: 65,535 pages of 64 KiB (4 GiB − 64 KiB). */
export const MEMORY_LIMIT_BYTES = 65535 * 65536;
/** Slack for memory's whole pages and the regions' alignment. */
const LAYOUT_SLACK = 2 * 65536;
/** Bounds of the HNSW parameters the core accepts. */
export const HNSW_LIMITS = { mMin: 2, mMax: 256, efConstruction: 1 << 20, ef: 1 << 20 } as const;

/** 8-bit scalar quantization: the Wasm index keeps u8 codes, the f32 vectors
 * stay host-side to re-rank the best `rescore` candidates (docs/core.md). */
export interface Quantization {
  kind: 'sq8';
  /** Candidates re-ranked by exact distance; at least k. Default: 4·k, at most ef. */
  rescore?: number;
}

/** Training sample sizes: an SQ8 index trains at its first point and retrains
 * (rebuilding its graph) each time it grows 4× past its sample, up to this. */
export const SQ8_TRAIN_MAX = 4096;
/** Default candidates re-ranked per result wanted. */
export const SQ8_RESCORE_PER_K = 4;
/** Trailer of a saved SQ8 index, after the f32 vectors: "VDBF", rescore (0 = default). */
const SQ8_TRAILER = 8;
const SQ8_MAGIC = 0x46424456;

/** Checks a quantization option; returns it normalised. */
export function checkQuantization(q: unknown): Quantization | undefined {
  if (q === undefined || q === null) return undefined;
  if (typeof q !== 'object' || Array.isArray(q)) throw new VdbError(ErrorCode.INVALID_ARGUMENT, 'quantization must be an object {kind: "sq8", rescore?}');
  const { kind, rescore, ...rest } = q as Record<string, unknown>;
  if (kind !== 'sq8') throw new VdbError(ErrorCode.INVALID_ARGUMENT, `quantization.kind must be "sq8", got ${JSON.stringify(kind)}`);
  const extra = Object.keys(rest);
  if (extra.length > 0) throw new VdbError(ErrorCode.INVALID_ARGUMENT, `quantization has unknown field ${extra[0]}`);
  if (rescore !== undefined && !intIn(rescore as number, 1, K_MAX)) throw new VdbError(ErrorCode.INVALID_ARGUMENT, `quantization.rescore must be an integer from 1 to ${K_MAX}, got ${String(rescore)}`);
  return rescore === undefined ? { kind } : { kind, rescore: rescore as number };
}

export interface IndexOptions {
  dim: number;
  metric?: Metric;
  /** Links per node on upper levels; level 0 keeps 2·m. Default 16. */
  m?: number;
  /** Candidate list size while inserting. Default 200. */
  efConstruction?: number;
  /** Seed of the level generator: the same seed and inserts give the same graph. */
  seed?: number;
  /** Slots to reserve up front (capacity also grows by itself). */
  capacity?: number;
  quantization?: Quantization;
}

export interface SearchOptions {
  /** Candidate list size; at least k. Default max(k, 64). */
  ef?: number;
  /** Only slots in this set may be returned. */
  allow?: AllowSet;
  /** With `allow`: 'auto' scans when few slots are allowed, 'graph' never does. */
  plan?: 'auto' | 'graph';
}

/** Result of a search: slots and distances, nearest first. Distance is squared
 * L2 for l2, 1 − cosine similarity for cosine, −(dot product) for ip. */
export interface SearchResult {
  ids: Uint32Array;
  distances: Float32Array;
}

/** A set of slots as a bitmap, the shape the Wasm filter reads. */
export class AllowSet {
  bits: Uint32Array;
  constructor(slots = 0) {
    this.bits = new Uint32Array(Math.max(1, Math.ceil(slots / 32)));
  }
  static of(slots: Iterable<number>): AllowSet {
    const set = new AllowSet();
    for (const s of slots) set.add(s);
    return set;
  }
  add(slot: number): void {
    if (!intIn(slot, 0, 0xffffffff)) throw new VdbError(ErrorCode.INVALID_ARGUMENT, `AllowSet: ${slot} is not a slot`);
    const w = slot >>> 5;
    if (w >= this.bits.length) {
      const grown = new Uint32Array(Math.max(w + 1, this.bits.length * 2));
      grown.set(this.bits);
      this.bits = grown;
    }
    this.bits[w] |= 1 << (slot & 31);
  }
  has(slot: number): boolean {
    if (!intIn(slot, 0, 0xffffffff)) return false;
    const w = slot >>> 5;
    return w < this.bits.length && (this.bits[w] & (1 << (slot & 31))) !== 0;
  }
}


let compiled: WebAssembly.Module | undefined;

/** Path of the Wasm core: $VDB_WASM, else build/vdb.wasm at the package root
 * (this file runs from ts/core or, compiled, from dist/ts/core). */
export function wasmPath(): string {
  if (process.env.VDB_WASM) return process.env.VDB_WASM;
  for (const rel of ['../../build/vdb.wasm', '../../../build/vdb.wasm']) {
    const p = fileURLToPath(new URL(rel, import.meta.url));
    if (existsSync(p)) return p;
  }
  throw new VdbError(ErrorCode.INTERNAL, 'build/vdb.wasm not found: run `npm run build` first');
}

function instantiate(): CoreExports {
  compiled ??= new WebAssembly.Module(readFileSync(wasmPath()));
  return instantiateSync(compiled, {}).instance.exports as unknown as CoreExports;
}

function check(status: number, what: string): number {
  if (status >= 0) return status;
  switch (status) {
    case -2: throw new VdbError(ErrorCode.INVALID_ARGUMENT, `${what}: invalid argument`);
    case -3: throw new VdbError(ErrorCode.OUT_OF_MEMORY, `${what}: the index would exceed 4 GiB of Wasm memory`);
    case -4: throw new VdbError(ErrorCode.UNKNOWN_SLOT, `${what}: no live point in that slot`);
    case -5: throw new VdbError(ErrorCode.CORRUPT_INDEX, `${what}: the bytes are not a valid index`);
    case -6: throw new VdbError(ErrorCode.INVALID_VECTOR, `${what}: vector has NaN or infinite components`);
    case -7: throw new VdbError(ErrorCode.INVALID_VECTOR, `${what}: a zero vector has no cosine`);
    default: throw new VdbError(ErrorCode.INTERNAL, `${what}: Wasm status ${status}`);
  }
}

function intIn(v: number, lo: number, hi: number): boolean {
  return Number.isInteger(v) && v >= lo && v <= hi;
}

export class WasmIndex {
  readonly dim: number;
  readonly metric: Metric;
  private w: CoreExports;
  /** Set for an SQ8 index: its f32 vectors by slot, and its rescore option. */
  private floats?: FloatStore;
  private rescoreN = 0;
  private f32 = new Float32Array(0);
  private u32 = new Uint32Array(0);
  private u8 = new Uint8Array(0);
  private inputPtr: number;
  private idsPtr: number;
  private distPtr: number;

  private constructor(w: CoreExports) {
    this.w = w;
    this.dim = w.index_dim();
    this.metric = METRICS[w.index_metric()];
    this.inputPtr = w.index_input_ptr();
    this.idsPtr = w.index_result_ids_ptr();
    this.distPtr = w.index_result_dist_ptr();
    if (w.index_quantization() === 1) this.floats = new FloatStore(instantiate(), this.dim);
  }

  private adopt(w: CoreExports): void {
    this.w = w;
    this.inputPtr = w.index_input_ptr();
    this.idsPtr = w.index_result_ids_ptr();
    this.distPtr = w.index_result_dist_ptr();
    this.f32 = new Float32Array(0);
  }

  static create(opts: IndexOptions): WasmIndex {
    const metric = opts.metric ?? 'l2';
    const m = opts.m ?? 16;
    const efc = opts.efConstruction ?? 200;
    const seed = opts.seed ?? 42;
    const cap = opts.capacity ?? 1024;
    if (!intIn(opts.dim, 1, DIM_MAX)) throw new VdbError(ErrorCode.INVALID_ARGUMENT, `dim must be an integer from 1 to ${DIM_MAX}`);
    if (!METRICS.includes(metric)) throw new VdbError(ErrorCode.INVALID_ARGUMENT, `metric must be one of ${METRICS.join(', ')}`);
    if (!intIn(m, HNSW_LIMITS.mMin, HNSW_LIMITS.mMax)) throw new VdbError(ErrorCode.INVALID_ARGUMENT, `m must be an integer from ${HNSW_LIMITS.mMin} to ${HNSW_LIMITS.mMax}`);
    if (!intIn(efc, 1, HNSW_LIMITS.efConstruction)) throw new VdbError(ErrorCode.INVALID_ARGUMENT, 'efConstruction must be a positive integer');
    if (!Number.isSafeInteger(seed) || seed < 0) throw new VdbError(ErrorCode.INVALID_ARGUMENT, 'seed must be a non-negative integer');
    if (!intIn(cap, 0, 0xffffffff)) throw new VdbError(ErrorCode.INVALID_ARGUMENT, 'capacity must be a non-negative integer');
    const quant = checkQuantization(opts.quantization);
    const w = instantiate();
    const init = quant ? w.index_init_sq8 : w.index_init;
    check(init(opts.dim, METRIC_CODE[metric], m, efc, seed >>> 0, Math.floor(seed / 2 ** 32) >>> 0, cap), 'create');
    const index = new WasmIndex(w);
    index.rescoreN = quant?.rescore ?? 0;
    return index;
  }

  /** The quantization of the index, or undefined for a float index. */
  get quantization(): Quantization | undefined {
    if (!this.floats) return undefined;
    return this.rescoreN > 0 ? { kind: 'sq8', rescore: this.rescoreN } : { kind: 'sq8' };
  }

  /** Bytes of the host-side f32 vectors of an SQ8 index (0 for a float index). */
  get hostVectorBytes(): number {
    return this.floats ? this.slots * this.dim * 4 : 0;
  }

  /** Vectors the SQ8 params were trained on (0: untrained, or a float index). */
  get trainedOn(): number {
    const p = this.w.index_sq8_params_ptr();
    if (p === 0) return 0;
    this.views();
    return this.u32[(p >>> 2) + 3];
  }

  // Trains an SQ8 index before a point is added when it is untrained, or when
  // it will reach 4× its sample (up to SQ8_TRAIN_MAX): then on the live points
  // plus the new ones, into a fresh instance that re-adds every slot in order,
  // so slots stay what they were and the graph is built on the new codes.
  private trainFor(incoming: VectorLike[]): void {
    const trained = this.trainedOn;
    const after = this.size + incoming.length;
    if (trained > 0 && (trained >= SQ8_TRAIN_MAX || after < 4 * trained)) return;
    const store = this.floats!;
    const sample: Float32Array[] = [];
    for (let s = 0; s < this.slots && sample.length < SQ8_TRAIN_MAX; s++) if (this.has(s)) sample.push(store.row(s));
    for (const v of incoming) if (sample.length < SQ8_TRAIN_MAX) sample.push(Float32Array.from(v as ArrayLike<number>));
    const slots = this.slots;
    let w = this.w;
    let states: number[] = [];
    if (slots > 0) {
      states = Array.from({ length: slots }, (_, s) => this.w.index_slot_state(s));
      check(this.w.index_save_begin(), 'train');
      this.views();
      const h = this.w.scratch_ptr();
      const hdr = new DataView(this.u8.buffer, h, HEADER_BYTES);
      w = instantiate();
      // Seeded from the generator's state, so a rebuild is a function of the history.
      check(w.index_init_sq8(this.dim, METRIC_CODE[this.metric], hdr.getInt32(16, true), hdr.getInt32(20, true),
        hdr.getUint32(24, true), hdr.getUint32(28, true), slots), 'train');
    }
    const p = w.index_train_ptr(sample.length);
    if (p === 0) throw new VdbError(ErrorCode.OUT_OF_MEMORY, 'train: the sample does not fit in Wasm memory');
    const f = new Float32Array(w.memory.buffer);
    sample.forEach((v, i) => f.set(v, (p >>> 2) + i * this.dim));
    check(w.index_train(sample.length), 'train');
    if (slots === 0) return;
    this.adopt(w);
    for (let s = 0; s < slots; s++) {
      this.writeInput(store.row(s));
      const got = check(w.index_add(), 'train');
      if (got !== s) throw new VdbError(ErrorCode.INTERNAL, `train: rebuilt slot ${got}, expected ${s}`);
    }
    for (let s = 0; s < slots; s++) if (states[s] !== 0) check(w.index_remove(s), 'train');
  }

  /** Live points. */
  get size(): number { return this.w.index_size(); }
  /** Slots handed out so far (live, deleted and free). */
  get slots(): number { return this.w.index_slots(); }
  get capacity(): number { return this.w.index_capacity(); }
  /** Bytes of Wasm linear memory this index holds. */
  get memoryBytes(): number { return this.w.memory.buffer.byteLength; }
  /** Bytes the index's regions span at its capacity (memory is that, in whole pages, or more). */
  get layoutBytes(): number { return this.w.index_layout_bytes(); }
  /** Tombstones not yet consolidated (their slots are not reusable yet). */
  get pending(): number { return this.w.index_pending(); }

  /**
   * How many more points can be added before the index needs more than
   * `maxBytes` of memory (by default all a Wasm memory can hold), from the
   * layout's own arithmetic: the regions laid out for the occupied slots
   * (live and not yet consolidated) plus the new ones, the arena as it is plus
   * the new points' expected upper levels, twice over. Reserved but unused
   * capacity does not count against `maxBytes`; 0 when even the occupied
   * slots would not fit in it.
   */
  room(maxBytes: number = MEMORY_LIMIT_BYTES): number {
    const w = this.w;
    const occupied = w.index_size() + w.index_pending();
    const upper = w.index_upper_bytes();
    const limit = Math.min(maxBytes, MEMORY_LIMIT_BYTES) - LAYOUT_SLACK;
    const fits = (n: number) => w.index_layout_bytes_for(occupied + n) + n * upper <= limit;
    if (!fits(0)) return 0;
    // An SQ8 index's f32 vectors have their own Wasm memory, which may fill first.
    const hostRoom = this.floats ? this.floats.room(w.index_slots()) : Infinity;
    let lo = 0;
    let hi = 0xffffffff - occupied;
    while (lo < hi) {
      const mid = lo + Math.ceil((hi - lo) / 2);
      if (fits(mid)) lo = mid; else hi = mid - 1;
    }
    return Math.min(lo, hostRoom);
  }

  // Views over Wasm memory die when memory grows; re-create them after any call that may grow it.
  private views(): void {
    const buf = this.w.memory.buffer;
    if (this.f32.buffer !== buf) {
      this.f32 = new Float32Array(buf);
      this.u32 = new Uint32Array(buf);
      this.u8 = new Uint8Array(buf);
    }
  }

  private checkVector(v: VectorLike, what: string): void {
    if (v == null || typeof v.length !== 'number') throw new VdbError(ErrorCode.INVALID_VECTOR, `${what}: vector must be an array of numbers or a Float32Array`);
    if (v.length !== this.dim) throw new VdbError(ErrorCode.DIMENSION_MISMATCH, `${what}: vector has ${v.length} dimensions, the index has ${this.dim}`);
  }

  private writeInput(v: VectorLike): void {
    this.views();
    this.f32.set(v, this.inputPtr >>> 2);
  }

  private static finite(v: VectorLike): boolean {
    for (let i = 0; i < v.length; i++) {
      const x = v[i];
      if (typeof x !== 'number' || !Number.isFinite(x)) return false;
    }
    return true;
  }

  /** Adds one vector; returns its slot. */
  add(vector: VectorLike): number {
    this.checkVector(vector, 'add');
    if (!this.floats) {
      this.writeInput(vector);
      return check(this.w.index_add(), 'add');
    }
    const v = this.hostVector(vector, 'add');
    this.trainFor([v]);
    this.writeInput(v);
    const slot = check(this.w.index_add(), 'add');
    this.floats.set(slot, v);
    return slot;
  }

  // The f32 vector an SQ8 index keeps host-side, checked as the core would.
  private hostVector(vector: VectorLike, what: string): Float32Array {
    if (!WasmIndex.finite(vector)) throw new VdbError(ErrorCode.INVALID_VECTOR, `${what}: vector has NaN or infinite components`);
    const v = prepared(this.metric, vector);
    if (!v) throw new VdbError(ErrorCode.INVALID_VECTOR, `${what}: a zero vector has no cosine`);
    return v;
  }

  /** Adds vectors (rows of a flat Float32Array, or a list); all or none. */
  addBatch(vectors: Float32Array | VectorLike[]): Uint32Array {
    const rows = this.rows(vectors, 'addBatch');
    rows.forEach((v, i) => {
      if (!WasmIndex.finite(v)) throw new VdbError(ErrorCode.INVALID_VECTOR, `addBatch: vector ${i} has NaN, infinite or non-numeric components`);
    });
    const out = new Uint32Array(rows.length);
    if (this.floats && rows.length > 0) this.trainFor(rows.map((v) => this.hostVector(v, 'addBatch')));
    for (let i = 0; i < rows.length; i++) {
      try {
        out[i] = this.add(rows[i]);
      } catch (e) {
        for (let j = 0; j < i; j++) this.w.index_remove(out[j]);
        throw e;
      }
    }
    return out;
  }

  private rows(vectors: Float32Array | VectorLike[], what: string): VectorLike[] {
    if (vectors instanceof Float32Array) {
      if (vectors.length % this.dim !== 0) throw new VdbError(ErrorCode.DIMENSION_MISMATCH, `${what}: ${vectors.length} floats is not a whole number of ${this.dim}-dimensional rows`);
      const n = vectors.length / this.dim;
      const out: Float32Array[] = new Array(n);
      for (let i = 0; i < n; i++) out[i] = vectors.subarray(i * this.dim, (i + 1) * this.dim);
      return out;
    }
    if (!Array.isArray(vectors)) throw new VdbError(ErrorCode.INVALID_VECTOR, `${what}: expected a Float32Array or an array of vectors`);
    vectors.forEach((v) => this.checkVector(v, what));
    return vectors;
  }

  /** Deletes the point in a slot; the slot is reused later. */
  remove(slot: number): void {
    if (!intIn(slot, 0, 0xffffffff)) throw new VdbError(ErrorCode.UNKNOWN_SLOT, `remove: ${slot} is not a slot`);
    check(this.w.index_remove(slot), `remove(${slot})`);
  }

  /** True when the slot holds a live point. */
  has(slot: number): boolean {
    return intIn(slot, 0, 0xffffffff) && this.w.index_slot_state(slot) === 0;
  }

  /** The stored vector of a live slot (unit length for cosine). */
  vector(slot: number): Float32Array {
    const p = intIn(slot, 0, 0xffffffff) ? this.w.index_vector_ptr(slot) : 0;
    if (p === 0) throw new VdbError(ErrorCode.UNKNOWN_SLOT, `vector: no live point in slot ${slot}`);
    if (this.floats) return this.floats.row(slot).slice();
    this.views();
    return this.f32.slice(p >>> 2, (p >>> 2) + this.dim);
  }

  /** Unlinks deleted points now instead of at the next threshold. */
  consolidate(): void {
    check(this.w.index_consolidate(), 'consolidate');
  }

  reserve(capacity: number): void {
    if (!intIn(capacity, 0, 0xffffffff)) throw new VdbError(ErrorCode.INVALID_ARGUMENT, 'reserve: capacity must be a non-negative integer');
    check(this.w.index_reserve(capacity), 'reserve');
  }

  private checkK(k: number): void {
    if (!intIn(k, 1, K_MAX)) throw new VdbError(ErrorCode.INVALID_K, `k must be an integer from 1 to ${K_MAX}, got ${k}`);
  }

  private writeAllow(allow: AllowSet): void {
    const words = Math.ceil(this.w.index_slots() / 32);
    this.views();
    const base = this.w.index_filter_ptr() >>> 2;
    const n = Math.min(words, allow.bits.length);
    this.u32.set(n === allow.bits.length ? allow.bits : allow.bits.subarray(0, n), base);
    this.u32.fill(0, base + n, base + words);
  }

  private result(n: number): SearchResult {
    this.views();
    const ip = this.idsPtr >>> 2;
    const dp = this.distPtr >>> 2;
    return { ids: this.u32.slice(ip, ip + n), distances: this.f32.slice(dp, dp + n) };
  }

  /** Approximate k nearest neighbours by the graph. */
  search(query: VectorLike, k: number, opts: SearchOptions = {}): SearchResult {
    this.checkK(k);
    const ef = opts.ef ?? Math.max(k, 64);
    if (!intIn(ef, k, HNSW_LIMITS.ef)) throw new VdbError(ErrorCode.INVALID_EF, `ef must be an integer from k (${k}) to ${HNSW_LIMITS.ef}, got ${ef}`);
    this.checkVector(query, 'search');
    let mode = 0;
    if (opts.allow) {
      this.writeAllow(opts.allow);
      mode = opts.plan === 'graph' ? 2 : 1;
    }
    if (this.floats) return this.searchSq8(query, k, ef, mode);
    this.writeInput(query);
    return this.result(check(this.w.index_search(k, ef, mode), 'search'));
  }

  // The best `rescore` by codes, re-ranked by exact distance. Each candidate
  // re-ranked costs a cache miss on its f32 row, so the default takes 4·k (at
  // most ef), which on the benchmark sets loses nothing against all ef.
  private searchSq8(query: VectorLike, k: number, ef: number, mode: number): SearchResult {
    const q = this.hostVector(query, 'search');
    const r = Math.min(Math.max(k, this.rescoreN || Math.min(ef, SQ8_RESCORE_PER_K * k)), K_MAX);
    this.writeInput(q);
    const found = this.result(check(this.w.index_search(r, Math.max(ef, r), mode), 'search'));
    this.floats!.setQuery(q);
    return rerank(this.metric, this.floats!, found.ids, k);
  }

  searchBatch(queries: Float32Array | VectorLike[], k: number, opts: SearchOptions = {}): SearchResult[] {
    return this.rows(queries, 'searchBatch').map((q) => this.search(q, k, opts));
  }

  /** Exact k nearest by a full scan; ties go to the lower slot. */
  searchExact(query: VectorLike, k: number, allow?: AllowSet): SearchResult {
    this.checkK(k);
    this.checkVector(query, 'searchExact');
    if (this.floats) return this.exactSq8(query, k, allow);
    if (allow) this.writeAllow(allow);
    this.writeInput(query);
    return this.result(check(this.w.index_search_exact(k, allow ? 1 : 0), 'searchExact'));
  }

  // Exact over the host-side f32 vectors: the codes would only approximate.
  private exactSq8(query: VectorLike, k: number, allow?: AllowSet): SearchResult {
    const q = this.hostVector(query, 'searchExact');
    const scored: { slot: number; d: number }[] = [];
    const store = this.floats!;
    store.setQuery(q);
    for (let s = 0; s < this.slots; s++) {
      if (this.w.index_slot_state(s) !== 0 || (allow && !allow.has(s))) continue;
      scored.push({ slot: s, d: store.distance(this.metric, s) });
    }
    scored.sort((a, b) => a.d - b.d || a.slot - b.slot);
    const top = scored.slice(0, k);
    return { ids: Uint32Array.from(top, (x) => x.slot), distances: Float32Array.from(top, (x) => x.d) };
  }

  /** The whole index as bytes; `WasmIndex.load` restores it exactly. An SQ8
   * index appends its f32 vectors (slots × dim) and an 8-byte trailer. */
  save(): Uint8Array {
    const w = this.w;
    check(w.index_save_begin(), 'save');
    const count = w.index_section_count();
    let total = HEADER_BYTES;
    for (let i = 0; i < count; i++) total += w.index_section_len(i);
    const hostBytes = this.floats ? this.hostVectorBytes + SQ8_TRAILER : 0;
    const out = new Uint8Array(total + hostBytes);
    this.views();
    const h = w.scratch_ptr();
    out.set(this.u8.subarray(h, h + HEADER_BYTES), 0);
    let off = HEADER_BYTES;
    for (let i = 0; i < count; i++) {
      const p = w.index_section_ptr(i);
      const len = w.index_section_len(i);
      out.set(this.u8.subarray(p, p + len), off);
      off += len;
    }
    if (this.floats) {
      const rows = this.floats.rows(this.slots);
      out.set(new Uint8Array(rows.buffer, rows.byteOffset, rows.byteLength), off);
      const t = new DataView(out.buffer, off + rows.byteLength, SQ8_TRAILER);
      t.setUint32(0, SQ8_MAGIC, true);
      t.setUint32(4, this.rescoreN, true);
    }
    return out;
  }

  static load(bytes: Uint8Array): WasmIndex {
    if (!(bytes instanceof Uint8Array) || bytes.length < HEADER_BYTES) {
      throw new VdbError(ErrorCode.CORRUPT_INDEX, 'load: the bytes are too short to be an index');
    }
    const w = instantiate();
    let u8 = new Uint8Array(w.memory.buffer);
    u8.set(bytes.subarray(0, HEADER_BYTES), w.scratch_ptr());
    check(w.index_load_begin(), 'load');
    const count = w.index_section_count();
    let total = HEADER_BYTES;
    for (let i = 0; i < count; i++) total += w.index_section_len(i);
    const sq8 = w.index_quantization() === 1;
    const hostBytes = sq8 ? w.index_slots() * w.index_dim() * 4 : 0;
    if (sq8) total += hostBytes + SQ8_TRAILER;
    if (total !== bytes.length) {
      throw new VdbError(ErrorCode.CORRUPT_INDEX, `load: expected ${total} bytes, got ${bytes.length}`);
    }
    u8 = new Uint8Array(w.memory.buffer);
    let off = HEADER_BYTES;
    for (let i = 0; i < count; i++) {
      const len = w.index_section_len(i);
      u8.set(bytes.subarray(off, off + len), w.index_section_ptr(i));
      off += len;
    }
    check(w.index_load_end(), 'load');
    const index = new WasmIndex(w);
    if (sq8) {
      // A copy: `bytes` may be a Buffer, whose slice shares a larger pool.
      const rows = new Float32Array(Uint8Array.prototype.slice.call(bytes, off, off + hostBytes).buffer);
      const t = new DataView(bytes.buffer, bytes.byteOffset + off + hostBytes, SQ8_TRAILER);
      if (t.getUint32(0, true) !== SQ8_MAGIC) throw new VdbError(ErrorCode.CORRUPT_INDEX, 'load: the f32 vectors of the SQ8 index are missing');
      index.rescoreN = t.getUint32(4, true);
      if (index.rescoreN > K_MAX) throw new VdbError(ErrorCode.CORRUPT_INDEX, 'load: bad rescore in the SQ8 trailer');
      index.floats = new FloatStore(instantiate(), index.dim, w.index_slots());
      for (let s = 0; s < w.index_slots(); s++) index.floats.set(s, rows.subarray(s * index.dim, (s + 1) * index.dim));
    }
    return index;
  }
}
