// Progress lines for long work on stderr: redrawn in place on a terminal, one
// line every few seconds when stderr is a file or a pipe (so logs stay short).

export interface ProgressOptions {
  /** Seconds between lines when stderr is not a terminal. Default 5. */
  every?: number;
  stream?: NodeJS.WriteStream;
}

export type ProgressLine = (msg: string, final?: boolean) => void;

export function progressLine(prefix: string, opts: ProgressOptions = {}): ProgressLine {
  const out = opts.stream ?? process.stderr;
  const tty = out.isTTY === true;
  const everyMs = (opts.every ?? 5) * 1000;
  let last = Date.now();
  let drawn = 0;
  return (msg, final = false) => {
    const now = Date.now();
    if (tty) {
      // Redraws at most ten times a second; the final line always.
      if (!final && now - drawn < 100) return;
      drawn = now;
      out.write(`\r${prefix} ${msg}\x1b[K${final ? '\n' : ''}`);
      return;
    }
    if (final || now - last >= everyMs) {
      out.write(`${prefix} ${msg}\n`);
      last = now;
    }
  };
}

/** "1.2k", "3.4M": short counts for progress lines. */
export function shortCount(n: number): string {
  if (n < 10_000) return String(Math.round(n));
  if (n < 1e6) return `${(n / 1e3).toFixed(n < 1e5 ? 1 : 0)}k`;
  if (n < 1e9) return `${(n / 1e6).toFixed(n < 1e8 ? 2 : 1)}M`;
  return `${(n / 1e9).toFixed(2)}G`;
}

/** "1,234,567". */
export function count(n: number): string {
  return Math.round(n).toLocaleString('en-US');
}

/** "42 s", "3 min 05 s", "2 h 07 min". */
export function duration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '?';
  if (seconds < 9.95) return `${seconds.toFixed(1)} s`;
  const s = Math.round(seconds);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${String(s % 60).padStart(2, '0')} s`;
  return `${Math.floor(s / 3600)} h ${String(Math.floor((s % 3600) / 60)).padStart(2, '0')} min`;
}

/**
 * A progress line for work counted in items: done/total, items per second and
 * the time left. When only a fraction is known (a JSONL file's bytes read), the
 * total is shown as an estimate.
 */
export class RateProgress {
  private readonly line: ProgressLine;
  private readonly start = performance.now();

  constructor(prefix: string, private readonly unit: string, opts: ProgressOptions = {}) {
    this.line = progressLine(prefix, opts);
  }

  elapsed(): number {
    return (performance.now() - this.start) / 1000;
  }

  /** `total` when known; else `fraction` (0..1) of the work done, for the estimate. */
  update(done: number, total?: number, fraction?: number, final = false): void {
    const secs = this.elapsed();
    const rate = secs > 0 ? done / secs : 0;
    let of = '';
    let left = NaN;
    if (total !== undefined) {
      of = `/${count(total)}`;
      left = rate > 0 ? (total - done) / rate : NaN;
    } else if (fraction !== undefined && fraction > 0) {
      of = ` (${(100 * fraction).toFixed(fraction < 0.1 ? 1 : 0)} %)`;
      left = (secs * (1 - fraction)) / fraction;
    }
    const eta = final ? `in ${duration(secs)}` : `ETA ${duration(left)}`;
    this.line(`${count(done)}${of} ${this.unit}, ${shortCount(rate)} ${this.unit}/s, ${eta}`, final);
  }
}
