// Spatial partitioning: a kd tree built once from a sample of the vectors.
// Every inner node splits on one dimension at one threshold (vectors below it
// go to `lo`, the rest to `hi`); the leaves are the shards. A leaf's region is
// the box cut out by the splits above it, unbounded (±Infinity) where the tree
// has no split, so every vector falls in exactly one leaf. Because a vector
// lies inside its leaf's box, the distance from a query to a box is a lower
// bound on the distance to anything the leaf holds: that is what lets a
// coordinator skip shards (docs/partitioning.md).

import { ErrorCode, VdbError } from '../errors.js';
import { isPlainObject } from '../validate.js';
import type { Filter } from '../filter.js';
import type { Metric } from '../core/wasm-index.js';
import { DIM_MAX } from '../core/wasm-index.js';
import { allShards, checkShardCount } from './hash.js';

/** A split node or a leaf, as stored in the shard map. */
export type SpatialNode =
  | { readonly leaf: number }
  | { readonly dim: number; readonly at: number; readonly lo: SpatialNode; readonly hi: SpatialNode };

export interface SpatialPartitionerJSON {
  kind: 'spatial';
  shards: number;
  dim: number;
  metric: Metric;
  tree: SpatialNode;
  /** Sample vectors per leaf when the tree was built (informational). */
  counts: number[];
}

/** A leaf's region: min[i] ≤ x[i] < max[i] in every dimension (bounds may be infinite). */
export interface LeafBox {
  readonly min: Float64Array;
  readonly max: Float64Array;
}

export interface RouteOptions {
  /** How many leaves to return, nearest first (clamped to the shard count). */
  nprobe: number;
}

/** Deepest tree `fromJSON` accepts; `build` stays far below it (about 2.4·log2(shards)). */
export const SPATIAL_MAX_DEPTH = 128;

/**
 * Relative slack on the k-th score in `exactRoute`: shards compute distances
 * in float32, so the reported k-th score can be a little better than the true
 * one. Widening the bound by this much keeps every leaf that could still hold
 * a top-k hit.
 */
export const EXACT_SLACK = 1e-4;

const METRICS: readonly Metric[] = ['l2', 'cosine', 'ip'];

function invalid(message: string): VdbError {
  return new VdbError(ErrorCode.INVALID_PARTITIONER, message);
}

export class SpatialPartitioner {
  readonly kind = 'spatial' as const;
  readonly shards: number;
  readonly dim: number;
  readonly metric: Metric;
  /** The region of each leaf, indexed by shard. */
  readonly boxes: readonly LeafBox[];
  /** Sample vectors that fell in each leaf when the tree was built. */
  readonly counts: readonly number[];
  private readonly tree: SpatialNode;

  private constructor(shards: number, dim: number, metric: Metric, tree: SpatialNode, counts: number[]) {
    this.shards = shards;
    this.dim = dim;
    this.metric = metric;
    this.tree = tree;
    this.counts = counts;
    this.boxes = leafBoxes(tree, shards, dim);
  }

  /**
   * Builds the tree from `sample` (rows of `dim` floats; at least `shards`
   * rows). Each node splits its sample points on the dimension where they
   * spread widest (largest variance; ties to the lower dimension). A node that must
   * make `s` leaves gives floor(s/2) to `lo` and the rest to `hi`, and cuts
   * at the matching quantile (the median when s is even), so leaves get equal
   * shares of the sample whatever the shard count; when ties in the sample
   * move the cut, the shard counts follow the actual sizes. For `cosine` the
   * tree is built on, and routes, normalised vectors; `ip` uses the raw vectors.
   */
  static build(sample: Float32Array, dim: number, shards: number, metric: Metric = 'l2'): SpatialPartitioner {
    checkDim(dim);
    checkShardCount(shards);
    checkMetric(metric);
    if (!(sample instanceof Float32Array) || sample.length % dim !== 0) {
      throw new VdbError(ErrorCode.INVALID_ARGUMENT, `the sample must be a Float32Array of rows of ${dim} floats`);
    }
    const n = sample.length / dim;
    if (n < shards) throw new VdbError(ErrorCode.INVALID_ARGUMENT, `need at least ${shards} sample vectors for ${shards} shards, got ${n}`);
    for (let i = 0; i < sample.length; i++) {
      if (!Number.isFinite(sample[i])) throw new VdbError(ErrorCode.INVALID_VECTOR, `sample vector ${Math.floor(i / dim)} has a non-finite value`);
    }
    let points = sample;
    if (metric === 'cosine') {
      points = new Float32Array(sample.length);
      for (let r = 0; r < n; r++) normaliseInto(sample.subarray(r * dim, (r + 1) * dim), points.subarray(r * dim, (r + 1) * dim));
    }
    const counts = new Array<number>(shards).fill(0);
    const ids = new Uint32Array(n);
    for (let i = 0; i < n; i++) ids[i] = i;
    const builder = new TreeBuilder(points, dim, counts);
    const tree = builder.node(ids, shards, 0);
    return new SpatialPartitioner(shards, dim, metric, tree, counts);
  }

  /** The one leaf whose region holds `vector`. */
  shardOf(vector: ArrayLike<number>): number {
    const v = this.prepare(vector, 'vector');
    let node = this.tree;
    while (!('leaf' in node)) node = v[node.dim] < node.at ? node.lo : node.hi;
    return node.leaf;
  }

  /**
   * The `nprobe` leaves nearest to `query` by box distance, nearest first (the
   * query's own leaf first, then by distance, ties by leaf number). For `ip`
   * there is no distance to bound with, so every leaf is returned (in the
   * same order, as a heuristic for which to ask first).
   */
  route(query: ArrayLike<number>, opts: RouteOptions): number[] {
    const nprobe = opts.nprobe;
    if (!Number.isInteger(nprobe) || nprobe < 1) throw new VdbError(ErrorCode.INVALID_ARGUMENT, `nprobe must be a positive integer, got ${nprobe}`);
    const q = this.prepare(query, 'query');
    const order = this.byDistance(q);
    return this.metric === 'ip' ? order : order.slice(0, nprobe);
  }

  /**
   * The leaves that can still hold a hit scoring at least as well as
   * `kthScore`, the k-th best score found so far, in the collection's own
   * units (a hit's `score`): L2 distance for `l2`, cosine similarity for
   * `cosine`, inner product for `ip`. Ordered most promising first. A
   * coordinator asks the nearest leaf (`route(q, {nprobe: 1})`) for k hits,
   * then only these leaves for the rest. A non-finite `kthScore` (fewer than
   * k hits known) returns every leaf.
   *
   * - `l2`: leaves whose box lies within kthScore of the query.
   * - `cosine`: for unit vectors ‖q − x‖² = 2 − 2·cos, so leaves whose box
   *   lies within √(2 − 2·kthScore) of the normalised query. A zero query has
   *   no direction: every leaf.
   * - `ip`: leaves whose box admits q·x ≥ kthScore, using the largest q·x over
   *   the box (Σ max(qᵢ·minᵢ, qᵢ·maxᵢ)); an outer leaf unbounded towards q
   *   always qualifies, so this prunes only inner leaves.
   * Every bound is widened by EXACT_SLACK to absorb float32 rounding.
   */
  exactRoute(query: ArrayLike<number>, kthScore: number): number[] {
    const q = this.prepare(query, 'query');
    const order = this.byDistance(q);
    if (typeof kthScore !== 'number' || !Number.isFinite(kthScore)) return order;
    if (this.metric === 'ip') {
      const bound = kthScore - EXACT_SLACK * Math.max(1, Math.abs(kthScore));
      const best = this.boxes.map((box) => maxDot(q, box));
      return order.filter((leaf) => best[leaf] >= bound).sort((a, b) => best[b] - best[a] || a - b);
    }
    let radius: number;
    if (this.metric === 'cosine') {
      if (isZero(q)) return order;
      radius = Math.sqrt(Math.max(0, 2 - 2 * (kthScore - EXACT_SLACK)));
    } else {
      radius = kthScore;
    }
    const limit = radius * (1 + EXACT_SLACK) + EXACT_SLACK * 1e-3;
    return order.filter((leaf) => boxDistance(q, this.boxes[leaf]) <= limit);
  }

  /** The L2 distance from `query` (normalised for cosine) to each leaf's box. */
  distances(query: ArrayLike<number>): Float64Array {
    const q = this.prepare(query, 'query');
    const out = new Float64Array(this.shards);
    for (let leaf = 0; leaf < this.shards; leaf++) out[leaf] = boxDistance(q, this.boxes[leaf]);
    return out;
  }

  /** Every shard: payload filters say nothing about where a vector lies. */
  shardsFor(_filter?: Filter): number[] {
    return allShards(this.shards);
  }

  /**
   * The partitioner after splitting leaf `shard` in two: a new node cuts it
   * where `sample` (rows of vectors the leaf holds) spreads widest, at the
   * median, as `build` does; the lower half stays `shard`, the upper half is
   * the new last shard. No other leaf's region changes.
   */
  split(shard: number, sample: Float32Array): SpatialPartitioner {
    if (!Number.isInteger(shard) || shard < 0 || shard >= this.shards) throw invalid(`no leaf ${shard} to split`);
    const halves = SpatialPartitioner.build(sample, this.dim, 2, this.metric);
    const into = checkShardCount(this.shards + 1) - 1;
    const relabel = (n: SpatialNode): SpatialNode => ('leaf' in n ? { leaf: n.leaf === 0 ? shard : into } : { ...n, lo: relabel(n.lo), hi: relabel(n.hi) });
    const replace = (n: SpatialNode): SpatialNode => ('leaf' in n ? (n.leaf === shard ? relabel(halves.tree) : n) : { ...n, lo: replace(n.lo), hi: replace(n.hi) });
    const counts = [...this.counts, halves.counts[1]];
    counts[shard] = halves.counts[0];
    return new SpatialPartitioner(this.shards + 1, this.dim, this.metric, replace(this.tree), counts);
  }

  /**
   * The reverse of a split: the newest leaf merged back into its sibling leaf
   * (the node holding both becomes that leaf), with the sibling's number;
   * undefined when the newest leaf's sibling is not a leaf (it was not split
   * off last) or there is one leaf.
   */
  unsplit(): { shard: number; partitioner: SpatialPartitioner } | undefined {
    const t = this.shards - 1;
    let shard: number | undefined;
    const merge = (n: SpatialNode): SpatialNode => {
      if ('leaf' in n) return n;
      const [a, b] = [n.lo, n.hi];
      if ('leaf' in a && 'leaf' in b && (a.leaf === t || b.leaf === t)) {
        shard = a.leaf === t ? b.leaf : a.leaf;
        return { leaf: shard };
      }
      return { ...n, lo: merge(n.lo), hi: merge(n.hi) };
    };
    const tree = merge(this.tree);
    if (shard === undefined) return undefined;
    const counts = this.counts.slice(0, t);
    counts[shard] += this.counts[t];
    return { shard, partitioner: new SpatialPartitioner(t, this.dim, this.metric, tree, counts) };
  }

  toJSON(): SpatialPartitionerJSON {
    return { kind: 'spatial', shards: this.shards, dim: this.dim, metric: this.metric, tree: this.tree, counts: [...this.counts] };
  }

  /** Validates a stored tree completely; throws INVALID_PARTITIONER if malformed. */
  static fromJSON(json: unknown): SpatialPartitioner {
    if (typeof json !== 'object' || json === null) throw invalid('expected a spatial partitioner object');
    const j = json as Record<string, unknown>;
    if (j.kind !== 'spatial') throw invalid('expected kind "spatial"');
    const shards = checkShardCount(j.shards);
    if (typeof j.dim !== 'number' || !Number.isInteger(j.dim) || j.dim < 1 || j.dim > DIM_MAX) throw invalid(`dim must be an integer from 1 to ${DIM_MAX}`);
    const dim = j.dim;
    if (typeof j.metric !== 'string' || !METRICS.includes(j.metric as Metric)) throw invalid(`metric must be one of ${METRICS.join(', ')}`);
    const seen = new Array<boolean>(shards).fill(false);
    const tree = parseNode(j.tree, dim, shards, seen, 1, 'tree');
    if (seen.some((s) => !s)) throw invalid(`tree must have leaves 0 to ${shards - 1}, each exactly once`);
    let counts: number[];
    if (j.counts === undefined) counts = new Array<number>(shards).fill(0);
    else if (Array.isArray(j.counts) && j.counts.length === shards && j.counts.every((c) => Number.isSafeInteger(c) && (c as number) >= 0)) counts = [...(j.counts as number[])];
    else throw invalid(`counts must be ${shards} non-negative integers`);
    return new SpatialPartitioner(shards, dim, j.metric as Metric, tree, counts);
  }

  /** Checks a vector and returns it as routed: normalised (float32-rounded) for cosine. */
  private prepare(vector: ArrayLike<number>, what: string): ArrayLike<number> {
    if (vector === null || typeof vector !== 'object' || vector.length !== this.dim) {
      throw new VdbError(ErrorCode.DIMENSION_MISMATCH, `${what} must have ${this.dim} dimensions, got ${vector?.length}`);
    }
    for (let i = 0; i < this.dim; i++) {
      if (typeof vector[i] !== 'number' || !Number.isFinite(vector[i])) throw new VdbError(ErrorCode.INVALID_VECTOR, `${what}[${i}] is not a finite number`);
    }
    if (this.metric !== 'cosine') return vector;
    const out = new Float32Array(this.dim);
    normaliseInto(vector, out);
    return out;
  }

  /** All leaves: the query's own leaf first, then by box distance, ties by leaf number. */
  private byDistance(q: ArrayLike<number>): number[] {
    let node = this.tree;
    while (!('leaf' in node)) node = q[node.dim] < node.at ? node.lo : node.hi;
    const own = node.leaf;
    const d = new Float64Array(this.shards);
    for (let leaf = 0; leaf < this.shards; leaf++) d[leaf] = leaf === own ? -1 : boxDistance(q, this.boxes[leaf]);
    return allShards(this.shards).sort((a, b) => d[a] - d[b] || a - b);
  }
}

// ------------------------------------------------------------------ build

class TreeBuilder {
  private nextLeaf = 0;
  private readonly min: Float64Array;
  private readonly max: Float64Array;

  constructor(
    private readonly points: Float32Array,
    private readonly dim: number,
    private readonly counts: number[],
  ) {
    this.min = new Float64Array(dim).fill(-Infinity);
    this.max = new Float64Array(dim).fill(Infinity);
  }

  /** Makes `s` leaves for the sample rows `ids`, inside the current box. */
  node(ids: Uint32Array, s: number, depth: number): SpatialNode {
    if (s === 1) {
      const leaf = this.nextLeaf++;
      this.counts[leaf] = ids.length;
      return { leaf };
    }
    const { points, dim } = this;
    const n = ids.length;
    // The widest dimension of this node's points, by variance: on sparse data
    // (pixels that are mostly 0) the range picks dimensions whose median is 0,
    // and ties at the cut then unbalance the leaves.
    let d = depth % dim;
    let widest = 0;
    if (n > 1) {
      const sum = new Float64Array(dim);
      const sq = new Float64Array(dim);
      const lo = new Float64Array(dim).fill(Infinity);
      const hi = new Float64Array(dim).fill(-Infinity);
      for (const id of ids) {
        const base = id * dim;
        for (let i = 0; i < dim; i++) {
          const x = points[base + i];
          sum[i] += x;
          sq[i] += x * x;
          if (x < lo[i]) lo[i] = x;
          if (x > hi[i]) hi[i] = x;
        }
      }
      for (let i = 0; i < dim; i++) {
        // Only a dimension with two distinct values can be cut; rounding can
        // give a constant one a tiny positive variance.
        const variance = hi[i] > lo[i] ? Math.max(sq[i] / n - (sum[i] / n) ** 2, Number.MIN_VALUE) : 0;
        if (variance > widest) {
          widest = variance;
          d = i;
        }
      }
    }
    let at: number;
    let m: number; // rows going to lo
    let sLo: number;
    const sorted = Uint32Array.from(ids).sort((a, b) => points[a * dim + d] - points[b * dim + d] || a - b);
    if (widest > 0) {
      // Cut at the distinct-value boundary nearest the quantile floor(s/2)/s.
      const target = Math.round((n * Math.floor(s / 2)) / s);
      const value = (i: number) => points[sorted[i] * dim + d];
      const isCut = (i: number) => i >= 1 && i < n && value(i - 1) < value(i);
      m = -1;
      for (let off = 0; m < 0; off++) {
        if (isCut(target - off)) m = target - off;
        else if (isCut(target + off)) m = target + off;
      }
      const a = value(m - 1);
      const b = value(m);
      at = a + (b - a) / 2;
      if (!(at > a && at <= b)) at = b;
      // Shards follow the actual sizes, but neither side gets less than a
      // quarter of them, which bounds the depth at about 2.4·log2(s).
      const floorQ = Math.max(1, Math.floor(s / 4));
      sLo = Math.min(s - floorQ, Math.max(floorQ, Math.round((s * m) / n)));
    } else {
      // No spread left (no points, or all identical): split the box itself and
      // the shards evenly; some leaves will hold no sample point.
      const bMin = this.min[d];
      const bMax = this.max[d];
      if (n > 0) at = points[sorted[0] * dim + d];
      else if (Number.isFinite(bMin) && Number.isFinite(bMax)) at = bMin + (bMax - bMin) / 2;
      else if (Number.isFinite(bMin)) at = bMin + 1;
      else if (Number.isFinite(bMax)) at = bMax - 1;
      else at = 0;
      at = Math.min(Math.max(at, bMin), bMax);
      m = 0;
      sLo = Math.floor(s / 2);
    }
    const saveMax = this.max[d];
    this.max[d] = Math.min(saveMax, at);
    const lo = this.node(sorted.subarray(0, m), sLo, depth + 1);
    this.max[d] = saveMax;
    const saveMin = this.min[d];
    this.min[d] = Math.max(saveMin, at);
    const hi = this.node(sorted.subarray(m), s - sLo, depth + 1);
    this.min[d] = saveMin;
    return { dim: d, at, lo, hi };
  }
}

// --------------------------------------------------------------- geometry

/** `out` = v / ‖v‖ (each component rounded to float32); a zero vector stays zero. */
function normaliseInto(v: ArrayLike<number>, out: Float32Array): void {
  let sq = 0;
  for (let i = 0; i < out.length; i++) sq += v[i] * v[i];
  const norm = Math.sqrt(sq);
  for (let i = 0; i < out.length; i++) out[i] = norm > 0 ? v[i] / norm : 0;
}

function isZero(v: ArrayLike<number>): boolean {
  for (let i = 0; i < v.length; i++) if (v[i] !== 0) return false;
  return true;
}

/** L2 distance from `q` to the closed box (0 inside); infinite bounds never add distance. */
function boxDistance(q: ArrayLike<number>, box: LeafBox): number {
  let sq = 0;
  for (let i = 0; i < q.length; i++) {
    const x = q[i];
    const gap = x < box.min[i] ? box.min[i] - x : x > box.max[i] ? x - box.max[i] : 0;
    sq += gap * gap;
  }
  return Math.sqrt(sq);
}

/** The largest q·x over x in the box (+Infinity when the box is unbounded towards q). */
function maxDot(q: ArrayLike<number>, box: LeafBox): number {
  let s = 0;
  for (let i = 0; i < q.length; i++) {
    const x = q[i];
    if (x > 0) s += x * box.max[i];
    else if (x < 0) s += x * box.min[i];
  }
  return s;
}

/** Each leaf's box: the intersection of the half-spaces on its path from the root. */
function leafBoxes(tree: SpatialNode, shards: number, dim: number): LeafBox[] {
  const boxes = new Array<LeafBox>(shards);
  const min = new Float64Array(dim).fill(-Infinity);
  const max = new Float64Array(dim).fill(Infinity);
  const walk = (node: SpatialNode): void => {
    if ('leaf' in node) {
      boxes[node.leaf] = { min: min.slice(), max: max.slice() };
      return;
    }
    const d = node.dim;
    const saveMax = max[d];
    max[d] = Math.min(saveMax, node.at);
    walk(node.lo);
    max[d] = saveMax;
    const saveMin = min[d];
    min[d] = Math.max(saveMin, node.at);
    walk(node.hi);
    min[d] = saveMin;
  };
  walk(tree);
  return boxes;
}

// ------------------------------------------------------------- validation

function checkDim(dim: unknown): void {
  if (typeof dim !== 'number' || !Number.isInteger(dim) || dim < 1 || dim > DIM_MAX) {
    throw new VdbError(ErrorCode.INVALID_ARGUMENT, `dim must be an integer from 1 to ${DIM_MAX}, got ${String(dim)}`);
  }
}

function checkMetric(metric: unknown): void {
  if (typeof metric !== 'string' || !METRICS.includes(metric as Metric)) {
    throw new VdbError(ErrorCode.INVALID_ARGUMENT, `metric must be one of ${METRICS.join(', ')}, got ${String(metric)}`);
  }
}

/** A copy of a stored node, checked: leaves in range and unique, splits on real dimensions at finite values. */
function parseNode(x: unknown, dim: number, shards: number, seen: boolean[], depth: number, at: string): SpatialNode {
  if (depth > SPATIAL_MAX_DEPTH) throw invalid(`${at}: deeper than ${SPATIAL_MAX_DEPTH} levels`);
  if (!isPlainObject(x)) throw invalid(`${at}: expected a node object`);
  if ('leaf' in x) {
    const leaf = x.leaf;
    if (typeof leaf !== 'number' || !Number.isInteger(leaf) || leaf < 0 || leaf >= shards) throw invalid(`${at}.leaf must be an integer from 0 to ${shards - 1}`);
    if (seen[leaf]) throw invalid(`${at}: leaf ${leaf} appears twice`);
    seen[leaf] = true;
    return { leaf };
  }
  const d = x.dim;
  if (typeof d !== 'number' || !Number.isInteger(d) || d < 0 || d >= dim) throw invalid(`${at}.dim must be an integer from 0 to ${dim - 1}`);
  if (typeof x.at !== 'number' || !Number.isFinite(x.at)) throw invalid(`${at}.at must be a finite number`);
  const lo = parseNode(x.lo, dim, shards, seen, depth + 1, `${at}.lo`);
  const hi = parseNode(x.hi, dim, shards, seen, depth + 1, `${at}.hi`);
  return { dim: d, at: x.at, lo, hi };
}
