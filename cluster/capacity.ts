// Capacity is checked before a write is acknowledged. Shard processes report
// in their heartbeats how many more points each shard they serve can take
// (under the index memory and point limits they are configured with) and their
// free disk; a coordinator refuses an upsert with RESOURCE_EXHAUSTED when, for
// a shard it writes to, the points it adds plus those possibly still in flight
// exceed the least room among the shard's live replicas, or when one of those
// replicas is below its disk floor. A refused write is never appended, so no
// replica ever fails on it. Deletes are always accepted.

import { statfsSync } from 'node:fs';
import { VdbError, ErrorCode } from '../ts/errors.js';
import { MEMORY_LIMIT_BYTES, WasmIndex } from '../ts/core/wasm-index.js';
import { shardKey } from './meta.js';
import type { CollectionMeta, Member } from './meta.js';
import type { LogEntry } from './replica.js';

const MiB = 1024 * 1024;

/** A shard process's limits, as its options and flags give them. */
export interface Limits {
  /** Index memory per shard replica, bytes (`--max-index-mb`). */
  maxIndexBytes: number;
  /** Points per shard replica (`--max-points`); none when absent. */
  maxPoints?: number;
  /** Free disk below which the process takes no more upserts, bytes (`--min-free-disk-mb`). */
  minFreeDiskBytes: number;
}

/** Defaults: the Wasm limit less 256 MiB for writes in flight beyond what the
 * coordinators account for, no point limit, and a 256 MiB disk floor. */
export const DEFAULT_LIMITS = {
  maxIndexMb: Math.floor(MEMORY_LIMIT_BYTES / MiB) - 256,
  minFreeDiskMb: 256,
} as const;

/** The limits as shard options and flags give them: MiB and points, absent for the default. */
export interface ShardLimits {
  maxIndexMb?: number;
  maxPoints?: number;
  minFreeDiskMb?: number;
}

/** Limits from the flags' values; INVALID_ARGUMENT for a value out of range. */
export function limitsFrom(o: ShardLimits): Limits {
  const maxIndexMb = o.maxIndexMb ?? DEFAULT_LIMITS.maxIndexMb;
  const minFreeDiskMb = o.minFreeDiskMb ?? DEFAULT_LIMITS.minFreeDiskMb;
  const whole = (v: number, min: number) => Number.isSafeInteger(v) && v >= min;
  if (!whole(maxIndexMb, 1) || maxIndexMb * MiB > MEMORY_LIMIT_BYTES) {
    throw new VdbError(ErrorCode.INVALID_ARGUMENT, `max-index-mb must be an integer from 1 to ${Math.floor(MEMORY_LIMIT_BYTES / MiB)}, got ${maxIndexMb}`);
  }
  if (o.maxPoints !== undefined && !whole(o.maxPoints, 1)) throw new VdbError(ErrorCode.INVALID_ARGUMENT, `max-points must be a positive integer, got ${o.maxPoints}`);
  if (!whole(minFreeDiskMb, 0)) throw new VdbError(ErrorCode.INVALID_ARGUMENT, `min-free-disk-mb must be a non-negative integer, got ${minFreeDiskMb}`);
  return { maxIndexBytes: maxIndexMb * MiB, maxPoints: o.maxPoints, minFreeDiskBytes: minFreeDiskMb * MiB };
}

/** How many more points a shard replica can take, and the limit that bounds it, as a flag names it. */
export interface Room {
  points: number;
  limit: 'max-index-mb' | 'max-points';
  /** The limit's configured value (MiB or points). */
  value: number;
}

/** A process's free disk (bytes available to it) and its floor. */
export interface Disk {
  free: number;
  floor: number;
}

/** The room of one shard replica: the lesser of its index's room under the memory limit and the point limit's. */
export function shardRoom(store: { indexRoom(maxBytes: number): number; count(): number }, limits: Limits): Room {
  const memory: Room = { points: store.indexRoom(limits.maxIndexBytes), limit: 'max-index-mb', value: limits.maxIndexBytes / MiB };
  if (limits.maxPoints === undefined) return memory;
  const points = Math.max(0, limits.maxPoints - store.count());
  return points < memory.points ? { points, limit: 'max-points', value: limits.maxPoints } : memory;
}

/** Room of a shard that holds nothing yet, under a process's limits: what a
 * fresh index of the collection's geometry can take (asked of the Wasm core
 * itself), and the point limit. Cached per geometry and limits. */
const emptyRooms = new Map<string, Room>();
export function emptyRoom(cm: Pick<CollectionMeta, 'dim' | 'metric' | 'hnsw' | 'quantization'>, limits: Pick<Limits, 'maxIndexBytes' | 'maxPoints'>): Room {
  const key = JSON.stringify([cm.dim, cm.metric, cm.hnsw.m, cm.hnsw.efConstruction, cm.quantization?.kind, limits.maxIndexBytes, limits.maxPoints]);
  let room = emptyRooms.get(key);
  if (!room) {
    const index = WasmIndex.create({ dim: cm.dim, metric: cm.metric, m: cm.hnsw.m, efConstruction: cm.hnsw.efConstruction, capacity: 0, quantization: cm.quantization });
    room = shardRoom({ indexRoom: (b) => index.room(b), count: () => 0 }, { ...limits, minFreeDiskBytes: 0 });
    emptyRooms.set(key, room);
  }
  return room;
}

/** Free disk of the file system holding `dir`, as an unprivileged process may use it; undefined if it cannot be read. */
export function diskOf(dir: string, limits: Limits): Disk | undefined {
  try {
    const s = statfsSync(dir);
    return { free: s.bavail * s.bsize, floor: limits.minFreeDiskBytes };
  } catch {
    return undefined;
  }
}

/** Points a coordinator may not know about: written by other coordinators
 * within a heartbeat of the check, and not yet in the room a replica reported. */
export const OTHERS_MARGIN = 64;

/** One live replica of a shard as the check sees it. */
export interface ReplicaView {
  member: string;
  room?: Room;
  disk?: Disk;
  /** Points this coordinator appended to the shard above the sequence the replica reported applied. */
  inFlight: number;
}

/** Why an upsert of `points` to shard `c/s` must be refused, or undefined if it may go.
 * Replicas that report no room (not yet serving the shard) are not counted. */
export function refusal(c: string, s: number, points: number, replicas: ReplicaView[], margin = OTHERS_MARGIN): string | undefined {
  if (points === 0) return undefined;
  for (const r of replicas) {
    if (r.disk && r.disk.free < r.disk.floor) {
      return `shard ${c}/${s}: replica ${r.member} has ${Math.floor(r.disk.free / MiB)} MiB of free disk, below its --min-free-disk-mb floor of ${Math.floor(r.disk.floor / MiB)}; the write was not applied`;
    }
  }
  let least: ReplicaView | undefined;
  for (const r of replicas) {
    if (r.room && (!least || r.room.points - r.inFlight < least.room!.points - least.inFlight)) least = r;
  }
  if (!least) return undefined;
  const { room, inFlight, member } = least as Required<ReplicaView>;
  if (points + inFlight + margin <= room.points) return undefined;
  return `shard ${c}/${s} is full: replica ${member} has room for ${room.points} more points under its --${room.limit} limit of ${room.value}${room.limit === 'max-index-mb' ? ' MiB' : ' points'}; `
    + `this write adds ${points}, with ${inFlight + margin} more held back for writes in flight; the write was not applied`;
}

/** Points that upsert entries add to each shard. */
export function upsertPoints(entries: Map<number, LogEntry[]>): Map<number, number> {
  const out = new Map<number, number>();
  for (const [s, list] of entries) {
    const n = list.reduce((sum, e) => sum + (e.op === 'upsert' ? e.points.length : 0), 0);
    if (n > 0) out.set(s, n);
  }
  return out;
}

/** Most appends remembered per shard while none of its replicas reports applying them. */
const REMEMBERED = 10_000;

/**
 * A coordinator's side: it remembers the points it appended to each shard
 * (at the last sequence of each write) until every live replica reports
 * having applied them, and checks each upsert against the replicas' room
 * before it is appended.
 */
export class WriteGuard {
  private readonly appended = new Map<string, { seq: number; points: number }[]>();
  /** Points of this coordinator's writes checked and not yet appended, per shard. */
  private readonly reserved = new Map<string, number>();

  constructor(private readonly live: () => Member[], private readonly margin = OTHERS_MARGIN) {}

  /** Throws RESOURCE_EXHAUSTED if `entries` may not be appended to collection
   * `cm`'s shards (served by `replicas`); else appends them with `append` and
   * remembers their points. */
  async append(cm: CollectionMeta, replicas: string[][], entries: Map<number, LogEntry[]>, append: () => Promise<Record<number, number>>): Promise<Record<number, number>> {
    const c = cm.name;
    const points = upsertPoints(entries);
    if (points.size > 0) {
      const members = new Map(this.live().map((m) => [m.name, m]));
      for (const [s, n] of points) {
        const why = refusal(c, s, n, this.views(cm, s, replicas[s] ?? [], members), this.margin);
        if (why) throw new VdbError(ErrorCode.RESOURCE_EXHAUSTED, why);
      }
    }
    const hold = (sign: 1 | -1) => {
      for (const [s, n] of points) this.reserved.set(shardKey(c, s), (this.reserved.get(shardKey(c, s)) ?? 0) + sign * n);
    };
    hold(1);
    let seqs: Record<number, number>;
    try {
      seqs = await append();
    } finally {
      hold(-1);
    }
    for (const [s, n] of points) {
      if (seqs[s] === undefined) continue;
      const key = shardKey(c, s);
      const list = this.appended.get(key) ?? [];
      list.push({ seq: seqs[s], points: n });
      if (list.length > REMEMBERED) list.shift();
      this.appended.set(key, list);
    }
    return seqs;
  }

  // A live replica not yet serving the shard (a new collection, a restart)
  // reports no room for it: while none does, the room of an empty shard under
  // its limits stands in.
  private views(cm: CollectionMeta, s: number, names: string[], members: Map<string, Member>): ReplicaView[] {
    const key = shardKey(cm.name, s);
    const list = this.appended.get(key) ?? [];
    const out: ReplicaView[] = [];
    for (const name of names) {
      const m = members.get(name);
      if (!m) continue;
      const applied = m.shards?.[key] ?? 0;
      const above = list.reduce((sum, a) => sum + (a.seq > applied ? a.points : 0), 0);
      out.push({ member: name, room: m.room?.[key], disk: m.disk, inFlight: above + (this.reserved.get(key) ?? 0) });
    }
    if (!out.some((v) => v.room)) {
      for (const v of out) {
        const limits = members.get(v.member)?.limits;
        if (limits) v.room = emptyRoom(cm, limits);
      }
    }
    // What every live replica has applied is forgotten.
    const floor = Math.min(...out.map((v) => members.get(v.member)?.shards?.[key] ?? 0));
    if (out.length > 0) this.appended.set(key, list.filter((a) => a.seq > floor));
    return out;
  }
}
