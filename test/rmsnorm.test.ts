import { describe, expect, it } from "vitest";
import { rmsnorm, rmsnormReference } from "../src/kernels/rmsnorm.js";
import { ShapeError } from "../src/tensor/errors.js";
import { AWKWARD, expectClose, floatDtypes, randn, rng, testGpu, TOLERANCE, upload } from "./helpers.js";

describe("rmsnorm", async () => {
  const gpu = await testGpu();
  const random = rng();

  /** Uploads a random x [shape] and weight [C] and checks rmsnorm against the reference. */
  async function checkRmsnorm(
    shape: number[],
    dtypes: { x: "f32" | "f16"; weight: "f32" | "f16"; out: "f32" | "f16" },
    xValues?: Float64Array,
    eps = 1e-6,
  ): Promise<void> {
    const cols = shape.at(-1)!;
    const rows = shape.slice(0, -1).reduce((a, b) => a * b, 1);
    const x = upload(gpu, xValues ?? randn(random, rows * cols), shape, dtypes.x);
    const weight = upload(gpu, randn(random, cols), [cols], dtypes.weight);
    const out = rmsnorm(x.t, weight.t, eps, dtypes.out);
    expect(out.shape).toEqual(shape);
    expect(out.dtype).toBe(dtypes.out);
    const expected = rmsnormReference(x.values, weight.values, cols, eps);
    const tolerance = Object.values(dtypes).includes("f16") ? TOLERANCE.f16 : TOLERANCE.f32;
    expectClose(await out.read(), expected, tolerance, `rmsnorm ${JSON.stringify(dtypes)} [${shape}]`);
  }

  for (const dtype of floatDtypes(gpu)) {
    const same = { x: dtype, weight: dtype, out: dtype };
    for (const rows of AWKWARD) {
      it(`${dtype} [${rows}, C] for C = 1, 2, 3, 17, 31, 129, 257`, async () => {
        for (const cols of [1, 2, 3, 17, 31, 129, 257]) await checkRmsnorm([rows, cols], same);
      });
    }

    it(`${dtype} LLaMA widths and beyond: C = 2048, 4096, 4099`, async () => {
      for (const cols of [2048, 4096, 4099]) await checkRmsnorm([3, cols], same);
    });

    it(`${dtype} rank 3 x [2, 3, 17]`, async () => {
      await checkRmsnorm([2, 3, 17], same);
    });
  }

  if (gpu.hasF16) {
    it("mixed dtypes: f32 x with f16 weight; f16 x to f32 out; f32 x to f16 out", async () => {
      await checkRmsnorm([5, 129], { x: "f32", weight: "f16", out: "f32" });
      await checkRmsnorm([5, 129], { x: "f16", weight: "f32", out: "f32" });
      await checkRmsnorm([5, 129], { x: "f32", weight: "f32", out: "f16" });
    });
  }

  it("handles large and tiny magnitudes, where eps matters, and a zero row", async () => {
    const cols = 129;
    const values = new Float64Array(3 * cols);
    values.set(randn(random, cols, 1e4), 0);
    values.set(randn(random, cols, 1e-3), cols); // mean(x²) ~ 1e-6, as large as eps
    // the last row stays zero: output 0, not NaN
    await checkRmsnorm([3, cols], { x: "f32", weight: "f32", out: "f32" }, values, 1e-6);
  });

  it("covers more than 65535 rows", async () => {
    await checkRmsnorm([65537, 3], { x: "f32", weight: "f32", out: "f32" });
  });

  it("returns an empty tensor for zero rows", async () => {
    const out = rmsnorm(gpu.empty([0, 8]), gpu.empty([8]), 1e-6);
    expect(out.shape).toEqual([0, 8]);
    expect((await out.read()).length).toBe(0);
  });

  it("rejects bad shapes, dtypes and eps before any dispatch", () => {
    const x = gpu.tensor(new Float32Array(6), [2, 3]);
    const w = gpu.tensor(new Float32Array(3), [3]);
    const shortWeight = gpu.tensor(new Float32Array(2), [2]);
    const matrixWeight = gpu.tensor(new Float32Array(6), [2, 3]);
    const scalar = gpu.tensor([1], []);
    const noColumns = gpu.empty([2, 0]);
    const ints = gpu.tensor(new Int32Array(6), [2, 3], "i32");
    const before = gpu.dispatchCount;
    expect(() => rmsnorm(x, shortWeight, 1e-6)).toThrow(/weight .* is not \[3\]/);
    expect(() => rmsnorm(x, matrixWeight, 1e-6)).toThrow(/weight .* is not \[3\]/);
    expect(() => rmsnorm(scalar, w, 1e-6)).toThrow(/no last dimension/);
    expect(() => rmsnorm(noColumns, w, 1e-6)).toThrow(/empty last dimension/);
    expect(() => rmsnorm(ints, w, 1e-6)).toThrow(/x .* is not f32 or f16/);
    expect(() => rmsnorm(x, w, Number.POSITIVE_INFINITY)).toThrow(/eps/);
    expect(() => rmsnorm(x, w, 1e-6, "i32")).toThrow(/output dtype/);
    expect(() => rmsnorm(x, w, -1)).toThrow(ShapeError);
    expect(gpu.dispatchCount).toBe(before);
  });
});
