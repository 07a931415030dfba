// `vdb user add NAME --role R [--collections a,b] [--data DIR]`: adds a client
// user to a `vdb up` cluster (or gives an existing one a new key: rotation),
// rewrites the server's accounts file and makes nats-server reload it, so no
// connection drops. The secret goes only into DIR/credentials/NAME.json (0600).

import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { VdbError, ErrorCode } from '../ts/errors.js';
import { ROLES } from './auth.js';
import type { Role } from './auth.js';
import { addUser, writeSecret } from './credentials.js';
import type { ClusterFile } from './launcher.js';
import { reloadNats } from './nats-server.js';

/** Adds the user and reloads the running nats-server; returns the user's credentials file. */
export async function userAdd(data: string, u: { name: string; role: Role; collections?: string[] }): Promise<string> {
  const dir = resolve(data);
  const file = join(dir, 'cluster.json');
  if (!existsSync(file)) throw new VdbError(ErrorCode.INVALID_ARGUMENT, `${file} does not exist: --data names the directory of vdb up`);
  const cluster = JSON.parse(readFileSync(file, 'utf8')) as ClusterFile;
  const server = cluster.processes.find((p) => p.role === 'nats-server');
  if (!server) throw new VdbError(ErrorCode.INVALID_ARGUMENT, 'this cluster runs on a NATS server vdb up did not start: add users in that server\'s own configuration');
  const store = addUser(join(dir, 'credentials'), cluster.prefix, u);
  writeSecret(join(dir, 'nats', 'accounts.conf'), store.accounts);
  try {
    await reloadNats(server.pid, server.monitorPort!);
  } catch (e) {
    throw new VdbError(ErrorCode.UNAVAILABLE, `the user is saved, but nats-server (pid ${server.pid}) did not reload (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}); it takes the user when it next starts`);
  }
  return store.files[u.name];
}

export const USER_COMMANDS = {
  user: {
    summary: 'add a client user (reader, writer or admin) to a vdb up cluster',
    help: `Usage: vdb user add NAME --role reader|writer|admin [--collections a,b] [--data DIR]
Writes DIR/credentials/NAME.json (mode 0600; pass it as --creds or VDB_CREDS), adds
the user's public key to the server's accounts and reloads nats-server (no restart).
reader: search, get, count, scroll, describe, list, status; writer: also upsert and
delete; admin: also create and drop. --collections restricts a reader or writer to
those collections' operations (no describe, list or status). Adding a NAME again
gives it a new key: the old file stops working (rotation). DIR defaults to ./data.`,
    async run(argv: string[]) {
      const { values: o, positionals } = parseArgs({ args: argv, allowPositionals: true, options: { role: { type: 'string' }, collections: { type: 'string' }, data: { type: 'string', default: './data' } } });
      if (positionals[0] !== 'add' || positionals.length !== 2) throw new VdbError(ErrorCode.INVALID_ARGUMENT, 'usage: vdb user add NAME --role reader|writer|admin [--collections a,b] [--data DIR]');
      if (o.role === undefined) throw new VdbError(ErrorCode.INVALID_ARGUMENT, `--role is required: one of ${ROLES.join(', ')}`);
      const collections = o.collections === undefined ? undefined : o.collections.split(',').map((c) => c.trim()).filter((c) => c !== '');
      const file = await userAdd(o.data, { name: positionals[1], role: o.role as Role, collections });
      console.log(`user ${positionals[1]} (${o.role}${collections ? ` of ${collections.join(', ')}` : ''}): credentials in ${file}`);
    },
  },
};
