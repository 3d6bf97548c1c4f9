/**
 * Quantized matvec v3: v2 (matvec_v2_words.ts) with every byte position known when the
 * shader is compiled, for every type.
 *
 * v2 picked a block's bytes out of a register array by a computed index, which a GPU compiler
 * (and lavapipe's, lane by lane) turns into memory accesses. Here the code for a block is
 * written out in full by the generator below: the block's words are loaded into named
 * registers, shifted into place once (a block starts at an even byte, 2 bytes into a word half
 * the time: each realigned word is two neighbours funnel-shifted by 0 or 16 bits), and every
 * quant is then a constant shift and mask of a constant register. The 32 weights are dotted
 * with the activations as eight vec4s. A Q4_K or Q5_K block (144 or 176 bytes) is
 * word-aligned wherever it falls, so its words are used as they are: one for the two halves,
 * three for the packed scales, eight (and eight of fifth bits) for a sub-block's quants; a
 * Q6_K block (210 bytes) is not, and its runs of low nibbles, high bits and scales are each
 * realigned like a 32-element block. The arithmetic is v1's and v2's.
 */
import type { Gpu } from "../../tensor/gpu.js";
import { defineKernel } from "../../tensor/kernel.js";
import type { Tensor } from "../../tensor/tensor.js";
import { BLOCK_LAYOUT, type QuantizedType } from "./blocks.js";
import { QUANTIZED_BINDINGS, QUANTIZED_PARAMS, quantizedElementType, quantizedMatvecWgsl, recordQuantizedMatvec, type QuantizedMatmulOptions, type QuantizedMatrix } from "./matvec_common.js";

/** The 6-bit scale (x) and minimum (y) of K-quant sub-block j from its 12 bytes of scales, as three words. */
export const K_SCALE_MIN_OF_WORDS_WGSL = /* wgsl */ `
fn scale_byte(s0: u32, s1: u32, s2: u32, k: u32) -> u32 {
  return (select(select(s0, s1, k >= 4u), s2, k >= 8u) >> ((k & 3u) * 8u)) & 255u;
}
fn k_scale_min(s0: u32, s1: u32, s2: u32, j: u32) -> vec2u {
  if (j < 4u) { return vec2u(scale_byte(s0, s1, s2, j) & 63u, scale_byte(s0, s1, s2, j + 4u) & 63u); }
  return vec2u((scale_byte(s0, s1, s2, j + 4u) & 15u) | ((scale_byte(s0, s1, s2, j - 4u) >> 6u) << 4u),
               (scale_byte(s0, s1, s2, j + 4u) >> 4u) | ((scale_byte(s0, s1, s2, j) >> 6u) << 4u));
}`;

/**
 * WGSL for a K-quant with 4-bit quants (Q4_K, and Q5_K with its fifth bits): sub-block s of
 * the block, whose 144 or 176 bytes keep every block and every part of it word-aligned, so
 * the words are used as they are.
 */
function kQuantWgsl(type: "Q4_K" | "Q5_K"): string {
  const five = type === "Q5_K";
  const lines = [
    `let base = row + (unit / 8u) * ${BLOCK_LAYOUT[type].bytes}u;`,
    "let s = unit % 8u; // the sub-block: group s / 2 of 64 weights, its low (even s) or high nibbles",
    "let w_at = base >> 2u;",
    "let sm = k_scale_min(b[w_at + 1u], b[w_at + 2u], b[w_at + 3u], s);",
    "let scale = unpack2x16float(b[w_at]).x * f32(sm.x);",
    "let minimum = unpack2x16float(b[w_at]).y * f32(sm.y);",
    "let shift = (s % 2u) * 4u;",
    `let q_at = w_at + ${five ? 12 : 4}u + 8u * (s / 2u);`,
  ];
  for (let i = 0; i < 8; i++) lines.push(`let q${i} = b[q_at + ${i}u];`);
  if (five) for (let i = 0; i < 8; i++) lines.push(`let h${i} = b[w_at + ${4 + i}u] >> s;`);
  for (let l = 0; l < 32; l++) {
    const at = (l & 3) * 8;
    const fifth = five ? ` | (((h${l >> 2} >> ${at}u) & 1u) << 4u)` : "";
    lines.push(`let w${l} = scale * f32(((q${l >> 2} >> (${at}u + shift)) & 15u)${fifth}) - minimum;`);
  }
  return lines.join("\n      ");
}

/** WGSL: `count` words realigned from the (maybe 2-byte-offset) byte `start`, as names `${prefix}0`... */
function realignedWgsl(prefix: string, start: string, count: number): string[] {
  const lines = [`let ${prefix}_first = (${start}) >> 2u;`, `let ${prefix}_shift = ((${start}) & 2u) * 8u;`];
  for (let i = 0; i <= count; i++) lines.push(`let ${prefix}_l${i} = b[min(${prefix}_first + ${i}u, arrayLength(&b) - 1u)];`);
  for (let i = 0; i < count; i++) {
    lines.push(`let ${prefix}${i} = select((${prefix}_l${i} >> ${prefix}_shift) | (${prefix}_l${i + 1} << (32u - ${prefix}_shift)), ${prefix}_l${i}, ${prefix}_shift == 0u);`);
  }
  return lines;
}

/**
 * WGSL for Q6_K: unit s of the block is quarter r of half n (32 weights), whose low nibbles
 * and 2-bit highs are 32-byte runs, and whose two 8-bit scales sit among the block's 16. A
 * 210-byte block falls 2 bytes into a word half the time, so each run is realigned.
 */
function q6KWgsl(): string {
  const lines = [
    "let base = row + (unit / 8u) * 210u;",
    "let s = unit % 8u;",
    "let n = s / 4u;",
    "let r = s % 4u;",
    ...realignedWgsl("lo", "base + 64u * n + (r % 2u) * 32u", 8),
    ...realignedWgsl("hi", "base + 128u + 32u * n", 8),
    ...realignedWgsl("sc", "base + 192u", 5),
    "let d = unpack2x16float(sc4 >> 0u).x; // bytes 16 and 17 of the scales run: the block's d",
    "let low_shift = (r / 2u) * 4u;",
    "let high_shift = 2u * r;",
    // The scale of weights 0-15 and 16-31: bytes 8n + 2r and 8n + 2r + 1 of the 16.
    "let k = 8u * n + 2u * r;",
    "let sc_word = select(select(select(sc0, sc1, k >= 4u), sc2, k >= 8u), sc3, k >= 12u);",
    "let scale0 = d * f32((i32((sc_word >> ((k & 3u) * 8u)) & 255u) << 24u) >> 24u);",
    "let scale1 = d * f32((i32((sc_word >> (((k + 1u) & 3u) * 8u)) & 255u) << 24u) >> 24u);",
  ];
  for (let l = 0; l < 32; l++) {
    const at = (l & 3) * 8;
    lines.push(
      `let w${l} = ${l < 16 ? "scale0" : "scale1"} * (f32(((lo${l >> 2} >> (${at}u + low_shift)) & 15u) | (((hi${l >> 2} >> (${at}u + high_shift)) & 3u) << 4u)) - 32.0);`,
    );
  }
  return lines.join("\n      ");
}

/**
 * WGSL: the block of unit `unit` of the row at byte `row` of the u32 array `b` into registers,
 * and its 32 weights into w0..w31 (needs K_SCALE_MIN_OF_WORDS_WGSL at module scope). The
 * tiled matmul (matmul_v1_tiled.ts) dequantizes its weight tiles with it too.
 */
export function unrolledUnitWgsl(type: QuantizedType): string {
  if (type === "Q4_K" || type === "Q5_K") return kQuantWgsl(type);
  if (type === "Q6_K") return q6KWgsl();
  const { bytes } = BLOCK_LAYOUT[type];
  const realigned = Math.ceil(bytes / 4);
  const lines = [
    `let base = row + unit * ${bytes}u;`,
    "let first = base >> 2u;",
    "let shift = (base & 2u) * 8u; // 0 or 16",
  ];
  for (let i = 0; i <= realigned; i++) lines.push(`let l${i} = b[min(first + ${i}u, arrayLength(&b) - 1u)];`);
  for (let i = 0; i < realigned; i++) lines.push(`let r${i} = select((l${i} >> shift) | (l${i + 1} << (32u - shift)), l${i}, shift == 0u);`);
  const byte = (j: number) => `((r${j >> 2} >> ${(j & 3) * 8}u) & 255u)`;
  const half = (j: number) => `unpack2x16float(r${j >> 2} >> ${(j & 2) * 8}u).x`;
  lines.push(`let d = ${half(0)};`);
  if (type === "Q8_0") {
    for (let j = 0; j < 32; j++) lines.push(`let w${j} = d * f32((i32(${byte(2 + j)}) << 24u) >> 24u);`);
    return lines.join("\n      ");
  }
  const withMin = type === "Q4_1" || type === "Q5_1";
  const five = type === "Q5_0" || type === "Q5_1";
  const high = withMin ? 4 : 2;
  const qs = high + (five ? 4 : 0);
  const offset = withMin ? 0 : five ? 16 : 8;
  lines.push(`let m = ${withMin ? half(2) : "0.0"};`);
  if (five) lines.push(`let qh = ${byte(high)} | (${byte(high + 1)} << 8u) | (${byte(high + 2)} << 16u) | (${byte(high + 3)} << 24u);`);
  for (let j = 0; j < 16; j++) {
    const fifth = (bit: number) => (five ? ` | (((qh >> ${bit}u) & 1u) << 4u)` : "");
    lines.push(`let w${j} = d * (f32((${byte(qs + j)} & 15u)${fifth(j)}) - ${offset}.0) + m;`);
    lines.push(`let w${j + 16} = d * (f32((${byte(qs + j)} >> 4u)${fifth(j + 16)}) - ${offset}.0) + m;`);
  }
  return lines.join("\n      ");
}

const kernel = defineKernel({
  name: "qmatvec_v3_unrolled",
  params: QUANTIZED_PARAMS,
  bindings: QUANTIZED_BINDINGS,
  elementType: quantizedElementType(true),
  wgsl: ({ type, rows }: { type: QuantizedType; rows: number }) =>
    quantizedMatvecWgsl(
      rows,
      K_SCALE_MIN_OF_WORDS_WGSL,
      `${unrolledUnitWgsl(type)}
      for (var m = 0u; m < ROWS; m++) {
        let at = (m * params.K + unit * 32u) / 4u;
        acc[m] += ${Array.from({ length: 8 }, (_, l) => `dot(a[at + ${l}u], vec4f(w${4 * l}, w${4 * l + 1}, w${4 * l + 2}, w${4 * l + 3}))`).join("\n          + ")};
      }`,
    ),
});

/**
 * C [M, N] f32 = A [M, K] f32 · Wᵀ (+ bias) (+ residual), W a [N, K] quantized matrix, 1 ≤ M ≤ 4
 * (A's leading dimensions fold into M); `options` as matmul's (matvec_common.ts).
 */
export function quantizedMatvecUnrolled(gpu: Gpu, a: Tensor, w: QuantizedMatrix, options: QuantizedMatmulOptions = {}): Tensor {
  return recordQuantizedMatvec(gpu, kernel, a, w, options);
}
