/**
 * config.json → typed model configurations, with the defaults of transformers 4.40.
 *
 * `save_pretrained` writes only the fields that differ from the defaults, so a config.json
 * means nothing without them: the tiny test checkpoints leave out `hidden_act`, `rope_theta`,
 * `rms_norm_eps`, ... and a real llava-1.5 config leaves out most of the decoder. The defaults
 * below are those of transformers 4.40's LlamaConfig, CLIPVisionConfig and LlavaConfig.
 *
 * Three kinds of checkpoint are understood (by `model_type`):
 * - `llava` (LlavaForConditionalGeneration): `text_config` (a LlamaConfig; absent = all
 *   defaults) and `vision_config` (a CLIPVisionConfig; absent = LlavaConfig's own default, the
 *   ViT-L/14 at 336 px of llava-1.5);
 * - `llama` (LlamaForCausalLM) alone;
 * - `clip_vision_model` (CLIPVisionModel) alone;
 * - `clip` (CLIPModel): the dual encoder, `text_config` (CLIPTextConfig) and `vision_config`
 *   with `projection_dim`, the size of the space both are projected into.
 *
 * Fields that do not change the computation (dropout, initializer ranges, `use_cache`, ...) are
 * ignored. A field that would change it in a way this runtime does not implement (rope scaling,
 * MLP biases, another activation) is an error naming the field and its value: a model that
 * silently computes something else is worse than one that refuses to load.
 */
import { stat } from "node:fs/promises";
import { join } from "node:path";
import { JSON_CONFIG_FILE } from "../files/limits.js";
import { readTextFileWithin } from "../files/read.js";
import { LLAVA_NEXT_DEFAULT_PINPOINTS, MAX_GRID_PINPOINTS } from "../image/config.js";
import { JsonError, parseJson } from "./json.js";

/** Activation names as transformers' ACT2FN spells them, for those the kernels implement. */
export const ACTIVATIONS = ["gelu", "gelu_new", "gelu_pytorch_tanh", "gelu_fast", "quick_gelu", "silu", "swish"] as const;
export type Activation = (typeof ACTIVATIONS)[number];

/** The decoder (transformers' LlamaConfig). */
export interface LlamaConfig {
  vocabSize: number;
  hiddenSize: number;
  intermediateSize: number;
  numHiddenLayers: number;
  numAttentionHeads: number;
  numKeyValueHeads: number;
  /** hiddenSize / numAttentionHeads. */
  headDim: number;
  hiddenAct: Activation;
  maxPositionEmbeddings: number;
  rmsNormEps: number;
  ropeTheta: number;
  /**
   * Mistral's sliding-window attention: each query sees only the last `slidingWindow` keys (its
   * own included), as transformers' eager masking does; null: every earlier key (LLaMA).
   */
  slidingWindow: number | null;
  /** The decoder family, as config.json's model_type names it: its defaults and its chat format differ. */
  family: "llama" | "mistral";
  /** lm_head shares embed_tokens' weight (and the checkpoint holds no lm_head). */
  tieWordEmbeddings: boolean;
  /** q/k/v/o projections have biases. */
  attentionBias: boolean;
  bosTokenId: number | null;
  /** Llama 3 lists several end tokens; Llama 2 has one. */
  eosTokenIds: number[];
  padTokenId: number | null;
}

/** The image encoder (transformers' CLIPVisionConfig). */
export interface ClipVisionConfig {
  hiddenSize: number;
  intermediateSize: number;
  numHiddenLayers: number;
  numAttentionHeads: number;
  /** hiddenSize / numAttentionHeads. */
  headDim: number;
  numChannels: number;
  imageSize: number;
  patchSize: number;
  /** floor(imageSize / patchSize)²: the patch convolution drops a remainder, as in transformers. */
  numPatches: number;
  hiddenAct: Activation;
  layerNormEps: number;
}

/** A vision-language model (transformers' LlavaConfig). */
export interface LlavaConfig {
  text: LlamaConfig;
  vision: ClipVisionConfig;
  /** The token id marking where an image's features go in the prompt. */
  imageTokenIndex: number;
  projectorHiddenAct: Activation;
  /** Index into the vision tower's hidden states (0 = embeddings, -1 = last layer's output). */
  visionFeatureLayer: number;
  /** `default` drops the CLS token from the selected features, `full` keeps it. */
  visionFeatureSelectStrategy: "default" | "full";
  /** The projector's linear layers have biases (`multimodal_projector_bias`, newer transformers; true before). */
  projectorBias: boolean;
  /**
   * LLaVA-NeXT's "anyres" tiling (`model_type: llava_next`), null for llava-1.5: the image is
   * cut into tiles of the vision tower's size on the best of these grids, each tile encoded,
   * and the features put back together (models/anyres.ts).
   */
  anyres: AnyresConfig | null;
}

/** LlavaNextConfig's own fields. */
export interface AnyresConfig {
  /** The canvases an image may be tiled on, each [height, width] in pixels (multiples of the tile size). */
  gridPinpoints: [number, number][];
  /** transformers' `image_seq_length`: the base tile's positions (informational; the count per image follows from its size). */
  imageSeqLength: number;
}

/** CLIP's text encoder (transformers' CLIPTextConfig). */
export interface ClipTextConfig {
  vocabSize: number;
  hiddenSize: number;
  intermediateSize: number;
  numHiddenLayers: number;
  numAttentionHeads: number;
  /** hiddenSize / numAttentionHeads. */
  headDim: number;
  /** The context: the most tokens a text may have (77 in OpenAI's CLIP). */
  maxPositionEmbeddings: number;
  hiddenAct: Activation;
  layerNormEps: number;
  /**
   * Where the text is pooled: with eos_token_id 2 (what openai/clip-vit-* configs carry, not
   * the tokenizer's end id) transformers takes argmax(input_ids), the first end token since it
   * has the largest id; otherwise the first position holding eos_token_id.
   */
  eosTokenId: number;
}

/** A CLIP dual encoder (transformers' CLIPConfig). */
export interface ClipConfig {
  text: ClipTextConfig;
  vision: ClipVisionConfig;
  /** Both towers' pooled outputs are projected to this many dimensions. */
  projectionDim: number;
}

export type ModelConfig =
  | ({ kind: "llava" } & LlavaConfig)
  | { kind: "llama"; text: LlamaConfig }
  | { kind: "clip_vision"; vision: ClipVisionConfig }
  | ({ kind: "clip" } & ClipConfig);

/** A LLaVA or a LLaMA: a config with a decoder to generate with. */
export type DecoderModelConfig = Extract<ModelConfig, { kind: "llava" | "llama" }>;

export function hasDecoder(config: ModelConfig): config is DecoderModelConfig {
  return config.kind === "llava" || config.kind === "llama";
}

export class ConfigError extends Error {
  override name = "ConfigError";
}

/**
 * The largest value accepted for each number that sizes an allocation (tensor shapes, the list
 * of layers, activations): a typo or a corrupt file is refused by name before anything is
 * allocated. Each is several times the largest real model's: LLaMA-3.1 405B has hidden 16384,
 * intermediate 53248, 126 layers, 128 heads and 131072 positions; Gemma's vocabulary has
 * 256000 tokens; SigLIP's 896-pixel towers make 4096 patches.
 */
export const CONFIG_LIMITS = {
  hiddenSize: 65536,
  intermediateSize: 262144,
  layers: 1024,
  heads: 1024,
  vocabSize: 1 << 20,
  /** Only caps the context (which has its own limit, src/models/llava.ts); Llama 4 claims 10M. */
  maxPositionEmbeddings: 1 << 24,
  imageSize: 4096,
  patches: 65536,
} as const;

export const MODEL_CONFIG_FILE = "config.json";

/** Reads `config.json` from a model folder (or the given file) and checks every field we use. */
export async function loadConfig(path: string): Promise<ModelConfig> {
  let file = path;
  try {
    if ((await stat(path)).isDirectory()) file = join(path, MODEL_CONFIG_FILE);
  } catch {
    // a missing path is reported by the read below
  }
  const text = await readTextFileWithin(file, JSON_CONFIG_FILE, { as: ConfigError });
  let json: unknown;
  try {
    json = parseJson(text);
  } catch (error) {
    if (!(error instanceof JsonError)) throw error;
    throw new ConfigError(`${file}: not valid JSON (${error.message})`);
  }
  return parseConfig(json, file);
}

/** Checks a parsed config.json; `file` names it in errors. */
export function parseConfig(json: unknown, file: string): ModelConfig {
  const root = new Fields(json, file, "");
  const modelType = root.string("model_type", null);
  switch (modelType) {
    case "llava":
      return { kind: "llava", ...llavaConfig(root) };
    case "llava_next":
      return { kind: "llava", ...llavaConfig(root, true) };
    case "llama":
    case "mistral":
      return { kind: "llama", text: llamaConfig(root, modelType) };
    case "clip_vision_model":
      return { kind: "clip_vision", vision: clipVisionConfig(root) };
    case "clip":
      return { kind: "clip", ...clipConfig(root) };
    case null:
      return root.fail("model_type", `is missing; expected ${MODEL_TYPES}`);
    default:
      return root.fail("model_type", `${JSON.stringify(modelType)} is not supported (${MODEL_TYPES})`);
  }
}

const MODEL_TYPES = "llava, llava_next, llama, mistral, clip_vision_model or clip";

/** The most tiles one canvas may hold (each is a vision tower pass). */
export const MAX_TILES_PER_IMAGE = 64;

function llavaConfig(root: Fields, next = false): LlavaConfig {
  const textFields = root.object("text_config") ?? root.empty("text_config");
  const textType = textFields.string("model_type", "llama");
  if (textType !== "llama" && textType !== "mistral") textFields.fail("model_type", `${JSON.stringify(textType)} is not supported (llama or mistral decoders)`);
  const visionFields = root.object("vision_config");
  const visionType = visionFields?.string("model_type", "clip_vision_model");
  if (visionType && visionType !== "clip_vision_model") visionFields!.fail("model_type", `${JSON.stringify(visionType)} is not supported (only clip_vision_model)`);
  // LlavaConfig's own default vision tower when none is given: CLIP ViT-L/14 at 336 px.
  const vision = visionFields
    ? clipVisionConfig(visionFields)
    : clipVisionConfig(root.empty("vision_config"), { hidden_size: 1024, intermediate_size: 4096, patch_size: 14, image_size: 336, num_hidden_layers: 24, num_attention_heads: 16 });
  const text = llamaConfig(textFields, textType as "llama" | "mistral");

  // Newer transformers also accept the name image_token_id.
  const tokenField = root.has("image_token_index") || !root.has("image_token_id") ? "image_token_index" : "image_token_id";
  const imageTokenIndex = root.int(tokenField, 32000, 0);
  if (imageTokenIndex >= text.vocabSize) root.fail(tokenField, `${imageTokenIndex} is outside the vocabulary of ${text.vocabSize} tokens`);
  const layers = vision.numHiddenLayers;
  // hidden_states has layers + 1 entries; Python indexing allows -(layers + 1) .. layers.
  const visionFeatureLayer = root.int("vision_feature_layer", -2, -(layers + 1), layers);
  const config: LlavaConfig = {
    text,
    vision,
    imageTokenIndex,
    projectorHiddenAct: root.activation("projector_hidden_act", "gelu"),
    visionFeatureLayer,
    visionFeatureSelectStrategy: root.oneOf("vision_feature_select_strategy", "default", ["default", "full"] as const),
    projectorBias: root.bool("multimodal_projector_bias", true),
    anyres: next ? anyresConfig(root, vision) : null,
  };
  if (next && config.visionFeatureSelectStrategy === "full") {
    root.fail("vision_feature_select_strategy", `"full" cannot be tiled: LLaVA-NeXT lays out each tile's patch features as a grid, without the class token (transformers refuses it too)`);
  }
  return config;
}

function anyresConfig(root: Fields, vision: ClipVisionConfig): AnyresConfig {
  // LlavaNextConfig's default: llava-v1.6's canvases for 336-pixel tiles (the processor's too).
  const raw = root.raw("image_grid_pinpoints", LLAVA_NEXT_DEFAULT_PINPOINTS);
  const tile = vision.imageSize;
  if (!Array.isArray(raw) || raw.length === 0 || raw.length > MAX_GRID_PINPOINTS) {
    root.fail("image_grid_pinpoints", `must be a list of 1 to ${MAX_GRID_PINPOINTS} [height, width] pairs, got ${JSON.stringify(raw)?.slice(0, 200)}`);
  }
  const gridPinpoints = (raw as unknown[]).map((pair, i): [number, number] => {
    const ok = Array.isArray(pair) && pair.length === 2 && pair.every((n) => Number.isSafeInteger(n) && n > 0 && n % tile === 0);
    if (!ok) root.fail(`image_grid_pinpoints[${i}]`, `must be [height, width], positive multiples of the vision tower's image_size ${tile}, got ${JSON.stringify(pair)}`);
    const [h, w] = pair as [number, number];
    if ((h / tile) * (w / tile) > MAX_TILES_PER_IMAGE) {
      root.fail(`image_grid_pinpoints[${i}]`, `${JSON.stringify(pair)} makes ${(h / tile) * (w / tile)} tiles of ${tile} px, more than the ${MAX_TILES_PER_IMAGE} this runtime accepts`);
    }
    return [h, w];
  });
  return { gridPinpoints, imageSeqLength: root.int("image_seq_length", 576, 1) };
}

/**
 * MistralConfig's defaults where they differ from LlamaConfig's (transformers 4.49): Mistral-7B's
 * shapes, grouped-query attention with 8 KV heads, and a 4096-key sliding window.
 */
const MISTRAL_DEFAULTS = { intermediate_size: 14336, num_key_value_heads: 8, max_position_embeddings: 4096 * 32, sliding_window: 4096 };

function llamaConfig(f: Fields, modelType: "llama" | "mistral" = "llama"): LlamaConfig {
  const mistral = modelType === "mistral";
  const hiddenSize = f.size("hidden_size", 4096, CONFIG_LIMITS.hiddenSize);
  const numAttentionHeads = f.size("num_attention_heads", 32, CONFIG_LIMITS.heads);
  const numKeyValueHeads = f.int("num_key_value_heads", mistral ? Math.min(MISTRAL_DEFAULTS.num_key_value_heads, numAttentionHeads) : numAttentionHeads, 1, numAttentionHeads, !mistral);
  if (hiddenSize % numAttentionHeads !== 0) f.fail("hidden_size", `${hiddenSize} is not divisible by num_attention_heads ${numAttentionHeads}`);
  if (numAttentionHeads % numKeyValueHeads !== 0) f.fail("num_key_value_heads", `${numKeyValueHeads} does not divide num_attention_heads ${numAttentionHeads}`);
  const headDim = hiddenSize / numAttentionHeads;
  if (headDim % 2 !== 0) f.fail("hidden_size", `${hiddenSize} / num_attention_heads ${numAttentionHeads} = ${headDim} is odd: rotary embeddings rotate pairs of a head's dimensions`);
  // Fields newer transformers added: honoured when they mean what 4.40 does, refused otherwise.
  const explicitHeadDim = f.int("head_dim", headDim, 1, undefined, true);
  if (explicitHeadDim !== headDim) f.fail("head_dim", `${explicitHeadDim} differs from hidden_size / num_attention_heads = ${headDim}, which is not supported`);
  if (f.bool("mlp_bias", false)) f.fail("mlp_bias", "true is not supported (transformers 4.40's LLaMA MLP has no biases)");
  f.mustBeNull("rope_scaling", "rope scaling is not supported");
  // Newer transformers keep rope_theta inside rope_parameters; only its plain ("default") kind is supported.
  const rope = f.object("rope_parameters");
  rope?.oneOf("rope_type", "default", ["default"] as const);
  const ropeTheta = (rope?.has("rope_theta") ? rope : f).positive("rope_theta", 10000);
  // pretraining_tp > 1 makes transformers compute the projections in slices and sum them: the same
  // result up to float rounding, so any positive value is accepted.
  f.int("pretraining_tp", 1, 1);
  const vocabSize = f.size("vocab_size", 32000, CONFIG_LIMITS.vocabSize);
  const eos = f.raw("eos_token_id", 2);
  const eosTokenIds = eos === null ? [] : Array.isArray(eos) ? eos : [eos];
  if (!eosTokenIds.every((id) => Number.isSafeInteger(id) && id >= 0)) f.fail("eos_token_id", `${JSON.stringify(eos)} is not a token id or a list of them`);
  // An end token the model cannot produce would never stop a generation.
  const outside = (eosTokenIds as number[]).find((id) => id >= vocabSize);
  if (outside !== undefined) f.fail("eos_token_id", `${outside} is outside the vocabulary of ${vocabSize} tokens (vocab_size)`);
  const bosTokenId = f.tokenId("bos_token_id", 1);
  if (bosTokenId !== null && bosTokenId >= vocabSize) f.fail("bos_token_id", `${bosTokenId} is outside the vocabulary of ${vocabSize} tokens (vocab_size)`);
  return {
    vocabSize,
    hiddenSize,
    intermediateSize: f.size("intermediate_size", mistral ? MISTRAL_DEFAULTS.intermediate_size : 11008, CONFIG_LIMITS.intermediateSize),
    numHiddenLayers: f.size("num_hidden_layers", 32, CONFIG_LIMITS.layers),
    numAttentionHeads,
    numKeyValueHeads,
    headDim,
    hiddenAct: f.activation("hidden_act", "silu"),
    maxPositionEmbeddings: f.size("max_position_embeddings", mistral ? MISTRAL_DEFAULTS.max_position_embeddings : 2048, CONFIG_LIMITS.maxPositionEmbeddings),
    rmsNormEps: f.positive("rms_norm_eps", 1e-6),
    ropeTheta,
    slidingWindow: mistral ? f.optionalCount("sliding_window", MISTRAL_DEFAULTS.sliding_window) : null,
    family: modelType,
    tieWordEmbeddings: f.bool("tie_word_embeddings", false),
    attentionBias: f.bool("attention_bias", false),
    bosTokenId,
    eosTokenIds: eosTokenIds as number[],
    padTokenId: f.tokenId("pad_token_id", null),
  };
}

type ClipDefaults = Partial<Record<"hidden_size" | "intermediate_size" | "patch_size" | "image_size" | "num_hidden_layers" | "num_attention_heads", number>>;

function clipConfig(root: Fields): ClipConfig {
  const textFields = root.object("text_config") ?? root.empty("text_config");
  const visionFields = root.object("vision_config") ?? root.empty("vision_config");
  for (const [fields, type] of [[textFields, "clip_text_model"], [visionFields, "clip_vision_model"]] as const) {
    const t = fields.string("model_type", type);
    if (t !== type) fields.fail("model_type", `${JSON.stringify(t)} is not supported (${type})`);
  }
  return { text: clipTextConfig(textFields), vision: clipVisionConfig(visionFields), projectionDim: root.size("projection_dim", 512, CONFIG_LIMITS.hiddenSize) };
}

/** CLIPTextConfig's fields, with its defaults (those of openai/clip-vit-base-patch32's text tower). */
function clipTextConfig(f: Fields): ClipTextConfig {
  const hiddenSize = f.size("hidden_size", 512, CONFIG_LIMITS.hiddenSize);
  const numAttentionHeads = f.size("num_attention_heads", 8, CONFIG_LIMITS.heads);
  if (hiddenSize % numAttentionHeads !== 0) f.fail("hidden_size", `${hiddenSize} is not divisible by num_attention_heads ${numAttentionHeads}`);
  const vocabSize = f.size("vocab_size", 49408, CONFIG_LIMITS.vocabSize);
  const eosTokenId = f.int("eos_token_id", 49407, 0);
  if (eosTokenId >= vocabSize) f.fail("eos_token_id", `${eosTokenId} is outside the vocabulary of ${vocabSize} tokens`);
  return {
    vocabSize,
    hiddenSize,
    intermediateSize: f.size("intermediate_size", 2048, CONFIG_LIMITS.intermediateSize),
    numHiddenLayers: f.size("num_hidden_layers", 12, CONFIG_LIMITS.layers),
    numAttentionHeads,
    headDim: hiddenSize / numAttentionHeads,
    maxPositionEmbeddings: f.size("max_position_embeddings", 77, CLIP_MAX_CONTEXT),
    hiddenAct: f.activation("hidden_act", "quick_gelu"),
    layerNormEps: f.positive("layer_norm_eps", 1e-5),
    eosTokenId,
  };
}

/** The longest CLIP text accepted: every query attends to all earlier tokens, so texts are short (77 in OpenAI's CLIP). */
export const CLIP_MAX_CONTEXT = 4096;

function clipVisionConfig(f: Fields, defaults: ClipDefaults = {}): ClipVisionConfig {
  const hiddenSize = f.size("hidden_size", defaults.hidden_size ?? 768, CONFIG_LIMITS.hiddenSize);
  const numAttentionHeads = f.size("num_attention_heads", defaults.num_attention_heads ?? 12, CONFIG_LIMITS.heads);
  if (hiddenSize % numAttentionHeads !== 0) f.fail("hidden_size", `${hiddenSize} is not divisible by num_attention_heads ${numAttentionHeads}`);
  const imageSize = f.size("image_size", defaults.image_size ?? 224, CONFIG_LIMITS.imageSize);
  const patchSize = f.int("patch_size", defaults.patch_size ?? 32, 1, imageSize);
  const numPatches = Math.floor(imageSize / patchSize) ** 2;
  if (numPatches > CONFIG_LIMITS.patches) {
    f.fail("patch_size", `${patchSize} cuts image_size ${imageSize} into ${numPatches} patches, more than the ${CONFIG_LIMITS.patches} this runtime accepts`);
  }
  const numChannels = f.int("num_channels", 3, 1);
  if (numChannels !== 3) f.fail("num_channels", `${numChannels} is not supported (images are RGB)`);
  return {
    hiddenSize,
    intermediateSize: f.size("intermediate_size", defaults.intermediate_size ?? 3072, CONFIG_LIMITS.intermediateSize),
    numHiddenLayers: f.size("num_hidden_layers", defaults.num_hidden_layers ?? 12, CONFIG_LIMITS.layers),
    numAttentionHeads,
    headDim: hiddenSize / numAttentionHeads,
    numChannels,
    imageSize,
    patchSize,
    numPatches,
    hiddenAct: f.activation("hidden_act", "quick_gelu"),
    layerNormEps: f.positive("layer_norm_eps", 1e-5),
  };
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** Typed access to one JSON object of a config, with errors that name the file and the field's path. */
class Fields {
  private readonly values: Record<string, unknown>;

  constructor(
    value: unknown,
    private readonly file: string,
    private readonly prefix: string,
  ) {
    if (!isPlainObject(value)) throw new ConfigError(`${file}: ${prefix ? prefix.slice(0, -1) : "the config"} is not a JSON object`);
    this.values = value;
  }

  fail(field: string, problem: string): never {
    throw new ConfigError(`${this.file}: ${this.prefix}${field} ${problem}`);
  }

  /** A sub-object, or undefined when the field is absent or null. */
  object(field: string): Fields | undefined {
    const v = this.values[field];
    if (v === undefined || v === null) return undefined;
    if (!isPlainObject(v)) this.fail(field, `must be an object, got ${JSON.stringify(v)}`);
    return new Fields(v, this.file, `${this.prefix}${field}.`);
  }

  /** An empty sub-object: every field takes its default. */
  empty(field: string): Fields {
    return new Fields({}, this.file, `${this.prefix}${field}.`);
  }

  has(field: string): boolean {
    return Object.hasOwn(this.values, field) && this.values[field] !== null;
  }

  raw(field: string, fallback: unknown): unknown {
    return Object.hasOwn(this.values, field) ? this.values[field] : fallback;
  }

  /** An integer in [min, max]; `nullIsDefault` for fields whose transformers default is None (meaning "derive it"). */
  int(field: string, fallback: number, min: number, max?: number, nullIsDefault = false): number {
    let v = this.raw(field, fallback);
    if (v === null && nullIsDefault) v = fallback;
    const range = max === undefined ? `>= ${min}` : `in [${min}, ${max}]`;
    if (!Number.isSafeInteger(v) || (v as number) < min || (max !== undefined && (v as number) > max)) {
      this.fail(field, `must be an integer ${range}, got ${JSON.stringify(v)}`);
    }
    return v as number;
  }

  /** A positive integer that sizes allocations: above `limit` (see CONFIG_LIMITS) it is refused. */
  size(field: string, fallback: number, limit: number): number {
    const v = this.int(field, fallback, 1);
    if (v > limit) this.fail(field, `${v} is more than ${limit}, the most this runtime accepts (several times any real model's)`);
    return v;
  }

  /** A token id that may be null (none). */
  tokenId(field: string, fallback: number | null): number | null {
    const v = this.raw(field, fallback);
    if (v === null) return null;
    return this.int(field, fallback ?? 0, 0);
  }

  /** A positive integer, or null (none): a count that may be absent, such as a window. */
  optionalCount(field: string, fallback: number | null): number | null {
    const v = this.raw(field, fallback);
    if (v === null) return null;
    return this.int(field, fallback ?? 1, 1);
  }

  positive(field: string, fallback: number): number {
    const v = this.raw(field, fallback);
    if (typeof v !== "number" || !Number.isFinite(v) || v <= 0) this.fail(field, `must be a positive number, got ${JSON.stringify(v)}`);
    return v as number;
  }

  bool(field: string, fallback: boolean): boolean {
    const v = this.raw(field, fallback);
    if (typeof v !== "boolean") this.fail(field, `must be true or false, got ${JSON.stringify(v)}`);
    return v as boolean;
  }

  string(field: string, fallback: string | null): string | null {
    const v = this.raw(field, fallback);
    if (v !== null && typeof v !== "string") this.fail(field, `must be a string, got ${JSON.stringify(v)}`);
    return v as string | null;
  }

  oneOf<T extends string>(field: string, fallback: T, allowed: readonly T[]): T {
    const v = this.raw(field, fallback);
    if (!allowed.includes(v as T)) this.fail(field, `${JSON.stringify(v)} is not supported (${allowed.join(" or ")})`);
    return v as T;
  }

  activation(field: string, fallback: Activation): Activation {
    const v = this.raw(field, fallback);
    if (!ACTIVATIONS.includes(v as Activation)) this.fail(field, `${JSON.stringify(v)} is not a supported activation (${ACTIVATIONS.join(", ")})`);
    return v as Activation;
  }

  /** A field that must be absent or null (or pass `harmless`), else the computation would differ. */
  mustBeNull(field: string, why: string, harmless: (value: unknown) => boolean = () => false): void {
    const v = this.raw(field, null);
    if (v !== null && !harmless(v)) this.fail(field, `${JSON.stringify(v)}: ${why}`);
  }
}
