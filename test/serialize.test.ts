// save → load: the restored index answers every query identically (ids and
// distances), for each metric, including after deletes; it keeps evolving exactly
// like the original under the same further operations (the level generator state
// is part of the snapshot); and damaged bytes are refused with CORRUPT_INDEX,
// never a crash.

import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { AllowSet, ErrorCode, VdbError, WasmIndex } from '../ts/index.js';
import type { Metric } from '../ts/index.js';
import { clusterModel, expectVdbError, mulberry32, rowsOf, shuffled } from './helpers.js';

const DIM = 16;
const model = clusterModel({ dim: DIM, clusters: 20, seed: 2024, centerScale: 1.5 });
const queries = rowsOf(model.sample(120, 3), DIM);

function build(metric: Metric, n: number, seed = 17, dataSeed = 1): WasmIndex {
  const index = WasmIndex.create({ dim: DIM, metric, m: 12, efConstruction: 64, seed });
  index.addBatch(model.sample(n, dataSeed));
  return index;
}

function removeRandom(index: WasmIndex, count: number, seed: number): number[] {
  const live: number[] = [];
  for (let s = 0; s < index.slots; s++) if (index.has(s)) live.push(s);
  const victims = shuffled(live, mulberry32(seed)).slice(0, count);
  for (const s of victims) index.remove(s);
  return victims;
}

/** Asserts that two indexes are observably the same. */
function expectSame(a: WasmIndex, b: WasmIndex): void {
  expect(b.dim).toBe(a.dim);
  expect(b.metric).toBe(a.metric);
  expect(b.size).toBe(a.size);
  expect(b.slots).toBe(a.slots);
  for (let s = 0; s < a.slots + 2; s++) {
    expect(b.has(s)).toBe(a.has(s));
    if (a.has(s)) expect(Array.from(b.vector(s))).toEqual(Array.from(a.vector(s)));
  }
  const allow = AllowSet.of(Array.from({ length: a.slots }, (_, i) => i).filter((i) => i % 3 === 0));
  for (const q of queries) {
    for (const [k, ef] of [
      [10, 10],
      [10, 64],
      [1, 1],
    ]) {
      const ra = a.search(q, k, { ef });
      const rb = b.search(q, k, { ef });
      expect(Array.from(rb.ids)).toEqual(Array.from(ra.ids));
      expect(Array.from(rb.distances)).toEqual(Array.from(ra.distances));
    }
    for (const plan of ['auto', 'graph'] as const) {
      const ra = a.search(q, 10, { ef: 32, allow, plan });
      const rb = b.search(q, 10, { ef: 32, allow, plan });
      expect(Array.from(rb.ids)).toEqual(Array.from(ra.ids));
      expect(Array.from(rb.distances)).toEqual(Array.from(ra.distances));
    }
    const ea = a.searchExact(q, 10);
    const eb = b.searchExact(q, 10);
    expect(Array.from(eb.ids)).toEqual(Array.from(ea.ids));
    expect(Array.from(eb.distances)).toEqual(Array.from(ea.distances));
  }
}

/** Applies the same further operations to both and checks they stay identical. */
function evolveTogether(a: WasmIndex, b: WasmIndex, seed: number): void {
  for (let round = 0; round < 3; round++) {
    const batch = model.sample(150, seed + round);
    const sa = a.addBatch(batch);
    const sb = b.addBatch(batch);
    expect(Array.from(sb), `slots handed out in round ${round}`).toEqual(Array.from(sa));
    const va = removeRandom(a, 40, seed + 10 + round);
    const vb = removeRandom(b, 40, seed + 10 + round);
    expect(vb).toEqual(va);
    expectSame(a, b);
  }
}

describe('save and load', () => {
  for (const metric of ['l2', 'ip', 'cosine'] as const) {
    describe(metric, () => {
      it('round trip without deletes: identical answers, identical bytes on re-save', () => {
        const a = build(metric, 1200);
        const bytes = a.save();
        const b = WasmIndex.load(bytes);
        expectSame(a, b);
        expect(Buffer.compare(b.save(), bytes)).toBe(0);
      });

      it('round trip with pending tombstones (deletes not yet consolidated)', () => {
        const a = build(metric, 1200);
        removeRandom(a, 60, 1); // 5 %: stays below the consolidation threshold
        const bytes = a.save();
        const b = WasmIndex.load(bytes);
        expect(b.size).toBe(1140);
        expectSame(a, b);
        expect(Buffer.compare(b.save(), bytes)).toBe(0);
      });

      it('round trip with consolidated deletes (free slots)', () => {
        const a = build(metric, 1200);
        removeRandom(a, 300, 2);
        a.consolidate();
        const b = WasmIndex.load(a.save());
        expect(b.size).toBe(900);
        expectSame(a, b);
      });

      it('further inserts and deletes after load behave like the original (no deletes before save)', () => {
        const a = build(metric, 1000);
        const b = WasmIndex.load(a.save());
        evolveTogether(a, b, 500);
      });

      it('further inserts and deletes after load behave like the original (consolidated deletes before save)', () => {
        const a = build(metric, 1000);
        removeRandom(a, 200, 3);
        a.consolidate();
        const b = WasmIndex.load(a.save());
        evolveTogether(a, b, 600);
      });

      it('further inserts and deletes after load behave like the original (pending tombstones before save)', () => {
        const a = build(metric, 1000);
        removeRandom(a, 50, 4);
        const b = WasmIndex.load(a.save());
        evolveTogether(a, b, 700);
      });
    });
  }

  it('an empty index round-trips and can be filled afterwards like the original', () => {
    const a = WasmIndex.create({ dim: DIM, metric: 'cosine', seed: 99 });
    const b = WasmIndex.load(a.save());
    expect(b.size).toBe(0);
    expect(b.search(queries[0], 5).ids.length).toBe(0);
    evolveTogether(a, b, 800);
  });

  it('loads from a Buffer and from a Uint8Array view at a non-zero offset', () => {
    const a = build('l2', 300);
    const bytes = a.save();
    const padded = new Uint8Array(bytes.length + 13);
    padded.set(bytes, 7);
    expectSame(a, WasmIndex.load(padded.subarray(7, 7 + bytes.length)));
    expectSame(a, WasmIndex.load(Buffer.from(bytes)));
  });
});

describe('load refuses damaged bytes', () => {
  const original = build('l2', 200);
  removeRandom(original, 10, 5);
  const good = original.save();

  const expectCorrupt = (bytes: unknown) => expectVdbError(() => WasmIndex.load(bytes as Uint8Array), ErrorCode.CORRUPT_INDEX);

  it('an empty array, a few bytes, and non-byte inputs', () => {
    expectCorrupt(new Uint8Array(0));
    expectCorrupt(new Uint8Array(1));
    expectCorrupt(new Uint8Array(127));
    expectCorrupt(new Uint8Array(128));
    expectCorrupt(good.buffer); // an ArrayBuffer, not a Uint8Array
    expectCorrupt(Array.from(good));
    expectCorrupt(null);
    expectCorrupt(undefined);
  });

  it('truncated at any length', () => {
    for (const len of [0, 1, 64, 127, 128, 129, 200, good.length - 1]) expectCorrupt(good.slice(0, len));
    fc.assert(
      fc.property(fc.integer({ min: 0, max: good.length - 1 }), (len) => {
        expectCorrupt(good.slice(0, len));
      }),
      { seed: 601, numRuns: 200 },
    );
  });

  it('with bytes appended', () => {
    const longer = new Uint8Array(good.length + 1);
    longer.set(good);
    expectCorrupt(longer);
    const doubled = new Uint8Array(good.length * 2);
    doubled.set(good);
    doubled.set(good, good.length);
    expectCorrupt(doubled);
  });

  it('every single header byte flipped', () => {
    for (let i = 0; i < 128; i++) {
      const bad = good.slice();
      bad[i] ^= 0x01;
      expectCorrupt(bad);
      bad[i] ^= 0x81;
      expectCorrupt(bad);
    }
  });

  it('one flipped byte at random positions (property)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: good.length - 1 }), fc.integer({ min: 1, max: 255 }), (pos, mask) => {
        const bad = good.slice();
        bad[pos] ^= mask;
        expectCorrupt(bad);
      }),
      { seed: 602, numRuns: 500 },
    );
  });

  it('random garbage of any length, with and without a valid magic and version', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 0, maxLength: 4096 }), fc.boolean(), (junk, withMagic) => {
        const bytes = junk.slice();
        if (withMagic && bytes.length >= 8) {
          bytes.set(good.subarray(0, 8)); // "VDBI" + version
        }
        expectCorrupt(bytes);
      }),
      { seed: 603, numRuns: 300 },
    );
    // The header of a valid index in front of garbage sections.
    const r = mulberry32(6);
    const bad = good.slice();
    for (let i = 128; i < bad.length; i++) bad[i] = Math.floor(r() * 256);
    expectCorrupt(bad);
  });

  it('a header from one index with the sections of another', () => {
    const other = build('l2', 200, 17, 2); // same seed and shape, other vectors
    removeRandom(other, 10, 5);
    const ob = other.save();
    expect(ob.length).toBe(good.length);
    const mixed = good.slice();
    mixed.set(ob.subarray(128), 128);
    expectCorrupt(mixed);
  });

  it('after all the refusals the original and a clean load still work', () => {
    const errors: VdbError[] = [];
    for (let i = 0; i < 50; i++) {
      const bad = good.slice();
      bad[(i * 997) % bad.length] ^= 0xff;
      try {
        WasmIndex.load(bad);
      } catch (e) {
        errors.push(e as VdbError);
      }
    }
    expect(errors.length).toBe(50);
    for (const e of errors) expect(e.code).toBe(ErrorCode.CORRUPT_INDEX);
    expectSame(original, WasmIndex.load(good));
  });
});

// ---------------------------------------------------------------------------
// Bytes with valid checksums but a broken structure. The checksum is not a
// defence against a crafted or hash-colliding file, so load must also check the
// structure ("every link and offset") or at least never let a later call trap.
// `reseal` recomputes both checksums the way the snapshot format defines them
// (see assembly/serialize.ts); the first test proves it reproduces real saves.

const MASK64 = (1n << 64n) - 1n;
const rotl64 = (x: bigint, r: number) => ((x << BigInt(r)) | (x >> BigInt(64 - r))) & MASK64;
const mix64 = (h: bigint, w: bigint) => (rotl64(h ^ ((w * 0x9e3779b97f4a7c15n) & MASK64), 31) * 0xc2b2ae3d27d4eb4fn) & MASK64;

function hashRange(h: bigint, b: Uint8Array, off: number, n: number): bigint {
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const end8 = off + (n & ~7);
  let i = off;
  for (; i < end8; i += 8) h = mix64(h, dv.getBigUint64(i, true));
  for (; i < off + n; i++) h = mix64(h, BigInt(b[i]));
  return mix64(h, BigInt(n));
}

interface Geometry {
  slots: number;
  recSize: number;
  entry: number;
  flags: number; // byte offset of the flags section
  level0: number; // byte offset of the level-0 records
  arena: number; // byte offset of the upper-level arena
  arenaLen: number;
}

function geometry(b: Uint8Array): Geometry {
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const slots = dv.getUint32(32, true);
  const recSize = dv.getUint32(64, true);
  const flags = 128 + 128;
  const level0 = flags + slots;
  return { slots, recSize, entry: dv.getInt32(52, true), flags, level0, arena: level0 + slots * recSize, arenaLen: dv.getUint32(60, true) };
}

function reseal(b: Uint8Array): Uint8Array {
  const g = geometry(b);
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  let h = 0x243f6a8885a308d3n;
  let off = 128;
  for (const n of [128, g.slots, g.slots * g.recSize, g.arenaLen]) {
    h = hashRange(h, b, off, n);
    off += n;
  }
  dv.setBigUint64(72, h, true);
  dv.setBigUint64(120, hashRange(0x13198a2e03707344n, b, 0, 120), true);
  return b;
}

/**
 * Uses a loaded index every way there is. Any error must be a VdbError; a
 * WebAssembly trap (RuntimeError) fails the test. Slots returned must be live.
 */
function exercise(index: WasmIndex, probes: Float32Array[]): void {
  const guard = (what: string, fn: () => void) => {
    try {
      fn();
    } catch (e) {
      if (!(e instanceof VdbError)) throw new Error(`${what}: ${(e as Error).constructor.name}: ${(e as Error).message}`);
    }
  };
  const live = (r: { ids: Uint32Array }) => {
    for (const s of r.ids) if (!index.has(s)) throw new Error(`search returned slot ${s}, which is not live`);
  };
  for (const q of probes) {
    guard('search', () => live(index.search(q, 10, { ef: 64 })));
    guard('searchExact', () => live(index.searchExact(q, 10)));
  }
  guard('add', () => {
    for (const v of probes) index.add(v);
  });
  guard('remove', () => {
    for (let s = 0; s < index.slots; s += 5) if (index.has(s)) index.remove(s);
  });
  guard('consolidate', () => index.consolidate());
  for (const q of probes) guard('search after churn', () => live(index.search(q, 10, { ef: 64 })));
  guard('save/load', () => {
    WasmIndex.load(index.save());
  });
}

describe('load refuses structurally broken bytes with valid checksums', () => {
  const dim = 8;
  const m = clusterModel({ dim, clusters: 4, seed: 77 });
  const vectors = rowsOf(m.sample(200, 1), dim);
  const probes = rowsOf(m.sample(20, 2), dim);

  function snapshot(): { bytes: Uint8Array; free: number[] } {
    const index = WasmIndex.create({ dim, m: 4, efConstruction: 16, seed: 3 });
    index.addBatch(vectors);
    const gone = Array.from({ length: 30 }, (_, i) => i * 3);
    for (const s of gone) index.remove(s); // the first 20 get consolidated (free), 10 stay tombstones
    const bytes = index.save();
    const g = geometry(bytes);
    const free = gone.filter((s) => bytes[g.flags + s] === 2);
    expect(free.length).toBeGreaterThan(0);
    return { bytes, free };
  }

  it('reseal reproduces the checksums of real snapshots (the helper is right)', () => {
    const { bytes } = snapshot();
    expect(Buffer.compare(reseal(bytes.slice()), bytes)).toBe(0);
    const other = build('cosine', 300).save();
    expect(Buffer.compare(reseal(other.slice()), other)).toBe(0);
  });

  it('obviously invalid structure is refused: link past the end, list too long, bad flag, bad entry', () => {
    const { bytes } = snapshot();
    const g = geometry(bytes);
    const liveSlot = 1;
    const edits: [string, (b: Uint8Array, dv: DataView) => void][] = [
      ['level-0 link ≥ slots', (_, dv) => dv.setUint32(g.level0 + liveSlot * g.recSize + 16, g.slots + 5, true)],
      ['level-0 count > 2M', (_, dv) => dv.setUint32(g.level0 + liveSlot * g.recSize + 12, 9, true)],
      ['unknown flag value', (b) => (b[g.flags + liveSlot] = 7)],
      ['entry past the end', (_, dv) => dv.setInt32(52, g.slots, true)],
      ['live count off by one', (_, dv) => dv.setUint32(36, dv.getUint32(36, true) + 1, true)],
      ['level above maxLevel', (_, dv) => dv.setInt32(g.level0 + liveSlot * g.recSize, 40, true)],
    ];
    for (const [what, edit] of edits) {
      const b = bytes.slice();
      edit(b, new DataView(b.buffer));
      const e = expectVdbError(() => WasmIndex.load(reseal(b)), ErrorCode.CORRUPT_INDEX);
      expect(e.message, what).toBeTruthy();
    }
  });

  it('live nodes linking to a free slot: refused, or at least never returned and never a trap', () => {
    const { bytes, free } = snapshot();
    const g = geometry(bytes);
    const b = bytes.slice();
    const dv = new DataView(b.buffer);
    const target = free[0];
    // The free slot's stale list gets a garbage count; every live node's first link points at it.
    dv.setUint32(g.level0 + target * g.recSize + 12, 0x00ffffff, true);
    for (let s = 0; s < g.slots; s++) if (b[g.flags + s] === 0) dv.setUint32(g.level0 + s * g.recSize + 16, target, true);
    let index: WasmIndex;
    try {
      index = WasmIndex.load(reseal(b));
    } catch (e) {
      expect(e).toBeInstanceOf(VdbError);
      expect((e as VdbError).code).toBe(ErrorCode.CORRUPT_INDEX);
      return;
    }
    exercise(index, [vectors[target], ...probes]);
  });

  it('a level-0 node whose record claims level 1 (aliasing another node\'s upper block): refused, or no trap', () => {
    const { bytes } = snapshot();
    const g = geometry(bytes);
    const dv0 = new DataView(bytes.buffer);
    const level = (s: number) => dv0.getInt32(g.level0 + s * g.recSize, true);
    // Every live node of level 0 (their upper-arena offset field is 0), one at a time.
    const candidates = Array.from({ length: g.slots }, (_, s) => s).filter((s) => bytes[g.flags + s] === 0 && level(s) === 0);
    expect(candidates.length).toBeGreaterThan(50);
    for (const victim of candidates) {
      const b = bytes.slice();
      const dv = new DataView(b.buffer);
      expect(dv.getUint32(g.level0 + victim * g.recSize + 4, true)).toBe(0);
      dv.setInt32(g.level0 + victim * g.recSize, 1, true);
      let index: WasmIndex;
      try {
        index = WasmIndex.load(reseal(b));
      } catch (e) {
        expect(e).toBeInstanceOf(VdbError);
        expect((e as VdbError).code).toBe(ErrorCode.CORRUPT_INDEX);
        continue;
      }
      try {
        exercise(index, probes);
      } catch (e) {
        throw new Error(`slot ${victim} claiming level 1: ${(e as Error).message}`);
      }
    }
  });

  it('one flipped section byte with resealed checksums: refused, or usable without traps (property)', () => {
    const { bytes } = snapshot();
    fc.assert(
      fc.property(fc.integer({ min: 256, max: bytes.length - 1 }), fc.integer({ min: 1, max: 255 }), (pos, mask) => {
        const b = bytes.slice();
        b[pos] ^= mask;
        let index: WasmIndex;
        try {
          index = WasmIndex.load(reseal(b));
        } catch (e) {
          expect(e).toBeInstanceOf(VdbError);
          expect((e as VdbError).code).toBe(ErrorCode.CORRUPT_INDEX);
          return;
        }
        exercise(index, probes);
      }),
      { seed: 604, numRuns: 600 },
    );
  });
});
