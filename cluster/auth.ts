// Who may do what on the NATS side (docs/security.md). Two accounts: INTERNAL
// holds shard processes, coordinators, the write logs and KV (JetStream is on
// there only) and exports the public API `<prefix>.v1.>` as a service; CLIENT
// imports it and nothing else, so nothing internal has a name a client
// connection can reach. Users are nkeys: the server config holds only public
// keys, each user's seed lives in one 0600 file that only its owner reads.

import { nkeys } from 'nats';
import { ErrorCode, VdbError } from '../ts/errors.js';
import { COLLECTION_ENDPOINTS } from '../ts/wire/messages.js';

export const ROLES = ['reader', 'writer', 'admin'] as const;
export type Role = (typeof ROLES)[number];

/** Per role: the collection operations and the `_admin` operations it may call. */
const GRANTS: Record<Role, { collection: readonly string[]; admin: readonly string[] }> = {
  reader: { collection: ['search', 'get', 'count', 'scroll'], admin: ['describe', 'collections.list', 'status'] },
  writer: { collection: ['search', 'get', 'count', 'scroll', 'upsert', 'delete'], admin: ['describe', 'collections.list', 'status'] },
  admin: { collection: COLLECTION_ENDPOINTS, admin: ['describe', 'collections.list', 'status', 'collections.create', 'collections.drop', 'drain'] },
};

/** A client-account user as the server config lists it: no secret, only the public key. */
export interface ClientUser {
  name: string;
  role: Role;
  /** Only these collections (absent: all). */
  collections?: string[];
  nkey: string;
}

const NAME = /^[A-Za-z0-9_-]{1,64}$/;
/** As docs/protocol.md has them: one subject token, never a wildcard. */
const COLLECTION = /^[A-Za-z0-9-][A-Za-z0-9_-]{0,127}$/;

/** Checks a user's name, role and collections; an admin cannot be restricted (create/drop name the collection in the body, where no subject permission reaches). */
export function checkUser(u: { name: string; role: string; collections?: string[] }): void {
  if (!NAME.test(u.name)) throw new VdbError(ErrorCode.INVALID_ARGUMENT, `user name must be 1..64 of A-Z a-z 0-9 _ -, got ${JSON.stringify(u.name)}`);
  if (!(ROLES as readonly string[]).includes(u.role)) throw new VdbError(ErrorCode.INVALID_ARGUMENT, `role must be one of ${ROLES.join(', ')}, got ${JSON.stringify(u.role)}`);
  if (u.collections === undefined) return;
  if (u.role === 'admin') throw new VdbError(ErrorCode.INVALID_ARGUMENT, 'an admin cannot be restricted to collections: give reader or writer');
  if (u.collections.length === 0) throw new VdbError(ErrorCode.INVALID_ARGUMENT, 'collections, when given, must name at least one collection');
  for (const c of u.collections) {
    if (!COLLECTION.test(c)) throw new VdbError(ErrorCode.INVALID_ARGUMENT, `collection names are 1..128 of A-Z a-z 0-9 _ -, not starting with _, got ${JSON.stringify(c)}`);
  }
}

/**
 * The subjects a client user may publish to. A user restricted to collections
 * gets only their collection subjects: `describe`, `list` and `status` would
 * show the others.
 */
export function publishAllow(prefix: string, role: Role, collections?: string[]): string[] {
  const g = GRANTS[role];
  const cols = collections ?? ['*'];
  const out = cols.flatMap((c) => g.collection.map((op) => `${prefix}.v1.${c}.${op}`));
  if (collections === undefined) out.push(...g.admin.map((op) => `${prefix}.v1._admin.${op}`));
  return out;
}

/** A new nkey user: the public key for the config, the seed for the user's credentials file. */
export function newNkey(): { nkey: string; seed: string } {
  const kp = nkeys.createUser();
  return { nkey: kp.getPublicKey(), seed: new TextDecoder().decode(kp.getSeed()) };
}

const q = (s: string): string => JSON.stringify(s);
const list = (xs: string[]): string => `[${xs.map(q).join(', ')}]`;

/** The `accounts` block of the server config (an included file: `vdb user add` rewrites it and reloads the server). */
export function accountsConfig(prefix: string, internal: string[], clients: ClientUser[]): string {
  if (internal.length === 0) throw new VdbError(ErrorCode.INVALID_ARGUMENT, 'accounts: at least one internal user is needed');
  const api = `${prefix}.v1.>`;
  const lines = [
    '# Written by vdb (cluster/auth.ts): public keys only, no secrets.',
    'accounts {',
    '  INTERNAL {',
    '    jetstream: enabled',
    `    users: [${internal.map((k) => `{nkey: ${q(k)}}`).join(', ')}]`,
    `    exports: [{service: ${q(api)}}]`,
    '  }',
    '  CLIENT {',
    `    imports: [{service: {account: "INTERNAL", subject: ${q(api)}}}]`,
    '    users: [',
    ...clients.map((u) => `      {nkey: ${q(u.nkey)}, permissions: {publish: {allow: ${list(publishAllow(prefix, u.role, u.collections))}}, subscribe: {allow: ["_INBOX.>"]}}}`),
    '    ]',
    '  }',
    '}',
  ];
  return lines.join('\n') + '\n';
}
