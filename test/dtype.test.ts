import { describe, expect, it } from "vitest";
import { f16BitsToF32, f32ToF16Bits, fromF16Bits, toF16Bits } from "../src/tensor/dtype.js";
import { rng, SEED } from "./helpers.js";

/** Round to the nearest f16 by brute force: the candidates are the two neighbouring halves. */
function nearestHalfBits(x: number): number {
  if (Number.isNaN(x)) return 0x7e00;
  const sign = x < 0 || Object.is(x, -0) ? 0x8000 : 0;
  const ax = Math.abs(x);
  if (ax >= 65520) return sign | 0x7c00; // rounds to Inf (65504 + half an ulp)
  // Largest finite half <= ax, by bisection over the ordered bit patterns 0..0x7bff.
  let lo = 0;
  let hi = 0x7bff;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (f16BitsToF32(mid) <= ax) lo = mid;
    else hi = mid - 1;
  }
  const below = f16BitsToF32(lo);
  const above = f16BitsToF32(lo + 1);
  const dBelow = ax - below;
  const dAbove = above - ax;
  const bits = dBelow < dAbove || (dBelow === dAbove && (lo & 1) === 0) ? lo : lo + 1;
  return sign | bits;
}

describe("f16 conversion", () => {
  it("round-trips every half value", () => {
    for (let bits = 0; bits < 0x10000; bits++) {
      const value = f16BitsToF32(bits);
      if (Number.isNaN(value)) expect(Number.isNaN(f16BitsToF32(f32ToF16Bits(value)))).toBe(true);
      else expect(f32ToF16Bits(value)).toBe(bits);
    }
  });

  it("rounds float32 values to the nearest half, ties to even", () => {
    const random = rng();
    const words = new Uint32Array(1);
    const floats = new Float32Array(words.buffer);
    for (let i = 0; i < 200_000; i++) {
      // Random float32 bit patterns in the half range and around its edges (exponents 100..145).
      words[0] = ((random() < 0.5 ? 0x80000000 : 0) | ((100 + Math.floor(random() * 46)) << 23) | Math.floor(random() * 0x800000)) >>> 0;
      const x = floats[0];
      const got = f32ToF16Bits(x);
      if (got !== nearestHalfBits(x)) throw new Error(`f32ToF16Bits(${x}) = ${got.toString(16)}, expected ${nearestHalfBits(x).toString(16)} (seed ${SEED})`);
    }
    // Exact ties: halfway between 1 and the next half goes to the even one (1), the next tie up.
    expect(f32ToF16Bits(1 + 2 ** -11)).toBe(0x3c00);
    expect(f32ToF16Bits(1 + 3 * 2 ** -11)).toBe(0x3c02);
    expect(f32ToF16Bits(65504)).toBe(0x7bff);
    expect(f32ToF16Bits(65520)).toBe(0x7c00);
    expect(f32ToF16Bits(-Infinity)).toBe(0xfc00);
    expect(f32ToF16Bits(2 ** -25)).toBe(0); // half the smallest subnormal: tie to even (zero)
    expect(f32ToF16Bits(2 ** -24)).toBe(1);
  });

  it("converts arrays both ways", () => {
    expect(Array.from(fromF16Bits(toF16Bits([0, -2, 0.5, 1e-8, 70000])))).toEqual([0, -2, 0.5, 0, Infinity]);
  });
});
