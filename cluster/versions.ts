// Write versions for collections placed by vector or label (docs/cluster.md,
// "Points that move"). A write to such a collection touches several shard
// logs with no order between them, so each write request takes a version
// first: the sequence JetStream gives a message published to the collection's
// version stream. Every coordinator shares the stream, and a publish is
// acknowledged after every earlier one, so a write acknowledged before another
// starts has the smaller version. Replicas then apply, per id, only writes
// newer than the last one they applied (ts/collection.ts).
//
// The tombstones that rule leaves are dropped by a horizon: the balancer takes
// a version H, waits twice the write window, and appends `{op: "horizon",
// version: H}` to every shard log. A coordinator acknowledges a versioned
// write only if its appends ended within the write window (default
// WRITE_IN_TIME_MS; every coordinator of a cluster must use the same) of
// asking for its version. A write with a version below H asked for it before H was
// taken, so it either ended its appends before any horizon entry of H was
// appended (and every log holds its entries before that entry), or it is not
// acknowledged: a frozen coordinator cannot make a replica skip an
// acknowledged write.

import { DiscardPolicy, StorageType } from 'nats';
import type { JetStreamClient, JetStreamManager } from 'nats';
import { VdbError, ErrorCode } from '../ts/errors.js';
import { encode } from '../ts/wire/codec.js';
import type { Names } from './subjects.js';

/** How long after asking for its version a write's appends may end and still be acknowledged, by default. */
export const WRITE_IN_TIME_MS = 30_000;
/** The shortest write window a coordinator accepts (`--version-window-ms`). */
export const WRITE_WINDOW_MIN_MS = 1000;
/** How long the balancer holds a version before appending it as a horizon: twice the write window, for clock-rate slack. */
export const horizonAge = (windowMs: number) => 2 * windowMs;
export const HORIZON_AGE_MS = horizonAge(WRITE_IN_TIME_MS);

/** Whether a collection's writes need versions: with hash placement every write of an id goes to one log, in order. */
export const needsVersions = (p: { kind: string }) => p.kind !== 'hash';

/** Creates the version stream of a collection. It keeps one message: only its sequence counts. */
export async function addVersionStream(jsm: JetStreamManager, n: Names, collection: string, replicas: number): Promise<void> {
  await jsm.streams.add({
    name: n.versionStream(collection),
    subjects: [n.version(collection)],
    storage: StorageType.File,
    max_msgs: 1,
    discard: DiscardPolicy.Old,
    num_replicas: replicas,
  });
}

export async function deleteVersionStream(jsm: JetStreamManager, n: Names, collection: string): Promise<void> {
  await jsm.streams.delete(n.versionStream(collection)).catch(() => undefined);
}

const noStream = (e: unknown) => /no responders|503|stream not found/i.test(String((e as Error)?.message ?? e));

/** The next version of a collection's writes. A collection created before
 * versions has no stream yet: it is created on first use (its points have
 * version 0, so any version is newer). */
export async function nextVersion(js: JetStreamClient, jsm: JetStreamManager, n: Names, collection: string, replicas: number): Promise<number> {
  const take = async () => (await js.publish(n.version(collection), new Uint8Array(0))).seq;
  try {
    return await take();
  } catch (e) {
    if (!noStream(e)) throw new VdbError(ErrorCode.UNAVAILABLE, `no version for a write to ${collection}: ${(e as Error).message}`);
  }
  try {
    await addVersionStream(jsm, n, collection, replicas);
    return await take();
  } catch (e) {
    throw new VdbError(ErrorCode.UNAVAILABLE, `no version for a write to ${collection}: ${(e as Error).message}`);
  }
}

/** A write's version, with when it was asked for (both clocks: a suspended machine stops the monotonic one). */
export interface Stamp {
  /** What the write's log entries carry: `{version}`, or nothing with hash placement. */
  entry: { version?: number };
  asked: { mono: number; wall: number };
}

export async function stamp(versioned: boolean, take: () => Promise<number>): Promise<Stamp> {
  const asked = { mono: performance.now(), wall: Date.now() };
  return { entry: versioned ? { version: await take() } : {}, asked };
}

/** Throws UNAVAILABLE (in doubt) when a versioned write's appends ended too late to be acknowledged safely. */
export function checkInTime(s: Stamp, now = { mono: performance.now(), wall: Date.now() }, windowMs = WRITE_IN_TIME_MS): void {
  if (s.entry.version === undefined) return;
  const took = Math.max(now.mono - s.asked.mono, now.wall - s.asked.wall);
  if (took > windowMs) {
    throw new VdbError(ErrorCode.UNAVAILABLE, `the write took ${Math.round(took)} ms, more than ${windowMs} ms: it may be applied on some shards only; retry it`);
  }
}

/** The balancer's horizons: per collection, the version it holds until it is old enough to append. */
export class Horizons {
  private readonly held = new Map<string, { version: number; at: number }>();

  constructor(
    private readonly js: JetStreamClient,
    private readonly n: Names,
    private readonly take: (collection: string) => Promise<number>,
    private readonly ageMs = HORIZON_AGE_MS,
  ) {}

  /** Appends the held version as a horizon to each of `shards` logs once it is
   * old enough, then holds a new one; returns the horizon appended, if any. */
  async step(collection: string, shards: number, now = performance.now()): Promise<number | undefined> {
    const h = this.held.get(collection);
    if (h && now - h.at < this.ageMs) return undefined;
    if (h) {
      for (let s = 0; s < shards; s++) await this.js.publish(this.n.log(collection, s), encode({ op: 'horizon', version: h.version }, false));
    }
    this.held.set(collection, { version: await this.take(collection), at: performance.now() });
    return h?.version;
  }

  /** Forgets collections no longer listed. */
  keep(collections: Set<string>): void {
    for (const c of this.held.keys()) if (!collections.has(c)) this.held.delete(c);
  }
}
