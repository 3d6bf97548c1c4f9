import { describe, expect, it } from "vitest";
import { writeKV, writeKVReference } from "../src/kernels/kv_cache.js";
import type { DType } from "../src/tensor/dtype.js";
import { ShapeError } from "../src/tensor/errors.js";
import { expectClose, floatDtypes, randn, rng, roundTo, testGpu, upload } from "./helpers.js";

describe("writeKV", async () => {
  const gpu = await testGpu();
  const random = rng();

  const dtypes = floatDtypes(gpu);
  const pairs: [DType, DType][] = dtypes.flatMap((cache) => dtypes.map((rows) => [cache, rows] as [DType, DType]));

  for (const [cacheDtype, rowsDtype] of pairs) {
    // [H_kv, capacity, D], then [S, position] writes in order: the first write, appends, one
    // that ends exactly at the capacity.
    const cases: [[number, number, number], [number, number][]][] = [
      [[1, 1, 1], [[1, 0]]],
      [[2, 40, 17], [[17, 0], [3, 17], [1, 20], [19, 21]]],
      [[3, 129, 64], [[129, 0]]],
      [[4, 20, 8], [[1, 0], [1, 1], [17, 3]]],
    ];
    for (const [shape, writes] of cases) {
      it(`cache ${cacheDtype}[${shape.join("x")}] ← rows ${rowsDtype}, writes ${JSON.stringify(writes)}`, async () => {
        const [kvHeads, capacity, D] = shape;
        const cache = upload(gpu, randn(random, kvHeads * capacity * D), shape, cacheDtype);
        let expected = cache.values;
        for (const [count, position] of writes) {
          const rows = upload(gpu, randn(random, count * kvHeads * D), [count, kvHeads, D], rowsDtype);
          writeKV(cache.t, rows.t, position);
          // What the cache holds is the row rounded to the cache's dtype.
          expected = writeKVReference(expected, shape, roundTo(rows.values, cacheDtype), position);
        }
        // A copy is exact (f16 → f32 exactly, f32 → f16 rounds the same way as the reference).
        expectClose(await cache.t.read(), expected, { atol: 0, rtol: 0 }, `writeKV ${cacheDtype} ← ${rowsDtype}`);
      });
    }
  }

  it("rejects invalid shapes and positions before any dispatch", () => {
    const cache = gpu.tensor(new Float32Array(2 * 10 * 8), [2, 10, 8]);
    const rows = (shape: number[], dtype: DType = "f32") => gpu.tensor(new Float32Array(shape.reduce((a, b) => a * b, 1)), shape, dtype);
    const before = gpu.dispatchCount;
    expect(() => writeKV(cache, rows([3, 2, 8]), 8)).toThrow(ShapeError);
    expect(() => writeKV(cache, rows([3, 2, 8]), 8)).toThrow(/3 rows at position 8 overflows .* capacity 10/);
    expect(() => writeKV(cache, rows([3, 4, 8]), 0)).toThrow(/expected \[S, 2, 8\]/);
    expect(() => writeKV(cache, rows([3, 2, 4]), 0)).toThrow(/expected \[S, 2, 8\]/);
    expect(() => writeKV(cache, rows([6, 8]), 0)).toThrow(/must be \[S, H_kv, D\]/);
    expect(() => writeKV(cache, rows([1, 2, 8], "i32"), 0)).toThrow(/must be f32 or f16/);
    expect(() => writeKV(cache, rows([1, 2, 8]), -1)).toThrow(/position -1 must be an integer >= 0/);
    expect(() => writeKV(cache, rows([1, 2, 8]), 1.5)).toThrow(/position 1.5/);
    expect(() => writeKV(cache, cache.reshape([10, 2, 8]), 0)).toThrow(/share a buffer/);
    expect(gpu.dispatchCount).toBe(before);
  });
});
