/**
 * ggml's quantized blocks, and the float64 CPU reference of what each one means.
 *
 * Block quantization keeps weights as small integers with a scale per block of 32 (or 256)
 * of them: w = d·q, or w = d·q + m with a minimum. The file never holds the floats; a kernel
 * reads the packed bytes and does the multiply as it goes, so the GPU holds 4.5 bits per
 * weight for Q4_0 instead of 16. The layouts are ggml's (`ggml-common.h`), little-endian,
 * halves as IEEE f16:
 *
 *   Q8_0  (34 B / 32)  d, then 32 int8 q:                       w = d·q
 *   Q4_0  (18 B / 32)  d, 16 bytes of nibbles:                  w = d·(q − 8)
 *   Q4_1  (20 B / 32)  d, m, 16 bytes of nibbles:               w = d·q + m
 *   Q5_0  (22 B / 32)  d, 4 bytes of high bits, 16 of nibbles:  w = d·(q − 16)
 *   Q5_1  (24 B / 32)  d, m, 4 bytes of high bits, 16 nibbles:  w = d·q + m
 *     (byte j's low nibble is element j, its high nibble element j + 16; a fifth bit comes
 *     from bit j, or bit j + 16, of the 32-bit high-bits word)
 *   Q4_K (144 B / 256) d, dmin, 12 bytes of 6-bit scales and mins for 8 sub-blocks of 32,
 *                      128 bytes of nibbles:                    w = d·sc_j·q − dmin·m_j
 *   Q5_K (176 B / 256) as Q4_K, with 32 bytes of fifth bits before the nibbles
 *   Q6_K (210 B / 256) 128 bytes of low nibbles, 64 of 2-bit highs, 16 int8 scales (one per
 *                      16 elements), then d:                    w = d·sc_j·(q − 32)
 *   (The K-quants' 64-element groups: elements g·64 + l take the low nibble of byte g·32 + l,
 *   elements g·64 + 32 + l its high nibble; Q6_K's 128-element halves interleave four
 *   32-element runs over 64 bytes of nibbles and 32 of high bits.)
 *
 * dequantize() here computes every weight in float64 from the block's own numbers; ggml's
 * dequantize_row_* computes the same products in float32, so the two agree to a rounding or
 * two (test/quant_blocks.test.ts holds this against ggml's output for every type).
 */
import { f16BitsToF32 } from "../../tensor/dtype.js";

export const QUANTIZED_TYPES = ["Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q4_K", "Q5_K", "Q6_K"] as const;
export type QuantizedType = (typeof QUANTIZED_TYPES)[number];

/** Elements per block, bytes per block, and where in a block its halves (scales, minimums) are. */
export const BLOCK_LAYOUT: Record<QuantizedType, { elements: number; bytes: number; halves: readonly number[] }> = {
  Q8_0: { elements: 32, bytes: 34, halves: [0] },
  Q4_0: { elements: 32, bytes: 18, halves: [0] },
  Q4_1: { elements: 32, bytes: 20, halves: [0, 2] },
  Q5_0: { elements: 32, bytes: 22, halves: [0] },
  Q5_1: { elements: 32, bytes: 24, halves: [0, 2] },
  Q4_K: { elements: 256, bytes: 144, halves: [0, 2] },
  Q5_K: { elements: 256, bytes: 176, halves: [0, 2] },
  Q6_K: { elements: 256, bytes: 210, halves: [208] },
};

export function isQuantizedType(name: string): name is QuantizedType {
  return (QUANTIZED_TYPES as readonly string[]).includes(name);
}

/** The 6-bit scale and minimum of sub-block j (0 to 7) from a K-quant's 12 packed bytes. */
export function kScaleMin(scales: Uint8Array, j: number): [number, number] {
  if (j < 4) return [scales[j] & 63, scales[j + 4] & 63];
  return [(scales[j + 4] & 0xf) | ((scales[j - 4] >> 6) << 4), (scales[j + 4] >> 4) | ((scales[j] >> 6) << 4)];
}

/** The weights of `count` elements (a whole number of blocks) packed as `type` in `bytes`, in float64. */
export function dequantize(type: QuantizedType, bytes: Uint8Array, count: number): Float64Array {
  const { elements, bytes: blockBytes } = BLOCK_LAYOUT[type];
  if (count % elements !== 0) throw new RangeError(`dequantize: ${count} elements are not whole ${type} blocks of ${elements}`);
  if (bytes.byteLength < (count / elements) * blockBytes) throw new RangeError(`dequantize: ${bytes.byteLength} bytes hold fewer than ${count} ${type} elements`);
  const out = new Float64Array(count);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const half = (at: number) => f16BitsToF32(view.getUint16(at, true));
  for (let b = 0; b < count / elements; b++) {
    const at = b * blockBytes;
    const y = out.subarray(b * elements, (b + 1) * elements);
    const block = bytes.subarray(at, at + blockBytes);
    switch (type) {
      case "Q8_0": {
        const d = half(at);
        for (let j = 0; j < 32; j++) y[j] = d * view.getInt8(at + 2 + j);
        break;
      }
      case "Q4_0":
      case "Q4_1":
      case "Q5_0":
      case "Q5_1": {
        const d = half(at);
        const withMin = type === "Q4_1" || type === "Q5_1";
        const m = withMin ? half(at + 2) : 0;
        const five = type === "Q5_0" || type === "Q5_1";
        const highAt = at + (withMin ? 4 : 2);
        const high = five ? view.getUint32(highAt, true) : 0;
        const qs = bytes.subarray(highAt + (five ? 4 : 0));
        const offset = withMin ? 0 : five ? 16 : 8;
        for (let j = 0; j < 16; j++) {
          const lo = (qs[j] & 0xf) | (five ? ((high >>> j) & 1) << 4 : 0);
          const hi = (qs[j] >> 4) | (five ? ((high >>> (j + 16)) & 1) << 4 : 0);
          y[j] = d * (lo - offset) + m;
          y[j + 16] = d * (hi - offset) + m;
        }
        break;
      }
      case "Q4_K":
      case "Q5_K": {
        const d = half(at);
        const dmin = half(at + 2);
        const scales = block.subarray(4, 16);
        const five = type === "Q5_K";
        const qh = five ? block.subarray(16, 48) : null;
        const qs = block.subarray(five ? 48 : 16);
        for (let g = 0; g < 4; g++) {
          const [s1, m1] = kScaleMin(scales, 2 * g);
          const [s2, m2] = kScaleMin(scales, 2 * g + 1);
          for (let l = 0; l < 32; l++) {
            const byte = qs[32 * g + l];
            const lo = (byte & 0xf) + (qh && qh[l] & (1 << (2 * g)) ? 16 : 0);
            const hi = (byte >> 4) + (qh && qh[l] & (2 << (2 * g)) ? 16 : 0);
            y[64 * g + l] = d * s1 * lo - dmin * m1;
            y[64 * g + 32 + l] = d * s2 * hi - dmin * m2;
          }
        }
        break;
      }
      case "Q6_K": {
        const ql = block.subarray(0, 128);
        const qh = block.subarray(128, 192);
        const sc = new Int8Array(block.buffer, block.byteOffset + 192, 16);
        const d = half(at + 208);
        for (let n = 0; n < 2; n++) {
          for (let l = 0; l < 32; l++) {
            const s = 8 * n + Math.floor(l / 16);
            const low = ql.subarray(64 * n);
            const h = qh[32 * n + l];
            const q1 = ((low[l] & 0xf) | (((h >> 0) & 3) << 4)) - 32;
            const q2 = ((low[l + 32] & 0xf) | (((h >> 2) & 3) << 4)) - 32;
            const q3 = ((low[l] >> 4) | (((h >> 4) & 3) << 4)) - 32;
            const q4 = ((low[l + 32] >> 4) | (((h >> 6) & 3) << 4)) - 32;
            y[128 * n + l] = d * sc[s] * q1;
            y[128 * n + l + 32] = d * sc[s + 2] * q2;
            y[128 * n + l + 64] = d * sc[s + 4] * q3;
            y[128 * n + l + 96] = d * sc[s + 6] * q4;
          }
        }
        break;
      }
    }
  }
  return out;
}
