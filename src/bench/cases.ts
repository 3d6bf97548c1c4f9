/**
 * The kernel benchmark's cases: every kernel of the runtime, at the sizes three real models give
 * it, with what each must compute (cost.ts), how to launch each of its versions, and how to
 * check their output against the kernel's float64 reference (case_checks.ts).
 *
 *   CLIP ViT-L/14 at 336 px   the image encoder of llava-1.5 and TinyLLaVA: 577 tokens (576
 *                             patches and the class token), hidden 1024, 16 heads, MLP 4096
 *   LLaMA-7B                  llava-1.5-7b's decoder: hidden 4096, MLP 11008, 32 heads, vocab 32000
 *   TinyLlama-1.1B            TinyLLaVA's decoder: hidden 2048, MLP 5632, 32 heads, 4 KV heads
 *
 * The decoders run in two phases: prefill, a whole prompt at once (576 image features and 64
 * text tokens: 640 rows), and decode, one row at a time over a context of 1024 positions.
 * Activations are f32 (as in the models); weights and the KV-cache take the chosen dtype.
 *
 * Matrix products and attention come in numbered versions (MATMUL_VERSIONS, ATTENTION_VERSIONS):
 * every version registered there is measured, and the call the runtime itself makes is run too,
 * so its launches tell which version the runtime's rule picks for that shape.
 */
import { activation, activationReference, siluMul, siluMulReference, type ActivationKind } from "../kernels/activations.js";
import { argmax } from "../kernels/argmax.js";
import { attention, ATTENTION_VERSIONS, attentionVersionSupported, type AttentionOptions, type AttentionVersion } from "../kernels/attention/index.js";
import { add, binaryReference } from "../kernels/elementwise.js";
import { writeKV } from "../kernels/kv_cache.js";
import { layernorm, layernormReference } from "../kernels/layernorm.js";
import { GATED_VERSIONS, gatedLinear } from "../kernels/matmul/gated_matvec.js";
import { fixedSubgroupSize, MATMUL_VERSIONS, matmulVersionSupported, type MatmulVersion } from "../kernels/matmul/index.js";
import { QKV_VERSIONS, qkvLinear } from "../kernels/matmul/qkv_matvec.js";
import { patchEmbed } from "../kernels/patch_embed.js";
import type { QuantizedType } from "../kernels/quant/blocks.js";
import { quantizedRowBytes, type QuantizedMatrix } from "../kernels/quant/matvec_common.js";
import { quantizedMatvec } from "../kernels/quant/matvec_v1_blocks.js";
import { quantizedMatvecWords } from "../kernels/quant/matvec_v2_words.js";
import { quantizedMatvecUnrolled } from "../kernels/quant/matvec_v3_unrolled.js";
import { quantizedLinear, quantizedMatmulSubgroup, quantizedMatmulTiled, quantizedMatvecSubgroup } from "../kernels/quant/index.js";
import { randomBlocksReference } from "../kernels/quant/random_blocks.js";
import { randomFill } from "../kernels/random_fill.js";
import { rmsnorm, rmsnormReference } from "../kernels/rmsnorm.js";
import { rope, ropeTable } from "../kernels/rope.js";
import { SAMPLE_VERSIONS, sampleToken, type SampleOptions } from "../kernels/sample/index.js";
import { softmax, softmaxReference } from "../kernels/softmax.js";
import { storageTolerance, TOLERANCE } from "../kernels/tolerance.js";
import { EmbeddingTable, Linear, type RowPart } from "../models/linear.js";
import { partRows } from "../models/load.js";
import { bytesPerElement, type DType } from "../tensor/dtype.js";
import type { Gpu } from "../tensor/gpu.js";
import { Tensor } from "../tensor/tensor.js";
import {
  checkArgmax,
  checkAttention,
  checkEmbedding,
  checkGated,
  checkMatmul,
  checkPatchEmbed,
  checkQkv,
  checkQuantizedMatvec,
  checkRope,
  checkRows,
  checkSample,
  checkWriteKV,
} from "./case_checks.js";
import { readAll, type OutputCheck } from "./check.js";
import {
  attentionCost,
  elementwiseCost,
  matmulCost,
  movementCost,
  normCost,
  type AttentionShape,
  type Cost,
} from "./cost.js";

export type Phase = "image" | "prefill" | "decode";

/** One kernel at one size, ready to be prepared on a GPU. */
export interface KernelCase {
  /** The kernel (its runtime function's name). */
  op: string;
  model: string;
  phase: Phase;
  /** Which part of the model, e.g. "mlp.gate_proj, up_proj". */
  what: string;
  /** The size, e.g. "640×11008×4096". */
  shape: string;
  cost: Cost;
  /** Bytes of one copy of the inputs. */
  inputBytes: number;
  /** Part of the --quick selection. */
  quick: boolean;
  /** Names of the versions, in registry order. */
  versionNames: string[];
  /** Whether a version can run on this device at all (some need features the device may lack). */
  supports(gpu: Gpu, version: string): boolean;
  /** Allocates `copies` copies of the inputs. */
  prepare(gpu: Gpu, copies: number): PreparedCase;
  /**
   * This case with version `name` (new, or replacing one) made of version `of` with `alter`
   * applied to its output: the seam through which a test gives the check a wrong version.
   */
  withAlteredVersion(name: string, of: string, alter: (output: Tensor) => Tensor): KernelCase;
}

export interface PreparedCase {
  /** Records one run of a version on input copy `run % copies`; its results are freed at once. */
  versions: Record<string, (run: number) => void>;
  /** Records the runtime's own call (null for kernels with a single version). */
  runtime: ((run: number) => void) | null;
  /**
   * Records one run of a version on input copy 0 and keeps its output; the function returned,
   * called once the GPU has run it, compares that output with the kernel's float64 reference
   * (check.ts) and frees it.
   */
  recordChecked(version: string): () => Promise<OutputCheck>;
  dispose(): void;
}

export interface CaseOptions {
  /** Storage dtype of weights and the KV-cache. */
  dtype: DType;
  /** "real": the three models' sizes; "tiny": small stand-ins, to check the suite runs (quickly, meaninglessly). */
  sizes?: "real" | "tiny";
}

export interface VisionSize {
  name: string;
  /** Patches and the class token. */
  tokens: number;
  hidden: number;
  heads: number;
  mlp: number;
  patch: number;
  image: number;
}

export interface ModelSize {
  name: string;
  hidden: number;
  mlp: number;
  heads: number;
  kvHeads: number;
  vocab: number;
}

export const CLIP_L_336: VisionSize = { name: "CLIP ViT-L/14-336", tokens: 577, hidden: 1024, heads: 16, mlp: 4096, patch: 14, image: 336 };
export const LLAMA_7B: ModelSize = { name: "LLaMA-7B", hidden: 4096, mlp: 11008, heads: 32, kvHeads: 32, vocab: 32000 };
export const TINYLLAMA: ModelSize = { name: "TinyLlama-1.1B", hidden: 2048, mlp: 5632, heads: 32, kvHeads: 4, vocab: 32000 };

/** The stand-ins of `sizes: "tiny"`. */
const CLIP_TINY: VisionSize = { name: "CLIP tiny", tokens: 17, hidden: 64, heads: 4, mlp: 128, patch: 8, image: 32 };
const DECODER_TINY: ModelSize = { name: "LLaMA tiny", hidden: 64, mlp: 96, heads: 4, kvHeads: 2, vocab: 512 };

/** Rows of a prefill: 576 image features and 64 text tokens. */
export const PREFILL_ROWS = 640;
/** Context that decoding attends over. */
export const DECODE_CONTEXT = 1024;

const WEIGHT_STD = 0.02;
/** The norms' epsilon and RoPE's base, as in LLaMA and CLIP. */
const EPS = 1e-5;
const ROPE_THETA = 10000;
let nextSeed = 1;

/** A tensor of random values (weights get transformers' initial scale, activations 1). */
function random(gpu: Gpu, shape: number[], dtype: DType, std = 1, persistent = false): Tensor {
  return randomFill(gpu.empty(shape, dtype, { name: "bench input", persistent }), { seed: nextSeed++ >>> 0, std });
}

/** A matrix as the runtime stores it: row parts, each within one storage binding. */
function randomRowParts(gpu: Gpu, rows: number, cols: number, dtype: DType, bias: boolean, what: string): RowPart<Tensor>[] {
  const limit = gpu.limits.maxStorageBufferBindingSize;
  return partRows(rows, cols * bytesPerElement(dtype), limit, what).map(([start, end]) => ({
    weight: random(gpu, [end - start, cols], dtype, WEIGHT_STD, true),
    bias: bias ? random(gpu, [end - start], dtype, WEIGHT_STD, true) : null,
    rowStart: start,
  }));
}

function collectTensors(value: unknown, into: Tensor[]): void {
  if (value instanceof Tensor) into.push(value);
  else if (Array.isArray(value)) for (const v of value) collectTensors(v, into);
  else if (value && typeof value === "object") for (const v of Object.values(value)) collectTensors(v, into);
}

/** What a case says of itself (as KernelCase), how to make its inputs, run its versions and check their output. */
interface CaseSpec<I, O extends Tensor | void> extends Pick<KernelCase, "op" | "model" | "phase" | "what" | "shape" | "cost" | "inputBytes"> {
  quick?: boolean;
  inputs: (gpu: Gpu) => I;
  /** Each version: launches on one copy of the inputs, returning its output (what to free), if it has one apart from its inputs. */
  versions: Record<string, (inputs: I) => O>;
  /** The runtime's own call, where there are several versions. */
  runtime?: (inputs: I) => O;
  supports?: (gpu: Gpu, version: string) => boolean;
  /** Compares what a version computed from `inputs` (its output, or the inputs it wrote to) with the kernel's reference. */
  check: (inputs: I, output: O) => Promise<OutputCheck>;
}

function defineCase<I, O extends Tensor | void = Tensor>(spec: CaseSpec<I, O>): KernelCase {
  const launch = (fn: (inputs: I) => O, copies: I[]) => (run: number) => {
    const out = fn(copies[run % copies.length]);
    if (out) out.dispose(); // safe while pending: a later user of the buffer runs after this launch
  };
  const supports = spec.supports ?? (() => true);
  return {
    op: spec.op,
    model: spec.model,
    phase: spec.phase,
    what: spec.what,
    shape: spec.shape,
    cost: spec.cost,
    inputBytes: spec.inputBytes,
    quick: spec.quick ?? false,
    versionNames: Object.keys(spec.versions),
    supports,
    prepare(gpu, count) {
      const copies = Array.from({ length: count }, () => spec.inputs(gpu));
      const kept: Tensor[] = [];
      return {
        versions: Object.fromEntries(Object.entries(spec.versions).map(([name, fn]) => [name, launch(fn, copies)])),
        runtime: spec.runtime ? launch(spec.runtime, copies) : null,
        recordChecked(version) {
          const output = spec.versions[version](copies[0]);
          if (output) kept.push(output);
          return () => spec.check(copies[0], output).finally(() => output && output.dispose());
        },
        dispose() {
          const tensors: Tensor[] = [...kept];
          collectTensors(copies, tensors);
          for (const t of tensors) t.dispose();
        },
      };
    },
    withAlteredVersion(name, of, alter) {
      const original = spec.versions[of];
      if (!original) throw new Error(`${spec.op} ${spec.shape}: no version '${of}' to alter (it has ${Object.keys(spec.versions).join(", ")})`);
      const altered = (inputs: I): O => {
        const output: Tensor | void = original(inputs);
        if (!output) throw new Error(`${spec.op} ${of}: writes into its inputs, so it has no output to alter`);
        const changed = alter(output);
        if (changed !== output) output.dispose();
        return changed as O;
      };
      return defineCase({ ...spec, versions: { ...spec.versions, [name]: altered }, supports: (gpu, v) => supports(gpu, v === name ? of : v) });
    },
  };
}

// ------------------------------------------------------------------ matmul

/** A version applied to a weight in row parts, the way Linear.forward applies the runtime's rule. */
function matmulInParts(version: MatmulVersion, a: Tensor, parts: readonly RowPart<Tensor>[], N: number): Tensor {
  if (parts.length === 1) return version(a, parts[0].weight, { bias: parts[0].bias });
  const out = a.gpu.empty([a.dim(0), N], "f32", { name: "bench matmul" });
  for (const part of parts) version(a, part.weight, { bias: part.bias, out, outColumn: part.rowStart });
  return out;
}

function matmulCase(model: string, phase: Phase, what: string, M: number, N: number, K: number, bias: boolean, dtype: DType, quick = false): KernelCase {
  type Inputs = { a: Tensor; parts: RowPart<Tensor>[] };
  return defineCase<Inputs>({
    op: "matmul",
    model,
    phase,
    what,
    shape: `${M}×${N}×${K}`,
    cost: matmulCost(M, N, K, { a: "f32", b: dtype, c: "f32", bias }),
    inputBytes: M * K * 4 + (N * K + (bias ? N : 0)) * bytesPerElement(dtype),
    quick,
    inputs: (gpu) => ({ a: random(gpu, [M, K], "f32"), parts: randomRowParts(gpu, N, K, dtype, bias, what) }),
    versions: Object.fromEntries(
      Object.entries(MATMUL_VERSIONS).map(([name, version]) => [name, ({ a, parts }: Inputs) => matmulInParts(version, a, parts, N)]),
    ),
    runtime: ({ a, parts }) => new Linear(parts, what).forward(a),
    supports: matmulVersionSupported,
    check: ({ a, parts }, out) => checkMatmul(a, parts, out),
  });
}

// ------------------------------------------------------------------ quantized weights

/** The quantized matvec's versions (kernels/quant); quantizedLinear is the runtime's rule (kernels/quant/index.ts). */
const QUANTIZED_MATVEC_VERSIONS = {
  qmatvec_v1_blocks: quantizedMatvec,
  qmatvec_v2_words: quantizedMatvecWords,
  qmatvec_v3_unrolled: quantizedMatvecUnrolled,
  qmatvec_v4_subgroup: (gpu: Gpu, a: Tensor, w: QuantizedMatrix) => quantizedMatvecSubgroup(gpu, a, w),
};

/** The quantized matmul's versions, for prefill. */
const QUANTIZED_MATMUL_VERSIONS = {
  qmatmul_v1_tiled: quantizedMatmulTiled,
  qmatmul_v2_subgroup: (gpu: Gpu, a: Tensor, w: QuantizedMatrix) => quantizedMatmulSubgroup(gpu, a, w),
};

/**
 * M rows of activations against an [N, K] weight in ggml's blocks, read where it lies: one
 * row is decoding from a GGUF file (the matvec versions), many a prefill (the tiled matmul).
 */
function quantizedProductCase(model: string, what: string, type: QuantizedType, M: number, N: number, K: number, quick = false): KernelCase {
  type Inputs = { a: Tensor; weight: QuantizedMatrix; bytes: Uint8Array };
  const packed = N * quantizedRowBytes(type, K);
  const versions = M === 1 ? QUANTIZED_MATVEC_VERSIONS : QUANTIZED_MATMUL_VERSIONS;
  return defineCase<Inputs>({
    op: M === 1 ? "quantizedMatvec" : "quantizedMatmul",
    model,
    phase: M === 1 ? "decode" : "prefill",
    what: `${what}, ${type}`,
    shape: `${M}×${N}×${K}`,
    cost: { flops: 2 * M * N * K, bytes: M * K * 4 + packed + M * N * 4 },
    inputBytes: M * K * 4 + packed,
    quick,
    inputs: (gpu) => {
      // (On the CPU, since the check dequantizes them; the bytes randomBlocks makes on the GPU.)
      const bytes = randomBlocksReference(type, N, K, { seed: nextSeed++ });
      const words = new Uint32Array(bytes.buffer); // (padded to whole words)
      const data = gpu.tensor(words, [words.length], "u32", { name: `${what} ${type}`, persistent: true });
      return { a: random(gpu, [M, K], "f32"), weight: { type, rows: N, cols: K, data }, bytes };
    },
    versions: Object.fromEntries(Object.entries(versions).map(([name, run]) => [name, ({ a, weight }: Inputs) => run(a.gpu, a, weight)])),
    runtime: ({ a, weight }) => quantizedLinear(a, weight),
    supports: (gpu, version) => !version.endsWith("_subgroup") || fixedSubgroupSize(gpu) !== null,
    check: ({ a, bytes }, out) => checkQuantizedMatvec(a, type, bytes, out),
  });
}

/**
 * The decoder projections of decoding, and q/o of a prefill of `prefillRows`, in the weight
 * types of llama.cpp's common files (Q4_K_M mixes Q4_K and Q6_K).
 */
function quantizedCases(size: ModelSize, quick: boolean, prefillRows: number): KernelCase[] {
  const types: QuantizedType[] = ["Q8_0", "Q4_0", "Q4_K", "Q6_K"];
  return types.flatMap((type) => [
    quantizedProductCase(size.name, "q, o_proj", type, 1, size.hidden, size.hidden, quick),
    quantizedProductCase(size.name, "mlp.gate_proj, up_proj", type, 1, size.mlp, size.hidden),
    quantizedProductCase(size.name, "mlp.down_proj", type, 1, size.hidden, size.mlp),
    quantizedProductCase(size.name, "q, o_proj", type, prefillRows, size.hidden, size.hidden, quick),
  ]);
}

// ------------------------------------------------------------------ fused projections

/** Whether a fused version can run here (the _v2_subgroup ones need a fixed subgroup size). */
const fusedSupported = (gpu: Gpu, version: string) => !version.endsWith("_subgroup") || fixedSubgroupSize(gpu) !== null;

/** gate and up in one launch with silu(gate)·up as the epilogue (gated_matvec.ts), against the unfused three. */
function gatedCase(model: string, phase: Phase, M: number, N: number, K: number, dtype: DType): KernelCase {
  type Inputs = { x: Tensor; gate: Tensor; up: Tensor };
  const one = matmulCost(M, N, K, { a: "f32", b: dtype, c: "f32" });
  return defineCase<Inputs>({
    op: "gatedLinear",
    model,
    phase,
    what: "mlp.gate_proj, up_proj, silu(gate)·up",
    shape: `${M}×${N}×${K}`,
    // Two products and silu·mul; the weights twice, x once, the output once.
    cost: { flops: 2 * one.flops + 4 * M * N, bytes: 2 * N * K * bytesPerElement(dtype) + M * K * 4 + M * N * 4 },
    inputBytes: M * K * 4 + 2 * N * K * bytesPerElement(dtype),
    inputs: (gpu) => ({ x: random(gpu, [M, K], "f32"), gate: random(gpu, [N, K], dtype, WEIGHT_STD, true), up: random(gpu, [N, K], dtype, WEIGHT_STD, true) }),
    versions: Object.fromEntries(Object.entries(GATED_VERSIONS).map(([name, version]) => [name, ({ x, gate, up }: Inputs) => version(x, gate, up)])),
    runtime: ({ x, gate, up }) => gatedLinear(x, gate, up),
    supports: fusedSupported,
    check: ({ x, gate, up }, out) => checkGated(x, gate, up, out),
  });
}

/** q, k and v projections in one launch (qkv_matvec.ts), against one matmul each. */
function qkvCase(model: string, phase: Phase, M: number, Nq: number, Nkv: number, K: number, dtype: DType): KernelCase {
  type Inputs = { x: Tensor; weights: Tensor[] };
  const N = Nq + 2 * Nkv;
  return defineCase<Inputs>({
    op: "qkvLinear",
    model,
    phase,
    what: "q_proj, k_proj, v_proj into one output",
    shape: `${M}×(${Nq}+${Nkv}+${Nkv})×${K}`,
    cost: matmulCost(M, N, K, { a: "f32", b: dtype, c: "f32" }),
    inputBytes: M * K * 4 + N * K * bytesPerElement(dtype),
    inputs: (gpu) => ({ x: random(gpu, [M, K], "f32"), weights: [Nq, Nkv, Nkv].map((rows) => random(gpu, [rows, K], dtype, WEIGHT_STD, true)) }),
    versions: Object.fromEntries(
      Object.entries(QKV_VERSIONS).map(([name, version]) => [name, ({ x, weights }: Inputs) => version(x, weights.map((weight) => ({ weight })))]),
    ),
    runtime: ({ x, weights }) => qkvLinear(x, weights.map((weight) => ({ weight }))),
    supports: fusedSupported,
    check: ({ x, weights }, out) => checkQkv(x, weights, out),
  });
}

// ------------------------------------------------------------------ attention

function attentionCase(model: string, phase: Phase, shape: AttentionShape, layout: "tokens" | "cache", kvDtype: DType, quick = false): KernelCase {
  const { queries: S, heads: H, kvHeads: Hkv, headDim: D, kvLength: T } = shape;
  type Inputs = { q: Tensor; k: Tensor; v: Tensor };
  const options: AttentionOptions =
    layout === "tokens" ? { layout: "tokens", causal: shape.causal } : { layout: "cache", length: T, causal: shape.causal, queryOffset: T - S };
  const kvShape = layout === "tokens" ? [T, Hkv, D] : [Hkv, T, D];
  return defineCase<Inputs>({
    op: "attention",
    model,
    phase,
    what: `${layout === "cache" ? "over the KV-cache, " : ""}${shape.causal ? "causal" : "bidirectional"}, ${H} heads${Hkv !== H ? ` (${Hkv} KV)` : ""} of ${D}`,
    shape: `${S} q × ${T} k`,
    cost: attentionCost(shape, { q: "f32", kv: kvDtype, out: "f32" }),
    inputBytes: 2 * S * H * D * 4 + 2 * T * Hkv * D * bytesPerElement(kvDtype),
    quick,
    inputs: (gpu) => ({ q: random(gpu, [S, H, D], "f32"), k: random(gpu, kvShape, kvDtype), v: random(gpu, kvShape, kvDtype) }),
    versions: Object.fromEntries(
      Object.entries(ATTENTION_VERSIONS).map(([name, version]) => [name, ({ q, k, v }: Inputs) => version(q, k, v, options)]),
    ),
    runtime: ({ q, k, v }) => attention(q, k, v, options),
    supports: (gpu, version) => attentionVersionSupported(gpu, version as AttentionVersion),
    check: ({ q, k, v }, out) => checkAttention(q, k, v, options, out),
  });
}

// ------------------------------------------------------------------ the single-version kernels

function rmsnormCase(model: string, phase: Phase, rows: number, cols: number, dtype: DType, quick = false): KernelCase {
  return defineCase({
    op: "rmsnorm",
    model,
    phase,
    what: "input_layernorm, post_attention_layernorm, norm",
    shape: `${rows}×${cols}`,
    cost: normCost(rows, cols, 4, "f32", [dtype], "f32"),
    inputBytes: rows * cols * 4 + cols * bytesPerElement(dtype),
    quick,
    inputs: (gpu) => ({ x: random(gpu, [rows, cols], "f32"), weight: random(gpu, [cols], dtype) }),
    versions: { rmsnorm: ({ x, weight }) => rmsnorm(x, weight, EPS) },
    check: async ({ x, weight }, out) => {
      const w = await readAll(weight);
      return checkRows(out, [x], ([xs]) => ({ expected: rmsnormReference(xs, w, cols, EPS), tolerance: storageTolerance("f32", dtype) }));
    },
  });
}

function layernormCase(model: string, rows: number, cols: number, dtype: DType, quick = false): KernelCase {
  return defineCase({
    op: "layernorm",
    model,
    phase: "image",
    what: "layer_norm1, layer_norm2, pre_layrnorm",
    shape: `${rows}×${cols}`,
    cost: normCost(rows, cols, 8, "f32", [dtype, dtype], "f32"),
    inputBytes: rows * cols * 4 + 2 * cols * bytesPerElement(dtype),
    quick,
    inputs: (gpu) => ({ x: random(gpu, [rows, cols], "f32"), weight: random(gpu, [cols], dtype), bias: random(gpu, [cols], dtype) }),
    versions: { layernorm: ({ x, weight, bias }) => layernorm(x, weight, bias, EPS) },
    check: async ({ x, weight, bias }, out) => {
      const [w, b] = [await readAll(weight), await readAll(bias)];
      return checkRows(out, [x], ([xs]) => ({ expected: layernormReference(xs, w, b, cols, EPS), tolerance: storageTolerance("f32", dtype) }));
    },
  });
}

function addCase(model: string, phase: Phase, rows: number, cols: number): KernelCase {
  return defineCase({
    op: "add",
    model,
    phase,
    what: "residual connections",
    shape: `${rows}×${cols}`,
    cost: elementwiseCost(rows * cols, 1, ["f32", "f32"], "f32"),
    inputBytes: 2 * rows * cols * 4,
    inputs: (gpu) => ({ a: random(gpu, [rows, cols], "f32"), b: random(gpu, [rows, cols], "f32") }),
    versions: { add: ({ a, b }) => add(a, b) },
    check: ({ a, b }, out) => checkRows(out, [a, b], ([as, bs]) => ({ expected: binaryReference("add", as, bs), tolerance: TOLERANCE.f32 })),
  });
}

function siluMulCase(model: string, phase: Phase, rows: number, cols: number, quick = false): KernelCase {
  return defineCase({
    op: "siluMul",
    model,
    phase,
    what: "silu(gate)·up",
    shape: `${rows}×${cols}`,
    // silu(g)·u = g / (1 + exp(-g)) · u: exp, add, divide, multiply.
    cost: elementwiseCost(rows * cols, 4, ["f32", "f32"], "f32"),
    inputBytes: 2 * rows * cols * 4,
    quick,
    inputs: (gpu) => ({ gate: random(gpu, [rows, cols], "f32"), up: random(gpu, [rows, cols], "f32") }),
    versions: { siluMul: ({ gate, up }) => siluMul(gate, up) },
    check: ({ gate, up }, out) => checkRows(out, [gate, up], ([g, u]) => ({ expected: siluMulReference(g, u), tolerance: TOLERANCE.f32 })),
  });
}

function activationCase(model: string, phase: Phase, what: string, kind: ActivationKind, rows: number, cols: number, quick = false): KernelCase {
  return defineCase({
    op: "activation",
    model,
    phase,
    what: `${kind} (${what})`,
    shape: `${rows}×${cols}`,
    // quick_gelu x·σ(1.702x): multiply, exp, add, divide, multiply; gelu 0.5·x·(1 + erf(x/√2)) alike.
    cost: elementwiseCost(rows * cols, 5, ["f32"], "f32"),
    inputBytes: rows * cols * 4,
    quick,
    inputs: (gpu) => ({ x: random(gpu, [rows, cols], "f32") }),
    versions: { [kind]: ({ x }) => activation(x, kind) },
    check: ({ x }, out) => checkRows(out, [x], ([xs]) => ({ expected: activationReference(xs, kind), tolerance: TOLERANCE.f32 })),
  });
}

function ropeCase(model: string, phase: Phase, size: ModelSize, rows: number, position: number): KernelCase {
  const D = size.hidden / size.heads;
  const count = rows * size.heads * D;
  return defineCase({
    op: "rope",
    model,
    phase,
    what: "rotary positions of q (k alike)",
    shape: `${rows}×${size.heads}×${D}`,
    // Per rotated pair: 4 multiplies and 2 adds; the table's rows for these positions are read once.
    cost: { flops: 3 * count, bytes: count * 8 + rows * D * 4 },
    inputBytes: count * 4 + (position + rows) * D * 4,
    inputs: (gpu) => ({
      x: random(gpu, [rows, size.heads, D], "f32"),
      table: ropeTable(gpu, { headDim: D, theta: ROPE_THETA, positions: position + rows }),
    }),
    versions: { rope: ({ x, table }) => rope(x, table, position) },
    check: ({ x }, out) => checkRope(x, out, ROPE_THETA, position),
  });
}

function writeKVCase(model: string, phase: Phase, size: ModelSize, rows: number, position: number, dtype: DType): KernelCase {
  const D = size.hidden / size.heads;
  const count = rows * size.kvHeads * D;
  return defineCase({
    op: "writeKV",
    model,
    phase,
    what: "append k (v alike) to the KV-cache",
    shape: `${rows}×${size.kvHeads}×${D} at ${position}`,
    cost: movementCost(count * (4 + bytesPerElement(dtype))),
    inputBytes: count * 4 + size.kvHeads * (position + rows) * D * bytesPerElement(dtype),
    inputs: (gpu) => ({
      rows: random(gpu, [rows, size.kvHeads, D], "f32"),
      cache: gpu.empty([size.kvHeads, position + rows, D], dtype, { name: "bench KV-cache", persistent: true }),
    }),
    versions: { writeKV: ({ rows: r, cache }) => writeKV(cache, r, position) },
    check: ({ rows: r, cache }) => checkWriteKV(r, cache, position),
  });
}

function embeddingCase(model: string, phase: Phase, size: ModelSize, rows: number, dtype: DType): KernelCase {
  return defineCase({
    op: "embedding",
    model,
    phase,
    what: "embed_tokens lookup",
    shape: `${rows} of ${size.vocab}×${size.hidden}`,
    cost: movementCost(rows * 4 + rows * size.hidden * (bytesPerElement(dtype) + 4)),
    inputBytes: rows * 4 + size.vocab * size.hidden * bytesPerElement(dtype),
    inputs: (gpu) => {
      const parts = randomRowParts(gpu, size.vocab, size.hidden, dtype, false, "embed_tokens");
      const ids = gpu.tensor(Int32Array.from({ length: rows }, (_, i) => (i * 7919) % size.vocab), [rows], "i32");
      return { ids, parts };
    },
    versions: { embedding: ({ ids, parts }) => new EmbeddingTable(parts, "embed_tokens").lookup(ids, "f32") },
    check: ({ ids, parts }, out) => checkEmbedding(ids, parts, out),
  });
}

function softmaxCase(model: string, rows: number, cols: number): KernelCase {
  return defineCase({
    op: "softmax",
    model,
    phase: "image",
    what: "the score rows of attention v1",
    shape: `${rows}×${cols}`,
    // max, subtract, exp, sum, divide
    cost: elementwiseCost(rows * cols, 5, ["f32"], "f32"),
    inputBytes: rows * cols * 4,
    inputs: (gpu) => ({ x: random(gpu, [rows, cols], "f32") }),
    versions: { softmax: ({ x }) => softmax(x) },
    check: ({ x }, out) => checkRows(out, [x], ([xs]) => ({ expected: softmaxReference(xs, cols), tolerance: TOLERANCE.f32 })),
  });
}

function patchEmbedCase(size: VisionSize, dtype: DType, quick = false): KernelCase {
  const { hidden, patch, image, tokens } = size;
  const depth = 3 * patch * patch;
  const w = bytesPerElement(dtype);
  return defineCase({
    op: "patchEmbed",
    model: size.name,
    phase: "image",
    what: "patch convolution, class and position embeddings",
    shape: `${tokens - 1}×${hidden}×${depth}`,
    cost: {
      flops: 2 * (tokens - 1) * hidden * depth + tokens * hidden,
      bytes: 3 * image * image * 4 + (hidden * depth + hidden + tokens * hidden) * w + tokens * hidden * 4,
    },
    inputBytes: 3 * image * image * 4 + (hidden * depth + hidden + tokens * hidden) * w,
    quick,
    inputs: (gpu) => ({
      pixels: random(gpu, [1, 3, image, image], "f32"),
      patchWeight: random(gpu, [hidden, 3, patch, patch], dtype, WEIGHT_STD),
      classEmbedding: random(gpu, [hidden], dtype, WEIGHT_STD),
      positionEmbedding: random(gpu, [tokens, hidden], dtype, WEIGHT_STD),
    }),
    versions: { patchEmbed: ({ pixels, ...weights }) => patchEmbed(pixels, weights, "f32") },
    check: ({ pixels, ...weights }, out) => checkPatchEmbed(pixels, weights, out),
  });
}

function argmaxCase(model: string, vocab: number): KernelCase {
  return defineCase({
    op: "argmax",
    model,
    phase: "decode",
    what: "greedy token (verification)",
    shape: `1×${vocab}`,
    cost: { flops: vocab, bytes: vocab * 4 + 4 },
    inputBytes: vocab * 4,
    inputs: (gpu) => ({ x: random(gpu, [1, vocab], "f32") }),
    versions: { argmax: ({ x }) => argmax(x) },
    check: ({ x }, out) => checkArgmax(x, out),
  });
}

function sampleCase(model: string, vocab: number, what: string, options: Omit<SampleOptions, "seed" | "step">, quick = false): KernelCase {
  const draw: SampleOptions = { ...options, seed: 1, step: 0 };
  return defineCase({
    op: "sampleToken",
    model,
    phase: "decode",
    what,
    shape: `${vocab}`,
    // At least: read each logit once; a comparison each (greedy), or exp, sum and compare (sampling).
    cost: { flops: vocab * (options.temperature === 0 ? 1 : 4), bytes: vocab * 4 + 4 },
    inputBytes: vocab * 4,
    quick,
    inputs: (gpu) => ({ logits: random(gpu, [vocab], "f32", 3) }),
    versions: Object.fromEntries(Object.entries(SAMPLE_VERSIONS).map(([name, version]) => [name, ({ logits }: { logits: Tensor }) => version(logits, draw)])),
    runtime: ({ logits }) => sampleToken(logits, draw),
    check: ({ logits }, out) => checkSample(logits, draw, out),
  });
}

// ------------------------------------------------------------------ the list

interface PhaseSizes {
  dtype: DType;
  prefillRows: number;
  context: number;
}

/**
 * The decoder's kernels in one phase. `quick` names the cases of the --quick selection: matmuls
 * by their part ("lm_head"), the others by their op ("attention").
 */
function decoderCases(size: ModelSize, phase: "prefill" | "decode", options: PhaseSizes, quick: string[]): KernelCase[] {
  const { dtype, context } = options;
  const M = phase === "prefill" ? options.prefillRows : 1;
  const D = size.hidden / size.heads;
  const kv = size.kvHeads * D;
  const model = size.name;
  const mm = (what: string, N: number, K: number) => matmulCase(model, phase, what, M, N, K, false, dtype, quick.includes(what));
  const cases = [
    embeddingCase(model, phase, size, M, dtype),
    rmsnormCase(model, phase, M, size.hidden, dtype, quick.includes("rmsnorm")),
    mm(kv === size.hidden ? "q, k, v, o_proj" : "q_proj, o_proj", size.hidden, size.hidden),
    ...(kv === size.hidden ? [] : [mm("k_proj, v_proj", kv, size.hidden)]),
    ropeCase(model, phase, size, M, phase === "prefill" ? 0 : context - 1),
    writeKVCase(model, phase, size, M, phase === "prefill" ? 0 : context - 1, dtype),
    attentionCase(
      model,
      phase,
      { queries: M, heads: size.heads, kvHeads: size.kvHeads, headDim: D, kvLength: phase === "prefill" ? M : context, causal: true },
      "cache",
      dtype,
      quick.includes("attention"),
    ),
    addCase(model, phase, M, size.hidden),
    mm("mlp.gate_proj, up_proj", size.mlp, size.hidden),
    siluMulCase(model, phase, M, size.mlp),
    mm("mlp.down_proj", size.hidden, size.mlp),
  ];
  // The fused projections of decoding, where each weight fits the smallest storage binding
  // WebGPU guarantees (128 MiB): they take whole weights, not row parts.
  const fits = (rows: number) => rows * size.hidden * bytesPerElement(dtype) <= 2 ** 27;
  if (phase === "decode" && fits(size.hidden)) cases.push(qkvCase(model, phase, M, size.hidden, kv, size.hidden, dtype));
  if (phase === "decode" && fits(size.mlp)) cases.push(gatedCase(model, phase, M, size.mlp, size.hidden, dtype));
  if (phase === "decode") {
    cases.push(
      mm("lm_head", size.vocab, size.hidden),
      sampleCase(model, size.vocab, "greedy", { temperature: 0 }, quick.includes("sampleToken")),
      sampleCase(model, size.vocab, "temperature 0.7, top-k 40, top-p 0.9", { temperature: 0.7, topK: 40, topP: 0.9 }),
      argmaxCase(model, size.vocab),
    );
  }
  return cases;
}

function clipCases(size: VisionSize, projectorHidden: number, dtype: DType): KernelCase[] {
  const { name, tokens: T, hidden, heads, mlp } = size;
  const mm = (what: string, N: number, K: number, quick = false) => matmulCase(name, "image", what, T, N, K, true, dtype, quick);
  return [
    patchEmbedCase(size, dtype, true),
    layernormCase(name, T, hidden, dtype, true),
    mm("q, k, v, out_proj", hidden, hidden),
    attentionCase(name, "image", { queries: T, heads, kvHeads: heads, headDim: hidden / heads, kvLength: T, causal: false }, "tokens", "f32", true),
    softmaxCase(name, heads * T, T),
    addCase(name, "image", T, hidden),
    mm("mlp.fc1", mlp, hidden, true),
    activationCase(name, "image", "the MLP", "quick_gelu", T, mlp, true),
    mm("mlp.fc2", hidden, mlp),
    activationCase(name, "image", "the projector, into the decoder's width", "gelu", T - 1, projectorHidden),
  ];
}

/**
 * The matrix products llama.cpp's `test-backend-ops perf` times, with what its hand-written
 * Vulkan kernels reached on lavapipe (Mesa 25.0.7, 2 cores; bench/RESULTS.md compares them): the
 * peer to beat on the same software GPU. Its shapes are m×n×k with m the weight's rows and n
 * the activation's; here that is n rows × m outputs × k inputs. Their weights have their own
 * dtype (f32, or f16 against f32 activations), whatever --dtype says. Run with `--only llama.cpp`.
 */
export const PEER = "llama.cpp shapes";
const PEER_MATMULS: { rows: number; outputs: number; inputs: number; dtype: DType; peerGflops: number; quick: boolean }[] = [
  { rows: 1024, outputs: 1024, inputs: 1024, dtype: "f32", peerGflops: 4.3, quick: true },
  { rows: 512, outputs: 4096, inputs: 4096, dtype: "f32", peerGflops: 5.6, quick: true },
  { rows: 4096, outputs: 4096, inputs: 4096, dtype: "f32", peerGflops: 5.2, quick: false },
  { rows: 1024, outputs: 1024, inputs: 1024, dtype: "f16", peerGflops: 3.3, quick: true },
  { rows: 512, outputs: 4096, inputs: 14336, dtype: "f16", peerGflops: 5.1, quick: false },
  { rows: 1, outputs: 4096, inputs: 4096, dtype: "f32", peerGflops: 1.0, quick: true },
  { rows: 1, outputs: 4096, inputs: 4096, dtype: "f16", peerGflops: 1.15, quick: true },
  { rows: 1, outputs: 11008, inputs: 4096, dtype: "f32", peerGflops: 1.0, quick: true },
  { rows: 1, outputs: 11008, inputs: 4096, dtype: "f16", peerGflops: 1.2, quick: true },
];

function peerCases(): KernelCase[] {
  return PEER_MATMULS.map(({ rows, outputs, inputs, dtype, peerGflops, quick }) =>
    matmulCase(PEER, rows === 1 ? "decode" : "prefill", `${dtype} weights; llama.cpp Vulkan ${peerGflops} GFLOP/s`, rows, outputs, inputs, false, dtype, quick),
  );
}

/** Every case, in the order the report lists them. */
export function kernelCases(options: CaseOptions): KernelCase[] {
  const { dtype } = options;
  if (options.sizes === "tiny") {
    const sizes = { dtype, prefillRows: 16, context: 64 };
    return [
      ...clipCases(CLIP_TINY, DECODER_TINY.hidden, dtype),
      ...decoderCases(DECODER_TINY, "prefill", sizes, ["mlp.gate_proj, up_proj", "attention"]),
      ...decoderCases(DECODER_TINY, "decode", sizes, ["rmsnorm", "k_proj, v_proj", "attention", "lm_head", "sampleToken"]),
      ...quantizedCases({ ...DECODER_TINY, hidden: 256, mlp: 512 }, true, sizes.prefillRows),
    ];
  }
  // --quick: every version at a few sizes of each kind, in a few minutes on a software GPU. The
  // 7B's prefill is left to the full run: its slowest versions take minutes there.
  const sizes = { dtype, prefillRows: PREFILL_ROWS, context: DECODE_CONTEXT };
  return [
    ...clipCases(CLIP_L_336, LLAMA_7B.hidden, dtype),
    ...decoderCases(LLAMA_7B, "prefill", sizes, []),
    ...decoderCases(LLAMA_7B, "decode", sizes, ["rmsnorm", "attention", "mlp.gate_proj, up_proj"]),
    ...decoderCases(TINYLLAMA, "prefill", sizes, ["q_proj, o_proj", "attention"]),
    ...decoderCases(TINYLLAMA, "decode", sizes, ["k_proj, v_proj", "mlp.down_proj", "lm_head", "attention", "sampleToken"]),
    ...quantizedCases(LLAMA_7B, false, PREFILL_ROWS),
    ...quantizedCases(TINYLLAMA, true, PREFILL_ROWS),
    ...peerCases(),
  ];
}
