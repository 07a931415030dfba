// Cluster metadata against a real nats-server (no shard processes): the one
// helper every shard-map writer goes through keeps every field, bumps the
// epoch and refuses a stale revision; create and drop of a collection work
// from any half-finished state; store names carry the incarnation; and a data
// directory can list and drop its stored collections.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { connect } from 'nats';
import type { JetStreamManager, NatsConnection } from 'nats';
import { startNatsServer } from '../cluster/nats-server.js';
import type { RunningNats } from '../cluster/nats-server.js';
import { Meta, addLogStream, newUid, whileJetStreamStarts, nextShardMap, parseStoreName, storeName } from '../cluster/meta.js';
import type { ShardMap } from '../cluster/meta.js';
import { createCollection, dropCollection, logStreams, planCollection } from '../cluster/collections-admin.js';
import { names } from '../cluster/subjects.js';
import { listKeys } from '../cluster/watch.js';
import { Collection } from '../ts/collection.js';
import { ErrorCode, VdbError } from '../ts/errors.js';

const n = names();
let tmp: string;
let nats: RunningNats;
let nc: NatsConnection;
let jsm: JetStreamManager;
let meta: Meta;

beforeAll(async () => {
  tmp = mkdtempSync(join(tmpdir(), 'vdb-meta-'));
  nats = await startNatsServer({ dir: join(tmp, 'nats') });
  nc = await connect({ servers: nats.url });
  jsm = await nc.jetstreamManager();
  meta = await Meta.open(nc, n);
});

afterAll(async () => {
  meta?.close();
  await nc?.close();
  await nats?.stop();
  rmSync(tmp, { recursive: true, force: true });
});

async function rejects(p: Promise<unknown>, code: string): Promise<VdbError> {
  const e = await p.then(() => undefined, (x: unknown) => x);
  expect(e, `expected ${code}`).toBeInstanceOf(VdbError);
  expect((e as VdbError).code).toBe(code);
  return e as VdbError;
}

const split: ShardMap = {
  epoch: 7,
  uid: 'a1b2c3d4e5f6',
  replicas: [['s0'], ['s1']],
  partitioner: { kind: 'hash', shards: 2, depth: [1, 1] } as unknown as ShardMap['partitioner'],
  retain: [0],
  settle: { 1: 40 },
};

describe('whileJetStreamStarts', () => {
  const failing = (errors: Error[]) => {
    let calls = 0;
    return { fn: async () => { const e = errors[calls++]; if (e) throw e; return calls; }, calls: () => calls };
  };
  const natsError = (code: string, message = code) => Object.assign(new Error(message), { code });

  it('tries again on a timeout, no responders or a JetStream not ready yet, and returns the first answer', async () => {
    const f = failing([natsError('TIMEOUT'), natsError('503'), natsError('10008', 'JetStream system temporarily unavailable')]);
    expect(await whileJetStreamStarts(f.fn, 10_000)).toBe(4);
  });

  it('passes any other error at once', async () => {
    const f = failing([natsError('PERMISSIONS_VIOLATION', 'Permissions Violation for Publish')]);
    await expect(whileJetStreamStarts(f.fn, 10_000)).rejects.toThrow(/Permissions Violation/);
    expect(f.calls()).toBe(1);
  });

  it('gives up with UNAVAILABLE past its deadline', async () => {
    const f = failing(Array.from({ length: 100 }, () => natsError('TIMEOUT')));
    const err = await whileJetStreamStarts(f.fn, 250).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(VdbError);
    expect((err as VdbError).code).toBe(ErrorCode.UNAVAILABLE);
    expect(f.calls()).toBeGreaterThan(1);
  });
});

describe('nextShardMap', () => {
  const members = fc.array(fc.array(fc.constantFrom('s0', 's1', 's2', 's3'), { minLength: 1, maxLength: 3 }), { minLength: 1, maxLength: 4 });
  const map = fc.record({
    epoch: fc.integer({ min: 1, max: 1e6 }),
    uid: fc.option(fc.constant('0123456789ab'), { nil: undefined }),
    replicas: members,
    partitioner: fc.option(fc.constant({ kind: 'hash', shards: 2 } as unknown as ShardMap['partitioner']), { nil: undefined }),
    retain: fc.option(fc.array(fc.nat(8), { maxLength: 2 }), { nil: undefined }),
    settle: fc.option(fc.dictionary(fc.constantFrom('0', '1'), fc.nat(100)), { nil: undefined }),
  }, { requiredKeys: ['epoch', 'replicas'] }) as fc.Arbitrary<ShardMap>;
  const patch = fc.record({
    replicas: members,
    retain: fc.constant(undefined),
    settle: fc.option(fc.dictionary(fc.constantFrom('0', '1'), fc.nat(100)), { nil: undefined }),
    epoch: fc.integer(),
  }, { requiredKeys: [] }) as fc.Arbitrary<Partial<ShardMap>>;

  it('keeps every field the patch does not name, takes those it does (removing undefined ones), and bumps the epoch', () => {
    fc.assert(fc.property(map, patch, (m, p) => {
      const before = structuredClone(m);
      const next = nextShardMap(m, p);
      expect(m).toEqual(before);
      expect(next.epoch).toBe(m.epoch + 1);
      for (const k of Object.keys({ ...m, ...p }) as (keyof ShardMap)[]) {
        if (k === 'epoch') continue;
        const want = k in p ? p[k] : m[k];
        if (want === undefined) expect(k in next, `${k} removed`).toBe(false);
        else expect(next[k]).toEqual(want);
      }
    }));
  });
});

describe('updateShardMap', () => {
  it('keeps every field the change does not name, bumps the epoch, removes a field set to undefined, and refuses a stale revision', async () => {
    await meta.shardmaps.put('m1', new TextEncoder().encode(JSON.stringify(split)));
    const rev = (await meta.shardmaps.get('m1'))!.revision;
    const next = await meta.updateShardMap('m1', rev, (m) => ({ replicas: m.replicas.map((l) => [...l, 's2']) }));
    expect(next).toEqual({ ...split, epoch: 8, replicas: [['s0', 's2'], ['s1', 's2']] });
    expect(await meta.shardMap('m1')).toEqual(next);

    // The revision read before that change is stale now: refused, nothing written.
    await rejects(meta.updateShardMap('m1', rev, () => ({ replicas: [] })), ErrorCode.CONFLICT);
    expect(await meta.shardMap('m1')).toEqual(next);

    const rev2 = (await meta.shardmaps.get('m1'))!.revision;
    const after = await meta.updateShardMap('m1', rev2, () => ({ retain: undefined, settle: undefined }));
    expect(after).toEqual({ epoch: 9, uid: split.uid, replicas: next.replicas, partitioner: split.partitioner });
    expect(Object.keys((await meta.shardMap('m1'))!).sort()).toEqual(['epoch', 'partitioner', 'replicas', 'uid']);
  });

  it('refuses a map that is gone', async () => {
    await meta.shardmaps.put('m2', new TextEncoder().encode(JSON.stringify(split)));
    const rev = (await meta.shardmaps.get('m2'))!.revision;
    await meta.shardmaps.delete('m2');
    await rejects(meta.updateShardMap('m2', rev, () => ({})), ErrorCode.CONFLICT);
  });

  it('of two writers that read the same revision, exactly one wins', async () => {
    await meta.shardmaps.put('m3', new TextEncoder().encode(JSON.stringify(split)));
    const rev = (await meta.shardmaps.get('m3'))!.revision;
    const results = await Promise.allSettled([
      meta.updateShardMap('m3', rev, () => ({ replicas: [['a'], ['b']] })),
      meta.updateShardMap('m3', rev, () => ({ replicas: [['c'], ['d']] })),
    ]);
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    expect((await meta.shardMap('m3'))!.epoch).toBe(8);
  });
});

describe('store names', () => {
  const name = fc.stringMatching(/^[A-Za-z0-9-][A-Za-z0-9_-]{0,40}$/);
  it('a store name reads back as its collection, incarnation and shard', () => {
    fc.assert(fc.property(name, fc.integer({ min: 0, max: 65_535 }), (c, s) => {
      const uid = newUid();
      expect(uid).toMatch(/^[0-9a-f]{12}$/);
      expect(parseStoreName(storeName(c, uid, s))).toEqual({ collection: c, uid, shard: s });
    }));
  });
  it('the older name without an incarnation reads back too (unless the name ends like one)', () => {
    fc.assert(fc.property(name.filter((c) => !/__[0-9a-f]{12}$/.test(c)), fc.integer({ min: 0, max: 65_535 }), (c, s) => {
      expect(parseStoreName(storeName(c, undefined, s))).toEqual({ collection: c, shard: s });
    }));
  });
  it('other names are not store names', () => {
    for (const x of ['plain', 'a__', 'a__b', '__1x']) expect(parseStoreName(x)).toBeUndefined();
  });
});

describe('Collection.storedNames and Collection.drop', () => {
  it('drop removes the rows, snapshot and schema of one collection and leaves the others', () => {
    const dir = join(tmp, 'store');
    const a = Collection.open(dir, { name: 'a__0', dim: 2 });
    const b = Collection.open(dir, { name: 'b__0', dim: 2 });
    a.upsert([{ id: 1, vector: [1, 2] }, { id: 2, vector: [3, 4] }]);
    b.upsert([{ id: 1, vector: [5, 6] }]);
    a.snapshot();
    expect(() => Collection.drop(dir, 'a__0')).toThrow(/open/);
    a.close();
    b.close();
    expect(Collection.storedNames(dir)).toEqual(['a__0', 'b__0']);
    Collection.drop(dir, 'a__0');
    expect(Collection.storedNames(dir)).toEqual(['b__0']);
    expect(Collection.storedSeq(dir, 'a__0')).toBe(0);
    // Created again, it is empty and of the new schema.
    const again = Collection.open(dir, { name: 'a__0', dim: 3 });
    expect(again.count()).toBe(0);
    expect(again.dim).toBe(3);
    again.close();
    const kept = Collection.open(dir, { name: 'b__0' });
    expect(kept.get([1]).map((p) => p.id)).toEqual([1]);
    kept.close();
  });
});

describe('create and drop', () => {
  const deps = () => ({ meta, jsm, n });
  const body = (name: string, dim = 4) => ({ name, dim, metric: 'l2', partitioner: { kind: 'hash', shards: 2 }, replicas: 1 });

  it('planCollection gives the collection and its map one fresh incarnation', () => {
    const a = planCollection(body('p'), ['s0', 's1']);
    const b = planCollection(body('p'), ['s0', 's1']);
    expect(a.cm.uid).toBe(a.map.uid);
    expect(a.cm.uid).not.toBe(b.cm.uid);
    expect(a.map).toEqual({ epoch: 1, uid: a.cm.uid, replicas: [['s0'], ['s1']] });
    expect(() => planCollection(body('p'), [])).toThrow(/no shard process/);
  });

  it('create writes the logs, the map and the entry; a second create is COLLECTION_EXISTS; drop removes all of it', async () => {
    const { cm, map } = planCollection(body('c1'), ['s0']);
    await createCollection(deps(), cm, map);
    expect(await meta.collection('c1')).toEqual(cm);
    expect(await meta.shardMap('c1')).toEqual(map);
    expect(await logStreams(jsm, n, 'c1')).toEqual([n.stream('c1', 0), n.stream('c1', 1)]);
    const other = planCollection(body('c1'), ['s0']);
    await rejects(createCollection(deps(), other.cm, other.map), ErrorCode.COLLECTION_EXISTS);
    expect((await meta.shardMap('c1'))!.uid).toBe(cm.uid);

    expect(await dropCollection(deps(), 'c1')).toEqual({ dropped: 'c1' });
    expect(await meta.collection('c1')).toBeUndefined();
    expect(await meta.shardMap('c1')).toBeUndefined();
    expect(await logStreams(jsm, n, 'c1')).toEqual([]);
    await rejects(dropCollection(deps(), 'c1'), ErrorCode.COLLECTION_NOT_FOUND);
  });

  it('the logs of another collection whose name starts the same are not touched', async () => {
    await addLogStream(jsm, n, 'c2x', 0, 1);
    await addLogStream(jsm, n, 'c2', 0, 1);
    await dropCollection(deps(), 'c2');
    expect(await logStreams(jsm, n, 'c2x')).toEqual([n.stream('c2x', 0)]);
  });

  for (const left of ['streams only', 'map only', 'map and streams', 'entry only'] as const) {
    it(`a create cut short (${left}) can be dropped, and the name created again over it`, async () => {
      const name = `half-${left.replace(/ /g, '-')}`;
      const old = planCollection(body(name), ['s0']);
      // What a crash leaves: the steps written in create's order, or an entry alone (an older layout).
      if (left !== 'map only' && left !== 'entry only') for (let s = 0; s < 3; s++) await addLogStream(jsm, n, name, s, 1);
      if (left.startsWith('map')) await meta.shardmaps.put(name, new TextEncoder().encode(JSON.stringify(old.map)));
      if (left === 'entry only') await meta.collections.put(name, new TextEncoder().encode(JSON.stringify(old.cm)));
      expect(await dropCollection(deps(), name)).toEqual({ dropped: name });
      expect(await meta.shardMap(name)).toBeUndefined();
      expect(await meta.collection(name)).toBeUndefined();
      expect(await logStreams(jsm, n, name)).toEqual([]);

      // Left again, then created over without a drop: the leftovers are replaced.
      if (left !== 'map only' && left !== 'entry only') for (let s = 0; s < 3; s++) await addLogStream(jsm, n, name, s, 1);
      if (left.startsWith('map')) await meta.shardmaps.put(name, new TextEncoder().encode(JSON.stringify(old.map)));
      if (left !== 'entry only') {
        const js = nc.jetstream();
        if (left !== 'map only') await js.publish(n.log(name, 0), new Uint8Array([1]));
        const fresh = planCollection(body(name, 8), ['s0']);
        await createCollection(deps(), fresh.cm, fresh.map);
        expect(await meta.shardMap(name)).toEqual(fresh.map);
        expect((await meta.collection(name))!.dim).toBe(8);
        expect(await logStreams(jsm, n, name)).toEqual([n.stream(name, 0), n.stream(name, 1)]);
        expect((await jsm.streams.info(n.stream(name, 0))).state.messages).toBe(0);
      }
    });
  }
});

describe('listKeys', () => {
  it('lists a bucket\'s keys from its stream (deleted ones too, which read as no value)', async () => {
    await meta.shardmaps.put('lk-a', new TextEncoder().encode('{}'));
    await meta.shardmaps.put('lk-b', new TextEncoder().encode('{}'));
    await meta.shardmaps.delete('lk-b');
    const keys = await listKeys(jsm, n.bucket('shardmap'));
    expect(keys.has('lk-a')).toBe(true);
    expect(keys.has('lk-b')).toBe(true);
    expect((await meta.shardmaps.get('lk-b'))?.operation).not.toBe('PUT');
    expect([...keys].every((k) => !k.startsWith('$KV.'))).toBe(true);
  });
});
