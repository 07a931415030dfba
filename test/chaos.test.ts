// The chaos run (bench/chaos.ts) as a child process from dist/: a cluster of
// three supervised shard processes holding 2 shards × 2 replicas, mixed load,
// and shard processes SIGKILLed at random moments. Nothing acknowledged may be
// lost, no acknowledged delete may come back, every replica must catch up, and
// no process may be left afterwards. 20 s of load by default;
// VDB_CHAOS_SECONDS=300 runs longer.

import { describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT, pidAlive, requireDist } from './cluster-helpers.js';

const SECONDS = Number(process.env.VDB_CHAOS_SECONDS ?? 20);
const CHAOS = join(ROOT, 'dist', 'bench', 'chaos.js');

interface Verdict { lost: number; resurrected: number; phantom: number; examples: string[] }
interface Result {
  writesAcked: number;
  caughtUp: boolean;
  api?: Verdict;
  disk?: { copies: number; v: Verdict };
  reads: number;
  kills: { name: string; pid: number; backMs?: number }[];
  pids: number[];
}

describe('chaos', () => {
  it(`${SECONDS} s of load with shard processes killed: nothing acknowledged lost or resurrected`, async () => {
    requireDist();
    const dir = mkdtempSync(join(tmpdir(), 'vdb-chaos-test-'));
    try {
      const json = join(dir, 'result.json');
      const child = spawn(process.execPath, [CHAOS, '--seconds', String(SECONDS), '--kill-every', '2', '--seed', '7', '--json', json], { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      child.stdout.on('data', (d: Buffer) => { out += d.toString(); });
      child.stderr.on('data', (d: Buffer) => { out += d.toString(); });
      const status = await new Promise<number | null>((res) => child.once('exit', (code) => res(code)));
      expect(status, out).toBe(0);
      const r = JSON.parse(readFileSync(json, 'utf8')) as Result;
      expect(r.caughtUp, out).toBe(true);
      expect(r.writesAcked, out).toBeGreaterThan(0);
      expect(r.reads, out).toBeGreaterThan(0);
      expect(r.kills.length, out).toBeGreaterThanOrEqual(1);
      for (const k of r.kills) expect(k.backMs, `${k.name} never came back\n${out}`).toBeDefined();
      expect(r.api, out).toMatchObject({ lost: 0, resurrected: 0, phantom: 0 });
      expect(r.disk?.copies, out).toBe(4);
      expect(r.disk?.v, out).toMatchObject({ lost: 0, resurrected: 0, phantom: 0 });
      for (const pid of [...r.pids, ...r.kills.map((k) => k.pid)]) expect(pidAlive(pid), `pid ${pid} still runs`).toBe(false);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, (SECONDS + 240) * 1000);
});
