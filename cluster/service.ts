// The shape every endpoint handler shares, after nats.js services: decode the
// body (MessagePack, or JSON when the request says Content-Type:
// application/json), call the library, reply; errors go in the
// Nats-Service-Error / Nats-Service-Error-Code headers and an {error} body.

import type { ServiceMsg } from 'nats';
import { decode, encode, isJsonContentType } from '../ts/wire/codec.js';
import { serviceError } from '../ts/wire/messages.js';

export type Handler = (body: unknown, msg: ServiceMsg) => Promise<unknown> | unknown;

export function handle(fn: Handler, onError?: (e: unknown) => void): (err: Error | null, msg: ServiceMsg) => void {
  return (err, msg) => {
    if (err) return;
    const json = isJsonContentType(msg.headers?.get('Content-Type'));
    Promise.resolve()
      .then(() => fn(decode(msg.data, json), msg))
      .then((reply) => msg.respond(encode(reply, json)))
      .catch((e: unknown) => {
        onError?.(e);
        const se = serviceError(e);
        msg.respondError(se.status, se.description, encode(se.body, json));
      });
  };
}
