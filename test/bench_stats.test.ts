/** The benchmarks' arithmetic: statistics, FLOP and byte accounting, the roofline, case selection. */
import { describe, expect, it } from "vitest";
import { kernelCases } from "../src/bench/cases.js";
import { attentionCost, elementwiseCost, matmulCost, normCost, visibleScores } from "../src/bench/cost.js";
import { decoderWeightBytes, imageFlops, prefillFlops } from "../src/bench/e2e.js";
import { roofline, selectCases } from "../src/bench/kernels.js";
import { shapeConfig } from "../src/bench/shapes.js";
import { median, summarize } from "../src/bench/stats.js";

describe("statistics", () => {
  it("median of odd and even counts, unsorted", () => {
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 3, 2])).toBe(2.5);
    expect(median([7])).toBe(7);
  });

  it("summary: median, extremes, and the median absolute deviation as spread", () => {
    // Deviations from the median 3: 2, 1, 0, 1, 97 → their median is 1; the outlier does not move it.
    expect(summarize([1, 2, 3, 4, 100])).toEqual({ n: 5, median: 3, min: 1, max: 100, mad: 1, spread: 1 / 3 });
    expect(summarize([5])).toEqual({ n: 1, median: 5, min: 5, max: 5, mad: 0, spread: 0 });
  });

  it("refuses no samples or non-finite ones", () => {
    expect(() => summarize([])).toThrow(/no samples/);
    expect(() => summarize([1, Number.NaN])).toThrow(/finite/);
    expect(() => median([])).toThrow(RangeError);
  });
});

describe("FLOPs and bytes", () => {
  it("matmul: 2·M·N·K, and A, B, C (and the bias) moved once", () => {
    expect(matmulCost(2, 3, 4, { a: "f32", b: "f32", c: "f32" })).toEqual({ flops: 48, bytes: (8 + 12 + 6) * 4 });
    // f16 weights and bias: B and bias at 2 bytes; the bias adds one FLOP per output.
    expect(matmulCost(2, 3, 4, { a: "f32", b: "f16", c: "f32", bias: true })).toEqual({ flops: 54, bytes: 8 * 4 + 12 * 2 + 6 * 4 + 3 * 2 });
  });

  it("attention: 4·D FLOPs per visible score per head, the causal triangle counted exactly", () => {
    const prefill = { queries: 3, heads: 2, kvHeads: 1, headDim: 4, kvLength: 3, causal: true };
    expect(visibleScores(prefill)).toBe(1 + 2 + 3);
    // q and out: 3·2·4 f32 each; k and v: 3 positions × 1 KV head × 4, f16.
    expect(attentionCost(prefill, { q: "f32", kv: "f16", out: "f32" })).toEqual({ flops: 4 * 2 * 4 * 6, bytes: 24 * 4 * 2 + 2 * 12 * 2 });
    // Decoding one token at position 4 sees all 5 keys; without the mask every query sees every key.
    expect(visibleScores({ ...prefill, queries: 1, kvLength: 5 })).toBe(5);
    expect(visibleScores({ ...prefill, causal: false })).toBe(9);
    expect(visibleScores({ ...prefill, queries: 2, kvLength: 5, queryOffset: 1 })).toBe(2 + 3);
  });

  it("norms and elementwise kernels", () => {
    expect(normCost(2, 3, 4, "f32", ["f16"], "f32")).toEqual({ flops: 24, bytes: 2 * 3 * 8 + 3 * 2 });
    expect(elementwiseCost(10, 1, ["f32", "f32"], "f32")).toEqual({ flops: 10, bytes: 120 });
  });

  it("the kernel cases carry the real sizes' counts", () => {
    const cases = kernelCases({ dtype: "f16" });
    const find = (model: string, phase: string, op: string, what: string) =>
      cases.find((c) => c.model === model && c.phase === phase && c.op === op && c.what.includes(what))!;
    const up = find("LLaMA-7B", "decode", "matmul", "up_proj");
    expect(up.shape).toBe("1×11008×4096");
    expect(up.cost).toEqual({ flops: 2 * 11008 * 4096, bytes: 4096 * 4 + 11008 * 4096 * 2 + 11008 * 4 });
    const fc1 = find("CLIP ViT-L/14-336", "image", "matmul", "fc1");
    expect(fc1.cost.flops).toBe(2 * 577 * 4096 * 1024 + 577 * 4096);
    const clipAttention = find("CLIP ViT-L/14-336", "image", "attention", "16 heads");
    expect(clipAttention.cost.flops).toBe(4 * 16 * 64 * 577 * 577);
    const decodeAttention = find("TinyLlama-1.1B", "decode", "attention", "4 KV");
    // One query over 1024 cached keys; 4 KV heads of 64 in f16 read once each for k and v.
    expect(decodeAttention.cost).toEqual({ flops: 4 * 32 * 64 * 1024, bytes: 32 * 64 * 8 + 2 * 1024 * 4 * 64 * 2 });
  });

  it("end to end: the decoder's weight bytes and the FLOPs of a prefill and an image", () => {
    const config = shapeConfig("llava-1.5-7b");
    if (config.kind !== "llava") throw new Error("expected a llava config");
    // 32 layers of 4·4096² + 3·4096·11008, the final norm, the LM head; not the embedding table.
    const layer = 4 * 4096 * 4096 + 3 * 4096 * 11008 + 2 * 4096;
    expect(decoderWeightBytes(config, "f16")).toBe(2 * (32 * layer + 4096 + 32064 * 4096));
    const perLayer = 2 * 640 * (4 * 4096 * 4096 + 3 * 4096 * 11008) + 4 * 4096 * ((640 * 641) / 2);
    expect(prefillFlops(config.text, 640)).toBe(32 * perLayer + 2 * 32064 * 4096);
    const visionLayer = 2 * 577 * (4 * 1024 * 1024 + 2 * 1024 * 4096) + 4 * 1024 * 577 * 577;
    const expected = 23 * visionLayer + 2 * 576 * 1024 * 3 * 14 * 14 + 2 * 576 * (1024 * 4096 + 4096 * 4096);
    expect(imageFlops(config, 576)).toBe(expected);
  });
});

describe("the roofline", () => {
  const limits = { bandwidthGBps: 10, computeGFlops: 100 }; // ridge at 10 FLOP/byte

  it("below the ridge memory binds, above it arithmetic", () => {
    expect(roofline(1e9, 1e9, 1, limits)).toEqual({ gflops: 1, gbps: 1, bound: "memory", fraction: 0.1 });
    expect(roofline(1e12, 1e9, 20, limits)).toEqual({ gflops: 50, gbps: 0.05, bound: "compute", fraction: 0.5 });
  });
});

describe("--only", () => {
  const cases = kernelCases({ dtype: "f32", sizes: "tiny" });

  it("keeps the cases every name matches, with all their versions", () => {
    const selected = selectCases(cases, ["matmul", "decode"]);
    expect(selected.length).toBeGreaterThan(0);
    for (const { kase, versions } of selected) {
      expect([kase.op, kase.phase]).toEqual(["matmul", "decode"]);
      expect(versions).toEqual(kase.versionNames);
    }
  });

  it("a version's name keeps only that version", () => {
    const selected = selectCases(cases, ["v2_tiled"]);
    expect(selected.map((s) => s.kase.op)).toEqual(selected.map(() => "matmul"));
    expect(selected.every((s) => s.versions.length === 1 && s.versions[0] === "v2_tiled")).toBe(true);
    expect(selectCases(cases, ["no such kernel"])).toEqual([]);
  });
});
