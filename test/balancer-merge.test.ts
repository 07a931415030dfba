// When the balancer merges shards (cluster/balancer/merge.ts), as plain
// functions of a shard map and heartbeats: the newest shard and the one it was
// split from merge only when both are under the threshold, both cold for the
// window, nothing else is under way on them, and the collection stays at or
// above the shards it was created with; and the threshold a coordinator accepts.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { checkMergeBelow, copyPage, planMerge } from '../cluster/balancer/merge.js';
import type { MergeView } from '../cluster/balancer/merge.js';
import { HashPartitioner, SemanticPartitioner } from '../ts/partition/index.js';
import type { Member, ShardMap } from '../cluster/meta.js';
import { expectVdbError } from './helpers.js';

const O = { mergeBelow: 100, hotSearches: 50, hotWindowMs: 10_000 };
const NOW = 1_000_000;

/** Collection `c` created with 1 hash shard, split 0 → 1 then 1 → 2: shard 2 merges back into 1. */
const p = new HashPartitioner(1).split(0).split(1);
const shardProc = (name: string, points: Record<string, number>): Member => ({ name, role: 'shard', pid: 1, heartbeat: NOW, points, shards: {} });

function view(over: Partial<MergeView> = {}, points: number[] = [10, 20, 30]): MergeView {
  const map: ShardMap = { epoch: 5, replicas: [['a'], ['b'], ['c']], partitioner: p.toJSON() };
  const live = new Map(['a', 'b', 'c'].map((r, s) => [r, shardProc(r, { [`c/${s}`]: points[s] })]));
  return { name: 'c', map, p, created: 1, live, coldSince: () => NOW - O.hotWindowMs, now: NOW, opts: O, ...over };
}

describe('planMerge', () => {
  it('merges the newest shard into the one it was split from when both are small and cold', () => {
    const plan = planMerge(view());
    expect(plan).toEqual({ shard: 1, from: 2, partitioner: new HashPartitioner(1).split(0).toJSON() });
  });

  it('merges only when both shards are under the threshold (the others do not count)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 300 }), fc.integer({ min: 0, max: 300 }), fc.integer({ min: 0, max: 300 }), (a, b, c) => {
        const plan = planMerge(view({}, [a, b, c]));
        expect(plan !== undefined).toBe(b < O.mergeBelow && c < O.mergeBelow);
      }),
      { seed: 0x3e6e, numRuns: 200 },
    );
  });

  it('takes the most points any live replica reports, and waits when no live replica reports a shard', () => {
    const v = view();
    v.map = { ...v.map, replicas: [['a'], ['b', 'd'], ['c']] };
    v.live.set('d', shardProc('d', { 'c/1': 150 }));
    expect(planMerge(v)).toBeUndefined();
    v.live.delete('d');
    expect(planMerge(v)).toBeDefined();
    v.live.delete('c');
    expect(planMerge(v)).toBeUndefined();
  });

  it('waits until both shards have been cold for the whole window; size alone decides without load measurement', () => {
    const since = (t: number | undefined, shardKey: string) => (key: string) => (key === shardKey ? t : NOW - O.hotWindowMs);
    expect(planMerge(view({ coldSince: since(undefined, 'c/1') }))).toBeUndefined();
    expect(planMerge(view({ coldSince: since(NOW - O.hotWindowMs + 1, 'c/2') }))).toBeUndefined();
    expect(planMerge(view({ coldSince: since(NOW - O.hotWindowMs, 'c/2') }))).toBeDefined();
    expect(planMerge(view({ coldSince: () => undefined, opts: { ...O, hotSearches: 0 } }))).toBeDefined();
  });

  it('does nothing while anything else is under way in the collection or on the two shards', () => {
    const base = view();
    const busy: Partial<ShardMap>[] = [
      { split: { shard: 0, into: 3, replicas: ['a'], fenced: false, partitioner: p.split(0).toJSON() } },
      { merge: { shard: 1, from: 2, fenced: true, since: NOW, partitioner: p.toJSON() } },
      { retain: [1] },
      { settle: { 1: 9 } },
      { moves: { 2: { from: 'c', to: 'a', since: NOW } } },
      { moves: { 1: { from: 'b', to: 'a', since: NOW } } },
      { extra: { 2: 1 } },
      { extra: { 1: 1 } },
    ];
    for (const patch of busy) expect(planMerge({ ...base, map: { ...base.map, ...patch } }), JSON.stringify(patch)).toBeUndefined();
    // A move of another shard does not stop it.
    expect(planMerge({ ...base, map: { ...base.map, moves: { 0: { from: 'a', to: 'b', since: NOW } } } })).toBeDefined();
  });

  it('never goes below the shards the collection was created with, nor merges with a map that disagrees', () => {
    expect(planMerge(view({ created: 3 }))).toBeUndefined();
    const fresh = new HashPartitioner(3);
    expect(planMerge(view({ p: fresh, created: 1 }))).toBeUndefined(); // nothing to un-split
    const v = view();
    expect(planMerge({ ...v, map: { ...v.map, replicas: [['a'], ['b']] } })).toBeUndefined();
  });

  it('is off at 0; a semantic collection merges its newest shard back the same way', () => {
    expect(planMerge(view({ opts: { ...O, mergeBelow: 0 } }))).toBeUndefined();
    const before = new SemanticPartitioner({ shards: 1, field: 'tag' }).split(0, new Map([['x', 5], ['y', 5]]));
    const sem = before.split(1, new Map([['x', 5]]));
    const plan = planMerge(view({ p: sem }));
    expect(plan?.shard).toBe(1);
    expect(plan?.from).toBe(2);
    const back = SemanticPartitioner.fromJSON(plan!.partitioner);
    for (const tag of ['x', 'y', 'z']) for (const id of [1, 2, 3, 'a']) expect(back.shardOf({ tag }, id)).toBe(before.shardOf({ tag }, id));
  });
});

describe('checkMergeBelow', () => {
  it('defaults to a quarter of --split-at, and refuses a value not below half of it', () => {
    expect(checkMergeBelow(undefined, 1000)).toBe(250);
    expect(checkMergeBelow(undefined, 0)).toBe(0);
    expect(checkMergeBelow(499, 1000)).toBe(499);
    expect(checkMergeBelow(0, 1000)).toBe(0);
    expect(checkMergeBelow(700, 0)).toBe(700);
    expectVdbError(() => checkMergeBelow(500, 1000), 'INVALID_ARGUMENT');
  });
});

describe('copyPage', () => {
  it('keeps a page of vectors well under a NATS message, at least one point, at most 1000', () => {
    expect(copyPage(4)).toBeGreaterThanOrEqual(100);
    expect(copyPage(4)).toBeLessThanOrEqual(1000);
    expect(copyPage(4096)).toBeGreaterThanOrEqual(1);
    expect(copyPage(4096) * 4096 * 4).toBeLessThan(512 * 1024);
    expect(copyPage(65_536)).toBe(1);
  });
});
