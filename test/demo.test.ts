// What `npm start` runs, as a newcomer would: `vdb up --shards 2 --demo` from
// dist/, with nothing outside the repo but the Debian package of Fashion-MNIST:
// it imports real images with their class, answers a sample search, and stops
// on SIGTERM; without the package it says so and uses synthetic data.

import { afterEach, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { FASHION_DIR, fashionSubset } from './fashion.js';

const CLI = join(dirname(fileURLToPath(import.meta.url)), '..', 'dist', 'cluster', 'cli.js');
const POINTS = 1500;

let child: ChildProcess | undefined;
let out = '';
const log = () => out;
let dir: string | undefined;

afterEach(async () => {
  if (child && child.exitCode === null && child.signalCode === null) {
    child.kill('SIGKILL');
    await new Promise((r) => child!.once('exit', r));
  }
  if (dir) rmSync(dir, { recursive: true, force: true });
  child = undefined;
  dir = undefined;
});

/** Runs `vdb up --demo` until it says it is serving; its whole output so far. */
async function demo(env: Record<string, string>): Promise<string> {
  dir = mkdtempSync(join(tmpdir(), 'vdb-demo-'));
  child = spawn(process.execPath, [CLI, 'up', '--shards', '2', '--data', dir, '--demo'], {
    env: { ...process.env, DEMO_POINTS: String(POINTS), ...env }, stdio: ['ignore', 'pipe', 'pipe'],
  });
  out = '';
  child.stdout!.on('data', (b) => { out += b; });
  child.stderr!.on('data', (b) => { out += b; });
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`vdb up --demo did not serve within 90 s:\n${out}`)), 90_000);
    const check = () => {
      if (out.includes('serving; Ctrl-C stops the cluster')) { clearTimeout(timer); resolve(); }
    };
    child!.stdout!.on('data', check);
    child!.stderr!.on('data', check);
    child!.once('exit', (code) => { clearTimeout(timer); reject(new Error(`vdb up exited with ${code}:\n${out}`)); });
  });
  return out;
}

/** The sample search's hits as printed: id, distance, payload. */
function hits(out: string): { id: number; distance: number; payload?: { class?: string } }[] {
  return [...out.matchAll(/^ {2}id +(\d+) +distance ([\d.]+)(?: +(\{.*\}))?$/gm)]
    .map((m) => ({ id: Number(m[1]), distance: Number(m[2]), payload: m[3] ? JSON.parse(m[3]) : undefined }));
}

/** SIGTERM: how it ended (the exit code, or the signal that ended it). */
async function stops(): Promise<number | string> {
  const ended = new Promise<number | string>((r) => child!.once('exit', (code, signal) => r(code ?? signal ?? 'unknown')));
  child!.kill('SIGTERM');
  return ended;
}

describe('npm start (vdb up --demo)', () => {
  it('imports Fashion-MNIST images with their class from the Debian package, finds the first by its own vector, and stops on SIGTERM', async () => {
    fashionSubset(1, 1); // fails with the apt-get command when the package is missing
    const out = await demo({});
    expect(out).toContain(`Fashion-MNIST (the first ${POINTS} training images, from ${FASHION_DIR})`);
    const h = hits(out);
    expect(h, out).toHaveLength(5);
    expect(h[0]).toEqual({ id: 0, distance: 0, payload: { class: 'Ankle boot' } }); // image 0 of the training set is label 9
    expect(h.every((x) => typeof x.payload?.class === 'string')).toBe(true);
    expect(await stops()).toBe(0);
  }, 120_000);

  it('says where it looked and uses synthetic data when Fashion-MNIST is not installed', async () => {
    const out = await demo({ VDB_FASHION_IDX_DIR: join(tmpdir(), 'no-such-dataset') });
    expect(out).toMatch(/synthetic clustered 1500 × 128 \(Fashion-MNIST not found in .*no-such-dataset: apt-get install -y dataset-fashion-mnist/);
    expect(hits(out)[0]).toMatchObject({ id: 0, distance: 0 });
    expect(await stops(), log()).toBe(0);
  }, 120_000);
});
