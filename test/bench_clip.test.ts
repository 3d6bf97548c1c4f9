/** bench clip: it runs (on the tiny shape) and counts what a pass does as the usual figures say. */
import { describe, expect, it } from "vitest";
import { clipImageFlops, clipShapeConfig, clipTextFlops, runClipBench } from "../src/bench/clip.js";
import { testGpu } from "./helpers.js";

describe("bench clip", async () => {
  const gpu = await testGpu();

  it("measures images, texts and search on random weights", async () => {
    const lines: string[] = [];
    const result = await runClipBench(gpu, "tiny", { quick: true, searchSizes: [1000, 5000], onProgress: (l) => lines.push(l) });
    expect(result.images.map((r) => r.batch)).toEqual([1, 4]);
    expect(result.texts.map((r) => [r.batch, r.tokens])).toEqual([[1, 16], [64, 16]]);
    expect(result.search.map((s) => s.vectors)).toEqual([1000, 5000]);
    for (const r of [...result.images, ...result.texts]) expect(r.perSecond).toBeGreaterThan(0);
    for (const s of result.search) expect(s.ms.median).toBeGreaterThan(0);
    expect(lines.some((l) => l.startsWith("search over 5000 vectors of 16"))).toBe(true);
  });

  it("counts FLOPs as the published figures (ViT-B/32 at 224: 4.4 G multiply-adds an image)", () => {
    const b32 = clipShapeConfig("clip-vit-base-patch32");
    expect(clipImageFlops(b32) / 2e9).toBeGreaterThan(4.2);
    expect(clipImageFlops(b32) / 2e9).toBeLessThan(4.6);
    // ViT-L/14 at 224: about 78 G multiply-adds (timm's count for vit_large_patch14_clip_224).
    const l14 = clipShapeConfig("clip-vit-large-patch14");
    expect(clipImageFlops(l14) / 2e9).toBeGreaterThan(75);
    expect(clipImageFlops(l14) / 2e9).toBeLessThan(82);
    // A text costs about tokens × 2 × parameters of the tower.
    expect(clipTextFlops(b32, 77) / 2e9).toBeGreaterThan(2.9);
    expect(clipTextFlops(b32, 77) / 2e9).toBeLessThan(3.1);
  });
});
