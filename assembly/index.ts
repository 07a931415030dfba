// The exported ABI: numbers in, numbers out, results in fixed buffers. Every
// export returns a status (≥ 0 on success, a negative ERR_* code otherwise)
// unless documented otherwise in docs/wasm-abi.md. Nothing else lives here.

import {
  l2sqSimd, l2sqScalar, dotSimd, dotScalar, normalize, allFinite,
} from "./distance";
import {
  OK, ERR_STATE, ERR_ARGUMENT, ERR_MEMORY, ERR_SLOT, ERR_NOT_FINITE, ERR_ZERO_VECTOR,
  METRIC_L2, METRIC_IP, METRIC_COSINE, FLAG_LIVE, FLAG_DELETED, FLAG_FREE, K_MAX, LEVEL_MAX,
  initialized, dim, dimPad, metric, M0, configure, reserve, randomLevel, allocUpper,
  freeUpper, record, vectorOf, levelOf, flagOf, setFlag, upperBlock, linksOf,
  kernelBase, inputBase, queryBase, resIds, resDist, resultBase, allowBase,
  capacity, slots, live, pending, freeHead, freeCount, entry, maxLevel,
} from "./layout";
import * as S from "./layout";
import { insert, knn, consolidateLinks } from "./hnsw";
import { scan, drainKeys, keyDist, countAllowed } from "./flat";
import { entryDist, entrySlot, drainAscending } from "./heap";
import { rowDistances } from "./rerank";
import { saveBegin, sectionPtr, sectionLen, sectionCount, loadBegin, loadEnd } from "./serialize";
import { QUANT_SQ8, quant, setupSq8, trainPtr, train, trained, encode, queryCodes, paramsBase } from "./sq8";

// The kernel is chosen once, when the index is configured: each operation has an
// instantiation per kernel (i32 l2, f32 ip, f64 cosine), and these references pick one.
function insertL2(s: u32): void { insert<i32>(s); }
function insertIp(s: u32): void { insert<f32>(s); }
function insertCos(s: u32): void { insert<f64>(s); }
function knnL2(q: usize, ef: u32, filtered: bool): u32 { return knn<i32>(q, ef, filtered); }
function knnIp(q: usize, ef: u32, filtered: bool): u32 { return knn<f32>(q, ef, filtered); }
function knnCos(q: usize, ef: u32, filtered: bool): u32 { return knn<f64>(q, ef, filtered); }
function scanL2(q: usize, k: u32, filtered: bool): u32 { return scan<i32>(q, k, filtered); }
function scanIp(q: usize, k: u32, filtered: bool): u32 { return scan<f32>(q, k, filtered); }
function scanCos(q: usize, k: u32, filtered: bool): u32 { return scan<f64>(q, k, filtered); }
function consolidateL2(): void { consolidateLinks<i32>(); }
function consolidateIp(): void { consolidateLinks<f32>(); }
function consolidateCos(): void { consolidateLinks<f64>(); }
// SQ8 (assembly/sq8.ts): u8 l2, i8 ip, u16 cosine, on codes.
function insertQL2(s: u32): void { insert<u8>(s); }
function insertQIp(s: u32): void { insert<i8>(s); }
function insertQCos(s: u32): void { insert<u16>(s); }
function knnQL2(q: usize, ef: u32, filtered: bool): u32 { return knn<u8>(q, ef, filtered); }
function knnQIp(q: usize, ef: u32, filtered: bool): u32 { return knn<i8>(q, ef, filtered); }
function knnQCos(q: usize, ef: u32, filtered: bool): u32 { return knn<u16>(q, ef, filtered); }
function scanQL2(q: usize, k: u32, filtered: bool): u32 { return scan<u8>(q, k, filtered); }
function scanQIp(q: usize, k: u32, filtered: bool): u32 { return scan<i8>(q, k, filtered); }
function scanQCos(q: usize, k: u32, filtered: bool): u32 { return scan<u16>(q, k, filtered); }
function consolidateQL2(): void { consolidateLinks<u8>(); }
function consolidateQIp(): void { consolidateLinks<i8>(); }
function consolidateQCos(): void { consolidateLinks<u16>(); }

let insertFn: (s: u32) => void = insertL2;
let knnFn: (q: usize, ef: u32, filtered: bool) => u32 = knnL2;
let scanFn: (q: usize, k: u32, filtered: bool) => u32 = scanL2;
let consolidateFn: () => void = consolidateL2;

function chooseKernel(): void {
  if (quant == QUANT_SQ8) {
    insertFn = metric == METRIC_IP ? insertQIp : metric == METRIC_COSINE ? insertQCos : insertQL2;
    knnFn = metric == METRIC_IP ? knnQIp : metric == METRIC_COSINE ? knnQCos : knnQL2;
    scanFn = metric == METRIC_IP ? scanQIp : metric == METRIC_COSINE ? scanQCos : scanQL2;
    consolidateFn = metric == METRIC_IP ? consolidateQIp : metric == METRIC_COSINE ? consolidateQCos : consolidateQL2;
  } else if (metric == METRIC_IP) {
    insertFn = insertIp;
    knnFn = knnIp;
    scanFn = scanIp;
    consolidateFn = consolidateIp;
  } else if (metric == METRIC_COSINE) {
    insertFn = insertCos;
    knnFn = knnCos;
    scanFn = scanCos;
    consolidateFn = consolidateCos;
  }
}

export function scratch_ptr(): usize { return kernelBase; }

export function index_init(d: i32, met: i32, m: i32, efc: i32, seedLo: u32, seedHi: u32,
                           initialCapacity: u32): i32 {
  return init(d, met, m, efc, seedLo, seedHi, initialCapacity, false);
}

// The same with SQ8 codes in place of the f32 vectors; train it before adding.
export function index_init_sq8(d: i32, met: i32, m: i32, efc: i32, seedLo: u32, seedHi: u32,
                               initialCapacity: u32): i32 {
  return init(d, met, m, efc, seedLo, seedHi, initialCapacity, true);
}

function init(d: i32, met: i32, m: i32, efc: i32, seedLo: u32, seedHi: u32,
              initialCapacity: u32, sq8: bool): i32 {
  if (initialized) return ERR_STATE;
  let r = configure(d, met, m, efc, (<u64>seedHi << 32) | seedLo);
  if (r == OK && sq8) r = setupSq8();
  if (r == OK) r = reserve(max<u32>(initialCapacity, 64));
  if (r != OK) return r;
  S.initialized = true;
  chooseKernel();
  return OK;
}

export function index_reserve(cap: u32): i32 {
  if (!initialized) return ERR_STATE;
  return reserve(cap);
}

export function index_input_ptr(): usize { return inputBase; }
export function index_result_ids_ptr(): usize { return resIds; }
export function index_result_dist_ptr(): usize { return resDist; }
export function index_filter_ptr(): usize { return allowBase; }
export function index_size(): u32 { return live; }
export function index_slots(): u32 { return slots; }
export function index_capacity(): u32 { return capacity; }
export function index_pending(): u32 { return pending; }
export function index_dim(): i32 { return dim; }
export function index_metric(): i32 { return initialized ? metric : ERR_STATE; }
export function index_max_level(): i32 { return maxLevel; }
export function index_quantization(): i32 { return quant; }
export function index_sq8_params_ptr(): usize { return quant == QUANT_SQ8 ? paramsBase : 0; }
export function index_train_ptr(n: u32): usize { return initialized ? trainPtr(n) : 0; }
export function index_train(n: u32): i32 { return initialized ? train(n) : ERR_STATE; }
export function index_upper_bytes(): u32 { return initialized ? S.upperBytes() : 0; }
export function index_layout_bytes(): f64 { return initialized ? <f64>S.layoutEnd() : 0; }
export function index_layout_bytes_for(cap: u32): f64 { return initialized ? <f64>S.bytesFor(cap) : 0; }

// Copies the input vector into the query scratch (zero-padded), normalised for
// cosine. Returns OK or why the vector cannot be used.
function prepareQuery(): i32 {
  if (!allFinite(inputBase, dim)) return ERR_NOT_FINITE;
  memory.copy(queryBase, inputBase, <usize>dim << 2);
  if (metric == METRIC_COSINE && !normalize(queryBase, dim)) return ERR_ZERO_VECTOR;
  return OK;
}

// The query as the kernels take it: the f32 scratch, or its SQ8 codes.
function queryPtr(): usize {
  if (quant != QUANT_SQ8) return queryBase;
  encode(queryBase, queryCodes);
  return queryCodes;
}

// Makes sure a slot can be taken: a consolidated free one or a new one. Only
// when memory is exhausted does it consolidate early to make room, so that
// otherwise the slots handed out do not depend on the reserved capacity.
function ensureSlot(): i32 {
  if (freeHead >= 0 || slots < capacity) return OK;
  const r = slots == 0xffffffff ? ERR_MEMORY : reserve(slots + 1);
  if (r != OK && pending > 0) {
    index_consolidate();
    if (freeHead >= 0) return OK;
  }
  return r;
}

// Adds the vector in the input buffer; returns its slot.
export function index_add(): i32 {
  if (!initialized) return ERR_STATE;
  if (quant == QUANT_SQ8 && !trained()) return ERR_STATE;
  const q = prepareQuery();
  if (q != OK) return q;
  if (live == 0 && pending > 0) index_consolidate();
  const room = ensureSlot();
  if (room != OK) return room;
  const level = randomLevel();
  let upper: i64 = 0;
  if (level > 0) {
    upper = allocUpper(level);
    if (upper < 0) return ERR_MEMORY;
  }
  let slot: u32;
  if (freeHead >= 0) {
    slot = <u32>freeHead;
    S.freeHead = load<i32>(record(slot), 8);
    S.freeCount--;
  } else {
    slot = slots;
    S.slots++;
  }
  const r = record(slot);
  store<i32>(r, level);
  store<u32>(r, <u32>upper, 4);
  store<u32>(r, 0, 12);
  for (let l = 1; l <= level; l++) store<u32>(linksOf(slot, l), 0);
  if (quant == QUANT_SQ8) encode(queryBase, vectorOf(slot));
  else memory.copy(vectorOf(slot), queryBase, <usize>dimPad << 2);
  setFlag(slot, FLAG_LIVE);
  S.live++;
  if (entry < 0) {
    S.entry = <i32>slot;
    S.maxLevel = level;
    return <i32>slot;
  }
  insertFn(slot);
  if (level > maxLevel) {
    S.entry = <i32>slot;
    S.maxLevel = level;
  }
  return <i32>slot;
}

// Marks a live slot deleted. It keeps routing searches until consolidation
// unlinks it, which runs once a tenth of the slots are tombstones.
export function index_remove(slot: u32): i32 {
  if (!initialized) return ERR_STATE;
  if (slot >= slots || flagOf(slot) != FLAG_LIVE) return ERR_SLOT;
  setFlag(slot, FLAG_DELETED);
  S.live--;
  S.pending++;
  if (live == 0 || <u64>pending * 10 >= <u64>slots) index_consolidate();
  return OK;
}

// 0 live, 1 deleted (not yet reusable), 2 free; ERR_SLOT past the used slots.
export function index_slot_state(slot: u32): i32 {
  if (!initialized) return ERR_STATE;
  if (slot >= slots) return ERR_SLOT;
  return <i32>flagOf(slot);
}

// Pointer to the stored vector of a live slot (normalised for cosine; its codes
// in an SQ8 index), or 0.
export function index_vector_ptr(slot: u32): usize {
  if (!initialized || slot >= slots || flagOf(slot) != FLAG_LIVE) return 0;
  return vectorOf(slot);
}

// Unlinks every tombstone and makes its slot reusable.
export function index_consolidate(): i32 {
  if (!initialized) return ERR_STATE;
  if (pending == 0) return OK;
  if (live > 0) consolidateFn();
  for (let s = <i32>slots - 1; s >= 0; s--) {
    const slot = <u32>s;
    if (flagOf(slot) != FLAG_DELETED) continue;
    const level = levelOf(slot);
    if (level > 0) freeUpper(level, load<u32>(record(slot), 4));
    setFlag(slot, FLAG_FREE);
    store<i32>(record(slot), freeHead, 8);
    S.freeHead = s;
    S.freeCount++;
  }
  S.pending = 0;
  if (entry >= 0 && flagOf(<u32>entry) != FLAG_LIVE) {
    let best = -1;
    let bestLevel = -1;
    for (let s: u32 = 0; s < slots; s++) {
      if (flagOf(s) == FLAG_LIVE && levelOf(s) > bestLevel) { best = <i32>s; bestLevel = levelOf(s); }
    }
    S.entry = best;
    S.maxLevel = best < 0 ? 0 : bestLevel;
  }
  return OK;
}

function emitPairs(found: u32, k: u32): i32 {
  drainAscending(resultBase, found);
  const n = min(found, k);
  for (let i: u32 = 0; i < n; i++) {
    store<u32>(resIds + (<usize>i << 2), entrySlot(resultBase, i));
    store<f32>(resDist + (<usize>i << 2), entryDist(resultBase, i));
  }
  return <i32>n;
}

function emitKeys(found: u32): i32 {
  drainKeys(found);
  for (let i: u32 = 0; i < found; i++) {
    const key = load<u64>(resultBase + (<usize>i << 3));
    store<u32>(resIds + (<usize>i << 2), <u32>key);
    store<f32>(resDist + (<usize>i << 2), keyDist(key));
  }
  return <i32>found;
}

const FILTER_NONE: i32 = 0;
const FILTER_AUTO: i32 = 1; // graph search, or a scan when few are allowed
const FILTER_GRAPH: i32 = 2; // always the graph

// k nearest to the input vector; results in the result buffers, nearest first.
// Returns how many (fewer than k when fewer live points match).
export function index_search(k: i32, ef: i32, filterMode: i32): i32 {
  if (!initialized) return ERR_STATE;
  if (k < 1 || k > K_MAX || ef < k || ef > 1 << 20) return ERR_ARGUMENT;
  if (filterMode < FILTER_NONE || filterMode > FILTER_GRAPH) return ERR_ARGUMENT;
  const q = prepareQuery();
  if (q != OK) return q;
  if (live == 0) return 0;
  const qp = queryPtr();
  const filtered = filterMode != FILTER_NONE;
  if (filterMode == FILTER_AUTO) {
    // A scan costs one distance per allowed point; the graph visits about
    // ef·M0 / selectivity. Scan when that is cheaper.
    const allowedCount = <u64>countAllowed();
    if (allowedCount * allowedCount <= <u64>ef * <u64>M0 * <u64>slots) {
      return emitKeys(scanFn(qp, <u32>k, true));
    }
  }
  return emitPairs(knnFn(qp, <u32>ef, filtered), <u32>k);
}

// Exact k nearest by a full scan; ties broken by slot.
export function index_search_exact(k: i32, filtered: i32): i32 {
  if (!initialized) return ERR_STATE;
  if (k < 1 || k > K_MAX || filtered < 0 || filtered > 1) return ERR_ARGUMENT;
  const q = prepareQuery();
  if (q != OK) return q;
  if (quant == QUANT_SQ8 && !trained()) return 0;
  return emitKeys(scanFn(queryPtr(), <u32>k, filtered == 1));
}

export function index_save_begin(): i32 { return saveBegin(); }
export function index_section_count(): i32 { return sectionCount(); }
export function index_section_ptr(i: i32): usize { return sectionPtr(i); }
export function index_section_len(i: i32): usize { return sectionLen(i); }

export function index_load_begin(): i32 {
  const r = loadBegin();
  if (r == OK) chooseKernel();
  return r;
}

export function index_load_end(): i32 { return loadEnd(); }

// Kernels, exported for tests and benchmarks; a and b point at n f32.
export function kernel_l2sq(a: usize, b: usize, n: i32): f32 { return l2sqSimd(a, b, n); }
export function kernel_l2sq_scalar(a: usize, b: usize, n: i32): f32 { return l2sqScalar(a, b, n); }
export function kernel_dot(a: usize, b: usize, n: i32): f32 { return dotSimd(a, b, n); }
export function kernel_dot_scalar(a: usize, b: usize, n: i32): f32 { return dotScalar(a, b, n); }

// out[i] = distance(metric) from q to the row at base + ids[i]·strideBytes, over
// n f32, for i < count; every argument a number, no index needed (docs/wasm-abi.md).
export function kernel_row_distances(metric: i32, q: usize, base: usize, strideBytes: u32, n: i32,
                                     ids: usize, count: i32, out: usize): i32 {
  if (metric < METRIC_L2 || metric > METRIC_COSINE || n < 0 || count < 0) return ERR_ARGUMENT;
  rowDistances(metric, q, base, <usize>strideBytes, n, ids, count, out);
  return OK;
}

// Runs a kernel `iters` times (0 l2 SIMD, 1 l2 scalar, 2 dot SIMD, 3 dot scalar)
// inside Wasm, so a benchmark times the kernel and not the call into it.
export function kernel_bench(kind: i32, a: usize, b: usize, n: i32, iters: i32): f32 {
  let acc: f32 = 0;
  for (let i = 0; i < iters; i++) {
    if (kind == 0) acc += l2sqSimd(a, b, n);
    else if (kind == 1) acc += l2sqScalar(a, b, n);
    else if (kind == 2) acc += dotSimd(a, b, n);
    else acc += dotScalar(a, b, n);
    store<f32>(a, load<f32>(a) + 0); // keeps the call inside the loop
  }
  return acc;
}
