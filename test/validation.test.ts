// Bad input is refused with a VdbError carrying a stable code, and the index is
// unchanged and still answers correctly afterwards.

import { beforeEach, describe, expect, it } from 'vitest';
import { AllowSet, ErrorCode, K_MAX, VdbError, WasmIndex } from '../ts/index.js';
import type { Metric, SearchResult } from '../ts/index.js';
import { bruteForce, clusterModel, expectVdbError, rowsOf } from './helpers.js';

const DIM = 7; // not a multiple of 4: the tail lanes matter
const model = clusterModel({ dim: DIM, clusters: 5, seed: 55 });
const data = model.sample(300, 1);
const rows = rowsOf(data, DIM);
const queries = rowsOf(model.sample(20, 2), DIM);

const bad = (i: number, x: number) => {
  const v = Array.from(rows[0]);
  v[i] = x;
  return v;
};

interface Fixture {
  index: WasmIndex;
  baseline: SearchResult[];
  exact: SearchResult[];
}

function fixture(metric: Metric): Fixture {
  const index = WasmIndex.create({ dim: DIM, metric, seed: 8 });
  index.addBatch(data);
  return {
    index,
    baseline: queries.map((q) => index.search(q, 10)),
    exact: queries.map((q) => index.searchExact(q, 10)),
  };
}

/**
 * The index answers exactly as before the error (identical = true: the call
 * failed before touching anything), or at least correctly (a rolled-back batch
 * may have re-linked the graph): the exact scan equals a brute force over the
 * original points and the graph search finds nearly all true neighbours.
 */
function expectIntact(f: Fixture, metric: Metric, identical = true): void {
  expect(f.index.size).toBe(300);
  let hits = 0;
  queries.forEach((q, i) => {
    const r = f.index.search(q, 10);
    if (identical) {
      expect(Array.from(r.ids)).toEqual(Array.from(f.baseline[i].ids));
      expect(Array.from(r.distances)).toEqual(Array.from(f.baseline[i].distances));
    }
    const e = f.index.searchExact(q, 10);
    expect(Array.from(e.ids)).toEqual(Array.from(f.exact[i].ids));
    expect(Array.from(e.distances)).toEqual(Array.from(f.exact[i].distances));
    const ref = new Set(bruteForce(metric, rows, q, 10).map((h) => h.slot));
    expect(new Set(e.ids)).toEqual(ref);
    for (const s of r.ids) if (ref.has(s)) hits++;
  });
  expect(hits / (10 * queries.length)).toBeGreaterThanOrEqual(0.98);
}

describe('errors carry stable codes and leave the index intact', () => {
  let f: Fixture;
  beforeEach(() => {
    f = fixture('l2');
  });

  it('errors are VdbError instances with a code and a message', () => {
    const e = expectVdbError(() => f.index.add([1, 2, 3]), ErrorCode.DIMENSION_MISMATCH);
    expect(e).toBeInstanceOf(Error);
    expect(e.name).toBe('VdbError');
    expect(e.message.length).toBeGreaterThan(0);
  });

  it('DIMENSION_MISMATCH: add, addBatch, search, searchExact, searchBatch', () => {
    const D = ErrorCode.DIMENSION_MISMATCH;
    expectVdbError(() => f.index.add(new Float32Array(DIM - 1)), D);
    expectVdbError(() => f.index.add(new Float32Array(DIM + 1)), D);
    expectVdbError(() => f.index.add([]), D);
    expectVdbError(() => f.index.addBatch(new Float32Array(DIM * 3 + 1)), D);
    expectVdbError(() => f.index.addBatch([rows[0], rows[1], Array.from(rows[2]).concat([1])]), D);
    expectVdbError(() => f.index.search(new Float32Array(DIM + 1), 5), D);
    expectVdbError(() => f.index.searchExact([1, 2], 5), D);
    expectVdbError(() => f.index.searchExact([1, 2], 5, AllowSet.of([1])), D);
    expectVdbError(() => f.index.searchBatch(new Float32Array(DIM + 2), 5), D);
    expectIntact(f, 'l2');
  });

  it('INVALID_VECTOR: NaN, ±Infinity at every position (add, search, searchExact)', () => {
    const V = ErrorCode.INVALID_VECTOR;
    for (let i = 0; i < DIM; i++) {
      for (const x of [NaN, Infinity, -Infinity]) {
        expectVdbError(() => f.index.add(bad(i, x)), V);
        expectVdbError(() => f.index.add(Float32Array.from(bad(i, x))), V);
        expectVdbError(() => f.index.search(bad(i, x), 5), V);
        expectVdbError(() => f.index.searchExact(bad(i, x), 5), V);
      }
      // Finite as a double, infinite as a float32.
      expectVdbError(() => f.index.add(bad(i, 1e39)), V);
      expectVdbError(() => f.index.search(bad(i, -1e39), 5), V);
    }
    expectIntact(f, 'l2');
  });

  it('INVALID_VECTOR: non-numeric input', () => {
    const V = ErrorCode.INVALID_VECTOR;
    expectVdbError(() => f.index.add(null as unknown as number[]), V);
    expectVdbError(() => f.index.add(undefined as unknown as number[]), V);
    expectVdbError(() => f.index.add(bad(3, 'x' as unknown as number)), V);
    expectVdbError(() => f.index.add(bad(6, undefined as unknown as number)), V);
    expectVdbError(() => f.index.addBatch('nope' as unknown as number[][]), V);
    expectVdbError(() => f.index.search(null as unknown as number[], 5), V);
    expectIntact(f, 'l2');
  });

  it('addBatch with one bad row adds nothing', () => {
    const good = [rows[5], rows[6], rows[7]];
    for (const badRow of [bad(0, NaN), bad(6, Infinity), bad(2, 1e39)]) {
      const slotsBefore = f.index.slots;
      expectVdbError(() => f.index.addBatch([...good, badRow, rows[8]]), ErrorCode.INVALID_VECTOR);
      expect(f.index.size).toBe(300);
      for (let s = 300; s < f.index.slots; s++) expect(f.index.has(s)).toBe(false);
      expect(f.index.slots).toBeGreaterThanOrEqual(slotsBefore);
      const flat = new Float32Array(DIM * 4);
      good.forEach((r, i) => flat.set(r, i * DIM));
      flat.set(Float32Array.from(badRow), 3 * DIM);
      expectVdbError(() => f.index.addBatch(flat), ErrorCode.INVALID_VECTOR);
      expect(f.index.size).toBe(300);
    }
    expectIntact(f, 'l2', false);
  });

  it('INVALID_K: 0, negative, 10001, non-integer, NaN, Infinity, a string', () => {
    for (const k of [0, -1, K_MAX + 1, 1.5, NaN, Infinity, '5' as unknown as number]) {
      expectVdbError(() => f.index.search(queries[0], k), ErrorCode.INVALID_K);
      expectVdbError(() => f.index.searchExact(queries[0], k), ErrorCode.INVALID_K);
      expectVdbError(() => f.index.search(queries[0], k, { allow: AllowSet.of([1, 2]) }), ErrorCode.INVALID_K);
    }
    // The bounds themselves are valid.
    expect(f.index.search(queries[0], 1).ids.length).toBe(1);
    expect(f.index.search(queries[0], K_MAX).ids.length).toBe(300);
    expect(f.index.searchExact(queries[0], K_MAX).ids.length).toBe(300);
    expectIntact(f, 'l2');
  });

  it('INVALID_EF: ef below k, zero, non-integer, too large', () => {
    for (const [k, ef] of [
      [10, 9],
      [10, 1],
      [1, 0],
      [5, 5.5],
      [5, NaN],
      [5, 2 ** 20 + 1],
    ]) {
      expectVdbError(() => f.index.search(queries[0], k, { ef }), ErrorCode.INVALID_EF);
    }
    expect(f.index.search(queries[0], 10, { ef: 10 }).ids.length).toBe(10);
    expectIntact(f, 'l2');
  });

  it('UNKNOWN_SLOT: remove of an unknown, negative, fractional or already removed slot', () => {
    const U = ErrorCode.UNKNOWN_SLOT;
    for (const s of [300, 301, 10_000, 2 ** 32, -1, 1.5, NaN]) expectVdbError(() => f.index.remove(s), U);
    expectVdbError(() => f.index.vector(300), U);
    expectVdbError(() => f.index.vector(-1), U);
    expect(f.index.has(300)).toBe(false);
    expect(f.index.has(-1)).toBe(false);
    expectIntact(f, 'l2');
    // Removing twice: the second time fails and changes nothing.
    f.index.remove(42);
    expect(f.index.size).toBe(299);
    expectVdbError(() => f.index.remove(42), U);
    expectVdbError(() => f.index.vector(42), U);
    expect(f.index.size).toBe(299);
    for (const q of queries) {
      const r = f.index.search(q, 10);
      expect(Array.from(r.ids)).not.toContain(42);
      const ref = bruteForce('l2', rows, q, 10, (s) => s !== 42);
      expect(Array.from(f.index.searchExact(q, 10).ids)).toEqual(ref.map((h) => h.slot));
    }
  });
});

describe('create options', () => {
  const A = ErrorCode.INVALID_ARGUMENT;
  const bads: Record<string, unknown>[] = [
    { dim: 0 },
    { dim: -3 },
    { dim: 1.5 },
    { dim: NaN },
    { dim: 65537 },
    { dim: '8' },
    {},
    { dim: 8, metric: 'euclidean' },
    { dim: 8, metric: '' },
    { dim: 8, metric: 'L2' },
    { dim: 8, m: 1 },
    { dim: 8, m: 257 },
    { dim: 8, m: 2.5 },
    { dim: 8, efConstruction: 0 },
    { dim: 8, efConstruction: -1 },
    { dim: 8, efConstruction: 1.5 },
    { dim: 8, seed: -1 },
    { dim: 8, seed: 0.5 },
    { dim: 8, seed: NaN },
    { dim: 8, capacity: -1 },
    { dim: 8, capacity: 2.5 },
  ];
  for (const opts of bads) {
    it(`INVALID_ARGUMENT for ${JSON.stringify(opts, (_, v) => (Number.isNaN(v) ? 'NaN' : v))}`, () => {
      expectVdbError(() => WasmIndex.create(opts as never), A);
    });
  }

  it('INVALID_ARGUMENT for metric names inherited from Object.prototype', () => {
    for (const metric of ['toString', 'constructor', '__proto__', 'hasOwnProperty', 'valueOf']) {
      expectVdbError(() => WasmIndex.create({ dim: 8, metric: metric as Metric }), A);
    }
  });

  it('valid edge values are accepted', () => {
    expect(WasmIndex.create({ dim: 1 }).dim).toBe(1);
    expect(WasmIndex.create({ dim: 8, m: 2, efConstruction: 1, seed: 0, capacity: 0 }).size).toBe(0);
    expect(WasmIndex.create({ dim: 8, m: 256, seed: Number.MAX_SAFE_INTEGER }).metric).toBe('l2');
    for (const metric of ['l2', 'ip', 'cosine'] as const) expect(WasmIndex.create({ dim: 3, metric }).metric).toBe(metric);
  });

  it('reserve with a bad capacity is INVALID_ARGUMENT', () => {
    const index = WasmIndex.create({ dim: 4 });
    expectVdbError(() => index.reserve(-1), A);
    expectVdbError(() => index.reserve(1.5), A);
    index.reserve(5000);
    expect(index.capacity).toBeGreaterThanOrEqual(5000);
  });
});

describe('cosine and the zero vector', () => {
  let f: Fixture;
  beforeEach(() => {
    f = fixture('cosine');
  });

  it('a zero vector cannot be added or searched (INVALID_VECTOR); the index is intact', () => {
    const zero = new Array(DIM).fill(0);
    expectVdbError(() => f.index.add(zero), ErrorCode.INVALID_VECTOR);
    expectVdbError(() => f.index.add(new Array(DIM).fill(-0)), ErrorCode.INVALID_VECTOR);
    expectVdbError(() => f.index.search(zero, 5), ErrorCode.INVALID_VECTOR);
    expectVdbError(() => f.index.searchExact(zero, 5), ErrorCode.INVALID_VECTOR);
    expectVdbError(() => f.index.search(zero, 5, { allow: AllowSet.of([1, 2, 3]) }), ErrorCode.INVALID_VECTOR);
    expectIntact(f, 'cosine');
  });

  it('addBatch with a zero vector in the middle adds nothing, and the rolled-back slots never show up', () => {
    const batch = [rows[10], rows[11], new Array(DIM).fill(0), rows[12]];
    expectVdbError(() => f.index.addBatch(batch), ErrorCode.INVALID_VECTOR);
    expect(f.index.size).toBe(300);
    for (let s = 300; s < f.index.slots; s++) expect(f.index.has(s)).toBe(false);
    for (const q of [...queries, rows[10], rows[11]]) {
      for (const r of [f.index.search(q, 20), f.index.searchExact(q, 20)]) for (const s of r.ids) expect(s).toBeLessThan(300);
    }
    expectIntact(f, 'cosine', false);
    // The index keeps working for new points.
    const s = f.index.add(rows[10]);
    expect(f.index.size).toBe(301);
    expect(f.index.searchExact(rows[10], 2).ids).toContain(s);
  });

  it('the zero vector is fine for l2 and ip', () => {
    for (const metric of ['l2', 'ip'] as const) {
      const index = WasmIndex.create({ dim: DIM, metric });
      const s = index.add(new Array(DIM).fill(0));
      expect(index.search(new Array(DIM).fill(0), 1).ids[0]).toBe(s);
    }
  });

  it('a finite vector with huge components is normalised or refused, never stored as zeros', () => {
    // |v|² overflows float32 (≈ 5e40) although every component is finite.
    const huge = [1e20, 2e20, 0, 0, 0, 0, 0];
    let slot: number | undefined;
    try {
      slot = f.index.add(huge);
    } catch (e) {
      expect(e).toBeInstanceOf(VdbError);
      expect((e as VdbError).code).toBe(ErrorCode.INVALID_VECTOR);
    }
    if (slot !== undefined) {
      const v = f.index.vector(slot);
      expect(Math.hypot(...v)).toBeCloseTo(1, 5);
      expect(v[0]).toBeCloseTo(1 / Math.sqrt(5), 5);
      // Searching by the same direction finds it at distance ≈ 0.
      const r = f.index.searchExact([1, 2, 0, 0, 0, 0, 0], 1);
      expect(r.ids[0]).toBe(slot);
      expect(r.distances[0]).toBeCloseTo(0, 5);
    }
    // A query with huge components: normalised or refused, never "distance 1 to everything".
    let res: SearchResult | undefined;
    try {
      res = f.index.searchExact([0, 0, 3e20, 4e20, 0, 0, 0], 300);
    } catch (e) {
      expect((e as VdbError).code).toBe(ErrorCode.INVALID_VECTOR);
    }
    if (res) {
      const ref = f.index.searchExact([0, 0, 3, 4, 0, 0, 0], 300);
      expect(Array.from(res.ids)).toEqual(Array.from(ref.ids));
      for (let i = 0; i < res.ids.length; i++) expect(res.distances[i]).toBeCloseTo(ref.distances[i], 5);
    }
  });

  it('a tiny but non-zero vector (components 1e-30, normal float32) has a direction', () => {
    const tiny = [1e-30, 2e-30, 0, 0, 0, 0, 0];
    const slot = f.index.add(tiny);
    const v = f.index.vector(slot);
    expect(Math.hypot(...v)).toBeCloseTo(1, 5);
    const r = f.index.searchExact([1, 2, 0, 0, 0, 0, 0], 1);
    expect(r.ids[0]).toBe(slot);
  });
});
