/**
 * Bulk conversions between the float formats checkpoints store (F32, F16, BF16) and the ones
 * the GPU computes in (f32, f16), written for speed: one pass over typed arrays, no allocation.
 * A 7B checkpoint is 3.5 billion values, so this loop is most of the CPU time of loading one.
 *
 * Every conversion is exact or rounds to nearest, ties to even, exactly as `f32ToF16Bits` in
 * src/tensor/dtype.ts does one value at a time (the tests compare the two).
 */
import { f16BitsToF32 } from "../tensor/dtype.js";

const scratchF32 = new Float32Array(1);
const scratchU32 = new Uint32Array(scratchF32.buffer);

/**
 * float32 bits → float16 bits, rounding to nearest even; too large → ±Inf; NaN → quiet NaN.
 *
 * Normal halves: move the exponent from bias 127 to bias 15 and drop 13 mantissa bits, adding
 * 0xfff plus the lowest kept bit first so that the truncation rounds to nearest even (a carry
 * out of the mantissa correctly bumps the exponent, up to Inf).
 * Subnormal halves (|x| < 2^-14): add 0.5 in float32. The float32 ulp at 0.5 is 2^-24, the
 * spacing of half subnormals, so the FPU's own rounding leaves the half's bits in the low
 * mantissa bits of the sum. (The addition is done in float64 and then rounded to float32;
 * that double rounding is harmless here, since every input that can round up is exact in
 * float64 after the addition.)
 */
function f32BitsToF16Bits(bits: number): number {
  const sign = (bits >>> 16) & 0x8000;
  const magnitude = bits & 0x7fffffff;
  if (magnitude >= 0x47800000) {
    // |x| >= 65536 (which rounds to Inf), Inf or NaN
    return sign | (magnitude > 0x7f800000 ? 0x7e00 : 0x7c00);
  }
  if (magnitude >= 0x38800000) {
    // |x| >= 2^-14: a normal half (or Inf, by rounding, from [65520, 65536))
    return sign | ((magnitude - 0x38000000 + 0xfff + ((magnitude >>> 13) & 1)) >>> 13);
  }
  scratchU32[0] = magnitude;
  scratchF32[0] = scratchF32[0] + 0.5;
  return sign | (scratchU32[0] - 0x3f000000);
}

/** float32 values (as their bits) → float16 bits. */
export function f32ToF16(src: Uint32Array, dst: Uint16Array, count = src.length): void {
  for (let i = 0; i < count; i++) dst[i] = f32BitsToF16Bits(src[i]);
}

let bf16ToF16Table: Uint16Array | undefined;

/**
 * bfloat16 bits → float16 bits: widen exactly to float32, then round once. There are only
 * 65536 bfloat16 values, so the rounding is done once each, into a table.
 */
export function bf16ToF16(src: Uint16Array, dst: Uint16Array, count = src.length): void {
  if (!bf16ToF16Table) {
    bf16ToF16Table = new Uint16Array(65536);
    for (let i = 0; i < 65536; i++) bf16ToF16Table[i] = f32BitsToF16Bits(i << 16);
  }
  const table = bf16ToF16Table;
  for (let i = 0; i < count; i++) dst[i] = table[src[i]];
}

/** bfloat16 bits → float32 bits (exact: bfloat16 is the top half of a float32). */
export function bf16ToF32(src: Uint16Array, dst: Uint32Array, count = src.length): void {
  for (let i = 0; i < count; i++) dst[i] = src[i] << 16;
}

let f16ToF32Table: Float32Array | undefined;

/** float16 bits → float32 (exact), through a table of all 65536 values. */
export function f16ToF32(src: Uint16Array, dst: Float32Array, count = src.length): void {
  if (!f16ToF32Table) {
    f16ToF32Table = new Float32Array(65536);
    for (let i = 0; i < 65536; i++) f16ToF32Table[i] = f16BitsToF32(i);
  }
  const table = f16ToF32Table;
  for (let i = 0; i < count; i++) dst[i] = table[src[i]];
}
