/**
 * Random-weight checkpoints of any shape, written as Hugging Face folders: for tests of the
 * loading and generation machinery, where what the model says does not matter.
 */
import { copyFile, mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { parseConfig } from "../src/weights/config.js";
import { checkpointNameFor, expectedTensors } from "../src/weights/names.js";
import { writeSafetensors, type TensorToWrite } from "../src/weights/safetensors_writer.js";

const FIXTURES = join(import.meta.dirname, "fixtures");

export interface RandomCheckpointOptions {
  seed?: number;
  /** Standard deviation of matrix entries (transformers initialises with 0.02). */
  scale?: number;
  /** 0: llava-hf's tensor names; 1: newer transformers' names. */
  scheme?: number;
  /** Canonical names of tensors to leave out (to test missing-weight errors). */
  omit?: readonly string[];
}

/** Writes config.json and model.safetensors for `config` (a config.json object) into `dir`. */
export async function writeRandomCheckpoint(dir: string, config: Record<string, unknown>, options: RandomCheckpointOptions = {}): Promise<void> {
  await mkdir(dir, { recursive: true });
  const configPath = join(dir, "config.json");
  await writeFile(configPath, `${JSON.stringify(config, null, 2)}\n`);
  const parsed = parseConfig(config, configPath);
  const random = gaussian(options.seed ?? 0);
  const scale = options.scale ?? 0.02;
  const tensors: Record<string, TensorToWrite> = {};
  for (const { name, shape } of expectedTensors(parsed)) {
    if (options.omit?.includes(name)) continue;
    const data = new Float32Array(shape.reduce((n, d) => n * d, 1));
    // Norm weights start near 1 (as trained ones are), everything else near 0.
    const isNormWeight = /norm[^.]*\.weight$/.test(name);
    for (let i = 0; i < data.length; i++) data[i] = (isNormWeight ? 1 : 0) + scale * random();
    tensors[checkpointNameFor(parsed, name, options.scheme ?? 0)] = { dtype: "F32", shape, data };
  }
  await writeSafetensors(join(dir, "model.safetensors"), tensors, { format: "pt" });
}

/** A seeded standard normal generator (mulberry32 + Box-Muller). */
function gaussian(seed: number): () => number {
  let a = seed >>> 0;
  const uniform = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), a | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return () => Math.sqrt(-2 * Math.log(1 - uniform())) * Math.cos(2 * Math.PI * uniform());
}

/** A tiny LLaVA config: 2 decoder layers, 2 vision layers of which vision_feature_layer -2 runs 1. */
export const TINY_LLAVA = {
  model_type: "llava",
  image_token_index: 99,
  text_config: { model_type: "llama", vocab_size: 100, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 2, num_attention_heads: 2, max_position_embeddings: 64 },
  vision_config: { model_type: "clip_vision_model", image_size: 16, patch_size: 8, hidden_size: 16, intermediate_size: 32, num_hidden_layers: 2, num_attention_heads: 2 },
};

/** TINY_LLAVA with some fields of its text config replaced. */
export const withText = (fields: object) => ({ ...TINY_LLAVA, text_config: { ...TINY_LLAVA.text_config, ...fields } });

/** TINY_LLAVA with some fields of its vision config replaced. */
export const withVision = (fields: object) => ({ ...TINY_LLAVA, vision_config: { ...TINY_LLAVA.vision_config, ...fields } });

/** A tiny LLaVA with random weights, for LLaMA-2's real tokenizer (llava-1.5's added tokens): see randomLlavaFolder. */
export const RANDOM_LLAVA = {
  architectures: ["LlavaForConditionalGeneration"],
  model_type: "llava",
  image_token_index: 32000,
  pad_token_id: 32001,
  text_config: { model_type: "llama", vocab_size: 32002, hidden_size: 64, intermediate_size: 128, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: 256 },
  vision_config: { model_type: "clip_vision_model", image_size: 32, patch_size: 8, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 2, num_attention_heads: 4 },
};

/** A model folder: RANDOM_LLAVA's weights, LLaMA-2's tokenizer with llava-1.5's added tokens, a 32-px image preprocessor. */
export async function randomLlavaFolder(dir: string): Promise<void> {
  await writeRandomCheckpoint(dir, RANDOM_LLAVA, { seed: 7, scale: 0.5 });
  await copyFile(join(FIXTURES, "tokenizer", "tokenizer.model"), join(dir, "tokenizer.model"));
  for (const f of ["tokenizer_config.json", "special_tokens_map.json"]) await copyFile(join(FIXTURES, "tokenizer", "llava-1.5", f), join(dir, f));
  await writeFile(join(dir, "preprocessor_config.json"), JSON.stringify({ image_processor_type: "CLIPImageProcessor", size: { shortest_edge: 32 }, crop_size: { height: 32, width: 32 } }));
}
