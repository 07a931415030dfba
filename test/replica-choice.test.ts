// The coordinator's replica choice and failover (cluster/replica-choice.ts),
// with the replicas played by a `send` function: an error a replica answers
// about itself sends the request on to the next replica; an error about the
// request is the answer; an unreachable or silent replica is passed over.

import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { askReplicas, replicaOrder } from '../cluster/replica-choice.js';
import type { Send } from '../cluster/replica-choice.js';
import type { Member } from '../cluster/meta.js';
import { ErrorCode, isRequestError } from '../ts/errors.js';

const member = (name: string, extra: Partial<Member> = {}): Member => ({ name, role: 'shard', pid: 1, heartbeat: Date.now(), ...extra });
const error = (code: string) => ({ error: { code, message: `${code} from a replica` } });

/** Replicas that answer from a script: a reply body, 'unreachable', or 'silent' (never answers). */
function replicas(script: Record<string, Record<string, unknown> | 'unreachable' | 'silent'>): { send: Send; asked: string[] } {
  const asked: string[] = [];
  const send: Send = (m) => {
    asked.push(m);
    const a = script[m];
    if (a === 'unreachable') return Promise.reject(new Error('503 no responders'));
    if (a === 'silent') return new Promise(() => undefined);
    return Promise.resolve(a);
  };
  return { send, asked };
}

const SELF_ERRORS = [ErrorCode.INTERNAL, ErrorCode.STORAGE, ErrorCode.UNAVAILABLE, ErrorCode.SHARD_UNAVAILABLE, ErrorCode.LAGGING, ErrorCode.CLOSED, ErrorCode.OUT_OF_MEMORY, ErrorCode.CORRUPT_INDEX, ErrorCode.COLLECTION_NOT_FOUND, 'SOME_NEWER_CODE'];
const REQUEST_ERRORS = [ErrorCode.INVALID_FILTER, ErrorCode.DIMENSION_MISMATCH, ErrorCode.INVALID_K, ErrorCode.BAD_REQUEST, ErrorCode.INVALID_VECTOR];

describe('askReplicas: failover', () => {
  it('any error a replica answers about itself sends the request to the next replica, and is reported unless it is LAGGING', async () => {
    for (const code of SELF_ERRORS) {
      const { send, asked } = replicas({ a: error(code), b: { hits: [1] } });
      const reported: string[] = [];
      const r = await askReplicas(['a', 'b'], true, {}, send, { deadlineMs: 2000, onReplicaError: (m, e) => reported.push(`${m} ${e.code}`) });
      expect(r.body, code).toEqual({ hits: [1] });
      expect(asked).toEqual(['a', 'b']);
      expect(reported).toEqual(code === ErrorCode.LAGGING ? [] : [`a ${code}`]);
    }
  });

  it('an error about the request is the answer: no other replica is asked', async () => {
    for (const code of REQUEST_ERRORS) {
      const { send, asked } = replicas({ a: error(code), b: { hits: [1] } });
      await expect(askReplicas(['a', 'b'], true, {}, send, { deadlineMs: 2000 })).rejects.toMatchObject({ code });
      expect(asked).toEqual(['a']);
    }
  });

  it('an unreachable replica is passed over at once; a silent one after a quarter of the deadline (hedging)', async () => {
    let hedges = 0;
    const onHedge = () => hedges++;
    let { send, asked } = replicas({ a: 'unreachable', b: { ok: 1 } });
    expect((await askReplicas(['a', 'b'], true, {}, send, { deadlineMs: 2000, onHedge })).body).toEqual({ ok: 1 });
    expect(asked).toEqual(['a', 'b']);
    expect(hedges).toBe(0); // a failover, not a hedge (the metric vdb_coordinator_hedged_total counts hedges)
    ({ send, asked } = replicas({ a: 'silent', b: { ok: 2 } }));
    expect((await askReplicas(['a', 'b'], true, {}, send, { deadlineMs: 400, onHedge })).body).toEqual({ ok: 2 });
    expect(asked).toEqual(['a', 'b']);
    expect(hedges).toBe(1);
  });

  it('a shard whose replicas all fail is missing: at once with no live lease, at the deadline with one', async () => {
    const { send } = replicas({ a: error(ErrorCode.INTERNAL), b: 'unreachable' });
    expect(await askReplicas(['a', 'b'], false, {}, send, { deadlineMs: 2000 })).toEqual({ missing: true });
    const again = replicas({ a: error(ErrorCode.UNAVAILABLE) });
    expect(await askReplicas(['a'], true, {}, again.send, { deadlineMs: 300 })).toEqual({ missing: true });
    expect(again.asked.length, 'retried while a lease is live').toBeGreaterThan(1);
    expect(await askReplicas([], false, {}, send, { deadlineMs: 300 })).toEqual({ missing: true });
  });

  it('carries minSeq and its share of the deadline as waitMs', async () => {
    const bodies: Record<string, unknown>[] = [];
    const send: Send = async (_m, b) => { bodies.push(b); return { ok: true }; };
    await askReplicas(['a'], true, { k: 1 }, send, { deadlineMs: 2000, minSeq: 7 });
    expect(bodies[0]).toMatchObject({ k: 1, minSeq: 7 });
    expect(bodies[0].waitMs as number).toBeGreaterThan(1500);
    expect(bodies[0].waitMs as number).toBeLessThan(2000);
  });

  it('for any script of answers, the result is the first success or request error in order, else missing', async () => {
    const answer = fc.oneof(
      fc.constant<'ok'>('ok'),
      fc.constantFrom(...SELF_ERRORS, ...REQUEST_ERRORS),
      fc.constant<'unreachable'>('unreachable'),
    );
    await fc.assert(fc.asyncProperty(fc.array(answer, { minLength: 1, maxLength: 5 }), async (answers) => {
      const names = answers.map((_, i) => `r${i}`);
      const script = Object.fromEntries(answers.map((a, i) => [names[i], a === 'ok' ? { from: names[i] } : a === 'unreachable' ? a : error(a)])) as Parameters<typeof replicas>[0];
      const { send } = replicas(script);
      const first = answers.findIndex((a) => a === 'ok' || (a !== 'unreachable' && isRequestError(a)));
      const r = askReplicas(names, false, {}, send, { deadlineMs: 2000 });
      if (first < 0) expect(await r).toEqual({ missing: true });
      else if (answers[first] === 'ok') expect((await r).body).toEqual({ from: names[first] });
      else await expect(r).rejects.toMatchObject({ code: answers[first] });
    }), { numRuns: 200 });
  });
});

describe('replicaOrder', () => {
  it('leaves out replicas without a live lease and those that report the shard failed; ready ones first', () => {
    const live = new Map([
      ['a', member('a', { shards: { 'c/0': 5 } })],
      ['b', member('b', { shards: { 'c/0': 9 } })],
      ['d', member('d', { shards: { 'c/0': 9 }, failed: { 'c/0': 'SQLITE_FULL' } })],
    ]);
    expect(replicaOrder(['a', 'b', 'd', 'gone'], 'c/0', live, undefined, 0).order).toEqual(['a', 'b']);
    expect(replicaOrder(['a', 'b', 'd', 'gone'], 'c/0', live, undefined, 1).order).toEqual(['b', 'a']);
    expect(replicaOrder(['a', 'b'], 'c/0', live, 8, 0).order).toEqual(['b', 'a']);
    // None usable: every listed replica is tried, and none counts as live.
    expect(replicaOrder(['d', 'gone'], 'c/0', live, undefined, 0)).toEqual({ order: ['d', 'gone'], anyLive: false });
  });
});
