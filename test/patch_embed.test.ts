import { describe, expect, it } from "vitest";
import { patchEmbed, patchEmbedReference } from "../src/kernels/patch_embed.js";
import { ShapeError } from "../src/tensor/errors.js";
import type { DType } from "../src/tensor/dtype.js";
import type { Gpu } from "../src/tensor/gpu.js";
import { expectClose, floatDtypes, randn, rng, testGpu, TOLERANCE, upload } from "./helpers.js";

interface Case {
  images: number;
  channels: number;
  height: number;
  width: number;
  patch: number;
  hidden: number;
}

/**
 * Random pixels and weights for one case. Weights are scaled by 1/sqrt(C·P·P), as trained
 * ones roughly are, so a patch projection is O(1) like its terms' sum of squares and the
 * relative f32 tolerance applies to it as it does to any dot product of a few thousand terms.
 */
function makeInputs(gpu: Gpu, random: () => number, c: Case, weightDtype: DType, withBias: boolean) {
  const depth = c.channels * c.patch * c.patch;
  const tokens = 1 + Math.floor(c.height / c.patch) * Math.floor(c.width / c.patch);
  const pixels = upload(gpu, randn(random, c.images * c.channels * c.height * c.width), [c.images, c.channels, c.height, c.width], "f32");
  const weight = upload(gpu, randn(random, c.hidden * depth, 1 / Math.sqrt(depth)), [c.hidden, c.channels, c.patch, c.patch], weightDtype);
  const classEmbedding = upload(gpu, randn(random, c.hidden), [c.hidden], weightDtype);
  const positionEmbedding = upload(gpu, randn(random, tokens * c.hidden), [tokens, c.hidden], weightDtype);
  const bias = withBias ? upload(gpu, randn(random, c.hidden), [c.hidden], weightDtype) : undefined;
  const weights = {
    patchWeight: weight.t,
    classEmbedding: classEmbedding.t,
    positionEmbedding: positionEmbedding.t,
    ...(bias ? { patchBias: bias.t } : {}),
  };
  const expected = patchEmbedReference({
    pixels: pixels.values,
    shape: [c.images, c.channels, c.height, c.width],
    weight: weight.values,
    patch: c.patch,
    hidden: c.hidden,
    bias: bias?.values,
    classEmbedding: classEmbedding.values,
    positionEmbedding: positionEmbedding.values,
  });
  return { pixels: pixels.t, weights, expected, tokens };
}

describe("patch_embed", async () => {
  const gpu = await testGpu();
  const random = rng();

  // Patch sizes 1, 3, 8, 14; images that are and are not multiples of the patch (the ragged
  // right and bottom edges are dropped); hidden sizes 1, 17, 129; one and three images;
  // token counts past one 64-row tile.
  const cases: Case[] = [
    { images: 1, channels: 3, height: 5, width: 4, patch: 1, hidden: 17 },
    { images: 3, channels: 1, height: 9, width: 10, patch: 1, hidden: 129 },
    { images: 3, channels: 3, height: 10, width: 13, patch: 3, hidden: 1 },
    { images: 1, channels: 3, height: 27, width: 29, patch: 3, hidden: 129 },
    { images: 3, channels: 3, height: 32, width: 32, patch: 8, hidden: 17 },
    { images: 1, channels: 2, height: 17, width: 30, patch: 8, hidden: 129 },
    { images: 1, channels: 3, height: 28, width: 28, patch: 14, hidden: 129 },
    { images: 3, channels: 3, height: 43, width: 31, patch: 14, hidden: 1 },
  ];

  for (const weightDtype of floatDtypes(gpu)) {
    for (const c of cases) {
      for (const withBias of [false, true]) {
        const name = `${c.images}x${c.channels}x${c.height}x${c.width}, P ${c.patch}, hidden ${c.hidden}`;
        it(`${weightDtype} weights, ${name}${withBias ? ", bias" : ""}`, async () => {
          const { pixels, weights, expected, tokens } = makeInputs(gpu, random, c, weightDtype, withBias);
          const out = patchEmbed(pixels, weights);
          expect(out.shape).toEqual([c.images, tokens, c.hidden]);
          expect(out.dtype).toBe("f32");
          // The reference uses the weights as the GPU holds them, so f16 weights with an f32
          // output still meet the f32 tolerance.
          expectClose(await out.read(), expected, TOLERANCE.f32, `patch_embed ${weightDtype}`);
        });
      }
    }

    it(`${weightDtype} weights, ViT-B/32-like: 2 images of 224px, P 32, hidden 96`, async () => {
      const c = { images: 2, channels: 3, height: 224, width: 224, patch: 32, hidden: 96 };
      const { pixels, weights, expected, tokens } = makeInputs(gpu, random, c, weightDtype, false);
      expect(tokens).toBe(50);
      expectClose(await patchEmbed(pixels, weights).read(), expected, TOLERANCE.f32, `ViT-B/32 ${weightDtype}`);
    });
  }

  if (gpu.hasF16) {
    it("f16 output", async () => {
      const c = { images: 2, channels: 3, height: 30, width: 33, patch: 8, hidden: 129 };
      const { pixels, weights, expected } = makeInputs(gpu, random, c, "f16", true);
      const out = patchEmbed(pixels, weights, "f16");
      expect(out.dtype).toBe("f16");
      expectClose(await out.read(), expected, TOLERANCE.f16, "patch_embed f16 out");
    });
  }

  it("rejects bad shapes before any dispatch", () => {
    const c = { images: 1, channels: 3, height: 16, width: 20, patch: 8, hidden: 5 };
    const { pixels, weights } = makeInputs(gpu, random, c, "f32", false);
    const tensor = (shape: number[], dtype: DType = "f32") => gpu.tensor(new Float32Array(shape.reduce((a, b) => a * b, 1)), shape, dtype);
    const before = gpu.dispatchCount;
    // 16x20 in 8x8 patches is 2x2 patches: 5 positions, not 6.
    expect(() => patchEmbed(pixels, { ...weights, positionEmbedding: tensor([6, 5]) })).toThrow(/has 6 positions, but .* = 5 tokens/);
    expect(() => patchEmbed(pixels, { ...weights, positionEmbedding: tensor([5, 4]) })).toThrow(/must be \[positions, 5\]/);
    expect(() => patchEmbed(pixels, { ...weights, classEmbedding: tensor([4]) })).toThrow(/class embedding .* must be \[5\]/);
    expect(() => patchEmbed(pixels, { ...weights, patchBias: tensor([1, 5]) })).toThrow(/patch bias .* must be \[5\]/);
    expect(() => patchEmbed(pixels, { ...weights, patchWeight: tensor([5, 1, 8, 8]) })).toThrow(/expects 1 channels/);
    expect(() => patchEmbed(pixels, { ...weights, patchWeight: tensor([5, 3, 8, 7]) })).toThrow(/\[hidden, channels, P, P\]/);
    expect(() => patchEmbed(pixels, { ...weights, patchWeight: tensor([5, 3, 17, 17]) })).toThrow(/smaller than one 17x17 patch/);
    expect(() => patchEmbed(pixels, { ...weights, patchWeight: tensor([5, 3, 0, 0]) })).toThrow(/is empty/);
    expect(() => patchEmbed(pixels.reshape([3, 16, 20]), weights)).toThrow(/must be \[images, channels, height, width\]/);
    expect(() => patchEmbed(tensor([1, 3, 16, 20], "i32"), weights)).toThrow(/pixels .* must be f32 or f16/);
    expect(() => patchEmbed(pixels, weights, "u32")).toThrow(ShapeError);
    expect(gpu.dispatchCount).toBe(before);
  });
});
