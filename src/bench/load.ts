/**
 * `wgsl-vlm bench load`: how long a checkpoint takes to become a model, against how long the
 * machine takes merely to read the same files, both measured in the same run.
 *
 * For each of a cold page cache (dropped first, which needs root) and a warm one (the files
 * just read): a plain sequential read of every file into one reused buffer, then loadModel()
 * on the folder, then the time to the first token of a one-word prompt (a prompt of two ids,
 * so no tokenizer is needed). The warm pass is a second load in the same process: it gets the
 * cold pass's device back (Gpu.acquire), with its compiled pipelines. With --shape, a random checkpoint of a real shape is written to a
 * temporary folder first, in BF16, F16 or F32, in shards of at most --shard-mb as the Hub
 * shards them (model-0000i-of-0000n.safetensors and model.safetensors.index.json).
 */
import { randomBytes } from "node:crypto";
import { mkdtemp, open, readdir, rename, rm, stat, writeFile } from "node:fs/promises";
import { execFileSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { loadModel } from "../generate/model.js";
import type { DType } from "../tensor/dtype.js";
import type { GpuOptions } from "../tensor/gpu.js";
import { parseConfig } from "../weights/config.js";
import { checkpointNameFor, expectedTensors } from "../weights/names.js";
import { SAFETENSORS_DTYPES } from "../weights/safetensors.js";
import { writeSafetensors, type TensorToWrite } from "../weights/safetensors_writer.js";
import { E2E_SHAPES, type E2EShape } from "./shapes.js";

export type CheckpointDType = "BF16" | "F16" | "F32";

/** The Hub's shards are a few GB; 2 GB keeps a shard's bytes in memory while it is written. */
export const DEFAULT_SHARD_BYTES = 2e9;
const READ_CHUNK = 8 * 2 ** 20;

export interface LoadPass {
  /** Plain sequential read of every file: seconds and GB/s. */
  readSeconds: number;
  readGBps: number;
  /** loadModel() to a ready model: seconds, GB/s of checkpoint, and over the plain read. */
  loadSeconds: number;
  loadGBps: number;
  loadOverRead: number;
  /** From loaded to the first token of a two-id prompt. */
  firstTokenMs: number;
}

export interface LoadResult {
  model: string;
  checkpointBytes: number;
  files: number;
  /** What the GPU holds. */
  storedDtype: DType;
  cold: LoadPass | null;
  /** Why there is no cold pass (the page cache could not be dropped). */
  coldSkipped?: string;
  warm: LoadPass;
}

/** Writes a random checkpoint of `shape` into `dir`: config.json, shards, and their index. */
export async function writeShapeCheckpoint(dir: string, shape: E2EShape, dtype: CheckpointDType, shardBytes = DEFAULT_SHARD_BYTES): Promise<void> {
  const raw = E2E_SHAPES[shape];
  const config = parseConfig(raw, `the ${shape} shape`);
  await writeFile(join(dir, "config.json"), `${JSON.stringify(raw, null, 2)}\n`);
  const size = SAFETENSORS_DTYPES[dtype];
  // Random bytes are made once and tiled: what a file's bytes are does not change how fast it reads.
  const noise = randomValues(dtype, 1 << 20);
  // Shards are written as they fill (their files numbered once the count is known), so at
  // most one shard's bytes are in memory at a time.
  const files: string[] = [];
  const weightMap: Record<string, string> = {};
  let shard: Record<string, TensorToWrite> = {};
  let inShard = 0;
  let total = 0;
  const flush = async () => {
    const file = `shard-${files.length}.tmp`;
    await writeSafetensors(join(dir, file), shard, { format: "pt" });
    for (const name of Object.keys(shard)) weightMap[name] = file;
    files.push(file);
    shard = {};
    inShard = 0;
  };
  for (const { name, shape: dims } of expectedTensors(config)) {
    const bytes = dims.reduce((n, d) => n * d, 1) * size;
    if (inShard > 0 && inShard + bytes > shardBytes) await flush();
    const data = new Uint8Array(bytes);
    if (/norm[^.]*\.weight$/.test(name)) data.set(fill(dtype, 1, bytes / size));
    else for (let at = 0; at < bytes; at += noise.byteLength) data.set(noise.subarray(0, Math.min(noise.byteLength, bytes - at)), at);
    shard[checkpointNameFor(config, name, 0)] = { dtype, shape: dims, data };
    inShard += bytes;
    total += bytes;
  }
  if (inShard > 0) await flush();
  // The Hub's names: model-0000i-of-0000n.safetensors.
  const names = new Map(files.map((file, i) => [file, `model-${String(i + 1).padStart(5, "0")}-of-${String(files.length).padStart(5, "0")}.safetensors`]));
  for (const [file, final] of names) await rename(join(dir, file), join(dir, final));
  for (const name of Object.keys(weightMap)) weightMap[name] = names.get(weightMap[name])!;
  await writeFile(join(dir, "model.safetensors.index.json"), `${JSON.stringify({ metadata: { total_size: total }, weight_map: weightMap }, null, 2)}\n`);
}

/** `count` small random values (|x| < 0.03) in `dtype`'s bytes. */
function randomValues(dtype: CheckpointDType, count: number): Uint8Array {
  const source = new Float32Array(count);
  const bytes = randomBytes(count * 4);
  for (let i = 0; i < count; i++) source[i] = (bytes.readUInt32LE(i * 4) / 2 ** 32 - 0.5) * 0.06;
  return encode(dtype, source);
}

function fill(dtype: CheckpointDType, value: number, count: number): Uint8Array {
  return encode(dtype, new Float32Array(count).fill(value));
}

function encode(dtype: CheckpointDType, values: Float32Array): Uint8Array {
  if (dtype === "F32") return new Uint8Array(values.buffer);
  const bits = new Uint32Array(values.buffer);
  const out = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) {
    const b = bits[i];
    if (dtype === "BF16") out[i] = b >>> 16;
    else {
      // Small normal values only (|x| < 0.03 or 1): rebias the exponent, truncate the mantissa.
      const exponent = ((b >>> 23) & 0xff) - 127 + 15;
      out[i] = exponent <= 0 ? (b >>> 16) & 0x8000 : ((b >>> 16) & 0x8000) | (exponent << 10) | ((b >>> 13) & 0x3ff);
    }
  }
  return new Uint8Array(out.buffer);
}

/** Drops the page cache (clean pages only, after a sync), or says why it cannot. */
function dropPageCache(): string | null {
  try {
    execFileSync("sync");
    writeFileSync("/proc/sys/vm/drop_caches", "1");
    return null;
  } catch (error) {
    return `the page cache could not be dropped (${(error as NodeJS.ErrnoException).code ?? (error as Error).message}; it needs root on Linux)`;
  }
}

/** The checkpoint's weight files (what a load reads), largest first. */
async function weightFiles(dir: string): Promise<{ path: string; bytes: number }[]> {
  const names = (await readdir(dir)).filter((n) => n.endsWith(".safetensors"));
  const files = await Promise.all(names.map(async (n) => ({ path: join(dir, n), bytes: (await stat(join(dir, n))).size })));
  return files.sort((a, b) => b.bytes - a.bytes);
}

/** Reads every file start to end into one reused buffer: the machine's own rate for these files. */
async function plainRead(files: readonly { path: string }[]): Promise<number> {
  const buffer = new Uint8Array(READ_CHUNK);
  const start = performance.now();
  for (const { path } of files) {
    const handle = await open(path, "r");
    try {
      for (let position = 0; ; ) {
        const { bytesRead } = await handle.read(buffer, 0, buffer.byteLength, position);
        if (bytesRead === 0) break;
        position += bytesRead;
      }
    } finally {
      await handle.close();
    }
  }
  return (performance.now() - start) / 1000;
}

/** A plain read, then a load (the page cache dropped between them when `cold`: the caller dropped it before). */
async function pass(dir: string, bytes: number, files: readonly { path: string }[], options: LoadBenchOptions, cold: boolean): Promise<{ pass: LoadPass; stored: DType }> {
  const readSeconds = await plainRead(files);
  if (cold) dropPageCache();
  const started = performance.now();
  const model = await loadModel(dir, { dtype: options.dtype, adapter: options.adapter, backend: options.backend });
  const loadSeconds = (performance.now() - started) / 1000;
  try {
    const asked = performance.now();
    await model.complete({ promptIds: [1, 2], maxNewTokens: 1 });
    const firstTokenMs = performance.now() - asked;
    return {
      pass: { readSeconds, readGBps: bytes / readSeconds / 1e9, loadSeconds, loadGBps: bytes / loadSeconds / 1e9, loadOverRead: loadSeconds / readSeconds, firstTokenMs },
      stored: model.loadReport.dtype,
    };
  } finally {
    model.dispose();
  }
}

export interface LoadBenchOptions extends GpuOptions {
  dtype?: DType;
  onProgress?: (line: string) => void;
}

/** Measures loading the checkpoint folder `dir`: cold (when the page cache can be dropped), then warm. */
export async function measureLoad(dir: string, name: string, options: LoadBenchOptions = {}): Promise<LoadResult> {
  const files = await weightFiles(dir);
  const bytes = files.reduce((n, f) => n + f.bytes, 0);
  const coldSkipped = dropPageCache(); // the cold pass's first drop, or why there is none
  let cold: LoadPass | null = null;
  if (coldSkipped === null) {
    options.onProgress?.(`cold: reading ${files.length} file(s) (${(bytes / 1e9).toFixed(2)} GB), then loading them`);
    cold = (await pass(dir, bytes, files, options, true)).pass;
  } else {
    options.onProgress?.(`no cold pass: ${coldSkipped}`);
  }
  options.onProgress?.("warm: the files in the page cache");
  const warm = await pass(dir, bytes, files, options, false);
  return { model: name, checkpointBytes: bytes, files: files.length, storedDtype: warm.stored, cold, ...(coldSkipped ? { coldSkipped } : {}), warm: warm.pass };
}

/** A temporary folder holding a random checkpoint of `shape`, removed by the returned function. */
export async function temporaryShapeCheckpoint(shape: E2EShape, dtype: CheckpointDType, shardBytes?: number): Promise<{ dir: string; remove: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), `wgsl-vlm-load-${shape}-`));
  try {
    await writeShapeCheckpoint(dir, shape, dtype, shardBytes);
  } catch (error) {
    await rm(dir, { recursive: true, force: true });
    throw error;
  }
  return { dir, remove: () => rm(dir, { recursive: true, force: true }) };
}

export function loadMarkdown(r: LoadResult): string {
  const row = (label: string, p: LoadPass | null, why?: string) =>
    p
      ? `| ${label} | ${p.readSeconds.toFixed(2)} s (${p.readGBps.toFixed(2)} GB/s) | ${p.loadSeconds.toFixed(2)} s (${p.loadGBps.toFixed(2)} GB/s) | ${p.loadOverRead.toFixed(2)}× | ${p.firstTokenMs.toFixed(0)} ms |`
      : `| ${label} | (${why}) | | | |`;
  return [
    `${r.model}: ${(r.checkpointBytes / 1e9).toFixed(2)} GB in ${r.files} file(s), stored on the GPU as ${r.storedDtype}`,
    "",
    "| page cache | plain read of the files | loadModel() | load / read | first token after |",
    "| --- | --- | --- | --- | --- |",
    row("cold", r.cold, r.coldSkipped),
    row("warm", r.warm),
  ].join("\n");
}
