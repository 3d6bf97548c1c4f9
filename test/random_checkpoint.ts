/**
 * Random-weight checkpoints of any shape, written as Hugging Face folders: for tests of the
 * loading and generation machinery, where what the model says does not matter.
 */
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { parseConfig } from "../src/weights/config.js";
import { checkpointNameFor, expectedTensors } from "../src/weights/names.js";
import { writeSafetensors, type TensorToWrite } from "../src/weights/safetensors_writer.js";

export interface RandomCheckpointOptions {
  seed?: number;
  /** Standard deviation of matrix entries (transformers initialises with 0.02). */
  scale?: number;
  /** 0: llava-hf's tensor names; 1: newer transformers' names. */
  scheme?: number;
  /** Canonical names of tensors to leave out (to test missing-weight errors). */
  omit?: readonly string[];
}

/** Writes config.json and model.safetensors for `config` (a config.json object) into `dir`. */
export async function writeRandomCheckpoint(dir: string, config: Record<string, unknown>, options: RandomCheckpointOptions = {}): Promise<void> {
  await mkdir(dir, { recursive: true });
  const configPath = join(dir, "config.json");
  await writeFile(configPath, `${JSON.stringify(config, null, 2)}\n`);
  const parsed = parseConfig(config, configPath);
  const random = gaussian(options.seed ?? 0);
  const scale = options.scale ?? 0.02;
  const tensors: Record<string, TensorToWrite> = {};
  for (const { name, shape } of expectedTensors(parsed)) {
    if (options.omit?.includes(name)) continue;
    const data = new Float32Array(shape.reduce((n, d) => n * d, 1));
    // Norm weights start near 1 (as trained ones are), everything else near 0.
    const isNormWeight = /norm[^.]*\.weight$/.test(name);
    for (let i = 0; i < data.length; i++) data[i] = (isNormWeight ? 1 : 0) + scale * random();
    tensors[checkpointNameFor(parsed, name, options.scheme ?? 0)] = { dtype: "F32", shape, data };
  }
  await writeSafetensors(join(dir, "model.safetensors"), tensors, { format: "pt" });
}

/** A seeded standard normal generator (mulberry32 + Box-Muller). */
function gaussian(seed: number): () => number {
  let a = seed >>> 0;
  const uniform = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), a | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return () => Math.sqrt(-2 * Math.log(1 - uniform())) * Math.cos(2 * Math.PI * uniform());
}
