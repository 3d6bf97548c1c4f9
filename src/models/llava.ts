/**
 * LLaVA: the vision tower, the projector and the LLaMA decoder put together
 * (transformers' LlavaForConditionalGeneration), and loadLlava(), which builds it from a
 * Hugging Face folder (src/generate/model.ts's loadModel adds the tokenizer and image preprocessing).
 *
 * An image enters the prompt as one <image> token; the model replaces that token with the
 * image's features, one position per feature (576 for llava-1.5 at 336 px), so
 *
 *   embeddings = [embed(text before) | projector(vision(image)) | embed(text after) ...]
 *
 * The image rows are placed by the GPU's copy engine; no arithmetic happens on the CPU.
 * LLaVA-NeXT (anyres) cuts an image into tiles, encodes them together and packs their features
 * into one sequence whose length depends on the image's size (anyres.ts).
 */
import { performance } from "node:perf_hooks";
import { copyRows, takeRows } from "../tensor/copy.js";
import { bytesPerElement, type DType } from "../tensor/dtype.js";
import { check } from "../tensor/errors.js";
import { Gpu, type GpuOptions } from "../tensor/gpu.js";
import type { Tensor } from "../tensor/tensor.js";
import { Checkpoint, checkModelFolder } from "../weights/checkpoint.js";
import { parsePreprocessorConfig, type PreprocessorConfig } from "../image/config.js";
import { QUANTIZABLE_TYPES, type QuantizableType } from "../kernels/quant/quantize.js";
import { ggufTokenizer } from "../tokenizer/gguf_vocab.js";
import type { Tokenizer } from "../tokenizer/tokenizer.js";
import { GgufCheckpoint } from "../weights/gguf_checkpoint.js";
import { GgufFields } from "../weights/gguf_config.js";
import { resolveModelFiles } from "../weights/model_files.js";
import { hasDecoder, loadConfig, type DecoderModelConfig, type LlamaConfig, type ModelConfig } from "../weights/config.js";
import { resolveWeights, visionLayersUsed } from "../weights/names.js";
import type { AnyresConfig } from "../weights/config.js";
import { anyresLayout, packAnyresFeatures, type ImageSize } from "./anyres.js";
import { ClipVisionTower } from "./clip.js";
import { KVCache, LlamaDecoder, type Trace } from "./llama.js";
import { chooseDtype, loadWeights, type LoadProgress, type WeightFiles } from "./load.js";
import { Projector } from "./projector.js";
import type { WeightStore } from "./weights.js";

export interface LoadModelOptions extends GpuOptions {
  /** The mmproj GGUF (vision tower and projector) to load with a GGUF text model. */
  mmproj?: string;
  /**
   * Quantize the decoder's float matrices into this ggml type while loading (load.ts's
   * quantizedOnLoad; ggml's reference quantizers, bit-exact). Matrices a GGUF file already
   * holds quantized stay as they are.
   */
  quantize?: QuantizableType;
  /**
   * Quantize the vision tower's and projector's float matrices into this ggml type while
   * loading (as a quantized mmproj file holds them); they stay in floats without it.
   */
  quantizeVision?: QuantizableType;
  /** Storage dtype of the weights (and KV-cache). Default: f16 for 16-bit checkpoints on adapters with shader-f16, else f32. */
  dtype?: DType;
  /**
   * Positions the KV-cache holds (default: the model's max_position_embeddings, at most 4096
   * and what one storage binding holds); see chooseContextLength.
   */
  contextLength?: number;
  /**
   * Sequences decoded at once (default 1): concurrent generate() calls are decoded together,
   * each in its own KV-cache of contextLength positions, made at load.
   */
  maxBatch?: number;
  /** The most bytes the KV-caches may take together: fewer than maxBatch are made if they do not fit (loading fails if not one does). */
  kvCacheBytes?: number;
  /** Use this device instead of creating one. */
  gpu?: Gpu;
  /** Called after each tensor is uploaded. */
  onProgress?: (progress: LoadProgress) => void;
  /**
   * Store matrices larger than this many bytes as row parts, each its own buffer (default, and
   * at most: the adapter's maxStorageBufferBindingSize, above which a matrix cannot be bound).
   */
  partBytes?: number;
}

export interface LoadReport {
  loadMs: number;
  /** Bytes of weights on the GPU. */
  weightBytes: number;
  /** Bytes of the KV-caches, all together. */
  cacheBytes: number;
  /** KV-caches made: the sequences decoded at once. */
  caches: number;
  /** Most GPU memory held at once while loading. */
  peakBytes: number;
  dtype: DType;
  /** How many weight tensors are held in each type: f32 or f16 for floats, a ggml type (Q4_K, ...) for packed blocks. */
  weightTypes: Record<string, number>;
  /** Tensors too big for one storage binding, stored in row parts. */
  splitTensors: string[];
  /** Checkpoint tensors the model does not use, and why. */
  unusedTensors: { checkpointName: string; why: string }[];
  /** Where the checkpoint disagrees with its config in ways that loading survives (the CLI prints them). */
  warnings: string[];
}

/** The context length when none is asked for (at most max_position_embeddings). */
export const DEFAULT_MAX_CONTEXT = 4096;
/** The most positions a KV-cache is made for, whatever max_position_embeddings claims: 8 times LLaMA-3's 131072. */
export const MAX_CONTEXT = 1 << 20;

/** Refuses a context length that is not a whole number in [1, min(max_position_embeddings, MAX_CONTEXT)]. */
export function checkContextLength(text: LlamaConfig, contextLength: number): void {
  const most = Math.min(text.maxPositionEmbeddings, MAX_CONTEXT);
  if (!Number.isSafeInteger(contextLength) || contextLength < 1 || contextLength > most) {
    const limit = most === MAX_CONTEXT ? `the most this runtime allocates a KV-cache for` : `max_position_embeddings`;
    throw new RangeError(`contextLength ${contextLength} must be an integer in [1, ${most}] (${limit})`);
  }
}

/**
 * The positions the KV-cache is made for: `requested` once checked, else DEFAULT_MAX_CONTEXT
 * or less. Each layer's key (and value) cache, [H_kv, positions, D] in `dtype`, and the rotary
 * table, [positions, D / 2, 2] in f32, must each fit one storage binding of `bindingBytes`.
 */
export function chooseContextLength(text: LlamaConfig, dtype: DType, bindingBytes: number, requested?: number): number {
  const bytesPerPosition = Math.max(text.numKeyValueHeads * text.headDim * bytesPerElement(dtype), text.headDim * 4);
  const fits = Math.floor(bindingBytes / bytesPerPosition);
  if (requested === undefined) return Math.max(1, Math.min(text.maxPositionEmbeddings, DEFAULT_MAX_CONTEXT, fits));
  checkContextLength(text, requested);
  if (requested > fits) {
    throw new RangeError(
      `contextLength ${requested} needs ${requested * bytesPerPosition} bytes for each layer's key cache (or the rotary table), ` +
        `more than one storage binding holds on this adapter (${bindingBytes}): at most ${fits} positions fit`,
    );
  }
  return requested;
}

/** Bytes of one sequence's KV-cache: keys and values of every layer, [H_kv, positions, D] each. */
export function kvCacheBytes(text: LlamaConfig, contextLength: number, dtype: DType): number {
  return 2 * text.numHiddenLayers * text.numKeyValueHeads * contextLength * text.headDim * bytesPerElement(dtype);
}

/** The vision half of a LLaVA model. */
export interface VisionPart {
  tower: ClipVisionTower;
  projector: Projector;
  imageTokenId: number;
  /** `default` drops the class token's features, `full` keeps them. */
  keepClassToken: boolean;
  /** Positions one image takes in the prompt; null when it depends on the image's size (anyres: featureCount). */
  featuresPerImage: number | null;
  /** LLaVA-NeXT's tiling, and its learned end-of-row vector [text hidden] (null for llava-1.5). */
  anyres: { config: AnyresConfig; newline: Tensor } | null;
}

/** Options of encodeImage. */
export interface EncodeImageOptions {
  /** Records the intermediates (verification). */
  trace?: Trace;
  /** The trace index of the image's first tile (its index among all tiles encoded), and of the image. */
  firstTile?: number;
  image?: number;
  /** A tower over fewer of the same layers (the benchmarks time them). */
  tower?: ClipVisionTower;
  /** The image's original size: required with anyres, where the features follow from it. */
  imageSize?: ImageSize;
}

/** The vision tower and projector of a LLaVA config (null for a text-only model), on weights already in `store`. */
export function visionPart(gpu: Gpu, config: ModelConfig, store: WeightStore, projector: "mlp" | "linear"): VisionPart | null {
  if (config.kind !== "llava") return null;
  const keepClassToken = config.visionFeatureSelectStrategy === "full";
  return {
    tower: new ClipVisionTower(gpu, config.vision, store, visionLayersUsed(config)),
    projector: new Projector(store, projector, config.projectorHiddenAct),
    imageTokenId: config.imageTokenIndex,
    keepClassToken,
    featuresPerImage: config.anyres ? null : config.vision.numPatches + (keepClassToken ? 1 : 0),
    anyres: config.anyres && { config: config.anyres, newline: store.tensor("image_newline") },
  };
}

/** The most sequences decoded at once. */
export const MAX_BATCH = 256;

/** Refuses a maxBatch or kvCacheBytes that is not a number of the right kind (before anything is loaded). */
export function checkBatchOptions(options: Pick<LoadModelOptions, "maxBatch" | "kvCacheBytes">): void {
  const { maxBatch, kvCacheBytes } = options;
  if (maxBatch !== undefined && !(Number.isInteger(maxBatch) && maxBatch >= 1 && maxBatch <= MAX_BATCH)) {
    throw new RangeError(`maxBatch ${maxBatch} must be an integer in [1, ${MAX_BATCH}]`);
  }
  if (kvCacheBytes !== undefined && !(Number.isSafeInteger(kvCacheBytes) && kvCacheBytes > 0)) {
    throw new RangeError(`kvCacheBytes ${kvCacheBytes} must be a whole number of bytes > 0`);
  }
}

/** How many KV-caches of `bytesEach` to make: maxBatch, or as many as kvCacheBytes holds. */
export function chooseCacheCount(bytesEach: number, contextLength: number, options: Pick<LoadModelOptions, "maxBatch" | "kvCacheBytes">): number {
  const wanted = options.maxBatch ?? 1;
  if (options.kvCacheBytes === undefined) return wanted;
  const fits = Math.floor(options.kvCacheBytes / bytesEach);
  if (fits < 1) {
    throw new RangeError(
      `kvCacheBytes ${options.kvCacheBytes} cannot hold one sequence's KV-cache: ${bytesEach} bytes at contextLength ${contextLength} (lower contextLength, or raise kvCacheBytes)`,
    );
  }
  return Math.min(wanted, fits);
}

export class LlavaModel {
  /** One KV-cache per sequence decoded at once. */
  readonly caches: KVCache[];

  constructor(
    readonly gpu: Gpu,
    readonly config: DecoderModelConfig,
    readonly path: string,
    readonly dtype: DType,
    readonly decoder: LlamaDecoder,
    readonly vision: VisionPart | null,
    private readonly weights: WeightStore,
    readonly loadReport: LoadReport,
    cacheCount = 1,
  ) {
    this.caches = Array.from({ length: cacheCount }, () => decoder.createCache(dtype));
  }

  /** The first KV-cache: the one a single generation (or a benchmark, or verification) uses. */
  get cache(): KVCache {
    return this.caches[0];
  }

  get textConfig(): LlamaConfig {
    return this.decoder.config;
  }

  get contextLength(): number {
    return this.caches[0].capacity;
  }

  /**
   * One image's features in the decoder's space [features, hidden]: from its pixel values
   * [3, size, size], or with anyres from its tiles [tiles, 3, size, size] (the base tile first,
   * all encoded in one pass) and its original size.
   */
  encodeImage(pixels: Tensor, options: EncodeImageOptions = {}): Tensor {
    const vision = this.vision;
    check(vision !== null, () => `${this.path} has no vision tower: it takes text only`);
    const { trace, firstTile = 0, image = 0 } = options;
    const tower = options.tower ?? vision.tower;
    if (!vision.anyres) {
      const hidden = tower.forward(pixels, trace, firstTile);
      const selected = vision.keepClassToken ? hidden : takeRows(hidden, 1, hidden.dim(0) - 1);
      if (selected !== hidden) hidden.dispose();
      trace?.("vision_selected_features", [firstTile], selected);
      const features = vision.projector.forward(selected);
      selected.dispose();
      trace?.("projector_output", [firstTile], features);
      return features;
    }
    const size = options.imageSize;
    check(size !== undefined, () => `${this.path} tiles its images (LLaVA-NeXT): encodeImage needs the image's original size`);
    const layout = anyresLayout(size, vision.anyres.config, tower.config);
    const side = tower.config.imageSize;
    check(
      pixels.rank === 4 && pixels.dim(0) === layout.tiles,
      () => `a ${size.width}x${size.height} image is ${layout.tiles} tiles of [3, ${side}, ${side}] (the base tile, then a ${layout.grid.rows}x${layout.grid.cols} grid), not ${pixels.describe()}`,
    );
    return this.gpu.scope(() => {
      // Each tile's patch features, its class token dropped (anyres takes the default strategy
      // only), the tiles through the tower as many at a time as its activations' bindings allow.
      const tokens = tower.tokens;
      const patches = tokens - 1;
      const { hiddenSize, intermediateSize } = tower.config;
      const perPass = Math.max(1, Math.floor(this.gpu.limits.maxStorageBufferBindingSize / (tokens * Math.max(intermediateSize, 3 * hiddenSize) * 4)));
      const selected = this.gpu.empty([layout.tiles * patches, hiddenSize], "f32", { name: "tile features" });
      for (let first = 0; first < layout.tiles; first += perPass) {
        const count = Math.min(perPass, layout.tiles - first);
        this.gpu.scope(() => {
          const group = count === layout.tiles ? pixels : takeRows(pixels, first, count);
          const hidden = tower.forward(group, trace, firstTile + first);
          for (let i = 0; i < count; i++) copyRows(hidden, i * tokens + 1, selected, (first + i) * patches, patches);
        });
      }
      const features = vision.projector.forward(selected);
      for (let i = 0; trace && i < layout.tiles; i++) {
        this.gpu.scope(() => trace("vision_selected_features", [firstTile + i], takeRows(selected, i * patches, patches)));
        this.gpu.scope(() => trace("projector_output", [firstTile + i], takeRows(features, i * patches, patches)));
      }
      const packed = packAnyresFeatures(features, vision.anyres!.newline, layout);
      trace?.("packed_image_features", [image], packed);
      return packed;
    });
  }

  /** Positions an image takes in the prompt (with anyres, for an image of `size`). */
  featureCount(size?: ImageSize): number {
    const vision = this.vision;
    check(vision !== null, () => `${this.path} has no vision tower: it takes text only`);
    if (!vision.anyres) return vision.featuresPerImage!;
    check(size !== undefined, () => `${this.path} tiles its images (LLaVA-NeXT): how many positions an image takes depends on its size`);
    return anyresLayout(size, vision.anyres.config, vision.tower.config).features;
  }

  /** Prompt length once each image token becomes its image's features (`featureCounts[i]` positions for image i). */
  mergedLength(ids: readonly number[], featureCounts?: readonly number[]): number {
    if (!this.vision) return ids.length;
    const images = ids.filter((id) => id === this.vision!.imageTokenId).length;
    const counts = this.imageCounts(images, featureCounts);
    return ids.length - images + counts.reduce((a, b) => a + b, 0);
  }

  /** Each image's positions: as given, or the one count of llava-1.5. */
  private imageCounts(images: number, featureCounts?: readonly number[]): readonly number[] {
    if (featureCounts) {
      check(featureCounts.length === images, () => `${images} image${images === 1 ? "" : "s"} in the prompt, but ${featureCounts.length} feature counts`);
      return featureCounts;
    }
    const fixed = this.vision?.featuresPerImage ?? null;
    check(fixed !== null || images === 0, () => `${this.path} tiles its images (LLaVA-NeXT): give each image's feature count`);
    return Array.from({ length: images }, () => fixed!);
  }

  /**
   * The prompt's embeddings [merged length - from, hidden] from position `from` on: token
   * embeddings, with each image token replaced by the rows of the matching entry of
   * `imageFeatures` (in order; an image whose rows all come before `from` may be null, and
   * then `featureCounts` must say how many positions each image takes).
   */
  embedPrompt(ids: readonly number[], imageFeatures: readonly (Tensor | null)[], from = 0, featureCounts?: readonly number[]): Tensor {
    const imageToken = this.vision?.imageTokenId;
    const slots = imageToken === undefined ? 0 : ids.filter((id) => id === imageToken).length;
    check(
      slots === imageFeatures.length,
      () => `the prompt has ${slots} image token${slots === 1 ? "" : "s"} but ${imageFeatures.length} image${imageFeatures.length === 1 ? " was" : "s were"} given`,
    );
    const vocab = this.textConfig.vocabSize;
    const expanded: number[] = [];
    const placements: { row: number; features: Tensor; first: number }[] = [];
    let position = 0;
    const counts = featureCounts ?? (imageFeatures.every((f) => f !== null) ? imageFeatures.map((f) => f!.dim(0)) : undefined);
    const expected = this.imageCounts(slots, counts);
    imageFeatures.forEach((f, i) => check(f === null || f.dim(0) === expected[i], () => `image ${i}: features ${f!.describe()} do not have ${expected[i]} rows`));
    let image = 0;
    for (const id of ids) {
      if (id === imageToken) {
        const rows = expected[image];
        const features = imageFeatures[image++];
        if (position + rows > from) {
          check(features !== null, () => `image ${image - 1} is needed from position ${from} on, but no features were given`);
          const first = Math.max(0, from - position);
          placements.push({ row: expanded.length, features, first });
          for (let i = first; i < rows; i++) expanded.push(0); // overwritten below
        }
        position += rows;
      } else {
        check(Number.isInteger(id) && id >= 0 && id < vocab, () => `token id ${id} is outside the vocabulary of ${vocab}`);
        if (position >= from) expanded.push(id);
        position++;
      }
    }
    check(from < position, () => `embedPrompt: position ${from} is not before the prompt's end (${position})`);
    return this.gpu.scope(() => {
      const embeddings = this.decoder.embed(this.gpu.tensor(expanded, [expanded.length], "i32"));
      for (const { row, features, first } of placements) copyRows(features, first, embeddings, row, features.dim(0) - first);
      return embeddings;
    });
  }

  /** Whether dispose() also destroys the device (true when loadModel created it). */
  ownsDevice = false;

  /** The tokenizer and image preprocessing the checkpoint's own files hold (a GGUF pair's). */
  bundled: BundledParts = {};

  /** Frees every GPU buffer of the model, and the device if loadModel created it. */
  dispose(): void {
    for (const cache of this.caches) cache.dispose();
    this.decoder.dispose();
    this.weights.dispose();
    if (this.ownsDevice) this.gpu.release();
  }
}

/** What a checkpoint holds besides weights, where its format keeps it in the same files (GGUF). */
export interface BundledParts {
  tokenizer?: Tokenizer;
  preprocessor?: PreprocessorConfig;
  /** The chat template the file carries (a GGUF's tokenizer.chat_template), with where it came from. */
  chatTemplate?: { template: string; source: string };
}

/** A checkpoint opened for loading, with its config: a Hugging Face folder or a GGUF pair. */
interface OpenedModel {
  config: ModelConfig;
  checkpoint: WeightFiles & { close(): Promise<void> };
  /** What the format itself tells the user on loading (the GGUF pair's notes). */
  notes: string[];
  bundled: BundledParts;
}

/**
 * The GGUF pair's tokenizer (tokenizer.ggml.*, with LLaVA's `<image>` added past the
 * vocabulary when it has none: see weights/gguf_config.ts), chat template, and image
 * preprocessing (the mmproj's image size, mean and std, with CLIPImageProcessor's resize and crop).
 */
function ggufBundled(checkpoint: GgufCheckpoint): BundledParts {
  const { config, text, mmproj } = checkpoint;
  const bundled: BundledParts = {};
  if (text.metadata.has("tokenizer.ggml.tokens")) {
    const imageToken = config.kind === "llava" && config.imageTokenIndex === config.text.vocabSize;
    bundled.tokenizer = ggufTokenizer(text.metadata, text.path, { extraControlTokens: imageToken ? ["<image>"] : [] });
  }
  const template = new GgufFields(text).string("tokenizer.chat_template");
  if (template !== undefined) bundled.chatTemplate = { template, source: `${text.path} (tokenizer.chat_template)` };
  if (config.kind === "llava" && mmproj) {
    const fields = new GgufFields(mmproj);
    const size = config.vision.imageSize;
    const stats = (key: string) => {
      const values = fields.numbers(key);
      if (values !== undefined && values.length !== 3) fields.fail(key, `must hold 3 values (R, G, B), not ${values.length}`);
      return values;
    };
    bundled.preprocessor = parsePreprocessorConfig(
      { size: { shortest_edge: size }, crop_size: { height: size, width: size }, image_mean: stats("clip.vision.image_mean"), image_std: stats("clip.vision.image_std") },
      `${mmproj.path} (clip.vision.image_size, image_mean, image_std; CLIPImageProcessor's resize and crop)`,
    );
  }
  return bundled;
}

/** Opens what `path` names (see weights/model_files.ts) and reads its config, before any device exists. */
async function openModel(path: string, mmproj: string | undefined): Promise<OpenedModel> {
  const files = await resolveModelFiles(path, mmproj);
  if (files.format === "gguf") {
    const checkpoint = await GgufCheckpoint.open(files.text, files.mmproj);
    try {
      return { config: checkpoint.config, checkpoint, notes: checkpoint.notes, bundled: ggufBundled(checkpoint) };
    } catch (error) {
      await checkpoint.close();
      throw error;
    }
  }
  await checkModelFolder(files.folder);
  const config = await loadConfig(files.folder);
  return { config, checkpoint: await Checkpoint.open(files.folder), notes: [], bundled: {} };
}

/**
 * Loads a LLaVA (LlavaForConditionalGeneration) or LLaMA (LlamaForCausalLM) model onto the
 * GPU: a Hugging Face folder, or llama.cpp's GGUF text model with its mmproj file (options.mmproj,
 * or found beside it), or an Ollama model (weights/model_files.ts).
 */
export async function loadLlava(path: string, options: LoadModelOptions = {}): Promise<LlavaModel> {
  const started = performance.now();
  const { config, checkpoint, notes, bundled } = await openModel(path, options.mmproj);
  const ownsDevice = options.gpu === undefined;
  let gpu: Gpu | undefined;
  let store: WeightStore | undefined;
  try {
    if (!hasDecoder(config)) {
      const what = config.kind === "clip" ? "a CLIPModel checkpoint (load it with loadClip)" : "a CLIPVisionModel checkpoint";
      throw new Error(`${path}: ${what} has no language model to generate with`);
    }
    const text = config.text;
    // Refused before a device is made; whether it fits a storage binding is known once the dtype is.
    if (options.contextLength !== undefined) checkContextLength(text, options.contextLength);
    checkBatchOptions(options);
    for (const key of ["quantize", "quantizeVision"] as const) {
      const type = options[key];
      if (type !== undefined && !QUANTIZABLE_TYPES.includes(type)) {
        throw new RangeError(`${key} must be one of ${QUANTIZABLE_TYPES.join(", ")}, not ${JSON.stringify(type)}`);
      }
    }
    const resolved = resolveWeights(config, checkpoint);
    gpu = options.gpu ?? (await Gpu.acquire(options));
    const dtype = chooseDtype(gpu, checkpoint, resolved, options.dtype);
    const contextLength = chooseContextLength(text, dtype, gpu.limits.maxStorageBufferBindingSize, options.contextLength);
    gpu.pool.resetPeak();
    const loaded = await loadWeights(gpu, checkpoint, resolved, dtype, options.onProgress, options.partBytes, {
      text: options.quantize,
      vision: options.quantizeVision,
    });
    store = loaded.store;
    const decoder = new LlamaDecoder(gpu, text, store, contextLength);
    const vision = visionPart(gpu, config, store, resolved.projector ?? "mlp");
    const report: LoadReport = {
      loadMs: 0,
      weightBytes: loaded.bytes,
      cacheBytes: 0,
      caches: 0,
      peakBytes: 0,
      dtype,
      weightTypes: loaded.types,
      splitTensors: loaded.splitTensors,
      unusedTensors: resolved.unused,
      warnings: [...notes, ...resolved.warnings],
    };
    const cacheCount = chooseCacheCount(kvCacheBytes(text, contextLength, dtype), contextLength, options);
    const model = new LlavaModel(gpu, config, path, dtype, decoder, vision, store, report, cacheCount);
    model.ownsDevice = ownsDevice;
    model.bundled = bundled;
    await gpu.sync();
    report.caches = cacheCount;
    report.cacheBytes = model.caches.reduce((sum, c) => sum + c.bytes, 0);
    report.peakBytes = gpu.memory().peakBytes;
    report.loadMs = performance.now() - started;
    return model;
  } catch (error) {
    store?.dispose();
    if (ownsDevice) gpu?.release();
    throw error;
  } finally {
    await checkpoint.close();
  }
}
