/**
 * The residual epilogue of every matmul version: C = A·Bᵀ + bias + residual in one launch,
 * against the float64 reference and against the unfused matmul-then-add.
 */
import { describe, expect, it } from "vitest";
import { add } from "../src/kernels/elementwise.js";
import { MATMUL_VERSIONS, matmul, matmulReference, matmulVersionSupported, MATVEC_MAX_ROWS, MATVEC_V2_MAX_ROWS, MATVEC_V3_MAX_ROWS, type MatmulShape } from "../src/kernels/matmul/index.js";
import { matmulErrorBounds } from "../src/kernels/matmul/reference.js";
import type { DType } from "../src/tensor/dtype.js";
import { ShapeError } from "../src/tensor/errors.js";
import type { Tensor } from "../src/tensor/tensor.js";
import { expectWithin, randn, rng, testGpu, upload } from "./helpers.js";
import { launchesOf } from "./launches.js";

const ROW_LIMITS: Record<string, number> = {
  matvec: MATVEC_MAX_ROWS,
  matvec_v2_subgroup: MATVEC_V2_MAX_ROWS,
  matvec_v3_multi_subgroup: MATVEC_V3_MAX_ROWS,
};

describe("matmul residual epilogue", async () => {
  const gpu = await testGpu();
  const random = rng();
  const supported = Object.keys(MATMUL_VERSIONS).filter((v) => matmulVersionSupported(gpu, v));
  /** (A, B, residual, C) dtypes: all f32; f16 weights; f16 everywhere. */
  const combos: [DType, DType, DType, DType][] = (
    [
      ["f32", "f32", "f32", "f32"],
      ["f32", "f16", "f32", "f32"],
      ["f16", "f16", "f16", "f16"],
    ] as [DType, DType, DType, DType][]
  ).filter((c) => gpu.hasF16 || !c.includes("f16"));

  function run(version: string, M: number, N: number, K: number, [ad, bd, rd, cd]: [DType, DType, DType, DType], withBias: boolean) {
    const shape: MatmulShape = { batch: 1, M, N, K, batchedB: false };
    const a = upload(gpu, randn(random, M * K), [M, K], ad);
    const b = upload(gpu, randn(random, N * K), [N, K], bd);
    const bias = withBias ? upload(gpu, randn(random, N), [N], bd) : null;
    const residual = upload(gpu, randn(random, M * N, 4), [M, N], rd);
    const { result: c, kernels } = launchesOf(gpu, () => MATMUL_VERSIONS[version](a.t, b.t, { bias: bias?.t, residual: residual.t, outDtype: cd }));
    expect(kernels, `${version} launches`).toHaveLength(1);
    expect(c.shape).toEqual([M, N]);
    const what = `${version} ${ad}·${bd}+${rd}→${cd} M=${M} N=${N} K=${K}${withBias ? " bias" : ""}`;
    const expected = matmulReference(a.values, b.values, bias?.values ?? null, shape, residual.values);
    const bounds = matmulErrorBounds(a.values, b.values, bias?.values ?? null, shape, cd, residual.values);
    return { c, a, b, bias, residual, expected, bounds, what };
  }

  for (const version of supported) {
    const rows = version in ROW_LIMITS ? [1, 2, 3, ROW_LIMITS[version]] : [1, 3, 17];
    for (const combo of combos) {
      it(`${version} ${combo.join("·")}: A·Bᵀ + bias + residual in one launch`, async () => {
        const checks: Promise<void>[] = [];
        for (const M of rows) {
          for (const N of [1, 3, 17, 130]) {
            for (const K of [1, 3, 17, 64]) {
              const r = run(version, M, N, K, combo, (M + N + K) % 2 === 0);
              checks.push(r.c.read().then((got) => expectWithin(got, r.expected, r.bounds, r.what)));
            }
          }
        }
        await Promise.all(checks);
      });
    }
  }

  it("matches the unfused matmul + add", async () => {
    for (const version of supported) {
      const r = run(version, 2, 37, 70, ["f32", "f32", "f32", "f32"], true);
      const unfused = add(matmul(r.a.t, r.b.t, { bias: r.bias?.t }), r.residual.t);
      const [fused, plain] = [await r.c.read(), await unfused.read()];
      // Both are within the bound of the reference, so within twice it of each other.
      expectWithin(fused, Float64Array.from(plain), r.bounds.map((x) => 2 * x), `${version} fused vs unfused`);
    }
  });

  it("adds each row part's columns of a residual shaped like out", async () => {
    const [M, K, N] = [3, 20, 17];
    const a = upload(gpu, randn(random, M * K), [M, K], "f32");
    const w = upload(gpu, randn(random, N * K), [N, K], "f32");
    const residual = upload(gpu, randn(random, M * N), [M, N], "f32");
    const shape: MatmulShape = { batch: 1, M, N, K, batchedB: false };
    for (const version of supported) {
      const out = gpu.empty([M, N], "f32");
      for (const [start, rows] of [[0, 8], [8, 4], [12, 5]]) {
        const part = gpu.tensor(w.values.subarray(start * K, (start + rows) * K), [rows, K]);
        MATMUL_VERSIONS[version](a.t, part, { out, outColumn: start, residual: residual.t });
      }
      const expected = matmulReference(a.values, w.values, null, shape, residual.values);
      expectWithin(await out.read(), expected, matmulErrorBounds(a.values, w.values, null, shape, "f32", residual.values), `${version} parts`);
    }
  });

  it("adds a batched residual", async () => {
    const shape: MatmulShape = { batch: 2, M: 5, N: 6, K: 9, batchedB: true };
    const a = upload(gpu, randn(random, 2 * 5 * 9), [2, 5, 9], "f32");
    const b = upload(gpu, randn(random, 2 * 6 * 9), [2, 6, 9], "f32");
    const residual = upload(gpu, randn(random, 2 * 5 * 6), [2, 5, 6], "f32");
    for (const version of supported.filter((v) => !(v in ROW_LIMITS))) {
      const c = MATMUL_VERSIONS[version](a.t, b.t, { residual: residual.t });
      const bounds = matmulErrorBounds(a.values, b.values, null, shape, "f32", residual.values);
      expectWithin(await c.read(), matmulReference(a.values, b.values, null, shape, residual.values), bounds, `${version} batched`);
    }
  });

  it("rejects a residual of the wrong shape or dtype, or aliasing out, before any dispatch", () => {
    const a = gpu.tensor(new Float32Array(2 * 8), [2, 8]);
    const w = gpu.tensor(new Float32Array(3 * 8), [3, 8]);
    const out = gpu.empty([2, 3], "f32");
    const wide = gpu.empty([2, 5], "f32");
    const before = gpu.dispatchCount;
    for (const version of supported) {
      const call = (residual: Tensor, extra = {}) => () => MATMUL_VERSIONS[version](a, w, { residual, ...extra });
      expect(call(gpu.tensor(new Float32Array(6), [3, 2]))).toThrow(ShapeError);
      expect(call(gpu.tensor(new Float32Array(6), [3, 2]))).toThrow(new RegExp(`matmul ${version}: residual f32\\[3x2\\] must be shaped like the output \\[2, 3\\]`));
      expect(call(gpu.tensor(new Float32Array(6), [6]))).toThrow(/must be shaped like the output/);
      expect(call(gpu.tensor(new Int32Array(6), [2, 3], "i32"))).toThrow(/residual i32\[2x3\] must be f32 or f16/);
      expect(call(out, { out })).toThrow(/shares a buffer with out f32\[2x3\]; write to a fresh output/);
      expect(call(gpu.tensor(new Float32Array(6), [2, 3]), { out: wide, outColumn: 2 })).toThrow(/shaped like the output \[2, 5\]/);
    }
    expect(gpu.dispatchCount).toBe(before);
  });
});
