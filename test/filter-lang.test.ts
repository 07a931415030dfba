// The payload filter language (docs/filters.md): compiled filters agree with a
// naive reference evaluator written here from the documented semantics, the
// planner terms hold for every accepted payload, and malformed or hostile
// filters are refused with INVALID_FILTER and nothing else.

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ErrorCode, VdbError } from '../ts/errors.js';
import { compileFilter, FILTER_MAX_DEPTH, FILTER_MAX_NODES } from '../ts/filter.js';
import type { FieldTerm } from '../ts/filter.js';

const SEED = 20240611;
const RUNS = 400;

// ------------------------------------------------------------ reference

// A direct transcription of docs/filters.md, written for clarity, not speed.

type Lookup = { found: false } | { found: true; value: unknown };

function refIsRecord(x: unknown): x is Record<string, unknown> {
  if (x === null || typeof x !== 'object' || Array.isArray(x)) return false;
  const proto = Object.getPrototypeOf(x);
  return proto === Object.prototype || proto === null;
}

function refLookup(payload: unknown, path: string): Lookup {
  let node = payload;
  for (const name of path.split('.')) {
    if (!refIsRecord(node) || !Object.prototype.hasOwnProperty.call(node, name)) return { found: false };
    node = Object.getOwnPropertyDescriptor(node, name)!.value;
  }
  return { found: true, value: node };
}

/** What an operator looks at: nothing when absent, an array's elements, or the value. */
function refCandidates(lookup: Lookup): unknown[] {
  if (!lookup.found) return [];
  return Array.isArray(lookup.value) ? lookup.value : [lookup.value];
}

function refEqual(a: unknown, b: unknown): boolean {
  return typeof a === typeof b && a === b;
}

function refCompare(op: string, e: unknown, bound: unknown): boolean {
  const sameKind =
    (typeof e === 'number' && typeof bound === 'number') || (typeof e === 'string' && typeof bound === 'string');
  if (!sameKind) return false;
  const [x, y] = [e as number | string, bound as number | string];
  if (op === '$gt') return x > y;
  if (op === '$gte') return x >= y;
  if (op === '$lt') return x < y;
  if (op === '$lte') return x <= y;
  throw new Error(`not a range operator: ${op}`);
}

function refOperator(op: string, arg: unknown, lookup: Lookup): boolean {
  const values = refCandidates(lookup);
  switch (op) {
    case '$eq':
      return values.some((e) => refEqual(e, arg));
    case '$ne':
      return !values.some((e) => refEqual(e, arg));
    case '$in':
      return values.some((e) => (arg as unknown[]).some((v) => refEqual(e, v)));
    case '$nin':
      return !values.some((e) => (arg as unknown[]).some((v) => refEqual(e, v)));
    case '$exists':
      return lookup.found === arg;
    default:
      return values.some((e) => refCompare(op, e, arg));
  }
}

function refMatches(filter: Record<string, unknown>, payload: unknown): boolean {
  for (const key of Object.keys(filter)) {
    const cond = Object.getOwnPropertyDescriptor(filter, key)!.value;
    let ok: boolean;
    if (key === '$and') ok = (cond as Record<string, unknown>[]).every((f) => refMatches(f, payload));
    else if (key === '$or') ok = (cond as Record<string, unknown>[]).some((f) => refMatches(f, payload));
    else if (key === '$not') ok = !refMatches(cond, payload);
    else if (cond !== null && typeof cond === 'object') {
      const lookup = refLookup(payload, key);
      ok = Object.keys(cond).every((op) => refOperator(op, cond[op], lookup));
    } else ok = refOperator('$eq', cond, refLookup(payload, key));
    if (!ok) return false;
  }
  return true;
}

/** A term holds when one value (or array element) at its path meets all of it. */
function refTermHolds(term: FieldTerm, payload: unknown): boolean {
  const values = refCandidates(refLookup(payload, term.path));
  switch (term.kind) {
    case 'eq':
    case 'in':
      return values.some((e) => term.values!.some((v) => refEqual(e, v)));
    case 'range':
      return values.some(
        (e) =>
          (term.gt === undefined || refCompare('$gt', e, term.gt)) &&
          (term.gte === undefined || refCompare('$gte', e, term.gte)) &&
          (term.lt === undefined || refCompare('$lt', e, term.lt)) &&
          (term.lte === undefined || refCompare('$lte', e, term.lte)),
      );
  }
}

// ----------------------------------------------------------- generators

// Small pools, so that equalities and near-misses ("1" vs 1, true vs 1) are common.
const NAMES = ['a', 'b', '__proto__', 'constructor'];
const PATHS = ['a', 'b', 'a.b', 'b.a', '__proto__', '__proto__.a', 'constructor', 'a.constructor', 'toString'];
const PRIMITIVES = [0, -0, 1, 1.5, -2, 10, 'a', 'b', 'B', '', '1', 'ab', true, false, null];
const BOUNDS = [0, 1, 1.5, -2, 10, 'a', 'B', '', 'ab'];

const primitive = fc.constantFrom(...PRIMITIVES);
const bound = fc.constantFrom(...BOUNDS);
const path = fc.constantFrom(...PATHS);

const { payload } = fc.letrec<{ value: unknown; payload: Record<string, unknown> }>((tie) => ({
  value: fc.oneof(
    { maxDepth: 3, depthIdentifier: 'payload' },
    primitive,
    fc.array(fc.oneof({ weight: 5, arbitrary: primitive }, { weight: 1, arbitrary: fc.constant({ a: 1 }) }), {
      maxLength: 4,
    }),
    tie('payload'),
  ),
  // Object.fromEntries defines "__proto__" as an own property, like JSON.parse.
  payload: fc.array(fc.tuple(fc.constantFrom(...NAMES), tie('value')), { maxLength: 4 }).map(Object.fromEntries),
}));

const OPERATOR_ARGS: Record<string, fc.Arbitrary<unknown>> = {
  $eq: primitive,
  $ne: primitive,
  $in: fc.array(primitive, { maxLength: 4 }),
  $nin: fc.array(primitive, { maxLength: 4 }),
  $gt: bound,
  $gte: bound,
  $lt: bound,
  $lte: bound,
  $exists: fc.boolean(),
};

const operatorEntry = fc.oneof(
  ...Object.entries(OPERATOR_ARGS).map(([op, arg]) => arg.map((a): [string, unknown] => [op, a])),
);
const operatorObject = fc.array(operatorEntry, { minLength: 1, maxLength: 3 }).map(Object.fromEntries);
const fieldEntry = fc.tuple(path, fc.oneof(primitive, operatorObject));

const { filter } = fc.letrec<{ filter: Record<string, unknown>; entry: [string, unknown] }>((tie) => ({
  entry: fc.oneof(
    { maxDepth: 3, depthIdentifier: 'filter' },
    { weight: 4, arbitrary: fieldEntry },
    fc.tuple(fc.constant('$and'), fc.array(tie('filter'), { minLength: 1, maxLength: 3 })),
    fc.tuple(fc.constant('$or'), fc.array(tie('filter'), { minLength: 1, maxLength: 3 })),
    fc.tuple(fc.constant('$not'), tie('filter')),
  ),
  filter: fc.array(tie('entry'), { maxLength: 3 }).map(Object.fromEntries),
}));

// A denser world for the planner property: few paths and values, mostly
// conjunctive filters, so that many payloads are accepted and terms get checked.
const DENSE = [1, 2, 'x', null];
const denseValue = fc.oneof(fc.constantFrom(...DENSE), fc.array(fc.constantFrom(...DENSE), { maxLength: 3 }));
const densePayload = fc.record(
  { a: denseValue, b: denseValue, c: fc.oneof(denseValue, fc.record({ d: denseValue })) },
  { requiredKeys: ['a', 'b'] },
);
const denseBound = fc.constantFrom(1, 2, 'x');
const denseOperator = fc.oneof(
  fc.tuple(fc.constantFrom('$eq', '$ne'), fc.constantFrom(...DENSE)),
  fc.tuple(fc.constant('$in'), fc.array(fc.constantFrom(...DENSE), { maxLength: 3 })),
  fc.tuple(fc.constantFrom('$gt', '$gte', '$lt', '$lte'), denseBound),
  fc.tuple(fc.constant('$exists'), fc.boolean()),
);
const denseCondition = fc.oneof(
  fc.constantFrom(...DENSE),
  fc.array(denseOperator, { minLength: 1, maxLength: 2 }).map(Object.fromEntries),
);
const { conjunctive } = fc.letrec<{ conjunctive: Record<string, unknown> }>((tie) => ({
  conjunctive: fc
    .array(
      fc.oneof(
        { maxDepth: 2, depthIdentifier: 'conjunctive' },
        { weight: 4, arbitrary: fc.tuple(fc.constantFrom('a', 'b', 'c.d'), denseCondition) },
        fc.tuple(fc.constant('$and'), fc.array(tie('conjunctive'), { minLength: 1, maxLength: 2 })),
        fc.tuple(fc.constant('$or'), fc.array(tie('conjunctive'), { minLength: 1, maxLength: 2 })),
      ),
      { minLength: 1, maxLength: 3 },
    )
    .map(Object.fromEntries),
}));

/** Runs a property and checks it saw both outcomes, so it cannot pass vacuously. */
function assertAgainstReference(arb: fc.Arbitrary<[Record<string, unknown>, unknown]>): void {
  let matched = 0;
  let runs = 0;
  fc.assert(
    fc.property(arb, ([f, p]) => {
      const got = compileFilter(f).test(p);
      expect(got).toBe(refMatches(f, p));
      runs++;
      if (got) matched++;
    }),
    { seed: SEED, numRuns: RUNS },
  );
  expect(matched).toBeGreaterThan(0);
  expect(matched).toBeLessThan(runs);
}

function expectInvalid(f: unknown): VdbError {
  let caught: unknown;
  try {
    compileFilter(f);
  } catch (e) {
    caught = e;
  }
  expect(caught).toBeInstanceOf(VdbError);
  expect((caught as VdbError).code).toBe(ErrorCode.INVALID_FILTER);
  return caught as VdbError;
}

/** `depth` filter objects nested through `$not`, built without recursion. */
function nestedNot(depth: number): Record<string, unknown> {
  let f: Record<string, unknown> = { a: 1 };
  for (let i = 1; i < depth; i++) f = { $not: f };
  return f;
}

/** One more item than a filter may hold in all. */
function tooMany<T>(item: (i: number) => T): T[] {
  return Array.from({ length: FILTER_MAX_NODES + 1 }, (_, i) => item(i));
}

// ---------------------------------------------------------------- tests

describe('filter semantics agree with the reference evaluator', () => {
  it('shorthand equality { path: primitive }', () => {
    assertAgainstReference(fc.tuple(fc.tuple(path, primitive).map((e) => Object.fromEntries([e])), payload));
  });

  for (const [op, arg] of Object.entries(OPERATOR_ARGS)) {
    it(op, () => {
      assertAgainstReference(
        fc.tuple(
          fc.tuple(path, arg).map(([p, a]) => Object.fromEntries([[p, { [op]: a }]])),
          payload,
        ),
      );
    });
  }

  it('several operators in one object (AND, each on its own)', () => {
    assertAgainstReference(fc.tuple(fc.tuple(path, operatorObject).map((e) => Object.fromEntries([e])), payload));
  });

  for (const op of ['$and', '$or'] as const) {
    it(op, () => {
      assertAgainstReference(
        fc.tuple(
          fc.array(filter, { minLength: 1, maxLength: 3 }).map((fs) => ({ [op]: fs })),
          payload,
        ),
      );
    });
  }

  it('$not', () => {
    assertAgainstReference(fc.tuple(filter.map((f) => ({ $not: f })), payload));
  });

  it('arbitrary nested filters', () => {
    assertAgainstReference(fc.tuple(filter, payload));
  });

  it('dense conjunctive filters, where many payloads match', () => {
    assertAgainstReference(fc.tuple(conjunctive, densePayload));
  });
});

describe('planner terms', () => {
  it('every payload the filter accepts satisfies every term', () => {
    let checked = 0;
    fc.assert(
      fc.property(
        fc.oneof(filter, { weight: 3, arbitrary: conjunctive }),
        fc.array(fc.oneof({ weight: 3, arbitrary: densePayload }, payload), { minLength: 20, maxLength: 20 }),
        (f, payloads) => {
          const compiled = compileFilter(f);
          for (const p of payloads) {
            if (!compiled.test(p)) continue;
            for (const term of compiled.terms) {
              expect(refTermHolds(term, p), `${JSON.stringify(term)} on ${JSON.stringify(p)}`).toBe(true);
              checked++;
            }
          }
        },
      ),
      { seed: SEED, numRuns: RUNS },
    );
    expect(checked).toBeGreaterThan(200);
  });

  it('an exact filter accepts exactly the payloads that satisfy all its terms', () => {
    let exact = 0;
    fc.assert(
      fc.property(
        fc.oneof(filter, { weight: 3, arbitrary: conjunctive }),
        fc.array(fc.oneof({ weight: 3, arbitrary: densePayload }, payload), { minLength: 20, maxLength: 20 }),
        (f, payloads) => {
          const compiled = compileFilter(f);
          if (!compiled.exact) return;
          exact++;
          for (const p of payloads) {
            expect(compiled.test(p), `${JSON.stringify(f)} on ${JSON.stringify(p)}`).toBe(compiled.terms.every((t) => refTermHolds(t, p)));
          }
        },
      ),
      { seed: SEED, numRuns: RUNS },
    );
    expect(exact).toBeGreaterThan(20);
    expect(compileFilter({ a: 1, b: { $gte: 2 } }).exact).toBe(true);
    for (const f of [{ a: { $ne: 1 } }, { $or: [{ a: 1 }] }, { $not: { a: 1 } }, { a: { $exists: true } }, { a: { $nin: [1] } }]) {
      expect(compileFilter(f).exact, JSON.stringify(f)).toBe(false);
    }
  });

  it('come from the top level and nested $and only, one per constraint', () => {
    const { terms } = compileFilter({
      kind: 'shoe',
      price: { $gte: 10, $lt: 20, $ne: 15 },
      $and: [{ tags: { $in: ['red', 1] } }, { $and: [{ 'a.b': { $eq: null } }] }],
      $or: [{ x: 1 }, { y: 2 }],
      $not: { z: 3 },
      w: { $exists: true, $nin: [1] },
    });
    expect(terms).toEqual([
      { path: 'kind', kind: 'eq', values: ['shoe'] },
      { path: 'price', kind: 'range', gte: 10 },
      { path: 'price', kind: 'range', lt: 20 },
      { path: 'tags', kind: 'in', values: ['red', 1] },
      { path: 'a.b', kind: 'eq', values: [null] },
    ]);
  });

  it('range bounds stay separate terms because array elements meet them independently', () => {
    const f = compileFilter({ a: { $gt: 10, $lt: 20 } });
    const p = { a: [5, 25] };
    expect(f.test(p)).toBe(true);
    for (const term of f.terms) expect(refTermHolds(term, p)).toBe(true);
    // A single combined term would exclude a payload the filter accepts.
    expect(refTermHolds({ path: 'a', kind: 'range', gt: 10, lt: 20 }, p)).toBe(false);
  });

  it('an empty $in is a term no payload satisfies, and the filter matches nothing', () => {
    const f = compileFilter({ a: { $in: [] } });
    expect(f.terms).toEqual([{ path: 'a', kind: 'in', values: [] }]);
    expect(f.test({ a: 1 })).toBe(false);
    expect(f.test({ a: [] })).toBe(false);
  });

  it('$or and $not contribute nothing', () => {
    expect(compileFilter({ $or: [{ a: 1 }] }).terms).toEqual([]);
    expect(compileFilter({ $not: { a: 1 } }).terms).toEqual([]);
    expect(compileFilter({}).terms).toEqual([]);
  });
});

describe('documented examples', () => {
  const cases: [string, Record<string, unknown>, unknown, boolean][] = [
    ['{} matches everything', {}, { a: 1 }, true],
    ['{} matches an empty payload', {}, {}, true],
    ['equality on a dotted path', { 'a.b': 'x' }, { a: { b: 'x' } }, true],
    ['1 and 1.0 are equal', { a: 1 }, JSON.parse('{"a": 1.0}'), true],
    ['no coercion "1" vs 1', { a: '1' }, { a: 1 }, false],
    ['no coercion true vs 1', { a: true }, { a: 1 }, false],
    ['null equals null', { a: null }, { a: null }, true],
    ['absent is not null', { a: null }, {}, false],
    ['$ne on absent is true', { a: { $ne: null } }, {}, true],
    ['$nin on absent is true', { a: { $nin: [1] } }, {}, true],
    ['tags: any element equals', { tags: 'red' }, { tags: ['blue', 'red'] }, true],
    ['$ne on an array: no element equals', { tags: { $ne: 'red' } }, { tags: ['blue', 'red'] }, false],
    ['empty array equals nothing', { tags: 'red' }, { tags: [] }, false],
    ['arrays are not walked into', { 'a.b': 1 }, { a: [{ b: 1 }] }, false],
    ['objects are not primitives', { a: 1 }, { a: { b: 1 } }, false],
    ['$in', { a: { $in: [1, 'x'] } }, { a: 'x' }, true],
    ['$gt on numbers', { price: { $gt: 10, $lte: 20 } }, { price: 20 }, true],
    ['$gt on strings, by code units', { s: { $gt: 'Z' } }, { s: 'a' }, true],
    ['$lt type mismatch', { price: { $lt: 10 } }, { price: '5' }, false],
    ['$gte on absent', { price: { $gte: 0 } }, {}, false],
    ['range on array, each operator on its own', { a: { $gt: 10, $lt: 20 } }, { a: [5, 25] }, true],
    ['$exists true with null value', { a: { $exists: true } }, { a: null }, true],
    ['$exists false', { a: { $exists: false } }, { b: 1 }, true],
    ['inherited names are absent', { toString: { $exists: true } }, {}, false],
    ['$and', { $and: [{ a: 1 }, { b: 2 }] }, { a: 1, b: 3 }, false],
    ['$or', { $or: [{ a: 1 }, { b: 2 }] }, { a: 0, b: 2 }, true],
    ['$not', { $not: { a: 1 } }, {}, true],
    ['a non-object payload has no fields', { a: { $exists: false } }, 42, true],
  ];
  for (const [name, f, p, expected] of cases) {
    it(name, () => {
      expect(compileFilter(f).test(p)).toBe(expected);
      expect(refMatches(f, p)).toBe(expected);
    });
  }
});

describe('malformed filters are INVALID_FILTER', () => {
  class Custom {
    a = 1;
  }
  const malformed: [string, unknown][] = [
    ['a number', 5],
    ['a string', 'x'],
    ['null', null],
    ['undefined', undefined],
    ['an array', [{ a: 1 }]],
    ['a boolean', true],
    ['a Date', new Date(0)],
    ['a Map', new Map([['a', 1]])],
    ['a class instance', new Custom()],
    ['an inherited condition', Object.create({ a: 1 })],
    ['undefined condition', { a: undefined }],
    ['NaN', { a: NaN }],
    ['Infinity', { a: Infinity }],
    ['-Infinity in $eq', { a: { $eq: -Infinity } }],
    ['NaN bound', { a: { $gt: NaN } }],
    ['NaN in $in', { a: { $in: [1, NaN] } }],
    ['bigint', { a: 1n }],
    ['symbol', { a: Symbol('s') }],
    ['function', { a: () => 1 }],
    ['non-array $in', { a: { $in: 1 } }],
    ['string $in', { a: { $in: 'abc' } }],
    ['null $nin', { a: { $nin: null } }],
    ['$in of arrays', { a: { $in: [[1]] } }],
    ['$in of objects', { a: { $in: [{}] } }],
    ['unknown field operator', { a: { $regex: 'x' } }],
    ['unknown top-level operator', { $where: 'x' }],
    ['$elemMatch', { a: { $elemMatch: { b: 1 } } }],
    ['empty object condition', { a: {} }],
    ['object literal condition', { a: { b: 1 } }],
    ['operators mixed with a field', { a: { $eq: 1, b: 2 } }],
    ['array condition', { a: [1, 2] }],
    ['empty $or', { $or: [] }],
    ['empty $and', { $and: [] }],
    ['object $or', { $or: { a: 1 } }],
    ['object $and', { $and: { a: 1 } }],
    ['number in $or', { $or: [1] }],
    ['array $not', { $not: [] }],
    ['number $not', { $not: 1 }],
    ['null $not', { $not: null }],
    ['boolean bound', { a: { $gt: true } }],
    ['null bound', { a: { $lte: null } }],
    ['array bound', { a: { $lt: [1] } }],
    ['numeric $exists', { a: { $exists: 1 } }],
    ['string $exists', { a: { $exists: 'yes' } }],
    ['object $eq', { a: { $eq: {} } }],
    ['array $ne', { a: { $ne: [1] } }],
    ['empty path', { '': 1 }],
    ['empty segment', { 'a..b': 1 }],
    ['leading dot', { '.a': 1 }],
    ['trailing dot', { 'a.': 1 }],
    ['an invalid filter deep inside', { $or: [{ a: 1 }, { $and: [{ $not: { b: { $in: 2 } } }] }] }],
    [`nesting deeper than ${FILTER_MAX_DEPTH}`, nestedNot(FILTER_MAX_DEPTH + 1)],
    ['nesting 100,000 deep', nestedNot(100_000)],
    [`more than ${FILTER_MAX_NODES} filters`, { $or: tooMany(() => ({ a: 1 })) }],
    [`more than ${FILTER_MAX_NODES} $in values`, { a: { $in: tooMany((i) => i) } }],
    [`more than ${FILTER_MAX_NODES} fields`, Object.fromEntries(tooMany((i) => [`f${i}`, i]))],
    [
      'a throwing getter',
      Object.defineProperty({}, 'a', {
        enumerable: true,
        get() {
          throw new Error('boom');
        },
      }),
    ],
    [
      'a Proxy that throws',
      new Proxy(
        {},
        {
          ownKeys() {
            throw new Error('boom');
          },
        },
      ),
    ],
  ];
  for (const [name, f] of malformed) {
    it(name, () => {
      expectInvalid(f);
    });
  }

  it('a revoked Proxy', () => {
    const { proxy, revoke } = Proxy.revocable({}, {});
    revoke();
    expectInvalid(proxy);
    expectInvalid({ a: proxy });
  });

  it('the limits themselves are allowed', () => {
    expect(compileFilter(nestedNot(FILTER_MAX_DEPTH)).test({ a: 2 })).toBe(FILTER_MAX_DEPTH % 2 === 0);
    const wide = { a: { $in: Array.from({ length: FILTER_MAX_NODES - 3 }, (_, i) => i) } };
    expect(compileFilter(wide).test({ a: 7 })).toBe(true);
  });

  it('messages name the offending path inside the filter', () => {
    const message = (f: unknown) => expectInvalid(f).message;
    expect(message({ $and: [{ a: 1 }, { price: { $gt: true } }] })).toBe(
      'filter.$and[1].price: $gt needs a number or a string',
    );
    expect(message({ $or: [] })).toBe('filter.$or: expected a non-empty array of filters');
    expect(message({ $not: { $not: { x: { y: 1 } } } })).toBe(
      'filter.$not.$not.x: an object condition must contain only $ operators (no object equality)',
    );
    expect(message({ tags: { $in: ['a', NaN] } })).toBe(
      'filter.tags: $in[1] is not a string, finite number, boolean or null',
    );
    expect(message({ 'a b': { $foo: 1 } })).toBe('filter["a b"]: unknown operator $foo');
    expect(message(5)).toBe('filter: expected a filter object');
  });

  it('arbitrary values either compile or fail with INVALID_FILTER, and compiled ones evaluate', () => {
    const key = fc.constantFrom('a', 'a.b', '', '$and', '$or', '$not', '$in', '$gt', '$eq', '$exists', '__proto__');
    const hostile = fc.object({
      key,
      maxDepth: 4,
      values: [fc.constant(null), fc.boolean(), fc.double(), fc.string({ maxLength: 2 }), fc.constant(undefined)],
      withNullPrototype: true,
    });
    let compiled = 0;
    let refused = 0;
    fc.assert(
      fc.property(fc.oneof(hostile, fc.anything()), payload, (f, p) => {
        try {
          expect(typeof compileFilter(f).test(p)).toBe('boolean');
          compiled++;
        } catch (e) {
          expect(e).toBeInstanceOf(VdbError);
          expect((e as VdbError).code).toBe(ErrorCode.INVALID_FILTER);
          refused++;
        }
      }),
      { seed: SEED, numRuns: 1000 },
    );
    expect(compiled).toBeGreaterThan(0);
    expect(refused).toBeGreaterThan(0);
  });
});

describe('__proto__ and other inherited names are plain field names', () => {
  it('matches own __proto__ and constructor fields from JSON', () => {
    const p = JSON.parse('{"__proto__": {"polluted": 1}, "constructor": {"name": "x"}}');
    const f = compileFilter(JSON.parse('{"__proto__.polluted": 1, "constructor.name": {"$in": ["x"]}}'));
    expect(f.test(p)).toBe(true);
    expect(f.terms).toEqual([
      { path: '__proto__.polluted', kind: 'eq', values: [1] },
      { path: 'constructor.name', kind: 'in', values: ['x'] },
    ]);
  });

  it('a __proto__ field condition compiles like any other', () => {
    const f = compileFilter(JSON.parse('{"__proto__": {"$in": [1, 2]}}'));
    expect(f.test(JSON.parse('{"__proto__": 2}'))).toBe(true);
    expect(f.test({ a: 2 })).toBe(false);
    expect(f.terms).toEqual([{ path: '__proto__', kind: 'in', values: [1, 2] }]);
  });

  it('never reads through the prototype chain', () => {
    for (const name of ['__proto__', 'constructor', 'toString', 'hasOwnProperty', 'constructor.name']) {
      const exists = compileFilter(Object.fromEntries([[name, { $exists: true }]]));
      expect(exists.test({}), name).toBe(false);
      expect(exists.test([]), name).toBe(false);
    }
    expect(compileFilter({ 'constructor.name': 'Object' }).test({})).toBe(false);
    expect(compileFilter({ length: 0 }).test([])).toBe(false);
  });

  it('works on null-prototype filters and payloads', () => {
    const f = Object.assign(Object.create(null) as Record<string, unknown>, { a: { $gte: 1 } });
    const p = Object.assign(Object.create(null) as Record<string, unknown>, { a: 2 });
    expect(compileFilter(f).test(p)).toBe(true);
  });

  it('pollutes nothing', () => {
    const f = JSON.parse(
      '{"__proto__": {"polluted": {"$eq": 1}}, "$and": [{"constructor": {"prototype": {"$exists": true}}}]}',
    );
    expectInvalid(f); // object literals are refused, but reading them must not leak anywhere
    const ok = compileFilter(JSON.parse('{"__proto__.polluted": 1, "constructor.prototype.polluted": {"$ne": 1}}'));
    ok.test(JSON.parse('{"__proto__": {"polluted": 1}}'));
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(Object.hasOwn(Object.prototype, 'polluted')).toBe(false);
    expect(Object.getPrototypeOf(f)).toBe(Object.prototype);
    expect(Object.keys(f)).toEqual(['__proto__', '$and']);
  });
});
