/**
 * A LLaVA (or LLaMA) model of any shape with random weights, made directly on the GPU: what the
 * end-to-end benchmark runs at the real sizes of llava-1.5-7b or TinyLLaVA without downloading
 * them. Nothing is read from disk or passes through host memory: each weight is allocated as the
 * loader would store it (row parts within the storage binding limit, partRows) and filled by
 * the randomFill kernel, so a 13 GB model takes seconds.
 *
 * The values follow transformers' initialisation in scale (std 0.02; norm weights near 1), so
 * activations stay finite through the layers; what the model says is meaningless.
 */
import { performance } from "node:perf_hooks";
import { randomFill } from "../kernels/random_fill.js";
import { bytesPerElement, type DType } from "../tensor/dtype.js";
import { check } from "../tensor/errors.js";
import type { Gpu } from "../tensor/gpu.js";
import type { Tensor } from "../tensor/tensor.js";
import type { ModelConfig } from "../weights/config.js";
import { expectedTensors } from "../weights/names.js";
import { LlamaDecoder } from "../models/llama.js";
import { chooseContextLength, LlavaModel, visionPart } from "../models/llava.js";
import { partRows } from "../models/load.js";
import { WeightStore } from "../models/weights.js";

export interface RandomModelOptions {
  /** Storage dtype of the weights and the KV-cache. */
  dtype: DType;
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

/** Bytes the weights of `config` take in `dtype`. */
export function weightBytes(config: ModelConfig, dtype: DType): number {
  return expectedTensors(config).reduce((sum, t) => sum + t.shape.reduce((n, d) => n * d, 1) * bytesPerElement(dtype), 0);
}

/** Every tensor the config needs, random, in row parts where the binding limit asks for it. */
export function randomWeights(gpu: Gpu, config: ModelConfig, options: Omit<RandomModelOptions, "contextLength">): { store: WeightStore; bytes: number; splitTensors: string[] } {
  const { dtype, seed = 0, std = 0.02 } = options;
  check(dtype === "f32" || dtype === "f16", () => `random model: dtype must be f32 or f16, not ${dtype}`);
  const limit = gpu.limits.maxStorageBufferBindingSize;
  const weights = new Map<string, { weight: Tensor; rowStart: number }[]>();
  const splitTensors: string[] = [];
  let bytes = 0;
  try {
    for (const { name, shape } of expectedTensors(config)) {
      const rows = shape[0] ?? 1;
      const rowElements = shape.slice(1).reduce((n, d) => n * d, 1);
      const ranges = shape.length >= 2 ? partRows(rows, rowElements * bytesPerElement(dtype), limit, name) : [[0, rows] as [number, number]];
      const isNormWeight = /norm[^.]*\.weight$/.test(name);
      const parts = ranges.map(([start, end]) => {
        const partShape = shape.length >= 2 ? [end - start, ...shape.slice(1)] : shape;
        const label = ranges.length > 1 ? `${name} rows ${start}..${end}` : name;
        const weight = gpu.empty(partShape, dtype, { name: label, persistent: true });
        // Parts continue one stream, so a split matrix holds what it would hold whole.
        randomFill(weight, { seed: tensorSeed(name, seed), mean: isNormWeight ? 1 : 0, std, offset: start * rowElements });
        bytes += weight.byteLength;
        return { weight, rowStart: start };
      });
      weights.set(name, parts);
      if (ranges.length > 1) splitTensors.push(`${name} (${ranges.length} parts)`);
    }
  } catch (error) {
    for (const parts of weights.values()) for (const p of parts) p.weight.dispose();
    throw error;
  }
  return { store: new WeightStore(weights), bytes, splitTensors };
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
  check(config.kind !== "clip_vision", () => "random model: a CLIP vision config has no decoder to generate with");
  const { dtype, name = "random weights" } = options;
  const text = config.text;
  const contextLength = chooseContextLength(text, dtype, gpu.limits.maxStorageBufferBindingSize, options.contextLength);
  const started = performance.now();
  gpu.pool.resetPeak();
  const { store, bytes, splitTensors } = randomWeights(gpu, config, options);
  try {
    const decoder = new LlamaDecoder(gpu, text, store, contextLength);
    const vision = visionPart(gpu, config, store, "mlp");
    const report = { loadMs: 0, weightBytes: bytes, cacheBytes: 0, caches: 0, peakBytes: 0, dtype, splitTensors, unusedTensors: [], warnings: [] };
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
