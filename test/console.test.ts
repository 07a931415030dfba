// The web console in a real browser (Debian's chromium through playwright-core)
// against a real authenticated cluster: `vdb console` runs as a process of its
// own with the admin user's credentials; the page must show the shards and
// their lag, answer searches with the ids the client's own search returns, and
// mark a SIGKILLed shard process down; requests without the token get 401.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import type { Browser, Page } from 'playwright-core';
import { CLI, ROOT, TestCluster, waitFor } from './cluster-helpers.js';

const TOKEN = 'console-test-token-0123456789abcdef';
const DIM = 16;
const N = 300;
const LABELS = ['Sneaker', 'Boot', 'Shirt', 'Bag'];

function vec(i: number): number[] {
  return Array.from({ length: DIM }, (_, d) => Math.sin(i * 0.37 + d * 1.3) + ((i * 7 + d * 3) % 11) / 11);
}

describe('web console', () => {
  let cl: TestCluster;
  let consoleProc: ChildProcess;
  let url = '';
  let output = '';
  let browser: Browser;
  let page: Page;

  beforeAll(async () => {
    cl = await TestCluster.start({ shards: 3 });
    await cl.client.createCollection({ name: 'fashion', dim: DIM, metric: 'l2', partitioner: { kind: 'hash', shards: 2 }, replicas: 1 });
    await cl.client.createCollection({ name: 'docs', dim: DIM, metric: 'cosine', partitioner: { kind: 'hash', shards: 1 }, replicas: 1 });
    for (let i = 0; i < N; i += 100) {
      await cl.client.upsert('fashion', Array.from({ length: 100 }, (_, j) => ({ id: i + j, vector: vec(i + j), payload: { label: LABELS[(i + j) % 4], n: i + j } })));
    }
    await cl.client.upsert('docs', Array.from({ length: 50 }, (_, j) => ({ id: `doc-${j}`, vector: vec(1000 + j) })));
    await cl.waitCount('fashion', N);
    // The token through the environment: never on a command line.
    consoleProc = spawn(process.execPath, [CLI, 'console', '--nats', cl.natsUrl, '--creds', cl.credentials.files.admin, '--port', '0'], {
      cwd: ROOT, env: { ...process.env, VDB_CONSOLE_TOKEN: TOKEN }, stdio: ['ignore', 'pipe', 'pipe'],
    });
    consoleProc.stdout!.on('data', (d: Buffer) => { output += d.toString(); });
    consoleProc.stderr!.on('data', (d: Buffer) => { output += d.toString(); });
    url = await waitFor('the console URL', async () => /console: (http:\S+)/.exec(output)?.[1], 60_000, 100, () => output);
    browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--no-sandbox'] });
    page = await browser.newPage({ viewport: { width: 1280, height: 1100 } });
  });

  afterAll(async () => {
    await browser?.close();
    consoleProc?.kill('SIGTERM');
    await cl?.stop();
  });

  it('refuses a request without the token, or with a wrong one (401)', async () => {
    for (const path of ['', 'api/overview', 'console.js']) {
      expect((await fetch(url + path)).status, path).toBe(401);
      expect((await fetch(url + path, { headers: { Authorization: 'Bearer wrong-token-wrong-token' } })).status, path).toBe(401);
      expect((await fetch(url + path, { headers: { Cookie: 'vdb_console=wrong-token-wrong-token' } })).status, path).toBe(401);
    }
    const r = await fetch(`${url}api/search`, { method: 'POST', body: JSON.stringify({ collection: 'fashion', vector: vec(1), k: 3 }) });
    expect(r.status).toBe(401);
    expect(((await r.json()) as { error: { code: string } }).error.code).toBe('UNAUTHENTICATED');
    const ok = await fetch(`${url}api/overview`, { headers: { Authorization: `Bearer ${TOKEN}` } });
    expect(ok.status).toBe(200);
  });

  it('answers bad playground input with a coded error, not a crash', async () => {
    const post = async (body: string) => {
      const r = await fetch(`${url}api/search`, { method: 'POST', headers: { Authorization: `Bearer ${TOKEN}` }, body });
      return { status: r.status, code: ((await r.json()) as { error?: { code: string } }).error?.code };
    };
    expect(await post('not json')).toEqual({ status: 400, code: 'BAD_REQUEST' });
    expect(await post(JSON.stringify({ collection: 'fashion', vector: 'abc' }))).toEqual({ status: 400, code: 'INVALID_VECTOR' });
    expect(await post(JSON.stringify({ collection: 'fashion', vector: [1, 2], k: 3 }))).toEqual({ status: 400, code: 'DIMENSION_MISMATCH' });
    expect(await post(JSON.stringify({ collection: 'nope', vector: vec(1), k: 3 }))).toEqual({ status: 404, code: 'COLLECTION_NOT_FOUND' });
  });

  it('logs in with the token and shows the shards, their counts and lag', async () => {
    await page.goto(url);
    await page.fill('#token', TOKEN);
    await Promise.all([page.waitForURL(url), page.click('button[type=submit]')]);
    const fashion = page.locator('.collection[data-collection="fashion"]');
    await fashion.waitFor({ timeout: 30_000 });
    expect(await fashion.locator('.shard-count').textContent()).toBe('2');
    expect(await fashion.locator('tbody tr').count()).toBe(2);
    // Every write was applied before the console started: each replica shows lag 0.
    await waitFor('lag 0 on every replica of fashion', async () => {
      const lags = await fashion.locator('.lag').allTextContents();
      return lags.length === 2 && lags.every((l) => l === '0') ? true : undefined;
    }, 30_000, 250);
    expect((await fashion.locator('.points').textContent())?.replace(/,/g, '')).toBe(String(N));
    for (const name of ['shard-0', 'shard-1', 'shard-2', 'c-0']) {
      expect(await page.locator(`#processes tr[data-name="${name}"]`).getAttribute('data-state'), name).toBe('up');
    }
  });

  it('runs a search from a stored point\'s vector with the ids the client finds', async () => {
    await page.selectOption('#collection', 'fashion');
    await page.fill('#point-id', '41');
    await page.click('#take-vector');
    await waitFor('the vector of point 41', async () => ((await page.inputValue('#vector')).startsWith('[') ? true : undefined), 15_000, 100);
    await page.fill('#k', '7');
    await page.fill('#filter', '{"label": {"$in": ["Sneaker", "Boot"]}}');
    await page.click('#search');
    let meta = '';
    await waitFor('7 hits on the page', async () => {
      meta = (await page.textContent('#search-meta')) ?? '';
      return (await page.locator('#hits tbody tr').count()) === 7 ? true : undefined;
    }, 15_000, 100, () => `search message: ${meta}`);
    const shown = (await page.locator('#hits tbody td.id').allTextContents()).map(Number);
    const stored = (await cl.client.get('fashion', [41], { withVector: true })).points[0].vector!;
    const mine = await cl.client.search('fashion', stored, { k: 7, filter: { label: { $in: ['Sneaker', 'Boot'] } }, withPayload: true });
    expect(shown).toEqual(mine.hits.map((h) => h.id));
    expect(shown[0]).toBe(41);
    const payloads = await page.locator('#hits tbody td.payload').allTextContents();
    expect(payloads.map((p) => JSON.parse(p) as unknown)).toEqual(mine.hits.map((h) => h.payload));

    // Traffic for the charts, then the screenshot the README shows.
    let i = 0;
    await waitFor('a few samples on the charts', async () => {
      await cl.client.upsert('docs', Array.from({ length: 20 }, (_, j) => ({ id: `more-${i}-${j}`, vector: vec(2000 + i * 20 + j) })));
      for (const end = i + 10; i < end; i++) await cl.client.search('fashion', vec(i), { k: 10, ef: 16 + (i % 64) });
      const d = (await page.locator('#chart-latency path.line').first().getAttribute('d')) ?? '';
      return (d.match(/L/g) ?? []).length >= 8 ? true : undefined;
    }, 60_000, 250);
    mkdirSync(join(ROOT, 'docs', 'results'), { recursive: true });
    await page.screenshot({ path: join(ROOT, 'docs', 'results', 'console.png'), fullPage: true });
  });

  it('marks a SIGKILLed shard process down, and its shard with it, within seconds', async () => {
    // The shard process that holds a replica of fashion's shard 1.
    const st = (await cl.client.status()) as { collections: { name: string; shards: { shard: number; replicas: { member: string }[] }[] }[] };
    const victim = st.collections.find((c) => c.name === 'fashion')!.shards.find((s) => s.shard === 1)!.replicas[0].member;
    await cl.kill(victim, 'SIGKILL');
    await waitFor(`${victim} shown down`, async () => ((await page.locator(`#processes tr[data-name="${victim}"]`).getAttribute('data-state')) === 'down' ? true : undefined), 30_000, 200);
    const shard1 = page.locator('.collection[data-collection="fashion"] tr[data-shard="1"]');
    await waitFor('fashion shard 1 shown down', async () => ((await shard1.getAttribute('data-health')) === 'down' ? true : undefined), 30_000, 200);
    expect(await shard1.locator(`.replica[data-member="${victim}"] .badge`).textContent()).toBe('gone');
  });
});
