// npm run bench:kernels -- [--reps N] [--ms T] [--dims 128,784,960]
// Distance-kernel microbenchmark: million distance evaluations per second for
// the Wasm SIMD kernels, the Wasm scalar reference and a plain JavaScript loop,
// at several dimensions. Every variant loops inside its own language — the Wasm
// side through kernel_bench(kind, a, b, n, iters), the JS side in a JS for loop —
// so no timing includes a JS→Wasm call per evaluation. Each cell is the median
// of --reps timed runs of about --ms milliseconds. Progress goes to stderr, the
// table to stdout.

import { readFileSync, existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import type { CoreExports } from '../ts/core/abi.js';

type KernelExports = CoreExports;

const B_OFFSET_FLOATS = 8192; // b lives in the second half of the scratch

const { values: opt } = parseArgs({
  options: {
    reps: { type: 'string', default: '5' },
    ms: { type: 'string', default: '150' },
    dims: { type: 'string', default: '128,784,960' },
  },
});
const reps = Math.max(1, Number(opt.reps) | 0);
const targetMs = Math.max(10, Number(opt.ms));
const dims = opt.dims.split(',').map(Number);
for (const d of dims) {
  if (!Number.isInteger(d) || d < 1 || d > B_OFFSET_FLOATS) {
    throw new Error(`--dims: ${d} is not an integer from 1 to ${B_OFFSET_FLOATS}`);
  }
}

function wasmFile(): string {
  if (process.env.VDB_WASM) return process.env.VDB_WASM;
  // dist/bench/kernels.js → ../../build; bench/kernels.ts run from source → ../build
  for (const rel of ['../../build/vdb.wasm', '../build/vdb.wasm']) {
    const p = fileURLToPath(new URL(rel, import.meta.url));
    if (existsSync(p)) return p;
  }
  throw new Error('build/vdb.wasm not found: run `npm run build` first');
}

async function load(): Promise<KernelExports> {
  const abort = (_msg: number, _file: number, line: number, col: number): never => {
    throw new Error(`vdb.wasm abort at ${line}:${col}`);
  };
  const { instance } = await WebAssembly.instantiate(readFileSync(wasmFile()), { env: { abort } });
  return instance.exports as unknown as KernelExports;
}

/** Seeded uniform values in [-1, 1) (mulberry32), so every run sees the same data. */
function randomFloats(n: number, seed: number): Float32Array {
  let s = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    out[i] = (((t ^ (t >>> 14)) >>> 0) / 4294967296) * 2 - 1;
  }
  return out;
}

// Plain JavaScript: the straightforward loops a user would write. Each timed loop
// also rewrites a[0] like kernel_bench does, so neither side can hoist the call.
function l2Js(a: Float32Array, b: Float32Array, n: number): number {
  let s = 0;
  for (let i = 0; i < n; i++) {
    const d = a[i] - b[i];
    s += d * d;
  }
  return s;
}

function dotJs(a: Float32Array, b: Float32Array, n: number): number {
  let s = 0;
  for (let i = 0; i < n; i++) s += a[i] * b[i];
  return s;
}

function loopL2Js(a: Float32Array, b: Float32Array, n: number, iters: number): number {
  let acc = 0;
  for (let i = 0; i < iters; i++) {
    acc += l2Js(a, b, n);
    a[0] = a[0] + 0;
  }
  return acc;
}

function loopDotJs(a: Float32Array, b: Float32Array, n: number, iters: number): number {
  let acc = 0;
  for (let i = 0; i < iters; i++) {
    acc += dotJs(a, b, n);
    a[0] = a[0] + 0;
  }
  return acc;
}

type Op = 'l2' | 'dot';
type Impl = 'simd' | 'scalar' | 'js';
/** Runs `iters` evaluations; returns the accumulated value (kept, so it is not dead code). */
type Runner = (iters: number) => number;

let sink = 0;

function timeOnce(run: Runner, iters: number): number {
  const t0 = performance.now();
  sink += run(iters);
  return performance.now() - t0;
}

/** Warms a runner up (so V8 optimises the JS loops) and returns the iteration
 * count that takes about targetMs. */
function calibrate(run: Runner): number {
  let iters = 256;
  for (;;) {
    const ms = timeOnce(run, iters);
    if (ms >= targetMs / 4) return Math.max(1, Math.min(0x7fffffff, Math.round((iters * targetMs) / ms)));
    iters *= ms < 1 ? 8 : 2;
  }
}

function median(xs: number[]): number {
  const s = [...xs].sort((x, y) => x - y);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

/** Million evaluations per second of each runner: the median of `reps` timed runs.
 * The runs of the runners alternate, so a burst of load on a shared machine hits
 * all of them alike and the ratios stay meaningful. */
function measure(runners: Runner[]): number[] {
  const iters = runners.map(calibrate);
  const rates: number[][] = runners.map(() => []);
  for (let r = 0; r < reps; r++) {
    runners.forEach((run, i) => rates[i].push(iters[i] / timeOnce(run, iters[i]) / 1e3));
  }
  return rates.map(median);
}

/** Worst-case f32 summation error for n terms of total magnitude m. */
function bound(n: number, m: number): number {
  return (n + 2) * 2 ** -24 * m + 1e-6;
}

function checkAgreement(w: KernelExports, pa: number, pb: number, a: Float32Array, b: Float32Array, n: number): void {
  const l2 = l2Js(a, b, n);
  const dot = dotJs(a, b, n);
  let absDot = 0;
  for (let i = 0; i < n; i++) absDot += Math.abs(a[i] * b[i]);
  const got: Array<[string, number, number, number]> = [
    ['kernel_l2sq', w.kernel_l2sq(pa, pb, n), l2, l2],
    ['kernel_l2sq_scalar', w.kernel_l2sq_scalar(pa, pb, n), l2, l2],
    ['kernel_dot', w.kernel_dot(pa, pb, n), dot, absDot],
    ['kernel_dot_scalar', w.kernel_dot_scalar(pa, pb, n), dot, absDot],
  ];
  for (const [name, value, want, magnitude] of got) {
    if (!(Math.abs(value - want) <= bound(n, magnitude))) {
      throw new Error(`${name} at dim ${n} gives ${value}, JS gives ${want}: the kernels disagree`);
    }
  }
}

/** Three significant digits for rates, two decimals for ratios. */
function fmt(x: number): string {
  return x >= 100 ? x.toFixed(0) : x.toPrecision(3);
}

async function main(): Promise<void> {
  const w = await load();
  const scratch = w.scratch_ptr();
  const pa = scratch;
  const pb = scratch + B_OFFSET_FLOATS * 4;
  const ops: Op[] = ['l2', 'dot'];
  const impls: Impl[] = ['simd', 'scalar', 'js'];
  const kind: Record<Op, Record<'simd' | 'scalar', number>> = {
    l2: { simd: 0, scalar: 1 },
    dot: { simd: 2, scalar: 3 },
  };
  const label: Record<Impl, string> = { simd: 'Wasm SIMD', scalar: 'Wasm scalar', js: 'JS' };

  const rows: Array<{ op: Op; dim: number; rate: Record<Impl, number> }> = [];
  const total = dims.length * ops.length;
  let done = 0;
  for (const dim of dims) {
    const a = randomFloats(dim, 1000 + dim);
    const b = randomFloats(dim, 2000 + dim);
    // The Wasm kernels read the same values from the scratch; the JS loops read
    // their own Float32Arrays (a JS program's native form).
    const f32 = new Float32Array(w.memory.buffer);
    f32.set(a, pa >>> 2);
    f32.set(b, pb >>> 2);
    checkAgreement(w, pa, pb, a, b, dim);
    for (const op of ops) {
      const runners = impls.map((impl): Runner => {
        if (impl === 'js') {
          return op === 'l2' ? (it) => loopL2Js(a, b, dim, it) : (it) => loopDotJs(a, b, dim, it);
        }
        const k = kind[op][impl];
        return (it) => w.kernel_bench(k, pa, pb, dim, it);
      });
      process.stderr.write(`[${done + 1}/${total}] ${op} at dim ${dim}: ${impls.map((i) => label[i]).join(', ')} ...\n`);
      const measured = measure(runners);
      const rate = {} as Record<Impl, number>;
      impls.forEach((impl, i) => { rate[impl] = measured[i]; });
      done++;
      process.stderr.write(`      ${impls.map((i) => `${label[i]} ${fmt(rate[i])}`).join(', ')} M evals/s\n`);
      rows.push({ op, dim, rate });
    }
  }

  const header = ['kernel', 'dim', 'Wasm SIMD', 'Wasm scalar', 'JS', 'SIMD/scalar', 'SIMD/JS'];
  const body = rows.map((r) => [
    r.op, String(r.dim), fmt(r.rate.simd), fmt(r.rate.scalar), fmt(r.rate.js),
    `${(r.rate.simd / r.rate.scalar).toFixed(2)}x`, `${(r.rate.simd / r.rate.js).toFixed(2)}x`,
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((row) => row[i].length)));
  const line = (cells: string[]) =>
    '| ' + cells.map((c, i) => (i < 2 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join(' | ') + ' |';
  console.log(`Distance kernels, million evaluations per second (median of ${reps} runs of ~${targetMs} ms; node ${process.version}, ${process.arch})`);
  console.log(line(header));
  console.log('|' + widths.map((wd, i) => (i < 2 ? ':' + '-'.repeat(wd + 1) : '-'.repeat(wd + 1) + ':')).join('|') + '|');
  for (const row of body) console.log(line(row));
  if (!Number.isFinite(sink)) console.log(`(sink ${sink})`);
}

main().catch((e: unknown) => {
  console.error(e instanceof Error ? e.message : e);
  process.exitCode = 1;
});
