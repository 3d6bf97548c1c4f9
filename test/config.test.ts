import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { ConfigError, loadConfig, parseConfig, type ClipVisionConfig, type LlamaConfig, type ModelConfig } from "../src/weights/config.js";
import { expectedTensors } from "../src/weights/names.js";

const dir = await mkdtemp(join(tmpdir(), "wgsl-vlm-config-"));
afterAll(() => rm(dir, { recursive: true, force: true }));
const fixture = (model: string) => fileURLToPath(new URL(`./fixtures/weights/${model}`, import.meta.url));

/** transformers 4.40's LlamaConfig() and CLIPVisionConfig(), as our types. */
const LLAMA_DEFAULTS: LlamaConfig = {
  vocabSize: 32000, hiddenSize: 4096, intermediateSize: 11008, numHiddenLayers: 32, numAttentionHeads: 32, numKeyValueHeads: 32,
  headDim: 128, hiddenAct: "silu", maxPositionEmbeddings: 2048, rmsNormEps: 1e-6, ropeTheta: 10000, slidingWindow: null, family: "llama", tieWordEmbeddings: false,
  attentionBias: false, bosTokenId: 1, eosTokenIds: [2], padTokenId: null,
};
const CLIP_DEFAULTS: ClipVisionConfig = {
  hiddenSize: 768, intermediateSize: 3072, numHiddenLayers: 12, numAttentionHeads: 12, headDim: 64, numChannels: 3,
  imageSize: 224, patchSize: 32, numPatches: 49, hiddenAct: "quick_gelu", layerNormEps: 1e-5,
};

/** Shaped like llava-hf/llava-1.5-7b-hf's config.json (written by hand for this test). */
const LLAVA_15 = {
  architectures: ["LlavaForConditionalGeneration"], ignore_index: -100, image_token_index: 32000, model_type: "llava", pad_token_id: 32001,
  projector_hidden_act: "gelu",
  text_config: { _name_or_path: "lmsys/vicuna-7b-v1.5", architectures: ["LlamaForCausalLM"], max_position_embeddings: 4096, model_type: "llama",
    rms_norm_eps: 1e-5, torch_dtype: "float16", vocab_size: 32064 },
  tie_word_embeddings: false, torch_dtype: "float16", transformers_version: "4.36.0.dev0",
  vision_config: { hidden_size: 1024, image_size: 336, intermediate_size: 4096, model_type: "clip_vision_model", num_attention_heads: 16,
    num_hidden_layers: 24, patch_size: 14, projection_dim: 768, vocab_size: 32000 },
  vision_feature_layer: -2, vision_feature_select_strategy: "default", vocab_size: 32064,
};

function llava(config: ModelConfig) {
  if (config.kind !== "llava") throw new Error(`expected a llava config, got ${config.kind}`);
  return config;
}

describe("config.json", () => {
  it("reads the golden checkpoints' configs, filling in transformers' defaults", async () => {
    const a = llava(await loadConfig(fixture("tiny-llava-a")));
    expect(a.text).toEqual({ ...LLAMA_DEFAULTS, vocabSize: 300, hiddenSize: 64, intermediateSize: 128, numHiddenLayers: 2, numAttentionHeads: 4,
      numKeyValueHeads: 2, headDim: 16, maxPositionEmbeddings: 512 });
    expect(a.vision).toEqual({ ...CLIP_DEFAULTS, hiddenSize: 32, intermediateSize: 64, numHiddenLayers: 2, numAttentionHeads: 4, headDim: 8,
      imageSize: 32, patchSize: 8, numPatches: 16 });
    expect(a).toMatchObject({ imageTokenIndex: 299, projectorHiddenAct: "gelu", visionFeatureLayer: -2, visionFeatureSelectStrategy: "default", projectorBias: true });

    const b = llava(await loadConfig(join(fixture("tiny-llava-b"), "config.json")));
    expect(b.text).toMatchObject({ tieWordEmbeddings: true, ropeTheta: 1e6, rmsNormEps: 1e-5, numAttentionHeads: 6, numKeyValueHeads: 2, headDim: 16 });
    expect(b.vision).toMatchObject({ imageSize: 48, patchSize: 8, numPatches: 36, numAttentionHeads: 3, headDim: 16 });
    expect(b).toMatchObject({ visionFeatureLayer: -1, visionFeatureSelectStrategy: "full", imageTokenIndex: 332 });

    const c = llava(await loadConfig(fixture("text-only-c")));
    expect(c.text).toMatchObject({ numAttentionHeads: 8, numKeyValueHeads: 8, intermediateSize: 176, vocabSize: 257 });
  });

  it("reads a llava-1.5-style config and applies LlavaConfig's defaults", () => {
    const config = llava(parseConfig(LLAVA_15, "llava-1.5/config.json"));
    expect(config.text).toEqual({ ...LLAMA_DEFAULTS, vocabSize: 32064, maxPositionEmbeddings: 4096, rmsNormEps: 1e-5 });
    expect(config.vision).toEqual({ ...CLIP_DEFAULTS, hiddenSize: 1024, intermediateSize: 4096, numHiddenLayers: 24, numAttentionHeads: 16,
      imageSize: 336, patchSize: 14, numPatches: 576 });
    // Without vision_config, LlavaConfig's default tower is the same ViT-L/14 at 336 px.
    const { vision_config: _, ...noVision } = LLAVA_15;
    expect(llava(parseConfig(noVision, "x")).vision).toEqual(config.vision);
    // Without text_config, the decoder is LlamaConfig() (and image token 31999 fits its 32000 tokens).
    const { text_config: __, ...noText } = { ...LLAVA_15, image_token_index: 31999 };
    expect(llava(parseConfig(noText, "x")).text).toEqual(LLAMA_DEFAULTS);
    // Newer transformers' spellings: image_token_id, rope_parameters.
    const { image_token_index: ___, ...noIndex } = LLAVA_15;
    const newer = llava(parseConfig({ ...noIndex, image_token_id: 32000,
      text_config: { ...LLAVA_15.text_config, rope_parameters: { rope_type: "default", rope_theta: 5e5 } } }, "x"));
    expect(newer.imageTokenIndex).toBe(32000);
    expect(newer.text.ropeTheta).toBe(5e5);
  });

  it("reads LlamaForCausalLM, CLIPVisionModel and CLIPModel configs alone", () => {
    const llama = parseConfig({ model_type: "llama", hidden_size: 64, num_attention_heads: 4, num_key_value_heads: null, eos_token_id: [2, 7], bos_token_id: null }, "llama");
    expect(llama).toEqual({ kind: "llama", text: { ...LLAMA_DEFAULTS, hiddenSize: 64, numAttentionHeads: 4, numKeyValueHeads: 4, headDim: 16, eosTokenIds: [2, 7], bosTokenId: null } });
    expect(parseConfig({ model_type: "clip_vision_model" }, "clip")).toEqual({ kind: "clip_vision", vision: CLIP_DEFAULTS });
    // CLIPModel: both towers, with CLIPTextConfig's defaults (openai/clip-vit-base-patch32's text tower).
    const CLIP_TEXT_DEFAULTS = {
      vocabSize: 49408, hiddenSize: 512, intermediateSize: 2048, numHiddenLayers: 12, numAttentionHeads: 8, headDim: 64,
      maxPositionEmbeddings: 77, hiddenAct: "quick_gelu", layerNormEps: 1e-5, eosTokenId: 49407,
    };
    expect(parseConfig({ model_type: "clip", vision_config: { patch_size: 14, image_size: 224 } }, "clip")).toEqual({
      kind: "clip", vision: { ...CLIP_DEFAULTS, patchSize: 14, numPatches: 256 }, text: CLIP_TEXT_DEFAULTS, projectionDim: 512,
    });
    expect(parseConfig({ model_type: "clip", projection_dim: 768, text_config: { eos_token_id: 2, hidden_size: 768, num_attention_heads: 12 } }, "clip")).toEqual({
      kind: "clip", vision: CLIP_DEFAULTS, text: { ...CLIP_TEXT_DEFAULTS, eosTokenId: 2, hiddenSize: 768, numAttentionHeads: 12 }, projectionDim: 768,
    });
    expect(() => parseConfig({ model_type: "clip", text_config: { model_type: "bert" } }, "c.json")).toThrow(/c.json: text_config.model_type "bert" is not supported \(clip_text_model\)/);
    expect(() => parseConfig({ model_type: "clip", text_config: { vocab_size: 10, eos_token_id: 12 } }, "c.json")).toThrow(/text_config.eos_token_id 12 is outside the vocabulary of 10/);
    // Fields that do not change the computation are accepted whatever they say.
    const tolerant = parseConfig({ model_type: "llama", pretraining_tp: 4, attention_dropout: 0.1, use_cache: false, mlp_bias: false, head_dim: 128, rope_scaling: null }, "llama");
    expect(tolerant.kind === "llama" && tolerant.text).toEqual(LLAMA_DEFAULTS);
  });

  it("refuses missing and wrong fields, naming the file and the field", () => {
    const text = (fields: object) => ({ ...LLAVA_15, text_config: { ...LLAVA_15.text_config, ...fields } });
    const vision = (fields: object) => ({ ...LLAVA_15, vision_config: { ...LLAVA_15.vision_config, ...fields } });
    const cases: [unknown, RegExp][] = [
      [[], /cfg: the config is not a JSON object/],
      [{}, /cfg: model_type is missing/],
      [{ model_type: "qwen2" }, /cfg: model_type "qwen2" is not supported \(llava, llava_next, llama, mistral/],
      [{ model_type: 7 }, /model_type must be a string, got 7/],
      [text({ model_type: "qwen2" }), /text_config\.model_type "qwen2" is not supported/],
      [vision({ model_type: "siglip_vision_model" }), /vision_config\.model_type "siglip_vision_model" is not supported/],
      [{ ...LLAVA_15, text_config: "llama" }, /text_config must be an object, got "llama"/],
      [text({ num_attention_heads: "32" }), /text_config\.num_attention_heads must be an integer >= 1, got "32"/],
      [text({ num_attention_heads: 0 }), /text_config\.num_attention_heads must be an integer >= 1, got 0/],
      [text({ hidden_size: 4096.5 }), /text_config\.hidden_size must be an integer >= 1, got 4096\.5/],
      [text({ num_attention_heads: 30 }), /text_config\.hidden_size 4096 is not divisible by num_attention_heads 30/],
      [text({ num_key_value_heads: 5 }), /text_config\.num_key_value_heads 5 does not divide num_attention_heads 32/],
      [text({ num_key_value_heads: 64 }), /text_config\.num_key_value_heads must be an integer in \[1, 32\], got 64/],
      [text({ hidden_act: "relu" }), /text_config\.hidden_act "relu" is not a supported activation/],
      [text({ rope_scaling: { type: "linear", factor: 2 } }), /text_config\.rope_scaling \{"type":"linear","factor":2\}: rope scaling is not supported/],
      [text({ rope_parameters: { rope_type: "llama3", factor: 8 } }), /text_config\.rope_parameters\.rope_type "llama3" is not supported/],
      [text({ mlp_bias: true }), /text_config\.mlp_bias true is not supported/],
      [text({ head_dim: 64 }), /text_config\.head_dim 64 differs from hidden_size \/ num_attention_heads = 128/],
      [text({ rms_norm_eps: -1 }), /text_config\.rms_norm_eps must be a positive number, got -1/],
      [text({ rope_theta: "1e4" }), /text_config\.rope_theta must be a positive number/],
      [text({ tie_word_embeddings: "yes" }), /text_config\.tie_word_embeddings must be true or false, got "yes"/],
      [text({ attention_bias: 1 }), /text_config\.attention_bias must be true or false/],
      [text({ pretraining_tp: 0 }), /text_config\.pretraining_tp must be an integer >= 1/],
      [text({ eos_token_id: ["2"] }), /text_config\.eos_token_id \["2"\] is not a token id/],
      [text({ vocab_size: null }), /text_config\.vocab_size must be an integer >= 1, got null/],
      [text({ vocab_size: 32000 }), /cfg: image_token_index 32000 is outside the vocabulary of 32000 tokens/],
      [vision({ num_channels: 1 }), /vision_config\.num_channels 1 is not supported/],
      [vision({ hidden_act: "gelu_10" }), /vision_config\.hidden_act "gelu_10" is not a supported activation/],
      [vision({ patch_size: 400 }), /vision_config\.patch_size must be an integer in \[1, 336\], got 400/],
      [vision({ num_attention_heads: 7 }), /vision_config\.hidden_size 1024 is not divisible by num_attention_heads 7/],
      [vision({ layer_norm_eps: 0 }), /vision_config\.layer_norm_eps must be a positive number, got 0/],
      [{ ...LLAVA_15, vision_feature_select_strategy: "cls_patch" }, /vision_feature_select_strategy "cls_patch" is not supported \(default or full\)/],
      [{ ...LLAVA_15, vision_feature_layer: 25 }, /vision_feature_layer must be an integer in \[-25, 24\], got 25/],
      [{ ...LLAVA_15, vision_feature_layer: -26 }, /vision_feature_layer must be an integer in \[-25, 24\], got -26/],
      [{ ...LLAVA_15, vision_feature_layer: [-2, -5] }, /vision_feature_layer must be an integer/],
      [{ ...LLAVA_15, projector_hidden_act: "tanh" }, /projector_hidden_act "tanh" is not a supported activation/],
      [{ ...LLAVA_15, image_token_index: -1 }, /image_token_index must be an integer >= 0, got -1/],
      [{ ...LLAVA_15, multimodal_projector_bias: "no" }, /multimodal_projector_bias must be true or false/],
      [{ model_type: "clip", vision_config: { hidden_act: "relu" } }, /vision_config\.hidden_act "relu"/],
    ];
    for (const [json, message] of cases) {
      let error: unknown;
      try {
        parseConfig(json, "cfg");
      } catch (e) {
        error = e;
      }
      expect(error, `${JSON.stringify(json).slice(0, 80)} should fail with ${message}`).toBeInstanceOf(ConfigError);
      expect((error as Error).message).toMatch(message);
      expect((error as Error).message.startsWith("cfg: ")).toBe(true);
    }
  });

  it("names the file when it is missing or not JSON", async () => {
    await expect(loadConfig(join(dir, "nowhere"))).rejects.toThrow(/nowhere: cannot read \(ENOENT\)/);
    await expect(loadConfig(dir)).rejects.toThrow(`${join(dir, "config.json")}: cannot read (ENOENT)`);
    await writeFile(join(dir, "config.json"), '{"model_type": "llama",}');
    await expect(loadConfig(dir)).rejects.toThrow(/config\.json: not valid JSON \(expected a string key at character 23\)/);
    await writeFile(join(dir, "config.json"), '{"model_type": "llama", "hidden_size": 64, "hidden_size": 128}');
    await expect(loadConfig(dir)).rejects.toThrow(/duplicate key "hidden_size"/);
  });

  it("reads LLaVA-NeXT configs: the golden one, llava-v1.6's defaults, a Mistral decoder", async () => {
    const next = llava(await loadConfig(fileURLToPath(new URL("./fixtures/golden/tiny-llava-next-a/model", import.meta.url))));
    expect(next.anyres).toEqual({ gridPinpoints: [[32, 64], [64, 32], [64, 64], [96, 32], [32, 96]], imageSeqLength: 576 });
    expect(next).toMatchObject({ imageTokenIndex: 127, visionFeatureLayer: -2, visionFeatureSelectStrategy: "default" });
    expect(next.text).toMatchObject({ family: "llama", slidingWindow: null, numKeyValueHeads: 2, headDim: 10 });
    expect(expectedTensors(next)).toContainEqual({ name: "image_newline", shape: [40] });
    // llava-1.5 has no image_newline.
    expect(expectedTensors(llava(parseConfig(LLAVA_15, "c"))).some((t) => t.name === "image_newline")).toBe(false);

    const defaults = llava(parseConfig({ ...LLAVA_15, model_type: "llava_next" }, "v1.6/config.json"));
    expect(defaults.anyres!.gridPinpoints).toEqual([[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]]);

    const mistral = llava(parseConfig({ ...LLAVA_15, model_type: "llava_next", text_config: { model_type: "mistral", rope_theta: 1e6, sliding_window: null, vocab_size: 32064 } }, "m"));
    expect(mistral.text).toMatchObject({ family: "mistral", slidingWindow: null, numKeyValueHeads: 8, intermediateSize: 14336, ropeTheta: 1e6, maxPositionEmbeddings: 131072 });
    const windowed = parseConfig({ model_type: "mistral", num_attention_heads: 4, hidden_size: 64 }, "w");
    expect(windowed.kind === "llama" && windowed.text).toMatchObject({ family: "mistral", slidingWindow: 4096, numKeyValueHeads: 4 });
  });

  it("refuses LLaVA-NeXT fields it cannot honour, naming them", () => {
    const bad: [object, RegExp][] = [
      [{ image_grid_pinpoints: [] }, /image_grid_pinpoints must be a list of 1 to 256/],
      [{ image_grid_pinpoints: [[336, 600]] }, /image_grid_pinpoints\[0\] must be \[height, width\], positive multiples of the vision tower's image_size 336, got \[336,600\]/],
      [{ image_grid_pinpoints: [[336]] }, /image_grid_pinpoints\[0\] must be \[height, width\]/],
      [{ image_grid_pinpoints: [[336 * 9, 336 * 9]] }, /makes 81 tiles of 336 px, more than the 64/],
      [{ vision_feature_select_strategy: "full" }, /vision_feature_select_strategy "full" cannot be tiled/],
      [{ text_config: { model_type: "gemma" } }, /text_config\.model_type "gemma" is not supported \(llama or mistral decoders\)/],
      [{ text_config: { model_type: "mistral", sliding_window: 0, vocab_size: 32064 } }, /text_config\.sliding_window must be an integer >= 1, got 0/],
    ];
    for (const [fields, message] of bad) {
      expect(() => parseConfig({ ...LLAVA_15, model_type: "llava_next", ...fields }, "cfg"), JSON.stringify(fields)).toThrow(message);
    }
  });
});
