// The coordinator acknowledges exactly the writes a replica will apply: a
// property test over generated upsert bodies (every metric; vectors zero, tiny,
// huge, NaN, ±Inf, of the wrong length, as arrays or binaries; ids and payloads
// at and past every limit) sent through the wire codecs. Each body is checked
// by the coordinator's validator, and, separately, written straight into an
// embedded Collection: both must accept, or both refuse with the same code. An
// accepted body then travels as the coordinator's log entry (encoded, decoded)
// and must apply on a replica's Collection.

import { afterAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Collection } from '../ts/collection.js';
import type { Point } from '../ts/collection.js';
import type { Metric } from '../ts/core/wasm-index.js';
import { VdbError } from '../ts/errors.js';
import { LIMITS } from '../ts/validate.js';
import { decode, encode, float32Bytes } from '../ts/wire/codec.js';
import { validateUpsert } from '../ts/wire/messages.js';

const dir = mkdtempSync(join(tmpdir(), 'vdb-one-validation-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const METRICS: Metric[] = ['l2', 'ip', 'cosine'];
const DIM = 4;

// Components that sit at the edges of float32: zero and its sign, subnormals,
// values that round to ±Inf in float32, the largest finite, NaN and infinities.
const component = fc.oneof(
  { weight: 30, arbitrary: fc.double({ min: -10, max: 10, noNaN: true }) },
  { weight: 3, arbitrary: fc.constantFrom(0, -0, 1e-45, -1.4e-45, 1e-40, 1e-38, 3.4e38, -3.4e38, 3.5e38, 1e39, 1e300) },
  { weight: 1, arbitrary: fc.constantFrom(Number.NaN, Infinity, -Infinity) },
);

const numbers = fc.oneof(
  { weight: 12, arbitrary: fc.array(component, { minLength: DIM, maxLength: DIM }) },
  { weight: 2, arbitrary: fc.array(fc.constantFrom(0, -0), { minLength: DIM, maxLength: DIM }) },
  { weight: 2, arbitrary: fc.array(fc.constantFrom(1e-45, -1e-45, 0), { minLength: DIM, maxLength: DIM }) },
  { weight: 2, arbitrary: fc.array(component, { minLength: 0, maxLength: DIM + 2 }) },
);

const vector = fc.oneof(
  { weight: 6, arbitrary: numbers },
  // A binary of little-endian float32, as other languages' clients send it (some lengths not a multiple of 4).
  { weight: 3, arbitrary: numbers.map((v) => float32Bytes(Float32Array.from(v))) },
  { weight: 1, arbitrary: fc.uint8Array({ minLength: 0, maxLength: DIM * 4 + 3 }) },
  { weight: 1, arbitrary: fc.constantFrom<unknown>(null, 'vector', 7, [1, 'x', 3, 4], { 0: 1 }) },
);

// Ids of every kind, at and past the 512-byte limit (multi-byte characters at the edge too).
const id = fc.oneof(
  { weight: 4, arbitrary: fc.integer() },
  { weight: 1, arbitrary: fc.constantFrom<unknown>(Number.MAX_SAFE_INTEGER, -Number.MAX_SAFE_INTEGER, 2 ** 53, 1.5, -0, Number.NaN, '', null, true, [1]) },
  { weight: 4, arbitrary: fc.string({ minLength: 1, maxLength: 12 }) },
  { weight: 1, arbitrary: fc.constantFrom('a'.repeat(LIMITS.idBytes), 'a'.repeat(LIMITS.idBytes + 1), 'é'.repeat(LIMITS.idBytes / 2), 'é'.repeat(LIMITS.idBytes / 2) + 'a') },
);

// Payloads: JSON-ish values, sizes either side of 64 KiB, depth either side of 64, values JSON cannot keep.
const nested = (depth: number): unknown => {
  let v: unknown = 1;
  for (let i = 0; i < depth; i++) v = { a: v };
  return v;
};
const payload = fc.oneof(
  { weight: 10, arbitrary: fc.dictionary(fc.string({ maxLength: 6 }), fc.jsonValue({ maxDepth: 3 }), { maxKeys: 4 }) },
  { weight: 2, arbitrary: fc.constantFrom<unknown>(undefined, null, [], 'x', 3) },
  {
    weight: 2,
    arbitrary: fc.integer({ min: -8, max: 8 }).map((d) => ({ s: 'x'.repeat(LIMITS.payloadBytes - 8 + d) })),
  },
  { weight: 1, arbitrary: fc.constantFrom(63, 64, 65).map((d) => nested(d)) },
  { weight: 1, arbitrary: fc.constantFrom<unknown>({ x: Number.NaN }, { x: Infinity }, { b: new Uint8Array([1, 2]) }, { d: -0 }, { big: 2 ** 60 }) },
);

const point = fc.record({ id, vector, payload }, { requiredKeys: ['id', 'vector'] });
const body = fc.record({ points: fc.array(point, { minLength: 1, maxLength: 3 }) });

let n = 0;
function fresh(metric: Metric): Collection {
  return Collection.open(dir, { name: `c${n++}`, dim: DIM, metric, hnsw: { m: 8, efConstruction: 16 } });
}

/** The code an operation throws, or 'ok'. */
function outcome(f: () => unknown): string {
  try {
    f();
    return 'ok';
  } catch (e) {
    if (e instanceof VdbError) return e.code;
    throw e;
  }
}

describe('one validation: the coordinator accepts exactly what a Collection accepts', () => {
  it.each(METRICS)('%s: same decision and code for generated writes, and every accepted write applies from the log', (metric) => {
    fc.assert(
      fc.property(body, fc.boolean(), (raw, json) => {
        let wire: unknown;
        try {
          wire = decode(encode(raw, json), json);
        } catch {
          return; // not expressible in this encoding (NaN in JSON, say): no request to check
        }
        const schema = { dim: DIM, metric };
        let accepted: ReturnType<typeof validateUpsert> | undefined;
        const coordinator = outcome(() => { accepted = validateUpsert(wire, schema); });

        const direct = fresh(metric);
        try {
          const local = outcome(() => direct.upsert((wire as { points: Point[] }).points));
          expect(local, JSON.stringify(raw, (_, v: unknown) => (typeof v === 'number' && !Number.isFinite(v) ? String(v) : v))).toBe(coordinator);
        } finally {
          direct.close();
        }
        if (!accepted) return;

        // As the coordinator appends it and a replica reads it back from the log.
        const points = [...new Map(accepted.points.map((p) => [p.id, p])).values()];
        const entry = decode(encode({ op: 'upsert', points: points.map((p) => ({ id: p.id, vector: float32Bytes(p.vector), payload: p.payload })) }, false), false) as { points: Point[] };
        const replica = fresh(metric);
        try {
          replica.applyLog([{ seq: 1, op: 'upsert', points: entry.points }]);
          expect(replica.appliedSeq).toBe(1);
          expect(replica.count()).toBe(points.length);
          for (const p of points) {
            const [got] = replica.get([p.id]);
            expect(got?.id).toBe(p.id);
            expect(got.payload ?? null).toEqual(p.payload ?? null);
          }
        } finally {
          replica.close();
        }
      }),
      { numRuns: 300 },
    );
  });

  it('a zero vector on a cosine collection is refused before it is acknowledged, with the code the collection uses', () => {
    const zero = { points: [{ id: 1, vector: [0, 0, 0, 0] }] };
    expect(outcome(() => validateUpsert(zero, { dim: DIM, metric: 'cosine' }))).toBe('INVALID_VECTOR');
    expect(outcome(() => validateUpsert(zero, { dim: DIM, metric: 'l2' }))).toBe('ok');
    const c = fresh('cosine');
    try {
      expect(outcome(() => c.upsert(zero.points))).toBe('INVALID_VECTOR');
    } finally {
      c.close();
    }
  });
});
