/**
 * What a caller asks of generate() and what it gets back: the request, the streamed chunks and
 * the final result.
 */
import type { ChatMessage, ImageInput } from "./chat_template.js";

export interface GenerateRequest {
  /** A conversation, rendered with llava-1.5's chat template; the reply is generated. */
  messages?: readonly ChatMessage[];
  /** Or a raw prompt, with an `<image>` tag where each image goes (no template applied). */
  prompt?: string;
  /** Or the prompt's token ids (the image token id where each image goes). */
  promptIds?: readonly number[];
  /** Images for `prompt`/`promptIds`, or added to the last user message of `messages`. */
  images?: readonly ImageInput[];
  /** Default 256; generation also ends when the context is full. */
  maxNewTokens?: number;
  /** 0 (the default) is greedy decoding. */
  temperature?: number;
  topK?: number;
  topP?: number;
  repetitionPenalty?: number;
  /** Seed of the sampler's random stream (default: a random one); the same seed gives the same text. */
  seed?: number;
  /** Strings or token ids that end generation (the end-of-sequence token always does). */
  stop?: readonly (string | number)[];
  /** Stops generation cleanly; the model stays usable. */
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

export type FinishReason = "stop" | "length" | "abort";

export interface GenerateResult {
  text: string;
  tokens: number[];
  finishReason: FinishReason;
  usage: { promptTokens: number; completionTokens: number };
  timings: { loadMs: number; visionMs: number; prefillMs: number; decodeMs: number; decodeTokensPerSecond: number };
}

export const DEFAULT_MAX_NEW_TOKENS = 256;
