import { describe, expect, it } from "vitest";
import { embedding, embeddingReference } from "../src/kernels/embedding.js";
import { EXACT } from "../src/kernels/tolerance.js";
import { ShapeError } from "../src/tensor/errors.js";
import { AWKWARD, expectClose, floatDtypes, randint, randn, rng, testGpu, upload } from "./helpers.js";

// A lookup copies values: the only error is rounding to the output dtype, and the reference
// works on the table as the GPU holds it. f32 → f32 and f16 → anything must be exact;
// f32 → f16 rounds once: half an ulp, 2^-11 relative, or 2^-25 absolute among f16's subnormals.
const F16_ROUNDING = { atol: 2 ** -25, rtol: 2 ** -11 };

describe("embedding", async () => {
  const gpu = await testGpu();
  const random = rng();
  const ROWS = 50;

  for (const tableDtype of floatDtypes(gpu)) {
    for (const outDtype of floatDtypes(gpu)) {
      for (const idDtype of ["i32", "u32"] as const) {
        for (const n of AWKWARD) {
          for (const hidden of [1, 17, 129]) {
            it(`${tableDtype} table → ${outDtype}, ${idDtype} ids, ${n} tokens, hidden ${hidden}`, async () => {
              const table = upload(gpu, randn(random, ROWS * hidden), [ROWS, hidden], tableDtype);
              const idValues = randint(random, n, ROWS);
              const ids = gpu.tensor(idValues, [n], idDtype);
              const out = embedding(ids, table.t, outDtype === "f32" ? {} : { dtype: outDtype });
              expect(out.shape).toEqual([n, hidden]);
              expect(out.dtype).toBe(outDtype);
              const tolerance = tableDtype === "f32" && outDtype === "f16" ? F16_ROUNDING : EXACT;
              expectClose(await out.read(), embeddingReference(idValues, table.values, hidden), tolerance, "embedding");
            });
          }
        }
      }
    }
  }

  it("writes zeros for ids outside the table, negative ones included", async () => {
    const hidden = 5;
    const table = upload(gpu, randn(random, 7 * hidden), [7, hidden], "f32");
    const idValues = [3, -1, 7, 0, 1000, 6, -2147483648];
    for (const idDtype of ["i32", "u32"] as const) {
      const ids = gpu.tensor(idDtype === "u32" ? idValues.map((v) => v >>> 0) : idValues, [idValues.length], idDtype);
      const actual = await embedding(ids, table.t).read();
      expectClose(actual, embeddingReference(idValues, table.values, hidden), EXACT, `outside ${idDtype}`);
      expect(Array.from(actual.subarray(hidden, 3 * hidden)).every((v) => v === 0)).toBe(true);
    }
  });

  for (const dtype of floatDtypes(gpu)) {
    for (const splits of [[0, 41], [0, 17, 30]]) {
      it(`a ${splits.length}-way split table (${dtype}) gives the unsplit result`, async () => {
        const rows = 60;
        const hidden = 33;
        const n = 129;
        const table = upload(gpu, randn(random, rows * hidden), [rows, hidden], dtype);
        const idValues = randint(random, n, rows);
        idValues[0] = 0;
        idValues[1] = rows - 1;
        const ids = gpu.tensor(idValues, [n], "i32");
        const whole = await embedding(ids, table.t).read();
        const bounds = [...splits, rows];
        const parts = splits.map((start, p) => ({
          start,
          t: gpu.tensor(table.values.subarray(start * hidden, bounds[p + 1] * hidden), [bounds[p + 1] - start, hidden], dtype),
        }));
        // The first part allocates the output (zeros elsewhere); the others fill it in.
        const out = embedding(ids, parts[0].t, { rowStart: parts[0].start });
        for (const part of parts.slice(1)) expect(embedding(ids, part.t, { out, rowStart: part.start })).toBe(out);
        expectClose(await out.read(), whole, EXACT, "split");
        expectClose(whole, embeddingReference(idValues, table.values, hidden), EXACT, "unsplit");
      });
    }
  }

  it("with `out`, leaves the rows of ids outside the part untouched", async () => {
    const hidden = 17;
    const part = upload(gpu, randn(random, 10 * hidden), [10, hidden], "f32");
    const idValues = Int32Array.from([25, 3, 12, 19, 20, 11, -4, 10]);
    const ids = gpu.tensor(idValues, [idValues.length], "i32");
    const initial = upload(gpu, randn(random, idValues.length * hidden), [idValues.length, hidden], "f32");
    embedding(ids, part.t, { out: initial.t, rowStart: 10 });
    const expected = embeddingReference(idValues, part.values, hidden, { rowStart: 10, initial: initial.values });
    expectClose(await initial.t.read(), expected, EXACT, "partial");
  });

  it("rejects bad shapes and arguments before any dispatch", () => {
    const table = gpu.tensor(new Float32Array(8 * 4), [8, 4]);
    const ids = gpu.tensor([1, 2, 3], [3], "i32");
    const floatIds = gpu.tensor([1, 2, 3], [3], "f32");
    const matrixIds = gpu.tensor([1, 2, 3, 4], [2, 2], "i32");
    const intTable = gpu.tensor(new Int32Array(8 * 4), [8, 4], "i32");
    const wrongOut = gpu.tensor(new Float32Array(3 * 5), [3, 5]);
    const out = gpu.tensor(new Float32Array(3 * 4), [3, 4]);
    const huge = gpu.empty([32064, 2100], "f16", { persistent: true, name: "embed_tokens" });
    const before = gpu.dispatchCount;
    expect(() => embedding(floatIds, table)).toThrow(/must be i32 or u32/);
    expect(() => embedding(matrixIds, table)).toThrow(/must be a vector/);
    expect(() => embedding(ids, table.reshape([32]))).toThrow(/must be \[rows, hidden\]/);
    expect(() => embedding(ids, intTable)).toThrow(/f32 or f16/);
    expect(() => embedding(ids, table, { out: wrongOut })).toThrow(/must be \[3, 4\]/);
    expect(() => embedding(ids, table, { out, dtype: "f16" })).toThrow(/differs from out/);
    expect(() => embedding(ids, table, { rowStart: -1 })).toThrow(/rowStart/);
    expect(() => embedding(ids, table, { rowStart: 0.5 })).toThrow(/rowStart/);
    expect(() => embedding(ids, table, { dtype: "u32" })).toThrow(ShapeError);
    expect(() => embedding(ids, huge)).toThrow(/maxStorageBufferBindingSize .*split it into parts of at most \d+ rows/);
    expect(gpu.dispatchCount).toBe(before);
    huge.dispose();
  });
});
