// The Prometheus files the repo ships, checked offline with promtool: the alert
// rules (deploy/prometheus/alerts.yml) are valid and pass their unit tests
// (alerts.test.yml), which fire every alert at least once; the prometheus.yml
// and targets `vdb up` writes (cluster/scrape-config.ts) pass `promtool check
// config`; and every query of the Grafana dashboard (deploy/grafana/vdb.json)
// is valid PromQL. test/prometheus.test.ts runs them against a real cluster.

import { readFileSync, mkdtempSync, rmSync, writeFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT } from './cluster-helpers.js';
import { dashboardQueries, promtool } from './prometheus-helpers.js';
import { ALERT_RULES, prometheusConfig, scrapeTargets, writePrometheusConfig, writeTargets } from '../cluster/scrape-config.js';
import type { ClusterProcess } from '../cluster/launcher.js';

const DIR = join(ROOT, 'deploy', 'prometheus');

describe('alert rules', () => {
  it('pass promtool check rules', () => {
    const r = promtool(['check', 'rules', 'alerts.yml'], undefined, DIR);
    expect(r.status, r.output).toBe(0);
    expect(r.output).toMatch(/SUCCESS: \d+ rules found/);
  });

  it('pass their unit tests (promtool test rules)', () => {
    const r = promtool(['test', 'rules', 'alerts.test.yml'], undefined, DIR);
    expect(r.status, r.output).toBe(0);
  });

  it('every alert has a unit test in which it fires', () => {
    const alerts = [...readFileSync(join(DIR, 'alerts.yml'), 'utf8').matchAll(/^\s*- alert: (\w+)$/gm)].map((m) => m[1]);
    expect(alerts.length).toBeGreaterThanOrEqual(9);
    // Each `- eval_time:` block names one alert; it fires there when it expects labels.
    const blocks = readFileSync(join(DIR, 'alerts.test.yml'), 'utf8').split(/^\s*- eval_time:/m).slice(1);
    const fired = new Set(blocks.filter((b) => /exp_labels:/.test(b)).map((b) => /alertname: (\w+)/.exec(b)?.[1]));
    const quiet = new Set(blocks.filter((b) => /exp_alerts: \[\]/.test(b)).map((b) => /alertname: (\w+)/.exec(b)?.[1]));
    for (const a of alerts) {
      expect(fired.has(a), `${a} fires in a test`).toBe(true);
      expect(quiet.has(a), `${a} stays quiet in a test`).toBe(true);
    }
  });
});

describe('scrape configuration from cluster.json', () => {
  const processes: ClusterProcess[] = [
    { role: 'nats-server', pid: 1, port: 4222, monitorPort: 8222 },
    { role: 'shard', name: 'shard-0', pid: 2, restarts: 0, metrics: 'http://127.0.0.1:41001/metrics' },
    // restarted, not heartbeating yet: its port is not known
    { role: 'shard', name: 'shard-1', pid: 3, restarts: 1, metrics: null },
    { role: 'coordinator', name: 'coordinator-0', pid: 4, restarts: 0, metrics: 'http://[::1]:41003/metrics' },
  ];

  it('a target per process with a metrics URL, labelled with its role and name', () => {
    expect(scrapeTargets(processes)).toEqual([
      { targets: ['127.0.0.1:41001'], labels: { role: 'shard', name: 'shard-0' } },
      { targets: ['[::1]:41003'], labels: { role: 'coordinator', name: 'coordinator-0' } },
    ]);
  });

  it('prometheus.yml, targets.json and the rules pass promtool check config', () => {
    const dir = mkdtempSync(join(tmpdir(), 'vdb-prom-'));
    try {
      writeTargets(dir, processes);
      writePrometheusConfig(dir);
      expect(readdirSync(dir).sort()).toEqual(['alerts.yml', 'prometheus.yml', 'targets.json']);
      expect(readFileSync(join(dir, 'alerts.yml'), 'utf8')).toBe(readFileSync(ALERT_RULES, 'utf8'));
      expect(JSON.parse(readFileSync(join(dir, 'targets.json'), 'utf8'))).toEqual(scrapeTargets(processes));
      const r = promtool(['check', 'config', 'prometheus.yml'], undefined, dir);
      expect(r.status, r.output).toBe(0);
      expect(r.output).toMatch(/SUCCESS: 1 rule files found/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a configuration promtool refuses is caught (the check can fail)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'vdb-prom-'));
    try {
      writeFileSync(join(dir, 'prometheus.yml'), prometheusConfig({ targetFiles: ['targets.json'], ruleFiles: ['missing.yml'], interval: 'soon' }));
      expect(promtool(['check', 'config', 'prometheus.yml'], undefined, dir).status).not.toBe(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('Grafana dashboard', () => {
  it('every panel has queries, all valid PromQL', () => {
    const queries = dashboardQueries(JSON.parse(readFileSync(join(ROOT, 'deploy', 'grafana', 'vdb.json'), 'utf8')));
    expect(queries.length).toBeGreaterThan(20);
    // promtool parses PromQL offline as recording rules.
    const rules = ['groups:', '  - name: dashboard', '    rules:', ...queries.flatMap((q, i) => [`      - record: dashboard:query_${i}`, `        expr: ${JSON.stringify(q.expr)}`])].join('\n');
    const dir = mkdtempSync(join(tmpdir(), 'vdb-dash-'));
    try {
      writeFileSync(join(dir, 'rules.yml'), `${rules}\n`);
      const r = promtool(['check', 'rules', 'rules.yml'], undefined, dir);
      expect(r.status, r.output).toBe(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
