// Every error the library raises is a VdbError with a stable string code, so
// callers (and the wire protocol) can branch on the code, not the message.

export const ErrorCode = {
  INVALID_ARGUMENT: 'INVALID_ARGUMENT',
  DIMENSION_MISMATCH: 'DIMENSION_MISMATCH',
  INVALID_VECTOR: 'INVALID_VECTOR',
  INVALID_K: 'INVALID_K',
  INVALID_EF: 'INVALID_EF',
  UNKNOWN_SLOT: 'UNKNOWN_SLOT',
  OUT_OF_MEMORY: 'OUT_OF_MEMORY',
  CORRUPT_INDEX: 'CORRUPT_INDEX',
  INVALID_FILTER: 'INVALID_FILTER',
  INVALID_PARTITIONER: 'INVALID_PARTITIONER',
  INVALID_ID: 'INVALID_ID',
  INVALID_PAYLOAD: 'INVALID_PAYLOAD',
  PAYLOAD_TOO_LARGE: 'PAYLOAD_TOO_LARGE',
  COLLECTION_NOT_FOUND: 'COLLECTION_NOT_FOUND',
  COLLECTION_EXISTS: 'COLLECTION_EXISTS',
  SCHEMA_MISMATCH: 'SCHEMA_MISMATCH',
  CLOSED: 'CLOSED',
  LOCKED: 'LOCKED',
  STORAGE: 'STORAGE',
  INTERNAL: 'INTERNAL',
  // Wire protocol (ts/wire, docs/protocol.md):
  /** The body cannot be decoded (bad MessagePack/JSON, unsupported type) or is not a map. */
  BAD_REQUEST: 'BAD_REQUEST',
  /** The body is larger than the accepted maximum; refused before decoding. */
  REQUEST_TOO_LARGE: 'REQUEST_TOO_LARGE',
  /** The subject names no operation this service serves. */
  UNKNOWN_ENDPOINT: 'UNKNOWN_ENDPOINT',
  /** The operation did not complete within its deadline; a write may still be applied. */
  TIMEOUT: 'TIMEOUT',
  /** The service cannot serve the request now (no metadata, no coordinator, shutting down); retry. */
  UNAVAILABLE: 'UNAVAILABLE',
  /** A shard the request needs has no live replica (or its log refused the write); retry. */
  SHARD_UNAVAILABLE: 'SHARD_UNAVAILABLE',
  /** A write would take a shard past a limit of what its replicas can hold
   * (index memory, points, free disk); it was refused and not applied. */
  RESOURCE_EXHAUSTED: 'RESOURCE_EXHAUSTED',
  /** The connection's user may not call this operation (its role, or its collections); nothing was done. */
  PERMISSION_DENIED: 'PERMISSION_DENIED',
  /** HTTP only (the web console): the request carries no login token, or a wrong one. */
  UNAUTHENTICATED: 'UNAUTHENTICATED',
  /** This replica has not applied the write the request must see within its wait; another replica may have. */
  LAGGING: 'LAGGING',
  /** Metadata changed between reading and writing it (a compare-and-set lost); retry. */
  CONFLICT: 'CONFLICT',
  /** A backup file (`vdb restore`) is damaged, truncated or not a backup; nothing was restored. */
  CORRUPT_BACKUP: 'CORRUPT_BACKUP',
} as const;

export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

/** Codes that describe the request itself: every replica would answer the same,
 * so asking another one is pointless. Any other error a replica answers may be
 * its own (a fault, a restart, a lag) and another replica is asked. */
const REQUEST_ERRORS: ReadonlySet<string> = new Set<ErrorCode>([
  ErrorCode.BAD_REQUEST, ErrorCode.REQUEST_TOO_LARGE, ErrorCode.INVALID_ARGUMENT, ErrorCode.DIMENSION_MISMATCH,
  ErrorCode.INVALID_VECTOR, ErrorCode.INVALID_K, ErrorCode.INVALID_EF, ErrorCode.INVALID_FILTER, ErrorCode.INVALID_ID,
  ErrorCode.INVALID_PAYLOAD, ErrorCode.PAYLOAD_TOO_LARGE,
]);

export function isRequestError(code: string): boolean {
  return REQUEST_ERRORS.has(code);
}

/** Codes that say something went wrong inside the service (a bug, storage, memory): worth an operator's look. */
const FAULTS: ReadonlySet<string> = new Set<ErrorCode>([
  ErrorCode.INTERNAL, ErrorCode.STORAGE, ErrorCode.CORRUPT_INDEX, ErrorCode.UNKNOWN_SLOT, ErrorCode.OUT_OF_MEMORY,
]);

export function isFault(code: string): boolean {
  return FAULTS.has(code);
}

export class VdbError extends Error {
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string) {
    super(message);
    this.name = 'VdbError';
    this.code = code;
  }
}
