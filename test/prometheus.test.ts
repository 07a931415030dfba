// Prometheus for real: a real cluster (authenticated, from dist/), a real
// Prometheus scraping it through the file-discovery targets and the alert
// rules the repo ships (their `for:` set to 0 s, and 1 s intervals, so the
// test takes seconds), and a real Alertmanager routing to a webhook this test
// serves on loopback.
//  - every process kind's /metrics passes `promtool check metrics`, and every
//    vdb_ metric is documented in docs/metrics.md;
//  - every query of the Grafana dashboard returns data from that Prometheus;
//  - SIGKILL of a shard's only replica brings VdbShardNoLiveReplica for that
//    shard to the webhook.

import { createServer } from 'node:http';
import type { Server } from 'node:http';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT, TestCluster, waitFor } from './cluster-helpers.js';
import { daemon, dashboardQueries, freePort, need, promtool } from './prometheus-helpers.js';
import type { Daemon } from './prometheus-helpers.js';
import { ALERT_RULES, prometheusConfig, writeTargets } from '../cluster/scrape-config.js';
import type { ClusterProcess } from '../cluster/launcher.js';

const COLL = 'docs';
const DIM = 8;

interface Received {
  status: string;
  labels: Record<string, string>;
}

type Member = { name: string; role: 'shard' | 'coordinator'; pid: number; metricsPort: number };

let cl: TestCluster;
let prometheus: Daemon | undefined;
let alertmanager: Daemon | undefined;
let webhook: Server | undefined;
const received: Received[] = [];
let promUrl = '';

const vector = (i: number) => Array.from({ length: DIM }, (_, d) => Math.sin(i * 7 + d));

async function members(): Promise<Member[]> {
  return (await cl.client.status()).members as Member[];
}

/** An instant query: the result vector, or a thrown error with Prometheus's message. */
async function query(expr: string): Promise<unknown[]> {
  const res = await fetch(`${promUrl}/api/v1/query?query=${encodeURIComponent(expr)}`);
  const body = (await res.json()) as { status: string; error?: string; data?: { result: unknown[] } };
  if (body.status !== 'success') throw new Error(`${expr}: ${body.error}`);
  return body.data!.result;
}

const daemonLogs = () => [`--- prometheus:\n${prometheus?.lines.join('\n')}`, `--- alertmanager:\n${alertmanager?.lines.join('\n')}`].join('\n');

beforeAll(async () => {
  // Missing binaries fail here with the install hint.
  const prometheusBin = need('prometheus');
  const alertmanagerBin = need('prometheus-alertmanager');
  need('promtool');
  // The balancer must not replace the killed replica while the test watches.
  cl = await TestCluster.start({ shards: 2, coordinators: 1, coordinatorArgs: ['--grace-ms', '600000'] });
  await cl.client.createCollection({ name: COLL, dim: DIM, metric: 'l2', partitioner: { kind: 'hash', shards: 2 }, replicas: 1 });
  await cl.client.upsert(COLL, Array.from({ length: 200 }, (_, i) => ({ id: i, vector: vector(i), payload: { i } })), { wait: true });

  // The receiver Alertmanager posts to.
  webhook = createServer((req, res) => {
    let body = '';
    req.on('data', (d) => (body += d));
    req.on('end', () => {
      for (const a of (JSON.parse(body) as { alerts: Received[] }).alerts) received.push({ status: a.status, labels: a.labels });
      res.end('ok');
    });
  });
  await new Promise<void>((ok) => webhook!.listen(0, '127.0.0.1', ok));
  const hookPort = (webhook.address() as { port: number }).port;

  const dir = join(cl.dir, 'prometheus');
  mkdirSync(dir, { recursive: true });
  const amPort = await freePort();
  writeFileSync(join(dir, 'alertmanager.yml'), [
    'route:',
    '  receiver: test',
    "  group_by: ['alertname', 'collection', 'shard', 'name']",
    '  group_wait: 1s',
    '  group_interval: 1s',
    '  repeat_interval: 1h',
    'receivers:',
    '  - name: test',
    '    webhook_configs:',
    `      - url: http://127.0.0.1:${hookPort}/alerts`,
  ].join('\n'));
  alertmanager = daemon(alertmanagerBin, [
    `--config.file=${join(dir, 'alertmanager.yml')}`, `--storage.path=${join(dir, 'am-data')}`,
    `--web.listen-address=127.0.0.1:${amPort}`, '--cluster.listen-address=',
  ]);

  // The shipped rules, each firing as soon as its condition holds.
  writeFileSync(join(dir, 'alerts.yml'), readFileSync(ALERT_RULES, 'utf8').replace(/^(\s+for:) \S+$/gm, '$1 0s'));
  const processes: ClusterProcess[] = (await members()).map((m) => ({ role: m.role, name: m.name, pid: m.pid, metrics: `http://127.0.0.1:${m.metricsPort}/metrics` }));
  writeTargets(dir, processes);
  writeFileSync(join(dir, 'prometheus.yml'), prometheusConfig({ targetFiles: ['targets.json'], ruleFiles: ['alerts.yml'], alertmanagers: [`127.0.0.1:${amPort}`], interval: '1s' }));
  const promPort = await freePort();
  promUrl = `http://127.0.0.1:${promPort}`;
  prometheus = daemon(prometheusBin, [`--config.file=${join(dir, 'prometheus.yml')}`, `--storage.tsdb.path=${join(dir, 'data')}`, `--web.listen-address=127.0.0.1:${promPort}`]);

  await waitFor('Alertmanager ready', async () => ((await fetch(`http://127.0.0.1:${amPort}/-/ready`)).ok ? true : undefined), 30_000, 200, daemonLogs);
  await waitFor('Prometheus scraping every process', async () => {
    const up = (await query('up{job="vdb"} == 1')).length;
    return up === processes.length ? true : undefined;
  }, 60_000, 250, daemonLogs);
}, 180_000);

afterAll(async () => {
  await prometheus?.stop();
  await alertmanager?.stop();
  await new Promise((ok) => (webhook ? webhook.close(ok) : ok(undefined)));
  await cl?.stop();
});

describe('metrics of a real cluster', () => {
  it("every process kind's /metrics passes promtool check metrics", async () => {
    const ms = await members();
    for (const role of ['shard', 'coordinator'] as const) {
      const m = ms.find((x) => x.role === role)!;
      const text = await (await fetch(`http://127.0.0.1:${m.metricsPort}/metrics`)).text();
      const r = promtool(['check', 'metrics'], text);
      expect(r.status, `${m.name}: ${r.output}`).toBe(0);
      expect(text).toContain('process_cpu_seconds_total');
      expect(text).toContain('vdb_nats_connected 1');
      if (role === 'shard') {
        expect(text).toMatch(/vdb_shard_points\{collection="docs",shard="\d"\} \d+/);
        expect(text).toMatch(/vdb_shard_lag_seconds\{collection="docs",shard="\d"\} 0/);
        expect(text).toMatch(/vdb_shard_log_last_seq\{collection="docs",shard="\d"\} [1-9]/);
      } else {
        expect(text).toMatch(/vdb_cluster_shard_live_replicas\{collection="docs",shard="0"\} 1/);
        expect(text).toMatch(/vdb_coordinator_request_seconds_count\{op="upsert"\} [1-9]/);
      }
    }
  });

  it('every vdb_ metric the processes serve is documented in docs/metrics.md, and every one documented is served', async () => {
    const served = new Set<string>();
    for (const m of await members()) {
      const text = await (await fetch(`http://127.0.0.1:${m.metricsPort}/metrics`)).text();
      for (const [, name] of text.matchAll(/^# TYPE (vdb_\w+) /gm)) served.add(name!);
    }
    const doc = readFileSync(join(ROOT, 'docs', 'metrics.md'), 'utf8');
    // The tables: rows that start with a metric name.
    const documented = new Set([...doc.matchAll(/^\| `(vdb_\w+)` \|/gm)].map((m) => m[1]!));
    expect([...served].filter((n) => !documented.has(n)), 'served but not documented').toEqual([]);
    expect([...documented].filter((n) => !served.has(n)), 'documented but not served').toEqual([]);
  });

  it('every query of the Grafana dashboard returns data from Prometheus', async () => {
    // Traffic for the request panels, and one refused request for the errors panel.
    for (let i = 0; i < 20; i++) await cl.client.search(COLL, vector(i), { k: 5 });
    await cl.client.count(COLL);
    await expect(cl.client.search(COLL, [1, 2, 3], { k: 5 })).rejects.toThrow();
    const queries = dashboardQueries(JSON.parse(readFileSync(join(ROOT, 'deploy', 'grafana', 'vdb.json'), 'utf8')));
    let empty: string[] = [];
    await waitFor('every dashboard query to return data', async () => {
      empty = [];
      for (const q of queries) {
        // An invalid query throws and ends the wait with its message.
        if ((await query(q.expr)).length === 0) empty.push(`${q.panel} (${q.refId}): ${q.expr}`);
      }
      return empty.length === 0 ? true : undefined;
    }, 60_000, 1000, () => `queries without data:\n${empty.join('\n')}\n${daemonLogs()}`);
  });

  it("SIGKILL of a shard's only replica: VdbShardNoLiveReplica reaches the webhook", async () => {
    const map = (await cl.client.describe(COLL)).shardMap as { replicas: string[][] };
    const victim = map.replicas[1]![0]!;
    expect(received.filter((a) => a.labels.alertname === 'VdbShardNoLiveReplica')).toEqual([]);
    await cl.kill(victim, 'SIGKILL');
    const alert = await waitFor('VdbShardNoLiveReplica at the webhook', async () =>
      received.find((a) => a.status === 'firing' && a.labels.alertname === 'VdbShardNoLiveReplica'),
    60_000, 250, () => `received: ${JSON.stringify(received)}\n${daemonLogs()}`);
    expect(alert.labels).toMatchObject({ collection: COLL, shard: '1', severity: 'critical' });
    // Shard 0 still has its replica: no alert for it.
    expect(received.some((a) => a.labels.alertname === 'VdbShardNoLiveReplica' && a.labels.shard === '0')).toBe(false);
  });
});
