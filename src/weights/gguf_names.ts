/**
 * llama.cpp's tensor names, for the canonical names of src/weights/names.ts.
 *
 * A GGUF text model (convert_hf_to_gguf.py, or the older convert_legacy_llama.py for
 * llava-1.5) names a LLaMA decoder's tensors `token_embd`, `blk.N.attn_q`, ..., `output`; an
 * mmproj file (convert_image_encoder_to_gguf.py, or convert_hf_to_gguf.py --mmproj) names the
 * CLIP tower's `v.*` and the projector's `mm.*`, the projector's layers numbered as in LLaVA's
 * own nn.Sequential (mm.0 and mm.2, the GELU being module 1).
 *
 * The vision MLP is named `ffn_up` (fc1, hidden → intermediate) and `ffn_down` (fc2) by the
 * current converter, but the other way round by convert_image_encoder_to_gguf.py, which
 * wrote most llava-1.5 mmproj files. llama.cpp tells them apart by shape (clip.cpp swaps the
 * two when ffn_down's rows have the hidden size's length); gguf_model.ts does the same.
 */

/** [canonical pattern, GGUF name] pairs; `(\d+)` is the layer and `$1` where it goes. */
const RULES: readonly (readonly [RegExp, string])[] = [
  [/^text\.embed_tokens\.weight$/, "token_embd.weight"],
  [/^text\.norm\.weight$/, "output_norm.weight"],
  [/^lm_head\.weight$/, "output.weight"],
  [/^text\.layers\.(\d+)\.input_layernorm\.weight$/, "blk.$1.attn_norm.weight"],
  [/^text\.layers\.(\d+)\.self_attn\.([qkv])_proj\.(weight|bias)$/, "blk.$1.attn_$2.$3"],
  [/^text\.layers\.(\d+)\.self_attn\.o_proj\.(weight|bias)$/, "blk.$1.attn_output.$2"],
  [/^text\.layers\.(\d+)\.post_attention_layernorm\.weight$/, "blk.$1.ffn_norm.weight"],
  [/^text\.layers\.(\d+)\.mlp\.(gate|up|down)_proj\.weight$/, "blk.$1.ffn_$2.weight"],
  [/^vision\.embeddings\.class_embedding$/, "v.class_embd"],
  [/^vision\.embeddings\.patch_embedding\.weight$/, "v.patch_embd.weight"],
  [/^vision\.embeddings\.position_embedding\.weight$/, "v.position_embd.weight"],
  [/^vision\.pre_layrnorm\.(weight|bias)$/, "v.pre_ln.$1"],
  [/^vision\.post_layernorm\.(weight|bias)$/, "v.post_ln.$1"],
  [/^vision\.encoder\.layers\.(\d+)\.self_attn\.([qkv])_proj\.(weight|bias)$/, "v.blk.$1.attn_$2.$3"],
  [/^vision\.encoder\.layers\.(\d+)\.self_attn\.out_proj\.(weight|bias)$/, "v.blk.$1.attn_out.$2"],
  [/^vision\.encoder\.layers\.(\d+)\.layer_norm([12])\.(weight|bias)$/, "v.blk.$1.ln$2.$3"],
  [/^vision\.encoder\.layers\.(\d+)\.mlp\.fc1\.(weight|bias)$/, "v.blk.$1.ffn_up.$2"],
  [/^vision\.encoder\.layers\.(\d+)\.mlp\.fc2\.(weight|bias)$/, "v.blk.$1.ffn_down.$2"],
  [/^projector\.linear_1\.(weight|bias)$/, "mm.0.$1"],
  [/^projector\.linear_2\.(weight|bias)$/, "mm.2.$1"],
];

/** The GGUF name of a canonical tensor name, or undefined for one llama.cpp has no name for. */
export function ggufTensorName(canonical: string): string | undefined {
  for (const [pattern, name] of RULES) {
    if (pattern.test(canonical)) return canonical.replace(pattern, name);
  }
  return undefined;
}

/** Where the numbered layers of each component start. */
export const GGUF_LAYER_PREFIXES = { text: "blk.", vision: "v.blk." } as const;

/** Whether a GGUF tensor belongs to the mmproj file (the vision tower and projector) rather than the text model. */
export function isVisionTensor(ggufName: string): boolean {
  return ggufName.startsWith("v.") || ggufName.startsWith("mm.");
}
