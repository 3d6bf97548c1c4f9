/**
 * OpenAI's response bodies, field for field: a chat completion, its streamed chunks, a text
 * completion and its chunks, and the usage block, so that the official clients parse them.
 */
import { randomBytes } from "node:crypto";
import type { FinishReason, GenerateResult } from "../generate/request.js";

export type Endpoint = "chat" | "completions";

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  prompt_tokens_details: { cached_tokens: number };
}

/** What every body of one response shares. */
export interface ResponseHeader {
  id: string;
  created: number;
  model: string;
}

export function responseHeader(endpoint: Endpoint, model: string): ResponseHeader {
  const prefix = endpoint === "chat" ? "chatcmpl" : "cmpl";
  return { id: `${prefix}-${randomBytes(12).toString("hex")}`, created: Math.floor(Date.now() / 1000), model };
}

/** Prompt tokens count every position of the prompt, each image's features included. */
export function usageOf(result: GenerateResult): Usage {
  const { promptTokens, cachedPromptTokens, completionTokens } = result.usage;
  return {
    prompt_tokens: promptTokens,
    completion_tokens: completionTokens,
    total_tokens: promptTokens + completionTokens,
    prompt_tokens_details: { cached_tokens: cachedPromptTokens },
  };
}

/** generate()'s reasons as OpenAI's (an aborted generation has no one left to tell). */
export function finishReason(reason: FinishReason): "stop" | "length" {
  return reason === "length" ? "length" : "stop";
}

export function completionBody(endpoint: Endpoint, header: ResponseHeader, result: GenerateResult) {
  const finish_reason = finishReason(result.finishReason);
  if (endpoint === "chat") {
    return {
      ...header,
      object: "chat.completion",
      choices: [{ index: 0, message: { role: "assistant", content: result.text, refusal: null }, logprobs: null, finish_reason }],
      usage: usageOf(result),
    };
  }
  return { ...header, object: "text_completion", choices: [{ index: 0, text: result.text, logprobs: null, finish_reason }], usage: usageOf(result) };
}

/**
 * One streamed chunk: `text` as the delta (the first chat chunk also carries the role), or,
 * with `finish`, the closing chunk of the choice. `usage` is null on every chunk when the
 * client asked for usage (it comes last, in a chunk of its own), absent otherwise.
 */
export function chunkBody(endpoint: Endpoint, header: ResponseHeader, piece: { text: string; first?: boolean; finish?: FinishReason }, includeUsage: boolean) {
  const finish_reason = piece.finish === undefined ? null : finishReason(piece.finish);
  const usage = includeUsage ? { usage: null } : {};
  if (endpoint === "chat") {
    const delta = piece.finish !== undefined ? {} : piece.first ? { role: "assistant", content: piece.text } : { content: piece.text };
    return { ...header, object: "chat.completion.chunk", choices: [{ index: 0, delta, logprobs: null, finish_reason }], ...usage };
  }
  return { ...header, object: "text_completion", choices: [{ index: 0, text: piece.text, logprobs: null, finish_reason }], ...usage };
}

/** The last chunk of a stream with stream_options.include_usage: no choices, the usage. */
export function usageChunkBody(endpoint: Endpoint, header: ResponseHeader, result: GenerateResult) {
  return { ...header, object: endpoint === "chat" ? "chat.completion.chunk" : "text_completion", choices: [], usage: usageOf(result) };
}
