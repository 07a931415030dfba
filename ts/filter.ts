// The payload filter language (docs/filters.md). A filter is parsed and
// validated once into a small tree, which is then turned into closures for
// per-point evaluation and mined for the conjunctive terms a planner can serve
// from a payload index. Nothing is re-parsed per point.

import { ErrorCode, VdbError } from './errors.js';
import { isPlainObject } from './validate.js';

/** A filter in its JSON form. */
export type Filter = Record<string, unknown>;

export type Primitive = string | number | boolean | null;

/**
 * A constraint every matching payload satisfies, on the value at `path` (or,
 * for an array value, on at least one element):
 * - `eq`: equals `values[0]`;
 * - `in`: equals one of `values` (empty: nothing matches);
 * - `range`: exactly one of `gt`/`gte`/`lt`/`lte` is set, compared number to
 *   number or string to string.
 */
export interface FieldTerm {
  readonly path: string;
  readonly kind: 'eq' | 'in' | 'range';
  readonly values?: Primitive[];
  readonly gt?: number | string;
  readonly gte?: number | string;
  readonly lt?: number | string;
  readonly lte?: number | string;
}

export interface CompiledFilter {
  test(payload: unknown): boolean;
  readonly terms: FieldTerm[];
  /** True when the filter is exactly the conjunction of its terms: a payload
   * passes iff it satisfies every term, so a planner that serves all of them
   * from indexes need not call `test`. */
  readonly exact: boolean;
}

/** Filter objects nested through `$and`/`$or`/`$not`, the top level being 1. */
export const FILTER_MAX_DEPTH = 32;
/** Filter objects, conditions, operators and `$in`/`$nin` elements, all told. */
export const FILTER_MAX_NODES = 10_000;

type RangeOp = '$gt' | '$gte' | '$lt' | '$lte';

type Op =
  | { readonly op: '$eq' | '$ne'; readonly value: Primitive }
  | { readonly op: '$in' | '$nin'; readonly values: readonly Primitive[] }
  | { readonly op: RangeOp; readonly bound: number | string }
  | { readonly op: '$exists'; readonly present: boolean };

type Node =
  | { readonly kind: 'and' | 'or'; readonly children: readonly Node[] }
  | { readonly kind: 'not'; readonly child: Node }
  | { readonly kind: 'field'; readonly path: string; readonly ops: readonly Op[] };

type Predicate = (payload: unknown) => boolean;

/** Validates `filter` completely and compiles it; throws INVALID_FILTER if malformed. */
export function compileFilter(filter: unknown): CompiledFilter {
  let tree: Node;
  try {
    tree = parseFilter(filter, 'filter', 1, { nodes: 0 });
  } catch (e) {
    if (e instanceof VdbError) throw e;
    // Only a hostile filter (a Proxy, a throwing getter) can make reading it
    // throw; that is a malformed filter, not a crash.
    throw invalid('filter', 'could not be read');
  }
  return { test: toPredicate(tree), terms: termsOf(tree), exact: isConjunctionOfTerms(tree) };
}

// ---------------------------------------------------------------- parsing

interface Budget {
  nodes: number;
}

function invalid(at: string, problem: string): VdbError {
  return new VdbError(ErrorCode.INVALID_FILTER, `${at}: ${problem}`);
}

function spend(budget: Budget, count: number, at: string): void {
  budget.nodes += count;
  if (budget.nodes > FILTER_MAX_NODES) throw invalid(at, `more than ${FILTER_MAX_NODES} nodes`);
}

/** Where a key sits, for messages: `.key` when readable, else a quoted `["key"]`. */
function keyAt(at: string, key: string): string {
  return /^[\w$.-]+$/.test(key) ? `${at}.${key}` : `${at}[${JSON.stringify(key)}]`;
}

/**
 * Only plain data objects, as JSON.parse makes them: arrays, class instances,
 * Maps and Dates are not filters, and their prototypes are never consulted.
 */
function isPrimitive(x: unknown): x is Primitive {
  return (
    x === null ||
    typeof x === 'string' ||
    typeof x === 'boolean' ||
    (typeof x === 'number' && Number.isFinite(x))
  );
}

/** One filter object: the AND of its keys, each a logical operator or a field path. */
function parseFilter(x: unknown, at: string, depth: number, budget: Budget): Node {
  if (depth > FILTER_MAX_DEPTH) throw invalid(at, `nested deeper than ${FILTER_MAX_DEPTH} levels`);
  if (!isPlainObject(x)) throw invalid(at, 'expected a filter object');
  spend(budget, 1, at);
  const children: Node[] = [];
  for (const key of Object.keys(x)) {
    const keyPath = keyAt(at, key);
    spend(budget, 1, keyPath);
    children.push(parseEntry(key, x[key], keyPath, depth, budget));
  }
  return children.length === 1 ? children[0] : { kind: 'and', children };
}

function parseEntry(key: string, value: unknown, at: string, depth: number, budget: Budget): Node {
  switch (key) {
    case '$and':
    case '$or':
      return { kind: key === '$and' ? 'and' : 'or', children: parseFilterList(value, at, depth, budget) };
    case '$not':
      return { kind: 'not', child: parseFilter(value, at, depth + 1, budget) };
    default:
      if (key.startsWith('$')) throw invalid(at, `unknown operator ${key}`);
      return { kind: 'field', path: parsePath(key, at), ops: parseCondition(value, at, budget) };
  }
}

function parseFilterList(x: unknown, at: string, depth: number, budget: Budget): Node[] {
  if (!Array.isArray(x) || x.length === 0) throw invalid(at, 'expected a non-empty array of filters');
  const list: Node[] = [];
  for (let i = 0; i < x.length; i++) list.push(parseFilter(x[i], `${at}[${i}]`, depth + 1, budget));
  return list;
}

/** A dotted path; an empty segment (`a..b`, `.a`, `a.`) names nothing and is refused. */
function parsePath(key: string, at: string): string {
  if (key.split('.').some((segment) => segment === '')) throw invalid(at, 'empty segment in field path');
  return key;
}

/** A field's condition: a primitive (equality) or an object of `$` operators. */
function parseCondition(x: unknown, at: string, budget: Budget): Op[] {
  if (isPrimitive(x)) return [{ op: '$eq', value: x }];
  if (typeof x === 'number') throw invalid(at, 'numbers must be finite');
  if (!isPlainObject(x)) throw invalid(at, 'expected a string, finite number, boolean, null or operator object');
  const names = Object.keys(x);
  // Deep object equality is not part of the language: an object must be all operators.
  if (names.length === 0 || !names.every((name) => name.startsWith('$'))) {
    throw invalid(at, 'an object condition must contain only $ operators (no object equality)');
  }
  spend(budget, names.length, at);
  return names.map((name) => parseOperator(name, x[name], at, budget));
}

function parseOperator(name: string, arg: unknown, at: string, budget: Budget): Op {
  switch (name) {
    case '$eq':
    case '$ne':
      if (!isPrimitive(arg)) throw invalid(at, `${name} needs a string, finite number, boolean or null`);
      return { op: name, value: arg };
    case '$in':
    case '$nin':
      return { op: name, values: parsePrimitiveList(name, arg, at, budget) };
    case '$gt':
    case '$gte':
    case '$lt':
    case '$lte':
      if (!(typeof arg === 'string' || (typeof arg === 'number' && Number.isFinite(arg)))) {
        throw invalid(at, `${name} needs a number or a string`);
      }
      return { op: name, bound: arg };
    case '$exists':
      if (typeof arg !== 'boolean') throw invalid(at, '$exists needs a boolean');
      return { op: name, present: arg };
    default:
      throw invalid(at, `unknown operator ${name}`);
  }
}

function parsePrimitiveList(name: string, x: unknown, at: string, budget: Budget): Primitive[] {
  if (!Array.isArray(x)) throw invalid(at, `${name} needs an array`);
  spend(budget, x.length, at);
  const values: Primitive[] = [];
  for (let i = 0; i < x.length; i++) {
    const v: unknown = x[i];
    if (!isPrimitive(v)) throw invalid(at, `${name}[${i}] is not a string, finite number, boolean or null`);
    values.push(v);
  }
  return values;
}

// ------------------------------------------------------------- evaluation

/** Marks a path that leads nowhere, distinct from every payload value (including null). */
const ABSENT: unique symbol = Symbol('absent');

/**
 * Reads a dotted path through own properties of plain objects only, so
 * `__proto__` or `constructor` are ordinary names and arrays are not indexed.
 */
function pathReader(path: string): (payload: unknown) => unknown {
  const segments = path.split('.');
  return (payload) => {
    let current = payload;
    for (const segment of segments) {
      if (!isPlainObject(current) || !Object.hasOwn(current, segment)) return ABSENT;
      current = current[segment];
    }
    return current;
  };
}

/** A field value matches when it, or for an array value any element, passes. */
function anyValue(test: (element: unknown) => boolean): (value: unknown) => boolean {
  return (value) => {
    if (value === ABSENT) return false;
    if (!Array.isArray(value)) return test(value);
    for (const element of value) if (test(element)) return true;
    return false;
  };
}

/** Number to number or string to string (by UTF-16 code units); any other pairing fails. */
function rangeTest(op: RangeOp, bound: number | string): (element: unknown) => boolean {
  const comparable = (e: unknown): e is number | string => typeof e === typeof bound;
  switch (op) {
    case '$gt':
      return (e) => comparable(e) && e > bound;
    case '$gte':
      return (e) => comparable(e) && e >= bound;
    case '$lt':
      return (e) => comparable(e) && e < bound;
    case '$lte':
      return (e) => comparable(e) && e <= bound;
  }
}

/** `$ne`/`$nin` are the negations of `$eq`/`$in`, so an absent field satisfies them. */
function opTest(op: Op): (value: unknown) => boolean {
  switch (op.op) {
    case '$eq':
    case '$ne': {
      const target = op.value;
      const eq = anyValue((e) => e === target);
      return op.op === '$eq' ? eq : (v) => !eq(v);
    }
    case '$in':
    case '$nin': {
      // Primitives only, none NaN: Set membership is exactly `===` on them.
      const set = new Set<unknown>(op.values);
      const member = anyValue((e) => set.has(e));
      return op.op === '$in' ? member : (v) => !member(v);
    }
    case '$exists': {
      const present = op.present;
      return (v) => (v !== ABSENT) === present;
    }
    default:
      return anyValue(rangeTest(op.op, op.bound));
  }
}

function allOf<T>(tests: readonly ((x: T) => boolean)[]): (x: T) => boolean {
  if (tests.length === 1) return tests[0];
  return (x) => {
    for (const t of tests) if (!t(x)) return false;
    return true;
  };
}

function anyOf<T>(tests: readonly ((x: T) => boolean)[]): (x: T) => boolean {
  if (tests.length === 1) return tests[0];
  return (x) => {
    for (const t of tests) if (t(x)) return true;
    return false;
  };
}

function toPredicate(node: Node): Predicate {
  switch (node.kind) {
    case 'and':
      return allOf(node.children.map(toPredicate));
    case 'or':
      return anyOf(node.children.map(toPredicate));
    case 'not': {
      const inner = toPredicate(node.child);
      return (p) => !inner(p);
    }
    case 'field': {
      // The path is read once per point, however many operators test it.
      const read = pathReader(node.path);
      const test = allOf(node.ops.map(opTest));
      return (p) => test(read(p));
    }
  }
}

// ------------------------------------------------------------------ terms

/**
 * The constraints on the conjunctive spine (top level and `$and`, through any
 * number of `$and`s). Under `$or`/`$not` nothing is implied for every match.
 * Range bounds become one term each: operators are tested independently on
 * array values, so `[5, 25]` matches `{ $gt: 10, $lt: 20 }` without any one
 * element lying in (10, 20), and a combined term would wrongly exclude it.
 */
function termsOf(node: Node): FieldTerm[] {
  switch (node.kind) {
    case 'and':
      return node.children.flatMap(termsOf);
    case 'field':
      return node.ops.flatMap((op) => opTerm(node.path, op));
    default:
      return [];
  }
}

function isConjunctionOfTerms(node: Node): boolean {
  switch (node.kind) {
    case 'and':
      return node.children.every(isConjunctionOfTerms);
    case 'field':
      return node.ops.every((op) => opTerm(node.path, op).length === 1);
    default:
      return false;
  }
}

function opTerm(path: string, op: Op): FieldTerm[] {
  switch (op.op) {
    case '$eq':
      return [{ path, kind: 'eq', values: [op.value] }];
    case '$in':
      return [{ path, kind: 'in', values: [...op.values] }];
    case '$gt':
      return [{ path, kind: 'range', gt: op.bound }];
    case '$gte':
      return [{ path, kind: 'range', gte: op.bound }];
    case '$lt':
      return [{ path, kind: 'range', lt: op.bound }];
    case '$lte':
      return [{ path, kind: 'range', lte: op.bound }];
    default:
      return [];
  }
}
