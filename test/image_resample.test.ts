/**
 * The bicubic resampler against Pillow 9.4's `Image.resize(size, Image.BICUBIC)`: it must give
 * the same bytes, not just close ones (fixtures: test/fixtures/preprocess/make_fixtures.py).
 */
import { describe, expect, it } from "vitest";
import { passWeights, resizeBicubic } from "../src/image/resample.js";
import { readAllFloat32 } from "./safetensors_helpers.js";
import { rng, SEED } from "./helpers.js";

const cases = await readAllFloat32("test/fixtures/preprocess/resize_cases.safetensors");

/** A [h, w, 3] fixture tensor as an RgbImage. */
function image(tensor: { shape: number[]; data: Float32Array }) {
  const [height, width] = tensor.shape;
  return { width, height, data: Uint8Array.from(tensor.data) };
}

describe("resizeBicubic matches PIL bit for bit", () => {
  const names = [...cases.keys()].filter((n) => n.endsWith(".input")).map((n) => n.slice(0, -".input".length));
  it("has fixture cases", () => expect(names.length).toBeGreaterThanOrEqual(40));
  for (const name of names) {
    const input = image(cases.get(`${name}.input`)!);
    const expected = image(cases.get(`${name}.output`)!);
    it(`case ${name}: ${input.width}x${input.height} -> ${expected.width}x${expected.height}`, () => {
      const out = resizeBicubic(input, expected.width, expected.height);
      expect([out.width, out.height]).toEqual([expected.width, expected.height]);
      let differing = 0;
      for (let i = 0; i < out.data.length; i++) if (out.data[i] !== expected.data[i]) differing++;
      expect(differing, "bytes that differ from PIL").toBe(0);
    });
  }
});

describe("passWeights", () => {
  it("sums each output pixel's fixed-point weights to one (2^22) within rounding", () => {
    for (const [inSize, outSize] of [[1024, 336], [20, 336], [7, 7], [1, 5], [5, 1], [1000, 3]]) {
      const { taps, count, weights } = passWeights(inSize, outSize);
      for (let i = 0; i < outSize; i++) {
        let sum = 0;
        for (let t = 0; t < count[i]; t++) sum += weights[i * taps + t];
        expect(Math.abs(sum - (1 << 22))).toBeLessThanOrEqual(count[i]);
      }
    }
  });

  it("widens the kernel by the scale when shrinking (antialiasing), not when enlarging", () => {
    expect(passWeights(1024, 336).taps).toBe(Math.ceil(2 * (1024 / 336)) * 2 + 1);
    expect(passWeights(100, 336).taps).toBe(5);
  });
});

describe("resizeBicubic", () => {
  it("copies an image resized to its own size", () => {
    const random = rng(SEED);
    const data = Uint8Array.from({ length: 5 * 4 * 3 }, () => Math.floor(random() * 256));
    const out = resizeBicubic({ width: 5, height: 4, data }, 5, 4);
    expect(out.data).toEqual(data);
    expect(out.data).not.toBe(data);
  });

  it("refuses a size that is not a positive integer", () => {
    const one = { width: 1, height: 1, data: new Uint8Array(3) };
    expect(() => resizeBicubic(one, 0, 5)).toThrow(/0x5 is not a positive integer size/);
    expect(() => resizeBicubic(one, 2.5, 5)).toThrow(/positive integer/);
  });

  it("resizes 1024x1024 to 336x336 in well under a second", () => {
    const random = rng(SEED);
    const data = Uint8Array.from({ length: 1024 * 1024 * 3 }, () => Math.floor(random() * 256));
    const start = performance.now();
    resizeBicubic({ width: 1024, height: 1024, data }, 336, 336);
    const ms = performance.now() - start;
    console.log(`1024x1024 -> 336x336 bicubic: ${ms.toFixed(0)} ms`);
    expect(ms).toBeLessThan(1000);
  });
});
