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
 * A decode step (batch.ts, for every sequence being decoded at once) is the same launches
 * every token but for one number per sequence, the position it writes: the positions live in a
 * small GPU tensor written before each step, so the step is captured once (Gpu.capture) and
 * replayed until a sequence outgrows the context bucket it was captured for (attention sizes
 * some grids by the most keys it may see).
 *
 * Each only records its kernels; nothing is submitted, and the sampled id stays on the GPU
 * until someone reads it.
 */
import { sampleToken, type SampleOptions } from "../kernels/sample/index.js";
import { offsetBy, type U32Source } from "../kernels/step_value.js";
import type { KVCache, LlamaDecoder } from "../models/llama.js";
import type { LlavaModel } from "../models/llava.js";
import { takeRows } from "../tensor/copy.js";
import type { Tensor } from "../tensor/tensor.js";

/** The smallest context bucket a decode step is captured for; each next one doubles. */
export const FIRST_BUCKET = 256;

/** Where a draw's id goes: element `index` of the u32 tensor `tokens`. */
export interface DrawTarget {
  tokens: Tensor;
  index?: number;
  /** The row of the logits [rows, V] to sample (default 0). */
  row?: number;
}

/** One sequence's sampling: its options, and the history its repetition penalty reads. */
export class TokenSampler {
  constructor(
    /** u32 [capacity]: the prompt's ids, then each draw's id appended after them. */
    readonly history: Tensor,
    readonly promptLength: number,
    readonly options: Omit<SampleOptions, "step">,
  ) {}

  /** Records draw `draw` (0: after the prompt) from a row of logits; it sees the prompt and draws 0 .. draw - 1. */
  sample(logits: Tensor, draw: U32Source, target: DrawTarget): void {
    sampleToken(logits, {
      ...this.options,
      step: draw,
      history: { ids: this.history, length: offsetBy(draw, this.promptLength) },
      out: target.tokens,
      outIndex: target.index ?? 0,
      row: target.row ?? 0,
    });
  }
}

/**
 * Records the prompt through the decoder into the cache, and draw 0 into `target`. The cache
 * is taken to hold the prompt's first `reuse` positions already (prompt caching), so only the
 * rest runs; images entirely among those may have null features (`featureCounts` then says
 * how many positions each image takes). (The decoder and cache default to the model's own.)
 */
export function recordPrefill(
  model: LlavaModel,
  ids: readonly number[],
  imageFeatures: readonly (Tensor | null)[],
  sampler: TokenSampler,
  target: DrawTarget,
  decoder: LlamaDecoder = model.decoder,
  cache: KVCache = model.cache,
  reuse = 0,
  featureCounts?: readonly number[],
): void {
  cache.length = reuse;
  model.gpu.scope(() => {
    const hidden = decoder.forward(model.embedPrompt(ids, imageFeatures, reuse, featureCounts), cache);
    sampler.sample(decoder.logits(takeRows(hidden, hidden.dim(0) - 1, 1)), 0, target);
  });
}

/** The end of the context bucket holding `length` positions: FIRST_BUCKET, then doubling. */
export function bucketEnd(length: number): number {
  let end = FIRST_BUCKET;
  while (end < length) end *= 2;
  return end;
}
