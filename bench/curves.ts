// Recall–QPS curves of the ANN benchmark: one sweep per seed, their median
// curve with the spread over seeds, and the QPS where a curve reaches a recall.
// Plain functions, so that tests can check them without building an index.

export interface SweepPoint { ef: number; recall: number; qps: number; p50_ms: number; p99_ms: number }

/** One ef of the median curve: medians over seeds, and the spread (min–max) of recall and QPS. */
export interface BandPoint extends SweepPoint {
  recall_min: number;
  recall_max: number;
  qps_min: number;
  qps_max: number;
}

export interface Spread { median: number; min: number; max: number }

export function median(xs: readonly number[]): number {
  if (xs.length === 0) throw new Error('median of no values');
  const s = [...xs].sort((a, b) => a - b);
  const h = s.length >> 1;
  return s.length % 2 ? s[h] : (s[h - 1] + s[h]) / 2;
}

export function spread(xs: readonly number[]): Spread {
  return { median: median(xs), min: Math.min(...xs), max: Math.max(...xs) };
}

/**
 * The median curve over seeds: per ef, the median recall and the median QPS
 * (each on its own, as ann-benchmarks' repeated runs would be summarised), with
 * their min and max. Every sweep must cover the same efs in the same order.
 */
export function medianCurve(sweeps: readonly SweepPoint[][]): BandPoint[] {
  if (sweeps.length === 0) throw new Error('no sweeps to summarise');
  const efs = sweeps[0].map((p) => p.ef);
  for (const s of sweeps) {
    if (s.length !== efs.length || s.some((p, i) => p.ef !== efs[i])) throw new Error('sweeps cover different efs');
  }
  return efs.map((ef, i) => {
    const at = sweeps.map((s) => s[i]);
    const r = spread(at.map((p) => p.recall));
    const q = spread(at.map((p) => p.qps));
    return {
      ef, recall: r.median, qps: q.median,
      p50_ms: median(at.map((p) => p.p50_ms)), p99_ms: median(at.map((p) => p.p99_ms)),
      recall_min: r.min, recall_max: r.max, qps_min: q.min, qps_max: q.max,
    };
  });
}

/**
 * QPS where the curve reaches recall `target`: the best QPS among points at or
 * above it, or the crossing interpolated between the two points that bracket
 * it if that is faster; null if no point reaches it.
 */
export function qpsAtRecall(sweep: readonly { recall: number; qps: number }[], target: number): number | null {
  const pts = [...sweep].sort((a, b) => a.recall - b.recall || b.qps - a.qps);
  const i = pts.findIndex((p) => p.recall >= target);
  if (i < 0) return null;
  let best = Math.max(...pts.slice(i).map((p) => p.qps));
  if (i > 0) {
    const a = pts[i - 1], b = pts[i];
    const t = (target - a.recall) / (b.recall - a.recall);
    best = Math.max(best, a.qps + (b.qps - a.qps) * t);
  }
  return best;
}
