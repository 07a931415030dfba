// Interleaved A/B of two builds of the core on one saved index: a speed change
// is kept only if it shows here. Both builds load the same index bytes into one
// process and answer the same queries in alternating blocks (the order flips
// every block), so drift in machine load falls on both alike.
//
//   npm run bench:ab -- snapshot NAME            copies build/ and dist/ts/ into .ab/NAME
//   npm run bench:ab -- run A B --data DIR [--ef 32,64,128] [--runs 7] [--queries N]
//   npm run bench:ab -- build A B --data DIR [--points 20000] [--runs 5]
//
// A and B are snapshot names (or folders holding build/vdb.wasm and dist/ts/).
// The index is built once by A with M 16, efConstruction 200 (--seed) and cached
// in .ab/. Prints, per ef, each build's recall and median QPS (by CPU time) and
// the median over runs of the per-run ratio B/A.

import { cpSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve, basename } from 'node:path';
import { parseArgs } from 'node:util';
import { pathToFileURL, fileURLToPath } from 'node:url';
import { loadDataset, type Dataset } from './dataset.js';

interface Index {
  search(q: Float32Array, k: number, o: { ef: number }): { ids: Uint32Array };
  add(v: Float32Array): number;
  save(): Uint8Array;
}
interface Core {
  WasmIndex: { create(o: object): Index; load(b: Uint8Array): Index };
}

const root = resolve(fileURLToPath(new URL('../..', import.meta.url)));
const abDir = join(root, '.ab');

function snapshot(name: string): void {
  const to = join(abDir, name);
  mkdirSync(to, { recursive: true });
  cpSync(join(root, 'build', 'vdb.wasm'), join(to, 'build', 'vdb.wasm'));
  cpSync(join(root, 'dist', 'ts'), join(to, 'dist', 'ts'), { recursive: true });
  console.log(to);
}

async function core(v: string): Promise<Core> {
  const dir = existsSync(join(abDir, v)) ? join(abDir, v) : resolve(v);
  if (process.env.VDB_WASM) throw new Error('unset VDB_WASM: each build must load its own vdb.wasm');
  return import(pathToFileURL(join(dir, 'dist', 'ts', 'index.js')).href) as Promise<Core>;
}

// CPU time of this process, not wall time: on a shared machine the time spent
// descheduled is most of the noise, and it belongs to neither build.
function cpuMs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

function indexBytes(a: Core, ds: Dataset, seed: number): Uint8Array {
  const path = join(abDir, `index-${basename(ds.dir)}-s${seed}.bin`);
  if (existsSync(path)) return readFileSync(path);
  process.stderr.write(`building ${ds.nBase} points with A (cached in ${path}) …\n`);
  const idx = a.WasmIndex.create({ dim: ds.dim, metric: ds.metric, m: 16, efConstruction: 200, seed, capacity: ds.nBase });
  for (let i = 0; i < ds.nBase; i++) idx.add(ds.base.subarray(i * ds.dim, (i + 1) * ds.dim));
  const bytes = idx.save();
  mkdirSync(abDir, { recursive: true });
  writeFileSync(path, bytes);
  return bytes;
}

async function run(args: string[]): Promise<void> {
  const { values: o, positionals: [na, nb] } = parseArgs({
    args, allowPositionals: true,
    options: {
      data: { type: 'string' }, ef: { type: 'string', default: '32,64,128' }, runs: { type: 'string', default: '7' },
      queries: { type: 'string' }, block: { type: 'string', default: '50' }, k: { type: 'string', default: '10' },
      seed: { type: 'string', default: '42' },
    },
  });
  if (!na || !nb || !o.data) throw new Error('usage: ab.js run A B --data DIR [--ef LIST] [--runs N] [--queries N]');
  const ds = loadDataset(o.data);
  const [ca, cb] = [await core(na), await core(nb)];
  const bytes = indexBytes(ca, ds, Number(o.seed));
  const k = Number(o.k), runs = Number(o.runs), block = Number(o.block);
  const efs = o.ef!.split(',').map(Number);
  const nq = Math.min(ds.nQueries, Number(o.queries ?? ds.nQueries));
  const qs = Array.from({ length: nq }, (_, i) => ds.queries.slice(i * ds.dim, (i + 1) * ds.dim));
  console.log(`${ds.name}: ${ds.nBase} × ${ds.dim} ${ds.metric}, ${nq} queries, k ${k}, ${runs} runs, blocks of ${block}; A = ${na}, B = ${nb}`);
  const fresh = () => {
    (globalThis as { gc?: () => void }).gc?.();
    return [ca.WasmIndex.load(bytes), cb.WasmIndex.load(bytes)];
  };
  let idx = fresh();
  const recall = efs.map((ef) => {
    const hits = [0, 0];
    let same = true;
    for (let q = 0; q < nq; q++) {
      const [ra, rb] = idx.map((x) => x.search(qs[q], k, { ef }).ids);
      if (ra.length !== rb.length || ra.some((id, j) => id !== rb[j])) same = false;
      const truth = new Set(ds.gt.subarray(q * ds.gtK, q * ds.gtK + k));
      [ra, rb].forEach((ids, i) => { for (const id of ids) if (truth.has(id)) hits[i]++; });
    }
    return { a: hits[0] / (nq * k), b: hits[1] / (nq * k), same };
  });
  // Each run loads both builds afresh: where an instance's memory lands (pages,
  // cache sets) biases it by a few per cent for its whole life, so a ratio from
  // one pair of instances is not to be trusted, the median over fresh pairs is.
  const ms = efs.map(() => [[] as number[], [] as number[]]);
  for (let r = 0; r < runs; r++) {
    if (r > 0) idx = fresh();
    for (const x of idx) for (let i = 0; i < Math.min(nq, 200); i++) x.search(qs[i], k, { ef: 64 });
    efs.forEach((ef, e) => {
      const t = [0, 0];
      for (let b = 0; b * block < nq; b++) {
        for (const i of (b + r) % 2 === 0 ? [0, 1] : [1, 0]) {
          const x = idx[i];
          const t0 = cpuMs();
          for (let q = b * block; q < Math.min(nq, (b + 1) * block); q++) x.search(qs[q], k, { ef });
          t[i] += cpuMs() - t0;
        }
      }
      ms[e][0].push(t[0]); ms[e][1].push(t[1]);
    });
  }
  console.log('   ef  recall A  recall B  same   QPS A   QPS B   B/A (median, min–max of runs)');
  efs.forEach((ef, e) => {
    const ratios = ms[e][0].map((ta, r) => ta / ms[e][1][r]);
    const qps = ms[e].map((m) => nq / (median(m) / 1000));
    console.log([String(ef).padStart(5), recall[e].a.toFixed(4).padStart(9), recall[e].b.toFixed(4).padStart(9),
      (recall[e].same ? 'yes' : 'no').padStart(5), qps[0].toFixed(0).padStart(7), qps[1].toFixed(0).padStart(7),
      `  ${median(ratios).toFixed(3)} (${Math.min(...ratios).toFixed(3)}–${Math.max(...ratios).toFixed(3)})`].join(' '));
  });
}

// Build time: each run builds the first N base points into a fresh index per
// build, inserting in alternating blocks, and compares their CPU times.
async function build(args: string[]): Promise<void> {
  const { values: o, positionals: [na, nb] } = parseArgs({
    args, allowPositionals: true,
    options: {
      data: { type: 'string' }, points: { type: 'string', default: '20000' }, runs: { type: 'string', default: '5' },
      block: { type: 'string', default: '100' }, seed: { type: 'string', default: '42' },
    },
  });
  if (!na || !nb || !o.data) throw new Error('usage: ab.js build A B --data DIR [--points N] [--runs N]');
  const ds = loadDataset(o.data);
  const cores = [await core(na), await core(nb)];
  const n = Math.min(ds.nBase, Number(o.points)), block = Number(o.block), runs = Number(o.runs);
  const rows = Array.from({ length: n }, (_, i) => ds.base.subarray(i * ds.dim, (i + 1) * ds.dim));
  console.log(`${ds.name}: build ${n} × ${ds.dim} ${ds.metric}, M 16, efConstruction 200, ${runs} runs, blocks of ${block}; A = ${na}, B = ${nb}`);
  const ratios: number[] = [];
  const secs = [[] as number[], [] as number[]];
  for (let r = 0; r < runs; r++) {
    (globalThis as { gc?: () => void }).gc?.();
    const idx = cores.map((c) => c.WasmIndex.create({ dim: ds.dim, metric: ds.metric, m: 16, efConstruction: 200, seed: Number(o.seed), capacity: n }));
    const t = [0, 0];
    for (let b = 0; b * block < n; b++) {
      for (const i of (b + r) % 2 === 0 ? [0, 1] : [1, 0]) {
        const t0 = cpuMs();
        for (let p = b * block; p < Math.min(n, (b + 1) * block); p++) idx[i].add(rows[p]);
        t[i] += cpuMs() - t0;
      }
    }
    ratios.push(t[0] / t[1]);
    secs[0].push(t[0] / 1000); secs[1].push(t[1] / 1000);
  }
  console.log(`build s A ${median(secs[0]).toFixed(2)}, B ${median(secs[1]).toFixed(2)}; speed B/A ${median(ratios).toFixed(3)} (${Math.min(...ratios).toFixed(3)}–${Math.max(...ratios).toFixed(3)})`);
}

const [cmd, ...rest] = process.argv.slice(2);
if (cmd === 'snapshot' && rest[0]) snapshot(rest[0]);
else if (cmd === 'run') await run(rest);
else if (cmd === 'build') await build(rest);
else {
  console.error('usage: ab.js snapshot NAME | ab.js run A B --data DIR [--ef 32,64,128] [--runs 7] [--queries N] | ab.js build A B --data DIR [--points N]');
  process.exit(2);
}
