// Hash partitioning: a stable 64-bit hash of the point id, then Lamport &
// Veach's jump consistent hash to pick one of `shards` buckets. Growing from n
// to n + 1 shards moves about 1/(n + 1) of the ids, all of them to the new
// shard. The hash is part of the on-disk placement of every point: never change
// it without a migration (docs/partitioning.md).

import { ErrorCode, VdbError } from '../errors.js';
import type { Filter } from '../filter.js';
import type { PointId } from '../collection.js';

/** The largest shard count any partitioner accepts. */
export const SHARDS_MAX = 65_536;

/** Throws INVALID_PARTITIONER unless `n` is an integer from 1 to SHARDS_MAX. */
export function checkShardCount(n: unknown): number {
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 1 || n > SHARDS_MAX) {
    throw new VdbError(ErrorCode.INVALID_PARTITIONER, `shards must be an integer from 1 to ${SHARDS_MAX}, got ${String(n)}`);
  }
  return n;
}

/** 0, 1, …, n − 1. */
export function allShards(n: number): number[] {
  const out = new Array<number>(n);
  for (let i = 0; i < n; i++) out[i] = i;
  return out;
}

// ------------------------------------------------------------- id hashing

/** The tag byte that starts the encoding of an integer id. */
export const TAG_INT = 0x01;
/** The tag byte that starts the encoding of a string id. */
export const TAG_STRING = 0x02;

const MASK64 = (1n << 64n) - 1n;
const TWO32 = 4294967296;
const FNV_OFFSET_HI = 0xcbf29ce4;
const FNV_OFFSET_LO = 0x84222325;

const encoder = new TextEncoder();
let scratch = new Uint8Array(256);

/**
 * The bytes that identify an id, which `hashId` hashes:
 * - an integer (a safe integer): `0x01`, then its value as a 64-bit two's
 *   complement integer, little-endian (8 bytes);
 * - a string: `0x02`, then its UTF-8 bytes (a lone surrogate, which UTF-8
 *   cannot encode, becomes U+FFFD as TextEncoder writes it).
 * The tag keeps `1` and `"1"` apart. Anything else is refused (INVALID_ID).
 */
export function idBytes(id: PointId): Uint8Array {
  const n = encodeId(id);
  return scratch.slice(0, n);
}

/** Writes idBytes(id) into `scratch` (grown as needed); returns the length. */
function encodeId(id: PointId): number {
  if (typeof id === 'number') {
    if (!Number.isSafeInteger(id)) throw new VdbError(ErrorCode.INVALID_ID, `id ${id} is not a safe integer`);
    // ToUint32 is exact modulo 2^32 for every integer below 2^53 in magnitude,
    // and floor division keeps the sign, so negatives come out two's complement.
    const lo = id >>> 0;
    const hi = Math.floor(id / TWO32) >>> 0;
    scratch[0] = TAG_INT;
    for (let i = 0; i < 4; i++) {
      scratch[1 + i] = (lo >>> (8 * i)) & 0xff;
      scratch[5 + i] = (hi >>> (8 * i)) & 0xff;
    }
    return 9;
  }
  if (typeof id === 'string') {
    // A UTF-16 code unit never needs more than 3 UTF-8 bytes.
    const need = 1 + 3 * id.length;
    if (scratch.length < need) scratch = new Uint8Array(Math.max(need, scratch.length * 2));
    scratch[0] = TAG_STRING;
    const { written } = encoder.encodeInto(id, scratch.subarray(1));
    return 1 + written;
  }
  throw new VdbError(ErrorCode.INVALID_ID, `an id is a string or an integer, got ${id === null ? 'null' : typeof id}`);
}

/**
 * FNV-1a, 64-bit: h = 0xcbf29ce484222325; for each byte, h = (h XOR byte) ×
 * 0x100000001b3 mod 2^64. Computed in two 32-bit halves: the prime is
 * 2^40 + 0x1b3, so h × prime = h × 0x1b3 + (h << 40), and every partial
 * product stays below 2^42, exact in a double.
 */
export function fnv1a64(bytes: Uint8Array, length = bytes.length): bigint {
  let hi = FNV_OFFSET_HI;
  let lo = FNV_OFFSET_LO;
  for (let i = 0; i < length; i++) {
    lo = (lo ^ bytes[i]) >>> 0;
    const t = lo * 0x1b3;
    const carry = Math.floor(t / TWO32);
    hi = (hi * 0x1b3 + carry + ((lo << 8) >>> 0)) >>> 0;
    lo = t >>> 0;
  }
  return (BigInt(hi) << 32n) | BigInt(lo);
}

/** MurmurHash3's 64-bit finaliser: every input bit affects every output bit. */
export function fmix64(x: bigint): bigint {
  let k = x & MASK64;
  k ^= k >> 33n;
  k = (k * 0xff51afd7ed558ccdn) & MASK64;
  k ^= k >> 33n;
  k = (k * 0xc4ceb9fe1a85ec53n) & MASK64;
  k ^= k >> 33n;
  return k;
}

/**
 * The stable 64-bit hash of an id: fmix64(fnv1a64(idBytes(id))), an unsigned
 * value below 2^64. FNV-1a alone leaves short inputs that differ in their
 * last byte close together in the high bits; the finaliser spreads them.
 */
export function hashId(id: PointId): bigint {
  // Encode first: encoding may replace `scratch` with a larger buffer.
  const length = encodeId(id);
  return fmix64(fnv1a64(scratch, length));
}

// ------------------------------------------------------------ jump hash

const JUMP_MULTIPLIER = 2862933555777941757n;
const TWO31 = 2147483648;

/**
 * Jump consistent hash (Lamport & Veach, 2014): the bucket in [0, buckets)
 * of a 64-bit key.
 *
 * Think of the key as seeding a random walk over bucket counts 1, 2, 3, …:
 * when the count grows from b to b + 1, the key jumps to the new bucket b with
 * probability 1/(b + 1), otherwise it stays. Rather than testing every b, the
 * loop draws, from a 64-bit linear congruential generator seeded by the key,
 * where the next jump lands: given the last jump to bucket b, the next one is
 * to floor((b + 1) / r) for r uniform in (0, 1], here the top 31 bits of the
 * generator state plus one, over 2^31. The last jump below `buckets` is the
 * answer. Because the walk does not depend on `buckets`, the answer for
 * n + 1 buckets is either the answer for n buckets or n itself. Expected
 * iterations: ln(buckets) + 1.
 *
 * `key` is taken modulo 2^64. `buckets` is an integer from 1 to 2^31 − 1.
 */
export function jumpHash(key: bigint, buckets: number): number {
  if (!Number.isInteger(buckets) || buckets < 1 || buckets > 0x7fffffff) {
    throw new VdbError(ErrorCode.INVALID_ARGUMENT, `buckets must be an integer from 1 to 2^31 - 1, got ${buckets}`);
  }
  let state = BigInt.asUintN(64, key);
  let b = -1;
  let j = 0;
  while (j < buckets) {
    b = j;
    state = BigInt.asUintN(64, state * JUMP_MULTIPLIER + 1n);
    const r = Number(state >> 33n) + 1; // 1 … 2^31
    j = Math.floor((b + 1) * (TWO31 / r));
  }
  return b;
}

// ---------------------------------------------------------- partitioner

export interface HashPartitionerJSON {
  kind: 'hash';
  shards: number;
  /** Shards split after creation, in order: half of `shard`'s ids (by one more hash bit) moved to `into`.
   * `shards` counts them: it was created with shards − splits.length. */
  splits?: { shard: number; into: number }[];
}

/** One split as placement applies it: ids on `shard` whose hash bit `bit` is set move to `into`. */
interface Split { shard: number; into: number; bit: number }

/**
 * Places a point by its id alone: jumpHash(hashId(id), n) over the n shards it
 * was created with, then each later split in order: a split of shard s into t
 * moves the ids of s whose next unused hash bit is 1, so a split moves about
 * half of one shard and nothing else.
 */
export class HashPartitioner {
  readonly kind = 'hash' as const;
  readonly shards: number;
  private readonly base: number;
  private readonly splits: Split[];

  constructor(shards: number, splits: { shard: number; into: number }[] = []) {
    this.base = checkShardCount(shards);
    if (!Array.isArray(splits)) throw new VdbError(ErrorCode.INVALID_PARTITIONER, 'splits: expected an array');
    const depth = new Map<number, number>();
    this.splits = splits.map((sp, i) => {
      const total = this.base + i;
      if (!sp || !Number.isInteger(sp.shard) || sp.shard < 0 || sp.shard >= total || sp.into !== total) {
        throw new VdbError(ErrorCode.INVALID_PARTITIONER, `splits[${i}]: expected {shard: 0..${total - 1}, into: ${total}}`);
      }
      const bit = depth.get(sp.shard) ?? 0;
      if (bit >= 32) throw new VdbError(ErrorCode.INVALID_PARTITIONER, `splits[${i}]: shard ${sp.shard} is split too often`);
      depth.set(sp.shard, bit + 1);
      depth.set(sp.into, bit + 1);
      return { shard: sp.shard, into: sp.into, bit };
    });
    this.shards = checkShardCount(this.base + this.splits.length);
  }

  /** The one shard that holds `id`. */
  shardOf(id: PointId): number {
    const h = hashId(id);
    let s = jumpHash(h, this.base);
    if (this.splits.length === 0) return s;
    // Split bits come from the hash's low half; jump hash consumes it as a whole seed.
    const low = Number(fmix64(h ^ SPLIT_SALT) & 0xffffffffn);
    for (const sp of this.splits) if (s === sp.shard && (low >>> sp.bit) & 1) s = sp.into;
    return s;
  }

  /** The partitioner after splitting `shard` into a new last shard. */
  split(shard: number): HashPartitioner {
    return new HashPartitioner(this.base, [...this.splits.map(({ shard: s, into }) => ({ shard: s, into })), { shard, into: this.shards }]);
  }

  /** The partitioner before the last split, with the shard the newest one merges back into; undefined before any split. */
  unsplit(): { shard: number; partitioner: HashPartitioner } | undefined {
    const last = this.splits.at(-1);
    if (!last) return undefined;
    return { shard: last.shard, partitioner: new HashPartitioner(this.base, this.splits.slice(0, -1).map(({ shard, into }) => ({ shard, into }))) };
  }

  /** Every shard: the id hash says nothing about payloads or vectors. */
  shardsFor(_filter?: Filter): number[] {
    return allShards(this.shards);
  }

  toJSON(): HashPartitionerJSON {
    return this.splits.length === 0
      ? { kind: 'hash', shards: this.shards }
      : { kind: 'hash', shards: this.shards, splits: this.splits.map(({ shard, into }) => ({ shard, into })) };
  }

  static fromJSON(json: unknown): HashPartitioner {
    if (typeof json !== 'object' || json === null || (json as { kind?: unknown }).kind !== 'hash') {
      throw new VdbError(ErrorCode.INVALID_PARTITIONER, 'expected a hash partitioner {kind: "hash", shards}');
    }
    const j = json as { shards?: unknown; splits?: unknown };
    const splits = j.splits ?? [];
    if (!Array.isArray(splits)) throw new VdbError(ErrorCode.INVALID_PARTITIONER, 'splits: expected an array');
    return new HashPartitioner((j.shards as number) - splits.length, splits as { shard: number; into: number }[]);
  }
}

const SPLIT_SALT = 0x5bd1e9955bd1e995n;
