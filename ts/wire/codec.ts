// Body codecs of the wire protocol (docs/protocol.md): MessagePack by default,
// JSON when the request says `Content-Type: application/json`. Only types every
// language has cross the wire: nil, booleans, numbers, strings, binaries,
// arrays and maps with string keys. msgpackr is used with its JS-specific
// features turned off; the few things it would still do its own way (typed
// arrays, integers beyond 32 bits, undefined) are converted explicitly here,
// and whatever an incoming message decodes to beyond plain data (msgpackr's
// extensions for Date, Set, BigInt, typed arrays, ...) is refused.

import { Packr, Unpackr } from 'msgpackr';
import { ErrorCode, VdbError } from '../errors.js';
import { float32FromBytes } from '../validate.js';

export { float32FromBytes };

/** Bodies larger than this are refused (REQUEST_TOO_LARGE) unless the caller sets another limit. */
export const MAX_BODY_BYTES = 8 * 1024 * 1024;
/** Arrays and maps nested deeper than this are refused: far above what any request needs
 * (a 64-level payload inside a point inside a batch), far below what overflows a stack. */
export const MAX_DEPTH = 128;

export const CONTENT_TYPE_JSON = 'application/json';
export const CONTENT_TYPE_MSGPACK = 'application/msgpack';

/** Whether a `Content-Type` header value asks for JSON (parameters such as charset ignored). */
export function isJsonContentType(value: string | null | undefined): boolean {
  return typeof value === 'string' && value.split(';')[0].trim().toLowerCase() === CONTENT_TYPE_JSON;
}

// Standard MessagePack only:
// - useRecords false: no msgpackr record extension, objects are maps;
// - variableMapSize: the smallest map header (fixmap/map16/map32), as every
//   other encoder writes it ({a: 1} is 81 a1 61 01, not de 00 01 a1 61 01);
// - useFloat32 0: non-integers are float64, never silently rounded;
// - moreTypes / structuredClone / bundleStrings off: no extension types.
const packr = new Packr({
  useRecords: false,
  variableMapSize: true,
  useFloat32: 0,
  moreTypes: false,
  structuredClone: false,
  bundleStrings: false,
  encodeUndefinedAsNil: true,
});

// Maps decode to JS Maps (mapsAsObjects false) so that keys are checked and
// copied here: msgpackr's own object mode renames a `__proto__` key and
// stringifies non-string keys. int64/uint64 decode to numbers (an id beyond
// 2^53 then fails the safe-integer check, as it would from JSON).
const unpackr = new Unpackr({
  useRecords: false,
  mapsAsObjects: false,
  int64AsType: 'number',
  structuredClone: false,
});

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
const utf8 = new TextDecoder('utf-8', { fatal: true });
const utf8Encoder = new TextEncoder();

/** A Float32Array as the bytes of little-endian float32 (a view when the host is little-endian). */
export function float32Bytes(v: Float32Array): Uint8Array {
  if (LITTLE_ENDIAN) return new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
  const out = new Uint8Array(v.length * 4);
  const view = new DataView(out.buffer);
  for (let i = 0; i < v.length; i++) view.setFloat32(i * 4, v[i], true);
  return out;
}

function isPlainObject(x: object): x is Record<string, unknown> {
  const proto: unknown = Object.getPrototypeOf(x);
  return proto === Object.prototype || proto === null;
}

/** Sets own property `key` even when it is `__proto__` (as JSON.parse does). */
function setOwn(target: Record<string, unknown>, key: string, value: unknown): void {
  if (key === '__proto__') Object.defineProperty(target, key, { value, enumerable: true, writable: true, configurable: true });
  else target[key] = value;
}

function typeName(x: unknown): string {
  if (x === null) return 'null';
  if (typeof x !== 'object') return typeof x;
  return (x as object).constructor?.name ?? 'object';
}

// Where a value sits in the body, kept as a stack of keys and indexes while
// walking it: the path string is only built for an error message.
type Trail = (string | number)[];

function pathOf(trail: Trail): string {
  let out = 'body';
  for (const step of trail) out += typeof step === 'number' ? `[${step}]` : `.${step}`;
  return out;
}

// ------------------------------------------------------------------ encode

function encodeError(trail: Trail, problem: string): VdbError {
  return new VdbError(ErrorCode.INTERNAL, `cannot encode reply: ${pathOf(trail)}: ${problem}`);
}

/**
 * The body as plain data for the chosen format: Float32Array → bin of
 * little-endian float32 (JSON: array of numbers); other typed arrays → arrays
 * of numbers; Uint8Array → bin (JSON: base64 string); safe integers beyond 32
 * bits → BigInt, which msgpackr writes as int64 (it would write float64);
 * undefined properties dropped and undefined array elements null, as
 * JSON.stringify does. Anything else that is not plain data is a bug.
 */
function toWire(v: unknown, json: boolean, trail: Trail): unknown {
  switch (typeof v) {
    case 'string':
    case 'boolean':
      return v;
    case 'number':
      if (!json && Number.isSafeInteger(v) && (v > 0xffffffff || v < -0x80000000)) return BigInt(v);
      return v;
    case 'undefined':
      return null;
    case 'bigint':
      if (v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER)) return toWire(Number(v), json, trail);
      throw encodeError(trail, 'bigint beyond 2^53');
    case 'object':
      break;
    default:
      throw encodeError(trail, `${typeof v} is not data`);
  }
  if (v === null) return null;
  if (trail.length >= MAX_DEPTH) throw encodeError(trail, `nested deeper than ${MAX_DEPTH} levels`);
  if (v instanceof Float32Array) return json ? Array.from(v) : float32Bytes(v);
  if (v instanceof Uint8Array) return json ? Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('base64') : v;
  if (ArrayBuffer.isView(v) && !(v instanceof DataView) && !(v instanceof BigInt64Array) && !(v instanceof BigUint64Array)) {
    return Array.from(v as unknown as ArrayLike<number>);
  }
  if (Array.isArray(v)) {
    const out = new Array<unknown>(v.length);
    for (let i = 0; i < v.length; i++) {
      trail.push(i);
      out[i] = toWire(v[i], json, trail);
      trail.pop();
    }
    return out;
  }
  if (!isPlainObject(v)) throw encodeError(trail, `${typeName(v)} is not plain data`);
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(v)) {
    const x = v[key];
    if (x === undefined) continue;
    trail.push(key);
    setOwn(out, key, toWire(x, json, trail));
    trail.pop();
  }
  return out;
}

/** Encodes a body: MessagePack, or JSON (UTF-8) when `json`. Throws INTERNAL on values that are not plain data. */
export function encode(body: unknown, json: boolean): Uint8Array {
  const wire = toWire(body, json, []);
  if (json) return utf8Encoder.encode(JSON.stringify(wire));
  return packr.pack(wire);
}

// ------------------------------------------------------------------ decode

function badRequest(message: string): VdbError {
  return new VdbError(ErrorCode.BAD_REQUEST, message);
}

/**
 * msgpackr's result as plain data: Maps with string keys → plain objects,
 * binaries stay Uint8Array; any extension type it decoded (undefined, Date,
 * Set, BigInt, RegExp, Error, typed arrays other than bytes, 0xc1) is refused.
 */
function fromMsgpack(v: unknown, trail: Trail): unknown {
  if (v === null || typeof v === 'string' || typeof v === 'boolean' || typeof v === 'number') return v;
  if (typeof v !== 'object') throw badRequest(`${pathOf(trail)}: unsupported MessagePack type (${typeName(v)})`);
  if (trail.length >= MAX_DEPTH) throw badRequest(`${pathOf(trail)}: nested deeper than ${MAX_DEPTH} levels`);
  if (Array.isArray(v)) {
    for (let i = 0; i < v.length; i++) {
      const x: unknown = v[i];
      if (typeof x !== 'object' && typeof x !== 'undefined' && typeof x !== 'bigint') continue;
      trail.push(i);
      v[i] = fromMsgpack(x, trail);
      trail.pop();
    }
    return v;
  }
  if (v instanceof Map) {
    const out: Record<string, unknown> = {};
    for (const [key, x] of v) {
      if (typeof key !== 'string') throw badRequest(`${pathOf(trail)}: map keys must be strings, got ${typeName(key)}`);
      trail.push(key);
      setOwn(out, key, fromMsgpack(x, trail));
      trail.pop();
    }
    return out;
  }
  if (v instanceof Uint8Array) return v;
  // Record-extension maps come out as objects already.
  if (isPlainObject(v)) {
    for (const key of Object.keys(v)) {
      trail.push(key);
      v[key] = fromMsgpack(v[key], trail);
      trail.pop();
    }
    return v;
  }
  throw badRequest(`${pathOf(trail)}: unsupported MessagePack extension (${typeName(v)})`);
}

/** JSON.parse makes only plain data; this only bounds its depth, like MessagePack's. */
function checkDepth(v: unknown, depth: number): void {
  if (typeof v !== 'object' || v === null) return;
  if (depth >= MAX_DEPTH) throw badRequest(`body: nested deeper than ${MAX_DEPTH} levels`);
  for (const x of Array.isArray(v) ? v : Object.values(v)) {
    if (typeof x === 'object' && x !== null) checkDepth(x, depth + 1);
  }
}

function msgpackProblem(e: unknown): string {
  const message = e instanceof Error ? e.message : String(e);
  if (e instanceof RangeError && /call stack/i.test(message)) return 'nested too deeply';
  if (message.startsWith('Data read, but end of buffer not reached')) return 'trailing bytes after the value';
  if ((e as { incomplete?: boolean } | null)?.incomplete) return 'truncated';
  return message.slice(0, 120);
}

/**
 * Decodes a request or reply body. An empty body is an empty map. Bodies over
 * `maxBytes` are refused with REQUEST_TOO_LARGE before any decoding; anything
 * that is not one complete value of plain data is refused with BAD_REQUEST.
 */
export function decode(bytes: Uint8Array, json: boolean, maxBytes: number = MAX_BODY_BYTES): unknown {
  if (!(bytes instanceof Uint8Array)) throw badRequest('body: expected bytes');
  if (bytes.length > maxBytes) {
    throw new VdbError(ErrorCode.REQUEST_TOO_LARGE, `body is ${bytes.length} bytes, the limit is ${maxBytes}`);
  }
  if (bytes.length === 0) return {};
  if (json) {
    let value: unknown;
    try {
      value = JSON.parse(utf8.decode(bytes));
    } catch (e) {
      const problem = e instanceof TypeError ? 'not UTF-8' : e instanceof Error ? e.message.slice(0, 120) : 'unreadable';
      throw badRequest(`body is not valid JSON: ${problem}`);
    }
    checkDepth(value, 0);
    return value;
  }
  let raw: unknown;
  try {
    raw = unpackr.unpack(bytes);
  } catch (e) {
    throw badRequest(`body is not valid MessagePack: ${msgpackProblem(e)}`);
  }
  return fromMsgpack(raw, []);
}
