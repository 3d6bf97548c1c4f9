/**
 * `wgsl-vlm bench limits|kernels|e2e`: how fast hand-written WGSL goes on this GPU.
 *
 * Each subcommand prints a markdown table on stdout (JSON with --json), writes its JSON (and
 * markdown) to the results folder, and reports progress on stderr. `kernels` also draws the
 * roofline chart (SVG and PNG). Every run measures the device's limits first, so each figure
 * can be given as a fraction of them, from the same conditions.
 */
import { mkdir } from "node:fs/promises";
import { basename, join } from "node:path";
import { performance } from "node:perf_hooks";
import { parseArgs } from "node:util";
import { kernelCases } from "../bench/cases.js";
import { describeCheck } from "../bench/check.js";
import { runE2E, type ModelSource } from "../bench/e2e.js";
import { runKernelBench, type KernelResult } from "../bench/kernels.js";
import { measureLimits, type DeviceLimits } from "../bench/limits.js";
import { e2eMarkdown, environment, environmentMarkdown, kernelsMarkdown, limitsMarkdown, ms, num, versionsMarkdown } from "../bench/report.js";
import { rooflineSvg, svgToPng } from "../bench/roofline.js";
import { E2E_SHAPES, isE2EShape, type E2EShape } from "../bench/shapes.js";
import { JSON_CONFIG_FILE } from "../files/limits.js";
import { readTextFileWithin } from "../files/read.js";
import { writeFileSafely } from "../files/write.js";
import type { DType } from "../tensor/dtype.js";
import { Gpu } from "../tensor/gpu.js";
import { measureServeLoad, serveLoadMarkdown } from "../bench/serve_load.js";
import { DEFAULT_SHARD_BYTES, loadMarkdown, measureLoad, temporaryShapeCheckpoint } from "../bench/load.js";
import { MAX_BATCH } from "../models/llava.js";
import { CLIP_SHAPES, clipBenchMarkdown, isClipShape, runClipBench } from "../bench/clip.js";
import { QUANTIZED_TYPES, type QuantizedType } from "../kernels/quant/blocks.js";
import { UsageError, type Command } from "./command.js";
import { loadModelFrom, MODEL_OPTIONS } from "./model_options.js";
import { GPU_OPTIONS, GPU_USAGE, gpuOptions, numberOption } from "./options.js";

const DEFAULT_OUT = join("bench", "results");
/** Buffers of `--sizes tiny`: enough to check that the measurement runs, not to measure. */
const TINY_LIMIT_BYTES = 8 * 2 ** 20;

const COMMON_OPTIONS = {
  ...GPU_OPTIONS,
  quick: { type: "boolean" },
  json: { type: "boolean" },
  out: { type: "string" },
  limits: { type: "string" },
} as const;

const COMMON_USAGE = `  --quick          fewer and shorter measurements (a few minutes on a software GPU); kernels:
                   a selection of the sizes, or with --only every size it names, briefly
  --json           print JSON instead of the markdown table
  --out DIR        where the JSON, markdown and charts go (default ${DEFAULT_OUT}), replacing
                   an earlier run's (never the --limits file)
  --limits FILE    kernels, e2e: take the device's limits from the JSON of an earlier run on
                   this device (limits.json, kernels.json, ...) instead of measuring them first
${GPU_USAGE}`;

/** The quantized types e2e's --dtype takes, as written on the command line. */
const E2E_QUANTIZED = QUANTIZED_TYPES.map((t) => t.toLowerCase());

const USAGE = `usage: wgsl-vlm bench limits [--sizes real|tiny] [options]
       wgsl-vlm bench kernels [--only NAME[,NAME...]] [--dtype f16|f32] [--sizes real|tiny] [options]
       wgsl-vlm bench e2e --shape ${Object.keys(E2E_SHAPES).join("|")} [--dtype f16|f32|${E2E_QUANTIZED.join("|")}] [--vision-dtype TYPE] | --model DIR [--dtype f16|f32] [e2e options] [options]
       wgsl-vlm bench serve --model DIR [--clients LIST] [--requests N] [--max-tokens N] [--json] [--out DIR]
       wgsl-vlm bench clip --shape ${Object.keys(CLIP_SHAPES).join("|")} [--dtype f16|f32] [--quick] [--json] [--out DIR]
       wgsl-vlm bench load --model DIR | --shape ${Object.keys(E2E_SHAPES).join("|")} [--checkpoint-dtype bf16|f16|f32] [--shard-mb N] [--dtype f16|f32] [--json] [--out DIR]

limits    the device's memory bandwidth (a buffer copy; a read-only kernel) and arithmetic rate
          (FMA-bound kernels in f32, and f16 where available)
kernels   every kernel and every numbered version, at the sizes of CLIP ViT-L/14-336, LLaMA-7B and
          TinyLlama-1.1B (prefill of 640 rows, decode of 1 row at context 1024): time, GFLOP/s,
          GB/s, the fraction of the ceiling that binds, and which version the runtime picks (★);
          each version's output is first checked against its float64 reference, and a wrong one
          is reported, not timed (exit status 1); writes roofline.svg and roofline.png
e2e       a whole LLaVA: image encoding, prefill, time to first token, decoding at context 1024
          (pipelined and one token at a time, and the aggregate rate of batches of sequences),
          peak memory, and per decoded token: dispatches (per layer too), submits, weight bytes
          read over the decoder's weight bytes, CPU time recording against Dawn's own per
          dispatch; random weights of a real shape (--shape) built on the GPU, or a real
          checkpoint (--model DIR)
serve     the OpenAI server under load: for each number of concurrent clients (--clients, default
          1,2,4,8), streaming chat requests about a fresh shapes-world image each (--requests per
          level, default 16; --max-tokens, default 32): requests/s, time to first token p50/p99,
          aggregate tokens/s; the model is loaded with --max-batch the most clients and takes
          generate's --dtype and --context
clip      CLIP on its own, random weights of OpenAI's shapes built on the GPU: images and texts
          embedded per second at a few batch sizes (GFLOP/s beside), and the latency of an exact
          search over 100k and 1M vectors (--quick: smaller batches, one timed run each)
load      loading a checkpoint against reading its files: with the page cache dropped first (needs
          root: it drops the whole machine's clean cache) and again warm, a plain read of the
          files and loadModel() (seconds, GB/s, their ratio) and the first token after; --shape
          writes a random checkpoint of that shape to a temporary folder first, in
          --checkpoint-dtype (default bf16) and shards of at most --shard-mb (default 2000)

  --only NAME      kernels matching all of the names: an op (matmul), a version (v2_tiled), a
                   model (tinyllama), a phase (decode) or a part (gate_proj); comma-separated
  --dtype f16|f32  weight and KV-cache storage (default f16 where the GPU has shader-f16)
  --sizes tiny     small buffers and model sizes: checks the suite runs, the figures mean nothing
e2e options:
  --dtype q4_k     with --shape, also any of ${E2E_QUANTIZED.join(", ")}: the decoder's matrices (its
                   embedding table and LM head too) held as ggml's packed blocks of that type, random
                   bytes with fixed scales made on the GPU; the vision tower, projector, norms and
                   KV-cache in f16 (f32 without shader-f16)
  --vision-dtype q8_0  with --shape: the vision tower's and projector's matrices in that type too
                   (a quantized mmproj)
  --context N      context at which decoding is timed (default 1024)
  --decode-steps N decoded tokens timed (default 32; --quick: 8 on the tiny shape, 2 on the others)
  --batches LIST   batch sizes decoded together, comma-separated (default 1,2,4,8,16;
                   --quick beyond the tiny shape: 1,4)
  --text-tokens N  text tokens in the prompt besides the image's features (default 64)
  --repeats N      timed runs of image encoding and prefill (default 3; --quick 1)
  --sample-layers  estimate image encoding and prefill from passes over 0 and 1 layers (the
                   default with --quick beyond the tiny shape; every layer costs the same)
  --all-layers     run every layer even with --quick
${COMMON_USAGE}`;

function progress(line: string): void {
  process.stderr.write(`${line}\n`);
}

function dtypeOption(value: string | undefined, gpu: Gpu): DType {
  if (value === undefined) return gpu.hasF16 ? "f16" : "f32";
  if (value !== "f16" && value !== "f32") throw new UsageError(`--dtype must be f16 or f32, not '${value}'`);
  if (value === "f16" && !gpu.hasF16) throw new UsageError("--dtype f16: this adapter has no shader-f16");
  return value;
}

/** e2e's --dtype: a float dtype, or (for a random shape) a ggml type for the decoder's matrices with the float default for the rest. */
function e2eDtypeOption(value: string | undefined, gpu: Gpu, random: boolean): { dtype?: DType; quantize?: QuantizedType } {
  const quantize = QUANTIZED_TYPES.find((t) => t.toLowerCase() === value?.toLowerCase());
  if (quantize === undefined) {
    if (value !== undefined && value !== "f16" && value !== "f32") throw new UsageError(`--dtype must be f16, f32 or (with --shape) one of ${E2E_QUANTIZED.join(", ")}, not '${value}'`);
    return { dtype: value === undefined ? undefined : dtypeOption(value, gpu) };
  }
  if (!random) throw new UsageError(`--dtype ${value}: random weights of a shape (--shape) only; a quantized checkpoint (GGUF) loads as it is stored`);
  return { quantize };
}

/** e2e's --vision-dtype: (for a random shape) a ggml type for the vision tower's and projector's matrices. */
function e2eVisionDtypeOption(value: string | undefined, random: boolean): QuantizedType | undefined {
  if (value === undefined) return undefined;
  const type = QUANTIZED_TYPES.find((t) => t.toLowerCase() === value.toLowerCase());
  if (type === undefined) throw new UsageError(`--vision-dtype must be one of ${E2E_QUANTIZED.join(", ")}, not '${value}'`);
  if (!random) throw new UsageError(`--vision-dtype ${value}: random weights of a shape (--shape) only; a quantized mmproj loads as it is stored`);
  return type;
}

function sizesOption(value: string | undefined): "real" | "tiny" {
  if (value === undefined || value === "real" || value === "tiny") return value ?? "real";
  throw new UsageError(`--sizes must be real or tiny, not '${value}'`);
}

/**
 * Writes the results into `dir`, each file through a temporary file and a rename. A run replaces
 * its own earlier results, but never the --limits file it read.
 */
async function writeOutputs(dir: string, files: Record<string, string | Buffer>, limitsFile?: string): Promise<void> {
  await mkdir(dir, { recursive: true });
  const inputs = limitsFile === undefined ? [] : [limitsFile];
  for (const [name, content] of Object.entries(files)) await writeFileSafely(join(dir, name), content, { force: true, inputs });
  progress(`wrote ${Object.keys(files).map((f) => join(dir, f)).join(", ")}`);
}

/** The limits from `file` (a limits.json of this device), or measured now. */
async function limitsFor(gpu: Gpu, quick: boolean, tiny: boolean, file?: string): Promise<DeviceLimits> {
  if (file !== undefined) {
    let document: { kind?: string; environment?: { device?: string }; limits?: DeviceLimits };
    try {
      document = JSON.parse(await readTextFileWithin(file, JSON_CONFIG_FILE));
    } catch (error) {
      throw new UsageError(`--limits ${file}: cannot read it as JSON (${(error as Error).message})`);
    }
    if (!["limits", "kernels", "e2e"].includes(document.kind ?? "") || !document.limits) {
      throw new UsageError(`--limits ${file}: not the JSON of a \`wgsl-vlm bench\` run (limits.json, kernels.json, e2e-*.json)`);
    }
    const device = environment(gpu).device;
    if (document.environment?.device !== device) {
      throw new UsageError(`--limits ${file}: measured on ${document.environment?.device ?? "an unknown device"}, not on ${device}`);
    }
    return document.limits;
  }
  progress("measuring the device's limits");
  const limits = await measureLimits(gpu, { quick: quick || tiny, maxBytes: tiny ? TINY_LIMIT_BYTES : undefined });
  progress(
    `  bandwidth ${num(limits.bandwidthGBps)} GB/s (copy ${num(limits.copy.value)}, read ${num(limits.read.value)}), ` +
      `FMA f32 ${num(limits.fmaF32.value)} GFLOP/s${limits.fmaF16 ? `, f16 ${num(limits.fmaF16.value)}` : ""}`,
  );
  return limits;
}

async function limitsCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({ args: argv, options: { ...COMMON_OPTIONS, sizes: { type: "string" } } });
  const tiny = sizesOption(values.sizes) === "tiny";
  const gpu = await Gpu.create(gpuOptions(values));
  try {
    const env = environment(gpu);
    const limits = await limitsFor(gpu, values.quick ?? false, tiny);
    const document = { kind: "limits", environment: env, limits };
    const markdown = `## Device limits\n\n${environmentMarkdown(env)}\n\n${limitsMarkdown(limits)}\n`;
    await writeOutputs(values.out ?? DEFAULT_OUT, { "limits.json": `${JSON.stringify(document, null, 2)}\n`, "limits.md": markdown });
    process.stdout.write(values.json ? `${JSON.stringify(document, null, 2)}\n` : markdown);
    return 0;
  } finally {
    gpu.destroy();
  }
}

async function kernelsCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: { ...COMMON_OPTIONS, only: { type: "string", multiple: true }, dtype: { type: "string" }, sizes: { type: "string" } },
  });
  const only = (values.only ?? []).flatMap((o) => o.split(",")).map((o) => o.trim()).filter((o) => o !== "");
  const sizes = sizesOption(values.sizes);
  const quick = values.quick ?? false;
  const gpu = await Gpu.create(gpuOptions(values));
  try {
    const dtype = dtypeOption(values.dtype, gpu);
    const env = environment(gpu);
    const cases = kernelCases({ dtype, sizes });
    const limits = await limitsFor(gpu, quick, sizes === "tiny", values.limits);
    const started = performance.now();
    const results: KernelResult[] = await runKernelBench(gpu, {
      cases,
      dtype,
      limits,
      quick,
      only,
      // Tiny sizes check that everything runs; a few short samples do.
      timing: sizes === "tiny" ? { repeats: 3, minSampleMs: 1 } : undefined,
      onResult: (r) =>
        progress(
          `  ${r.model} ${r.phase} ${r.op} ${r.shape} ${r.version}${r.picked ? " ★" : ""}: ` +
            (r.time ? `${ms(r.time.median)}, ${num(r.gflops)} GFLOP/s, ${num(r.gbps)} GB/s, checked (${describeCheck(r.check!)})` : `${r.status} (${r.error})`) +
            (r.runtimeError ? `; the runtime's own call failed: ${r.runtimeError}` : ""),
        ),
    });
    if (results.length === 0) throw new UsageError(`--only ${only.join(",")} matches no kernel`);
    progress(`${results.length} measurements in ${num((performance.now() - started) / 1000)} s`);
    const title = `Roofline: ${env.device}, ${dtype} weights, ${env.date.slice(0, 10)}`;
    const svg = rooflineSvg(results, limits, { title });
    const document = { kind: "kernels", environment: env, dtype, quick, only, limits, results };
    const sideBySide = ["matmul", "attention"].map((op) => versionsMarkdown(results, op)).filter(Boolean);
    const markdown =
      `## Kernels\n\n${environmentMarkdown(env)}; ${dtype} weights, f32 activations${quick ? "; --quick" : ""}\n\n` +
      `${limitsMarkdown(limits)}\n\n${sideBySide.map((t) => `${t}\n\n`).join("")}### Every kernel\n\n${kernelsMarkdown(results)}\n`;
    await writeOutputs(values.out ?? DEFAULT_OUT, {
      "kernels.json": `${JSON.stringify(document, null, 2)}\n`,
      "kernels.md": markdown,
      "roofline.svg": svg,
      "roofline.png": await svgToPng(svg),
    }, values.limits);
    process.stdout.write(values.json ? `${JSON.stringify(document, null, 2)}\n` : markdown);
    // A version refusing a shape it was not made for (matvec at 640 rows) is a result; a failure or a wrong output is not.
    const wrong = results.filter((r) => r.status === "wrong");
    if (wrong.length > 0) progress(`WRONG output, not timed: ${wrong.map((r) => `${r.model} ${r.phase} ${r.op} ${r.shape} ${r.version}`).join("; ")}`);
    return results.some((r) => r.status === "failed" || r.status === "wrong") ? 1 : 0;
  } finally {
    gpu.destroy();
  }
}

/** --batches: comma-separated integers in [1, 256]. */
function batchSizes(text: string, option = "batches"): number[] {
  const sizes = text.split(",").map((part) => Number(part.trim()));
  if (sizes.length === 0 || sizes.some((n) => !Number.isInteger(n) || n < 1 || n > MAX_BATCH)) {
    throw new UsageError(`--${option} must be comma-separated integers in [1, ${MAX_BATCH}], not '${text}'`);
  }
  return sizes;
}

async function e2eCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      ...COMMON_OPTIONS,
      shape: { type: "string" },
      model: { type: "string" },
      dtype: { type: "string" },
      "vision-dtype": { type: "string" },
      context: { type: "string" },
      "decode-steps": { type: "string" },
      batches: { type: "string" },
      "text-tokens": { type: "string" },
      repeats: { type: "string" },
      "sample-layers": { type: "boolean" },
      "all-layers": { type: "boolean" },
    },
  });
  if ((values.shape === undefined) === (values.model === undefined)) throw new UsageError("give either --shape or --model");
  if (values.shape !== undefined && !isE2EShape(values.shape)) {
    throw new UsageError(`--shape must be one of ${Object.keys(E2E_SHAPES).join(", ")}, not '${values.shape}'`);
  }
  if (values["sample-layers"] && values["all-layers"]) throw new UsageError("--sample-layers and --all-layers exclude each other");
  const positive = (name: "context" | "decode-steps" | "text-tokens" | "repeats") =>
    values[name] === undefined ? undefined : numberOption(values[name], name, 0, (n) => Number.isInteger(n) && n >= 1);
  const source: ModelSource = values.shape !== undefined ? { shape: values.shape as keyof typeof E2E_SHAPES } : { path: values.model! };
  const quick = values.quick ?? false;
  const gpu = await Gpu.create(gpuOptions(values));
  try {
    const { dtype, quantize } = e2eDtypeOption(values.dtype, gpu, "shape" in source);
    const quantizeVision = e2eVisionDtypeOption(values["vision-dtype"], "shape" in source);
    const env = environment(gpu);
    const limits = await limitsFor(gpu, quick, false, values.limits);
    const result = await runE2E(gpu, source, {
      dtype,
      quantize,
      quantizeVision,
      quick,
      context: positive("context"),
      decodeSteps: positive("decode-steps"),
      batches: values.batches === undefined ? undefined : batchSizes(values.batches),
      textTokens: positive("text-tokens"),
      repeats: positive("repeats"),
      sampleLayers: values["sample-layers"] ? true : values["all-layers"] ? false : undefined,
      limits,
      onProgress: (line) => progress(`  ${line}`),
    });
    const document = { kind: "e2e", environment: env, quick, limits, result };
    const markdown = `## End to end: ${result.model}\n\n${environmentMarkdown(env)}${quick ? "; --quick" : ""}\n\n${e2eMarkdown(result)}\n`;
    // A quantized run's files are named for its type, beside the float run's.
    const suffix = [quantize, quantizeVision && `vision-${quantizeVision}`].filter(Boolean).map((t) => `-${t!.toLowerCase()}`).join("");
    const stem = `e2e-${"shape" in source ? source.shape : basename(source.path)}${suffix}`;
    await writeOutputs(values.out ?? DEFAULT_OUT, { [`${stem}.json`]: `${JSON.stringify(document, null, 2)}\n`, [`${stem}.md`]: markdown }, values.limits);
    process.stdout.write(values.json ? `${JSON.stringify(document, null, 2)}\n` : markdown);
    return 0;
  } finally {
    gpu.destroy();
  }
}

async function serveCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: { ...MODEL_OPTIONS, json: { type: "boolean" }, out: { type: "string" }, clients: { type: "string" }, requests: { type: "string" }, "max-tokens": { type: "string" } },
  });
  const clients = batchSizes(values.clients ?? "1,2,4,8", "clients");
  const requests = numberOption(values.requests, "requests", 16, (n) => Number.isInteger(n) && n >= 1);
  const maxTokens = numberOption(values["max-tokens"], "max-tokens", 32, (n) => Number.isInteger(n) && n >= 1);
  const model = await loadModelFrom(values, { maxBatch: Math.max(...clients) });
  try {
    const name = basename(values.model!);
    const env = environment(model.gpu);
    const levels = await measureServeLoad(model, name, { clients, requests, maxTokens, onProgress: (line) => progress(`  ${line}`) });
    const document = { kind: "serve", environment: env, model: name, maxTokens, levels };
    const markdown = `## Serving: ${name}\n\n${environmentMarkdown(env)}\n\n${serveLoadMarkdown(name, levels, maxTokens)}\n`;
    await writeOutputs(values.out ?? DEFAULT_OUT, { [`serve-${name}.json`]: `${JSON.stringify(document, null, 2)}\n`, [`serve-${name}.md`]: markdown });
    process.stdout.write(values.json ? `${JSON.stringify(document, null, 2)}\n` : markdown);
    return 0;
  } finally {
    model.dispose();
  }
}

async function loadCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: { ...GPU_OPTIONS, model: { type: "string" }, shape: { type: "string" }, "checkpoint-dtype": { type: "string" }, "shard-mb": { type: "string" }, dtype: { type: "string" }, json: { type: "boolean" }, out: { type: "string" } },
  });
  if ((values.shape === undefined) === (values.model === undefined)) throw new UsageError("give either --shape or --model");
  if (values.shape !== undefined && !isE2EShape(values.shape)) throw new UsageError(`--shape must be one of ${Object.keys(E2E_SHAPES).join(", ")}, not '${values.shape}'`);
  const sourceDtype = (values["checkpoint-dtype"] ?? "bf16").toUpperCase();
  if (sourceDtype !== "BF16" && sourceDtype !== "F16" && sourceDtype !== "F32") throw new UsageError(`--checkpoint-dtype must be bf16, f16 or f32, not '${values["checkpoint-dtype"]}'`);
  if (values.dtype !== undefined && values.dtype !== "f16" && values.dtype !== "f32") throw new UsageError(`--dtype must be f16 or f32, not '${values.dtype}'`);
  const shardMb = numberOption(values["shard-mb"], "shard-mb", DEFAULT_SHARD_BYTES / 1e6, (n) => n > 0);
  const made = values.shape !== undefined ? await temporaryShapeCheckpoint(values.shape as E2EShape, sourceDtype, shardMb * 1e6) : null;
  try {
    const dir = made?.dir ?? values.model!;
    const name = made ? `${values.shape} (random ${sourceDtype})` : basename(dir);
    if (made) progress(`wrote a random ${values.shape} checkpoint in ${sourceDtype} to ${dir}`);
    const probe = await Gpu.create(gpuOptions(values));
    const env = environment(probe);
    probe.destroy();
    const result = await measureLoad(dir, name, { ...gpuOptions(values), dtype: values.dtype as DType | undefined, onProgress: (line) => progress(`  ${line}`) });
    const document = { kind: "load", environment: env, result };
    const markdown = `## Loading: ${name}\n\n${environmentMarkdown(env)}\n\n${loadMarkdown(result)}\n`;
    const stem = `load-${values.shape ? `${values.shape}-${sourceDtype.toLowerCase()}` : basename(dir)}`;
    await writeOutputs(values.out ?? DEFAULT_OUT, { [`${stem}.json`]: `${JSON.stringify(document, null, 2)}\n`, [`${stem}.md`]: markdown });
    process.stdout.write(values.json ? `${JSON.stringify(document, null, 2)}\n` : markdown);
    return 0;
  } finally {
    await made?.remove();
  }
}

async function clipCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({ args: argv, options: { ...COMMON_OPTIONS, shape: { type: "string" }, dtype: { type: "string" } } });
  if (values.shape === undefined || !isClipShape(values.shape)) throw new UsageError(`--shape must be one of ${Object.keys(CLIP_SHAPES).join(", ")}, not '${values.shape ?? ""}'`);
  const gpu = await Gpu.create(gpuOptions(values));
  try {
    const dtype = values.dtype === undefined ? undefined : dtypeOption(values.dtype, gpu);
    const env = environment(gpu);
    const result = await runClipBench(gpu, values.shape, { dtype, quick: values.quick, onProgress: (line) => progress(`  ${line}`) });
    const document = { kind: "clip", environment: env, quick: values.quick ?? false, result };
    const markdown = `## CLIP: ${values.shape}\n\n${environmentMarkdown(env)}${values.quick ? "; --quick" : ""}\n\n${clipBenchMarkdown(result)}\n`;
    const stem = values.shape.startsWith("clip-") ? values.shape : `clip-${values.shape}`;
    await writeOutputs(values.out ?? DEFAULT_OUT, { [`${stem}.json`]: `${JSON.stringify(document, null, 2)}\n`, [`${stem}.md`]: markdown });
    process.stdout.write(values.json ? `${JSON.stringify(document, null, 2)}\n` : markdown);
    return 0;
  } finally {
    gpu.destroy();
  }
}

const SUBCOMMANDS: Record<string, (argv: string[]) => Promise<number>> = {
  limits: limitsCommand,
  kernels: kernelsCommand,
  e2e: e2eCommand,
  serve: serveCommand,
  clip: clipCommand,
  load: loadCommand,
};

const command: Command = {
  summary: "benchmarks: the device's limits, every kernel version (roofline), whole models end to end",
  usage: USAGE,
  async run(argv) {
    const [sub, ...rest] = argv;
    const run = sub !== undefined && Object.hasOwn(SUBCOMMANDS, sub) ? SUBCOMMANDS[sub] : undefined;
    if (!run) throw new UsageError(sub === undefined ? "which benchmark? limits, kernels, e2e, serve, clip or load" : `unknown benchmark '${sub}' (limits, kernels, e2e, serve, clip or load)`);
    return run(rest);
  },
};

export default command;
