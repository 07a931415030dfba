// The float side of an SQ8 index: its f32 vectors live here, in a host-side
// store outside Wasm memory, and re-rank the candidates the codes found with
// the exact distance (the one a float index reports).

import type { Metric, VectorLike } from './wasm-index.js';

/** f32 vectors by slot, row `slot` at `slot * dim`; grows by doubling. */
export class FloatStore {
  data: Float32Array;
  constructor(readonly dim: number, rows = 0) {
    this.data = new Float32Array(Math.max(rows, 16) * dim);
  }
  set(slot: number, v: Float32Array): void {
    const need = (slot + 1) * this.dim;
    if (need > this.data.length) {
      const grown = new Float32Array(Math.max(need, this.data.length * 2));
      grown.set(this.data);
      this.data = grown;
    }
    this.data.set(v, slot * this.dim);
  }
  row(slot: number): Float32Array {
    return this.data.subarray(slot * this.dim, (slot + 1) * this.dim);
  }
  /** Rows 0 … n−1 as one array (what a snapshot stores). */
  rows(n: number): Float32Array {
    return this.data.subarray(0, n * this.dim);
  }
}

/** The vector as the index stores it: f32, and unit length for cosine (the
 * norm summed in f64, as the Wasm core does). Null for a zero cosine vector. */
export function prepared(metric: Metric, v: VectorLike): Float32Array | null {
  const out = Float32Array.from(v as ArrayLike<number>);
  if (metric !== 'cosine') return out;
  let sum = 0;
  for (let i = 0; i < out.length; i++) sum += out[i] * out[i];
  if (!(sum > 0)) return null;
  const norm = Math.sqrt(sum);
  for (let i = 0; i < out.length; i++) out[i] = out[i] / norm;
  return out;
}

/** The distance a float index reports: squared L2, −dot, or 1 − dot. */
export function exactDistance(metric: Metric, q: Float32Array, data: Float32Array, off: number): number {
  const n = q.length;
  let s = 0;
  if (metric === 'l2') {
    for (let i = 0; i < n; i++) {
      const d = q[i] - data[off + i];
      s += d * d;
    }
    return Math.fround(s);
  }
  for (let i = 0; i < n; i++) s += q[i] * data[off + i];
  return Math.fround(metric === 'ip' ? -s : 1 - s);
}

/** The k nearest of the candidate slots by exact distance, ties to the lower
 * slot: an insertion into the sorted top k, which for k ≪ candidates is fewer
 * steps than a sort and allocates nothing per candidate. */
export function rerank(metric: Metric, q: Float32Array, store: FloatStore, candidates: Uint32Array, k: number): { ids: Uint32Array; distances: Float32Array } {
  const dim = store.dim;
  const n = Math.min(k, candidates.length);
  const ids = new Uint32Array(n);
  const distances = new Float32Array(n);
  let size = 0;
  for (const slot of candidates) {
    const d = exactDistance(metric, q, store.data, slot * dim);
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
