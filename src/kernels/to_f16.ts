/**
 * Converting a checkpoint's raw BF16 or F32 bytes to f16 on the GPU, as weights are loaded.
 *
 * On the CPU the conversion is a loop over every element in JavaScript (a table lookup per
 * BF16 value, bit arithmetic per F32 one): for a 1.1B checkpoint in BF16, 3.5 of its 5.6
 * seconds of loading (bench/RESULTS.md, "Loading a checkpoint"). Here the chunk's bytes are
 * written to the GPU as they are, and one thread turns each pair of elements into one word of
 * two halves, written straight into the weight at its place.
 *
 * The rounding is the CPU's exactly (src/tensor/dtype.ts's f32ToF16Bits: to nearest, ties to
 * even; too large → ±Infinity; NaN → a quiet NaN), done on the bits with integer arithmetic,
 * since WGSL leaves the rounding of its own f32 → f16 conversion to the implementation:
 * - normal halves: rebias the exponent (127 → 15) and drop 13 mantissa bits, adding 0xfff plus
 *   the lowest kept bit first, so the truncation rounds to nearest even (a carry out of the
 *   mantissa bumps the exponent, up to Infinity);
 * - subnormal halves (|x| < 2^-14): the mantissa with its implicit 1, shifted right by
 *   126 - exponent and rounded to nearest even by the bits shifted out.
 * BF16 → f32 is exact (a BF16 is the top half of an f32), so BF16 → f16 rounds once.
 */
import { f32ToF16Bits } from "../tensor/dtype.js";
import { check } from "../tensor/errors.js";
import { defineKernel, flatGrid, FLAT_WORKGROUP_WGSL } from "../tensor/kernel.js";
import type { Tensor } from "../tensor/tensor.js";

export type RawFloat = "BF16" | "F32";

// ------------------------------------------------------------------ CPU reference

/** The f16 bits of each raw element (`raw` holds `count` BF16 or F32 values, little-endian). */
export function toF16Reference(raw: Uint8Array, from: RawFloat, count: number): Uint16Array {
  const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
  const out = new Uint16Array(count);
  const f32 = new Float32Array(1);
  const bits = new Uint32Array(f32.buffer);
  for (let i = 0; i < count; i++) {
    bits[0] = from === "F32" ? view.getUint32(4 * i, true) : view.getUint16(2 * i, true) << 16;
    out[i] = f32ToF16Bits(f32[0]);
  }
  return out;
}

// ------------------------------------------------------------------ WGSL

const WORKGROUP = 256;
/** Words each thread converts (consecutive threads take consecutive words): on lavapipe a workgroup has a fixed cost of its own (~12 µs). */
const WORDS_PER_THREAD = 16;

const toF16Kernel = defineKernel({
  name: "to_f16",
  params: { words: "u32", out_word: "u32" },
  bindings: { raw: "read", out: "read_write" },
  elementType: () => "u32",
  wgsl: ({ from }: { from: RawFloat }) => /* wgsl */ `
${FLAT_WORKGROUP_WGSL}

fn f16_bits(bits: u32) -> u32 {
  let sign = (bits >> 16u) & 0x8000u;
  let m = bits & 0x7fffffffu;
  if (m >= 0x47800000u) { return sign | select(0x7c00u, 0x7e00u, m > 0x7f800000u); } // Inf, NaN, or rounds to Inf
  if (m >= 0x38800000u) { return sign | ((m - 0x38000000u + 0xfffu + ((m >> 13u) & 1u)) >> 13u); }
  if (m < 0x33000000u) { return sign; } // below 2^-25: rounds to zero (2^-25 itself, a tie, to even zero too)
  let shift = 126u - (m >> 23u); // 14 to 24
  let mantissa = (m & 0x7fffffu) | 0x800000u;
  let rest = mantissa & ((1u << shift) - 1u);
  let half = 1u << (shift - 1u);
  var q = mantissa >> shift;
  if (rest > half || (rest == half && (q & 1u) == 1u)) { q += 1u; }
  return sign | q;
}

@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let first = flat_workgroup(wid, nwg) * ${WORKGROUP * WORDS_PER_THREAD}u + lid;
  for (var k = 0u; k < ${WORDS_PER_THREAD}u; k++) {
    let w = first + k * ${WORKGROUP}u;
    if (w >= params.words) { return; }
    ${
      from === "BF16"
        ? `let pair = raw[w];
    let low = f16_bits(pair << 16u);
    let high = f16_bits(pair & 0xffff0000u);`
        : `let low = f16_bits(raw[2u * w]);
    let high = f16_bits(raw[2u * w + 1u]);`
    }
    out[params.out_word + w] = low | (high << 16u);
  }
}`,
});

// ------------------------------------------------------------------ launch

/**
 * Converts `2 * words` raw elements (BF16 or F32, in the u32 tensor `raw`) to f16 into `out`
 * (an f16 tensor), starting at its element `2 * outWord`. Nothing is read back.
 */
export function toF16(raw: Tensor, out: Tensor, from: RawFloat, words: number, outWord = 0): void {
  check(raw.dtype === "u32", () => `toF16: raw ${raw.describe()} must be u32 words`);
  check(out.dtype === "f16", () => `toF16: out ${out.describe()} must be f16`);
  check(from === "BF16" || from === "F32", () => `toF16: from must be BF16 or F32, not ${String(from)}`);
  check(Number.isInteger(words) && words >= 0 && words * (from === "F32" ? 2 : 1) <= raw.size, () => `toF16: ${words} words of ${from} overrun raw ${raw.describe()}`);
  check(Number.isInteger(outWord) && outWord >= 0 && 2 * (outWord + words) <= out.size, () => `toF16: words [${outWord}, ${outWord + words}) overrun out ${out.describe()}`);
  if (words === 0) return;
  raw.gpu.record(toF16Kernel, {
    params: { words, out_word: outWord },
    tensors: { raw, out },
    workgroups: flatGrid(Math.ceil(words / (WORKGROUP * WORDS_PER_THREAD))),
    spec: { from },
  });
}
