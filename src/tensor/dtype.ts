/**
 * Element types a tensor can hold on the GPU, and the CPU-side conversions they need.
 *
 * Node 20 has no Float16Array, so half floats travel as their 16-bit patterns in a
 * Uint16Array and are converted here, rounding to nearest-even like the hardware does.
 */

export type DType = "f32" | "f16" | "i32" | "u32";

export const DTYPES: readonly DType[] = ["f32", "f16", "i32", "u32"];

export function bytesPerElement(dtype: DType): number {
  return dtype === "f16" ? 2 : 4;
}

export function isFloat(dtype: DType): boolean {
  return dtype === "f32" || dtype === "f16";
}

/** The typed array a tensor of this dtype reads back into (f16 widens to f32). */
export type HostArray = Float32Array | Int32Array | Uint32Array;

const f32Scratch = new Float32Array(1);
const u32Scratch = new Uint32Array(f32Scratch.buffer);

/** float32 → IEEE half bits, round to nearest even; overflow → ±Inf, NaN stays NaN. */
export function f32ToF16Bits(value: number): number {
  f32Scratch[0] = value;
  const bits = u32Scratch[0];
  const sign = (bits >>> 16) & 0x8000;
  const exponent = (bits >>> 23) & 0xff;
  let mantissa = bits & 0x7fffff;
  if (exponent === 0xff) return sign | 0x7c00 | (mantissa ? 0x200 : 0); // Inf / NaN
  const halfExponent = exponent - 127 + 15;
  if (halfExponent >= 0x1f) return sign | 0x7c00; // too large: Inf
  if (halfExponent <= 0) {
    // Subnormal half (or zero): shift the mantissa, with its implicit 1, into place.
    if (halfExponent < -10) return sign;
    mantissa |= 0x800000;
    const shift = 14 - halfExponent;
    const half = mantissa >>> shift;
    const remainder = mantissa & ((1 << shift) - 1);
    const halfway = 1 << (shift - 1);
    const roundUp = remainder > halfway || (remainder === halfway && (half & 1) === 1);
    return sign | (half + (roundUp ? 1 : 0));
  }
  const half = (halfExponent << 10) | (mantissa >>> 13);
  const remainder = mantissa & 0x1fff;
  const roundUp = remainder > 0x1000 || (remainder === 0x1000 && (half & 1) === 1);
  // A carry out of the mantissa correctly bumps the exponent (and may reach Inf).
  return sign | (half + (roundUp ? 1 : 0));
}

export function f16BitsToF32(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exponent = (bits >>> 10) & 0x1f;
  const mantissa = bits & 0x3ff;
  if (exponent === 0) return sign * mantissa * 2 ** -24;
  if (exponent === 0x1f) return mantissa ? NaN : sign * Infinity;
  return sign * (1 + mantissa / 1024) * 2 ** (exponent - 15);
}

export function toF16Bits(values: ArrayLike<number>): Uint16Array {
  const out = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) out[i] = f32ToF16Bits(values[i]);
  return out;
}

/** Lookup table for the 65536 half values: decoding megabytes of f16 is then one load each. */
let f16Table: Float32Array | undefined;
export function fromF16Bits(bits: Uint16Array): Float32Array {
  if (!f16Table) {
    f16Table = new Float32Array(65536);
    for (let i = 0; i < 65536; i++) f16Table[i] = f16BitsToF32(i);
  }
  const out = new Float32Array(bits.length);
  for (let i = 0; i < bits.length; i++) out[i] = f16Table[bits[i]];
  return out;
}

/** Rounds each value through float16 and back: what a value stored as f16 really holds. */
export function roundToF16(values: ArrayLike<number>): Float64Array {
  const out = new Float64Array(values.length);
  for (let i = 0; i < values.length; i++) out[i] = f16BitsToF32(f32ToF16Bits(values[i]));
  return out;
}

/** Rounds each value through float32 (what a value stored as f32 really holds). */
export function roundToF32(values: ArrayLike<number>): Float64Array {
  return Float64Array.from(Float32Array.from(values));
}

/** Host values → the bytes a tensor of `dtype` holds. */
export function encodeHost(data: ArrayLike<number>, dtype: DType): Uint8Array {
  let typed: ArrayBufferView;
  switch (dtype) {
    case "f32":
      typed = data instanceof Float32Array ? data : Float32Array.from(data);
      break;
    case "f16":
      typed = toF16Bits(data);
      break;
    case "i32":
      typed = data instanceof Int32Array ? data : Int32Array.from(data);
      break;
    case "u32":
      typed = data instanceof Uint32Array ? data : Uint32Array.from(data);
      break;
  }
  return new Uint8Array(typed.buffer, typed.byteOffset, typed.byteLength);
}

/** The bytes of a tensor → a host array (f16 widened to f32). */
export function decodeHost(bytes: Uint8Array, dtype: DType, count: number): HostArray {
  switch (dtype) {
    case "f32":
      return new Float32Array(bytes.buffer, bytes.byteOffset, count);
    case "f16":
      return fromF16Bits(new Uint16Array(bytes.buffer, bytes.byteOffset, count));
    case "i32":
      return new Int32Array(bytes.buffer, bytes.byteOffset, count);
    case "u32":
      return new Uint32Array(bytes.buffer, bytes.byteOffset, count);
  }
}
