// A KV watch that outlives its consumer. nats.js ends a watch with an error
// when its ordered consumer cannot be recreated (JetStream without a quorum
// while NATS nodes restart); a process that watched once would then never see
// another heartbeat or shard map. `keepWatching` opens the watch again, and
// `restart` lets a caller that knows the watch is stale (its own heartbeats do
// not come back) force it.
import type { JetStreamManager, KV, KvEntry } from 'nats';
import { logger } from './log.js';

/** Pause between a watch ending and the next one. */
const RETRY_MS = 500;

export interface KeptWatch {
  /** Resolves once the first watch has delivered what the bucket held. */
  readonly ready: Promise<void>;
  /** When the watch last delivered an entry (ms since the epoch). */
  readonly lastDelivery: number;
  /** Ends the current watch; the next one delivers every current value again. */
  restart(why: string): void;
  stop(): void;
}

/**
 * Delivers every change of `kv` to `entry`, reopening the watch whenever it
 * ends. A reopened watch delivers the bucket's current values again; once it
 * has, `resync` gets the keys it delivered, so the caller forgets keys deleted
 * while no watch was open.
 */
export function keepWatching(kv: KV, bucket: string, entry: (e: KvEntry) => void, resync: (present: Set<string>) => void): KeptWatch {
  let stopped = false;
  let restarting = false;
  let current: { stop(): void } | undefined;
  let ready: () => void = () => undefined;
  const first = new Promise<void>((resolve) => { ready = resolve; });
  const state = { lastDelivery: Date.now() };
  void (async () => {
    for (let round = 0; !stopped; round++) {
      try {
        const present = new Set<string>();
        let initialized = false;
        // Called once the watch has queued what the bucket holds; the loop
        // below takes the queued entries before the next macrotask.
        const initializedFn = () => setImmediate(() => {
          initialized = true;
          if (round > 0) resync(present);
          ready();
        });
        const w = await kv.watch({ initializedFn });
        current = w;
        if (stopped) w.stop();
        for await (const e of w) {
          state.lastDelivery = Date.now();
          if (!initialized) present.add(e.key);
          // One entry that cannot be read (not JSON, written by hand) is
          // skipped: reopening would deliver it again, and stall every later one.
          try {
            entry(e);
          } catch (err) {
            logger().warn({ bucket, key: e.key }, `${bucket}: entry ${e.key} skipped: ${(err as Error).message}`);
          }
        }
        if (!stopped && !restarting) logger().warn({ bucket }, `the watch of ${bucket} ended; watching it again`);
        restarting = false;
      } catch (e) {
        if (!stopped) logger().warn({ bucket }, `the watch of ${bucket} failed: ${(e as Error).message}; watching it again`);
      }
      if (!stopped) await new Promise((r) => setTimeout(r, RETRY_MS));
    }
  })();
  return {
    ready: first,
    get lastDelivery() {
      return state.lastDelivery;
    },
    restart(why: string) {
      logger().warn({ bucket }, `the watch of ${bucket} is stale (${why}); watching it again`);
      state.lastDelivery = Date.now();
      restarting = true;
      current?.stop();
    },
    stop() {
      stopped = true;
      current?.stop();
    },
  };
}

/**
 * The keys of KV bucket `bucket`, from its stream's subjects (one request,
 * which times out like any other): nats.js's own listing reads through a
 * consumer and waits forever if that consumer never delivers (seen while NATS
 * nodes were still forming their cluster); a process that applies topology
 * changes one at a time must not wait behind it. Deleted keys are listed too
 * (their delete markers): reading one gives no value.
 */
export async function listKeys(jsm: JetStreamManager, bucket: string): Promise<Set<string>> {
  const prefix = `$KV.${bucket}.`;
  const info = await jsm.streams.info(`KV_${bucket}`, { subjects_filter: `${prefix}>` });
  return new Set(Object.keys(info.state.subjects ?? {}).map((s) => s.slice(prefix.length)));
}
