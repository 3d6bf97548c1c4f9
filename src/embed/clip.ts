/**
 * CLIP as people use it on its own: text and image embeddings (unit vectors in one space) and
 * zero-shot classification, over a CLIPModel folder (config.json, safetensors, vocab.json +
 * merges.txt, preprocessor_config.json).
 *
 *   const clip = await loadClip("openai-clip-vit-base-patch32");
 *   const [cat] = await clip.embedTexts(["a photo of a cat"]);
 *   const scores = await clip.classify("photo.jpg", ["a cat", "a dog"]);
 *
 * Texts and images go through in batches (every linear layer one product over the batch),
 * sized to fit the device's storage bindings; the next batch of images is decoded and resampled
 * while the GPU runs the current one.
 */
import { join } from "node:path";
import { CONFIG_FILE_NAME, loadPreprocessorConfig, parsePreprocessorConfig, type PreprocessorConfig } from "../image/config.js";
import { preprocessImage, stackPixelValues, type PixelValues } from "../image/preprocess.js";
import { pathExists } from "../files/read.js";
import { check } from "../tensor/errors.js";
import { loadClipModel, unitRows, type ClipModel, type LoadClipModelOptions } from "../models/clip_model.js";
import type { ClipClean } from "../tokenizer/clip_clean.js";
import type { ClipTokenizer } from "../tokenizer/clip_bpe.js";
import { loadClipTokenizer } from "../tokenizer/clip_load.js";

/** An image: a file path, or the file's bytes. */
export type ClipImage = string | Uint8Array;

export interface LoadClipOptions extends LoadClipModelOptions {
  /** How texts are cleaned before tokenizing (clip_clean.ts; default ftfy, as OpenAI's CLIP). */
  clean?: ClipClean;
}

export interface EmbedOptions {
  /** Called after each batch with the count done so far. */
  onProgress?: (done: number, total: number) => void;
}

export interface LabelScore {
  label: string;
  /** Softmax over the labels of exp(logit_scale) · cosine, as transformers' pipeline reports it. */
  score: number;
  /** exp(logit_scale) · cosine. */
  logit: number;
}

/** transformers' zero-shot-image-classification pipeline's default hypothesis. */
export const DEFAULT_LABEL_TEMPLATE = "This is a photo of {}.";

/** Texts per pass: CLIP's texts are short (77 tokens at most), so many fit. */
const TEXT_BATCH = 64;
/** Images per pass at most (fewer where a pass's activations would not fit a storage binding). */
const IMAGE_BATCH = 32;

export class Clip {
  constructor(
    readonly model: ClipModel,
    readonly tokenizer: ClipTokenizer,
    readonly preprocessor: PreprocessorConfig,
  ) {}

  /** Size of the embeddings. */
  get dimensions(): number {
    return this.model.config.projectionDim;
  }

  /** exp(logit_scale): what turns a cosine into a logit. */
  get temperature(): number {
    return Math.exp(this.model.logitScale);
  }

  /** Unit vectors of `texts`, in order (each truncated to the model's context, as transformers does). */
  async embedTexts(texts: readonly string[], options: EmbedOptions = {}): Promise<Float32Array[]> {
    check(Array.isArray(texts) && texts.every((t) => typeof t === "string"), () => "embedTexts: expected an array of strings");
    const out: Float32Array[] = [];
    const maxLength = Math.min(this.tokenizer.contextLength, this.model.config.text.maxPositionEmbeddings);
    for (let at = 0; at < texts.length; at += TEXT_BATCH) {
      const batch = this.tokenizer.encodeBatch(texts.slice(at, at + TEXT_BATCH), { maxLength });
      const features = this.model.textFeatures(batch);
      out.push(...this.split(await features.read()));
      features.dispose();
      options.onProgress?.(out.length, texts.length);
    }
    return out;
  }

  /** Unit vectors of `images`, in order. A file that cannot be read is an error naming it. */
  async embedImages(images: readonly ClipImage[], options: EmbedOptions = {}): Promise<Float32Array[]> {
    const out: Float32Array[] = [];
    const per = this.imagesPerPass;
    const prepare = (at: number) => Promise.all(images.slice(at, at + per).map((image) => this.pixels(image)));
    let next = images.length > 0 ? prepare(0) : null;
    for (let at = 0; next; at += per) {
      const pixels = await next;
      next = at + per < images.length ? prepare(at + per) : null;
      out.push(...(await this.embedPixels(pixels)));
      options.onProgress?.(out.length, images.length);
    }
    return out;
  }

  /** Unit vectors of images already preprocessed ([3, S, S] pixel values each). */
  async embedPixels(pixels: readonly PixelValues[]): Promise<Float32Array[]> {
    if (pixels.length === 0) return [];
    const { data, shape } = stackPixelValues(pixels);
    const gpu = this.model.gpu;
    const features = gpu.scope(() => gpu.keep(this.model.imageFeatures(gpu.tensor(data, shape))));
    const values = await features.read();
    features.dispose();
    return this.split(values);
  }

  /** Decodes and preprocesses one image as the model's preprocessor_config.json says. */
  pixels(image: ClipImage): Promise<PixelValues> {
    return preprocessImage(image, this.preprocessor);
  }

  /**
   * Zero-shot classification: each label put into `template` ("{}" marks where), the image
   * compared with every text, scores by softmax, best first.
   */
  async classify(image: ClipImage, labels: readonly string[], template = DEFAULT_LABEL_TEMPLATE): Promise<LabelScore[]> {
    check(labels.length > 0, () => "classify: give at least one label");
    check(template.includes("{}"), () => `classify: the template ${JSON.stringify(template)} has no {} for the label`);
    const [imageEmbedding] = await this.embedImages([image]);
    return this.scoreLabels(imageEmbedding, labels, await this.embedTexts(labels.map((l) => template.replaceAll("{}", l))));
  }

  /** Softmax over exp(logit_scale) · cosine between one image embedding and each label's text embedding, best first. */
  scoreLabels(imageEmbedding: Float32Array, labels: readonly string[], textEmbeddings: readonly Float32Array[]): LabelScore[] {
    const logits = textEmbeddings.map((t) => this.temperature * dot(imageEmbedding, t));
    const top = Math.max(...logits);
    const weights = logits.map((l) => Math.exp(l - top));
    const sum = weights.reduce((a, b) => a + b, 0);
    return labels.map((label, i) => ({ label, score: weights[i] / sum, logit: logits[i] })).sort((a, b) => b.score - a.score);
  }

  /** Images one pass takes: IMAGE_BATCH, or fewer where the widest activation (the MLP's, f32) would outgrow a binding. */
  get imagesPerPass(): number {
    const v = this.model.config.vision;
    const widest = (v.numPatches + 1) * Math.max(v.intermediateSize, 3 * v.hiddenSize) * 4;
    return Math.max(1, Math.min(IMAGE_BATCH, Math.floor(this.model.gpu.limits.maxStorageBufferBindingSize / widest)));
  }

  dispose(): void {
    this.model.dispose();
  }

  private split(features: ArrayLike<number>): Float32Array[] {
    const dim = this.dimensions;
    const unit = unitRows(features, dim);
    return Array.from({ length: unit.length / dim }, (_, i) => unit.slice(i * dim, (i + 1) * dim));
  }
}

export function dot(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let sum = 0;
  for (let i = 0; i < a.length; i++) sum += a[i] * b[i];
  return sum;
}

/**
 * Loads a CLIPModel folder: weights, tokenizer (vocab.json + merges.txt) and image preprocessing
 * (preprocessor_config.json; without one, CLIPImageProcessor's defaults at the tower's size).
 */
export async function loadClip(folder: string, options: LoadClipOptions = {}): Promise<Clip> {
  const tokenizer = await loadClipTokenizer(folder, { clean: options.clean });
  const model = await loadClipModel(folder, options);
  try {
    check(
      tokenizer.vocabSize <= model.config.text.vocabSize,
      () => `${folder}: the tokenizer has ${tokenizer.vocabSize} ids, but the text tower's vocab_size is ${model.config.text.vocabSize}`,
    );
    const size = model.config.vision.imageSize;
    const preprocessor = (await pathExists(join(folder, CONFIG_FILE_NAME)))
      ? await loadPreprocessorConfig(folder)
      : parsePreprocessorConfig({ size: { shortest_edge: size }, crop_size: { height: size, width: size } }, `CLIPImageProcessor defaults at ${size} px (no ${CONFIG_FILE_NAME} in ${folder})`);
    const crop = preprocessor.cropSize;
    check(
      preprocessor.doCenterCrop && crop.height === size && crop.width === size,
      () => `${preprocessor.source}: images must come out ${size}x${size} for this vision tower (center crop to that size)`,
    );
    return new Clip(model, tokenizer, preprocessor);
  } catch (error) {
    model.dispose();
    throw error;
  }
}
