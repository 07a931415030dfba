// docs/protocol.md is the contract other languages' clients are written from:
// its errors table must list exactly the codes the code can return, each with
// the status the services send in Nats-Service-Error-Code.

import { describe, expect, it } from 'vitest';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { ErrorCode } from '../ts/errors.js';
import { errorStatus } from '../ts/wire/messages.js';
import { ROOT } from './cluster-helpers.js';

function errorsTable(): Map<string, number> {
  const doc = readFileSync(join(ROOT, 'docs', 'protocol.md'), 'utf8');
  const section = doc.slice(doc.indexOf('\n## Errors'), doc.indexOf('\n## ', doc.indexOf('\n## Errors') + 1));
  const rows = new Map<string, number>();
  for (const m of section.matchAll(/^\| `([A-Z_]+)` \| (\d{3}) \|/gm)) {
    expect(rows.has(m[1]), `${m[1]} is listed once`).toBe(false);
    rows.set(m[1], Number(m[2]));
  }
  return rows;
}

/** Every `ErrorCode.X` the library, the cluster and the core's wrapper use. */
function codesUsed(): Set<string> {
  const used = new Set<string>();
  const walk = (dir: string) => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith('.ts') && p !== join(ROOT, 'ts', 'errors.ts')) {
        for (const m of readFileSync(p, 'utf8').matchAll(/ErrorCode\.([A-Z_]+)/g)) used.add(m[1]);
      }
    }
  };
  walk(join(ROOT, 'ts'));
  walk(join(ROOT, 'cluster'));
  return used;
}

describe('docs/protocol.md errors table', () => {
  it('lists every code the code can return, and no other', () => {
    const table = errorsTable();
    const used = codesUsed();
    const missing = [...used].filter((c) => !table.has(c)).sort();
    const extra = [...table.keys()].filter((c) => !used.has(c)).sort();
    expect(missing, 'codes returned somewhere but missing from the table').toEqual([]);
    expect(extra, 'codes in the table that nothing returns').toEqual([]);
    expect([...table.keys()].sort()).toEqual(Object.values(ErrorCode).sort());
  });

  it('gives each code the status the services send', () => {
    for (const [code, status] of errorsTable()) expect(status, code).toBe(errorStatus(code));
  });
});
