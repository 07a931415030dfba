// Creating and dropping a collection in the cluster's metadata (docs/cluster.md).
// Create writes the write logs, then the shard map, then the collection
// entry, which commits it: a crash before that leaves pieces that no
// coordinator uses (it needs both entries, of one incarnation) and that the
// next create of the name, or a drop, removes. Drop removes the collection
// entry first (the name is free from then on), then the shard map (replicas
// stop serving and remove their stores), then every write log of the name;
// it also clears what a half-finished create or drop left.

import type { JetStreamManager } from 'nats';
import { VdbError, ErrorCode } from '../ts/errors.js';
import { HashPartitioner, SemanticPartitioner, SpatialPartitioner } from '../ts/partition/index.js';
import type { PartitionerJSON } from '../ts/partition/index.js';
import { parseVector } from '../ts/validate.js';
import { validateCreateCollection } from '../ts/wire/messages.js';
import { addLogStream, newUid } from './meta.js';
import { addVersionStream, deleteVersionStream } from './versions.js';
import type { CollectionMeta, Meta, ShardMap } from './meta.js';
import type { Names } from './subjects.js';

export interface AdminDeps {
  meta: Meta;
  jsm: JetStreamManager;
  n: Names;
}

/** A validated create request turned into the collection entry and its first shard
 * map, the shards placed round-robin on `members` (the live shard processes). */
export function planCollection(body: unknown, members: string[], uid = newUid(), now = Date.now()): { cm: CollectionMeta; map: ShardMap } {
  const req = validateCreateCollection(body);
  const shards = req.partitioner.shards;
  let partitioner: PartitionerJSON;
  if (req.partitioner.kind === 'hash') partitioner = new HashPartitioner(shards).toJSON();
  else if (req.partitioner.kind === 'semantic') partitioner = new SemanticPartitioner({ shards, field: req.partitioner.field!, map: (body as { partitioner: { map?: Record<string, number[]> } }).partitioner.map }).toJSON();
  else {
    const sample = (body as { partitioner: { sample?: unknown } }).partitioner.sample;
    if (!Array.isArray(sample) || sample.length < shards) {
      throw new VdbError(ErrorCode.INVALID_PARTITIONER, `partitioner.sample: a spatial collection needs a sample of at least ${shards} vectors to place its splits`);
    }
    const flat = new Float32Array(sample.length * req.dim);
    sample.forEach((v, i) => flat.set(parseVector(v, `partitioner.sample[${i}]`, req.dim), i * req.dim));
    partitioner = SpatialPartitioner.build(flat, req.dim, shards, req.metric).toJSON();
  }
  if (members.length === 0) throw new VdbError(ErrorCode.UNAVAILABLE, 'no shard process is alive to place the shards on');
  if (members.length < req.replicas) throw new VdbError(ErrorCode.UNAVAILABLE, `${req.replicas} replicas need ${req.replicas} shard processes, ${members.length} are alive`);
  const replicas = Array.from({ length: shards }, (_, s) => Array.from({ length: req.replicas }, (_, r) => members[(s + r) % members.length]));
  const cm: CollectionMeta = { name: req.name, dim: req.dim, metric: req.metric, replicas: req.replicas, hnsw: req.hnsw, partitioner, uid, createdAt: now };
  if (req.quantization) cm.quantization = req.quantization;
  if (req.payloadIndexes) cm.payloadIndexes = req.payloadIndexes;
  return { cm, map: { epoch: 1, uid, replicas } };
}

/** Every write-log stream of a collection name, of any incarnation: those on `<prefix>.log.<name>.*`. */
export async function logStreams(jsm: JetStreamManager, n: Names, name: string): Promise<string[]> {
  const out: string[] = [];
  for await (const s of jsm.streams.names(n.log(name, 0).replace(/\.0$/, '.*'))) out.push(s);
  return out.sort();
}

/** Creates a planned collection; COLLECTION_EXISTS if the name is taken. What a
 * dropped or half-created collection of the name left is replaced. */
export async function createCollection({ meta, jsm, n }: AdminDeps, cm: CollectionMeta, map: ShardMap): Promise<void> {
  if (await meta.collection(cm.name)) throw new VdbError(ErrorCode.COLLECTION_EXISTS, `collection ${cm.name} already exists`);
  // With no collection entry, a stream of the name is garbage: its entries must not reach the new replicas.
  for (const s of await logStreams(jsm, n, cm.name)) await jsm.streams.delete(s);
  for (let s = 0; s < map.replicas.length; s++) await addLogStream(jsm, n, cm.name, s, meta.replicas);
  if (cm.partitioner.kind !== 'hash') await addVersionStream(jsm, n, cm.name, meta.replicas);
  await meta.create(cm, map);
}

/** Drops a collection, or whatever part of one exists; COLLECTION_NOT_FOUND if nothing does. */
export async function dropCollection({ meta, jsm, n }: AdminDeps, name: string): Promise<{ dropped: string }> {
  const [cm, map, streams] = await Promise.all([meta.collection(name), meta.shardmaps.get(name), logStreams(jsm, n, name)]);
  if (!cm && !(map && map.operation === 'PUT') && streams.length === 0) throw new VdbError(ErrorCode.COLLECTION_NOT_FOUND, `no collection ${name}`);
  await meta.drop(name);
  // Listed again: a split may have added a log meanwhile (its map update then fails).
  for (const s of await logStreams(jsm, n, name)) await jsm.streams.delete(s);
  await deleteVersionStream(jsm, n, name);
  return { dropped: name };
}
