// Float32 distance kernels. The SIMD versions keep four f32x4 accumulators so the
// adds of one step do not wait on the previous one, then fall through to a
// 4-wide and a scalar tail, so any dimension is correct. The index pads vectors
// to a multiple of 4, so inside the index the scalar tail never runs.

@inline
export function l2sqSimd(a: usize, b: usize, n: i32): f32 {
  let s0 = f32x4.splat(0);
  let s1 = f32x4.splat(0);
  let s2 = f32x4.splat(0);
  let s3 = f32x4.splat(0);
  const bytes = <usize>n << 2;
  const end16 = bytes & ~<usize>63;
  let i: usize = 0;
  for (; i < end16; i += 64) {
    const d0 = f32x4.sub(v128.load(a + i), v128.load(b + i));
    const d1 = f32x4.sub(v128.load(a + i, 16), v128.load(b + i, 16));
    const d2 = f32x4.sub(v128.load(a + i, 32), v128.load(b + i, 32));
    const d3 = f32x4.sub(v128.load(a + i, 48), v128.load(b + i, 48));
    s0 = f32x4.add(s0, f32x4.mul(d0, d0));
    s1 = f32x4.add(s1, f32x4.mul(d1, d1));
    s2 = f32x4.add(s2, f32x4.mul(d2, d2));
    s3 = f32x4.add(s3, f32x4.mul(d3, d3));
  }
  const end4 = bytes & ~<usize>15;
  for (; i < end4; i += 16) {
    const d = f32x4.sub(v128.load(a + i), v128.load(b + i));
    s0 = f32x4.add(s0, f32x4.mul(d, d));
  }
  const s = f32x4.add(f32x4.add(s0, s1), f32x4.add(s2, s3));
  let r = f32x4.extract_lane(s, 0) + f32x4.extract_lane(s, 1) +
          f32x4.extract_lane(s, 2) + f32x4.extract_lane(s, 3);
  for (; i < bytes; i += 4) {
    const d = load<f32>(a + i) - load<f32>(b + i);
    r += d * d;
  }
  return r;
}

@inline
export function dotSimd(a: usize, b: usize, n: i32): f32 {
  let s0 = f32x4.splat(0);
  let s1 = f32x4.splat(0);
  let s2 = f32x4.splat(0);
  let s3 = f32x4.splat(0);
  const bytes = <usize>n << 2;
  const end16 = bytes & ~<usize>63;
  let i: usize = 0;
  for (; i < end16; i += 64) {
    s0 = f32x4.add(s0, f32x4.mul(v128.load(a + i), v128.load(b + i)));
    s1 = f32x4.add(s1, f32x4.mul(v128.load(a + i, 16), v128.load(b + i, 16)));
    s2 = f32x4.add(s2, f32x4.mul(v128.load(a + i, 32), v128.load(b + i, 32)));
    s3 = f32x4.add(s3, f32x4.mul(v128.load(a + i, 48), v128.load(b + i, 48)));
  }
  const end4 = bytes & ~<usize>15;
  for (; i < end4; i += 16) {
    s0 = f32x4.add(s0, f32x4.mul(v128.load(a + i), v128.load(b + i)));
  }
  const s = f32x4.add(f32x4.add(s0, s1), f32x4.add(s2, s3));
  let r = f32x4.extract_lane(s, 0) + f32x4.extract_lane(s, 1) +
          f32x4.extract_lane(s, 2) + f32x4.extract_lane(s, 3);
  for (; i < bytes; i += 4) r += load<f32>(a + i) * load<f32>(b + i);
  return r;
}

// Scalar references: the definition the SIMD kernels are tested against.
export function l2sqScalar(a: usize, b: usize, n: i32): f32 {
  let r: f32 = 0;
  for (let i = 0; i < n; i++) {
    const d = load<f32>(a + (<usize>i << 2)) - load<f32>(b + (<usize>i << 2));
    r += d * d;
  }
  return r;
}

export function dotScalar(a: usize, b: usize, n: i32): f32 {
  let r: f32 = 0;
  for (let i = 0; i < n; i++) {
    r += load<f32>(a + (<usize>i << 2)) * load<f32>(b + (<usize>i << 2));
  }
  return r;
}

// Scales v in place to unit length; returns false for a zero vector, which has
// no direction and so no cosine. Sums in f64: squares of any finite f32 neither
// overflow nor underflow there, so huge and tiny vectors normalise correctly.
export function normalize(v: usize, n: i32): bool {
  let sum: f64 = 0;
  for (let i = 0; i < n; i++) {
    const x = <f64>load<f32>(v + (<usize>i << 2));
    sum += x * x;
  }
  if (!(sum > 0)) return false;
  const norm = Math.sqrt(sum);
  for (let i = 0; i < n; i++) {
    const p = v + (<usize>i << 2);
    store<f32>(p, <f32>(<f64>load<f32>(p) / norm));
  }
  return true;
}

// True when every component is finite (no NaN, no ±Inf): x - x is 0 only then.
export function allFinite(v: usize, n: i32): bool {
  let acc = f32x4.splat(0);
  const bytes = <usize>n << 2;
  const end4 = bytes & ~<usize>15;
  let i: usize = 0;
  for (; i < end4; i += 16) {
    const x = v128.load(v + i);
    acc = f32x4.add(acc, f32x4.sub(x, x));
  }
  let r = f32x4.extract_lane(acc, 0) + f32x4.extract_lane(acc, 1) +
          f32x4.extract_lane(acc, 2) + f32x4.extract_lane(acc, 3);
  for (; i < bytes; i += 4) {
    const x = load<f32>(v + i);
    r += x - x;
  }
  return r == 0;
}
