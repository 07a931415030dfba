export { WasmIndex, AllowSet, K_MAX, DIM_MAX } from './core/wasm-index.js';
export type { Metric, VectorLike, IndexOptions, SearchOptions, SearchResult } from './core/wasm-index.js';
export { VdbError, ErrorCode } from './errors.js';
