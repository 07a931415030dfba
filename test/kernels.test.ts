// The exported distance kernels, called through the raw ABI (no loader): the SIMD
// kernels must agree with the scalar reference and with a float64 computation,
// within a tolerance relative to the magnitudes of the terms, for every
// dimension 1..2048 (so every SIMD tail length is exercised).

import { readFileSync } from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { mulberry32 } from './helpers.js';
import type { CoreExports } from '../ts/core/abi.js';

type KernelExports = CoreExports;

const SCRATCH_FLOATS = 16384;
const WASM = new URL('../build/vdb.wasm', import.meta.url);

async function rawInstance(): Promise<KernelExports> {
  const bytes = readFileSync(WASM);
  const { instance } = await WebAssembly.instantiate(bytes, {
    env: {
      abort() {
        throw new Error('abort');
      },
    },
  });
  return instance.exports as unknown as KernelExports;
}

let w: KernelExports;

beforeAll(async () => {
  w = await rawInstance();
  // The kernel properties below test arithmetic, not memory sizing (which has
  // its own test): make sure the whole scratch area is backed by memory.
  const need = w.scratch_ptr() + SCRATCH_FLOATS * 4;
  const have = w.memory.buffer.byteLength;
  if (need > have) w.memory.grow(Math.ceil((need - have) / 65536));
});

/** Writes a and b into the scratch area (b right after a, or at bOffset floats). */
function place(a: ArrayLike<number>, b: ArrayLike<number>, bOffset = a.length): [number, number] {
  const p = w.scratch_ptr();
  expect(p % 4).toBe(0);
  const f = new Float32Array(w.memory.buffer, p, SCRATCH_FLOATS);
  f.set(a, 0);
  f.set(b, bOffset);
  return [p, p + bOffset * 4];
}

interface Ref {
  value: number; // exact-ish float64 value of the sum
  magnitude: number; // sum of |term|
}

function l2Ref(a: Float32Array, b: Float32Array): Ref {
  let s = 0;
  for (let i = 0; i < a.length; i++) {
    const d = a[i] - b[i];
    s += d * d;
  }
  return { value: s, magnitude: s };
}

function dotRef(a: Float32Array, b: Float32Array): Ref {
  let s = 0;
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    const t = a[i] * b[i];
    s += t;
    m += Math.abs(t);
  }
  return { value: s, magnitude: m };
}

/** Relative tolerance on the magnitude of the terms, plus a few subnormal ulps per term. */
function tol(ref: Ref, n: number): number {
  return 1e-5 * ref.magnitude + (n + 4) * 2 ** -149 * 4;
}

function checkAll(a: Float32Array, b: Float32Array, bOffset?: number): void {
  const n = a.length;
  const [pa, pb] = place(a, b, bOffset);
  const l2 = w.kernel_l2sq(pa, pb, n);
  const l2s = w.kernel_l2sq_scalar(pa, pb, n);
  const dot = w.kernel_dot(pa, pb, n);
  const dots = w.kernel_dot_scalar(pa, pb, n);
  const rl = l2Ref(a, b);
  const rd = dotRef(a, b);
  for (const v of [l2, l2s, dot, dots]) expect(Number.isFinite(v)).toBe(true);
  const tl = tol(rl, n);
  const td = tol(rd, n);
  const ctx = `n=${n}`;
  expect(Math.abs(l2 - l2s), `l2 simd vs scalar, ${ctx}`).toBeLessThanOrEqual(tl);
  expect(Math.abs(l2 - rl.value), `l2 simd vs f64, ${ctx}`).toBeLessThanOrEqual(tl);
  expect(Math.abs(l2s - rl.value), `l2 scalar vs f64, ${ctx}`).toBeLessThanOrEqual(tl);
  expect(Math.abs(dot - dots), `dot simd vs scalar, ${ctx}`).toBeLessThanOrEqual(td);
  expect(Math.abs(dot - rd.value), `dot simd vs f64, ${ctx}`).toBeLessThanOrEqual(td);
  expect(Math.abs(dots - rd.value), `dot scalar vs f64, ${ctx}`).toBeLessThanOrEqual(td);
  // A sum of squares is never negative.
  expect(l2).toBeGreaterThanOrEqual(0);
  expect(l2s).toBeGreaterThanOrEqual(0);
}

/** Seeded vectors: `mode` picks the value distribution. */
function vectors(n: number, seed: number, mode: number, scale: number): [Float32Array, Float32Array] {
  const r = mulberry32(seed);
  const a = new Float32Array(n);
  const b = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    switch (mode) {
      case 0: // uniform at one scale
        a[i] = (r() * 2 - 1) * scale;
        b[i] = (r() * 2 - 1) * scale;
        break;
      case 1: {
        // every component its own magnitude, 1e-15 .. 1e15
        const s = 10 ** (r() * 30 - 15);
        a[i] = (r() * 2 - 1) * s;
        b[i] = (r() * 2 - 1) * s;
        break;
      }
      case 2: // b is a small perturbation of a (catastrophic cancellation in a − b)
        a[i] = (r() * 2 - 1) * scale;
        b[i] = a[i] * (1 + (r() - 0.5) * 1e-3);
        break;
      default: // sparse: mostly zeros
        a[i] = r() < 0.1 ? (r() * 2 - 1) * scale : 0;
        b[i] = r() < 0.1 ? (r() * 2 - 1) * scale : 0;
    }
  }
  return [a, b];
}

describe('distance kernels', () => {
  it('the scratch area of 16384 f32 is inside memory on a fresh instance', async () => {
    const fresh = await rawInstance();
    const p = fresh.scratch_ptr();
    expect(p).toBeGreaterThan(0);
    expect(p + SCRATCH_FLOATS * 4).toBeLessThanOrEqual(fresh.memory.buffer.byteLength);
  });

  it('all-zero vectors give exactly 0 for every dimension 1..2048', () => {
    for (let n = 1; n <= 2048; n++) {
      const z = new Float32Array(n);
      const [pa, pb] = place(z, z);
      expect(w.kernel_l2sq(pa, pb, n)).toBe(0);
      expect(w.kernel_l2sq_scalar(pa, pb, n)).toBe(0);
      expect(w.kernel_dot(pa, pb, n)).toBe(0);
      expect(w.kernel_dot_scalar(pa, pb, n)).toBe(0);
    }
  });

  it('l2sq of a vector with itself is exactly 0; n = 0 gives 0', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 2048 }), fc.integer(), fc.constantFrom(1e-15, 1, 1e15), (n, seed, scale) => {
        const [a] = vectors(n, seed, 0, scale);
        const [pa, pb] = place(a, a);
        expect(w.kernel_l2sq(pa, pb, n)).toBe(0);
        expect(w.kernel_l2sq_scalar(pa, pb, n)).toBe(0);
      }),
      { seed: 101, numRuns: 100 },
    );
    const p = w.scratch_ptr();
    expect(w.kernel_l2sq(p, p, 0)).toBe(0);
    expect(w.kernel_dot(p, p, 0)).toBe(0);
  });

  it('small integers: every kernel is exact (catches any dropped or repeated element)', () => {
    // |a_i|, |b_i| ≤ 32 and n ≤ 2048 keep every partial sum below 2^24, so float32 is exact.
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 2048 }), fc.integer(), (n, seed) => {
        const r = mulberry32(seed);
        const a = new Float32Array(n);
        const b = new Float32Array(n);
        for (let i = 0; i < n; i++) {
          a[i] = Math.floor(r() * 65) - 32;
          b[i] = Math.floor(r() * 65) - 32;
        }
        const [pa, pb] = place(a, b);
        const rl = l2Ref(a, b).value;
        const rd = dotRef(a, b).value;
        expect(w.kernel_l2sq(pa, pb, n)).toBe(rl);
        expect(w.kernel_l2sq_scalar(pa, pb, n)).toBe(rl);
        expect(w.kernel_dot(pa, pb, n)).toBe(rd);
        expect(w.kernel_dot_scalar(pa, pb, n)).toBe(rd);
      }),
      { seed: 102, numRuns: 300 },
    );
  });

  it('each dimension 1..80 with a single non-zero component at every position', () => {
    // Every position of every tail must be read: a one-hot difference isolates it.
    for (let n = 1; n <= 80; n++) {
      for (let j = 0; j < n; j++) {
        const a = new Float32Array(n);
        const b = new Float32Array(n);
        a[j] = 3;
        b[j] = 5;
        const [pa, pb] = place(a, b);
        expect(w.kernel_l2sq(pa, pb, n)).toBe(4);
        expect(w.kernel_l2sq_scalar(pa, pb, n)).toBe(4);
        expect(w.kernel_dot(pa, pb, n)).toBe(15);
        expect(w.kernel_dot_scalar(pa, pb, n)).toBe(15);
      }
    }
  });

  it('kernels do not read past n', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 2047 }), (n) => {
        const a = new Float32Array(n + 1).fill(1);
        const b = new Float32Array(n + 1).fill(2);
        a[n] = 1e6; // the element after the end must not count
        b[n] = -1e6;
        const [pa, pb] = place(a, b);
        expect(w.kernel_l2sq(pa, pb, n)).toBe(n);
        expect(w.kernel_l2sq_scalar(pa, pb, n)).toBe(n);
        expect(w.kernel_dot(pa, pb, n)).toBe(2 * n);
        expect(w.kernel_dot_scalar(pa, pb, n)).toBe(2 * n);
      }),
      { seed: 103, numRuns: 200 },
    );
  });

  it('SIMD = scalar = float64 within a relative tolerance, seeded data at many scales', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 2048 }),
        fc.integer(),
        fc.integer({ min: 0, max: 3 }),
        fc.constantFrom(1e-15, 1e-6, 1, 1e3, 1e8, 1e15, -1e15),
        (n, seed, mode, scale) => {
          const [a, b] = vectors(n, seed, mode, Math.abs(scale));
          checkAll(a, b);
        },
      ),
      { seed: 104, numRuns: 400 },
    );
  });

  it('SIMD = scalar = float64 for arbitrary float32 components (fast-check floats)', () => {
    const comp = fc.float({ min: Math.fround(-1e15), max: Math.fround(1e15), noNaN: true, noDefaultInfinity: true });
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 600 }).chain((n) =>
          fc.tuple(fc.float32Array({ minLength: n, maxLength: n, min: Math.fround(-1e15), max: Math.fround(1e15), noNaN: true, noDefaultInfinity: true }), fc.array(comp, { minLength: n, maxLength: n })),
        ),
        ([a, bArr]) => {
          checkAll(a, Float32Array.from(bArr));
        },
      ),
      { seed: 105, numRuns: 300 },
    );
  });

  it('unaligned second operand and the far end of the scratch area', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 2048 }), fc.integer(), fc.integer({ min: 2048, max: SCRATCH_FLOATS - 2048 }), (n, seed, off) => {
        const [a, b] = vectors(n, seed, 0, 10);
        checkAll(a, b, off);
      }),
      { seed: 106, numRuns: 150 },
    );
    // Both vectors of the largest size that fits: 8192 + 8192 floats.
    const [a, b] = vectors(8192, 7, 0, 1);
    checkAll(a, b, 8192);
  });

  it('large magnitudes (±1e15 .. ±1e17) stay finite and agree', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 2048 }), fc.integer(), fc.constantFrom(1e15, 1e16, 1e17), (n, seed, scale) => {
        const r = mulberry32(seed);
        const a = new Float32Array(n);
        const b = new Float32Array(n);
        for (let i = 0; i < n; i++) {
          a[i] = (r() < 0.5 ? -1 : 1) * scale * (0.5 + r());
          b[i] = (r() < 0.5 ? -1 : 1) * scale * (0.5 + r());
        }
        checkAll(a, b);
      }),
      { seed: 107, numRuns: 100 },
    );
  });
});
