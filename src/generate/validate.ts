/**
 * Every field of a request checked, by type and range, before anything is queued or allocated.
 * A request comes from JavaScript as often as from TypeScript, so nothing about it is taken on
 * trust: each mistake is a RequestError that names the field and says what it accepts, never a
 * TypeError from deep inside, and an unknown field (a typo like `max_new_tokens`) is refused
 * instead of silently doing nothing.
 *
 * The sampler's ranges live with the sampler (kernels/sample/options.ts); they are checked here
 * by asking it about one field at a time, so the error names that field.
 */
import { resolveOptions } from "../kernels/sample/options.js";
import type { Gpu } from "../tensor/gpu.js";
import { isFloat } from "../tensor/dtype.js";
import { Tensor } from "../tensor/tensor.js";
import type { ChatMessage, ImageInput } from "./chat_template.js";
import { describeValue, RequestError } from "./errors.js";
import { DEFAULT_MAX_NEW_TOKENS, type GenerateRequest } from "./request.js";

/** What a request is checked against. */
export interface ModelLimits {
  vocabSize: number;
  contextLength: number;
  hasTokenizer: boolean;
  /** null for a text-only model. */
  vision: {
    imageTokenId: number;
    imageSize: number;
    /** Positions per image; null where they depend on the image (tiles). */
    featuresPerImage: number | null;
    /** Whether images are tiled by their size (LLaVA-NeXT). */
    tiles: boolean;
  } | null;
  /** The device a tensor image must be on. */
  gpu: Gpu;
}

/** A request that passed: one prompt form, every default filled in. */
export interface ValidRequest {
  messages?: ChatMessage[];
  prompt?: string;
  promptIds?: number[];
  images: ImageInput[];
  maxNewTokens: number;
  sampling: { temperature: number; topK?: number; topP?: number; repetitionPenalty?: number; seed?: number };
  stopIds: number[];
  stopStrings: string[];
  signal?: AbortSignal;
  padToSquare: boolean;
}

// Records over the interfaces' keys, so a field added to the type and not here fails to compile.
const REQUEST_FIELDS: Record<keyof GenerateRequest, true> = {
  messages: true,
  prompt: true,
  promptIds: true,
  images: true,
  maxNewTokens: true,
  temperature: true,
  topK: true,
  topP: true,
  repetitionPenalty: true,
  seed: true,
  stop: true,
  signal: true,
  padToSquare: true,
};
const MESSAGE_FIELDS: Record<keyof ChatMessage, true> = { role: true, content: true, images: true };
const ROLES: readonly string[] = ["system", "user", "assistant"] satisfies ChatMessage["role"][];
const PROMPT_FORMS = ["messages", "prompt", "promptIds"] as const;
const SAMPLER_FIELDS = ["temperature", "topK", "topP", "repetitionPenalty", "seed"] as const;

export function validateRequest(request: unknown, limits: ModelLimits): ValidRequest {
  const r = fields(request, "request", REQUEST_FIELDS);
  const forms = PROMPT_FORMS.filter((form) => r[form] !== undefined);
  if (forms.length !== 1) {
    const given = forms.length === 0 ? "none was given" : `not ${forms.join(" and ")}`;
    throw new RequestError(PROMPT_FORMS.join("/"), `give exactly one of messages, prompt and promptIds (${given})`);
  }
  const form = forms[0];
  if (form !== "promptIds" && !limits.hasTokenizer) {
    throw new RequestError(form, "this model has no tokenizer (no tokenizer files in its folder, or no tokenizer.ggml.* vocabulary in its GGUF file): give promptIds instead of text");
  }
  const valid: ValidRequest = {
    images: r.images === undefined ? [] : images(r.images, "images", limits),
    maxNewTokens: r.maxNewTokens === undefined ? DEFAULT_MAX_NEW_TOKENS : maxNewTokens(r.maxNewTokens),
    sampling: sampling(r),
    ...stops(r.stop, limits),
    padToSquare: r.padToSquare === undefined ? false : boolean(r.padToSquare, "padToSquare"),
  };
  if (form === "messages") valid.messages = messages(r.messages, limits);
  if (form === "prompt") {
    if (typeof r.prompt !== "string") throw new RequestError("prompt", `must be a string, not ${describeValue(r.prompt)}`);
    valid.prompt = r.prompt;
  }
  if (form === "promptIds") valid.promptIds = promptIds(r.promptIds, limits);
  if (r.signal !== undefined) {
    if (!(r.signal instanceof AbortSignal)) throw new RequestError("signal", `must be an AbortSignal, not ${describeValue(r.signal)}`);
    valid.signal = r.signal;
  }
  return valid;
}

/**
 * No tokenizer piece comes near this many characters (LLaMA's longest are 16), so a prompt
 * text longer than this per context position cannot fit, and is refused before it is
 * tokenized (a few MB of text would otherwise take seconds and a large array of ids).
 */
export const MAX_CHARACTERS_PER_POSITION = 64;

/** Refuses a prompt text that cannot fit the context, before it is tokenized. */
export function checkPromptText(text: string, limits: ModelLimits, field: string): void {
  const most = limits.contextLength * MAX_CHARACTERS_PER_POSITION;
  if (text.length > most) {
    throw new RequestError(field, `the prompt has ${text.length} characters; the context of ${limits.contextLength} positions holds at most ${most}`);
  }
}

/**
 * Refuses a tokenized prompt whose image tokens and images differ in number, or whose
 * `positions` (images expanded) leave nothing of the context to generate into. `field` is the
 * prompt form the ids came from.
 */
export function checkPromptFits(ids: readonly number[], imageCount: number, positions: number, limits: ModelLimits, field: string, featureCounts?: readonly number[]): void {
  const vision = limits.vision;
  const slots = vision ? ids.filter((id) => id === vision.imageTokenId).length : 0;
  if (slots !== imageCount) {
    const given = `${imageCount} image${imageCount === 1 ? " was" : "s were"} given`;
    throw new RequestError("images", `the prompt has ${slots} image token${slots === 1 ? "" : "s"} but ${given}`);
  }
  if (positions >= limits.contextLength) {
    const counts = featureCounts ?? Array.from({ length: slots }, () => vision!.featuresPerImage);
    const distinct = new Set(counts);
    const each = distinct.size === 1 ? `${counts[0]} positions each` : `${counts.join(", ")} positions`;
    const what = slots && counts.every((c) => c !== null) ? `, ${slots} image${slots > 1 ? "s" : ""} of ${each}` : "";
    throw new RequestError(
      field,
      `the prompt takes ${positions} positions (${ids.length} tokens${what}), ` +
        `but the context holds ${limits.contextLength}: nothing is left to generate into`,
    );
  }
}

/** `value` as a plain object whose keys are all in `known`; `field` names it in errors. */
function fields(value: unknown, field: string, known: Record<string, true>): Record<string, unknown> {
  const names = Object.keys(known);
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw new RequestError(field, `must be an object with ${names.join(", ")}, not ${describeValue(value)}`);
  }
  for (const key of Object.keys(value)) {
    if (Object.hasOwn(known, key)) continue;
    const camel = key.replace(/[_-]([a-z])/g, (_, c: string) => c.toUpperCase());
    const hint = camel !== key && Object.hasOwn(known, camel) ? ` (did you mean ${camel}?)` : "";
    throw new RequestError(field === "request" ? key : `${field}.${key}`, `is not a field of ${field}${hint}; the fields are ${names.join(", ")}`);
  }
  return value as Record<string, unknown>;
}

function arrayOf(value: unknown, field: string, what: string): readonly unknown[] {
  if (!Array.isArray(value)) throw new RequestError(field, `must be an array of ${what}, not ${describeValue(value)}`);
  return value;
}

/**
 * `check` of every element, holes of a sparse array included (forEach and map would skip them
 * unchecked); the first bad one throws before the rest are looked at.
 */
function checkEach<T>(list: readonly unknown[], check: (item: unknown, i: number) => T): T[] {
  const checked: T[] = [];
  for (let i = 0; i < list.length; i++) checked.push(check(list[i], i));
  return checked;
}

function boolean(value: unknown, field: string): boolean {
  if (typeof value !== "boolean") throw new RequestError(field, `must be true or false, not ${describeValue(value)}`);
  return value;
}

function maxNewTokens(value: unknown): number {
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 1) {
    throw new RequestError("maxNewTokens", `must be an integer >= 1 (it is cut to what the context can still hold), not ${describeValue(value)}`);
  }
  return value;
}

function sampling(r: Record<string, unknown>): ValidRequest["sampling"] {
  const out: ValidRequest["sampling"] = { temperature: 0 };
  for (const field of SAMPLER_FIELDS) {
    const value = r[field];
    if (value === undefined) continue;
    if (typeof value !== "number") throw new RequestError(field, `must be a number, not ${describeValue(value)}`);
    try {
      resolveOptions({ temperature: 0, seed: 0, step: 0, [field]: value }, "the sampler");
    } catch (error) {
      if (error instanceof RangeError) throw new RequestError(field, error.message);
      throw error;
    }
    out[field] = value;
  }
  return out;
}

function stops(value: unknown, limits: ModelLimits): { stopIds: number[]; stopStrings: string[] } {
  if (value === undefined) return { stopIds: [], stopStrings: [] };
  const accepts = `non-empty strings and token ids (integers in [0, ${limits.vocabSize}))`;
  const list = checkEach(arrayOf(value, "stop", accepts), (stop, i) => {
    if (typeof stop === "string" && stop.length > 0) {
      if (!limits.hasTokenizer) throw new RequestError(`stop[${i}]`, "this model has no tokenizer, so it generates no text to find a stop string in");
      return stop;
    }
    if (isTokenId(stop, limits.vocabSize)) return stop;
    throw new RequestError(`stop[${i}]`, `must be a non-empty string or a token id (an integer in [0, ${limits.vocabSize})), not ${describeValue(stop)}`);
  });
  return { stopIds: list.filter((s) => typeof s === "number"), stopStrings: list.filter((s) => typeof s === "string") };
}

function promptIds(value: unknown, limits: ModelLimits): number[] {
  const imageTokenId = limits.vision?.imageTokenId;
  const accepts = `token ids (integers in [0, ${limits.vocabSize})${imageTokenId === undefined ? "" : `, or ${imageTokenId} where an image goes`})`;
  const ids = arrayOf(value, "promptIds", accepts);
  if (ids.length === 0) throw new RequestError("promptIds", `must hold at least one token id`);
  // Cheap before the scan below: every id takes at least one position.
  if (ids.length >= limits.contextLength) {
    throw new RequestError("promptIds", `${ids.length} ids, but the context holds ${limits.contextLength}: nothing is left to generate into`);
  }
  return checkEach(ids, (id, i) => {
    if (!isTokenId(id, limits.vocabSize) && id !== imageTokenId) throw new RequestError(`promptIds[${i}]`, `must be one of the ${accepts}, not ${describeValue(id)}`);
    return id as number;
  });
}

function isTokenId(value: unknown, vocabSize: number): value is number {
  return typeof value === "number" && Number.isInteger(value) && value >= 0 && value < vocabSize;
}

function messages(value: unknown, limits: ModelLimits): ChatMessage[] {
  const list = arrayOf(value, "messages", "{ role, content, images? } objects");
  return checkEach(list, (item, i) => {
    const field = `messages[${i}]`;
    const m = fields(item, field, MESSAGE_FIELDS);
    if (typeof m.role !== "string" || !ROLES.includes(m.role)) {
      throw new RequestError(`${field}.role`, `must be ${ROLES.join(", ")}, not ${describeValue(m.role)}`);
    }
    if (typeof m.content !== "string") throw new RequestError(`${field}.content`, `must be a string, not ${describeValue(m.content)}`);
    const message: ChatMessage = { role: m.role as ChatMessage["role"], content: m.content };
    if (m.images !== undefined) message.images = images(m.images, `${field}.images`, limits);
    return message;
  });
}

const IMAGE_FORMS =
  "a file path, the file's bytes (a Buffer or Uint8Array), pixel values { data: Float32Array, shape: [3, S, S] } or a [3, S, S] GPU Tensor of them";

function images(value: unknown, field: string, limits: ModelLimits): ImageInput[] {
  const list = arrayOf(value, field, `images (${IMAGE_FORMS})`);
  if (list.length > 0 && limits.vision === null) throw new RequestError(field, "this model is text-only: it takes no images");
  return checkEach(list, (image, i) => checkImage(image, `${field}[${i}]`, limits.vision!.imageSize, limits.gpu));
}

function checkImage(image: unknown, field: string, size: number, gpu: Gpu): ImageInput {
  const shapeText = `[3, ${size}, ${size}]`;
  const isPixelShape = (shape: unknown) =>
    Array.isArray(shape) && shape.length === 3 && shape[0] === 3 && shape[1] === size && shape[2] === size;
  if (typeof image === "string") {
    if (image.length === 0) throw new RequestError(field, "an image path must not be empty");
    return image;
  }
  if (image instanceof Uint8Array) return image;
  if (image instanceof Tensor) {
    if (image.disposed) throw new RequestError(field, `${image.describe()} was disposed`);
    if (image.gpu !== gpu) throw new RequestError(field, `${image.describe()} is on another device than the model`);
    if (!isPixelShape([...image.shape]) || !isFloat(image.dtype)) {
      throw new RequestError(field, `a tensor image must be f32 or f16 ${shapeText} (this model's image size), not ${image.describe()}`);
    }
    return image;
  }
  if (image !== null && typeof image === "object" && "data" in image && "shape" in image) {
    const { data, shape } = image as { data: unknown; shape: unknown };
    if (!isPixelShape(shape)) throw new RequestError(`${field}.shape`, `must be ${shapeText} (this model's image size), not ${describeValue(shape)}`);
    if (!(data instanceof Float32Array) || data.length !== 3 * size * size) {
      throw new RequestError(`${field}.data`, `must be a Float32Array of ${3 * size * size} values (${shapeText}), not ${describeValue(data)}`);
    }
    return { data, shape: [3, size, size] };
  }
  throw new RequestError(field, `must be ${IMAGE_FORMS}, not ${describeValue(image)}`);
}
