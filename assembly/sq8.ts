// SQ8: 8-bit scalar quantization of the stored vectors. Each dimension d has its
// own offset o_d and all share one step s, so x_d ≈ o_d + s·c_d with a code
// c_d in 0…255. One step for every dimension keeps both kernels pure integer:
//   squared L2   Σ (x_d − y_d)² ≈ s² · Σ (c_d − e_d)²
//   dot          Σ x_d y_d ≈ K + s·(P_x + P_y) + s² · Σ c_d e_d
// where K = Σ o_d² (per index) and P_x = Σ o_d c_d (stored after the codes of
// every record of a dot-based index). Offsets and step come from quantiles of a
// training sample; values outside the trained range clamp to 0 or 255.
//
// Params region (section 4 of a snapshot): step f32, K f32, trained u32,
// training sample size u32, then the offsets as f32 × codeBytes (zero padding).

import * as S from "./layout";
import { OK, ERR_STATE, ERR_ARGUMENT, ERR_MEMORY, ERR_NOT_FINITE, ERR_ZERO_VECTOR, METRIC_L2, METRIC_COSINE } from "./layout";
import { normalize, allFinite } from "./distance";

export const QUANT_NONE: i32 = 0;
export const QUANT_SQ8: i32 = 1;
// Share of the sample cut off at each end of a dimension's range, so a few
// outliers do not widen the step of every dimension.
const CLIP: f64 = 0.001;

export let quant: i32 = QUANT_NONE;
export let codeBytes: usize = 0; // dim rounded up to 16: whole v128 steps
export let paramsBase: usize = 0;
export let paramsBytes: usize = 0;
export let queryCodes: usize = 0; // the query encoded, same shape as a record's vector
export let step: f32 = 0;
export let step2: f32 = 0;
export let offSq: f32 = 0; // K

@inline function offsets(): usize { return paramsBase + 16; }

export function trained(): bool { return quant == QUANT_SQ8 && load<u32>(paramsBase, 8) != 0; }

// Switches a just-configured, empty index to SQ8: record vectors become codes
// (plus P for dot-based metrics) and the params and query-code scratch are laid
// out after the fixed scratch. Must run before the first layout.
export function setupSq8(): i32 {
  codeBytes = (<usize>S.dim + 15) & ~<usize>15;
  S.vecBytes = codeBytes + (S.metric == METRIC_L2 ? 0 : 4);
  S.recSize = (S.vecOff + S.vecBytes + 63) & ~<usize>63;
  paramsBytes = 16 + (codeBytes << 2);
  paramsBase = S.extendFixed(paramsBytes);
  queryCodes = S.extendFixed(S.vecBytes);
  if (paramsBase == 0 || queryCodes == 0) return ERR_MEMORY;
  memory.fill(paramsBase, 0, paramsBytes);
  quant = QUANT_SQ8;
  return OK;
}

// Reads step and K from the params region (after training or a load).
export function adoptParams(): void {
  step = load<f32>(paramsBase);
  step2 = step * step;
  offSq = load<f32>(paramsBase, 4);
}

// Where a training sample of n vectors goes: past everything the index uses,
// followed by one column of scratch. 0 when it does not fit.
export function trainPtr(n: u32): usize {
  if (quant != QUANT_SQ8 || n == 0) return 0;
  const base = (S.layoutEnd() + 15) & ~<u64>15;
  const bytes = (<u64>n * <u64>S.dim + <u64>n) << 2;
  if (!S.ensureBytes(base + bytes)) return 0;
  return <usize>base;
}

// In-place heapsort of n f32 (training only: no allocation, n log n).
function sortFloats(p: usize, n: u32): void {
  for (let i = <i32>(n >> 1) - 1; i >= 0; i--) siftDown(p, <u32>i, n);
  for (let end = n; end > 1; end--) {
    const last = end - 1;
    const t = load<f32>(p);
    store<f32>(p, load<f32>(p + (<usize>last << 2)));
    store<f32>(p + (<usize>last << 2), t);
    siftDown(p, 0, last);
  }
}

function siftDown(p: usize, i: u32, n: u32): void {
  while (true) {
    let c = (i << 1) + 1;
    if (c >= n) return;
    if (c + 1 < n && load<f32>(p + (<usize>(c + 1) << 2)) > load<f32>(p + (<usize>c << 2))) c++;
    const vi = load<f32>(p + (<usize>i << 2));
    const vc = load<f32>(p + (<usize>c << 2));
    if (vi >= vc) return;
    store<f32>(p + (<usize>i << 2), vc);
    store<f32>(p + (<usize>c << 2), vi);
    i = c;
  }
}

// Trains offsets and step from the n vectors at trainPtr(n) (normalised there
// first for cosine). Only an empty index can be trained: codes already stored
// would change meaning.
export function train(n: u32): i32 {
  if (quant != QUANT_SQ8) return ERR_STATE;
  if (S.slots != 0) return ERR_STATE;
  const base = trainPtr(n);
  if (base == 0) return n == 0 ? ERR_ARGUMENT : ERR_MEMORY;
  const d = S.dim;
  const rowBytes = <usize>d << 2;
  for (let i: u32 = 0; i < n; i++) {
    const v = base + <usize>i * rowBytes;
    if (!allFinite(v, d)) return ERR_NOT_FINITE;
    if (S.metric == METRIC_COSINE && !normalize(v, d)) return ERR_ZERO_VECTOR;
  }
  const col = base + <usize>n * rowBytes;
  const loIdx = <u32>Math.floor(CLIP * <f64>(n - 1));
  const hiIdx = n - 1 - loIdx;
  let widest: f32 = 0;
  const off = offsets();
  // First pass: each dimension's clipped range, midpoint kept in the offsets.
  for (let j = 0; j < d; j++) {
    for (let i: u32 = 0; i < n; i++) {
      store<f32>(col + (<usize>i << 2), load<f32>(base + <usize>i * rowBytes + (<usize>j << 2)));
    }
    sortFloats(col, n);
    const lo = load<f32>(col + (<usize>loIdx << 2));
    const hi = load<f32>(col + (<usize>hiIdx << 2));
    store<f32>(off + (<usize>j << 2), (lo + hi) * 0.5);
    if (hi - lo > widest) widest = hi - lo;
  }
  // All samples equal in every dimension: any step encodes them exactly.
  const s: f32 = widest > 0 ? widest / 255 : 1;
  let k: f64 = 0;
  for (let j = 0; j < d; j++) {
    const o = load<f32>(off + (<usize>j << 2)) - 127.5 * s;
    store<f32>(off + (<usize>j << 2), o);
    k += <f64>o * <f64>o;
  }
  store<f32>(paramsBase, s);
  store<f32>(paramsBase, <f32>k, 4);
  store<u32>(paramsBase, 1, 8);
  store<u32>(paramsBase, n, 12);
  adoptParams();
  return OK;
}

// Encodes dim f32 at v into codes at dst (zero-padded to codeBytes), and P after
// them for dot-based metrics.
export function encode(v: usize, dst: usize): void {
  const off = offsets();
  const inv: f64 = 1.0 / <f64>step;
  let p: f64 = 0;
  const d = S.dim;
  for (let j = 0; j < d; j++) {
    const o = load<f32>(off + (<usize>j << 2));
    let c = Math.round((<f64>load<f32>(v + (<usize>j << 2)) - <f64>o) * inv);
    c = c < 0 ? 0 : c > 255 ? 255 : c;
    store<u8>(dst + <usize>j, <u8>c);
    p += <f64>o * c;
  }
  memory.fill(dst + <usize>d, 0, codeBytes - <usize>d);
  if (S.metric != METRIC_L2) store<f32>(dst + codeBytes, <f32>p);
}

// Lanes stay below 2³¹ for any dim ≤ 65536; their sum (≤ 65536 · 255²) fits u32.
@inline function lanesSum(s: v128): u32 {
  return <u32>i32x4.extract_lane(s, 0) + <u32>i32x4.extract_lane(s, 1) +
         <u32>i32x4.extract_lane(s, 2) + <u32>i32x4.extract_lane(s, 3);
}

// Σ (a_d − b_d)² over codes, scaled by s²: |a − b| per byte from two saturating
// subtractions, widened to i16, squared and pair-summed by dot_i16x8_s.
@inline export function sq8L2(a: usize, b: usize): f32 {
  let acc0 = i32x4.splat(0);
  let acc1 = i32x4.splat(0);
  const n = codeBytes;
  for (let i: usize = 0; i < n; i += 16) {
    const x = v128.load(a + i);
    const y = v128.load(b + i);
    const d = v128.or(i8x16.sub_sat_u(x, y), i8x16.sub_sat_u(y, x));
    const lo = i16x8.extend_low_i8x16_u(d);
    const hi = i16x8.extend_high_i8x16_u(d);
    acc0 = i32x4.add(acc0, i32x4.dot_i16x8_s(lo, lo));
    acc1 = i32x4.add(acc1, i32x4.dot_i16x8_s(hi, hi));
  }
  const t = lanesSum(i32x4.add(acc0, acc1));
  return <f32>t * step2;
}

// The decoded dot product: K + s·(P_a + P_b) + s²·Σ a_d b_d.
@inline export function sq8Dot(a: usize, b: usize): f32 {
  let acc0 = i32x4.splat(0);
  let acc1 = i32x4.splat(0);
  const n = codeBytes;
  for (let i: usize = 0; i < n; i += 16) {
    const x = v128.load(a + i);
    const y = v128.load(b + i);
    acc0 = i32x4.add(acc0, i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_u(x), i16x8.extend_low_i8x16_u(y)));
    acc1 = i32x4.add(acc1, i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_u(x), i16x8.extend_high_i8x16_u(y)));
  }
  const t = lanesSum(i32x4.add(acc0, acc1));
  return offSq + step * (load<f32>(a + n) + load<f32>(b + n)) + <f32>t * step2;
}
