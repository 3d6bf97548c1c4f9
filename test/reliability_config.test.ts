/**
 * Config numbers that would size an allocation, and impossible config values: each is refused
 * by file and field before anything is allocated, while every real checkpoint's values pass.
 */
import { copyFile, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { loadModel } from "../src/generate/model.js";
import { loadPreprocessorConfig, MAX_IMAGE_SIDE, parsePreprocessorConfig, PreprocessorConfigError } from "../src/image/config.js";
import { checkContextLength, chooseContextLength, loadLlava, MAX_CONTEXT } from "../src/models/llava.js";
import { CONFIG_LIMITS, ConfigError, parseConfig, type LlamaConfig } from "../src/weights/config.js";
import { testGpu } from "./helpers.js";
import { TINY_LLAVA, withText, withVision, writeRandomCheckpoint } from "./random_checkpoint.js";

const root = await mkdtemp(join(tmpdir(), "wgsl-vlm-reliability-config-"));
afterAll(() => rm(root, { recursive: true, force: true }));
const FIXTURES = join(import.meta.dirname, "fixtures");


/** The message of the ConfigError that parsing `json` (as models/x/config.json) fails with; fails the test if it parses. */
function configError(json: unknown): string {
  try {
    parseConfig(json, "models/x/config.json");
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return (error as Error).message;
  }
  throw new Error(`${JSON.stringify(json).slice(0, 100)} parsed, but should not have`);
}

describe("config.json numbers that size allocations", () => {
  it("accepts the largest real models' values", () => {
    // LLaMA-3.1 405B.
    const llama405b = parseConfig({
      model_type: "llama", hidden_size: 16384, intermediate_size: 53248, num_hidden_layers: 126, num_attention_heads: 128, num_key_value_heads: 8,
      vocab_size: 128256, max_position_embeddings: 131072, bos_token_id: 128000, eos_token_id: [128001, 128008, 128009], rope_theta: 500000,
    }, "405b");
    expect(llama405b.kind === "llama" && llama405b.text).toMatchObject({ hiddenSize: 16384, numHiddenLayers: 126, vocabSize: 128256, headDim: 128 });
    // Qwen's and Gemma's vocabularies; a SigLIP-sized tower at 896 px (4096 patches).
    expect(() => parseConfig({ model_type: "llama", vocab_size: 152064, eos_token_id: 151643, max_position_embeddings: 1 << 20 }, "qwen")).not.toThrow();
    expect(() => parseConfig({ model_type: "llama", vocab_size: 256000 }, "gemma")).not.toThrow();
    expect(() => parseConfig(withVision({ image_size: 896, patch_size: 14, hidden_size: 1152, num_attention_heads: 16 }), "siglip")).not.toThrow();
  });

  it("refuses absurd values by file and field, each before anything is allocated", () => {
    const over = (limit: number) => new RegExp(`is more than ${limit}, the most this runtime accepts`);
    const cases: [unknown, string, RegExp][] = [
      [withText({ hidden_size: 2 ** 20 }), "text_config.hidden_size 1048576", over(CONFIG_LIMITS.hiddenSize)],
      [withText({ intermediate_size: 1e9 }), "text_config.intermediate_size 1000000000", over(CONFIG_LIMITS.intermediateSize)],
      [withText({ num_hidden_layers: 1e9 }), "text_config.num_hidden_layers 1000000000", over(CONFIG_LIMITS.layers)],
      [withText({ num_attention_heads: 4096, hidden_size: 8192 }), "text_config.num_attention_heads 4096", over(CONFIG_LIMITS.heads)],
      [withText({ vocab_size: 1e9 }), "text_config.vocab_size 1000000000", over(CONFIG_LIMITS.vocabSize)],
      [withText({ max_position_embeddings: 1e30 }), "text_config.max_position_embeddings must be an integer >= 1, got 1e+30", /./],
      [withText({ max_position_embeddings: 2 ** 30 }), "text_config.max_position_embeddings 1073741824", over(CONFIG_LIMITS.maxPositionEmbeddings)],
      [withVision({ hidden_size: 1e6, num_attention_heads: 1 }), "vision_config.hidden_size 1000000", over(CONFIG_LIMITS.hiddenSize)],
      [withVision({ num_hidden_layers: 5000 }), "vision_config.num_hidden_layers 5000", over(CONFIG_LIMITS.layers)],
      [withVision({ intermediate_size: 1e7 }), "vision_config.intermediate_size 10000000", over(CONFIG_LIMITS.intermediateSize)],
      [withVision({ image_size: 200000 }), "vision_config.image_size 200000", over(CONFIG_LIMITS.imageSize)],
      [withVision({ image_size: 4096, patch_size: 4 }), "vision_config.patch_size 4 cuts image_size 4096 into 1048576 patches", /more than the 65536/],
      [{ model_type: "llama", num_hidden_layers: 1e9 }, "num_hidden_layers 1000000000", over(CONFIG_LIMITS.layers)],
      [{ model_type: "clip_vision_model", hidden_size: 2 ** 30 }, "hidden_size 1073741824", over(CONFIG_LIMITS.hiddenSize)],
    ];
    for (const [json, field, problem] of cases) {
      const started = performance.now();
      const message = configError(json);
      expect(message).toContain(`models/x/config.json: ${field}`);
      expect(message).toMatch(problem);
      expect(performance.now() - started).toBeLessThan(50);
    }
  });

  it("refuses a 1e9-layer config when loading, before a weight is read or a buffer made", async () => {
    const gpu = await testGpu();
    const dir = join(root, "layers");
    await writeRandomCheckpoint(dir, TINY_LLAVA);
    await writeFile(join(dir, "config.json"), JSON.stringify(withText({ num_hidden_layers: 1e9 })));
    const before = gpu.memory();
    await expect(loadLlava(dir, { gpu })).rejects.toThrow(`${join(dir, "config.json")}: text_config.num_hidden_layers 1000000000 is more than 1024`);
    expect(gpu.memory()).toEqual(before);
  });
});

describe("config.json values that cannot be right", () => {
  it("refuses end and start tokens outside the vocabulary, and an odd rotary head size", () => {
    expect(configError(withText({ eos_token_id: 100 }))).toContain("text_config.eos_token_id 100 is outside the vocabulary of 100 tokens (vocab_size)");
    expect(configError(withText({ eos_token_id: [2, 7, 5000] }))).toContain("text_config.eos_token_id 5000 is outside the vocabulary of 100 tokens");
    expect(configError(withText({ bos_token_id: 100 }))).toContain("text_config.bos_token_id 100 is outside the vocabulary of 100 tokens");
    expect(configError(withText({ hidden_size: 30, num_attention_heads: 2 }))).toContain("text_config.hidden_size 30 / num_attention_heads 2 = 15 is odd");
    // null still means "none".
    expect(() => parseConfig(withText({ eos_token_id: null, bos_token_id: null }), "x")).not.toThrow();
  });
});

describe("the context length the KV-cache is made for", () => {
  const text = (fields: Partial<LlamaConfig> = {}): LlamaConfig => {
    const config = parseConfig(TINY_LLAVA, "x");
    if (config.kind !== "llava") throw new Error("expected llava");
    return { ...config.text, ...fields };
  };

  it("is refused when not a whole number within max_position_embeddings and the runtime's limit", () => {
    expect(() => checkContextLength(text(), 65)).toThrow("contextLength 65 must be an integer in [1, 64] (max_position_embeddings)");
    expect(() => checkContextLength(text(), 0)).toThrow(RangeError);
    expect(() => checkContextLength(text(), 2.5)).toThrow(/contextLength 2.5 must be an integer/);
    const long = text({ maxPositionEmbeddings: 1 << 24 });
    expect(() => checkContextLength(long, 1e9)).toThrow(`contextLength 1000000000 must be an integer in [1, ${MAX_CONTEXT}] (the most this runtime allocates a KV-cache for)`);
    expect(() => checkContextLength(long, MAX_CONTEXT)).not.toThrow();
  });

  it("defaults to max_position_embeddings, at most 4096 and what one storage binding holds", () => {
    // 2 heads of 16 dims: 128 bytes a position in f32, 64 in f16; the rotary table takes 64 in f32.
    expect(chooseContextLength(text(), "f32", 1 << 27)).toBe(64);
    expect(chooseContextLength(text({ maxPositionEmbeddings: 1 << 20 }), "f32", 1 << 27)).toBe(4096);
    expect(chooseContextLength(text({ maxPositionEmbeddings: 1 << 20 }), "f32", 128 * 1000)).toBe(1000);
    expect(chooseContextLength(text({ maxPositionEmbeddings: 1 << 20 }), "f16", 128 * 1000)).toBe(2000);
  });

  it("is refused when asked for beyond one storage binding, saying how many positions fit", () => {
    const long = text({ maxPositionEmbeddings: 1 << 20 });
    expect(chooseContextLength(long, "f32", 128 * 1000, 1000)).toBe(1000);
    expect(() => chooseContextLength(long, "f32", 128 * 1000, 1001)).toThrow(
      "contextLength 1001 needs 128128 bytes for each layer's key cache (or the rotary table), more than one storage binding holds on this adapter (128000): at most 1000 positions fit",
    );
  });

  it("is checked at load before the device does any work; tokenizer_config's model_max_length of 1e30 sizes nothing", async () => {
    const gpu = await testGpu();
    const dir = join(root, "context");
    await writeRandomCheckpoint(dir, withText({ max_position_embeddings: 1 << 22, vocab_size: 32002 }));
    const before = gpu.memory();
    await expect(loadLlava(dir, { gpu, contextLength: 1e9 })).rejects.toThrow(`contextLength 1000000000 must be an integer in [1, ${MAX_CONTEXT}]`);
    expect(gpu.memory()).toEqual(before);

    // llava-1.5's tokenizer_config.json says model_max_length 1e30 ("no limit").
    await copyFile(join(FIXTURES, "tokenizer", "tokenizer.model"), join(dir, "tokenizer.model"));
    await copyFile(join(FIXTURES, "tokenizer", "llava-1.5", "tokenizer_config.json"), join(dir, "tokenizer_config.json"));
    const model = await loadModel(dir, { gpu, dtype: "f32" });
    try {
      expect(model.llava.contextLength).toBe(4096);
    } finally {
      model.dispose();
    }
  });
});

describe("preprocessor_config.json", () => {
  const refuses = (json: object, message: string) => {
    expect(() => parsePreprocessorConfig(json, "models/x/preprocessor_config.json")).toThrow(PreprocessorConfigError);
    expect(() => parsePreprocessorConfig(json, "models/x/preprocessor_config.json")).toThrow(`models/x/preprocessor_config.json: ${message}`);
  };

  it("refuses image sides beyond the limit in every form a size or crop takes", () => {
    const over = `is more than ${MAX_IMAGE_SIDE} pixels, the most this runtime accepts`;
    refuses({ size: { shortest_edge: 200000 } }, `size.shortest_edge 200000 ${over}`);
    refuses({ size: 200000 }, `size 200000 ${over}`);
    refuses({ size: { height: 336, width: 1e9 } }, `size.width 1000000000 ${over}`);
    refuses({ size: [5000, 10] }, `size[0] 5000 ${over}`);
    refuses({ crop_size: { height: 1e6, width: 336 } }, `crop_size.height 1000000 ${over}`);
    refuses({ crop_size: 4097 }, `crop_size 4097 ${over}`);
    expect(parsePreprocessorConfig({ size: { shortest_edge: MAX_IMAGE_SIDE }, crop_size: MAX_IMAGE_SIDE }, "x").cropSize).toEqual({ height: 4096, width: 4096 });
  });

  it("refuses impossible rescale factors and normalisations", () => {
    refuses({ rescale_factor: -1 / 255 }, "rescale_factor -0.00392156862745098 must be positive");
    refuses({ rescale_factor: 0 }, "rescale_factor 0 must be positive");
    refuses({ image_std: [0.26, -0.26, 0.27] }, "image_std [0.26,-0.26,0.27] must be positive");
    refuses({ image_std: -1 }, "image_std [-1,-1,-1] must be positive");
    refuses({ image_mean: [0.5, 0.5] }, "image_mean must be 3 numbers (one per RGB channel)");
    refuses({ image_std: [0.5, 0.5, 0.5, 0.5] }, "image_std must be 3 numbers (one per RGB channel)");
  });

  it("names the file it read", async () => {
    const path = join(root, "preprocessor_config.json");
    await writeFile(path, JSON.stringify({ image_processor_type: "CLIPImageProcessor", size: { shortest_edge: 200000 } }));
    await expect(loadPreprocessorConfig(root)).rejects.toThrow(`${path}: size.shortest_edge 200000 is more than 4096 pixels`);
  });
});
