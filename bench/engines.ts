// The engines a benchmark compares, behind one shape. Each gets its inputs in
// its native form before any clock starts: ours Float32Array rows, hnswlib-node
// number[] rows.

import { createRequire } from 'node:module';
import { readFileSync, writeFileSync } from 'node:fs';
import { WasmIndex } from '../ts/index.js';
import type { Metric } from '../ts/index.js';

export interface EngineParams {
  dim: number;
  metric: Metric;
  m: number;
  efConstruction: number;
  capacity: number;
  /** Seed of the engine's level generator: a build is one draw of the graph. */
  seed: number;
}

export interface Engine {
  name: string;
  /** Converts one row into the engine's native query/insert form (untimed). */
  prepare(row: Float32Array): unknown;
  add(prepared: unknown, label: number): void;
  setEf(ef: number): void;
  /** k nearest labels of a prepared query. */
  search(prepared: unknown, k: number): ArrayLike<number>;
  save(path: string): void;
}

export interface EngineKind {
  create(p: EngineParams): Engine;
  load(p: EngineParams, path: string): Engine;
}

function wrapOurs(idx: WasmIndex, name = 'vdb-wasm'): Engine {
  let ef = 64;
  return {
    name,
    prepare: (row) => row,
    // Slots are handed out in insertion order on a fresh index, so slot = label.
    add: (v) => { idx.add(v as Float32Array); },
    setEf: (e) => { ef = e; },
    search: (q, k) => idx.search(q as Float32Array, k, { ef: Math.max(ef, k) }).ids,
    save: (path) => writeFileSync(path, idx.save()),
  };
}

const ours: EngineKind = {
  create: (p) => wrapOurs(WasmIndex.create({ dim: p.dim, metric: p.metric, m: p.m, efConstruction: p.efConstruction, capacity: p.capacity, seed: p.seed })),
  load: (_p, path) => wrapOurs(WasmIndex.load(readFileSync(path))),
};

// SQ8 codes in the graph, f32 vectors host-side to re-rank `ef` candidates.
const oursSq8: EngineKind = {
  create: (p) => wrapOurs(WasmIndex.create({ dim: p.dim, metric: p.metric, m: p.m, efConstruction: p.efConstruction, capacity: p.capacity, quantization: { kind: 'sq8' } }), 'vdb-wasm-sq8'),
  load: (_p, path) => wrapOurs(WasmIndex.load(readFileSync(path)), 'vdb-wasm-sq8'),
};

interface HnswIndex {
  initIndex(max: number, m: number, efc: number, seed: number): void;
  readIndexSync(path: string): void;
  writeIndexSync(path: string): void;
  addPoint(p: number[], label: number): void;
  setEf(ef: number): void;
  searchKnn(q: number[], k: number): { neighbors: number[]; distances: number[] };
}

function hnswNew(p: EngineParams): HnswIndex {
  const require = createRequire(import.meta.url);
  const { HierarchicalNSW } = require('hnswlib-node') as { HierarchicalNSW: new (space: string, dim: number) => HnswIndex };
  return new HierarchicalNSW(p.metric, p.dim);
}

function wrapHnsw(idx: HnswIndex): Engine {
  return {
    name: 'hnswlib-node',
    prepare: (row) => Array.from(row),
    add: (v, label) => idx.addPoint(v as number[], label),
    setEf: (e) => idx.setEf(e),
    search: (q, k) => idx.searchKnn(q as number[], k).neighbors,
    save: (path) => idx.writeIndexSync(path),
  };
}

const hnswlib: EngineKind = {
  create: (p) => {
    const idx = hnswNew(p);
    idx.initIndex(p.capacity, p.m, p.efConstruction, p.seed);
    return wrapHnsw(idx);
  },
  load: (p, path) => {
    const idx = hnswNew(p);
    idx.readIndexSync(path);
    return wrapHnsw(idx);
  },
};

export const ENGINES: Record<string, EngineKind> = { 'vdb-wasm': ours, 'vdb-wasm-sq8': oursSq8, 'hnswlib-node': hnswlib };
