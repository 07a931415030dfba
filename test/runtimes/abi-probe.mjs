// Drives build/vdb.wasm through its raw ABI (docs/wasm-abi.md) the way any
// runtime would: WebAssembly.instantiate with only env.abort, numbers in and
// out, vectors and results through linear memory. It imports nothing, so Node,
// Deno, Bun and a browser page run this same file, and returns a JSON-able
// summary that must be identical in all of them.
//
// The data come from an integer generator and only + − × ÷ on doubles: Math.log,
// Math.sin and friends are not correctly rounded and differ between engines.

const L2 = 0, IP = 1, COSINE = 2;
const DIM = 13; // not a multiple of 4: the kernels' tails run too
const POINTS = 700;
const QUERIES = 6;
const K = 10;
const EF = 48;

/** mulberry32, uniform in [0, 1): integer arithmetic only. */
function generator(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Clustered points: 8 centres, each point a centre plus uniform noise. */
function dataset(seed, n) {
  const random = generator(seed);
  const centres = Array.from({ length: 8 }, () => Array.from({ length: DIM }, () => random() * 20 - 10));
  return Array.from({ length: n }, () => {
    const c = centres[Math.floor(random() * centres.length)];
    return Float32Array.from(c, (x) => x + (random() - 0.5) * 4);
  });
}

/** FNV-1a over bytes: a short, exact fingerprint of a buffer. */
function fnv(bytes) {
  let h = 0x811c9dc5;
  for (let i = 0; i < bytes.length; i++) h = Math.imul(h ^ bytes[i], 0x01000193);
  return (h >>> 0).toString(16).padStart(8, '0');
}

function abort(msg, file, line, col) {
  throw new Error(`vdb.wasm aborted (${msg}, ${file}) at ${line}:${col}`);
}

/** One instance of the module and the host side of the ABI. */
class Raw {
  constructor(w) { this.w = w; }
  // Views die when memory grows, so they are made afresh at every use.
  f32() { return new Float32Array(this.w.memory.buffer); }
  u32() { return new Uint32Array(this.w.memory.buffer); }
  u8() { return new Uint8Array(this.w.memory.buffer); }
  pages() { return this.w.memory.buffer.byteLength / 65536; }
  input(v) { this.f32().set(v, this.w.index_input_ptr() >>> 2); }
  add(v) { this.input(v); return this.w.index_add(); }
  /** The n results of the last search: slots, distances, and the raw bytes' fingerprint. */
  results(n) {
    if (n < 0) return { status: n };
    const ids = this.w.index_result_ids_ptr() >>> 0, dist = this.w.index_result_dist_ptr() >>> 0;
    return {
      ids: Array.from(this.u32().subarray(ids >>> 2, (ids >>> 2) + n)),
      dist: Array.from(this.f32().subarray(dist >>> 2, (dist >>> 2) + n)),
      bits: fnv(this.u8().subarray(ids, ids + 4 * n)) + fnv(this.u8().subarray(dist, dist + 4 * n)),
    };
  }
  search(q, k, ef, mode) { this.input(q); return this.results(this.w.index_search(k, ef, mode)); }
  exact(q, k, filtered) { this.input(q); return this.results(this.w.index_search_exact(k, filtered)); }
  /** Writes the allow bitmap (all words, fresh pointer, fresh view) right before a filtered search. */
  allow(pred) {
    const words = Math.ceil(this.w.index_slots() / 32);
    const bits = new Uint32Array(this.w.memory.buffer, this.w.index_filter_ptr() >>> 0, words);
    bits.fill(0);
    for (let s = 0; s < this.w.index_slots(); s++) if (pred(s)) bits[s >>> 5] |= 1 << (s & 31);
  }
  counters() {
    const w = this.w;
    return {
      size: w.index_size(), slots: w.index_slots(), capacity: w.index_capacity(), pending: w.index_pending(),
      dim: w.index_dim(), metric: w.index_metric(), maxLevel: w.index_max_level(),
      upperBytes: w.index_upper_bytes(), layoutBytes: w.index_layout_bytes(), pages: this.pages(),
    };
  }
  save() {
    const w = this.w;
    const begin = w.index_save_begin();
    if (begin !== 0) return { status: begin };
    const lens = Array.from({ length: w.index_section_count() }, (_, i) => w.index_section_len(i) >>> 0);
    const out = new Uint8Array(128 + lens.reduce((a, b) => a + b, 0));
    const mem = this.u8(), h = w.scratch_ptr() >>> 0;
    out.set(mem.subarray(h, h + 128), 0);
    let off = 128;
    lens.forEach((len, i) => {
      const p = w.index_section_ptr(i) >>> 0;
      out.set(mem.subarray(p, p + len), off);
      off += len;
    });
    return { bytes: out, lens };
  }
  /** Loads a snapshot into this fresh instance; the statuses of both steps. */
  load(bytes) {
    const w = this.w;
    this.u8().set(bytes.subarray(0, 128), w.scratch_ptr() >>> 0);
    const begin = w.index_load_begin();
    if (begin !== 0) return { begin };
    let off = 128;
    for (let i = 0; i < w.index_section_count(); i++) {
      const len = w.index_section_len(i) >>> 0;
      this.u8().set(bytes.subarray(off, off + len), w.index_section_ptr(i) >>> 0);
      off += len;
    }
    return { begin, end: w.index_load_end(), consumed: off === bytes.length };
  }
}

/** Every step on one index of one metric. */
async function metricRun(fresh, metric) {
  const r = await fresh();
  const w = r.w;
  const out = { metric };
  out.init = w.index_init(DIM, metric, 8, 64, 0x9e3779b9, 7, 0);
  out.afterInit = r.counters();
  const data = dataset(1000 + metric, POINTS + QUERIES);
  const points = data.slice(0, POINTS), queries = data.slice(POINTS);
  out.slots = points.map((v) => r.add(v));
  out.afterAdd = r.counters();
  out.storedVector = fnv(r.u8().subarray(w.index_vector_ptr(5) >>> 0, (w.index_vector_ptr(5) >>> 0) + 4 * DIM));
  out.ann = queries.map((q) => r.search(q, K, EF, 0));
  out.exact = queries.map((q) => r.exact(q, K, 0));
  const third = (s) => s % 3 === 0;
  out.filtered = queries.map((q) => {
    const res = {};
    r.allow(third); res.auto = r.search(q, K, EF, 1);
    r.allow(third); res.graph = r.search(q, K, EF, 2);
    r.allow(third); res.exact = r.exact(q, K, 1);
    r.allow((s) => s === 17 || s === 400); res.few = r.search(q, K, EF, 1);
    return res;
  });
  // Past a tenth of the slots as tombstones, removal consolidates: states change from 1 to 2.
  out.removes = [];
  for (let s = 0; s < 80; s++) out.removes.push(w.index_remove(s * 7));
  out.afterRemove = r.counters();
  out.states = Array.from({ length: 20 }, (_, i) => w.index_slot_state(i * 7));
  out.annAfterRemove = queries.map((q) => r.search(q, K, EF, 0));
  out.exactAfterRemove = queries.map((q) => r.exact(q, K, 0));
  out.reused = dataset(2000 + metric, 40).map((v) => r.add(v));
  out.consolidate = w.index_consolidate();
  out.afterReuse = r.counters();
  const snap = r.save();
  out.snapshot = { lens: snap.lens, length: snap.bytes.length, fnv: fnv(snap.bytes) };
  const copy = await fresh();
  out.load = copy.load(snap.bytes);
  out.loaded = copy.counters();
  out.loadedAnn = queries.map((q) => copy.search(q, K, EF, 0));
  out.sameAsSaved = JSON.stringify(out.loadedAnn) === JSON.stringify(queries.map((q) => r.search(q, K, EF, 0)));
  // The loaded copy hands out the same slots and builds the same graph as the original.
  const more = dataset(3000 + metric, 20);
  out.nextSlots = [more.map((v) => r.add(v)), more.map((v) => copy.add(v))];
  out.sameAfterAdd = fnv(r.save().bytes) === fnv(copy.save().bytes);
  // A damaged section is refused at load_end, which leaves an empty, working index;
  // a damaged header is refused at load_begin, which leaves the instance uninitialised.
  const bad = snap.bytes.slice();
  bad[bad.length - 100] ^= 1;
  const emptied = await fresh();
  out.corruptSection = emptied.load(bad);
  out.afterCorruptSection = {
    counters: emptied.counters(), add: emptied.add(points[0]), loadAgain: emptied.w.index_load_begin(),
  };
  const badHeader = snap.bytes.slice();
  badHeader[8] ^= 1;
  const refused = await fresh();
  out.corruptHeader = refused.load(badHeader);
  out.afterCorruptHeader = { counters: refused.counters(), loadAgain: refused.load(snap.bytes) };
  out.errors = {
    initAgain: w.index_init(DIM, metric, 8, 64, 0, 0, 0),
    k0: r.search(queries[0], 0, EF, 0).status,
    kOver: r.search(queries[0], 10001, 20000, 0).status,
    efBelowK: r.search(queries[0], 10, 9, 0).status,
    efOver: r.search(queries[0], 10, (1 << 20) + 1, 0).status,
    filterMode: r.search(queries[0], 10, EF, 3).status,
    exactFiltered: r.exact(queries[0], 10, 2).status,
    nanAdd: r.add(new Float32Array(DIM).fill(NaN)),
    infQuery: r.search(new Float32Array(DIM).fill(-Infinity), 5, EF, 0).status,
    zeroAdd: r.add(new Float32Array(DIM)),
    zeroQueryExact: r.exact(new Float32Array(DIM), 5, 0).status ?? 'results',
    removeOutOfRange: w.index_remove(0xffffffff),
    removeTwice: [w.index_remove(1), w.index_remove(1)],
    statePastSlots: w.index_slot_state(w.index_slots()),
    vectorOfRemoved: w.index_vector_ptr(1),
    reserveTooMuch: w.index_reserve(0xffffffff),
    loadIntoInitialised: w.index_load_begin(),
    loadEndWithoutBegin: w.index_load_end(),
    pagesAfterErrors: r.pages(),
  };
  return out;
}

/** Calls before init, argument checks of index_init, and what a failed init leaves. */
async function beforeInit(fresh) {
  const r = await fresh();
  const w = r.w;
  const out = { pages: r.pages(), scratch: w.scratch_ptr(), counters: r.counters() };
  out.buffers = [w.index_input_ptr(), w.index_result_ids_ptr(), w.index_result_dist_ptr(), w.index_filter_ptr()];
  out.calls = {
    add: w.index_add(), search: w.index_search(5, 10, 0), exact: w.index_search_exact(5, 0), remove: w.index_remove(0),
    state: w.index_slot_state(0), vector: w.index_vector_ptr(0), consolidate: w.index_consolidate(),
    reserve: w.index_reserve(100), save: w.index_save_begin(), loadEnd: w.index_load_end(),
    sections: [w.index_section_count(), w.index_section_len(0), w.index_section_len(4), w.index_section_ptr(4)],
    layoutFor: w.index_layout_bytes_for(100), loadBegin: w.index_load_begin(),
  };
  out.badInit = {
    dim0: w.index_init(0, L2, 16, 200, 1, 0, 0), dimOver: w.index_init(65537, L2, 16, 200, 1, 0, 0),
    metric: w.index_init(4, 3, 16, 200, 1, 0, 0), m1: w.index_init(4, L2, 1, 200, 1, 0, 0),
    mOver: w.index_init(4, L2, 257, 200, 1, 0, 0), efc0: w.index_init(4, L2, 16, 0, 1, 0, 0),
    efcOver: w.index_init(4, L2, 16, (1 << 20) + 1, 1, 0, 0),
  };
  out.afterBadInit = r.counters();
  out.hugeCapacity = w.index_init(8, COSINE, 16, 200, 1, 0, 0xffffffff);
  out.afterHugeCapacity = {
    counters: r.counters(), input: w.index_input_ptr(), filter: w.index_filter_ptr(), add: w.index_add(),
  };
  out.initAfterFailure = w.index_init(4, IP, 4, 10, 1, 0, 100);
  out.afterRetry = r.counters();
  out.initMax = (await fresh()).w.index_init(65536, COSINE, 256, 1 << 20, 0xffffffff, 0xffffffff, 0);
  return out;
}

/** The exported kernels on unaligned, odd-length inputs in the scratch. */
async function kernels(fresh) {
  const r = await fresh();
  const w = r.w;
  const random = generator(99);
  const base = w.scratch_ptr() >>> 0;
  const a = base + 4, b = base + 4 * 64 + 4; // 4-byte but not 16-byte aligned
  const f = r.f32();
  for (let i = 0; i < 64; i++) { f[(a >>> 2) + i] = random() * 4 - 2; f[(b >>> 2) + i] = random() * 4 - 2; }
  const lengths = [0, 1, 3, 4, 13, 33, 64];
  return lengths.map((n) => [
    w.kernel_l2sq(a, b, n), w.kernel_l2sq_scalar(a, b, n), w.kernel_dot(a, b, n), w.kernel_dot_scalar(a, b, n),
    w.kernel_bench(0, a, b, n, 3), w.kernel_bench(3, a, b, n, 3),
  ]);
}

/** Runs everything on the module's bytes; returns the summary. */
export async function probe(wasmBytes) {
  const { module } = await WebAssembly.instantiate(wasmBytes, { env: { abort } });
  const fresh = async () => new Raw((await WebAssembly.instantiate(module, { env: { abort } })).exports);
  return {
    exports: WebAssembly.Module.exports(module).map((e) => `${e.name}:${e.kind}`),
    imports: WebAssembly.Module.imports(module).map((e) => `${e.module}.${e.name}:${e.kind}`),
    beforeInit: await beforeInit(fresh),
    kernels: await kernels(fresh),
    metrics: [await metricRun(fresh, L2), await metricRun(fresh, IP), await metricRun(fresh, COSINE)],
  };
}
