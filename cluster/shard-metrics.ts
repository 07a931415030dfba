// The metrics of a shard process about the replicas it serves, labelled by
// collection and shard, sampled when /metrics is scraped.

import { statSync } from 'node:fs';
import type { JetStreamManager } from 'nats';
import type { Registry } from './metrics.js';
import type { ServedShard } from './replica.js';
import type { Limits } from './capacity.js';

/** A replica's lag in seconds: the age of the log entry it is applying while
 * more wait behind it (`pendingSince`, the entry's time in the log, ms), as a
 * database replica's "seconds behind" is; 0 once none waits. It grows while a
 * stuck replica receives nothing. */
export function lagSeconds(pendingSince: number | undefined, now: number): number {
  return pendingSince === undefined ? 0 : Math.max(0, (now - pendingSince) / 1000);
}

export interface ShardMetricsSource {
  served: () => Iterable<ServedShard>;
  limits: Limits;
  /** Points the replica can still take (0 when its store cannot be read). */
  room: (sh: ServedShard) => number;
  /** The SQLite file the replicas share. */
  sqliteFile: string;
  /** The stream a replica follows, to read its first and last sequence; none while JetStream is not reachable yet. */
  stream: (sh: ServedShard) => string;
  jsm: () => JetStreamManager | undefined;
  /** Snapshot copies this process is sending to peers, and receiving from them. */
  copies: () => { serving: number; receiving: number };
}

/** How long a scrape waits for one log's sequences. */
const STREAM_INFO_MS = 2000;

function fileBytes(path: string): number {
  try {
    return statSync(path).size;
  } catch {
    return 0;
  }
}

export function shardMetrics(registry: Registry, src: ShardMetricsSource): void {
  const labels = ['collection', 'shard'];
  const g = (name: string, help: string) => registry.gauge(name, help, { labels });
  const points = g('vdb_shard_points', 'Points stored in the replica');
  const applied = g('vdb_shard_applied_seq', 'Last write-log sequence the replica applied');
  const lag = g('vdb_shard_lag_entries', 'Write-log entries not yet applied by the replica, as of the last delivery');
  const lagSecs = g('vdb_shard_lag_seconds', 'Age of the log entry the replica is applying while more wait (0 when caught up)');
  const first = g('vdb_shard_log_first_seq', 'First sequence still held in the write log the replica follows (earlier ones are compacted)');
  const last = g('vdb_shard_log_last_seq', 'Last sequence of the write log the replica follows');
  const memory = g('vdb_shard_wasm_memory_bytes', 'Wasm memory held by the replica\'s index');
  const memoryLimit = g('vdb_shard_wasm_memory_limit_bytes', 'Wasm memory an index may hold in this process (--max-index-mb)');
  const skipped = g('vdb_shard_skipped_entries', 'Write-log entries the replica refused and skipped (recorded in its store)');
  const failed = g('vdb_shard_failed', '1 when the replica stopped applying its log (a storage fault), else 0');
  const room = g('vdb_shard_room_points', 'Points the replica can still take under this process\'s limits');
  const sqlite = registry.gauge('vdb_shard_sqlite_bytes', 'Bytes of the process\'s SQLite file with its write-ahead log');
  const copies = registry.gauge('vdb_shard_copies_in_flight', 'Snapshot copies under way, by direction (serving: to a peer; receiving: from one)', { labels: ['direction'] });

  registry.onCollect(async () => {
    for (const m of [points, applied, lag, lagSecs, first, last, memory, memoryLimit, skipped, failed, room]) m.reset();
    const now = Date.now();
    const jsm = src.jsm();
    const infos: Promise<void>[] = [];
    for (const sh of src.served()) {
      const l = { collection: sh.collection, shard: sh.shard };
      const st = sh.stats();
      points.set(l, st.points);
      applied.set(l, sh.applied);
      lag.set(l, sh.pending);
      lagSecs.set(l, lagSeconds(sh.pendingSince, now));
      memory.set(l, st.indexBytes);
      memoryLimit.set(l, src.limits.maxIndexBytes);
      skipped.set(l, st.skipped);
      failed.set(l, sh.failed ? 1 : 0);
      room.set(l, src.room(sh));
      if (jsm) {
        let timer: ReturnType<typeof setTimeout> | undefined;
        const late = new Promise<undefined>((ok) => { timer = setTimeout(() => ok(undefined), STREAM_INFO_MS); });
        infos.push(Promise.race([jsm.streams.info(src.stream(sh)), late]).then((i) => {
          if (!i) return;
          first.set(l, i.state.first_seq);
          last.set(l, i.state.last_seq);
        }, () => undefined).finally(() => clearTimeout(timer)));
      }
    }
    await Promise.all(infos);
    sqlite.set(fileBytes(src.sqliteFile) + fileBytes(`${src.sqliteFile}-wal`));
    const c = src.copies();
    copies.set({ direction: 'serving' }, c.serving);
    copies.set({ direction: 'receiving' }, c.receiving);
  });
}
