/**
 * What the end-to-end benchmark counts, checked on its own: which bindings are weight reads,
 * one submit per token through generate() itself, random weights in row parts, and the
 * layer-sampled estimate used for large shapes.
 */
import { describe, expect, it } from "vitest";
import { runE2E, weightBytesOf } from "../src/bench/e2e.js";
import { randomFillReference } from "../src/kernels/random_fill.js";
import { VisionLanguageModel } from "../src/generate/model.js";
import { randomLlava, tensorSeed } from "../src/bench/random_model.js";
import { Gpu } from "../src/tensor/gpu.js";
import { defineKernel, type AnyKernel } from "../src/tensor/kernel.js";
import { parseConfig } from "../src/weights/config.js";
import { expectClose, roundTo } from "./helpers.js";

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
    const { model } = await randomLlava(gpu, config, { dtype: gpu.hasF16 ? "f16" : "f32", contextLength: 64 });
    const vlm = new VisionLanguageModel(model, null, null);
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
      expect((long.dispatches - short.dispatches) % 4).toBe(0);
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
      const values = await last.weight.slice(0, 1).read();
      const expected = randomFillReference(256, { seed: tensorSeed("text.embed_tokens.weight"), std: 0.02, offset: last.rowStart * 256 });
      expectClose(values, roundTo(expected, "f32"), { atol: 1e-7, rtol: 0 }, "first row of the last part");
      const norm = await weights.tensor("text.layers.0.input_layernorm.weight").read();
      expect(Math.min(...norm)).toBeGreaterThan(0.9);
    } finally {
      model.dispose();
    }
  });

  it("estimates image encoding and prefill from 0- and 1-layer passes, decoding the whole model", async () => {
    const result = await runE2E(gpu, { shape: "tiny" }, { sampleLayers: true, context: 40, decodeSteps: 2, textTokens: 4, repeats: 1 });
    expect(result.image).toMatchObject({ method: "estimated", features: 64 });
    expect(result.prefill).toMatchObject({ method: "estimated", positions: 68 });
    expect(result.image!.ms).toBeGreaterThan(0);
    expect(result.prefill.tokensPerSecond).toBeGreaterThan(0);
    expect(result.perToken.submits).toBe(1);
    expect(result.perToken.weightReadRatio).toBeLessThanOrEqual(1.1);
  });
});
