/** Test data in ggml's quantized block layouts. */
import { BLOCK_LAYOUT, type QuantizedType } from "../src/kernels/quant/blocks.js";
import { quantizedRowBytes } from "../src/kernels/quant/matvec_common.js";
import { f32ToF16Bits } from "../src/tensor/dtype.js";

/** Random blocks of `type` with small finite scales (the other bytes random). */
export function randomQuantizedBlocks(type: QuantizedType, rows: number, cols: number, random: () => number): Uint8Array {
  const { elements, bytes, halves } = BLOCK_LAYOUT[type];
  const out = Uint8Array.from({ length: rows * quantizedRowBytes(type, cols) }, () => Math.floor(random() * 256));
  const view = new DataView(out.buffer);
  for (let b = 0; b < (rows * cols) / elements; b++) {
    for (const half of halves) view.setUint16(b * bytes + half, f32ToF16Bits((random() - 0.5) * 0.02), true);
  }
  return out;
}

