/**
 * Exact sums of probability masses in workgroup memory, which has only integer atomics: a mass
 * is a 64-bit fixed-point number held in two u32 words (x = low, y = high) with 40 fraction
 * bits. Each weight is ≤ 1 and the vocabulary is below 2^24, so no sum overflows. Integer sums
 * are exact and independent of the order the atomics land in: a histogram of masses is
 * deterministic, and a bin's mass equals the sum of its sub-bins' masses in the next radix
 * pass, exactly.
 */

/** WGSL: add64, sub64, less64, to_fixed (f32 in [0, 2^24) → fixed, rounded down), to_float. */
export const FIXED_POINT_WGSL = /* wgsl */ `
fn add64(a: vec2u, b: vec2u) -> vec2u {
  let lo = a.x + b.x;
  return vec2u(lo, a.y + b.y + select(0u, 1u, lo < a.x));
}

fn sub64(a: vec2u, b: vec2u) -> vec2u {
  return vec2u(a.x - b.x, a.y - b.y - select(0u, 1u, a.x < b.x));
}

fn less64(a: vec2u, b: vec2u) -> bool {
  return a.y < b.y || (a.y == b.y && a.x < b.x);
}

fn to_fixed(v: f32) -> vec2u {
  let scaled = v * 256.0;
  let whole = floor(scaled);
  return vec2u(u32((scaled - whole) * 4294967296.0), u32(whole));
}

fn to_float(a: vec2u) -> f32 {
  return f32(a.y) * (1.0 / 256.0) + f32(a.x) * (1.0 / 1099511627776.0);
}`;
