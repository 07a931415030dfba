// A Fashion-MNIST subset for tests, read from the Debian package
// dataset-fashion-mnist (idx files of 28×28 pixels 0..255 and labels 0..9):
// the first `base` training images and the first `queries` test images, as
// float32 rows of 784. Fails with the install command when the package is
// missing (tests never skip).

import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';

export const FASHION_DIR = process.env.VDB_FASHION_IDX_DIR ?? '/usr/share/datasets/fashion-mnist';
export const FASHION_DIM = 784;

function idx(file: string, magic: number, rows: number, rowBytes: number): Buffer {
  const path = join(FASHION_DIR, file);
  if (!existsSync(path)) {
    throw new Error(`${path} is missing: the Fashion-MNIST tests read the Debian package dataset-fashion-mnist — install it with: apt-get install -y dataset-fashion-mnist`);
  }
  const b = gunzipSync(readFileSync(path));
  const header = magic === 2051 ? 16 : 8;
  if (b.readUInt32BE(0) !== magic || b.readUInt32BE(4) < rows) throw new Error(`${path}: not an idx file with at least ${rows} rows`);
  return b.subarray(header, header + rows * rowBytes);
}

export interface FashionSubset {
  base: Float32Array;
  baseLabels: Uint8Array;
  queries: Float32Array;
}

export function fashionSubset(base: number, queries: number): FashionSubset {
  const toF32 = (px: Buffer) => Float32Array.from(px);
  return {
    base: toF32(idx('train-images-idx3-ubyte.gz', 2051, base, FASHION_DIM)),
    baseLabels: new Uint8Array(idx('train-labels-idx1-ubyte.gz', 2049, base, 1)),
    queries: toF32(idx('t10k-images-idx3-ubyte.gz', 2051, queries, FASHION_DIM)),
  };
}
