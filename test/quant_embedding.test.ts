/**
 * The embedding lookup from a quantized table (src/kernels/quant/embedding.ts) against its
 * float64 reference: every type, ids inside, outside and negative, a table split into two
 * parts filling one output, and rows it does not own left as they were.
 *
 * Tolerance: a weight is at most two float32 roundings from the float64 reference (blocks.ts),
 * so 2^-21 of the row's largest |weight|.
 */
import { describe, expect, it } from "vitest";
import { QUANTIZED_TYPES } from "../src/kernels/quant/blocks.js";
import { quantizedEmbedding, quantizedEmbeddingReference } from "../src/kernels/quant/embedding.js";
import { quantizedRowBytes } from "../src/kernels/quant/matvec_common.js";
import { randomQuantizedBlocks } from "./quant_helpers.js";
import { rng, testGpu } from "./helpers.js";

describe("quantized embedding", async () => {
  const gpu = await testGpu();
  const random = rng();

  const upload = (bytes: Uint8Array) => {
    const words = new Uint32Array(Math.ceil(bytes.byteLength / 4));
    new Uint8Array(words.buffer).set(bytes);
    return gpu.tensor(words, [words.length], "u32");
  };
  const expectRows = (got: ArrayLike<number>, want: Float64Array, cols: number, what: string) => {
    for (let r = 0; r < want.length / cols; r++) {
      const row = want.subarray(r * cols, (r + 1) * cols);
      const tolerance = 2 ** -21 * Math.max(0, ...row.map(Math.abs));
      for (let j = 0; j < cols; j++) {
        const at = r * cols + j;
        if (!(Math.abs(got[at] - want[at]) <= tolerance)) expect(got[at], `${what}: row ${r}, column ${j}`).toBe(want[at]);
      }
    }
  };

  for (const type of QUANTIZED_TYPES) {
    it(`${type}: picks and dequantizes the rows asked for, zeros for ids outside the table`, async () => {
      const rows = 7;
      const cols = 512;
      const bytes = randomQuantizedBlocks(type, rows, cols, random);
      const ids = [3, 0, 6, 6, -1, 7, 1000, 2];
      const got = await quantizedEmbedding(gpu, { type, rows, cols, data: upload(bytes) }, gpu.tensor(ids, [ids.length], "i32")).read();
      expectRows(got, quantizedEmbeddingReference(type, bytes, rows, cols, ids), cols, type);
    });
  }

  it("fills one output from a table split into parts, leaving rows of other parts alone", async () => {
    const type = "Q4_K";
    const [rows, cols] = [6, 256];
    const bytes = randomQuantizedBlocks(type, rows, cols, random);
    const split = 4 * quantizedRowBytes(type, cols);
    const ids = [5, 0, 4, 3];
    const idTensor = gpu.tensor(ids, [ids.length], "i32");
    const out = gpu.tensor(new Float32Array(ids.length * cols).fill(7), [ids.length, cols]);
    quantizedEmbedding(gpu, { type, rows: 4, cols, data: upload(bytes.subarray(0, split)) }, idTensor, { out });
    const half = Array.from(await out.read());
    for (const [t, id] of ids.entries()) {
      if (id >= 4) expect(half.slice(t * cols, (t + 1) * cols).every((v) => v === 7), `row of id ${id}: not in the first part, untouched`).toBe(true);
    }
    quantizedEmbedding(gpu, { type, rows: 2, cols, data: upload(bytes.subarray(split)) }, idTensor, { out, rowStart: 4 });
    expectRows(await out.read(), quantizedEmbeddingReference(type, bytes, rows, cols, ids), cols, "both parts");
  });

  it("refuses what does not fit", () => {
    const data = gpu.empty([10], "u32");
    expect(() => quantizedEmbedding(gpu, { type: "Q8_0", rows: 2, cols: 64, data }, gpu.tensor([0], [1], "f32"))).toThrow(/ids f32\[1\] must be i32 or u32/);
    expect(() => quantizedEmbedding(gpu, { type: "Q8_0", rows: 2, cols: 64, data }, gpu.tensor([0], [1], "i32"))).toThrow(/Q8_0 \[2, 64\] is 136 bytes, 34 u32 words, not u32\[10\]/);
  });
});
