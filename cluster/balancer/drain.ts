// Which shard processes are being drained (`vdb drain`): a list under key
// `draining` in the leases bucket, changed by compare-and-set. A draining
// process takes no new replicas and the balancer moves its replicas away
// (moves.ts); it stays listed until the drain is cancelled.
import type { Meta } from '../meta.js';
import { VdbError, ErrorCode } from '../../ts/errors.js';
import { dec } from './context.js';

const KEY = 'draining';
const enc = (v: unknown) => new TextEncoder().encode(JSON.stringify(v));

export async function draining(meta: Meta): Promise<Set<string>> {
  return new Set(dec<{ names: string[] }>(await meta.leases.get(KEY))?.names ?? []);
}

/** Adds `name` to the draining processes (or, with `cancel`, removes it); the list as it is then. */
export async function setDraining(meta: Meta, name: string, cancel: boolean): Promise<string[]> {
  for (let attempt = 0; attempt < 5; attempt++) {
    const e = await meta.leases.get(KEY);
    const names = new Set(dec<{ names: string[] }>(e)?.names ?? []);
    if (cancel) names.delete(name); else names.add(name);
    const value = enc({ names: [...names].sort() });
    try {
      if (e) await meta.leases.update(KEY, value, e.revision);
      else await meta.leases.create(KEY, value);
      return [...names].sort();
    } catch {
      // Another coordinator changed the list meanwhile: read it again.
    }
  }
  throw new VdbError(ErrorCode.CONFLICT, 'the list of draining processes kept changing; try again');
}
