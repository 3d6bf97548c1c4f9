/**
 * The whole CLIPImageProcessor pipeline against transformers 4.40's pixel_values for every
 * golden image, LLaVA's pad-to-square against PIL, and the pieces (output size, crop, stacking).
 *
 * Tolerance: mean |diff| <= 0.01 and max <= 0.1 in normalized units, the closeness a different
 * bicubic would be held to. This pipeline is the same algorithm in the same arithmetic (PIL's
 * fixed-point resampling, numpy's float64 rescale and float32 normalize), so it is also
 * required to give the same float32 bits, and that is asserted too.
 */
import { join } from "node:path";
import { readFile } from "node:fs/promises";
import { describe, expect, it } from "vitest";
import { parsePreprocessorConfig, type PreprocessorConfig } from "../src/image/config.js";
import {
  centerCrop,
  expandToSquare,
  padColour,
  preprocessImage,
  preprocessImages,
  preprocessRgb,
  resizeOutputSize,
  stackPixelValues,
} from "../src/image/preprocess.js";
import { ImageError } from "../src/image/decode.js";
import { createRgbImage } from "../src/image/rgb.js";
import { readAllFloat32 } from "./safetensors_helpers.js";

const FIXTURES = "test/fixtures/preprocess";
const spec = JSON.parse(await readFile(join(FIXTURES, "preprocess.json"), "utf8"));
const config = parsePreprocessorConfig(spec.preprocessor_config, "preprocess.json");
const golden = await readAllFloat32(join(FIXTURES, "golden_u8.safetensors"));

/** The golden pixel_values of one image: table[c][byte] for each stored byte (see make_fixtures.py). */
function goldenPixelValues(tensor: string): Float32Array {
  const bytes = golden.get(tensor)!.data;
  const table = golden.get("values")!.data;
  const plane = bytes.length / 3;
  return Float32Array.from(bytes, (b, i) => table[Math.floor(i / plane) * 256 + b]);
}

function compare(actual: Float32Array, expected: Float32Array) {
  let sum = 0;
  let max = 0;
  let differing = 0;
  for (let i = 0; i < expected.length; i++) {
    const d = Math.abs(actual[i] - expected[i]);
    sum += d;
    max = Math.max(max, d);
    if (!Object.is(actual[i], expected[i])) differing++;
  }
  return { mean: sum / expected.length, max, differing };
}

describe("preprocessImage matches transformers' CLIPImageProcessor (llava-1.5 config)", () => {
  for (const [file, info] of Object.entries<{ tensor: string; shape: number[] }>(spec.images)) {
    it(file, async () => {
      const expected = goldenPixelValues(info.tensor);
      expect(expected.some(Number.isNaN)).toBe(false);
      const out = await preprocessImage(join(FIXTURES, "images", file), config);
      expect(out.shape).toEqual(info.shape);
      const { mean, max, differing } = compare(out.data, expected);
      console.log(`${file}: mean |diff| ${mean}, max ${max}, ${differing} of ${expected.length} values differ`);
      expect(mean).toBeLessThanOrEqual(0.01);
      expect(max).toBeLessThanOrEqual(0.1);
      expect(differing).toBe(0);
    });
  }
});

describe("pad to square (LLaVA's expand2square)", () => {
  const small = parsePreprocessorConfig({ ...spec.preprocessor_config, size: { shortest_edge: 64 }, crop_size: 64 }, "small config");
  it("fills with int(mean * 255)", () => expect(padColour(config)).toEqual([122, 116, 104]));

  it("matches PIL's expand2square followed by the same pipeline", async () => {
    const references = await readAllFloat32(join(FIXTURES, "pad_to_square.safetensors"));
    expect(references.size).toBe(3);
    for (const [file, reference] of references) {
      const out = await preprocessImage(join(FIXTURES, "images", file), small, { padToSquare: true });
      expect(out.shape).toEqual(reference.shape);
      expect(compare(out.data, reference.data).differing, file).toBe(0);
      // Without padding the wide and tall images come out different (cropped instead).
      const cropped = await preprocessImage(join(FIXTURES, "images", file), small);
      expect(compare(cropped.data, reference.data).differing).toBeGreaterThan(0);
    }
  });

  it("centres with the offset rounded down and leaves square images alone", () => {
    const image = { width: 2, height: 1, data: Uint8Array.from([1, 2, 3, 4, 5, 6]) };
    expect(Array.from(expandToSquare(image, [9, 8, 7]).data)).toEqual([1, 2, 3, 4, 5, 6, 9, 8, 7, 9, 8, 7]);
    const tall = { width: 1, height: 4, data: new Uint8Array(12).fill(1) };
    const square = expandToSquare(tall, [0, 0, 0]);
    expect([square.width, square.height]).toEqual([4, 4]);
    expect(Array.from(square.data.subarray(0, 12))).toEqual([0, 0, 0, 1, 1, 1, 0, 0, 0, 0, 0, 0]);
    const already = { width: 3, height: 3, data: new Uint8Array(27) };
    expect(expandToSquare(already, [1, 1, 1])).toBe(already);
  });
});

describe("resizeOutputSize", () => {
  it("truncates the long edge as Python's int() does (101x397 → 336x1320, not 1321)", () => {
    expect(resizeOutputSize(101, 397, { shortestEdge: 336 })).toEqual({ width: 336, height: 1320 });
    expect(resizeOutputSize(731, 75, { shortestEdge: 336 })).toEqual({ width: 3274, height: 336 }); // 3274.88
    expect(resizeOutputSize(336, 336, { shortestEdge: 336 })).toEqual({ width: 336, height: 336 });
    expect(resizeOutputSize(640, 480, { height: 10, width: 20 })).toEqual({ width: 20, height: 10 });
  });
});

describe("centerCrop", () => {
  /** A w x h image whose pixel (x, y) is [x + 1, y + 1, 7]. */
  const coordinates = (width: number, height: number) => {
    const data = new Uint8Array(width * height * 3);
    for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) data.set([x + 1, y + 1, 7], (y * width + x) * 3);
    return { width, height, data };
  };
  const at = (image: { width: number; data: Uint8Array }, x: number, y: number) => Array.from(image.data.subarray((y * image.width + x) * 3, (y * image.width + x) * 3 + 3));

  it("starts the window at floor((size - crop) / 2)", () => {
    const out = centerCrop(coordinates(7, 6), 4, 3);
    expect([out.width, out.height]).toEqual([4, 3]);
    expect(at(out, 0, 0)).toEqual([2, 2, 7]);
    expect(at(out, 3, 2)).toEqual([5, 4, 7]);
  });

  it("pads a smaller image with zeros, centred, and keeps the crop size for odd differences", () => {
    const out = centerCrop(coordinates(3, 3), 8, 8);
    expect([out.width, out.height]).toEqual([8, 8]);
    // Padding ceil(5 / 2) = 3 before, 2 after.
    expect(at(out, 2, 2)).toEqual([0, 0, 0]);
    expect(at(out, 3, 3)).toEqual([1, 1, 7]);
    expect(at(out, 5, 5)).toEqual([3, 3, 7]);
    expect(at(out, 6, 6)).toEqual([0, 0, 0]);
  });

  it("pads one dimension and crops the other", () => {
    const out = centerCrop(coordinates(10, 2), 4, 4);
    expect(at(out, 0, 0)).toEqual([0, 0, 0]);
    expect(at(out, 0, 1)).toEqual([4, 1, 7]);
    expect(at(out, 3, 2)).toEqual([7, 2, 7]);
    expect(at(out, 3, 3)).toEqual([0, 0, 0]);
  });
});

describe("config flags", () => {
  const image = { width: 2, height: 1, data: Uint8Array.from([0, 128, 255, 10, 20, 30]) };
  const flags = (overrides: Record<string, unknown>): PreprocessorConfig =>
    parsePreprocessorConfig({ do_resize: false, do_center_crop: false, ...overrides }, "flags");

  it("rescales in float64 then stores float32, and normalizes in float32", () => {
    const out = preprocessRgb(image, flags({}));
    expect(out.shape).toEqual([3, 1, 2]);
    const x = Math.fround(128 / 255);
    expect(out.data[2]).toBe(Math.fround(Math.fround(x - Math.fround(0.4578275)) / Math.fround(0.26130258)));
  });

  it("skips rescale and normalize when told", () => {
    expect(Array.from(preprocessRgb(image, flags({ do_rescale: false, do_normalize: false })).data)).toEqual([0, 10, 128, 20, 255, 30]);
    expect(preprocessRgb(image, flags({ do_normalize: false })).data[4]).toBe(Math.fround(255 * (1 / 255)));
  });

  it("refuses a non-RGB image when do_convert_rgb is false", async () => {
    const noConvert = parsePreprocessorConfig({ ...spec.preprocessor_config, do_convert_rgb: false }, "no-convert.json");
    await expect(preprocessImage(join(FIXTURES, "images", "grey_300x200.png"), noConvert)).rejects.toThrow(ImageError);
    await expect(preprocessImage(join(FIXTURES, "images", "alpha_128x96.png"), noConvert)).rejects.toThrow(
      /alpha_128x96\.png: has 4 channels and no-convert\.json sets do_convert_rgb false/,
    );
    const rgb = await preprocessImage(join(FIXTURES, "images", "small_20x30.png"), noConvert);
    expect(rgb.shape).toEqual([3, 336, 336]);
  });
});

describe("batches", () => {
  it("stacks images into [N, 3, H, W] in order", async () => {
    const files = ["small_20x30.png", "grey_300x200.png"].map((f) => join(FIXTURES, "images", f));
    const batch = await preprocessImages(files, config);
    expect(batch.shape).toEqual([2, 3, 336, 336]);
    const second = goldenPixelValues("grey_300x200");
    expect(compare(batch.data.subarray(second.length), second).differing).toBe(0);
  });

  it("refuses to stack images of different sizes, or none", () => {
    const a = { data: new Float32Array(12), shape: [3, 2, 2] as [3, number, number] };
    const b = { data: new Float32Array(18), shape: [3, 2, 3] as [3, number, number] };
    expect(() => stackPixelValues([a, b])).toThrow(/image 1 is 2x3 but image 0 is 2x2/);
    expect(() => stackPixelValues([])).toThrow(/no images/);
  });

  it("names the file that failed", async () => {
    await expect(preprocessImages([join(FIXTURES, "images", "small_20x30.png"), join(FIXTURES, "bad", "tiny.bmp")], config)).rejects.toThrow(
      /tiny\.bmp: not an image in a supported format/,
    );
  });
});

describe("images that preprocessing would grow past the pixel limit", () => {
  // 2 x 50000 pixels decode fine, but resizing the short edge to 336 would give 336 x 8400000,
  // and padding to a square 50000 x 50000: both are refused before anything is allocated.
  const thin = createRgbImage(2, 50000);

  it("refuses a resize whose output is over the limit, naming the config", () => {
    expect(() => preprocessRgb(thin, config)).toThrow(ImageError);
    expect(() => preprocessRgb(thin, config)).toThrow(/resizing \(preprocess\.json\) would make the image 336x8400000/);
  });

  it("refuses padding to a square that is over the limit", () => {
    expect(() => preprocessRgb(thin, config, { padToSquare: true })).toThrow(/padding to a square .* 50000x50000/);
  });

  it("still takes a wide image whose resized size is within the limit", () => {
    expect(preprocessRgb(createRgbImage(100, 20), config).shape).toEqual([3, 336, 336]);
  });
});
