// Which replica of a shard answers a read, and what happens when one does not:
// the coordinator's replica choice, failover and hedging, as plain functions
// over a `send` that asks one replica (so a unit test can play the replicas).

import { ErrorCode, isRequestError } from '../ts/errors.js';
import type { VdbError } from '../ts/errors.js';
import { errorFromBody } from '../ts/wire/messages.js';
import type { Member } from './meta.js';

/** Pause before asking a shard's replicas again when none could answer (starting, or failing over). */
export const RETRY_PAUSE_MS = 50;

/**
 * The replicas of a shard to ask, in order: those in the map with a live lease
 * that do not report the shard failed (all listed ones if there are none),
 * those whose heartbeat shows `minSeq` applied first, rotated by `turn` among
 * equals to spread the load. `anyLive`: whether any listed replica has a live
 * lease (one that failed fast may be starting or failing over).
 */
export function replicaOrder(listed: string[], key: string, live: Map<string, Member>, minSeq: number | undefined, turn: number): { order: string[]; anyLive: boolean } {
  // A replica that stopped applying its log (a storage fault) serves nothing.
  const up = listed.filter((r) => live.has(r) && !live.get(r)!.failed?.[key]);
  const pool = up.length ? up : listed;
  const start = turn % Math.max(1, pool.length);
  const order = pool.slice(start).concat(pool.slice(0, start));
  if (minSeq === undefined) return { order, anyLive: up.length > 0 };
  const ready = (r: string) => (live.get(r)?.shards?.[key] ?? -1) >= minSeq;
  return { order: order.filter(ready).concat(order.filter((r) => !ready(r))), anyLive: up.length > 0 };
}

/** Asks one replica; resolves with its decoded reply (an error body included),
 * rejects when it cannot be reached in time (no responders, timeout). */
export type Send = (member: string, body: Record<string, unknown>, timeoutMs: number) => Promise<Record<string, unknown>>;

export interface AskOptions {
  deadlineMs: number;
  /** With a sequence to wait for, each request carries `minSeq` and its share of the deadline as `waitMs`. */
  minSeq?: number;
  /** Told of a replica's error answer that sends the request on to the next replica (not LAGGING or TIMEOUT). */
  onReplicaError?: (member: string, err: VdbError) => void;
  /** Called when another replica is asked while one has not answered yet (a hedge). */
  onHedge?: () => void;
}

/**
 * Asks the replicas in `order` until one answers within the deadline. The next
 * replica is asked at once when one cannot be reached (it is gone, or not
 * serving yet) or answers any error but one about the request itself
 * (`isRequestError`: every replica would say the same, so it is the answer),
 * and also, hedging, each time a quarter of the deadline passes without an
 * answer (it is frozen or slow); the first answer wins. When every replica has
 * failed that way and one holds a live lease, they are tried again after a
 * pause until the deadline; otherwise, or then, the shard is missing.
 */
export function askReplicas(order: string[], anyLive: boolean, body: Record<string, unknown>, send: Send, opts: AskOptions): Promise<{ body?: Record<string, unknown>; missing?: true }> {
  const { deadlineMs, minSeq } = opts;
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    let next = 0;
    let inFlight = 0;
    let done = false;
    let pause: NodeJS.Timeout | undefined;
    const finish = (f: () => void) => {
      if (done) return;
      done = true;
      clearInterval(hedge);
      clearTimeout(pause);
      f();
    };
    const missing = () => finish(() => resolve({ missing: true }));
    const launch = () => {
      const left = deadlineMs - (performance.now() - t0);
      if (done) return;
      if (left < 1 || order.length === 0) {
        if (inFlight === 0) missing();
        return;
      }
      if (next >= order.length) {
        if (inFlight === 0 && !anyLive) missing();
        else if (inFlight === 0 && !pause) {
          pause = setTimeout(() => { pause = undefined; next = 0; launch(); }, Math.min(RETRY_PAUSE_MS, left));
        }
        return;
      }
      const member = order[next++];
      const req = minSeq === undefined ? body : { ...body, minSeq, waitMs: Math.max(0, Math.floor(left) - 50) };
      inFlight++;
      send(member, req, Math.ceil(left)).then((reply) => {
        inFlight--;
        const err = errorFromBody(reply);
        if (!err) finish(() => resolve({ body: reply }));
        else if (isRequestError(err.code)) finish(() => reject(err));
        else {
          if (err.code !== ErrorCode.LAGGING && err.code !== ErrorCode.TIMEOUT) opts.onReplicaError?.(member, err);
          launch();
        }
      }, () => {
        inFlight--;
        launch();
      });
    };
    const hedge = setInterval(() => {
      if (!done && inFlight > 0 && next < order.length) opts.onHedge?.();
      launch();
    }, deadlineMs / 4);
    launch();
  });
}
