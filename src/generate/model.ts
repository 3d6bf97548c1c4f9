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
 */
import { randomInt } from "node:crypto";
import { access } from "node:fs/promises";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { CONFIG_FILE_NAME, loadPreprocessorConfig, parsePreprocessorConfig, type PreprocessorConfig } from "../image/config.js";
import { preprocessImage, type PixelValues } from "../image/preprocess.js";
import { sampleToken } from "../kernels/sample/index.js";
import { takeRows } from "../tensor/copy.js";
import { check } from "../tensor/errors.js";
import type { Gpu } from "../tensor/gpu.js";
import { Tensor } from "../tensor/tensor.js";
import { loadTokenizer, type Tokenizer } from "../tokenizer/index.js";
import { chatPrompt, IMAGE_TAG, type ImageInput } from "./chat_template.js";
import { loadLlava, type LlavaModel, type LoadModelOptions, type LoadReport } from "../models/llava.js";
import { DEFAULT_MAX_NEW_TOKENS, type GenerateChunk, type GenerateRequest, type GenerateResult } from "./request.js";
import { StopStringFilter } from "./stop.js";

export class VisionLanguageModel {
  /** Generations wait here for the one before them: they share the KV-cache. */
  private queue: Promise<void> = Promise.resolve();

  constructor(
    readonly llava: LlavaModel,
    readonly tokenizer: Tokenizer | null,
    readonly preprocessor: PreprocessorConfig | null,
  ) {}

  get gpu(): Gpu {
    return this.llava.gpu;
  }

  get loadReport(): LoadReport {
    return this.llava.loadReport;
  }

  /** Streams the reply chunk by chunk; the generator's return value is the whole result. */
  async *generate(request: GenerateRequest): AsyncGenerator<GenerateChunk, GenerateResult> {
    const release = await this.turn();
    try {
      return yield* this.run(request);
    } finally {
      release();
    }
  }

  /** Generates the whole reply (onChunk sees it as it streams). */
  async complete(request: GenerateRequest, onChunk?: (chunk: GenerateChunk) => void): Promise<GenerateResult> {
    const stream = this.generate(request);
    for (;;) {
      const next = await stream.next();
      if (next.done) return next.value;
      onChunk?.(next.value);
    }
  }

  dispose(): void {
    this.llava.dispose();
  }

  private async turn(): Promise<() => void> {
    let release!: () => void;
    const previous = this.queue;
    this.queue = new Promise((resolve) => (release = resolve));
    await previous;
    return release;
  }

  private async *run(request: GenerateRequest): AsyncGenerator<GenerateChunk, GenerateResult> {
    const { llava, gpu } = this;
    const started = performance.now();
    const sampling = samplingOptions(request);
    const { ids, images } = this.promptTokens(request);
    const promptLength = llava.mergedLength(ids);
    const context = llava.contextLength;
    if (promptLength >= context) {
      throw new RangeError(
        `the prompt takes ${promptLength} positions (${ids.length} tokens` +
          `${images.length ? `, ${images.length} image${images.length > 1 ? "s" : ""} of ${llava.vision!.featuresPerImage} positions each` : ""}), ` +
          `but the context holds ${context}: nothing is left to generate into`,
      );
    }
    const maxNewTokens = request.maxNewTokens ?? DEFAULT_MAX_NEW_TOKENS;
    check(Number.isInteger(maxNewTokens) && maxNewTokens >= 1, () => `maxNewTokens must be an integer >= 1, not ${maxNewTokens}`);
    const stopIds = new Set([...llava.textConfig.eosTokenIds, ...(this.tokenizer ? [this.tokenizer.eosId] : [])]);
    const stopStrings: string[] = [];
    for (const s of request.stop ?? []) {
      if (typeof s === "number") stopIds.add(s);
      else stopStrings.push(s);
    }
    const stops = new StopStringFilter(stopStrings);
    const decoder = this.tokenizer?.decoder();

    const result: GenerateResult = {
      text: "",
      tokens: [],
      finishReason: "length",
      usage: { promptTokens: promptLength, completionTokens: 0 },
      timings: { loadMs: this.loadReport.loadMs, visionMs: 0, prefillMs: 0, decodeMs: 0, decodeTokensPerSecond: 0 },
    };
    const owned: Tensor[] = [];
    try {
      // Pixel values (CPU), then the vision tower and projector (GPU).
      const pixels: Tensor[] = [];
      for (const image of images) pixels.push(await this.pixels(image, request.padToSquare ?? false, owned));
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

      llava.cache.length = 0;
      gpu.scope(() => {
        const hidden = llava.decoder.forward(llava.embedPrompt(ids, features), llava.cache);
        const logits = llava.decoder.logits(takeRows(hidden, hidden.dim(0) - 1, 1));
        sampleToken(logits, { ...sampling, step: 0, history: { ids: history, length: ids.length }, out: token });
      });
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
        if (result.tokens.length >= maxNewTokens || llava.cache.length >= context) break;
        if (request.signal?.aborted) {
          result.finishReason = "abort";
          break;
        }
        gpu.scope(() => {
          const hidden = llava.decoder.forward(llava.decoder.embed(token), llava.cache);
          const historyLength = ids.length + step + 1;
          sampleToken(llava.decoder.logits(hidden), { ...sampling, step: step + 1, history: { ids: history, length: historyLength }, out: token });
        });
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

  /** The prompt's token ids and its images, from whichever form the request used. */
  private promptTokens(request: GenerateRequest): { ids: number[]; images: ImageInput[] } {
    const forms = [request.messages, request.prompt, request.promptIds].filter((f) => f !== undefined).length;
    check(forms === 1, () => "give exactly one of messages, prompt and promptIds");
    if (request.promptIds) return { ids: [...request.promptIds], images: [...(request.images ?? [])] };
    const tokenizer = this.tokenizer;
    check(tokenizer !== null, () => `${this.llava.path} has no tokenizer files; pass promptIds instead of text`);
    let text: string;
    let images: ImageInput[];
    if (request.messages) {
      const messages = [...request.messages];
      if (request.images?.length) {
        const last = messages.map((m) => m.role).lastIndexOf("user");
        check(last >= 0, () => "images were given but no message has the user role to attach them to");
        messages[last] = { ...messages[last], images: [...(messages[last].images ?? []), ...request.images] };
      }
      ({ text, images } = chatPrompt(messages));
    } else {
      text = request.prompt!;
      images = [...(request.images ?? [])];
    }
    const vision = this.llava.vision;
    if (text.includes(IMAGE_TAG) || images.length > 0) {
      check(vision !== null, () => `${this.llava.path} is a text-only model: it cannot take images`);
      check(
        tokenizer.idOf(IMAGE_TAG) === vision.imageTokenId,
        () => `the tokenizer's ${IMAGE_TAG} token is ${tokenizer.idOf(IMAGE_TAG)}, but the model expects id ${vision.imageTokenId}`,
      );
    }
    return { ids: tokenizer.encode(text), images };
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

function samplingOptions(request: GenerateRequest) {
  const temperature = request.temperature ?? 0;
  return {
    temperature,
    topK: request.topK,
    topP: request.topP,
    repetitionPenalty: request.repetitionPenalty,
    seed: request.seed ?? (temperature > 0 ? randomInt(2 ** 32) : 0),
  };
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
export async function loadModel(path: string, options: LoadModelOptions = {}): Promise<VisionLanguageModel> {
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
    return new VisionLanguageModel(llava, tokenizer, preprocessor);
  } catch (error) {
    llava.dispose();
    throw error;
  }
}
