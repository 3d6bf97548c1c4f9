/**
 * Turning 32 weights of a row of ggml's packed blocks back into floats, on the GPU: the WGSL
 * the quantized kernels share (matvec_v1_blocks.ts, matvec_v2_words.ts, embedding.ts).
 *
 * A unit is 32 consecutive weights of a row: a block of the 32-element types, a sub-block with
 * its own scale of the 256-element K-quants. A block's bytes are not word-aligned (a Q8_0
 * block is 34 bytes), so the words holding the bytes a unit needs are first copied into
 * registers (a window: the whole block for the 32-element types; the header, the 32 quant
 * bytes and the 32 high-bit bytes of a K-quant sub-block), and the bytes picked out of them.
 * The arithmetic is blocks.ts's reference, in float32.
 */
import { BLOCK_LAYOUT, type QuantizedType } from "./blocks.js";

/** The 6-bit scale (x) and minimum (y) of K-quant sub-block j from the 12 bytes at `at` (slot 0). */
const K_SCALE_MIN_WGSL = /* wgsl */ `
fn k_scale_min(at: u32, j: u32) -> vec2u {
  if (j < 4u) { return vec2u(wbyte(0u, at + j) & 63u, wbyte(0u, at + j + 4u) & 63u); }
  return vec2u((wbyte(0u, at + j + 4u) & 15u) | ((wbyte(0u, at + j - 4u) >> 6u) << 4u),
               (wbyte(0u, at + j + 4u) >> 4u) | ((wbyte(0u, at + j) >> 6u) << 4u));
}`;

/** Words of one window: 34 bytes starting 2 bytes into a word span 9. */
const WINDOW_WORDS = 10;

/**
 * WGSL: the same readers straight from the u32 array `binding`, every byte a load of its own
 * (`fill` does nothing): what the first matvec version reads with.
 */
export function directWgsl(binding: string): string {
  return /* wgsl */ `
fn fill(slot: u32, start: u32, bytes: u32) {}
fn wbyte(slot: u32, i: u32) -> u32 { return (${binding}[i >> 2u] >> ((i & 3u) * 8u)) & 255u; }
fn wsbyte(slot: u32, i: u32) -> i32 { return (i32(wbyte(slot, i)) << 24u) >> 24u; }
// A half at an even byte: within one word.
fn whalf(slot: u32, i: u32) -> f32 { return unpack2x16float(${binding}[i >> 2u] >> ((i & 2u) * 8u)).x; }
${K_SCALE_MIN_WGSL}`;
}

/** WGSL: the windows over the u32 array `binding`, and the byte, half and K-quant scale readers over them. */
export function windowWgsl(binding: string): string {
  return /* wgsl */ `
// Up to three windows of a row's bytes, copied word by word into registers.
var<private> window: array<array<u32, ${WINDOW_WORDS}>, 3>;
var<private> window_start: array<u32, 3>;
fn fill(slot: u32, start: u32, bytes: u32) {
  let first = start >> 2u;
  window_start[slot] = first << 2u;
  for (var i = 0u; i < ((start + bytes + 3u) >> 2u) - first; i++) { window[slot][i] = ${binding}[first + i]; }
}
fn wbyte(slot: u32, i: u32) -> u32 {
  let o = i - window_start[slot];
  return (window[slot][o >> 2u] >> ((o & 3u) * 8u)) & 255u;
}
fn wsbyte(slot: u32, i: u32) -> i32 { return (i32(wbyte(slot, i)) << 24u) >> 24u; }
fn whalf(slot: u32, i: u32) -> f32 {
  let o = i - window_start[slot];
  return unpack2x16float(window[slot][o >> 2u] >> ((o & 2u) * 8u)).x;
}
${K_SCALE_MIN_WGSL}

`;
}

/** WGSL: windows filled, then the 32 weights of unit `unit` of the row starting at byte `row` into w. */
export function unitWeightsWgsl(type: QuantizedType): string {
  switch (type) {
    case "Q8_0":
      return `let base = row + unit * 34u;
    fill(0u, base, 34u);
    let d = whalf(0u, base);
    for (var l = 0u; l < 32u; l++) { w[l] = d * f32(wsbyte(0u, base + 2u + l)); }`;
    case "Q4_0":
    case "Q4_1":
    case "Q5_0":
    case "Q5_1": {
      const withMin = type === "Q4_1" || type === "Q5_1";
      const five = type === "Q5_0" || type === "Q5_1";
      const { bytes } = BLOCK_LAYOUT[type];
      const high = withMin ? 4 : 2;
      const qs = high + (five ? 4 : 0);
      const offset = withMin ? 0 : five ? 16 : 8;
      return `let base = row + unit * ${bytes}u;
    fill(0u, base, ${bytes}u);
    let d = whalf(0u, base);
    let m = ${withMin ? "whalf(0u, base + 2u)" : "0.0"};
    let qh = ${five ? `wbyte(0u, base + ${high}u) | (wbyte(0u, base + ${high + 1}u) << 8u) | (wbyte(0u, base + ${high + 2}u) << 16u) | (wbyte(0u, base + ${high + 3}u) << 24u)` : "0u"};
    for (var l = 0u; l < 16u; l++) {
      let q = wbyte(0u, base + ${qs}u + l);
      let lo = (q & 15u) | (((qh >> l) & 1u) << 4u);
      let hi = (q >> 4u) | (((qh >> (l + 16u)) & 1u) << 4u);
      w[l] = d * (f32(lo) - ${offset}.0) + m;
      w[l + 16u] = d * (f32(hi) - ${offset}.0) + m;
    }`;
    }
    case "Q4_K":
    case "Q5_K": {
      const five = type === "Q5_K";
      return `let base = row + (unit / 8u) * ${BLOCK_LAYOUT[type].bytes}u;
    let s = unit % 8u;
    let g = s / 2u;
    fill(0u, base, 16u);
    fill(1u, base + ${five ? 48 : 16}u + 32u * g, 32u);
    ${five ? "fill(2u, base + 16u, 32u);" : ""}
    let sm = k_scale_min(base + 4u, s);
    let scale = whalf(0u, base) * f32(sm.x);
    let minimum = whalf(0u, base + 2u) * f32(sm.y);
    let shift = (s % 2u) * 4u;
    for (var l = 0u; l < 32u; l++) {
      var q = (wbyte(1u, base + ${five ? 48 : 16}u + 32u * g + l) >> shift) & 15u;
      ${five ? "q += ((wbyte(2u, base + 16u + l) >> s) & 1u) << 4u;" : ""}
      w[l] = scale * f32(q) - minimum;
    }`;
    }
    case "Q6_K":
      return `let base = row + (unit / 8u) * 210u;
    let s = unit % 8u;
    let n = s / 4u;
    let r = s % 4u;
    let low = base + 64u * n + (r % 2u) * 32u;
    fill(0u, low, 32u);
    fill(1u, base + 128u + 32u * n, 32u);
    fill(2u, base + 192u, 18u);
    let d = whalf(2u, base + 208u);
    let shift = (r / 2u) * 4u;
    for (var l = 0u; l < 32u; l++) {
      let q = ((wbyte(0u, low + l) >> shift) & 15u) | (((wbyte(1u, base + 128u + 32u * n + l) >> (2u * r)) & 3u) << 4u);
      let sc = f32(wsbyte(2u, base + 192u + 8u * n + l / 16u + 2u * r));
      w[l] = d * sc * (f32(q) - 32.0);
    }`;
  }
}

