// A Fashion-MNIST subset for tests, read from the Debian package
// dataset-fashion-mnist with vdb's own IDX reader: the first `base` training
// images and the first `queries` test images, as float32 rows of 784. Fails
// with the install command when the package is missing (tests never skip).

import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { openReader } from '../cluster/readers.js';

export const FASHION_DIR = process.env.VDB_FASHION_IDX_DIR ?? '/usr/share/datasets/fashion-mnist';
export const FASHION_DIM = 784;

function rows(file: string, n: number): Float32Array {
  const path = join(FASHION_DIR, file);
  if (!existsSync(path)) {
    throw new Error(`${path} is missing: the Fashion-MNIST tests read the Debian package dataset-fashion-mnist — install it with: apt-get install -y dataset-fashion-mnist`);
  }
  const r = openReader(path);
  try {
    const out = new Float32Array(n * r.dim);
    const b = r.next(n);
    if (!b || b.points.length < n) throw new Error(`${path}: fewer than ${n} rows`);
    b.points.forEach((p, i) => out.set(p.vector as Float32Array, i * r.dim));
    return out;
  } finally {
    r.close();
  }
}

export interface FashionSubset {
  base: Float32Array;
  baseLabels: Uint8Array;
  queries: Float32Array;
}

export function fashionSubset(base: number, queries: number): FashionSubset {
  return {
    base: rows('train-images-idx3-ubyte.gz', base),
    baseLabels: Uint8Array.from(rows('train-labels-idx1-ubyte.gz', base)),
    queries: rows('t10k-images-idx3-ubyte.gz', queries),
  };
}
