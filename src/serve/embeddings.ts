/**
 * `POST /v1/embeddings`: OpenAI's embeddings request, checked field by field, run on a CLIP dual
 * encoder, and its answer in OpenAI's shape.
 *
 * `input` is OpenAI's: a string, an array of strings, an array of token ids (one input) or an
 * array of arrays of them, plus this server's extension, content parts as chat messages have
 * them: `{type: "text", text}` and `{type: "image_url", image_url: {url}}` (data: URLs, or
 * http(s) URLs under the server's remote-image policy, images.ts). Texts and images land in the
 * same space (CLIP), so one request may mix them.
 *
 * - A text longer than the model's context (77 tokens) is truncated, keeping its end token, as
 *   transformers' CLIPTokenizer(truncation=True) does; `usage.prompt_tokens` counts the ids the
 *   text tower read, start and end tokens included, after truncation. Images count 0.
 * - Token ids are CLIP ids as the tokenizer encodes them, start and end tokens included: each
 *   below the vocabulary's size, at most the context long, holding the end token (where CLIP
 *   pools a text). They are not truncated: too long is a 400.
 * - `dimensions` is accepted only at the model's own size: CLIP was not trained to be cut short
 *   (no Matryoshka loss), so a prefix of its vector is no embedding.
 * - `encoding_format` "base64" gives each vector's little-endian float32 bytes in base64, as
 *   OpenAI does.
 */
import { describeValue } from "../generate/errors.js";
import type { Clip } from "../embed/clip.js";
import { unitRows } from "../models/clip_model.js";
import type { PixelValues } from "../image/preprocess.js";
import { badRequest } from "./api_error.js";
import { imageFromUrl, type RemoteImageOptions } from "./images.js";
import { object } from "./openai_request.js";

/** OpenAI's limit on the inputs of one request. */
export const MAX_EMBEDDING_INPUTS = 2048;
/** Token-id rows per pass of the text tower (as embedTexts batches texts). */
const TOKEN_BATCH = 64;

export type EmbeddingInput =
  | { kind: "text"; text: string }
  | { kind: "tokens"; ids: number[] }
  | { kind: "image"; bytes: Uint8Array; param: string };

export interface EmbeddingRequest {
  inputs: EmbeddingInput[];
  encoding: "float" | "base64";
}

/** What a request is checked against: the model's sizes. */
export interface EmbeddingModelInfo {
  dimensions: number;
  vocabSize: number;
  /** The most ids a text keeps. */
  maxLength: number;
  endId: number;
}

export function embeddingModelInfo(clip: Clip): EmbeddingModelInfo {
  return {
    dimensions: clip.dimensions,
    vocabSize: clip.tokenizer.vocabSize,
    maxLength: textMaxLength(clip),
    endId: clip.tokenizer.eosId,
  };
}

function textMaxLength(clip: Clip): number {
  return Math.min(clip.tokenizer.contextLength, clip.model.config.text.maxPositionEmbeddings);
}

const FIELDS = new Set(["model", "input", "encoding_format", "dimensions", "user"]);

/**
 * The request's fields checked (`model` is the server's to check); the images are decoded (or
 * fetched) last, after everything else passed, each checked as far as its header.
 */
export async function parseEmbeddingRequest(body: unknown, info: EmbeddingModelInfo, remote: RemoteImageOptions): Promise<EmbeddingRequest> {
  const b = object(body, FIELDS, null);
  let encoding: "float" | "base64" = "float";
  if (b.encoding_format !== undefined && b.encoding_format !== null) {
    if (b.encoding_format !== "float" && b.encoding_format !== "base64") throw badRequest("encoding_format", `must be "float" or "base64", not ${describeValue(b.encoding_format)}`);
    encoding = b.encoding_format;
  }
  if (b.dimensions !== undefined && b.dimensions !== null) {
    if (!Number.isSafeInteger(b.dimensions) || (b.dimensions as number) < 1) throw badRequest("dimensions", `must be a positive integer, not ${describeValue(b.dimensions)}`);
    if (b.dimensions !== info.dimensions) {
      throw badRequest("dimensions", `this model's embeddings have ${info.dimensions} dimensions and cannot be shortened (CLIP's vectors are not trained to be cut); leave dimensions out or give ${info.dimensions}`, "unsupported_value");
    }
  }
  if (b.user !== undefined && b.user !== null && typeof b.user !== "string") throw badRequest("user", `must be a string, not ${describeValue(b.user)}`);
  const pending = inputs(b.input, info);
  const out: EmbeddingInput[] = [];
  for (const item of pending) out.push(item.kind === "image_url" ? { kind: "image", bytes: await imageFromUrl(item.url, item.param, remote), param: item.param } : item);
  return { inputs: out, encoding };
}

type Pending = Exclude<EmbeddingInput, { kind: "image" }> | { kind: "image_url"; url: unknown; param: string };

function inputs(value: unknown, info: EmbeddingModelInfo): Pending[] {
  const expected = "must be a string, an array of strings, token ids or content parts ({type: \"text\", text} or {type: \"image_url\", image_url: {url}})";
  if (value === undefined || value === null) throw badRequest("input", `is required: it ${expected.slice(5)}`);
  if (typeof value === "string") return [text(value, "input")];
  if (!Array.isArray(value)) throw badRequest("input", `${expected}, not ${describeValue(value)}`);
  if (value.length === 0) throw badRequest("input", "must not be an empty array");
  // An array of numbers is one input, already tokenized.
  if (value.every((v) => typeof v === "number")) return [tokens(value, "input", info)];
  if (value.length > MAX_EMBEDDING_INPUTS) throw badRequest("input", `has ${value.length} inputs; at most ${MAX_EMBEDDING_INPUTS} per request`);
  return value.map((item, i): Pending => {
    const at = `input[${i}]`;
    if (typeof item === "string") return text(item, at);
    if (Array.isArray(item)) return tokens(item, at, info);
    if (typeof item === "number") throw badRequest(at, "a token id must be in an array of ids: give [id, ...] for one input or [[id, ...], ...] for several, not ids mixed with other inputs");
    const part = object(item, new Set(["type", "text", "image_url"]), at);
    if (part.type === "text") {
      if (typeof part.text !== "string") throw badRequest(`${at}.text`, `must be a string, not ${describeValue(part.text)}`);
      return text(part.text, `${at}.text`);
    }
    if (part.type === "image_url") {
      const image = part.image_url;
      const url = typeof image === "string" ? image : object(image, new Set(["url", "detail"]), `${at}.image_url`).url;
      return { kind: "image_url", url, param: `${at}.image_url.url` };
    }
    throw badRequest(`${at}.type`, `must be "text" or "image_url", not ${describeValue(part.type)}`);
  });
}

function text(value: string, at: string): Pending {
  // As OpenAI: an empty string is no input (CLIP would embed just its start and end tokens).
  if (value.length === 0) throw badRequest(at, "must not be an empty string");
  return { kind: "text", text: value };
}

function tokens(value: unknown[], at: string, info: EmbeddingModelInfo): Pending {
  if (value.length === 0) throw badRequest(at, "must not be an empty array of token ids");
  if (value.length > info.maxLength) throw badRequest(at, `has ${value.length} token ids; this model reads at most ${info.maxLength} (start and end tokens included)`);
  for (const [j, id] of value.entries()) {
    if (!Number.isInteger(id) || (id as number) < 0 || (id as number) >= info.vocabSize) {
      throw badRequest(`${at}[${j}]`, `must be a token id, an integer in [0, ${info.vocabSize}), not ${describeValue(id)}`);
    }
  }
  if (!value.includes(info.endId)) {
    throw badRequest(at, `holds no end token (id ${info.endId}), where CLIP pools a text: give the ids as the tokenizer encodes them, start and end tokens included`);
  }
  return { kind: "tokens", ids: value as number[] };
}

/** The images decoded and preprocessed (on the CPU), each failure a 400 naming its input. */
export async function preparePixels(clip: Clip, request: EmbeddingRequest): Promise<Map<number, PixelValues>> {
  const pixels = new Map<number, PixelValues>();
  for (const [i, input] of request.inputs.entries()) {
    if (input.kind !== "image") continue;
    try {
      pixels.set(i, await clip.pixels(input.bytes));
    } catch (error) {
      throw badRequest(input.param, `could not be decoded: ${(error as Error).message}`, "invalid_image");
    }
  }
  return pixels;
}

export interface Embedded {
  vectors: Float32Array[];
  promptTokens: number;
}

/** Runs the request on the GPU (the caller makes sure one at a time): a unit vector per input, in order. */
export async function embedInputs(clip: Clip, request: EmbeddingRequest, pixels: Map<number, PixelValues>): Promise<Embedded> {
  const vectors: Float32Array[] = new Array(request.inputs.length);
  const maxLength = textMaxLength(clip);
  const texts: number[] = [];
  const rows: number[] = [];
  let promptTokens = 0;
  request.inputs.forEach((input, i) => {
    if (input.kind === "text") {
      texts.push(i);
      promptTokens += clip.tokenizer.encode(input.text, { truncate: maxLength }).length;
    } else if (input.kind === "tokens") {
      rows.push(i);
      promptTokens += input.ids.length;
    }
  });
  const images = [...pixels.keys()];
  const put = (at: number[], got: Float32Array[]) => at.forEach((i, k) => (vectors[i] = got[k]));
  if (texts.length > 0) put(texts, await clip.embedTexts(texts.map((i) => (request.inputs[i] as { text: string }).text)));
  if (rows.length > 0) put(rows, await embedTokenIds(clip, rows.map((i) => (request.inputs[i] as { ids: number[] }).ids)));
  const per = clip.imagesPerPass;
  for (let at = 0; at < images.length; at += per) {
    const chunk = images.slice(at, at + per);
    put(chunk, await clip.embedPixels(chunk.map((i) => pixels.get(i)!)));
  }
  return { vectors, promptTokens };
}

/** Unit vectors of already-tokenized texts (padded per batch, as embedTexts pads). */
async function embedTokenIds(clip: Clip, rows: number[][]): Promise<Float32Array[]> {
  const dim = clip.dimensions;
  const out: Float32Array[] = [];
  for (let at = 0; at < rows.length; at += TOKEN_BATCH) {
    const batch = rows.slice(at, at + TOKEN_BATCH);
    const width = Math.max(...batch.map((r) => r.length));
    const ids = batch.map((r) => [...r, ...new Array<number>(width - r.length).fill(clip.tokenizer.padId)]);
    const features = clip.model.textFeatures({ ids, lengths: batch.map((r) => r.length) });
    const values = await features.read();
    features.dispose();
    const unit = unitRows(values, dim);
    for (let i = 0; i < batch.length; i++) out.push(unit.slice(i * dim, (i + 1) * dim));
  }
  return out;
}

export interface EmbeddingResponse {
  object: "list";
  data: { object: "embedding"; index: number; embedding: number[] | string }[];
  model: string;
  usage: { prompt_tokens: number; total_tokens: number };
}

export function embeddingsBody(embedded: Embedded, encoding: "float" | "base64", model: string): EmbeddingResponse {
  return {
    object: "list",
    data: embedded.vectors.map((v, index) => ({ object: "embedding", index, embedding: encoding === "base64" ? base64Floats(v) : Array.from(v) })),
    model,
    usage: { prompt_tokens: embedded.promptTokens, total_tokens: embedded.promptTokens },
  };
}

/** Little-endian float32 bytes in base64, whatever the host's byte order. */
export function base64Floats(values: Float32Array): string {
  const bytes = Buffer.alloc(values.length * 4);
  values.forEach((v, i) => bytes.writeFloatLE(v, i * 4));
  return bytes.toString("base64");
}
