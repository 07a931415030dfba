// Plain functions behind the cluster's read and write guarantees: the wait for
// a write's replicas (cluster/wait-applied.ts) and the NATS connection state
// /healthz reports (cluster/nats-status.ts).

import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import { waitApplied } from '../cluster/wait-applied.js';
import type { ShardWrite } from '../cluster/wait-applied.js';
import { nextConnectionState } from '../cluster/nats-status.js';
import type { ConnectionState } from '../cluster/nats-status.js';

describe('waitApplied', () => {
  it('applied only when every replica of every shard confirms; the others are listed', async () => {
    const arb = fc.array(fc.record({
      replicas: fc.array(fc.record({ name: fc.constantFrom('a', 'b', 'c', 'd'), ok: fc.constantFrom('yes', 'no', 'throws') }), { maxLength: 3 }),
      seq: fc.nat(),
    }), { maxLength: 5 });
    await fc.assert(fc.asyncProperty(arb, async (shards) => {
      const writes: ShardWrite[] = shards.map((s, i) => ({ shard: i, seq: s.seq, replicas: s.replicas.map((r, j) => `${r.name}${j}`) }));
      const asked: string[] = [];
      const r = await waitApplied(writes, async (shard, replica, seq, waitMs) => {
        expect(seq).toBe(shards[shard].seq);
        expect(waitMs).toBe(1234);
        asked.push(`${shard}/${replica}`);
        const ok = shards[shard].replicas[Number(replica.slice(1))].ok;
        if (ok === 'throws') throw new Error('no reply');
        return ok === 'yes';
      }, 1234);
      const expected = shards.map((s, i) => (s.replicas.length > 0 && s.replicas.every((x) => x.ok === 'yes') ? -1 : i)).filter((i) => i >= 0);
      expect(r).toEqual({ applied: expected.length === 0, unconfirmed: expected });
      // Every replica is asked (they are asked at once, not until the first refusal).
      expect(asked.length).toBe(shards.reduce((n, s) => n + s.replicas.length, 0));
    }));
  });
});

describe('nextConnectionState', () => {
  it('follows disconnect and reconnect events, counting disconnections; other events change nothing', () => {
    const events = fc.array(fc.constantFrom('disconnect', 'reconnect', 'reconnecting', 'update', 'error', 'pingTimer', 'staleConnection'), { maxLength: 30 });
    fc.assert(fc.property(events, (list) => {
      let s: ConnectionState = { connected: true, since: 0, disconnects: 0 };
      let connected = true;
      let disconnects = 0;
      list.forEach((e, t) => {
        const next = nextConnectionState(s, e, t + 1);
        if (e === 'disconnect' && connected) { connected = false; disconnects++; }
        else if (e === 'reconnect') connected = true;
        expect(next.connected).toBe(connected);
        expect(next.disconnects).toBe(disconnects);
        // `since` moves only when the state changes.
        expect(next.since === s.since).toBe(next.connected === s.connected);
        s = next;
      });
    }));
  });
});
