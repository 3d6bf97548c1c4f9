/**
 * OpenAI's request bodies, checked field by field, as generate() requests.
 *
 * Chat (`POST /v1/chat/completions`): `messages` of system (or developer), user and assistant
 * turns whose content is a string or an array of parts, `{type: "text", text}` and
 * `{type: "image_url", image_url: {url}}`; a turn's images go before its text, as llava's chat
 * template places them. Completions (`POST /v1/completions`): a raw `prompt`.
 *
 * The sampling fields keep OpenAI's meaning and defaults (temperature 1, top_p 1; 0 is greedy
 * here as there), plus two that llama.cpp's and vLLM's servers take too: `top_k` and
 * `repetition_penalty`. Fields OpenAI has and this server cannot honour are refused by name
 * when set to anything but their default (n, logprobs, tools, ...), so a client never gets an
 * answer to a different question than it asked; unknown fields are refused as OpenAI does.
 */
import type { ChatMessage } from "../generate/chat_template.js";
import { describeValue } from "../generate/errors.js";
import type { GenerateRequest } from "../generate/request.js";
import { ApiError, badRequest } from "./api_error.js";
import { imageFromUrl, type RemoteImageOptions } from "./images.js";

/** A request ready for the model, and how to answer it. */
export interface ServedRequest {
  generate: GenerateRequest;
  stream: boolean;
  /** stream_options.include_usage: a last chunk with the usage. */
  includeUsage: boolean;
  /** The images' count, for the log. */
  imageCount: number;
}

/** OpenAI's default for /v1/completions (chat's is "until the context is full"). */
export const COMPLETIONS_DEFAULT_MAX_TOKENS = 16;
const MAX_STOPS = 4;

type Body = Record<string, unknown>;

/** Fields taken as they are (`model` is checked by the server, `user` and `metadata` ignored). */
const COMMON_FIELDS = ["model", "max_tokens", "temperature", "top_p", "top_k", "repetition_penalty", "seed", "stop", "stream", "stream_options", "user", "metadata"];
/** Fields accepted only at their default value, with the value they must have. */
const DEFAULT_ONLY: Record<string, unknown[]> = {
  n: [1],
  logprobs: [false, null],
  top_logprobs: [0, null],
  frequency_penalty: [0, null],
  presence_penalty: [0, null],
  tools: [null],
  tool_choice: ["none", null],
  parallel_tool_calls: [null, true, false],
  response_format: [null],
  echo: [false, null],
  best_of: [1, null],
  suffix: [null],
};
const CHAT_FIELDS = new Set([...COMMON_FIELDS, "messages", "max_completion_tokens", ...Object.keys(DEFAULT_ONLY)]);
const COMPLETION_FIELDS = new Set([...COMMON_FIELDS, "prompt", ...Object.keys(DEFAULT_ONLY)]);

export async function parseChatRequest(body: unknown, remote: RemoteImageOptions): Promise<ServedRequest> {
  const b = object(body, CHAT_FIELDS);
  const maxTokens = b.max_completion_tokens !== undefined ? integerAtLeast(b.max_completion_tokens, "max_completion_tokens", 1) : optionalMaxTokens(b);
  // Every other field is checked before the images are decoded (or fetched).
  const request = served(b, maxTokens);
  const messages = await chatMessages(b.messages, remote);
  return { ...request, generate: { ...request.generate, messages }, imageCount: messages.reduce((n, m) => n + (m.images?.length ?? 0), 0) };
}

export function parseCompletionRequest(body: unknown): ServedRequest {
  const b = object(body, COMPLETION_FIELDS);
  let prompt = b.prompt;
  if (Array.isArray(prompt)) {
    if (prompt.length !== 1 || typeof prompt[0] !== "string") throw badRequest("prompt", "must be a string (or an array of exactly one string: one prompt per request)");
    prompt = prompt[0];
  }
  if (typeof prompt !== "string") throw badRequest("prompt", `must be a string, not ${describeValue(prompt)}`);
  const request = served(b, optionalMaxTokens(b) ?? COMPLETIONS_DEFAULT_MAX_TOKENS);
  return { ...request, generate: { ...request.generate, prompt } };
}

/** The fields both endpoints share, checked: the request without its prompt. */
function served(b: Body, maxTokens: number | undefined): ServedRequest {
  const generate: GenerateRequest = {
    // No limit asked: until the context is full (generate() cuts the budget to the context).
    maxNewTokens: maxTokens ?? Number.MAX_SAFE_INTEGER,
    temperature: b.temperature === undefined || b.temperature === null ? 1 : numberIn(b.temperature, "temperature", 0, 2),
    topP: b.top_p === undefined || b.top_p === null ? 1 : numberIn(b.top_p, "top_p", Number.MIN_VALUE, 1),
  };
  if (b.top_k !== undefined && b.top_k !== null) generate.topK = integerAtLeast(b.top_k, "top_k", 0);
  if (b.repetition_penalty !== undefined && b.repetition_penalty !== null) generate.repetitionPenalty = numberIn(b.repetition_penalty, "repetition_penalty", Number.MIN_VALUE, Infinity);
  if (b.seed !== undefined && b.seed !== null) {
    if (!Number.isSafeInteger(b.seed)) throw badRequest("seed", `must be an integer, not ${describeValue(b.seed)}`);
    generate.seed = Number(BigInt.asUintN(32, BigInt(b.seed as number))); // any integer, as its low 32 bits
  }
  if (b.stop !== undefined && b.stop !== null) generate.stop = stops(b.stop);
  const stream = b.stream === undefined || b.stream === null ? false : boolean(b.stream, "stream");
  let includeUsage = false;
  if (b.stream_options !== undefined && b.stream_options !== null) {
    if (!stream) throw badRequest("stream_options", "is only allowed when stream is true");
    const options = object(b.stream_options, new Set(["include_usage", "include_obfuscation"]), "stream_options");
    if (options.include_usage !== undefined) includeUsage = boolean(options.include_usage, "stream_options.include_usage");
  }
  for (const [field, allowed] of Object.entries(DEFAULT_ONLY)) {
    if (b[field] !== undefined && !allowed.includes(b[field] as never)) {
      throw badRequest(field, `${describeValue(b[field])} is not supported by this server (${field === "n" ? "one choice per request" : `only ${describeValue(allowed[0])}`})`, "unsupported_value");
    }
  }
  return { generate, stream, includeUsage, imageCount: 0 };
}

function optionalMaxTokens(b: Body): number | undefined {
  return b.max_tokens === undefined || b.max_tokens === null ? undefined : integerAtLeast(b.max_tokens, "max_tokens", 1);
}

async function chatMessages(value: unknown, remote: RemoteImageOptions): Promise<ChatMessage[]> {
  if (!Array.isArray(value) || value.length === 0) throw badRequest("messages", "must be a non-empty array of messages");
  const messages: ChatMessage[] = [];
  for (const [i, raw] of value.entries()) {
    const at = `messages[${i}]`;
    const m = object(raw, new Set(["role", "content", "name"]), at);
    const role = m.role === "developer" ? "system" : m.role;
    if (role !== "system" && role !== "user" && role !== "assistant") {
      throw badRequest(`${at}.role`, `must be system, developer, user or assistant, not ${describeValue(m.role)}`);
    }
    const { text, images } = await content(m.content, `${at}.content`, role, remote);
    messages.push(images.length > 0 ? { role, content: text, images } : { role, content: text });
  }
  return messages;
}

/** A message's content: a string, or parts whose texts are joined by newlines and whose images are kept in order. */
async function content(value: unknown, at: string, role: string, remote: RemoteImageOptions): Promise<{ text: string; images: Uint8Array[] }> {
  if (typeof value === "string") return { text: value, images: [] };
  if (!Array.isArray(value)) throw badRequest(at, `must be a string or an array of content parts, not ${describeValue(value)}`);
  const texts: string[] = [];
  const images: Uint8Array[] = [];
  for (const [j, raw] of value.entries()) {
    const partAt = `${at}[${j}]`;
    const part = object(raw, new Set(["type", "text", "image_url"]), partAt);
    if (part.type === "text") {
      if (typeof part.text !== "string") throw badRequest(`${partAt}.text`, `must be a string, not ${describeValue(part.text)}`);
      texts.push(part.text);
    } else if (part.type === "image_url") {
      if (role !== "user") throw badRequest(partAt, `images can only be in user messages, not ${role} ones`);
      const image = part.image_url;
      const url = typeof image === "string" ? image : object(image, new Set(["url", "detail"]), `${partAt}.image_url`).url;
      images.push(await imageFromUrl(url, `${partAt}.image_url.url`, remote));
    } else {
      throw badRequest(`${partAt}.type`, `must be "text" or "image_url", not ${describeValue(part.type)}`);
    }
  }
  return { text: texts.join("\n"), images };
}

function stops(value: unknown): string[] {
  const list = typeof value === "string" ? [value] : value;
  if (!Array.isArray(list) || list.length > MAX_STOPS || !list.every((s) => typeof s === "string" && s.length > 0)) {
    throw badRequest("stop", `must be a non-empty string or an array of up to ${MAX_STOPS} of them, not ${describeValue(value)}`);
  }
  return list;
}

/** `value` as an object with only `allowed` keys (an unknown one is refused by name, as OpenAI does). */
export function object(value: unknown, allowed: Set<string>, at: string | null = null): Body {
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw at === null ? new ApiError(400, "the request body must be a JSON object") : badRequest(at, `must be an object, not ${describeValue(value)}`);
  }
  for (const key of Object.keys(value)) {
    if (!allowed.has(key)) {
      const param = at === null ? key : `${at}.${key}`;
      throw new ApiError(400, `Unrecognized request argument supplied: ${param}`, param, "unknown_parameter");
    }
  }
  return value as Body;
}

function boolean(value: unknown, at: string): boolean {
  if (typeof value !== "boolean") throw badRequest(at, `must be true or false, not ${describeValue(value)}`);
  return value;
}

function numberIn(value: unknown, at: string, min: number, max: number): number {
  if (typeof value !== "number" || !(value >= min && value <= max)) {
    const range = max === Infinity ? "> 0" : min === Number.MIN_VALUE ? `in (0, ${max}]` : `in [${min}, ${max}]`;
    throw badRequest(at, `must be a number ${range}, not ${describeValue(value)}`);
  }
  return value;
}

function integerAtLeast(value: unknown, at: string, min: number): number {
  if (!Number.isSafeInteger(value) || (value as number) < min) throw badRequest(at, `must be an integer >= ${min}, not ${describeValue(value)}`);
  return value as number;
}
