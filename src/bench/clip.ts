/**
 * `bench clip`: CLIP's throughput at the sizes of OpenAI's checkpoints, with random weights
 * made on the GPU (random_model.ts): images and texts embedded per second at a few batch
 * sizes, and the latency of an exact search (embed/vector_search.ts) over 100k and 1M vectors.
 *
 * Each figure is wall time from recording to the result read back (what a user waits), the
 * median over the runs after one warm-up. What a pass does (FLOPs per image and per text) is
 * counted beside it, so a figure reads against the device's compute rate; a search reads every
 * vector once, so it reads against the bandwidth.
 */
import { performance } from "node:perf_hooks";
import { randomFill } from "../kernels/random_fill.js";
import { ClipModel } from "../models/clip_model.js";
import type { DType } from "../tensor/dtype.js";
import type { Gpu } from "../tensor/gpu.js";
import type { Tensor } from "../tensor/tensor.js";
import { parseConfig, type ClipConfig } from "../weights/config.js";
import { GpuVectors } from "../embed/vector_search.js";
import { partRows } from "../models/load.js";
import { randomWeights } from "./random_model.js";
import { summarize, type Summary } from "./stats.js";

/** The two CLIPModel configs people use most, as their config.json fields. */
export const CLIP_SHAPES = {
  "clip-vit-base-patch32": {
    projection_dim: 512,
    text_config: { hidden_size: 512, intermediate_size: 2048, num_attention_heads: 8, num_hidden_layers: 12 },
    vision_config: { hidden_size: 768, intermediate_size: 3072, num_attention_heads: 12, num_hidden_layers: 12, image_size: 224, patch_size: 32 },
  },
  // clip-a's sizes (fixtures/golden): checks that the benchmark runs; its figures mean nothing.
  tiny: {
    projection_dim: 16,
    text_config: { hidden_size: 32, intermediate_size: 64, num_attention_heads: 4, num_hidden_layers: 2, vocab_size: 1514, eos_token_id: 1513 },
    vision_config: { hidden_size: 32, intermediate_size: 64, num_attention_heads: 4, num_hidden_layers: 2, image_size: 32, patch_size: 8 },
  },
  "clip-vit-large-patch14": {
    projection_dim: 768,
    text_config: { hidden_size: 768, intermediate_size: 3072, num_attention_heads: 12, num_hidden_layers: 12 },
    vision_config: { hidden_size: 1024, intermediate_size: 4096, num_attention_heads: 16, num_hidden_layers: 24, image_size: 224, patch_size: 14 },
  },
} as const;

export type ClipShape = keyof typeof CLIP_SHAPES;

export function isClipShape(name: string): name is ClipShape {
  return Object.hasOwn(CLIP_SHAPES, name);
}

export function clipShapeConfig(shape: ClipShape): ClipConfig & { kind: "clip" } {
  const config = parseConfig({ model_type: "clip", ...CLIP_SHAPES[shape] }, shape);
  if (config.kind !== "clip") throw new Error(`${shape}: not a CLIP config`);
  return config;
}

export interface ClipBenchOptions {
  dtype?: DType;
  quick?: boolean;
  /** Vector counts to search over (default 100k and 1M). */
  searchSizes?: number[];
  onProgress?: (line: string) => void;
}

export interface ThroughputRow {
  batch: number;
  ms: Summary;
  perSecond: number;
  /** The pass's FLOPs over its time. */
  gflops: number;
}

export interface ClipBenchResult {
  shape: string;
  dtype: DType;
  weightBytes: number;
  images: ThroughputRow[];
  /** Texts of `tokens` tokens (padded batches of equal length). */
  texts: (ThroughputRow & { tokens: number })[];
  search: { vectors: number; dimensions: number; ms: Summary; gbps: number }[];
}

/** FLOPs of one transformer encoder pass over `tokens` tokens (matrix products and attention). */
function encoderFlops(tokens: number, hidden: number, intermediate: number, layers: number): number {
  const matrices = 4 * hidden * hidden + 2 * hidden * intermediate;
  return layers * (2 * tokens * matrices + 4 * tokens * tokens * hidden);
}

export function clipImageFlops(config: ClipConfig): number {
  const v = config.vision;
  const tokens = v.numPatches + 1;
  return 2 * v.numPatches * 3 * v.patchSize ** 2 * v.hiddenSize + encoderFlops(tokens, v.hiddenSize, v.intermediateSize, v.numHiddenLayers) + 2 * v.hiddenSize * config.projectionDim;
}

export function clipTextFlops(config: ClipConfig, tokens: number): number {
  const t = config.text;
  return encoderFlops(tokens, t.hiddenSize, t.intermediateSize, t.numHiddenLayers) + 2 * t.hiddenSize * config.projectionDim;
}

async function timed(repeats: number, run: () => Promise<unknown>): Promise<Summary> {
  await run(); // warm-up: compiles the pipelines
  const samples: number[] = [];
  for (let i = 0; i < repeats; i++) {
    const start = performance.now();
    await run();
    samples.push(performance.now() - start);
  }
  return summarize(samples);
}

export async function runClipBench(gpu: Gpu, shape: ClipShape, options: ClipBenchOptions = {}): Promise<ClipBenchResult> {
  const progress = options.onProgress ?? (() => {});
  const quick = options.quick ?? false;
  const dtype: DType = options.dtype ?? (gpu.hasF16 ? "f16" : "f32");
  const config = clipShapeConfig(shape);
  const repeats = quick ? 1 : 3;
  progress(`building ${shape} with random ${dtype} weights on the GPU`);
  const { store, bytes } = randomWeights(gpu, config, { dtype });
  const model = new ClipModel(gpu, config, shape, dtype, store, Math.log(100), { weightBytes: bytes, loadMs: 0, weightTypes: {}, warnings: [] });
  try {
    const v = config.vision;
    const images: ThroughputRow[] = [];
    for (const batch of quick ? [1, 4] : [1, 8, 32]) {
      const pixels = gpu.empty([batch, 3, v.imageSize, v.imageSize], "f32", { name: "bench pixels" });
      randomFill(pixels, { seed: batch });
      const ms = await timed(repeats, async () => {
        const features = gpu.scope(() => gpu.keep(model.imageFeatures(pixels)));
        await features.read();
        features.dispose();
      });
      pixels.dispose();
      const row = { batch, ms, perSecond: (batch * 1000) / ms.median, gflops: (batch * clipImageFlops(config)) / ms.median / 1e6 };
      images.push(row);
      progress(`images, batch ${batch}: ${row.perSecond.toFixed(2)} images/s (${row.gflops.toFixed(1)} GFLOP/s)`);
    }
    const texts: ClipBenchResult["texts"] = [];
    const eos = config.text.eosTokenId;
    for (const [batch, tokens] of quick ? [[1, 16], [64, 16]] : [[1, 16], [64, 16], [64, 77]]) {
      const ids = Array.from({ length: batch }, (_, b) => Array.from({ length: tokens }, (_, i) => (i === tokens - 1 ? eos : (b * 131 + i * 17) % eos)));
      const batchIds = { ids, lengths: ids.map(() => tokens) };
      const ms = await timed(repeats, async () => {
        const features = model.textFeatures(batchIds);
        await features.read();
        features.dispose();
      });
      const row = { batch, tokens, ms, perSecond: (batch * 1000) / ms.median, gflops: (batch * clipTextFlops(config, tokens)) / ms.median / 1e6 };
      texts.push(row);
      progress(`texts of ${tokens} tokens, batch ${batch}: ${row.perSecond.toFixed(1)} texts/s (${row.gflops.toFixed(1)} GFLOP/s)`);
    }
    const search: ClipBenchResult["search"] = [];
    const dims = config.projectionDim;
    for (const count of options.searchSizes ?? [100_000, 1_000_000]) {
      const vectors = randomVectors(gpu, count, dims);
      try {
        const query = new Float32Array(dims).fill(1 / Math.sqrt(dims));
        const ms = await timed(quick ? 2 : 5, () => vectors.search(query, 10));
        const row = { vectors: count, dimensions: dims, ms, gbps: (count * dims * 4) / ms.median / 1e6 };
        search.push(row);
        progress(`search over ${count} vectors of ${dims}: ${ms.median.toFixed(1)} ms (${row.gbps.toFixed(1)} GB/s)`);
      } finally {
        vectors.dispose();
      }
    }
    return { shape, dtype, weightBytes: bytes, images, texts, search };
  } finally {
    model.dispose();
  }
}

/** `count` random vectors made on the GPU, in row parts as GpuVectors holds them. */
function randomVectors(gpu: Gpu, count: number, dims: number): GpuVectors {
  const ranges = partRows(count, dims * 4, gpu.limits.maxStorageBufferBindingSize, "bench vectors");
  const parts: Tensor[] = ranges.map(([start, end], i) => randomFill(gpu.empty([end - start, dims], "f32", { name: "bench vectors", persistent: true }), { seed: i }));
  return GpuVectors.fromParts(gpu, count, dims, parts, ranges.map(([start]) => start));
}

export function clipBenchMarkdown(r: ClipBenchResult): string {
  const lines = [
    `| ${r.shape} (${r.dtype}, ${(r.weightBytes / 1e9).toFixed(2)} GB) | batch | per second | ms per batch | GFLOP/s |`,
    "| --- | --- | --- | --- | --- |",
    ...r.images.map((x) => `| images | ${x.batch} | ${x.perSecond.toFixed(2)} | ${x.ms.median.toFixed(1)} | ${x.gflops.toFixed(1)} |`),
    ...r.texts.map((x) => `| texts of ${x.tokens} tokens | ${x.batch} | ${x.perSecond.toFixed(1)} | ${x.ms.median.toFixed(1)} | ${x.gflops.toFixed(1)} |`),
    "",
    "| exact search | vectors | dimensions | ms per query (top 10) | GB/s read |",
    "| --- | --- | --- | --- | --- |",
    ...r.search.map((s) => `| | ${s.vectors} | ${s.dimensions} | ${s.ms.median.toFixed(1)} | ${s.gbps.toFixed(1)} |`),
  ];
  return `${lines.join("\n")}\n`;
}
