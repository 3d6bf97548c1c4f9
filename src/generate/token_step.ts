/**
 * One token of generation, written once: what generate() records for the prompt and for each
 * next token, and what the end-to-end benchmark times, so the two are the same by construction.
 *
 *   prefill:  the prompt's embeddings (text ids, image features in place of the image tokens)
 *             → the decoder over every position, filling an empty KV-cache → the logits of the
 *             last position → draw 0 of the sampler
 *   decode:   the embedding of the token just sampled, looked up on the GPU from where the
 *             sampler wrote it → the decoder over one position → its logits → the next draw,
 *             written to the same place
 *
 * Each only records its kernels (inside a scope that frees every temporary); nothing is
 * submitted, and the sampled id stays on the GPU until someone reads it.
 */
import { sampleToken, type SampleOptions } from "../kernels/sample/index.js";
import type { KVCache, LlamaDecoder } from "../models/llama.js";
import type { LlavaModel } from "../models/llava.js";
import { takeRows } from "../tensor/copy.js";
import type { Tensor } from "../tensor/tensor.js";

/** Where the sampler writes each id, and the history its repetition penalty reads. */
export class TokenSampler {
  constructor(
    /** u32 [1]: each draw's id, read by the next decode step's embedding lookup. */
    readonly token: Tensor,
    /** u32 [capacity]: the prompt's ids, then each draw's id appended after them. */
    readonly history: Tensor,
    readonly promptLength: number,
    readonly options: Omit<SampleOptions, "step">,
  ) {}

  /** Records draw `draw` (0: after the prompt) from logits [1, V]; it sees the prompt and draws 0 .. draw - 1. */
  sample(logits: Tensor, draw: number): void {
    sampleToken(logits, { ...this.options, step: draw, history: { ids: this.history, length: this.promptLength + draw }, out: this.token });
  }
}

/** Records the prompt through the decoder into an emptied cache, and draw 0. (The decoder and cache default to the model's own.) */
export function recordPrefill(
  model: LlavaModel,
  ids: readonly number[],
  imageFeatures: readonly Tensor[],
  sampler: TokenSampler,
  decoder: LlamaDecoder = model.decoder,
  cache: KVCache = model.cache,
): void {
  cache.length = 0;
  model.gpu.scope(() => {
    const hidden = decoder.forward(model.embedPrompt(ids, imageFeatures), cache);
    sampler.sample(decoder.logits(takeRows(hidden, hidden.dim(0) - 1, 1)), 0);
  });
}

/** Records one decode step: the last sampled token through the decoder, one position further into the cache, and draw `draw`. */
export function recordDecodeStep(model: LlavaModel, sampler: TokenSampler, draw: number): void {
  const { decoder, cache } = model;
  model.gpu.scope(() => {
    const hidden = decoder.forward(decoder.embed(sampler.token), cache);
    sampler.sample(decoder.logits(hidden), draw);
  });
}
