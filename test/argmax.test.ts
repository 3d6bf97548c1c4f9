import { describe, expect, it } from "vitest";
import { argmax, argmaxReference } from "../src/kernels/argmax.js";
import { ShapeError } from "../src/tensor/errors.js";
import { AWKWARD, floatDtypes, randint, randn, rng, SEED, testGpu, upload } from "./helpers.js";

describe("argmax", async () => {
  const gpu = await testGpu();
  const random = rng();

  /** Uploads x [rows, n] and checks the kernel's indices against the reference, exactly. */
  async function check(values: ArrayLike<number>, rows: number, n: number, dtype: "f32" | "f16", what: string) {
    const x = upload(gpu, values, [rows, n], dtype);
    const out = argmax(x.t);
    expect(out.shape).toEqual([rows]);
    expect(out.dtype).toBe("u32");
    const expected = argmaxReference(x.values, rows, n);
    expect(Array.from(await out.read()), `${what} (seed ${SEED})`).toEqual(Array.from(expected));
  }

  for (const dtype of floatDtypes(gpu)) {
    for (const rows of AWKWARD) {
      for (const n of [1, 3, 17, 129, 255, 257, 4097]) {
        it(`${dtype} [${rows}, ${n}] random values`, async () => {
          await check(randn(random, rows * n), rows, n, dtype, "random");
        });
      }
    }

    it(`${dtype} vocabulary rows: [200, 32064]`, async () => {
      const rows = 200;
      const n = 32064;
      const values = randn(random, rows * n);
      // Put some maxima near the ends of rows, where the last threads' strides stop.
      for (let r = 0; r < rows; r += 7) values[r * n + n - 1 - (r % 5)] = 10;
      await check(values, rows, n, dtype, "vocabulary");
    });

    it(`${dtype} ties go to the first index`, async () => {
      for (const n of [2, 17, 300, 5000]) {
        const rows = 9;
        // Small integers: the maximum repeats many times in every row.
        await check(Float64Array.from(randint(random, rows * n, 4)), rows, n, dtype, `ties n ${n}`);
      }
      // Every element equal: index 0.
      await check(new Float64Array(3 * 1000).fill(-2.5), 3, 1000, dtype, "constant rows");
    });

    it(`${dtype} NaN wins, the first NaN of the row`, async () => {
      const rows = 6;
      const n = 700;
      const values = randn(random, rows * n);
      values[0 * n + 699] = NaN; // the last element
      values[1 * n + 3] = NaN;
      values[1 * n + 2] = Infinity;
      values[2 * n + 500] = NaN;
      values[2 * n + 400] = NaN; // the first NaN is the earlier one, seen by another thread
      values[2 * n + 244] = NaN; // the thread that also sees 500, at a lower index: the answer
      values[3 * n + 0] = NaN;
      values[4 * n + 1] = Infinity; // no NaN: +Infinity is the largest
      for (let j = 0; j < n; j++) values[5 * n + j] = NaN;
      await check(values, rows, n, dtype, "NaN");
    });

    it(`${dtype} -Infinity rows`, async () => {
      const rows = 4;
      const n = 600;
      const values = new Float64Array(rows * n).fill(-Infinity);
      values[1 * n + 599] = -1e4; // the only finite element
      values[2 * n + 300] = -3;
      values[2 * n + 44] = -3;
      values[3 * n + 10] = Infinity;
      await check(values, rows, n, dtype, "-Infinity");
    });
  }

  if (gpu.hasF16) {
    it("f16: values that differ in f32 but round to the same half tie", async () => {
      // 1 + 2^-13 and 1 + 2^-12 both round to 1 in f16, so the first of them wins there.
      const values = [0.5, 1 + 2 ** -13, 1, 1 + 2 ** -12];
      await check(values, 1, 4, "f16", "f16 rounding tie");
      await check(values, 1, 4, "f32", "f32 distinct");
      expect(argmaxReference(values, 1, 4)[0]).toBe(3);
    });
  }

  it("handles zero rows", async () => {
    const out = argmax(gpu.tensor(new Float32Array(0), [0, 5]));
    expect(out.shape).toEqual([0]);
  });

  it("rejects bad shapes before any dispatch", () => {
    const vector = gpu.tensor(new Float32Array(5), [5]);
    const ints = gpu.tensor(new Int32Array(10), [2, 5], "i32");
    const empty = gpu.tensor(new Float32Array(0), [3, 0]);
    const before = gpu.dispatchCount;
    expect(() => argmax(vector)).toThrow(/must be \[rows, n\]/);
    expect(() => argmax(ints)).toThrow(/must be f32 or f16/);
    expect(() => argmax(empty)).toThrow(ShapeError);
    expect(gpu.dispatchCount).toBe(before);
  });
});
