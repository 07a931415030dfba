// How the cluster processes connect to NATS. `--nats` takes one URL or several
// separated by commas (the servers of a NATS cluster); the client tries them
// all, learns the other members from the server it reaches, and reconnects
// forever, so a restarted or failed server is left for a live one. `--creds`
// (or $VDB_CREDS) names the credentials file (cluster/credentials.ts).

import { connect } from 'nats';
import type { ConnectionOptions, NatsConnection } from 'nats';
import { readCreds } from './credentials.js';

/** `nats://a:4222,nats://b:4222` → the URLs, as `connect({ servers })` needs a list (it does not split a string). */
export function natsServers(urls: string): string[] {
  return urls.split(',').map((u) => u.trim()).filter((u) => u !== '');
}

/** How to authenticate: a credentials file, or none (a server without authorization). */
export interface NatsAuth {
  creds?: string;
}

/** The connection options for `auth`. */
export function authOptions(auth: NatsAuth = {}): Partial<ConnectionOptions> {
  return auth.creds === undefined ? {} : readCreds(auth.creds);
}

export function connectNats(urls: string, name: string, auth?: NatsAuth): Promise<NatsConnection> {
  return connect({ servers: natsServers(urls), name, maxReconnectAttempts: -1, noAsyncTraces: true, ...authOptions(auth) });
}
