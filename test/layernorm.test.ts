import { describe, expect, it } from "vitest";
import { layernorm, layernormReference } from "../src/kernels/layernorm.js";
import { ShapeError } from "../src/tensor/errors.js";
import { AWKWARD, expectClose, floatDtypes, randn, rng, testGpu, TOLERANCE, upload } from "./helpers.js";

describe("layernorm", async () => {
  const gpu = await testGpu();
  const random = rng();

  /** Uploads a random x [shape], weight [C] and bias [C] and checks layernorm against the reference. */
  async function checkLayernorm(
    shape: number[],
    dtypes: { x: "f32" | "f16"; params: "f32" | "f16"; out: "f32" | "f16" },
    xValues?: Float64Array,
    eps = 1e-5,
  ): Promise<void> {
    const cols = shape.at(-1)!;
    const rows = shape.slice(0, -1).reduce((a, b) => a * b, 1);
    const x = upload(gpu, xValues ?? randn(random, rows * cols), shape, dtypes.x);
    const weight = upload(gpu, randn(random, cols), [cols], dtypes.params);
    const bias = upload(gpu, randn(random, cols), [cols], dtypes.params);
    const out = layernorm(x.t, weight.t, bias.t, eps, dtypes.out);
    expect(out.shape).toEqual(shape);
    expect(out.dtype).toBe(dtypes.out);
    const expected = layernormReference(x.values, weight.values, bias.values, cols, eps);
    const tolerance = dtypes.out === "f16" || dtypes.x === "f16" || dtypes.params === "f16" ? TOLERANCE.f16 : TOLERANCE.f32;
    expectClose(await out.read(), expected, tolerance, `layernorm ${JSON.stringify(dtypes)} [${shape}]`);
  }

  for (const dtype of floatDtypes(gpu)) {
    const same = { x: dtype, params: dtype, out: dtype };
    for (const rows of AWKWARD) {
      it(`${dtype} [${rows}, C] for C = 1, 2, 3, 17, 31, 129, 257`, async () => {
        for (const cols of [1, 2, 3, 17, 31, 129, 257]) await checkLayernorm([rows, cols], same);
      });
    }

    it(`${dtype} CLIP and LLaMA widths and beyond: C = 768, 1024, 4096, 4099`, async () => {
      for (const cols of [768, 1024, 4096, 4099]) await checkLayernorm([3, cols], same);
    });

    it(`${dtype} rank 3 x [2, 3, 17]`, async () => {
      await checkLayernorm([2, 3, 17], same);
    });
  }

  if (gpu.hasF16) {
    it("mixed dtypes: f32 x with f16 weight and bias; f16 x to f32 out; f32 x to f16 out", async () => {
      await checkLayernorm([5, 129], { x: "f32", params: "f16", out: "f32" });
      await checkLayernorm([5, 129], { x: "f16", params: "f32", out: "f32" });
      await checkLayernorm([5, 129], { x: "f32", params: "f32", out: "f16" });
    });
  }

  it("stays accurate for rows whose mean is large against their spread", async () => {
    // x = 300 + N(0, 1): a plain f32 sum of 1024 such values is off by ~1e-5 in the mean, which
    // would show directly in every output; E[x²] - E[x]² would lose most digits of the variance.
    const cols = 1024;
    const values = randn(random, 4 * cols).map((v) => 300 + v);
    await checkLayernorm([4, cols], { x: "f32", params: "f32", out: "f32" }, values);
  });

  it("handles large magnitudes and a constant row (variance 0: output is the bias)", async () => {
    const cols = 129;
    const values = new Float64Array(3 * cols);
    values.set(randn(random, cols, 1e4), 0); // large spread
    values.set(randn(random, cols, 1e-3), cols); // tiny spread: eps matters
    values.fill(7.25, 2 * cols); // constant
    await checkLayernorm([3, cols], { x: "f32", params: "f32", out: "f32" }, values, 1e-5);
  });

  it("covers more than 65535 rows", async () => {
    const rows = 65537;
    await checkLayernorm([rows, 3], { x: "f32", params: "f32", out: "f32" });
  });

  it("returns an empty tensor for zero rows", async () => {
    const out = layernorm(gpu.empty([0, 8]), gpu.empty([8]), gpu.empty([8]), 1e-5);
    expect(out.shape).toEqual([0, 8]);
    expect((await out.read()).length).toBe(0);
  });

  it("rejects bad shapes, dtypes and eps before any dispatch", () => {
    const x = gpu.tensor(new Float32Array(6), [2, 3]);
    const w = gpu.tensor(new Float32Array(3), [3]);
    const b = gpu.tensor(new Float32Array(3), [3]);
    const shortWeight = gpu.tensor(new Float32Array(2), [2]);
    const matrixBias = gpu.tensor(new Float32Array(6), [2, 3]);
    const scalar = gpu.tensor([1], []);
    const noColumns = gpu.empty([2, 0]);
    const ints = gpu.tensor(new Int32Array(6), [2, 3], "i32");
    const before = gpu.dispatchCount;
    expect(() => layernorm(x, shortWeight, b, 1e-5)).toThrow(/weight .* is not \[3\]/);
    expect(() => layernorm(x, w, matrixBias, 1e-5)).toThrow(/bias .* is not \[3\]/);
    expect(() => layernorm(scalar, w, b, 1e-5)).toThrow(/no last dimension/);
    expect(() => layernorm(noColumns, w, b, 1e-5)).toThrow(/empty last dimension/);
    expect(() => layernorm(ints, w, b, 1e-5)).toThrow(/not f32 or f16/);
    expect(() => layernorm(x, w, b, Number.NaN)).toThrow(/eps/);
    expect(() => layernorm(x, w, b, -1)).toThrow(/eps/);
    expect(() => layernorm(x, w, b, 1e-5, "u32")).toThrow(/output dtype/);
    expect(() => layernorm(x, w, b, -1)).toThrow(ShapeError);
    expect(gpu.dispatchCount).toBe(before);
  });
});
