/**
 * What the end-to-end benchmark counts, checked on its own: which bindings are weight reads,
 * one submit and a known number of kernel launches per token through generate() itself,
 * random weights in row parts, and the layer-sampled estimate used for large shapes.
 */
import { describe, expect, it } from "vitest";
import { decoderWeightBytes, extrapolate, runE2E, weightBytesOf } from "../src/bench/e2e.js";
import { shapeConfig } from "../src/bench/shapes.js";
import { summarize } from "../src/bench/stats.js";
import { activationFromConfig } from "../src/kernels/activations.js";
import { chooseAttentionVersion, type AttentionVersion } from "../src/kernels/attention/index.js";
import { randomFillReference } from "../src/kernels/random_fill.js";
import { chooseSampleVersion } from "../src/kernels/sample/index.js";
import { VisionLanguageModel } from "../src/generate/model.js";
import { bucketEnd } from "../src/generate/token_step.js";
import { randomLlava, tensorSeed, tensorStorage, weightBytes } from "../src/bench/random_model.js";
import { dequantize } from "../src/kernels/quant/blocks.js";
import { quantizedRowBytes, type QuantizedMatrix } from "../src/kernels/quant/matvec_common.js";
import { randomBlocksReference } from "../src/kernels/quant/random_blocks.js";
import { isQuantized } from "../src/models/linear.js";
import { partRows, quantizedOnLoad } from "../src/models/load.js";
import { bytesPerElement, type DType } from "../src/tensor/dtype.js";
import { Gpu } from "../src/tensor/gpu.js";
import { defineKernel, type AnyKernel } from "../src/tensor/kernel.js";
import { parseConfig, type LlamaConfig, type ModelConfig } from "../src/weights/config.js";
import { expectedTensors } from "../src/weights/names.js";
import type { Tensor } from "../src/tensor/tensor.js";
import { fallbackChatTemplate } from "../src/generate/chat_template.js";
import { expectClose, roundTo } from "./helpers.js";

/** Kernels each attention version launches: v1 scores, softmax and P·V; v3 the partial sums and their combination. */
const ATTENTION_LAUNCHES: Record<AttentionVersion, number> = { v1_unfused: 3, v2_flash: 1, v3_split_k: 2, v4_subgroup: 1 };

/**
 * Kernel launches of one decoded token whose attention may read up to `kvLength` cached
 * positions (the attention version is chosen by that bound), as llama.ts and the decode batch
 * record it for one sequence:
 *   embedding lookup     one per row part of the table
 *   each layer           2 rmsnorms; q|k|v in one launch (one matmul per row part of each
 *                        weight when any is split); RoPE with the cache write; attention, as
 *                        many kernels as its version launches; the output product with the
 *                        residual; gate and up in one launch (split: their matmuls, then siluMul
 *                        or the activation and mul); down with the residual
 *   final rmsnorm        1
 *   LM head              one per row part (of the embedding table when tied)
 *   sampler              greedy: 1 (v1, one workgroup) or 2 (v2, the vocabulary split: blocks, best)
 * Row parts follow the loader's rule (partRows) for this device's storage binding limit.
 */
function decodeLaunches(gpu: Gpu, config: ModelConfig & { text: LlamaConfig }, dtype: DType, kvLength: number): number {
  const text = config.text;
  const shapes = new Map(expectedTensors(config).map((t) => [t.name, t.shape]));
  const parts = (name: string) => {
    const [rows, ...row] = shapes.get(name)!;
    const rowBytes = row.reduce((n, d) => n * d, 1) * bytesPerElement(dtype);
    return partRows(rows, rowBytes, gpu.limits.maxStorageBufferBindingSize, name).length;
  };
  const attention = ATTENTION_LAUNCHES[chooseAttentionVersion(gpu, 1, kvLength, text.headDim)];
  let layers = 0;
  for (let i = 0; i < text.numHiddenLayers; i++) {
    const p = (m: string) => parts(`text.layers.${i}.${m}.weight`);
    const qkv = ["q_proj", "k_proj", "v_proj"].map((m) => p(`self_attn.${m}`));
    const [gate, up] = [p("mlp.gate_proj"), p("mlp.up_proj")];
    const activation = activationFromConfig(text.hiddenAct) === "silu" ? 1 : 2;
    const [rmsnorms, ropeKV] = [2, 1];
    layers += rmsnorms + (qkv.every((n) => n === 1) ? 1 : qkv[0] + qkv[1] + qkv[2]) + ropeKV + attention + p("self_attn.o_proj");
    layers += (gate === 1 && up === 1 ? 1 : gate + up + activation) + p("mlp.down_proj");
  }
  const finalNorm = 1;
  const sampler = chooseSampleVersion(gpu, text.vocabSize) === "v1_one_workgroup" ? 1 : 2;
  const lmHead = parts(text.tieWordEmbeddings ? "text.embed_tokens.weight" : "lm_head.weight");
  return parts("text.embed_tokens.weight") + layers + finalNorm + lmHead + sampler;
}

describe("end-to-end measurement", async () => {
  // Not the poisoned test GPU: poisoning adds fill launches that a decoded token does not make.
  const gpu = await Gpu.create({ poison: false });

  it("counts read-only persistent bindings, not activations, the KV-cache, outputs or gathered tables", () => {
    const kernel = defineKernel({
      name: "counting",
      params: {},
      bindings: { weight: "read", table: "read", activation: "read", cache: "read", out: "read_write" },
      gathers: ["table"],
      wgsl: () => "@compute @workgroup_size(1) fn main() {}",
    }) as unknown as AnyKernel;
    const weight = gpu.empty([8, 4], "f16", { persistent: true });
    const table = gpu.empty([100, 4], "f16", { persistent: true });
    const cache = gpu.empty([2, 16, 4], "f16", { persistent: true });
    const activation = gpu.empty([4], "f32");
    const out = gpu.empty([8], "f32", { persistent: true });
    const launch = { kernel, tensors: { weight, table, activation, cache, out }, spec: {}, workgroups: [1, 1, 1] as const };
    expect(weightBytesOf(launch, new Set([cache.buffer]))).toBe(8 * 4 * 2);
    expect(weightBytesOf(launch, new Set())).toBe(8 * 4 * 2 + 2 * 16 * 4 * 2);
    for (const t of [weight, table, cache, activation, out]) t.dispose();
  });

  it("generate() submits once per decoded token", async () => {
    // A small LLaVA without an end-of-sequence id, so that only the length limit ends a generation.
    const config = parseConfig(
      {
        model_type: "llava",
        image_token_index: 500,
        text_config: { model_type: "llama", vocab_size: 512, hidden_size: 64, intermediate_size: 96, num_hidden_layers: 2, num_attention_heads: 4, eos_token_id: null },
        vision_config: { model_type: "clip_vision_model", image_size: 32, patch_size: 8, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 2, num_attention_heads: 4 },
      },
      "small llava without eos",
    );
    const dtype = gpu.hasF16 ? "f16" : "f32";
    const { model } = await randomLlava(gpu, config, { dtype, contextLength: 64 });
    const vlm = new VisionLanguageModel(model, null, null, fallbackChatTemplate("llava-1.5"));
    const pixels = gpu.empty([3, 32, 32], "f32");
    try {
      const counts = async (maxNewTokens: number) => {
        const [submits, dispatches] = [gpu.submitCount, gpu.dispatchCount];
        const result = await vlm.complete({ promptIds: [1, 500, 300, 400], images: [pixels], maxNewTokens });
        expect(result.finishReason).toBe("length");
        return { tokens: result.tokens.length, submits: gpu.submitCount - submits, dispatches: gpu.dispatchCount - dispatches };
      };
      const short = await counts(2);
      const long = await counts(6);
      expect(long.tokens - short.tokens).toBe(4);
      expect(long.submits - short.submits).toBe(4);
      // The short run decodes token 1, the long one tokens 1 to 5: they differ by 4 steps,
      // each the long run's captured step, whose attention sees at most prompt + 5 positions.
      const prompt = model.mergedLength([1, 500, 300, 400]);
      expect(long.dispatches - short.dispatches).toBe(4 * decodeLaunches(gpu, config as ModelConfig & { text: LlamaConfig }, dtype, prompt + 5));
    } finally {
      pixels.dispose();
      vlm.dispose();
    }
  });

  it("random weights larger than a storage binding come in row parts holding the whole matrix's values", async () => {
    const rows = 140_000; // × 256 f32 = 143 MB, over a 128 MiB binding limit
    const config = parseConfig(
      { model_type: "llama", vocab_size: rows, hidden_size: 256, intermediate_size: 32, num_hidden_layers: 1, num_attention_heads: 4, tie_word_embeddings: true },
      "test config",
    );
    const { model, weights } = await randomLlava(gpu, config, { dtype: "f32", contextLength: 8 });
    try {
      const parts = weights.embedding("text.embed_tokens.weight").parts;
      const split = rows * 256 * 4 > gpu.limits.maxStorageBufferBindingSize;
      expect(parts.length > 1).toBe(split);
      const last = parts.at(-1)!;
      const values = await (last.weight as Tensor).slice(0, 1).read();
      const expected = randomFillReference(256, { seed: tensorSeed("text.embed_tokens.weight"), std: 0.02, offset: last.rowStart * 256 });
      expectClose(values, roundTo(expected, "f32"), { atol: 1e-7, rtol: 0 }, "first row of the last part");
      const norm = await weights.tensor("text.layers.0.input_layernorm.weight").read();
      expect(Math.min(...norm)).toBeGreaterThan(0.9);
    } finally {
      model.dispose();
    }
  });

  it("a quantized random model holds its decoder's matrices as packed blocks, counted as they are held", async () => {
    // Q8_0 rows of 64 × 34 / 32 = 68 bytes; the 512-row vocabulary's 34816 bytes in row parts
    // when the binding limit is lowered, as the loader would split them.
    const config = parseConfig(
      {
        model_type: "llava",
        image_token_index: 500,
        text_config: { model_type: "llama", vocab_size: 512, hidden_size: 64, intermediate_size: 96, num_hidden_layers: 2, num_attention_heads: 4 },
        vision_config: { model_type: "clip_vision_model", image_size: 32, patch_size: 8, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 2, num_attention_heads: 4 },
      },
      "small llava",
    );
    const dtype = gpu.hasF16 ? "f16" : "f32";
    const { model, weights } = await randomLlava(gpu, config, { dtype, quantize: "Q8_0", contextLength: 32 });
    try {
      const tensors = expectedTensors(config);
      const matrices = tensors.filter((t) => (t.name.startsWith("text.") || t.name.startsWith("lm_head.")) && t.shape.length === 2);
      expect(matrices.length).toBe(2 + 2 * 7); // embedding table, LM head, 7 matrices a layer
      expect(model.loadReport.weightTypes).toEqual({ Q8_0: matrices.length, [dtype]: tensors.length - matrices.length });
      const packed = matrices.reduce((n, t) => n + t.shape[0] * quantizedRowBytes("Q8_0", t.shape[1]), 0);
      const floats = tensors.filter((t) => !matrices.includes(t)).reduce((n, t) => n + t.shape.reduce((a, b) => a * b, 1) * bytesPerElement(dtype), 0);
      expect(model.loadReport.weightBytes).toBe(packed + floats);
      expect(weightBytes(config, dtype, { text: "Q8_0" })).toBe(packed + floats);
      expect(weights.all().reduce((n, t) => n + t.byteLength, 0)).toBe(packed + floats);
      // The LM head: random blocks of its own stream, the vision tower float.
      const head = weights.linear("lm_head").parts[0].weight as QuantizedMatrix;
      expect(isQuantized(head) && head.type).toBe("Q8_0");
      const bytes = new Uint8Array(((await head.data.read()) as Uint32Array).buffer);
      expect([...bytes]).toEqual([...randomBlocksReference("Q8_0", 512, 64, { seed: tensorSeed("lm_head.weight") })]);
      expect(dequantize("Q8_0", bytes, 512 * 64).every(Number.isFinite)).toBe(true);
      expect(isQuantized(weights.linear("vision.encoder.layers.0.mlp.fc1").parts[0].weight)).toBe(false);
      // It decodes: a prompt through the decoder, finite logits.
      const hidden = model.decoder.forward(model.decoder.embed(gpu.tensor([1, 300, 400], [3], "i32")), model.cache);
      const logits = await model.decoder.logits(hidden).read();
      expect(logits.length).toBe(3 * 512);
      expect(logits.every(Number.isFinite)).toBe(true);
      expect(new Set(logits).size).toBeGreaterThan(100);
    } finally {
      model.dispose();
    }
    // Row parts within the binding limit as the loader splits them, each part's blocks padded
    // to whole words: Q8_0 rows of 32 are 34 bytes, 8 to a part of at most 272.
    expect(tensorStorage("text.layers.0.mlp.down_proj.weight", [33, 32], "f16", { text: "Q8_0" }, 272)).toEqual({
      quantized: "Q8_0",
      parts: [0, 8, 16, 24, 32].map((start) => ({ rows: [start, Math.min(start + 8, 33)], bytes: start === 32 ? 36 : 272 })),
    });
    // The vision tower and vectors stay float; so does a matrix whose rows are not whole blocks.
    expect(tensorStorage("vision.encoder.layers.0.mlp.fc1.weight", [64, 32], "f16", { text: "Q8_0" }).quantized).toBeNull();
    expect(tensorStorage("text.layers.0.mlp.down_proj.weight", [64, 48], "f16", { text: "Q8_0" })).toEqual({ quantized: null, parts: [{ rows: [0, 64], bytes: 64 * 48 * 2 }] });
    // A quantized mmproj: the tower's and projector's matrices, not its patch and position embeddings.
    const vision = { vision: "Q8_0" } as const;
    expect(tensorStorage("vision.encoder.layers.0.mlp.fc1.weight", [64, 32], "f16", vision).quantized).toBe("Q8_0");
    expect(tensorStorage("projector.linear_1.weight", [64, 32], "f16", vision).quantized).toBe("Q8_0");
    expect(tensorStorage("vision.embeddings.position_embedding.weight", [17, 32], "f16", vision).quantized).toBeNull();
    expect(tensorStorage("text.layers.0.mlp.down_proj.weight", [64, 32], "f16", vision).quantized).toBeNull();
  });

  it("bench e2e on a quantized tiny shape: packed weight bytes, each read once per decoded token", async () => {
    const plan = { text: "Q4_K", vision: "Q8_0" } as const;
    const result = await runE2E(gpu, { shape: "tiny" }, { quantize: "Q4_K", quantizeVision: "Q8_0", context: 40, decodeSteps: 3, textTokens: 4, repeats: 1, batches: [1, 2] });
    const config = shapeConfig("tiny");
    const limit = gpu.limits.maxStorageBufferBindingSize;
    expect(result.quantize).toBe("Q4_K");
    expect(result.quantizeVision).toBe("Q8_0");
    const tensors = expectedTensors(config);
    // Every decoder matrix but down_proj, whose rows of 688 are not whole blocks of 256: it stays f16, as the loader would keep it.
    const quantized = tensors.filter((t) => quantizedOnLoad(t.name, t.shape, { text: "Q4_K" })).length;
    expect(quantized).toBe(2 + 4 * 6);
    // The vision tower's 6 matrices in each layer it runs (3 of 4: the projector reads layer -2)
    // and the projector's 2, in Q8_0 (a quantized mmproj), encoded the image.
    const vision = tensors.filter((t) => quantizedOnLoad(t.name, t.shape, { vision: "Q8_0" })).length;
    expect(vision).toBe(3 * 6 + 2);
    expect(result.weightTypes).toEqual({ Q4_K: quantized, Q8_0: vision, [result.dtype]: tensors.length - quantized - vision });
    expect(result.weightBytes).toBe(weightBytes(config, result.dtype, plan, limit));
    expect(result.image!.ms).toBeGreaterThan(0);
    // What a token reads: every layer, the final norm and the LM head (not the gathered table), packed where quantized.
    const read = tensors.filter((t) => (t.name.startsWith("text.") || t.name === "lm_head.weight") && t.name !== "text.embed_tokens.weight");
    const held = (t: (typeof tensors)[number]) =>
      quantizedOnLoad(t.name, t.shape, { text: "Q4_K" }) ? t.shape[0] * quantizedRowBytes("Q4_K", t.shape[1]) : t.shape.reduce((a, b) => a * b, 1) * bytesPerElement(result.dtype);
    expect(result.decoderWeightBytes).toBe(read.reduce((n, t) => n + held(t), 0));
    expect(result.decoderWeightBytes).toBe(decoderWeightBytes(config, result.dtype, "Q4_K", limit));
    expect(result.perToken.weightReadRatio).toBeCloseTo(1, 3);
    expect(result.decode.tokensPerSecond).toBeGreaterThan(0);
    expect(result.batches.map((b) => b.size)).toEqual([1, 2]);
    expect(result.peakMemoryBytes).toBeGreaterThan(result.weightBytes);
  });

  it("extrapolates a phase as t(0 layers) + layers · (t(1 layer) - t(0 layers))", () => {
    const zero = summarize([10, 12, 11]); // median 11, spread 1/11
    const one = summarize([15, 16, 20]); // median 16, spread 1/16
    expect(extrapolate(zero, one, 22, 3)).toEqual({ ms: 11 + 22 * 5, method: "estimated", runs: 3, spread: 1 / 11 });
    // A layer that measured faster than none (noise) adds nothing, rather than a negative time.
    expect(extrapolate(one, zero, 22, 3)).toEqual({ ms: 16, method: "estimated", runs: 3, spread: 1 / 11 });
  });

  it("estimates image encoding and prefill from 0- and 1-layer passes, decoding the whole model", async () => {
    const [context, decodeSteps] = [40, 2];
    const result = await runE2E(gpu, { shape: "tiny" }, { sampleLayers: true, context, decodeSteps, textTokens: 4, repeats: 1 });
    expect(result.image).toMatchObject({ method: "estimated", features: 64 });
    expect(result.prefill).toMatchObject({ method: "estimated", positions: 68 });
    expect(result.image!.ms).toBeGreaterThan(0);
    expect(result.prefill.tokensPerSecond).toBeGreaterThan(0);
    expect(result.perToken.submits).toBe(1);
    expect(result.perToken.bindGroups).toBe(0); // the timed steps follow a warm-up step that bound every buffer once
    // Every step replays the step captured for context's bucket (token_step.ts).
    const config = shapeConfig("tiny") as ModelConfig & { text: LlamaConfig };
    expect(result.perToken.dispatches).toBe(decodeLaunches(gpu, config, result.dtype, Math.min(bucketEnd(context + 1), context + decodeSteps)));
    expect(result.perToken.dispatchesPerLayer).toBe(8);
    expect(result.batches.map((b) => b.size)).toEqual([1, 2, 4, 8, 16]);
    expect(result.batches.every((b) => b.tokensPerSecond > 0)).toBe(true);
    expect(result.perToken.weightReadRatio).toBeLessThanOrEqual(1.1);
  });
});
