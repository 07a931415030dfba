// SQ8: the 8-bit index against the float index and a float64 brute force.
// The raw ABI is driven directly where the codes themselves are checked
// (encoding error, kernels); WasmIndex and Collection where results are.

import { readFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it, expect, afterAll } from 'vitest';
import fc from 'fast-check';
import { WasmIndex, Collection, ErrorCode } from '../ts/index.js';
import type { Metric, CoreExports } from '../ts/index.js';
import { FloatStore, rerank } from '../ts/core/rescore.js';
import { clusteredData, rowsOf, bruteForce, recallOne, dist64, expectVdbError, mulberry32 } from './helpers.js';

const METRICS: Metric[] = ['l2', 'ip', 'cosine'];
const CODE: Record<Metric, number> = { l2: 0, ip: 1, cosine: 2 };
const compiled = new WebAssembly.Module(readFileSync(new URL('../build/vdb.wasm', import.meta.url)));
const raw = () => new WebAssembly.Instance(compiled, { env: { abort: () => { throw new Error('abort'); } } }).exports as unknown as CoreExports;

const dirs: string[] = [];
const tempDir = () => { const d = mkdtempSync(join(tmpdir(), 'vdb-sq8-')); dirs.push(d); return d; };
afterAll(() => { for (const d of dirs) rmSync(d, { recursive: true, force: true }); });

/** A raw SQ8 index trained on `rows` and holding them; its params and codes read back. */
function rawIndex(metric: Metric, dim: number, rows: Float32Array[]) {
  const w = raw();
  expect(w.index_init_sq8(dim, CODE[metric], 8, 64, 1, 0, rows.length)).toBe(0);
  expect(w.index_add()).toBe(-1); // untrained: ERR_STATE
  const p = w.index_train_ptr(rows.length);
  expect(p).toBeGreaterThan(0);
  rows.forEach((v, i) => new Float32Array(w.memory.buffer).set(v, (p >>> 2) + i * dim));
  expect(w.index_train(rows.length)).toBe(0);
  for (const v of rows) {
    new Float32Array(w.memory.buffer).set(v, w.index_input_ptr() >>> 2);
    expect(w.index_add()).toBeGreaterThanOrEqual(0);
  }
  const params = () => {
    const pp = w.index_sq8_params_ptr() >>> 2;
    const f = new Float32Array(w.memory.buffer);
    return { step: f[pp], k: f[pp + 1], trained: new Uint32Array(w.memory.buffer)[pp + 2], offsets: f.slice(pp + 4, pp + 4 + dim) };
  };
  const codes = (slot: number) => new Uint8Array(w.memory.buffer, w.index_vector_ptr(slot), dim).slice();
  return { w, params, codes };
}

function unit(v: Float32Array): Float32Array {
  let s = 0;
  for (const x of v) s += x * x;
  return v.map((x) => x / Math.sqrt(s));
}

const vectors = (dim: number, n: number) => fc.array(fc.array(fc.float({ min: -100, max: 100, noNaN: true, noDefaultInfinity: true }), { minLength: dim, maxLength: dim }), { minLength: n, maxLength: n })
  .filter((rows) => rows.every((r) => r.some((x) => Math.abs(x) > 1e-3)));

describe('SQ8 codes (raw ABI)', () => {
  it('decoding a code is within step/2 of the value in every dimension, inside the trained range; outside it clamps', () => {
    fc.assert(fc.property(fc.constantFrom(...METRICS), fc.integer({ min: 1, max: 40 }), fc.integer({ min: 2, max: 60 }), fc.integer(), (metric, dim, n, seed) => {
      const rand = mulberry32(seed);
      const rows = Array.from({ length: n }, () => Float32Array.from({ length: dim }, () => (rand() - 0.5) * 20 + (rand() < 0.05 ? 500 : 0)));
      const { w, params, codes } = rawIndex(metric, dim, rows);
      const { step, trained, offsets } = params();
      expect(trained).toBe(1);
      expect(step).toBeGreaterThan(0);
      for (let s = 0; s < n; s++) {
        const v = metric === 'cosine' ? unit(rows[s]) : rows[s];
        const c = codes(s);
        for (let d = 0; d < dim; d++) {
          const lo = offsets[d];
          const hi = offsets[d] + 255 * step;
          const decoded = offsets[d] + step * c[d];
          if (v[d] < lo) expect(c[d]).toBe(0);
          else if (v[d] > hi) expect(c[d]).toBe(255);
          else expect(Math.abs(decoded - v[d])).toBeLessThanOrEqual(step / 2 + 1e-5 * Math.max(1, Math.abs(v[d])));
        }
      }
      expect(w.index_quantization()).toBe(1);
    }), { numRuns: 40 });
  });

  it('the integer kernels give the distance of the decoded vectors (exact scan over codes)', () => {
    fc.assert(fc.property(fc.constantFrom(...METRICS), fc.integer({ min: 1, max: 70 }), vectors(70, 12), (metric, dim, all) => {
      const rows = all.map((r) => Float32Array.from(r.slice(0, dim))).filter((r) => r.some((x) => Math.abs(x) > 1e-3));
      fc.pre(rows.length >= 2);
      const { w, params, codes } = rawIndex(metric, dim, rows);
      const { step, offsets } = params();
      const decode = (c: Uint8Array) => Array.from(c, (x, d) => offsets[d] + step * x);
      // The query is the stored vector of slot 0, whose codes are known.
      new Float32Array(w.memory.buffer).set(rows[0], w.index_input_ptr() >>> 2);
      const n = w.index_search_exact(rows.length, 0);
      expect(n).toBe(rows.length);
      const ids = new Uint32Array(w.memory.buffer, w.index_result_ids_ptr(), n).slice();
      const dists = new Float32Array(w.memory.buffer, w.index_result_dist_ptr(), n).slice();
      const q = decode(codes(0));
      for (let i = 0; i < n; i++) {
        const x = decode(codes(ids[i]));
        let want: number;
        if (metric === 'l2') want = dist64('l2', q, x);
        else {
          let dot = 0;
          for (let d = 0; d < dim; d++) dot += q[d] * x[d];
          want = metric === 'ip' ? -dot : 1 - dot;
        }
        const scale = metric === 'l2' ? Math.max(1, want) : Math.max(1, params().k, Math.abs(want));
        expect(Math.abs(dists[i] - want)).toBeLessThanOrEqual(1e-4 * scale);
      }
    }), { numRuns: 60 });
  });

  it('a snapshot has version 3, five sections and loads into a fresh instance; float snapshots stay version 2', () => {
    const rows = rowsOf(clusteredData({ n: 200, queries: 1, dim: 12, clusters: 4, seed: 3 }).data, 12);
    const sq8 = WasmIndex.create({ dim: 12, quantization: { kind: 'sq8' } });
    sq8.addBatch(rows);
    const bytes = sq8.save();
    expect(new DataView(bytes.buffer).getUint32(4, true)).toBe(3);
    const flt = WasmIndex.create({ dim: 12 });
    flt.addBatch(rows);
    expect(new DataView(flt.save().buffer).getUint32(4, true)).toBe(2);
    const w = raw();
    new Uint8Array(w.memory.buffer).set(bytes.subarray(0, 128), w.scratch_ptr());
    expect(w.index_load_begin()).toBe(0);
    expect(w.index_section_count()).toBe(5);
    expect(w.index_quantization()).toBe(1);
  });
});

describe('rerank (host side)', () => {
  it('is the k smallest exact distances of the candidates, ties to the lower slot, as a sort would give', () => {
    fc.assert(fc.property(fc.constantFrom(...METRICS), fc.array(fc.array(fc.integer({ min: -3, max: 3 }), { minLength: 3, maxLength: 3 }), { minLength: 1, maxLength: 40 }), fc.integer({ min: 1, max: 50 }),
      (metric, vs, k) => {
        const store = new FloatStore(raw(), 3);
        vs.forEach((v, s) => store.set(s, Float32Array.from(v)));
        const q = Float32Array.from([1, -1, 0.5]);
        store.setQuery(q);
        const candidates = Uint32Array.from(vs.keys()).reverse();
        const r = rerank(metric, store, candidates, k);
        const want = Array.from(candidates, (slot) => ({ slot, d: store.distance(metric, slot) }))
          .sort((a, b) => a.d - b.d || a.slot - b.slot).slice(0, k);
        expect(Array.from(r.ids)).toEqual(want.map((x) => x.slot));
        expect(Array.from(r.distances)).toEqual(want.map((x) => x.d));
        want.forEach((x) => expect(x.d).toBeCloseTo(metric === 'cosine' ? 1 + dist64('ip', q, vs[x.slot]) : dist64(metric, q, vs[x.slot]), 4));
      }));
  });

  it('kernel_row_distances refuses an unknown metric and negative counts', () => {
    const w = raw();
    const p = w.scratch_ptr();
    expect(w.kernel_row_distances(3, p, p, 16, 4, p, 1, p)).toBe(-2);
    expect(w.kernel_row_distances(0, p, p, 16, -1, p, 1, p)).toBe(-2);
    expect(w.kernel_row_distances(0, p, p, 16, 4, p, -1, p)).toBe(-2);
    expect(w.kernel_row_distances(0, p, p, 16, 4, p, 0, p)).toBe(0);
  });

  it('keeps rows apart and grows its memory as slots arrive', () => {
    const store = new FloatStore(raw(), 5);
    const rows = Array.from({ length: 5000 }, (_, s) => Float32Array.from({ length: 5 }, (_, d) => s * 10 + d));
    for (let s = rows.length - 1; s >= 0; s--) store.set(s, rows[s]);
    for (const s of [0, 1, 2499, 4999]) expect(Array.from(store.row(s))).toEqual(Array.from(rows[s]));
    expect(Array.from(store.rows(2))).toEqual([...rows[0], ...rows[1]]);
  });
});

function recallOf(metric: Metric, index: WasmIndex, rows: Float32Array[], queries: Float32Array[], k: number, ef: number): number {
  let sum = 0;
  for (const q of queries) {
    const truth = bruteForce(metric, rows, q, k);
    sum += recallOne(index.search(q, k, { ef }), truth, (s) => dist64(metric, q, rows[s]), () => true);
  }
  return sum / queries.length;
}

describe('SQ8 WasmIndex against the float index', () => {
  it('with re-ranking, recall@10 on clustered data stays within 0.05 of the float index and above 0.9, for every metric', () => {
    fc.assert(fc.property(fc.constantFrom(...METRICS), fc.integer({ min: 1, max: 1000 }), (metric, seed) => {
      const dim = 24;
      const { data, queries } = clusteredData({ n: 1500, queries: 30, dim, clusters: 12, seed });
      const rows = rowsOf(data, dim);
      const qs = rowsOf(queries, dim);
      const flt = WasmIndex.create({ dim, metric });
      const sq8 = WasmIndex.create({ dim, metric, quantization: { kind: 'sq8', rescore: 40 } });
      flt.addBatch(rows);
      for (const v of rows) sq8.add(v); // one at a time: trains at 1, retrains at 4, 16 … 1024
      const rf = recallOf(metric, flt, rows, qs, 10, 64);
      const rq = recallOf(metric, sq8, rows, qs, 10, 64);
      expect(sq8.trainedOn).toBe(1024);
      expect(rq).toBeGreaterThanOrEqual(0.9);
      expect(rq).toBeGreaterThanOrEqual(rf - 0.05);
    }), { numRuns: 4 });
  });

  it('re-ranked hits carry the exact distance, and searchExact is the float index\'s exact answer', () => {
    for (const metric of METRICS) {
      const dim = 10;
      const { data, queries } = clusteredData({ n: 400, queries: 10, dim, clusters: 5, seed: 9 });
      const rows = rowsOf(data, dim);
      const flt = WasmIndex.create({ dim, metric });
      const sq8 = WasmIndex.create({ dim, metric, quantization: { kind: 'sq8' } });
      flt.addBatch(rows);
      sq8.addBatch(rows);
      for (const q of rowsOf(queries, dim)) {
        const a = sq8.searchExact(q, 10);
        const b = flt.searchExact(q, 10);
        expect(Array.from(a.ids)).toEqual(Array.from(b.ids));
        a.distances.forEach((d, i) => expect(Math.abs(d - b.distances[i])).toBeLessThanOrEqual(1e-4 * Math.max(1, Math.abs(d))));
        const r = sq8.search(q, 5);
        r.ids.forEach((s, i) => expect(Math.abs(r.distances[i] - dist64(metric, q, rows[s]))).toBeLessThanOrEqual(1e-4 * Math.max(1, Math.abs(r.distances[i]))));
        expect(Array.from(sq8.vector(r.ids[0]))).toEqual(Array.from(flt.vector(r.ids[0])));
      }
    }
  });

  it('save/load gives identical results, and both grow identically afterwards (retraining included)', () => {
    fc.assert(fc.property(fc.constantFrom(...METRICS), fc.integer({ min: 1, max: 1000 }), fc.integer({ min: 1, max: 300 }), (metric, seed, cut) => {
      const dim = 8;
      const rows = rowsOf(clusteredData({ n: 400, queries: 1, dim, clusters: 4, seed }).data, dim);
      const a = WasmIndex.create({ dim, metric, quantization: { kind: 'sq8', rescore: 20 } });
      for (const v of rows.slice(0, cut)) a.add(v);
      for (let s = 0; s < cut; s += 7) a.remove(s);
      const saved = a.save();
      const pool = new Uint8Array(saved.length + 64);
      pool.set(saved, 32);
      const b = WasmIndex.load(Buffer.from(pool.buffer, 32, saved.length)); // a Buffer inside a larger pool, as files are read
      expect(b.quantization).toEqual({ kind: 'sq8', rescore: 20 });
      for (const v of rows.slice(cut)) expect(b.add(v)).toBe(a.add(v));
      expect(b.trainedOn).toBe(a.trainedOn);
      for (const q of rows.slice(0, 20)) {
        const ra = a.search(q, 5, { ef: 16 });
        const rb = b.search(q, 5, { ef: 16 });
        expect(Array.from(rb.ids)).toEqual(Array.from(ra.ids));
        expect(Array.from(rb.distances)).toEqual(Array.from(ra.distances));
      }
      expect(b.size).toBe(a.size);
      for (let s = 0; s < a.slots; s++) expect(b.has(s)).toBe(a.has(s));
    }), { numRuns: 10 });
  });

  it('retraining rebuilds the graph but keeps every slot, its vector and its state', () => {
    const dim = 6;
    const rows = rowsOf(clusteredData({ n: 300, queries: 1, dim, clusters: 3, seed: 5 }).data, dim);
    const idx = WasmIndex.create({ dim, quantization: { kind: 'sq8' } });
    const rowOf = new Map<number, number>();
    rows.slice(0, 60).forEach((v, i) => rowOf.set(idx.add(v), i));
    for (let s = 0; s < 60; s += 3) { idx.remove(s); rowOf.delete(s); }
    expect(idx.trainedOn).toBe(16);
    rows.slice(60).forEach((v, i) => rowOf.set(idx.add(v), 60 + i)); // retrains at 64 and 256 live points
    expect(idx.trainedOn).toBe(256);
    for (let s = 0; s < idx.slots; s++) {
      expect(idx.has(s)).toBe(rowOf.has(s));
      if (rowOf.has(s)) expect(Array.from(idx.vector(s))).toEqual(Array.from(rows[rowOf.get(s)!]));
    }
    expect(idx.size).toBe(300 - 20);
  });

  it('fits over 1.6× the points of a float index in the same index memory at 100 dimensions, 3× at 784', () => {
    for (const [dim, factor] of [[100, 1.6], [784, 3]] as const) {
      const budget = 256 << 20;
      const flt = WasmIndex.create({ dim, metric: 'cosine' }).room(budget);
      const sq8 = WasmIndex.create({ dim, metric: 'cosine', quantization: { kind: 'sq8' } }).room(budget);
      expect(sq8).toBeGreaterThan(factor * flt);
    }
  });

  it('rejects bad quantization options and corrupted params', () => {
    for (const q of [{ kind: 'pq' }, { kind: 'sq8', rescore: 0 }, { kind: 'sq8', rescore: 1.5 }, { kind: 'sq8', extra: 1 }, 'sq8']) {
      expectVdbError(() => WasmIndex.create({ dim: 4, quantization: q as never }), ErrorCode.INVALID_ARGUMENT);
    }
    const idx = WasmIndex.create({ dim: 4, quantization: { kind: 'sq8' } });
    idx.addBatch([[1, 2, 3, 4], [4, 3, 2, 1], [0, 1, 0, 1]]);
    const bytes = idx.save();
    const paramsAt = bytes.length - 3 * 16 - 8 - (16 + 16 * 4); // before the f32 rows and trailer
    const bad = bytes.slice();
    new DataView(bad.buffer).setFloat32(paramsAt, -1, true); // a negative step
    expectVdbError(() => WasmIndex.load(bad), ErrorCode.CORRUPT_INDEX);
    expectVdbError(() => WasmIndex.load(bytes.subarray(0, bytes.length - 8)), ErrorCode.CORRUPT_INDEX);
  });
});

describe('SQ8 Collection', () => {
  it('creates, searches exactly and approximately, reopens from its snapshot, carries it in an exported copy and refuses another quantization', () => {
    const dir = tempDir();
    const dim = 16;
    const { data, queries } = clusteredData({ n: 800, queries: 20, dim, clusters: 8, seed: 21 });
    const rows = rowsOf(data, dim);
    const c = Collection.open(dir, { name: 'q', dim, metric: 'cosine', quantization: { kind: 'sq8', rescore: 30 } });
    expect(c.quantization).toEqual({ kind: 'sq8', rescore: 30 });
    for (let i = 0; i < rows.length; i += 100) c.upsert(rows.slice(i, i + 100).map((v, j) => ({ id: i + j, vector: v })));
    const check = (col: Collection) => {
      let sum = 0;
      for (const q of rowsOf(queries, dim)) {
        const truth = bruteForce('cosine', rows, q, 10);
        const hits = col.search(q, { k: 10, ef: 64 });
        const exact = col.search(q, { k: 10, exact: true });
        expect(exact.map((h) => h.id)).toEqual(truth.map((t) => t.slot));
        hits.forEach((h) => expect(Math.abs(h.score - (1 - dist64('cosine', q, rows[h.id as number])))).toBeLessThan(1e-5));
        sum += recallOne({ ids: Uint32Array.from(hits, (h) => h.id as number), distances: new Float32Array(hits.length) }, truth, (s) => dist64('cosine', q, rows[s]), () => true);
      }
      expect(sum / 20).toBeGreaterThanOrEqual(0.9);
    };
    check(c);
    c.close(); // snapshots
    const again = Collection.open(dir, { name: 'q' });
    expect(again.quantization).toEqual({ kind: 'sq8', rescore: 30 });
    check(again);
    expectVdbError(() => Collection.open(dir, { name: 'q', quantization: { kind: 'sq8' } }), ErrorCode.LOCKED);
    const file = join(tempDir(), 'copy.db');
    again.exportTo(file);
    again.close();
    expectVdbError(() => Collection.open(dir, { name: 'q', quantization: { kind: 'sq8' } }), ErrorCode.SCHEMA_MISMATCH);
    const other = tempDir();
    Collection.importFrom(other, 'q', file);
    const copy = Collection.open(other, { name: 'q' });
    expect(copy.quantization).toEqual({ kind: 'sq8', rescore: 30 });
    check(copy);
    copy.close();
    expectVdbError(() => Collection.open(tempDir(), { name: 'x', dim: 4, quantization: { kind: 'sq8', rescore: -1 } }), ErrorCode.INVALID_ARGUMENT);
  });
});
