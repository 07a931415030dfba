// The index's memory: one index per Wasm instance, its state in globals, its data
// in regions of linear memory laid out by this file.
//
//   [fixed scratch: input, query, results, selection buffers, header]
//   [visited u16 × cap][flags u8 × cap][allow bitmap][frontier heap][result heap]
//   [level-0 records × cap][upper-level arena]
//
// A level-0 record is fixed-size, so slot s lives at level0Base + s * recSize:
//   +0 level  +4 upper-arena offset  +8 free-list next  +12 count  +16 links[M0]
//   then, 64-byte aligned, the vector (dimPad f32, zero-padded); records are a
//   whole number of cache lines and the region starts on one.
// Upper levels keep (count, links[M]) blocks in the arena, one per level ≥ 1.
// Growing moves regions towards the end (each only ever moves up), so no copy of
// the whole index is ever needed.

export const METRIC_L2: i32 = 0;
export const METRIC_IP: i32 = 1;
export const METRIC_COSINE: i32 = 2;

export const OK: i32 = 0;
export const ERR_STATE: i32 = -1;
export const ERR_ARGUMENT: i32 = -2;
export const ERR_MEMORY: i32 = -3;
export const ERR_SLOT: i32 = -4;
export const ERR_CORRUPT: i32 = -5;
export const ERR_NOT_FINITE: i32 = -6;
export const ERR_ZERO_VECTOR: i32 = -7;

export const FLAG_LIVE: u8 = 0;
export const FLAG_DELETED: u8 = 1; // tombstone: still routes searches, never returned
export const FLAG_FREE: u8 = 2; // unlinked by consolidation, waiting for reuse

export const K_MAX: i32 = 10000;
export const DIM_MAX: i32 = 65536;
export const M_MAX: i32 = 256;
export const LEVEL_MAX: i32 = 31;
export const HEADER_BYTES: i32 = 128;
export const KERNEL_FLOATS: i32 = 16384;
const MAX_BYTES: u64 = <u64>65535 << 16;

// Parameters
export let initialized = false;
export let dim: i32 = 0;
export let dimPad: i32 = 0;
export let metric: i32 = 0;
export let M: i32 = 0;
export let M0: i32 = 0;
export let efConstruction: i32 = 0;
export let levelMult: f64 = 0;
export let rng: u64 = 0;
export let keepPruned = false; // top up heuristic links (inner product only)

// Record geometry
export let recSize: usize = 0;
export let vecOff: usize = 0;
export let vecBytes: usize = 0; // bytes of the stored vector: f32 × dimPad, or SQ8 codes
export let upperBlock: usize = 0; // bytes of one upper level: (1 + M) u32

// Graph state
export let capacity: u32 = 0;
export let slots: u32 = 0; // high-water mark: slots ever handed out
export let live: u32 = 0;
export let pending: u32 = 0; // tombstones not yet consolidated
export let freeHead: i32 = -1;
export let freeCount: u32 = 0;
export let entry: i32 = -1;
export let maxLevel: i32 = 0;
export let epoch: u32 = 0;

// Fixed scratch
export const kernelBase: usize = (__heap_base + 63) & ~<usize>63;
export let inputBase: usize = 0;
export let queryBase: usize = 0;
export let resIds: usize = 0;
export let resDist: usize = 0;
export let batchBase: usize = 0; // unvisited neighbours of the node being expanded
export let selBase: usize = 0; // neighbour candidates, (dist, slot) pairs
export let selCap: u32 = 0;
export let selOut: usize = 0; // chosen neighbours, (dist, slot) pairs
export let connBase: usize = 0; // a neighbour's own candidates while linking back
export let connOut: usize = 0;
export let arenaFree: usize = 0; // LEVEL_MAX + 1 free-list heads
let fixedEnd: usize = 0;

// Growable regions
export let visitedBase: usize = 0;
export let flagsBase: usize = 0;
export let allowBase: usize = 0;
export let frontierBase: usize = 0;
export let resultBase: usize = 0;
export let level0Base: usize = 0;
export let arenaBase: usize = 0;
export let arenaCap: u32 = 0;
export let arenaUsed: u32 = 0;

@inline function align16(x: u64): u64 { return (x + 15) & ~<u64>15; }
@inline function align64(x: u64): u64 { return (x + 63) & ~<u64>63; }

@inline export function record(slot: u32): usize {
  return level0Base + <usize>slot * recSize;
}

@inline export function vectorOf(slot: u32): usize {
  return level0Base + <usize>slot * recSize + vecOff;
}

// Address of the (count, links...) list of `slot` at `level`.
@inline export function linksOf(slot: u32, level: i32): usize {
  const r = level0Base + <usize>slot * recSize;
  if (level == 0) return r + 12;
  return arenaBase + <usize>load<u32>(r, 4) + <usize>(level - 1) * upperBlock;
}

@inline export function levelOf(slot: u32): i32 {
  return load<i32>(level0Base + <usize>slot * recSize);
}

@inline export function flagOf(slot: u32): u8 {
  return load<u8>(flagsBase + <usize>slot);
}

@inline export function setFlag(slot: u32, f: u8): void {
  store<u8>(flagsBase + <usize>slot, f);
}

export function ensureBytes(total: u64): bool {
  if (total > MAX_BYTES) return false;
  const pages = <i32>((total + 0xffff) >> 16);
  const have = memory.size();
  if (pages > have && memory.grow(pages - have) < 0) return false;
  return true;
}

// Sets the parameters and lays out the fixed scratch. Returns OK or an error.
// The caller marks the index initialized once its regions exist too.
export function configure(d: i32, met: i32, m: i32, efc: i32, seed: u64): i32 {
  if (initialized) return ERR_STATE;
  if (d < 1 || d > DIM_MAX) return ERR_ARGUMENT;
  if (met < METRIC_L2 || met > METRIC_COSINE) return ERR_ARGUMENT;
  if (m < 2 || m > M_MAX) return ERR_ARGUMENT;
  if (efc < 1 || efc > 1 << 20) return ERR_ARGUMENT;
  dim = d;
  dimPad = (d + 3) & ~3;
  metric = met;
  keepPruned = met == METRIC_IP;
  M = m;
  M0 = m * 2;
  efConstruction = efc;
  levelMult = 1.0 / Math.log(<f64>m);
  rng = seed ^ 0x9e3779b97f4a7c15;
  // Records and vectors start on cache lines: an unaligned 512-byte vector
  // spans nine lines instead of eight, and that one line costs ~20 % of QPS.
  vecOff = <usize>align64(16 + 4 * <u64>M0);
  vecBytes = <usize>dimPad << 2;
  recSize = <usize>align64(<u64>vecOff + <u64>vecBytes);
  upperBlock = <usize>(1 + M) << 2;
  selCap = <u32>max(efc, M0 * (M0 + 1)) + 1;

  let p = <u64>kernelBase + (<u64>KERNEL_FLOATS << 2);
  inputBase = <usize>p; p = align16(p + (<u64>dimPad << 2));
  queryBase = <usize>p; p = align16(p + (<u64>dimPad << 2));
  resIds = <usize>p; p = align16(p + (<u64>K_MAX << 2));
  resDist = <usize>p; p = align16(p + (<u64>K_MAX << 2));
  batchBase = <usize>p; p = align16(p + (<u64>M0 << 2));
  selBase = <usize>p; p = align16(p + (<u64>selCap << 3));
  selOut = <usize>p; p = align16(p + (<u64>(M0 + 1) << 3));
  connBase = <usize>p; p = align16(p + (<u64>(M0 + 2) << 3));
  connOut = <usize>p; p = align16(p + (<u64>(M0 + 1) << 3));
  arenaFree = <usize>p; p = align16(p + (<u64>(LEVEL_MAX + 1) << 2));
  fixedEnd = <usize>p;
  if (!ensureBytes(p)) return ERR_MEMORY;
  memory.fill(inputBase, 0, (<usize>dimPad << 3));
  memory.fill(arenaFree, 0xff, (<usize>(LEVEL_MAX + 1) << 2));
  return OK;
}

// Appends a buffer to the fixed scratch (before the first layout); returns its
// 16-byte aligned address, or 0 when memory cannot hold it.
export function extendFixed(bytes: usize): usize {
  const p = fixedEnd;
  const end = align16(<u64>p + <u64>bytes);
  if (!ensureBytes(end)) return 0;
  fixedEnd = <usize>end;
  return p;
}

// Lays the growable regions out for (cap, arenaBytes), moving what exists.
export function layout(cap: u32, arenaBytes: u32): i32 {
  const c = <u64>cap;
  let p = <u64>fixedEnd;
  const vis = p; p = align16(p + c * 2);
  const fl = p; p = align16(p + c);
  const al = p; p = align16(p + ((c + 31) >> 5) * 4);
  const fr = p; p = align16(p + (c + 1) * 8);
  const rs = p; p = align16(p + (c + 1) * 8);
  p = align64(p);
  const l0 = p; p = align16(p + c * <u64>recSize);
  const ar = p; p = p + <u64>arenaBytes;
  if (!ensureBytes(p)) return ERR_MEMORY;
  // Later regions first: every region only moves up, so nothing unmoved is overwritten.
  memory.copy(<usize>ar, arenaBase, <usize>arenaUsed);
  memory.copy(<usize>l0, level0Base, <usize>slots * recSize);
  memory.copy(<usize>fl, flagsBase, <usize>slots);
  visitedBase = <usize>vis;
  flagsBase = <usize>fl;
  allowBase = <usize>al;
  frontierBase = <usize>fr;
  resultBase = <usize>rs;
  level0Base = <usize>l0;
  arenaBase = <usize>ar;
  memory.fill(visitedBase, 0, <usize>cap << 1);
  epoch = 0;
  capacity = cap;
  arenaCap = arenaBytes;
  return OK;
}

// Grows slot capacity to at least `want`, doubling when it can and settling for
// what fits under the memory limit when it cannot.
export function reserve(want: u32): i32 {
  if (want <= capacity) return OK;
  let cap = max(want, capacity + (capacity >> 1));
  if (cap < 64) cap = 64;
  while (true) {
    const r = layout(cap, arenaCap);
    if (r == OK) return OK;
    if (cap == want) return r;
    cap = want + ((cap - want) >> 1);
  }
}

// Doubles the arena when it can, and settles for `want` when doubling would
// pass the memory limit.
export function reserveArena(want: u32): i32 {
  if (want <= arenaCap) return OK;
  let bytes = <u64>max(want, arenaCap << 1);
  if (bytes < 4096) bytes = 4096;
  if (bytes > 0xffffffff) bytes = <u64>want;
  const r = layout(capacity, <u32>bytes);
  return r == OK || bytes == <u64>want ? r : layout(capacity, want);
}

// Expected upper-level bytes of a point, twice over for the arena's doubling:
// a point reaches level l with probability M^-l, so it holds 1/(M - 1) upper
// blocks on average.
export function upperBytes(): u32 {
  return <u32>((2 * <u64>upperBlock + <u64>(M - 2)) / <u64>(M - 1));
}

// Where the growable regions end now.
export function layoutEnd(): u64 {
  return <u64>arenaBase + <u64>arenaCap;
}

// Where they would end laid out for capacity `cap` with the current arena:
// the same arithmetic as `layout`.
export function bytesFor(cap: u32): u64 {
  const c = <u64>cap;
  let p = <u64>fixedEnd;
  p = align16(p + c * 2);
  p = align16(p + c);
  p = align16(p + ((c + 31) >> 5) * 4);
  p = align16(p + (c + 1) * 8);
  p = align16(p + (c + 1) * 8);
  p = align64(p);
  p = align16(p + c * <u64>recSize);
  return p + <u64>arenaCap;
}

// Next epoch for the visited tags; clears them when the 16-bit tag wraps.
export function nextEpoch(): u32 {
  epoch = (epoch + 1) & 0xffff;
  if (epoch == 0) {
    memory.fill(visitedBase, 0, <usize>capacity << 1);
    epoch = 1;
  }
  return epoch;
}

// splitmix64: levels come from a seeded generator, so a seed fixes the graph.
export function nextRandom(): u64 {
  rng += 0x9e3779b97f4a7c15;
  let z = rng;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9;
  z = (z ^ (z >> 27)) * 0x94d049bb133111eb;
  return z ^ (z >> 31);
}

export function randomLevel(): i32 {
  const u = (<f64>(nextRandom() >> 11) + 1.0) / 9007199254740992.0; // (0, 1]
  const l = <i32>Math.floor(-Math.log(u) * levelMult);
  return l > LEVEL_MAX ? LEVEL_MAX : l;
}

// Upper-level blocks: a node of level L owns L consecutive (count, links) lists.
export function allocUpper(level: i32): i64 {
  const head = load<i32>(arenaFree + (<usize>level << 2));
  if (head >= 0) {
    store<i32>(arenaFree + (<usize>level << 2), load<i32>(arenaBase + <usize>head));
    return <i64>head;
  }
  const bytes = <u32>level * <u32>upperBlock;
  if (<u64>arenaUsed + bytes > 0xffffffff) return -1;
  if (reserveArena(arenaUsed + bytes) != OK) return -1;
  const off = arenaUsed;
  arenaUsed += bytes;
  return <i64>off;
}

export function freeUpper(level: i32, off: u32): void {
  store<i32>(arenaBase + <usize>off, load<i32>(arenaFree + (<usize>level << 2)));
  store<i32>(arenaFree + (<usize>level << 2), <i32>off);
}

// Restores the just-configured empty state (used when a load fails midway).
export function resetEmpty(): void {
  slots = 0; live = 0; pending = 0; freeHead = -1; freeCount = 0;
  entry = -1; maxLevel = 0; arenaUsed = 0;
  memory.fill(arenaFree, 0xff, (<usize>(LEVEL_MAX + 1) << 2));
}
