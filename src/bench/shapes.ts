/**
 * The model shapes `bench e2e --shape` builds with random weights, as the config.json their
 * checkpoints have (so transformers' defaults fill in the rest, as for a real checkpoint).
 *
 *   tiny             a small LLaVA that runs in seconds on a software GPU: a 112 px image in
 *                    14 px patches (64 features), 4 vision layers of 256, 4 decoder layers of
 *                    256 (8 heads, 4 KV heads), MLP 688, the real vocabulary of 32064
 *   tinyllava-1.1b   bczhou/tiny-llava-v1-hf: TinyLlama-1.1B's decoder (hidden 2048, MLP 5632,
 *                    22 layers, 32 heads, 4 KV heads) with the CLIP ViT-L/14-336 tower
 *   llava-1.5-7b     llava-hf/llava-1.5-7b-hf: LLaMA-7B's decoder (hidden 4096, MLP 11008,
 *                    32 layers, 32 heads) with the same tower
 *
 *   llava-v1.6-vicuna-7b   llava-hf/llava-v1.6-vicuna-7b-hf: LLaVA-NeXT, the same decoder and
 *                    tower, images tiled on llava-v1.6's canvases (image_grid_pinpoints' default)
 *   llava-v1.6-mistral-7b  llava-hf/llava-v1.6-mistral-7b-hf: the same with Mistral-7B-Instruct-v0.2
 *                    (hidden 4096, MLP 14336, 32 layers, 8 KV heads, RoPE base 1e6, no sliding window)
 *
 * The real models read the tower's second-to-last layer (23 of its 24 run) and use the
 * two-layer GELU projector; their vocabulary is LLaMA's 32000 plus <image>, <pad> and padding
 * to 32064, as in their config.json.
 */
import { parseConfig, type ModelConfig } from "../weights/config.js";

const CLIP_VIT_L_14_336 = {
  model_type: "clip_vision_model",
  hidden_size: 1024,
  image_size: 336,
  intermediate_size: 4096,
  num_attention_heads: 16,
  num_hidden_layers: 24,
  patch_size: 14,
};

const LLAVA_COMMON = {
  architectures: ["LlavaForConditionalGeneration"],
  model_type: "llava",
  image_token_index: 32000,
  pad_token_id: 32001,
  projector_hidden_act: "gelu",
  vision_feature_layer: -2,
  vision_feature_select_strategy: "default",
};

export const E2E_SHAPES = {
  tiny: {
    ...LLAVA_COMMON,
    text_config: {
      model_type: "llama",
      hidden_size: 256,
      intermediate_size: 688,
      num_hidden_layers: 4,
      num_attention_heads: 8,
      num_key_value_heads: 4,
      max_position_embeddings: 2048,
      rms_norm_eps: 1e-5,
      vocab_size: 32064,
    },
    vision_config: { model_type: "clip_vision_model", hidden_size: 256, image_size: 112, intermediate_size: 1024, num_attention_heads: 4, num_hidden_layers: 4, patch_size: 14 },
  },
  "tinyllava-1.1b": {
    ...LLAVA_COMMON,
    text_config: {
      model_type: "llama",
      hidden_size: 2048,
      intermediate_size: 5632,
      num_hidden_layers: 22,
      num_key_value_heads: 4,
      rms_norm_eps: 1e-5,
      vocab_size: 32064,
    },
    vision_config: CLIP_VIT_L_14_336,
  },
  "llava-1.5-7b": {
    ...LLAVA_COMMON,
    text_config: { model_type: "llama", max_position_embeddings: 4096, rms_norm_eps: 1e-5, vocab_size: 32064 },
    vision_config: CLIP_VIT_L_14_336,
  },
  "llava-v1.6-vicuna-7b": {
    ...LLAVA_COMMON,
    architectures: ["LlavaNextForConditionalGeneration"],
    model_type: "llava_next",
    text_config: { model_type: "llama", max_position_embeddings: 4096, pad_token_id: 0, rms_norm_eps: 1e-5, vocab_size: 32064 },
    vision_config: CLIP_VIT_L_14_336,
  },
  "llava-v1.6-mistral-7b": {
    ...LLAVA_COMMON,
    architectures: ["LlavaNextForConditionalGeneration"],
    model_type: "llava_next",
    text_config: {
      model_type: "mistral",
      intermediate_size: 14336,
      max_position_embeddings: 32768,
      num_key_value_heads: 8,
      rms_norm_eps: 1e-5,
      rope_theta: 1e6,
      sliding_window: null,
      vocab_size: 32064,
    },
    vision_config: CLIP_VIT_L_14_336,
  },
} as const;

export type E2EShape = keyof typeof E2E_SHAPES;

export function isE2EShape(name: string): name is E2EShape {
  return Object.hasOwn(E2E_SHAPES, name);
}

export function shapeConfig(shape: E2EShape): ModelConfig {
  return parseConfig(E2E_SHAPES[shape], `the ${shape} shape`);
}
