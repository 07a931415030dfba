// The permissions of client users (cluster/auth.ts) as pure functions: what a
// role may publish never leaves the public API, grows from reader to writer to
// admin, and a restriction to collections names only those.

import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { ROLES, accountsConfig, checkUser, newNkey, publishAllow } from '../cluster/auth.js';
import type { Role } from '../cluster/auth.js';

const role = fc.constantFrom(...ROLES);
const collection = fc.stringMatching(/^[a-z0-9-][a-z0-9_-]{0,15}$/);
const prefix = fc.constantFrom('vdb', 'acme', 'x-1');

describe('publishAllow', () => {
  it('stays under <prefix>.v1 with no wildcard but * for the collection token', () => {
    fc.assert(fc.property(prefix, role, fc.option(fc.uniqueArray(collection, { minLength: 1, maxLength: 4 }), { nil: undefined }), (p, r, cols) => {
      for (const s of publishAllow(p, r, cols)) {
        expect(s.startsWith(`${p}.v1.`)).toBe(true);
        expect(s).not.toContain('>');
        const tokens = s.split('.');
        expect(tokens.slice(3).every((t) => t !== '*' && t !== '')).toBe(true);
        if (cols !== undefined) expect(cols).toContain(tokens[2]);
      }
    }));
  });

  it('reader ⊂ writer ⊂ admin, and only admin creates or drops, only writer and admin write', () => {
    fc.assert(fc.property(prefix, (p) => {
      const [reader, writer, admin] = (['reader', 'writer', 'admin'] as Role[]).map((r) => new Set(publishAllow(p, r)));
      for (const s of reader) expect(writer.has(s)).toBe(true);
      for (const s of writer) expect(admin.has(s)).toBe(true);
      expect([...reader].some((s) => /\.(upsert|delete)$/.test(s))).toBe(false);
      expect([...writer].some((s) => /collections\.(create|drop)$/.test(s))).toBe(false);
      expect(writer.has(`${p}.v1.*.upsert`)).toBe(true);
      expect(admin.has(`${p}.v1._admin.collections.drop`)).toBe(true);
    }));
  });

  it('a restricted user gets no _admin operation', () => {
    fc.assert(fc.property(prefix, fc.constantFrom<Role>('reader', 'writer'), fc.uniqueArray(collection, { minLength: 1, maxLength: 3 }), (p, r, cols) => {
      expect(publishAllow(p, r, cols).some((s) => s.includes('._admin.'))).toBe(false);
    }));
  });
});

describe('checkUser', () => {
  it('refuses names, roles and collections that are not plain tokens, and a restricted admin', () => {
    expect(() => checkUser({ name: 'a.b', role: 'reader' })).toThrow(/user name/);
    expect(() => checkUser({ name: 'a', role: 'root' })).toThrow(/role must be one of reader, writer, admin/);
    for (const c of ['*', '>', 'a.b', '_admin', '']) expect(() => checkUser({ name: 'a', role: 'reader', collections: [c] }), c).toThrow(/collection names/);
    expect(() => checkUser({ name: 'a', role: 'reader', collections: [] })).toThrow(/at least one/);
    expect(() => checkUser({ name: 'a', role: 'admin', collections: ['x'] })).toThrow(/admin cannot be restricted/);
    expect(() => checkUser({ name: 'a', role: 'writer', collections: ['x', 'y-1'] })).not.toThrow();
  });
});

describe('accountsConfig', () => {
  it('holds public keys only, JetStream in INTERNAL only, and the API as the one export', () => {
    const internal = newNkey();
    const user = newNkey();
    const text = accountsConfig('vdb', [internal.nkey], [{ name: 'r', role: 'reader', nkey: user.nkey }]);
    expect(text).toContain(internal.nkey);
    expect(text).toContain(user.nkey);
    expect(text).not.toContain(internal.seed);
    expect(text).not.toContain(user.seed);
    expect(text.match(/jetstream/g)).toHaveLength(1);
    expect(text).toContain('exports: [{service: "vdb.v1.>"}]');
    expect(text).toContain('imports: [{service: {account: "INTERNAL", subject: "vdb.v1.>"}}]');
  });
});
