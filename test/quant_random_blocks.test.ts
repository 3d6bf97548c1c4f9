/**
 * randomBlocks (src/kernels/quant/random_blocks.ts) against its CPU reference: the same bytes
 * for every type on sizes whose blocks straddle words and whose last word is padded, in a row
 * part that does not start at a word; every block's halves the chosen value; the dequantized
 * weights finite, with about the std asked for and a mean near 0; other seeds, other bytes; and
 * the quantized product reading the (for some types subnormal) scales as the reference does.
 */
import { describe, expect, it } from "vitest";
import { BLOCK_LAYOUT, dequantize, QUANTIZED_TYPES, type QuantizedType } from "../src/kernels/quant/blocks.js";
import { quantizedLinear } from "../src/kernels/quant/index.js";
import { quantizedRowBytes, type QuantizedMatrix } from "../src/kernels/quant/matvec_common.js";
import { randomBlockHalves, randomBlocks, randomBlocksReference } from "../src/kernels/quant/random_blocks.js";
import { quantizedMatmulErrorBounds, quantizedMatmulReference } from "../src/kernels/quant/reference.js";
import { f16BitsToF32 } from "../src/tensor/dtype.js";
import { rng, testGpu } from "./helpers.js";

describe("random quantized blocks", async () => {
  const gpu = await testGpu();
  const random = rng();

  /** A matrix of `rows` × `cols` made (poisoned first: every word must be written) and filled on the GPU; its bytes. */
  async function onGpu(type: QuantizedType, rows: number, cols: number, seed: number, rowStart = 0): Promise<{ w: QuantizedMatrix; bytes: Uint8Array }> {
    const words = Math.ceil((rows * quantizedRowBytes(type, cols)) / 4);
    const w = randomBlocks({ type, rows, cols, data: gpu.empty([words], "u32", { name: `${type} random` }) }, { seed, rowStart });
    const read = (await w.data.read()) as Uint32Array;
    return { w, bytes: new Uint8Array(read.buffer, read.byteOffset, read.byteLength) };
  }

  const expectBytes = (got: Uint8Array, want: Uint8Array, what: string) => {
    expect(got.length, `${what}: length`).toBe(want.length);
    const first = got.findIndex((b, i) => b !== want[i]);
    if (first >= 0) expect(got[first], `${what}: byte ${first}`).toBe(want[first]);
  };

  for (const type of QUANTIZED_TYPES) {
    const { elements, bytes: blockBytes, halves } = BLOCK_LAYOUT[type];
    it(`${type}: the reference's bytes, in a part starting at an odd row; the halves exact`, async () => {
      // Rows of an odd number of blocks: for Q8_0 (34 B) and Q6_K (210 B) a row is 2 mod 4 bytes,
      // so rows start mid-word, the part's stream starts mid-word, and its last word is padded.
      const [rows, cols, rowStart, seed] = [3, 3 * elements, 5, Math.floor(random() * 2 ** 32)];
      const want = randomBlocksReference(type, rows, cols, { seed, rowStart });
      const { w, bytes } = await onGpu(type, rows, cols, seed, rowStart);
      expectBytes(bytes, want, type);
      const chosen = randomBlockHalves(type);
      for (let b = 0; b < (rows * cols) / elements; b++) {
        halves.forEach((at, j) => expect(want[b * blockBytes + at] | (want[b * blockBytes + at + 1] << 8), `block ${b}, half ${j}`).toBe(chosen[j]));
      }
      // Padding past the matrix's bytes is 0.
      expect([...want.subarray(rows * quantizedRowBytes(type, cols))].every((b) => b === 0)).toBe(true);
      // The part holds the whole matrix's rows: the same stream from rowStart on.
      const whole = randomBlocksReference(type, rowStart + rows, cols, { seed });
      const rowBytes = quantizedRowBytes(type, cols);
      expectBytes(want.subarray(0, rows * rowBytes), whole.subarray(rowStart * rowBytes, (rowStart + rows) * rowBytes), `${type} part against whole`);
      w.data.dispose();
    });

    it(`${type}: dequantized weights finite, std about 0.02, mean near 0; another seed, other bytes`, () => {
      const [rows, cols] = [32, 2048];
      const bytes = randomBlocksReference(type, rows, cols, { seed: 11 });
      const w = dequantize(type, bytes, rows * cols);
      expect(w.every(Number.isFinite)).toBe(true);
      const mean = w.reduce((s, x) => s + x, 0) / w.length;
      const std = Math.sqrt(w.reduce((s, x) => s + (x - mean) ** 2, 0) / w.length);
      expect(std).toBeGreaterThan(0.02 * 0.8);
      expect(std).toBeLessThan(0.02 * 1.2);
      // Q4_0's and Q5_0's formats have no minimum to cancel their quants' mean of −0.5·d (11% and 5% of the std).
      expect(Math.abs(mean)).toBeLessThan(0.15 * std);
      const scale = f16BitsToF32(randomBlockHalves(type)[0]);
      expect(scale).toBeGreaterThan(0);
      const other = randomBlocksReference(type, rows, cols, { seed: 12 });
      const same = bytes.reduce((n, b, i) => n + (b === other[i] ? 1 : 0), 0);
      // Only the halves (at most 4 bytes a block) and chance (1 in 256) agree.
      expect(same / bytes.length).toBeLessThan((4 * rows * cols) / elements / bytes.length + 0.01);
    });
  }

  it("a quantized product reads random blocks as the reference does, subnormal scales included", async () => {
    for (const type of ["Q5_K", "Q6_K", "Q8_0"] as const) {
      const [N, K] = [24, 512];
      const { w, bytes } = await onGpu(type, N, K, 7);
      const a = Float32Array.from({ length: K }, () => random() * 2 - 1);
      const got = await quantizedLinear(gpu.tensor(a, [1, K]), w).read();
      const want = quantizedMatmulReference(type, bytes, N, K, a, 1);
      const bounds = quantizedMatmulErrorBounds(type, bytes, N, K, a, 1);
      for (let n = 0; n < N; n++) {
        if (!(Math.abs(got[n] - want[n]) <= bounds[n])) expect(got[n], `${type} output ${n}`).toBe(want[n]);
      }
      w.data.dispose();
    }
  });

  it("refuses a bad seed, row start or std", () => {
    const w = { type: "Q4_0" as const, rows: 1, cols: 32, data: gpu.empty([5], "u32") };
    expect(() => randomBlocks(w, { seed: -1 })).toThrow(/seed must be an integer/);
    expect(() => randomBlocks(w, { seed: 0, rowStart: 0.5 })).toThrow(/rowStart must be an integer/);
    expect(() => randomBlocks(w, { seed: 0, std: 0 })).toThrow(/std must be finite and > 0/);
    expect(() => randomBlocks({ ...w, data: gpu.empty([4], "u32") }, { seed: 0 })).toThrow(/u32 words/);
    w.data.dispose();
  });
});
