/**
 * End to end: a whole LLaVA model doing what generate() does, timed phase by phase.
 *
 *   image encoding   pixel values → vision tower → projector → image features
 *   prefill          the prompt (image features + text tokens) through the decoder in one pass,
 *                    filling the KV-cache, and the first token sampled and read back
 *   time to first token = image encoding + prefill
 *   decode           one token at a time at a given context (1024 positions by default): each
 *                    step recorded into one command buffer, submitted once, its id read back
 *
 * Every phase is recorded exactly as VisionLanguageModel.generate records it (the same calls in
 * the same order), and timed on the wall clock, since that is what a user waits for.
 *
 * Three figures do not depend on the device, and are what the runtime's design promises:
 * - dispatches per decoded token (kernel launches), and submits per token (1: the read of the id);
 * - weight bytes read per token over the decoder's weight bytes: every launch's read-only
 *   bindings that hold weights are counted in full, except those a kernel only gathers rows from
 *   (the embedding table, kernel.ts `gathers`); the decoder's bytes are those of its layers,
 *   final norm and LM head (the embedding table too when it is tied to the LM head). A decoder
 *   that reads each weight once per token scores 1.0;
 * - CPU milliseconds spent recording one token's commands.
 *
 * A random shape may hold its decoder's matrices in one of ggml's quantized types (`quantize`:
 * random_model.ts, as a quantized checkpoint would be): the decoder then reads their packed
 * blocks, and "weight bytes" everywhere (the total, the decoder's, the memory estimate) are the
 * packed bytes held.
 *
 * Large shapes on slow devices: with `sampleLayers` (the default for --quick beyond the tiny
 * shape) image encoding and prefill are not run through every layer. They run through 0 and
 * through 1 layer of the real model, every layer of which costs the same, and the full time is
 * estimated as t(0) + layers · (t(1) - t(0)); the output says so. Decoding always runs the whole
 * model, for fewer steps.
 */
import { readFileSync } from "node:fs";
import { freemem } from "node:os";
import { performance } from "node:perf_hooks";
import type { QuantizedType } from "../kernels/quant/blocks.js";
import { randomFill } from "../kernels/random_fill.js";
import { ClipVisionTower } from "../models/clip.js";
import { LlamaDecoder, PREFILL_ROWS_PER_PASS, type KVCache } from "../models/llama.js";
import { DecodeBatch, type Sequence } from "../generate/batch.js";
import { recordPrefill, TokenSampler } from "../generate/token_step.js";
import { dawnDispatchFloor } from "./dispatch_floor.js";
import { kvCacheBytes, loadLlava, type LlavaModel, type VisionPart } from "../models/llava.js";
import { randomLlava, weightBytes } from "./random_model.js";
import type { WeightStore } from "../models/weights.js";
import { describeWeightTypes, type QuantizePlan } from "../models/load.js";
import type { DType } from "../tensor/dtype.js";
import type { Gpu, LaunchRecord } from "../tensor/gpu.js";
import type { Tensor } from "../tensor/tensor.js";
import { hasDecoder, loadConfig, type LlamaConfig, type ModelConfig } from "../weights/config.js";
import { visionLayersUsed } from "../weights/names.js";
import type { DeviceLimits } from "./limits.js";
import { shapeConfig, type E2EShape } from "./shapes.js";
import { anyresLayout, type ImageSize } from "../models/anyres.js";
import { summarize, type Summary } from "./stats.js";

export type ModelSource = { shape: E2EShape } | { path: string };

export interface E2EOptions {
  /** Storage dtype of weights and KV-cache (default: f16 where the adapter has shader-f16). */
  dtype?: DType;
  /** A random shape's decoder matrices (quantizedOnLoad's) as random blocks of this ggml type; the rest in `dtype`. */
  quantize?: QuantizedType;
  /** A random shape's vision tower and projector matrices as random blocks of this ggml type (a quantized mmproj). */
  quantizeVision?: QuantizedType;
  /** Fewer repeats and decode steps; beyond the tiny shape, layer sampling (see the top of this file). */
  quick?: boolean;
  /** Text tokens in the prompt besides the image's features (default 64; 640 for a text-only model). */
  textTokens?: number;
  /** Context at which decoding is timed (default 1024). */
  context?: number;
  /** Decode steps timed (default 32; quick: 8, or 2 beyond the tiny shape). */
  decodeSteps?: number;
  /** Estimate image encoding and prefill from passes over 0 and 1 layers. */
  sampleLayers?: boolean;
  /** Batch sizes whose aggregate decode throughput is measured (default 1, 2, 4, 8, 16; quick beyond the tiny shape: 1, 4). */
  batches?: readonly number[];
  /** Timed runs of image encoding and prefill (default 3; quick 1). */
  repeats?: number;
  /** The device's measured limits, to give each phase's rate as a fraction of them. */
  limits?: DeviceLimits;
  /** Progress, a line at a time. */
  onProgress?: (line: string) => void;
}

/** A phase's achieved rate and the fraction of the device's ceiling it reaches. */
export interface PhaseRate {
  gflops?: number;
  gbps?: number;
  fraction: number;
  /** The ceiling, in words. */
  of: string;
}

export interface PhaseTiming {
  /** Milliseconds (the median of the runs). */
  ms: number;
  /** "measured": timed through every layer; "estimated": t(0 layers) + layers · (t(1 layer) - t(0 layers)). */
  method: "measured" | "estimated";
  /** Timed runs behind the figure (each, for an estimate). */
  runs: number;
  /** Relative spread of the runs (see stats.ts). */
  spread: number;
}

export interface E2EResult {
  /** The shape's name or the checkpoint's path. */
  model: string;
  description: string;
  /** Storage dtype of the float weights and the KV-cache. */
  dtype: DType;
  /** The ggml type the decoder's matrices are held in, or null when every weight is a float. */
  quantize: QuantizedType | null;
  /** The ggml type the vision tower's and projector's matrices are held in, or null for floats. */
  quantizeVision: QuantizedType | null;
  /** How many weight tensors are held in each type (the load report's). */
  weightTypes: Record<string, number>;
  /** Bytes of weights held on the GPU (packed blocks as they are). */
  weightBytes: number;
  /** What one decoded token must read at least: the decoder's weights (see the top of this file). */
  decoderWeightBytes: number;
  splitTensors: string[];
  /** Milliseconds to load the checkpoint, or to make the random weights on the GPU. */
  buildMs: number;
  /** `tiles` vision tower passes for one image (1 but with LLaVA-NeXT's tiling, then of a `source`-sized photo). */
  image: (PhaseTiming & { features: number; tiles: number; source: ImageSize | null }) | null;
  prefill: PhaseTiming & { positions: number; tokensPerSecond: number };
  timeToFirstTokenMs: number;
  /** Time to first token of the next chat turn: FOLLOW_UP_TOKENS new positions after the first turn's, which the cache holds. */
  nextTurn: PhaseTiming & { newPositions: number; cachedPositions: number };
  /** Pipelined, as generate() runs; `unpipelined`: each token recorded only after the one before was read. */
  decode: {
    context: number;
    steps: number;
    msPerToken: Summary;
    tokensPerSecond: number;
    unpipelined: { msPerToken: Summary; tokensPerSecond: number };
  };
  perToken: {
    dispatches: number;
    dispatchesPerLayer: number;
    submits: number;
    /** Bind groups made per timed token: 0 once every buffer a step binds is the one it bound the step before. */
    bindGroups: number;
    weightBytesRead: number;
    /** weightBytesRead / decoderWeightBytes; 1.0 is ideal. */
    weightReadRatio: number;
    /** CPU milliseconds to record one token's commands (a replay of the captured step, and the write of its position). */
    recordMs: Summary;
    /** CPU milliseconds of the first step, which captures the program (compiling pipelines, making bind groups). */
    warmupRecordMs: number;
    /**
     * Microseconds of CPU per dispatch replaying the step (the rest of recordMs is per token:
     * writing the positions, submitting, starting the read of the ids).
     */
    recordUsPerDispatch: number;
    /**
     * Dawn's own CPU microseconds per dispatch with everything prebuilt, measured in the same
     * run in passes as long as the step (dispatch_floor.ts): a pass of a few dozen dispatches
     * costs more per dispatch than one of a thousand, so the floor is taken at the step's length.
     */
    dawnFloorUsPerDispatch: Summary;
  };
  /**
   * Against the measured limits (when given): image encoding and prefill in GFLOP/s of their
   * matrix products and attention, decoding in GB/s of decoder weights read.
   */
  rates: { image: PhaseRate | null; prefill: PhaseRate | null; decode: PhaseRate | null };
  /** Decoding with several sequences at once, each in its own KV-cache (pipelined). */
  batches: { size: number; msPerStep: Summary; tokensPerSecond: number; dispatchesPerStep: number }[];
  /** Most GPU memory held at once (weights, KV-cache, activations and the pool). */
  peakMemoryBytes: number;
  /** Wall time of the whole benchmark, model building included. */
  totalSeconds: number;
}

/**
 * Bytes of the weights a decoded token reads: the decoder's, minus the gathered embedding table
 * unless it is the LM head too; packed bytes for the matrices a `quantize` model holds in
 * blocks (row parts within `bindingLimit`, each padded to whole words, as they are stored).
 */
export function decoderWeightBytes(config: ModelConfig, dtype: DType, quantize?: QuantizedType, bindingLimit = Infinity): number {
  if (!hasDecoder(config)) return 0;
  const tied = config.text.tieWordEmbeddings;
  const read = (name: string) => (name.startsWith("text.") || name.startsWith("lm_head.")) && (tied || name !== "text.embed_tokens.weight");
  return weightBytes(config, dtype, { text: quantize }, bindingLimit, read);
}

/**
 * Bytes of weights a launch reads: its read-only bindings that hold persistent tensors other
 * than `excluded` (the KV-cache), except those the kernel declares it only gathers from.
 */
export function weightBytesOf(launch: LaunchRecord, excluded: ReadonlySet<GPUBuffer>): number {
  const { kernel, tensors } = launch;
  const gathers = kernel.gathers ?? [];
  let bytes = 0;
  for (const name of kernel.bindingNames) {
    const t = tensors[name];
    if (kernel.bindings[name] !== "read" || gathers.includes(name)) continue;
    if (t.storage.pooled || excluded.has(t.storage.buffer)) continue; // (a replayed launch's tensors may be views disposed since)
    bytes += t.byteLength;
  }
  return bytes;
}

/**
 * FLOPs of image encoding: the used encoder layers' matrix products and attention over all
 * tokens, the patch convolution, the projector over the features.
 */
export function imageFlops(config: Extract<ModelConfig, { kind: "llava" }>, features: number, tiles = 1): number {
  const v = config.vision;
  const tokens = v.numPatches + 1;
  const h = v.hiddenSize;
  const layer = 2 * tokens * (4 * h * h + 2 * h * v.intermediateSize) + 4 * h * tokens * tokens;
  const patches = 2 * v.numPatches * h * v.numChannels * v.patchSize * v.patchSize;
  const t = config.text.hiddenSize;
  // With tiles (LLaVA-NeXT) every tile is encoded, and the projector runs over all their patches.
  const projected = tiles > 1 ? tiles * v.numPatches : features;
  const projector = 2 * projected * (h * t + t * t);
  return tiles * (visionLayersUsed(config) * layer + patches) + projector;
}

/** FLOPs of a prefill of `positions`: every layer's matrix products and causal attention, and the LM head for the last row. */
export function prefillFlops(text: LlamaConfig, positions: number): number {
  const { hiddenSize: h, intermediateSize: mlp, numAttentionHeads: H, numKeyValueHeads: Hkv, headDim: D } = text;
  const matrices = 2 * H * D * h + 2 * Hkv * D * h + 3 * h * mlp;
  const attention = 4 * H * D * ((positions * (positions + 1)) / 2);
  return text.numHiddenLayers * (2 * positions * matrices + attention) + 2 * text.vocabSize * h;
}

function describe(config: ModelConfig): string {
  if (!hasDecoder(config)) return config.kind === "clip" ? "a CLIP dual encoder" : "a CLIP vision tower";
  const t = config.text;
  const decoder = `decoder ${t.numHiddenLayers}×${t.hiddenSize} (MLP ${t.intermediateSize}, ${t.numAttentionHeads} heads, ${t.numKeyValueHeads} KV, vocab ${t.vocabSize})`;
  if (config.kind === "llama") return decoder;
  const v = config.vision;
  return `vision ${visionLayersUsed(config)} of ${v.numHiddenLayers}×${v.hiddenSize} (MLP ${v.intermediateSize}, ${v.imageSize} px / ${v.patchSize}), ${decoder}`;
}

/** Memory a software adapter can use: the machine's available RAM. */
function availableMemory(): number {
  try {
    const line = readFileSync("/proc/meminfo", "utf8").match(/^MemAvailable:\s+(\d+) kB/m);
    if (line) return Number(line[1]) * 1024;
  } catch {
    // not Linux: fall through
  }
  return freemem();
}

function isSoftwareAdapter(gpu: Gpu): boolean {
  const a = gpu.adapter;
  return a.isFallbackAdapter || /llvmpipe|lavapipe|swiftshader|software/i.test(`${a.description} ${a.architecture} ${a.device}`);
}

/** GPU memory a run needs, roughly: weights (packed where quantized), KV-caches, and a pass's layer activations twice over (pool). */
function memoryEstimate(config: ModelConfig & { text: LlamaConfig }, dtype: DType, plan: QuantizePlan<QuantizedType>, contextLength: number, positions: number, caches: number): number {
  const t = config.text;
  const cache = caches * kvCacheBytes(t, contextLength, dtype);
  let activations = Math.min(positions, PREFILL_ROWS_PER_PASS) * (8 * t.hiddenSize + 3 * t.intermediateSize) * 4;
  if (config.kind === "llava") {
    const v = config.vision;
    activations = Math.max(activations, (v.numPatches + 1) * (8 * v.hiddenSize + 2 * v.intermediateSize) * 4);
  }
  return weightBytes(config, dtype, plan) + cache + 2 * activations + 256 * 2 ** 20;
}

/** The weight types in words: "156 Q4_K, 311 f16 tensors". */
function gb(bytes: number): string {
  return `${(bytes / 1e9).toFixed(1)} GB`;
}

/** Seeded prompt ids: BOS, the image token (for a vision model), then text ids from the ordinary vocabulary. */
function promptIds(text: LlamaConfig, imageToken: number | null, textTokens: number): number[] {
  const ids = [text.bosTokenId ?? 1];
  if (imageToken !== null) ids.push(imageToken);
  const ordinary = Math.min(text.vocabSize, 32000);
  let state = 12345;
  while (ids.length < textTokens + (imageToken === null ? 0 : 1)) {
    state = (Math.imul(state, 1103515245) + 12345) >>> 0;
    const id = 3 + (state % (ordinary - 3));
    if (id !== imageToken) ids.push(id);
  }
  return ids;
}

async function wallMs(gpu: Gpu, record: () => void, wait: () => Promise<unknown> = () => gpu.sync()): Promise<number> {
  const start = performance.now();
  record();
  await wait();
  return performance.now() - start;
}

async function repeatMs(runs: number, once: () => Promise<number>): Promise<Summary> {
  const samples: number[] = [];
  for (let i = 0; i < runs; i++) samples.push(await once());
  return summarize(samples);
}

/** The estimate t(0) + layers · (t(1) - t(0)) from timings over 0 and 1 layers. */
export function extrapolate(zero: Summary, one: Summary, layers: number, runs: number): PhaseTiming {
  const perLayer = Math.max(0, one.median - zero.median);
  const ms = zero.median + layers * perLayer;
  return { ms, method: "estimated", runs, spread: Math.max(zero.spread, one.spread) };
}

/** What every phase needs: the model, its prompt, and where the sampled token goes. */
interface Run {
  gpu: Gpu;
  model: LlavaModel;
  /** The model's weights, to build parts of it (random shapes only). */
  weights: WeightStore | null;
  ids: number[];
  /** Greedy, with the token history: as generate() samples. */
  sampler: TokenSampler;
  /** u32 [1]: where the prefill's draw goes. */
  first: Tensor;
  repeats: number;
  sampleLayers: boolean;
  contextLength: number;
  progress: (line: string) => void;
}

/** The options resolved and checked against the model. */
function settings(config: ModelConfig & { text: LlamaConfig }, isRandom: boolean, large: boolean, gpu: Gpu, options: E2EOptions) {
  const quick = options.quick ?? false;
  const sampleLayers = options.sampleLayers ?? (quick && isRandom && large);
  if (sampleLayers && !isRandom) throw new Error("layer sampling needs a random-weight shape (--shape), not a checkpoint");
  const repeats = options.repeats ?? (quick ? 1 : 3);
  const steps = options.decodeSteps ?? (quick ? (large ? 2 : 8) : 32);
  const context = options.context ?? 1024;
  // A tiled model (LLaVA-NeXT) sees a photo of BENCH_PHOTO's size: its tiles and features follow from it.
  const layout = config.kind === "llava" && config.anyres ? anyresLayout(BENCH_PHOTO, config.anyres, config.vision) : null;
  const tiles = layout?.tiles ?? 1;
  const features = config.kind === "llava" ? (layout?.features ?? config.vision.numPatches + (config.visionFeatureSelectStrategy === "full" ? 1 : 0)) : 0;
  const textTokens = options.textTokens ?? (features > 0 ? 64 : 640);
  for (const [name, n] of [["steps", steps], ["context", context], ["text tokens", textTokens], ["repeats", repeats]] as const) {
    if (!Number.isInteger(n) || n < 1) throw new RangeError(`${name} must be an integer >= 1, not ${n}`);
  }
  const positions = features + textTokens;
  // Room for the prompt and the next turn's, and for the context plus the timed steps.
  const contextLength = Math.max(positions + FOLLOW_UP_TOKENS, context + steps + 2);
  const text = config.text;
  if (contextLength > text.maxPositionEmbeddings) {
    throw new RangeError(
      `a prompt of ${positions} positions and its next turn, and decoding ${steps} steps at context ${context}, need ${contextLength} positions, ` +
        `over this model's max_position_embeddings (${text.maxPositionEmbeddings})`,
    );
  }
  const dtype: DType | undefined = options.dtype ?? (isRandom ? (gpu.hasF16 ? "f16" : "f32") : undefined);
  if (dtype === "f16" && !gpu.hasF16) throw new Error("dtype f16 was requested, but this adapter has no shader-f16");
  const { quantize, quantizeVision } = options;
  for (const type of [quantize, quantizeVision]) {
    if (type !== undefined && !isRandom) throw new Error(`quantize ${type}: only a random-weight shape (--shape) is quantized here; load a quantized checkpoint instead`);
  }
  const batches = options.batches ?? (quick && large ? [1, 4] : [1, 2, 4, 8, 16]);
  for (const size of batches) {
    if (!Number.isInteger(size) || size < 1 || size > 256) throw new RangeError(`batch sizes must be integers in [1, 256], not ${size}`);
  }
  return { sampleLayers, repeats, steps, context, features, tiles, textTokens, positions, contextLength, dtype, quantize, quantizeVision, batches };
}

/** Image encoding of random pixels; returns its timing and the features of the last run (the caller's to free). */
async function measureImage(run: Run, vision: VisionPart, featureCount: number, tiles: number): Promise<{ image: NonNullable<E2EResult["image"]>; features: Tensor }> {
  const { gpu, weights, repeats, progress } = run;
  const { imageSize } = vision.tower.config;
  const tiled = vision.anyres !== null;
  const shape = tiled ? [tiles, 3, imageSize, imageSize] : [3, imageSize, imageSize];
  const pixels = randomFill(gpu.empty(shape, "f32", { name: "pixel values" }), { seed: 3 });
  const imageSize2d = tiled ? BENCH_PHOTO : undefined;
  if (tiled) progress(`a ${BENCH_PHOTO.width}x${BENCH_PHOTO.height} photo: ${tiles} tiles of ${imageSize} px (the base and a ${tiles - 1}-tile grid), ${featureCount} image positions`);
  // Each run replaces the features of the one before.
  let encoded: Tensor | null = null;
  const encode = (tower: ClipVisionTower) => async () => {
    encoded?.dispose();
    return wallMs(gpu, () => (encoded = gpu.scope(() => run.model.encodeImage(pixels, { tower, imageSize: imageSize2d }))));
  };
  let timing: PhaseTiming;
  try {
    const layers = vision.tower.layerCount;
    if (run.sampleLayers) {
      progress(`image encoding: through 0 and 1 layers, to estimate all ${layers}`);
      const zero = new ClipVisionTower(gpu, vision.tower.config, weights!, 0);
      const one = new ClipVisionTower(gpu, vision.tower.config, weights!, 1);
      await encode(one)(); // warm-up: compiles the pipelines
      const t0 = await repeatMs(repeats, encode(zero));
      const t1 = await repeatMs(repeats, encode(one));
      timing = extrapolate(t0, t1, layers, repeats);
    } else {
      progress(`image encoding: ${layers} vision layer${layers === 1 ? "" : "s"}`);
      await encode(vision.tower)(); // warm-up
      const t = await repeatMs(repeats, encode(vision.tower));
      timing = { ms: t.median, method: "measured", runs: t.n, spread: t.spread };
    }
  } catch (error) {
    (encoded as Tensor | null)?.dispose();
    throw error;
  } finally {
    pixels.dispose();
  }
  progress(`image encoding ${timing.method === "estimated" ? "(estimated) " : ""}${timing.ms.toFixed(1)} ms`);
  return { image: { ...timing, features: featureCount, tiles, source: tiled ? BENCH_PHOTO : null }, features: encoded! };
}

/** The photo a tiled model (LLaVA-NeXT) is timed on: 1024×768, a common camera aspect (4:3). */
export const BENCH_PHOTO: ImageSize = { height: 768, width: 1024 };

/** New text positions of the next chat turn the benchmark times (a follow-up question). */
export const FOLLOW_UP_TOKENS = 16;

/**
 * The prompt through the decoder, the first token sampled and read back; then the next chat
 * turn: the same prompt and FOLLOW_UP_TOKENS more, the cache still holding the first turn
 * (prompt caching), so only the new positions run.
 */
async function measurePrefill(run: Run, imageFeatures: Tensor[], positions: number): Promise<{ prefill: PhaseTiming; followUp: PhaseTiming }> {
  const { gpu, model, weights, ids, sampler, first, repeats, progress } = run;
  const text = model.textConfig;
  const once = (decoder: LlamaDecoder, cache: KVCache, promptIds: number[], promptFeatures: Tensor[]) => () =>
    wallMs(
      gpu,
      () => recordPrefill(model, promptIds, promptFeatures, sampler, { tokens: first }, decoder, cache),
      () => first.read(),
    );
  const nextTurn = [...ids, ...promptIds(text, null, FOLLOW_UP_TOKENS + 1).slice(1)];
  const history = gpu.empty([nextTurn.length + 1], "u32", { name: "next turn history" });
  gpu.write(history, new Uint32Array(nextTurn));
  const nextSampler = new TokenSampler(history, nextTurn.length, { temperature: 0, seed: 0 });
  const followUp = (decoder: LlamaDecoder, cache: KVCache) => () =>
    wallMs(
      gpu,
      () => recordPrefill(model, nextTurn, imageFeatures, nextSampler, { tokens: first }, decoder, cache, positions),
      () => first.read(),
    );
  const measured = (t: Summary): PhaseTiming => ({ ms: t.median, method: "measured", runs: t.n, spread: t.spread });
  try {
    if (!run.sampleLayers) {
      progress(`prefill of ${positions} positions through ${text.numHiddenLayers} layers, then ${FOLLOW_UP_TOKENS} more`);
      const prefill = once(model.decoder, model.cache, ids, imageFeatures);
      await prefill(); // warm-up
      const t = await repeatMs(repeats, prefill);
      await followUp(model.decoder, model.cache)(); // warm-up
      return { prefill: measured(t), followUp: measured(await repeatMs(repeats, followUp(model.decoder, model.cache))) };
    }
    progress(`prefill of ${positions} positions, then ${FOLLOW_UP_TOKENS} more: through 0 and 1 layers, to estimate all ${text.numHiddenLayers}`);
    const partial = (layers: number) => {
      const decoder = new LlamaDecoder(gpu, { ...text, numHiddenLayers: layers }, weights!, run.contextLength);
      return { decoder, cache: decoder.createCache(model.dtype) };
    };
    const zero = partial(0);
    const one = partial(1);
    try {
      const textOnly = ids.filter((id) => id !== model.vision?.imageTokenId).slice(0, 16);
      await once(one.decoder, one.cache, textOnly, [])(); // warm-up: compiles the pipelines
      const t0 = await repeatMs(repeats, once(zero.decoder, zero.cache, ids, imageFeatures));
      const t1 = await repeatMs(repeats, once(one.decoder, one.cache, ids, imageFeatures));
      const f0 = await repeatMs(repeats, followUp(zero.decoder, zero.cache));
      const f1 = await repeatMs(repeats, followUp(one.decoder, one.cache));
      return { prefill: extrapolate(t0, t1, text.numHiddenLayers, repeats), followUp: extrapolate(f0, f1, text.numHiddenLayers, repeats) };
    } finally {
      one.cache.dispose();
      zero.cache.dispose();
    }
  } finally {
    history.dispose();
  }
}

/**
 * Launches per decoder layer in a decode step: one step recorded the ordinary way at `context`,
 * counting launches between the trace points at each layer's input (the last one comes after
 * the final norm, one launch).
 */
function dispatchesPerLayer(run: Run, context: number): number {
  const { gpu, model, first } = run;
  const { decoder, cache } = model;
  const marks: number[] = [];
  cache.length = context;
  gpu.scope(() => void decoder.forward(decoder.embed(first), cache, (name) => name === "text_hidden_states" && marks.push(gpu.dispatchCount)));
  const layers = model.textConfig.numHiddenLayers;
  return layers === 0 ? 0 : (marks[layers] - marks[0] - 1) / layers;
}

/** What decoding `steps` tokens for each of `caches.length` sequences at once took. */
interface DecodeRun {
  /** Milliseconds between consecutive steps' ids arriving (the first step, which captures the program, left out). */
  stepMs: Summary;
  /** CPU milliseconds recording each step but the first (replayMs: of which replaying its launches), and the first's. */
  recordMs: Summary;
  replayMs: Summary;
  warmupRecordMs: number;
  /** Counters over the steps after the first, per step. */
  dispatches: number;
  submits: number;
  bindGroups: number;
  weightBytesRead: number;
}

/**
 * `steps` tokens for each of `caches.length` sequences at `context`, decoded as generate()
 * decodes them: in a DecodeBatch (each its own cache and sampler, greedy), the step captured
 * once and replayed, pipelined or not.
 */
async function decodeRun(
  run: Run,
  caches: readonly KVCache[],
  context: number,
  steps: number,
  pipelined: boolean,
  /** Count the weight bytes each launch reads (a launch observer: it slows the recording it watches). */
  countBytes = false,
): Promise<DecodeRun> {
  const { gpu, model, ids } = run;
  const cacheBuffers = new Set(caches.flatMap((c) => [...c.keys, ...c.values]).map((t) => t.buffer));
  const recordMs: number[] = [];
  const replayMs: number[] = [];
  const arrivals: number[] = [];
  let weightBytesRead = 0;
  let counters: number[] = [];
  const snapshot = () => [gpu.dispatchCount, gpu.submitCount, gpu.bindGroupsCreated, weightBytesRead];
  const batch = new DecodeBatch(gpu, model.decoder, caches.length, {
    pipelined,
    onStep: ({ recordMs: ms, replayMs: replay }) => {
      recordMs.push(ms);
      replayMs.push(replay);
      if (recordMs.length === 1) counters = snapshot(); // after the first step: the steady state from here
    },
  });
  const owned: Tensor[] = [];
  // Set before the sequences join: joining records the first steps at once.
  if (countBytes) gpu.launchObserver = (launch) => (weightBytesRead += weightBytesOf(launch, cacheBuffers));
  try {
    const done = caches.map((cache) => {
      cache.length = context;
      const history = gpu.empty([ids.length + steps + 4], "u32", { name: "token history" });
      owned.push(history);
      gpu.write(history, new Uint32Array(ids));
      return new Promise<void>((resolve, reject) => {
        let tokens = 0;
        const sequence: Sequence = {
          cache,
          sampler: new TokenSampler(history, ids.length, { temperature: 0, seed: 0 }),
          lastPosition: context + steps - 1,
          onToken: () => {
            if (cache === caches[0]) arrivals.push(performance.now());
            if (++tokens < steps) return true;
            resolve();
            return false;
          },
          onError: reject,
        };
        batch.join(sequence, ids[0]);
      });
    });
    await Promise.all(done);
  } finally {
    gpu.launchObserver = null;
    await gpu.sync().catch(() => undefined);
    batch.dispose();
    for (const t of owned) t.dispose();
  }
  const after = snapshot();
  // Every step but the first two was recorded after `counters` was taken (the first two are in flight together when pipelined).
  const timed = recordMs.length - 1;
  const per = (i: number) => (after[i] - counters[i]) / timed;
  return {
    stepMs: summarize(arrivals.slice(1).map((t, i) => t - arrivals[i])),
    recordMs: summarize(recordMs.slice(1)),
    replayMs: summarize(replayMs.slice(1)),
    warmupRecordMs: recordMs[0],
    dispatches: per(0),
    submits: per(1),
    bindGroups: per(2),
    weightBytesRead: per(3),
  };
}

/** Dispatches the floor times in all (in passes of the step's length), for a steady median. */
const FLOOR_DISPATCHES = 8192;

/**
 * Decoding at `context`, as generate() decodes (a DecodeBatch): one sequence one token at a
 * time (each step recorded only after the one before was read), the same pipelined, then
 * every batch size in `batches` pipelined, each sequence in its own KV-cache.
 */
async function measureDecode(
  run: Run,
  context: number,
  steps: number,
  decoderBytes: number,
  batches: readonly number[],
): Promise<Pick<E2EResult, "decode" | "perToken" | "batches">> {
  const { gpu, model, progress } = run;
  progress(`decoding ${steps} tokens at context ${context}, one at a time and pipelined`);
  const perLayer = dispatchesPerLayer(run, context);
  const single = await decodeRun(run, [model.cache], context, steps, false);
  const pipelined = await decodeRun(run, [model.cache], context, steps, true, true);
  progress(`decode ${(1000 / pipelined.stepMs.median).toFixed(2)} tokens/s pipelined, ${(1000 / single.stepMs.median).toFixed(2)} one at a time`);
  const perToken = {
    dispatches: single.dispatches,
    dispatchesPerLayer: perLayer,
    submits: single.submits,
    bindGroups: single.bindGroups,
    weightBytesRead: pipelined.weightBytesRead,
    weightReadRatio: pipelined.weightBytesRead / decoderBytes,
    recordMs: single.recordMs,
    warmupRecordMs: single.warmupRecordMs,
    recordUsPerDispatch: (single.replayMs.median * 1000) / single.dispatches,
    dawnFloorUsPerDispatch: await dawnDispatchFloor(gpu, Math.round(single.dispatches), Math.max(5, Math.ceil(FLOOR_DISPATCHES / single.dispatches))),
  };
  const batchResults: E2EResult["batches"] = [];
  for (const size of batches) {
    const extra = Array.from({ length: size - 1 }, () => model.decoder.createCache(model.dtype));
    try {
      const r = size === 1 ? pipelined : await decodeRun(run, [model.cache, ...extra], context, steps, true);
      batchResults.push({ size, msPerStep: r.stepMs, tokensPerSecond: (size * 1000) / r.stepMs.median, dispatchesPerStep: r.dispatches });
      progress(`batch ${size}: ${((size * 1000) / r.stepMs.median).toFixed(2)} tokens/s in all`);
    } finally {
      for (const cache of extra) cache.dispose();
    }
  }
  return {
    decode: {
      context,
      steps,
      msPerToken: pipelined.stepMs,
      tokensPerSecond: 1000 / pipelined.stepMs.median,
      unpipelined: { msPerToken: single.stepMs, tokensPerSecond: 1000 / single.stepMs.median },
    },
    perToken,
    batches: batchResults,
  };
}

export async function runE2E(gpu: Gpu, source: ModelSource, options: E2EOptions = {}): Promise<E2EResult> {
  const started = performance.now();
  const progress = options.onProgress ?? (() => {});
  const isRandom = "shape" in source;
  const name = isRandom ? source.shape : source.path;
  const config = isRandom ? shapeConfig(source.shape) : await loadConfig(source.path);
  if (!hasDecoder(config)) throw new Error(`${name}: a CLIP checkpoint has no decoder to benchmark`);
  const large = !isRandom || source.shape !== "tiny";
  const s = settings(config, isRandom, large, gpu, options);

  if (isRandom && isSoftwareAdapter(gpu)) {
    const plan = { text: s.quantize, vision: s.quantizeVision };
    const needed = memoryEstimate(config, s.dtype!, plan, s.contextLength, s.positions, Math.max(...s.batches));
    const available = availableMemory();
    if (needed > 0.9 * available) {
      throw new Error(
        `${name} in ${s.quantize ?? s.dtype} does not fit: it needs about ${gb(needed)} (weights ${gb(weightBytes(config, s.dtype!, plan))}), and this ` +
          `software adapter's memory is the machine's, of which ${gb(available)} is available` +
          (s.dtype === "f32" && gpu.hasF16 ? "; --dtype f16 halves the weights" : ""),
      );
    }
  }

  const weightsText = s.quantize || s.quantizeVision
    ? [s.quantize && `${s.quantize} decoder matrices`, s.quantizeVision && `${s.quantizeVision} vision matrices`, `${s.dtype} others`].filter(Boolean).join(", ")
    : `${s.dtype} weights`;
  progress(`building ${name} (${describe(config)})${isRandom ? ` with random ${weightsText} on the GPU` : ""}`);
  gpu.pool.resetPeak();
  let model: LlavaModel;
  let weights: WeightStore | null = null;
  if (isRandom) {
    ({ model, weights } = await randomLlava(gpu, config, { dtype: s.dtype!, quantize: s.quantize, quantizeVision: s.quantizeVision, contextLength: s.contextLength, name }));
  } else {
    model = await loadLlava(source.path, { gpu, dtype: s.dtype, contextLength: s.contextLength });
  }
  const owned: Tensor[] = [];
  try {
    progress(`weights ${gb(model.loadReport.weightBytes)} (${describeWeightTypes(model.loadReport.weightTypes)}) ready in ${(model.loadReport.loadMs / 1000).toFixed(1)} s`);
    const ids = promptIds(config.text, model.vision ? model.vision.imageTokenId : null, s.textTokens);
    const history = gpu.empty([ids.length + 1], "u32", { name: "token history" });
    const first = gpu.empty([1], "u32", { name: "first token" });
    owned.push(history, first);
    gpu.write(history, new Uint32Array(ids));
    const run: Run = {
      gpu,
      model,
      weights,
      ids,
      sampler: new TokenSampler(history, ids.length, { temperature: 0, seed: 0 }),
      first,
      repeats: s.repeats,
      sampleLayers: s.sampleLayers,
      contextLength: s.contextLength,
      progress,
    };

    let image: E2EResult["image"] = null;
    const imageFeatures: Tensor[] = [];
    if (model.vision) {
      const measured = await measureImage(run, model.vision, s.features, s.tiles);
      image = measured.image;
      imageFeatures.push(measured.features);
      owned.push(measured.features);
    }
    const { prefill: prefillTiming, followUp: followUpTiming } = await measurePrefill(run, imageFeatures, s.positions);
    const prefill = { ...prefillTiming, positions: s.positions, tokensPerSecond: (s.positions / prefillTiming.ms) * 1000 };
    const nextTurn = { ...followUpTiming, newPositions: FOLLOW_UP_TOKENS, cachedPositions: s.positions };
    progress(`next chat turn: first token ${nextTurn.ms.toFixed(1)} ms after ${FOLLOW_UP_TOKENS} new positions`);
    progress(`prefill ${prefill.method === "estimated" ? "(estimated) " : ""}${prefill.ms.toFixed(1)} ms, ${prefill.tokensPerSecond.toFixed(1)} tokens/s`);
    const decoderBytes = decoderWeightBytes(config, model.dtype, s.quantize, gpu.limits.maxStorageBufferBindingSize);
    const { decode, perToken, batches } = await measureDecode(run, s.context, s.steps, decoderBytes, s.batches);

    const limits = options.limits;
    const compute = (flops: number, phaseMs: number): PhaseRate | null =>
      limits ? { gflops: flops / phaseMs / 1e6, fraction: flops / phaseMs / 1e6 / limits.computeGFlops, of: "the f32 FMA rate" } : null;
    const decodeGBps = decoderBytes / decode.msPerToken.median / 1e6;
    const rates = {
      image: image && config.kind === "llava" ? compute(imageFlops(config, s.features, s.tiles), image.ms) : null,
      prefill: compute(prefillFlops(config.text, s.positions), prefill.ms),
      decode: limits ? { gbps: decodeGBps, fraction: decodeGBps / limits.bandwidthGBps, of: "the bandwidth" } : null,
    };

    return {
      model: name,
      // Packed weights named in the description too, which the markdown shows.
      description: describe(config),
      dtype: model.dtype,
      quantize: s.quantize ?? null,
      quantizeVision: s.quantizeVision ?? null,
      weightTypes: model.loadReport.weightTypes,
      weightBytes: model.loadReport.weightBytes,
      decoderWeightBytes: decoderBytes,
      splitTensors: model.loadReport.splitTensors,
      buildMs: model.loadReport.loadMs,
      image,
      prefill,
      timeToFirstTokenMs: (image?.ms ?? 0) + prefill.ms,
      nextTurn,
      decode,
      perToken,
      batches,
      rates,
      peakMemoryBytes: gpu.memory().peakBytes,
      totalSeconds: (performance.now() - started) / 1000,
    };
  } finally {
    for (const t of owned) t.dispose();
    model.dispose();
    await gpu.sync().catch(() => undefined);
    gpu.pool.trim();
  }
}
