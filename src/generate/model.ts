/**
 * The public face of a model: loadModel() and streaming generate().
 *
 * One generation:
 *   prompt → tokens; images → pixel values (CPU) → features (GPU)
 *   prefill: all prompt positions in one causal pass, filling the KV-cache; sample token 0
 *   decode:  for each next token, one position through the decoder, sample on the GPU
 *
 * Every step is recorded into one command buffer and submitted once: the logits never leave
 * the GPU; the sampler writes the chosen id where the next step's embedding lookup reads it,
 * and only that id (4 bytes) is read back, to stream its text and check for stops. Past its
 * prefill, a generation is decoded in the model's batch (batch.ts) with every other one, up
 * to maxBatch at once, each in its own KV-cache; a step is captured once and replayed, and
 * the next step is submitted before this one's tokens are read, so the GPU never waits for
 * the CPU.
 *
 * Before any of that, the request is checked whole (validate.ts) and its token budget cut to
 * the context; then it waits for a free KV-cache (turns.ts, stream.ts: no caller can keep one
 * forever).
 */
import { randomInt } from "node:crypto";
import { stat } from "node:fs/promises";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { CONFIG_FILE_NAME, loadPreprocessorConfig, parsePreprocessorConfig, type PreprocessorConfig } from "../image/config.js";
import { checkImage, ImageError } from "../image/decode.js";
import { preprocessAnyresImage, type AnyresPixels } from "../image/anyres.js";
import type { ImageSize } from "../models/anyres.js";
import type { AnyresConfig } from "../weights/config.js";
import { preprocessImage, type PixelValues } from "../image/preprocess.js";
import { pathExists, readFileWithin } from "../files/read.js";
import { IMAGE_FILE } from "../files/limits.js";
import { check } from "../tensor/errors.js";
import type { Gpu } from "../tensor/gpu.js";
import { Tensor } from "../tensor/tensor.js";
import { loadTokenizer, type Tokenizer } from "../tokenizer/index.js";
import { ChatTemplate, ChatTemplateError, chooseChatFamily, fallbackChatTemplate, IMAGE_TAG, loadChatTemplate, type ChatMessage, type ImageInput } from "./chat_template.js";
import { describeValue, RequestError } from "./errors.js";
import { loadLlava, type LlavaModel, type LoadModelOptions, type LoadReport } from "../models/llava.js";
import type { GenerateChunk, GenerateRequest, GenerateResult } from "./request.js";
import { StopStringFilter } from "./stop.js";
import { checkAbandonAfterMs, DEFAULT_ABANDON_AFTER_MS, GenerationStream } from "./stream.js";
import { DecodeBatch, type Sequence } from "./batch.js";
import { AsyncQueue } from "./async_queue.js";
import { CacheContents, ImageFeatureCache, imageKey, promptKeys, type PositionKey } from "./prompt_cache.js";
import { recordPrefill, TokenSampler } from "./token_step.js";
import { TurnQueue } from "./turns.js";
import { checkPromptFits, checkPromptText, validateRequest, type ModelLimits, type ValidRequest } from "./validate.js";

export interface ModelOptions extends LoadModelOptions {
  /**
   * A generate() stream nobody reads is cancelled once another request has waited this long for
   * the model (milliseconds; default DEFAULT_ABANDON_AFTER_MS). See stream.ts.
   */
  abandonAfterMs?: number;
  /** Bytes of image features kept on the GPU for images asked about again (default 64 MiB; 0: none). */
  imageCacheBytes?: number;
}

/** The default image feature cache: a few images' features at llava-1.5-7b's size (576 × 4096 f32 is 9.4 MB). */
export const DEFAULT_IMAGE_CACHE_BYTES = 64 * 2 ** 20;

/** A checked request, its prompt tokenized. */
interface Plan {
  request: ValidRequest;
  ids: readonly number[];
  images: ImageInput[];
  /** The prompt form the ids came from (named in errors). */
  field: string;
}

/** An image as given, read (a path's bytes), and named by its content for the caches. */
interface LoadedImage {
  source: Uint8Array | PixelValues | AnyresPixels | Tensor;
  name: string;
  key: string;
  /** The image's size in pixels where its features depend on it (anyres). */
  size?: ImageSize;
  /** Positions its features take in the prompt. */
  count: number;
}

/** A plan whose images are read, with every prompt position's key (prompt_cache.ts), and its token budget fitted to the context. */
interface ReadyPlan extends Plan {
  loaded: LoadedImage[];
  keys: PositionKey[];
  promptLength: number;
  maxNewTokens: number;
}

export class VisionLanguageModel {
  /** Generations take turns for the KV-caches, one each (maxBatch of them). */
  private readonly turns: TurnQueue;
  /** Every generation past its prefill, decoded together. */
  private readonly batch: DecodeBatch;
  /** What each KV-cache holds, for prompt caching. */
  private readonly contents: CacheContents;
  private readonly imageCache: ImageFeatureCache;
  private tensorImages = 0;

  constructor(
    readonly llava: LlavaModel,
    readonly tokenizer: Tokenizer | null,
    readonly preprocessor: PreprocessorConfig | null,
    /** How `messages` become the prompt: the checkpoint's own chat template, or its family's. */
    readonly chatTemplate: ChatTemplate,
    readonly abandonAfterMs = DEFAULT_ABANDON_AFTER_MS,
    imageCacheBytes = DEFAULT_IMAGE_CACHE_BYTES,
  ) {
    checkAbandonAfterMs(abandonAfterMs);
    checkImageCacheBytes(imageCacheBytes);
    this.turns = new TurnQueue(llava.caches.length);
    this.batch = new DecodeBatch(llava.gpu, llava.decoder, llava.caches.length);
    this.contents = new CacheContents(llava.caches);
    this.imageCache = new ImageFeatureCache(imageCacheBytes);
  }

  get gpu(): Gpu {
    return this.llava.gpu;
  }

  /** The most generations that run at once (one KV-cache each; loadModel's maxBatch). */
  get maxBatch(): number {
    return this.llava.caches.length;
  }

  /** Generations now holding a KV-cache, and those waiting for one (a server's occupancy and queue). */
  get load(): { running: number; waiting: number } {
    return { running: this.turns.busy, waiting: this.turns.waiters };
  }

  /** GPU bytes the image feature cache holds (at most imageCacheBytes). */
  get cachedImageBytes(): number {
    return this.imageCache.bytes;
  }

  get loadReport(): LoadReport {
    return this.llava.loadReport;
  }

  /**
   * Streams the reply chunk by chunk; the generator's return value is the whole result. The
   * request is checked at the first next() (RequestError), before it queues behind the
   * generations already running; a stream left unread is cancelled after abandonAfterMs once
   * another request waits (stream.ts).
   */
  generate(request: GenerateRequest): AsyncGenerator<GenerateChunk, GenerateResult> {
    return this.stream(request);
  }

  /** Generates the whole reply (onChunk sees it as it streams; if it throws, the generation ends and the error is thrown). */
  async complete(request: GenerateRequest, onChunk?: (chunk: GenerateChunk) => void): Promise<GenerateResult> {
    if (onChunk !== undefined && typeof onChunk !== "function") {
      throw new RequestError("onChunk", `must be a function, not ${describeValue(onChunk)}`);
    }
    const stream = this.stream(request);
    try {
      for (;;) {
        const next = await stream.next();
        if (next.done) return next.value;
        onChunk?.(next.value);
      }
    } finally {
      await stream.return();
    }
  }

  /** Resolves once no generation is decoding (the decode batch has stopped): for a clean shutdown, say. */
  idle(): Promise<void> {
    return this.batch.idle();
  }

  dispose(): void {
    this.imageCache.dispose();
    this.batch.dispose();
    this.llava.dispose();
  }

  private stream(request: GenerateRequest): GenerationStream {
    return new GenerationStream(this.turns, this.abandonAfterMs, async () => {
      const plan = await this.ready(this.plan(request));
      return { choose: (free) => this.contents.choose(free, plan.keys), start: (slot) => this.run(plan, slot) };
    });
  }

  private limits(): ModelLimits {
    const { llava } = this;
    const vision = llava.vision;
    return {
      vocabSize: llava.textConfig.vocabSize,
      contextLength: llava.contextLength,
      hasTokenizer: this.tokenizer !== null,
      vision: vision && { imageTokenId: vision.imageTokenId, imageSize: vision.tower.config.imageSize, featuresPerImage: vision.featuresPerImage, tiles: vision.anyres !== null },
      gpu: this.gpu,
    };
  }

  /** Everything about a request that can be checked before it waits its turn. */
  private plan(request: unknown): Plan {
    this.gpu.assertUsable(); // a lost device fails every request at once
    const limits = this.limits();
    const valid = validateRequest(request, limits);
    const { ids, images, field } = this.promptTokens(valid, limits);
    if (limits.vision?.tiles && valid.padToSquare) {
      throw new RequestError("padToSquare", "does not apply to this model: it tiles each image at its own aspect ratio (LLaVA-NeXT)");
    }
    // The images' positions are known once they are read (ready), except for llava-1.5's fixed count.
    const fixed = limits.vision?.featuresPerImage;
    checkPromptFits(ids, images.length, fixed ? this.llava.mergedLength(ids) : ids.length, limits, field);
    return { request: valid, ids, images, field };
  }

  /**
   * Reads the plan's images, names every prompt position and fits the token budget to the
   * context (before the request waits for a KV-cache).
   */
  private async ready(plan: Plan): Promise<ReadyPlan> {
    const loaded: LoadedImage[] = [];
    const variant = `pad ${plan.request.padToSquare}`;
    for (const image of plan.images) loaded.push(await this.loadImage(image, variant));
    const vision = this.llava.vision;
    const counts = loaded.map((l) => l.count);
    const keys = promptKeys(plan.ids, vision?.imageTokenId ?? null, counts, loaded.map((l) => l.key));
    const promptLength = this.llava.mergedLength(plan.ids, counts);
    const limits = this.limits();
    checkPromptFits(plan.ids, loaded.length, promptLength, limits, plan.field, counts);
    // The cache holds the prompt and every generated token but the last, which is never fed back.
    const maxNewTokens = Math.min(plan.request.maxNewTokens, limits.contextLength - promptLength + 1);
    return { ...plan, loaded, keys, promptLength, maxNewTokens };
  }

  /** One image of a request, read, keyed, and with the positions it will take. */
  private async loadImage(image: ImageInput, variant: string): Promise<LoadedImage> {
    const llava = this.llava;
    const tiles = llava.vision?.anyres != null;
    const counted = async (l: Omit<LoadedImage, "count">): Promise<LoadedImage> => {
      if (!tiles) return { ...l, count: llava.featureCount() };
      // The features of a tiled image follow from its size: read from the file's header here.
      const size = l.size ?? (l.source instanceof Uint8Array ? await checkImage(l.source, { name: l.name }) : undefined);
      if (!size) throw new RequestError("images", `${l.name}: this model tiles each image by its size (LLaVA-NeXT); give the image file, or preprocessAnyres() output`);
      return { ...l, size: { height: size.height, width: size.width }, count: llava.featureCount(size) };
    };
    if (image instanceof Tensor) return counted({ source: image, name: image.describe(), key: `tensor ${++this.tensorImages}` });
    if (typeof image === "string") {
      const bytes = await readFileWithin(image, IMAGE_FILE, { as: ImageError });
      return counted({ source: bytes, name: image, key: imageKey(bytes, variant) });
    }
    if (image instanceof Uint8Array) return counted({ source: image, name: "image buffer", key: imageKey(image, variant) });
    const bytes = new Uint8Array(image.data.buffer, image.data.byteOffset, image.data.byteLength);
    const size = "imageSize" in image ? image.imageSize : undefined;
    return counted({ source: image, name: "pixel values", key: imageKey(bytes, `pixels ${image.shape.join("x")}`), size });
  }

  /** One generation, in KV-cache `slot`: its images and prefill here, its decoding in the model's batch. */
  private async *run(plan: ReadyPlan, slot: number): AsyncGenerator<GenerateChunk, GenerateResult> {
    const { llava, gpu } = this;
    const { request, ids, maxNewTokens, keys } = plan;
    gpu.assertUsable(); // the device may have been lost while this request waited
    const started = performance.now();
    const { temperature } = request.sampling;
    const sampling = { ...request.sampling, seed: request.sampling.seed ?? (temperature > 0 ? randomInt(2 ** 32) : 0) };
    const stopIds = new Set([...llava.textConfig.eosTokenIds, ...(this.tokenizer ? [this.tokenizer.eosId] : []), ...request.stopIds]);
    const stops = new StopStringFilter(request.stopStrings);
    const decoder = this.tokenizer?.decoder();
    const cache = llava.caches[slot];

    const result: GenerateResult = {
      text: "",
      tokens: [],
      finishReason: "length",
      usage: { promptTokens: plan.promptLength, cachedPromptTokens: 0, completionTokens: 0 },
      timings: { loadMs: this.loadReport.loadMs, visionMs: 0, prefillMs: 0, decodeMs: 0, decodeTokensPerSecond: 0 },
    };
    if (request.signal?.aborted) return { ...result, finishReason: "abort" };
    const owned: Tensor[] = [];
    // The batch delivers ids as it decodes them (at its pace), into `delivered`; this generator turns
    // them into text as its caller reads (at the caller's pace), so a stop string, an abort or
    // a return() acts between two tokens the caller saw, and what was decoded beyond is dropped.
    const delivered = new AsyncQueue<number>();
    /** Every id sampled, stop ids too: what the tokens fed back put in the cache. */
    const seen: number[] = [];
    /** Takes a decoded id; false when no further one is needed (the caller may still stop sooner). */
    const deliver = (id: number): boolean => {
      seen.push(id);
      delivered.push(id);
      const more = !stopIds.has(id) && seen.length < maxNewTokens && !request.signal?.aborted;
      if (!more) delivered.end();
      return more;
    };
    let sequence: Sequence | null = null;
    // The cache keeps the positions this prompt shares with what it held; the rest is rewritten.
    const reuse = this.contents.reusable(slot, keys);
    let held = keys.slice(0, reuse);
    let failed = false;
    this.contents.set(slot, held);
    result.usage.cachedPromptTokens = reuse;
    try {
      const features = await this.imageFeatures(plan, reuse, owned);
      if (request.signal?.aborted) return { ...result, finishReason: "abort" };
      const prefillStart = performance.now();
      result.timings.visionMs = prefillStart - started;

      // The history the repetition penalty sees: the prompt's ids, then each sampled id.
      const history = gpu.empty([ids.length + maxNewTokens + 1], "u32", { name: "token history" });
      const first = gpu.empty([1], "u32", { name: "first token" });
      owned.push(history, first);
      gpu.write(history, new Uint32Array(ids));
      const sampler = new TokenSampler(history, ids.length, sampling);
      recordPrefill(llava, ids, features, sampler, { tokens: first }, llava.decoder, cache, reuse, plan.loaded.map((l) => l.count));
      for (const f of features) f?.dispose();
      const token = (await first.read())[0];
      held = keys;
      const decodeStart = performance.now();
      result.timings.prefillMs = decodeStart - prefillStart;

      // The rest in the model's decode batch, with whatever else is being generated.
      if (deliver(token)) {
        sequence = {
          cache,
          sampler,
          lastPosition: cache.length + maxNewTokens - 2,
          onToken: deliver,
          onError: (error) => delivered.fail(error),
        };
        this.batch.join(sequence, token);
      }
      for (;;) {
        const next = await delivered.next();
        if (next.done) break;
        const id = next.value;
        if (stopIds.has(id)) {
          result.finishReason = "stop";
          break;
        }
        result.tokens.push(id);
        const shown = stops.push(decoder?.push(id) ?? "");
        if (shown || !stops.hasStopped) {
          result.text += shown;
          yield { text: shown, token: id };
        }
        if (stops.hasStopped) {
          result.finishReason = "stop";
          break;
        }
        if (result.tokens.length >= maxNewTokens) break; // plan() fitted it to the context
        if (request.signal?.aborted) {
          result.finishReason = "abort";
          break;
        }
      }
      if (sequence) this.batch.leave(sequence); // now, not after the caller has read the last chunk
      const rest = stops.push(decoder?.flush() ?? "") + stops.flush();
      if (rest) {
        result.text += rest;
        yield { text: rest, token: result.tokens.at(-1) ?? -1 };
      }
      result.timings.decodeMs = performance.now() - decodeStart;
      result.usage.completionTokens = result.tokens.length;
      const decoded = result.tokens.length - 1;
      result.timings.decodeTokensPerSecond = decoded > 0 ? (decoded / result.timings.decodeMs) * 1000 : 0;
      return result;
    } catch (error) {
      failed = true;
      throw error;
    } finally {
      // Past the prompt the cache holds each token fed back, in order (unless something failed on the way).
      if (held === keys && !failed) held = [...keys, ...seen.slice(0, cache.length - keys.length)];
      // Work already submitted that uses these buffers runs before any later use of them.
      if (sequence) this.batch.leave(sequence);
      this.contents.set(slot, held);
      for (const t of owned) t.dispose();
    }
  }

  /**
   * Each image's features [features, hidden]: from the image cache, or encoded (pixel values on
   * the CPU, then the vision tower and projector on the GPU) and cached; null for an image
   * entirely among the `reuse` positions the KV-cache holds already.
   */
  private async imageFeatures(plan: ReadyPlan, reuse: number, owned: Tensor[]): Promise<(Tensor | null)[]> {
    const { llava, gpu } = this;
    const features: (Tensor | null)[] = [];
    const toEncode: { index: number; pixels: Tensor; imageSize?: ImageSize }[] = [];
    let position = 0;
    let image = 0;
    for (const id of plan.ids) {
      if (id !== llava.vision?.imageTokenId) {
        position++;
        continue;
      }
      const { key, count, size } = plan.loaded[image];
      const end = (position += count);
      const needed = end > reuse;
      const cached = needed ? this.imageCache.get(key) : null;
      if (cached) owned.push(cached);
      features.push(cached);
      if (needed && !cached) toEncode.push({ index: image, pixels: await this.pixels(plan.loaded[image], plan.request.padToSquare, owned), imageSize: size });
      image++;
    }
    if (toEncode.length === 0) return features;
    const encoded = gpu.scope(() => toEncode.map(({ pixels, imageSize }) => llava.encodeImage(pixels, { imageSize })));
    owned.push(...encoded);
    toEncode.forEach(({ index }, i) => {
      features[index] = encoded[i];
      this.imageCache.put(plan.loaded[index].key, encoded[i]);
    });
    await gpu.sync();
    return features;
  }

  /** The prompt's token ids and its images, from whichever form the request used (`field`). */
  private promptTokens(request: ValidRequest, limits: ModelLimits): { ids: readonly number[]; images: ImageInput[]; field: string } {
    if (request.promptIds) return { ids: request.promptIds, images: request.images, field: "promptIds" };
    const tokenizer = this.tokenizer!; // validateRequest refuses text for a model without one
    let text: string;
    let images: ImageInput[];
    let field: string;
    let addBos: boolean | undefined;
    if (request.messages) {
      const messages = request.messages;
      if (request.images.length > 0) {
        const last = messages.map((m) => m.role).lastIndexOf("user");
        if (last < 0) throw new RequestError("images", "no message has the user role to attach them to");
        messages[last] = { ...messages[last], images: [...(messages[last].images ?? []), ...request.images] };
      }
      ({ text, images, addBos } = this.render(messages));
      field = "messages";
    } else {
      text = request.prompt!;
      images = request.images;
      field = "prompt";
    }
    const vision = this.llava.vision;
    if (text.includes(IMAGE_TAG) || images.length > 0) {
      if (vision === null) throw new RequestError(field, `this model is text-only, but the prompt has an ${IMAGE_TAG} tag`);
      check(
        tokenizer.idOf(IMAGE_TAG) === vision.imageTokenId,
        () => `the tokenizer's ${IMAGE_TAG} token is ${tokenizer.idOf(IMAGE_TAG)}, but the model expects id ${vision.imageTokenId}`,
      );
    }
    checkPromptText(text, limits, field);
    // A template that writes the BOS token itself gets none added (no double BOS).
    return { ids: tokenizer.encode(text, addBos === false ? { addBos: false } : {}), images, field };
  }

  /** The chat template over `messages`; its failures (a template's raise_exception) are the request's. */
  private render(messages: ChatMessage[]): { text: string; images: ImageInput[]; addBos: boolean } {
    try {
      return this.chatTemplate.render(messages);
    } catch (error) {
      if (error instanceof ChatTemplateError) throw new RequestError("messages", error.message);
      throw error;
    }
  }

  /** An image → pixel values [3, size, size] (anyres: its tiles [tiles, 3, size, size]) on the GPU (registered in `owned` when made here). */
  private async pixels(image: LoadedImage, padToSquare: boolean, owned: Tensor[]): Promise<Tensor> {
    const { source } = image;
    if (source instanceof Tensor) return source;
    let values: PixelValues | AnyresPixels;
    if (source instanceof Uint8Array) {
      check(this.preprocessor !== null, () => `${this.llava.path} has no vision tower: it cannot take images`);
      values = this.llava.vision?.anyres
        ? await preprocessAnyresImage(source, this.preprocessor, { name: image.name })
        : await preprocessImage(source, this.preprocessor, { padToSquare, name: image.name });
    } else {
      values = source;
    }
    const t = this.gpu.tensor(values.data, values.shape, "f32", { name: "pixel values" });
    owned.push(t);
    return t;
  }
}

/** A tiled model (LLaVA-NeXT) needs its processor to cut the tiles on the canvases the model puts back together. */
function checkTiling(preprocessor: PreprocessorConfig, anyres: AnyresConfig | undefined): void {
  const tiles = preprocessor.anyres;
  if (!anyres) {
    check(tiles === null, () => `${preprocessor.source}: tiles images (LlavaNextImageProcessor), but the model is not LLaVA-NeXT`);
    return;
  }
  check(tiles !== null, () => `${preprocessor.source}: the model tiles its images (LLaVA-NeXT), but this is not a LlavaNextImageProcessor config`);
  check(
    JSON.stringify(tiles.gridPinpoints) === JSON.stringify(anyres.gridPinpoints),
    () => `${preprocessor.source}: image_grid_pinpoints ${JSON.stringify(tiles.gridPinpoints)} differ from the model config's ${JSON.stringify(anyres.gridPinpoints)}; the tiles would not fit the model's grid`,
  );
}

function checkImageCacheBytes(value: unknown): void {
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 0) {
    throw new RangeError(`imageCacheBytes must be a whole number of bytes >= 0 (0: no image cache), not ${describeValue(value)}`);
  }
}


/**
 * Loads a Hugging Face LLaVA (or LLaMA) folder: weights on the GPU, plus its tokenizer and
 * image preprocessing when the folder has them.
 */
export async function loadModel(path: string, options: ModelOptions = {}): Promise<VisionLanguageModel> {
  // Checked before minutes of loading.
  if (options.abandonAfterMs !== undefined) checkAbandonAfterMs(options.abandonAfterMs);
  if (options.imageCacheBytes !== undefined) checkImageCacheBytes(options.imageCacheBytes);
  const llava = await loadLlava(path, options);
  try {
    const hasTokenizer = (await pathExists(join(path, "tokenizer.json"))) || (await pathExists(join(path, "tokenizer.model")));
    const tokenizer = llava.bundled.tokenizer ?? (hasTokenizer ? await loadTokenizer(path) : null);
    let preprocessor: PreprocessorConfig | null = llava.bundled.preprocessor ?? null;
    if (llava.vision && !preprocessor) {
      const size = llava.vision.tower.config.imageSize;
      // Without a preprocessor_config.json, CLIPImageProcessor's defaults, at the tower's image size.
      const anyres = llava.vision.anyres?.config;
      preprocessor = (await pathExists(join(path, CONFIG_FILE_NAME)))
        ? await loadPreprocessorConfig(path)
        : parsePreprocessorConfig(
            {
              size: { shortest_edge: size },
              crop_size: { height: size, width: size },
              ...(anyres && { image_processor_type: "LlavaNextImageProcessor", image_grid_pinpoints: anyres.gridPinpoints }),
            },
            `${anyres ? "LlavaNextImageProcessor" : "CLIPImageProcessor"} defaults at ${size} px (no ${CONFIG_FILE_NAME} in ${path})`,
          );
      checkTiling(preprocessor, anyres);
      const crop = preprocessor.cropSize;
      check(
        !preprocessor.doCenterCrop || (crop.height === size && crop.width === size),
        () => `${preprocessor!.source}: crops to ${crop.width}x${crop.height}, but the vision tower takes ${size}x${size} images`,
      );
    }
    const chatTemplate = await modelChatTemplate(path, llava, tokenizer);
    return new VisionLanguageModel(llava, tokenizer, preprocessor, chatTemplate, options.abandonAfterMs, options.imageCacheBytes);
  } catch (error) {
    llava.dispose();
    throw error;
  }
}

/**
 * The chat template `messages` are rendered with: the checkpoint's own (a folder's
 * chat_template.jinja, chat_template.json or tokenizer_config.json; a GGUF's
 * tokenizer.chat_template), else the known format of its family (chat_template.ts).
 */
async function modelChatTemplate(path: string, llava: LlavaModel, tokenizer: Tokenizer | null): Promise<ChatTemplate> {
  const family = chooseChatFamily(llava.config, (piece) => tokenizer?.idOf(piece) !== undefined);
  const specialTokens: Record<string, string> = {};
  if (tokenizer?.bosId !== undefined) specialTokens.bos_token = tokenizer.pieceOf(tokenizer.bosId);
  if (tokenizer?.eosId !== undefined) specialTokens.eos_token = tokenizer.pieceOf(tokenizer.eosId);
  const bundled = llava.bundled.chatTemplate;
  if (bundled) return new ChatTemplate(bundled.template, { source: bundled.source, family, specialTokens });
  const isFolder = await stat(path).then((s) => s.isDirectory(), () => false);
  return isFolder ? loadChatTemplate(path, { family, specialTokens }) : fallbackChatTemplate(family, specialTokens);
}