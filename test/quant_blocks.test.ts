/**
 * ggml's block layouts (src/kernels/quant/blocks.ts) and reference quantizers (quantize.ts)
 * against ggml itself. For four rows of test values (weights, outliers, values tiny enough for
 * subnormal scales, an all-zero half), scripts/ggml-quant-fixtures recorded the blocks ggml's
 * reference quantizers made and what its dequantize_row_* gave back: the blocks must
 * dequantize here to the latter, and quantizing the rows here must give the very same bytes.
 *
 * Tolerance: ggml computes in float32 and this reference in float64. A product of a half
 * scale (11 significant bits), a 6- or 8-bit sub-scale and a 4- to 6-bit quant has at most
 * 25 significant bits, so float32 rounds it at most once, and adding a minimum rounds once
 * more: two roundings of at most 2^-24 relative to the block's largest term, which is at most
 * about twice its largest weight. So 2^-21 of the block's largest |weight|.
 */
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { BLOCK_LAYOUT, dequantize, kScaleMin, QUANTIZED_TYPES } from "../src/kernels/quant/blocks.js";
import { QUANTIZABLE_TYPES, quantize } from "../src/kernels/quant/quantize.js";
import { SafetensorsFile } from "../src/weights/safetensors.js";

const FIXTURE = join(import.meta.dirname, "fixtures", "ggml-quants.safetensors");

describe("ggml's quantized blocks", async () => {
  const file = await SafetensorsFile.open(FIXTURE);
  const input = await file.readFloat32("input");
  const [rows, cols] = input.shape;

  for (const type of QUANTIZED_TYPES) {
    it(`${type}: dequantizes as ggml does`, async () => {
      const blocks = await file.readBytes(`${type}.blocks`);
      const want = (await file.readFloat32(`${type}.dequant`)).data;
      const { elements, bytes } = BLOCK_LAYOUT[type];
      expect(blocks.byteLength).toBe(((rows * cols) / elements) * bytes);
      const got = dequantize(type, blocks, rows * cols);
      for (let b = 0; b < (rows * cols) / elements; b++) {
        const block = want.subarray(b * elements, (b + 1) * elements);
        const tolerance = 2 ** -21 * Math.max(...block.map(Math.abs));
        for (let i = 0; i < elements; i++) {
          const at = b * elements + i;
          if (Math.abs(got[at] - want[at]) > tolerance) expect(got[at], `${type} element ${at} (block ${b})`).toBe(want[at]);
        }
      }
      // And quantization is what it claims: near the values it was made from.
      let worst = 0;
      for (let i = 0; i < rows * cols; i++) worst = Math.max(worst, Math.abs(got[i] - input.data[i]));
      expect(worst, `${type}: the largest error against the values quantized`).toBeLessThan(10);
    });
  }

  it("refuses partial blocks and short buffers", () => {
    expect(() => dequantize("Q4_K", new Uint8Array(144), 128)).toThrow(/128 elements are not whole Q4_K blocks of 256/);
    expect(() => dequantize("Q8_0", new Uint8Array(33), 32)).toThrow(/33 bytes hold fewer than 32 Q8_0 elements/);
  });

  it("unpacks the K-quants' 6-bit scales and minimums", () => {
    // Sub-blocks 0-3 in the low 6 bits of bytes 0-3 (scales) and 4-7 (mins); 4-7 in the
    // nibbles of bytes 8-11, with their top two bits in the top bits of bytes 0-7.
    const packed = Uint8Array.from([0xc1, 0x02, 0x03, 0x44, 0x85, 0x06, 0x07, 0x08, 0x9a, 0x0b, 0x0c, 0x0d]);
    expect(kScaleMin(packed, 0)).toEqual([1, 5]);
    expect(kScaleMin(packed, 3)).toEqual([4, 8]);
    expect(kScaleMin(packed, 4)).toEqual([0xa | (3 << 4), 0x9 | (2 << 4)]);
    expect(kScaleMin(packed, 7)).toEqual([0xd | (1 << 4), 0x0 | (0 << 4)]);
  });
});

describe("quantizing as ggml's reference quantizers do", async () => {
  const file = await SafetensorsFile.open(FIXTURE);
  const input = Float32Array.from((await file.readFloat32("input")).data);

  for (const type of QUANTIZABLE_TYPES) {
    it(`${type}: the same blocks, byte for byte`, async () => {
      const want = await file.readBytes(`${type}.blocks`);
      const got = quantize(type, input);
      expect(got.byteLength).toBe(want.byteLength);
      const { bytes } = BLOCK_LAYOUT[type];
      for (let i = 0; i < got.byteLength; i++) {
        if (got[i] !== want[i]) expect(got[i], `${type} byte ${i} (block ${Math.floor(i / bytes)}, byte ${i % bytes} of it)`).toBe(want[i]);
      }
    });
  }

  it("rounds Q8_0's ties away from zero, as C's roundf does", () => {
    // max |x| = 127 makes d = 1 exactly, so each value is its own quant before rounding.
    const x = new Float32Array(32);
    x.set([127, -2.5, 2.5, -0.5, 0.5, 1.5]);
    const q = new Int8Array(quantize("Q8_0", x).buffer, 2, 32);
    expect(Array.from(q.subarray(0, 6))).toEqual([127, -3, 3, -1, 1, 2]);
  });

  it("refuses partial blocks", () => {
    expect(() => quantize("Q8_0", new Float32Array(48))).toThrow(/48 values are not whole Q8_0 blocks of 32/);
  });
});
