// Write versions for collections placed by vector or label (docs/cluster.md,
// "Points that move"). A write to such a collection touches several shard
// logs with no order between them, so each write request takes a version
// first: the sequence JetStream gives a message published to the collection's
// version stream. Every coordinator shares the stream, and a publish is
// acknowledged after every earlier one, so a write acknowledged before another
// starts has the smaller version. Replicas then apply, per id, only writes
// newer than the last one they applied (ts/collection.ts).

import { DiscardPolicy, StorageType } from 'nats';
import type { JetStreamClient, JetStreamManager } from 'nats';
import { VdbError, ErrorCode } from '../ts/errors.js';
import type { Partitioner } from '../ts/partition/index.js';
import type { Names } from './subjects.js';

/** Whether a collection's writes need versions: with hash placement every write of an id goes to one log, in order. */
export const needsVersions = (p: Partitioner) => p.kind !== 'hash';

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
