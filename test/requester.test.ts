// The coordinator's shard requester against a real nats-server: each reply
// reaches its own request when many are in flight and answered out of order,
// a subject nobody serves fails as no-responders, a silent one at its
// deadline, and close() rejects what is still pending.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from 'nats';
import type { NatsConnection } from 'nats';
import { startNatsServer } from '../cluster/nats-server.js';
import type { RunningNats } from '../cluster/nats-server.js';
import { NoReply, Requester } from '../cluster/requester.js';
import { VdbClient } from '../ts/client.js';
import { ErrorCode } from '../ts/errors.js';

let dir: string;
let server: RunningNats;
let nc: NatsConnection;
let peer: NatsConnection;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'vdb-requester-'));
  server = await startNatsServer({ dir });
  nc = await connect({ servers: server.url });
  peer = await connect({ servers: server.url });
  // Echoes after a delay given in the body, so later requests can be answered first.
  peer.subscribe('echo', { callback: (_e, m) => setTimeout(() => m.respond(m.data), m.data[0]) });
  peer.subscribe('silent', { callback: () => undefined });
  await peer.flush();
});

afterAll(async () => {
  await nc?.close();
  await peer?.close();
  await server?.stop();
  rmSync(dir, { recursive: true, force: true });
});

const noReply = async (p: Promise<unknown>): Promise<string> => {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(NoReply);
    return (e as NoReply).reason;
  }
  throw new Error('expected no reply');
};

describe('Requester', () => {
  it('matches each reply to its request, whatever the order of the answers', async () => {
    const r = new Requester(nc);
    const bodies = Array.from({ length: 50 }, (_, i) => new Uint8Array([(50 - i) % 20, i]));
    const replies = await Promise.all(bodies.map((b) => r.request('echo', b, 5000)));
    expect(replies.map((m) => Array.from(m.data))).toEqual(bodies.map((b) => Array.from(b)));
    r.close();
  });

  it('a subject nobody serves is no-responders, not a timeout', async () => {
    const r = new Requester(nc);
    expect(await noReply(r.request('nobody.here', new Uint8Array([1]), 10_000))).toBe('no-responders');
    r.close();
  });

  it('as VdbClient\'s transport, no-responders is UNAVAILABLE and a timeout TIMEOUT', async () => {
    const r = new Requester(nc);
    const gone = new VdbClient({ request: (s, d, o) => r.request(s, d, o.timeout) }, { prefix: 'nobody', timeoutMs: 200 });
    await expect(gone.count('c')).rejects.toMatchObject({ code: ErrorCode.UNAVAILABLE });
    peer.subscribe('mute.v1.c.count', { callback: () => undefined });
    await peer.flush();
    const mute = new VdbClient({ request: (s, d, o) => r.request(s, d, o.timeout) }, { prefix: 'mute', timeoutMs: 200 });
    await expect(mute.count('c')).rejects.toMatchObject({ code: ErrorCode.TIMEOUT });
    r.close();
  });

  it('a subscriber that never answers is a timeout', async () => {
    const r = new Requester(nc);
    expect(await noReply(r.request('silent', new Uint8Array([1]), 200))).toBe('timeout');
    r.close();
  });

  it('close() rejects pending requests', async () => {
    const r = new Requester(nc);
    const p = r.request('silent', new Uint8Array([1]), 10_000);
    r.close();
    expect(await noReply(p)).toBe('timeout');
  });
});
