// The internal search request (coordinator → shard) and the shard's reply:
// every validated public request survives the trip through MessagePack with
// the same fields and a bit-identical vector, replies give back the same hits,
// and malformed bodies are refused with a coded error (BAD_REQUEST on the
// shard, INTERNAL on the coordinator), never anything else.

import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { ErrorCode, VdbError } from '../ts/errors.js';
import { decode, encode } from '../ts/wire/codec.js';
import { validateSearch } from '../ts/wire/messages.js';
import type { Hit } from '../ts/collection.js';
import { checkShardRequest, checkShardWait, readShardReply, shardReplyBody, shardSearchBody, DEFAULT_WAIT_MS, MAX_WAIT_MS } from '../cluster/shard-requests.js';
import { expectVdbError } from './helpers.js';

const runs = (numRuns: number) => ({ seed: 20250301, numRuns });
const wire = (body: unknown) => decode(encode(body, false), false);

const publicSearch = fc.record({
  vector: fc.array(fc.float({ noNaN: true, noDefaultInfinity: true }), { minLength: 1, maxLength: 40 }),
  k: fc.integer({ min: 1, max: 100 }),
  ef: fc.option(fc.integer({ min: 100, max: 500 }), { nil: undefined }),
  filter: fc.option(fc.constant({ color: 'red' }), { nil: undefined }),
  exact: fc.option(fc.boolean(), { nil: undefined }),
  withPayload: fc.option(fc.boolean(), { nil: undefined }),
});

const hit = fc.record({
  id: fc.oneof(fc.integer(), fc.string({ minLength: 1, maxLength: 8 })),
  score: fc.double({ noNaN: true }),
  payload: fc.option(fc.dictionary(fc.string({ maxLength: 4 }), fc.oneof(fc.integer(), fc.string())), { nil: undefined }),
}).map((h) => {
  const out: Hit = { id: h.id, score: Object.is(h.score, -0) ? 0 : h.score };
  if (h.payload) out.payload = h.payload;
  return out;
});

describe('internal search request', () => {
  it('a validated public request arrives with the same fields and a bit-identical vector', () => {
    fc.assert(fc.property(publicSearch, fc.option(fc.nat(), { nil: undefined }), fc.integer({ min: 0, max: MAX_WAIT_MS }), (body, minSeq, waitMs) => {
      const req = validateSearch({ ...body, vector: Float32Array.from(body.vector) });
      const got = checkShardRequest(wire(shardSearchBody(req, minSeq, waitMs)));
      expect(Uint8Array.from(got.vector)).toEqual(new Uint8Array(req.vector.buffer, req.vector.byteOffset, req.vector.byteLength));
      expect(got.k).toBe(req.k);
      expect(got.ef).toBe(req.ef);
      expect(got.filter).toEqual(req.filter);
      expect(got.exact).toBe(req.exact);
      expect(got.withPayload).toBe(req.withPayload);
      expect(got.minSeq).toBe(minSeq);
      expect(got.waitMs).toBe(waitMs);
    }), runs(200));
  });

  it('waitMs defaults when absent', () => {
    expect(checkShardRequest({ vector: new Uint8Array(4), k: 1 }).waitMs).toBe(DEFAULT_WAIT_MS);
  });

  it('each malformed field is BAD_REQUEST naming the field', () => {
    const ok = { vector: new Uint8Array(8), k: 3 };
    const cases: [unknown, string][] = [
      [[1, 2], 'body'],
      [{ ...ok, vector: [1, 2] }, 'vector'],
      [{ ...ok, k: 1.5 }, 'k'],
      [{ ...ok, k: '3' }, 'k'],
      [{ ...ok, ef: -1 }, 'ef'],
      [{ ...ok, exact: 'yes' }, 'exact'],
      [{ ...ok, withPayload: 1 }, 'withPayload'],
      [{ ...ok, minSeq: -2 }, 'minSeq'],
      [{ ...ok, waitMs: MAX_WAIT_MS + 1 }, 'waitMs'],
    ];
    for (const [body, field] of cases) expect(expectVdbError(() => checkShardRequest(body), ErrorCode.BAD_REQUEST).message).toContain(field);
  });

  it('arbitrary bodies give a request or BAD_REQUEST, nothing else', () => {
    fc.assert(fc.property(fc.anything(), fc.dictionary(fc.constantFrom('vector', 'k', 'ef', 'exact', 'withPayload', 'minSeq', 'waitMs', 'filter'), fc.anything()), (x, fields) => {
      for (const body of [x, fields, { vector: new Uint8Array(4), k: 1, ...fields }]) {
        try {
          checkShardRequest(body);
        } catch (e) {
          expect(e).toBeInstanceOf(VdbError);
          expect((e as VdbError).code).toBe(ErrorCode.BAD_REQUEST);
        }
      }
    }), runs(300));
  });
});

describe('shard reply', () => {
  it('hits survive the trip, with the sequence and the search time', () => {
    fc.assert(fc.property(fc.array(hit, { maxLength: 20 }), fc.boolean(), fc.nat(), fc.double({ min: 0, max: 1e6, noNaN: true }), (hits, withPayload, seq, searchMs) => {
      const got = readShardReply(wire(shardReplyBody({ hits, seq, searchMs }, withPayload)));
      expect(got.seq).toBe(seq);
      expect(got.searchMs).toBe(searchMs);
      expect(got.hits).toEqual(hits.map((h) => (withPayload || !h.payload ? h : { id: h.id, score: h.score })));
    }), runs(200));
  });

  it('a malformed reply is INTERNAL', () => {
    const ok = { ids: [1, 2], scores: [0.5, 0.7], seq: 3, searchMs: 0.3 };
    expect(readShardReply(ok).hits).toEqual([{ id: 1, score: 0.5 }, { id: 2, score: 0.7 }]);
    for (const body of [
      null, [], { ...ok, ids: [1] }, { ...ok, scores: 'x' }, { ...ok, ids: [1, 1.5] }, { ...ok, scores: [0.5, '0.7'] },
      { ...ok, seq: -1 }, { ...ok, searchMs: undefined }, { ...ok, payloads: [null] }, { ...ok, payloads: [null, 3] },
    ]) {
      expectVdbError(() => readShardReply(body), ErrorCode.INTERNAL);
    }
  });
});

describe('internal get, count and scroll: minSeq and waitMs', () => {
  it('absent: no sequence, the default wait; present: as sent', () => {
    expect(checkShardWait(wire({ ids: [1] }), 'get')).toEqual({ waitMs: DEFAULT_WAIT_MS });
    expect(checkShardWait(wire({ minSeq: 12, waitMs: 0 }), 'count')).toEqual({ minSeq: 12, waitMs: 0 });
    expect(checkShardWait(wire({ minSeq: null, waitMs: MAX_WAIT_MS }), 'scroll')).toEqual({ waitMs: MAX_WAIT_MS });
  });

  it('anything else is BAD_REQUEST naming the operation and field', () => {
    fc.assert(fc.property(fc.anything(), fc.constantFrom('minSeq', 'waitMs'), (v, field) => {
      let out;
      try {
        out = checkShardWait({ [field]: v }, 'count');
      } catch (e) {
        expect(e).toBeInstanceOf(VdbError);
        expect((e as VdbError).code).toBe(ErrorCode.BAD_REQUEST);
        expect((e as VdbError).message).toContain(`internal count request: ${field}`);
        return;
      }
      const max = field === 'waitMs' ? MAX_WAIT_MS : Number.MAX_SAFE_INTEGER;
      if (v != null) {
        expect(Number.isSafeInteger(v) && (v as number) >= 0 && (v as number) <= max).toBe(true);
        expect(out[field]).toBe(v);
      }
    }), runs(500));
    expectVdbError(() => checkShardWait([], 'get'), ErrorCode.BAD_REQUEST);
  });
});
