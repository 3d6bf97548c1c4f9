import { describe, expect, it } from "vitest";
import { add, binaryReference, mul, scale, scaleReference } from "../src/kernels/elementwise.js";
import { ShapeError } from "../src/tensor/errors.js";
import { AWKWARD, expectClose, floatDtypes, randn, rng, testGpu, TOLERANCE, upload } from "./helpers.js";

describe("elementwise", async () => {
  const gpu = await testGpu();
  const random = rng();

  for (const dtype of floatDtypes(gpu)) {
    for (const rows of AWKWARD) {
      for (const cols of [1, 17, 129]) {
        it(`add and mul ${dtype} [${rows}, ${cols}], b full and broadcast`, async () => {
          const a = upload(gpu, randn(random, rows * cols), [rows, cols], dtype);
          const full = upload(gpu, randn(random, rows * cols), [rows, cols], dtype);
          const row = upload(gpu, randn(random, cols), [cols], dtype);
          for (const b of [full, row]) {
            for (const [op, fn] of [["add", add], ["mul", mul]] as const) {
              const out = fn(a.t, b.t);
              expect(out.shape).toEqual([rows, cols]);
              expectClose(await out.read(), binaryReference(op, a.values, b.values), TOLERANCE[dtype], `${op} ${dtype}`);
            }
          }
        });
      }
    }

    it(`scale ${dtype}`, async () => {
      const x = upload(gpu, randn(random, 129 * 3), [3, 129], dtype);
      expectClose(await scale(x.t, -0.37).read(), scaleReference(x.values, -0.37), TOLERANCE[dtype], `scale ${dtype}`);
    });
  }

  it("spans more than 65535 workgroups", async () => {
    const n = 65536 * 256 + 5; // 16.8M elements: the grid spills into y
    const a = upload(gpu, randn(random, n), [n], "f32");
    const b = upload(gpu, randn(random, n), [n], "f32");
    expectClose(await mul(a.t, b.t).read(), binaryReference("mul", a.values, b.values), TOLERANCE.f32, "mul large");
  });

  it("rejects mismatched shapes before any dispatch", () => {
    const a = gpu.tensor(new Float32Array(6), [2, 3]);
    const b = gpu.tensor(new Float32Array(2), [2]);
    const before = gpu.dispatchCount;
    expect(() => add(a, b)).toThrow(ShapeError);
    expect(() => add(a, b)).toThrow(/does not match the trailing dimensions/);
    expect(gpu.dispatchCount).toBe(before);
  });
});
