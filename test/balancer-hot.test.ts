// Load-driven replicas (cluster/balancer/hot.ts) as plain functions: the
// search rate from heartbeat counts, and the hot/cold window with its limits.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { forgetGone, heatStep, nextSample } from '../cluster/balancer/hot.js';
import type { Heat } from '../cluster/balancer/hot.js';

const O = { hotSearches: 100, hotWindowMs: 10_000, maxLoadReplicas: 2 };

describe('nextSample', () => {
  it('is the count difference over the time difference; a restart (count down) starts over at rate 0', () => {
    const a = nextSample(undefined, 50, 1000);
    expect(a.rate).toBe(0);
    expect(nextSample(a, 250, 3000).rate).toBe(100);
    expect(nextSample(a, 10, 3000)).toEqual({ count: 10, at: 3000, rate: 0 });
    expect(nextSample(a, 60, 1000)).toBe(a); // the same heartbeat again
  });
});

describe('forgetGone', () => {
  it('drops the samples and heat of collections no longer there', () => {
    const ctx = { samples: new Map([['shard-0 a/0', { count: 1, at: 1, rate: 0 }], ['shard-0 b/1', { count: 1, at: 1, rate: 0 }]]), heat: new Map([['a/0', {}], ['b/1', {}]]) };
    forgetGone(ctx, new Set(['b']));
    expect([...ctx.samples.keys()]).toEqual(['shard-0 b/1']);
    expect([...ctx.heat.keys()]).toEqual(['b/1']);
  });
});

describe('heatStep', () => {
  it('adds only after the rate stayed above the threshold for the window, and removes only after it stayed under a quarter', () => {
    let h: Heat = {};
    h = heatStep(h, 150, 0, 0, O).heat;
    expect(heatStep(h, 150, 9_999, 0, O).action).toBeUndefined();
    expect(heatStep(h, 150, 10_000, 0, O).action).toBe('add');
    // A dip below the threshold starts the window again.
    const dipped = heatStep(h, 90, 5_000, 0, O).heat;
    expect(heatStep(dipped, 150, 12_000, 0, O).action).toBeUndefined();
    let c: Heat = heatStep({}, 10, 0, 1, O).heat;
    expect(heatStep(c, 10, 10_000, 1, O).action).toBe('remove');
    c = heatStep({}, 30, 0, 1, O).heat; // between a quarter and the threshold: neither
    expect(heatStep(c, 30, 50_000, 1, O).action).toBeUndefined();
  });

  it('never adds past the maximum nor removes below the collection count; off at 0', () => {
    fc.assert(fc.property(fc.array(fc.tuple(fc.integer({ min: 0, max: 300 }), fc.integer({ min: 0, max: 5000 })), { maxLength: 200 }), (steps) => {
      let h: Heat = {};
      let extra = 0;
      let t = 0;
      for (const [rate, dt] of steps) {
        t += dt;
        const s = heatStep(h, rate, t, extra, O);
        h = s.heat;
        if (s.action === 'add') { expect(rate).toBeGreaterThan(O.hotSearches); extra++; }
        if (s.action === 'remove') { expect(rate).toBeLessThan(O.hotSearches / 4); extra--; }
        expect(extra).toBeGreaterThanOrEqual(0);
        expect(extra).toBeLessThanOrEqual(O.maxLoadReplicas);
        expect(heatStep(h, rate, t, extra, { ...O, hotSearches: 0 }).action).toBeUndefined();
      }
    }));
  });
});
