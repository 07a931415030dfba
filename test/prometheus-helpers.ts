// promtool, Prometheus and Alertmanager for tests, from Debian's `prometheus`
// and `prometheus-alertmanager` packages. A missing binary fails the test with
// the install hint: nothing is skipped.

import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';

const INSTALL_HINT: Record<string, string> = {
  promtool: 'apt-get install -y prometheus (it ships promtool)',
  prometheus: 'apt-get install -y prometheus',
  'prometheus-alertmanager': 'apt-get install -y prometheus-alertmanager',
};

/** The binary's path, or an error that says how to install it. */
export function need(binary: keyof typeof INSTALL_HINT): string {
  const r = spawnSync('sh', ['-c', `command -v ${binary}`], { encoding: 'utf8' });
  const path = r.stdout.trim();
  if (r.status !== 0 || path === '') throw new Error(`${binary} is not installed: ${INSTALL_HINT[binary]} (.ci/run does this)`);
  return path;
}

/** Runs promtool with `args` (and `input` on stdin); its exit status and everything it printed. */
export function promtool(args: string[], input?: string, cwd?: string): { status: number | null; output: string } {
  const r = spawnSync(need('promtool'), args, { input, cwd, encoding: 'utf8' });
  return { status: r.status, output: `${r.stdout}${r.stderr}` };
}

/** A free TCP port on loopback (closed again at once; the caller binds it next). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      const port = typeof a === 'object' && a ? a.port : 0;
      s.close(() => resolve(port));
    });
  });
}

export interface Daemon {
  child: ChildProcess;
  /** The last lines it wrote, for failure messages. */
  lines: string[];
  stop(): Promise<void>;
}

/** Starts a long-running binary, keeping its last output lines. */
export function daemon(binary: string, args: string[]): Daemon {
  const child = spawn(binary, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: string[] = [];
  const push = (d: Buffer) => {
    for (const l of d.toString().split('\n')) if (l) lines.push(l);
    lines.splice(0, Math.max(0, lines.length - 40));
  };
  child.stdout!.on('data', push);
  child.stderr!.on('data', push);
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  return {
    child,
    lines,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const t = setTimeout(() => child.kill('SIGKILL'), 5000);
        await exited;
        clearTimeout(t);
      }
    },
  };
}

export interface PanelQuery {
  panel: string;
  refId: string;
  /** The PromQL, with the dashboard's variables replaced as Grafana would (all collections, a 1 m rate window). */
  expr: string;
}

/** Every query of every panel of a Grafana dashboard (rows hold none). */
export function dashboardQueries(dashboard: { panels: { type: string; title: string; targets?: { refId: string; expr: string }[] }[] }): PanelQuery[] {
  return dashboard.panels
    .filter((p) => p.type !== 'row')
    .flatMap((p) => {
      if (!p.targets?.length) throw new Error(`panel "${p.title}" has no query`);
      return p.targets.map((t) => ({ panel: p.title, refId: t.refId, expr: t.expr.replaceAll('$collection', '.*').replaceAll('$__rate_interval', '1m') }));
    });
}
