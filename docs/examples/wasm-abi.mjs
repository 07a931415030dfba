// docs/examples/wasm-abi.mjs — node docs/examples/wasm-abi.mjs   (from the package root, after `npm run build`)
import { readFile } from 'node:fs/promises';

const ERRORS = {
  [-1]: 'not initialised / already initialised', [-2]: 'invalid argument', [-3]: 'out of memory',
  [-4]: 'unknown slot', [-5]: 'corrupt snapshot', [-6]: 'non-finite vector', [-7]: 'zero vector with cosine',
};
function ok(status, what) {
  if (status < 0) throw new Error(`${what} failed: ${ERRORS[status] ?? 'error'} (${status})`);
  return status;
}
const abort = (msg, file, line, col) => { throw new Error(`vdb.wasm aborted at ${line}:${col}`); };

const module = await WebAssembly.compile(await readFile(process.env.VDB_WASM ?? 'build/vdb.wasm'));
const instantiate = async () => (await WebAssembly.instantiate(module, { env: { abort } })).exports;
const w = await instantiate(); // one instance = one index

// An index of 8-dimensional vectors: metric l2 (0), M 16, efConstruction 200, seed 42, room for 1000.
const DIM = 8, L2 = 0;
ok(w.index_init(DIM, L2, 16, 200, 42, 0, 1000), 'index_init');

// The input and result buffers stay put once initialised. Typed-array views do not survive
// memory growth, so they are made fresh from memory.buffer at each use.
const inputPtr = w.index_input_ptr(), idsPtr = w.index_result_ids_ptr(), distPtr = w.index_result_dist_ptr();
const f32 = () => new Float32Array(w.memory.buffer);
const u32 = () => new Uint32Array(w.memory.buffer);

function add(vector) {
  f32().set(vector, inputPtr >>> 2);
  return ok(w.index_add(), 'index_add'); // the slot of the new point; may grow memory
}

function results(n) {
  const ids = u32(), dist = f32();
  return Array.from({ length: n }, (_, i) => ({
    slot: ids[(idsPtr >>> 2) + i],
    distance: +dist[(distPtr >>> 2) + i].toFixed(5),
  }));
}

function search(query, k, ef, filterMode = 0) {
  f32().set(query, inputPtr >>> 2);
  return results(ok(w.index_search(k, ef, filterMode), 'index_search'));
}

function searchExact(query, k, filtered = 0) {
  f32().set(query, inputPtr >>> 2);
  return results(ok(w.index_search_exact(k, filtered), 'index_search_exact'));
}

// Add 2000 seeded random vectors (past the reserved 1000: the index grows by itself).
let seed = 7;
const random = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32) * 2 - 1;
const points = [];
for (let i = 0; i < 2000; i++) {
  const v = Float32Array.from({ length: DIM }, random);
  points.push(v);
  const slot = add(v);
  if (slot !== i) throw new Error('slots are handed out densely from 0');
}
console.log(`live ${w.index_size()}, capacity ${w.index_capacity()}, top level ${w.index_max_level()}, ` +
  `memory ${w.memory.buffer.byteLength / 65536} pages`);

// Nearest neighbours of a point close to slot 123. Distances are squared L2.
const query = points[123].map((x) => x + 0.01);
console.log('graph search, k 5, ef 64:', search(query, 5, 64));
console.log('exact search, k 5:       ', searchExact(query, 5));

// Only even slots: write the bitmap (fresh pointer, fresh view) right before the search.
const words = Math.ceil(w.index_slots() / 32);
new Uint32Array(w.memory.buffer, w.index_filter_ptr() >>> 0, words).fill(0x55555555);
console.log('even slots only (auto):  ', search(query, 3, 64, 1));

// Remove slot 123: it becomes a tombstone (state 1) and leaves the results.
ok(w.index_remove(123), 'index_remove');
console.log(`slot 123 state ${w.index_slot_state(123)}; search now:`, search(query, 3, 64));

// Bad calls return negative codes instead of trapping.
f32().set(new Float32Array(DIM).fill(NaN), inputPtr >>> 2);
console.log('NaN query ->', w.index_search(5, 64, 0), '; k = 0 ->', w.index_search(0, 64, 0),
  '; remove(99999) ->', w.index_remove(99999), '; init again ->', w.index_init(DIM, L2, 16, 200, 0, 0, 0));

// Snapshot: header at scratch_ptr(), then the sections in order.
ok(w.index_save_begin(), 'index_save_begin');
const lens = Array.from({ length: w.index_section_count() }, (_, i) => w.index_section_len(i) >>> 0);
const snapshot = new Uint8Array(128 + lens.reduce((a, b) => a + b, 0));
{
  const mem = new Uint8Array(w.memory.buffer);
  const header = w.scratch_ptr() >>> 0;
  snapshot.set(mem.subarray(header, header + 128), 0);
  let off = 128;
  lens.forEach((len, i) => {
    const p = w.index_section_ptr(i) >>> 0;
    snapshot.set(mem.subarray(p, p + len), off);
    off += len;
  });
}

// Load it into a fresh instance.
const w2 = await instantiate();
new Uint8Array(w2.memory.buffer).set(snapshot.subarray(0, 128), w2.scratch_ptr() >>> 0);
ok(w2.index_load_begin(), 'index_load_begin');
{
  const mem = new Uint8Array(w2.memory.buffer); // after load_begin grew memory
  let off = 128;
  for (let i = 0; i < w2.index_section_count(); i++) {
    const len = w2.index_section_len(i) >>> 0;
    mem.set(snapshot.subarray(off, off + len), w2.index_section_ptr(i) >>> 0);
    off += len;
  }
  if (off !== snapshot.length) throw new Error('snapshot length does not match its header');
}
ok(w2.index_load_end(), 'index_load_end');
new Float32Array(w2.memory.buffer).set(query, w2.index_input_ptr() >>> 2);
const n2 = ok(w2.index_search(3, 64, 0), 'index_search');
const ids2 = Array.from(new Uint32Array(w2.memory.buffer, w2.index_result_ids_ptr() >>> 0, n2));
console.log(`snapshot ${snapshot.length} bytes; loaded copy: live ${w2.index_size()}, search -> slots ${ids2.join(', ')}`);
