// The process logger of cluster/log.ts on its own: one JSON object per line
// with level, time, role, name and pid; a level drops what is below it; an
// error's cause is serialized; credential fields are redacted; the terminal
// form is readable and loses no field.

import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { ROOT, requireDist } from './cluster-helpers.js';
import { createLogger, logLevel, readableLine } from '../cluster/log.js';
import type { LogLevel } from '../cluster/log.js';
import { VdbError, ErrorCode } from '../ts/errors.js';

function capture(level: LogLevel = 'info') {
  const lines: string[] = [];
  const log = createLogger({ role: 'shard', name: 'shard-7', level, stream: { write: (s: string) => void lines.push(...s.split('\n').filter((l) => l !== '')) } });
  return { log, lines, records: () => lines.map((l) => JSON.parse(l) as Record<string, unknown>) };
}

describe('process logger', () => {
  it('writes one JSON object per line with level, time, role, name, pid and msg', () => {
    const { log, records } = capture();
    log.info('serving docs/0 from sequence 12');
    log.warn({ collection: 'docs' }, 'slow');
    const [a, b] = records();
    expect(a).toMatchObject({ level: 'info', role: 'shard', name: 'shard-7', pid: process.pid, msg: 'serving docs/0 from sequence 12' });
    expect(new Date(a.time as string).toISOString()).toBe(a.time);
    expect(b).toMatchObject({ level: 'warn', collection: 'docs', msg: 'slow' });
  });

  it('drops the levels below its own', () => {
    const { log, records } = capture('warn');
    log.debug('d');
    log.info('i');
    log.warn('w');
    log.error('e');
    expect(records().map((r) => r.level)).toEqual(['warn', 'error']);
  });

  it('logs an error with its subject, code and cause', () => {
    const { log, records } = capture();
    log.error({ subject: 'vdb.v1.docs.search', code: 'STORAGE', cause: new VdbError(ErrorCode.STORAGE, 'disk full') }, 'error answering');
    const r = records()[0];
    expect(r).toMatchObject({ level: 'error', subject: 'vdb.v1.docs.search', code: 'STORAGE' });
    expect(r.cause).toMatchObject({ type: 'VdbError', message: 'disk full', code: 'STORAGE' });
    expect((r.cause as { stack: string }).stack).toMatch(/disk full/);
  });

  it('never writes a credential field, at the top or one level down', () => {
    const { log, lines } = capture();
    log.info({ seed: 'SUASECRET1', creds: { seed: 'SUASECRET2', user: 'u' }, password: 'hunter2' }, 'connecting');
    expect(lines.join('\n')).not.toMatch(/SUASECRET|hunter2/);
    expect(JSON.parse(lines[0])).toMatchObject({ seed: '[redacted]', creds: { seed: '[redacted]', user: 'u' } });
  });

  it('--log-level takes the pino level names and refuses anything else with INVALID_ARGUMENT', () => {
    expect(logLevel(undefined)).toBe('info');
    for (const l of ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']) expect(logLevel(l)).toBe(l);
    for (const bad of ['INFO', 'verbose', '', 3]) {
      expect(() => logLevel(bad)).toThrow(expect.objectContaining({ code: ErrorCode.INVALID_ARGUMENT }));
    }
  });

  it('an exception nothing catches ends the process with status 1 and one fatal JSON record with its cause', () => {
    requireDist();
    const mod = pathToFileURL(join(ROOT, 'dist', 'cluster', 'log.js')).href;
    const script = `const m = await import(${JSON.stringify(mod)}); m.setLogger(m.createLogger({ role: 'shard', name: 's' })); m.logCrashes(); setTimeout(() => Promise.reject(new Error('boom')), 1);`;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 30_000 });
    expect(r.status, r.stderr).toBe(1);
    const lines = r.stderr.split('\n').filter(Boolean);
    expect(lines).toHaveLength(1);
    expect(JSON.parse(lines[0])).toMatchObject({ level: 'fatal', role: 'shard', name: 's', msg: 'uncaught exception: boom', cause: { message: 'boom' } });
  });

  it('a terminal line shows time, level, name and message, then every other field', () => {
    fc.assert(fc.property(fc.string(), fc.dictionary(fc.stringMatching(/^[a-z]{1,8}$/), fc.oneof(fc.string(), fc.integer())), (msg, extra) => {
      const fields = Object.fromEntries(Object.entries(extra).filter(([k]) => !['level', 'time', 'role', 'name', 'pid', 'hostname', 'msg', 'cause'].includes(k)));
      const line = readableLine(JSON.stringify({ level: 'warn', time: '2026-12-01T18:01:02.345Z', role: 'shard', name: 'shard-7', pid: 1, msg, ...fields }));
      expect(line.startsWith(`18:01:02.345 WARN  shard-7: ${msg}`)).toBe(true);
      for (const [k, v] of Object.entries(fields)) expect(line).toContain(`${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`);
    }));
    expect(readableLine('not json')).toBe('not json');
  });
});
