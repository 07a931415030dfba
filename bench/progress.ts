// Progress lines for long work: redrawn in place on a terminal, and only every
// few seconds (one line each) when stderr is a file or a pipe.

export function progress(prefix: string): (msg: string, final?: boolean) => void {
  const tty = process.stderr.isTTY;
  let last = 0;
  return (msg, final = false) => {
    if (tty) {
      process.stderr.write(`\r${prefix} ${msg}\x1b[K${final ? '\n' : ''}`);
      return;
    }
    const now = Date.now();
    if (final || now - last >= 5000) {
      process.stderr.write(`${prefix} ${msg}\n`);
      last = now;
    }
  };
}
