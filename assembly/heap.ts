// Binary heaps of (f32 distance, u32 slot) pairs stored as 8-byte entries in
// raw memory. The caller owns the size, so no object is allocated per query.

@inline export function entryDist(base: usize, i: u32): f32 {
  return load<f32>(base + (<usize>i << 3));
}

@inline export function entrySlot(base: usize, i: u32): u32 {
  return load<u32>(base + (<usize>i << 3), 4);
}

@inline function put(base: usize, i: u32, d: f32, s: u32): void {
  const p = base + (<usize>i << 3);
  store<f32>(p, d);
  store<u32>(p, s, 4);
}

@inline function move(base: usize, to: u32, from: u32): void {
  store<u64>(base + (<usize>to << 3), load<u64>(base + (<usize>from << 3)));
}

// Max-heap: the worst (largest) distance on top. Holds the current results.
export function maxPush(base: usize, size: u32, d: f32, s: u32): void {
  let i = size;
  while (i > 0) {
    const p = (i - 1) >> 1;
    if (entryDist(base, p) >= d) break;
    move(base, i, p);
    i = p;
  }
  put(base, i, d, s);
}

// Replaces the top of a non-empty max-heap with (d, s) and restores order.
export function maxReplaceTop(base: usize, size: u32, d: f32, s: u32): void {
  let i: u32 = 0;
  while (true) {
    let c = (i << 1) + 1;
    if (c >= size) break;
    let cd = entryDist(base, c);
    if (c + 1 < size) {
      const rd = entryDist(base, c + 1);
      if (rd > cd) { c++; cd = rd; }
    }
    if (cd <= d) break;
    move(base, i, c);
    i = c;
  }
  put(base, i, d, s);
}

// Removes the top; size is the size before the pop.
export function maxPop(base: usize, size: u32): void {
  const n = size - 1;
  if (n == 0) return;
  maxReplaceTop(base, n, entryDist(base, n), entrySlot(base, n));
}

// Min-heap: the best (smallest) distance on top. Holds the search frontier.
export function minPush(base: usize, size: u32, d: f32, s: u32): void {
  let i = size;
  while (i > 0) {
    const p = (i - 1) >> 1;
    if (entryDist(base, p) <= d) break;
    move(base, i, p);
    i = p;
  }
  put(base, i, d, s);
}

export function minPop(base: usize, size: u32): void {
  const n = size - 1;
  if (n == 0) return;
  const d = entryDist(base, n);
  const s = entrySlot(base, n);
  let i: u32 = 0;
  while (true) {
    let c = (i << 1) + 1;
    if (c >= n) break;
    let cd = entryDist(base, c);
    if (c + 1 < n) {
      const rd = entryDist(base, c + 1);
      if (rd < cd) { c++; cd = rd; }
    }
    if (cd >= d) break;
    move(base, i, c);
    i = c;
  }
  put(base, i, d, s);
}

// Empties a max-heap of `size` entries into ascending order in place.
export function drainAscending(base: usize, size: u32): void {
  let n = size;
  while (n > 1) {
    const d = entryDist(base, 0);
    const s = entrySlot(base, 0);
    maxPop(base, n);
    n--;
    put(base, n, d, s);
  }
}

// Sorts `size` entries ascending by distance in place (heapsort).
export function sortAscending(base: usize, size: u32): void {
  for (let i: u32 = 1; i < size; i++) maxPush(base, i, entryDist(base, i), entrySlot(base, i));
  drainAscending(base, size);
}
