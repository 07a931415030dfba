// What the web console shows of the cluster, polled by the console process:
// the `status` reply (members, shards, replicas, lag), each process's /healthz
// and /metrics, and the members seen before, so that a process that stopped
// heartbeating is shown down rather than silently gone.

import { reading, series } from './console-metrics.js';
import type { Reading, Series } from './console-metrics.js';
import { errorBody } from '../ts/wire/messages.js';

interface StatusMember {
  name: string;
  role: string;
  pid: number;
  heartbeat: number;
  metricsPort?: number;
}

interface StatusReplica {
  member: string;
  live: boolean;
  applied: number | null;
  lag: number | null;
  skipped?: number | null;
  failed?: string;
}

/** The fields of the `status` reply (docs/protocol.md) the console reads. */
export interface StatusReply {
  members: StatusMember[];
  collections: { name: string; shards: { shard: number; logSeq: number | null; firstSeq: number | null; count: number | null; replicas: StatusReplica[] }[] }[];
  balancer: unknown;
}

/** A process's /healthz as the console last saw it: reachable or not, and its `ok`. */
export interface Probe {
  reachable: boolean;
  ok: boolean;
}

export const ProcessState = { UP: 'up', UNHEALTHY: 'unhealthy', UNREACHABLE: 'unreachable', DOWN: 'down' } as const;
export type ProcessState = (typeof ProcessState)[keyof typeof ProcessState];

export const ShardHealth = { OK: 'ok', DEGRADED: 'degraded', DOWN: 'down' } as const;
export type ShardHealth = (typeof ShardHealth)[keyof typeof ShardHealth];

export interface ProcessRow {
  name: string;
  role: string;
  pid: number;
  state: ProcessState;
  heartbeatAgeMs: number;
  metricsPort: number | null;
  /** The shards it holds a replica of, as `collection/shard`. */
  shards: string[];
}

export interface Overview {
  at: number;
  /** Set when the last `status` request failed: what is shown is from before. */
  error?: { code: string; message: string };
  processes: ProcessRow[];
  collections: { name: string; points: number | null; shards: (StatusReply['collections'][number]['shards'][number] & { health: ShardHealth })[] }[];
  balancer: unknown;
  charts: Series;
}

/** The state a process is shown in: down once its heartbeat lease ran out, else what its /healthz says. */
export function processState(live: boolean, probe: Probe | undefined): ProcessState {
  if (!live) return ProcessState.DOWN;
  if (!probe) return ProcessState.UP;
  if (!probe.reachable) return ProcessState.UNREACHABLE;
  return probe.ok ? ProcessState.UP : ProcessState.UNHEALTHY;
}

/** A shard is down with no live replica that has not failed, degraded when some replica is gone or failed. */
export function shardHealth(replicas: StatusReplica[]): ShardHealth {
  const serving = replicas.filter((r) => r.live && !r.failed).length;
  if (serving === 0) return ShardHealth.DOWN;
  return serving < replicas.length ? ShardHealth.DEGRADED : ShardHealth.OK;
}

/** The page's data from one status reply, the members seen before (live or not), the probes and the chart series. */
export function overview(st: StatusReply, seen: ReadonlyMap<string, StatusMember>, probes: ReadonlyMap<string, Probe>, charts: Series, now: number): Overview {
  const live = new Set(st.members.map((m) => m.name));
  const held = new Map<string, string[]>();
  for (const c of st.collections) {
    for (const sh of c.shards) for (const r of sh.replicas) held.set(r.member, [...(held.get(r.member) ?? []), `${c.name}/${sh.shard}`]);
  }
  const processes = [...seen.values()]
    .map((m) => ({
      name: m.name, role: m.role, pid: m.pid, state: processState(live.has(m.name), probes.get(m.name)),
      heartbeatAgeMs: Math.max(0, now - m.heartbeat), metricsPort: m.metricsPort ?? null, shards: held.get(m.name) ?? [],
    }))
    .sort((a, b) => a.role.localeCompare(b.role) || a.name.localeCompare(b.name, undefined, { numeric: true }));
  const collections = st.collections.map((c) => {
    const counts = c.shards.map((s) => s.count);
    return {
      name: c.name,
      points: counts.every((n) => n !== null) ? counts.reduce<number>((a, n) => a + (n ?? 0), 0) : null,
      shards: c.shards.map((s) => ({ ...s, health: shardHealth(s.replicas) })),
    };
  });
  return { at: now, processes, collections, balancer: st.balancer, charts };
}

/** How long a member that stopped heartbeating stays on the page. */
const FORGET_MS = 10 * 60_000;
/** Readings kept for the charts: ten minutes at the default poll interval. */
const READINGS = 300;

export interface PollerDeps {
  status(): Promise<StatusReply>;
  /** The body of an HTTP GET whatever its status, or a rejection (unreachable, timed out). */
  fetchText(url: string): Promise<string>;
  /** The host the processes' /metrics and /healthz are reached at. */
  metricsHost: string;
  now?: () => number;
}

/** Polls the cluster; `latest()` is what the page shows. */
export function poller(deps: PollerDeps) {
  const now = deps.now ?? Date.now;
  const seen = new Map<string, StatusMember>();
  const readings: Reading[] = [];
  let last: Overview | undefined;
  let lastStatus: StatusReply = { members: [], collections: [], balancer: null };

  const url = (m: StatusMember, path: string) => `http://${deps.metricsHost.includes(':') ? `[${deps.metricsHost}]` : deps.metricsHost}:${m.metricsPort}${path}`;

  async function poll(): Promise<Overview> {
    let error: Overview['error'];
    try {
      lastStatus = await deps.status();
    } catch (e) {
      error = errorBody(e).error;
    }
    const t = now();
    for (const m of lastStatus.members) seen.set(m.name, m);
    for (const [name, m] of seen) if (t - m.heartbeat > FORGET_MS) seen.delete(name);
    const withPort = lastStatus.members.filter((m) => m.metricsPort !== undefined);
    const results = await Promise.all(withPort.map(async (m) => {
      const [health, metrics] = await Promise.allSettled([deps.fetchText(url(m, '/healthz')), deps.fetchText(url(m, '/metrics'))]);
      let probe: Probe = { reachable: false, ok: false };
      if (health.status === 'fulfilled') {
        try {
          probe = { reachable: true, ok: (JSON.parse(health.value) as { ok?: unknown }).ok === true };
        } catch {
          probe = { reachable: true, ok: false };
        }
      }
      return { m, probe, metrics: metrics.status === 'fulfilled' ? metrics.value : undefined };
    }));
    const probes = new Map(results.map((r) => [r.m.name, r.probe]));
    const texts = (role: string) => results.filter((r) => r.m.role === role && r.metrics !== undefined).map((r) => r.metrics as string);
    if (!error) {
      readings.push(reading(t, texts('shard'), texts('coordinator')));
      if (readings.length > READINGS) readings.shift();
    }
    last = { ...overview(lastStatus, seen, probes, series(readings), t), ...(error ? { error } : {}) };
    return last;
  }

  return { poll, latest: () => last };
}
