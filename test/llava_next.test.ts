/**
 * LLaVA-NeXT end to end: the feature layout of a tiled image (against the golden's per-image
 * record and transformers' arithmetic), and generate() on the golden checkpoint from the image
 * files: the tiles, the packing and the expanded prompt together give transformers' greedy ids.
 */
import { readFileSync } from "node:fs";
import { cp, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { loadModel, type VisionLanguageModel } from "../src/generate/model.js";
import { anyresLayout, anyresRowOrder } from "../src/models/anyres.js";
import { parseConfig, type ModelConfig } from "../src/weights/config.js";
import { testGpu } from "./helpers.js";

const FOLDER = join(import.meta.dirname, "fixtures", "golden", "tiny-llava-next-a");
const golden = JSON.parse(readFileSync(join(FOLDER, "golden.json"), "utf8"));

function llava(config: ModelConfig) {
  if (config.kind !== "llava" || !config.anyres) throw new Error("expected a LLaVA-NeXT config");
  return config;
}

const tiny = llava(parseConfig(JSON.parse(readFileSync(join(FOLDER, "model", "config.json"), "utf8")), "tiny-llava-next-a"));
/** llava-v1.6's own: 336 px tiles of 24 × 24 patches on its five canvases. */
const real = llava(
  parseConfig(
    {
      model_type: "llava_next",
      text_config: { model_type: "llama", vocab_size: 32064 },
      vision_config: { hidden_size: 1024, image_size: 336, intermediate_size: 4096, num_attention_heads: 16, num_hidden_layers: 24, patch_size: 14 },
    },
    "llava-v1.6",
  ),
);

describe("anyres feature layout", () => {
  it("matches the golden's grid, unpadding and image tokens for both images", () => {
    for (const image of golden.images) {
      const layout = anyresLayout({ height: image.height, width: image.width }, tiny.anyres!, tiny.vision);
      expect(layout.tiles).toBe(image.patches_with_base);
      expect([layout.grid.rows, layout.grid.cols]).toEqual(image.tile_grid_rows_cols);
      expect([layout.kept.rows, layout.kept.cols]).toEqual(image.feature_grid_after_unpad);
      expect(layout.features).toBe(image.image_tokens);
    }
  });

  it("rounds at 7 decimals before truncating, as transformers does", () => {
    // 110 * (48 / 352) is 14.999999999999998 in doubles: int() alone would keep 14 columns, not 15.
    const layout = anyresLayout({ height: 352, width: 110 }, real.anyres!, real.vision);
    expect(layout.grid).toEqual({ rows: 2, cols: 1 });
    expect(layout.kept).toEqual({ top: 0, rows: 48, left: 4, cols: 16 });
    expect(layout.features).toBe(576 + 48 * 17);
    // A 1024x768 photo: a 2x2 grid on the 672x672 canvas, 6 feature rows of padding cut at top and bottom.
    const photo = anyresLayout({ height: 768, width: 1024 }, real.anyres!, real.vision);
    expect(photo).toMatchObject({ tiles: 5, kept: { top: 6, rows: 36, left: 0, cols: 48 }, features: 2340 });
  });

  it("reads the base tile first, then the grid row by row with a newline after each row", () => {
    const layout = anyresLayout({ height: 50, width: 90 }, tiny.anyres!, tiny.vision);
    const order = Array.from(anyresRowOrder(layout));
    const newline = layout.tiles * 16;
    expect(order.slice(0, 16)).toEqual(Array.from({ length: 16 }, (_, i) => i));
    // Feature row 2 of the 8x8 grid (the first kept): tile (0, 0)'s patch row 2, then tile (0, 1)'s.
    expect(order.slice(16, 25)).toEqual([16 + 8, 16 + 9, 16 + 10, 16 + 11, 32 + 8, 32 + 9, 32 + 10, 32 + 11, newline]);
    expect(order.filter((row) => row === newline)).toHaveLength(layout.kept.rows);
    expect(order).toHaveLength(layout.features);
  });

  it("refuses a size that is not whole pixels", () => {
    expect(() => anyresLayout({ height: 0, width: 10 }, tiny.anyres!, tiny.vision)).toThrow(/image size 10x0 must be positive whole pixels/);
  });
});

describe("generate() on LLaVA-NeXT", async () => {
  const gpu = await testGpu();
  const model: VisionLanguageModel = await loadModel(join(FOLDER, "model"), { gpu, dtype: "f32", contextLength: 256 });
  afterAll(() => model.dispose());
  const images = golden.images.map((image: { file: string }) => join(FOLDER, image.file));

  it("tiles each image file by its size and gives transformers' greedy ids", async () => {
    const request = { promptIds: golden.input_ids, images, maxNewTokens: golden.generated_ids.length, temperature: 0 };
    const result = await model.complete(request);
    expect(result.usage.promptTokens).toBe(golden.expanded_length);
    expect(result.tokens).toEqual(golden.generated_ids);
    // Asked again: the prompt and its images come from the caches, and the answer is the same.
    const again = await model.complete(request);
    expect(again.usage.cachedPromptTokens).toBeGreaterThan(100);
    expect(again.tokens).toEqual(golden.generated_ids);
  });

  it("refuses padToSquare and untiled pixel values, naming the field", async () => {
    await expect(model.complete({ promptIds: golden.input_ids, images, padToSquare: true })).rejects.toThrow(/padToSquare.*tiles each image/);
    const pixels = { data: new Float32Array(3 * 32 * 32), shape: [3, 32, 32] as [3, number, number] };
    await expect(model.complete({ promptIds: [1, 127, 5], images: [pixels] })).rejects.toThrow(/images.*give the image file, or preprocessAnyres\(\) output/);
  });

  it("says how many positions the images take when the prompt does not fit", async () => {
    const long = Array.from({ length: 200 }, () => 5);
    await expect(model.complete({ promptIds: [...golden.input_ids, ...long], images })).rejects.toThrow(/2 images of 52, 66 positions/);
  });

  it("loads without a preprocessor_config.json (LlavaNextImageProcessor's defaults), and refuses one that tiles differently", async () => {
    const dir = await mkdtemp(join(tmpdir(), "wgsl-vlm-next-"));
    try {
      await cp(join(FOLDER, "model"), dir, { recursive: true });
      await rm(join(dir, "preprocessor_config.json"));
      const bare = await loadModel(dir, { gpu, dtype: "f32", contextLength: 256 });
      try {
        expect(bare.preprocessor!.anyres!.gridPinpoints).toEqual(tiny.anyres!.gridPinpoints);
      } finally {
        bare.dispose();
      }
      const processor = JSON.parse(readFileSync(join(FOLDER, "model", "preprocessor_config.json"), "utf8"));
      await writeFile(join(dir, "preprocessor_config.json"), JSON.stringify({ ...processor, image_grid_pinpoints: [[32, 64]] }));
      await expect(loadModel(dir, { gpu, dtype: "f32", contextLength: 256 })).rejects.toThrow(/image_grid_pinpoints \[\[32,64\]\] differ from the model config's/);
      await writeFile(join(dir, "preprocessor_config.json"), JSON.stringify({ ...processor, image_processor_type: "CLIPImageProcessor" }));
      await expect(loadModel(dir, { gpu, dtype: "f32", contextLength: 256 })).rejects.toThrow(/the model tiles its images \(LLaVA-NeXT\), but this is not a LlavaNextImageProcessor config/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
