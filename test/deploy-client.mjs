// The client of test/deploy.test.ts: runs inside the test's network namespace
// (`ip netns exec`), where the vitest process cannot go. One JSON request per
// line on stdin, one JSON answer per line on stdout: {id, ok, result} or
// {id, ok: false, error: {code, message}}. Argument: a JSON map of nats (the
// URLs), creds (a client user's file), internal (the processes' file, for
// looking at the streams only) and tlsCa (the CA of the servers' certificates).

import { createInterface } from 'node:readline';
import { connect } from 'nats';
import { VdbClient } from '../dist/ts/client.js';
import { authOptions, natsServers } from '../dist/cluster/nats-connect.js';

const cfg = JSON.parse(process.argv[2]);
const open = (creds, name) => connect({ servers: natsServers(cfg.nats), name, maxReconnectAttempts: -1, reconnectTimeWait: 250, ...authOptions({ creds, tlsCa: cfg.tlsCa }) });
const nc = await open(cfg.creds, 'deploy-test-client');
const internal = await open(cfg.internal, 'deploy-test-internal');
const client = new VdbClient(nc, { timeoutMs: 5_000 });

const ops = {
  /** What the servers told the internal connection: the NATS cluster's client URLs, and whether JetStream answers. */
  async nats() {
    const jsm = await internal.jetstreamManager();
    await jsm.getAccountInfo();
    return { connectUrls: internal.info?.connect_urls ?? [], cluster: internal.info?.cluster ?? null };
  },
  /** Every write log: its replica count and where its copies are. */
  async streams() {
    const jsm = await internal.jetstreamManager();
    const out = [];
    for await (const s of jsm.streams.list()) out.push({ name: s.config.name, replicas: s.config.num_replicas, leader: s.cluster?.leader ?? null, peers: (s.cluster?.replicas ?? []).map((r) => r.name) });
    return out;
  },
  create: (a) => client.createCollection(a),
  upsert: (a) => client.upsert(a.collection, a.points),
  search: (a) => client.search(a.collection, a.vector, a.opts),
  count: (a) => client.count(a.collection, a.opts),
  get: (a) => client.get(a.collection, a.ids, a.opts),
  status: () => client.status(),
  /** As another user: count, and whether an upsert is allowed (its error code if not). */
  async as(a) {
    const other = await open(a.creds, 'deploy-test-as');
    try {
      const c = new VdbClient(other, { timeoutMs: 5_000 });
      const count = await c.count(a.collection, { consistency: 'strong' });
      const upsert = await c.upsert(a.collection, a.points).then(() => 'ok', (e) => e.code);
      return { count, upsert };
    } finally {
      await other.close();
    }
  },
};

const rl = createInterface({ input: process.stdin });
for await (const line of rl) {
  const req = JSON.parse(line);
  const t0 = Date.now();
  let answer;
  try {
    answer = { id: req.id, ok: true, result: await ops[req.op](req.args ?? {}), ms: Date.now() - t0 };
  } catch (e) {
    answer = { id: req.id, ok: false, error: { code: e.code ?? 'ERROR', message: e.message }, ms: Date.now() - t0 };
  }
  process.stdout.write(JSON.stringify(answer) + '\n');
}
await nc.close();
await internal.close();
