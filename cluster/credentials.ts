// Credentials on disk. A credentials file is a small JSON map, mode 0600, read
// by `--creds FILE` or `$VDB_CREDS` (a path, never the secret itself, so `ps`
// shows nothing): `{"user", "seed"}` for an nkey user (what `vdb up` makes),
// `{"user", "password"}` or `{"token"}` for a NATS server configured elsewhere.
// `vdb up` keeps DIR/credentials/: one file per user and users.json, the
// public keys and roles the server config is written from.

import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { nkeyAuthenticator } from 'nats';
import type { ConnectionOptions } from 'nats';
import { ErrorCode, VdbError } from '../ts/errors.js';
import { accountsConfig, checkUser, newNkey } from './auth.js';
import type { ClientUser, Role } from './auth.js';

export interface CredsFile {
  user?: string;
  seed?: string;
  password?: string;
  token?: string;
}

/** Writes a file only its owner can read, whole or not at all. */
export function writeSecret(path: string, body: string): void {
  writeFileSync(`${path}.tmp`, body, { mode: 0o600 });
  chmodSync(`${path}.tmp`, 0o600);
  renameSync(`${path}.tmp`, path);
}

/** The connection options a credentials file gives. Errors name the file, never its content. */
export function readCreds(file: string): Pick<ConnectionOptions, 'authenticator' | 'user' | 'pass' | 'token'> {
  let c: CredsFile;
  try {
    c = JSON.parse(readFileSync(file, 'utf8')) as CredsFile;
  } catch (e) {
    const why = (e as NodeJS.ErrnoException).code ?? 'not valid JSON';
    throw new VdbError(ErrorCode.INVALID_ARGUMENT, `credentials file ${file}: cannot read it (${why})`);
  }
  if (c === null || typeof c !== 'object') throw new VdbError(ErrorCode.INVALID_ARGUMENT, `credentials file ${file}: not a JSON map`);
  if (typeof c.seed === 'string') return { authenticator: nkeyAuthenticator(new TextEncoder().encode(c.seed)) };
  if (typeof c.user === 'string' && typeof c.password === 'string') return { user: c.user, pass: c.password };
  if (typeof c.token === 'string') return { token: c.token };
  throw new VdbError(ErrorCode.INVALID_ARGUMENT, `credentials file ${file}: needs "seed", "user" and "password", or "token"`);
}

/** `--creds FILE`, else `$VDB_CREDS`, else none. */
export function credsPath(flag: string | undefined, env: NodeJS.ProcessEnv = process.env): string | undefined {
  const v = flag ?? env.VDB_CREDS;
  return v === undefined || v === '' ? undefined : resolve(v);
}

/** What DIR/credentials/users.json holds: no secrets. */
interface Users {
  internal: { name: string; nkey: string }[];
  clients: ClientUser[];
}

export interface CredentialsStore {
  dir: string;
  /** The file of the processes' own user (the internal account). */
  internal: string;
  /** The file of each user by name (the demo users: admin, writer, reader). */
  files: Record<string, string>;
  /** The server config's accounts block. */
  accounts: string;
}

const DEMO_USERS: { name: string; role: Role }[] = [{ name: 'admin', role: 'admin' }, { name: 'writer', role: 'writer' }, { name: 'reader', role: 'reader' }];

const usersFile = (dir: string) => join(dir, 'users.json');
const credsFile = (dir: string, name: string) => join(dir, `${name}.json`);

function load(dir: string): Users | undefined {
  return existsSync(usersFile(dir)) ? (JSON.parse(readFileSync(usersFile(dir), 'utf8')) as Users) : undefined;
}

function store(dir: string, prefix: string, users: Users): CredentialsStore {
  const files: Record<string, string> = {};
  for (const u of users.clients) files[u.name] = credsFile(dir, u.name);
  return { dir, internal: credsFile(dir, users.internal[0].name), files, accounts: accountsConfig(prefix, users.internal.map((u) => u.nkey), users.clients) };
}

/** Opens `dir` (DIR/credentials), first making the internal user and the demo users admin, writer and reader when it is new. */
export function openCredentials(dir: string, prefix: string): CredentialsStore {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const found = load(dir);
  if (found) return store(dir, prefix, found);
  const mk = (name: string) => {
    const k = newNkey();
    writeSecret(credsFile(dir, name), JSON.stringify({ user: name, seed: k.seed }) + '\n');
    return k.nkey;
  };
  const users: Users = { internal: [{ name: 'internal', nkey: mk('internal') }], clients: DEMO_USERS.map((u) => ({ ...u, nkey: mk(u.name) })) };
  writeSecret(usersFile(dir), JSON.stringify(users, null, 2) + '\n');
  return store(dir, prefix, users);
}

/** Adds a client user (or replaces one of the same name, which rotates its key): writes its file, returns the store with the new accounts block. */
export function addUser(dir: string, prefix: string, u: { name: string; role: Role; collections?: string[] }): CredentialsStore {
  checkUser(u);
  const users = load(dir);
  if (!users) throw new VdbError(ErrorCode.INVALID_ARGUMENT, `${dir} holds no users.json: is it the credentials directory of a vdb up cluster?`);
  if (users.internal.some((x) => x.name === u.name)) throw new VdbError(ErrorCode.INVALID_ARGUMENT, `${u.name} is the processes' own user`);
  const k = newNkey();
  writeSecret(credsFile(dir, u.name), JSON.stringify({ user: u.name, seed: k.seed }) + '\n');
  users.clients = [...users.clients.filter((x) => x.name !== u.name), { ...u, nkey: k.nkey }];
  writeSecret(usersFile(dir), JSON.stringify(users, null, 2) + '\n');
  return store(dir, prefix, users);
}
