// The wire protocol's codecs and validators: bodies survive both formats,
// MessagePack is byte-for-byte the standard encoding, vectors arrive as the
// same float32 values whichever form they took, every bad field is refused
// with its code and path, and no input makes decoding or validation throw
// anything but a VdbError. The JSON examples of docs/protocol.md are checked too.

import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { ErrorCode, VdbError } from '../ts/errors.js';
import { LIMITS } from '../ts/collection.js';
import { decode, encode, isJsonContentType, MAX_BODY_BYTES, MAX_DEPTH } from '../ts/wire/codec.js';
import {
  ADMIN_ENDPOINTS,
  COLLECTION_ENDPOINTS,
  errorBody,
  errorFromBody,
  errorStatus,
  parseVector,
  readCountReply,
  readGetReply,
  readScrollReply,
  readSearchReply,
  readWriteReply,
  REQUEST_VALIDATORS,
  serviceError,
  validateCount,
  validateCreateCollection,
  validateDelete,
  validateDescribe,
  validateDropCollection,
  validateGet,
  validateListCollections,
  validateScroll,
  validateSearch,
  validateStatus,
  validateUpsert,
} from '../ts/wire/messages.js';
import { expectVdbError } from './helpers.js';

const SEED = 20240607;
const runs = (numRuns: number) => ({ seed: SEED, numRuns });

const hex = (s: string) => Uint8Array.from(Buffer.from(s.replace(/\s+/g, ''), 'hex'));
const toHex = (b: Uint8Array) => Buffer.from(b).toString('hex').replace(/(..)(?!$)/g, '$1 ');
const utf8 = (s: string) => new TextEncoder().encode(s);

/** Every object in the tree is a plain Object and every array an Array. */
function expectPlain(v: unknown, path = 'body'): void {
  if (typeof v !== 'object' || v === null) return;
  if (v instanceof Uint8Array) return;
  if (Array.isArray(v)) {
    v.forEach((x, i) => expectPlain(x, `${path}[${i}]`));
    return;
  }
  expect(Object.getPrototypeOf(v), path).toBe(Object.prototype);
  for (const [k, x] of Object.entries(v)) expectPlain(x, `${path}.${k}`);
}

/** Whatever `fn` does, it returns or throws a VdbError, never anything else. */
function onlyVdbErrors(fn: () => unknown): VdbError | undefined {
  try {
    fn();
    return undefined;
  } catch (e) {
    if (!(e instanceof VdbError)) throw new Error(`threw a non-VdbError: ${String(e)}`);
    return e;
  }
}

const bits = (v: Float32Array) => Array.from(new Uint32Array(v.buffer, v.byteOffset, v.length));

// ------------------------------------------------------------------- codec

describe('MessagePack bytes are the standard encoding', () => {
  const cases: [string, unknown, string][] = [
    ['{a: 1}', { a: 1 }, '81 a1 61 01'],
    ['{}', {}, '80'],
    ['[]', [], '90'],
    ['mixed array', [1, -1, 'ab', true, false, null], '96 01 ff a2 61 62 c3 c2 c0'],
    ['float64', 1.5, 'cb 3f f8 00 00 00 00 00 00'],
    ['uint16', 300, 'cd 01 2c'],
    ['int16', -200, 'd1 ff 38'],
    ['uint32', 2 ** 32 - 1, 'ce ff ff ff ff'],
    ['int32', -(2 ** 31), 'd2 80 00 00 00'],
    ['int64 (positive, beyond 32 bits)', 2 ** 40, 'd3 00 00 01 00 00 00 00 00'],
    ['int64 (negative)', -(2 ** 40), 'd3 ff ff ff 00 00 00 00 00'],
    ['undefined property dropped', { a: undefined, b: 2 }, '81 a1 62 02'],
    ['undefined element is nil', [undefined], '91 c0'],
    ['Float32Array is bin of LE float32', { v: new Float32Array([1, -2]) }, '81 a1 76 c4 08 00 00 80 3f 00 00 00 c0'],
    ['Uint8Array is bin', new Uint8Array([1, 2, 3]), 'c4 03 01 02 03'],
    [
      'a search body',
      { vector: new Float32Array([1, 0, 0, 0]), k: 3 },
      '82 a6 76 65 63 74 6f 72 c4 10 00 00 80 3f 00 00 00 00 00 00 00 00 00 00 00 00 a1 6b 03',
    ],
  ];
  for (const [name, value, bytes] of cases) {
    it(name, () => expect(toHex(encode(value, false))).toBe(bytes));
  }

  it('uses str8 past 31 bytes and map16 past 15 keys', () => {
    expect(toHex(encode('a'.repeat(40), false)).slice(0, 5)).toBe('d9 28');
    const wide = Object.fromEntries(Array.from({ length: 16 }, (_, i) => [`k${i}`, i]));
    expect(toHex(encode(wide, false)).slice(0, 8)).toBe('de 00 10');
  });

  it('reads a body written by hand, as another language would', () => {
    // {"vector": bin(LE f32 [0.5, -1, 2, 0]), "k": 3, "withPayload": true, "ef": uint64 50}
    const bytes = hex(`84 a6 766563746f72 c4 10 0000003f 000080bf 00000040 00000000
      a1 6b 03 ab 776974685061796c6f6164 c3 a2 6566 cf 0000000000000032`);
    const req = validateSearch(decode(bytes, false), { dim: 4, metric: 'l2' });
    expect(Array.from(req.vector)).toEqual([0.5, -1, 2, 0]);
    expect(req).toMatchObject({ k: 3, withPayload: true, ef: 50, exact: false, consistency: 'session' });
  });
});

describe('codec round trips', () => {
  it('JSON-like bodies survive MessagePack and JSON as plain data', () => {
    fc.assert(
      fc.property(fc.jsonValue({ maxDepth: 6 }), (v) => {
        const expected = JSON.parse(JSON.stringify(v)) as unknown;
        for (const json of [false, true]) {
          const back = decode(encode(v, json), json);
          expect(back).toEqual(expected);
          expectPlain(back);
        }
      }),
      runs(400),
    );
  });

  it('safe integers of any size keep their exact value', () => {
    fc.assert(
      fc.property(fc.maxSafeInteger(), (n) => {
        for (const json of [false, true]) expect(decode(encode({ n, a: [n] }, json), json)).toEqual({ n, a: [n] });
      }),
      runs(300),
    );
  });

  it('a __proto__ key is an own property, and the prototype stays Object.prototype', () => {
    const fromMsgpack = decode(hex('81 a9 5f5f70726f746f5f5f 81 a1 78 01'), false) as Record<string, unknown>;
    const fromJson = decode(utf8('{"__proto__": {"x": 1}}'), true) as Record<string, unknown>;
    for (const o of [fromMsgpack, fromJson]) {
      expect(Object.getPrototypeOf(o)).toBe(Object.prototype);
      expect(Object.hasOwn(o, '__proto__')).toBe(true);
      expect(Object.keys(o)).toEqual(['__proto__']);
      expect((o as { x?: unknown }).x).toBeUndefined();
    }
    // and it encodes back as the key it is
    expect(toHex(encode(fromJson, false))).toBe('81 a9 5f 5f 70 72 6f 74 6f 5f 5f 81 a1 78 01');
  });

  it('an empty body is the empty map', () => {
    expect(decode(new Uint8Array(0), false)).toEqual({});
    expect(decode(new Uint8Array(0), true)).toEqual({});
  });

  it('JSON: vectors become arrays, bytes base64', () => {
    const text = new TextDecoder().decode(encode({ v: new Float32Array([0.5, 1]), b: new Uint8Array([1, 2, 255]) }, true));
    expect(JSON.parse(text)).toEqual({ v: [0.5, 1], b: 'AQL/' });
  });

  it('refuses to encode what is not plain data (INTERNAL)', () => {
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    for (const bad of [new Date(0), new Map(), () => 1, Symbol('s'), cyclic, { a: new Set([1]) }, 2n ** 60n]) {
      for (const json of [false, true]) expectVdbError(() => encode(bad, json), ErrorCode.INTERNAL);
    }
  });

  it('Content-Type detection', () => {
    expect(isJsonContentType('application/json')).toBe(true);
    expect(isJsonContentType('Application/JSON; charset=utf-8')).toBe(true);
    expect(isJsonContentType('application/msgpack')).toBe(false);
    expect(isJsonContentType(undefined)).toBe(false);
  });
});

describe('vectors arrive as the same float32 values', () => {
  const vec = fc.float32Array({ minLength: 1, maxLength: 48, noNaN: true, noDefaultInfinity: true });
  const id = fc.oneof(fc.maxSafeInteger(), fc.string({ minLength: 1, maxLength: 20 }));

  it('Float32Array → MessagePack bin → validator: bit-identical', () => {
    fc.assert(
      fc.property(id, vec, (pid, v) => {
        const raw = decode(encode({ points: [{ id: pid, vector: v }] }, false), false) as { points: { vector: unknown }[] };
        expect(raw.points[0].vector).toBeInstanceOf(Uint8Array);
        expect((raw.points[0].vector as Uint8Array).length).toBe(4 * v.length);
        const req = validateUpsert(raw, { dim: v.length, metric: 'l2' });
        expect(req.points[0].id).toBe(pid);
        expect(req.points[0].vector).toBeInstanceOf(Float32Array);
        expect(bits(req.points[0].vector)).toEqual(bits(v));
        // search and get replies too
        expect(bits(validateSearch(decode(encode({ vector: v, k: 1 }, false), false), { dim: v.length, metric: 'l2' }).vector)).toEqual(bits(v));
        const got = readGetReply(decode(encode({ points: [{ id: pid, vector: v }] }, false), false));
        expect(bits(got.points[0].vector!)).toEqual(bits(v));
      }),
      runs(300),
    );
  });

  it('number arrays (JSON, or MessagePack float64) → validator: the same values', () => {
    fc.assert(
      fc.property(vec, (v) => {
        for (const json of [true, false]) {
          const body = json ? { vector: v, k: 5 } : { vector: Array.from(v), k: 5 };
          const got = validateSearch(decode(encode(body, json), json), { dim: v.length, metric: 'l2' }).vector;
          expect(got.length).toBe(v.length);
          for (let i = 0; i < v.length; i++) expect(got[i] === v[i], `component ${i}: ${got[i]} vs ${v[i]}`).toBe(true);
        }
      }),
      runs(300),
    );
  });

  it('binary vectors at any byte offset are copied to aligned memory', () => {
    const v = new Float32Array([1.25, -3, 7e-3, 1e30]);
    const backing = new Uint8Array(1 + v.byteLength);
    backing.set(new Uint8Array(v.buffer), 1);
    const got = parseVector(backing.subarray(1), 'vector', 4);
    expect(got.byteOffset).toBe(0);
    expect(bits(got)).toEqual(bits(v));
    backing.fill(0); // the result does not alias the input
    expect(bits(got)).toEqual(bits(v));
    // a bin that starts at an odd offset inside a decoded body: key "vv" puts it at byte 5
    const body = hex('81 a2 7676 c4 10');
    const full = new Uint8Array(body.length + 16);
    full.set(body);
    full.set(new Uint8Array(v.buffer), body.length);
    const raw = decode(full, false) as { vv: Uint8Array };
    expect(raw.vv.byteOffset % 4).not.toBe(0);
    expect(bits(parseVector(raw.vv, 'vv'))).toEqual(bits(v));
  });
});

describe('bad bytes are coded errors', () => {
  it('garbage never throws anything but BAD_REQUEST, and what decodes is plain', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 1, maxLength: 64 }), fc.boolean(), (bytes, json) => {
        const err = onlyVdbErrors(() => {
          const v = decode(bytes, json);
          expectPlain(v);
          for (const validate of Object.values(REQUEST_VALIDATORS)) onlyVdbErrors(() => validate(v, { dim: 4, metric: 'l2' }));
        });
        if (err) expect(err.code).toBe(ErrorCode.BAD_REQUEST);
      }),
      runs(2000),
    );
  });

  it('every truncation of a MessagePack body is BAD_REQUEST', () => {
    fc.assert(
      fc.property(fc.jsonValue({ maxDepth: 4 }), (v) => {
        const bytes = encode(v, false);
        for (let n = 1; n < bytes.length; n++) expectVdbError(() => decode(bytes.subarray(0, n), false), ErrorCode.BAD_REQUEST);
      }),
      runs(200),
    );
  });

  it('trailing bytes, reserved bytes, extensions and non-string keys are BAD_REQUEST', () => {
    const bad = {
      'trailing byte': '81 a1 61 01 00',
      'two values': '01 02',
      'reserved 0xc1': '81 a1 61 c1',
      'msgpackr undefined (ext 0)': '81 a1 61 d4 00 00',
      'timestamp ext (Date)': '81 a1 61 d6 ff 00 00 00 01',
      'unknown ext': '81 a1 61 d4 05 01',
      'msgpackr typed array ext': '81 a1 61 c7 05 74 08 00 00 80 3f',
      'msgpackr bigint ext': '81 a1 61 d4 42 01',
      'msgpackr Set ext': 'd4 73 00 91 01',
      'integer map key': '81 01 02',
      'nil map key': '81 c0 02',
      'array map key': '81 91 01 02',
      'truncated str': 'a5 61 62',
      'truncated bin': 'c4 08 00 00',
    };
    for (const [name, bytes] of Object.entries(bad)) {
      const e = expectVdbError(() => decode(hex(bytes), false), ErrorCode.BAD_REQUEST);
      expect(e.message, name).toMatch(/^body/);
    }
  });

  it('nesting: deep bodies are refused, not a stack overflow', () => {
    const deepMsgpack = new Uint8Array(200_000).fill(0x91);
    deepMsgpack[deepMsgpack.length - 1] = 0xc0;
    expectVdbError(() => decode(deepMsgpack, false), ErrorCode.BAD_REQUEST);
    const nested = (n: number) => '['.repeat(n) + ']'.repeat(n);
    expectVdbError(() => decode(utf8(nested(MAX_DEPTH + 1)), true), ErrorCode.BAD_REQUEST);
    expectVdbError(() => decode(utf8(nested(100_000)), true), ErrorCode.BAD_REQUEST);
    const arrays = (n: number) => Uint8Array.from([...new Array<number>(n - 1).fill(0x91), 0x90]);
    expectVdbError(() => decode(arrays(MAX_DEPTH + 1), false), ErrorCode.BAD_REQUEST);
    expect(decode(arrays(MAX_DEPTH), false)).toBeDefined();
    expectVdbError(() => encode(JSON.parse(nested(MAX_DEPTH + 1)), false), ErrorCode.INTERNAL);
    expect(decode(utf8(nested(MAX_DEPTH)), true)).toBeDefined();
    expect(decode(encode(JSON.parse(nested(MAX_DEPTH)), false), false)).toBeDefined();
  });

  it('invalid JSON and invalid UTF-8 are BAD_REQUEST', () => {
    for (const text of ['{', '{"a":}', 'nul', '{"a":1}x', "{'a':1}", '[1,]', 'NaN']) {
      expectVdbError(() => decode(utf8(text), true), ErrorCode.BAD_REQUEST);
    }
    expectVdbError(() => decode(Uint8Array.of(0x7b, 0x22, 0xff, 0x22, 0x3a, 0x31, 0x7d), true), ErrorCode.BAD_REQUEST);
    fc.assert(
      fc.property(fc.string({ maxLength: 30 }), (s) => {
        const err = onlyVdbErrors(() => decode(utf8(s), true));
        if (err) expect(err.code).toBe(ErrorCode.BAD_REQUEST);
      }),
      runs(500),
    );
  });

  it('bodies over the limit are REQUEST_TOO_LARGE before decoding', () => {
    const big = new Uint8Array(MAX_BODY_BYTES + 1); // zeros: would decode as trailing garbage
    for (const json of [false, true]) expectVdbError(() => decode(big, json), ErrorCode.REQUEST_TOO_LARGE);
    const body = encode({ points: [] }, false);
    expect(decode(body, false, body.length)).toEqual({ points: [] });
    expectVdbError(() => decode(body, false, body.length - 1), ErrorCode.REQUEST_TOO_LARGE);
    expectVdbError(() => decode(utf8('{"a": 1}'), true, 4), ErrorCode.REQUEST_TOO_LARGE);
  });
});

// -------------------------------------------------------------- validators

const VEC = [0.1, 0.2, 0.3, 0.4];
const good = {
  upsert: () => ({ points: [{ id: 1, vector: VEC, payload: { a: 1 } }, { id: 'b', vector: new Float32Array(VEC) }] }),
  delete: () => ({ ids: [1, 'b'] }),
  get: () => ({ ids: [1, 'b'], withVector: false }),
  count: () => ({ consistency: 'strong' }),
  scroll: () => ({ after: 'b', limit: 50, filter: { a: { $gt: 0 } }, withVector: true, withPayload: false, consistency: 'eventual', afterSeqs: { 0: 4, 3: 17 } }),
  search: () => ({ vector: VEC, k: 10, ef: 64, filter: { a: { $gt: 0 } }, exact: true, consistency: 'strong', withPayload: true, nprobe: 2 }),
  create: () => ({ name: 'products', dim: 4, metric: 'cosine', partitioner: { kind: 'hash', shards: 4 }, replicas: 2, hnsw: { m: 32, efConstruction: 100 } }),
};
const DIM = 4;
const SCHEMA = { dim: DIM, metric: 'l2' } as const;

describe('validators accept valid requests and normalise them', () => {
  it('upsert', () => {
    const req = validateUpsert(good.upsert(), SCHEMA);
    expect(req.points.map((p) => p.id)).toEqual([1, 'b']);
    expect(req.points[0].payload).toEqual({ a: 1 });
    expect('payload' in req.points[1]).toBe(false);
    for (const p of req.points) expect(Array.from(p.vector)).toEqual(Array.from(new Float32Array(VEC)));
    expect(validateUpsert({ points: [] }).points).toEqual([]);
    expect(validateUpsert({ points: [{ id: 'x', vector: VEC, payload: null }] }).points[0]).not.toHaveProperty('payload');
  });

  it('delete, get, count, list, status', () => {
    expect(validateDelete(good.delete())).toEqual({ ids: [1, 'b'], wait: false });
    expect(validateDelete({ ids: [], wait: true })).toEqual({ ids: [], wait: true });
    expect(validateUpsert({ points: [], wait: true }).wait).toBe(true);
    expect(validateGet(good.get())).toEqual({ ids: [1, 'b'], withVector: false, consistency: 'session' });
    expect(validateGet({ ids: [], consistency: 'eventual', afterSeqs: { 2: 9 } })).toEqual({ ids: [], withVector: true, consistency: 'eventual', afterSeqs: { 2: 9 } });
    expect(validateCount({})).toEqual({ consistency: 'session' });
    expect(validateCount({ afterSeqs: { 0: 1 }, future: 1 })).toEqual({ consistency: 'session', afterSeqs: { 0: 1 } });
    for (const v of [validateListCollections, validateStatus]) {
      expect(v({})).toEqual({});
      expect(v({ future: 1 })).toEqual({});
    }
  });

  it('search, with defaults', () => {
    const req = validateSearch(good.search(), SCHEMA);
    expect(req).toMatchObject({ k: 10, ef: 64, exact: true, consistency: 'strong', withPayload: true, nprobe: 2, filter: { a: { $gt: 0 } } });
    const min = validateSearch({ vector: VEC, k: 1, ef: null, filter: null, consistency: null });
    expect(min).toEqual({ vector: new Float32Array(VEC), k: 1, exact: false, consistency: 'session', withPayload: false });
    expect(validateSearch({ vector: VEC, k: LIMITS.k }).k).toBe(LIMITS.k);
    // `after` is the older name of `afterSeqs`; `afterSeqs` wins when both are sent.
    expect(validateSearch({ vector: VEC, k: 1, after: { 1: 5 } }).afterSeqs).toEqual({ 1: 5 });
    expect(validateSearch({ vector: VEC, k: 1, after: { 1: 5 }, afterSeqs: { 0: 2 } }).afterSeqs).toEqual({ 0: 2 });
  });

  it('scroll, with defaults', () => {
    expect(validateScroll(good.scroll())).toEqual({ ...good.scroll(), afterSeqs: { 0: 4, 3: 17 } });
    expect(validateScroll({})).toEqual({ limit: 100, withVector: false, withPayload: true, consistency: 'session' });
    expect(validateScroll({ after: 7, limit: LIMITS.scroll }).after).toBe(7);
  });

  it('collections.create, drop, describe', () => {
    expect(validateCreateCollection(good.create())).toEqual(good.create());
    const semantic = validateCreateCollection({ ...good.create(), partitioner: { kind: 'semantic', shards: 3, field: 'meta.category' }, hnsw: undefined });
    expect(semantic.partitioner).toEqual({ kind: 'semantic', shards: 3, field: 'meta.category' });
    expect(semantic.hnsw).toEqual({ m: 16, efConstruction: 200 });
    expect(validateCreateCollection({ ...good.create(), hnsw: { m: 8 } }).hnsw).toEqual({ m: 8, efConstruction: 200 });
    expect(validateDropCollection({ name: 'a-b_c' })).toEqual({ name: 'a-b_c' });
    expect(validateDescribe({ name: '0' })).toEqual({ name: '0' });
    expect(validateCreateCollection(good.create()).payloadIndexes).toBeUndefined();
    expect(validateCreateCollection({ ...good.create(), payloadIndexes: ['color', 'meta.price', 'color'] }).payloadIndexes).toEqual(['color', 'meta.price']);
  });

  it('unknown fields are ignored everywhere', () => {
    const extra = { future: { x: [1] }, other: 'y' };
    expect(validateUpsert({ ...good.upsert(), ...extra, points: [{ id: 1, vector: VEC, ...extra }] }, SCHEMA).points).toHaveLength(1);
    expect(validateSearch({ ...good.search(), ...extra }, SCHEMA).k).toBe(10);
    expect(validateCreateCollection({ ...good.create(), ...extra, partitioner: { kind: 'hash', shards: 1, ...extra } }).name).toBe('products');
  });

  it('every endpoint has a validator', () => {
    expect(Object.keys(REQUEST_VALIDATORS).sort()).toEqual([...COLLECTION_ENDPOINTS, ...ADMIN_ENDPOINTS].sort());
  });
});

type Case = [string, () => unknown, string, string?];

const V = ErrorCode;
const binary = (...xs: number[]) => new Uint8Array(new Float32Array(xs).buffer);
const withPoint = (p: Record<string, unknown>, dim?: number) => () => validateUpsert({ points: [{ id: 1, vector: VEC }, { id: 2, vector: VEC }, { id: 3, vector: VEC }, p] }, dim === undefined ? undefined : { dim, metric: 'l2' });
const search = (patch: Record<string, unknown>, dim?: number) => () => validateSearch({ ...good.search(), ...patch }, dim === undefined ? undefined : { dim, metric: 'l2' });
const create = (patch: Record<string, unknown>) => () => validateCreateCollection({ ...good.create(), ...patch });
const part = (p: unknown) => create({ partitioner: p });

const BAD: Case[] = [
  // bodies
  ['upsert body is an array', () => validateUpsert([]), V.BAD_REQUEST, 'upsert: the body must be a map'],
  ['search body is null', () => validateSearch(null), V.BAD_REQUEST],
  ['count body is a string', () => validateCount('x'), V.BAD_REQUEST],
  ['status body is binary', () => validateStatus(new Uint8Array(2)), V.BAD_REQUEST],
  ['list body is an array', () => validateListCollections([]), V.BAD_REQUEST],
  // upsert
  ['points missing', () => validateUpsert({}), V.INVALID_ARGUMENT, 'points: expected an array of points'],
  ['points a map', () => validateUpsert({ points: {} }), V.INVALID_ARGUMENT, 'points:'],
  ['point not a map', () => validateUpsert({ points: [7] }), V.INVALID_ARGUMENT, 'points[0]: expected a map'],
  ['id missing', withPoint({ vector: VEC }), V.INVALID_ID, 'points[3].id:'],
  ['id fractional', withPoint({ id: 1.5, vector: VEC }), V.INVALID_ID, 'points[3].id: 1.5 is not a safe integer'],
  ['id beyond 2^53', withPoint({ id: 2 ** 53, vector: VEC }), V.INVALID_ID],
  ['id empty string', withPoint({ id: '', vector: VEC }), V.INVALID_ID, 'got 0'],
  ['id too long', withPoint({ id: 'x'.repeat(LIMITS.idBytes + 1), vector: VEC }), V.INVALID_ID],
  ['id too long in UTF-8 bytes', withPoint({ id: 'é'.repeat(LIMITS.idBytes / 2 + 1), vector: VEC }), V.INVALID_ID],
  ['id boolean', withPoint({ id: true, vector: VEC }), V.INVALID_ID],
  ['id a map', withPoint({ id: {}, vector: VEC }), V.INVALID_ID],
  ['vector missing', withPoint({ id: 4 }), V.INVALID_VECTOR, 'points[3].vector: expected an array of numbers or a binary'],
  ['vector a string', withPoint({ id: 4, vector: '0.1,0.2' }), V.INVALID_VECTOR],
  ['vector empty', withPoint({ id: 4, vector: [] }), V.INVALID_VECTOR, 'points[3].vector: empty vector'],
  ['vector too long', withPoint({ id: 4, vector: new Array(65_537).fill(0) }), V.INVALID_VECTOR],
  ['vector with a string', withPoint({ id: 4, vector: [1, '2', 3, 4] }), V.INVALID_VECTOR, 'points[3].vector[1]: expected a number'],
  ['vector with NaN', withPoint({ id: 4, vector: [1, NaN, 3, 4] }), V.INVALID_VECTOR, 'points[3].vector[1]'],
  ['vector with Infinity', withPoint({ id: 4, vector: [1, 2, -Infinity, 4] }), V.INVALID_VECTOR, 'points[3].vector[2]'],
  ['vector beyond float32', withPoint({ id: 4, vector: [1e39, 2, 3, 4] }), V.INVALID_VECTOR, 'points[3].vector[0]: 1e+39 is not a finite float32'],
  ['binary not a multiple of 4', withPoint({ id: 4, vector: new Uint8Array(15) }), V.INVALID_VECTOR, 'not a multiple of 4'],
  ['binary with NaN', withPoint({ id: 4, vector: binary(1, NaN, 0, 0) }), V.INVALID_VECTOR, 'points[3].vector[1]'],
  ['binary empty', withPoint({ id: 4, vector: new Uint8Array(0) }), V.INVALID_VECTOR],
  ['dimension (array)', withPoint({ id: 4, vector: [1, 2, 3] }, 4), V.DIMENSION_MISMATCH, 'points[3].vector: expected 4 numbers, got 3'],
  ['dimension (binary)', withPoint({ id: 4, vector: binary(1, 2, 3, 4, 5) }, 4), V.DIMENSION_MISMATCH, 'points[3].vector: expected 4 float32 (16 bytes), got 5 (20 bytes)'],
  ['payload an array', withPoint({ id: 4, vector: VEC, payload: [1] }), V.INVALID_PAYLOAD, 'points[3].payload: a payload is a map'],
  ['payload a string', withPoint({ id: 4, vector: VEC, payload: 'x' }), V.INVALID_PAYLOAD],
  ['payload with binary', withPoint({ id: 4, vector: VEC, payload: { a: { b: new Uint8Array(1) } } }), V.INVALID_PAYLOAD, 'points[3].payload.a.b'],
  ['payload with NaN', withPoint({ id: 4, vector: VEC, payload: { a: [1, NaN] } }), V.INVALID_PAYLOAD, 'points[3].payload.a[1]'],
  ['payload too deep', withPoint({ id: 4, vector: VEC, payload: JSON.parse('{"a":'.repeat(70) + '1' + '}'.repeat(70)) }), V.INVALID_PAYLOAD],
  ['payload too large', withPoint({ id: 4, vector: VEC, payload: { s: 'x'.repeat(LIMITS.payloadBytes) } }), V.PAYLOAD_TOO_LARGE, 'points[3].payload:'],
  // delete / get
  ['ids missing', () => validateDelete({}), V.INVALID_ARGUMENT, 'ids: expected an array of ids'],
  ['ids a single id', () => validateGet({ ids: 1 }), V.INVALID_ARGUMENT],
  ['ids with a bad id', () => validateDelete({ ids: [1, 2.5] }), V.INVALID_ID, 'ids[1]:'],
  ['get ids with a bad id', () => validateGet({ ids: ['a', ''] }), V.INVALID_ID, 'ids[1]:'],
  ['withVector a string', () => validateGet({ ids: [], withVector: 'yes' }), V.INVALID_ARGUMENT, 'withVector: expected true or false'],
  ['withVector a number', () => validateGet({ ids: [], withVector: 3 }), V.INVALID_ARGUMENT, 'withVector: expected true or false'],
  ['get consistency unknown', () => validateGet({ ids: [], consistency: 'all' }), V.INVALID_ARGUMENT, 'consistency:'],
  ['get afterSeqs a list', () => validateGet({ ids: [], afterSeqs: [1, 2] }), V.INVALID_ARGUMENT, 'afterSeqs: expected a map'],
  ['wait a string', () => validateDelete({ ids: [], wait: 'yes' }), V.INVALID_ARGUMENT, 'wait: expected true or false'],
  ['upsert wait a number', () => validateUpsert({ points: [], wait: 1 }), V.INVALID_ARGUMENT, 'wait:'],
  // count
  ['count consistency a number', () => validateCount({ consistency: 1 }), V.INVALID_ARGUMENT, 'consistency:'],
  ['count afterSeqs with a shard name', () => validateCount({ afterSeqs: { a: 1 } }), V.INVALID_ARGUMENT, 'afterSeqs: keys are shard numbers'],
  ['count afterSeqs with a negative sequence', () => validateCount({ afterSeqs: { 0: -1 } }), V.INVALID_ARGUMENT, 'afterSeqs.0:'],
  ['count afterSeqs with a string sequence', () => validateCount({ afterSeqs: { 0: '5' } }), V.INVALID_ARGUMENT, 'afterSeqs.0:'],
  // scroll
  ['scroll body a list', () => validateScroll([]), V.BAD_REQUEST],
  ['scroll limit zero', () => validateScroll({ limit: 0 }), V.INVALID_ARGUMENT, 'limit: expected an integer from 1 to 10000'],
  ['scroll limit too large', () => validateScroll({ limit: LIMITS.scroll + 1 }), V.INVALID_ARGUMENT, 'limit:'],
  ['scroll limit a string', () => validateScroll({ limit: '10' }), V.INVALID_ARGUMENT, 'limit:'],
  ['scroll after not an id', () => validateScroll({ after: { 0: 1 } }), V.INVALID_ID, 'after:'],
  ['scroll after fractional', () => validateScroll({ after: 1.5 }), V.INVALID_ID, 'after:'],
  ['scroll filter malformed', () => validateScroll({ filter: { a: { $near: 1 } } }), V.INVALID_FILTER, 'filter.a'],
  ['scroll withPayload a number', () => validateScroll({ withPayload: 0 }), V.INVALID_ARGUMENT, 'withPayload:'],
  // search
  ['query missing', search({ vector: undefined }), V.INVALID_VECTOR, 'vector:'],
  ['query dimension', search({ vector: [1, 2] }, 4), V.DIMENSION_MISMATCH, 'vector: expected 4 numbers, got 2'],
  ['query with NaN', search({ vector: binary(0, 0, NaN, 0) }), V.INVALID_VECTOR, 'vector[2]'],
  ['k missing', search({ k: undefined }), V.INVALID_K, 'k: required'],
  ['k zero', search({ k: 0 }), V.INVALID_K, 'k: expected an integer from 1 to 10000, got 0'],
  ['k too large', search({ k: LIMITS.k + 1, ef: undefined }), V.INVALID_K],
  ['k fractional', search({ k: 2.5 }), V.INVALID_K],
  ['k a string', search({ k: '10' }), V.INVALID_K],
  ['ef below k', search({ k: 10, ef: 5 }), V.INVALID_EF, 'ef: expected an integer from 10'],
  ['ef too large', search({ ef: 2 ** 21 }), V.INVALID_EF],
  ['ef a string', search({ ef: 'auto' }), V.INVALID_EF],
  ['filter unknown operator', search({ filter: { a: { $regex: 'x' } } }), V.INVALID_FILTER, 'filter.a: unknown operator $regex'],
  ['filter not a map', search({ filter: 'a = 1' }), V.INVALID_FILTER, 'filter:'],
  ['filter with binary', search({ filter: { a: new Uint8Array(1) } }), V.INVALID_FILTER],
  ['exact a number', search({ exact: 1 }), V.INVALID_ARGUMENT, 'exact:'],
  ['withPayload a string', search({ withPayload: 'true' }), V.INVALID_ARGUMENT, 'withPayload:'],
  ['consistency unknown', search({ consistency: 'linearizable' }), V.INVALID_ARGUMENT, 'consistency: expected one of "eventual", "session", "strong"'],
  ['nprobe zero', search({ nprobe: 0 }), V.INVALID_ARGUMENT, 'nprobe:'],
  ['nprobe a string', search({ nprobe: '2' }), V.INVALID_ARGUMENT, 'nprobe:'],
  ['ef a letter', search({ ef: 'a' }), V.INVALID_EF, 'ef:'],
  ['after a string', search({ after: 'x' }), V.INVALID_ARGUMENT, 'after: expected a map'],
  ['afterSeqs with a fractional sequence', search({ afterSeqs: { 1: 2.5 } }), V.INVALID_ARGUMENT, 'afterSeqs.1:'],
  // create / drop / describe
  ['name missing', create({ name: undefined }), V.INVALID_ARGUMENT, 'name:'],
  ['name with a dot', create({ name: 'a.b' }), V.INVALID_ARGUMENT],
  ['name with a wildcard', create({ name: 'a*' }), V.INVALID_ARGUMENT],
  ['name reserved', create({ name: '_admin' }), V.INVALID_ARGUMENT, 'not starting with _'],
  ['name too long', create({ name: 'n'.repeat(129) }), V.INVALID_ARGUMENT],
  ['name a number', create({ name: 5 }), V.INVALID_ARGUMENT],
  ['dim zero', create({ dim: 0 }), V.INVALID_ARGUMENT, 'dim:'],
  ['dim too large', create({ dim: 65_537 }), V.INVALID_ARGUMENT],
  ['dim a string', create({ dim: '128' }), V.INVALID_ARGUMENT],
  ['metric unknown', create({ metric: 'euclidean' }), V.INVALID_ARGUMENT, 'metric: expected one of "l2", "ip", "cosine"'],
  ['partitioner missing', part(undefined), V.INVALID_PARTITIONER, 'partitioner: required'],
  ['partitioner a string', part('hash'), V.INVALID_PARTITIONER, 'partitioner: expected a map'],
  ['partitioner kind unknown', part({ kind: 'range', shards: 2 }), V.INVALID_PARTITIONER, 'partitioner.kind:'],
  ['partitioner shards zero', part({ kind: 'hash', shards: 0 }), V.INVALID_PARTITIONER, 'partitioner.shards:'],
  ['partitioner shards missing', part({ kind: 'spatial' }), V.INVALID_PARTITIONER, 'partitioner.shards: required'],
  ['semantic without field', part({ kind: 'semantic', shards: 2 }), V.INVALID_PARTITIONER, 'partitioner.field:'],
  ['semantic with a bad field', part({ kind: 'semantic', shards: 2, field: 'a..b' }), V.INVALID_PARTITIONER],
  ['hash with a field', part({ kind: 'hash', shards: 2, field: 'x' }), V.INVALID_PARTITIONER, 'partitioner.field: only a semantic'],
  ['replicas missing', create({ replicas: undefined }), V.INVALID_ARGUMENT, 'replicas: required'],
  ['replicas too many', create({ replicas: 17 }), V.INVALID_ARGUMENT],
  ['hnsw a number', create({ hnsw: 16 }), V.INVALID_ARGUMENT, 'hnsw: expected a map'],
  ['hnsw.m too small', create({ hnsw: { m: 1 } }), V.INVALID_ARGUMENT, 'hnsw.m:'],
  ['hnsw.efConstruction zero', create({ hnsw: { efConstruction: 0 } }), V.INVALID_ARGUMENT, 'hnsw.efConstruction:'],
  ['drop name missing', () => validateDropCollection({}), V.INVALID_ARGUMENT, 'name:'],
  ['describe name bad', () => validateDescribe({ name: 'a b' }), V.INVALID_ARGUMENT],
];

describe('validators reject each bad field with its code and path', () => {
  for (const [name, fn, code, message] of BAD) {
    it(name, () => {
      const e = expectVdbError(fn, code);
      if (message) expect(e.message).toContain(message);
    });
  }

  it('arbitrary values and mutated fields only ever give VdbErrors', () => {
    const bodies = [good.upsert(), good.delete(), good.get(), good.search(), good.create(), good.count(), good.scroll()];
    fc.assert(
      fc.property(fc.anything({ withNullPrototype: true, withTypedArray: true, withBigInt: true, withDate: true, withMap: true, withSet: true }), fc.nat(), (junk, pick) => {
        for (const validate of Object.values(REQUEST_VALIDATORS)) onlyVdbErrors(() => validate(junk, SCHEMA));
        const body = bodies[pick % bodies.length] as Record<string, unknown>;
        const keys = Object.keys(body);
        const mutated = { ...body, [keys[pick % keys.length]]: junk };
        for (const validate of Object.values(REQUEST_VALIDATORS)) onlyVdbErrors(() => validate(mutated, SCHEMA));
      }),
      runs(500),
    );
  });
});

/** Whether `v` is an `afterSeqs` map: shard numbers → sequences. */
const isSessionSeqs = (v: unknown) => typeof v === 'object' && v !== null && !Array.isArray(v) && [Object.prototype, null].includes(Object.getPrototypeOf(v))
  && Object.entries(v).every(([s, q]) => /^(0|[1-9][0-9]*)$/.test(s) && Number(s) < 65_536 && Number.isSafeInteger(q) && (q as number) >= 0);
const isInt = (lo: number, hi: number) => (v: unknown) => Number.isInteger(v) && (v as number) >= lo && (v as number) <= hi;
const isBool = (v: unknown) => typeof v === 'boolean';
const isId = (v: unknown) => Number.isSafeInteger(v) || (typeof v === 'string' && Buffer.byteLength(v) >= 1 && Buffer.byteLength(v) <= LIMITS.idBytes);
const isConsistency = (v: unknown) => v === 'eventual' || v === 'session' || v === 'strong';

/** Every named optional field of every request: its validator, a valid body, and which values it takes. */
const OPTIONAL: [string, (b: unknown) => unknown, Record<string, unknown>, string, (v: unknown) => boolean][] = [
  ['upsert', (b) => validateUpsert(b, SCHEMA), good.upsert(), 'wait', isBool],
  ['delete', validateDelete, good.delete(), 'wait', isBool],
  ['get', validateGet, good.get(), 'withVector', isBool],
  ['get', validateGet, good.get(), 'consistency', isConsistency],
  ['get', validateGet, good.get(), 'afterSeqs', isSessionSeqs],
  ['count', validateCount, good.count(), 'consistency', isConsistency],
  ['count', validateCount, good.count(), 'afterSeqs', isSessionSeqs],
  ['count', validateCount, good.count(), 'after', isSessionSeqs],
  ['get', validateGet, good.get(), 'after', isSessionSeqs],
  ['scroll', validateScroll, good.scroll(), 'after', isId],
  ['scroll', validateScroll, good.scroll(), 'limit', isInt(1, LIMITS.scroll)],
  ['scroll', validateScroll, good.scroll(), 'withVector', isBool],
  ['scroll', validateScroll, good.scroll(), 'withPayload', isBool],
  ['scroll', validateScroll, good.scroll(), 'consistency', isConsistency],
  ['scroll', validateScroll, good.scroll(), 'afterSeqs', isSessionSeqs],
  ['search', (b) => validateSearch(b, SCHEMA), good.search(), 'ef', isInt(10, 2 ** 20)],
  ['search', (b) => validateSearch(b, SCHEMA), good.search(), 'exact', isBool],
  ['search', (b) => validateSearch(b, SCHEMA), good.search(), 'withPayload', isBool],
  ['search', (b) => validateSearch(b, SCHEMA), good.search(), 'consistency', isConsistency],
  ['search', (b) => validateSearch(b, SCHEMA), good.search(), 'nprobe', isInt(1, 65_536)],
  ['search', (b) => validateSearch(b, SCHEMA), good.search(), 'afterSeqs', isSessionSeqs],
  ['search', (b) => validateSearch(b, SCHEMA), { ...good.search(), afterSeqs: undefined }, 'after', isSessionSeqs],
  ['collections.create', validateCreateCollection, good.create(), 'payloadIndexes',
    (v) => Array.isArray(v) && v.length <= 64 && v.every((f) => typeof f === 'string' && f !== '' && !f.startsWith('$') && !f.split('.').includes(''))],
];

describe('every named optional field is type-checked', () => {
  const values = fc.oneof(
    fc.anything(),
    fc.constantFrom('session', 'x', '', 0, -1, 1, 10, 2.5, 10_001, true, false, [], {}, { 0: 1 }, { 1: '2' }, { x: 1 }, Number.MAX_SAFE_INTEGER),
    fc.dictionary(fc.constantFrom('0', '1', '65535', '65536', '01', '-1'), fc.oneof(fc.nat(), fc.constant(-1), fc.constant(0.5))),
  );
  for (const [ep, validate, body, field, ok] of OPTIONAL) {
    it(`${ep}.${field}: absent or null, or a value of its type; anything else is a coded error`, () => {
      fc.assert(fc.property(values, (v) => {
        const e = onlyVdbErrors(() => validate({ ...body, [field]: v }));
        const accepted = v === null || v === undefined || ok(v);
        expect(e === undefined, `${JSON.stringify(v)}: ${e?.message}`).toBe(accepted);
        if (e) expect(e.message.startsWith(field) || e.message.includes(`${field}.`) || e.message.includes(`${field}[`)).toBe(true);
      }), runs(300));
    });
  }
});

// ------------------------------------------------------- replies and errors

describe('replies', () => {
  it('read back in both formats', () => {
    for (const json of [false, true]) {
      const rt = (v: unknown) => decode(encode(v, json), json);
      expect(readWriteReply(rt({ count: 3, seq: 9 }))).toEqual({ count: 3, seq: 9 });
      expect(readWriteReply(rt({ count: 3, seq: 9, applied: false, unconfirmed: [2] }))).toEqual({ count: 3, seq: 9, applied: false, unconfirmed: [2] });
      expect(readScrollReply(rt({ points: [{ id: 1 }, { id: 'a', payload: { x: 1 } }], next: 'a' }))).toEqual({ points: [{ id: 1 }, { id: 'a', payload: { x: 1 } }], next: 'a' });
      expect(readScrollReply(rt({ points: [] }))).toEqual({ points: [] });
      expect(readCountReply(rt({ count: 0 }))).toEqual({ count: 0 });
      const hits = [{ id: 'a', score: 0.5, payload: { x: 1 } }, { id: 2, score: 1.25 }];
      expect(readSearchReply(rt({ hits, partial: true, missing: [1, 3], tookMs: 2.5 }))).toEqual({ hits, partial: true, missing: [1, 3], tookMs: 2.5 });
      expect(readSearchReply(rt({ hits: [], partial: false, tookMs: 0 }))).toEqual({ hits: [], partial: false, tookMs: 0 });
      const got = readGetReply(rt({ points: [{ id: 1, vector: new Float32Array([1, 2]), payload: { a: 'b' } }, { id: 'x' }] }));
      expect(got.points[0].vector).toEqual(new Float32Array([1, 2]));
      expect(got.points[1]).toEqual({ id: 'x' });
      expect(readGetReply(rt({ points: [], partial: true, missing: [2] }))).toEqual({ points: [], partial: true, missing: [2] });
    }
  });

  it('an error body is thrown as its VdbError, a malformed reply is INTERNAL', () => {
    const e = expectVdbError(() => readCountReply({ error: { code: 'COLLECTION_NOT_FOUND', message: 'no collection x' } }), ErrorCode.COLLECTION_NOT_FOUND);
    expect(e.message).toBe('no collection x');
    expectVdbError(() => readWriteReply({ count: 1 }), ErrorCode.INTERNAL);
    expectVdbError(() => readSearchReply({ hits: [{ id: 1 }], partial: false, tookMs: 1 }), ErrorCode.INTERNAL);
    expectVdbError(() => readGetReply({ points: [{ id: 1, vector: new Uint8Array(3) }] }), ErrorCode.INTERNAL);
    expectVdbError(() => readCountReply([]), ErrorCode.INTERNAL);
  });
});

describe('errors', () => {
  it('errorBody keeps a VdbError code and hides anything else', () => {
    expect(errorBody(new VdbError(ErrorCode.INVALID_K, 'k: bad'))).toEqual({ error: { code: 'INVALID_K', message: 'k: bad' } });
    expect(errorBody(new VdbError('NEWER_CODE' as ErrorCode, 'relayed'))).toEqual({ error: { code: 'NEWER_CODE', message: 'relayed' } });
    for (const thrown of [new Error('secret /path'), new TypeError('x is undefined'), 'a string', 42, null, undefined, { code: 'INVALID_K' }]) {
      expect(errorBody(thrown)).toEqual({ error: { code: 'INTERNAL', message: 'internal error' } });
    }
  });

  it('every code has a numeric status; unknown ones are 500', () => {
    for (const code of Object.values(ErrorCode)) expect(errorStatus(code), code).toBeGreaterThanOrEqual(400);
    expect(errorStatus('BAD_REQUEST')).toBe(400);
    expect(errorStatus('COLLECTION_NOT_FOUND')).toBe(404);
    expect(errorStatus('REQUEST_TOO_LARGE')).toBe(413);
    expect(errorStatus('TIMEOUT')).toBe(504);
    expect(errorStatus('SHARD_UNAVAILABLE')).toBe(503);
    expect(errorStatus('SOMETHING_NEW')).toBe(500);
  });

  it('serviceError gives one-line headers and a body that round-trips', () => {
    const s = serviceError(new VdbError(ErrorCode.INVALID_FILTER, `filter["a\\nb"]: bad\r\nX-Injected: 1${'y'.repeat(2000)}`));
    expect(s.status).toBe(400);
    expect(s.description).not.toMatch(/[\r\n]/);
    expect(s.description.length).toBeLessThanOrEqual(1024);
    expect(s.description.startsWith('INVALID_FILTER: ')).toBe(true);
    for (const json of [false, true]) {
      const back = errorFromBody(decode(encode(s.body, json), json));
      expect(back).toBeInstanceOf(VdbError);
      expect(back!.code).toBe(ErrorCode.INVALID_FILTER);
    }
    expect(errorFromBody({ count: 1 })).toBeUndefined();
    expect(errorFromBody({ error: 'x' })).toBeUndefined();
  });
});

// ------------------------------------------------------ docs/protocol.md

describe('docs/protocol.md examples', () => {
  const doc = readFileSync(new URL('../docs/protocol.md', import.meta.url), 'utf8');
  const examples = [...doc.matchAll(/```json (\S+)\n([\s\S]*?)```/g)].map((m) => ({ tag: m[1], body: JSON.parse(m[2]) as unknown }));
  const readers: Record<string, (b: unknown) => unknown> = {
    upsert: readWriteReply,
    delete: readWriteReply,
    get: readGetReply,
    count: readCountReply,
    search: readSearchReply,
    scroll: readScrollReply,
  };

  it('has a request example for every endpoint', () => {
    const tags = new Set(examples.map((e) => e.tag));
    for (const ep of Object.keys(REQUEST_VALIDATORS)) expect(tags.has(ep), ep).toBe(true);
    for (const ep of Object.keys(readers)) expect(tags.has(`reply:${ep}`), `reply:${ep}`).toBe(true);
  });

  it('every tagged example is valid, in JSON and in MessagePack', () => {
    for (const { tag, body } of examples) {
      for (const json of [true, false]) {
        const wire = decode(encode(body, json), json);
        if (tag === 'error') expect(errorFromBody(wire)).toBeInstanceOf(VdbError);
        else if (tag.startsWith('reply:')) readers[tag.slice('reply:'.length)](wire);
        else {
          const validate = (REQUEST_VALIDATORS as Record<string, (b: unknown, schema?: { dim: number; metric: 'l2' }) => unknown>)[tag];
          expect(validate, tag).toBeDefined();
          validate(wire, SCHEMA);
        }
      }
    }
  });
});

describe('the session map under its older name', () => {
  it('search, get and count take `after` when `afterSeqs` is absent; scroll reads `after` as its cursor', () => {
    const seqs = { '0': 5, '1': 7 };
    expect(validateSearch({ vector: [1, 2, 3, 4], k: 1, after: seqs }).afterSeqs).toEqual(seqs);
    expect(validateGet({ ids: [1], after: seqs }).afterSeqs).toEqual(seqs);
    expect(validateCount({ after: seqs }).afterSeqs).toEqual(seqs);
    expect(validateCount({ after: { '0': 1 }, afterSeqs: seqs }).afterSeqs).toEqual(seqs);
    expect(() => validateCount({ after: 'x' })).toThrow(/after/);
    expect(validateScroll({ after: 'p9', limit: 3 }).after).toBe('p9');
  });
});
