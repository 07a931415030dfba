// Keeps the processes `vdb up` started running: one that exits without being
// asked to is started again with the same role, name and arguments (so the same
// data directory), after a back-off that doubles while it keeps dying soon
// after starting. Once stop() is called nothing is restarted.

import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { closeSync, openSync, writeSync } from 'node:fs';
import { join } from 'node:path';

export interface Backoff {
  /** The first wait before a restart. */
  minMs: number;
  /** The longest wait. */
  maxMs: number;
  /** A process that ran this long before dying starts over at minMs. */
  stableMs: number;
}

export const DEFAULT_BACKOFF: Backoff = { minMs: 500, maxMs: 30_000, stableMs: 10_000 };

/** The wait before the next start, given the last wait (0: none yet) and how long the process ran. */
export function nextDelay(lastMs: number, uptimeMs: number, b: Backoff): number {
  if (lastMs === 0 || uptimeMs >= b.stableMs) return b.minMs;
  return Math.min(b.maxMs, lastMs * 2);
}

export type Role = 'shard' | 'coordinator';

export interface Supervised {
  readonly role: Role;
  readonly name: string;
  proc: ChildProcess;
  restarts: number;
  startedAt: number;
  /** The last back-off wait; 0 before the first restart. */
  delayMs: number;
  timer?: NodeJS.Timeout;
}

export interface SupervisorOptions {
  /** Program and leading arguments; each child gets `role --name NAME ...args` after them. */
  command: string[];
  backoff?: Partial<Backoff>;
  log: (line: string) => void;
  /** Each line a child writes; absent: children write to their log file, else to this process's stdout and stderr. */
  output?: (name: string, line: string) => void;
  /** A directory where each child's output is appended to `<name>.log` (kept across restarts). */
  logDir?: string;
  /** Called once a restart has spawned the new process. */
  onRestart: (c: Supervised) => void;
}

export class Supervisor {
  readonly children: Supervised[] = [];
  private readonly backoff: Backoff;
  private supervising = false;
  private stopping = false;

  constructor(private readonly opts: SupervisorOptions) {
    this.backoff = { ...DEFAULT_BACKOFF, ...opts.backoff };
  }

  add(role: Role, name: string, args: string[]): Supervised {
    const c: Supervised = { role, name, proc: this.spawn(role, name, args), restarts: 0, startedAt: Date.now(), delayMs: 0 };
    this.children.push(c);
    this.watch(c, args);
    return c;
  }

  /** From now on an exit is answered by a restart (before, the caller's start-up check reports it). */
  supervise(): void {
    this.supervising = true;
  }

  private spawn(role: Role, name: string, args: string[]): ChildProcess {
    const [program, ...lead] = this.opts.command;
    const out = this.opts.output;
    // Without `output` the child writes its file itself, so its log outlives this process.
    const file = this.opts.logDir === undefined ? undefined : openSync(join(this.opts.logDir, `${name}.log`), 'a');
    const sink = out ? 'pipe' : (file ?? 'inherit');
    const proc = spawn(program, [...lead, role, '--name', name, ...args], { stdio: ['ignore', sink, sink] });
    if (out) {
      for (const stream of [proc.stdout!, proc.stderr!]) {
        let rest = '';
        stream.on('data', (d: Buffer) => {
          const lines = (rest + d.toString()).split('\n');
          rest = lines.pop() ?? '';
          for (const l of lines) {
            if (file !== undefined) writeSync(file, `${l}\n`);
            out(name, l);
          }
        });
      }
      if (file !== undefined) proc.once('close', () => closeSync(file));
    } else if (file !== undefined) {
      closeSync(file);
    }
    return proc;
  }

  private watch(c: Supervised, args: string[]): void {
    c.proc.once('exit', (code, signal) => {
      if (this.stopping || !this.supervising) return;
      const uptime = Date.now() - c.startedAt;
      c.delayMs = nextDelay(c.delayMs, uptime, this.backoff);
      const how = signal ? `was killed by ${signal}` : `exited with status ${code}`;
      this.opts.log(`${c.name} (pid ${c.proc.pid}) ${how} after ${(uptime / 1000).toFixed(1)} s; restarting in ${(c.delayMs / 1000).toFixed(1)} s`);
      c.timer = setTimeout(() => {
        c.timer = undefined;
        if (this.stopping) return;
        c.proc = this.spawn(c.role, c.name, args);
        c.restarts++;
        c.startedAt = Date.now();
        this.watch(c, args);
        this.opts.log(`${c.name} restarted: pid ${c.proc.pid} (restart ${c.restarts})`);
        this.opts.onRestart(c);
      }, c.delayMs);
    });
  }

  /** Ends every child (SIGTERM, SIGKILL after 5 s) and restarts none. */
  async stop(): Promise<void> {
    this.stopping = true;
    for (const c of this.children) clearTimeout(c.timer);
    await Promise.all(this.children.map((c) => new Promise<void>((res) => {
      if (c.proc.exitCode !== null || c.proc.signalCode !== null) return res();
      const kill = setTimeout(() => c.proc.kill('SIGKILL'), 5000);
      c.proc.once('exit', () => { clearTimeout(kill); res(); });
      c.proc.kill('SIGTERM');
    })));
  }
}
