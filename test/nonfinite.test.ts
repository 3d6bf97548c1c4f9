import { describe, expect, it } from "vitest";
import { countNonFinite, countNonFiniteReference } from "../src/kernels/nonfinite.js";
import { ShapeError } from "../src/tensor/errors.js";
import type { Tensor } from "../src/tensor/tensor.js";
import { AWKWARD, floatDtypes, randn, rng, SEED, testGpu, upload } from "./helpers.js";

describe("countNonFinite", async () => {
  const gpu = await testGpu();
  const random = rng();

  /** Random values with NaN, ±Infinity and f16-overflowing values sprinkled in, the ends included. */
  function poisoned(n: number): Float64Array {
    const values = randn(random, n);
    const specials = [NaN, Infinity, -Infinity, 7e4, -1e5, 65504];
    for (let i = 0; i < n; i++) if (random() < 0.05) values[i] = specials[Math.floor(random() * specials.length)];
    values[0] = NaN;
    if (n > 1) values[n - 1] = -Infinity;
    return values;
  }

  /** Counts every tensor in one call and checks each against the reference on the values it really holds. */
  async function check(inputs: { t: Tensor; values: ArrayLike<number> }[], what: string) {
    const counts = countNonFinite(gpu, inputs.map((i) => i.t));
    expect(counts.shape).toEqual([inputs.length]);
    expect(counts.dtype).toBe("u32");
    const expected = inputs.map((i) => countNonFiniteReference(i.values));
    expect(Array.from(await counts.read()), `${what} (seed ${SEED})`).toEqual(expected);
    counts.dispose();
  }

  // One thread reads 16 words, a workgroup 4096: sizes around those, in elements and in f16 words.
  const SIZES = [...AWKWARD, 2, 255, 4095, 4096, 4097, 8191, 8193, 20001];

  for (const dtype of floatDtypes(gpu)) {
    it(`${dtype}: every awkward size, all in one call`, async () => {
      await check(SIZES.map((n) => upload(gpu, poisoned(n), [n], dtype)), `${dtype} sizes ${SIZES.join(", ")}`);
    });

    it(`${dtype}: finite tensors count 0, an all-NaN one counts every element`, async () => {
      const n = 50001;
      const nan = new Float64Array(n).fill(NaN);
      await check([upload(gpu, randn(random, n), [n], dtype), upload(gpu, nan, [n], dtype)], `${dtype} finite and NaN`);
    });
  }

  if (gpu.hasF16) {
    it("f16: values beyond ±65504 are Inf once stored, and the padding half of an odd count is not looked at", async () => {
      const values = [1, 7e4, 65504, -1e6, 2];
      await check([upload(gpu, values, [5], "f16"), upload(gpu, values, [5], "f32")], "f16 overflow");
      // A view of the first 3 of 4 halves, the 4th NaN: its binding holds 2 words, the last half padding.
      const whole = upload(gpu, [1, 2, 3, NaN], [4], "f16");
      const view = whole.t.slice(0, 3);
      await check([{ t: view, values: [1, 2, 3] }], "f16 padding");
    });
  }

  it("counts views at an offset and mixes f32 and f16 tensors in one call", async () => {
    const values = poisoned(1000);
    const x = upload(gpu, values, [1000], "f32");
    const offset = gpu.limits.minStorageBufferOffsetAlignment / 4;
    const inputs = [{ t: x.t.slice(offset, 500), values: x.values.slice(offset, offset + 500) }, x];
    if (gpu.hasF16) inputs.push(upload(gpu, values, [10, 100], "f16"));
    await check(inputs, "views and mixed dtypes");
  });

  it("overwrites a recycled counts buffer (the kernel only adds)", async () => {
    for (const count of [1, 3, 17]) {
      // A pooled buffer of the same size, poisoned and freed, is what the counts get next.
      gpu.empty([count], "u32").dispose();
      await check(Array.from({ length: count }, () => upload(gpu, [1, 2, 3], [3], "f32")), `recycled ${count}`);
    }
  });

  it("handles empty tensors and an empty list without a dispatch", async () => {
    const before = gpu.dispatchCount;
    await check([{ t: gpu.tensor(new Float32Array(0), [0]), values: [] }], "empty tensor");
    expect(Array.from(await countNonFinite(gpu, []).read())).toEqual([]);
    expect(gpu.dispatchCount).toBe(before);
  });

  it("refuses integer tensors before any dispatch", () => {
    const ints = gpu.tensor(new Int32Array(4), [4], "i32");
    const before = gpu.dispatchCount;
    expect(() => countNonFinite(gpu, [gpu.tensor([1], [1]), ints])).toThrow(ShapeError);
    expect(() => countNonFinite(gpu, [ints])).toThrow(/tensor 0 i32\[4\] must be f32 or f16/);
    expect(gpu.dispatchCount).toBe(before);
  });
});
