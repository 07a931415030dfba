// Copying a replica over request-reply (cluster/snapshot-copy.ts) against a
// real nats-server: the copy opens with the source's sequence, points and
// search results (its graph included) under another name, in several chunks;
// a peer that answers begin with nonsense (or a token that would name a file
// elsewhere), a chunk of the wrong size or a wrong digest is refused with a
// coded error and nothing is imported.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from 'nats';
import type { NatsConnection } from 'nats';
import { startNatsServer } from '../cluster/nats-server.js';
import type { RunningNats } from '../cluster/nats-server.js';
import { CopySource, copyFromPeer } from '../cluster/snapshot-copy.js';
import { handle } from '../cluster/service.js';
import { Collection } from '../ts/collection.js';
import { decode, encode } from '../ts/wire/codec.js';
import { clusteredData, row } from './helpers.js';

const DIM = 24;
const { data, queries } = clusteredData({ n: 3000, queries: 10, dim: DIM, clusters: 12, seed: 41 });

let dir: string;
let server: RunningNats;
let nc: NatsConnection;
let peer: NatsConnection;
let source: Collection;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'vdb-copy-'));
  server = await startNatsServer({ dir: join(dir, 'nats') });
  nc = await connect({ servers: server.url });
  peer = await connect({ servers: server.url });
  source = Collection.open(join(dir, 'source'), { name: 'src', dim: DIM, metric: 'cosine' });
  source.upsert(Array.from({ length: 3000 }, (_, i) => ({ id: i, vector: row(data, DIM, i), payload: { i } })));
  source.delete([1, 2, 3]);
  // Small chunks, so the copy takes many reads, several in flight.
  const copies = new CopySource(join(dir, 'source', 'copies'), 64 * 1024);
  peer.subscribe('copy.good', { callback: (err, m) => handle((body) => copies.handle(source, body))(err, m as never) });
  // A peer whose answers cannot be trusted.
  peer.subscribe('copy.bad-begin', { callback: (_e, m) => m.respond(encode({ token: 't', name: 'src', bytes: 10, seq: 1, sha256: 'x', chunk: 0 }, false)) });
  peer.subscribe('copy.escaping-token', { callback: (_e, m) => m.respond(encode({ token: '../../x', name: 'src', bytes: 10, seq: 1, sha256: 'x', chunk: 4 }, false)) });
  peer.subscribe('copy.short-chunk', {
    callback: (_e, m) => {
      const b = decode(m.data, false) as { op: string };
      if (b.op === 'begin') m.respond(encode({ token: 't', name: 'src', bytes: 100, seq: 1, sha256: 'x', chunk: 64 }, false));
      else if (b.op === 'read') m.respond(encode({ data: new Uint8Array(3) }, false));
      else m.respond(encode({}, false));
    },
  });
  peer.subscribe('copy.wrong-digest', {
    callback: (_e, m) => {
      const b = decode(m.data, false) as { op: string };
      if (b.op === 'begin') m.respond(encode({ token: 't', name: 'src', bytes: 8, seq: 1, sha256: '00', chunk: 64 }, false));
      else if (b.op === 'read') m.respond(encode({ data: new Uint8Array(8) }, false));
      else m.respond(encode({}, false));
    },
  });
  await peer.flush();
});

afterAll(async () => {
  source?.close();
  await nc?.close();
  await peer?.close();
  await server?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('snapshot copy', () => {
  it('copies a collection under another name, answering exactly as the source', async () => {
    const target = join(dir, 'target');
    const r = await copyFromPeer(nc, 'copy.good', target, 'dst');
    expect(r.seq).toBe(2);
    expect(r.bytes).toBeGreaterThan(64 * 1024 * 4);
    const copy = Collection.open(target, { name: 'dst' });
    try {
      expect(copy.appliedSeq).toBe(2);
      expect(copy.count()).toBe(2997);
      expect(copy.get([0, 1, 2999]).map((p) => p.id)).toEqual([0, 2999]);
      for (let q = 0; q < 10; q++) {
        expect(copy.search(row(queries, DIM, q), { k: 10, ef: 16 })).toEqual(source.search(row(queries, DIM, q), { k: 10, ef: 16 }));
      }
    } finally {
      copy.close();
    }
    expect(readdirSync(join(dir, 'source', 'copies')), 'the export is removed at the end').toEqual([]);
  });

  it('refuses a malformed begin, a chunk of the wrong size and a wrong digest, importing nothing', async () => {
    const target = join(dir, 'untouched');
    await expect(copyFromPeer(nc, 'copy.bad-begin', target, 'dst')).rejects.toMatchObject({ code: 'BAD_REQUEST' });
    await expect(copyFromPeer(nc, 'copy.escaping-token', target, 'dst')).rejects.toMatchObject({ code: 'BAD_REQUEST' });
    await expect(copyFromPeer(nc, 'copy.short-chunk', target, 'dst')).rejects.toMatchObject({ code: 'STORAGE' });
    await expect(copyFromPeer(nc, 'copy.wrong-digest', target, 'dst')).rejects.toMatchObject({ code: 'STORAGE' });
    expect(Collection.storedSeq(target, 'dst')).toBe(0);
  });
});
