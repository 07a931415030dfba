// The cluster side of write versions (cluster/versions.ts) that needs no
// server: when a versioned write may still be acknowledged, and when the
// balancer appends a horizon. The stream itself is tested on a real cluster
// in test/moves.test.ts.

import { describe, it, expect } from 'vitest';
import type { JetStreamClient } from 'nats';
import { Horizons, HORIZON_AGE_MS, WRITE_IN_TIME_MS, checkInTime, horizonAge, stamp } from '../cluster/versions.js';
import { names } from '../cluster/subjects.js';
import { decode } from '../ts/wire/codec.js';
import { VdbError, ErrorCode } from '../ts/errors.js';

describe('checkInTime', () => {
  const asked = { mono: 1000, wall: 5_000_000 };
  const versioned = { entry: { version: 7 }, asked };

  it('acknowledges a write whose appends ended within the limit, on both clocks', () => {
    expect(() => checkInTime(versioned, { mono: 1000 + WRITE_IN_TIME_MS, wall: 5_000_000 + WRITE_IN_TIME_MS })).not.toThrow();
  });

  it('refuses (UNAVAILABLE, in doubt) one that took longer on either clock', () => {
    for (const now of [{ mono: 1001 + WRITE_IN_TIME_MS, wall: 5_000_000 }, { mono: 1000, wall: 5_000_001 + WRITE_IN_TIME_MS }]) {
      const e = (() => { try { checkInTime(versioned, now); } catch (x) { return x; } })();
      expect(e).toBeInstanceOf(VdbError);
      expect((e as VdbError).code).toBe(ErrorCode.UNAVAILABLE);
    }
  });

  it('never refuses an unversioned write', () => {
    expect(() => checkInTime({ entry: {}, asked }, { mono: 1e12, wall: 1e13 })).not.toThrow();
  });

  it('the horizon waits at least twice as long as a write may take', () => {
    expect(HORIZON_AGE_MS).toBeGreaterThanOrEqual(2 * WRITE_IN_TIME_MS);
  });

  it('a stamp asks for a version only when the collection needs one, and notes the time first', async () => {
    let asks = 0;
    const take = async () => { asks++; return 42; };
    const before = performance.now();
    const s = await stamp(true, take);
    expect(s.entry).toEqual({ version: 42 });
    expect(s.asked.mono).toBeGreaterThanOrEqual(before);
    expect((await stamp(false, take)).entry).toEqual({});
    expect(asks).toBe(1);
  });
});

describe('Horizons', () => {
  function fake() {
    const published: { subject: string; body: unknown }[] = [];
    const js = { publish: async (subject: string, data: Uint8Array) => { published.push({ subject, body: decode(data, false) }); return { seq: published.length }; } } as unknown as JetStreamClient;
    let version = 100;
    return { published, h: new Horizons(js, names('vdb'), async () => ++version) };
  }

  it('holds a version, appends it to every shard log once it is old enough, then holds the next', async () => {
    const { published, h } = fake();
    const t0 = performance.now();
    expect(await h.step('c', 3, t0)).toBeUndefined(); // takes 101
    expect(published).toEqual([]);
    expect(await h.step('c', 3, t0 + HORIZON_AGE_MS / 2)).toBeUndefined();
    expect(published).toEqual([]);
    expect(await h.step('c', 3, performance.now() + HORIZON_AGE_MS)).toBe(101);
    expect(published).toEqual([0, 1, 2].map((s) => ({ subject: `vdb.log.c.${s}`, body: { op: 'horizon', version: 101 } })));
    expect(await h.step('c', 3, performance.now() + 2 * HORIZON_AGE_MS)).toBe(102);
  });

  it('forgets a collection no longer listed, and starts over for it', async () => {
    const { published, h } = fake();
    await h.step('c', 1);
    h.keep(new Set());
    expect(await h.step('c', 1, performance.now() + HORIZON_AGE_MS)).toBeUndefined();
    expect(published).toEqual([]);
  });
});

describe('a shorter write window (--version-window-ms)', () => {
  it('refuses a write past the window it is given, and a horizon waits twice that window', async () => {
    const asked = { mono: 1000, wall: 5_000_000 };
    const versioned = { entry: { version: 3 }, asked };
    expect(() => checkInTime(versioned, { mono: 1000 + 5000, wall: 5_000_000 }, 5000)).not.toThrow();
    expect(() => checkInTime(versioned, { mono: 1001 + 5000, wall: 5_000_000 }, 5000)).toThrow(/more than 5000 ms/);
    const published: unknown[] = [];
    const js = { publish: async (_: string, data: Uint8Array) => { published.push(decode(data, false)); return { seq: published.length }; } } as unknown as JetStreamClient;
    let version = 0;
    const h = new Horizons(js, names('vdb'), async () => ++version, horizonAge(5000));
    const t0 = performance.now();
    await h.step('c', 1, t0);
    expect(await h.step('c', 1, t0 + 9_000)).toBeUndefined();
    expect(await h.step('c', 1, performance.now() + 10_001)).toBe(1);
  });
});
