/** Options and loading shared by the CLIP commands (embed, classify, index, search). */
import { performance } from "node:perf_hooks";
import { stat } from "node:fs/promises";
import { loadClip, type Clip } from "../embed/clip.js";
import { UsageError } from "./command.js";
import { GPU_OPTIONS, GPU_USAGE, gpuOptions } from "./options.js";
import { mb } from "./model_options.js";

export const CLIP_OPTIONS = {
  ...GPU_OPTIONS,
  model: { type: "string" },
  dtype: { type: "string" },
  quiet: { type: "boolean" },
} as const;

/** The options after --model. */
export const CLIP_LOAD_USAGE = `  --dtype f16|f32  weight storage (default: f16 for 16-bit checkpoints where the GPU has shader-f16)
  --quiet          no loading line on stderr
${GPU_USAGE}`;

export const CLIP_USAGE = `  --model DIR      a Hugging Face CLIPModel folder (config.json with model_type "clip",
                   *.safetensors, vocab.json + merges.txt, preprocessor_config.json)
${CLIP_LOAD_USAGE}`;

type Values = { model?: string; dtype?: string; quiet?: boolean; adapter?: string; backend?: string };

/** The CLIP model `--model` names (or `fallback`, e.g. the one an index was made with). */
export async function loadClipFrom(values: Values, fallback?: string): Promise<{ clip: Clip; folder: string }> {
  const folder = values.model ?? fallback;
  if (!folder) throw new UsageError("--model DIR is required");
  if (!(await stat(folder).catch(() => undefined))?.isDirectory()) throw new UsageError(`--model: no such folder: ${folder}`);
  const dtype = values.dtype;
  if (dtype !== undefined && dtype !== "f16" && dtype !== "f32") throw new UsageError(`--dtype must be f16 or f32, not '${dtype}'`);
  const started = performance.now();
  const clip = await loadClip(folder, { ...gpuOptions(values), dtype });
  if (!values.quiet) {
    const r = clip.model.loadReport;
    process.stderr.write(`loaded ${folder} in ${((performance.now() - started) / 1000).toFixed(2)} s: ${mb(r.weightBytes)} of ${clip.model.dtype} weights, ${clip.dimensions}-dimensional embeddings\n`);
    for (const warning of r.warnings) process.stderr.write(`warning: ${warning}\n`);
  }
  return { clip, folder };
}
