/**
 * The quantized matvecs (src/kernels/quant/matvec_v*.ts), every version, against the float64 reference
 * (blocks.ts's dequantize, then the products in float64): every type, 1 to 4 rows, an odd
 * number of outputs, rows of one block and of several, random blocks and ggml's own, with the
 * output poisoned first.
 *
 * Tolerance: each lane sums K/32 products of 32-term float32 dot products, then five levels of
 * tree reduction: at most K + 5 roundings of 2^-24, each relative to at most Σ|a·w|. So
 * (K + 8)·2^-24·Σ|a·w| per output, with Σ|a·w| from the reference.
 */
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { BLOCK_LAYOUT, dequantize, QUANTIZED_TYPES, type QuantizedType } from "../src/kernels/quant/blocks.js";
import { QMATVEC_MAX_ROWS, type QuantizedMatrix } from "../src/kernels/quant/matvec_common.js";
import { quantizedMatvec } from "../src/kernels/quant/matvec_v1_blocks.js";
import { quantizedMatvecWords } from "../src/kernels/quant/matvec_v2_words.js";
import { quantizedMatvecUnrolled } from "../src/kernels/quant/matvec_v3_unrolled.js";
import type { Gpu } from "../src/tensor/gpu.js";
import type { Tensor } from "../src/tensor/tensor.js";

const VERSIONS: Record<string, (gpu: Gpu, a: Tensor, w: QuantizedMatrix) => Tensor> = {
  v1_blocks: quantizedMatvec,
  v2_words: quantizedMatvecWords,
  v3_unrolled: quantizedMatvecUnrolled,
};
import { SafetensorsFile } from "../src/weights/safetensors.js";
import { randomQuantizedBlocks } from "./quant_helpers.js";
import { rng, testGpu } from "./helpers.js";

describe.each(Object.entries(VERSIONS))("quantized matvec %s", async (_version, run) => {
  const gpu = await testGpu();
  const random = rng();

  async function check(type: QuantizedType, blocks: Uint8Array, N: number, K: number, M: number) {
    const words = new Uint32Array(Math.ceil(blocks.byteLength / 4));
    new Uint8Array(words.buffer).set(blocks);
    const data = gpu.tensor(words, [words.length], "u32", { name: `${type} weight` });
    const a = Float32Array.from({ length: M * K }, () => random() * 2 - 1);
    const got = await run(gpu, gpu.tensor(a, [M, K]), { type, rows: N, cols: K, data }).read();
    const w = dequantize(type, blocks, N * K);
    for (let m = 0; m < M; m++) {
      for (let n = 0; n < N; n++) {
        let sum = 0;
        let magnitude = 0;
        for (let k = 0; k < K; k++) {
          sum += a[m * K + k] * w[n * K + k];
          magnitude += Math.abs(a[m * K + k] * w[n * K + k]);
        }
        const bound = (K + 8) * 2 ** -24 * magnitude + 1e-30;
        const value = got[m * N + n];
        if (!(Math.abs(value - sum) <= bound)) expect(value, `${type} [${N}, ${K}], ${M} rows: output (${m}, ${n}), bound ${bound}`).toBe(sum);
      }
    }
  }

  for (const type of QUANTIZED_TYPES) {
    it(`${type}: matches the float64 reference on random blocks`, async () => {
      const { elements } = BLOCK_LAYOUT[type];
      for (const [N, K] of [[13, elements], [9, 4 * elements], [1, 2 * Math.max(elements, 256)]]) {
        for (const M of [1, 3, QMATVEC_MAX_ROWS]) await check(type, randomQuantizedBlocks(type, N, K, random), N, K, M);
      }
    });
  }

  it("reads ggml's own blocks as ggml does", async () => {
    const file = await SafetensorsFile.open(join(import.meta.dirname, "fixtures", "ggml-quants.safetensors"));
    const [rows, cols] = (await file.readFloat32("input")).shape;
    for (const type of QUANTIZED_TYPES) await check(type, await file.readBytes(`${type}.blocks`), rows, cols, 2);
    await file.close();
  });

  it("refuses mismatched shapes", () => {
    const data = gpu.empty([17], "u32");
    const a = gpu.empty([1, 64], "f32");
    expect(() => run(gpu, a, { type: "Q8_0", rows: 1, cols: 64, data: gpu.empty([16], "u32") })).toThrow(/Q8_0 \[1, 64\] is 68 bytes, 17 u32 words, not u32\[16\]/);
    expect(() => run(gpu, gpu.empty([1, 32], "f32"), { type: "Q8_0", rows: 2, cols: 64, data })).toThrow(/must be f32 \[M, 64\]/);
    expect(() => run(gpu, gpu.empty([5, 64], "f32"), { type: "Q8_0", rows: 2, cols: 64, data })).toThrow(/has 5 rows; it takes 1 to 4/);
    expect(() => run(gpu, gpu.empty([1, 128], "f32"), { type: "Q4_K", rows: 1, cols: 128, data })).toThrow(/rows of 128 are not whole Q4_K blocks of 256/);
  });
});
