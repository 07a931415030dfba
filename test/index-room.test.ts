// How many more points fit in an index's memory (WasmIndex.room), checked
// against the layout the Wasm core really makes, and the embedded Collection
// refusing an upsert it has no room for before anything is stored.

import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import { WasmIndex } from '../ts/core/wasm-index.js';
import { Collection } from '../ts/collection.js';
import { VdbError, ErrorCode } from '../ts/errors.js';
import { mulberry32 } from './helpers.js';
import { tempDir } from './cluster-helpers.js';

function fill(idx: WasmIndex, n: number, seed: number): number[] {
  const rand = mulberry32(seed);
  const slots: number[] = [];
  for (let i = 0; i < n; i++) slots.push(idx.add(Float32Array.from({ length: idx.dim }, () => rand() - 0.5)));
  return slots;
}

describe('WasmIndex.room', () => {
  it('the points it promises fit in the budget, and not many more would', () => {
    fc.assert(fc.property(
      fc.integer({ min: 1, max: 700 }), fc.integer({ min: 2, max: 24 }), fc.integer({ min: 1, max: 6 }),
      (dim, m, extraMb) => {
        const empty = WasmIndex.create({ dim, m, efConstruction: 16 });
        const budget = empty.layoutBytes + extraMb * 1024 * 1024;
        const room = empty.room(budget);
        expect(room).toBeGreaterThan(0);
        // An index reserved for exactly that many points, then filled: its layout is within the budget.
        const exact = WasmIndex.create({ dim, m, efConstruction: 16, capacity: room });
        fill(exact, Math.min(room, 2000), dim);
        if (room <= 2000) expect(exact.layoutBytes).toBeLessThanOrEqual(budget);
        // Tight: 10 % more slots (and at least 2 pages more) would not fit.
        const more = Math.ceil(room * 1.1) + Math.ceil((2 * 65536) / (4 * dim));
        expect(WasmIndex.create({ dim, m, efConstruction: 16, capacity: more }).layoutBytes).toBeGreaterThan(budget);
      },
    ), { numRuns: 25 });
  });

  it('counts free slots as room and tombstones not yet consolidated as taken', () => {
    const idx = WasmIndex.create({ dim: 64, m: 8, efConstruction: 16, capacity: 100 });
    const budget = idx.layoutBytes + 65536 * 3;
    const before = idx.room(budget);
    const slots = fill(idx, 100, 1);
    const full = idx.room(budget);
    // Each point takes a slot and its share of upper levels (the arena's first 4 KiB among them).
    expect(full).toBeLessThanOrEqual(before - 99);
    expect(full).toBeGreaterThanOrEqual(before - 115);
    for (const s of slots.slice(0, 5)) idx.remove(s); // 5 tombstones in 100 slots: not consolidated yet
    expect(idx.pending).toBe(5);
    expect(idx.room(budget)).toBe(full);
    idx.consolidate();
    expect(idx.room(budget)).toBeGreaterThanOrEqual(full + 4);
  });

  it('is 0, not negative, when the points held already pass the budget', () => {
    const idx = WasmIndex.create({ dim: 32, capacity: 64 });
    fill(idx, 64, 3);
    expect(idx.room(idx.layoutBytes + 256 * 1024)).toBeGreaterThan(0);
    expect(idx.room(idx.layoutBytes / 2)).toBe(0);
    expect(idx.room(0)).toBe(0);
  });

  it('by default allows for nearly all of the 4 GiB a Wasm memory can hold', () => {
    const idx = WasmIndex.create({ dim: 4096, m: 16 });
    const room = idx.room();
    // A dim-4096 record is 16,576 bytes (+ 20 of heaps and flags, + ~10 of upper levels).
    expect(room).toBeGreaterThan(Math.floor((4 * 1024 ** 3 - 2 * 1024 ** 2) / 16_620));
    expect(room).toBeLessThan(Math.floor(4 * 1024 ** 3 / 16_576));
  });
});

describe('Collection at its memory limit', () => {
  const rows = (n: number, from: number, dim: number) =>
    Array.from({ length: n }, (_, i) => ({ id: from + i, vector: Array.from({ length: dim }, (_, j) => ((from + i) * 7 + j) % 13 + 1) }));

  it('refuses an upsert past maxIndexBytes with RESOURCE_EXHAUSTED before storing anything, and goes on', () => {
    const dir = tempDir();
    const limit = 2 * 1024 * 1024;
    let c = Collection.open(dir, { name: 'big', dim: 1024, maxIndexBytes: limit });
    let stored = 0;
    let refused: unknown;
    while (!refused && stored < 2000) {
      try {
        c.upsert(rows(50, stored, 1024));
        stored += 50;
      } catch (e) {
        refused = e;
      }
    }
    expect(refused).toBeInstanceOf(VdbError);
    expect((refused as VdbError).code).toBe(ErrorCode.RESOURCE_EXHAUSTED);
    expect((refused as VdbError).message).toMatch(/index memory limit of 2097152 bytes \(maxIndexBytes; room for \d+\)/);
    // About 2 MiB of 4 KiB records, less the fixed part and the slack.
    expect(stored).toBeGreaterThanOrEqual(300);
    expect(stored).toBeLessThanOrEqual(500);
    expect(c.count()).toBe(stored);
    expect(c.get([stored])).toEqual([]);
    // The points that still fit go in; deleting makes room again once the tombstones are consolidated.
    const room = c.indexRoom(limit);
    expect(room).toBeLessThan(50);
    if (room > 0) c.upsert(rows(room, stored, 1024));
    expect(() => c.upsert(rows(1, 10_000, 1024))).toThrow(/maxIndexBytes/);
    // A tenth of the slots as tombstones are consolidated: 100 deletes free most of their slots.
    c.delete(Array.from({ length: 100 }, (_, i) => i));
    expect(c.indexRoom(limit)).toBeGreaterThanOrEqual(70);
    c.upsert(rows(50, 20_000, 1024));
    expect(c.count()).toBe(stored + room - 50);
    c.close();
    c = Collection.open(dir, { name: 'big' });
    expect(c.count()).toBe(stored + room - 50);
    c.close();
  });

  it('rejects a maxIndexBytes that is not a positive integer', () => {
    expect(() => Collection.open(tempDir(), { name: 'x', dim: 2, maxIndexBytes: -1 })).toThrow(expect.objectContaining({ code: ErrorCode.INVALID_ARGUMENT }));
  });
});
