// Semantic partitioning: a payload field holds a label (a tenant, a category,
// a language) and the label decides the shards. A label may be pinned to one or
// more shards; any other label is hashed onto one shard. A search whose filter
// requires the label to equal given values then goes only to those labels'
// shards (docs/partitioning.md).

import { ErrorCode, VdbError } from '../errors.js';
import { isPlainObject } from '../validate.js';
import { compileFilter } from '../filter.js';
import type { Filter, Primitive } from '../filter.js';
import type { PointId } from '../collection.js';
import { HashPartitioner, allShards, checkShardCount, hashId, jumpHash } from './hash.js';
import type { HashPartitionerJSON } from './hash.js';

export interface SemanticPartitionerJSON {
  kind: 'semantic';
  shards: number;
  /** The payload field (a dotted path, as in filters) that holds the label. */
  field: string;
  /** Label → the shards that hold it, in placement order. */
  map: Record<string, number[]>;
  /** After splits: unmapped labels hash over the first `hashed` shards (default all). */
  hashed?: number;
  /** After splits: how unlabelled points are spread (default: hash over all shards). */
  unlabelled?: HashPartitionerJSON;
}

export interface SemanticOptions {
  shards: number;
  field: string;
  map?: Record<string, readonly number[]> | ReadonlyMap<string, readonly number[]>;
  hashed?: number;
  unlabelled?: HashPartitionerJSON;
}

function invalid(message: string): VdbError {
  return new VdbError(ErrorCode.INVALID_PARTITIONER, message);
}

/**
 * The map key of a label value: a string is itself, a finite number, boolean
 * or null is its JSON text (`5` → "5", `true` → "true", `null` → "null").
 * So `5` and `"5"` share a key and therefore shards: routing only ever
 * widens, never misses. Any other value has no key.
 */
export function labelKey(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  if (value === null || typeof value === 'boolean') return String(value);
  if (typeof value === 'number' && Number.isFinite(value)) return String(value);
  return undefined;
}

export class SemanticPartitioner {
  readonly kind = 'semantic' as const;
  readonly shards: number;
  readonly field: string;
  private readonly map: ReadonlyMap<string, readonly number[]>;
  private readonly segments: readonly string[];
  private readonly hashed: number;
  private readonly unlabelled: HashPartitioner;

  constructor(opts: SemanticOptions) {
    if (typeof opts !== 'object' || opts === null) throw invalid('expected {shards, field, map?}');
    this.shards = checkShardCount(opts.shards);
    const field = opts.field;
    if (typeof field !== 'string' || field === '' || field.startsWith('$') || field.split('.').some((s) => s === '')) {
      throw invalid(`field must be a payload path (dotted, no empty segments, not starting with $), got ${JSON.stringify(field)}`);
    }
    this.field = field;
    this.segments = field.split('.');
    let entries: [string, unknown][] = [];
    if (opts.map instanceof Map) entries = [...(opts.map as ReadonlyMap<string, unknown>)];
    else if (isPlainObject(opts.map)) entries = Object.entries(opts.map);
    else if (opts.map !== undefined) throw invalid('map must be an object of label → shard list');
    const map = new Map<string, readonly number[]>();
    for (const [label, list] of entries) {
      if (typeof label !== 'string') throw invalid('map labels must be strings');
      if (!Array.isArray(list) || list.length === 0) throw invalid(`map[${JSON.stringify(label)}] must be a non-empty array of shards`);
      const seen = new Set<number>();
      for (const s of list) {
        if (typeof s !== 'number' || !Number.isInteger(s) || s < 0 || s >= this.shards) throw invalid(`map[${JSON.stringify(label)}]: ${String(s)} is not a shard from 0 to ${this.shards - 1}`);
        if (seen.has(s)) throw invalid(`map[${JSON.stringify(label)}]: shard ${s} listed twice`);
        seen.add(s);
      }
      map.set(label, Object.freeze([...(list as number[])]));
    }
    this.map = map;
    this.hashed = opts.hashed === undefined ? this.shards : checkShardCount(opts.hashed);
    if (this.hashed > this.shards) throw invalid(`hashed (${this.hashed}) must not exceed shards (${this.shards})`);
    this.unlabelled = opts.unlabelled === undefined ? new HashPartitioner(this.shards) : HashPartitioner.fromJSON(opts.unlabelled);
    if (this.unlabelled.shards !== this.shards) throw invalid(`unlabelled must place over ${this.shards} shards`);
  }

  /**
   * The partitioner after splitting `shard` into a new last shard, given how
   * many points of a sample carry each label key there. Only points of
   * `shard` move: labels held by it alone move to the new shard whole,
   * largest first, until about half of the sample has moved; a shard with a
   * single such label shares it with the new shard (the id picks, by jump
   * hash over the two); unlabelled points move by one more id-hash bit.
   * Unmapped labels keep hashing over the shards there were before any split.
   */
  split(shard: number, sample: ReadonlyMap<string, number>): SemanticPartitioner {
    if (!Number.isInteger(shard) || shard < 0 || shard >= this.shards) throw invalid(`no shard ${shard} to split`);
    const into = checkShardCount(this.shards + 1) - 1;
    const map = new Map(this.map);
    const sole = [...sample].filter(([key]) => {
      const list = map.get(key) ?? [jumpHash(hashId(key), this.hashed)];
      return list.length === 1 && list[0] === shard;
    }).sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1));
    if (sole.length === 1) map.set(sole[0][0], [shard, into]);
    else {
      const total = sole.reduce((sum, [, n]) => sum + n, 0);
      let moved = 0;
      for (const [key, n] of sole) {
        if (moved >= total / 2) break;
        if (moved > 0 && moved + n > total * 0.75) continue;
        map.set(key, [into]);
        moved += n;
      }
    }
    return new SemanticPartitioner({ shards: this.shards + 1, field: this.field, map, hashed: this.hashed, unlabelled: this.unlabelled.split(shard).toJSON() });
  }

  /**
   * The reverse of the last split: the partitioner as it was before it, with
   * the shard the newest one merges back into (the last split of the
   * unlabelled ids names it); labels moved to the newest shard, or shared
   * with it, go back. Undefined before any split, or when a label's shards
   * name the newest one in a way no split leaves.
   */
  unsplit(): { shard: number; partitioner: SemanticPartitioner } | undefined {
    const back = this.unlabelled.unsplit();
    if (!back || this.hashed > this.shards - 1) return undefined;
    const { shard } = back;
    const t = this.shards - 1;
    const map = new Map(this.map);
    for (const [key, list] of this.map) {
      if (!list.includes(t)) continue;
      const moved = list.length === 1 || (list.length === 2 && list[0] === shard && list[1] === t);
      if (!moved) return undefined;
      // A label the hash already places on `shard` needs no entry (placement is the same either way).
      if (jumpHash(hashId(key), this.hashed) === shard) map.delete(key);
      else map.set(key, [shard]);
    }
    return { shard, partitioner: new SemanticPartitioner({ shards: t, field: this.field, map, hashed: this.hashed, unlabelled: back.partitioner.toJSON() }) };
  }

  /**
   * The label of a payload: the primitive at `field`, or undefined when the
   * field is absent (or the payload is not an object). Throws INVALID_PAYLOAD
   * for an array or object there: a point lives on one shard, and an array
   * would have to be found under each of its elements' labels.
   */
  labelOf(payload: unknown): Primitive | undefined {
    let current = payload;
    for (const segment of this.segments) {
      if (!isPlainObject(current) || !Object.hasOwn(current, segment)) return undefined;
      current = current[segment];
    }
    if (current === undefined) return undefined;
    if (labelKey(current) === undefined) {
      throw new VdbError(ErrorCode.INVALID_PAYLOAD, `payload.${this.field} is the partition label: it must be a string, finite number, boolean or null`);
    }
    return current as Primitive;
  }

  /** The shards a label may live on: its mapped list, or for an unmapped label jumpHash(hashId(key), shards before any split). */
  shardsOfLabel(label: Primitive): readonly number[] {
    const key = labelKey(label);
    if (key === undefined) throw new VdbError(ErrorCode.INVALID_ARGUMENT, `${String(label)} is not a label`);
    return this.map.get(key) ?? [jumpHash(hashId(key), this.hashed)];
  }

  /**
   * The one shard for a point. A labelled point goes to its label's shard;
   * when the label has several, the id picks one by jump hash over the list
   * (so appending a shard to a label's list moves only ~1/(n+1) of its
   * points, all to the new shard). An unlabelled point cannot match any label
   * filter, so it is spread over all shards by its id, as hash partitioning does.
   */
  shardOf(payload: unknown, id: PointId): number {
    const label = this.labelOf(payload);
    if (label === undefined) return this.unlabelled.shardOf(id);
    const list = this.shardsOfLabel(label);
    return list.length === 1 ? list[0] : list[jumpHash(hashId(id), list.length)];
  }

  /**
   * The shards a search with `filter` must ask, ascending. Every `eq`/`in`
   * term on the label field (from the filter's conjunctive part, see
   * `compileFilter(...).terms`) allows only its values' shards; several such
   * terms intersect, so the answer can be empty (nothing can match). With no
   * such term, every shard. Throws INVALID_FILTER for a malformed filter.
   */
  shardsFor(filter?: Filter): number[] {
    if (filter === undefined || filter === null) return allShards(this.shards);
    let allowed: Set<number> | undefined;
    for (const term of compileFilter(filter).terms) {
      if (term.path !== this.field || (term.kind !== 'eq' && term.kind !== 'in')) continue;
      const these = new Set<number>();
      for (const v of term.values ?? []) for (const s of this.shardsOfLabel(v)) these.add(s);
      allowed = allowed === undefined ? these : new Set([...allowed].filter((s) => these.has(s)));
    }
    if (allowed === undefined) return allShards(this.shards);
    return [...allowed].sort((a, b) => a - b);
  }

  /** The label → shards map, in insertion order. */
  labels(): Map<string, readonly number[]> {
    return new Map(this.map);
  }

  toJSON(): SemanticPartitionerJSON {
    // Object.fromEntries defines own properties, so a label "__proto__" survives.
    const map = Object.fromEntries([...this.map].map(([k, v]) => [k, [...v]])) as Record<string, number[]>;
    const json: SemanticPartitionerJSON = { kind: 'semantic', shards: this.shards, field: this.field, map };
    if (this.hashed !== this.shards) json.hashed = this.hashed;
    const unlabelled = this.unlabelled.toJSON();
    if (unlabelled.splits) json.unlabelled = unlabelled;
    return json;
  }

  /** Validates completely; throws INVALID_PARTITIONER if malformed. */
  static fromJSON(json: unknown): SemanticPartitioner {
    if (!isPlainObject(json) || json.kind !== 'semantic') throw invalid('expected a semantic partitioner {kind: "semantic", shards, field, map}');
    return new SemanticPartitioner({
      shards: json.shards as number,
      field: json.field as string,
      map: (json.map ?? {}) as Record<string, number[]>,
      hashed: json.hashed as number | undefined,
      unlabelled: json.unlabelled as HashPartitionerJSON | undefined,
    });
  }
}
