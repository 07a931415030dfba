// Plain functions behind the cluster's read and write guarantees: the wait for
// a write's replicas (cluster/wait-applied.ts), the NATS connection state
// /healthz reports (cluster/nats-status.ts), and what VdbClient sends.

import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import { waitApplied } from '../cluster/wait-applied.js';
import type { ShardWrite } from '../cluster/wait-applied.js';
import { nextConnectionState } from '../cluster/nats-status.js';
import type { ConnectionState } from '../cluster/nats-status.js';
import { VdbClient } from '../ts/client.js';
import { decode, encode } from '../ts/wire/codec.js';

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

describe('VdbClient session and scroll', () => {
  /** A transport that answers like a coordinator and records what it was sent. */
  function fake(pages: Record<string, unknown>[]) {
    const sent: { subject: string; body: Record<string, unknown> }[] = [];
    let seq = 0;
    const transport = {
      async request(subject: string, data: Uint8Array) {
        const body = decode(data, false) as Record<string, unknown>;
        sent.push({ subject, body });
        const op = subject.split('.').pop();
        let reply: unknown = {};
        if (op === 'upsert' || op === 'delete') reply = { count: 1, seq: ++seq, seqs: { [String(seq % 2)]: seq }, ...(body.wait ? { applied: true } : {}) };
        else if (op === 'count') reply = { count: 7, partial: false };
        else if (op === 'get') reply = { points: [], partial: false };
        else if (op === 'search') reply = { hits: [], partial: false, tookMs: 0 };
        else if (op === 'scroll') reply = pages.shift() ?? { points: [] };
        return { data: encode(reply, false) };
      },
    };
    return { sent, client: new VdbClient(transport) };
  }

  it('sends the sequences of its writes as afterSeqs on every read, and wait on writes', async () => {
    const { sent, client } = fake([]);
    await client.count('c');
    expect(sent[0].body.afterSeqs).toBeUndefined();
    expect((await client.upsert('c', [{ id: 1, vector: [1] }], { wait: true })).applied).toBe(true);
    expect(sent[1].body.wait).toBe(true);
    await client.delete('c', [1]);
    expect(sent[2].body.wait).toBeUndefined();
    expect(await client.count('c', { consistency: 'strong' })).toBe(7);
    await client.get('c', [1]);
    await client.scroll('c', { limit: 5 });
    await client.search('c', [1], { k: 1 });
    for (const s of sent.slice(3)) expect(s.body.afterSeqs, s.subject).toEqual({ 1: 1, 0: 2 });
    expect(sent[3].body.consistency).toBe('strong');
    // Another collection has no session yet.
    await client.count('other');
    expect(sent[sent.length - 1].body.afterSeqs).toBeUndefined();
  });

  it('scrollAll follows next until a page has none', async () => {
    const { sent, client } = fake([
      { points: [{ id: 1 }, { id: 2 }], next: 2 },
      { points: [{ id: 'a' }], next: 'a' },
      { points: [] },
    ]);
    const ids = [];
    for await (const p of client.scrollAll('c', { limit: 2, filter: { x: 1 } })) ids.push(p.id);
    expect(ids).toEqual([1, 2, 'a']);
    expect(sent.map((s) => s.body.after)).toEqual([undefined, 2, 'a']);
    expect(sent.every((s) => s.body.limit === 2 && (s.body.filter as { x: number }).x === 1)).toBe(true);
  });
});
