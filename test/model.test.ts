// Model-based test of the cluster (every acknowledged write is
// applied). fast-check generates random sequences of commands — create,
// upsert, delete, get, exact search (with or without a label filter), count,
// scroll, drop, and SIGKILL / restart of a shard process — runs them through a
// real cluster (a private nats-server, 3 shard processes, a coordinator) and
// compares every answer with the in-memory model of test/vdb-model.ts.
// Collections have 1–3 shards, 2 replicas, any metric and any placement (hash,
// spatial, semantic). Writes include invalid ones (NaN, ±Infinity, wrong
// length, zero vector on cosine, oversized or too deep payloads, bad ids) that
// must be refused with their documented code and change nothing. After every
// write, every live replica must apply the whole log and hold the model's
// count. On a failure fast-check shrinks to a minimal sequence and prints it
// with the processes' last lines. docs/chaos.md describes it.
//
// One cluster serves every run; each run creates its own collection names and
// drops them at its end. `npm test` runs a few sequences; a long run:
//   VDB_MODEL_RUNS=200 npx vitest run test/model.test.ts
// VDB_MODEL_SEED=<seed> replays a run (the seed is printed on a failure);
// VDB_MODEL_MINUTES bounds the time fast-check takes, shrinking included;
// VDB_MODEL_SHRINK=0 stops at the first failure.

import { afterAll, beforeAll, describe, it } from 'vitest';
import fc from 'fast-check';
import { decode, encode } from '../ts/wire/codec.js';
import { names } from '../cluster/subjects.js';
import { float32FromBytes } from '../ts/validate.js';
import type { PointId } from '../ts/validate.js';
import { TestCluster, sleep, waitFor } from './cluster-helpers.js';
import {
  Model, applyDelete, applyUpsert, checkGet, checkScroll, checkSearch, upsertFaults, PAYLOAD_LIMIT,
} from './vdb-model.js';
import type { Kind, Metric, ModelCollection, Schema, SeenPoint, SentPoint } from './vdb-model.js';

const RUNS = Number(process.env.VDB_MODEL_RUNS ?? 20);
const SEED = process.env.VDB_MODEL_SEED === undefined ? Math.floor(Math.random() * 2 ** 31) : Number(process.env.VDB_MODEL_SEED);
const MAX_COMMANDS = 40;
/** fast-check stops after this long (reporting the smallest failing sequence so far, if any). */
const TIME_LIMIT_MS = process.env.VDB_MODEL_MINUTES ? Number(process.env.VDB_MODEL_MINUTES) * 60_000 : Math.max(240_000, RUNS * 45_000);
const MAX_DIM = 8;
const PROCESSES = ['shard-0', 'shard-1', 'shard-2'];
const REPLICAS = 2;
const n = names();

let cl: TestCluster;
let runs = 0;
const stats = { runs: 0, commands: 0, failures: 0, partials: 0, byKind: new Map<string, number>() };

// ---- Talking to the cluster: raw requests, so invalid bodies reach the server as sent.

type Reply = { ok: Record<string, unknown> } | { error: { code: string; message: string } };

async function call(subject: string, body: unknown): Promise<Reply> {
  const m = await cl.request(subject, encode(body, false), { timeout: 20_000 });
  const r = decode(m.data, false) as Record<string, unknown> & { error?: { code: string; message: string } };
  return r.error ? { error: r.error } : { ok: r };
}

/** Points as read: MessagePack replies carry vectors as little-endian float32 binaries. */
function vectorsOf(points: unknown): SeenPoint[] {
  return (points as SeenPoint[]).map((p) => (p.vector instanceof Uint8Array ? { ...p, vector: float32FromBytes(p.vector) } : p));
}

class Failure extends Error {
  constructor(what: string) {
    super(`${what}\n${cl.logs()}`);
  }
}

async function ok(subject: string, body: unknown): Promise<Record<string, unknown>> {
  const r = await call(subject, body);
  if ('error' in r) throw new Failure(`${subject}: unexpected ${r.error.code}: ${r.error.message}`);
  return r.ok;
}

/**
 * A read that must be complete. A partial answer (a shard with no replica
 * serving yet, e.g. just after a create or a restart on a loaded machine) is
 * honest, not wrong: it is asked again, for up to 30 s, and counted.
 */
async function complete(subject: string, body: unknown): Promise<Record<string, unknown>> {
  const until = Date.now() + 30_000;
  for (;;) {
    const reply = await ok(subject, body);
    if (!reply.partial) return reply;
    stats.partials++;
    if (Date.now() > until) throw new Failure(`${subject}: still partial after 30 s, missing ${short(reply.missing)}`);
    await sleep(200);
  }
}

async function refused(subject: string, body: unknown, codes: Set<string>): Promise<void> {
  const r = await call(subject, body);
  if (!('error' in r)) throw new Failure(`${subject}: acknowledged ${JSON.stringify(r.ok)}, expected a refusal with ${[...codes].join(' or ')}`);
  if (!codes.has(r.error.code)) throw new Failure(`${subject}: refused with ${r.error.code} (${r.error.message}), expected ${[...codes].join(' or ')}`);
}

/** The run's handle on the cluster: the collections it made (the model says which processes are down). */
class Real {
  readonly made: string[] = [];
  private next = 0;
  constructor(readonly run: number) {}

  newName(): string {
    const name = `m${this.run}-${this.next++}`;
    this.made.push(name);
    return name;
  }

  /** Restarts what the run killed and drops what it made, so the next run starts clean. */
  async cleanup(m: Model): Promise<void> {
    for (const p of m.down) cl.startShard(p);
    if (m.down.size) await cl.waitMembers([...m.down], 60_000);
    m.down.clear();
    // Best effort: a failed run has already reported its failure.
    for (const c of this.made) await call(n.admin('collections.drop'), { name: c });
  }
}

/**
 * Waits until every live replica of every shard of `c` has applied its whole
 * log, then checks that the replicas of a shard hold the same number of points
 * and that the shards together hold the model's. This is the issue's property:
 * a write the API acknowledged is applied on every replica.
 */
async function settle(m: Model, c: ModelCollection): Promise<void> {
  const name = c.schema.name;
  const shards = ((await ok(n.admin('describe'), { name })).shardMap as { replicas: string[][] }).replicas.length;
  let total = 0;
  for (let s = 0; s < shards; s++) {
    const last = (await cl.nc.jetstreamManager().then((jsm) => jsm.streams.info(n.stream(name, s)))).state.last_seq;
    let seen: unknown;
    // The map is read on every look: the balancer may move a replica meanwhile
    // (a moved-away replica stops serving the shard; its target joins).
    const views = await waitFor(`every live replica of ${name}/${s} at log sequence ${last}`, async () => {
      const map = ((await ok(n.admin('describe'), { name })).shardMap as { replicas: string[][] }).replicas;
      const live = map[s].filter((p) => !m.down.has(p));
      const answers = await Promise.all(live.map(async (p) => {
        const reply = await call(n.replica(name, s, p, 'count'), {}).catch((e: Error) => ({ error: { code: 'NO_ANSWER', message: e.message } }));
        return 'ok' in reply ? { member: p, ...(reply.ok as { count: number; seq: number }) } : { member: p, ...reply.error };
      }));
      seen = answers;
      return answers.every((v) => 'seq' in v && v.seq >= last) ? answers as { member: string; count: number }[] : undefined;
    }, 30_000, 100, () => `last answers: ${JSON.stringify(seen)}\n${cl.logs()}`);
    const counts = views.map((v) => v.count);
    if (counts.some((x) => x !== counts[0])) throw new Failure(`${name}/${s}: replicas ${views.map((v) => v.member).join(', ')} at sequence ${last} hold ${counts.join(', ')} points`);
    total += counts[0] ?? 0;
  }
  if (total !== c.points.size) throw new Failure(`${name}: the shards' replicas hold ${total} points, the model ${c.points.size}`);
}

// ---- Commands. Each names its collection by a slot (modulo the live ones) and
// carries vectors of MAX_DIM components, cut to the collection's dim when run.

type Cmd = fc.AsyncCommand<Model, Real>;
const count = (kind: string) => {
  stats.commands++;
  stats.byKind.set(kind, (stats.byKind.get(kind) ?? 0) + 1);
};
const short = (x: unknown) => {
  const s = JSON.stringify(x, (_, v: unknown) => (typeof v === 'number' && !Number.isFinite(v) ? String(v) : v)) ?? 'undefined';
  return s.length > 160 ? `${s.slice(0, 160)}…(${s.length} chars)` : s;
};

interface CreateSpec { metric: Metric; kind: Kind; shards: number; dim: number; sample: number[][] }

class Create implements Cmd {
  constructor(readonly spec: CreateSpec) {}
  check(m: Readonly<Model>) { return m.collections.length < 3; }
  async run(m: Model, r: Real) {
    count('create');
    const { metric, kind, shards, dim } = this.spec;
    const schema: Schema = { name: r.newName(), dim, metric, kind, shards, replicas: REPLICAS };
    const partitioner: Record<string, unknown> = { kind, shards };
    if (kind === 'spatial') partitioner.sample = this.spec.sample.map((v) => v.slice(0, dim));
    if (kind === 'semantic') partitioner.field = 'label';
    await ok(n.admin('collections.create'), { name: schema.name, dim, metric, partitioner, replicas: REPLICAS });
    m.create(schema);
  }
  toString() { return `create(${short(this.spec)})`; }
}

class Drop implements Cmd {
  constructor(readonly slot: number) {}
  check(m: Readonly<Model>) { return m.collections.length > 0; }
  async run(m: Model) {
    count('drop');
    const name = m.pick(this.slot).schema.name;
    await ok(n.admin('collections.drop'), { name });
    m.drop(name);
    // Coordinators forget the collection through a KV watch, a moment later.
    await waitFor(`${name} gone`, async () => {
      const reply = await call(n.api(name, 'count'), {});
      return 'error' in reply && reply.error.code === 'COLLECTION_NOT_FOUND' ? true : undefined;
    }, 15_000);
  }
  toString() { return `drop(#${this.slot})`; }
}

interface UpsertSpec { points: SentPoint[]; fault: Fault; at: number }

class Upsert implements Cmd {
  constructor(readonly slot: number, readonly spec: UpsertSpec) {}
  check(m: Readonly<Model>) { return m.collections.length > 0; }
  async run(m: Model) {
    count(this.spec.fault === 'none' ? 'upsert' : `upsert:${this.spec.fault}`);
    const c = m.pick(this.slot);
    const points = withFault(this.spec, c.schema.dim, c.schema.metric);
    const subject = n.api(c.schema.name, 'upsert');
    const faults = upsertFaults(c, points);
    if (faults.size) await refused(subject, { points }, faults);
    else {
      const reply = await ok(subject, { points });
      if (reply.count !== points.length) throw new Failure(`upsert: count ${String(reply.count)}, sent ${points.length}`);
      applyUpsert(c, points);
    }
    await settle(m, c);
  }
  toString() { return `upsert(#${this.slot}, fault=${this.spec.fault}@${this.spec.at}, ${short(this.spec.points)})`; }
}

class Delete implements Cmd {
  constructor(readonly slot: number, readonly ids: PointId[]) {}
  check(m: Readonly<Model>) { return m.collections.length > 0; }
  async run(m: Model) {
    count('delete');
    const c = m.pick(this.slot);
    const reply = await ok(n.api(c.schema.name, 'delete'), { ids: this.ids });
    if (reply.count !== this.ids.length) throw new Failure(`delete: count ${String(reply.count)}, sent ${this.ids.length}`);
    applyDelete(c, this.ids);
    await settle(m, c);
  }
  toString() { return `delete(#${this.slot}, ${short(this.ids)})`; }
}

class Get implements Cmd {
  constructor(readonly slot: number, readonly ids: PointId[]) {}
  check(m: Readonly<Model>) { return m.collections.length > 0; }
  async run(m: Model) {
    count('get');
    const c = m.pick(this.slot);
    // Ask for the model's ids too, so a point the cluster lost is noticed.
    const ids = [...this.ids, ...[...c.points.keys()].slice(0, 20)];
    const reply = await complete(n.api(c.schema.name, 'get'), { ids, withVector: true, consistency: 'strong' });
    const why = checkGet(c, ids, vectorsOf(reply.points));
    if (why) throw new Failure(`get ${c.schema.name} ${short(ids)}: ${why}`);
  }
  toString() { return `get(#${this.slot}, ${short(this.ids)})`; }
}

class Count implements Cmd {
  constructor(readonly slot: number) {}
  check(m: Readonly<Model>) { return m.collections.length > 0; }
  async run(m: Model) {
    count('count');
    const c = m.pick(this.slot);
    const reply = await complete(n.api(c.schema.name, 'count'), { consistency: 'strong' });
    if (reply.count !== c.points.size) throw new Failure(`count ${c.schema.name}: ${short(reply)}, the model has ${c.points.size}`);
  }
  toString() { return `count(#${this.slot})`; }
}

type Label = 'a' | 'b' | 'c' | 7;

class Search implements Cmd {
  constructor(readonly slot: number, readonly query: number[], readonly k: number, readonly label?: Label) {}
  check(m: Readonly<Model>) { return m.collections.length > 0; }
  async run(m: Model) {
    count(this.label === undefined ? 'search' : 'search:filter');
    const c = m.pick(this.slot);
    let vector = this.query.slice(0, c.schema.dim);
    // A zero query has no cosine; that refusal is not what this command tests.
    if (c.schema.metric === 'cosine' && Float32Array.from(vector).every((x) => x === 0)) vector = vector.map((_, i) => (i === 0 ? 1 : 0));
    const body: Record<string, unknown> = { vector, k: this.k, exact: true, consistency: 'strong' };
    // An equality filter on the label: a semantic collection asks only the label's shards.
    let among = c;
    if (this.label !== undefined) {
      body.filter = { label: this.label };
      among = { schema: c.schema, points: new Map([...c.points].filter(([, p]) => p.payload?.label === this.label)) };
    }
    const reply = await complete(n.api(c.schema.name, 'search'), body);
    const why = checkSearch(among, vector, this.k, reply.hits as { id: PointId; score: number }[]);
    if (why) throw new Failure(`search ${c.schema.name} ${short(body)}: ${why}\nhits: ${short(reply.hits)}`);
  }
  toString() { return `search(#${this.slot}, ${short(this.query)}, k=${this.k}${this.label === undefined ? '' : `, label=${JSON.stringify(this.label)}`})`; }
}

class Scroll implements Cmd {
  constructor(readonly slot: number, readonly limit: number) {}
  check(m: Readonly<Model>) { return m.collections.length > 0; }
  async run(m: Model) {
    count('scroll');
    const c = m.pick(this.slot);
    const got: SeenPoint[] = [];
    let after: PointId | undefined;
    for (let page = 0; ; page++) {
      if (page > c.points.size + 1) throw new Failure(`scroll ${c.schema.name}: more than ${page} pages of ${this.limit} for ${c.points.size} points`);
      const reply = await ok(n.api(c.schema.name, 'scroll'), { after, limit: this.limit, withVector: true, withPayload: true, consistency: 'strong' });
      const points = vectorsOf(reply.points);
      if (points.length > this.limit) throw new Failure(`scroll ${c.schema.name}: ${points.length} points in a page of ${this.limit}`);
      got.push(...points);
      if (reply.next === undefined || reply.next === null) break;
      after = reply.next as PointId;
    }
    const why = checkScroll(c, got);
    if (why) throw new Failure(`scroll ${c.schema.name} limit=${this.limit}: ${why}`);
  }
  toString() { return `scroll(#${this.slot}, limit=${this.limit})`; }
}

class Kill implements Cmd {
  constructor(readonly which: number) {}
  // Never more than replicas − 1 processes down: every shard keeps a live replica.
  check(m: Readonly<Model>) { return m.down.size < REPLICAS - 1; }
  async run(m: Model) {
    count('kill');
    const p = PROCESSES[this.which];
    await cl.kill(p, 'SIGKILL');
    m.down.add(p);
  }
  toString() { return `kill(${PROCESSES[this.which]})`; }
}

class Restart implements Cmd {
  check(m: Readonly<Model>) { return m.down.size > 0; }
  async run(m: Model) {
    count('restart');
    const [p] = m.down;
    cl.startShard(p);
    await cl.waitMembers([p], 60_000);
    m.down.delete(p);
    // The restarted replica replays its log: reads must agree with the model again.
    for (const c of m.collections) await settle(m, c);
  }
  toString() { return 'restart()'; }
}

// ---- Generators: reaching past friendly inputs.

const FAULTS = ['nan', 'inf', 'overflow', 'long', 'short', 'zero', 'bigPayload', 'deepPayload', 'arrayPayload', 'emptyId', 'longId', 'floatId'] as const;
type Fault = 'none' | (typeof FAULTS)[number];

function deep(levels: number): Record<string, unknown> {
  let x: Record<string, unknown> = { leaf: 1 };
  for (let i = 1; i < levels; i++) x = { d: x };
  return x;
}

/** The batch to send: the points cut to `dim`, with the spec's fault put into point `at`. */
function withFault(spec: UpsertSpec, dim: number, metric: Metric): SentPoint[] {
  const points = spec.points.map((p) => ({ ...p, vector: p.vector.slice(0, dim) }));
  const p = points[spec.at % points.length];
  switch (spec.fault) {
    case 'none': break;
    case 'nan': p.vector[dim - 1] = NaN; break;
    case 'inf': p.vector[0] = -Infinity; break;
    case 'overflow': p.vector[0] = 1e39; break; // finite as a double, Infinity as float32
    case 'long': p.vector.push(1); break;
    case 'short': p.vector.pop(); break;
    case 'zero': p.vector = p.vector.map(() => 0); break;
    case 'bigPayload': p.payload = { big: 'x'.repeat(PAYLOAD_LIMIT) }; break;
    case 'deepPayload': p.payload = deep(70); break;
    case 'arrayPayload': p.payload = [1, 2]; break;
    case 'emptyId': p.id = ''; break;
    case 'longId': p.id = 'é'.repeat(257); break; // 514 UTF-8 bytes
    case 'floatId': p.id = 1.5; break;
  }
  return points;
}

const utf8 = (s: string) => Buffer.byteLength(s, 'utf8');
const idArb: fc.Arbitrary<PointId> = fc.oneof(
  { weight: 6, arbitrary: fc.integer({ min: 0, max: 11 }) },
  { weight: 4, arbitrary: fc.constantFrom('a', 'b', '0', '1', 'ü') },
  { weight: 1, arbitrary: fc.constantFrom(Number.MAX_SAFE_INTEGER, -Number.MAX_SAFE_INTEGER, -1) },
  { weight: 2, arbitrary: fc.string({ unit: 'grapheme', minLength: 1, maxLength: 12 }).filter((s) => utf8(s) <= 512) },
  // At the limit of 512 UTF-8 bytes, in 1-, 2- and 4-byte characters.
  { weight: 1, arbitrary: fc.constantFrom('x'.repeat(512), 'é'.repeat(256), '𝄞'.repeat(128)) },
);

const vectorArb: fc.Arbitrary<number[]> = fc.oneof(
  // Small integers: exact scores, many ties, sometimes the zero vector.
  fc.array(fc.integer({ min: -2, max: 2 }), { minLength: MAX_DIM, maxLength: MAX_DIM }),
  fc.tuple(fc.array(fc.double({ min: -1, max: 1, noNaN: true }), { minLength: MAX_DIM, maxLength: MAX_DIM }), fc.constantFrom(1e-3, 1, 1e3, 1e5))
    .map(([v, scale]) => v.map((x) => x * scale)),
);

const payloadArb = fc.option(
  fc.record({
    label: fc.option(fc.constantFrom<Label>('a', 'b', 'c', 7), { nil: undefined }),
    rest: fc.dictionary(fc.string({ maxLength: 6 }).filter((k) => k !== 'label'), fc.jsonValue({ maxDepth: 3 }), { maxKeys: 3 }),
  }, { requiredKeys: ['rest'] }).map(({ label, rest }) => (label === undefined ? rest : { ...rest, label })),
  { nil: undefined, freq: 3 },
);

const pointArb: fc.Arbitrary<SentPoint> = fc.record({ id: idArb, vector: vectorArb, payload: payloadArb }, { requiredKeys: ['id', 'vector'] });
const slot = fc.nat({ max: 5 });
const ids = fc.array(idArb, { minLength: 0, maxLength: 6 });

const createArb = fc.record({
  metric: fc.constantFrom<Metric>('l2', 'ip', 'cosine'),
  kind: fc.constantFrom<Kind>('hash', 'spatial', 'semantic'),
  shards: fc.integer({ min: 1, max: 3 }),
  dim: fc.integer({ min: 1, max: MAX_DIM }),
  // Spatial placement needs a sample of at least `shards` vectors; none of them zero (cosine).
  sample: fc.array(fc.array(fc.double({ min: 0.1, max: 10, noNaN: true }), { minLength: MAX_DIM, maxLength: MAX_DIM }), { minLength: 3, maxLength: 6 }),
}).map((s) => new Create(s));

const upsertArb = fc.tuple(slot, fc.record({
  points: fc.array(pointArb, { minLength: 1, maxLength: 8 }),
  fault: fc.oneof({ weight: 4, arbitrary: fc.constant<Fault>('none') }, { weight: 1, arbitrary: fc.constantFrom<Fault>(...FAULTS) }),
  at: fc.nat({ max: 7 }),
})).map(([s, spec]) => new Upsert(s, spec));

// fc.commands picks uniformly among these: writes are listed several times to weigh more.
const commandArbs: fc.Arbitrary<Cmd>[] = [
  createArb,
  upsertArb,
  upsertArb,
  upsertArb,
  upsertArb,
  fc.tuple(slot, ids).map(([s, i]) => new Delete(s, i)),
  fc.tuple(slot, ids).map(([s, i]) => new Delete(s, i)),
  fc.tuple(slot, ids).map(([s, i]) => new Get(s, i)),
  fc.tuple(slot, vectorArb, fc.integer({ min: 1, max: 12 })).map(([s, q, k]) => new Search(s, q, k)),
  fc.tuple(slot, vectorArb, fc.integer({ min: 1, max: 12 }), fc.constantFrom<Label>('a', 'b', 'c', 7)).map(([s, q, k, l]) => new Search(s, q, k, l)),
  slot.map((s) => new Count(s)),
  slot.map((s) => new Drop(s)),
  fc.nat({ max: PROCESSES.length - 1 }).map((w) => new Kill(w)),
  fc.constant(new Restart()),
  fc.tuple(slot, fc.integer({ min: 1, max: 5 })).map(([s, l]) => new Scroll(s, l)),
];

describe('model-based: the cluster against an in-memory model', () => {
  beforeAll(async () => {
    cl = await TestCluster.start({ shards: PROCESSES.length, clientTimeoutMs: 20_000 });
  }, 120_000);

  afterAll(async () => {
    await cl?.stop();
    console.log(`model test: ${stats.runs} runs (${stats.failures} failing, shrinking included), ${stats.partials} partial reads asked again, ${stats.commands} commands: ${[...stats.byKind].map(([k, v]) => `${k} ${v}`).join(', ')}`);
  });

  it(`${RUNS} random command sequences agree with the model`, async () => {
    // Every sequence starts with a create, so the commands after it have a collection to work on.
    await fc.assert(fc.asyncProperty(createArb, fc.commands(commandArbs, { maxCommands: MAX_COMMANDS, size: 'max' }), async (first, rest) => {
      const cmds = [first, ...rest];
      const real = new Real(runs++);
      const model = new Model();
      stats.runs++;
      try {
        await fc.asyncModelRun(() => ({ model, real }), cmds);
      } catch (e) {
        // The cluster's own view at the failure: members, shard maps, replica lag.
        const status = await call(n.admin('status'), {}).catch((err: Error) => ({ error: err.message }));
        (e as Error).message += `\nstatus: ${JSON.stringify('ok' in status ? { members: status.ok.members, collections: status.ok.collections } : status)}`;
        // Shrinking may outlast the test: the first failure is shown at once.
        if (stats.failures++ === 0) console.error(`model test: first failure (VDB_MODEL_SEED=${SEED}), before shrinking: ${cmds.map(String).join(', ')}\n${(e as Error).message}`);
        throw e;
      } finally {
        await real.cleanup(model);
      }
    }), { numRuns: RUNS, seed: SEED, endOnFailure: process.env.VDB_MODEL_SHRINK === '0', interruptAfterTimeLimit: TIME_LIMIT_MS, markInterruptAsFailure: false });
  }, TIME_LIMIT_MS + 120_000);
});
