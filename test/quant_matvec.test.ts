/**
 * The quantized matvecs (src/kernels/quant/matvec_v*.ts), every version, against the float64 reference
 * (blocks.ts's dequantize, then the products in float64): every type, 1 to 4 rows, an odd
 * number of outputs, rows of one block and of several, random blocks and ggml's own, with the
 * output poisoned first.
 *
 * Tolerance: each lane sums K/32 products of 32-term float32 dot products, then five levels of
 * tree reduction: at most K + 5 roundings of 2^-24, each relative to at most Σ|a·w|. So
 * (K + 8)·2^-24·Σ|a·w| per output, with Σ|a·w| from the reference.
 *
 * The epilogue (bias f32 or f16, residual, into columns of a wider output) is checked against
 * quantizedMatmulReference within quantizedMatmulErrorBounds (src/kernels/quant/reference.ts).
 */
import { join } from "node:path";
import { describe, expect, it as vitestIt } from "vitest";
import { BLOCK_LAYOUT, dequantize, QUANTIZED_TYPES, type QuantizedType } from "../src/kernels/quant/blocks.js";
import { QMATVEC_MAX_ROWS, type QuantizedMatmulOptions, type QuantizedMatrix } from "../src/kernels/quant/matvec_common.js";
import { quantizedMatvec } from "../src/kernels/quant/matvec_v1_blocks.js";
import { quantizedMatvecWords } from "../src/kernels/quant/matvec_v2_words.js";
import { quantizedMatvecUnrolled } from "../src/kernels/quant/matvec_v3_unrolled.js";
import { quantizedMatvecSubgroup } from "../src/kernels/quant/matvec_v4_subgroup.js";
import { fixedSubgroupSize } from "../src/kernels/subgroups.js";
import { quantizedMatmulErrorBounds, quantizedMatmulReference } from "../src/kernels/quant/reference.js";
import type { Gpu } from "../src/tensor/gpu.js";
import type { Tensor } from "../src/tensor/tensor.js";

const VERSIONS: Record<string, (gpu: Gpu, a: Tensor, w: QuantizedMatrix, options?: QuantizedMatmulOptions) => Tensor> = {
  v1_blocks: quantizedMatvec,
  v2_words: quantizedMatvecWords,
  v3_unrolled: quantizedMatvecUnrolled,
  v4_subgroup: quantizedMatvecSubgroup,
  v4_subgroup_2_outputs: (gpu, a, w, options) => quantizedMatvecSubgroup(gpu, a, w, options, 2),
};
import { SafetensorsFile } from "../src/weights/safetensors.js";
import { randomQuantizedBlocks } from "./quant_helpers.js";
import { expectWithin, rng, testGpu, upload } from "./helpers.js";

describe.each(Object.entries(VERSIONS))("quantized matvec %s", async (version, run) => {
  const gpu = await testGpu();
  // v4 needs a fixed subgroup size (subgroups.ts); without one it is skipped.
  const it = version.startsWith("v4") && fixedSubgroupSize(gpu) === null ? vitestIt.skip : vitestIt;
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

  function weight(type: QuantizedType, N: number, K: number): { w: QuantizedMatrix; blocks: Uint8Array } {
    const blocks = randomQuantizedBlocks(type, N, K, random);
    const words = new Uint32Array(Math.ceil(blocks.byteLength / 4));
    new Uint8Array(words.buffer).set(blocks);
    return { w: { type, rows: N, cols: K, data: gpu.tensor(words, [words.length], "u32", { name: `${type} weight` }) }, blocks };
  }

  const values = (count: number) => Float32Array.from({ length: count }, () => random() * 2 - 1);

  // Every type with an f32 bias and residual (the flags are uniforms: no pipelines beyond the plain ones).
  it("adds an f32 bias and residual, for every type", async () => {
    for (const type of QUANTIZED_TYPES) {
      const [M, N, K] = [3, 13, 2 * Math.max(BLOCK_LAYOUT[type].elements, 64)];
      const { w, blocks } = weight(type, N, K);
      const a = values(M * K);
      const bias = upload(gpu, values(N), [N], "f32");
      const residual = upload(gpu, values(M * N), [M, N], "f32");
      const got = await run(gpu, gpu.tensor(a, [M, K]), w, { bias: bias.t, residual: residual.t }).read();
      const expected = quantizedMatmulReference(type, blocks, N, K, a, M, bias.values, residual.values);
      expectWithin(got, expected, quantizedMatmulErrorBounds(type, blocks, N, K, a, M, bias.values, residual.values), `${type} + bias + residual`);
    }
  });

  it("adds an f16 bias and an f16 residual", async () => {
    if (!gpu.hasF16) return;
    const [type, M, N, K] = ["Q4_K", 2, 9, 256] as const;
    const { w, blocks } = weight(type, N, K);
    const a = values(M * K);
    const bias = upload(gpu, values(N), [N], "f16");
    const residual = upload(gpu, values(M * N), [M, N], "f16");
    // Both in one launch: each dtype combination is a pipeline of its own, and lavapipe compiles slowly.
    const got = await run(gpu, gpu.tensor(a, [M, K]), w, { bias: bias.t, residual: residual.t }).read();
    const expected = quantizedMatmulReference(type, blocks, N, K, a, M, bias.values, residual.values);
    expectWithin(got, expected, quantizedMatmulErrorBounds(type, blocks, N, K, a, M, bias.values, residual.values), "f16 bias + f16 residual");
  });

  it("writes columns [outColumn, outColumn + N) of a wider output, adding the residual at the same elements", async () => {
    const [type, M, N, K, total, column] = ["Q5_1", QMATVEC_MAX_ROWS, 11, 96, 30, 7] as const;
    const { w, blocks } = weight(type, N, K);
    const a = values(M * K);
    const before = values(M * total);
    const residual = upload(gpu, values(M * total), [M, total], "f32");
    const bias = upload(gpu, values(N), [N], "f32");
    const out = gpu.tensor(before, [M, total]);
    expect(run(gpu, gpu.tensor(a, [M, K]), w, { out, outColumn: column, bias: bias.t, residual: residual.t })).toBe(out);
    const got = await out.read();
    // The residual of the written columns, as a [M, N] matrix for the reference.
    const columns = Float64Array.from({ length: M * N }, (_, i) => residual.values[Math.floor(i / N) * total + column + (i % N)]);
    const expected = Float64Array.from(before);
    const want = quantizedMatmulReference(type, blocks, N, K, a, M, bias.values, columns);
    const bounds = new Float64Array(M * total);
    const wantBounds = quantizedMatmulErrorBounds(type, blocks, N, K, a, M, bias.values, columns);
    for (let m = 0; m < M; m++) {
      for (let n = 0; n < N; n++) {
        expected[m * total + column + n] = want[m * N + n];
        bounds[m * total + column + n] = wantBounds[m * N + n];
      }
    }
    expectWithin(got, expected, bounds, "out columns"); // the other columns exactly as they were
  });

  it("refuses bad options", () => {
    const { w } = weight("Q8_0", 8, 64);
    const a = gpu.empty([2, 64], "f32");
    expect(() => run(gpu, a, w, { bias: gpu.empty([7], "f32") })).toThrow(/bias f32\[7\] must be f32 or f16 \[8\]/);
    expect(() => run(gpu, a, w, { bias: gpu.empty([8], "i32") })).toThrow(/must be f32 or f16 \[8\]/);
    expect(() => run(gpu, a, w, { residual: gpu.empty([2, 9], "f32") })).toThrow(/residual f32\[2x9\] must be shaped like the output \[2, 8\]/);
    expect(() => run(gpu, a, w, { out: gpu.empty([2, 8], "f16") })).toThrow(/out f16\[2x8\] must be f32/);
    expect(() => run(gpu, a, w, { out: gpu.empty([3, 8], "f32") })).toThrow(/does not have the 2 rows/);
    expect(() => run(gpu, a, w, { out: gpu.empty([2, 12], "f32"), outColumn: 5 })).toThrow(/columns \[5, 13\) do not fit/);
    expect(() => run(gpu, a, w, { outColumn: 1 })).toThrow(/outColumn needs an out tensor/);
    const out = gpu.empty([2, 8], "f32");
    expect(() => run(gpu, a, w, { out, residual: out })).toThrow(/shares a buffer with out/);
    expect(() => run(gpu, a, w, { out: a.reshape([2, 64]), outColumn: 0 })).toThrow(/out f32\[2x64\] shares a buffer with an input/);
  });

  it("refuses mismatched shapes", () => {
    const data = gpu.empty([17], "u32");
    const a = gpu.empty([1, 64], "f32");
    expect(() => run(gpu, a, { type: "Q8_0", rows: 1, cols: 64, data: gpu.empty([16], "u32") })).toThrow(/Q8_0 \[1, 64\] is 68 bytes, 17 u32 words, not u32\[16\]/);
    expect(() => run(gpu, gpu.empty([1, 32], "f32"), { type: "Q8_0", rows: 2, cols: 64, data })).toThrow(/must be f32 \[\.\.\., 64\]/);
    expect(() => run(gpu, gpu.empty([5, 64], "f32"), { type: "Q8_0", rows: 2, cols: 64, data })).toThrow(/has 5 rows; it takes 1 to 4/);
    expect(() => run(gpu, gpu.empty([1, 128], "f32"), { type: "Q4_K", rows: 1, cols: 128, data })).toThrow(/rows of 128 are not whole Q4_K blocks of 256/);
  });
});
