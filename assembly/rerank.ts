// Exact distances of stored f32 rows to a query, in one call: what a host that
// keeps an SQ8 index's vectors beside it (in another instance's memory) uses
// to re-rank candidates. Same kernels and reported values as a float index.

import { l2sqSimd, dotSimd } from "./distance";

// Keeps the touching loads from being optimised away.
export let rerankSink: u32 = 0;

// For i < count: out[i] = distance(metric) from the query at q to the row at
// base + ids[i] · strideBytes, over n f32. The first pass touches every row, so
// their cache misses overlap instead of queueing one per distance.
export function rowDistances(metric: i32, q: usize, base: usize, strideBytes: usize, n: i32,
                             ids: usize, count: i32, out: usize): void {
  let touched: u32 = 0;
  for (let i = 0; i < count; i++) {
    touched += load<u32>(base + <usize>load<u32>(ids + (<usize>i << 2)) * strideBytes);
  }
  rerankSink = touched;
  for (let i = 0; i < count; i++) {
    const p = base + <usize>load<u32>(ids + (<usize>i << 2)) * strideBytes;
    let d: f32;
    if (metric == 0) d = l2sqSimd(q, p, n);
    else if (metric == 1) d = -dotSimd(q, p, n);
    else d = 1 - dotSimd(q, p, n);
    store<f32>(out + (<usize>i << 2), d);
  }
}
