/**
 * Quantizing float32 weights into ggml's blocks on the CPU, exactly as ggml's reference
 * quantizers (quantize_row_*_ref in ggml-quants.c) do, byte for byte: what `--dtype q8_0` on
 * load and a GGUF converter must produce so their files are the ones llama.cpp would write.
 *
 * Round to nearest, one scale per block of 32:
 *   Q8_0  d = max|x| / 127,             q = round(x / d)            (ties away from zero)
 *   Q4_0  d = x_m / −8 (x_m the value of largest magnitude, its sign kept),
 *         q = min(15, trunc(x / d + 8.5))
 *   Q5_0  as Q4_0 with −16, 16.5 and 31
 *   Q4_1  d = (max − min) / 15, m = min, q = min(15, trunc((x − min) / d + 0.5))
 *   Q5_1  as Q4_1 with 31 (and no clamp, as ggml has none)
 * ggml computes in float32, so every step here is rounded to float32 (Math.fround) in the same
 * order, and the scales are stored as halves rounded to nearest even, as ggml's conversion does.
 * The K-quants (Q4_K, Q5_K, Q6_K: super-blocks of 256 whose sub-block scales come from a small
 * search) are in quantize_k.ts; quantize() hands them over.
 */
import { f32ToF16Bits } from "../../tensor/dtype.js";
import { BLOCK_LAYOUT } from "./blocks.js";
import { K_QUANTIZABLE_TYPES, quantizeK, type KQuantizableType } from "./quantize_k.js";

export const QUANTIZABLE_TYPES = ["Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", ...K_QUANTIZABLE_TYPES] as const;
export type QuantizableType = (typeof QUANTIZABLE_TYPES)[number];

const f = Math.fround;

function isKType(type: QuantizableType): type is KQuantizableType {
  return (K_QUANTIZABLE_TYPES as readonly string[]).includes(type);
}

/** C's roundf: to nearest, ties away from zero. */
function roundAway(v: number): number {
  return Math.sign(v) * Math.floor(Math.abs(v) + 0.5);
}

/** The blocks of `type` for `values` (a whole number of its blocks: 32 values, or 256 for the K-quants), as ggml's reference quantizer makes them. */
export function quantize(type: QuantizableType, values: Float32Array): Uint8Array {
  if (isKType(type)) return quantizeK(type, values);
  const { elements, bytes } = BLOCK_LAYOUT[type];
  if (values.length % elements !== 0) throw new RangeError(`quantize: ${values.length} values are not whole ${type} blocks of ${elements}`);
  const out = new Uint8Array((values.length / elements) * bytes);
  const view = new DataView(out.buffer);
  for (let b = 0; b < values.length / elements; b++) {
    const x = values.subarray(b * 32, b * 32 + 32);
    const at = b * bytes;
    if (type === "Q8_0") {
      let amax = 0;
      for (const v of x) amax = Math.max(amax, Math.abs(v));
      const d = f(amax / 127);
      const id = d ? f(1 / d) : 0;
      view.setUint16(at, f32ToF16Bits(d), true);
      for (let j = 0; j < 32; j++) view.setInt8(at + 2 + j, roundAway(f(x[j] * id)));
      continue;
    }
    const five = type === "Q5_0" || type === "Q5_1";
    const withMin = type === "Q4_1" || type === "Q5_1";
    const levels = five ? 31 : 15;
    let d: number;
    let min = 0;
    if (withMin) {
      let max = -Infinity;
      min = Infinity;
      for (const v of x) {
        if (v < min) min = v;
        if (v > max) max = v;
      }
      d = f(f(max - min) / levels);
      view.setUint16(at + 2, f32ToF16Bits(min), true);
    } else {
      let amax = 0;
      let max = 0;
      for (const v of x) {
        if (amax < Math.abs(v)) {
          amax = Math.abs(v);
          max = v;
        }
      }
      d = f(max / (five ? -16 : -8));
    }
    const id = d ? f(1 / d) : 0;
    view.setUint16(at, f32ToF16Bits(d), true);
    const quant = (v: number) => {
      const scaled = withMin ? f(f(v - min) * id) : f(v * id);
      const q = Math.trunc(f(scaled + (withMin ? 0.5 : five ? 16.5 : 8.5)));
      return type === "Q5_1" ? q & 255 : Math.min(levels, q);
    };
    let qh = 0;
    const qs = at + (withMin ? 4 : 2) + (five ? 4 : 0);
    for (let j = 0; j < 16; j++) {
      const lo = quant(x[j]);
      const hi = quant(x[j + 16]);
      out[qs + j] = (lo & 15) | ((hi & 15) << 4);
      qh |= (((lo >> 4) & 1) << j) | (((hi >> 4) & 1) << (j + 16));
    }
    if (five) view.setUint32(at + (withMin ? 4 : 2), qh >>> 0, true);
  }
  return out;
}
