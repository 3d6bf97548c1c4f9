/** Options and helpers shared by the commands that load a model (generate, chat, eval, bench e2e). */
import { UsageError } from "./command.js";
import { GPU_OPTIONS, GPU_USAGE, numberOption } from "./options.js";
import { performance } from "node:perf_hooks";
import { SingleBar } from "cli-progress";
import { loadModel, type ModelOptions, type VisionLanguageModel } from "../generate/model.js";
import { describeWeightTypes, type LoadProgress } from "../models/load.js";
import { QUANTIZABLE_TYPES } from "../kernels/quant/quantize.js";

export const MODEL_OPTIONS = {
  ...GPU_OPTIONS,
  model: { type: "string" },
  mmproj: { type: "string" },
  dtype: { type: "string" },
  "vision-dtype": { type: "string" },
  context: { type: "string" },
  ctx: { type: "string" },
  quiet: { type: "boolean" },
} as const;

export const MODEL_USAGE = `  --model PATH     a Hugging Face LLaVA or LLaMA folder (config.json, *.safetensors, tokenizer);
                   or llama.cpp's GGUF text model (its mmproj found beside it, or --mmproj), a
                   folder holding the pair, or an Ollama model (ollama:llava, or a manifest)
  --mmproj FILE    the mmproj GGUF (vision tower and projector) of a GGUF text model
  --dtype TYPE     weight storage: f16 or f32 (default: f16 for 16-bit checkpoints when the GPU
                   has shader-f16), or q8_0, q4_0, q4_1, q5_0, q5_1, q4_k, q5_k, q6_k to quantize
                   the decoder's matrices while loading (ggml's quantizers, on the CPU: the K
                   types take minutes per billion weights; GGUF files keep their own types)
  --vision-dtype TYPE  quantize the vision tower's and projector's matrices too, into one of
                   those types (q8_0: half the f16 size; image features move by 1-2%); without
                   it they stay in floats, as in llama.cpp's usual mmproj files
  --context N      positions the KV-cache holds (default: max_position_embeddings, at most 4096; --ctx N too)
  --quiet          no loading progress or statistics on stderr
${GPU_USAGE}`;

export const SAMPLING_OPTIONS = {
  "max-new-tokens": { type: "string" },
  temperature: { type: "string" },
  "top-k": { type: "string" },
  "top-p": { type: "string" },
  "repetition-penalty": { type: "string" },
  seed: { type: "string" },
} as const;

export const SAMPLING_USAGE = `  --max-new-tokens N      at most N tokens (default 256)
  --temperature T         0 is greedy decoding (default 0)
  --top-k K, --top-p P    keep the K most likely tokens / the smallest set with probability P
  --repetition-penalty R  penalise tokens already seen (1 is off)
  --seed S                the sampler's seed (same seed, same text)`;

type Values = Partial<Record<keyof typeof MODEL_OPTIONS | keyof typeof SAMPLING_OPTIONS, string | boolean>>;

function text(values: Values, name: keyof Values): string | undefined {
  const v = values[name];
  return typeof v === "string" ? v : undefined;
}

export function samplingFrom(values: Values) {
  return {
    maxNewTokens: numberOption(text(values, "max-new-tokens"), "max-new-tokens", 256, (n) => Number.isInteger(n) && n >= 1),
    temperature: numberOption(text(values, "temperature"), "temperature", 0, (n) => n >= 0),
    topK: numberOption(text(values, "top-k"), "top-k", 0, (n) => Number.isInteger(n) && n >= 0),
    topP: numberOption(text(values, "top-p"), "top-p", 1, (n) => n > 0 && n <= 1),
    repetitionPenalty: numberOption(text(values, "repetition-penalty"), "repetition-penalty", 1, (n) => n > 0),
    seed: text(values, "seed") === undefined ? undefined : numberOption(text(values, "seed"), "seed", 0, (n) => Number.isInteger(n) && n >= 0 && n < 2 ** 32),
  };
}

/**
 * The loading progress bar on stderr (cli-progress): percentage, GB loaded, GB/s and the time
 * left; redrawn in place on a terminal, a plain line a second otherwise (a log, CI).
 */
function loadingBar(): { update: (p: LoadProgress) => void; stop: () => void } {
  const bar = new SingleBar({
    stream: process.stderr,
    format: "loading weights {bar} {percentage}% | {loadedGB} of {totalGB} GB | {rate} GB/s | {eta_formatted} left",
    noTTYOutput: true,
    notTTYSchedule: 1000,
    hideCursor: false,
    etaBuffer: 64,
  });
  const started = performance.now();
  let running = false;
  return {
    update: ({ loadedBytes, totalBytes }) => {
      const payload = {
        loadedGB: (loadedBytes / 1e9).toFixed(2),
        totalGB: (totalBytes / 1e9).toFixed(2),
        rate: (loadedBytes / 1e6 / Math.max(performance.now() - started, 1)).toFixed(2), // bytes/ms/1e6 = GB/s
      };
      if (!running) {
        bar.start(totalBytes, loadedBytes, payload);
        running = true;
      } else {
        bar.update(loadedBytes, payload);
      }
    },
    stop: () => {
      if (running) bar.stop();
    },
  };
}

export function mb(bytes: number): string {
  return `${(bytes / 1e6).toFixed(1)} MB`;
}

/** Loads the model the options name; `extra` adds loadModel options a command sets itself (serve's maxBatch). */
export async function loadModelFrom(values: Values, extra: Pick<ModelOptions, "maxBatch" | "kvCacheBytes"> = {}): Promise<VisionLanguageModel> {
  const path = text(values, "model");
  if (!path) throw new UsageError("--model DIR is required");
  const dtypeText = text(values, "dtype");
  const quantize = QUANTIZABLE_TYPES.find((t) => t.toLowerCase() === dtypeText);
  if (dtypeText !== undefined && dtypeText !== "f16" && dtypeText !== "f32" && !quantize) {
    throw new UsageError(`--dtype must be f16, f32, ${QUANTIZABLE_TYPES.map((t) => t.toLowerCase()).join(", ")}, not '${dtypeText}'`);
  }
  const dtype = quantize ? undefined : (dtypeText as "f16" | "f32" | undefined);
  const visionText = text(values, "vision-dtype");
  const quantizeVision = QUANTIZABLE_TYPES.find((t) => t.toLowerCase() === visionText);
  if (visionText !== undefined && !quantizeVision) {
    throw new UsageError(`--vision-dtype must be one of ${QUANTIZABLE_TYPES.map((t) => t.toLowerCase()).join(", ")}, not '${visionText}'`);
  }
  if (values.context !== undefined && values.ctx !== undefined) throw new UsageError("give --context or --ctx, not both");
  const contextText = text(values, "context") ?? text(values, "ctx");
  const contextLength = contextText === undefined ? undefined : numberOption(contextText, "context", 0, (n) => Number.isInteger(n) && n >= 1);
  const quiet = values.quiet === true;
  const bar = quiet ? null : loadingBar();
  let model: VisionLanguageModel;
  try {
    model = await loadModel(path, {
      ...extra,
      dtype,
      quantize,
      quantizeVision,
      mmproj: text(values, "mmproj"),
      contextLength,
      adapter: text(values, "adapter"),
      backend: text(values, "backend"),
      onProgress: bar?.update,
    });
  } finally {
    bar?.stop();
  }
  // Warnings are not statistics: --quiet does not silence them.
  for (const warning of model.loadReport.warnings) process.stderr.write(`warning: ${warning}\n`);
  if (!quiet) {
    const r = model.loadReport;
    process.stderr.write(
      `loaded ${path} in ${(r.loadMs / 1000).toFixed(2)} s: ${describeWeightTypes(r.weightTypes)} weights ${mb(r.weightBytes)}, KV-cache ${mb(r.cacheBytes)}, ` +
        `peak GPU memory ${mb(r.peakBytes)} on ${model.gpu.adapter.description || model.gpu.adapter.device}\n`,
    );
  }
  return model;
}
