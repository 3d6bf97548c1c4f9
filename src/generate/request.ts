/**
 * What a caller asks of generate() and what it gets back: the request, the streamed chunks and
 * the final result. Every field is checked at the first read of the stream (validate.ts): a
 * mistake, or a field not listed here, is a RequestError naming it.
 */
import type { ChatMessage, ImageInput } from "./chat_template.js";

export interface GenerateRequest {
  /** A conversation, rendered with the model's chat template (the checkpoint's own, else its family's); the reply is generated. */
  messages?: readonly ChatMessage[];
  /** Or a raw prompt, with an `<image>` tag where each image goes (no template applied). */
  prompt?: string;
  /** Or the prompt's token ids, at least one (in the vocabulary, or the image token id where each image goes). */
  promptIds?: readonly number[];
  /** Images for `prompt`/`promptIds`, or added to the last user message of `messages`. */
  images?: readonly ImageInput[];
  /**
   * An integer >= 1, default 256; cut to what the context can still hold (its length − the
   * prompt's positions + 1), so a huge value only means "until the context is full"
   * (finishReason "length").
   */
  maxNewTokens?: number;
  /** A finite number >= 0; 0 (the default) is greedy decoding. */
  temperature?: number;
  /** An integer >= 0: keep the k most likely tokens (0, the default: all). */
  topK?: number;
  /** In (0, 1]: keep the smallest set of tokens with this probability (1, the default: all). */
  topP?: number;
  /** A finite number > 0 (1, the default: off). */
  repetitionPenalty?: number;
  /** An integer in [0, 2^32): the sampler's random stream (default: a random one); the same seed gives the same text. */
  seed?: number;
  /** An array of non-empty strings and token ids (in the vocabulary) that end generation; the end-of-sequence token always does. */
  stop?: readonly (string | number)[];
  /** An AbortSignal: stops generation cleanly between two tokens (finishReason "abort"); the model stays usable. */
  signal?: AbortSignal;
  /** LLaVA's "pad" aspect ratio: pad images to a square of the mean colour first. */
  padToSquare?: boolean;
}

export interface GenerateChunk {
  /** Text to show now (may be empty while a multi-byte character or a possible stop string is pending). */
  text: string;
  /** The token generated. */
  token: number;
}

/** stop: an end-of-sequence token or a stop; length: maxNewTokens or the context is full; abort: the signal. */
export type FinishReason = "stop" | "length" | "abort";

export interface GenerateResult {
  text: string;
  tokens: number[];
  finishReason: FinishReason;
  /** cachedPromptTokens: prompt positions taken from the KV-cache (prompt caching) rather than computed. */
  usage: { promptTokens: number; cachedPromptTokens: number; completionTokens: number };
  timings: { loadMs: number; visionMs: number; prefillMs: number; decodeMs: number; decodeTokensPerSecond: number };
}

export const DEFAULT_MAX_NEW_TOKENS = 256;
