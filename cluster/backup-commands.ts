// `vdb backup` and `vdb restore`: the command lines of cluster/backup.ts.

import { statSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { connect } from 'nats';
import type { NatsConnection } from 'nats';
import { VdbClient } from '../ts/client.js';
import { VdbError, ErrorCode } from '../ts/errors.js';
import { checkCollectionName } from '../ts/validate.js';
import { AUTH_FLAGS, authFromFlags, authOptions, natsServers } from './nats-connect.js';
import { names } from './subjects.js';
import { restoreBackup, takeBackup } from './backup.js';

const FLAGS = { nats: { type: 'string' }, prefix: { type: 'string' }, ...AUTH_FLAGS } as const;
const AUTH_USAGE = '[--creds FILE] [--tls-ca FILE] [--tls-cert FILE --tls-key FILE]';

function need(v: unknown, flag: string): string {
  if (typeof v !== 'string' || v === '') throw new VdbError(ErrorCode.INVALID_ARGUMENT, `${flag} is required`);
  return v;
}

function count(v: unknown, flag: string): number | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'string' || !/^\d+$/.test(v) || Number(v) < 1) throw new VdbError(ErrorCode.INVALID_ARGUMENT, `${flag} must be an integer of at least 1, got ${JSON.stringify(v)}`);
  return Number(v);
}

async function withNats<T>(o: Record<string, unknown>, fn: (nc: NatsConnection) => Promise<T>): Promise<T> {
  const nc = await connect({ servers: natsServers(need(o.nats, '--nats')), ...authOptions(authFromFlags(o)) });
  try {
    return await fn(nc);
  } finally {
    await nc.close();
  }
}

const say = (line: string) => void process.stderr.write(`${line}\n`);

export const BACKUP_COMMANDS = {
  backup: {
    summary: 'copy a collection of a cluster, every shard at a recorded log sequence, into one file',
    help: `Usage: vdb backup --nats URL ${AUTH_USAGE} [--prefix P] --collection NAME --out FILE
Copies every shard of the collection from a live replica, while writes go on: each
shard's copy holds exactly its write log's entries up to the sequence it records.
Writes FILE (FILE.tmp, then renamed) with the schema, the shards and a SHA-256
(format: docs/operations.md). Reads the metadata and the replicas' copy subjects:
--creds names a user of the internal account (vdb up: DIR/credentials/internal.json).
Prints each shard's sequence on stderr and a summary line on stdout.`,
    async run(argv: string[]) {
      const { values: o, positionals } = parseArgs({ args: argv, options: { ...FLAGS, collection: { type: 'string' }, out: { type: 'string' } }, allowPositionals: true });
      if (positionals.length) throw new VdbError(ErrorCode.INVALID_ARGUMENT, `unexpected argument ${JSON.stringify(positionals[0])}`);
      const collection = checkCollectionName(need(o.collection, '--collection'));
      const out = need(o.out, '--out');
      const header = await withNats(o, (nc) => takeBackup(nc, names(o.prefix), collection, out, say));
      console.log(`backed up ${collection}: ${header.shards.length} shards at sequences ${header.shards.map((s) => s.seq).join(', ')} into ${out} (${statSync(out).size} bytes)`);
    },
  },
  restore: {
    summary: 'create a collection from a backup file, with any shard count',
    help: `Usage: vdb restore FILE --as NAME --nats URL ${AUTH_USAGE} [--prefix P] [--shards N] [--replicas R]
Checks FILE whole (CORRUPT_BACKUP if it is damaged, truncated or not a backup), then
creates collection NAME (COLLECTION_EXISTS if taken) with the backup's schema and
partitioner kind, N shards (default the backup's) and R replicas (default the backup's),
and upserts every point through the coordinators, so it is placed by the new layout.
--creds names a user who may create collections and write (admin). A restore that
fails midway leaves NAME partly written: drop it and run the restore again.`,
    async run(argv: string[]) {
      const { values: o, positionals } = parseArgs({ args: argv, options: { ...FLAGS, as: { type: 'string' }, shards: { type: 'string' }, replicas: { type: 'string' } }, allowPositionals: true });
      if (positionals.length !== 1) throw new VdbError(ErrorCode.INVALID_ARGUMENT, positionals.length ? `one FILE at a time, got ${positionals.length}` : 'give the backup FILE to restore');
      const as = checkCollectionName(need(o.as, '--as'));
      const opts = { as, shards: count(o.shards, '--shards'), replicas: count(o.replicas, '--replicas'), log: say };
      const r = await withNats(o, (nc) => restoreBackup(new VdbClient(nc, { prefix: o.prefix, timeoutMs: 60_000 }), positionals[0], opts));
      console.log(`restored ${r.points} points of ${r.header.collection.name} (backed up ${r.header.createdAt}) as ${as}`);
    },
  },
};
