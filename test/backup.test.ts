// `vdb backup` and `vdb restore` on real processes (docs/operations.md, "Backup
// and restore"): a collection is backed up while a writer keeps upserting and
// deleting, then restored into a second, separate cluster (authenticated, as
// every TestCluster). The restored collection holds exactly the points
// acknowledged up to each shard's recorded sequence — its exact searches equal
// a brute force over them — with the original shard count and with another.
// A damaged or truncated file is refused with CORRUPT_BACKUP and creates nothing.
// A spatial collection (its splits placed anew from the restored vectors) gives
// the same points and exact answers with another shard count.

import { afterAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CLI, TestCluster, waitFor } from './cluster-helpers.js';
import { mulberry32 } from './helpers.js';
import { readBackup } from '../cluster/backup-file.js';
import { HashPartitioner } from '../ts/partition/index.js';
import type { Point } from '../ts/collection.js';

const DIM = 8;
const SHARDS = 2;
const work = mkdtempSync(join(tmpdir(), 'vdb-backup-test-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

interface Run { code: number | null; stdout: string; stderr: string }

/** Runs `vdb ARGS` without blocking this process (the writer goes on meanwhile). */
function vdb(args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (d: Buffer) => { stdout += d.toString(); });
    child.stderr!.on('data', (d: Buffer) => { stderr += d.toString(); });
    child.once('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** An acknowledged write of one shard: the points it upserted or the ids it deleted, at its log sequence. */
type Event = { shard: number; seq: number } & ({ op: 'upsert'; points: Point[] } | { op: 'delete'; ids: number[] });

type State = Map<number, { vector: number[]; payload: unknown }>;

/** Each shard's acknowledged writes up to its recorded sequence, applied in log order. */
function expected(events: Event[], seqs: number[]): State {
  const state: State = new Map();
  for (const e of [...events].sort((a, b) => a.shard - b.shard || a.seq - b.seq)) {
    if (e.seq > seqs[e.shard]) continue;
    if (e.op === 'upsert') for (const p of e.points) state.set(p.id as number, { vector: Array.from(Float32Array.from(p.vector)), payload: p.payload });
    else for (const id of e.ids) state.delete(id);
  }
  return state;
}

const l2 = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += (a[i] - b[i]) ** 2;
  return Math.sqrt(s);
};

/** The restored collection holds exactly `want` (ids, vectors, payloads), and exact searches equal a brute force over it. */
async function expectRestored(cl: TestCluster, name: string, want: State, queries: number[][]): Promise<void> {
  await cl.waitCount(name, want.size, 120_000);
  const got: State = new Map();
  for await (const p of cl.client.scrollAll(name, { withVector: true, withPayload: true, limit: 1000, consistency: 'strong' })) {
    got.set(p.id as number, { vector: Array.from(p.vector!), payload: p.payload });
  }
  expect(new Set(got.keys())).toEqual(new Set(want.keys()));
  for (const [id, w] of want) expect(got.get(id), `point ${id}`).toEqual(w);
  const k = Math.min(50, want.size);
  for (const q of queries) {
    const truth = [...want].map(([id, w]) => ({ id, score: l2(q, w.vector) })).sort((a, b) => a.score - b.score).slice(0, k);
    const r = await cl.client.search(name, q, { k, exact: true, consistency: 'strong' });
    expect(r.partial).toBe(false);
    expect(r.hits.map((h) => h.id)).toEqual(truth.map((t) => t.id));
    r.hits.forEach((h, i) => expect(h.score).toBeCloseTo(truth[i].score, 4));
  }
}

describe('vdb backup and vdb restore', () => {
  it('backs up under writes at recorded sequences, restores into another cluster with the same and another shard count, and refuses damaged files', async () => {
    const src = await TestCluster.start({ shards: 2 });
    let dst: TestCluster | undefined;
    try {
      const rand = mulberry32(12);
      const vec = () => Array.from({ length: DIM }, () => Math.round(rand() * 1e6) / 1e4);
      const place = new HashPartitioner(SHARDS);
      await src.client.createCollection({ name: 'src', dim: DIM, metric: 'l2', replicas: 2, partitioner: { kind: 'hash', shards: SHARDS } });
      const events: Event[] = [];
      const record = (points: Point[], seqs: Record<string, number>) => {
        for (const [s, seq] of Object.entries(seqs)) events.push({ shard: Number(s), seq, op: 'upsert', points: points.filter((p) => place.shardOf(p.id) === Number(s)) });
      };
      for (let b = 0; b < 4; b++) {
        const pts = Array.from({ length: 100 }, (_, i) => ({ id: b * 100 + i, vector: vec(), payload: { batch: b, tag: `p${b * 100 + i}` } }));
        record(pts, (await src.client.upsert('src', pts)).seqs);
      }
      await src.waitCount('src', 400);

      // One write at a time, so each acknowledged write is one entry of one shard's log.
      const live = new Set(Array.from({ length: 400 }, (_, i) => i));
      let next = 1000;
      let stop = false;
      let backupDone = false;
      let afterBackup = 0;
      const writer = (async () => {
        while (!stop || afterBackup < 20) {
          const r = rand();
          if (r < 0.15 && live.size > 0) {
            const id = [...live][Math.floor(rand() * live.size)];
            const { seqs } = await src.client.delete('src', [id]);
            live.delete(id);
            events.push({ shard: place.shardOf(id), seq: seqs[String(place.shardOf(id))], op: 'delete', ids: [id] });
          } else {
            const id = r < 0.4 && live.size > 0 ? [...live][Math.floor(rand() * live.size)] : next++;
            const p = { id, vector: vec(), payload: { tag: `w${id}`, at: events.length } };
            record([p], (await src.client.upsert('src', [p])).seqs);
            live.add(id);
          }
          if (backupDone) afterBackup++;
        }
      })();
      await waitFor('writes under way', async () => (events.length > 430 ? true : undefined), 30_000);
      const file = join(work, 'src.vdbbak');
      const before = events.length;
      const b = await vdb(['backup', '--nats', src.natsUrl, '--creds', src.credentials.internal, '--collection', 'src', '--out', file]);
      const during = events.length - before;
      backupDone = true;
      stop = true;
      await writer;
      expect(b.code, b.stderr).toBe(0);
      expect(b.stdout).toMatch(/^backed up src: 2 shards at sequences \d+, \d+ into /);
      expect(during, 'writes acknowledged while the backup ran').toBeGreaterThan(0);

      expect(b.stderr).toMatch(/^shard 0: copied from shard-[01] at sequence \d+$/m);
      const missing = await vdb(['backup', '--nats', src.natsUrl, '--creds', src.credentials.internal, '--collection', 'nope', '--out', join(work, 'nope.vdbbak')]);
      expect(missing.code).toBe(1);
      expect(missing.stderr).toMatch(/^vdb backup: COLLECTION_NOT_FOUND: no collection nope$/m);

      const { header } = readBackup(file);
      const seqs = header.shards.map((s) => s.seq);
      expect(header.collection).toMatchObject({ name: 'src', dim: DIM, metric: 'l2', replicas: 2 });
      // The file is a cut: writes acknowledged after it are in the logs but not in it.
      expect(events.some((e) => e.seq > seqs[e.shard])).toBe(true);
      const want = expected(events, seqs);
      expect(want.size).toBeGreaterThan(300);
      const queries = Array.from({ length: 4 }, vec);

      dst = await TestCluster.start({ shards: 2 });
      const admin = dst.credentials.files.admin;
      const r = await vdb(['restore', file, '--as', 'copy', '--nats', dst.natsUrl, '--creds', admin]);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toContain(`restored ${want.size} points of src`);
      expect((await dst.client.describe('copy')).partitioner).toEqual({ kind: 'hash', shards: 2 });
      await expectRestored(dst, 'copy', want, queries);

      const r3 = await vdb(['restore', file, '--as', 'copy3', '--shards', '3', '--replicas', '1', '--nats', dst.natsUrl, '--creds', admin]);
      expect(r3.code, r3.stderr).toBe(0);
      expect((await dst.client.describe('copy3')).partitioner).toEqual({ kind: 'hash', shards: 3 });
      await expectRestored(dst, 'copy3', want, queries);

      // Restoring onto a taken name is refused by the create, before any write.
      const taken = await vdb(['restore', file, '--as', 'copy', '--nats', dst.natsUrl, '--creds', admin]);
      expect(taken.code).toBe(1);
      expect(taken.stderr).toMatch(/^vdb restore: COLLECTION_EXISTS: /m);

      const bytes = readFileSync(file);
      const flipped = Buffer.from(bytes);
      flipped[Math.floor(bytes.length / 2)] ^= 0x10;
      const damaged = join(work, 'flipped.vdbbak');
      writeFileSync(damaged, flipped);
      const truncated = join(work, 'truncated.vdbbak');
      writeFileSync(truncated, bytes.subarray(0, bytes.length - 1000));
      for (const [f, as] of [[damaged, 'bad1'], [truncated, 'bad2']]) {
        const bad = await vdb(['restore', f, '--as', as, '--nats', dst.natsUrl, '--creds', admin]);
        expect(bad.code, bad.stderr).toBe(1);
        expect(bad.stderr).toMatch(/^vdb restore: CORRUPT_BACKUP: .*SHA-256 does not match.*nothing was restored$/m);
      }
      expect((await dst.client.listCollections()).sort()).toEqual(['copy', 'copy3']);
    } finally {
      await dst?.stop();
      await src.stop();
    }
  }, 600_000);

  it('a spatial cosine collection restores on the same cluster with another shard count: the same points and the same exact answers as the source', async () => {
    const cl = await TestCluster.start({ shards: 2 });
    try {
      const rand = mulberry32(34);
      const vec = () => Array.from({ length: DIM }, () => rand() * 2 - 1);
      const pts = Array.from({ length: 600 }, (_, i) => ({ id: `p${i}`, vector: vec(), payload: { i, even: i % 2 === 0 } }));
      await cl.client.createCollection({ name: 'sp', dim: DIM, metric: 'cosine', partitioner: { kind: 'spatial', shards: 2, sample: pts.slice(0, 200).map((p) => p.vector) } });
      for (let i = 0; i < pts.length; i += 200) await cl.client.upsert('sp', pts.slice(i, i + 200));
      await cl.waitCount('sp', pts.length);
      const file = join(work, 'sp.vdbbak');
      const b = await vdb(['backup', '--nats', cl.natsUrl, '--creds', cl.credentials.internal, '--collection', 'sp', '--out', file]);
      expect(b.code, b.stderr).toBe(0);
      expect(readBackup(file).header.collection.partitioner.kind).toBe('spatial');
      const r = await vdb(['restore', file, '--as', 'sp3', '--shards', '3', '--nats', cl.natsUrl, '--creds', cl.credentials.files.admin]);
      expect(r.code, r.stderr).toBe(0);
      expect((await cl.client.describe('sp3')).partitioner).toEqual({ kind: 'spatial', shards: 3 });
      await cl.waitCount('sp3', pts.length);
      const all = async (name: string) => {
        const m = new Map<unknown, unknown>();
        for await (const p of cl.client.scrollAll(name, { withVector: true, withPayload: true, limit: 1000, consistency: 'strong' })) m.set(p.id, { vector: Array.from(p.vector!), payload: p.payload });
        return m;
      };
      expect(await all('sp3')).toEqual(await all('sp'));
      for (let q = 0; q < 4; q++) {
        const v = vec();
        const [a, c] = await Promise.all(['sp', 'sp3'].map((name) => cl.client.search(name, v, { k: 20, exact: true, filter: { even: true }, consistency: 'strong', withPayload: true })));
        expect(c.hits.map((h) => [h.id, h.payload])).toEqual(a.hits.map((h) => [h.id, h.payload]));
        c.hits.forEach((h, i) => expect(h.score).toBeCloseTo(a.hits[i].score, 5));
      }
    } finally {
      await cl.stop();
    }
  }, 300_000);
});
