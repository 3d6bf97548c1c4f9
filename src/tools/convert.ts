/**
 * A Hugging Face LLaVA (or LLaMA) folder → llama.cpp's GGUF pair: the text model, in f32, f16
 * or one of ggml's 32-element quantized types, and for LLaVA the mmproj file with the vision
 * tower and projector, as llama.cpp's converters write them (see weights/gguf_config.ts for
 * the keys, weights/gguf_names.ts for the names):
 *
 * - attn_q and attn_k rows are put in llama.cpp's RoPE order (weights/gguf_checkpoint.ts
 *   undoes it on loading);
 * - matrices are quantized by ggml's own reference quantizers, bit for bit
 *   (kernels/quant/quantize.ts; the K-quants' search takes tens of µs per 256 weights on
 *   the CPU, so a 7B model in q4_k takes most of an hour); vectors stay F32, as llama.cpp
 *   keeps them, and a matrix whose rows are not whole blocks goes in F16 (llama.cpp falls
 *   back the same way);
 * - the mmproj holds the tower's layers up to the one the projector reads, and says which
 *   in clip.vision.feature_layer, so llama.cpp runs exactly those (without that key it runs
 *   one layer fewer than the file holds); its matrices are F16 (F32 when converting to f32)
 *   unless `visionDtype` quantizes them (the matrices the loader would: load.ts's
 *   quantizedOnLoad, so not the patch and position embeddings), its vectors F32;
 * - the tokenizer (tokenizer.model and tokenizer_config.json) goes into the text model's
 *   tokenizer.ggml.* keys; without a tokenizer.model the file has none, and llama.cpp will
 *   not load it (this runtime will, for verification).
 *
 * Tensors are read, converted and written one at a time, so memory stays at one tensor.
 * What llama.cpp could not express is refused by name: LLaVA keeping the class token's
 * features (vision_feature_select_strategy "full"), activations it has no key for.
 */
import { basename, join } from "node:path";
import { BLOCK_LAYOUT } from "../kernels/quant/blocks.js";
import { QUANTIZABLE_TYPES, quantize, type QuantizableType } from "../kernels/quant/quantize.js";
import { f32ToF16Bits } from "../tensor/dtype.js";
import { parseSentencePieceModel } from "../tokenizer/sentencepiece_model.js";
import { parseTokenizerConfig } from "../tokenizer/config.js";
import { ggufTokenizerMetadata } from "../tokenizer/gguf_vocab.js";
import { pathExists, readFileWithin, readTextFileWithin } from "../files/read.js";
import { JSON_CONFIG_FILE, TOKENIZER_MODEL_FILE } from "../files/limits.js";
import { CONFIG_FILE_NAME, loadPreprocessorConfig, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD } from "../image/config.js";
import { Checkpoint, checkModelFolder } from "../weights/checkpoint.js";
import { hasDecoder, loadConfig, type LlamaConfig, type ModelConfig } from "../weights/config.js";
import { ggufTensorName } from "../weights/gguf_names.js";
import type { GgufValue } from "../weights/gguf_types.js";
import { writeGguf, type GgufTensorToWrite } from "../weights/gguf_writer.js";
import { resolveWeights, visionLayersUsed } from "../weights/names.js";
import { quantizedOnLoad } from "../models/load.js";

export type ConvertDType = "f32" | "f16" | Lowercase<QuantizableType>;
export const CONVERT_DTYPES: readonly ConvertDType[] = ["f32", "f16", ...QUANTIZABLE_TYPES.map((t) => t.toLowerCase() as Lowercase<QuantizableType>)];

export interface ConvertOptions {
  dtype: ConvertDType;
  /** The text model's GGUF. */
  out: string;
  /** The mmproj GGUF (LLaVA only; required for it). */
  mmprojOut?: string;
  /** The mmproj's matrices (default f16, or f32 when dtype is f32). */
  visionDtype?: ConvertDType;
  /** Replace existing output files. */
  force?: boolean;
  /** After each tensor written. */
  onProgress?: (done: number, total: number, tensor: string) => void;
}

export interface ConvertReport {
  files: { path: string; tensors: number; bytes: number }[];
  /** What the files leave out or do differently, for the user. */
  notes: string[];
}

export class ConvertError extends Error {
  override name = "ConvertError";
}

/** llama.cpp's general.file_type (LLAMA_FTYPE) of each dtype ("mostly" that type: the K ones as its _S mixes, or Q6_K). */
const FILE_TYPES: Record<ConvertDType, number> = { f32: 0, f16: 1, q4_0: 2, q4_1: 3, q8_0: 7, q5_0: 8, q5_1: 9, q4_k: 14, q5_k: 16, q6_k: 18 };

const u32 = (value: number): GgufValue => ({ type: "UINT32", value });
const f32 = (value: number): GgufValue => ({ type: "FLOAT32", value });
const str = (value: string): GgufValue => ({ type: "STRING", value });
const bool = (value: boolean): GgufValue => ({ type: "BOOL", value });
const floats = (values: readonly number[]): GgufValue => ({ type: "ARRAY", value: { itemType: "FLOAT32", values: [...values] } });

/** float32 values as F16's bytes (rounded to nearest even). */
function toF16Bytes(values: Float32Array): Uint8Array {
  const out = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) out[i] = f32ToF16Bits(values[i]);
  return new Uint8Array(out.buffer);
}

/** Rows of a [rows, cols] matrix in llama.cpp's RoPE order over `heads` heads (weights/gguf_checkpoint.ts undoes it). */
export function toLlamaCppRopeOrder(values: Float32Array, rows: number, heads: number): Float32Array {
  const cols = values.length / rows;
  const headRows = rows / heads;
  const half = headRows / 2;
  const out = new Float32Array(values.length);
  for (let row = 0; row < rows; row++) {
    const head = Math.floor(row / headRows);
    const inHead = row % headRows;
    // GGUF row h·D + 2i + j holds transformers' row h·D + j·D/2 + i.
    const source = head * headRows + (inHead % 2) * half + Math.floor(inHead / 2);
    out.set(values.subarray(source * cols, (source + 1) * cols), row * cols);
  }
  return out;
}

interface PlannedTensor {
  canonical: string;
  checkpointName: string;
  shape: number[];
  type: string;
  /** Heads to reorder rows over (attn_q, attn_k). */
  ropeHeads?: number;
}

function textMetadata(text: LlamaConfig, name: string, dtype: ConvertDType): Record<string, GgufValue> {
  const metadata: Record<string, GgufValue> = {
    "general.architecture": str("llama"),
    "general.name": str(name),
    "llama.context_length": u32(text.maxPositionEmbeddings),
    "llama.embedding_length": u32(text.hiddenSize),
    "llama.block_count": u32(text.numHiddenLayers),
    "llama.feed_forward_length": u32(text.intermediateSize),
    "llama.rope.dimension_count": u32(text.headDim),
    "llama.attention.head_count": u32(text.numAttentionHeads),
    "llama.attention.head_count_kv": u32(text.numKeyValueHeads),
    "llama.attention.layer_norm_rms_epsilon": f32(text.rmsNormEps),
    "llama.rope.freq_base": f32(text.ropeTheta),
    "llama.vocab_size": u32(text.vocabSize),
    "general.file_type": u32(FILE_TYPES[dtype]),
  };
  if (dtype.startsWith("q")) metadata["general.quantization_version"] = u32(2);
  return metadata;
}

async function tokenizerMetadata(folder: string, text: LlamaConfig, notes: string[]): Promise<Record<string, GgufValue>> {
  const modelFile = join(folder, "tokenizer.model");
  if (!(await pathExists(modelFile))) {
    notes.push(`${folder} has no tokenizer.model: the text model's GGUF has no vocabulary, which llama.cpp needs (this runtime loads it for verification)`);
    return {};
  }
  const model = parseSentencePieceModel(await readFileWithin(modelFile, TOKENIZER_MODEL_FILE), modelFile);
  const configFile = join(folder, "tokenizer_config.json");
  const config = (await pathExists(configFile))
    ? parseTokenizerConfig(await readTextFileWithin(configFile, JSON_CONFIG_FILE), configFile)
    : undefined;
  const eos = text.eosTokenIds[0];
  return ggufTokenizerMetadata(model, {
    vocabSize: text.vocabSize,
    addedTokens: config?.addedTokens,
    bosId: text.bosTokenId,
    eosId: eos ?? null,
    padId: text.padTokenId,
    addBos: config?.addBosToken,
    addEos: config?.addEosToken,
  }) as Record<string, GgufValue>;
}

async function visionMetadata(folder: string, config: Extract<ModelConfig, { kind: "llava" }>, visionDtype: ConvertDType): Promise<Record<string, GgufValue>> {
  const v = config.vision;
  const fail = (field: string, problem: string): never => {
    throw new ConvertError(`${folder}: ${field} ${problem}, which an mmproj GGUF cannot express`);
  };
  if (config.visionFeatureSelectStrategy !== "default") fail("vision_feature_select_strategy", `is ${JSON.stringify(config.visionFeatureSelectStrategy)} (llama.cpp always drops the class token's features)`);
  if (config.projectorHiddenAct !== "gelu") fail("projector_hidden_act", `is ${JSON.stringify(config.projectorHiddenAct)} (llama.cpp's MLP projector uses GELU)`);
  if (!["gelu", "quick_gelu", "silu"].includes(v.hiddenAct)) fail("vision_config.hidden_act", `is ${JSON.stringify(v.hiddenAct)} (clip.use_gelu, clip.use_silu or quick GELU)`);
  const preprocessor = (await pathExists(join(folder, CONFIG_FILE_NAME))) ? await loadPreprocessorConfig(folder) : undefined;
  const used = visionLayersUsed(config);
  return {
    "general.architecture": str("clip"),
    "general.name": str(basename(folder)),
    "general.description": str("image encoder for LLaVA"),
    "general.file_type": u32(FILE_TYPES[visionDtype]),
    "clip.has_text_encoder": bool(false),
    "clip.has_vision_encoder": bool(true),
    "clip.has_llava_projector": bool(true),
    "clip.projector_type": str("mlp"),
    "clip.vision.image_size": u32(v.imageSize),
    "clip.vision.patch_size": u32(v.patchSize),
    "clip.vision.embedding_length": u32(v.hiddenSize),
    "clip.vision.feed_forward_length": u32(v.intermediateSize),
    "clip.vision.attention.head_count": u32(v.numAttentionHeads),
    "clip.vision.attention.layer_norm_epsilon": f32(v.layerNormEps),
    "clip.vision.block_count": u32(used),
    "clip.vision.feature_layer": { type: "ARRAY", value: { itemType: "INT32", values: [used] } },
    "clip.vision.image_mean": floats(preprocessor?.imageMean ?? OPENAI_CLIP_MEAN),
    "clip.vision.image_std": floats(preprocessor?.imageStd ?? OPENAI_CLIP_STD),
    "clip.use_gelu": bool(v.hiddenAct === "gelu"),
    "clip.use_silu": bool(v.hiddenAct === "silu"),
  };
}

/** The GGUF type a tensor (canonical name `canonical`) is written in, as `dtype` asks for its part of the model. */
function typeFor(canonical: string, shape: readonly number[], dtype: ConvertDType, notes: string[], name: string): string {
  if (shape.length < 2) return "F32";
  if (dtype === "f32") return "F32";
  if (dtype === "f16") return "F16";
  const type = dtype.toUpperCase() as QuantizableType;
  const { elements } = BLOCK_LAYOUT[type];
  if (quantizedOnLoad(canonical, shape, { text: type, vision: type }) !== undefined) return type;
  // A matrix whose rows are not whole blocks falls back to F16, as in llama.cpp; the vision
  // tower's patch and position embeddings are F16 by design.
  if (shape.length === 2 && shape[1] % elements !== 0) {
    notes.push(`${name}: rows of ${shape.slice(1).join("×")} are not whole ${type} blocks of ${elements}; written as F16`);
  }
  return "F16";
}

/** Converts `folder` into the GGUF file(s) of `options`. */
export async function convertToGguf(folder: string, options: ConvertOptions): Promise<ConvertReport> {
  const { dtype } = options;
  const visionDtype = options.visionDtype ?? (dtype === "f32" ? "f32" : "f16");
  for (const [key, value] of [["dtype", dtype], ["visionDtype", visionDtype]]) {
    if (!(CONVERT_DTYPES as readonly string[]).includes(value)) {
      throw new ConvertError(`${key} ${JSON.stringify(value)} cannot be written: one of ${CONVERT_DTYPES.join(", ")}`);
    }
  }
  await checkModelFolder(folder);
  const config = await loadConfig(folder);
  if (!hasDecoder(config)) throw new ConvertError(`${folder}: a CLIP model has no GGUF form here (convert a LLaVA or LLaMA folder)`);
  if (config.kind === "llava" && options.mmprojOut === undefined) throw new ConvertError(`${folder} is a LLaVA model: give the mmproj file's path too (--mmproj-out)`);
  if (config.kind === "llama" && (options.mmprojOut !== undefined || options.visionDtype !== undefined)) {
    throw new ConvertError(`${folder} is a text-only LLaMA model: it has no vision tower for an mmproj file`);
  }
  const notes: string[] = [];
  const visionMeta = config.kind === "llava" ? await visionMetadata(folder, config, visionDtype) : undefined;
  const textMeta = { ...textMetadata(config.text, basename(folder), dtype), ...(await tokenizerMetadata(folder, config.text, notes)) };
  const checkpoint = await Checkpoint.open(folder);
  try {
    const resolved = resolveWeights(config, checkpoint);
    const plan: PlannedTensor[] = [];
    for (const t of resolved.tensors.values()) {
      const name = ggufTensorName(t.name);
      if (name === undefined) throw new ConvertError(`${t.checkpointName}: llama.cpp has no name for ${t.name}`);
      const vision = !t.name.startsWith("text.") && !t.name.startsWith("lm_head.");
      const rope = /^text\.layers\.\d+\.self_attn\.([qk])_proj\./.exec(t.name);
      const ropeHeads = rope ? (rope[1] === "q" ? config.text.numAttentionHeads : config.text.numKeyValueHeads) : undefined;
      plan.push({ canonical: name, checkpointName: t.checkpointName, shape: t.shape, type: typeFor(t.name, t.shape, vision ? visionDtype : dtype, notes, name), ropeHeads });
    }
    const total = plan.length;
    let done = 0;
    const tensorsOf = (vision: boolean): Record<string, GgufTensorToWrite> => {
      const out: Record<string, GgufTensorToWrite> = {};
      for (const p of plan.filter((q) => (q.canonical.startsWith("v.") || q.canonical.startsWith("mm.")) === vision)) {
        out[p.canonical] = {
          type: p.type,
          dims: [...p.shape].reverse(),
          data: async () => {
            const bytes = await tensorBytes(checkpoint, p);
            options.onProgress?.(++done, total, p.canonical);
            return bytes;
          },
        };
      }
      return out;
    };
    const inputs = checkpoint.files.map((f) => f.path);
    const files: ConvertReport["files"] = [];
    const write = async (path: string, metadata: Record<string, GgufValue>, tensors: Record<string, GgufTensorToWrite>) => {
      await writeGguf(path, { metadata, tensors }, { force: options.force ?? false, inputs });
      files.push({ path, tensors: Object.keys(tensors).length, bytes: plan.filter((p) => p.canonical in tensors).reduce((n, p) => n + bytesOf(p), 0) });
    };
    await write(options.out, textMeta, tensorsOf(false));
    if (visionMeta) await write(options.mmprojOut!, visionMeta, tensorsOf(true));
    return { files, notes };
  } finally {
    await checkpoint.close();
  }
}

function bytesOf(p: PlannedTensor): number {
  const elements = p.shape.reduce((n, d) => n * d, 1);
  if (p.type === "F32") return elements * 4;
  if (p.type === "F16") return elements * 2;
  const { elements: perBlock, bytes } = BLOCK_LAYOUT[p.type as QuantizableType];
  return (elements / perBlock) * bytes;
}

/** One tensor's bytes in its GGUF type, rows in llama.cpp's order. */
async function tensorBytes(checkpoint: Checkpoint, p: PlannedTensor): Promise<Uint8Array> {
  const entry = checkpoint.entry(p.checkpointName);
  let { data } = await entry.file.readFloat32(p.checkpointName);
  if (p.ropeHeads !== undefined) data = toLlamaCppRopeOrder(data, p.shape[0], p.ropeHeads);
  if (p.type === "F32") return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  if (p.type === "F16") return toF16Bytes(data);
  return quantize(p.type as QuantizableType, data);
}
