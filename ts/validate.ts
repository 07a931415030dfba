// Validation of what crosses a boundary into the library: ids, vectors,
// payloads and names, with the limits they must keep. Shared by the embedded
// Collection and the wire protocol, so both refuse exactly the same things with
// the same codes. Messages start with the path of the offending field.

import { DIM_MAX, K_MAX } from './core/wasm-index.js';
import type { Metric } from './core/wasm-index.js';
import { ErrorCode, VdbError } from './errors.js';

export type PointId = string | number;
export type Payload = Record<string, unknown>;

export const LIMITS = {
  k: K_MAX,
  payloadBytes: 64 * 1024,
  idBytes: 512,
  scroll: 10_000,
  nameLength: 128,
} as const;

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

export function fail(code: ErrorCode, path: string, problem: string): never {
  throw new VdbError(code, `${path}: ${problem}`);
}

/** A short description of a value for messages, never echoing much of it. */
export function describe(x: unknown): string {
  if (x === null) return 'null';
  if (x === undefined) return 'nothing';
  if (Array.isArray(x)) return `an array of ${x.length}`;
  if (x instanceof Uint8Array) return `a binary of ${x.length} bytes`;
  switch (typeof x) {
    case 'string':
      return x.length <= 40 ? JSON.stringify(x) : `a string of ${x.length} characters`;
    case 'number':
    case 'boolean':
      return String(x);
    case 'object':
      return 'a map';
    default:
      return typeof x;
  }
}

export function isPlainObject(x: unknown): x is Record<string, unknown> {
  if (typeof x !== 'object' || x === null || Array.isArray(x)) return false;
  const proto: unknown = Object.getPrototypeOf(x);
  return proto === Object.prototype || proto === null;
}

/** A point id: a safe integer, or a string of 1 to LIMITS.idBytes UTF-8 bytes (as Collection). */
export function checkId(x: unknown, path: string): PointId {
  if (typeof x === 'number') {
    if (Number.isSafeInteger(x)) return x;
    fail(ErrorCode.INVALID_ID, path, `${x} is not a safe integer`);
  }
  if (typeof x === 'string') {
    const bytes = Buffer.byteLength(x, 'utf8');
    if (bytes >= 1 && bytes <= LIMITS.idBytes) return x;
    fail(ErrorCode.INVALID_ID, path, `string ids must be 1 to ${LIMITS.idBytes} bytes, got ${bytes}`);
  }
  fail(ErrorCode.INVALID_ID, path, `an id is a string or an integer, got ${describe(x)}`);
}

/** Little-endian float32 bytes (any alignment, length a multiple of 4) copied into a new Float32Array. */
export function float32FromBytes(bytes: Uint8Array): Float32Array {
  const out = new Float32Array(bytes.length >>> 2);
  if (LITTLE_ENDIAN) {
    new Uint8Array(out.buffer).set(bytes.subarray(0, out.length * 4));
  } else {
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    for (let i = 0; i < out.length; i++) out[i] = view.getFloat32(i * 4, true);
  }
  return out;
}

/**
 * A vector as a new, aligned Float32Array: from an array of numbers (each
 * rounded to float32), or from a binary of little-endian float32 (a Uint8Array
 * or Buffer of 4·n bytes at any offset). With `dim`, the length must match
 * (DIMENSION_MISMATCH); every component must be a finite float32 (INVALID_VECTOR).
 */
export function parseVector(x: unknown, path: string, dim?: number): Float32Array {
  let out: Float32Array;
  let source: ArrayLike<unknown> | undefined;
  if (x instanceof Uint8Array) {
    if (x.length % 4 !== 0) {
      fail(ErrorCode.INVALID_VECTOR, path, `a binary vector is little-endian float32, but ${x.length} bytes is not a multiple of 4`);
    }
    const n = x.length / 4;
    if (dim !== undefined && n !== dim) {
      fail(ErrorCode.DIMENSION_MISMATCH, path, `expected ${dim} float32 (${dim * 4} bytes), got ${n} (${x.length} bytes)`);
    }
    checkLength(n, path);
    out = float32FromBytes(x);
  } else if (Array.isArray(x) || x instanceof Float32Array) {
    if (dim !== undefined && x.length !== dim) fail(ErrorCode.DIMENSION_MISMATCH, path, `expected ${dim} numbers, got ${x.length}`);
    checkLength(x.length, path);
    out = new Float32Array(x.length);
    for (let i = 0; i < x.length; i++) {
      const c: unknown = x[i];
      if (typeof c !== 'number') fail(ErrorCode.INVALID_VECTOR, `${path}[${i}]`, `expected a number, got ${describe(c)}`);
      out[i] = c;
    }
    source = x;
  } else {
    fail(ErrorCode.INVALID_VECTOR, path, `expected an array of numbers or a binary of little-endian float32, got ${describe(x)}`);
  }
  for (let i = 0; i < out.length; i++) {
    if (!Number.isFinite(out[i])) {
      fail(ErrorCode.INVALID_VECTOR, `${path}[${i}]`, `${String(source ? source[i] : out[i])} is not a finite float32`);
    }
  }
  return out;
}

function checkLength(n: number, path: string): void {
  if (n === 0) fail(ErrorCode.INVALID_VECTOR, path, 'empty vector');
  if (n > DIM_MAX) fail(ErrorCode.INVALID_VECTOR, path, `more than ${DIM_MAX} components`);
}

// Only what JSON keeps exactly, as Collection stores it.
function checkJson(v: unknown, path: string, depth: number): void {
  if (depth > 64) fail(ErrorCode.INVALID_PAYLOAD, path, 'nested deeper than 64 levels');
  if (v === null || typeof v === 'string' || typeof v === 'boolean') return;
  if (typeof v === 'number') {
    if (!Number.isFinite(v)) fail(ErrorCode.INVALID_PAYLOAD, path, `${v} is not a JSON number`);
    return;
  }
  if (Array.isArray(v)) {
    for (let i = 0; i < v.length; i++) checkJson(v[i], `${path}[${i}]`, depth + 1);
    return;
  }
  if (isPlainObject(v)) {
    for (const key of Object.keys(v)) checkJson(v[key], `${path}.${key}`, depth + 1);
    return;
  }
  fail(ErrorCode.INVALID_PAYLOAD, path, `${describe(v)} is not a JSON value`);
}

/** A payload's JSON: null when absent, else a map of JSON values whose JSON is at most LIMITS.payloadBytes. */
export function payloadJson(x: unknown, path: string): string | null {
  if (x === undefined || x === null) return null;
  if (!isPlainObject(x)) fail(ErrorCode.INVALID_PAYLOAD, path, `a payload is a map, got ${describe(x)}`);
  checkJson(x, path, 0);
  const json = JSON.stringify(x);
  const bytes = Buffer.byteLength(json, 'utf8');
  if (bytes > LIMITS.payloadBytes) {
    fail(ErrorCode.PAYLOAD_TOO_LARGE, path, `${bytes} bytes of JSON, the limit is ${LIMITS.payloadBytes}`);
  }
  return json;
}

/** A payload: absent, or a map of JSON values whose JSON is at most LIMITS.payloadBytes. */
export function checkPayload(x: unknown, path: string): Payload | undefined {
  return payloadJson(x, path) === null ? undefined : (x as Payload);
}

/** What a collection's points must fit: its dimension and metric. */
export interface PointSchema {
  dim: number;
  metric: Metric;
}

/** A point as a collection stores it. */
export interface CheckedPoint {
  id: PointId;
  vector: Float32Array;
  payload?: Payload;
  /** The payload's JSON, null when absent. */
  payloadJson: string | null;
}

/** A vector (stored or a query) of a collection: parseVector with its dimension; a cosine collection refuses the zero vector (it has no direction). */
export function checkVector(x: unknown, path: string, schema: PointSchema): Float32Array {
  const v = parseVector(x, path, schema.dim);
  if (schema.metric === 'cosine' && v.every((c) => c === 0)) fail(ErrorCode.INVALID_VECTOR, path, 'a zero vector has no cosine');
  return v;
}

/**
 * The one check of a point to be written, used by the embedded Collection and
 * by the coordinator before it acknowledges a write: what one accepts, the
 * other applies. An own field that is null counts as absent.
 */
export function checkPoint(x: unknown, path: string, schema: PointSchema): CheckedPoint {
  if (typeof x !== 'object' || x === null || Array.isArray(x) || x instanceof Uint8Array) {
    fail(ErrorCode.INVALID_ARGUMENT, path, `expected a map, got ${describe(x)}`);
  }
  const o = x as Record<string, unknown>;
  const field = (key: string) => (Object.hasOwn(o, key) && o[key] !== null ? o[key] : undefined);
  const id = checkId(field('id'), `${path}.id`);
  const vector = checkVector(field('vector'), `${path}.vector`, schema);
  const payload = field('payload');
  const json = payloadJson(payload, `${path}.payload`);
  return json === null ? { id, vector, payloadJson: null } : { id, vector, payload: payload as Payload, payloadJson: json };
}

const NAME_RE = new RegExp(`^[A-Za-z0-9-][A-Za-z0-9_-]{0,${LIMITS.nameLength - 1}}$`);

/** A collection name, also a NATS subject token: 1 to 128 of [A-Za-z0-9_-], not starting with `_`. */
export function checkCollectionName(x: unknown, path = 'name'): string {
  if (typeof x !== 'string' || !NAME_RE.test(x)) {
    fail(
      ErrorCode.INVALID_ARGUMENT,
      path,
      `expected 1 to ${LIMITS.nameLength} letters, digits, _ or - (not starting with _), got ${describe(x)}`,
    );
  }
  return x;
}

