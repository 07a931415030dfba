// How the cluster processes connect to NATS. `--nats` takes one URL or several
// separated by commas (the servers of a NATS cluster); the client tries them
// all, learns the other members from the server it reaches, and reconnects
// forever, so a restarted or failed server is left for a live one. `--creds`
// (or $VDB_CREDS) names the credentials file (cluster/credentials.ts).

import { connect } from 'nats';
import type { ConnectionOptions, NatsConnection } from 'nats';
import { ErrorCode, VdbError } from '../ts/errors.js';
import { credsPath, readCreds } from './credentials.js';

/** `nats://a:4222,nats://b:4222` → the URLs, as `connect({ servers })` needs a list (it does not split a string). */
export function natsServers(urls: string): string[] {
  return urls.split(',').map((u) => u.trim()).filter((u) => u !== '');
}

/**
 * How to authenticate: a credentials file (or none: a server without
 * authorization), and for TLS the CA to verify the server with and the
 * certificate and key to present when the server verifies clients.
 */
export interface NatsAuth {
  creds?: string;
  tlsCa?: string;
  tlsCert?: string;
  tlsKey?: string;
}

/** The connection options for `auth`. */
export function authOptions(auth: NatsAuth = {}): Partial<ConnectionOptions> {
  const tls = auth.tlsCa === undefined && auth.tlsCert === undefined ? undefined : {
    ...(auth.tlsCa === undefined ? {} : { caFile: auth.tlsCa }),
    ...(auth.tlsCert === undefined ? {} : { certFile: auth.tlsCert, keyFile: auth.tlsKey }),
  };
  return { ...(auth.creds === undefined ? {} : readCreds(auth.creds)), ...(tls === undefined ? {} : { tls }) };
}

export function connectNats(urls: string, name: string, auth?: NatsAuth): Promise<NatsConnection> {
  return connect({ servers: natsServers(urls), name, maxReconnectAttempts: -1, noAsyncTraces: true, ...authOptions(auth) });
}

/** The flags every process and command takes for this, by name. */
export const AUTH_FLAGS = { creds: { type: 'string' }, 'tls-ca': { type: 'string' }, 'tls-cert': { type: 'string' }, 'tls-key': { type: 'string' } } as const;

/** `--creds`, `--tls-ca`, `--tls-cert`, `--tls-key`, each else from $VDB_CREDS, $VDB_TLS_CA, $VDB_TLS_CERT, $VDB_TLS_KEY: paths only, never a secret. */
export function authFromFlags(o: Record<string, unknown>, env: NodeJS.ProcessEnv = process.env): NatsAuth {
  const path = (flag: string, name: string) => {
    const v = typeof o[flag] === 'string' ? (o[flag] as string) : env[name];
    return v === undefined || v === '' ? undefined : v;
  };
  const auth: NatsAuth = { creds: credsPath(path('creds', 'VDB_CREDS'), {}), tlsCa: path('tls-ca', 'VDB_TLS_CA'), tlsCert: path('tls-cert', 'VDB_TLS_CERT'), tlsKey: path('tls-key', 'VDB_TLS_KEY') };
  if ((auth.tlsCert === undefined) !== (auth.tlsKey === undefined)) throw new VdbError(ErrorCode.INVALID_ARGUMENT, '--tls-cert and --tls-key go together');
  return auth;
}

/** The same as command-line flags, for a child process. */
export function authArgs(auth: NatsAuth): string[] {
  return Object.entries({ creds: auth.creds, 'tls-ca': auth.tlsCa, 'tls-cert': auth.tlsCert, 'tls-key': auth.tlsKey })
    .flatMap(([flag, v]) => (v === undefined ? [] : [`--${flag}`, v]));
}
