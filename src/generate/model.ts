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
 * and only that id (4 bytes) is read back, to stream its text and check for stops.
 *
 * Before any of that, the request is checked whole (validate.ts) and its token budget cut to
 * the context; then it waits its turn on the model (stream.ts: generations share the KV-cache,
 * and no caller can keep the turn forever).
 */
import { randomInt } from "node:crypto";
import { access } from "node:fs/promises";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { CONFIG_FILE_NAME, loadPreprocessorConfig, parsePreprocessorConfig, type PreprocessorConfig } from "../image/config.js";
import { preprocessImage, type PixelValues } from "../image/preprocess.js";
import { check } from "../tensor/errors.js";
import type { Gpu } from "../tensor/gpu.js";
import { Tensor } from "../tensor/tensor.js";
import { loadTokenizer, type Tokenizer } from "../tokenizer/index.js";
import { chatPrompt, IMAGE_TAG, type ImageInput } from "./chat_template.js";
import { describeValue, RequestError } from "./errors.js";
import { loadLlava, type LlavaModel, type LoadModelOptions, type LoadReport } from "../models/llava.js";
import type { GenerateChunk, GenerateRequest, GenerateResult } from "./request.js";
import { StopStringFilter } from "./stop.js";
import { checkAbandonAfterMs, DEFAULT_ABANDON_AFTER_MS, GenerationStream } from "./stream.js";
import { recordDecodeStep, recordPrefill, TokenSampler } from "./token_step.js";
import { TurnQueue } from "./turns.js";
import { checkPromptFits, checkPromptText, validateRequest, type ModelLimits, type ValidRequest } from "./validate.js";

export interface ModelOptions extends LoadModelOptions {
  /**
   * A generate() stream nobody reads is cancelled once another request has waited this long for
   * the model (milliseconds; default DEFAULT_ABANDON_AFTER_MS). See stream.ts.
   */
  abandonAfterMs?: number;
}

/** A checked request, its prompt tokenized and its token budget fitted to the context. */
interface Plan {
  request: ValidRequest;
  ids: readonly number[];
  images: ImageInput[];
  promptLength: number;
  maxNewTokens: number;
}

export class VisionLanguageModel {
  /** Generations take turns: they share the KV-cache. */
  private readonly turns = new TurnQueue();

  constructor(
    readonly llava: LlavaModel,
    readonly tokenizer: Tokenizer | null,
    readonly preprocessor: PreprocessorConfig | null,
    readonly abandonAfterMs = DEFAULT_ABANDON_AFTER_MS,
  ) {
    checkAbandonAfterMs(abandonAfterMs);
  }

  get gpu(): Gpu {
    return this.llava.gpu;
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

  dispose(): void {
    this.llava.dispose();
  }

  private stream(request: GenerateRequest): GenerationStream {
    return new GenerationStream(this.turns, this.abandonAfterMs, () => this.run(this.plan(request)));
  }

  private limits(): ModelLimits {
    const { llava } = this;
    const vision = llava.vision;
    return {
      vocabSize: llava.textConfig.vocabSize,
      contextLength: llava.contextLength,
      hasTokenizer: this.tokenizer !== null,
      vision: vision && { imageTokenId: vision.imageTokenId, imageSize: vision.tower.config.imageSize, featuresPerImage: vision.featuresPerImage },
      gpu: this.gpu,
    };
  }

  /** Everything about a request that can be checked before it waits its turn. */
  private plan(request: unknown): Plan {
    this.gpu.assertUsable(); // a lost device fails every request at once
    const limits = this.limits();
    const valid = validateRequest(request, limits);
    const { ids, images, field } = this.promptTokens(valid, limits);
    const promptLength = this.llava.mergedLength(ids);
    checkPromptFits(ids, images.length, promptLength, limits, field);
    // The cache holds the prompt and every generated token but the last, which is never fed back.
    const maxNewTokens = Math.min(valid.maxNewTokens, limits.contextLength - promptLength + 1);
    return { request: valid, ids, images, promptLength, maxNewTokens };
  }

  private async *run(plan: Plan): AsyncGenerator<GenerateChunk, GenerateResult> {
    const { llava, gpu } = this;
    const { request, ids, images, maxNewTokens } = plan;
    gpu.assertUsable(); // the device may have been lost while this request waited
    const started = performance.now();
    const { temperature } = request.sampling;
    const sampling = { ...request.sampling, seed: request.sampling.seed ?? (temperature > 0 ? randomInt(2 ** 32) : 0) };
    const stopIds = new Set([...llava.textConfig.eosTokenIds, ...(this.tokenizer ? [this.tokenizer.eosId] : []), ...request.stopIds]);
    const stops = new StopStringFilter(request.stopStrings);
    const decoder = this.tokenizer?.decoder();

    const result: GenerateResult = {
      text: "",
      tokens: [],
      finishReason: "length",
      usage: { promptTokens: plan.promptLength, completionTokens: 0 },
      timings: { loadMs: this.loadReport.loadMs, visionMs: 0, prefillMs: 0, decodeMs: 0, decodeTokensPerSecond: 0 },
    };
    if (request.signal?.aborted) return { ...result, finishReason: "abort" };
    const owned: Tensor[] = [];
    try {
      // Pixel values (CPU), then the vision tower and projector (GPU).
      const pixels: Tensor[] = [];
      for (const image of images) pixels.push(await this.pixels(image, request.padToSquare, owned));
      if (request.signal?.aborted) return { ...result, finishReason: "abort" };
      const features = gpu.scope(() => pixels.map((p) => llava.encodeImage(p)));
      owned.push(...features);
      if (images.length > 0) await gpu.sync();
      const prefillStart = performance.now();
      result.timings.visionMs = prefillStart - started;

      // The history the repetition penalty sees: the prompt's ids, then each sampled id.
      const capacity = ids.length + maxNewTokens + 1;
      const history = gpu.empty([capacity], "u32", { name: "token history" });
      owned.push(history);
      gpu.write(history, new Uint32Array(ids));
      const token = gpu.empty([1], "u32", { name: "next token" });
      owned.push(token);

      const sampler = new TokenSampler(token, history, ids.length, sampling);
      recordPrefill(llava, ids, features, sampler);
      for (const f of features) f.dispose();

      let decodeStart = 0;
      for (let step = 0; ; step++) {
        const id = (await token.read())[0];
        if (step === 0) {
          decodeStart = performance.now();
          result.timings.prefillMs = decodeStart - prefillStart;
        }
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
        recordDecodeStep(llava, sampler, step + 1);
      }
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
    } finally {
      for (const t of owned) t.dispose();
    }
  }

  /** The prompt's token ids and its images, from whichever form the request used (`field`). */
  private promptTokens(request: ValidRequest, limits: ModelLimits): { ids: readonly number[]; images: ImageInput[]; field: string } {
    if (request.promptIds) return { ids: request.promptIds, images: request.images, field: "promptIds" };
    const tokenizer = this.tokenizer!; // validateRequest refuses text for a model without one
    let text: string;
    let images: ImageInput[];
    let field: string;
    if (request.messages) {
      const messages = request.messages;
      if (request.images.length > 0) {
        const last = messages.map((m) => m.role).lastIndexOf("user");
        if (last < 0) throw new RequestError("images", "no message has the user role to attach them to");
        messages[last] = { ...messages[last], images: [...(messages[last].images ?? []), ...request.images] };
      }
      ({ text, images } = chatPrompt(messages));
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
    return { ids: tokenizer.encode(text), images, field };
  }

  /** An image input → pixel values [3, size, size] on the GPU (registered in `owned` when made here). */
  private async pixels(image: ImageInput, padToSquare: boolean, owned: Tensor[]): Promise<Tensor> {
    if (image instanceof Tensor) return image;
    let values: PixelValues;
    if (typeof image === "string" || image instanceof Uint8Array) {
      check(this.preprocessor !== null, () => `${this.llava.path} has no vision tower: it cannot take images`);
      values = await preprocessImage(image, this.preprocessor, { padToSquare });
    } else {
      values = image;
    }
    const t = this.gpu.tensor(values.data, values.shape, "f32", { name: "pixel values" });
    owned.push(t);
    return t;
  }
}

async function exists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  );
}

/**
 * Loads a Hugging Face LLaVA (or LLaMA) folder: weights on the GPU, plus its tokenizer and
 * image preprocessing when the folder has them.
 */
export async function loadModel(path: string, options: ModelOptions = {}): Promise<VisionLanguageModel> {
  if (options.abandonAfterMs !== undefined) checkAbandonAfterMs(options.abandonAfterMs); // before minutes of loading
  const llava = await loadLlava(path, options);
  try {
    const hasTokenizer = (await exists(join(path, "tokenizer.json"))) || (await exists(join(path, "tokenizer.model")));
    const tokenizer = hasTokenizer ? await loadTokenizer(path) : null;
    let preprocessor: PreprocessorConfig | null = null;
    if (llava.vision) {
      const size = llava.vision.tower.config.imageSize;
      // Without a preprocessor_config.json, CLIPImageProcessor's defaults, at the tower's image size.
      preprocessor = (await exists(join(path, CONFIG_FILE_NAME)))
        ? await loadPreprocessorConfig(path)
        : parsePreprocessorConfig(
            { size: { shortest_edge: size }, crop_size: { height: size, width: size } },
            `CLIPImageProcessor defaults at ${size} px (no ${CONFIG_FILE_NAME} in ${path})`,
          );
      const crop = preprocessor.cropSize;
      check(
        !preprocessor.doCenterCrop || (crop.height === size && crop.width === size),
        () => `${preprocessor!.source}: crops to ${crop.width}x${crop.height}, but the vision tower takes ${size}x${size} images`,
      );
    }
    return new VisionLanguageModel(llava, tokenizer, preprocessor, options.abandonAfterMs);
  } catch (error) {
    llava.dispose();
    throw error;
  }
}
