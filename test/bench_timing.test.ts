/** What the benchmarks rely on in the runtime: the launch observer and GPU-timed passes (timing.ts). */
import { describe, expect, it } from "vitest";
import { kernelCases } from "../src/bench/cases.js";
import { runKernelBench } from "../src/bench/kernels.js";
import type { DeviceLimits } from "../src/bench/limits.js";
import { timeGpu, timeOnce } from "../src/bench/timing.js";
import { randomFill } from "../src/kernels/random_fill.js";
import { ShapeError } from "../src/tensor/errors.js";
import { Gpu, type LaunchRecord } from "../src/tensor/gpu.js";

describe("benchmark timing", async () => {
  const gpu = await Gpu.create({ poison: false });
  const x = gpu.empty([1 << 16], "f32");

  it("the launch observer sees every launch with its kernel, tensors and grid", async () => {
    const seen: LaunchRecord[] = [];
    gpu.launchObserver = (launch) => seen.push(launch);
    randomFill(x, { seed: 1 });
    randomFill(x.reshape([2, 1 << 15]), { seed: 2 });
    gpu.launchObserver = null;
    randomFill(x, { seed: 3 });
    await gpu.sync();
    expect(seen.map((l) => l.kernel.name)).toEqual(["random_fill", "random_fill"]);
    expect(seen[0].tensors.x).toBe(x);
    expect(seen[0].spec).toEqual({ vec4: true });
    expect(seen[0].workgroups).toEqual([(1 << 16) / 4 / 256, 1, 1]);
  });

  for (const method of ["timestamp", "wall"] as const) {
    it(`times runs by ${method}, rotating the run index`, async () => {
      if (method === "timestamp" && !gpu.hasTimestamps) return;
      const runs: number[] = [];
      const t = await timeGpu(gpu, (run) => (runs.push(run), randomFill(x, { seed: run })), {
        method,
        warmup: 1,
        repeats: 4,
        minRepeats: 2,
        budgetMs: 10_000,
        minSampleMs: 0,
      });
      expect(t.method).toBe(method);
      expect(t.samples.length).toBeGreaterThanOrEqual(2);
      expect(t.samples.length).toBeLessThanOrEqual(4);
      for (const ms of t.samples) expect(ms).toBeGreaterThanOrEqual(0);
      // Warm-up, the probe, then every sample's runs: indices 0, 1, 2, ... with none skipped.
      expect(runs).toEqual(runs.map((_, i) => i));
      expect(runs.length).toBe(2 + t.samples.length * t.runsPerSample);
    });
  }

  it("a run that refuses its inputs inside a timed pass leaves the device usable", async () => {
    if (!gpu.hasTimestamps) return;
    await expect(
      timeOnce(gpu, () => {
        throw new ShapeError("refused");
      }),
    ).rejects.toThrow(ShapeError);
    const ms = await timeOnce(gpu, () => randomFill(x, { seed: 4 }));
    expect(ms).toBeGreaterThanOrEqual(0);
    await gpu.sync(); // no error left behind by the abandoned pass
  });

  it("versions needing a feature the device lacks are refused, and the others still measured and picked", async () => {
    const plain = await Gpu.create({ poison: false, disableFeatures: ["subgroups"] });
    try {
      const results = await runKernelBench(plain, {
        cases: kernelCases({ dtype: "f32", sizes: "tiny" }),
        dtype: "f32",
        limits: { bandwidthGBps: 1, computeGFlops: 1 } as DeviceLimits, // only the ceilings are read
        quick: true,
        only: ["matmul", "decode", "lm_head"],
        timing: { repeats: 1, minSampleMs: 0 },
      });
      expect(results.length).toBeGreaterThan(0);
      const refused = results.filter((r) => r.status === "refused");
      expect(refused.map((r) => r.version)).toEqual(expect.arrayContaining(["matvec_v2_subgroup"]));
      for (const r of refused) expect(r.error).toMatch(/needs a feature this device lacks/);
      expect(results.some((r) => r.status === "failed")).toBe(false);
      expect(results.filter((r) => r.picked)).toHaveLength(1);
    } finally {
      plain.destroy();
    }
  });
});
