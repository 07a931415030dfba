// Exact top-k by a full scan: the answer for small allowed sets and the oracle
// the graph is measured against. Ties are broken by slot, so the result is a
// pure function of the data: each candidate is one u64 key (distance bits made
// sortable, then slot) in a max-heap of k keys.

import { distance } from "./hnsw";
import { slots, resultBase, allowBase, flagsBase, FLAG_LIVE, vectorOf } from "./layout";

@inline function sortable(d: f32): u64 {
  const b = reinterpret<u32>(d + 0); // + 0 folds -0 into +0
  return <u64>((b & 0x80000000) != 0 ? ~b : b | 0x80000000);
}

@inline export function keyDist(key: u64): f32 {
  const s = <u32>(key >> 32);
  return reinterpret<f32>((s & 0x80000000) != 0 ? s & 0x7fffffff : ~s);
}

function push(base: usize, size: u32, key: u64): void {
  let i = size;
  while (i > 0) {
    const p = (i - 1) >> 1;
    const pk = load<u64>(base + (<usize>p << 3));
    if (pk >= key) break;
    store<u64>(base + (<usize>i << 3), pk);
    i = p;
  }
  store<u64>(base + (<usize>i << 3), key);
}

function replaceTop(base: usize, size: u32, key: u64): void {
  let i: u32 = 0;
  while (true) {
    let c = (i << 1) + 1;
    if (c >= size) break;
    let ck = load<u64>(base + (<usize>c << 3));
    if (c + 1 < size) {
      const rk = load<u64>(base + (<usize>(c + 1) << 3));
      if (rk > ck) { c++; ck = rk; }
    }
    if (ck <= key) break;
    store<u64>(base + (<usize>i << 3), ck);
    i = c;
  }
  store<u64>(base + (<usize>i << 3), key);
}

@inline function consider(base: usize, size: u32, k: u32, key: u64): u32 {
  if (size < k) { push(base, size, key); return size + 1; }
  if (key < load<u64>(base)) replaceTop(base, size, key);
  return size;
}

// Scans live slots (only allowed ones when filtered) and leaves the k nearest
// as keys in the result heap. Returns how many.
export function scan<T>(q: usize, k: u32, filtered: bool): u32 {
  const base = resultBase;
  let size: u32 = 0;
  const n = slots;
  if (!filtered) {
    for (let s: u32 = 0; s < n; s++) {
      if (load<u8>(flagsBase + <usize>s) != FLAG_LIVE) continue;
      size = consider(base, size, k, (sortable(distance<T>(q, vectorOf(s))) << 32) | s);
    }
    return size;
  }
  const words = (n + 31) >> 5;
  for (let w: u32 = 0; w < words; w++) {
    let bits = load<u32>(allowBase + (<usize>w << 2));
    while (bits != 0) {
      const s = (w << 5) + ctz(bits);
      bits &= bits - 1;
      if (s >= n || load<u8>(flagsBase + <usize>s) != FLAG_LIVE) continue;
      size = consider(base, size, k, (sortable(distance<T>(q, vectorOf(s))) << 32) | s);
    }
  }
  return size;
}

// Pops the heap of `size` keys into ascending order in place.
export function drainKeys(size: u32): void {
  const base = resultBase;
  let n = size;
  while (n > 1) {
    const top = load<u64>(base);
    n--;
    const last = load<u64>(base + (<usize>n << 3));
    replaceTop(base, n, last);
    store<u64>(base + (<usize>n << 3), top);
  }
}

// Counts allowed slots (set bits below `slots`; deleted ones included, which
// only matters for the plan choice), to choose between graph search and a scan.
export function countAllowed(): u32 {
  const n = slots;
  const words = (n + 31) >> 5;
  let c: u32 = 0;
  for (let w: u32 = 0; w < words; w++) {
    let bits = load<u32>(allowBase + (<usize>w << 2));
    const over = (w << 5) + 32;
    if (over > n) bits &= 0xffffffff >>> (over - n);
    c += popcnt(bits);
  }
  return c;
}
