// Un-splitting partitioners (the placement half of a shard merge,
// docs/cluster.md "Merges"): for any partitioner p and shard s, un-splitting
// p.split(s, …) merges the new shard back into s and places every point
// exactly as p does; a partitioner whose newest shard was not split off last
// cannot be un-split.

import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { HashPartitioner, SemanticPartitioner, SpatialPartitioner, partitionerFromJSON } from '../ts/partition/index.js';
import type { Metric } from '../ts/index.js';
import { gaussian, mulberry32, row } from './helpers.js';

const SEED = 0x3e76e;
const METRICS: Metric[] = ['l2', 'cosine', 'ip'];
const range = (n: number): number[] => Array.from({ length: n }, (_, i) => i);

function gaussianSample(n: number, dim: number, seed: number): Float32Array {
  const g = gaussian(mulberry32(seed));
  const out = new Float32Array(n * dim);
  for (let i = 0; i < out.length; i++) out[i] = g();
  return out;
}

describe('HashPartitioner.unsplit', () => {
  it('undoes the last of any sequence of splits: same placement and JSON, the split shard named', () => {
    const ids = range(3000).map((i) => (i % 3 ? i : `id-${i}`));
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 5 }), fc.array(fc.nat(), { minLength: 1, maxLength: 5 }), (n, picks) => {
        let p = new HashPartitioner(n);
        expect(p.unsplit()).toBeUndefined();
        for (const pick of picks) {
          const shard = pick % p.shards;
          const next = partitionerFromJSON(JSON.parse(JSON.stringify(p.split(shard)))) as HashPartitioner;
          const back = next.unsplit();
          expect(back?.shard).toBe(shard);
          expect(back!.partitioner.toJSON()).toEqual(p.toJSON());
          for (const id of ids) expect(back!.partitioner.shardOf(id)).toBe(p.shardOf(id));
          p = next;
        }
      }),
      { seed: SEED, numRuns: 30 },
    );
  });
});

describe('SpatialPartitioner.unsplit', () => {
  it('merges the newest leaf back into the leaf it was cut from: every vector placed as before the split', () => {
    fc.assert(
      fc.property(
        fc.record({ seed: fc.integer({ min: 1, max: 1e6 }), dim: fc.integer({ min: 1, max: 6 }), shards: fc.integer({ min: 1, max: 5 }), metric: fc.constantFrom(...METRICS) }),
        fc.array(fc.nat(), { minLength: 1, maxLength: 3 }),
        ({ seed, dim, shards, metric }, picks) => {
          let p = SpatialPartitioner.build(gaussianSample(shards * 40, dim, seed), dim, shards, metric);
          const probes = range(500).map((i) => row(gaussianSample(1, dim, seed * 7 + i), dim, 0));
          for (const [round, pick] of picks.entries()) {
            const shard = pick % p.shards;
            const mine = probes.filter((v) => p.shardOf(v) === shard);
            if (mine.length < 2) return;
            const flat = new Float32Array(mine.length * dim);
            mine.forEach((v, i) => flat.set(v, i * dim));
            const next = SpatialPartitioner.fromJSON(JSON.parse(JSON.stringify(p.split(shard, flat))));
            const back = next.unsplit();
            expect(back?.shard, `round ${round}`).toBe(shard);
            expect(back!.partitioner.shards).toBe(p.shards);
            for (const v of probes) expect(back!.partitioner.shardOf(v)).toBe(p.shardOf(v));
            expect(back!.partitioner.toJSON().tree).toEqual(p.toJSON().tree);
            p = next;
          }
        },
      ),
      { seed: SEED, numRuns: 40 },
    );
  });

  it('cannot un-split one leaf, nor a newest leaf whose sibling is an inner node', () => {
    const one = SpatialPartitioner.fromJSON({ kind: 'spatial', shards: 1, dim: 1, metric: 'l2', tree: { leaf: 0 } });
    expect(one.unsplit()).toBeUndefined();
    const tree = { dim: 0, at: 0, lo: { leaf: 2 }, hi: { dim: 0, at: 1, lo: { leaf: 0 }, hi: { leaf: 1 } } };
    expect(SpatialPartitioner.fromJSON({ kind: 'spatial', shards: 3, dim: 1, metric: 'l2', tree }).unsplit()).toBeUndefined();
  });
});

describe('SemanticPartitioner.unsplit', () => {
  it('gives back the labels and id bits a split moved: every point placed as before, filters routed as before', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 4 }), fc.integer({ min: 1, max: 10 }), fc.array(fc.nat(), { minLength: 1, maxLength: 3 }), (shards, nLabels, picks) => {
        let p = new SemanticPartitioner({ shards, field: 'tag', map: shards > 1 ? { pinned: [0, shards - 1] } : {} });
        expect(p.unsplit()).toBeUndefined();
        const pts = range(2000).map((i) => ({ id: i % 4 ? i : `u${i}`, payload: i % 7 === 0 ? {} : { tag: i % 11 === 0 ? 'pinned' : `t${i % nLabels}` } }));
        for (const pick of picks) {
          const shard = pick % p.shards;
          const counts = new Map<string, number>();
          for (const pt of pts) {
            const label = p.labelOf(pt.payload);
            if (label !== undefined && p.shardOf(pt.payload, pt.id) === shard) counts.set(String(label), (counts.get(String(label)) ?? 0) + 1);
          }
          const next = SemanticPartitioner.fromJSON(JSON.parse(JSON.stringify(p.split(shard, counts))));
          const back = next.unsplit();
          expect(back?.shard).toBe(shard);
          expect(back!.partitioner.shards).toBe(p.shards);
          for (const pt of pts) expect(back!.partitioner.shardOf(pt.payload, pt.id)).toBe(p.shardOf(pt.payload, pt.id));
          for (const tag of [...range(nLabels).map((i) => `t${i}`), 'pinned', 'never-seen']) {
            expect(back!.partitioner.shardsFor({ tag })).toEqual(p.shardsFor({ tag }));
          }
          p = next;
        }
      }),
      { seed: SEED, numRuns: 40 },
    );
  });
});
