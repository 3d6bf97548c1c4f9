/**
 * The kernel benchmark checks what it times: every case's output against its float64
 * reference before timing, and a wrong version is reported with its worst error, never timed,
 * never the runtime's pick.
 */
import { describe, expect, it } from "vitest";
import { checkSample } from "../src/bench/case_checks.js";
import { kernelCases, type KernelCase } from "../src/bench/cases.js";
import { compareOutput, sampleIndices } from "../src/bench/check.js";
import { runKernelBench } from "../src/bench/kernels.js";
import type { DeviceLimits } from "../src/bench/limits.js";
import { kernelsMarkdown } from "../src/bench/report.js";
import { rooflineSvg } from "../src/bench/roofline.js";
import { scale } from "../src/kernels/elementwise.js";
import { uniform } from "../src/kernels/sample/index.js";
import { copyRows } from "../src/tensor/copy.js";
import type { DType } from "../src/tensor/dtype.js";
import { floatDtypes, testGpu } from "./helpers.js";

/** The ceilings, for the roofline fields and chart (the read kernel's line and f16's are left out). */
const LIMITS = { bandwidthGBps: 1, computeGFlops: 1, read: { value: 1 } } as DeviceLimits;
/** One timed run each: these tests are about the check, not the time. */
const TIMING = { repeats: 1, minRepeats: 1, minSampleMs: 0, budgetMs: 0 };

describe("the kernel benchmark's check", async () => {
  const gpu = await testGpu();
  const bench = (cases: KernelCase[], dtype: DType = "f32") => runKernelBench(gpu, { cases, dtype, limits: LIMITS, timing: TIMING });
  const tiny = kernelCases({ dtype: "f32", sizes: "tiny" });

  for (const dtype of floatDtypes(gpu)) {
    it(`every version of every case, ${dtype} storage at tiny sizes, is checked against its reference and right`, async () => {
      const cases = kernelCases({ dtype, sizes: "tiny" });
      const results = await bench(cases, dtype);
      expect(results).toHaveLength(cases.reduce((n, c) => n + c.versionNames.length, 0));
      for (const r of results) {
        const what = `${r.model} ${r.phase} ${r.op} ${r.what} ${r.shape} ${r.version}`;
        if (r.status === "refused") {
          expect(r.check, what).toBeNull();
          continue;
        }
        expect(r.status, `${what}: ${r.error}`).toBe("ok");
        expect(r.check, what).toMatchObject({ passed: true });
        expect(r.check!.compared, what).toBeGreaterThan(0);
        expect(r.check!.worst, what).toBeLessThanOrEqual(r.check!.bound);
      }
      // Every case had a version that ran, so every case's check was exercised.
      for (const c of cases) expect(results.some((r) => r.op === c.op && r.shape === c.shape && r.what === c.what && r.check)).toBe(true);
    });
  }

  it("a wrong version in place of the runtime's pick is reported wrong, not timed, not picked, and the table shows it", async () => {
    const kase = tiny.find((c) => c.op === "matmul" && c.phase === "prefill" && c.what === "mlp.gate_proj, up_proj")!;
    const pick = (await bench([kase])).find((r) => r.picked)!.version;
    // Rows rotated by one by the copy engine: the same kernel launches as the runtime's own
    // call (so without the check it would be the pick), and a wrong output. (Persistent: a
    // pooled buffer would be poisoned by a kernel launch.)
    const rotated = kase.withAlteredVersion(pick, pick, (out) => {
      const rows = out.dim(0);
      const moved = gpu.empty(out.shape, out.dtype, { persistent: true });
      copyRows(out, 1, moved, 0, rows - 1);
      copyRows(out, 0, moved, rows - 1, 1);
      return moved;
    });
    const results = await bench([rotated]);
    const wrong = results.find((r) => r.version === pick)!;
    expect(wrong).toMatchObject({ status: "wrong", time: null, picked: false, check: { passed: false } });
    expect(wrong.check!.worst).toBeGreaterThan(wrong.check!.bound);
    expect(wrong.error).toMatch(/not the reference's: err .* > .* at \[\d+, \d+\]/);
    expect(results.filter((r) => r.picked)).toHaveLength(0);
    for (const r of results.filter((r) => r.version !== pick)) expect(r.status).toMatch(/^(ok|refused)$/);
    const row = kernelsMarkdown(results)
      .split("\n")
      .find((line) => line.includes(`| ${pick} |`));
    expect(row).toMatch(/\| WRONG \(err [\d.e+-]+ > [\d.e+-]+ at \[\d+, \d+\]: .*\) \| - \|/);
    const chart = rooflineSvg(results, LIMITS, { title: "check" });
    expect(chart).not.toContain(`matmul ${pick},`);
    expect(chart).toContain(`matmul ${results.find((r) => r.status === "ok")!.version},`);
  });

  it("the roofline leaves out a rate that is not finite (a run timed at zero) instead of drawing axes to infinity", async () => {
    const kase = tiny.find((c) => c.op === "matmul" && c.phase === "prefill")!;
    const results = await bench([kase]);
    const ok = results.filter((r) => r.status === "ok");
    const untimeable = { ...ok[0], version: "instant", gflops: Infinity, gbps: Infinity };
    const chart = rooflineSvg([...ok, untimeable], LIMITS, { title: "zero time" });
    expect(chart).not.toContain("instant");
    expect((chart.match(/<title>/g) ?? []).length).toBe(ok.length);
  });

  it("an output off by 1e-4 relative fails the f32 tolerance, beside the right version", async () => {
    const kase = tiny.find((c) => c.op === "activation")!;
    const [right] = kase.versionNames;
    const results = await bench([kase.withAlteredVersion("scaled", right, (out) => scale(out, 1 + 1e-4))]);
    expect(results.find((r) => r.version === right)).toMatchObject({ status: "ok", check: { passed: true } });
    const scaled = results.find((r) => r.version === "scaled")!;
    expect(scaled).toMatchObject({ status: "wrong", time: null, check: { passed: false } });
    expect(scaled.check!.worst).toBeGreaterThan(scaled.check!.bound);
    expect(scaled.check!.worst).toBeLessThan(1e-3); // the error is the scaling's, and reported as such
  });

  describe("sampleToken's id", () => {
    // Two tokens and a u drawn from the stream: token 0 holds u + margin of the mass, so the
    // reference draws 0 and the boundary lies `margin` above u.
    const seed = 3;
    const u = uniform(seed, 0);
    const idCheck = async (margin: number, id: number, temperature = 1) => {
      const logits = gpu.tensor([Math.log(u + margin), Math.log(1 - u - margin)], [2]);
      return checkSample(logits, { temperature, seed, step: 0 }, gpu.tensor([id], [1], "u32"));
    };

    it("is the reference's, or its neighbour when u is within rounding of the boundary", async () => {
      expect(u).toBeGreaterThan(0.01);
      expect(u).toBeLessThan(0.99);
      expect(await idCheck(1e-2, 0)).toMatchObject({ passed: true, worst: 0 });
      expect(await idCheck(5e-7, 1)).toMatchObject({ passed: true });
      expect(await idCheck(1e-2, 1)).toMatchObject({ passed: false, worst: 1, bound: 0, at: "id 1 for 0" });
    });

    it("greedy allows no neighbour", async () => {
      const logits = gpu.tensor([0, 1e-3], [2]);
      const options = { temperature: 0, seed, step: 0 };
      expect(await checkSample(logits, options, gpu.tensor([1], [1], "u32"))).toMatchObject({ passed: true });
      expect(await checkSample(logits, options, gpu.tensor([0], [1], "u32"))).toMatchObject({ passed: false, at: "id 0 for 1" });
    });
  });
});

describe("sampling and comparing outputs", () => {
  it("sample indices: distinct, sorted, the first and last always, the same every time", () => {
    const picked = sampleIndices(1000, 8);
    expect(picked).toHaveLength(8);
    expect(new Set(picked).size).toBe(8);
    expect(picked).toEqual([...picked].sort((a, b) => a - b));
    expect([picked[0], picked[7]]).toEqual([0, 999]);
    expect(sampleIndices(1000, 8)).toEqual(picked);
    expect(sampleIndices(3, 8)).toEqual([0, 1, 2]);
  });

  it("names the element nearest its bound, and fails on NaN", () => {
    const check = compareOutput([1, 2.5, 3], [1, 2, 3.2], [0.1, 1, 0.1], (i) => `[${i}]`);
    expect(check).toMatchObject({ passed: false, compared: 3, at: "[2]: 3 for 3.2" });
    expect(check.worst).toBeCloseTo(0.2, 12);
    expect(compareOutput([1, 2], [1, 2.5], [0, 1], (i) => `[${i}]`)).toMatchObject({ passed: true, worst: 0.5, bound: 1 });
    expect(compareOutput([1, NaN], [1, 2], [1, 1], (i) => `[${i}]`)).toMatchObject({ passed: false, at: "[1]: NaN for 2" });
  });
});
