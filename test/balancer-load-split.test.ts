// Load-driven splits (cluster/balancer/load-split.ts) as plain functions: the
// window, read scaling first, and the rule that only a shard reached by a
// routed share of its collection's searches splits for load; then the rates
// derived from simulated heartbeats of coordinators and shard processes.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { ROUTED_SHARE, forgetLoadSplit, loadSplitCandidate, loadSplitStep, newLoadSplitState } from '../cluster/balancer/load-split.js';
import type { LoadSplitOptions, LoadSplitState } from '../cluster/balancer/load-split.js';
import type { Sample } from '../cluster/balancer/hot.js';
import type { Member, ShardMap } from '../cluster/meta.js';
import { mulberry32 } from '../ts/random.js';

const O: LoadSplitOptions = { splitSearches: 100, hotWindowMs: 10_000, hotSearches: 50, maxLoadReplicas: 1 };
const hot = { perReplica: 150, share: 0.5, extra: 1 };

describe('loadSplitStep', () => {
  it('splits only after the shard stayed hot for the window; a dip starts the window again', () => {
    const a = loadSplitStep(undefined, hot, 0, O);
    expect(a).toEqual({ since: 0, split: false });
    expect(loadSplitStep(a.since, hot, 9_999, O).split).toBe(false);
    expect(loadSplitStep(a.since, hot, 10_000, O).split).toBe(true);
    const dip = loadSplitStep(a.since, { ...hot, perReplica: 90 }, 5_000, O);
    expect(dip).toEqual({ split: false });
    expect(loadSplitStep(dip.since, hot, 12_000, O)).toEqual({ since: 12_000, split: false });
  });

  it('waits for the load replicas first, unless load replicas are off', () => {
    expect(loadSplitStep(0, { ...hot, extra: 0 }, 60_000, O)).toEqual({ split: false, wait: 'replicas' });
    expect(loadSplitStep(0, { ...hot, extra: 0 }, 60_000, { ...O, hotSearches: 0 }).split).toBe(true);
    expect(loadSplitStep(0, { ...hot, extra: 0 }, 60_000, { ...O, maxLoadReplicas: 0 }).split).toBe(true);
  });

  it('never splits a shard reached by every search, nor at 0, whatever the rates and times', () => {
    fc.assert(fc.property(
      fc.array(fc.tuple(fc.double({ min: 0, max: 1e6, noNaN: true }), fc.double({ min: ROUTED_SHARE, max: 3, noNaN: true }), fc.integer({ min: 0, max: 5000 })), { maxLength: 100 }),
      fc.integer({ min: 0, max: 3 }),
      (steps, extra) => {
        let since: number | undefined;
        let t = 0;
        for (const [perReplica, share, dt] of steps) {
          t += dt;
          const v = loadSplitStep(since, { perReplica, share, extra }, t, { ...O, maxLoadReplicas: 0 });
          expect(v.split).toBe(false);
          expect(v.since).toBeUndefined();
          since = v.since;
          expect(loadSplitStep(0, { perReplica, share: share * ROUTED_SHARE * 0.99 / 3, extra }, t + 1e9, { ...O, splitSearches: 0 }).split).toBe(false);
        }
        expect(loadSplitStep(0, { perReplica: 1e6, share: Infinity, extra }, 1e9, O).split).toBe(false);
      }));
  });
});

/** A collection's cluster in a test: coordinator and shard process heartbeats with search counts. */
class Sim {
  readonly coordinators: Member[];
  readonly live = new Map<string, Member>();
  readonly state: LoadSplitState = newLoadSplitState();
  readonly samples = new Map<string, Sample>();
  t = 0;
  constructor(readonly map: ShardMap, nCoordinators: number) {
    this.coordinators = Array.from({ length: nCoordinators }, (_, i) => ({ name: `c-${i}`, role: 'coordinator', pid: i, heartbeat: 0, searches: { a: 0 } }));
    for (const r of new Set(map.replicas.flat())) this.live.set(r, { name: r, role: 'shard', pid: 0, heartbeat: 0, searches: {} });
  }
  /** `n` searches through coordinator `c`, each reaching the shards `route` picks, on a replica `pick` picks. */
  search(n: number, c: number, route: () => number[], pick: (list: string[]) => string): void {
    this.coordinators[c].searches!.a += n;
    for (let i = 0; i < n; i++) {
      for (const s of route()) {
        const m = this.live.get(pick(this.map.replicas[s]))!;
        m.searches![`a/${s}`] = (m.searches![`a/${s}`] ?? 0) + 1;
      }
    }
  }
  /** Every member heartbeats at `t + dt`; a balancer round runs. */
  round(dt: number, work: string[] = []) {
    this.t += dt;
    for (const m of [...this.coordinators, ...this.live.values()]) m.heartbeat = this.t;
    return loadSplitCandidate(this.state, this.samples, O, 'a', this.map, this.live, this.coordinators, work, this.t);
  }
}

const mapOf = (replicas: string[][], extra?: Record<number, number>): ShardMap => ({ epoch: 1, replicas, ...(extra ? { extra } : {}) });

describe('loadSplitCandidate', () => {
  it('a shard reached by a routed share of the searches splits after the window; the others do not; status says why it waits', () => {
    const sim = new Sim(mapOf([['p0', 'p1'], ['p2', 'p3']], { 0: 1, 1: 1 }), 2);
    const rand = mulberry32(3);
    // 60 % of the searches reach shard 0, 40 % shard 1; 400/s in all: 120/s per replica of shard 0, 80 of shard 1.
    const route = () => [rand() < 0.6 ? 0 : 1];
    const pick = (list: string[]) => list[Math.floor(rand() * list.length)];
    expect(sim.round(1000)).toBeUndefined(); // the first heartbeats give no rate yet
    let got: { shard: number; reason: string } | undefined;
    const work: string[] = [];
    for (let i = 0; i < 30 && !got; i++) {
      sim.search(200, 0, route, pick);
      sim.search(200, 1, route, pick);
      work.length = 0;
      got = sim.round(1000, work);
      if (!got && i > 0) expect(work.join('\n')).toMatch(/^a\/0: 1\d\d searches\/s per replica, past 100, reached by [56]\d% of searches; splits for load if it stays so \d+ s more$/);
    }
    expect(got?.shard).toBe(0);
    expect(got?.reason).toMatch(/^1\d\d searches\/s per replica for 10 s, reached by [56]\d% of searches$/);
    expect(sim.t).toBeGreaterThanOrEqual(12_000);
    expect(sim.t).toBeLessThanOrEqual(14_000);
    // The window starts again after a split.
    expect(sim.state.since.size).toBe(0);
  });

  it('a shard without its load replicas, or with a move under way in the collection, waits and says so', () => {
    const sim = new Sim(mapOf([['p0'], ['p1']]), 1);
    const route = () => [0];
    for (let i = 0; i < 20; i++) {
      sim.search(150, 0, route, (l) => l[0]);
      sim.search(150, 0, () => [1], (l) => l[0]);
      const work: string[] = [];
      expect(sim.round(1000, work)).toBeUndefined();
      if (i > 0) expect(work).toContain('a/0: 150 searches/s per replica, past 100; a split for load waits for its load replicas (0 of 1)');
    }
    const moving = new Sim({ ...mapOf([['p0'], ['p1']], { 0: 1, 1: 1 }), moves: { 1: { from: 'p1', to: 'p2', since: 0 } } }, 1);
    const work: string[] = [];
    for (let i = 0; i < 20; i++) {
      moving.search(150, 0, route, (l) => l[0]);
      moving.search(150, 0, () => [1], (l) => l[0]);
      work.length = 0;
      expect(moving.round(1000, work)).toBeUndefined();
    }
    expect(work).toContain('a/0: a split for load waits for the moves of shard 1');
  });

  it('under full fan-out no shard ever splits for load, whatever the rates, coordinators and replicas', () => {
    fc.assert(fc.property(
      fc.integer({ min: 1, max: 4 }), fc.integer({ min: 1, max: 3 }), fc.integer({ min: 1, max: 3 }), fc.integer(),
      fc.array(fc.tuple(fc.array(fc.integer({ min: 0, max: 3000 }), { minLength: 4, maxLength: 4 }), fc.integer({ min: 200, max: 3000 })), { minLength: 1, maxLength: 40 }),
      (shards, replicas, nc, seed, rounds) => {
        const rand = mulberry32(seed);
        const map = mapOf(Array.from({ length: shards }, (_, s) => Array.from({ length: replicas }, (_, r) => `p${s}-${r}`)), Object.fromEntries(Array.from({ length: shards }, (_, s) => [s, 1])));
        const sim = new Sim(map, nc);
        const all = () => map.replicas.map((_, s) => s);
        for (const [counts, dt] of rounds) {
          for (let c = 0; c < nc; c++) sim.search(counts[c], c, all, (l) => l[Math.floor(rand() * l.length)]);
          expect(sim.round(dt)).toBeUndefined();
        }
      }), { numRuns: 50 });
  });
});

describe('forgetLoadSplit', () => {
  it('drops the counts and windows of collections no longer there', () => {
    const st = newLoadSplitState();
    st.coordinators.set('c-0 a', { count: 1, at: 1, rate: 0 });
    st.coordinators.set('c-0 b', { count: 1, at: 1, rate: 0 });
    st.since.set('a/0', 1);
    st.since.set('b/1', 1);
    forgetLoadSplit(st, new Set(['b']));
    expect([...st.coordinators.keys()]).toEqual(['c-0 b']);
    expect([...st.since.keys()]).toEqual(['b/1']);
  });
});
