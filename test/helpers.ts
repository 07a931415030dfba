// Shared test helpers: a seeded PRNG, a seeded clustered-data generator, and a
// plain float64 JavaScript brute force used as the ground truth for every
// search test (never the index itself).

import { expect } from 'vitest';
import { VdbError } from '../ts/index.js';
import type { Metric, SearchResult } from '../ts/index.js';

import { mulberry32 } from '../ts/random.js';

export { mulberry32 };

/** Standard normal samples from a uniform generator (Box–Muller). */
export function gaussian(rand: () => number): () => number {
  let spare: number | undefined;
  return () => {
    if (spare !== undefined) {
      const s = spare;
      spare = undefined;
      return s;
    }
    let u = 0;
    while (u === 0) u = rand();
    const v = rand();
    const r = Math.sqrt(-2 * Math.log(u));
    spare = r * Math.sin(2 * Math.PI * v);
    return r * Math.cos(2 * Math.PI * v);
  };
}

/** Uniform integer in [0, n). */
export function randInt(rand: () => number, n: number): number {
  return Math.floor(rand() * n);
}

/** Fisher–Yates shuffle of a copy. */
export function shuffled<T>(items: readonly T[], rand: () => number): T[] {
  const a = items.slice();
  for (let i = a.length - 1; i > 0; i--) {
    const j = randInt(rand, i + 1);
    [a[i], a[j]] = [a[j], a[i]];
  }
  return a;
}

export interface ClusterModel {
  dim: number;
  centers: Float64Array[];
  spread: number;
  /** Draws `n` points (rows of a flat Float32Array) from the mixture. */
  sample(n: number, seed: number): Float32Array;
}

/**
 * A seeded gaussian mixture: `clusters` centres drawn N(0, centerScale²) per
 * coordinate, points = centre + N(0, spread²). Data and queries drawn from the
 * same model with different seeds follow the same distribution.
 */
export function clusterModel(opts: { dim: number; clusters: number; seed: number; centerScale?: number; spread?: number }): ClusterModel {
  const { dim, clusters, seed } = opts;
  const centerScale = opts.centerScale ?? 4;
  const spread = opts.spread ?? 1;
  const g = gaussian(mulberry32(seed));
  const centers: Float64Array[] = [];
  for (let c = 0; c < clusters; c++) {
    const v = new Float64Array(dim);
    for (let i = 0; i < dim; i++) v[i] = g() * centerScale;
    centers.push(v);
  }
  return {
    dim,
    centers,
    spread,
    sample(n: number, s: number): Float32Array {
      const rand = mulberry32(s);
      const gs = gaussian(rand);
      const out = new Float32Array(n * dim);
      for (let p = 0; p < n; p++) {
        const c = centers[randInt(rand, clusters)];
        for (let i = 0; i < dim; i++) out[p * dim + i] = c[i] + gs() * spread;
      }
      return out;
    },
  };
}

/** Convenience: n points and q queries from one seeded cluster model. */
export function clusteredData(opts: { n: number; queries: number; dim: number; clusters: number; seed: number; centerScale?: number; spread?: number }): { data: Float32Array; queries: Float32Array } {
  const model = clusterModel(opts);
  return { data: model.sample(opts.n, opts.seed + 1), queries: model.sample(opts.queries, opts.seed + 2) };
}

export function row(data: Float32Array, dim: number, i: number): Float32Array {
  return data.subarray(i * dim, (i + 1) * dim);
}

/** The metric computed in float64 from the vectors as given (cosine: 1 − cos). */
export function dist64(metric: Metric, a: ArrayLike<number>, b: ArrayLike<number>): number {
  const n = a.length;
  if (metric === 'l2') {
    let s = 0;
    for (let i = 0; i < n; i++) {
      const d = a[i] - b[i];
      s += d * d;
    }
    return s;
  }
  let dot = 0;
  let na = 0;
  let nb = 0;
  for (let i = 0; i < n; i++) {
    dot += a[i] * b[i];
    na += a[i] * a[i];
    nb += b[i] * b[i];
  }
  if (metric === 'ip') return -dot;
  return 1 - dot / (Math.sqrt(na) * Math.sqrt(nb));
}

export interface Hit {
  slot: number;
  d: number;
}

/**
 * Exact k nearest by a float64 scan over `points` (a slot → vector map; only
 * slots for which `keep` is true), ordered by (distance, slot).
 */
export function bruteForce(
  metric: Metric,
  points: ReadonlyMap<number, ArrayLike<number>> | ArrayLike<number>[],
  query: ArrayLike<number>,
  k: number,
  keep: (slot: number) => boolean = () => true,
): Hit[] {
  const top: Hit[] = [];
  const consider = (slot: number, v: ArrayLike<number>) => {
    if (!keep(slot)) return;
    const d = dist64(metric, query, v);
    if (top.length === k) {
      const w = top[k - 1];
      if (d > w.d || (d === w.d && slot > w.slot)) return;
      top.pop();
    }
    let i = top.length;
    while (i > 0 && (top[i - 1].d > d || (top[i - 1].d === d && top[i - 1].slot > slot))) i--;
    top.splice(i, 0, { slot, d });
  };
  if (Array.isArray(points)) points.forEach((v, slot) => consider(slot, v));
  else for (const [slot, v] of points as ReadonlyMap<number, ArrayLike<number>>) consider(slot, v);
  return top;
}

/** Rows of a flat array as a slot-indexed list (slot i = row i). */
export function rowsOf(data: Float32Array, dim: number): Float32Array[] {
  const out: Float32Array[] = [];
  for (let i = 0; i < data.length / dim; i++) out.push(row(data, dim, i));
  return out;
}

/** Tolerance used to call two distances "the same" across float32/float64. */
export function distTol(d: number): number {
  return 1e-5 * Math.max(1, Math.abs(d));
}

/**
 * recall@k of one result against the exact answer, robust to ties: a returned
 * slot counts when it is a valid candidate and its true distance is within the
 * true k-th distance (plus a float32 tolerance). Duplicated ids count once.
 */
export function recallOne(
  result: SearchResult,
  truth: Hit[],
  trueDist: (slot: number) => number,
  valid: (slot: number) => boolean,
): number {
  if (truth.length === 0) return result.ids.length === 0 ? 1 : 0;
  const kth = truth[truth.length - 1].d;
  const seen = new Set<number>();
  let hits = 0;
  for (const s of result.ids) {
    if (seen.has(s) || !valid(s)) continue;
    seen.add(s);
    if (trueDist(s) <= kth + distTol(kth)) hits++;
  }
  return Math.min(hits, truth.length) / truth.length;
}

/** Asserts that `fn` throws a VdbError with `code`. */
export function expectVdbError(fn: () => unknown, code: string): VdbError {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  expect(caught, `expected a VdbError ${code}, nothing was thrown`).toBeDefined();
  expect(caught).toBeInstanceOf(VdbError);
  expect((caught as VdbError).code).toBe(code);
  return caught as VdbError;
}

/** Asserts results are sorted by distance (ties by slot when `tieBySlot`) and ids are distinct. */
export function expectOrdered(r: SearchResult, tieBySlot = true): void {
  expect(r.ids.length).toBe(r.distances.length);
  expect(new Set(r.ids).size).toBe(r.ids.length);
  for (let i = 1; i < r.ids.length; i++) {
    const a = r.distances[i - 1];
    const b = r.distances[i];
    expect(a <= b, `distances not ascending at ${i}: ${a} > ${b}`).toBe(true);
    if (tieBySlot && a === b) expect(r.ids[i - 1] < r.ids[i], `tie at ${i} not broken by slot`).toBe(true);
  }
}
