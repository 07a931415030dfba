// Rebalancing and drain on a real cluster (a private nats-server, shard
// processes and a coordinator from dist/): replicas move onto a shard process
// that joins, off one that is drained, and a move whose source or target is
// killed with SIGKILL ends abandoned or completed. The drain goes through
// `vdb drain` (refused to a reader) and `vdb status` says when it is done. Throughout, a writer
// upserts and a reader runs exact searches; afterwards every acknowledged
// write is there and exact results equal a brute-force scan of what was
// written. Fails (never skips) without nats-server or dist/.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rmSync } from 'node:fs';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { mulberry32 } from '../ts/random.js';
import type { Point } from '../ts/collection.js';
import { CLI, TestCluster, sleep, waitFor } from './cluster-helpers.js';

const DIM = 8;
const SHARDS = 4;
const REPLICAS = 2;
const GRACE_MS = 8000;
/** Pause between a writer's upserts and between a reader's searches: a steady load, not a flood, on a shared machine. */
const PAUSE_MS = 100;
const C = 'e';

let cl: TestCluster;
const rand = mulberry32(13);
/** Every point written, by id: acknowledged, or written again until it was. */
const written = new Map<string, number[]>();
let nextId = 0;

const newPoints = (n: number): Point[] => Array.from({ length: n }, () => ({ id: `p${nextId++}`, vector: Array.from({ length: DIM }, () => rand() * 2 - 1) }));

interface Map_ { replicas: string[][]; moves?: Record<string, { from: string; to: string; since: number }> }
const shardMap = async () => (await cl.client.describe(C)).shardMap as Map_;
const liveShards = async () => new Set(((await cl.client.status()).members as { name: string; role: string }[]).filter((m) => m.role === 'shard').map((m) => m.name));
const held = (m: Map_, proc: string) => m.replicas.filter((l) => l.includes(proc)).length;

/** `vdb ARGS` as the given user: exit code and output. */
async function vdb(user: 'admin' | 'reader', ...args: string[]): Promise<{ code: number; out: string }> {
  try {
    const r = await promisify(execFile)(process.execPath, [CLI, args[0], '--nats', cl.natsUrl, '--creds', cl.credentials.files[user], ...args.slice(1)], { timeout: 30_000 });
    return { code: 0, out: r.stdout };
  } catch (e) {
    const x = e as { code?: number; stdout?: string; stderr?: string };
    return { code: x.code ?? -1, out: `${x.stdout ?? ''}${x.stderr ?? ''}` };
  }
}

/** A writer and an exact-search reader running until `stop()`; the reader counts partial answers. */
function load() {
  let stopped = false;
  const searches = { done: 0, partial: [] as string[] };
  const writer = (async () => {
    while (!stopped) {
      const pts = newPoints(20);
      // In doubt after an error: written again until acknowledged, so the end state is known.
      for (;;) {
        try {
          await cl.client.upsert(C, pts);
          break;
        } catch {
          await sleep(100);
        }
      }
      for (const p of pts) written.set(String(p.id), p.vector as number[]);
      await sleep(PAUSE_MS);
    }
  })();
  const reader = (async () => {
    while (!stopped) {
      const q = Array.from({ length: DIM }, () => rand() * 2 - 1);
      try {
        const r = await cl.client.search(C, q, { k: 5, exact: true });
        searches.done++;
        if (r.partial) searches.partial.push(`missing ${JSON.stringify(r.missing)}`);
      } catch (e) {
        searches.partial.push(`error ${(e as Error).message}`);
      }
      await sleep(PAUSE_MS);
    }
  })();
  return { searches, async stop() { stopped = true; await Promise.all([writer, reader]); } };
}

/** Every written point is stored, and exact searches give what a scan of them gives. */
async function expectAllThere(): Promise<void> {
  await waitFor(`count = ${written.size}`, async () => ((await cl.client.count(C, { consistency: 'strong' })) === written.size ? true : undefined), 60_000, 200);
  const ids = [...written.keys()];
  for (let i = 0; i < ids.length; i += 500) {
    const got = await cl.client.get(C, ids.slice(i, i + 500));
    expect(got.points.length, 'every acknowledged point is stored').toBe(Math.min(500, ids.length - i));
  }
  for (let t = 0; t < 5; t++) {
    const q = Array.from({ length: DIM }, () => rand() * 2 - 1);
    const want = [...written].map(([id, v]) => ({ id, d: v.reduce((a, x, j) => a + (x - q[j]) ** 2, 0) }))
      .sort((a, b) => a.d - b.d).slice(0, 10).map((h) => h.id);
    const r = await cl.client.search(C, q, { k: 10, exact: true, consistency: 'strong' });
    expect(r.partial).toBe(false);
    expect(r.hits.map((h) => String(h.id))).toEqual(want);
  }
}

/** No move under way, and every shard named on `REPLICAS` live processes. */
async function settled(live?: Set<string>): Promise<Map_ | undefined> {
  const m = await shardMap();
  const alive = live ?? (await liveShards());
  if (Object.keys(m.moves ?? {}).length) return undefined;
  return m.replicas.every((l) => l.length === REPLICAS && l.every((r) => alive.has(r))) ? m : undefined;
}

beforeAll(async () => {
  cl = await TestCluster.start({ shards: 2, clientTimeoutMs: 30_000, coordinatorArgs: ['--grace-ms', String(GRACE_MS)] });
  await cl.client.createCollection({ name: C, dim: DIM, metric: 'l2', partitioner: { kind: 'hash', shards: SHARDS }, replicas: REPLICAS });
  for (let i = 0; i < 10; i++) {
    const pts = newPoints(200);
    await cl.client.upsert(C, pts);
    for (const p of pts) written.set(String(p.id), p.vector as number[]);
  }
}, 120_000);

afterAll(async () => {
  const dir = cl?.dir;
  await cl?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('elastic', () => {
  it('a shard process that joins gets its share of replicas under writes and searches; nothing lost, no search partial', async () => {
    expect((await shardMap()).replicas.flat().filter((r) => r === 'shard-2')).toEqual([]);
    const l = load();
    await sleep(500);
    cl.startShard('shard-2');
    // 8 replicas over 3 processes: the newcomer ends with 2, the others with 3.
    const m = await waitFor('shard-2 holds its share', async () => {
      const s = await settled();
      return s && held(s, 'shard-2') >= Math.floor((SHARDS * REPLICAS) / 3) ? s : undefined;
    }, 90_000, 200, () => cl.logs());
    await l.stop();
    for (const p of ['shard-0', 'shard-1', 'shard-2']) expect(held(m, p), p).toBeGreaterThanOrEqual(2);
    expect(l.searches.done).toBeGreaterThan(10);
    expect(l.searches.partial, cl.logs()).toEqual([]);
    await expectAllThere();
  }, 150_000);

  it('a drained process ends with no replicas under writes and searches, and stops with nothing lost', async () => {
    const l = load();
    // Only an admin may drain.
    const refused = await vdb('reader', 'drain', 'shard-0');
    expect(refused.code, refused.out).toBe(1);
    expect(refused.out).toMatch(/PERMISSION_DENIED/);
    const drained = await vdb('admin', 'drain', 'shard-0');
    expect(drained, drained.out).toEqual({ code: 0, out: 'draining: shard-0\n' });
    const st = await cl.client.status();
    expect(st.draining).toEqual(['shard-0']);
    await waitFor('shard-0 drained', async () => {
      const s = await settled();
      return s && held(s, 'shard-0') === 0 ? s : undefined;
    }, 90_000, 200, () => cl.logs());
    await l.stop();
    expect(l.searches.partial, cl.logs()).toEqual([]);
    const text = await vdb('reader', 'status');
    expect(text.out).toContain('draining shard-0: holds no replicas: it can be stopped');
    await cl.kill('shard-0', 'SIGTERM');
    await expectAllThere();
    expect(await cl.client.drain('shard-0', true)).toEqual([]);
  }, 150_000);

  // Long (about 40 s): in the opt-in long run, VDB_LONG_TESTS=1 npm test.
  it.runIf(process.env.VDB_LONG_TESTS === '1')('SIGKILL of the target, then of the source, in the middle of a move: abandoned or completed, never half-done; nothing lost', async () => {
    // shard-1 and shard-2 hold every shard; shard-3 starting (again, after its kill) starts moves onto it.
    for (const victim of ['target', 'source'] as const) {
      const l = load();
      cl.startShard('shard-3');
      const mv = await waitFor(`a move onto shard-3 (to kill its ${victim})`, async () => {
        const moves = Object.values((await shardMap()).moves ?? {});
        return moves.find((x) => x.to === 'shard-3');
      }, 60_000, 20, () => cl.logs());
      const killed = victim === 'target' ? mv.to : mv.from;
      await cl.kill(killed, 'SIGKILL');
      // Once the grace period has passed, the map names only live processes again, REPLICAS per shard.
      const live = await waitFor(`${killed} out of the members`, async () => {
        const s = await liveShards();
        return s.has(killed) ? undefined : s;
      }, 30_000, 200);
      await waitFor('every shard on live processes, no move under way', () => settled(live), 90_000, 200, () => cl.logs());
      await l.stop();
      await expectAllThere();
    }
  }, 240_000);
});
