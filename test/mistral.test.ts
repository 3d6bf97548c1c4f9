/**
 * The Mistral decoder: LLaMA's with grouped-query attention and a sliding window. A tiny random
 * MistralForCausalLM whose window (5) is shorter than the prompt (12) against a float64
 * reference forward pass written out here; decoding through the KV-cache against the same
 * positions in one pass; and with the window never binding, the LLaMA model of the same weights.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { PREFILL_ROWS_PER_PASS } from "../src/models/llama.js";
import { loadLlava, type LlavaModel } from "../src/models/llava.js";
import { takeRows } from "../src/tensor/copy.js";
import type { StepValue } from "../src/kernels/step_value.js";
import { ConfigError, parseConfig, type LlamaConfig } from "../src/weights/config.js";
import { SafetensorsFile } from "../src/weights/safetensors.js";
import { expectClose, testGpu } from "./helpers.js";
import { writeRandomCheckpoint } from "./random_checkpoint.js";

const MISTRAL = {
  architectures: ["MistralForCausalLM"],
  model_type: "mistral",
  vocab_size: 96,
  hidden_size: 32,
  intermediate_size: 48,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  max_position_embeddings: 64,
  rope_theta: 1e6,
  rms_norm_eps: 1e-5,
  sliding_window: 5,
};
const PROMPT = [1, 17, 42, 5, 88, 23, 9, 61, 30, 77, 12, 54];

/** Logits [positions, vocab] of the decoder in float64, transformers' Mistral (eager attention, its sliding-window mask). */
async function referenceLogits(dir: string, c: LlamaConfig, ids: number[]): Promise<Float64Array> {
  const file = await SafetensorsFile.open(join(dir, "model.safetensors"));
  const w = async (name: string) => (await file.readFloat32(name)).data;
  const { hiddenSize: d, numAttentionHeads: H, numKeyValueHeads: Hkv, headDim: D, intermediateSize: F, rmsNormEps: eps } = c;
  const T = ids.length;
  const matmul = (x: Float64Array, weight: Float32Array, rows: number, inputs: number, outputs: number) => {
    const out = new Float64Array(rows * outputs);
    for (let r = 0; r < rows; r++) for (let o = 0; o < outputs; o++) {
      let sum = 0;
      for (let i = 0; i < inputs; i++) sum += x[r * inputs + i] * weight[o * inputs + i];
      out[r * outputs + o] = sum;
    }
    return out;
  };
  const rmsnorm = (x: Float64Array, weight: Float32Array) => {
    const out = new Float64Array(x.length);
    for (let r = 0; r < T; r++) {
      let ms = 0;
      for (let i = 0; i < d; i++) ms += x[r * d + i] ** 2;
      const inv = 1 / Math.sqrt(ms / d + eps);
      for (let i = 0; i < d; i++) out[r * d + i] = x[r * d + i] * inv * weight[i];
    }
    return out;
  };
  // rotate_half RoPE: dims i and i + D/2 of a head form a pair.
  const rope = (x: Float64Array, heads: number) => {
    for (let p = 0; p < T; p++) for (let h = 0; h < heads; h++) for (let i = 0; i < D / 2; i++) {
      const angle = p / c.ropeTheta ** ((2 * i) / D);
      const at = (p * heads + h) * D;
      const [a, b] = [x[at + i], x[at + i + D / 2]];
      x[at + i] = a * Math.cos(angle) - b * Math.sin(angle);
      x[at + i + D / 2] = b * Math.cos(angle) + a * Math.sin(angle);
    }
  };
  const embed = await w("model.embed_tokens.weight");
  let x = new Float64Array(T * d);
  ids.forEach((id, p) => x.set(embed.subarray(id * d, (id + 1) * d), p * d));
  for (let l = 0; l < c.numHiddenLayers; l++) {
    const pre = `model.layers.${l}.`;
    const h = rmsnorm(x, await w(`${pre}input_layernorm.weight`));
    const q = matmul(h, await w(`${pre}self_attn.q_proj.weight`), T, d, H * D);
    const k = matmul(h, await w(`${pre}self_attn.k_proj.weight`), T, d, Hkv * D);
    const v = matmul(h, await w(`${pre}self_attn.v_proj.weight`), T, d, Hkv * D);
    rope(q, H);
    rope(k, Hkv);
    const attended = new Float64Array(T * H * D);
    for (let p = 0; p < T; p++) for (let head = 0; head < H; head++) {
      const g = Math.floor(head / (H / Hkv));
      // Masked where j > p (causal) or j <= p - window.
      const first = c.slidingWindow === null ? 0 : Math.max(0, p - c.slidingWindow + 1);
      const scores: number[] = [];
      for (let j = first; j <= p; j++) {
        let dot = 0;
        for (let i = 0; i < D; i++) dot += q[(p * H + head) * D + i] * k[(j * Hkv + g) * D + i];
        scores.push(dot / Math.sqrt(D));
      }
      const max = Math.max(...scores);
      const weights = scores.map((s) => Math.exp(s - max));
      const total = weights.reduce((a, b) => a + b, 0);
      for (let j = first; j <= p; j++) for (let i = 0; i < D; i++) {
        attended[(p * H + head) * D + i] += (weights[j - first] / total) * v[(j * Hkv + g) * D + i];
      }
    }
    const o = matmul(attended, await w(`${pre}self_attn.o_proj.weight`), T, H * D, d);
    x = x.map((value, i) => value + o[i]);
    const h2 = rmsnorm(x, await w(`${pre}post_attention_layernorm.weight`));
    const gate = matmul(h2, await w(`${pre}mlp.gate_proj.weight`), T, d, F);
    const up = matmul(h2, await w(`${pre}mlp.up_proj.weight`), T, d, F);
    const gated = gate.map((g, i) => (g / (1 + Math.exp(-g))) * up[i]);
    const down = matmul(gated, await w(`${pre}mlp.down_proj.weight`), T, F, d);
    x = x.map((value, i) => value + down[i]);
  }
  const logits = matmul(rmsnorm(x, await w("model.norm.weight")), await w("lm_head.weight"), T, d, c.vocabSize);
  await file.close();
  return logits;
}

/** Logits of every prompt position in one prefill. */
async function prefillLogits(model: LlavaModel, ids: number[]): Promise<Float32Array> {
  const logits = model.gpu.scope(() => {
    model.cache.length = 0;
    return model.decoder.logits(model.decoder.forward(model.embedPrompt(ids, []), model.cache));
  });
  const values = (await logits.read()) as Float32Array;
  logits.dispose();
  return values;
}

describe("Mistral: sliding-window attention", async () => {
  const gpu = await testGpu();
  const dir = await mkdtemp(join(tmpdir(), "wgsl-vlm-mistral-"));
  await writeRandomCheckpoint(dir, MISTRAL, { seed: 7, scale: 0.3 });
  const config = parseConfig(MISTRAL, "mistral");
  if (config.kind !== "llama") throw new Error("a text model");
  const model = await loadLlava(dir, { gpu, dtype: "f32" });
  afterAll(async () => {
    model.dispose();
    await rm(dir, { recursive: true, force: true });
  });
  // f32 kernels against float64 over two layers of these sizes: ~1e-6 relative; 1e-4 of the largest logit leaves room.
  const tolerance = (reference: Float64Array) => ({ atol: 1e-4 * Math.max(...reference.map(Math.abs)), rtol: 0 });

  it("reads MistralConfig (defaults, window) and its checkpoint", () => {
    expect(config.text).toMatchObject({ family: "mistral", slidingWindow: 5, numKeyValueHeads: 2, ropeTheta: 1e6 });
    expect(model.textConfig.slidingWindow).toBe(5);
  });

  it("a prefill longer than the window gives the float64 reference's logits", async () => {
    const reference = await referenceLogits(dir, config.text, PROMPT);
    const ours = await prefillLogits(model, PROMPT);
    expectClose(ours, reference, tolerance(reference), "mistral prefill, window 5 of 12");
    // The window binds: without it the logits differ.
    const unwindowed = await referenceLogits(dir, { ...config.text, slidingWindow: null }, PROMPT);
    const last = (a: ArrayLike<number>) => Array.from(a).slice(-config.text.vocabSize);
    expect(Math.max(...last(unwindowed).map((u, i) => Math.abs(u - last(reference)[i])))).toBeGreaterThan(10 * tolerance(reference).atol);
  });

  it("decoding token by token through the KV-cache honours the window as the prefill does", async () => {
    const whole = await prefillLogits(model, PROMPT);
    const vocab = config.text.vocabSize;
    model.cache.length = 0;
    const steps: number[] = [];
    const head = 4;
    const first = gpu.scope(() => {
      const hidden = model.decoder.forward(model.embedPrompt(PROMPT.slice(0, head), []), model.cache);
      return model.decoder.logits(takeRows(hidden, head - 1, 1));
    });
    steps.push(...(await first.read()));
    first.dispose();
    for (const id of PROMPT.slice(head)) {
      const logits = gpu.scope(() => model.decoder.logits(model.decoder.forward(model.decoder.embed(gpu.tensor([id], [1], "i32")), model.cache)));
      steps.push(...(await logits.read()));
      logits.dispose();
    }
    const expected = Array.from(whole).slice((head - 1) * vocab);
    expectClose(steps, expected, { atol: 1e-4 * Math.max(...expected.map(Math.abs)), rtol: 0 }, "decode vs prefill");
  });

  it("a prompt wider than one binding runs in chunks of rows and gives the same logits", async () => {
    const whole = await prefillLogits(model, PROMPT);
    Object.defineProperty(model.decoder, "maxRowsPerPass", { value: 5, configurable: true });
    const passes: number[] = [];
    const forwardSequences = model.decoder.forwardSequences.bind(model.decoder);
    model.decoder.forwardSequences = (x, sequences, trace) => (passes.push(x.dim(0)), forwardSequences(x, sequences, trace));
    try {
      const chunked = await prefillLogits(model, PROMPT);
      expectClose(chunked, whole, { atol: 1e-5 * Math.max(...Array.from(whole, Math.abs)), rtol: 0 }, "12 positions in passes of at most 5");
      // As equal as can be, so every pass reuses the first one's buffers: 4 + 4 + 4, not 5 + 5 + 2.
      expect(passes).toEqual([4, 4, 4]);
      expect(model.cache.length).toBe(PROMPT.length);
      // A traced pass (verification) is not cut: it takes as many rows as fit a binding.
      model.cache.length = 0;
      let traced = 0;
      gpu.scope(() => void model.decoder.forward(model.embedPrompt(PROMPT, []), model.cache, () => traced++));
      expect(traced).toBe(config.text.numHiddenLayers + 1);
    } finally {
      model.decoder.forwardSequences = forwardSequences;
      delete (model.decoder as { maxRowsPerPass?: number }).maxRowsPerPass;
    }
    // Mistral-7B's 14336-wide MLP: 2404 positions (an image of llava-v1.6 and a question) do not fit one 128 MiB binding.
    expect(model.decoder.maxRowsPerPass).toBeGreaterThan(PROMPT.length);
    // Long prompts go through PREFILL_ROWS_PER_PASS positions at a time, as llama.cpp's micro-batches.
    expect(model.decoder.maxRowsPerPass).toBe(PREFILL_ROWS_PER_PASS);
  });

  it("decoding through one captured step replayed every token (StepValue positions, as batch.ts does) honours the window", async () => {
    const whole = await prefillLogits(model, PROMPT);
    const vocab = config.text.vocabSize;
    const head = 3;
    model.cache.length = 0;
    const firstLogits = gpu.scope(() => {
      const hidden = model.decoder.forward(model.embedPrompt(PROMPT.slice(0, head), []), model.cache);
      return model.decoder.logits(takeRows(hidden, head - 1, 1));
    });
    const steps: number[] = Array.from(await firstLogits.read());
    firstLogits.dispose();
    // The step reads its token and position from these when it runs; its grids are sized for
    // every position up to the end of the context.
    const token = gpu.empty([1], "u32", { name: "token", persistent: true });
    const position = gpu.empty([1], "u32", { name: "position", persistent: true });
    const logits = gpu.empty([1, vocab], "f32", { name: "step logits", persistent: true });
    const start: StepValue = { tensor: position, index: 0, plus: 0, max: model.cache.capacity - 1 };
    const program = gpu.capture("mistral decode step", () => {
      const hidden = model.decoder.forwardSequences(model.decoder.embed(token), [{ cache: model.cache, start, count: 1 }]);
      model.decoder.lmHead.forward(hidden, "f32", null, { out: logits, column: 0 });
    });
    try {
      for (const id of PROMPT.slice(head)) {
        gpu.write(token, Uint32Array.of(id));
        gpu.write(position, Uint32Array.of(model.cache.length));
        gpu.replay(program);
        model.cache.length++;
        steps.push(...(await logits.read()));
      }
    } finally {
      program.dispose();
      for (const t of [token, position, logits]) t.dispose();
    }
    const expected = Array.from(whole).slice((head - 1) * vocab);
    expectClose(steps, expected, { atol: 1e-4 * Math.max(...expected.map(Math.abs)), rtol: 0 }, "replayed decode vs prefill");
  });

  it("with a window longer than the prompt, it is the LLaMA model of the same weights", async () => {
    const llamaDir = await mkdtemp(join(tmpdir(), "wgsl-vlm-mistral-llama-"));
    const wideDir = await mkdtemp(join(tmpdir(), "wgsl-vlm-mistral-wide-"));
    const { sliding_window: _, architectures: __, ...rest } = MISTRAL;
    await writeRandomCheckpoint(llamaDir, { ...rest, model_type: "llama", architectures: ["LlamaForCausalLM"] }, { seed: 7, scale: 0.3 });
    await writeRandomCheckpoint(wideDir, { ...MISTRAL, sliding_window: 64 }, { seed: 7, scale: 0.3 });
    const [llama, wide] = [await loadLlava(llamaDir, { gpu, dtype: "f32" }), await loadLlava(wideDir, { gpu, dtype: "f32" })];
    try {
      expect(Array.from(await prefillLogits(wide, PROMPT))).toEqual(Array.from(await prefillLogits(llama, PROMPT)));
    } finally {
      llama.dispose();
      wide.dispose();
      await rm(llamaDir, { recursive: true, force: true });
      await rm(wideDir, { recursive: true, force: true });
    }
  });
});

describe("MistralConfig", () => {
  const text = (raw: Record<string, unknown>) => {
    const parsed = parseConfig(raw, "config.json");
    if (parsed.kind === "llama") return parsed.text;
    if (parsed.kind === "llava") return parsed.text;
    throw new Error(`not a decoder: ${parsed.kind}`);
  };

  it("has transformers' MistralConfig defaults: 8 KV heads, intermediate 14336, a 4096-key window", () => {
    expect(text({ model_type: "mistral" })).toMatchObject({
      family: "mistral",
      numKeyValueHeads: 8,
      numAttentionHeads: 32,
      intermediateSize: 14336,
      hiddenSize: 4096,
      slidingWindow: 4096,
    });
    // LLaMA has none of these (and no window even if the field is there).
    expect(text({ model_type: "llama" })).toMatchObject({ family: "llama", numKeyValueHeads: 32, intermediateSize: 11008, slidingWindow: null });
    expect(text({ model_type: "llama", sliding_window: 16 }).slidingWindow).toBeNull();
  });

  it("takes sliding_window: null (no window, as Mistral 7B v0.2 ships) and a window of its own, alone or as LLaVA's text_config", () => {
    expect(text({ model_type: "mistral", sliding_window: null }).slidingWindow).toBeNull();
    expect(text({ model_type: "mistral", sliding_window: 5 }).slidingWindow).toBe(5);
    const llava = { model_type: "llava", image_token_index: 5, text_config: { model_type: "mistral", sliding_window: 7, num_key_value_heads: 2, num_attention_heads: 4, hidden_size: 32 } };
    expect(text(llava)).toMatchObject({ family: "mistral", slidingWindow: 7, numKeyValueHeads: 2 });
    expect(text({ ...llava, text_config: { ...llava.text_config, sliding_window: null } }).slidingWindow).toBeNull();
  });

  it("refuses a window that is not a positive integer", () => {
    for (const bad of [0, -1, 2.5, "4096"]) {
      expect(() => parseConfig({ model_type: "mistral", sliding_window: bad }, "config.json"), String(bad)).toThrow(ConfigError);
      expect(() => parseConfig({ model_type: "mistral", sliding_window: bad }, "config.json"), String(bad)).toThrow(/sliding_window/);
    }
  });
});
