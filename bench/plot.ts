// The recall–QPS chart of the ANN benchmark as SVG text, as ann-benchmarks
// draws it: recall on x (linear), queries per second on y (log), one line per
// engine through its median curve and a shaded band over the seeds' spread.
// Plain functions of plain data, so a test can check the geometry.

export interface PlotPoint { recall: number; qps: number; recall_min: number; recall_max: number; qps_min: number; qps_max: number }
export interface PlotSeries { name: string; points: PlotPoint[] }
export interface PlotInput { title: string; subtitle?: string; series: PlotSeries[] }

export const FRAME = { width: 820, height: 560, left: 86, right: 24, top: 84, bottom: 58 } as const;
const COLOURS = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#8c564b'] as const;

/** The plot area in SVG units: x from `x0` to `x1`, y from `y0` (top) to `y1` (bottom). */
export const AREA = {
  x0: FRAME.left, x1: FRAME.width - FRAME.right, y0: FRAME.top, y1: FRAME.height - FRAME.bottom,
} as const;

/** Recall axis: from the lowest recall of any band, down to a multiple of 0.05, up to 1. */
export function recallDomain(series: readonly PlotSeries[]): [number, number] {
  const lo = Math.min(...series.flatMap((s) => s.points.map((p) => p.recall_min)));
  return [Math.max(0, Math.floor(lo * 20 + 1e-9) / 20), 1];
}

/** QPS axis: the bands' range with a margin on both sides (a log axis needs both ends > 0). */
export function qpsDomain(series: readonly PlotSeries[]): [number, number] {
  const lo = Math.min(...series.flatMap((s) => s.points.map((p) => p.qps_min)));
  const hi = Math.max(...series.flatMap((s) => s.points.map((p) => p.qps_max)));
  if (!(lo > 0) || !Number.isFinite(hi)) throw new Error('QPS must be positive and finite to plot on a log axis');
  return [lo / 1.2, hi * 1.2];
}

/** Tick values of a log axis: 1, 2, 5 × 10^k inside [lo, hi]; 1..9 × 10^k when that gives fewer than 3; the ends when that gives fewer than 2. */
export function logTicks(lo: number, hi: number): number[] {
  const pick = (mantissas: readonly number[]) => {
    const out: number[] = [];
    for (let e = Math.floor(Math.log10(lo)); e <= Math.ceil(Math.log10(hi)); e++) {
      for (const m of mantissas) {
        const v = m * 10 ** e;
        if (v >= lo && v <= hi) out.push(v);
      }
    }
    return out;
  };
  const major = pick([1, 2, 5]);
  if (major.length >= 3) return major;
  const minor = pick([1, 2, 3, 4, 5, 6, 7, 8, 9]);
  return minor.length >= 2 ? minor : [lo, hi];
}

/** Tick values of the recall axis: every 0.05; every 0.1 over a wide range, every 0.01 over a narrow one. */
export function recallTicks(lo: number, hi: number): number[] {
  const step = hi - lo > 0.5 ? 0.1 : hi - lo > 0.15 ? 0.05 : 0.01;
  const out: number[] = [];
  for (let i = Math.max(0, Math.ceil(lo / step - 1e-9)); i * step <= hi + 1e-9; i++) out.push(Math.round(i * step * 100) / 100);
  return out;
}

export function xScale([lo, hi]: [number, number]): (recall: number) => number {
  return (r) => AREA.x0 + ((r - lo) / (hi - lo)) * (AREA.x1 - AREA.x0);
}

export function yScale([lo, hi]: [number, number]): (qps: number) => number {
  const a = Math.log10(lo), b = Math.log10(hi);
  return (q) => AREA.y1 - ((Math.log10(q) - a) / (b - a)) * (AREA.y1 - AREA.y0);
}

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
const n = (v: number) => v.toFixed(1);
const qpsLabel = (q: number) => (q >= 1000 ? `${Number((q / 1000).toPrecision(3))}k` : String(Number(q.toPrecision(3))));

export function recallQpsSvg(input: PlotInput): string {
  const series = input.series.filter((s) => s.points.length > 0);
  if (series.length === 0) throw new Error('nothing to plot');
  const xd = recallDomain(series), yd = qpsDomain(series);
  const x = xScale(xd), y = yScale(yd);
  const { width, height } = FRAME;
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="Helvetica, Arial, sans-serif" font-size="12">`);
  out.push(`<rect width="${width}" height="${height}" fill="#ffffff"/>`);
  out.push(`<text x="${width / 2}" y="24" text-anchor="middle" font-size="16" font-weight="bold">${esc(input.title)}</text>`);
  if (input.subtitle) out.push(`<text x="${width / 2}" y="44" text-anchor="middle" fill="#555555">${esc(input.subtitle)}</text>`);

  // Grid and ticks.
  out.push('<g class="grid" stroke="#e4e4e4" stroke-width="1">');
  for (const t of recallTicks(...xd)) out.push(`<line x1="${n(x(t))}" y1="${AREA.y0}" x2="${n(x(t))}" y2="${AREA.y1}"/>`);
  for (const t of logTicks(...yd)) out.push(`<line x1="${AREA.x0}" y1="${n(y(t))}" x2="${AREA.x1}" y2="${n(y(t))}"/>`);
  out.push('</g>');
  out.push('<g class="ticks" fill="#333333">');
  for (const t of recallTicks(...xd)) out.push(`<text x="${n(x(t))}" y="${AREA.y1 + 18}" text-anchor="middle">${t.toFixed(2)}</text>`);
  for (const t of logTicks(...yd)) out.push(`<text x="${AREA.x0 - 8}" y="${n(y(t) + 4)}" text-anchor="end">${qpsLabel(t)}</text>`);
  out.push('</g>');
  out.push(`<rect class="frame" x="${AREA.x0}" y="${AREA.y0}" width="${AREA.x1 - AREA.x0}" height="${AREA.y1 - AREA.y0}" fill="none" stroke="#333333"/>`);
  out.push(`<text x="${(AREA.x0 + AREA.x1) / 2}" y="${height - 16}" text-anchor="middle" font-size="13">Recall</text>`);
  out.push(`<text transform="translate(20 ${(AREA.y0 + AREA.y1) / 2}) rotate(-90)" text-anchor="middle" font-size="13">Queries per second (1/s), log scale</text>`);

  // Bands first, so that every line lies on top of every band. A curve falls to
  // the right, so its spread is the hull of the seeds' upper-right corners
  // (best recall, best QPS) and lower-left corners (worst of both).
  series.forEach((s, i) => {
    const c = COLOURS[i % COLOURS.length];
    const upper = s.points.map((p) => `${n(x(p.recall_max))},${n(y(p.qps_max))}`);
    const lower = s.points.map((p) => `${n(x(p.recall_min))},${n(y(p.qps_min))}`).reverse();
    out.push(`<polygon class="band" points="${[...upper, ...lower].join(' ')}" fill="${c}" fill-opacity="0.18" stroke="none"/>`);
  });
  series.forEach((s, i) => {
    const c = COLOURS[i % COLOURS.length];
    const d = s.points.map((p, j) => `${j === 0 ? 'M' : 'L'}${n(x(p.recall))},${n(y(p.qps))}`).join(' ');
    out.push(`<path class="curve" data-engine="${esc(s.name)}" d="${d}" fill="none" stroke="${c}" stroke-width="2"/>`);
    for (const p of s.points) out.push(`<circle cx="${n(x(p.recall))}" cy="${n(y(p.qps))}" r="3" fill="${c}"/>`);
  });

  // Legend in a row between the titles and the plot area, where no curve can
  // run under it.
  const ly = FRAME.top - 14;
  let lx = AREA.x0;
  out.push('<g class="legend">');
  series.forEach((s, i) => {
    const c = COLOURS[i % COLOURS.length];
    out.push(`<line x1="${lx}" y1="${ly}" x2="${lx + 24}" y2="${ly}" stroke="${c}" stroke-width="2"/>`);
    out.push(`<circle cx="${lx + 12}" cy="${ly}" r="3" fill="${c}"/>`);
    out.push(`<text x="${lx + 30}" y="${ly + 4}">${esc(s.name)}</text>`);
    lx += 44 + 7 * s.name.length;
  });
  out.push(`<rect x="${lx}" y="${ly - 5}" width="24" height="10" fill="#777777" fill-opacity="0.25"/>`);
  out.push(`<text x="${lx + 30}" y="${ly + 4}" fill="#555555">spread over seeds (min–max)</text></g>`);
  out.push('</svg>');
  return out.join('\n') + '\n';
}
