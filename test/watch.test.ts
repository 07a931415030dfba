// keepWatching (cluster/watch.ts) against a stand-in KV whose watches can be
// made to fail, as nats.js ends a watch whose ordered consumer it cannot recreate.
import { describe, expect, it } from 'vitest';
import type { KV, KvEntry } from 'nats';
import { keepWatching } from '../cluster/watch.js';
import { sleep, waitFor } from './cluster-helpers.js';

/** A bucket in memory; each watch replays its values, then follows puts and deletes until failed or stopped. */
class FakeBucket {
  values = new Map<string, string>();
  opened = 0;
  private live: { push(e: KvEntry | Error | null): void }[] = [];

  put(key: string, value: string): void {
    this.values.set(key, value);
    for (const w of this.live) w.push(entry(key, 'PUT', value));
  }

  delete(key: string, quietly = false): void {
    this.values.delete(key);
    if (!quietly) for (const w of this.live) w.push(entry(key, 'DEL', ''));
  }

  /** Ends every open watch with an error. */
  fail(): void {
    for (const w of this.live) w.push(new Error('unable to recreate ordered consumer'));
    this.live = [];
  }

  asKV(): KV {
    return { watch: (opts: { initializedFn?: () => void }) => Promise.resolve(this.open(opts.initializedFn)) } as unknown as KV;
  }

  private open(initializedFn?: () => void) {
    this.opened++;
    const queue: (KvEntry | Error | null)[] = [...this.values].map(([k, v]) => entry(k, 'PUT', v));
    let wake: () => void = () => undefined;
    const w = { push: (e: KvEntry | Error | null) => { queue.push(e); wake(); } };
    this.live.push(w);
    queueMicrotask(() => initializedFn?.());
    const self = this;
    return {
      stop() { w.push(null); self.live = self.live.filter((x) => x !== w); },
      async *[Symbol.asyncIterator]() {
        for (;;) {
          while (queue.length === 0) await new Promise<void>((r) => { wake = r; });
          const e = queue.shift()!;
          if (e === null) return;
          if (e instanceof Error) throw e;
          yield e;
        }
      },
    };
  }
}

function entry(key: string, operation: 'PUT' | 'DEL', value: string): KvEntry {
  return { key, operation, value: new TextEncoder().encode(value), revision: 0 } as unknown as KvEntry;
}

describe('keepWatching', () => {
  it('opens the watch again after it fails, and forgets keys deleted while none was open', async () => {
    const b = new FakeBucket();
    b.put('a', '1');
    b.put('b', '2');
    const seen = new Map<string, string>();
    const resyncs: string[][] = [];
    const w = keepWatching(b.asKV(), 'test', (e) => {
      if (e.operation === 'PUT') seen.set(e.key, new TextDecoder().decode(e.value)); else seen.delete(e.key);
    }, (present) => {
      resyncs.push([...present].sort());
      for (const k of [...seen.keys()]) if (!present.has(k)) seen.delete(k);
    });
    await w.ready;
    expect([...seen]).toEqual([['a', '1'], ['b', '2']]);
    b.put('c', '3');
    await waitFor('c delivered', async () => (seen.has('c') ? true : undefined));
    b.fail();
    b.delete('b', true); // no watch open: this delete is never delivered
    b.put('a', '10');
    await waitFor('the watch opened again', async () => (b.opened === 2 && resyncs.length === 1 ? true : undefined), 5000);
    expect(resyncs[0]).toEqual(['a', 'c']);
    expect([...seen].sort()).toEqual([['a', '10'], ['c', '3']]);
    b.put('d', '4');
    await waitFor('d delivered', async () => (seen.get('d') === '4' ? true : undefined));
    w.stop();
    await sleep(700);
    b.put('e', '5');
    await sleep(50);
    expect(seen.has('e')).toBe(false);
    expect(b.opened).toBe(2);
  });

  it('restart ends a stale watch and the next one delivers every current value', async () => {
    const b = new FakeBucket();
    b.put('x', '1');
    const delivered: string[] = [];
    const w = keepWatching(b.asKV(), 'test', (e) => delivered.push(e.key), () => undefined);
    await w.ready;
    const before = w.lastDelivery;
    w.restart('test');
    await waitFor('the watch opened again', async () => (b.opened === 2 && delivered.length === 2 ? true : undefined), 5000);
    expect(delivered).toEqual(['x', 'x']);
    expect(w.lastDelivery).toBeGreaterThanOrEqual(before);
    w.stop();
  });

  it('an entry its handler cannot read is skipped; the watch stays open and delivers the ones after it', async () => {
    const b = new FakeBucket();
    b.put('a', '{"n":1}');
    b.put('bad', 'not json');
    b.put('c', '{"n":3}');
    const seen = new Map<string, number>();
    const w = keepWatching(b.asKV(), 'test', (e) => seen.set(e.key, (JSON.parse(new TextDecoder().decode(e.value)) as { n: number }).n), () => undefined);
    await w.ready;
    b.put('d', '{"n":4}');
    await waitFor('d delivered', async () => (seen.has('d') ? true : undefined));
    expect([...seen].sort()).toEqual([['a', 1], ['c', 3], ['d', 4]]);
    expect(b.opened).toBe(1);
    w.stop();
  });
});
