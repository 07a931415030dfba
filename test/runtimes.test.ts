// The same build/vdb.wasm, driven through its raw ABI by the same script
// (test/runtimes/abi-probe.mjs), gives exactly Node's results in Deno, Bun and
// headless Chromium. A runtime that is not installed fails the test with how to
// install it: a skipped runtime would be an untested one.

import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chromium } from 'playwright-core';
// @ts-expect-error a plain JavaScript module without types: every runtime runs it as it is
import { probe } from './runtimes/abi-probe.mjs';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const WASM = join(ROOT, 'build', 'vdb.wasm');
const PROBE = join(ROOT, 'test', 'runtimes', 'abi-probe.mjs');
const CLI = join(ROOT, 'test', 'runtimes', 'cli.mjs');
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

type Summary = Record<string, unknown>;
let nodeSummary: Summary;

beforeAll(async () => {
  if (!existsSync(WASM)) throw new Error('build/vdb.wasm is missing: run npm run build');
  nodeSummary = JSON.parse(JSON.stringify(await probe(readFileSync(WASM))));
});

/**
 * The binary of an npm-shipped runtime: from the platform package npm installed
 * among its optionalDependencies, else node_modules/.bin. Bun's .bin entry is a
 * placeholder until bun's postinstall runs (which package.json's allowScripts
 * does not let it do), and once it has run it has moved the platform binary
 * there; the platform package holds the binary without any script.
 */
function runtimeBinary(pkg: string, file: string): string {
  const manifest = join(ROOT, 'node_modules', pkg, 'package.json');
  const hint = `the devDependency ${pkg} ships its binary in a platform package: run npm ci`;
  if (!existsSync(manifest)) throw new Error(`${pkg} is not installed (${manifest} is missing): ${hint}`);
  const platforms = Object.keys(JSON.parse(readFileSync(manifest, 'utf8')).optionalDependencies ?? {});
  const candidates = [...platforms.map((p) => join(ROOT, 'node_modules', p, file)), join(ROOT, 'node_modules', '.bin', pkg)];
  const found = candidates.find((p) => existsSync(p));
  if (!found) {
    throw new Error(`no ${pkg} binary for ${process.platform}-${process.arch}: none of ${candidates.join(', ')} ` +
      `exists (npm installs only the platform package matching this machine): ${hint}`);
  }
  return found;
}

/** Runs a binary; its stdout. */
function run(path: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(path, args, { cwd: ROOT, maxBuffer: 64 << 20, env: { ...process.env, DENO_NO_UPDATE_CHECK: '1' } },
      (err, stdout, stderr) => {
        if (err) reject(new Error(`${path} ${args.join(' ')} failed: ${err.message}\n${stderr}`));
        else resolve(stdout);
      });
  });
}

describe('the probe itself, under Node', () => {
  // Equality with Node proves nothing if Node's own answers are wrong: check the documented behaviour.
  it('sees the documented module and codes', () => {
    const s = nodeSummary as any;
    expect(s.imports).toEqual([]);
    expect(s.exports).toContain('memory:memory');
    expect(s.beforeInit.pages).toBe(2);
    expect(s.beforeInit.calls).toMatchObject({ add: -1, search: -1, remove: -1, save: -1, loadEnd: -1, loadBegin: -5 });
    expect(Object.values(s.beforeInit.badInit)).toEqual(Array(7).fill(-2));
    expect(s.beforeInit.hugeCapacity).toBe(-3);
    // What index_init's −3 leaves behind (docs/wasm-abi.md): uninitialised, but dim and the fixed buffers set.
    expect(s.beforeInit.afterHugeCapacity).toMatchObject({ add: -1, filter: 0,
      counters: { size: 0, capacity: 0, dim: 8, metric: -1 } });
    expect(s.beforeInit.afterHugeCapacity.input).toBeGreaterThan(0);
    expect(s.beforeInit.initAfterFailure).toBe(0);
    expect(s.beforeInit.initMax).toBe(0);
  });

  it('answers every metric: graph as exact on this small set, filters, removes, snapshots', () => {
    for (const m of (nodeSummary as any).metrics) {
      expect(m.init).toBe(0);
      expect(m.slots).toEqual(Array.from({ length: 700 }, (_, i) => i));
      for (const r of [...m.ann, ...m.exact]) expect(r.ids).toHaveLength(10);
      expect(m.ann.map((r: any) => r.ids)).toEqual(m.exact.map((r: any) => r.ids));
      for (const f of m.filtered) {
        for (const r of [f.auto, f.graph, f.exact]) expect(r.ids.every((s: number) => s % 3 === 0)).toBe(true);
        expect(f.auto.ids).toEqual(f.exact.ids);
        expect([...f.few.ids].sort((a: number, b: number) => a - b)).toEqual([17, 400]);
      }
      expect(m.removes.every((r: number) => r === 0)).toBe(true);
      expect(m.states).toEqual(Array(20).fill(2));
      for (const r of m.exactAfterRemove) expect(r.ids.every((s: number) => s % 7 !== 0 || s >= 560)).toBe(true);
      expect(m.load).toEqual({ begin: 0, end: 0, consumed: true });
      expect(m.sameAsSaved).toBe(true);
      expect(m.nextSlots[0]).toEqual(m.nextSlots[1]);
      expect(m.sameAfterAdd).toBe(true);
      expect(m.corruptSection.end).toBe(-5);
      expect(m.afterCorruptSection).toMatchObject({ add: 0, loadAgain: -1,
        counters: { size: 0, slots: 0, dim: 13, metric: m.metric } });
      expect(m.corruptHeader).toEqual({ begin: -5 });
      expect(m.afterCorruptHeader.counters).toMatchObject({ size: 0, metric: -1 });
      expect(m.afterCorruptHeader.loadAgain).toEqual({ begin: 0, end: 0, consumed: true });
      expect(m.errors).toMatchObject({
        initAgain: -1, k0: -2, kOver: -2, efBelowK: -2, efOver: -2, filterMode: -2, exactFiltered: -2,
        nanAdd: -6, infQuery: -6, removeOutOfRange: -4, removeTwice: [0, -4], statePastSlots: -4,
        vectorOfRemoved: 0, reserveTooMuch: -3, loadIntoInitialised: -1, loadEndWithoutBegin: -1,
      });
      if (m.metric === 2) expect(m.errors.zeroAdd).toBe(-7); // a zero vector has no direction
      else expect(m.errors.zeroAdd).toBeGreaterThanOrEqual(0);
    }
  });
});

describe('every runtime gives Node\'s results exactly', () => {
  it('Deno', async () => {
    const out = await run(runtimeBinary('deno', 'deno'), ['run', '--allow-read', CLI, WASM]);
    expect(JSON.parse(out)).toEqual(nodeSummary);
  });

  it('Bun', async () => {
    const out = await run(runtimeBinary('bun', 'bin/bun'), ['run', CLI, WASM]);
    expect(JSON.parse(out)).toEqual(nodeSummary);
  });

  describe('headless Chromium', () => {
    let server: Server;
    let base: string;

    beforeAll(async () => {
      // The page fetches the probe and the module over loopback HTTP, as a web app would.
      const page = '<!doctype html><title>vdb abi probe</title><script type="module">\n' +
        "import { probe } from './abi-probe.mjs';\n" +
        "window.summary = fetch('./vdb.wasm').then((r) => r.arrayBuffer()).then((b) => probe(new Uint8Array(b))).then(JSON.stringify);\n" +
        '</script>';
      const files: Record<string, [string, () => string | Buffer]> = {
        '/': ['text/html', () => page],
        '/abi-probe.mjs': ['text/javascript', () => readFileSync(PROBE)],
        '/vdb.wasm': ['application/wasm', () => readFileSync(WASM)],
      };
      server = createServer((req, res) => {
        const f = files[req.url ?? ''];
        if (!f) { res.writeHead(404).end(); return; }
        res.writeHead(200, { 'Content-Type': f[0] });
        res.end(f[1]());
      });
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    });

    afterAll(async () => {
      await new Promise((resolve) => server.close(resolve));
    });

    it('Chromium', async () => {
      if (!existsSync(CHROMIUM)) {
        throw new Error(`Chromium is not installed at ${CHROMIUM}: apt-get install -y chromium (Debian), ` +
          'or set CHROMIUM_PATH to a Chromium binary');
      }
      const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
      try {
        const page = await browser.newPage();
        const errors: string[] = [];
        page.on('pageerror', (e) => errors.push(e.message));
        await page.goto(`${base}/`);
        // Module scripts have run by the load event; the summary is a promise the page made.
        const out = await page.evaluate('window.summary') as string;
        expect(errors).toEqual([]);
        expect(JSON.parse(out)).toEqual(nodeSummary);
      } finally {
        await browser.close();
      }
    });
  });
});
