// The model of test/model.test.ts checks the cluster's answers; these tests
// check the checks: they accept a right answer, ties either way, and refuse a
// wrong hit, a wrong score, a missing point and a wrong count.

import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { Model, applyDelete, applyUpsert, checkGet, checkSearch, upsertFaults } from './vdb-model.js';
import type { Metric, ModelCollection, SeenHit } from './vdb-model.js';

const DIM = 3;

function collection(metric: Metric, vectors: number[][]): ModelCollection {
  const m = new Model();
  m.create({ name: 'c', dim: DIM, metric, kind: 'hash', shards: 1, replicas: 2 });
  const c = m.pick(0);
  applyUpsert(c, vectors.map((vector, id) => ({ id, vector })));
  return c;
}

/** The true scores in float64 from the float32 vectors, nearest first. */
function ranked(c: ModelCollection, q: number[]): SeenHit[] {
  const qf = Float32Array.from(q);
  const hits = [...c.points].map(([id, p]) => {
    let dot = 0; let l2 = 0; let qq = 0; let vv = 0;
    for (let i = 0; i < DIM; i++) {
      dot += qf[i] * p.vector[i]; l2 += (qf[i] - p.vector[i]) ** 2; qq += qf[i] ** 2; vv += p.vector[i] ** 2;
    }
    const score = c.schema.metric === 'l2' ? Math.sqrt(l2) : c.schema.metric === 'ip' ? dot : dot / Math.sqrt(qq * vv);
    return { id, score };
  });
  return hits.sort((a, b) => (c.schema.metric === 'l2' ? a.score - b.score : b.score - a.score));
}

const component = fc.double({ min: -10, max: 10, noNaN: true }).filter((x) => Math.abs(x) > 1e-3);
const vec = fc.array(component, { minLength: DIM, maxLength: DIM });
const metric = fc.constantFrom<Metric>('l2', 'ip', 'cosine');

describe('the model checks', () => {
  it('accept the exact top-k and refuse it with a point left out, a wrong score or a hit too many', () => {
    fc.assert(fc.property(metric, fc.array(vec, { minLength: 2, maxLength: 30 }), vec, fc.integer({ min: 1, max: 10 }), (m, vectors, q, k) => {
      const c = collection(m, vectors);
      const all = ranked(c, q);
      const top = all.slice(0, k);
      expect(checkSearch(c, q, k, top)).toBeUndefined();
      expect(checkSearch(c, q, k, top.slice(0, -1))).toMatch(/expected \d+ hits/);
      const shifted = top.map((h, i) => (i === 0 ? { ...h, score: m === 'l2' ? h.score + 1 : h.score - 1 } : h));
      expect(checkSearch(c, q, k, shifted)).toBeDefined();
      // The farthest point in place of the nearest, when it is clearly farther (far beyond the tolerance).
      const last = all[all.length - 1];
      if (k < all.length && Math.abs(last.score - top[0].score) > 0.5) {
        expect(checkSearch(c, q, k, [...top.slice(1), last]), JSON.stringify({ top, last })).toMatch(/is missing/);
      }
    }));
  });

  it('accept any of tied points at the k-th score', () => {
    const c = collection('l2', [[1, 0, 0], [0, 1, 0], [0, 0, 1], [5, 5, 5]]);
    for (const id of [0, 1, 2]) expect(checkSearch(c, [0, 0, 0], 1, [{ id, score: 1 }])).toBeUndefined();
    expect(checkSearch(c, [0, 0, 0], 1, [{ id: 3, score: Math.sqrt(75) }])).toMatch(/is missing/);
  });

  it('say which faults a write must be refused with, and none for a good one', () => {
    const c = collection('cosine', []);
    expect(upsertFaults(c, [{ id: 1, vector: [1, 2, 3] }]).size).toBe(0);
    expect([...upsertFaults(c, [{ id: 1, vector: [0, 0, 0] }])]).toEqual(['INVALID_VECTOR']);
    expect([...upsertFaults(c, [{ id: 1, vector: [1e-300, 0, 0] }])]).toEqual(['INVALID_VECTOR']); // zero as float32
    expect([...upsertFaults(c, [{ id: 1, vector: [1, NaN, 3] }])]).toEqual(['INVALID_VECTOR']);
    expect([...upsertFaults(c, [{ id: 1, vector: [1, 1e39, 3] }])]).toEqual(['INVALID_VECTOR']);
    expect([...upsertFaults(c, [{ id: 1, vector: [1, 2] }])]).toEqual(['DIMENSION_MISMATCH']);
    expect([...upsertFaults(c, [{ id: '', vector: [1, 2, 3] }])]).toEqual(['INVALID_ID']);
    expect([...upsertFaults(c, [{ id: 'é'.repeat(257), vector: [1, 2, 3] }])]).toEqual(['INVALID_ID']);
    expect(upsertFaults(c, [{ id: 'é'.repeat(256), vector: [1, 2, 3] }]).size).toBe(0);
    expect([...upsertFaults(c, [{ id: 1, vector: [1, 2, 3], payload: { s: 'x'.repeat(65536) } }])]).toEqual(['PAYLOAD_TOO_LARGE']);
    expect([...upsertFaults(c, [{ id: 1, vector: [1, 2, 3], payload: [1] }])]).toEqual(['INVALID_PAYLOAD']);
    expect(upsertFaults(collection('l2', []), [{ id: 1, vector: [0, 0, 0] }]).size).toBe(0);
  });

  it('apply a batch with the last write of an id winning, and check get against it', () => {
    const c = collection('ip', []);
    applyUpsert(c, [{ id: 1, vector: [1, 1, 1], payload: { a: 1 } }, { id: '1', vector: [2, 2, 2] }, { id: 1, vector: [3, 3, 3] }]);
    expect(c.points.size).toBe(2);
    expect(checkGet(c, [1, '1', 7], [{ id: 1, vector: [3, 3, 3] }, { id: '1', vector: [2, 2, 2] }])).toBeUndefined();
    expect(checkGet(c, [1], [{ id: 1, vector: [3, 3, 3], payload: { a: 1 } }])).toMatch(/payload/);
    expect(checkGet(c, [1], [{ id: '1', vector: [2, 2, 2] }])).toMatch(/ids/);
    applyDelete(c, [1]);
    expect(checkGet(c, [1, '1'], [{ id: '1', vector: [2, 2, 2] }])).toBeUndefined();
  });
});
