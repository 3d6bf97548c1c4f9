/**
 * CLIP's text tower (transformers' CLIPTextTransformer): a causal transformer over the
 * tokens of a text, read at one position.
 *
 *   x = token_embedding[ids] + position_embedding[0, 1, ...]
 *   for each encoder layer (clip_encoder.ts):
 *     causal attention: token i sees tokens 0..i of its own text, never the padding
 *   x = final_layer_norm(x)
 *   pooled = x at the text's first end token (poolingPosition)
 *
 * Causal attention is what makes one position a summary: the end token is the only one that
 * has seen the whole text. Texts are batched as rows of one padded matrix (every linear layer
 * is one product over all of them); attention runs text by text. A text's real tokens attend
 * causally to its own keys; its padding positions (which transformers also computes, and
 * which no pooled output reads) see every real token, as the causal mask combined with the
 * padding mask lets them.
 */
import { activationFromConfig, type ActivationKind } from "../kernels/activations.js";
import { attention } from "../kernels/attention/index.js";
import { add } from "../kernels/elementwise.js";
import { embedding } from "../kernels/embedding.js";
import { layernorm } from "../kernels/layernorm.js";
import { takeRows } from "../tensor/copy.js";
import { check } from "../tensor/errors.js";
import type { Gpu } from "../tensor/gpu.js";
import type { Tensor } from "../tensor/tensor.js";
import type { ClipTextConfig } from "../weights/config.js";
import { encoderLayer, loadEncoderLayer, loadNorm, type EncoderLayer, type Norm } from "./clip_encoder.js";
import type { EmbeddingTable } from "./linear.js";
import type { Trace } from "./llama.js";
import type { WeightStore } from "./weights.js";

/** Texts as the tokenizer pads them: rows of equal length, and how many tokens of each are real. */
export interface TokenBatch {
  ids: readonly (readonly number[])[];
  lengths: readonly number[];
}

/**
 * The position transformers pools a text at: with the legacy eos_token_id 2 (openai/clip-vit-*
 * configs), argmax(ids), the first occurrence of the largest id, which is the first
 * <|endoftext|>; otherwise the first position holding eosTokenId.
 */
export function poolingPosition(ids: readonly number[], eosTokenId: number): number {
  if (eosTokenId === 2) {
    let best = 0;
    for (let i = 1; i < ids.length; i++) if (ids[i] > ids[best]) best = i;
    return best;
  }
  const at = ids.indexOf(eosTokenId);
  check(at >= 0, () => `CLIP text: ids [${ids.slice(0, 8).join(", ")}${ids.length > 8 ? ", ..." : ""}] hold no end token (${eosTokenId}), where the text is pooled`);
  return at;
}

export class ClipTextTower {
  private readonly tokens: EmbeddingTable;
  private readonly positions: EmbeddingTable;
  private readonly layers: EncoderLayer[];
  private readonly finalNorm: Norm;
  private readonly mlpActivation: ActivationKind;

  constructor(
    readonly gpu: Gpu,
    readonly config: ClipTextConfig,
    weights: WeightStore,
  ) {
    this.tokens = weights.embedding("clip_text.embeddings.token_embedding.weight");
    this.positions = weights.embedding("clip_text.embeddings.position_embedding.weight");
    this.layers = Array.from({ length: config.numHiddenLayers }, (_, i) => loadEncoderLayer(weights, `clip_text.encoder.layers.${i}`));
    this.finalNorm = loadNorm(weights, "clip_text.final_layer_norm");
    this.mlpActivation = activationFromConfig(config.hiddenAct);
  }

  /** Checks a batch against the vocabulary and the context; returns its row length. */
  private check(batch: TokenBatch): number {
    const { vocabSize, maxPositionEmbeddings } = this.config;
    const rows = batch.ids.length;
    check(rows > 0 && batch.lengths.length === rows, () => `CLIP text: ${rows} rows of ids but ${batch.lengths.length} lengths`);
    const length = batch.ids[0].length;
    check(length > 0 && length <= maxPositionEmbeddings, () => `CLIP text: ${length} tokens a row; this model reads 1 to ${maxPositionEmbeddings} (truncate the text)`);
    batch.ids.forEach((row, b) => {
      check(row.length === length, () => `CLIP text: row ${b} has ${row.length} ids, row 0 ${length} (pad the batch)`);
      const real = batch.lengths[b];
      check(Number.isInteger(real) && real >= 1 && real <= length, () => `CLIP text: row ${b} has ${real} real tokens of ${length}`);
      for (const id of row) check(Number.isInteger(id) && id >= 0 && id < vocabSize, () => `CLIP text: token id ${id} (row ${b}) is outside the vocabulary of ${vocabSize}`);
    });
    return length;
  }

  /**
   * The final-normed hidden states [B·S, hidden] (f32) of a batch of B texts of S tokens, and
   * the pooled output [B, hidden], one row per text. `trace` sees text_hidden_states [layer]
   * over the whole batch ([B·S, hidden]).
   */
  forward(batch: TokenBatch, trace?: Trace): { hidden: Tensor; pooled: Tensor } {
    const S = this.check(batch);
    const B = batch.ids.length;
    const gpu = this.gpu;
    const embedded = gpu.scope(() => {
      const ids = gpu.tensor(Int32Array.from(batch.ids.flat()), [B * S], "i32");
      const positions = gpu.tensor(Int32Array.from({ length: B * S }, (_, i) => i % S), [B * S], "i32");
      return add(this.tokens.lookup(ids, "f32"), this.positions.lookup(positions, "f32"));
    });
    let h = embedded;
    this.layers.forEach((layer, i) => {
      trace?.("text_hidden_states", [i], h);
      const next = gpu.scope(() => encoderLayer(layer, h, this.config, this.mlpActivation, (q, k, v) => this.attend(q, k, v, batch, S)));
      h.dispose();
      h = next;
    });
    trace?.("text_hidden_states", [this.layers.length], h);
    const hidden = layernorm(h, this.finalNorm.weight, this.finalNorm.bias, this.config.layerNormEps);
    h.dispose();
    const rows = batch.ids.map((ids, b) => b * S + poolingPosition(ids, this.config.eosTokenId));
    const pooled = gpu.scope(() => embedding(gpu.tensor(Int32Array.from(rows), [B], "i32"), hidden));
    return { hidden, pooled };
  }

  /** Attention text by text: real tokens causal over the text's own keys, padding over all of them. */
  private attend(q: Tensor, k: Tensor, v: Tensor, batch: TokenBatch, S: number): Tensor {
    const out = this.gpu.empty(q.shape, q.dtype, { name: "CLIP text attention" });
    batch.lengths.forEach((real, b) => {
      this.gpu.scope(() => {
        const keys = takeRows(k, b * S, real);
        const values = takeRows(v, b * S, real);
        attention(q, keys, values, { layout: "tokens", causal: true, queryOffset: 0, rows: { start: b * S, count: real }, out });
        if (real < S) attention(q, keys, values, { layout: "tokens", rows: { start: b * S + real, count: S - real }, out });
      });
    });
    return out;
  }
}
