// HNSW graph: insert with the neighbour-selection heuristic, layered search,
// tombstone deletes that consolidation later unlinks so their slots can be reused.
// Functions are generic over the kernel: T = i32 is squared L2, T = f32 the
// negated dot product (inner product), T = f64 one minus the dot product (cosine
// on normalised vectors); u8, i8 and u16 are the same three on SQ8 codes. Each is instantiated once per kernel; the index picks
// its set when it is configured. The value a kernel returns is the distance
// reported to the host, so ordering and ties are decided on reported values.

import { l2sqSimd, dotSimd } from "./distance";
import { sq8L2, sq8Dot } from "./sq8";
import {
  dimPad, M, M0, efConstruction, slots, pending, entry, maxLevel, flagsBase, allowBase,
  visitedBase, frontierBase, resultBase, batchBase, selBase, selOut, connBase, connOut, selCap,
  FLAG_LIVE, FLAG_DELETED, keepPruned, vecBytes, linksOf, vectorOf, levelOf, flagOf, nextEpoch,
} from "./layout";
import {
  entryDist, entrySlot, maxPush, maxReplaceTop, minPush, minPop, drainAscending,
  sortAscending,
} from "./heap";
import { visited, visit } from "./visited";

@inline export function distance<T>(a: usize, b: usize): f32 {
  // SQ8 codes (assembly/sq8.ts): u8 squared L2, i8 inner product, u16 cosine.
  if (sizeof<T>() == 1) return isSigned<T>() ? -sq8Dot(a, b) : sq8L2(a, b);
  if (sizeof<T>() == 2) return 1 - sq8Dot(a, b);
  if (isInteger<T>()) return l2sqSimd(a, b, dimPad);
  if (sizeof<T>() == 8) return 1 - dotSimd(a, b, dimPad);
  return -dotSimd(a, b, dimPad);
}

@inline export function allowed(slot: u32, filtered: bool): bool {
  if (load<u8>(flagsBase + <usize>slot) != FLAG_LIVE) return false;
  return !filtered || ((load<u32>(allowBase + (<usize>(slot >> 5) << 2)) >>> (slot & 31)) & 1) != 0;
}

// Starts a cache miss early, like a prefetch (Wasm has none): a load whose value
// is dropped. Neither Binaryen nor V8 removes it (a load may trap), so no sink
// global is needed to keep it.
@inline function touch(p: usize): void {
  load<u32>(p);
}

// Greedy walk at one upper level: moves to a closer neighbour while there is one.
// Returns the slot reached; its distance is left in `greedyDist`. Like level 0,
// it touches whole neighbour vectors before computing any distance.
export let greedyDist: f32 = 0;
export function greedy<T>(q: usize, start: u32, startDist: f32, level: i32): u32 {
  let cur = start;
  let curDist = startDist;
  let changed = true;
  const touchBytes = min<usize>(vecBytes, 512);
  while (changed) {
    changed = false;
    const lp = linksOf(cur, level);
    const n = load<u32>(lp);
    for (let j: u32 = 0; j < n; j++) {
      const vp = vectorOf(load<u32>(lp + 4 + (<usize>j << 2)));
      for (let o: usize = 0; o < touchBytes; o += 64) touch(vp + o);
    }
    for (let j: u32 = 0; j < n; j++) {
      const v = load<u32>(lp + 4 + (<usize>j << 2));
      const d = distance<T>(q, vectorOf(v));
      if (d < curDist) { curDist = d; cur = v; changed = true; }
    }
  }
  greedyDist = curDist;
  return cur;
}

// Best-first search of one level from `ep`, keeping the `ef` closest nodes that
// pass the check (live, and allowed when filtered) in the result max-heap.
// Nodes that fail the check still route the search. Returns the result count.
export function searchLevel<T>(q: usize, ep: u32, epDist: f32, ef: u32, level: i32,
                               check: bool, filtered: bool): u32 {
  const tag = <u16>nextEpoch();
  const vis = visitedBase;
  const fr = frontierBase;
  const rs = resultBase;
  const batch = batchBase;
  const touchBytes = min<usize>(vecBytes, 512);
  visit(vis, ep, tag);
  minPush(fr, 0, epDist, ep);
  let frSize: u32 = 1;
  let rsSize: u32 = 0;
  let bound = Infinity as f32;
  if (!check || allowed(ep, filtered)) {
    maxPush(rs, 0, epDist, ep);
    rsSize = 1;
    bound = epDist;
  }
  while (frSize > 0) {
    const cd = entryDist(fr, 0);
    const c = entrySlot(fr, 0);
    if (cd > bound && (rsSize == ef || !check)) break;
    minPop(fr, frSize);
    frSize--;
    // The next node to expand is known now: start loading its links (level 0
    // only: an upper-level block may be the last thing in memory).
    if (level == 0 && frSize > 0) {
      const np = linksOf(entrySlot(fr, 0), level);
      touch(np);
      touch(np + 64);
      touch(np + 128);
    }
    const lp = linksOf(c, level);
    const n = load<u32>(lp);
    // First pass: collect unvisited neighbours and touch their vectors, so the
    // cache misses of a whole neighbourhood overlap instead of queueing.
    let m: u32 = 0;
    for (let j: u32 = 0; j < n; j++) {
      const v = load<u32>(lp + 4 + (<usize>j << 2));
      if (visited(vis, v, tag)) continue;
      visit(vis, v, tag);
      store<u32>(batch + (<usize>m << 2), v);
      const vp = vectorOf(v);
      for (let o: usize = 0; o < touchBytes; o += 64) touch(vp + o);
      m++;
    }
    for (let j: u32 = 0; j < m; j++) {
      const v = load<u32>(batch + (<usize>j << 2));
      const d = distance<T>(q, vectorOf(v));
      if (rsSize < ef || d < bound) {
        minPush(fr, frSize, d, v);
        frSize++;
        if (!check || allowed(v, filtered)) {
          if (rsSize < ef) {
            maxPush(rs, rsSize, d, v);
            rsSize++;
          } else {
            maxReplaceTop(rs, rsSize, d, v);
          }
          bound = entryDist(rs, 0);
        }
      }
    }
  }
  return rsSize;
}

// The heuristic of the HNSW paper: walk candidates nearest first and keep one
// only if it is closer to the base than to every neighbour kept so far, so the
// links spread in different directions. `cand` holds n pairs sorted ascending;
// the chosen pairs go to `out`. Returns how many were chosen.
// With inner product the heuristic prunes so hard that parts of the graph lose
// all in-links (−dot is not a metric: a long vector is "closest" to everything),
// so for ip the list is topped up with the nearest pruned candidates.
export function selectNeighbours<T>(cand: usize, n: u32, m: u32, out: usize): u32 {
  if (n <= m) {
    memory.copy(out, cand, <usize>n << 3);
    return n;
  }
  let k: u32 = 0;
  for (let i: u32 = 0; i < n && k < m; i++) {
    const c = entrySlot(cand, i);
    const dc = entryDist(cand, i);
    const vc = vectorOf(c);
    let good = true;
    for (let j: u32 = 0; j < k; j++) {
      if (distance<T>(vc, vectorOf(entrySlot(out, j))) < dc) { good = false; break; }
    }
    if (good) {
      store<u64>(out + (<usize>k << 3), load<u64>(cand + (<usize>i << 3)));
      k++;
    }
  }
  if (keepPruned) {
    const chosen = k;
    for (let i: u32 = 0; i < n && k < m; i++) {
      const c = entrySlot(cand, i);
      let taken = false;
      for (let j: u32 = 0; j < chosen; j++) if (entrySlot(out, j) == c) { taken = true; break; }
      if (!taken) {
        store<u64>(out + (<usize>k << 3), load<u64>(cand + (<usize>i << 3)));
        k++;
      }
    }
  }
  return k;
}

function writeLinks(lp: usize, pairs: usize, n: u32): void {
  store<u32>(lp, n);
  for (let j: u32 = 0; j < n; j++) store<u32>(lp + 4 + (<usize>j << 2), entrySlot(pairs, j));
}

// Adds the back-link v → s at `level`; when v's list is full, v's links plus s
// are re-chosen by the heuristic.
function linkBack<T>(v: u32, s: u32, d: f32, level: i32): void {
  const maxM = <u32>(level == 0 ? M0 : M);
  const lp = linksOf(v, level);
  const n = load<u32>(lp);
  if (n < maxM) {
    store<u32>(lp + 4 + (<usize>n << 2), s);
    store<u32>(lp, n + 1);
    return;
  }
  const vv = vectorOf(v);
  for (let j: u32 = 0; j < n; j++) {
    const u = load<u32>(lp + 4 + (<usize>j << 2));
    store<f32>(connBase + (<usize>j << 3), distance<T>(vv, vectorOf(u)));
    store<u32>(connBase + (<usize>j << 3), u, 4);
  }
  store<f32>(connBase + (<usize>n << 3), d);
  store<u32>(connBase + (<usize>n << 3), s, 4);
  sortAscending(connBase, n + 1);
  writeLinks(lp, connOut, selectNeighbours<T>(connBase, n + 1, maxM, connOut));
}

// Links a slot whose record (level, vector, empty lists) is already written.
export function insert<T>(s: u32): void {
  const level = levelOf(s);
  const q = vectorOf(s);
  let cur = <u32>entry;
  let curDist = distance<T>(q, vectorOf(cur));
  for (let l = maxLevel; l > level; l--) {
    cur = greedy<T>(q, cur, curDist, l);
    curDist = greedyDist;
  }
  const check = pending > 0;
  for (let l = min(level, maxLevel); l >= 0; l--) {
    const found = searchLevel<T>(q, cur, curDist, <u32>efConstruction, l, check, false);
    if (found == 0) continue;
    drainAscending(resultBase, found);
    cur = entrySlot(resultBase, 0);
    curDist = entryDist(resultBase, 0);
    const k = selectNeighbours<T>(resultBase, found, <u32>M, selOut);
    writeLinks(linksOf(s, l), selOut, k);
    for (let j: u32 = 0; j < k; j++) linkBack<T>(entrySlot(selOut, j), s, entryDist(selOut, j), l);
  }
}

// Searches for the ef nearest from the top, leaving them in the result heap.
export function knn<T>(q: usize, ef: u32, filtered: bool): u32 {
  let cur = <u32>entry;
  let curDist = distance<T>(q, vectorOf(cur));
  for (let l = maxLevel; l > 0; l--) {
    cur = greedy<T>(q, cur, curDist, l);
    curDist = greedyDist;
  }
  return searchLevel<T>(q, cur, curDist, ef, 0, pending > 0 || filtered, filtered);
}

// Re-chooses the links of live slot u at `level` when some point at tombstones:
// the candidates are its live neighbours and the live neighbours of its deleted
// neighbours, nearest first, capped so the cost per node stays bounded.
function repair<T>(u: u32, level: i32): void {
  const lp = linksOf(u, level);
  const n = load<u32>(lp);
  let hit = false;
  for (let j: u32 = 0; j < n; j++) {
    if (flagOf(load<u32>(lp + 4 + (<usize>j << 2))) != FLAG_LIVE) { hit = true; break; }
  }
  if (!hit) return;
  const tag = <u16>nextEpoch();
  const vis = visitedBase;
  visit(vis, u, tag);
  const vu = vectorOf(u);
  let c: u32 = 0;
  for (let j: u32 = 0; j < n; j++) {
    const v = load<u32>(lp + 4 + (<usize>j << 2));
    const fv = flagOf(v);
    if (fv == FLAG_LIVE) {
      if (!visited(vis, v, tag) && c < selCap) {
        visit(vis, v, tag);
        store<f32>(selBase + (<usize>c << 3), distance<T>(vu, vectorOf(v)));
        store<u32>(selBase + (<usize>c << 3), v, 4);
        c++;
      }
    } else if (fv == FLAG_DELETED) {
      const lv = linksOf(v, level);
      const nv = load<u32>(lv);
      for (let i: u32 = 0; i < nv; i++) {
        const w = load<u32>(lv + 4 + (<usize>i << 2));
        if (flagOf(w) != FLAG_LIVE || visited(vis, w, tag) || c >= selCap) continue;
        visit(vis, w, tag);
        store<f32>(selBase + (<usize>c << 3), distance<T>(vu, vectorOf(w)));
        store<u32>(selBase + (<usize>c << 3), w, 4);
        c++;
      }
    }
  }
  sortAscending(selBase, c);
  const capN = min(c, <u32>efConstruction);
  const maxM = <u32>(level == 0 ? M0 : M);
  writeLinks(lp, selOut, selectNeighbours<T>(selBase, capN, maxM, selOut));
}

// Unlinks every tombstone: live nodes that point at one get their links re-chosen.
export function consolidateLinks<T>(): void {
  for (let l = 0; l <= maxLevel; l++) {
    for (let u: u32 = 0; u < slots; u++) {
      if (flagOf(u) == FLAG_LIVE && levelOf(u) >= l) repair<T>(u, l);
    }
  }
}

