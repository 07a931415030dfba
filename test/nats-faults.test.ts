// Faults of NATS itself, with real processes (2 shard processes, a
// coordinator, a collection of 2 shards × 2 replicas) under continuous writes
// and reads:
//  - the single nats-server is killed (-9) and restarted on its port with its
//    JetStream directory;
//  - in a 3-node NATS cluster (log streams and KV buckets R3, every process
//    given all three URLs) the node leading a write log is killed (-9).
// Requests during the fault may fail, but only with coded errors; afterwards
// writes are acknowledged and reads complete again, every acknowledged write is
// there (get, count, exact search), and every replica has applied its whole
// log. Fails (never skips) without nats-server or dist/.

import { afterEach, describe, expect, it } from 'vitest';
import { ErrorCode, VdbError } from '../ts/errors.js';
import { names } from '../cluster/subjects.js';
import { mulberry32 } from './helpers.js';
import { TestCluster, sleep, waitFor } from './cluster-helpers.js';

const DIM = 8;
const COLL = 'nf';
const SHARDS = 2;
const BATCH = 10;
/** Pause between writes: a rate the replicas apply as fast as it comes on a small machine, so reads need not wait. */
const WRITE_PAUSE_MS = 20;
/** Consecutive successes that show the cluster has recovered. */
const STREAK = 20;
/** What a request may fail with while NATS is down or electing. */
const FAULT_CODES: string[] = [ErrorCode.UNAVAILABLE, ErrorCode.TIMEOUT, ErrorCode.SHARD_UNAVAILABLE];
const n = names();

/** A point's vector, a function of its id: what get and search must give back. */
function vectorOf(id: number): Float32Array {
  const rand = mulberry32(id + 1);
  return Float32Array.from({ length: DIM }, () => rand());
}

/** One writer (batches of new ids) and one reader (exact search for an acknowledged point), until stop(). */
class Load {
  readonly acked = new Set<number>();
  /** Failed requests by error code (UNCODED: the error was not a VdbError). */
  readonly failures = new Map<string, number>();
  /** Complete reads whose top hit was not the point searched for. */
  readonly wrong: string[] = [];
  writes = 0;
  reads = 0;
  partialReads = 0;
  writeStreak = 0;
  readStreak = 0;
  private nextId = 0;
  private running = true;
  private readonly loops: Promise<void>[];
  private readonly rand = mulberry32(7);

  constructor(private readonly cl: TestCluster) {
    this.loops = [this.writer(), this.reader()];
  }

  get attempted(): number {
    return this.nextId;
  }

  private fail(e: unknown): void {
    const key = e instanceof VdbError ? e.code : `UNCODED: ${(e as Error).message}`;
    this.failures.set(key, (this.failures.get(key) ?? 0) + 1);
  }

  private async writer(): Promise<void> {
    while (this.running) {
      const ids = Array.from({ length: BATCH }, () => this.nextId++);
      try {
        await this.cl.client.upsert(COLL, ids.map((id) => ({ id, vector: vectorOf(id) })));
        for (const id of ids) this.acked.add(id);
        this.writes++;
        this.writeStreak++;
        await sleep(WRITE_PAUSE_MS);
      } catch (e) {
        this.fail(e);
        this.writeStreak = 0;
        await sleep(50);
      }
    }
  }

  private async reader(): Promise<void> {
    while (this.running) {
      const known = [...this.acked];
      if (known.length === 0) {
        await sleep(20);
        continue;
      }
      const id = known[Math.floor(this.rand() * known.length)];
      try {
        const r = await this.cl.client.search(COLL, vectorOf(id), { k: 1, exact: true });
        if (r.partial) {
          this.partialReads++;
          this.readStreak = 0;
        } else {
          if (r.hits[0]?.id !== id) this.wrong.push(`searched ${id}, got ${JSON.stringify(r.hits)}`);
          this.reads++;
          this.readStreak++;
        }
      } catch (e) {
        this.fail(e);
        this.readStreak = 0;
        await sleep(50);
      }
    }
  }

  /** Streaks count from now: what follows a fault. */
  resetStreaks(): void {
    this.writeStreak = 0;
    this.readStreak = 0;
  }

  async stop(): Promise<void> {
    this.running = false;
    await Promise.all(this.loops);
  }

  summary(): string {
    return `${this.writes} writes and ${this.reads} complete reads acknowledged, ${this.partialReads} partial reads, failures ${JSON.stringify(Object.fromEntries(this.failures))}`;
  }
}

/** Per shard process, per shard it serves: the applied log sequence and the point count, from its /metrics. */
async function replicaStates(cl: TestCluster): Promise<{ member: string; shard: number; applied: number; points: number }[]> {
  const st = await cl.client.status();
  const members = (st.members as { name: string; role: string; metricsPort?: number }[]).filter((m) => m.role === 'shard');
  const out: { member: string; shard: number; applied: number; points: number }[] = [];
  for (const m of members) {
    const text = await (await fetch(`http://127.0.0.1:${m.metricsPort}/metrics`)).text();
    const value = (metric: string, shard: number) => {
      const line = text.split('\n').find((l) => l.startsWith(`${metric}{collection="${COLL}",shard="${shard}"}`));
      return line === undefined ? undefined : Number(line.split(' ').pop());
    };
    for (let s = 0; s < SHARDS; s++) {
      const applied = value('vdb_shard_applied_seq', s);
      if (applied !== undefined) out.push({ member: m.name, shard: s, applied, points: value('vdb_shard_points', s)! });
    }
  }
  return out;
}

async function startWithCollection(natsNodes?: number): Promise<TestCluster> {
  const cl = await TestCluster.start({ shards: 2, natsNodes, clientTimeoutMs: 5_000 });
  await cl.client.createCollection({ name: COLL, dim: DIM, metric: 'l2', replicas: 2, partitioner: { kind: 'hash', shards: SHARDS } });
  await cl.waitCount(COLL, 0);
  return cl;
}

/** Waits until writes are acknowledged and reads complete again: STREAK of each in a row since the fault. */
async function waitRecovered(cl: TestCluster, load: Load): Promise<void> {
  await waitFor(`${STREAK} acknowledged writes and ${STREAK} complete reads in a row`, async () => {
    cl.checkRunning();
    return load.writeStreak >= STREAK && load.readStreak >= STREAK ? true : undefined;
  }, 40_000, 100, () => `${load.summary()}\n${cl.logs()}`);
}

/** Everything acknowledged is there, on every replica, and the faults surfaced only as coded errors. */
async function checkNothingLost(cl: TestCluster, load: Load): Promise<void> {
  expect([...load.failures.keys()].filter((code) => !FAULT_CODES.includes(code)), load.summary()).toEqual([]);
  expect(load.wrong).toEqual([]);

  // Every replica follows its log again and applies it to the end.
  const jsm = await cl.nc.jetstreamManager();
  const lastSeq = await Promise.all(Array.from({ length: SHARDS }, async (_, s) => (await jsm.streams.info(n.stream(COLL, s))).state.last_seq));
  let states: Awaited<ReturnType<typeof replicaStates>> = [];
  await waitFor('every replica to apply its whole log', async () => {
    states = await replicaStates(cl);
    return states.length === SHARDS * 2 && states.every((r) => r.applied === lastSeq[r.shard]) ? true : undefined;
  }, 30_000, 200, () => `logs at ${JSON.stringify(lastSeq)}, replicas ${JSON.stringify(states)}\n${cl.logs()}`);
  for (let s = 0; s < SHARDS; s++) {
    const counts = states.filter((r) => r.shard === s).map((r) => r.points);
    expect(counts[0], `shard ${s}: both replicas hold the same points`).toBe(counts[1]);
  }

  // A write whose acknowledgement was lost may be stored too: the count is at least the acknowledged points.
  const count = await cl.rawCount(COLL);
  expect(count.partial).toBe(false);
  expect(count.count).toBeGreaterThanOrEqual(load.acked.size);
  expect(count.count).toBeLessThanOrEqual(load.attempted);

  const ids = [...load.acked].sort((a, b) => a - b);
  for (let i = 0; i < ids.length; i += 500) {
    const part = ids.slice(i, i + 500);
    const got = await cl.client.get(COLL, part, { withVector: true });
    const found = new Map(got.points.map((p) => [p.id, p]));
    const lost = part.filter((id) => !found.has(id));
    expect(lost, 'acknowledged points that get does not return').toEqual([]);
    for (const id of part) expect(Array.from(found.get(id)!.vector as Float32Array)).toEqual(Array.from(vectorOf(id)));
  }
  for (const id of ids.filter((_, i) => i % Math.max(1, Math.floor(ids.length / 20)) === 0)) {
    const r = await cl.client.search(COLL, vectorOf(id), { k: 1, exact: true, consistency: 'strong' });
    expect(r.partial).toBe(false);
    expect(r.hits[0]?.id).toBe(id);
  }
}

let cl: TestCluster | undefined;
let load: Load | undefined;

afterEach(async () => {
  await load?.stop();
  await cl?.stop();
  load = undefined;
  cl = undefined;
});

describe('NATS faults', () => {
  it('a nats-server killed and restarted (same port, same JetStream directory) loses no acknowledged write', async () => {
    cl = await startWithCollection();
    load = new Load(cl);
    await waitFor('500 acknowledged points', async () => (load!.acked.size >= 500 ? true : undefined), 30_000);
    const before = load.acked.size;

    await cl.restartNats(500);
    load.resetStreaks();
    await waitRecovered(cl, load);
    await load.stop();

    expect(load.acked.size).toBeGreaterThan(before);
    console.log(`nats-server restart: ${load.summary()}`);
    await checkNothingLost(cl, load);
  }, 90_000);

  it('a 3-node NATS cluster keeps serving when the node leading a write log is killed, and loses no acknowledged write', async () => {
    cl = await startWithCollection(3);
    const jsm = await cl.nc.jetstreamManager();
    const log0 = await jsm.streams.info(n.stream(COLL, 0));
    expect(log0.config.num_replicas).toBe(3);
    expect((await jsm.streams.info(`KV_${n.bucket('shardmap')}`)).config.num_replicas).toBe(3);
    expect(cl.natsUrl.split(',')).toHaveLength(3);

    load = new Load(cl);
    await waitFor('500 acknowledged points', async () => (load!.acked.size >= 500 ? true : undefined), 30_000);
    const before = load.acked.size;

    const leader = log0.cluster?.leader;
    const victim = cl.natsCluster!.nodes.find((node) => node.name === leader);
    expect(victim, `the leader of ${n.stream(COLL, 0)} (${leader}) is one of the nodes`).toBeDefined();
    await victim!.kill();
    load.resetStreaks();
    await waitRecovered(cl, load);
    await load.stop();

    expect(load.acked.size).toBeGreaterThan(before);
    const after = await jsm.streams.info(n.stream(COLL, 0));
    expect(after.cluster?.leader).not.toBe(leader);
    console.log(`NATS node ${leader} killed: ${load.summary()}`);
    await checkNothingLost(cl, load);
  }, 90_000);
});
