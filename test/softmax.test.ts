import { describe, expect, it } from "vitest";
import { softmax, softmaxReference } from "../src/kernels/softmax.js";
import { ShapeError } from "../src/tensor/errors.js";
import { AWKWARD, expectClose, floatDtypes, randn, rng, testGpu, TOLERANCE, upload } from "./helpers.js";

/** The most negative finite float32: what transformers fills masks with (torch.finfo(float32).min). */
const F32_LOWEST = -3.4028234663852886e38;

describe("softmax", async () => {
  const gpu = await testGpu();
  const random = rng();

  /** Uploads x [shape] and checks softmax against the reference; returns what the GPU gave. */
  async function checkSoftmax(
    shape: number[],
    dtypes: { x: "f32" | "f16"; out: "f32" | "f16" },
    xValues?: Float64Array,
  ): Promise<Float32Array> {
    const cols = shape.at(-1)!;
    const size = shape.reduce((a, b) => a * b, 1);
    const x = upload(gpu, xValues ?? randn(random, size, 3), shape, dtypes.x);
    const out = softmax(x.t, dtypes.out);
    expect(out.shape).toEqual(shape);
    expect(out.dtype).toBe(dtypes.out);
    const actual = (await out.read()) as Float32Array;
    const tolerance = Object.values(dtypes).includes("f16") ? TOLERANCE.f16 : TOLERANCE.f32;
    expectClose(actual, softmaxReference(x.values, cols), tolerance, `softmax ${JSON.stringify(dtypes)} [${shape}]`);
    return actual;
  }

  for (const dtype of floatDtypes(gpu)) {
    const same = { x: dtype, out: dtype };
    for (const rows of AWKWARD) {
      it(`${dtype} [${rows}, C] for C = 1, 2, 3, 17, 31, 129, 257, 1000`, async () => {
        for (const cols of [1, 2, 3, 17, 31, 129, 257, 1000]) await checkSoftmax([rows, cols], same);
      });
    }

    it(`${dtype} vocabulary rows: [2, 32000] and [1, 32003]`, async () => {
      await checkSoftmax([2, 32000], same);
      await checkSoftmax([1, 32003], same);
    });

    it(`${dtype} rank 4 attention scores [2, 3, 5, 17]`, async () => {
      await checkSoftmax([2, 3, 5, 17], same);
    });
  }

  if (gpu.hasF16) {
    it("mixed dtypes: f16 x to f32 out, f32 x to f16 out", async () => {
      await checkSoftmax([5, 129], { x: "f16", out: "f32" });
      await checkSoftmax([5, 129], { x: "f32", out: "f16" });
    });
  }

  it("subtracts the row maximum: logits around +1000 and -1000 do not overflow", async () => {
    const cols = 300;
    const values = randn(random, 2 * cols, 10);
    for (let i = 0; i < cols; i++) values[i] += 1000;
    for (let i = cols; i < 2 * cols; i++) values[i] -= 1000;
    await checkSoftmax([2, cols], { x: "f32", out: "f32" }, values);
  });

  for (const dtype of floatDtypes(gpu)) {
    it(`${dtype} masked entries (-Infinity, and float32's lowest) give exact zeros and no NaN`, async () => {
      const rows = 6;
      const cols = 300;
      const values = randn(random, rows * cols, 3);
      const masked = (r: number, i: number) =>
        r === 0 ? i > 7 // causal-style: a prefix kept
        : r === 1 ? random() < 0.5 // scattered
        : r === 2 ? i !== 123 // all but one: that one gets exactly 1
        : r === 3 ? i % 3 === 0
        : false;
      for (let r = 0; r < rows; r++) {
        for (let i = 0; i < cols; i++) {
          if (masked(r, i)) values[r * cols + i] = r === 3 ? F32_LOWEST : -Infinity;
        }
      }
      values[4 * cols] = -Infinity; // the first entry masked, before any real value is seen
      values.fill(F32_LOWEST, 5 * cols); // an all-lowest row is uniform, as in torch
      const actual = await checkSoftmax([rows, cols], { x: dtype, out: dtype }, values);
      for (let i = 0; i < values.length; i++) {
        if (values[i] === -Infinity || (values[i] === F32_LOWEST && i < 5 * cols)) expect(actual[i]).toBe(0);
      }
      expect(actual[2 * cols + 123]).toBe(1);
    });
  }

  it("a row that is all -Infinity comes out as zeros (torch gives NaN; such rows are meaningless)", async () => {
    const values = new Float64Array(2 * 17).fill(-Infinity);
    values.set(randn(random, 17), 17);
    const out = softmax(gpu.tensor(values, [2, 17]));
    const actual = await out.read();
    expect(Array.from(actual.subarray(0, 17))).toEqual(new Array(17).fill(0));
    expectClose(actual.subarray(17), softmaxReference(Float32Array.from(values.subarray(17)), 17), TOLERANCE.f32, "softmax after masked row");
  });

  it("covers more than 65535 rows", async () => {
    await checkSoftmax([65537, 3], { x: "f32", out: "f32" });
  });

  it("returns empty tensors for zero rows or zero columns", async () => {
    for (const shape of [[0, 8], [4, 0]]) {
      const out = softmax(gpu.empty(shape));
      expect(out.shape).toEqual(shape);
      expect((await out.read()).length).toBe(0);
    }
  });

  it("rejects bad shapes and dtypes before any dispatch", () => {
    const scalar = gpu.tensor([1], []);
    const ints = gpu.tensor(new Int32Array(6), [2, 3], "i32");
    const x = gpu.tensor(new Float32Array(6), [2, 3]);
    const before = gpu.dispatchCount;
    expect(() => softmax(scalar)).toThrow(/no last dimension/);
    expect(() => softmax(ints)).toThrow(/x .* is not f32 or f16/);
    expect(() => softmax(x, "u32")).toThrow(/output dtype/);
    expect(() => softmax(x, "u32")).toThrow(ShapeError);
    expect(gpu.dispatchCount).toBe(before);
  });
});
