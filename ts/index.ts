export { WasmIndex, AllowSet, K_MAX, DIM_MAX } from './core/wasm-index.js';
export type { Metric, VectorLike, IndexOptions, SearchOptions, SearchResult } from './core/wasm-index.js';
export { VdbError, ErrorCode } from './errors.js';
export { Collection, LIMITS } from './collection.js';
export type { Point, StoredPoint, Hit, OpenOptions, SearchOptions as CollectionSearchOptions, ScrollOptions, PointId, Payload } from './collection.js';
export { compileFilter } from './filter.js';
export type { Filter } from './filter.js';
export { VdbClient } from './client.js';
export type { Transport, ClientOptions, ClusterSearchOptions, WriteResult } from './client.js';
