// The partitioners behind one type, as the shard map stores them, and the
// routing questions a coordinator asks whatever the kind (docs/partitioning.md).
// Shards are numbered 0 … shards − 1; the shard map says which replicas serve each.

import { ErrorCode, VdbError } from '../errors.js';
import type { Filter } from '../filter.js';
import type { PointId } from '../collection.js';
import { allShards, HashPartitioner } from './hash.js';
import type { HashPartitionerJSON } from './hash.js';
import { SpatialPartitioner } from './spatial.js';
import type { SpatialPartitionerJSON } from './spatial.js';
import { SemanticPartitioner } from './semantic.js';
import type { SemanticPartitionerJSON } from './semantic.js';

export { HashPartitioner, hashId, jumpHash, fnv1a64, fmix64, idBytes, SHARDS_MAX } from './hash.js';
export type { HashPartitionerJSON } from './hash.js';
export { SpatialPartitioner, EXACT_SLACK, SPATIAL_MAX_DEPTH } from './spatial.js';
export type { SpatialPartitionerJSON, SpatialNode, LeafBox, RouteOptions } from './spatial.js';
export { SemanticPartitioner, labelKey } from './semantic.js';
export type { SemanticPartitionerJSON, SemanticOptions } from './semantic.js';

export type Partitioner = HashPartitioner | SpatialPartitioner | SemanticPartitioner;
export type PartitionerJSON = HashPartitionerJSON | SpatialPartitionerJSON | SemanticPartitionerJSON;

/** Rebuilds a partitioner from its `toJSON()` form; throws INVALID_PARTITIONER if malformed. */
export function partitionerFromJSON(json: unknown): Partitioner {
  const kind = typeof json === 'object' && json !== null ? (json as { kind?: unknown }).kind : undefined;
  switch (kind) {
    case 'hash':
      return HashPartitioner.fromJSON(json);
    case 'spatial':
      return SpatialPartitioner.fromJSON(json);
    case 'semantic':
      return SemanticPartitioner.fromJSON(json);
    default:
      throw new VdbError(ErrorCode.INVALID_PARTITIONER, `unknown partitioner kind ${JSON.stringify(kind)} (expected hash, spatial or semantic)`);
  }
}

/** The one shard a point is written to: by id (hash), vector (spatial) or payload label (semantic). */
export function shardOfPoint(p: Partitioner, point: { id: PointId; vector: ArrayLike<number>; payload?: unknown }): number {
  switch (p.kind) {
    case 'hash':
      return p.shardOf(point.id);
    case 'spatial':
      return p.shardOf(point.vector);
    case 'semantic':
      return p.shardOf(point.payload, point.id);
  }
}

/**
 * The shards that may hold `id`: exactly one for hash partitioning; every
 * shard otherwise, because spatial and semantic placement depends on the
 * vector or payload, not the id (so get and delete by id ask every shard, and
 * an upsert that moves a point deletes it from the other shards).
 */
export function shardsForId(p: Partitioner, id: PointId): number[] {
  return p.kind === 'hash' ? [p.shardOf(id)] : allShards(p.shards);
}

/**
 * The shards an approximate search asks: semantic narrows by the filter's
 * label terms; spatial asks the `nprobe` nearest leaves when nprobe is given,
 * else every leaf (an exact search uses `SpatialPartitioner.exactRoute`);
 * hash asks every shard.
 */
export function shardsForSearch(p: Partitioner, q: { vector: ArrayLike<number>; filter?: Filter; nprobe?: number }): number[] {
  switch (p.kind) {
    case 'hash':
      return p.shardsFor(q.filter);
    case 'spatial':
      return q.nprobe === undefined ? p.shardsFor(q.filter) : p.route(q.vector, { nprobe: q.nprobe });
    case 'semantic':
      return p.shardsFor(q.filter);
  }
}
