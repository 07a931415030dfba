// The float side of an SQ8 index: its f32 vectors live here, outside the
// index's Wasm memory, and re-rank the candidates the codes found with the
// exact distance. They are kept in the memory of a second instance of the
// module, never initialised as an index, whose SIMD kernels (kernel_l2sq,
// kernel_dot) measure them: the same kernels a float index uses, so re-ranked
// distances are the ones a float index reports, at SIMD speed. That memory has
// its own 4 GiB limit.

import type { CoreExports } from './abi.js';
import { VdbError, ErrorCode } from '../errors.js';
import type { Metric, VectorLike } from './wasm-index.js';

const PAGE = 65536;
const K_MAX = 10000;
const METRIC_CODE: Record<Metric, number> = { l2: 0, ip: 1, cosine: 2 };

/** f32 vectors by slot, zero-padded to a multiple of 4 floats, in the memory of
 * a kernel-only Wasm instance: the query, candidate slots and their distances
 * (up to 10,000), then row `slot`. */
export class FloatStore {
  readonly stride: number;
  private readonly queryPtr: number;
  private readonly idsPtr: number;
  private readonly outPtr: number;
  private readonly rowsPtr: number;
  private f32 = new Float32Array(0);
  private u32 = new Uint32Array(0);

  constructor(private readonly k: CoreExports, readonly dim: number, rows = 0) {
    this.stride = (dim + 3) & ~3;
    this.queryPtr = (k.scratch_ptr() + 65536 + 63) & ~63;
    this.idsPtr = this.queryPtr + ((this.stride * 4 + 63) & ~63);
    this.outPtr = this.idsPtr + K_MAX * 4;
    this.rowsPtr = this.outPtr + K_MAX * 4;
    this.reserve(rows);
  }

  private reserve(rows: number): void {
    const need = this.rowsPtr + Math.max(rows, 16) * this.stride * 4;
    if (need > 65535 * PAGE) throw new VdbError(ErrorCode.OUT_OF_MEMORY, `the f32 vectors of ${rows} points would exceed the 4 GiB of their Wasm memory`);
    const mem = this.k.memory;
    if (need > mem.buffer.byteLength) {
      const want = Math.max(need, mem.buffer.byteLength * 2);
      mem.grow(Math.ceil((Math.min(want, 65535 * PAGE) - mem.buffer.byteLength) / PAGE));
    }
    this.f32 = new Float32Array(mem.buffer);
    this.u32 = new Uint32Array(mem.buffer);
  }

  /** Rows past `slots` that still fit in the store's memory. */
  room(slots: number): number {
    return Math.max(0, Math.floor((65535 * PAGE - this.rowsPtr) / (this.stride * 4)) - slots);
  }

  set(slot: number, v: Float32Array): void {
    const at = this.rowsPtr + (slot + 1) * this.stride * 4;
    if (at > this.f32.byteLength) this.reserve(slot + 1);
    const off = (this.rowsPtr >>> 2) + slot * this.stride;
    this.f32.set(v, off);
    this.f32.fill(0, off + this.dim, off + this.stride);
  }

  row(slot: number): Float32Array {
    const off = (this.rowsPtr >>> 2) + slot * this.stride;
    return this.f32.slice(off, off + this.dim);
  }

  /** Rows 0 … n−1 without padding, as one array (what a snapshot stores). */
  rows(n: number): Float32Array {
    const out = new Float32Array(n * this.dim);
    for (let s = 0; s < n; s++) out.set(this.f32.subarray((this.rowsPtr >>> 2) + s * this.stride, (this.rowsPtr >>> 2) + s * this.stride + this.dim), s * this.dim);
    return out;
  }

  /** The query the next distances are measured from (prepared: see `prepared`). */
  setQuery(q: Float32Array): void {
    this.f32.set(q, this.queryPtr >>> 2);
    this.f32.fill(0, (this.queryPtr >>> 2) + this.dim, (this.queryPtr >>> 2) + this.stride);
  }

  /** Distances from the query to the rows of `slots` (at most 10,000), in one
   * call whose first pass touches every row so that their cache misses overlap.
   * The returned view is valid until the next call. */
  distances(metric: Metric, slots: Uint32Array): Float32Array {
    this.u32.set(slots, this.idsPtr >>> 2);
    this.k.kernel_row_distances(METRIC_CODE[metric], this.queryPtr, this.rowsPtr, this.stride * 4, this.stride, this.idsPtr, slots.length, this.outPtr);
    return this.f32.subarray(this.outPtr >>> 2, (this.outPtr >>> 2) + slots.length);
  }

  /** The distance a float index reports, from the query to row `slot`: squared L2, −dot, or 1 − dot. */
  distance(metric: Metric, slot: number): number {
    const p = this.rowsPtr + slot * this.stride * 4;
    if (metric === 'l2') return this.k.kernel_l2sq(this.queryPtr, p, this.stride);
    const dot = this.k.kernel_dot(this.queryPtr, p, this.stride);
    return metric === 'ip' ? -dot : Math.fround(1 - dot);
  }
}

/** The vector as the index stores it: f32, and unit length for cosine (the
 * norm summed in f64, as the Wasm core does). Null for a zero cosine vector. */
export function prepared(metric: Metric, v: VectorLike): Float32Array | null {
  const out = v instanceof Float32Array ? v.slice() : Float32Array.from(v);
  if (metric !== 'cosine') return out;
  let sum = 0;
  for (let i = 0; i < out.length; i++) sum += out[i] * out[i];
  if (!(sum > 0)) return null;
  const norm = Math.sqrt(sum);
  for (let i = 0; i < out.length; i++) out[i] = out[i] / norm;
  return out;
}

/** The k nearest of the candidate slots by exact distance from the store's
 * query, ties to the lower slot: an insertion into the sorted top k, which for
 * k ≪ candidates is fewer steps than a sort and allocates nothing per candidate. */
export function rerank(metric: Metric, store: FloatStore, candidates: Uint32Array, k: number): { ids: Uint32Array; distances: Float32Array } {
  const n = Math.min(k, candidates.length);
  const ids = new Uint32Array(n);
  const distances = new Float32Array(n);
  const all = store.distances(metric, candidates);
  let size = 0;
  for (let c = 0; c < candidates.length; c++) {
    const slot = candidates[c];
    const d = all[c];
    if (size === n && (d > distances[n - 1] || (d === distances[n - 1] && slot > ids[n - 1]))) continue;
    let i = size < n ? size++ : n - 1;
    while (i > 0 && (distances[i - 1] > d || (distances[i - 1] === d && ids[i - 1] > slot))) {
      distances[i] = distances[i - 1];
      ids[i] = ids[i - 1];
      i--;
    }
    distances[i] = d;
    ids[i] = slot;
  }
  return { ids, distances };
}
