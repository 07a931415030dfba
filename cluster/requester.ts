// Request–reply to shards over one inbox subscription, with a deadline.
// nats.js's `request` does the same but also races a timeout promise and
// builds an Error for every request (its "cancelled" rejection is made even
// after the reply came); a coordinator sends one request per shard per
// search, so it keeps this small table of pending replies instead.

import { createInbox } from 'nats';
import type { Msg, NatsConnection, Subscription } from 'nats';

/** Why a request got no reply: nobody serves the subject, or the deadline passed. */
export class NoReply extends Error {
  /** nats.js's code for the same failure, so a Requester can serve as VdbClient's transport. */
  readonly code: '503' | 'TIMEOUT';

  constructor(readonly reason: 'no-responders' | 'timeout') {
    super(reason);
    this.code = reason === 'timeout' ? 'TIMEOUT' : '503';
  }
}

interface Pending {
  resolve(m: Msg): void;
  reject(e: NoReply): void;
  timer: NodeJS.Timeout;
}

export class Requester {
  private readonly prefix: string;
  private readonly sub: Subscription;
  private readonly pending = new Map<string, Pending>();
  private next = 0;

  constructor(private readonly nc: NatsConnection) {
    this.prefix = `${createInbox()}.`;
    this.sub = nc.subscribe(`${this.prefix}*`, { callback: (err, m) => { if (!err) this.deliver(m); } });
  }

  request(subject: string, data: Uint8Array, timeoutMs: number): Promise<Msg> {
    const token = (this.next++).toString(36);
    return new Promise<Msg>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(token);
        reject(new NoReply('timeout'));
      }, timeoutMs);
      this.pending.set(token, { resolve, reject, timer });
      this.nc.publish(subject, data, { reply: this.prefix + token });
    });
  }

  private deliver(m: Msg): void {
    const token = m.subject.slice(this.prefix.length);
    const p = this.pending.get(token);
    if (!p) return; // after its deadline
    this.pending.delete(token);
    clearTimeout(p.timer);
    // The server answers a request nobody subscribes to with an empty 503 status message.
    if (m.data.length === 0 && m.headers?.code === 503) p.reject(new NoReply('no-responders'));
    else p.resolve(m);
  }

  close(): void {
    this.sub.unsubscribe();
    for (const p of this.pending.values()) {
      clearTimeout(p.timer);
      p.reject(new NoReply('timeout'));
    }
    this.pending.clear();
  }
}
