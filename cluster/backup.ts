// `vdb backup` and `vdb restore` (docs/operations.md, "Backup and restore").
//
// Backup copies every shard of a collection over the path a new replica copies
// a peer with (cluster/snapshot-copy.ts): each shard's export holds exactly
// the entries of its write log up to the sequence it records, while writes go
// on. It reads the metadata and the replicas' snapshot subjects, so it
// connects as a user of the internal account.
//
// Restore creates a collection through the public API and upserts every point
// through the normal write path, whatever the shard count: the coordinators
// place each point on its shard and its write log, so every replica (and one
// added later) gets it the usual way, and the new collection's logs start from
// a state they describe. Loading the exports as the new shards' stores instead
// would skip the logs: a replica copied later could not tell what to replay.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import type { NatsConnection } from 'nats';
import { Collection } from '../ts/collection.js';
import type { Point } from '../ts/collection.js';
import type { VdbClient } from '../ts/client.js';
import { VdbError, ErrorCode } from '../ts/errors.js';
import { HashPartitioner, partitionerFromJSON } from '../ts/partition/index.js';
import { Meta, LEASE_MS, shardKey } from './meta.js';
import type { Member } from './meta.js';
import type { Names } from './subjects.js';
import { fetchSnapshot } from './snapshot-copy.js';
import { extractShard, readBackup, writeBackup } from './backup-file.js';
import type { BackupHeader } from './backup-file.js';

/** The live, not failed replicas of a shard, the furthest applied first. */
async function sources(meta: Meta, collection: string, shard: number, replicas: string[]): Promise<string[]> {
  const key = shardKey(collection, shard);
  const members: Member[] = [];
  for (const name of replicas) {
    const e = await meta.members.get(name);
    if (!e || e.operation !== 'PUT' || e.value.length === 0) continue;
    const m = JSON.parse(new TextDecoder().decode(e.value)) as Member;
    if (Date.now() - m.heartbeat <= LEASE_MS && !m.failed?.[key]) members.push(m);
  }
  return members.sort((a, b) => (b.shards?.[key] ?? 0) - (a.shards?.[key] ?? 0)).map((m) => m.name);
}

/** Backs `collection` up into `out`; returns the header written (each shard's recorded sequence). */
export async function takeBackup(nc: NatsConnection, n: Names, collection: string, out: string, log: (line: string) => void = () => undefined): Promise<BackupHeader> {
  const meta = await Meta.open(nc, n);
  // Beside the output: the shards' copies take as much room as the file will.
  const work = mkdtempSync(join(dirname(resolve(out)), '.vdb-backup-'));
  try {
    const cm = await meta.collection(collection);
    const map = await meta.shardMap(collection);
    if (!cm || !map) throw new VdbError(ErrorCode.COLLECTION_NOT_FOUND, `no collection ${collection}`);
    const shards = [];
    for (const [s, replicas] of map.replicas.entries()) {
      const file = join(work, `${s}.sqlite`);
      const tried: string[] = [];
      let got: { seq: number; name: string; member: string } | undefined;
      for (const member of await sources(meta, collection, s, replicas)) {
        try {
          const b = await fetchSnapshot(nc, n.replica(collection, s, member, 'snapshot'), file);
          got = { seq: b.seq, name: b.name, member };
          break;
        } catch (e) {
          tried.push(`${member}: ${(e as Error).message}`);
        }
      }
      if (!got) throw new VdbError(ErrorCode.SHARD_UNAVAILABLE, `shard ${s} of ${collection}: no live replica could be copied${tried.length ? ` (${tried.join('; ')})` : ''}`);
      log(`shard ${s}: copied from ${got.member} at sequence ${got.seq}`);
      shards.push({ shard: s, seq: got.seq, member: got.member, store: got.name, file });
    }
    return writeBackup(out, {
      createdAt: new Date().toISOString(),
      collection: { name: cm.name, dim: cm.dim, metric: cm.metric, replicas: cm.replicas, hnsw: cm.hnsw, partitioner: map.partitioner ?? cm.partitioner },
    }, shards);
  } finally {
    meta.close();
    rmSync(work, { recursive: true, force: true });
  }
}

export interface RestoreOptions {
  /** The new collection's name. */
  as: string;
  /** Its shard count; default the backed-up collection's. */
  shards?: number;
  /** Its replica count; default the backed-up collection's. */
  replicas?: number;
  log?: (line: string) => void;
}

/** Points per upsert, and the bytes of vectors and payloads in one at most (well below a NATS message). */
const BATCH_POINTS = 1000;
const BATCH_BYTES = 2 * 1024 * 1024;
/** Vectors a spatial collection's kd splits are placed from (as `vdb create --sample`). */
const SAMPLE = 10_000;

/** Each point a shard's export holds and the shard owns (after a split a shard may
 * keep copies of what moved away until its log drops them: only a hash layout tells). */
function* ownPoints(c: Collection, shard: number, owns: (id: Point['id']) => boolean): Generator<Point> {
  let after: Point['id'] | undefined;
  for (;;) {
    const page = c.scroll({ after, limit: 1000, withVector: true });
    for (const p of page.points) if (owns(p.id)) yield { id: p.id, vector: p.vector!, ...(p.payload === undefined ? {} : { payload: p.payload }) };
    if (page.next === undefined) return;
    after = page.next;
  }
}

/** Restores a backup file as a new collection through `client`; returns the points written. */
export async function restoreBackup(client: VdbClient, file: string, o: RestoreOptions): Promise<{ points: number; header: BackupHeader }> {
  const log = o.log ?? (() => undefined);
  const { header, sections } = readBackup(file);
  const c = header.collection;
  const layout = partitionerFromJSON(c.partitioner);
  const shards = o.shards ?? sections.length;
  const work = mkdtempSync(join(tmpdir(), 'vdb-restore-'));
  const opened: Collection[] = [];
  try {
    const stores = sections.map((s) => {
      const f = join(work, `${s.shard}.sqlite`);
      extractShard(file, s, f);
      Collection.importFrom(work, `s${s.shard}`, f, s.store);
      rmSync(f);
      const store = Collection.open(work, { name: `s${s.shard}` });
      opened.push(store);
      const owns = layout instanceof HashPartitioner ? (id: Point['id']) => layout.shardOf(id) === s.shard : () => true;
      return { s, points: () => ownPoints(store, s.shard, owns) };
    });
    const partitioner: Parameters<VdbClient['createCollection']>[0]['partitioner'] = { kind: layout.kind, shards };
    if (layout.kind === 'semantic') {
      const j = c.partitioner as { field: string; map?: Record<string, number[]> };
      partitioner.field = j.field;
      // The label map names shards of the old layout: kept only with the same shard count.
      if (shards === sections.length && j.map && Object.keys(j.map).length) partitioner.map = j.map;
    }
    if (layout.kind === 'spatial') {
      const sample: Float32Array[] = [];
      const each = Math.ceil(SAMPLE / stores.length);
      for (const st of stores) {
        let k = 0;
        for (const p of st.points()) {
          if (k++ >= each) break;
          sample.push(p.vector as Float32Array);
        }
      }
      partitioner.sample = sample;
    }
    await client.createCollection({ name: o.as, dim: c.dim, metric: c.metric, replicas: o.replicas ?? c.replicas, hnsw: c.hnsw, partitioner });
    log(`created ${o.as} (${shards} shards, ${o.replicas ?? c.replicas} replicas) from the backup of ${c.name} of ${header.createdAt}`);
    let written = 0;
    for (const st of stores) {
      let batch: Point[] = [];
      let bytes = 0;
      const flush = async () => {
        if (batch.length === 0) return;
        await client.upsert(o.as, batch);
        written += batch.length;
        batch = [];
        bytes = 0;
      };
      for (const p of st.points()) {
        batch.push(p);
        bytes += c.dim * 4 + (p.payload === undefined ? 0 : JSON.stringify(p.payload).length) + 64;
        if (batch.length >= BATCH_POINTS || bytes >= BATCH_BYTES) await flush();
      }
      await flush();
      log(`shard ${st.s.shard} (sequence ${st.s.seq}): ${written} points written so far`);
    }
    return { points: written, header };
  } finally {
    for (const s of opened) s.close();
    rmSync(work, { recursive: true, force: true });
  }
}
