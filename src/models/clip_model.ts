/**
 * CLIP, the dual encoder (transformers' CLIPModel): an image tower and a text tower trained so
 * that an image and a text that describes it land close together in one space.
 *
 *   image → vision tower (clip.ts, every layer) → post_layernorm(class token) → visual_projection
 *   text  → text tower (clip_text.ts)            → pooled at the end token   → text_projection
 *   similarity = exp(logit_scale) · cos(image, text)
 *
 * Only the direction of a feature matters: both are divided by their length, and the learnt
 * temperature exp(logit_scale) (100 in OpenAI's CLIP) turns cosines into logits, so that a
 * softmax over texts (zero-shot classification) or over images (search) is sharp.
 */
import { performance } from "node:perf_hooks";
import { embedding } from "../kernels/embedding.js";
import { layernorm } from "../kernels/layernorm.js";
import { check } from "../tensor/errors.js";
import { Gpu, type GpuOptions } from "../tensor/gpu.js";
import type { DType } from "../tensor/dtype.js";
import type { Tensor } from "../tensor/tensor.js";
import { Checkpoint, checkModelFolder } from "../weights/checkpoint.js";
import { loadConfig, type ClipConfig } from "../weights/config.js";
import { resolveWeights } from "../weights/names.js";
import { ClipVisionTower } from "./clip.js";
import { loadNorm, type Norm } from "./clip_encoder.js";
import { ClipTextTower, type TokenBatch } from "./clip_text.js";
import type { Linear } from "./linear.js";
import type { Trace } from "./llama.js";
import { chooseDtype, loadWeights, type LoadProgress, type QuantizePlan } from "./load.js";
import type { WeightStore } from "./weights.js";

export interface LoadClipModelOptions extends GpuOptions {
  /** An existing device to load onto (default: one of its own, released on dispose). */
  gpu?: Gpu;
  /** Storage of the weights: default f16 for 16-bit checkpoints where the GPU has shader-f16, else f32. */
  dtype?: DType;
  /** Quantize the towers' matrices while loading (the vision part: QuantizePlan.vision). */
  quantize?: QuantizePlan;
  onProgress?: (progress: LoadProgress) => void;
}

export class ClipModel {
  readonly text: ClipTextTower;
  readonly vision: ClipVisionTower;
  /** The learnt temperature, as stored (its exp multiplies cosines). */
  readonly logitScale: number;
  private readonly postNorm: Norm;
  private readonly textProjection: Linear;
  private readonly visualProjection: Linear;
  /** Whether dispose() releases the device (loadClipModel made it). */
  ownsDevice = false;

  constructor(
    readonly gpu: Gpu,
    readonly config: ClipConfig,
    readonly path: string,
    readonly dtype: DType,
    private readonly store: WeightStore,
    logitScale: number,
    /** Bytes of weights on the GPU and the time loading took. */
    readonly loadReport: { weightBytes: number; loadMs: number; weightTypes: Record<string, number>; warnings: string[] },
  ) {
    check(Number.isFinite(logitScale), () => `${path}: logit_scale is ${logitScale}`);
    this.logitScale = logitScale;
    this.text = new ClipTextTower(gpu, config.text, store);
    this.vision = new ClipVisionTower(gpu, config.vision, store, config.vision.numHiddenLayers);
    this.postNorm = loadNorm(store, "vision.post_layernorm");
    this.textProjection = store.linear("text_projection");
    this.visualProjection = store.linear("visual_projection");
  }

  /** Texts (token ids, padded) → their features [B, projectionDim] (f32), not yet normalized. */
  textFeatures(batch: TokenBatch, trace?: Trace): Tensor {
    return this.gpu.scope(() => {
      const { hidden, pooled } = this.text.forward(batch, trace);
      trace?.("text_last_hidden_state", [], hidden);
      trace?.("text_pooled_output", [], pooled);
      return this.textProjection.forward(pooled, "f32");
    });
  }

  /** Pixel values [N, 3, S, S] (or one image [3, S, S]) → their features [N, projectionDim] (f32), not yet normalized. */
  imageFeatures(pixels: Tensor, trace?: Trace): Tensor {
    return this.gpu.scope(() => {
      const hidden = this.vision.forward(pixels, trace);
      const images = pixels.rank === 4 ? pixels.dim(0) : 1;
      // The class token of each image, the first of its rows.
      const rows = this.gpu.tensor(Int32Array.from({ length: images }, (_, i) => i * this.vision.tokens), [images], "i32");
      const { weight, bias } = this.postNorm;
      const pooled = layernorm(embedding(rows, hidden), weight, bias, this.config.vision.layerNormEps);
      trace?.("vision_pooled_output", [], pooled);
      return this.visualProjection.forward(pooled, "f32");
    });
  }

  dispose(): void {
    this.store.dispose();
    if (this.ownsDevice) this.gpu.release();
  }
}

/**
 * Rows of `features` ([rows, dim], row-major) divided by their L2 norms, in float64 then
 * rounded: what transformers' text_embeds and image_embeds are. A zero row stays zero.
 */
export function unitRows(features: ArrayLike<number>, dim: number): Float32Array {
  check(dim > 0 && features.length % dim === 0, () => `unitRows: ${features.length} values are not rows of ${dim}`);
  const out = new Float32Array(features.length);
  for (let row = 0; row < features.length; row += dim) {
    let sum = 0;
    for (let i = row; i < row + dim; i++) sum += features[i] * features[i];
    const inverse = sum > 0 ? 1 / Math.sqrt(sum) : 0;
    for (let i = row; i < row + dim; i++) out[i] = features[i] * inverse;
  }
  return out;
}

/** Loads a CLIPModel checkpoint folder (config.json with model_type "clip", safetensors) onto the GPU. */
export async function loadClipModel(folder: string, options: LoadClipModelOptions = {}): Promise<ClipModel> {
  const started = performance.now();
  await checkModelFolder(folder);
  const config = await loadConfig(folder);
  if (config.kind !== "clip") {
    throw new Error(`${folder}: config.json's model_type makes this a ${config.kind} model, not a CLIP dual encoder (model_type "clip", CLIPModel)`);
  }
  const checkpoint = await Checkpoint.open(folder);
  const ownsDevice = options.gpu === undefined;
  let gpu: Gpu | undefined;
  let store: WeightStore | undefined;
  try {
    const resolved = resolveWeights(config, checkpoint);
    gpu = options.gpu ?? (await Gpu.acquire(options));
    const dtype = chooseDtype(gpu, checkpoint, resolved, options.dtype);
    const loaded = await loadWeights(gpu, checkpoint, resolved, dtype, options.onProgress, undefined, options.quantize);
    store = loaded.store;
    const logitScale = (await store.tensor("logit_scale").read())[0];
    const report = { weightBytes: loaded.bytes, loadMs: performance.now() - started, weightTypes: loaded.types, warnings: resolved.warnings };
    const model = new ClipModel(gpu, config, folder, dtype, store, logitScale, report);
    model.ownsDevice = ownsDevice;
    return model;
  } catch (error) {
    store?.dispose();
    if (ownsDevice) gpu?.release();
    throw error;
  } finally {
    await checkpoint.close();
  }
}
