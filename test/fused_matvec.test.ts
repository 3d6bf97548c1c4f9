/**
 * The fused projections of a decoder layer: gate+up with act(gate)·up as the epilogue
 * (gated_matvec.ts), and q, k, v in one launch (qkv_matvec.ts). Each fused version against the
 * float64 reference and the unfused composition, on awkward shapes, 1 to 4 rows, f32 and f16
 * weights, with their launch counts and errors.
 */
import { describe, expect, it } from "vitest";
import type { ActivationKind } from "../src/kernels/activations.js";
import {
  chooseGatedVersion,
  GATED_MAX_ROWS,
  GATED_VERSIONS,
  gatedErrorBounds,
  gatedLinear,
  gatedReference,
  gatedUnfused,
} from "../src/kernels/matmul/gated_matvec.js";
import { matmulErrorBounds, matmulReference } from "../src/kernels/matmul/reference.js";
import { subgroupMatvecMaxRows } from "../src/kernels/matmul/index.js";
import { chooseQkvVersion, QKV_MAX_ROWS, QKV_VERSIONS, qkvLinear, qkvUnfused, type ProjectionPart } from "../src/kernels/matmul/qkv_matvec.js";
import { fixedSubgroupSize } from "../src/kernels/subgroups.js";
import type { DType } from "../src/tensor/dtype.js";
import { ShapeError } from "../src/tensor/errors.js";
import { Gpu } from "../src/tensor/gpu.js";
import type { Tensor } from "../src/tensor/tensor.js";
import { expectWithin, floatDtypes, randn, rng, testGpu, upload } from "./helpers.js";
import { launchesOf } from "./launches.js";

const ROWS = [1, 2, 3, 4];
/** N not a multiple of 2, 4 or 8; K not a multiple of 4 or of the subgroup width (8 on lavapipe). */
const NS = [1, 3, 17, 45];
const KS = [1, 3, 17, 64, 130];

describe("gated matvec (gate+up with act(gate)·up)", async () => {
  const gpu = await testGpu();
  const random = rng();
  const subgroups = fixedSubgroupSize(gpu) !== null;
  const fused = (["gated_matvec", "gated_matvec_v2_subgroup"] as const).filter((v) => v === "gated_matvec" || subgroups);

  function gatedCase(M: number, N: number, K: number, wd: DType, bias: boolean, kind: ActivationKind = "silu") {
    const x = upload(gpu, randn(random, M * K), [M, K], "f32");
    const gate = upload(gpu, randn(random, N * K, 0.5), [N, K], wd);
    const up = upload(gpu, randn(random, N * K, 0.5), [N, K], wd);
    const gb = bias ? upload(gpu, randn(random, N), [N], wd) : null;
    const ub = bias ? upload(gpu, randn(random, N), [N], wd) : null;
    const dims = { M, N, K };
    const expected = gatedReference(x.values, gate.values, up.values, gb?.values ?? null, ub?.values ?? null, dims, kind);
    const bounds = gatedErrorBounds(x.values, gate.values, up.values, gb?.values ?? null, ub?.values ?? null, dims, kind, "f32");
    const options = { activation: kind, gateBias: gb?.t, upBias: ub?.t };
    return { x: x.t, gate: gate.t, up: up.t, options, expected, bounds };
  }

  for (const version of fused) {
    for (const wd of floatDtypes(gpu)) {
      it(`${version} silu, ${wd} weights, 1 to 4 rows, awkward N and K, in one launch`, async () => {
        const checks: Promise<void>[] = [];
        for (const M of ROWS) {
          for (const N of NS) {
            for (const K of KS) {
              const c = gatedCase(M, N, K, wd, (M + N + K) % 2 === 0);
              const { result, kernels } = launchesOf(gpu, () => GATED_VERSIONS[version](c.x, c.gate, c.up, c.options));
              expect(kernels).toEqual([version]);
              expect(result.shape).toEqual([M, N]);
              checks.push(result.read().then((got) => expectWithin(got, c.expected, c.bounds, `${version} ${wd} M=${M} N=${N} K=${K}`)));
            }
          }
        }
        await Promise.all(checks);
      });
    }

    it(`${version} with each gelu variant and quick_gelu, matching the unfused composition`, async () => {
      for (const kind of ["gelu", "gelu_tanh", "quick_gelu", "silu"] as ActivationKind[]) {
        const c = gatedCase(2, 37, 70, "f32", kind === "gelu", kind);
        const got = await GATED_VERSIONS[version](c.x, c.gate, c.up, c.options).read();
        expectWithin(got, c.expected, c.bounds, `${version} ${kind}`);
        const { result, kernels } = launchesOf(gpu, () => gatedUnfused(c.x, c.gate, c.up, c.options));
        expect(kernels, kernels.join()).toHaveLength(kind === "silu" ? 3 : 4);
        expectWithin(got, Float64Array.from(await result.read()), c.bounds.map((b) => 2 * b), `${version} ${kind} vs unfused`);
      }
    });
  }

  it("gatedLinear fuses the rows the matvec kernels take and falls back to matmuls beyond, folding leading dimensions", async () => {
    for (const M of [1, 3, 4, 5, 9]) {
      const c = gatedCase(M, 19, 33, "f32", M === 5);
      const x = c.x.reshape([1, M, 33]);
      const fused = M <= (subgroups ? Math.min(GATED_MAX_ROWS, subgroupMatvecMaxRows(gpu)) : GATED_MAX_ROWS);
      expect(chooseGatedVersion(x)).toBe(!fused ? "unfused" : subgroups ? "gated_matvec_v2_subgroup" : "gated_matvec");
      const { result, kernels } = launchesOf(gpu, () => gatedLinear(x, c.gate, c.up, c.options));
      expect(kernels.length).toBe(fused ? 1 : 3);
      expect(result.shape).toEqual([1, M, 19]);
      expectWithin(await result.read(), c.expected, c.bounds, `gatedLinear M=${M}`);
    }
  });

  it("without subgroups, gatedLinear runs gated_matvec", async () => {
    const plain = await Gpu.create({ disableFeatures: ["subgroups"], poison: true });
    try {
      const x = upload(plain, randn(random, 2 * 20), [2, 20], "f32");
      const gate = upload(plain, randn(random, 5 * 20), [5, 20], "f32");
      const up = upload(plain, randn(random, 5 * 20), [5, 20], "f32");
      expect(chooseGatedVersion(x.t)).toBe("gated_matvec");
      expect(() => GATED_VERSIONS.gated_matvec_v2_subgroup(x.t, gate.t, up.t)).toThrow(/needs the 'subgroups' feature/);
      const dims = { M: 2, N: 5, K: 20 };
      const expected = gatedReference(x.values, gate.values, up.values, null, null, dims, "silu");
      const bounds = gatedErrorBounds(x.values, gate.values, up.values, null, null, dims, "silu", "f32");
      expectWithin(await gatedLinear(x.t, gate.t, up.t).read(), expected, bounds, "no subgroups");
    } finally {
      plain.destroy();
    }
  });

  it("rejects bad shapes, dtypes and row counts before any dispatch", () => {
    const t = (shape: number[], dtype: DType = "f32") => gpu.tensor(new Float32Array(shape.reduce((a, b) => a * b, 1)), shape, dtype);
    const [x, w] = [t([2, 8]), t([3, 8])];
    const before = gpu.dispatchCount;
    expect(() => gatedLinear(x, t([3, 7]), w)).toThrow(ShapeError);
    expect(() => gatedLinear(x, t([3, 7]), w)).toThrow(/gatedLinear: gate f32\[3x7\] must be an f32 or f16 \[N, 8\] weight for x f32\[2x8\]/);
    expect(() => gatedLinear(x, w, t([4, 8]))).toThrow(/gate f32\[3x8\] and up f32\[4x8\] differ in N/);
    expect(() => gatedLinear(x, w, t([3, 8], "i32"))).toThrow(/up i32\[3x8\] must be an f32 or f16/);
    expect(() => gatedLinear(x, w, w, { gateBias: t([4]) })).toThrow(/gateBias f32\[4\] must be f32 or f16 \[3\]/);
    expect(() => gatedLinear(x, w, w, { upBias: t([3, 1]) })).toThrow(/upBias f32\[3x1\]/);
    expect(() => gatedLinear(x, w, w, { activation: "relu" as ActivationKind })).toThrow(/unknown kind "relu"/);
    expect(() => gatedLinear(x, w, w, { outDtype: "i32" })).toThrow(/output dtype i32 must be f32 or f16/);
    for (const version of fused) {
      expect(() => GATED_VERSIONS[version](t([5, 8]), w, w)).toThrow(new RegExp(`${version}: x f32\\[5x8\\] has 5 rows; ${version} takes 1 to 4`));
    }
    expect(gpu.dispatchCount).toBe(before);
  });
});

describe("qkv matvec (q, k, v projections in one launch)", async () => {
  const gpu = await testGpu();
  const random = rng();
  const subgroups = fixedSubgroupSize(gpu) !== null;
  const fused = (["qkv_matvec", "qkv_matvec_v2_subgroup"] as const).filter((v) => v === "qkv_matvec" || subgroups);

  /** Parts of N rows each (biases on the parts `biased` picks), and the reference of their concatenation. */
  function qkvCase(M: number, Ns: number[], K: number, wd: DType, biased: (j: number) => boolean) {
    const x = upload(gpu, randn(random, M * K), [M, K], "f32");
    const weights = Ns.map((N) => upload(gpu, randn(random, N * K), [N, K], wd));
    const biases = Ns.map((N, j) => (biased(j) ? upload(gpu, randn(random, N), [N], wd) : null));
    const parts: ProjectionPart[] = weights.map((w, j) => ({ weight: w.t, bias: biases[j]?.t ?? null }));
    const total = Ns.reduce((a, b) => a + b, 0);
    const expected = new Float64Array(M * total);
    const bounds = new Float64Array(M * total);
    let column = 0;
    Ns.forEach((N, j) => {
      const shape = { batch: 1, M, N, K, batchedB: false };
      const [w, b] = [weights[j].values, biases[j]?.values ?? null];
      const [e, bound] = [matmulReference(x.values, w, b, shape), matmulErrorBounds(x.values, w, b, shape, "f32")];
      for (let m = 0; m < M; m++) {
        for (let n = 0; n < N; n++) {
          expected[m * total + column + n] = e[m * N + n];
          bounds[m * total + column + n] = bound[m * N + n];
        }
      }
      column += N;
    });
    return { x: x.t, parts, expected, bounds, total };
  }

  for (const version of fused) {
    for (const wd of floatDtypes(gpu)) {
      it(`${version} ${wd} weights, 1 to 4 rows, three awkward N, in one launch`, async () => {
        const checks: Promise<void>[] = [];
        for (const M of ROWS) {
          for (const Ns of [[1, 1, 1], [17, 3, 5], [33, 9, 9], [8, 4, 4]]) {
            for (const K of KS) {
              const c = qkvCase(M, Ns, K, wd, (j) => (M + K + j) % 2 === 0);
              const { result, kernels } = launchesOf(gpu, () => QKV_VERSIONS[version](c.x, c.parts));
              expect(kernels).toEqual([version]);
              expect(result.shape).toEqual([M, c.total]);
              checks.push(result.read().then((got) => expectWithin(got, c.expected, c.bounds, `${version} ${wd} M=${M} N=${Ns} K=${K}`)));
            }
          }
        }
        await Promise.all(checks);
      });
    }

    it(`${version} takes one or two weights too, and matches the unfused matmuls`, async () => {
      for (const Ns of [[13], [6, 11], [40, 8, 8]]) {
        const c = qkvCase(3, Ns, 70, "f32", (j) => j !== 1);
        const got = await QKV_VERSIONS[version](c.x, c.parts).read();
        expectWithin(got, c.expected, c.bounds, `${version} ${Ns.length} weights`);
        const { result, kernels } = launchesOf(gpu, () => qkvUnfused(c.x, c.parts));
        expect(kernels).toHaveLength(Ns.length);
        expectWithin(got, Float64Array.from(await result.read()), c.bounds.map((b) => 2 * b), `${version} vs unfused`);
      }
    });
  }

  it("qkvLinear fuses the rows the matvec kernels take and falls back to one matmul per weight beyond", async () => {
    for (const M of [1, 3, 4, 5, 12]) {
      const c = qkvCase(M, [16, 4, 4], 24, "f32", () => true);
      const fused = M <= (subgroups ? Math.min(QKV_MAX_ROWS, subgroupMatvecMaxRows(gpu)) : QKV_MAX_ROWS);
      expect(chooseQkvVersion(c.x)).toBe(!fused ? "unfused" : subgroups ? "qkv_matvec_v2_subgroup" : "qkv_matvec");
      const { result, kernels } = launchesOf(gpu, () => qkvLinear(c.x, c.parts));
      expect(kernels.length).toBe(fused ? 1 : 3);
      expectWithin(await result.read(), c.expected, c.bounds, `qkvLinear M=${M}`);
    }
  });

  it("without subgroups, qkvLinear runs qkv_matvec", async () => {
    const plain = await Gpu.create({ disableFeatures: ["subgroups"], poison: true });
    try {
      const x = upload(plain, randn(random, 20), [1, 20], "f32");
      const w = upload(plain, randn(random, 5 * 20), [5, 20], "f32");
      expect(chooseQkvVersion(x.t)).toBe("qkv_matvec");
      expect(() => QKV_VERSIONS.qkv_matvec_v2_subgroup(x.t, [{ weight: w.t }])).toThrow(/needs the 'subgroups' feature/);
      const shape = { batch: 1, M: 1, N: 5, K: 20, batchedB: false };
      const out = await qkvLinear(x.t, [{ weight: w.t }, { weight: w.t }]).read();
      const once = matmulReference(x.values, w.values, null, shape);
      const bound = matmulErrorBounds(x.values, w.values, null, shape, "f32");
      expectWithin(out, [...once, ...once], [...bound, ...bound], "no subgroups");
    } finally {
      plain.destroy();
    }
  });

  it("rejects bad shapes, dtypes and part counts before any dispatch", () => {
    const t = (shape: number[], dtype: DType = "f32"): Tensor => gpu.tensor(new Float32Array(shape.reduce((a, b) => a * b, 1)), shape, dtype);
    const x = t([2, 8]);
    const w = { weight: t([4, 8]) };
    const before = gpu.dispatchCount;
    expect(() => qkvLinear(x, [])).toThrow(ShapeError);
    expect(() => qkvLinear(x, [])).toThrow(/qkvLinear: takes 1 to 3 weights, got 0/);
    expect(() => qkvLinear(x, [w, w, w, w])).toThrow(/got 4/);
    expect(() => qkvLinear(x, [w, { weight: t([4, 7]) }])).toThrow(/weight 1 f32\[4x7\] must be an f32 or f16 \[N, 8\] matrix for x f32\[2x8\]/);
    expect(() => qkvLinear(x, [w, { weight: t([4, 8]), bias: t([5]) }])).toThrow(/bias 1 f32\[5\] must be f32 or f16 \[4\]/);
    expect(() => qkvLinear(x, [{ weight: t([4, 8], "i32") }])).toThrow(/weight 0 i32\[4x8\]/);
    expect(() => qkvLinear(t([2, 0]), [w])).toThrow(/has K = 0/);
    for (const version of fused) {
      expect(() => QKV_VERSIONS[version](t([5, 8]), [w])).toThrow(new RegExp(`${version}: x f32\\[5x8\\] has 5 rows; ${version} takes 1 to 4`));
    }
    expect(gpu.dispatchCount).toBe(before);
  });
});
