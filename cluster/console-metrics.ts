// What the web console draws from the processes' Prometheus metrics: a parser
// of the text exposition format (the lines the console reads, nothing more),
// one reading per poll, and the chart series derived from consecutive readings.

/** One sample line: `name{labels} value`. */
export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

const LINE_RE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+-?\d+)?$/;
const LABEL_RE = /\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*,?/y;

function unescape(v: string): string {
  return v.replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c));
}

function number(v: string): number {
  if (v === '+Inf' || v === 'Inf') return Infinity;
  if (v === '-Inf') return -Infinity;
  return Number(v);
}

/** The samples of an exposition text; comments, blank and malformed lines are left out. */
export function parseMetrics(text: string): Sample[] {
  const out: Sample[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const m = LINE_RE.exec(line);
    if (!m) continue;
    const labels: Record<string, string> = {};
    if (m[2] !== undefined) {
      LABEL_RE.lastIndex = 0;
      let ok = true;
      while (LABEL_RE.lastIndex < m[2].length) {
        const l = LABEL_RE.exec(m[2]);
        if (!l) {
          ok = false;
          break;
        }
        labels[l[1]] = unescape(l[2]);
      }
      if (!ok) continue;
    }
    const value = number(m[3]);
    if (!Number.isNaN(value) || m[3] === 'NaN') out.push({ name: m[1], labels, value });
  }
  return out;
}

/** A latency histogram summed over processes: cumulative bucket counts by upper bound, count and sum. */
export interface Histogram {
  count: number;
  sum: number;
  buckets: [le: number, cumulative: number][];
}

/** What the console keeps of one poll of every process's /metrics. */
export interface Reading {
  /** Milliseconds since the epoch. */
  t: number;
  /** Points per collection: per shard the largest count any replica reports, summed over shards. */
  points: Record<string, number>;
  /** The coordinators' request histograms by operation, summed over coordinators. */
  requests: Record<string, Histogram>;
}

/** One reading from the texts of the shard processes and of the coordinators. */
export function reading(t: number, shardTexts: string[], coordinatorTexts: string[]): Reading {
  const perShard = new Map<string, { collection: string; points: number }>();
  for (const text of shardTexts) {
    for (const s of parseMetrics(text)) {
      if (s.name !== 'vdb_shard_points' || s.labels.collection === undefined) continue;
      const key = `${s.labels.collection}/${s.labels.shard}`;
      const prev = perShard.get(key);
      if (!prev || s.value > prev.points) perShard.set(key, { collection: s.labels.collection, points: s.value });
    }
  }
  const points: Record<string, number> = {};
  for (const { collection, points: n } of perShard.values()) points[collection] = (points[collection] ?? 0) + n;

  const requests: Record<string, Histogram> = {};
  const hist = (op: string) => (requests[op] ??= { count: 0, sum: 0, buckets: [] });
  for (const text of coordinatorTexts) {
    for (const s of parseMetrics(text)) {
      const op = s.labels.op;
      if (op === undefined) continue;
      if (s.name === 'vdb_coordinator_request_seconds_count') hist(op).count += s.value;
      else if (s.name === 'vdb_coordinator_request_seconds_sum') hist(op).sum += s.value;
      else if (s.name === 'vdb_coordinator_request_seconds_bucket') {
        const le = number(s.labels.le ?? '');
        const h = hist(op);
        const b = h.buckets.find(([bound]) => bound === le);
        if (b) b[1] += s.value;
        else h.buckets.push([le, s.value]);
      }
    }
  }
  for (const h of Object.values(requests)) h.buckets.sort((a, b) => a[0] - b[0]);
  return { t, points, requests };
}

/**
 * The q-quantile of the observations a histogram's cumulative buckets hold, by
 * linear interpolation inside the bucket it falls in (as PromQL's
 * histogram_quantile); the largest finite bound when it falls in +Inf;
 * undefined without observations.
 */
export function quantile(q: number, buckets: [number, number][]): number | undefined {
  const total = buckets.length === 0 ? 0 : buckets[buckets.length - 1][1];
  if (!(total > 0)) return undefined;
  const rank = q * total;
  let lower = 0;
  let below = 0;
  for (const [le, cum] of buckets) {
    if (cum >= rank) {
      if (le === Infinity) return lower;
      const inBucket = cum - below;
      return inBucket > 0 ? lower + (le - lower) * ((rank - below) / inBucket) : le;
    }
    lower = le;
    below = cum;
  }
  return lower;
}

/** The charts' data: one time axis, and per series one value per interval (null where unknown). */
export interface Series {
  /** End of each interval, ms since the epoch. */
  t: number[];
  /** Points per collection at the end of each interval. */
  points: Record<string, (number | null)[]>;
  /** Requests per second per operation on the coordinators. */
  rate: Record<string, (number | null)[]>;
  /** Search latency in milliseconds over each interval: mean, and p99 from the buckets. */
  searchMeanMs: (number | null)[];
  searchP99Ms: (number | null)[];
}

/** The difference of two cumulative histograms; undefined when a counter went back (a coordinator restarted). */
function delta(a: Histogram | undefined, b: Histogram): Histogram | undefined {
  const prev = a ?? { count: 0, sum: 0, buckets: [] };
  if (b.count < prev.count) return undefined;
  const buckets: [number, number][] = [];
  for (const [le, cum] of b.buckets) {
    const before = prev.buckets.find(([bound]) => bound === le)?.[1] ?? 0;
    if (cum < before) return undefined;
    buckets.push([le, cum - before]);
  }
  return { count: b.count - prev.count, sum: b.sum - prev.sum, buckets };
}

/** Chart series from readings in time order: each interval between two readings is one point. */
export function series(readings: Reading[]): Series {
  const out: Series = { t: [], points: {}, rate: {}, searchMeanMs: [], searchP99Ms: [] };
  const collections = new Set(readings.flatMap((r) => Object.keys(r.points)));
  const ops = new Set(readings.flatMap((r) => Object.keys(r.requests)));
  for (const c of collections) out.points[c] = [];
  for (const op of ops) out.rate[op] = [];
  for (let i = 1; i < readings.length; i++) {
    const [a, b] = [readings[i - 1], readings[i]];
    const secs = (b.t - a.t) / 1000;
    out.t.push(b.t);
    for (const c of collections) out.points[c].push(b.points[c] ?? null);
    for (const op of ops) {
      const d = b.requests[op] && secs > 0 ? delta(a.requests[op], b.requests[op]) : undefined;
      out.rate[op].push(d ? d.count / secs : null);
    }
    const d = b.requests.search ? delta(a.requests.search, b.requests.search) : undefined;
    const p99 = d && d.count > 0 ? quantile(0.99, d.buckets) : undefined;
    out.searchMeanMs.push(d && d.count > 0 ? (d.sum / d.count) * 1000 : null);
    out.searchP99Ms.push(p99 === undefined ? null : p99 * 1000);
  }
  return out;
}
