// Logs of real processes (docs/operations.md, "Logs"): every line a shard or
// coordinator writes is a JSON object with level, time, role and name;
// --log-level warn drops the info lines; an error reply is logged with its
// subject and code (at debug: a caller's mistake); no line holds a secret of
// the credentials the process connects with; `vdb up` appends each process's
// log to DIR/logs/<name>.log.

import { afterAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CLI, TestCluster, requireDist, waitFor } from './cluster-helpers.js';
import { ErrorCode, VdbError } from '../ts/errors.js';

type Rec = Record<string, unknown>;

function parseAll(lines: string[], who: string): Rec[] {
  return lines.filter((l) => l.trim() !== '').map((l) => {
    try {
      return JSON.parse(l) as Rec;
    } catch {
      throw new Error(`${who} wrote a line that is not JSON: ${l}`);
    }
  });
}

function expectHead(recs: Rec[], role: string, name: string): void {
  expect(recs.length).toBeGreaterThan(0);
  for (const r of recs) {
    expect(r).toMatchObject({ role, name });
    expect(['trace', 'debug', 'info', 'warn', 'error', 'fatal']).toContain(r.level);
    expect(Number.isNaN(Date.parse(r.time as string))).toBe(false);
    expect(typeof r.msg).toBe('string');
  }
}

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe('process logs', () => {
  it('are JSON lines with level, time, role and name; --log-level warn drops info; an error reply logs subject and code; no secret', async () => {
    const cl = await TestCluster.start({ shards: 0, coordinatorArgs: ['--log-level', 'debug'] });
    try {
      cl.startShard('shard-0', { args: ['--log-level', 'warn'] });
      cl.startShard('shard-1');
      await cl.waitMembers(['shard-0', 'shard-1', 'c-0']);
      await cl.client.createCollection({ name: 'lg', dim: 4, metric: 'l2', replicas: 1, partitioner: { kind: 'hash', shards: 2 } });
      await cl.client.upsert('lg', [{ id: 1, vector: [1, 2, 3, 4] }, { id: 2, vector: [4, 3, 2, 1] }]);
      await cl.waitCount('lg', 2);
      // shard-1 (info) says which shard it serves; shard-0 (warn) serves one too but says nothing below warn.
      await waitFor('shard-1 logging that it serves lg', async () => (cl.proc('shard-1').lines.some((l) => l.includes('serving lg/')) ? true : undefined), 30_000, 100, () => cl.logs());
      const err = await cl.client.search('lg', [1, 2, 3], { k: 1 }).then(() => undefined, (e: unknown) => e);
      expect(err).toBeInstanceOf(VdbError);
      expect((err as VdbError).code).toBe(ErrorCode.DIMENSION_MISMATCH);
      const coord = await waitFor('the coordinator logging the error reply', async () => {
        const recs = parseAll(cl.proc('c-0').lines, 'c-0');
        return recs.some((r) => r.code === ErrorCode.DIMENSION_MISMATCH) ? recs : undefined;
      }, 30_000, 100, () => cl.logs());
      expectHead(coord, 'coordinator', 'c-0');
      const e = coord.find((r) => r.code === ErrorCode.DIMENSION_MISMATCH)!;
      expect(e).toMatchObject({ level: 'debug', subject: 'vdb.v1.lg.search' });
      expect((e.cause as { message: string }).message).toMatch(/expected 4 float32/);

      const info = parseAll(cl.proc('shard-1').lines, 'shard-1');
      expectHead(info, 'shard', 'shard-1');
      expect(info.some((r) => r.level === 'info')).toBe(true);
      const quiet = parseAll(cl.proc('shard-0').lines, 'shard-0');
      expect(quiet.filter((r) => r.level === 'info' || r.level === 'debug'), cl.logs()).toEqual([]);

      const { seed } = JSON.parse(readFileSync(cl.credentials.internal, 'utf8')) as { seed: string };
      expect(seed.length).toBeGreaterThan(10);
      for (const p of cl.procs.values()) expect(p.lines.join('\n')).not.toContain(seed);
    } finally {
      await cl.stop();
    }
  });

  it('vdb up --log-level debug appends each process\'s JSON log to DIR/logs/<name>.log', async () => {
    requireDist();
    const data = mkdtempSync(join(tmpdir(), 'vdb-logs-'));
    dirs.push(data);
    const child = spawn(process.execPath, [CLI, 'up', '--shards', '1', '--data', data, '--log-level', 'debug'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
    child.stderr!.on('data', (d: Buffer) => { out += d.toString(); });
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    try {
      await waitFor('vdb up serving', async () => {
        if (child.exitCode !== null) throw new Error(`vdb up exited ${child.exitCode}: ${out}`);
        return out.includes('serving; Ctrl-C stops the cluster') ? true : undefined;
      }, 90_000, 200, () => out);
      for (const [name, role] of [['shard-0', 'shard'], ['coordinator-0', 'coordinator']]) {
        const file = join(data, 'logs', `${name}.log`);
        expect(existsSync(file), file).toBe(true);
        const recs = parseAll(readFileSync(file, 'utf8').split('\n'), file);
        expectHead(recs, role, name);
      }
      // vdb up's own lines (stderr, not a terminal here) are JSON too.
      const own = parseAll(out.split('\n').filter((l) => l.startsWith('{')), 'vdb up');
      expect(own.some((r) => r.role === 'up' && String(r.msg).startsWith('cluster up'))).toBe(true);
    } finally {
      child.kill('SIGTERM');
      await exited;
    }
    // Logged while stopping, so the file is appended to, never replaced.
    expect(readFileSync(join(data, 'logs', 'shard-0.log'), 'utf8').split('\n').filter(Boolean).length).toBeGreaterThan(1);
  });
});
