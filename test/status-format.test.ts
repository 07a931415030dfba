// `vdb status` as text (formatStatus in cluster/cluster-commands.ts): a move
// or a merge under way and what a draining process still holds are shown.
import { describe, expect, it } from 'vitest';
import { formatStatus } from '../cluster/cluster-commands.js';

const replica = (member: string) => ({ member, live: true, applied: 10, lag: 0 });
const status = (draining: string[], moving: boolean) => ({
  members: [],
  collections: [{ name: 'e', shards: [
    { shard: 0, logSeq: 10, firstSeq: 1, count: 5, replicas: [replica('a'), replica('b'), replica('c')], ...(moving ? { move: { from: 'a', to: 'c', since: Date.now() - 2000 } } : {}) },
    { shard: 1, logSeq: 10, firstSeq: 1, count: 5, replicas: [replica('b'), replica('c')] },
  ] }],
  balancer: null,
  draining,
});

describe('formatStatus', () => {
  it('shows a move under way and the replicas a draining process still holds', () => {
    const text = formatStatus(status(['a'], true));
    expect(text).toMatch(/moving a → c for 2 s/);
    expect(text).toContain('draining a: 1 replicas left (e/0)');
  });
  it('shows a merge under way and its step', () => {
    const base = status([], false);
    const at = (merge: Record<string, number>) => formatStatus({ ...base, collections: [{ ...base.collections[0], merge: { shard: 0, from: 1, ...merge } }] });
    expect(at({})).toContain('merging shard 1 into shard 0: writes held, sealing');
    expect(at({ sealedAt: 7 })).toContain('merging shard 1 into shard 0: sealed at 7, copying');
    expect(at({ sealedAt: 7, copied: 12 })).toContain('merging shard 1 into shard 0: copied, shard 0 applying up to 12');
    expect(formatStatus({ ...base, collections: [{ ...base.collections[0], merge: { shard: 0, from: 1, done: { replicas: ['b'] } } }] }))
      .toContain('merging shard 1 into shard 0: done, b still serving shard 1 for searches routed before');
    expect(formatStatus(base)).not.toContain('merging');
  });
  it('says when a draining process holds nothing, and nothing of drains or moves when there are none', () => {
    expect(formatStatus(status(['d'], false))).toContain('draining d: holds no replicas: it can be stopped');
    const plain = formatStatus(status([], false));
    expect(plain).not.toMatch(/moving|draining/);
  });
});
