// The file `vdb backup` writes and `vdb restore` reads (docs/operations.md,
// "Backup and restore"): one file holding a collection's schema and, per
// shard, the replica export (a SQLite file, cluster/snapshot-copy.ts) at a
// recorded log sequence, closed by a SHA-256 of everything before it.
//
//   8 bytes   magic "VDBBAK01"
//   4 bytes   header length H, uint32 little-endian
//   H bytes   header, JSON (UTF-8): BackupHeader
//   ...       each shard's export, in the header's order, `bytes` long each
//   32 bytes  SHA-256 of all the bytes before it
//
// Nothing of a file is used before the whole of it has been checked.

import { createHash } from 'node:crypto';
import { closeSync, fsyncSync, openSync, readSync, renameSync, rmSync, statSync, writeSync } from 'node:fs';
import { VdbError, ErrorCode } from '../ts/errors.js';
import { partitionerFromJSON } from '../ts/partition/index.js';
import type { PartitionerJSON } from '../ts/partition/index.js';
import type { Metric } from '../ts/core/wasm-index.js';

export const MAGIC = Buffer.from('VDBBAK01', 'latin1');
export const FORMAT = 1;
const DIGEST = 32;
/** A header larger than this is not one this program wrote. */
const MAX_HEADER = 64 * 1024 * 1024;
const BUF = 4 * 1024 * 1024;

export interface BackupShard {
  shard: number;
  /** The log sequence the export is at: it holds exactly the entries 1..seq of the shard's log. */
  seq: number;
  /** The replica it was copied from, and the name of its store there. */
  member: string;
  store: string;
  bytes: number;
  sha256: string;
}

export interface BackupHeader {
  format: number;
  createdAt: string;
  collection: {
    name: string;
    dim: number;
    metric: Metric;
    replicas: number;
    hnsw: { m: number; efConstruction: number };
    /** The layout the shards were in (after any split): which points each shard owns. */
    partitioner: PartitionerJSON;
  };
  shards: BackupShard[];
}

/** Where a shard's export lies in a checked backup file. */
export interface Section extends BackupShard { offset: number }

const corrupt = (file: string, why: string) => new VdbError(ErrorCode.CORRUPT_BACKUP, `${file}: ${why}; nothing was restored`);

/** Feeds `bytes` bytes of `fd` from `offset` to `each`, in pieces. */
function readRange(fd: number, offset: number, bytes: number, each: (b: Buffer) => void): void {
  const buf = Buffer.alloc(Math.min(BUF, Math.max(bytes, 1)));
  for (let done = 0; done < bytes;) {
    const n = readSync(fd, buf, 0, Math.min(buf.length, bytes - done), offset + done);
    if (n === 0) throw new VdbError(ErrorCode.STORAGE, `unexpected end of file at ${offset + done}`);
    each(buf.subarray(0, n));
    done += n;
  }
}

function fileSha256(file: string): string {
  const fd = openSync(file, 'r');
  try {
    const h = createHash('sha256');
    readRange(fd, 0, statSync(file).size, (b) => h.update(b));
    return h.digest('hex');
  } finally {
    closeSync(fd);
  }
}

/**
 * Writes a backup of `shards` (each an export file) to `out`: whole into
 * `out.tmp`, synced, then renamed, so `out` is either absent or complete.
 */
export function writeBackup(out: string, head: Omit<BackupHeader, 'format' | 'shards'>, shards: (Omit<BackupShard, 'bytes' | 'sha256'> & { file: string })[]): BackupHeader {
  const header: BackupHeader = {
    format: FORMAT,
    ...head,
    shards: shards.map(({ file, ...s }) => ({ ...s, bytes: statSync(file).size, sha256: fileSha256(file) })),
  };
  const json = Buffer.from(JSON.stringify(header), 'utf8');
  const len = Buffer.alloc(4);
  len.writeUInt32LE(json.length);
  const tmp = `${out}.tmp`;
  const fd = openSync(tmp, 'w');
  try {
    const digest = createHash('sha256');
    let at = 0;
    const put = (b: Buffer) => {
      digest.update(b);
      for (let off = 0; off < b.length;) off += writeSync(fd, b, off, b.length - off, at + off);
      at += b.length;
    };
    put(MAGIC);
    put(len);
    put(json);
    for (const s of shards) {
      const src = openSync(s.file, 'r');
      try {
        readRange(src, 0, statSync(s.file).size, put);
      } finally {
        closeSync(src);
      }
    }
    const sum = digest.digest();
    writeSync(fd, sum, 0, sum.length, at);
    fsyncSync(fd);
  } catch (e) {
    closeSync(fd);
    rmSync(tmp, { force: true });
    throw e;
  }
  closeSync(fd);
  renameSync(tmp, out);
  return header;
}

const isCount = (v: unknown, min = 0) => Number.isSafeInteger(v) && (v as number) >= min;

/** The header's fields, checked: a file that passes its digest may still be of another format. */
function checkHeader(h: unknown, file: string): BackupHeader {
  const o = h as BackupHeader;
  if (typeof o !== 'object' || o === null) throw corrupt(file, 'the header is not a JSON object');
  if (o.format !== FORMAT) throw corrupt(file, `format ${JSON.stringify(o.format)}, this version reads format ${FORMAT}`);
  const c = o.collection;
  if (typeof c !== 'object' || c === null || typeof c.name !== 'string' || !isCount(c.dim, 1) || typeof c.metric !== 'string' || !isCount(c.replicas, 1)
    || typeof c.hnsw !== 'object' || c.hnsw === null || !isCount(c.hnsw.m, 1) || !isCount(c.hnsw.efConstruction, 1)) {
    throw corrupt(file, 'the header\'s collection is malformed');
  }
  try {
    partitionerFromJSON(c.partitioner);
  } catch (e) {
    throw corrupt(file, `the header's partitioner is malformed: ${(e as Error).message}`);
  }
  if (!Array.isArray(o.shards) || o.shards.length === 0) throw corrupt(file, 'the header lists no shard');
  o.shards.forEach((s, i) => {
    if (typeof s !== 'object' || s === null || s.shard !== i || !isCount(s.seq) || !isCount(s.bytes) || typeof s.member !== 'string'
      || typeof s.store !== 'string' || typeof s.sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(s.sha256)) {
      throw corrupt(file, `the header's shard ${i} is malformed`);
    }
  });
  return o;
}

/**
 * Checks a backup file whole (its SHA-256, then the header, the sizes and each
 * shard's SHA-256) and returns its header and where each shard's export lies;
 * CORRUPT_BACKUP for a file that is damaged, truncated or not a backup.
 */
export function readBackup(file: string): { header: BackupHeader; sections: Section[] } {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch (e) {
    throw new VdbError(ErrorCode.INVALID_ARGUMENT, `cannot open ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  try {
    const size = statSync(file).size;
    if (size < MAGIC.length + 4 + DIGEST) throw corrupt(file, `${size} bytes is too short for a backup`);
    const head = Buffer.alloc(MAGIC.length + 4);
    readSync(fd, head, 0, head.length, 0);
    if (!head.subarray(0, MAGIC.length).equals(MAGIC)) throw corrupt(file, 'not a vdb backup (no VDBBAK01 at its start)');
    const digest = createHash('sha256');
    readRange(fd, 0, size - DIGEST, (b) => digest.update(b));
    const want = Buffer.alloc(DIGEST);
    readSync(fd, want, 0, DIGEST, size - DIGEST);
    if (!digest.digest().equals(want)) throw corrupt(file, 'its SHA-256 does not match: the file is damaged or truncated');
    const hlen = head.readUInt32LE(MAGIC.length);
    const start = MAGIC.length + 4;
    if (hlen > MAX_HEADER || start + hlen > size - DIGEST) throw corrupt(file, `a header of ${hlen} bytes does not fit`);
    const json = Buffer.alloc(hlen);
    readSync(fd, json, 0, hlen, start);
    let parsed: unknown;
    try {
      parsed = JSON.parse(json.toString('utf8'));
    } catch (e) {
      throw corrupt(file, `the header is not JSON: ${(e as Error).message}`);
    }
    const header = checkHeader(parsed, file);
    const sections: Section[] = [];
    let at = start + hlen;
    for (const s of header.shards) {
      sections.push({ ...s, offset: at });
      at += s.bytes;
    }
    if (at !== size - DIGEST) throw corrupt(file, `the shards take ${at - start - hlen} bytes, the file holds ${size - DIGEST - start - hlen}`);
    for (const s of sections) {
      const h = createHash('sha256');
      readRange(fd, s.offset, s.bytes, (b) => h.update(b));
      if (h.digest('hex') !== s.sha256) throw corrupt(file, `shard ${s.shard}'s SHA-256 does not match`);
    }
    return { header, sections };
  } finally {
    closeSync(fd);
  }
}

/** Writes one shard's export out of a checked backup file into `to`. */
export function extractShard(file: string, s: Section, to: string): void {
  const src = openSync(file, 'r');
  const dst = openSync(to, 'w');
  try {
    let at = 0;
    readRange(src, s.offset, s.bytes, (b) => {
      for (let off = 0; off < b.length;) off += writeSync(dst, b, off, b.length - off, at + off);
      at += b.length;
    });
  } finally {
    closeSync(src);
    closeSync(dst);
  }
}
