// Whether a process is connected to NATS right now. A connection that lost
// its server is not closed: nats.js reconnects forever (nats-connect.ts), and
// meanwhile the process can neither serve nor apply anything. /healthz reports
// it from the connection's status events.

import { logger } from './log.js';
import type { NatsConnection } from 'nats';

export interface ConnectionState {
  connected: boolean;
  /** When the state last changed (ms since the epoch). */
  since: number;
  /** Disconnections since the process connected. */
  disconnects: number;
}

/** The state after a status event of nats.js (`disconnect`, `reconnect`, others leave it). */
export function nextConnectionState(s: ConnectionState, event: string, now: number): ConnectionState {
  if (event === 'disconnect' && s.connected) return { connected: false, since: now, disconnects: s.disconnects + 1 };
  if (event === 'reconnect' && !s.connected) return { connected: true, since: now, disconnects: s.disconnects };
  return s;
}

/** Follows `nc`'s status; `state()` is current, and closed counts as disconnected. */
export function trackConnection(nc: NatsConnection): { state(): ConnectionState } {
  let s: ConnectionState = { connected: true, since: Date.now(), disconnects: 0 };
  void (async () => {
    for await (const st of nc.status()) {
      s = nextConnectionState(s, st.type, Date.now());
      // Operators need these in the log: a disconnected process serves nothing.
      if (st.type === 'disconnect' || st.type === 'reconnect' || st.type === 'error') logger().warn({ nats: st.type, server: String(st.data ?? '') }, `NATS ${st.type}: ${String(st.data ?? '')}`);
    }
  })();
  return {
    state: () => (nc.isClosed() ? { ...s, connected: false } : s),
  };
}

/** The `nats` part of a /healthz detail. */
export function connectionDetail(nc: NatsConnection, s: ConnectionState): Record<string, unknown> {
  return { connected: s.connected, server: nc.getServer(), since: new Date(s.since).toISOString(), disconnects: s.disconnects };
}
