// The pieces of an ANN comparison that more than one benchmark runs: each
// engine's build in its own process (bench/ann-build.ts), the ef sweep with
// the engines interleaved in blocks of queries so that noise on the machine
// falls on all alike, and the QPS where a recall curve crosses a target.

import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { recallOf } from './dataset.js';
import type { Dataset } from './dataset.js';
import type { Engine } from './engines.js';
import { progress } from './progress.js';
import type { BuildRequest, BuildResult } from './ann-build.js';
import { median } from './curves.js';
import type { SweepPoint } from './curves.js';


export interface SweepOptions {
  k: number;
  efs: number[];
  /** Queries used, the first of the data set's. */
  queries: number;
  /** Passes over the queries per ef; QPS is the median of them. */
  runs: number;
  /** Queries per engine before switching to the next. */
  block: number;
  /** Names the progress lines. */
  label?: string;
}

/** Builds one engine in a child process, which saves the index to `req.out`. */
export function buildInChild(req: BuildRequest): Promise<BuildResult> {
  return new Promise((resolve, reject) => {
    const child = fork(fileURLToPath(new URL('./ann-build.js', import.meta.url)), [], {
      execArgv: ['--expose-gc'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    child.once('message', (msg: { ok: boolean; result?: BuildResult; error?: string }) => {
      if (msg.ok) resolve(msg.result!); else reject(new Error(msg.error));
    });
    child.once('exit', (code) => { if (code !== 0) reject(new Error(`${req.engine} build exited with ${code}`)); });
    child.send(req);
  });
}

/** Recall and QPS of every engine at every ef, one query at a time. */
export function sweep(ds: Dataset, engines: Engine[], o: SweepOptions): SweepPoint[][] {
  const nq = o.queries;
  const qs = engines.map((e) => Array.from({ length: nq }, (_, i) => e.prepare(ds.queries.subarray(i * ds.dim, (i + 1) * ds.dim))));
  const log = progress(`[${o.label ?? 'sweep'}]`);
  engines.forEach((e, i) => { e.setEf(64); for (let q = 0; q < Math.min(nq, 500); q++) e.search(qs[i][q], o.k); });
  const out: SweepPoint[][] = engines.map(() => []);
  for (const ef of o.efs) {
    engines.forEach((e) => e.setEf(ef));
    const lat = engines.map(() => new Float64Array(nq * o.runs));
    const recall = engines.map(() => 0);
    for (let r = 0; r < o.runs; r++) {
      for (let b = 0; b * o.block < nq; b++) {
        const order = (b + r) % 2 === 0 ? engines.map((_, i) => i) : engines.map((_, i) => engines.length - 1 - i);
        for (const i of order) {
          for (let q = b * o.block; q < Math.min(nq, (b + 1) * o.block); q++) {
            const t0 = process.hrtime.bigint();
            const ids = engines[i].search(qs[i][q], o.k);
            lat[i][r * nq + q] = Number(process.hrtime.bigint() - t0) / 1e6;
            if (r === 0) recall[i] += recallOf(ds, q, ids, o.k);
          }
        }
      }
    }
    engines.forEach((_, i) => {
      const perRun = Array.from({ length: o.runs }, (_, r) => nq / (lat[i].subarray(r * nq, (r + 1) * nq).reduce((a, x) => a + x, 0) / 1000));
      const sorted = lat[i].slice().sort();
      const at = (p: number) => sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))];
      out[i].push({ ef, recall: recall[i] / nq, qps: median(perRun), p50_ms: at(0.5), p99_ms: at(0.99) });
    });
    log(`ef ${ef}: ` + engines.map((e, i) => `${e.name} ${out[i].at(-1)!.recall.toFixed(4)} @ ${out[i].at(-1)!.qps.toFixed(0)} QPS`).join(', '), true);
  }
  return out;
}
