import { describe, expect, it } from "vitest";
import {
  chooseMatmulVersion,
  fixedSubgroupSize,
  MATMUL_VERSIONS,
  matmul,
  matmulReference,
  matmulVersionSupported,
  MATVEC_MAX_ROWS,
  MATVEC_V2_MAX_ROWS,
  MATVEC_V3_MAX_ROWS,
  MATVEC_V3_SUBGROUPS,
  type MatmulShape,
} from "../src/kernels/matmul/index.js";
import { matmulErrorBounds } from "../src/kernels/matmul/reference.js";
import type { DType } from "../src/tensor/dtype.js";
import { ShapeError } from "../src/tensor/errors.js";
import { Gpu } from "../src/tensor/gpu.js";
import { AWKWARD, expectWithin, randn, rng, testGpu, upload } from "./helpers.js";

/** Storage dtypes of (A, B, C): all f32; all f16; f32 activations with f16 weights. */
const COMBOS: [DType, DType, DType][] = [
  ["f32", "f32", "f32"],
  ["f16", "f16", "f16"],
  ["f32", "f16", "f32"],
];

/** The versions that take only a few rows of A (decoding), and their most; every other registered version takes any number. */
const ROW_LIMITS: Record<string, number> = {
  matvec: MATVEC_MAX_ROWS,
  matvec_v2_subgroup: MATVEC_V2_MAX_ROWS,
  matvec_v3_multi_subgroup: MATVEC_V3_MAX_ROWS,
};
const GENERAL_VERSIONS = Object.keys(MATMUL_VERSIONS).filter((name) => !(name in ROW_LIMITS));

describe("matmul", async () => {
  const gpu = await testGpu();
  const random = rng();
  const combos = COMBOS.filter((c) => gpu.hasF16 || !c.includes("f16"));
  /** The subgroup versions run only where the device fixes its subgroup size (lavapipe does). */
  const supported = (version: string) => matmulVersionSupported(gpu, version);

  function check(version: string, M: number, N: number, K: number, [ad, bd, cd]: [DType, DType, DType], withBias: boolean) {
    const shape: MatmulShape = { batch: 1, M, N, K, batchedB: false };
    const a = upload(gpu, randn(random, M * K), [M, K], ad);
    const b = upload(gpu, randn(random, N * K), [N, K], bd);
    const bias = withBias ? upload(gpu, randn(random, N), [N], bd) : null;
    const c = MATMUL_VERSIONS[version](a.t, b.t, { bias: bias?.t, outDtype: cd });
    expect(c.shape).toEqual([M, N]);
    return c.read().then((got) => {
      const expected = matmulReference(a.values, b.values, bias?.values ?? null, shape);
      expectWithin(got, expected, matmulErrorBounds(a.values, b.values, bias?.values ?? null, shape, cd), `${version} ${ad}·${bd}→${cd} M=${M} N=${N} K=${K}`);
    });
  }

  for (const version of GENERAL_VERSIONS) {
    for (const combo of combos) {
      it.skipIf(!supported(version))(`${version} ${combo.join("·")} over awkward M, N, K`, async () => {
        const checks: Promise<void>[] = [];
        for (const M of AWKWARD) {
          for (const N of AWKWARD) {
            for (const K of [1, 3, 17, 64, 129]) checks.push(check(version, M, N, K, combo, (M + N + K) % 2 === 0));
          }
        }
        await Promise.all(checks);
      });
    }
  }

  // Each row count may be its own pipeline, so a few-row version is tested at 1, 2, 3 and its most.
  for (const [version, limit] of Object.entries(ROW_LIMITS)) {
    const rowCounts = [...new Set([1, 2, 3, limit])].filter((rows) => rows <= limit);
    for (const combo of combos) {
      it.skipIf(!supported(version))(`${version} ${combo.join("·")} for ${rowCounts.join(", ")} rows`, async () => {
        const checks: Promise<void>[] = [];
        for (const M of rowCounts) {
          for (const N of [1, 3, 17, 129, 300]) {
            for (const K of [1, 3, 17, 64, 129, 1028]) checks.push(check(version, M, N, K, combo, (N + K) % 2 === 1));
          }
        }
        await Promise.all(checks);
      });
    }
    it.skipIf(!supported(version))(`${version} refuses ${limit + 1} rows`, () => {
      const w = gpu.tensor(new Float32Array(2 * 8), [2, 8]);
      expect(() => MATMUL_VERSIONS[version](gpu.tensor(new Float32Array((limit + 1) * 8), [limit + 1, 8]), w)).toThrow(ShapeError);
    });
  }

  // v3 splits K between MATVEC_V3_SUBGROUPS subgroups: a K-step of the workgroup is S·lanes quads.
  // K around multiples of that step (one quad more or fewer, a tail that is not a whole quad,
  // fewer quads than subgroups) and N around multiples of the 4 outputs of a workgroup.
  it.skipIf(!supported("matvec_v3_multi_subgroup"))("matvec_v3_multi_subgroup over K around its workgroup step, with bias and residual", async () => {
    const lanes = fixedSubgroupSize(gpu)!;
    const step = MATVEC_V3_SUBGROUPS * lanes * 4;
    const Ks = [4 * lanes + 4, step - 4, step + 4, step + 3, 3 * step + 17, 16 * step + 8];
    const weights: DType[] = gpu.hasF16 ? ["f32", "f16"] : ["f32"];
    const checks: Promise<void>[] = [];
    for (const bd of weights) {
      for (let M = 1; M <= MATVEC_V3_MAX_ROWS; M++) {
        for (const N of [5, 6, 7, 258]) {
          for (const K of Ks) {
            const shape: MatmulShape = { batch: 1, M, N, K, batchedB: false };
            const a = upload(gpu, randn(random, M * K), [M, K], "f32");
            const b = upload(gpu, randn(random, N * K), [N, K], bd);
            const bias = (N + K + M) % 2 === 0 ? upload(gpu, randn(random, N), [N], bd) : null;
            const residual = upload(gpu, randn(random, M * N, 4), [M, N], "f32");
            const c = MATMUL_VERSIONS.matvec_v3_multi_subgroup(a.t, b.t, { bias: bias?.t, residual: residual.t });
            const expected = matmulReference(a.values, b.values, bias?.values ?? null, shape, residual.values);
            const bounds = matmulErrorBounds(a.values, b.values, bias?.values ?? null, shape, "f32", residual.values);
            const what = `matvec_v3_multi_subgroup f32·${bd} M=${M} N=${N} K=${K}${bias ? " bias" : ""} + residual`;
            checks.push(c.read().then((got) => expectWithin(got, expected, bounds, what)));
          }
        }
      }
    }
    await Promise.all(checks);
  });

  it("on a GPU with a fixed subgroup size, picks matvec_v3 for up to 4 rows against a weight", () => {
    // The rule reads only the adapter and the device's subgroup sizes: a stand-in for a GPU.
    const fakeGpu = { adapter: { isFallbackAdapter: false }, hasSubgroups: true, device: { adapterInfo: { subgroupMinSize: 32, subgroupMaxSize: 32 } } };
    const fake = (shape: number[]) =>
      ({ gpu: fakeGpu, shape, rank: shape.length, size: shape.reduce((x, y) => x * y, 1), dim: (i: number) => shape.at(i)! }) as unknown as Parameters<typeof chooseMatmulVersion>[0];
    const w = fake([256, 2048]);
    expect(chooseMatmulVersion(fake([1, 2048]), w)).toBe("matvec_v3_multi_subgroup");
    expect(chooseMatmulVersion(fake([2, 2, 2048]), w)).toBe("matvec_v3_multi_subgroup");
    expect(chooseMatmulVersion(fake([5, 2048]), w)).toBe("matvec");
    expect(chooseMatmulVersion(fake([577, 2048]), w)).toBe("v3_register_tiled");
    fakeGpu.device.adapterInfo.subgroupMinSize = 8; // a size that varies: no subgroup versions
    expect(chooseMatmulVersion(fake([1, 2048]), w)).toBe("matvec");
  });

  it("tiles a product bigger than one workgroup tile in every direction", async () => {
    await check("v3_register_tiled", 200, 130, 260, ["f32", "f32", "f32"], true);
    await check("v2_tiled", 70, 33, 50, ["f32", "f32", "f32"], true);
    // v4's workgroup covers 4 rows × 256 columns, v5's and v6's subgroup 16 × 16 on lavapipe.
    await check("v4_register_blocked", 9, 300, 260, ["f32", "f32", "f32"], true);
    for (const version of ["v5_subgroup_broadcast", "v6_f16_packed"].filter(supported)) {
      await check(version, 200, 130, 260, ["f32", "f32", "f32"], true);
    }
    if (gpu.hasF16 && supported("v6_f16_packed")) await check("v6_f16_packed", 70, 90, 1028, ["f32", "f16", "f32"], false);
  });

  it("batches A against one B per batch entry", async () => {
    const shape: MatmulShape = { batch: 3, M: 17, N: 5, K: 20, batchedB: true };
    const a = upload(gpu, randn(random, 3 * 17 * 20), [3, 17, 20], "f32");
    const b = upload(gpu, randn(random, 3 * 5 * 20), [3, 5, 20], "f32");
    const expected = matmulReference(a.values, b.values, null, shape);
    for (const version of GENERAL_VERSIONS.filter(supported)) {
      const c = MATMUL_VERSIONS[version](a.t, b.t);
      expect(c.shape).toEqual([3, 17, 5]);
      expectWithin(await c.read(), expected, matmulErrorBounds(a.values, b.values, null, shape, "f32"), `${version} batched`);
    }
  });

  it("folds A's leading dimensions into rows against a weight", async () => {
    const a = upload(gpu, randn(random, 2 * 3 * 8), [2, 3, 8], "f32");
    const w = upload(gpu, randn(random, 4 * 8), [4, 8], "f32");
    const shape: MatmulShape = { batch: 1, M: 6, N: 4, K: 8, batchedB: false };
    const c = matmul(a.t, w.t);
    expect(c.shape).toEqual([2, 3, 4]);
    expectWithin(await c.read(), matmulReference(a.values, w.values, null, shape), matmulErrorBounds(a.values, w.values, null, shape, "f32"), "folded");
    const many = upload(gpu, randn(random, 40 * 8), [40, 8], "f32");
    const c2 = matmul(many.t, w.t);
    const shape2 = { ...shape, M: 40 };
    expectWithin(await c2.read(), matmulReference(many.values, w.values, null, shape2), matmulErrorBounds(many.values, w.values, null, shape2, "f32"), "many rows");
  });

  it.skipIf(!gpu.adapter.isFallbackAdapter || fixedSubgroupSize(gpu) === null)(
    "on lavapipe, picks matvec_v2 for up to 3 rows against a weight and v6 otherwise",
    () => {
      const w = gpu.tensor(new Float32Array(4 * 8), [4, 8]);
      const rows = (n: number) => gpu.tensor(new Float32Array(n * 8), [n, 8]);
      expect(chooseMatmulVersion(rows(1), w)).toBe("matvec_v2_subgroup");
      expect(chooseMatmulVersion(gpu.tensor(new Float32Array(3 * 8), [3, 1, 8]), w)).toBe("matvec_v2_subgroup");
      expect(chooseMatmulVersion(rows(4), w)).toBe("v6_f16_packed");
      expect(chooseMatmulVersion(rows(8), w)).toBe("v6_f16_packed");
      expect(chooseMatmulVersion(rows(577), w)).toBe("v6_f16_packed");
      const batched = gpu.tensor(new Float32Array(2 * 8), [2, 1, 8]);
      expect(chooseMatmulVersion(batched, gpu.tensor(new Float32Array(2 * 4 * 8), [2, 4, 8]))).toBe("v6_f16_packed");
    },
  );

  it("without subgroups, refuses the subgroup versions and falls back to matvec and v4 or v3", async () => {
    const plain = await Gpu.create({ disableFeatures: ["subgroups"], poison: true });
    try {
      const a = upload(plain, randn(random, 3 * 8), [3, 8], "f32");
      const many = upload(plain, randn(random, 40 * 8), [40, 8], "f32");
      const w = upload(plain, randn(random, 5 * 8), [5, 8], "f32");
      for (const version of ["v5_subgroup_broadcast", "v6_f16_packed", "matvec_v2_subgroup", "matvec_v3_multi_subgroup"]) {
        expect(matmulVersionSupported(plain, version)).toBe(false);
        expect(() => MATMUL_VERSIONS[version](a.t, w.t)).toThrow(/needs the 'subgroups' feature/);
      }
      expect(chooseMatmulVersion(a.t, w.t)).toBe("matvec");
      expect(chooseMatmulVersion(many.t, w.t)).toBe(plain.adapter.isFallbackAdapter ? "v4_register_blocked" : "v3_register_tiled");
      for (const x of [a, many]) {
        const shape: MatmulShape = { batch: 1, M: x.t.dim(0), N: 5, K: 8, batchedB: false };
        const expected = matmulReference(x.values, w.values, null, shape);
        expectWithin(await matmul(x.t, w.t).read(), expected, matmulErrorBounds(x.values, w.values, null, shape, "f32"), `no subgroups, ${shape.M} rows`);
      }
    } finally {
      plain.destroy();
    }
  });

  it("fills column ranges of one output from a weight split into row parts", async () => {
    const [M, K] = [3, 20];
    const rowsPerPart = [8, 4, 5];
    const N = 17;
    const a = upload(gpu, randn(random, M * K), [M, K], "f32");
    const w = randn(random, N * K);
    const bias = randn(random, N);
    const shape: MatmulShape = { batch: 1, M, N, K, batchedB: false };
    for (const version of Object.keys(MATMUL_VERSIONS).filter(supported)) {
      const out = gpu.empty([M, N], "f32");
      let start = 0;
      for (const rows of rowsPerPart) {
        const part = gpu.tensor(w.subarray(start * K, (start + rows) * K), [rows, K]);
        const partBias = gpu.tensor(bias.subarray(start, start + rows), [rows]);
        expect(MATMUL_VERSIONS[version](a.t, part, { bias: partBias, out, outColumn: start })).toBe(out);
        start += rows;
      }
      const wv = upload(gpu, w, [N, K], "f32").values;
      const bv = upload(gpu, bias, [N], "f32").values;
      expectWithin(await out.read(), matmulReference(a.values, wv, bv, shape), matmulErrorBounds(a.values, wv, bv, shape, "f32"), `${version} split`);
    }
    const out = gpu.empty([M, N], "f32");
    const part = gpu.tensor(w.subarray(0, 8 * K), [8, K]);
    expect(() => matmul(a.t, part, { out, outColumn: 10 })).toThrow(/columns \[10, 18\) do not fit/);
    expect(() => matmul(a.t, part, { outColumn: 1 })).toThrow(/outColumn needs an out tensor/);
  });

  it("rejects mismatched shapes before any dispatch", () => {
    const a = gpu.tensor(new Float32Array(12), [3, 4]);
    const b = gpu.tensor(new Float32Array(10), [2, 5]);
    const bias = gpu.tensor(new Float32Array(3), [3]);
    const w = gpu.tensor(new Float32Array(8), [2, 4]);
    const before = gpu.dispatchCount;
    for (const version of Object.keys(MATMUL_VERSIONS).filter(supported)) {
      expect(() => MATMUL_VERSIONS[version](a, b)).toThrow(ShapeError);
      expect(() => MATMUL_VERSIONS[version](a, w, { bias })).toThrow(/bias f32\[3\] must be \[2\]/);
    }
    expect(() => matmul(a, b)).toThrow(/disagree on K/);
    const tall = gpu.tensor(new Float32Array(40), [10, 4]);
    expect(() => MATMUL_VERSIONS.matvec(tall, w)).toThrow(/matvec takes 1 to 8/);
    if (supported("matvec_v2_subgroup")) {
      expect(() => MATMUL_VERSIONS.matvec_v2_subgroup(tall, w)).toThrow(/matvec_v2_subgroup takes 1 to 4/);
      const batched = gpu.tensor(new Float32Array(8), [1, 2, 4]);
      expect(() => MATMUL_VERSIONS.matvec_v2_subgroup(batched, batched)).toThrow(/must be a single \[N, K\] matrix/);
    }
    if (supported("matvec_v3_multi_subgroup")) {
      expect(() => MATMUL_VERSIONS.matvec_v3_multi_subgroup(tall, w)).toThrow(/matvec_v3_multi_subgroup: A f32\[10x4\] has 10 rows; matvec_v3_multi_subgroup takes 1 to 4/);
      const batched = gpu.tensor(new Float32Array(8), [1, 2, 4]);
      expect(() => MATMUL_VERSIONS.matvec_v3_multi_subgroup(batched, batched)).toThrow(/matvec_v3_multi_subgroup: B f32\[1x2x4\] must be a single \[N, K\] matrix/);
    }
    expect(gpu.dispatchCount).toBe(before);
  });
});
