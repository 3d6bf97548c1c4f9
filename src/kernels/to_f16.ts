/**
 * Converting a checkpoint's raw BF16 or F32 bytes to f16 on the GPU, as weights are loaded.
 *
 * On the CPU the conversion is a loop over every element in JavaScript (a table lookup per
 * BF16 value, bit arithmetic per F32 one): for a 1.1B checkpoint in BF16, 3.5 of its 5.6
 * seconds of loading (bench/RESULTS.md, "Loading a checkpoint"). Here the bytes are written to
 * the GPU as they are: F32 chunks to a staging buffer, from which one thread turns each pair of
 * elements into one word of two halves, written straight into the weight at its place; BF16,
 * two bytes like f16, straight into the weight, converted where it lies (bf16ToF16InPlace).
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
import { Tensor } from "../tensor/tensor.js";

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
/** The in-place conversion's four-word vectors per thread (the same 16 words). */
const VECS_PER_THREAD = 4;

/** The f16 bits (in the low half) of the f32 with these bits. */
const F16_BITS_WGSL = /* wgsl */ `
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
}`;

const toF16Kernel = defineKernel({
  name: "to_f16",
  params: { words: "u32", out_word: "u32" },
  bindings: { raw: "read", out: "read_write" },
  elementType: () => "u32",
  wgsl: () => /* wgsl */ `
${FLAT_WORKGROUP_WGSL}
${F16_BITS_WGSL}

@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let first = flat_workgroup(wid, nwg) * ${WORKGROUP * WORDS_PER_THREAD}u + lid;
  for (var k = 0u; k < ${WORDS_PER_THREAD}u; k++) {
    let w = first + k * ${WORKGROUP}u;
    if (w >= params.words) { return; }
    out[params.out_word + w] = f16_bits(raw[2u * w]) | (f16_bits(raw[2u * w + 1u]) << 16u);
  }
}`,
});

/**
 * BF16 and f16 are both two bytes, so a weight can take its file's BF16 bytes as they are and
 * be converted where it lies: each thread reads four words (eight BF16 values) as one vec4 and
 * writes them back as halves, so no thread touches another's words. (On lavapipe a load whose
 * address is not uniform is done lane by lane, so one vec4 load beats four u32 ones.)
 *
 * A BF16 has 7 mantissa bits and an f16 10, so a BF16 in f16's normal range (magnitude bits
 * 0x3880 to 0x477f: 2^-14 up to 65280) converts exactly, with no rounding: rebias the exponent
 * (subtract 112 << 7) and shift left by 3. Only f16's subnormals round, and there the BF16's
 * eight significant bits are shifted into place and rounded to nearest even. Every case is
 * computed on the whole vector and the right one selected, so no lane branches (2.3 GB/s for
 * the general f32 rounding of toF16 word by word, 3.3 GB/s this way, on lavapipe).
 */
const bf16ToF16InPlaceKernel = defineKernel({
  name: "bf16_to_f16_in_place",
  params: { vecs: "u32" },
  bindings: { x: "read_write" },
  elementType: () => "vec4<u32>",
  wgsl: () => /* wgsl */ `
${FLAT_WORKGROUP_WGSL}

// The f16 magnitude bits of four BF16 magnitudes (sign cleared), every case computed and the
// right one selected, so that no lane branches.
fn f16_of_bf16_magnitude(mag: vec4u) -> vec4u {
  // f16's normal range: exact, rebias and shift.
  let normal = (mag - vec4u(0x3800u)) << vec4u(3u);
  // Beyond it: Inf, or NaN (quieted).
  let special = select(vec4u(0x7c00u), vec4u(0x7e00u), mag > vec4u(0x7f80u));
  // Below it (exponent e < 113): the f16 subnormal (128 + m) * 2^(e - 110), to nearest even.
  // e 110 to 112 shift left (exact); below, right by 110 - e, at most 9 (everything below
  // rounds to zero, as do BF16 subnormals and zero).
  let e = mag >> vec4u(7u);
  let full = (mag & vec4u(0x7fu)) | vec4u(0x80u);
  let up = full << (max(e, vec4u(110u)) - vec4u(110u));
  let s = clamp(vec4u(110u) - min(e, vec4u(110u)), vec4u(1u), vec4u(9u));
  let q = full >> s;
  let rest = full & ((vec4u(1u) << s) - vec4u(1u));
  let half = vec4u(1u) << (s - vec4u(1u));
  let down = q + select(vec4u(0u), vec4u(1u), (rest > half) | ((rest == half) & ((q & vec4u(1u)) == vec4u(1u))));
  let small = select(down, up, e >= vec4u(110u));
  return select(select(small, normal, mag >= vec4u(0x3880u)), special, mag >= vec4u(0x4780u));
}

fn f16_words_of_bf16(words: vec4u) -> vec4u {
  let low = f16_of_bf16_magnitude(words & vec4u(0x7fffu));
  let high = f16_of_bf16_magnitude((words >> vec4u(16u)) & vec4u(0x7fffu));
  return (words & vec4u(0x80008000u)) | low | (high << vec4u(16u));
}

@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let first = flat_workgroup(wid, nwg) * ${WORKGROUP * VECS_PER_THREAD}u + lid;
  for (var k = 0u; k < ${VECS_PER_THREAD}u; k++) {
    let v = first + k * ${WORKGROUP}u;
    if (v >= params.vecs) { return; }
    x[v] = f16_words_of_bf16(x[v]);
  }
}`,
});

// ------------------------------------------------------------------ launch

/**
 * Converts `2 * words` raw F32 elements (the u32 tensor `raw`, two words each) to f16 into
 * `out` (an f16 tensor), starting at its element `2 * outWord`. Nothing is read back. (BF16,
 * two bytes like f16, is converted where it lies instead: bf16ToF16InPlace.)
 */
export function toF16(raw: Tensor, out: Tensor, words: number, outWord = 0): void {
  check(raw.dtype === "u32", () => `toF16: raw ${raw.describe()} must be u32 words`);
  check(out.dtype === "f16", () => `toF16: out ${out.describe()} must be f16`);
  check(Number.isInteger(words) && words >= 0 && words * 2 <= raw.size, () => `toF16: ${words} words of F32 pairs overrun raw ${raw.describe()}`);
  // (With an odd count, out's last word is half padding: a conversion may fill it.)
  check(Number.isInteger(outWord) && outWord >= 0 && outWord + words <= Math.ceil(out.size / 2), () => `toF16: words [${outWord}, ${outWord + words}) overrun out ${out.describe()}`);
  if (words === 0) return;
  raw.gpu.record(toF16Kernel, {
    params: { words, out_word: outWord },
    tensors: { raw, out },
    workgroups: flatGrid(Math.ceil(words / (WORKGROUP * WORDS_PER_THREAD))),
  });
}

/**
 * Converts the f16 tensor `x`, which holds raw BF16 bytes, to f16 where it lies. The kernel
 * takes whole vectors of four words, so the last one takes the buffer's padding along (buffers
 * are padded to 16 bytes; padding converts to padding). Nothing is read back.
 */
export function bf16ToF16InPlace(x: Tensor): void {
  check(x.dtype === "f16", () => `bf16ToF16InPlace: ${x.describe()} must be an f16 tensor holding BF16 bytes`);
  const vecs = Math.ceil(x.size / 8);
  if (vecs === 0) return;
  check(x.byteOffset + vecs * 16 <= x.buffer.size, () => `bf16ToF16InPlace: ${x.describe()} is not padded to a multiple of 16 bytes`);
  // The kernel binds whole vectors: a u32 view of the buffer, rounded up to them.
  x.storage.retain();
  const view = new Tensor(x.storage, [vecs * 4], "u32", x.byteOffset, x.name);
  try {
    x.gpu.record(bf16ToF16InPlaceKernel, {
      params: { vecs },
      tensors: { x: view },
      workgroups: flatGrid(Math.ceil(vecs / (WORKGROUP * VECS_PER_THREAD))),
    });
  } finally {
    view.dispose();
  }
}
