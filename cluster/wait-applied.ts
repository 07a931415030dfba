// A write with `wait: true` is answered once every live replica of every
// shard it went to has applied it (read-your-writes without tracking
// sequences). Each replica is asked to confirm its sequence, all at once,
// within one timeout; a shard with no live replica, or with one that did not
// confirm in time, is reported, and the write stays acknowledged either way.

/** How long a `wait: true` write waits for its replicas, in ms. */
export const WAIT_APPLIED_MS = 5000;

/** A shard a write went to: the sequence of its entry, and the replicas that must apply it. */
export interface ShardWrite {
  shard: number;
  seq: number;
  replicas: string[];
}

/** Resolves true once `replica` of `shard` has applied `seq`, false if it cannot say so within `waitMs`. */
export type Confirm = (shard: number, replica: string, seq: number, waitMs: number) => Promise<boolean>;

/** Whether every replica of every shard confirmed; the shards that did not, ascending. */
export async function waitApplied(writes: ShardWrite[], confirm: Confirm, timeoutMs = WAIT_APPLIED_MS): Promise<{ applied: boolean; unconfirmed: number[] }> {
  const results = await Promise.all(writes.map(async (w) => {
    if (w.replicas.length === 0) return false;
    const each = await Promise.all(w.replicas.map((r) => confirm(w.shard, r, w.seq, timeoutMs).catch(() => false)));
    return each.every(Boolean);
  }));
  const unconfirmed = writes.filter((_, i) => !results[i]).map((w) => w.shard).sort((a, b) => a - b);
  return { applied: unconfirmed.length === 0, unconfirmed };
}
