/** Test data in ggml's quantized block layouts. */
import { BLOCK_LAYOUT, type QuantizedType } from "../src/kernels/quant/blocks.js";
import { quantizedRowBytes } from "../src/kernels/quant/matvec_common.js";
import { f32ToF16Bits } from "../src/tensor/dtype.js";

/** Random blocks of `type` with small finite scales (the other bytes random). */
export function randomQuantizedBlocks(type: QuantizedType, rows: number, cols: number, random: () => number): Uint8Array {
  const { elements, bytes } = BLOCK_LAYOUT[type];
  const out = Uint8Array.from({ length: rows * quantizedRowBytes(type, cols) }, () => Math.floor(random() * 256));
  const view = new DataView(out.buffer);
  const setHalf = (at: number) => view.setUint16(at, f32ToF16Bits((random() - 0.5) * 0.02), true);
  for (let b = 0; b < (rows * cols) / elements; b++) {
    const at = b * bytes;
    if (type === "Q6_K") setHalf(at + 208);
    else setHalf(at);
    if (type === "Q4_1" || type === "Q5_1" || type === "Q4_K" || type === "Q5_K") setHalf(at + 2);
  }
  return out;
}

