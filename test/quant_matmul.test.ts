/**
 * The quantized matmuls (src/kernels/quant/matmul_v1_tiled.ts, matmul_v2_subgroup.ts where the
 * device fixes its subgroup size) and quantizedLinear
 * (src/kernels/quant/index.ts) against the float64 reference (quantizedMatmulReference, within
 * quantizedMatmulErrorBounds: src/kernels/quant/reference.ts): every type, shapes that no tile
 * divides (M = 1, 5, 17 to 32, 33, 70 cover each tile height, 16, 32 and 64 rows, and more
 * than one tile; N = 1, 13, 40, 65 with tiles of 64 outputs; v2's tiles of 8 or 16 rows × 32
 * outputs overhang them too), rows of one block and of several, random blocks
 * and ggml's own, the epilogue options, with every fresh output poisoned first (testGpu).
 */
import { join } from "node:path";
import { describe, expect, it as vitestIt } from "vitest";
import { BLOCK_LAYOUT, QUANTIZED_TYPES, type QuantizedType } from "../src/kernels/quant/blocks.js";
import { chooseQuantizedVersion, quantizedLinear } from "../src/kernels/quant/index.js";
import { quantizedMatmulTiled } from "../src/kernels/quant/matmul_v1_tiled.js";
import { quantizedMatmulSubgroup } from "../src/kernels/quant/matmul_v2_subgroup.js";
import { QMATVEC_MAX_ROWS, type QuantizedMatrix } from "../src/kernels/quant/matvec_common.js";
import { quantizedMatmulErrorBounds, quantizedMatmulReference } from "../src/kernels/quant/reference.js";
import { SafetensorsFile } from "../src/weights/safetensors.js";
import { fixedSubgroupSize } from "../src/kernels/subgroups.js";
import { launchesOf } from "./launches.js";
import { randomQuantizedBlocks } from "./quant_helpers.js";
import { expectWithin, rng, testGpu, upload } from "./helpers.js";

const VERSIONS = { v1_tiled: quantizedMatmulTiled, v2_subgroup: quantizedMatmulSubgroup } as const;

for (const [version, quantizedMatmul] of Object.entries(VERSIONS)) describe(`quantized matmul ${version}`, async () => {
  const gpu = await testGpu();
  const it = version === "v2_subgroup" && fixedSubgroupSize(gpu) === null ? vitestIt.skip : vitestIt;
  const random = rng();
  const values = (count: number) => Float32Array.from({ length: count }, () => random() * 2 - 1);

  function weight(type: QuantizedType, N: number, K: number, blocks = randomQuantizedBlocks(type, N, K, random)): { w: QuantizedMatrix; blocks: Uint8Array } {
    const words = new Uint32Array(Math.ceil(blocks.byteLength / 4));
    new Uint8Array(words.buffer).set(blocks);
    return { w: { type, rows: N, cols: K, data: gpu.tensor(words, [words.length], "u32", { name: `${type} weight` }) }, blocks };
  }

  async function check(type: QuantizedType, M: number, N: number, K: number, blocks?: Uint8Array) {
    const { w, blocks: bytes } = weight(type, N, K, blocks);
    const a = values(M * K);
    const got = await quantizedMatmul(gpu, gpu.tensor(a, [M, K]), w).read();
    const what = `${type} [${M}, ${K}]·[${N}, ${K}]ᵀ`;
    expectWithin(got, quantizedMatmulReference(type, bytes, N, K, a, M), quantizedMatmulErrorBounds(type, bytes, N, K, a, M), what);
    w.data.dispose();
  }

  // (M, N): 1 and 5 rows take the 16-row tile, 33 and 70 the 64-row one, 70 two of them.
  const SHAPES = [[1, 13], [5, 65], [33, 1], [33, 40], [70, 65], [70, 13]] as const;

  for (const type of QUANTIZED_TYPES) {
    const { elements } = BLOCK_LAYOUT[type];
    // One block and several (for the K-quants: 256, one block, and 512).
    const Ks = elements === 32 ? [32, 160] : [256, 512];
    it(`${type}: matches the float64 reference on random blocks`, async () => {
      for (const K of Ks) for (const [M, N] of SHAPES) await check(type, M, N, K);
    });
  }

  // Each type and tile height is a pipeline that lavapipe takes seconds to compile; the tile
  // height is the same code for every type, so v1's 32-row tile is tried with two (v2 takes
  // these rows in its 16-row tile, as it does 33 and 70).
  it("takes 17 to 32 rows in the 32-row tile", async () => {
    for (const M of [17, 20, 32]) {
      await check("Q5_0", M, 40, 64);
      await check("Q4_K", M, 65, 256);
    }
  });

  it("reads ggml's own blocks as ggml does", async () => {
    const file = await SafetensorsFile.open(join(import.meta.dirname, "fixtures", "ggml-quants.safetensors"));
    const [rows, cols] = (await file.readFloat32("input")).shape;
    for (const type of QUANTIZED_TYPES) await check(type, 37, rows, cols, await file.readBytes(`${type}.blocks`));
    await file.close();
  });

  it("adds an f32 bias and residual, for every type", async () => {
    for (const type of QUANTIZED_TYPES) {
      const [M, N, K] = [33, 40, Math.max(BLOCK_LAYOUT[type].elements, 64)];
      const { w, blocks } = weight(type, N, K);
      const a = values(M * K);
      const bias = upload(gpu, values(N), [N], "f32");
      const residual = upload(gpu, values(M * N), [M, N], "f32");
      const got = await quantizedMatmul(gpu, gpu.tensor(a, [M, K]), w, { bias: bias.t, residual: residual.t }).read();
      const expected = quantizedMatmulReference(type, blocks, N, K, a, M, bias.values, residual.values);
      expectWithin(got, expected, quantizedMatmulErrorBounds(type, blocks, N, K, a, M, bias.values, residual.values), `${type} + bias + residual`);
    }
  });

  it("adds an f16 bias and an f16 residual", async () => {
    if (!gpu.hasF16) return;
    const [type, M, N, K] = ["Q6_K", 9, 13, 256] as const;
    const { w, blocks } = weight(type, N, K);
    const a = values(M * K);
    const bias = upload(gpu, values(N), [N], "f16");
    const residual = upload(gpu, values(M * N), [M, N], "f16");
    // Both in one launch: each dtype combination is a pipeline of its own, and lavapipe compiles slowly.
    const got = await quantizedMatmul(gpu, gpu.tensor(a, [M, K]), w, { bias: bias.t, residual: residual.t }).read();
    const expected = quantizedMatmulReference(type, blocks, N, K, a, M, bias.values, residual.values);
    expectWithin(got, expected, quantizedMatmulErrorBounds(type, blocks, N, K, a, M, bias.values, residual.values), "f16 bias + f16 residual");
  });

  it("writes columns [outColumn, outColumn + N) of a wider output, adding the residual at the same elements", async () => {
    const [type, M, N, K, total, column] = ["Q4_0", 70, 65, 64, 100, 21] as const;
    const { w, blocks } = weight(type, N, K);
    const a = values(M * K);
    const before = values(M * total);
    const residual = upload(gpu, values(M * total), [M, total], "f32");
    const bias = upload(gpu, values(N), [N], "f32");
    const out = gpu.tensor(before, [M, total]);
    expect(quantizedMatmul(gpu, gpu.tensor(a, [M, K]), w, { out, outColumn: column, bias: bias.t, residual: residual.t })).toBe(out);
    const got = await out.read();
    const columns = Float64Array.from({ length: M * N }, (_, i) => residual.values[Math.floor(i / N) * total + column + (i % N)]);
    const want = quantizedMatmulReference(type, blocks, N, K, a, M, bias.values, columns);
    const wantBounds = quantizedMatmulErrorBounds(type, blocks, N, K, a, M, bias.values, columns);
    const expected = Float64Array.from(before);
    const bounds = new Float64Array(M * total);
    for (let m = 0; m < M; m++) {
      for (let n = 0; n < N; n++) {
        expected[m * total + column + n] = want[m * N + n];
        bounds[m * total + column + n] = wantBounds[m * N + n];
      }
    }
    expectWithin(got, expected, bounds, "out columns"); // the other columns exactly as they were
  });

  it("refuses wrong dtypes and shapes", () => {
    const { w } = weight("Q4_K", 8, 256);
    const a = gpu.empty([6, 256], "f32");
    expect(() => quantizedMatmul(gpu, gpu.empty([6, 256], "f16"), w)).toThrow(/A f16\[6x256\] must be f32 \[\.\.\., 256\] \(W is \[8, 256\]\)/);
    expect(() => quantizedMatmul(gpu, gpu.empty([6, 128], "f32"), w)).toThrow(/must be f32 \[\.\.\., 256\]/);
    expect(() => quantizedMatmul(gpu, gpu.empty([0, 256], "f32"), w)).toThrow(/has 0 rows/);
    expect(() => quantizedMatmul(gpu, a, { ...w, data: gpu.empty([10], "u32") })).toThrow(/Q4_K \[8, 256\] is 1152 bytes, 288 u32 words, not u32\[10\]/);
    expect(() => quantizedMatmul(gpu, gpu.empty([6, 128], "f32"), { ...w, cols: 128 })).toThrow(/rows of 128 are not whole Q4_K blocks of 256/);
    expect(() => quantizedMatmul(gpu, a, w, { bias: gpu.empty([6], "f32") })).toThrow(/bias f32\[6\] must be f32 or f16 \[8\]/);
    expect(() => quantizedMatmul(gpu, a, w, { residual: gpu.empty([8, 6], "f32") })).toThrow(/residual f32\[8x6\] must be shaped like the output \[6, 8\]/);
    expect(() => quantizedMatmul(gpu, a, w, { out: gpu.empty([6, 8], "i32") })).toThrow(/out i32\[6x8\] must be f32/);
    expect(() => quantizedMatmul(gpu, a, w, { out: gpu.empty([6, 10], "f32"), outColumn: 3 })).toThrow(/columns \[3, 11\) do not fit in out f32\[6x10\]/);
    expect(() => quantizedMatmul(gpu, a, w, { outColumn: 2 })).toThrow(/outColumn needs an out tensor/);
    const out = gpu.empty([6, 8], "f32");
    expect(() => quantizedMatmul(gpu, a, w, { out, residual: out })).toThrow(/shares a buffer with out/);
  });
});

describe("quantizedLinear", async () => {
  const gpu = await testGpu();
  const it = vitestIt;
  const random = rng();

  it(`runs the matvec for up to ${QMATVEC_MAX_ROWS} rows (v4 with a fixed subgroup size, else v3) and the matmul beyond (v2 with one, else v1), folding leading dimensions`, async () => {
    const [type, N, K] = ["Q8_0", 19, 96] as const;
    const blocks = randomQuantizedBlocks(type, N, K, random);
    const words = new Uint32Array(Math.ceil(blocks.byteLength / 4));
    new Uint8Array(words.buffer).set(blocks);
    const w: QuantizedMatrix = { type, rows: N, cols: K, data: gpu.tensor(words, [words.length], "u32") };
    const bias = upload(gpu, Float32Array.from({ length: N }, () => random() - 0.5), [N], "f32");
    const subgroups = fixedSubgroupSize(gpu);
    const matvec = subgroups === null ? "matvec_v3_unrolled" : "matvec_v4_subgroup";
    expect(chooseQuantizedVersion(1, null)).toBe("matvec_v3_unrolled");
    expect(chooseQuantizedVersion(4, 8)).toBe("matvec_v4_subgroup");
    expect(chooseQuantizedVersion(5, null)).toBe("matmul_v1_tiled");
    expect(chooseQuantizedVersion(5, 8)).toBe("matmul_v2_subgroup");
    const matmul = subgroups === null ? "matmul_v1_tiled" : "matmul_v2_subgroup";
    const cases: [number[], string][] = [[[1], matvec], [[2, 2], matvec], [[5], matmul], [[3, 2], matmul]];
    for (const [lead, version] of cases) {
      const M = lead.reduce((x, y) => x * y, 1);
      expect(chooseQuantizedVersion(M, subgroups)).toBe(version);
      const kernel = `q${version}`;
      const a = Float32Array.from({ length: M * K }, () => random() * 2 - 1);
      const residual = upload(gpu, Float32Array.from({ length: M * N }, () => random() - 0.5), [...lead, N], "f32");
      const { result, kernels } = launchesOf(gpu, () => quantizedLinear(gpu.tensor(a, [...lead, K]), w, { bias: bias.t, residual: residual.t }));
      expect(kernels, `${M} rows`).toEqual([kernel]);
      expect(result.shape).toEqual([...lead, N]);
      const expected = quantizedMatmulReference(type, blocks, N, K, a, M, bias.values, residual.values);
      expectWithin(await result.read(), expected, quantizedMatmulErrorBounds(type, blocks, N, K, a, M, bias.values, residual.values), `[${lead}, ${K}]`);
    }
  });

  it("fills the columns of a given output, and returns it", async () => {
    const [type, N, K, total] = ["Q4_1", 6, 64, 10] as const;
    const blocks = randomQuantizedBlocks(type, N, K, random);
    const words = new Uint32Array(Math.ceil(blocks.byteLength / 4));
    new Uint8Array(words.buffer).set(blocks);
    const w: QuantizedMatrix = { type, rows: N, cols: K, data: gpu.tensor(words, [words.length], "u32") };
    for (const lead of [[3], [2, 4]]) {
      const M = lead.reduce((x, y) => x * y, 1);
      const a = Float32Array.from({ length: M * K }, () => random() * 2 - 1);
      const before = Float32Array.from({ length: M * total }, () => random());
      const out = gpu.tensor(before, [...lead, total]);
      expect(quantizedLinear(gpu.tensor(a, [...lead, K]), w, { out, outColumn: 4 })).toBe(out);
      const got = await out.read();
      const want = quantizedMatmulReference(type, blocks, N, K, a, M);
      const wantBounds = quantizedMatmulErrorBounds(type, blocks, N, K, a, M);
      const expected = Float64Array.from(before);
      const bounds = new Float64Array(M * total);
      for (let m = 0; m < M; m++) {
        for (let n = 0; n < N; n++) {
          expected[m * total + 4 + n] = want[m * N + n];
          bounds[m * total + 4 + n] = wantBounds[m * N + n];
        }
      }
      expectWithin(got, expected, bounds, `[${lead}] into columns [4, 10)`);
    }
  });
});
