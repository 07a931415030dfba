// One engine's build for the ANN benchmark, in its own process so that its
// build time and memory are its own. Invoked by bench/ann.ts over IPC; saves
// the index to the path it is given.

import { loadDataset } from './dataset.js';
import { ENGINES } from './engines.js';
import { progress } from './progress.js';

export interface BuildRequest {
  engine: string;
  data: string;
  m: number;
  efConstruction: number;
  seed: number;
  out: string;
}

export interface BuildResult {
  build_s: number;
  /** CPU seconds of the build loop: less sensitive than build_s to other work on the machine. */
  cpu_s: number;
  /** What the build added to the process's RSS, measured the same way for every engine. */
  index_mb: number;
  /** Peak RSS of the build process. */
  rss_mb: number;
}

function build(req: BuildRequest): BuildResult {
  const ds = loadDataset(req.data);
  const engine = ENGINES[req.engine].create({ dim: ds.dim, metric: ds.metric, m: req.m, efConstruction: req.efConstruction, capacity: ds.nBase, seed: req.seed });
  const log = progress(`[${req.engine} seed ${req.seed}]`);
  const rows = Array.from({ length: ds.nBase }, (_, i) => engine.prepare(ds.base.subarray(i * ds.dim, (i + 1) * ds.dim)));
  global.gc?.();
  const rssBefore = process.memoryUsage().rss;
  let ns = 0n;
  const cpu0 = process.cpuUsage();
  const step = 1000;
  for (let i = 0; i < ds.nBase; i += step) {
    const end = Math.min(ds.nBase, i + step);
    const t0 = process.hrtime.bigint();
    for (let j = i; j < end; j++) engine.add(rows[j], j);
    ns += process.hrtime.bigint() - t0;
    log(`build ${end}/${ds.nBase}  ${(end / (Number(ns) / 1e9)).toFixed(0)} points/s`, end === ds.nBase);
  }
  const cpu = process.cpuUsage(cpu0);
  const index_mb = (process.memoryUsage().rss - rssBefore) / 2 ** 20;
  engine.save(req.out);
  return { build_s: Number(ns) / 1e9, cpu_s: (cpu.user + cpu.system) / 1e6, index_mb, rss_mb: process.resourceUsage().maxRSS / 1024 };
}

process.once('message', (req: BuildRequest) => {
  try {
    process.send!({ ok: true, result: build(req) }, () => process.exit(0));
  } catch (e) {
    process.send!({ ok: false, error: String((e as Error).stack ?? e) }, () => process.exit(1));
  }
});
