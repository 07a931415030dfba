// The steps of a shard merge (cluster/balancer/merge.ts `merge`) against fakes
// of the shard-map bucket, JetStream and the replicas: each call takes one
// step, with one compare-and-set of the map; the copy appends every point of
// the merged-away shard to the other's log as the coordinators' upsert
// entries; a log that moved past its seal, or no replica to copy from for the
// grace period, abandons the merge and drops the copies with a retain.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { merge, RETIRE_MS } from '../cluster/balancer/merge.js';
import { DEFAULT_BALANCER } from '../cluster/balancer/context.js';
import type { BalancerAction, BalancerContext, Round } from '../cluster/balancer/context.js';
import { holdsWrites, nextShardMap } from '../cluster/meta.js';
import type { CollectionMeta, Member, ShardMap } from '../cluster/meta.js';
import { names } from '../cluster/subjects.js';
import { upsertEntries } from '../cluster/log-entries.js';
import { HashPartitioner, SemanticPartitioner } from '../ts/partition/index.js';
import { decode, encode, float32Bytes } from '../ts/wire/codec.js';
import type { PointId } from '../ts/validate.js';

const n = names('vdb');
const cm: CollectionMeta = { name: 'c', dim: 2, metric: 'l2', replicas: 1, hnsw: { m: 16, efConstruction: 100 }, partitioner: { kind: 'hash', shards: 1 }, createdAt: 0 };
const split = new HashPartitioner(1).split(0);
/** Shard 1's points, on replica `b`. */
const T_POINTS = Array.from({ length: 2500 }, (_, i) => ({ id: (i % 2 ? i : `p${i}`) as PointId, vector: Float32Array.of(i, -i), payload: i % 3 ? { i } : undefined }));

function fixture(partitioner: ShardMap['partitioner'] = split.toJSON()) {
  let map: ShardMap = { epoch: 3, replicas: [['a'], ['b']], partitioner };
  let revision = 1;
  const logs: Record<string, Uint8Array[]> = { [n.stream('c', 0)]: Array(10).fill(new Uint8Array()), [n.stream('c', 1)]: Array(7).fill(new Uint8Array()) };
  const deleted: string[] = [];
  const actions: [BalancerAction, string][] = [];
  const scrolls: unknown[] = [];
  const coordinators: Member[] = [{ name: 'c1', role: 'coordinator', pid: 1, heartbeat: 0, epochs: { c: 3 } }];
  const live = new Map<string, Member>([
    ['a', { name: 'a', role: 'shard', pid: 2, heartbeat: 0, points: { 'c/0': 10 }, shards: { 'c/0': 10 } }],
    ['b', { name: 'b', role: 'shard', pid: 3, heartbeat: 0, points: { 'c/1': T_POINTS.length }, shards: { 'c/1': 7 } }],
  ]);
  const entry = () => ({ revision, operation: 'PUT', value: new TextEncoder().encode(JSON.stringify(map)) });
  const ctx = {
    meta: {
      shardmaps: { get: async () => entry() },
      async updateShardMap(_name: string, rev: number, change: (m: ShardMap) => Partial<ShardMap>) {
        if (rev !== revision) throw new Error('CONFLICT');
        map = nextShardMap(map, change(structuredClone(map)));
        revision++;
        return map;
      },
      live: () => coordinators,
    },
    js: {
      async publish(subject: string, data: Uint8Array) {
        if (subject === n.version('c')) return { seq: 41 };
        const stream = subject === n.log('c', 0) ? n.stream('c', 0) : n.stream('c', 1);
        logs[stream].push(data);
        return { seq: logs[stream].length };
      },
    },
    jsm: {
      streams: {
        info: async (stream: string) => ({ state: { last_seq: logs[stream].length } }),
        delete: async (stream: string) => { deleted.push(stream); return true; },
      },
    },
    async request(subject: string, body: { after?: PointId; limit: number; minSeq?: number }) {
      expect(subject).toBe(n.replica('c', 1, 'b', 'scroll'));
      scrolls.push(body);
      const from = body.after === undefined ? 0 : T_POINTS.findIndex((p) => p.id === body.after) + 1;
      const page = T_POINTS.slice(from, from + body.limit).map((p) => ({ id: p.id, vector: float32Bytes(p.vector), ...(p.payload ? { payload: p.payload } : {}) }));
      return from + body.limit < T_POINTS.length ? { points: page, next: page[page.length - 1].id } : { points: page };
    },
    n,
    opts: { ...DEFAULT_BALANCER, mergeBelow: 5000, hotSearches: 0, graceMs: 30_000 },
    act: (a: BalancerAction, line: string) => actions.push([a, line]),
    goneSince: new Map(), failedSince: new Map(), samples: new Map(), heat: new Map(),
  } as unknown as BalancerContext;
  const round = (): Round => ({ live, load: new Map(), work: [], draining: new Set() });
  return { ctx, round, live, coordinators, logs, deleted, actions, scrolls, map: () => map, tLog: logs[n.stream('c', 1)] };
}

beforeEach(() => { vi.useFakeTimers({ toFake: ['Date'] }); vi.setSystemTime(1_000_000); });
afterEach(() => { vi.useRealTimers(); });

describe('merge steps', () => {
  it('start, seal once every coordinator holds writes, copy every point, switch once s applied the copy, retire t', async () => {
    const f = fixture();
    const step = async () => { const r = f.round(); expect(await merge(f.ctx, 'c', cm, r)).toBe(true); return r.work; };
    await step();
    expect(f.map().merge).toMatchObject({ shard: 0, from: 1, fenced: true, partitioner: { kind: 'hash', shards: 1 } });
    expect(holdsWrites(f.map(), 1)).toBe(true);
    expect(holdsWrites(f.map(), 0)).toBe(false);
    expect(f.actions.map(([a]) => a)).toEqual(['merge_start']);

    expect((await step()).join()).toMatch(/waiting for c1 to hold writes/);
    expect(f.map().merge?.sealedAt).toBeUndefined();
    f.coordinators[0].epochs = { c: f.map().epoch };
    await step();
    expect(f.map().merge?.sealedAt).toBe(7);

    await step();
    const copied = f.map().merge?.copied;
    expect(copied).toBe(f.logs[n.stream('c', 0)].length);
    expect(f.scrolls.every((b) => (b as { minSeq: number }).minSeq === 7)).toBe(true);
    // The appended entries are exactly what a coordinator's upsert of these points would log.
    const appended = f.logs[n.stream('c', 0)].slice(10).map((d) => decode(d, false));
    const points = appended.flatMap((e) => (e as { points: unknown[] }).points);
    expect(points.length).toBe(T_POINTS.length);
    const expected = upsertEntries(T_POINTS, {}, DEFAULT_BALANCER.maxPayload).map((e) => decode(encode(e, false), false)) as { points: unknown[] }[];
    expect(points).toEqual(expected.flatMap((e) => e.points));

    expect((await step()).join()).toMatch(/waiting for a to apply sequence/);
    expect(f.map().replicas.length).toBe(2);
    f.live.get('a')!.shards!['c/0'] = copied!;
    await step();
    expect(f.map().replicas).toEqual([['a']]);
    expect(f.map().partitioner).toEqual({ kind: 'hash', shards: 1 });
    expect(f.map().merge?.done?.replicas).toEqual(['b']);
    expect(holdsWrites(f.map(), 1)).toBe(false);
    expect(f.actions.map(([a]) => a)).toEqual(['merge_start', 'merge_seal', 'merge_done']);

    // t is served until every coordinator routes with the merged map, and RETIRE_MS have passed.
    expect((await step()).join()).toMatch(/still served by b until c1 route/);
    f.coordinators[0].epochs = { c: f.map().epoch };
    expect((await step()).join()).toMatch(/still served by b until searches routed before/);
    expect(f.deleted).toEqual([]);
    vi.setSystemTime(1_000_000 + RETIRE_MS);
    f.ctx.heat.set('c/1', { coldSince: 0 });
    await step();
    expect(f.ctx.heat.has('c/1')).toBe(false);
    expect(f.map().merge).toBeUndefined();
    expect(f.deleted).toEqual([n.stream('c', 1)]);
    expect(await merge(f.ctx, 'c', cm, f.round())).toBe(false);
  });

  it('copies the points of a semantic (versioned) collection under one new version', async () => {
    const before = new SemanticPartitioner({ shards: 1, field: 'tag' });
    const f = fixture(before.split(0, new Map([['x', 5], ['y', 5]])).toJSON());
    const semantic: CollectionMeta = { ...cm, partitioner: before.toJSON() };
    f.coordinators[0].epochs = { c: 100 };
    for (let i = 0; i < 3; i++) await merge(f.ctx, 'c', semantic, f.round());
    expect(f.map().merge?.copied).toBeDefined();
    const appended = f.logs[n.stream('c', 0)].slice(10).map((d) => decode(d, false)) as { version?: number; points: unknown[] }[];
    expect(appended.every((e) => e.version === 41)).toBe(true);
    const expected = upsertEntries(T_POINTS, { version: 41 }, DEFAULT_BALANCER.maxPayload).map((e) => decode(encode(e, false), false)) as { points: unknown[] }[];
    expect(appended.flatMap((e) => e.points)).toEqual(expected.flatMap((e) => e.points));
    expect(f.map().merge?.partitioner).toEqual(before.toJSON());
  });

  it('abandons when t\'s log moved past its seal: the map keeps its shards, and a retain drops s\'s copies', async () => {
    const f = fixture();
    for (let i = 0; i < 2; i++) await merge(f.ctx, 'c', cm, f.round());
    f.coordinators[0].epochs = { c: f.map().epoch };
    await merge(f.ctx, 'c', cm, f.round());
    expect(f.map().merge?.sealedAt).toBe(7);
    f.tLog.push(new Uint8Array()); // a write from a coordinator that missed the fence
    await merge(f.ctx, 'c', cm, f.round());
    expect(f.map().merge).toBeUndefined();
    expect(f.map().retain).toEqual([0]);
    expect(f.map().replicas).toEqual([['a'], ['b']]);
    expect(f.map().partitioner).toEqual(split.toJSON());
    expect(f.actions.at(-1)?.[0]).toBe('merge_abandon');
  });

  it('waits for a replica of t to copy from, and gives up after the grace period', async () => {
    const f = fixture();
    f.coordinators[0].epochs = { c: 100 };
    await merge(f.ctx, 'c', cm, f.round());
    await merge(f.ctx, 'c', cm, f.round());
    expect(f.map().merge?.sealedAt).toBe(7);
    f.live.delete('b');
    const r = f.round();
    await merge(f.ctx, 'c', cm, r);
    expect(r.work.join()).toMatch(/no live replica of c\/1 has applied sequence 7/);
    expect(f.map().merge).toBeDefined();
    vi.setSystemTime(1_000_000 + 30_000);
    await merge(f.ctx, 'c', cm, f.round());
    expect(f.map().merge).toBeUndefined();
    expect(f.map().retain).toEqual([0]);
    expect(f.actions.at(-1)).toEqual(['merge_abandon', expect.stringMatching(/abandoned after 30 s/)]);
  });
});
