// TLS for the NATS connections (docs/security.md). `vdb up --tls` makes a
// private CA, a server certificate for nats-server and a client certificate
// for the processes and CLI (used when the server verifies clients), with the
// `openssl` command: no certificate code of our own. Keys are 0600 files.

import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { join } from 'node:path';
import { ErrorCode, VdbError } from '../ts/errors.js';

/** The files of a TLS setup: what nats-server serves and what clients trust and present. */
export interface TlsFiles {
  /** The CA certificate clients verify the server with (and the server verifies client certificates with). */
  ca: string;
  /** The server's certificate and key. */
  cert: string;
  key: string;
  /** A client certificate and key signed by the CA (for mutual TLS); absent when the server's files were given. */
  clientCert?: string;
  clientKey?: string;
}

function openssl(args: string[], cwd: string): void {
  try {
    execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (e) {
    const err = e as NodeJS.ErrnoException & { stderr?: Buffer };
    if (err.code === 'ENOENT') throw new VdbError(ErrorCode.UNAVAILABLE, 'openssl not found: install it (apt-get install -y openssl) or give --tls-cert, --tls-key and --tls-ca');
    throw new VdbError(ErrorCode.INTERNAL, `openssl ${args[0]} failed: ${err.stderr?.toString().trim() ?? err.message}`);
  }
}

/** Signs a new key's certificate with the CA in `dir`; `usage` is serverAuth, clientAuth or both. */
function issue(dir: string, name: string, cn: string, usage: 'serverAuth' | 'clientAuth' | 'serverAuth,clientAuth', san?: string): void {
  openssl(['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${cn}`], dir);
  const ext = `${name}.ext`;
  writeFileSync(join(dir, ext), [`extendedKeyUsage=${usage}`, 'basicConstraints=CA:FALSE', ...(san ? [`subjectAltName=${san}`] : [])].join('\n') + '\n');
  openssl(['x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.pem', '-CAkey', 'ca.key', '-set_serial', `0x${Date.now().toString(16)}${Math.floor(Math.random() * 1e6).toString(16)}`, '-days', '825', '-sha256', '-extfile', ext, '-out', `${name}.pem`], dir);
  chmodSync(join(dir, `${name}.key`), 0o600);
}

/**
 * A CA, a server certificate valid for `hosts` (names or IP addresses; the
 * loopback ones are always added) and a client certificate, in `dir`. Kept
 * when they exist, so a restarted `vdb up` serves the certificate clients trust.
 */
export function generateTls(dir: string, hosts: string[] = []): Required<TlsFiles> {
  const files = { ca: join(dir, 'ca.pem'), cert: join(dir, 'server.pem'), key: join(dir, 'server.key'), clientCert: join(dir, 'client.pem'), clientKey: join(dir, 'client.key') };
  if (Object.values(files).every((f) => existsSync(f))) return files;
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  openssl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '3650', '-sha256', '-subj', '/CN=vdb private CA',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'], dir);
  chmodSync(join(dir, 'ca.key'), 0o600);
  issue(dir, 'server', 'vdb nats-server', 'serverAuth', subjectAltName(hosts));
  issue(dir, 'client', 'vdb client', 'clientAuth');
  return files;
}

function subjectAltName(hosts: string[]): string {
  const names = [...new Set(['localhost', '127.0.0.1', '::1', ...hosts.filter((h) => h !== '' && h !== '0.0.0.0' && h !== '::')])];
  return names.map((h) => (isIP(h) ? `IP:${h}` : `DNS:${h}`)).join(',');
}

/**
 * A certificate for NATS cluster routes, signed by the CA generateTls made in
 * `dir`: a route both dials and accepts, so it serves as server and client
 * certificate at once (nats-server verifies both ends of a TLS route). Kept when it exists.
 */
export function generateRouteTls(dir: string, hosts: string[]): { cert: string; key: string } {
  const files = { cert: join(dir, 'route.pem'), key: join(dir, 'route.key') };
  if (existsSync(files.cert) && existsSync(files.key)) return files;
  issue(dir, 'route', 'vdb nats route', 'serverAuth,clientAuth', subjectAltName(hosts));
  return files;
}
