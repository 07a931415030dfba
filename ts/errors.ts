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
  INTERNAL: 'INTERNAL',
} as const;

export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

export class VdbError extends Error {
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string) {
    super(message);
    this.name = 'VdbError';
    this.code = code;
  }
}
