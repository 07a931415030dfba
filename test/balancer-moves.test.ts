// The balancer's move decisions (cluster/balancer/moves.ts) as plain
// functions: which replica moves where (drain first, then replica counts that
// differ by more than one), and what a move under way does next. Properties
// over random clusters: a plan never names a target that holds the shard, a
// draining or dead process as target, or a shard already moving; repeating
// plan-and-complete ends, spreads replicas to within one of each other and empties a
// draining process, never changing any shard's replica count.

import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { MARGIN, MIN_GAIN, PLAN_ROUNDS, afterStep, confirmPlan, planMove, settledLoad, stepMove } from '../cluster/balancer/moves.js';
import type { PlannedMove } from '../cluster/balancer/moves.js';
import { FLOOR, replicaWeights, shardMeasures } from '../cluster/balancer/weights.js';
import type { Member, ShardMap } from '../cluster/meta.js';

const member = (name: string, extra: Partial<Member> = {}): Member => ({ name, role: 'shard', pid: 1, heartbeat: Date.now(), ...extra });
const KEY = 'c/0';
const OPTS = { timeoutMs: 60_000, graceMs: 30_000 };

describe('stepMove', () => {
  const mv = { from: 'a', to: 'b', since: 1000 };
  it('completes once the target applied up to the log within the margin', () => {
    const live = new Map([['a', member('a')], ['b', member('b', { shards: { [KEY]: 500 - MARGIN } })]]);
    expect(stepMove(mv, KEY, live, 500, 2000, OPTS).kind).toBe('done');
    expect(stepMove(mv, KEY, live, 501, 2000, OPTS).kind).toBe('wait');
  });
  it('waits while the target copies (not serving the shard yet), then abandons after the timeout', () => {
    const live = new Map([['a', member('a')], ['b', member('b')]]);
    expect(stepMove(mv, KEY, live, 0, 2000, OPTS)).toMatchObject({ kind: 'wait', why: 'b copying' });
    expect(stepMove(mv, KEY, live, 0, 1000 + OPTS.timeoutMs + 1, OPTS).kind).toBe('abandon');
  });
  it('abandons when the target is gone or failed', () => {
    expect(stepMove(mv, KEY, new Map([['a', member('a')]]), 10, 2000, OPTS).kind).toBe('abandon');
    const failed = new Map([['a', member('a')], ['b', member('b', { shards: { [KEY]: 10 }, failed: { [KEY]: 'disk full' } })]]);
    expect(stepMove(mv, KEY, failed, 10, 2000, OPTS).kind).toBe('abandon');
  });
  it('with the source gone: completes when the target caught up, or once the source is past the grace period', () => {
    const behind = new Map([['b', member('b', { shards: { [KEY]: 1 } })]]);
    expect(stepMove(mv, KEY, behind, 10_000, 2000, { ...OPTS, sourceGoneMs: 1000 }).kind).toBe('wait');
    expect(stepMove(mv, KEY, behind, 10_000, 2000, { ...OPTS, sourceGoneMs: OPTS.graceMs }).kind).toBe('done');
    const caught = new Map([['b', member('b', { shards: { [KEY]: 10_000 } })]]);
    expect(stepMove(mv, KEY, caught, 10_000, 2000, { ...OPTS, sourceGoneMs: 1 }).kind).toBe('done');
  });
  it('afterStep removes the source when done, the target when abandoned', () => {
    expect(afterStep(['a', 'c', 'b'], mv, { kind: 'done', why: '' })).toEqual(['c', 'b']);
    expect(afterStep(['a', 'c', 'b'], mv, { kind: 'abandon', why: '' })).toEqual(['a', 'c']);
    expect(afterStep(['a', 'c', 'b'], mv, { kind: 'wait', why: '' })).toEqual(['a', 'c', 'b']);
  });
});

/** A random cluster: processes p0..p(n-1), collections of shards each with `replicas` distinct holders. */
const cluster = fc.integer({ min: 2, max: 6 }).chain((procs) => fc.record({
  procs: fc.constant(procs),
  collections: fc.array(fc.record({
    replicas: fc.integer({ min: 1, max: procs - 1 }),
    shards: fc.integer({ min: 1, max: 6 }),
  }), { minLength: 1, maxLength: 3 }),
  seed: fc.integer({ min: 0, max: 1000 }),
  drain: fc.option(fc.integer({ min: 0, max: procs - 1 }), { nil: undefined }),
}));

function build(c: { procs: number; collections: { replicas: number; shards: number }[]; seed: number }): Map<string, ShardMap> {
  const maps = new Map<string, ShardMap>();
  let next = c.seed;
  c.collections.forEach((col, i) => {
    // Skewed placement: low-numbered processes hold more, as in a cluster that grew.
    const replicas = Array.from({ length: col.shards }, () => {
      const start = next++ % Math.max(1, c.procs - 1);
      return Array.from({ length: col.replicas }, (_, k) => `p${(start + k) % c.procs}`);
    });
    maps.set(`c${i}`, { epoch: 1, replicas });
  });
  return maps;
}

describe('planMove', () => {
  it('drain first, rebalance off leaves an uneven cluster alone', () => {
    const maps = new Map<string, ShardMap>([['c', { epoch: 1, replicas: [['a', 'b'], ['a', 'b'], ['a', 'b']] }]]);
    const live = new Map(['a', 'b', 'c'].map((m) => [m, member(m)]));
    expect(planMove(maps, live, new Set(), true)).toMatchObject({ to: 'c' });
    expect(planMove(maps, live, new Set(), false)).toBeUndefined();
    expect(planMove(maps, live, new Set(['b']), false)).toMatchObject({ from: 'b', to: 'c' });
  });

  it('moves nothing in a shard under a move, with a replica down, or in a collection being split', () => {
    const live = new Map(['a', 'b', 'c'].map((m) => [m, member(m)]));
    const moving: ShardMap = { epoch: 1, replicas: [['a', 'b', 'c']], moves: { 0: { from: 'a', to: 'c', since: 0 } } };
    expect(planMove(new Map([['c', moving]]), live, new Set(['a']), true)).toBeUndefined();
    const down: ShardMap = { epoch: 1, replicas: [['a', 'x'], ['a', 'x'], ['a', 'x']] };
    expect(planMove(new Map([['c', down]]), live, new Set(), true)).toBeUndefined();
    const splitting: ShardMap = { epoch: 1, replicas: [['a'], ['a'], ['a']], split: { shard: 0, into: 3, replicas: ['b'], fenced: false, partitioner: { kind: 'hash', shards: 4 } as never } };
    expect(planMove(new Map([['c', splitting]]), live, new Set(), true)).toBeUndefined();
  });

  it('converges: replicas within one of each other, the drained process empty, replica counts kept', () => {
    fc.assert(fc.property(cluster, (c) => {
      const maps = build(c);
      const live = new Map(Array.from({ length: c.procs }, (_, i) => [`p${i}`, member(`p${i}`)]));
      const draining = new Set(c.drain === undefined ? [] : [`p${c.drain}`]);
      const counts = [...maps.values()].map((m) => m.replicas.map((l) => l.length));
      let moves = 0;
      for (;; moves++) {
        // A finite number of moves: never a move back and forth.
        expect(moves).toBeLessThan(200);
        const p = planMove(maps, live, draining, true);
        if (!p) break;
        const m = maps.get(p.collection)!;
        const list = m.replicas[p.shard];
        expect(list).toContain(p.from);
        expect(list).not.toContain(p.to);
        expect(draining.has(p.to)).toBe(false);
        expect(live.has(p.to)).toBe(true);
        // Start then complete the move, as the balancer does over two rounds.
        m.replicas[p.shard] = afterStep([...list, p.to], { from: p.from, to: p.to, since: 0 }, { kind: 'done', why: '' });
      }
      expect([...maps.values()].map((m) => m.replicas.map((l) => l.length))).toEqual(counts);
      for (const m of maps.values()) for (const l of m.replicas) expect(new Set(l).size).toBe(l.length);
      const load = settledLoad(maps);
      for (const d of draining) expect(load.get(d) ?? 0).toBe(0);
      const spread = [...live.keys()].filter((k) => !draining.has(k)).map((k) => load.get(k) ?? 0);
      // A process holding two more than another always has a shard the other lacks, so the plan gets here.
      expect(Math.max(...spread) - Math.min(...spread)).toBeLessThanOrEqual(1);
    }), { numRuns: 200 });
  });
});

describe('weights', () => {
  const maps = new Map<string, ShardMap>([['big', { epoch: 1, replicas: [['a', 'b']] }], ['small', { epoch: 1, replicas: [['a', 'b'], ['c', 'a']] }]]);
  it('the average replica weighs 1; a shard larger, fuller or busier than the others weighs more', () => {
    const live = new Map([
      ['a', member('a', { points: { 'big/0': 400_000, 'small/0': 10, 'small/1': 10 }, memory: { 'big/0': 800 * 2 ** 20 } })],
      ['b', member('b', { points: { 'big/0': 400_000, 'small/0': 10 } })],
      ['c', member('c', { points: { 'small/1': 10 } })],
    ]);
    const rates = new Map([['a small/1', 300], ['c small/1', 100]]);
    const w = replicaWeights(maps, shardMeasures(maps, live, (r, k) => rates.get(`${r} ${k}`)));
    const mean = (2 * w.get('big/0')! + 2 * w.get('small/0')! + 2 * w.get('small/1')!) / 6;
    expect(mean).toBeCloseTo(1, 9);
    expect(w.get('big/0')!).toBeGreaterThan(w.get('small/1')!);
    expect(w.get('small/1')!).toBeGreaterThan(w.get('small/0')!);
  });
  it('below the floors every shard weighs 1', () => {
    const live = new Map(['a', 'b', 'c'].map((m) => [m, member(m, { points: { 'big/0': FLOOR.points - 1, 'small/0': 3 }, memory: { 'small/1': 1000 } })]));
    const w = replicaWeights(maps, shardMeasures(maps, live, () => FLOOR.searches / 2));
    for (const x of w.values()) expect(x).toBeCloseTo(1, 9);
  });
  it('moves the replica that evens the two processes out best, and none that only shifts the imbalance', () => {
    const live = new Map(['a', 'b', 'c'].map((m) => [m, member(m)]));
    // a: h (1.5) + m (1.0) = 2.5; c: k (0.5). Moving m makes them 1.5 and 1.5; moving h, 1.0 and 2.0.
    const uneven = new Map<string, ShardMap>([['h', { epoch: 1, replicas: [['a']] }], ['m', { epoch: 1, replicas: [['a']] }], ['k', { epoch: 1, replicas: [['c']] }]]);
    const ac = new Map(['a', 'c'].map((m) => [m, member(m)]));
    expect(planMove(uneven, ac, new Set(), true, new Map([['h/0', 1.5], ['m/0', 1.0], ['k/0', 0.5]]))).toMatchObject({ collection: 'm', from: 'a', to: 'c' });
    // a: h (1.6) + l0 (0.2); b: l1, l2 (0.2 each); c: empty. By count c takes one; by weight any move gains under MIN_GAIN.
    const heavy = new Map<string, ShardMap>([['h', { epoch: 1, replicas: [['a']] }], ['l', { epoch: 1, replicas: [['a'], ['b'], ['b']] }]]);
    expect(planMove(heavy, live, new Set(), true)).toMatchObject({ to: 'c' });
    expect(planMove(heavy, live, new Set(), true, new Map([['h/0', 1.6], ['l/0', 0.2], ['l/1', 0.2], ['l/2', 0.2]]))).toBeUndefined();
  });
  it('with any weights, plan-and-complete ends, keeps replica counts, and leaves no move that gains MIN_GAIN', () => {
    fc.assert(fc.property(cluster, fc.array(fc.double({ min: 0.05, max: 4, noNaN: true }), { minLength: 18, maxLength: 18 }), (c, ws) => {
      const maps = build(c);
      const live = new Map(Array.from({ length: c.procs }, (_, i) => [`p${i}`, member(`p${i}`)]));
      const weights = new Map<string, number>();
      let i = 0;
      for (const [name, m] of maps) m.replicas.forEach((_, s) => weights.set(`${name}/${s}`, ws[i++ % ws.length]));
      const counts = [...maps.values()].map((m) => m.replicas.map((l) => l.length));
      let moves = 0;
      for (;; moves++) {
        expect(moves).toBeLessThan(500);
        const p = planMove(maps, live, new Set(), true, weights);
        if (!p) break;
        const m = maps.get(p.collection)!;
        const list = m.replicas[p.shard];
        expect(list).not.toContain(p.to);
        m.replicas[p.shard] = afterStep([...list, p.to], { from: p.from, to: p.to, since: 0 }, { kind: 'done', why: '' });
      }
      expect([...maps.values()].map((m) => m.replicas.map((l) => l.length))).toEqual(counts);
      const load = settledLoad(maps, (k) => weights.get(k)!);
      for (const [name, m] of maps) m.replicas.forEach((list, s) => {
        const w = weights.get(`${name}/${s}`)!;
        for (const hi of list) for (const lo of live.keys()) {
          if (list.includes(lo)) continue;
          const d = (load.get(hi) ?? 0) - (load.get(lo) ?? 0);
          expect(d - Math.abs(d - 2 * w)).toBeLessThan(MIN_GAIN);
        }
      });
    }), { numRuns: 200 });
  });
});

describe('confirmPlan', () => {
  const move = (to: string, kind: PlannedMove['kind'] = 'balance'): PlannedMove => ({ collection: 'c', shard: 0, from: 'a', to, why: '', kind });
  it('a drain starts at once; a move for balance once planned PLAN_ROUNDS rounds in a row; another plan starts the count again', () => {
    expect(confirmPlan(undefined, move('b', 'drain')).start).toBe(true);
    let prev: { id: string; rounds: number } | undefined;
    for (let r = 1; r < PLAN_ROUNDS; r++) {
      const c = confirmPlan(prev, move('b'));
      expect(c.start).toBe(false);
      prev = c.planned;
    }
    const other = confirmPlan(prev, move('x'));
    expect(other).toMatchObject({ start: false, planned: { rounds: 1 } });
    expect(confirmPlan(prev, move('b'))).toEqual({ start: true });
    expect(confirmPlan(prev, undefined)).toEqual({ start: false });
  });
});
