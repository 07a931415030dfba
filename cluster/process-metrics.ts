// Metrics every cluster process serves besides Node's own: its NATS
// connection, and (for a process with a data directory) its disk.

import { statfsSync } from 'node:fs';
import type { Registry } from './metrics.js';
import type { ConnectionState } from './nats-status.js';

/** `vdb_nats_connected` and `vdb_nats_disconnects_total` from the connection's state. */
export function natsMetrics(registry: Registry, state: () => ConnectionState): void {
  const connected = registry.gauge('vdb_nats_connected', '1 while the process is connected to NATS, 0 while it is cut off and reconnecting');
  const disconnects = registry.counter('vdb_nats_disconnects_total', 'Times the process lost its NATS connection');
  let counted = 0;
  registry.onCollect(() => {
    const s = state();
    connected.set(s.connected ? 1 : 0);
    disconnects.inc(s.disconnects - counted);
    counted = s.disconnects;
  });
}

/** `vdb_disk_free_bytes` and `vdb_disk_size_bytes` of the filesystem holding
 * `dir`, and `vdb_disk_min_free_bytes`: below it the process takes no upserts. */
export function diskMetrics(registry: Registry, dir: string, minFreeBytes: number): void {
  registry.gauge('vdb_disk_min_free_bytes', 'Free disk below which the process refuses upserts (--min-free-disk-mb)').set(minFreeBytes);
  const free = registry.gauge('vdb_disk_free_bytes', 'Bytes free (to this user) on the filesystem of the data directory');
  const size = registry.gauge('vdb_disk_size_bytes', 'Size in bytes of the filesystem of the data directory');
  registry.onCollect(() => {
    try {
      const s = statfsSync(dir);
      free.set(s.bavail * s.bsize);
      size.set(s.blocks * s.bsize);
    } catch {
      free.reset();
      size.reset();
    }
  });
}
