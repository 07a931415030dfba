// The backup file format of cluster/backup-file.ts on its own: what is written
// reads back (header and each shard's bytes); any flipped byte, any truncation,
// and a file that passes its digest but is of another format are refused with
// CORRUPT_BACKUP before anything is used.

import { afterAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MAGIC, extractShard, readBackup, writeBackup } from '../cluster/backup-file.js';
import { HashPartitioner } from '../ts/partition/index.js';
import { ErrorCode } from '../ts/errors.js';

const dir = mkdtempSync(join(tmpdir(), 'vdb-backup-file-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const HEAD = {
  createdAt: '2026-12-01T18:00:00.000Z',
  collection: { name: 'c', dim: 4, metric: 'l2' as const, replicas: 2, hnsw: { m: 16, efConstruction: 200 }, partitioner: new HashPartitioner(3).toJSON() },
};

let n = 0;
function backupOf(parts: Uint8Array[]): { file: string; parts: Uint8Array[] } {
  const k = n++;
  const shards = parts.map((p, i) => {
    const file = join(dir, `part-${k}-${i}`);
    writeFileSync(file, p);
    return { shard: i, seq: 10 * i + 1, member: `shard-${i}`, store: `c__${i}`, file };
  });
  const file = join(dir, `backup-${k}.vdbbak`);
  writeBackup(file, HEAD, shards);
  return { file, parts };
}

function refused(file: string): void {
  expect(() => readBackup(file)).toThrow(expect.objectContaining({ code: ErrorCode.CORRUPT_BACKUP }));
}

const parts = fc.array(fc.uint8Array({ minLength: 0, maxLength: 300 }), { minLength: 1, maxLength: 3 });

describe('backup file', () => {
  it('reads back the header and every shard\'s bytes, and leaves no temporary file', () => {
    fc.assert(fc.property(parts, (ps) => {
      const { file } = backupOf(ps);
      expect(existsSync(`${file}.tmp`)).toBe(false);
      const { header, sections } = readBackup(file);
      expect(header.collection).toEqual(HEAD.collection);
      expect(sections.map((s) => [s.shard, s.seq, s.member, s.store, s.bytes])).toEqual(ps.map((p, i) => [i, 10 * i + 1, `shard-${i}`, `c__${i}`, p.length]));
      for (const s of sections) {
        const out = join(dir, `out-${s.shard}`);
        extractShard(file, s, out);
        expect(new Uint8Array(readFileSync(out))).toEqual(ps[s.shard]);
        expect(s.sha256).toBe(createHash('sha256').update(ps[s.shard]).digest('hex'));
      }
    }), { numRuns: 30 });
  });

  it('refuses a file with any one byte changed', () => {
    fc.assert(fc.property(parts, fc.nat(), fc.integer({ min: 1, max: 255 }), (ps, at, x) => {
      const { file } = backupOf(ps);
      const b = readFileSync(file);
      b[at % b.length] ^= x;
      writeFileSync(file, b);
      refused(file);
    }), { numRuns: 60 });
  });

  it('refuses a file cut short anywhere, or with bytes added', () => {
    fc.assert(fc.property(parts, fc.nat(), (ps, cut) => {
      const { file } = backupOf(ps);
      const b = readFileSync(file);
      writeFileSync(file, b.subarray(0, cut % b.length));
      refused(file);
      writeFileSync(file, Buffer.concat([b, Buffer.from([0])]));
      refused(file);
    }), { numRuns: 60 });
  });

  it('refuses a file whose digest matches but whose header is of another format or does not fit', () => {
    const write = (header: unknown, tail = Buffer.alloc(0)) => {
      const json = Buffer.from(JSON.stringify(header));
      const len = Buffer.alloc(4);
      len.writeUInt32LE(json.length);
      const body = Buffer.concat([MAGIC, len, json, tail]);
      const file = join(dir, `forged-${n++}`);
      writeFileSync(file, Buffer.concat([body, createHash('sha256').update(body).digest()]));
      return file;
    };
    const good = { format: 1, ...HEAD, shards: [{ shard: 0, seq: 1, member: 'm', store: 's', bytes: 3, sha256: createHash('sha256').update('abc').digest('hex') }] };
    expect(readBackup(write(good, Buffer.from('abc'))).sections[0].bytes).toBe(3);
    refused(write({ ...good, format: 2 }, Buffer.from('abc')));
    refused(write(good, Buffer.from('abcd')));
    refused(write(good, Buffer.from('abd')));
    refused(write({ ...good, collection: { ...good.collection, partitioner: { kind: 'nope' } } }, Buffer.from('abc')));
    refused(write({ ...good, shards: [] }));
    const notBackup = join(dir, 'not-a-backup');
    writeFileSync(notBackup, Buffer.alloc(100, 7));
    expect(() => readBackup(notBackup)).toThrow(/not a vdb backup/);
    expect(() => readBackup(join(dir, 'missing'))).toThrow(expect.objectContaining({ code: ErrorCode.INVALID_ARGUMENT }));
  });
});
