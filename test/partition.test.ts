// Partitioners: the id hash and jump consistent hash (against values from an
// independent C implementation, and the move-only-to-the-new-bucket property),
// the spatial kd tree (every vector in exactly one leaf box, exact routing
// never misses a true top-k neighbour, balanced leaves, JSON round trip), and
// the semantic label partitioner (placement and filter routing agree).

import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import {
  HashPartitioner,
  SemanticPartitioner,
  SpatialPartitioner,
  fmix64,
  fnv1a64,
  hashId,
  idBytes,
  jumpHash,
  labelKey,
  partitionerFromJSON,
  shardOfPoint,
  shardsForId,
  shardsForSearch,
} from '../ts/partition/index.js';
import type { Partitioner, SpatialNode } from '../ts/partition/index.js';
import { compileFilter } from '../ts/filter.js';
import type { Metric } from '../ts/index.js';
import { clusterModel, expectVdbError, gaussian, mulberry32, randInt, row } from './helpers.js';

const SEED = 0x5eed;
const METRICS: Metric[] = ['l2', 'cosine', 'ip'];

const range = (n: number): number[] => Array.from({ length: n }, (_, i) => i);

// ------------------------------------------------------------------ hashing

describe('hashId', () => {
  it('is FNV-1a 64 (published test vectors) finished with fmix64', () => {
    const bytes = (s: string) => new TextEncoder().encode(s);
    expect(fnv1a64(bytes(''))).toBe(0xcbf29ce484222325n);
    expect(fnv1a64(bytes('a'))).toBe(0xaf63dc4c8601ec8cn);
    expect(fnv1a64(bytes('foobar'))).toBe(0x85944171f73967e8n);
    expect(fmix64(0n)).toBe(0n);
  });

  it('matches values computed by an independent C implementation (stability of placement)', () => {
    // [id, hashId(id), jumpHash(hashId(id), 16)], from a C program using
    // uint64_t arithmetic over the documented byte encoding.
    const golden: [number | string, bigint, number][] = [
      [0, 0xbfcb1a2fdd1fff6fn, 5],
      [1, 0xfead53f7dfcabe65n, 4],
      [-1, 0x9ff811618b11c6f3n, 3],
      [9007199254740991, 0x693e649c3d6a8ce4n, 9],
      [-9007199254740991, 0xdd0a68b647d2582an, 6],
      [4294967296, 0x9d1f602cefa79592n, 15],
      ['1', 0x788b0452264ba78bn, 11],
      ['a', 0x9ed1dd64816f20d6n, 4],
      ['héllo', 0xfa64af0666b14f56n, 7],
      ['😀', 0x5c6ad8f4cd45cdb6n, 0],
    ];
    for (const [id, h, shard] of golden) {
      expect(hashId(id), String(id)).toBe(h);
      expect(jumpHash(h, 16)).toBe(shard);
      expect(new HashPartitioner(16).shardOf(id)).toBe(shard);
    }
  });

  it('keeps integers and strings apart', () => {
    expect(hashId(1)).not.toBe(hashId('1'));
    fc.assert(
      fc.property(fc.maxSafeInteger(), (n) => {
        expect(hashId(n)).not.toBe(hashId(String(n)));
      }),
      { seed: SEED, numRuns: 300 },
    );
  });

  it('hashes exactly the documented bytes (UTF-8, lone surrogates as U+FFFD; int64 little-endian)', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 400 }), (s) => {
        const expected = new Uint8Array([2, ...Buffer.from(s, 'utf8')]);
        expect(idBytes(s)).toEqual(expected);
        expect(hashId(s)).toBe(fmix64(fnv1a64(expected)));
      }),
      { seed: SEED, numRuns: 300 },
    );
    fc.assert(
      fc.property(fc.maxSafeInteger(), (n) => {
        const expected = new Uint8Array(9);
        expected[0] = 1;
        new DataView(expected.buffer).setBigInt64(1, BigInt(n), true);
        expect(idBytes(n)).toEqual(expected);
        expect(hashId(n)).toBe(fmix64(fnv1a64(expected)));
      }),
      { seed: SEED, numRuns: 300 },
    );
    // A long id after a short one reuses and grows the scratch buffer correctly.
    const long = 'x'.repeat(5000) + 'é';
    expect(hashId(long)).toBe(fmix64(fnv1a64(new Uint8Array([2, ...Buffer.from(long, 'utf8')]))));
    expect(hashId('a')).toBe(0x9ed1dd64816f20d6n);
  });

  it('refuses what is not an id', () => {
    for (const bad of [1.5, NaN, Infinity, 2 ** 53, null, undefined, {}, [1], true, 10n]) {
      expectVdbError(() => hashId(bad as unknown as number), 'INVALID_ID');
    }
  });
});

describe('jumpHash', () => {
  it('matches the reference C implementation', () => {
    const buckets = [1, 2, 3, 10, 100, 1000, 65536, 2147483647];
    const golden: [bigint, number[]][] = [
      [0n, [0, 0, 0, 0, 0, 0, 0, 0]],
      [1n, [0, 0, 0, 6, 55, 549, 21134, 262355607]],
      [2n, [0, 0, 0, 6, 62, 338, 3927, 736532115]],
      [3735928559n, [0, 1, 2, 5, 87, 285, 64244, 1452406526]],
      [18446744073709551615n, [0, 1, 2, 9, 92, 313, 18311, 699554662]],
      [1311768467463790320n, [0, 0, 2, 4, 33, 399, 55019, 267021293]],
      [42n, [0, 1, 2, 2, 43, 571, 5747, 1603940301]],
    ];
    for (const [key, expected] of golden) expect(buckets.map((n) => jumpHash(key, n)), String(key)).toEqual(expected);
  });

  it('is deterministic and in range', () => {
    fc.assert(
      fc.property(fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }), fc.integer({ min: 1, max: 0x7fffffff }), (key, n) => {
        const j = jumpHash(key, n);
        expect(Number.isInteger(j)).toBe(true);
        expect(j).toBeGreaterThanOrEqual(0);
        expect(j).toBeLessThan(n);
        expect(jumpHash(key, n)).toBe(j);
      }),
      { seed: SEED, numRuns: 500 },
    );
  });

  it('moves a key from n to n + 1 buckets only to the new bucket', () => {
    fc.assert(
      fc.property(fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }), fc.integer({ min: 1, max: 5000 }), (key, n) => {
        const before = jumpHash(key, n);
        const after = jumpHash(key, n + 1);
        expect(after === before || after === n).toBe(true);
      }),
      { seed: SEED, numRuns: 2000 },
    );
    // And along a whole growth sequence for a few keys.
    for (let i = 0; i < 20; i++) {
      const key = hashId(i);
      let prev = 0;
      for (let n = 2; n <= 300; n++) {
        const cur = jumpHash(key, n);
        expect(cur === prev || cur === n - 1).toBe(true);
        prev = cur;
      }
    }
  });

  it('moves about 1/(n + 1) of the keys, and spreads them evenly', () => {
    const KEYS = 20_000;
    const keys = range(KEYS).map((i) => hashId(i % 2 ? i : `key-${i}`));
    for (const n of [1, 2, 3, 4, 7, 10, 16, 31, 100]) {
      let moved = 0;
      for (const key of keys) {
        const a = jumpHash(key, n);
        const b = jumpHash(key, n + 1);
        if (a !== b) {
          expect(b).toBe(n);
          moved++;
        }
      }
      const p = 1 / (n + 1);
      const tolerance = 5 * Math.sqrt((p * (1 - p)) / KEYS) + 0.001;
      expect(Math.abs(moved / KEYS - p), `n = ${n}: moved ${moved}`).toBeLessThan(tolerance);
    }
    const counts = new Array<number>(10).fill(0);
    for (const key of keys) counts[jumpHash(key, 10)]++;
    for (const c of counts) expect(Math.abs(c - KEYS / 10)).toBeLessThan(0.1 * (KEYS / 10));
  });

  it('refuses a bad bucket count', () => {
    for (const bad of [0, -1, 1.5, NaN, 2 ** 31]) expectVdbError(() => jumpHash(1n, bad), 'INVALID_ARGUMENT');
  });
});

describe('HashPartitioner', () => {
  it('places ids in range, asks every shard, and round-trips', () => {
    const p = new HashPartitioner(7);
    fc.assert(
      fc.property(fc.oneof(fc.maxSafeInteger(), fc.string({ minLength: 1 })), (id) => {
        const s = p.shardOf(id);
        expect(s).toBeGreaterThanOrEqual(0);
        expect(s).toBeLessThan(7);
        expect(s).toBe(jumpHash(hashId(id), 7));
      }),
      { seed: SEED, numRuns: 200 },
    );
    expect(p.shardsFor({ a: 1 })).toEqual(range(7));
    const back = partitionerFromJSON(JSON.parse(JSON.stringify(p)));
    expect(back).toBeInstanceOf(HashPartitioner);
    expect(back.toJSON()).toEqual({ kind: 'hash', shards: 7 });
    for (const bad of [0, 1.5, -2, 70000, '3', undefined]) expectVdbError(() => new HashPartitioner(bad as number), 'INVALID_PARTITIONER');
    expectVdbError(() => partitionerFromJSON({ kind: 'hash' }), 'INVALID_PARTITIONER');
  });

  it('a split moves about half of one shard to the new last shard and nothing else; splits round-trip', () => {
    const ids = Array.from({ length: 6000 }, (_, i) => (i % 2 ? `id-${i}` : i));
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 6 }), fc.array(fc.nat(), { minLength: 1, maxLength: 4 }), (n, picks) => {
        let p = new HashPartitioner(n);
        for (const pick of picks) {
          const shard = pick % p.shards;
          const next = p.split(shard);
          expect(next.shards).toBe(p.shards + 1);
          let moved = 0;
          let before = 0;
          for (const id of ids) {
            const a = p.shardOf(id);
            const b = next.shardOf(id);
            if (a === shard) before++;
            if (a !== b) {
              expect(a, `only ids of shard ${shard} move`).toBe(shard);
              expect(b, 'they move to the new shard').toBe(p.shards);
              moved++;
            }
          }
          if (before >= 200) {
            expect(moved / before).toBeGreaterThan(0.4);
            expect(moved / before).toBeLessThan(0.6);
          }
          const back = partitionerFromJSON(JSON.parse(JSON.stringify(next))) as HashPartitioner;
          expect(back.toJSON()).toEqual(next.toJSON());
          for (const id of ids.slice(0, 300)) expect(back.shardOf(id)).toBe(next.shardOf(id));
          p = next;
        }
      }),
      { seed: SEED, numRuns: 25 },
    );
    expect(new HashPartitioner(3).split(1).toJSON()).toEqual({ kind: 'hash', shards: 4, splits: [{ shard: 1, into: 3 }] });
    expectVdbError(() => partitionerFromJSON({ kind: 'hash', shards: 3, splits: [{ shard: 2, into: 2 }] }), 'INVALID_PARTITIONER');
    expectVdbError(() => partitionerFromJSON({ kind: 'hash', shards: 3, splits: [{ shard: 5, into: 2 }] }), 'INVALID_PARTITIONER');
    expectVdbError(() => partitionerFromJSON({ kind: 'hash', shards: 3, splits: 'x' }), 'INVALID_PARTITIONER');
  });
});

// ------------------------------------------------------------------ spatial

function gaussianSample(n: number, dim: number, seed: number): Float32Array {
  const g = gaussian(mulberry32(seed));
  const out = new Float32Array(n * dim);
  for (let i = 0; i < out.length; i++) out[i] = g();
  return out;
}

/** Small integers: many ties and identical rows, to exercise degenerate splits. */
function quantisedSample(n: number, dim: number, seed: number): Float32Array {
  const r = mulberry32(seed);
  const out = new Float32Array(n * dim);
  for (let i = 0; i < out.length; i++) out[i] = randInt(r, 3) - 1;
  return out;
}

/** What the partitioner routes: for cosine the vector over its norm, rounded to float32. */
function routed(metric: Metric, v: ArrayLike<number>): Float32Array {
  const out = Float32Array.from(v);
  if (metric !== 'cosine') return out;
  let sq = 0;
  for (let i = 0; i < v.length; i++) sq += v[i] * v[i];
  const norm = Math.sqrt(sq);
  for (let i = 0; i < v.length; i++) out[i] = norm > 0 ? v[i] / norm : 0;
  return out;
}

/** Half-open containment: min ≤ x < max in every dimension. */
function inBox(box: { min: Float64Array; max: Float64Array }, v: ArrayLike<number>): boolean {
  for (let i = 0; i < v.length; i++) if (!(v[i] >= box.min[i] && v[i] < box.max[i])) return false;
  return true;
}

function depthOf(node: SpatialNode): number {
  return 'leaf' in node ? 0 : 1 + Math.max(depthOf(node.lo), depthOf(node.hi));
}

/** The collection's score of x for query q (L2 distance, cosine similarity, inner product), in float64. */
function score(metric: Metric, q: ArrayLike<number>, x: ArrayLike<number>): number {
  let dot = 0;
  let qq = 0;
  let xx = 0;
  let sq = 0;
  for (let i = 0; i < q.length; i++) {
    dot += q[i] * x[i];
    qq += q[i] * q[i];
    xx += x[i] * x[i];
    sq += (q[i] - x[i]) ** 2;
  }
  if (metric === 'l2') return Math.sqrt(sq);
  if (metric === 'ip') return dot;
  return dot / (Math.sqrt(qq) * Math.sqrt(xx));
}

const f32 = new Float32Array(1);
const i32 = new Int32Array(f32.buffer);

/** The float32 next to `x` (a float32) towards +Infinity (up) or −Infinity. */
function nextF32(x: number, up: boolean): number {
  if (x === 0) return up ? 1e-45 : -1e-45;
  f32[0] = x;
  i32[0] += (x > 0) === up ? 1 : -1;
  return f32[0];
}

/**
 * The float32 point of a leaf's half-open box that scores best for `q`: for
 * l2 the clamp of q into the box, for ip the corner q points to (undefined
 * when that corner is at infinity). Its score is the box's own bound, up to
 * float32 rounding.
 */
function extremePoint(metric: Metric, q: ArrayLike<number>, box: { min: Float64Array; max: Float64Array }): Float32Array | undefined {
  const x = new Float32Array(q.length);
  for (let i = 0; i < q.length; i++) {
    const v = metric === 'ip' ? (q[i] > 0 ? box.max[i] : q[i] < 0 ? box.min[i] : 0) : Math.min(Math.max(q[i], box.min[i]), box.max[i]);
    if (!Number.isFinite(v)) return undefined;
    let c = Math.fround(v);
    while (c >= box.max[i]) c = nextF32(c, false);
    while (c < box.min[i]) c = nextF32(c, true);
    x[i] = c;
  }
  return x;
}

describe('SpatialPartitioner', () => {
  it('a leaf split moves only vectors of that leaf, to the new last leaf, about half of them; the tree round-trips', () => {
    fc.assert(
      fc.property(
        fc.record({ seed: fc.integer({ min: 1, max: 1e6 }), dim: fc.integer({ min: 1, max: 8 }), shards: fc.integer({ min: 1, max: 6 }), metric: fc.constantFrom(...METRICS) }),
        fc.nat(),
        ({ seed, dim, shards, metric }, pick) => {
          const sample = gaussianSample(shards * 60, dim, seed);
          const p = SpatialPartitioner.build(sample, dim, shards, metric);
          const shard = pick % shards;
          const probes = range(600).map((i) => row(gaussianSample(1, dim, seed * 7 + i), dim, 0));
          const mine = probes.filter((v) => p.shardOf(v) === shard);
          if (mine.length < 2) return;
          const flat = new Float32Array(mine.length * dim);
          mine.forEach((v, i) => flat.set(v, i * dim));
          const next = p.split(shard, flat);
          expect(next.shards).toBe(shards + 1);
          let moved = 0;
          for (const v of probes) {
            const a = p.shardOf(v);
            const b = next.shardOf(v);
            if (a !== b) {
              expect(a).toBe(shard);
              expect(b).toBe(shards);
              moved++;
            }
          }
          if (mine.length >= 40) {
            expect(moved / mine.length).toBeGreaterThan(0.3);
            expect(moved / mine.length).toBeLessThan(0.7);
          }
          const back = partitionerFromJSON(JSON.parse(JSON.stringify(next))) as SpatialPartitioner;
          for (const v of probes.slice(0, 50)) expect(back.shardOf(v)).toBe(next.shardOf(v));
        },
      ),
      { seed: SEED, numRuns: 40 },
    );
  });

  it('puts every vector in exactly one leaf, whose box contains it', () => {
    fc.assert(
      fc.property(
        fc.record({
          seed: fc.integer({ min: 1, max: 1e6 }),
          dim: fc.integer({ min: 1, max: 6 }),
          shards: fc.integer({ min: 1, max: 24 }),
          perShard: fc.integer({ min: 1, max: 12 }),
          metric: fc.constantFrom(...METRICS),
          quantised: fc.boolean(),
        }),
        ({ seed, dim, shards, perShard, metric, quantised }) => {
          const n = shards * perShard;
          const sample = quantised ? quantisedSample(n, dim, seed) : gaussianSample(n, dim, seed);
          const p = SpatialPartitioner.build(sample, dim, shards, metric);
          expect(p.boxes.length).toBe(shards);
          const r = mulberry32(seed + 1);
          const probes: Float32Array[] = [];
          for (let i = 0; i < n; i++) probes.push(row(sample, dim, i));
          probes.push(...range(30).map((i) => row(gaussianSample(1, dim, seed * 31 + i), dim, 0)));
          // Vectors on the split planes: coordinates taken from the leaves' finite bounds.
          for (let i = 0; i < 30; i++) {
            const v = new Float32Array(dim);
            for (let d = 0; d < dim; d++) {
              const box = p.boxes[randInt(r, shards)];
              const pick = r() < 0.5 ? box.min[d] : box.max[d];
              v[d] = Number.isFinite(pick) ? pick : r() * 4 - 2;
            }
            probes.push(v);
          }
          for (const v of probes) {
            const leaf = p.shardOf(v);
            const x = routed(metric, v);
            const holders = range(shards).filter((l) => inBox(p.boxes[l], x));
            expect(holders).toEqual([leaf]);
          }
          // Counts are what the routing of the sample gives.
          const counts = new Array<number>(shards).fill(0);
          for (let i = 0; i < n; i++) counts[p.shardOf(row(sample, dim, i))]++;
          expect(counts).toEqual(p.counts);
        },
      ),
      { seed: SEED, numRuns: 80 },
    );
  });

  it('extends the outer leaves to infinity', () => {
    const p = SpatialPartitioner.build(gaussianSample(400, 3, 7), 3, 5, 'l2');
    for (let d = 0; d < 3; d++) {
      expect(p.boxes.some((b) => b.min[d] === -Infinity)).toBe(true);
      expect(p.boxes.some((b) => b.max[d] === Infinity)).toBe(true);
    }
    expect(p.shardOf([1e30, -1e30, 1e30])).toBeGreaterThanOrEqual(0);
  });

  it('balances the sample across the leaves for any shard count', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 40 }), fc.integer({ min: 1, max: 1e6 }), fc.constantFrom<Metric>('l2', 'cosine'), (shards, seed, metric) => {
        const n = 3000;
        const dim = 12;
        const model = clusterModel({ dim, clusters: 8, seed, centerScale: 3 });
        const sample = model.sample(n, seed + 1);
        const p = SpatialPartitioner.build(sample, dim, shards, metric);
        const mean = n / shards;
        for (const c of p.counts) {
          expect(c).toBeGreaterThanOrEqual(mean / 1.25);
          expect(c).toBeLessThanOrEqual(mean * 1.25);
        }
        expect(p.counts.reduce((a, b) => a + b, 0)).toBe(n);
        expect(depthOf(p.toJSON().tree)).toBeLessThanOrEqual(Math.ceil(Math.log2(shards)));
      }),
      { seed: SEED, numRuns: 25 },
    );
  });

  it('keeps the tree shallow on badly tied data', () => {
    // Exponentially skewed small integers: most rows share a few values.
    const r = mulberry32(99);
    const n = 5000;
    const sample = new Float32Array(n * 2);
    for (let i = 0; i < sample.length; i++) sample[i] = Math.floor(-Math.log(1 - r()) * 1.5);
    const p = SpatialPartitioner.build(sample, 2, 1000, 'l2');
    expect(depthOf(p.toJSON().tree)).toBeLessThanOrEqual(40);
    const same = SpatialPartitioner.build(new Float32Array(64 * 3).fill(2), 3, 64, 'l2');
    expect(same.shardOf([2, 2, 2])).toBeGreaterThanOrEqual(0);
    expect(depthOf(same.toJSON().tree)).toBe(6);
  });

  it('exact routing with the true k-th score reaches the leaf of every true top-k neighbour', () => {
    let asked = 0;
    let possible = 0;
    let tight = 0;
    fc.assert(
      fc.property(
        fc.integer({ min: 2, max: 16 }),
        fc.integer({ min: 1, max: 1e6 }),
        fc.constantFrom(...METRICS),
        fc.integer({ min: 1, max: 20 }),
        (shards, seed, metric, k) => {
          const dim = 6;
          const n = 1200;
          const model = clusterModel({ dim, clusters: 10, seed, centerScale: 3, spread: 0.7 });
          const data = model.sample(n, seed + 1);
          const p = SpatialPartitioner.build(model.sample(600, seed + 2), dim, shards, metric);
          const leafOf = range(n).map((i) => p.shardOf(row(data, dim, i)));
          const queries = model.sample(8, seed + 3);
          const better = (a: number, b: number) => (metric === 'l2' ? a - b : b - a);
          for (let qi = 0; qi < 8; qi++) {
            const q = row(queries, dim, qi);
            const scored = range(n).map((i) => ({ i, s: score(metric, q, row(data, dim, i)) }));
            scored.sort((a, b) => better(a.s, b.s) || a.i - b.i);
            const kth = scored[k - 1].s;
            const route = p.exactRoute(q, kth);
            expect(new Set(route).size).toBe(route.length);
            const set = new Set(route);
            // Every point scoring at least as well as the k-th (ties included).
            for (const { i, s } of scored) {
              if (better(s, kth) > 0) break;
              expect(set.has(leafOf[i]), `${metric} q${qi}: point ${i} in leaf ${leafOf[i]} not routed`).toBe(true);
            }
            // The bound is tight: a point of a leaf's box as near the query as
            // the box allows (as good as possible, for ip) is reachable with its
            // own score, which is then (almost) the box's own bound.
            if (metric !== 'cosine') {
              for (let leaf = 0; leaf < shards; leaf++) {
                const x = extremePoint(metric, q, p.boxes[leaf]);
                if (x === undefined || p.shardOf(x) !== leaf) continue;
                expect(p.exactRoute(q, score(metric, q, x)), `${metric} q${qi}: leaf ${leaf} at its bound`).toContain(leaf);
                tight++;
              }
            }
            if (metric === 'l2') {
              asked += route.length;
              possible += shards;
            }
          }
        },
      ),
      { seed: SEED, numRuns: 36 },
    );
    // And it does prune: clustered data, small k.
    expect(asked).toBeLessThan(0.8 * possible);
    expect(tight).toBeGreaterThan(500);
  });

  it('exact routing for ip keeps an inner leaf exactly when its best corner reaches the k-th score', () => {
    // Low dimension, many leaves: some leaves are bounded on every side.
    const dim = 2;
    const shards = 64;
    const p = SpatialPartitioner.build(gaussianSample(64 * 40, dim, 5), dim, shards, 'ip');
    const queries = gaussianSample(40, dim, 6);
    let checked = 0;
    let pruned = 0;
    for (let qi = 0; qi < 40; qi++) {
      const q = row(queries, dim, qi);
      for (let leaf = 0; leaf < shards; leaf++) {
        const x = extremePoint('ip', q, p.boxes[leaf]);
        if (x === undefined) continue;
        expect(p.shardOf(x)).toBe(leaf);
        const s = score('ip', q, x);
        expect(p.exactRoute(q, s)).toContain(leaf);
        if (!p.exactRoute(q, s + 0.01 * Math.max(1, Math.abs(s))).includes(leaf)) pruned++;
        checked++;
      }
    }
    expect(checked).toBeGreaterThan(100);
    expect(pruned).toBe(checked);
  });

  it('exact routing of a non-finite k-th score, or a zero cosine query, asks every leaf', () => {
    const sample = gaussianSample(300, 4, 3);
    for (const metric of METRICS) {
      const p = SpatialPartitioner.build(sample, 4, 6, metric);
      expect([...p.exactRoute([1, 2, 3, 4], Infinity)].sort((a, b) => a - b)).toEqual(range(6));
      expect([...p.exactRoute([1, 2, 3, 4], -Infinity)].sort((a, b) => a - b)).toEqual(range(6));
    }
    const cos = SpatialPartitioner.build(sample, 4, 6, 'cosine');
    expect([...cos.exactRoute([0, 0, 0, 0], 0.99)].sort((a, b) => a - b)).toEqual(range(6));
  });

  it('routes to the nprobe nearest leaves, own leaf first', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 20 }), fc.integer({ min: 1, max: 25 }), fc.integer({ min: 1, max: 1e6 }), fc.constantFrom(...METRICS), (shards, nprobe, seed, metric) => {
        const dim = 5;
        const p = SpatialPartitioner.build(gaussianSample(shards * 20, dim, seed), dim, shards, metric);
        const queries = gaussianSample(5, dim, seed + 1);
        for (let qi = 0; qi < 5; qi++) {
          const q = row(queries, dim, qi);
          const route = p.route(q, { nprobe });
          expect(route.length).toBe(metric === 'ip' ? shards : Math.min(nprobe, shards));
          expect(new Set(route).size).toBe(route.length);
          expect(route[0]).toBe(p.shardOf(q));
          const d = p.distances(q);
          expect(d[route[0]]).toBe(0);
          for (let i = 2; i < route.length; i++) expect(d[route[i - 1]]).toBeLessThanOrEqual(d[route[i]]);
          // Nothing left out is nearer than what was chosen.
          const worst = d[route[route.length - 1]];
          for (let l = 0; l < shards; l++) if (!route.includes(l)) expect(d[l]).toBeGreaterThanOrEqual(worst);
        }
      }),
      { seed: SEED, numRuns: 40 },
    );
  });

  it('round-trips through JSON with identical routing', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 30 }), fc.integer({ min: 1, max: 1e6 }), fc.constantFrom(...METRICS), (shards, seed, metric) => {
        const dim = 7;
        const p = SpatialPartitioner.build(gaussianSample(shards * 15, dim, seed), dim, shards, metric);
        const json = JSON.parse(JSON.stringify(p.toJSON())) as unknown;
        const back = partitionerFromJSON(json);
        expect(back).toBeInstanceOf(SpatialPartitioner);
        const q2 = back as SpatialPartitioner;
        expect(q2.toJSON()).toEqual(p.toJSON());
        expect(q2.boxes).toEqual(p.boxes);
        const queries = gaussianSample(20, dim, seed + 5);
        for (let i = 0; i < 20; i++) {
          const q = row(queries, dim, i);
          expect(q2.shardOf(q)).toBe(p.shardOf(q));
          expect(q2.route(q, { nprobe: 3 })).toEqual(p.route(q, { nprobe: 3 }));
          const kth = metric === 'l2' ? 1.5 : 0.3;
          expect(q2.exactRoute(q, kth)).toEqual(p.exactRoute(q, kth));
        }
      }),
      { seed: SEED, numRuns: 30 },
    );
  });

  it('refuses bad samples, vectors and stored trees', () => {
    const sample = gaussianSample(50, 2, 1);
    expectVdbError(() => SpatialPartitioner.build(sample, 2, 51, 'l2'), 'INVALID_ARGUMENT');
    expectVdbError(() => SpatialPartitioner.build(sample.subarray(0, 99), 2, 2, 'l2'), 'INVALID_ARGUMENT');
    expectVdbError(() => SpatialPartitioner.build(sample, 0, 2, 'l2'), 'INVALID_ARGUMENT');
    expectVdbError(() => SpatialPartitioner.build(sample, 2, 2, 'hamming' as Metric), 'INVALID_ARGUMENT');
    expectVdbError(() => SpatialPartitioner.build(sample, 2, 0, 'l2'), 'INVALID_PARTITIONER');
    const withNaN = sample.slice();
    withNaN[7] = NaN;
    expectVdbError(() => SpatialPartitioner.build(withNaN, 2, 2, 'l2'), 'INVALID_VECTOR');

    const p = SpatialPartitioner.build(sample, 2, 3, 'l2');
    expectVdbError(() => p.shardOf([1, 2, 3]), 'DIMENSION_MISMATCH');
    expectVdbError(() => p.shardOf([1, NaN]), 'INVALID_VECTOR');
    expectVdbError(() => p.route([1, 2], { nprobe: 0 }), 'INVALID_ARGUMENT');

    const good = p.toJSON();
    const leaf = (n: number): SpatialNode => ({ leaf: n });
    const bad: unknown[] = [
      { ...good, kind: 'spatal' },
      { ...good, shards: 4 },
      { ...good, dim: 0 },
      { ...good, metric: 'dot' },
      { ...good, tree: { dim: 0, at: 0, lo: leaf(0), hi: leaf(0) } },
      { ...good, tree: { dim: 2, at: 0, lo: leaf(0), hi: { dim: 0, at: 1, lo: leaf(1), hi: leaf(2) } } },
      { ...good, tree: { dim: 0, at: null, lo: leaf(0), hi: { dim: 0, at: 1, lo: leaf(1), hi: leaf(2) } } },
      { ...good, tree: { dim: 0, at: 0, lo: leaf(0), hi: { dim: 0, at: 1, lo: leaf(1), hi: leaf(3) } } },
      { ...good, tree: { dim: 0, at: 0, lo: leaf(0), hi: leaf(1) } },
      { ...good, tree: [] },
      { ...good, counts: [1, 2] },
    ];
    for (const b of bad) expectVdbError(() => SpatialPartitioner.fromJSON(b), 'INVALID_PARTITIONER');
    // Too deep: a chain of 200 splits.
    let deep: SpatialNode = leaf(0);
    for (let i = 1; i <= 200; i++) deep = { dim: 0, at: i, lo: deep, hi: leaf(i) };
    expectVdbError(() => SpatialPartitioner.fromJSON({ ...good, shards: 201, counts: undefined, tree: deep }), 'INVALID_PARTITIONER');
  });
});

// ----------------------------------------------------------------- semantic

describe('SemanticPartitioner', () => {
  it('a split moves only points of that shard, to the new last shard: whole labels, or its one label shared; round-trips', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 5 }), fc.integer({ min: 1, max: 12 }), fc.nat(), (shards, nLabels, pick) => {
        let p = new SemanticPartitioner({ shards, field: 'tag' });
        const pts = range(3000).map((i) => ({ id: i % 4 ? i : `u${i}`, payload: i % 7 === 0 ? {} : { tag: `t${i % nLabels}` } }));
        for (let round = 0; round < 2; round++) {
          const shard = (pick + round) % p.shards;
          const counts = new Map<string, number>();
          for (const pt of pts) {
            const label = p.labelOf(pt.payload);
            if (label !== undefined && p.shardOf(pt.payload, pt.id) === shard) counts.set(String(label), (counts.get(String(label)) ?? 0) + 1);
          }
          const next = p.split(shard, counts);
          expect(next.shards).toBe(p.shards + 1);
          for (const pt of pts) {
            const a = p.shardOf(pt.payload, pt.id);
            const b = next.shardOf(pt.payload, pt.id);
            if (a !== b) {
              expect(a, 'only points of the split shard move').toBe(shard);
              expect(b, 'to the new shard').toBe(p.shards);
            }
          }
          const back = partitionerFromJSON(JSON.parse(JSON.stringify(next))) as SemanticPartitioner;
          expect(back.toJSON()).toEqual(next.toJSON());
          for (const pt of pts.slice(0, 200)) expect(back.shardOf(pt.payload, pt.id)).toBe(next.shardOf(pt.payload, pt.id));
          p = next;
        }
      }),
      { seed: SEED, numRuns: 40 },
    );
    const one = new SemanticPartitioner({ shards: 1, field: 'tag' }).split(0, new Map([['a', 10]]));
    expect(one.shardsOfLabel('a')).toEqual([0, 1]);
    const two = new SemanticPartitioner({ shards: 1, field: 'tag' }).split(0, new Map([['a', 10], ['b', 9]]));
    expect([two.shardsOfLabel('a'), two.shardsOfLabel('b')]).toEqual([[1], [0]]);
    expectVdbError(() => partitionerFromJSON({ kind: 'semantic', shards: 2, field: 'tag', hashed: 3 }), 'INVALID_PARTITIONER');
  });

  const p = new SemanticPartitioner({ shards: 6, field: 'category', map: { shoes: [0], books: [1, 2], __proto__x: [5] } });

  it('places a labelled point on its label’s shards, spread by id', () => {
    expect(p.shardOf({ category: 'shoes' }, 1)).toBe(0);
    const bookShards = new Set(range(200).map((id) => p.shardOf({ category: 'books' }, id)));
    expect([...bookShards].sort()).toEqual([1, 2]);
    expect(p.shardOf({ category: 'books' }, 'x')).toBe([1, 2][jumpHash(hashId('x'), 2)]);
    // An unmapped label: one shard, by the hash of its key.
    for (const label of ['toys', 'food', 'garden']) {
      expect(new Set(range(20).map((id) => p.shardOf({ category: label }, id)))).toEqual(new Set([jumpHash(hashId(label), 6)]));
    }
    // Numbers, booleans and null are labels too, keyed by their JSON text.
    expect(p.shardOf({ category: 5 }, 1)).toBe(p.shardOf({ category: '5' }, 2));
    expect(labelKey(5)).toBe('5');
    expect(labelKey(null)).toBe('null');
    expect(labelKey(true)).toBe('true');
    expect(labelKey([1])).toBeUndefined();
    // No label: spread by id over every shard.
    expect(p.shardOf({ other: 1 }, 77)).toBe(jumpHash(hashId(77), 6));
    expect(p.shardOf(undefined, 77)).toBe(jumpHash(hashId(77), 6));
    expect(new Set(range(300).map((id) => p.shardOf({}, id))).size).toBe(6);
    // A label must be a single primitive.
    expectVdbError(() => p.shardOf({ category: ['shoes', 'books'] }, 1), 'INVALID_PAYLOAD');
    expectVdbError(() => p.shardOf({ category: { a: 1 } }, 1), 'INVALID_PAYLOAD');
  });

  it('reads a nested label field like filters do (own properties of plain objects)', () => {
    const n = new SemanticPartitioner({ shards: 4, field: 'meta.lang', map: { en: [3] } });
    expect(n.shardOf({ meta: { lang: 'en' } }, 1)).toBe(3);
    expect(n.labelOf({ meta: { lang: 'en' } })).toBe('en');
    expect(n.labelOf({ meta: [{ lang: 'en' }] })).toBeUndefined();
    expect(n.labelOf({ 'meta.lang': 'en' })).toBeUndefined();
    expect(n.shardsFor({ 'meta.lang': 'en' })).toEqual([3]);
    expect(n.shardsFor({ meta: { $exists: true } })).toEqual(range(4));
  });

  it('narrows a search by the filter’s label terms', () => {
    const hashed = (label: string) => jumpHash(hashId(label), 6);
    expect(p.shardsFor()).toEqual(range(6));
    expect(p.shardsFor({})).toEqual(range(6));
    expect(p.shardsFor({ category: 'shoes' })).toEqual([0]);
    expect(p.shardsFor({ category: { $eq: 'books' } })).toEqual([1, 2]);
    expect(p.shardsFor({ category: { $in: ['shoes', 'books'] } })).toEqual([0, 1, 2]);
    expect(p.shardsFor({ category: 'toys' })).toEqual([hashed('toys')]);
    expect(p.shardsFor({ category: 'books', price: { $lt: 10 } })).toEqual([1, 2]);
    expect(p.shardsFor({ $and: [{ category: { $in: ['shoes', 'books'] } }, { category: 'books' }] })).toEqual([1, 2]);
    expect(p.shardsFor({ $and: [{ category: 'shoes' }, { category: 'books' }] })).toEqual([]);
    expect(p.shardsFor({ category: { $in: [] } })).toEqual([]);
    // Nothing implied for every match: all shards.
    expect(p.shardsFor({ $or: [{ category: 'shoes' }, { category: 'books' }] })).toEqual(range(6));
    expect(p.shardsFor({ $not: { category: 'shoes' } })).toEqual(range(6));
    expect(p.shardsFor({ category: { $ne: 'shoes' } })).toEqual(range(6));
    expect(p.shardsFor({ category: { $gte: 'a' } })).toEqual(range(6));
    expect(p.shardsFor({ brand: 'acme' })).toEqual(range(6));
    expectVdbError(() => p.shardsFor({ category: { $regex: 'x' } }), 'INVALID_FILTER');
  });

  it('never routes a search away from a point its filter matches', () => {
    const labels: (string | number | boolean | null)[] = ['shoes', 'books', 'toys', 'food', '5', 5, true, 'true', null, 'null', '__proto__x'];
    const label = fc.constantFrom(...labels);
    const payload = fc.record(
      { category: label, brand: fc.constantFrom('a', 'b') },
      { requiredKeys: [] },
    );
    const cond = fc.oneof(
      label.map((l) => ({ category: l })),
      fc.array(label, { maxLength: 3 }).map((ls) => ({ category: { $in: ls } })),
      label.map((l) => ({ category: { $ne: l } })),
      fc.constantFrom('a', 'b').map((b) => ({ brand: b })),
    );
    const filter = fc.oneof(
      cond,
      fc.tuple(cond, cond).map(([a, b]) => ({ $and: [a, b] })),
      fc.tuple(cond, cond).map(([a, b]) => ({ $or: [a, b] })),
      cond.map((a) => ({ $not: a })),
    );
    let matched = 0;
    let narrowed = 0;
    fc.assert(
      fc.property(filter, fc.array(fc.tuple(payload, fc.oneof(fc.integer(), fc.string())), { minLength: 1, maxLength: 20 }), (f, points) => {
        const test = compileFilter(f).test;
        const shards = new Set(p.shardsFor(f));
        if (shards.size < 6) narrowed++;
        for (const [pl, id] of points) {
          if (!test(pl)) continue;
          matched++;
          expect(shards.has(p.shardOf(pl, id)), `${JSON.stringify(f)} ${JSON.stringify(pl)}`).toBe(true);
        }
      }),
      { seed: SEED, numRuns: 400 },
    );
    expect(matched).toBeGreaterThan(100);
    expect(narrowed).toBeGreaterThan(50);
  });

  it('round-trips through JSON, including awkward labels', () => {
    const labels = JSON.parse('{"__proto__": [3], "constructor": [4, 1], "": [0]}') as Record<string, number[]>;
    const q = new SemanticPartitioner({ shards: 5, field: 'tenant', map: labels });
    const back = partitionerFromJSON(JSON.parse(JSON.stringify(q)));
    expect(back).toBeInstanceOf(SemanticPartitioner);
    expect(back.toJSON()).toEqual(q.toJSON());
    expect((back as SemanticPartitioner).labels()).toEqual(new Map([['__proto__', [3]], ['constructor', [4, 1]], ['', [0]]]));
    for (const t of ['__proto__', 'constructor', '', 'other']) {
      for (let id = 0; id < 10; id++) expect((back as SemanticPartitioner).shardOf({ tenant: t }, id)).toBe(q.shardOf({ tenant: t }, id));
      expect((back as SemanticPartitioner).shardsFor({ tenant: t })).toEqual(q.shardsFor({ tenant: t }));
    }
    expect(q.shardsFor({ tenant: '__proto__' })).toEqual([3]);
    expect(q.shardsFor({ tenant: 'constructor' })).toEqual([1, 4]);
    expect(new SemanticPartitioner({ shards: 5, field: 'tenant', map: new Map([['a', [2]]]) }).shardsFor({ tenant: 'a' })).toEqual([2]);
  });

  it('refuses a malformed definition', () => {
    const bad: unknown[] = [
      { kind: 'semantic', shards: 0, field: 'a', map: {} },
      { kind: 'semantic', shards: 2, field: '', map: {} },
      { kind: 'semantic', shards: 2, field: 'a..b', map: {} },
      { kind: 'semantic', shards: 2, field: '$a', map: {} },
      { kind: 'semantic', shards: 2, field: 'a', map: { x: [] } },
      { kind: 'semantic', shards: 2, field: 'a', map: { x: [2] } },
      { kind: 'semantic', shards: 2, field: 'a', map: { x: [1, 1] } },
      { kind: 'semantic', shards: 2, field: 'a', map: { x: 1 } },
      { kind: 'semantic', shards: 2, field: 'a', map: [] },
      { kind: 'semantic', shards: 2, field: 7 },
    ];
    for (const b of bad) expectVdbError(() => partitionerFromJSON(b), 'INVALID_PARTITIONER');
    expectVdbError(() => partitionerFromJSON({ kind: 'range', shards: 2 }), 'INVALID_PARTITIONER');
    expectVdbError(() => partitionerFromJSON(null), 'INVALID_PARTITIONER');
  });
});

// ------------------------------------------------------------------- common

describe('routing helpers', () => {
  it('route writes, id lookups and searches by the partitioner’s kind', () => {
    const sample = gaussianSample(200, 3, 11);
    const hash: Partitioner = new HashPartitioner(4);
    const spatial: Partitioner = SpatialPartitioner.build(sample, 3, 4, 'l2');
    const semantic: Partitioner = new SemanticPartitioner({ shards: 4, field: 'tag', map: { a: [2] } });
    const point = { id: 'p1', vector: [0.5, -1, 2], payload: { tag: 'a' } };
    expect(shardOfPoint(hash, point)).toBe(jumpHash(hashId('p1'), 4));
    expect(shardOfPoint(spatial, point)).toBe((spatial as SpatialPartitioner).shardOf(point.vector));
    expect(shardOfPoint(semantic, point)).toBe(2);
    expect(shardsForId(hash, 'p1')).toEqual([jumpHash(hashId('p1'), 4)]);
    expect(shardsForId(spatial, 'p1')).toEqual(range(4));
    expect(shardsForId(semantic, 'p1')).toEqual(range(4));
    expect(shardsForSearch(hash, { vector: point.vector, filter: { tag: 'a' } })).toEqual(range(4));
    expect(shardsForSearch(semantic, { vector: point.vector, filter: { tag: 'a' } })).toEqual([2]);
    expect(shardsForSearch(spatial, { vector: point.vector })).toEqual(range(4));
    expect(shardsForSearch(spatial, { vector: point.vector, nprobe: 2 })).toEqual((spatial as SpatialPartitioner).route(point.vector, { nprobe: 2 }));
  });
});
