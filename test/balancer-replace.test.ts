// Re-replication (cluster/balancer/replace.ts) with a fake shard-map bucket:
// a replica gone past the grace period is replaced by the least-loaded live
// process that is not draining; a shard short of its count (the collection's
// plus its load replicas) gets more; within the grace period nothing changes.
import { describe, expect, it } from 'vitest';
import { replace } from '../cluster/balancer/replace.js';
import { DEFAULT_BALANCER } from '../cluster/balancer/context.js';
import type { BalancerContext, Round } from '../cluster/balancer/context.js';
import type { Member, ShardMap } from '../cluster/meta.js';

const member = (name: string): Member => ({ name, role: 'shard', pid: 1, heartbeat: Date.now() });

function fake(map: ShardMap, goneSince: Record<string, number> = {}) {
  const written: Partial<ShardMap>[] = [];
  const actions: string[] = [];
  const ctx = {
    meta: {
      shardmaps: { get: async () => ({ operation: 'PUT', revision: 7, value: new TextEncoder().encode(JSON.stringify(map)) }) },
      updateShardMap: async (_name: string, revision: number, change: (m: ShardMap) => Partial<ShardMap>) => {
        expect(revision).toBe(7);
        written.push(change(structuredClone(map)));
      },
    },
    opts: { ...DEFAULT_BALANCER, graceMs: 1000 },
    act: (a: string) => actions.push(a),
    goneSince: new Map(Object.entries(goneSince)),
    failedSince: new Map(),
  } as unknown as BalancerContext;
  return { ctx, written, actions };
}

const round = (live: string[], draining: string[] = [], load: Record<string, number> = {}): Round =>
  ({ live: new Map(live.map((m) => [m, member(m)])), load: new Map(Object.entries(load)), work: [], draining: new Set(draining) });

describe('replace', () => {
  it('replaces a replica gone past the grace period by the least-loaded live process that is not draining', async () => {
    const f = fake({ epoch: 1, replicas: [['a', 'b']] }, { b: Date.now() - 5000 });
    await replace(f.ctx, 'c', 2, round(['a', 'c', 'd'], ['c'], { c: 0, d: 3 }));
    expect(f.written).toEqual([{ replicas: [['a', 'd']] }]);
    expect(f.actions).toEqual(['replace']);
  });

  it('leaves a replica gone within the grace period, and says so', async () => {
    const f = fake({ epoch: 1, replicas: [['a', 'b']] }, { b: Date.now() - 100 });
    const r = round(['a', 'c']);
    await replace(f.ctx, 'c', 2, r);
    expect(f.written).toEqual([]);
    expect(r.work.join('\n')).toMatch(/replica b gone/);
  });

  it('adds replicas up to the collection count plus the shard\'s load replicas', async () => {
    const f = fake({ epoch: 1, replicas: [['a'], ['a']], extra: { 1: 1 } });
    await replace(f.ctx, 'c', 1, round(['a', 'b']));
    expect(f.written).toEqual([{ replicas: [['a'], ['a', 'b']] }]);
    expect(f.actions).toEqual(['add_replica']);
  });
});
