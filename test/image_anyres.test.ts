/**
 * LLaVA-NeXT's anyres preprocessing (LlavaNextImageProcessor) against transformers 4.49's output
 * for the tiny-llava-next-a golden: canvas choice, resize and padding, tile grid, and the tiles
 * themselves bit for bit; plus hand-made canvas choices and the config's image_grid_pinpoints.
 */
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import command from "../src/cli/preprocess.js";
import { UsageError } from "../src/cli/command.js";
import {
  anyresGrid,
  fitInto,
  preprocessAnyres,
  preprocessAnyresImage,
  preprocessAnyresImages,
  selectBestResolution,
  stackAnyresPixels,
} from "../src/image/anyres.js";
import {
  defaultPreprocessorConfig,
  LLAVA_NEXT_DEFAULT_PINPOINTS,
  loadPreprocessorConfig,
  parsePreprocessorConfig,
  PreprocessorConfigError,
} from "../src/image/config.js";
import { ImageError } from "../src/image/decode.js";
import { createRgbImage } from "../src/image/rgb.js";
import { SafetensorsFile } from "../src/weights/safetensors.js";
import { runCommand } from "./helpers.js";
import { readAllFloat32 } from "./safetensors_helpers.js";

const GOLDEN = "test/fixtures/golden/tiny-llava-next-a";
const golden = JSON.parse(await readFile(join(GOLDEN, "golden.json"), "utf8"));
const config = await loadPreprocessorConfig(join(GOLDEN, "model"));
const pinpoints = config.anyres!.gridPinpoints;
const inputs = await readAllFloat32(join(GOLDEN, "inputs.safetensors"));
const expectedPixels = inputs.get("pixel_values")!;
const imageFiles: string[] = golden.images.map((image: { file: string }) => join(GOLDEN, image.file));

const dir = await mkdtemp(join(tmpdir(), "wgsl-vlm-anyres-"));
afterAll(() => rm(dir, { recursive: true, force: true }));

/** The float32 bits, so that -0 and 0 (and any NaN) count as different. */
const bits = (values: Float32Array) => new Uint32Array(values.buffer, values.byteOffset, values.length);
function differing(actual: Float32Array, expected: Float32Array): number {
  expect(actual.length).toBe(expected.length);
  const a = bits(actual);
  const e = bits(expected);
  let count = 0;
  for (let i = 0; i < e.length; i++) if (a[i] !== e[i]) count++;
  return count;
}
const TILE = 3 * 32 * 32;
/** Image i's slot of the golden [2, 5, 3, 32, 32] pixel_values. */
const goldenImage = (i: number) => expectedPixels.data.subarray(i * 5 * TILE, (i + 1) * 5 * TILE);

describe("the golden config", () => {
  it("is read as LlavaNextImageProcessor with its pinpoints and do_pad", () => {
    expect(config.anyres).toEqual({
      gridPinpoints: [
        [32, 64],
        [64, 32],
        [64, 64],
        [96, 32],
        [32, 96],
      ],
      doPad: true,
    });
    expect(config).toMatchObject({ size: { shortestEdge: 32 }, cropSize: { height: 32, width: 32 } });
    expect(expectedPixels.shape).toEqual([2, 5, 3, 32, 32]);
  });
});

describe("canvas and grid match golden.json", () => {
  for (const image of golden.images) {
    it(image.file, () => {
      const { height, width } = image;
      expect(selectBestResolution(height, width, pinpoints)).toEqual(image.best_resolution_hw);
      const grid = anyresGrid(height, width, pinpoints, 32);
      expect([grid.rows, grid.cols]).toEqual(image.tile_grid_rows_cols);
      expect(grid.canvas).toEqual(image.best_resolution_hw);
      expect(1 + grid.rows * grid.cols).toBe(image.patches_with_base);
      const fitted = fitInto(height, width, grid.canvas);
      expect([fitted.height, fitted.width]).toEqual(image.resized_hw);
      const [canvasHeight, canvasWidth] = grid.canvas;
      expect([Math.floor((canvasHeight - fitted.height) / 2), Math.floor((canvasWidth - fitted.width) / 2)]).toEqual(image.pad_top_left);
    });
  }
});

describe("selectBestResolution by hand", () => {
  it("prefers the canvas that shows the most pixels", () => {
    // 300x10 (tall): [96, 32] shows 3 * 96 = 288 pixels at scale 0.32; the others 128 or 32.
    expect(selectBestResolution(300, 10, pinpoints)).toEqual([96, 32]);
    expect(selectBestResolution(10, 300, pinpoints)).toEqual([32, 96]);
  });

  it("breaks a tie in shown pixels by the least waste, then by list order", () => {
    // A 32x32 image shows all 1024 pixels on each; [32, 32] wastes nothing.
    expect(selectBestResolution(32, 32, [[64, 64], [32, 64], [32, 32]])).toEqual([32, 32]);
    // Same effective and same waste: the first listed wins.
    expect(selectBestResolution(32, 32, [[32, 64], [64, 32]])).toEqual([32, 64]);
    expect(selectBestResolution(32, 32, [[64, 32], [32, 64]])).toEqual([64, 32]);
  });

  it("takes the least wasteful canvas for an image smaller than every pinpoint, and scales it up", () => {
    // 10x20 shows all its 200 pixels on every canvas; [32, 64] and [64, 32] waste 1848, [64, 64] 3896.
    expect(selectBestResolution(10, 20, pinpoints)).toEqual([32, 64]);
    expect(fitInto(10, 20, [32, 64])).toEqual({ height: 32, width: 64 });
    const tiles = preprocessAnyres(createRgbImage(20, 10, [200, 100, 50]), config);
    expect(tiles.shape).toEqual([3, 3, 32, 32]);
    expect(tiles.grid).toEqual({ rows: 1, cols: 2 });
  });

  it("handles extreme aspect ratios (nothing shown anywhere: the least waste, first listed)", () => {
    // 1x10000: int(1 * scale) is 0 on every canvas, so effective is 0 and waste decides.
    expect(selectBestResolution(1, 10000, pinpoints)).toEqual([32, 64]);
    expect(selectBestResolution(10000, 1, pinpoints)).toEqual([32, 64]);
    expect(selectBestResolution(1, 10000, [[64, 64], [96, 32], [32, 96]])).toEqual([96, 32]);
    // The short side is still at least one pixel: ceil of a positive number.
    expect(fitInto(1, 10000, [32, 64])).toEqual({ height: 1, width: 64 });
    const tiles = preprocessAnyres(createRgbImage(10000, 1, [255, 255, 255]), config);
    expect(tiles.shape).toEqual([3, 3, 32, 32]);
    expect(tiles.imageSize).toEqual({ height: 1, width: 10000 });
  });

  it("refuses bad sizes and empty lists", () => {
    expect(() => selectBestResolution(0, 10, pinpoints)).toThrow(/positive whole pixels/);
    expect(() => selectBestResolution(10, 10, [])).toThrow(/no pinpoints/);
    expect(() => anyresGrid(10, 10, [[48, 64]], 32)).toThrow(/not a whole number of 32-pixel tiles/);
  });
});

describe("preprocessAnyres matches transformers' pixel_values bit for bit", () => {
  imageFiles.forEach((file, i) => {
    it(file, async () => {
      const out = await preprocessAnyresImage(file, config);
      const { width, height } = golden.images[i];
      expect(out.imageSize).toEqual({ height, width });
      expect(out.shape).toEqual([golden.images[i].patches_with_base, 3, 32, 32]);
      const expected = goldenImage(i);
      expect(differing(out.data, expected.subarray(0, out.data.length))).toBe(0);
      // The rest of the slot is batch padding: zero tiles.
      expect(expected.subarray(out.data.length).every((v) => Object.is(v, 0))).toBe(true);
    });
  });

  it("batches them as transformers does, zero tiles padding the shorter image", async () => {
    const batch = await preprocessAnyresImages(imageFiles, config);
    expect(batch.shape).toEqual([2, 5, 3, 32, 32]);
    expect(differing(batch.data, expectedPixels.data)).toBe(0);
    const file = await SafetensorsFile.open(join(GOLDEN, "inputs.safetensors"));
    try {
      expect(Array.from(batch.imageSizes, Number)).toEqual((await file.readIntegers("image_sizes")).data);
    } finally {
      await file.close();
    }
  });

  it("refuses to batch different tile counts without do_pad", async () => {
    const each = await Promise.all(imageFiles.map((f) => preprocessAnyresImage(f, config)));
    expect(() => stackAnyresPixels(each, { doPad: false })).toThrow(/image 1 has 4 tiles and another 5; with do_pad false/);
    expect(stackAnyresPixels([each[0], each[0]], { doPad: false }).shape).toEqual([2, 5, 3, 32, 32]);
  });
});

describe("padding and tiling", () => {
  /** Tiles that hold the bytes themselves (no rescale or normalize). */
  const bytesJson = () => ({ image_processor_type: "LlavaNextImageProcessor", size: 32, crop_size: 32, do_rescale: false, do_normalize: false });
  const bytes = parsePreprocessorConfig({ ...bytesJson(), image_grid_pinpoints: [[32, 32]] }, "bytes.json");
  /** Tile t's channel 0 at (x, y). */
  const at = (data: Float32Array, t: number, x: number, y: number) => data[t * TILE + y * 32 + x];

  it("gives an odd difference's extra row to the bottom (current transformers, not 4.49's short canvas)", () => {
    // 15x7 on a 32x32 canvas: 32x15 after resizing, 17 rows of padding: 8 on top, 9 below.
    expect(fitInto(7, 15, [32, 32])).toEqual({ height: 15, width: 32 });
    const out = preprocessAnyres(createRgbImage(15, 7, [200, 200, 200]), bytes);
    expect(out.shape).toEqual([2, 3, 32, 32]);
    expect(at(out.data, 1, 0, 7)).toBe(0);
    expect(at(out.data, 1, 0, 8)).toBe(200);
    expect(at(out.data, 1, 31, 22)).toBe(200);
    expect(at(out.data, 1, 0, 23)).toBe(0);
    // The base tile is the whole image squashed, no padding.
    expect(at(out.data, 0, 0, 0)).toBe(200);
    expect(at(out.data, 0, 31, 31)).toBe(200);
  });

  it("cuts the canvas row by row after the base tile", () => {
    const grid = parsePreprocessorConfig({ ...bytesJson(), image_grid_pinpoints: [[64, 64]] }, "grid.json");
    // A 64x64 image whose quadrants are 10, 20 (top) and 30, 40 (bottom).
    const image = createRgbImage(64, 64);
    for (let y = 0; y < 64; y++) for (let x = 0; x < 64; x++) image.data.fill(10 + 10 * ((x >= 32 ? 1 : 0) + (y >= 32 ? 2 : 0)), (y * 64 + x) * 3, (y * 64 + x) * 3 + 3);
    const out = preprocessAnyres(image, grid);
    expect(out.grid).toEqual({ rows: 2, cols: 2 });
    expect([1, 2, 3, 4].map((t) => at(out.data, t, 5, 5))).toEqual([10, 20, 30, 40]);
  });

  it("refuses a CLIP config, and tiling past the pixel limit before allocating", () => {
    expect(() => preprocessAnyres(createRgbImage(8, 8), defaultPreprocessorConfig())).toThrow(/not a LlavaNextImageProcessor config/);
    const huge = parsePreprocessorConfig({ ...bytesJson(), crop_size: 1, size: 4096, do_center_crop: false, image_grid_pinpoints: [[64, 64]] }, "huge.json");
    expect(() => preprocessAnyres(createRgbImage(64, 64), huge)).toThrow(ImageError);
    expect(() => preprocessAnyres(createRgbImage(64, 64), huge)).toThrow(/anyres tiling \(huge\.json\) would make 4097 tiles of 4096x4096/);
  });
});

describe("image_grid_pinpoints in preprocessor_config.json", () => {
  const base = { image_processor_type: "LlavaNextImageProcessor", size: { shortest_edge: 336 }, crop_size: { height: 336, width: 336 } };
  const refuses = (extra: Record<string, unknown>, pattern: RegExp) => {
    expect(() => parsePreprocessorConfig({ ...base, ...extra }, "next.json")).toThrow(PreprocessorConfigError);
    expect(() => parsePreprocessorConfig({ ...base, ...extra }, "next.json")).toThrow(pattern);
  };

  it("defaults to llava-v1.6's canvases and do_pad true; CLIP configs have no anyres", () => {
    expect(parsePreprocessorConfig(base, "next.json").anyres).toEqual({ gridPinpoints: LLAVA_NEXT_DEFAULT_PINPOINTS, doPad: true });
    expect(parsePreprocessorConfig({ ...base, image_grid_pinpoints: null, do_pad: false }, "next.json").anyres).toEqual({
      gridPinpoints: LLAVA_NEXT_DEFAULT_PINPOINTS,
      doPad: false,
    });
    expect(defaultPreprocessorConfig().anyres).toBeNull();
    expect(parsePreprocessorConfig({ image_processor_type: "CLIPImageProcessor", image_grid_pinpoints: [[3, 3]] }, "clip.json").anyres).toBeNull();
  });

  it("refuses malformed pinpoints, naming the file and the entry", () => {
    refuses({ image_grid_pinpoints: [] }, /^next\.json: image_grid_pinpoints must be a list of 1 to 256 \[height, width\] pairs, not \[\]/);
    refuses({ image_grid_pinpoints: "anyres" }, /image_grid_pinpoints must be a list of 1 to 256/);
    refuses({ image_grid_pinpoints: Array.from({ length: 257 }, () => [336, 336]) }, /must be a list of 1 to 256/);
    refuses({ image_grid_pinpoints: [[336, 672], [336]] }, /image_grid_pinpoints\[1\] must be a \[height, width\] pair, not \[336\]/);
    refuses({ image_grid_pinpoints: [336, 672] }, /image_grid_pinpoints\[0\] must be a \[height, width\] pair, not 336/);
    refuses({ image_grid_pinpoints: [[0, 336]] }, /image_grid_pinpoints\[0\]\[0\] \(height\) must be a positive integer, not 0/);
    refuses({ image_grid_pinpoints: [[336, 336.5]] }, /image_grid_pinpoints\[0\]\[1\] \(width\) must be a positive integer, not 336\.5/);
    refuses({ image_grid_pinpoints: [[336, "672"]] }, /must be a positive integer, not "672"/);
    refuses({ image_grid_pinpoints: [[336, 8064]] }, /image_grid_pinpoints\[0\]\[1\] \(width\) 8064 is more than 4096 pixels/);
    refuses({ image_grid_pinpoints: [[336, 500]] }, /image_grid_pinpoints\[0\] \[336,500\] must be whole multiples of the tile side 336/);
    refuses({ do_pad: "yes" }, /do_pad must be true or false, not "yes"/);
    // LlavaNextImageProcessor's own defaults do not fit together (224-pixel tiles, 336-pixel canvases).
    expect(() => parsePreprocessorConfig({ image_processor_type: "LlavaNextImageProcessor" }, "next.json")).toThrow(/multiples of the tile side 224/);
  });
});

describe("wgsl-vlm preprocess with a LlavaNextImageProcessor config", () => {
  const run = (argv: string[]) => runCommand(command, argv);

  it("writes transformers' pixel_values and image_sizes for the golden model", async () => {
    const out = join(dir, "next.safetensors");
    const { code, stdout } = await run(["--model", join(GOLDEN, "model"), "--image", imageFiles[0], "--image", imageFiles[1], "--out", out]);
    expect(code).toBe(0);
    expect(stdout).toContain(`wrote pixel_values [2, 5, 3, 32, 32] and image_sizes [2, 2] to ${out}`);
    const file = await SafetensorsFile.open(out);
    const expected = await SafetensorsFile.open(join(GOLDEN, "inputs.safetensors"));
    try {
      expect(file.entry("pixel_values")).toMatchObject({ dtype: "F32", shape: [2, 5, 3, 32, 32] });
      expect(file.entry("image_sizes")).toMatchObject({ dtype: "I64", shape: [2, 2] });
      expect(differing((await file.readFloat32("pixel_values")).data, expectedPixels.data)).toBe(0);
      expect(Buffer.from(await file.readBytes("image_sizes")).equals(Buffer.from(await expected.readBytes("image_sizes")))).toBe(true);
      expect(file.metadata).toMatchObject({ images: JSON.stringify(imageFiles) });
    } finally {
      await file.close();
      await expected.close();
    }
  });

  it("writes one image's tiles alone, without batch padding", async () => {
    const out = join(dir, "tall.safetensors");
    const { stdout } = await run(["--model", join(GOLDEN, "model"), "--image", imageFiles[1], "--out", out]);
    expect(stdout).toContain("pixel_values [1, 4, 3, 32, 32]");
    const written = await readAllFloat32(out);
    expect(differing(written.get("pixel_values")!.data, goldenImage(1).subarray(0, 4 * TILE))).toBe(0);
    expect(Array.from(written.get("image_sizes")!.data)).toEqual([120, 45]);
  });

  it("refuses --pad-to-square, which LLaVA-NeXT does not use", async () => {
    await expect(run(["--model", join(GOLDEN, "model"), "--image", imageFiles[0], "--pad-to-square", "--out", join(dir, "x.safetensors")])).rejects.toThrow(UsageError);
  });
});
