/**
 * A LLaVA (or LLaMA) model of any shape with random weights, made directly on the GPU: what the
 * end-to-end benchmark runs at the real sizes of llava-1.5-7b or TinyLLaVA without downloading
 * them. Nothing is read from disk or passes through host memory: each weight is allocated as the
 * loader would store it (row parts within the storage binding limit, partRows) and filled by
 * the randomFill kernel, so a 13 GB model takes seconds.
 *
 * With `quantize`, the tensors the loader would quantize (load.ts's quantizedOnLoad: the
 * decoder's matrices, embedding table and LM head included) are held as ggml's packed blocks
 * of that type instead, as a quantized checkpoint would be, their bytes random and their
 * scales fixed (kernels/quant/random_blocks.ts); with `quantizeVision` the vision tower's and
 * projector's matrices too (a quantized mmproj). Every vector stays float in `dtype`.
 *
 * The values follow transformers' initialisation in scale (std 0.02; norm weights near 1), so
 * activations stay finite through the layers; what the model says is meaningless.
 */
import { performance } from "node:perf_hooks";
import type { QuantizedType } from "../kernels/quant/blocks.js";
import { quantizedRowBytes } from "../kernels/quant/matvec_common.js";
import { randomBlocks } from "../kernels/quant/random_blocks.js";
import { randomFill } from "../kernels/random_fill.js";
import { bytesPerElement, type DType } from "../tensor/dtype.js";
import { check } from "../tensor/errors.js";
import type { Gpu } from "../tensor/gpu.js";
import { hasDecoder, type ModelConfig } from "../weights/config.js";
import { expectedTensors } from "../weights/names.js";
import { LlamaDecoder } from "../models/llama.js";
import { chooseContextLength, LlavaModel, visionPart } from "../models/llava.js";
import { isQuantized, type Weight } from "../models/linear.js";
import { partRows, quantizedOnLoad, type QuantizePlan } from "../models/load.js";
import { WeightStore } from "../models/weights.js";

export interface RandomModelOptions {
  /** Storage dtype of the float weights and the KV-cache. */
  dtype: DType;
  /** Hold the decoder's matrices the loader would quantize (quantizedOnLoad) as random blocks of this ggml type. */
  quantize?: QuantizedType;
  /** The same for the vision tower's and projector's matrices. */
  quantizeVision?: QuantizedType;
  /** Positions the KV-cache and rotary table cover. */
  contextLength: number;
  /** Selects the random values (default 0). */
  seed?: number;
  /** Standard deviation of matrix entries (default 0.02, as transformers initialises). */
  std?: number;
  /** Shown as the model's path in messages (default "random weights"). */
  name?: string;
  /** KV-caches to make: the sequences decoded at once (default 1). */
  maxBatch?: number;
}

/** The randomFill seed of a tensor: FNV-1a of its name, mixed with the model's seed, so each tensor has its own stream. */
export function tensorSeed(name: string, seed = 0): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 0x01000193) >>> 0;
  return (h ^ seed) >>> 0;
}

/** How one tensor of the model is held: its type, and its row ranges with the bytes each part's buffer takes. */
export interface TensorStorage {
  /** The ggml type of its packed blocks, or null for a float tensor in the model's dtype. */
  quantized: QuantizedType | null;
  parts: { rows: [number, number]; bytes: number }[];
}

/**
 * How a tensor of `shape` is held in a random model of `dtype` (quantizing as `plan` says):
 * in row parts within `bindingLimit` bytes as the loader splits it (partRows), a part of
 * packed blocks padded to a whole number of u32 words.
 */
export function tensorStorage(name: string, shape: readonly number[], dtype: DType, plan: QuantizePlan<QuantizedType> = {}, bindingLimit = Infinity): TensorStorage {
  const quantized = quantizedOnLoad(name, shape, plan) ?? null;
  const rows = shape[0] ?? 1;
  const rowBytes = quantized ? quantizedRowBytes(quantized, shape[1]) : shape.slice(1).reduce((n, d) => n * d, 1) * bytesPerElement(dtype);
  const ranges = shape.length >= 2 ? partRows(rows, rowBytes, bindingLimit, name) : [[0, rows] as [number, number]];
  return {
    quantized,
    parts: ranges.map((range) => {
      const bytes = (range[1] - range[0]) * rowBytes;
      return { rows: range, bytes: quantized ? Math.ceil(bytes / 4) * 4 : bytes };
    }),
  };
}

/**
 * Bytes the weights of `config` take in `dtype`, with the matrices quantizedOnLoad picks under
 * `plan` as packed blocks (the tensors `include` keeps; default all).
 */
export function weightBytes(
  config: ModelConfig,
  dtype: DType,
  plan: QuantizePlan<QuantizedType> = {},
  bindingLimit = Infinity,
  include: (name: string) => boolean = () => true,
): number {
  return expectedTensors(config)
    .filter((t) => include(t.name))
    .reduce((sum, t) => sum + tensorStorage(t.name, t.shape, dtype, plan, bindingLimit).parts.reduce((n, p) => n + p.bytes, 0), 0);
}

/** Every tensor the config needs, random, in row parts where the binding limit asks for it; the count of tensors held in each type. */
export function randomWeights(
  gpu: Gpu,
  config: ModelConfig,
  options: Omit<RandomModelOptions, "contextLength">,
): { store: WeightStore; bytes: number; splitTensors: string[]; types: Record<string, number> } {
  const { dtype, quantize, quantizeVision, seed = 0, std = 0.02 } = options;
  check(dtype === "f32" || dtype === "f16", () => `random model: dtype must be f32 or f16, not ${dtype}`);
  const limit = gpu.limits.maxStorageBufferBindingSize;
  const weights = new Map<string, { weight: Weight; rowStart: number }[]>();
  const splitTensors: string[] = [];
  const types: Record<string, number> = {};
  let bytes = 0;
  try {
    for (const { name, shape } of expectedTensors(config)) {
      const { quantized, parts: ranges } = tensorStorage(name, shape, dtype, { text: quantize, vision: quantizeVision }, limit);
      const rowElements = shape.slice(1).reduce((n, d) => n * d, 1);
      const isNormWeight = /norm[^.]*\.weight$/.test(name);
      const parts: { weight: Weight; rowStart: number }[] = [];
      weights.set(name, parts);
      for (const { rows: [start, end], bytes: partBytes } of ranges) {
        const label = ranges.length > 1 ? `${name} rows ${start}..${end}` : name;
        let weight: Weight;
        if (quantized) {
          const data = gpu.empty([partBytes / 4], "u32", { name: label, persistent: true });
          // Parts continue one stream, as for the floats below.
          weight = randomBlocks({ type: quantized, rows: end - start, cols: shape[1], data }, { seed: tensorSeed(name, seed), rowStart: start, std });
        } else {
          const partShape = shape.length >= 2 ? [end - start, ...shape.slice(1)] : shape;
          weight = gpu.empty(partShape, dtype, { name: label, persistent: true });
          // Parts continue one stream, so a split matrix holds what it would hold whole.
          randomFill(weight, { seed: tensorSeed(name, seed), mean: isNormWeight ? 1 : 0, std, offset: start * rowElements });
        }
        bytes += isQuantized(weight) ? weight.data.byteLength : weight.byteLength;
        parts.push({ weight, rowStart: start });
      }
      const type = quantized ?? dtype;
      types[type] = (types[type] ?? 0) + 1;
      if (ranges.length > 1) splitTensors.push(`${name} (${ranges.length} parts)`);
    }
  } catch (error) {
    new WeightStore(weights).dispose();
    throw error;
  }
  return { store: new WeightStore(weights), bytes, splitTensors, types };
}

export interface RandomModel {
  model: LlavaModel;
  /** Its weights (owned by the model: model.dispose() frees them), for building parts of it. */
  weights: WeightStore;
}

/**
 * A LlavaModel with random weights for `config` (a llava or llama config): the same decoder,
 * vision tower and projector classes loadLlava builds, over weights made on the GPU.
 */
export async function randomLlava(gpu: Gpu, config: ModelConfig, options: RandomModelOptions): Promise<RandomModel> {
  check(hasDecoder(config), () => "random model: a CLIP config has no decoder to generate with");
  const { dtype, name = "random weights" } = options;
  const text = config.text;
  const contextLength = chooseContextLength(text, dtype, gpu.limits.maxStorageBufferBindingSize, options.contextLength);
  const started = performance.now();
  gpu.pool.resetPeak();
  const { store, bytes, splitTensors, types: weightTypes } = randomWeights(gpu, config, options);
  try {
    const decoder = new LlamaDecoder(gpu, text, store, contextLength);
    const vision = visionPart(gpu, config, store, "mlp");
    const report = { loadMs: 0, weightBytes: bytes, cacheBytes: 0, caches: 0, peakBytes: 0, dtype, weightTypes, splitTensors, unusedTensors: [], warnings: [] };
    const caches = options.maxBatch ?? 1;
    const model = new LlavaModel(gpu, config, name, dtype, decoder, vision, store, report, caches);
    await gpu.sync();
    report.caches = caches;
    report.cacheBytes = model.caches.reduce((sum, c) => sum + c.bytes, 0);
    report.peakBytes = gpu.memory().peakBytes;
    report.loadMs = performance.now() - started;
    return { model, weights: store };
  } catch (error) {
    store.dispose();
    throw error;
  }
}
