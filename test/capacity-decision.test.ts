// The coordinator's capacity decision (cluster/capacity.ts) as plain functions:
// which upserts are refused for lack of room or disk, what each replica's room
// is, and the guard that counts its own writes in flight.

import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import { refusal, shardRoom, limitsFrom, upsertPoints, emptyRoom, WriteGuard, OTHERS_MARGIN, DEFAULT_LIMITS } from '../cluster/capacity.js';
import type { ReplicaView, Room } from '../cluster/capacity.js';
import type { CollectionMeta, Member } from '../cluster/meta.js';
import type { LogEntry } from '../cluster/replica.js';
import { VdbError, ErrorCode } from '../ts/errors.js';

const MiB = 1024 * 1024;

const roomArb: fc.Arbitrary<Room> = fc.record({
  points: fc.integer({ min: 0, max: 10_000 }),
  limit: fc.constantFrom('max-index-mb' as const, 'max-points' as const),
  value: fc.integer({ min: 1, max: 4000 }),
});
const replicaArb: fc.Arbitrary<ReplicaView> = fc.record({
  member: fc.constantFrom('a', 'b', 'c', 'd'),
  room: fc.option(roomArb, { nil: undefined }),
  disk: fc.option(fc.record({ free: fc.integer({ min: 0, max: 1000 }).map((m) => m * MiB), floor: fc.integer({ min: 0, max: 500 }).map((m) => m * MiB) }), { nil: undefined }),
  inFlight: fc.integer({ min: 0, max: 5000 }),
});

describe('refusal', () => {
  it('refuses exactly when a replica is below its disk floor or the points and those in flight pass the least room', () => {
    fc.assert(fc.property(fc.integer({ min: 0, max: 10_000 }), fc.array(replicaArb, { maxLength: 4 }), fc.integer({ min: 0, max: 200 }), (points, replicas, margin) => {
      const why = refusal('col', 3, points, replicas, margin);
      const lowDisk = replicas.some((r) => r.disk && r.disk.free < r.disk.floor);
      const full = replicas.some((r) => r.room && points + r.inFlight + margin > r.room.points);
      expect(why !== undefined).toBe(points > 0 && (lowDisk || full));
      if (why) expect(why).toMatch(/^shard col\/3[: ].*the write was not applied$/);
    }));
  });

  it('names the limit, its value and the replica', () => {
    const r: ReplicaView[] = [
      { member: 'shard-0', room: { points: 500, limit: 'max-points', value: 1000 }, inFlight: 0 },
      { member: 'shard-1', room: { points: 120, limit: 'max-index-mb', value: 64 }, inFlight: 30 },
    ];
    expect(refusal('c', 0, 100, r, 0)).toBe('shard c/0 is full: replica shard-1 has room for 120 more points under its --max-index-mb limit of 64 MiB; this write adds 100, with 30 more held back for writes in flight; the write was not applied');
    expect(refusal('c', 0, 90, r, 0)).toBeUndefined();
    expect(refusal('c', 0, 90, r, 1)).toMatch(/--max-index-mb/);
    const disk = [{ member: 'shard-2', disk: { free: 100 * MiB, floor: 256 * MiB }, inFlight: 0 }];
    expect(refusal('c', 1, 1, disk)).toBe('shard c/1: replica shard-2 has 100 MiB of free disk, below its --min-free-disk-mb floor of 256; the write was not applied');
  });

  it('lets a write through when no live replica reports room, and a write of no points always', () => {
    expect(refusal('c', 0, 10, [{ member: 'a', inFlight: 0 }])).toBeUndefined();
    expect(refusal('c', 0, 10, [])).toBeUndefined();
    expect(refusal('c', 0, 0, [{ member: 'a', room: { points: 0, limit: 'max-points', value: 5 }, disk: { free: 0, floor: 1 }, inFlight: 9 }])).toBeUndefined();
  });
});

describe('shardRoom and limits', () => {
  it('is the lesser of the index room and the points left under max-points', () => {
    fc.assert(fc.property(fc.integer({ min: 0, max: 1e6 }), fc.integer({ min: 0, max: 1e6 }), fc.option(fc.integer({ min: 1, max: 1e6 }), { nil: undefined }), (index, count, maxPoints) => {
      const limits = limitsFrom({ maxIndexMb: 100, maxPoints });
      let asked = 0;
      const room = shardRoom({ indexRoom: (b) => { asked = b; return index; }, count: () => count }, limits);
      expect(asked).toBe(100 * MiB);
      const byPoints = maxPoints === undefined ? Infinity : Math.max(0, maxPoints - count);
      expect(room.points).toBe(Math.min(index, byPoints));
      expect(room.limit).toBe(byPoints < index ? 'max-points' : 'max-index-mb');
      expect(room.value).toBe(byPoints < index ? maxPoints : 100);
    }));
  });

  it('has defaults below the Wasm limit, and refuses values out of range', () => {
    const d = limitsFrom({});
    expect(d.maxIndexBytes).toBe(DEFAULT_LIMITS.maxIndexMb * MiB);
    expect(d.maxIndexBytes).toBeLessThan(4 * 1024 * MiB - 200 * MiB);
    expect(d.maxPoints).toBeUndefined();
    expect(d.minFreeDiskBytes).toBe(256 * MiB);
    for (const bad of [{ maxIndexMb: 0 }, { maxIndexMb: 4096 }, { maxIndexMb: 1.5 }, { maxPoints: 0 }, { minFreeDiskMb: -1 }]) {
      expect(() => limitsFrom(bad)).toThrow(expect.objectContaining({ code: ErrorCode.INVALID_ARGUMENT }));
    }
  });
});

const CM: CollectionMeta = { name: 'c', dim: 4, metric: 'l2', replicas: 1, hnsw: { m: 16, efConstruction: 200 }, partitioner: { kind: 'hash', shards: 1 } as CollectionMeta['partitioner'], createdAt: 0 };
const upsert = (n: number): LogEntry => ({ op: 'upsert', points: Array.from({ length: n }, (_, i) => ({ id: i, vector: new Uint8Array(4) })) });

describe('WriteGuard', () => {
  it('counts upserted points per shard, not deletes', () => {
    const entries = new Map<number, LogEntry[]>([[0, [upsert(3), { op: 'delete', ids: [1] }, upsert(2)]], [1, [{ op: 'delete', ids: [1, 2] }]]]);
    expect([...upsertPoints(entries)]).toEqual([[0, 5]]);
  });

  it('holds back its own appends until the replicas report them applied, then forgets them', async () => {
    const member = (applied: number, points: number): Member => ({
      name: 'r0', role: 'shard', pid: 1, heartbeat: Date.now(), shards: { 'c/0': applied }, room: { 'c/0': { points, limit: 'max-points', value: 1000 } },
    });
    let live = [member(0, 300)];
    const guard = new WriteGuard(() => live, 0);
    let seq = 0;
    const append = (entries: Map<number, LogEntry[]>) => guard.append(CM, [['r0']], entries, async () => ({ 0: ++seq }));
    await append(new Map([[0, [upsert(100)]]]));
    await append(new Map([[0, [upsert(100)]]]));
    // 200 appended, not yet applied: 100 more fit in 300, 101 do not.
    await expect(append(new Map([[0, [upsert(101)]]]))).rejects.toThrow(expect.objectContaining({ code: ErrorCode.RESOURCE_EXHAUSTED }));
    // The replica applied the first write (its room is now 200): the second is still in flight.
    live = [member(1, 200)];
    await expect(append(new Map([[0, [upsert(101)]]]))).rejects.toThrow(/with 100 more held back/);
    await append(new Map([[0, [upsert(100)]]]));
    // Deletes always go.
    await append(new Map([[0, [{ op: 'delete', ids: [1] }]]]));
    live = [member(4, 0)];
    await expect(append(new Map([[0, [upsert(1)]]]))).rejects.toThrow(/room for 0 more points/);
  });

  it('counts writes checked but not yet appended', async () => {
    const live: Member[] = [{ name: 'r0', role: 'shard', pid: 1, heartbeat: Date.now(), shards: { 'c/0': 0 }, room: { 'c/0': { points: 150, limit: 'max-index-mb', value: 8 } } }];
    const guard = new WriteGuard(() => live, 0);
    let release!: () => void;
    const slow = guard.append(CM, [['r0']], new Map([[0, [upsert(100)]]]), () => new Promise((r) => { release = () => r({ 0: 1 }); }));
    await expect(guard.append(CM, [['r0']], new Map([[0, [upsert(60)]]]), async () => ({ 0: 2 }))).rejects.toBeInstanceOf(VdbError);
    release();
    await slow;
  });

  it('while no live replica reports room for a shard, uses an empty shard\'s room under their limits', async () => {
    let live: Member[] = [{ name: 'r0', role: 'shard', pid: 1, heartbeat: Date.now(), limits: { maxIndexBytes: 64 * MiB, maxPoints: 100 } }];
    const guard = new WriteGuard(() => live, 0);
    let seq = 0;
    const append = (n: number) => guard.append(CM, [['r0']], new Map([[0, [upsert(n)]]]), async () => ({ 0: ++seq }));
    await append(60);
    await expect(append(41)).rejects.toThrow(/room for 100 more points under its --max-points limit of 100 points; this write adds 41, with 60 more/);
    await append(40);
    // Once it reports, its own room counts.
    live = [{ ...live[0], shards: { 'c/0': 2 }, room: { 'c/0': { points: 7, limit: 'max-points', value: 100 } } }];
    await append(7);
    await expect(append(1)).rejects.toThrow(/room for 7 more/);
  });

  it('computes the room of an empty shard from the Wasm core\'s layout', () => {
    const byMemory = emptyRoom({ dim: 4096, metric: 'l2', hnsw: { m: 16, efConstruction: 200 } }, { maxIndexBytes: 64 * MiB });
    expect(byMemory.limit).toBe('max-index-mb');
    expect(byMemory.value).toBe(64);
    // A dim-4096 record is 16,576 bytes; 64 MiB less the fixed part and the slack.
    expect(byMemory.points).toBeGreaterThan(Math.floor(63 * MiB / 16_700));
    expect(byMemory.points).toBeLessThan(Math.floor(64 * MiB / 16_576));
    expect(emptyRoom({ dim: 8, metric: 'cosine', hnsw: { m: 8, efConstruction: 50 } }, { maxIndexBytes: 64 * MiB, maxPoints: 10 })).toEqual({ points: 10, limit: 'max-points', value: 10 });
  });

  it('uses a margin for other coordinators by default', () => {
    expect(OTHERS_MARGIN).toBeGreaterThan(0);
    expect(refusal('c', 0, 1, [{ member: 'a', room: { points: OTHERS_MARGIN, limit: 'max-points', value: 1 }, inFlight: 0 }])).toBeDefined();
    expect(refusal('c', 0, 1, [{ member: 'a', room: { points: OTHERS_MARGIN + 1, limit: 'max-points', value: 1 }, inFlight: 0 }])).toBeUndefined();
  });
});
