// Whole-index snapshot: a 128-byte header, then four sections copied straight
// from memory (arena free lists, flags, level-0 records, upper arena). The host
// copies the sections itself, so saving never needs a second copy inside Wasm.
// Loading checks a checksum and then every link and offset, so corrupted bytes
// are refused with ERR_CORRUPT instead of trapping later.
//
// Header (little-endian): magic "VDBI", version, dim, metric, M, efConstruction,
// rng u64, slots, live, pending, freeHead, freeCount, entry, maxLevel,
// arenaUsed, recSize, vecOff, section checksum u64 at 72, quantization u32 at 80
// (version 3 only: an SQ8 index, whose params are a fifth section), header
// checksum u64 at 120. Version 2 (no quantization) is still written for float
// indexes, so their bytes are unchanged and old snapshots load.

import * as S from "./layout";
import { QUANT_SQ8, quant, setupSq8, paramsBase, paramsBytes, adoptParams } from "./sq8";
import {
  OK, ERR_STATE, ERR_CORRUPT, ERR_MEMORY, FLAG_LIVE, FLAG_DELETED, FLAG_FREE, LEVEL_MAX,
  HEADER_BYTES, kernelBase, configure, layout, record, resetEmpty,
} from "./layout";

const MAGIC: u32 = 0x49424456; // "VDBI"
const VERSION: u32 = 2; // 2: records and vectors on 64-byte boundaries
const VERSION_SQ8: u32 = 3; // 3: version 2 plus quantization (u32 at 80) and a params section

// Set between a successful loadBegin and its loadEnd: the index is configured
// but holds unverified bytes, and nothing but loadEnd may use it.
let loading = false;

@inline function mix(h: u64, w: u64): u64 {
  return rotl<u64>(h ^ (w * 0x9e3779b97f4a7c15), 31) * 0xc2b2ae3d27d4eb4f;
}

function hashBytes(h: u64, p: usize, n: usize): u64 {
  const end8 = p + (n & ~<usize>7);
  let i = p;
  for (; i < end8; i += 8) h = mix(h, load<u64>(i));
  for (; i < p + n; i++) h = mix(h, <u64>load<u8>(i));
  return mix(h, <u64>n);
}

export function sectionPtr(i: i32): usize {
  if (i == 0) return S.arenaFree;
  if (i == 1) return S.flagsBase;
  if (i == 2) return S.level0Base;
  if (i == 3) return S.arenaBase;
  if (i == 4 && quant == QUANT_SQ8) return paramsBase;
  return 0;
}

export function sectionLen(i: i32): usize {
  if (i == 0) return <usize>(LEVEL_MAX + 1) << 2;
  if (i == 1) return <usize>S.slots;
  if (i == 2) return <usize>S.slots * S.recSize;
  if (i == 3) return <usize>S.arenaUsed;
  if (i == 4 && quant == QUANT_SQ8) return paramsBytes;
  return 0;
}

export function sectionCount(): i32 { return quant == QUANT_SQ8 ? 5 : 4; }

function sectionsHash(): u64 {
  let h: u64 = 0x243f6a8885a308d3;
  for (let i = 0; i < sectionCount(); i++) h = hashBytes(h, sectionPtr(i), sectionLen(i));
  return h;
}

// Writes the header to the scratch buffer.
export function saveBegin(): i32 {
  if (!S.initialized) return ERR_STATE;
  const h = kernelBase;
  memory.fill(h, 0, HEADER_BYTES);
  store<u32>(h, MAGIC);
  store<u32>(h, quant == QUANT_SQ8 ? VERSION_SQ8 : VERSION, 4);
  store<i32>(h, S.dim, 8);
  store<i32>(h, S.metric, 12);
  store<i32>(h, S.M, 16);
  store<i32>(h, S.efConstruction, 20);
  store<u64>(h, S.rng, 24);
  store<u32>(h, S.slots, 32);
  store<u32>(h, S.live, 36);
  store<u32>(h, S.pending, 40);
  store<i32>(h, S.freeHead, 44);
  store<u32>(h, S.freeCount, 48);
  store<i32>(h, S.entry, 52);
  store<i32>(h, S.maxLevel, 56);
  store<u32>(h, S.arenaUsed, 60);
  store<u32>(h, <u32>S.recSize, 64);
  store<u32>(h, <u32>S.vecOff, 68);
  store<u64>(h, sectionsHash(), 72);
  if (quant == QUANT_SQ8) store<u32>(h, <u32>QUANT_SQ8, 80);
  store<u64>(h, hashBytes(0x13198a2e03707344, h, 120), 120);
  return OK;
}

// Reads the header from the scratch buffer into a fresh instance and makes room
// for the sections. The host then fills each section and calls loadEnd.
export function loadBegin(): i32 {
  if (S.initialized || loading) return ERR_STATE;
  const h = kernelBase;
  const version = load<u32>(h, 4);
  if (load<u32>(h) != MAGIC || (version != VERSION && version != VERSION_SQ8)) return ERR_CORRUPT;
  if (load<u64>(h, 120) != hashBytes(0x13198a2e03707344, h, 120)) return ERR_CORRUPT;
  const r = configure(load<i32>(h, 8), load<i32>(h, 12), load<i32>(h, 16), load<i32>(h, 20), 0);
  if (r == ERR_MEMORY) return r;
  if (r != OK) return ERR_CORRUPT;
  if (version == VERSION_SQ8) {
    if (load<u32>(h, 80) != <u32>QUANT_SQ8) return ERR_CORRUPT;
    const q = setupSq8();
    if (q != OK) return q;
  }
  if (load<u32>(h, 64) != <u32>S.recSize || load<u32>(h, 68) != <u32>S.vecOff) return ERR_CORRUPT;
  S.rng = load<u64>(h, 24);
  const slots = load<u32>(h, 32);
  const arena = load<u32>(h, 60);
  if (<u64>slots * <u64>S.recSize > 0xffffffff) return ERR_CORRUPT;
  const lr = layout(max<u32>(slots, 64), arena);
  if (lr != OK) return lr;
  S.slots = slots;
  S.arenaUsed = arena;
  loading = true;
  return OK;
}

// Checks the checksum and the structure, then adopts the state. On failure the
// index is left empty (configured with the header's parameters).
export function loadEnd(): i32 {
  if (!loading) return ERR_STATE;
  loading = false;
  const h = kernelBase;
  if (load<u64>(h, 72) != sectionsHash() || !structureValid(h) || !paramsValid()) {
    resetEmpty();
    S.initialized = true;
    return ERR_CORRUPT;
  }
  S.initialized = true;
  if (quant == QUANT_SQ8) adoptParams();
  S.live = load<u32>(h, 36);
  S.pending = load<u32>(h, 40);
  S.freeHead = load<i32>(h, 44);
  S.freeCount = load<u32>(h, 48);
  S.entry = load<i32>(h, 52);
  S.maxLevel = load<i32>(h, 56);
  return OK;
}

// SQ8 params: trained is 0 or 1; a trained step is positive and finite, offsets
// finite. An untrained index holds no points.
function paramsValid(): bool {
  if (quant != QUANT_SQ8) return true;
  const t = load<u32>(paramsBase, 8);
  if (t > 1) return false;
  if (t == 0) return S.slots == 0;
  const s = load<f32>(paramsBase);
  if (!(s > 0) || !isFinite(s)) return false;
  for (let j = 0; j < S.dim; j++) if (!isFinite(load<f32>(paramsBase + 16 + (<usize>j << 2)))) return false;
  return isFinite(load<f32>(paramsBase, 4));
}

// A link list is valid when its count fits and every link names a used,
// non-free slot that exists at this level.
function listValid(lp: usize, maxM: u32, slots: u32, level: i32): bool {
  const n = load<u32>(lp);
  if (n > maxM) return false;
  for (let j: u32 = 0; j < n; j++) {
    const v = load<u32>(lp + 4 + (<usize>j << 2));
    if (v >= slots || load<u8>(S.flagsBase + <usize>v) == FLAG_FREE) return false;
    if (level > 0 && load<i32>(record(v)) < level) return false;
  }
  return true;
}

// Marks arena units [unit, unit + count) in a bitmap; false if any was marked.
function claim(marks: usize, unit: u64, count: u64): bool {
  for (let u = unit; u < unit + count; u++) {
    const p = marks + <usize>(u >> 3);
    const bit = <u8>(1 << <u8>(u & 7));
    if ((load<u8>(p) & bit) != 0) return false;
    store<u8>(p, load<u8>(p) | bit);
  }
  return true;
}

function structureValid(h: usize): bool {
  const slots = S.slots;
  const arena = <u64>S.arenaUsed;
  const block = <u64>S.upperBlock;
  const entry = load<i32>(h, 52);
  const maxLevel = load<i32>(h, 56);
  if (maxLevel < 0 || maxLevel > LEVEL_MAX) return false;
  if (arena % block != 0) return false;
  // One bit per arena unit (one level's block), in memory past the arena, so
  // that no two nodes or free blocks may share a block.
  const units = arena / block;
  const marks = S.arenaBase + <usize>S.arenaCap;
  if (!S.ensureBytes(<u64>marks + ((units + 7) >> 3))) return false;
  memory.fill(marks, 0, <usize>((units + 7) >> 3));
  for (let s: u32 = 0; s < slots; s++) {
    const f = load<u8>(S.flagsBase + <usize>s);
    if (f > FLAG_FREE) return false;
    if (f == FLAG_FREE) continue;
    const level = load<i32>(record(s));
    if (level < 0 || level > maxLevel) return false;
    if (level > 0) {
      const off = <u64>load<u32>(record(s), 4);
      if (off % block != 0 || off + <u64>level * block > arena) return false;
      if (!claim(marks, off / block, <u64>level)) return false;
    }
  }
  let live: u32 = 0, deleted: u32 = 0, free: u32 = 0;
  for (let s: u32 = 0; s < slots; s++) {
    const f = load<u8>(S.flagsBase + <usize>s);
    if (f == FLAG_FREE) { free++; continue; }
    if (f == FLAG_LIVE) live++;
    else deleted++;
    const r = record(s);
    if (!listValid(r + 12, <u32>S.M0, slots, 0)) return false;
    const level = load<i32>(r);
    for (let l = 1; l <= level; l++) {
      if (!listValid(S.linksOf(s, l), <u32>S.M, slots, l)) return false;
    }
  }
  if (live != load<u32>(h, 36) || deleted != load<u32>(h, 40) || free != load<u32>(h, 48)) return false;
  if (live + deleted == 0) {
    if (entry != -1) return false;
  } else {
    if (entry < 0 || <u32>entry >= slots) return false;
    if (load<u8>(S.flagsBase + <usize>entry) == FLAG_FREE) return false;
    if (load<i32>(record(<u32>entry)) != maxLevel) return false;
  }
  // The free list must visit exactly the free slots, once each.
  let cur = load<i32>(h, 44);
  for (let i: u32 = 0; i < free; i++) {
    if (cur < 0 || <u32>cur >= slots || load<u8>(S.flagsBase + <usize>cur) != FLAG_FREE) return false;
    cur = load<i32>(record(<u32>cur), 8);
  }
  if (cur != -1) return false;
  // Arena free lists: whole blocks inside the arena, owned by nobody else
  // (which also rules out cycles).
  for (let l = 0; l <= LEVEL_MAX; l++) {
    let off = load<i32>(S.arenaFree + (<usize>l << 2));
    while (off != -1) {
      if (l == 0 || off < 0 || <u64>off % block != 0 || <u64>off + <u64>l * block > arena) return false;
      if (!claim(marks, <u64>off / block, <u64>l)) return false;
      off = load<i32>(S.arenaBase + <usize>off);
    }
  }
  return true;
}
