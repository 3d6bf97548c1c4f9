/** preprocessor_config.json read as transformers' CLIPImageProcessor reads it, defaults included. */
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import {
  defaultPreprocessorConfig,
  loadPreprocessorConfig,
  OPENAI_CLIP_MEAN,
  OPENAI_CLIP_STD,
  parsePreprocessorConfig,
  PreprocessorConfigError,
} from "../src/image/config.js";

const dir = await mkdtemp(join(tmpdir(), "wgsl-vlm-image-config-"));
afterAll(() => rm(dir, { recursive: true, force: true }));

/** llava-hf/llava-1.5-7b-hf's preprocessor_config.json. */
const LLAVA = {
  crop_size: { height: 336, width: 336 },
  do_center_crop: true,
  do_convert_rgb: true,
  do_normalize: true,
  do_rescale: true,
  do_resize: true,
  image_mean: [0.48145466, 0.4578275, 0.40821073],
  image_processor_type: "CLIPImageProcessor",
  image_std: [0.26862954, 0.26130258, 0.27577711],
  processor_class: "LlavaProcessor",
  resample: 3,
  rescale_factor: 0.00392156862745098,
  size: { shortest_edge: 336 },
};

/** openai/clip-vit-large-patch14-336's older CLIPFeatureExtractor form. */
const OPENAI_OLD = {
  crop_size: 336,
  do_center_crop: true,
  do_normalize: true,
  do_resize: true,
  feature_extractor_type: "CLIPFeatureExtractor",
  image_mean: [0.48145466, 0.4578275, 0.40821073],
  image_std: [0.26862954, 0.26130258, 0.27577711],
  resample: 3,
  size: 336,
};

describe("parsePreprocessorConfig", () => {
  it("fills in CLIPImageProcessor's defaults", () => {
    const config = defaultPreprocessorConfig();
    expect(config).toMatchObject({
      doResize: true,
      size: { shortestEdge: 224 },
      resample: 3,
      doCenterCrop: true,
      cropSize: { height: 224, width: 224 },
      doRescale: true,
      rescaleFactor: 1 / 255,
      doNormalize: true,
      imageMean: [...OPENAI_CLIP_MEAN],
      imageStd: [...OPENAI_CLIP_STD],
      doConvertRgb: true,
      source: "CLIPImageProcessor defaults",
    });
  });

  it("reads llava-1.5's config", () => {
    const config = parsePreprocessorConfig(LLAVA, "llava");
    expect(config.size).toEqual({ shortestEdge: 336 });
    expect(config.cropSize).toEqual({ height: 336, width: 336 });
  });

  it("reads the older int forms: size = shortest edge, crop_size = square", () => {
    const config = parsePreprocessorConfig(OPENAI_OLD, "old");
    expect(config.size).toEqual({ shortestEdge: 336 });
    expect(config.cropSize).toEqual({ height: 336, width: 336 });
    expect(config.doConvertRgb).toBe(true);
  });

  it("reads exact sizes, [height, width] lists and a single mean for all channels", () => {
    const config = parsePreprocessorConfig({ size: { height: 30, width: 40 }, crop_size: [10, 20], image_mean: 0.5, image_std: [1, 2, 3] }, "x");
    expect(config.size).toEqual({ height: 30, width: 40 });
    expect(config.cropSize).toEqual({ height: 10, width: 20 });
    expect(config.imageMean).toEqual([0.5, 0.5, 0.5]);
  });

  const refuses = (json: unknown, pattern: RegExp) => {
    expect(() => parsePreprocessorConfig(json, "cfg.json")).toThrow(PreprocessorConfigError);
    expect(() => parsePreprocessorConfig(json, "cfg.json")).toThrow(pattern);
  };
  it("refuses other processor types", () => {
    refuses({ image_processor_type: "SiglipImageProcessor" }, /^cfg\.json: image_processor_type "SiglipImageProcessor" is not supported/);
    refuses({ image_processor_type: "LlavaNextImageProcessorFast" }, /LlavaNextImageProcessorFast" is not supported/);
  });
  it("refuses resampling filters other than bicubic", () => {
    refuses({ resample: 2 }, /resample 2 \(bilinear\) is not supported: only 3 \(bicubic\)/);
    refuses({ resample: "bicubic" }, /resample "bicubic" is not supported/);
  });
  it("refuses malformed fields, naming them", () => {
    refuses([], /is not a JSON object/);
    refuses({ size: { longest_edge: 336 } }, /size \{"longest_edge":336\} is not supported/);
    refuses({ size: 0 }, /size must be a positive integer, not 0/);
    refuses({ crop_size: { shortest_edge: 3 } }, /crop_size must give a height and width/);
    refuses({ crop_size: { height: 3.5, width: 3 } }, /crop_size\.height must be a positive integer, not 3\.5/);
    refuses({ image_mean: [0.5, 0.5] }, /image_mean must be 3 numbers/);
    refuses({ image_std: [1, 0, 1] }, /image_std \[1,0,1\] must be positive/);
    refuses({ do_resize: "yes" }, /do_resize must be true or false, not "yes"/);
    refuses({ rescale_factor: null }, /rescale_factor must be a finite number, not null/);
  });
});

describe("loadPreprocessorConfig", () => {
  it("reads preprocessor_config.json from a model folder, or a file named directly", async () => {
    const model = join(dir, "model");
    await mkdir(model);
    await writeFile(join(model, "preprocessor_config.json"), JSON.stringify(LLAVA));
    const fromDir = await loadPreprocessorConfig(model);
    expect(fromDir.size).toEqual({ shortestEdge: 336 });
    expect(fromDir.source).toBe(join(model, "preprocessor_config.json"));
    expect((await loadPreprocessorConfig(join(model, "preprocessor_config.json"))).cropSize.width).toBe(336);
  });

  it("gives the defaults for a folder without one, saying so", async () => {
    const config = await loadPreprocessorConfig(dir);
    expect(config.size).toEqual({ shortestEdge: 224 });
    expect(config.source).toContain(`no preprocessor_config.json in ${dir}`);
  });

  it("refuses a missing path and invalid JSON", async () => {
    await expect(loadPreprocessorConfig(join(dir, "nope.json"))).rejects.toThrow(/nope\.json: cannot read \(ENOENT\)/);
    await writeFile(join(dir, "broken.json"), "{ not json");
    await expect(loadPreprocessorConfig(join(dir, "broken.json"))).rejects.toThrow(/broken\.json: not valid JSON/);
  });
});
