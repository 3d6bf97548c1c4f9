/**
 * A model configuration from GGUF metadata: llama.cpp's text model (`general.architecture =
 * llama`, keys `llama.*`) and, for LLaVA, its mmproj file (`general.architecture = clip`, keys
 * `clip.*`).
 *
 * The metadata is translated into the config.json transformers would have written, and that
 * goes through the same checks (config.ts) as a Hugging Face folder's, so both formats mean
 * the same model by the same rules. Errors name the GGUF key, not the config field it became.
 *
 * What the keys mean (llama.cpp's gguf-py constants and its converters):
 *   llama.embedding_length / feed_forward_length / block_count     hidden, intermediate sizes, layers
 *   llama.attention.head_count / head_count_kv                      query heads, key/value heads (GQA)
 *   llama.attention.layer_norm_rms_epsilon, llama.rope.freq_base    RMSNorm epsilon, RoPE base
 *   llama.context_length                                            max_position_embeddings
 *   clip.vision.image_size / patch_size / embedding_length / feed_forward_length / block_count
 *   clip.vision.attention.head_count / layer_norm_epsilon           the CLIP tower
 *   clip.use_gelu (else quick_gelu), clip.projector_type (mlp)      its activation, the projector
 *   clip.vision.feature_layer                                       the hidden state the projector reads
 * An mmproj file holds only the tower's layers up to the one the projector reads (the
 * converter drops the rest), so its last stored layer feeds the projector unless
 * feature_layer says otherwise. The class token's features are always dropped, as
 * llama.cpp's LLaVA graph does (vision_feature_select_strategy "default").
 *
 * Refused by name, since the model would compute something else: another architecture, RoPE
 * scaling, mixture-of-experts, partial rotary dimensions, a projector other than LLaVA's MLP,
 * LLaVA-NeXT's tiling (image_grid_pinpoints), several feature layers.
 */
import { ConfigError, parseConfig, type ModelConfig } from "./config.js";
import type { GgufFile } from "./gguf.js";
import type { GgufValue } from "./gguf_types.js";

/** Typed reads of one file's metadata, with errors naming the file and the key. */
export class GgufFields {
  constructor(
    readonly file: GgufFile,
    private readonly what = "metadata",
  ) {}

  fail(key: string, problem: string): never {
    throw new ConfigError(`${this.file.path}: ${this.what} '${key}' ${problem}`);
  }

  has(key: string): boolean {
    return this.file.metadata.has(key);
  }

  private value(key: string): GgufValue | undefined {
    return this.file.metadata.get(key);
  }

  /** A non-negative integer of any integer type. */
  uint(key: string): number;
  uint(key: string, fallback: number | undefined): number | undefined;
  uint(key: string, fallback?: number): number | undefined {
    const v = this.value(key);
    if (v === undefined) return arguments.length > 1 ? fallback : this.fail(key, "is missing");
    const n = typeof v.value === "bigint" ? Number(v.value) : v.value;
    if (!/INT/.test(v.type) || typeof n !== "number" || !Number.isSafeInteger(n) || n < 0) this.fail(key, `must be a non-negative integer, not ${v.type} ${String(v.value)}`);
    return n;
  }

  /** A FLOAT32 or FLOAT64. */
  float(key: string): number;
  float(key: string, fallback: number | undefined): number | undefined;
  float(key: string, fallback?: number): number | undefined {
    const v = this.value(key);
    if (v === undefined) return arguments.length > 1 ? fallback : this.fail(key, "is missing");
    if ((v.type !== "FLOAT32" && v.type !== "FLOAT64") || !Number.isFinite(v.value)) this.fail(key, `must be a finite float, not ${v.type} ${String(v.value)}`);
    return v.value as number;
  }

  string(key: string): string | undefined {
    const v = this.value(key);
    if (v === undefined) return undefined;
    if (v.type !== "STRING") this.fail(key, `must be a STRING, not ${v.type}`);
    return v.value;
  }

  bool(key: string, fallback: boolean): boolean {
    const v = this.value(key);
    if (v === undefined) return fallback;
    if (v.type !== "BOOL") this.fail(key, `must be a BOOL, not ${v.type}`);
    return v.value;
  }

  /** An ARRAY of numbers (of any numeric item type). */
  numbers(key: string): number[] | undefined {
    const v = this.value(key);
    if (v === undefined) return undefined;
    if (v.type !== "ARRAY" || !v.value.values.every((x) => typeof x === "number" || typeof x === "bigint")) this.fail(key, "must be an ARRAY of numbers");
    return v.value.values.map(Number);
  }

  /** An ARRAY of strings. */
  strings(key: string): string[] | undefined {
    const v = this.value(key);
    if (v === undefined) return undefined;
    if (v.type !== "ARRAY" || v.value.itemType !== "STRING") this.fail(key, "must be an ARRAY of STRING");
    return v.value.values as string[];
  }
}

/** What the config needs to know about the tensors (which ones a file holds, the vocabulary's rows). */
export interface GgufTensorFacts {
  /** token_embd.weight's rows. */
  vocabSize: number;
  hasOutput: boolean;
  hasAttentionBias: boolean;
  /** mm.2.weight exists (LLaVA-1.5's two-layer MLP); else one linear layer. */
  hasSecondProjectorLayer?: boolean;
  hasProjectorBias?: boolean;
}

/** The token id that marks an image in the prompt: `<image>` when the vocabulary has it, else the first id past it (never embedded: image features take its place). */
export function ggufImageTokenId(tokens: readonly string[] | undefined, vocabSize: number): number {
  const id = tokens?.indexOf("<image>") ?? -1;
  return id >= 0 && id < vocabSize ? id : vocabSize;
}

/** Config fields that come from GGUF keys, for naming the key when config.ts refuses a value. */
type KeyMap = Record<string, string>;

function llamaJson(f: GgufFields, facts: GgufTensorFacts, keys: KeyMap): Record<string, unknown> {
  const arch = f.string("general.architecture");
  if (arch === undefined) f.fail("general.architecture", "is missing: this does not look like a llama.cpp model file");
  if (arch !== "llama") {
    const clip = arch === "clip" ? " (this is an mmproj file, a vision tower and projector: pass it as --mmproj, and the text model as --model)" : "";
    f.fail("general.architecture", `is ${JSON.stringify(arch)}; only llama (LLaMA, Vicuna, Mistral-as-llama decoders) is supported${clip}`);
  }
  const scaling = f.string("llama.rope.scaling.type");
  if (scaling !== undefined && scaling !== "none") f.fail("llama.rope.scaling.type", `${JSON.stringify(scaling)}: RoPE scaling is not supported`);
  const linear = f.float("llama.rope.scale_linear", undefined);
  if (linear !== undefined && linear !== 1) f.fail("llama.rope.scale_linear", `${linear}: RoPE scaling is not supported`);
  const experts = f.uint("llama.expert_count", undefined);
  if (experts !== undefined && experts > 0) f.fail("llama.expert_count", `${experts}: mixture-of-experts models are not supported`);
  const hidden = f.uint("llama.embedding_length");
  const heads = f.uint("llama.attention.head_count");
  const headDim = heads > 0 && hidden % heads === 0 ? hidden / heads : undefined;
  const keyLength = f.uint("llama.attention.key_length", undefined);
  if (keyLength !== undefined && keyLength !== headDim) f.fail("llama.attention.key_length", `${keyLength} differs from embedding_length / head_count = ${headDim}, which is not supported`);
  const rotary = f.uint("llama.rope.dimension_count", undefined);
  if (rotary !== undefined && rotary !== headDim) f.fail("llama.rope.dimension_count", `${rotary}: rotating only part of each head (of ${headDim}) is not supported`);
  const fields: [string, string, unknown][] = [
    ["hidden_size", "llama.embedding_length", hidden],
    ["intermediate_size", "llama.feed_forward_length", f.uint("llama.feed_forward_length")],
    ["num_hidden_layers", "llama.block_count", f.uint("llama.block_count")],
    ["num_attention_heads", "llama.attention.head_count", heads],
    ["num_key_value_heads", "llama.attention.head_count_kv", f.uint("llama.attention.head_count_kv", heads)],
    ["max_position_embeddings", "llama.context_length", f.uint("llama.context_length")],
    ["rms_norm_eps", "llama.attention.layer_norm_rms_epsilon", f.float("llama.attention.layer_norm_rms_epsilon")],
    ["rope_theta", "llama.rope.freq_base", f.float("llama.rope.freq_base", 10000)],
    ["vocab_size", "token_embd.weight", facts.vocabSize],
    ["bos_token_id", "tokenizer.ggml.bos_token_id", f.uint("tokenizer.ggml.bos_token_id", undefined) ?? null],
    ["eos_token_id", "tokenizer.ggml.eos_token_id", f.uint("tokenizer.ggml.eos_token_id", undefined) ?? null],
    ["pad_token_id", "tokenizer.ggml.padding_token_id", f.uint("tokenizer.ggml.padding_token_id", undefined) ?? null],
  ];
  const vocabKey = f.uint("llama.vocab_size", undefined);
  if (vocabKey !== undefined && vocabKey !== facts.vocabSize) f.fail("llama.vocab_size", `is ${vocabKey}, but token_embd.weight has ${facts.vocabSize} rows`);
  const json: Record<string, unknown> = { model_type: "llama", hidden_act: "silu", tie_word_embeddings: !facts.hasOutput, attention_bias: facts.hasAttentionBias };
  for (const [field, key, value] of fields) {
    json[field] = value;
    keys[field] = key;
  }
  return json;
}

function clipJson(f: GgufFields, keys: KeyMap): { vision: Record<string, unknown>; featureLayer: number } {
  const arch = f.string("general.architecture");
  if (arch !== "clip") f.fail("general.architecture", `is ${JSON.stringify(arch ?? null)}; an mmproj file is "clip"`);
  if (!f.bool("clip.has_vision_encoder", true)) f.fail("clip.has_vision_encoder", "is false: this file has no vision tower");
  const projector = f.string("clip.projector_type") ?? "mlp";
  if (projector !== "mlp") f.fail("clip.projector_type", `is ${JSON.stringify(projector)}; only LLaVA's MLP projector ("mlp") is supported`);
  if (f.has("clip.vision.image_grid_pinpoints")) f.fail("clip.vision.image_grid_pinpoints", "is set: LLaVA-NeXT's image tiling (llava-v1.6) is not supported yet");
  const merge = f.string("clip.vision.mm_patch_merge_type");
  if (merge !== undefined && merge !== "flat") f.fail("clip.vision.mm_patch_merge_type", `${JSON.stringify(merge)}: LLaVA-NeXT's patch merging is not supported yet`);
  const layers = f.uint("clip.vision.block_count");
  const featureLayers = f.numbers("clip.vision.feature_layer");
  if (featureLayers && featureLayers.length !== 1) f.fail("clip.vision.feature_layer", `[${featureLayers.join(", ")}]: features from several layers are not supported`);
  // feature_layer indexes the hidden states (0 = the embeddings, n = layer n's output); without it, the last stored layer.
  const featureLayer = featureLayers ? featureLayers[0] : layers;
  if (featureLayer < 1 || featureLayer > layers) f.fail("clip.vision.feature_layer", `${featureLayer} is not one of the ${layers} stored layers' outputs (1 to ${layers})`);
  const act = f.bool("clip.use_gelu", false) ? "gelu" : f.bool("clip.use_silu", false) ? "silu" : "quick_gelu";
  const fields: [string, string, unknown][] = [
    ["hidden_size", "clip.vision.embedding_length", f.uint("clip.vision.embedding_length")],
    ["intermediate_size", "clip.vision.feed_forward_length", f.uint("clip.vision.feed_forward_length")],
    ["num_hidden_layers", "clip.vision.block_count", layers],
    ["num_attention_heads", "clip.vision.attention.head_count", f.uint("clip.vision.attention.head_count")],
    ["image_size", "clip.vision.image_size", f.uint("clip.vision.image_size")],
    ["patch_size", "clip.vision.patch_size", f.uint("clip.vision.patch_size")],
    ["layer_norm_eps", "clip.vision.attention.layer_norm_epsilon", f.float("clip.vision.attention.layer_norm_epsilon")],
  ];
  const vision: Record<string, unknown> = { model_type: "clip_vision_model", hidden_act: act };
  for (const [field, key, value] of fields) {
    vision[field] = value;
    keys[`vision_config.${field}`] = key;
  }
  return { vision, featureLayer };
}

/**
 * The model of a GGUF text file and, when given, its mmproj file: a LLaMA decoder alone, or
 * LLaVA. `facts` describes the tensors the files hold.
 */
export function configFromGguf(text: GgufFile, mmproj: GgufFile | undefined, facts: GgufTensorFacts): ModelConfig {
  const keys: KeyMap = {};
  const textFields = new GgufFields(text);
  const llama = llamaJson(textFields, facts, keys);
  let json: Record<string, unknown> = llama;
  if (mmproj) {
    const { vision, featureLayer } = clipJson(new GgufFields(mmproj), keys);
    for (const [field, key] of Object.entries(keys)) if (!field.startsWith("vision_config.")) keys[`text_config.${field}`] = key;
    json = {
      model_type: "llava",
      text_config: llama,
      vision_config: vision,
      image_token_index: ggufImageTokenId(textFields.strings("tokenizer.ggml.tokens"), facts.vocabSize),
      vision_feature_layer: featureLayer,
      vision_feature_select_strategy: "default",
      projector_hidden_act: "gelu",
      multimodal_projector_bias: facts.hasProjectorBias ?? true,
    };
    // The image token may be one past the vocabulary (see ggufImageTokenId), which config.json could not say.
    const config = translateErrors(() => parseConfig({ ...json, image_token_index: 0 }, "GGUF"), text, mmproj, keys);
    if (config.kind === "llava") config.imageTokenIndex = json.image_token_index as number;
    return config;
  }
  return translateErrors(() => parseConfig(json, "GGUF"), text, mmproj, keys);
}

/** Runs config.ts's checks, turning a refusal of a config field into one naming the GGUF file and key it came from. */
function translateErrors(parse: () => ModelConfig, text: GgufFile, mmproj: GgufFile | undefined, keys: KeyMap): ModelConfig {
  try {
    return parse();
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    const match = /^GGUF: (\S+) (.*)$/s.exec(error.message);
    const key = match && keys[match[1]];
    if (!match || !key) throw new ConfigError(`${text.path}${mmproj ? ` with ${mmproj.path}` : ""}: ${error.message.replace(/^GGUF: /, "")}`);
    const file = match[1].startsWith("vision_config.") ? mmproj! : text;
    throw new ConfigError(`${file.path}: metadata '${key}' ${match[2]}`);
  }
}
