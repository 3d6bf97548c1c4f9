/**
 * The LLaMA decoder (transformers' LlamaForCausalLM), one GPU kernel per line.
 *
 *   x = embed_tokens[ids]
 *   for each layer:
 *     h = rmsnorm(x)                                   input_layernorm
 *     q, k, v = h·Wqᵀ, h·Wkᵀ, h·Wvᵀ                     (+ biases when attention_bias)
 *     q, k = rope(q), rope(k)                          rotary positions
 *     cache[layer] ← k, v                              appended at the current position
 *     x = x + attention(q, cache, causal)·Woᵀ          grouped-query attention over the cache
 *     h = rmsnorm(x)                                   post_attention_layernorm
 *     x = x + (silu(h·Wgateᵀ) ⊙ h·Wupᵀ)·Wdownᵀ          the SwiGLU MLP
 *   logits = rmsnorm(x)·Wlm_headᵀ
 *
 * Activations stay in f32 whatever the weights' dtype; the KV-cache takes the weights' dtype.
 */
import { activation, activationFromConfig, siluMul } from "../kernels/activations.js";
import { attention } from "../kernels/attention/index.js";
import { add, mul } from "../kernels/elementwise.js";
import { writeKV } from "../kernels/kv_cache.js";
import { rmsnorm } from "../kernels/rmsnorm.js";
import { rope, ropeTable } from "../kernels/rope.js";
import type { DType } from "../tensor/dtype.js";
import { check } from "../tensor/errors.js";
import type { Gpu } from "../tensor/gpu.js";
import type { Tensor } from "../tensor/tensor.js";
import type { LlamaConfig } from "../weights/config.js";
import type { EmbeddingTable, Linear } from "./linear.js";
import type { WeightStore } from "./weights.js";

/**
 * Called with intermediate results, for verification against transformers: `name` and `index`
 * say where the tensor sits in the reference (e.g. text_hidden_states [layer], or
 * vision_hidden_states [layer, image]). Copy what you keep: it is freed afterwards.
 */
export type Trace = (name: string, index: readonly number[], t: Tensor) => void;

interface DecoderLayer {
  inputNorm: Tensor;
  q: Linear;
  k: Linear;
  v: Linear;
  o: Linear;
  postNorm: Tensor;
  gate: Linear;
  up: Linear;
  down: Linear;
}

/** Per-layer keys and values, [H_kv, capacity, D] each, filled from position 0 up to `length`. */
export class KVCache {
  readonly keys: Tensor[];
  readonly values: Tensor[];
  length = 0;

  constructor(
    gpu: Gpu,
    config: LlamaConfig,
    readonly capacity: number,
    dtype: DType,
  ) {
    const shape = [config.numKeyValueHeads, capacity, config.headDim];
    const make = (what: string, i: number) => gpu.empty(shape, dtype, { name: `layer ${i} ${what} cache`, persistent: true });
    this.keys = Array.from({ length: config.numHiddenLayers }, (_, i) => make("key", i));
    this.values = Array.from({ length: config.numHiddenLayers }, (_, i) => make("value", i));
  }

  get bytes(): number {
    return this.keys.reduce((sum, k) => sum + 2 * k.byteLength, 0);
  }

  dispose(): void {
    for (const t of [...this.keys, ...this.values]) t.dispose();
  }
}

export class LlamaDecoder {
  readonly embedTokens: EmbeddingTable;
  readonly lmHead: Linear;
  private readonly layers: DecoderLayer[];
  private readonly norm: Tensor;
  private readonly mlpActivation: ReturnType<typeof activationFromConfig>;
  /** cos/sin for every position up to the context length. */
  private readonly rope: Tensor;

  constructor(
    readonly gpu: Gpu,
    readonly config: LlamaConfig,
    weights: WeightStore,
    /** Positions the KV-cache and rotary table cover. */
    readonly contextLength: number,
  ) {
    this.embedTokens = weights.embedding("text.embed_tokens.weight");
    this.lmHead = config.tieWordEmbeddings ? this.embedTokens.asLinear("lm_head") : weights.linear("lm_head");
    this.norm = weights.tensor("text.norm.weight");
    this.mlpActivation = activationFromConfig(config.hiddenAct);
    this.layers = Array.from({ length: config.numHiddenLayers }, (_, i) => {
      const p = `text.layers.${i}`;
      return {
        inputNorm: weights.tensor(`${p}.input_layernorm.weight`),
        q: weights.linear(`${p}.self_attn.q_proj`),
        k: weights.linear(`${p}.self_attn.k_proj`),
        v: weights.linear(`${p}.self_attn.v_proj`),
        o: weights.linear(`${p}.self_attn.o_proj`),
        postNorm: weights.tensor(`${p}.post_attention_layernorm.weight`),
        gate: weights.linear(`${p}.mlp.gate_proj`),
        up: weights.linear(`${p}.mlp.up_proj`),
        down: weights.linear(`${p}.mlp.down_proj`),
      };
    });
    this.rope = ropeTable(gpu, { headDim: config.headDim, theta: config.ropeTheta, positions: contextLength });
  }

  /** A KV-cache for this decoder, in the weights' dtype. */
  createCache(dtype: DType): KVCache {
    return new KVCache(this.gpu, this.config, this.contextLength, dtype);
  }

  /** Token ids (i32/u32 [n]) → embeddings [n, hidden] in f32. */
  embed(ids: Tensor): Tensor {
    return this.embedTokens.lookup(ids, "f32");
  }

  /**
   * Runs x [S, hidden] as the positions after those already in the cache, appends their keys
   * and values to it, and returns the final-normed hidden states [S, hidden].
   */
  forward(x: Tensor, cache: KVCache, trace?: Trace): Tensor {
    const { hiddenSize } = this.config;
    const S = x.dim(0);
    const start = cache.length;
    check(x.rank === 2 && x.dim(1) === hiddenSize, () => `decoder: input ${x.describe()} is not [positions, ${hiddenSize}]`);
    check(
      start + S <= cache.capacity,
      () => `decoder: positions [${start}, ${start + S}) do not fit the context of ${cache.capacity} positions`,
    );
    let h = x;
    this.layers.forEach((layer, i) => {
      trace?.("text_hidden_states", [i], h);
      // Each layer's temporaries are freed as soon as it is recorded; only its output lives on.
      const next = this.gpu.scope(() => this.layer(layer, h, cache, i, start));
      if (h !== x) h.dispose();
      h = next;
    });
    const normed = rmsnorm(h, this.norm, this.config.rmsNormEps);
    if (h !== x) h.dispose();
    trace?.("text_hidden_states", [this.layers.length], normed);
    cache.length = start + S;
    return normed;
  }

  /** Logits [S, vocab] for hidden states [S, hidden] (f32). */
  logits(hidden: Tensor): Tensor {
    return this.lmHead.forward(hidden, "f32");
  }

  private layer(layer: DecoderLayer, x: Tensor, cache: KVCache, index: number, start: number): Tensor {
    const { numAttentionHeads: H, numKeyValueHeads: Hkv, headDim: D, rmsNormEps: eps, hiddenSize } = this.config;
    const S = x.dim(0);
    const h = rmsnorm(x, layer.inputNorm, eps);
    const q = rope(layer.q.forward(h).reshape([S, H, D]), this.rope, start);
    const k = rope(layer.k.forward(h).reshape([S, Hkv, D]), this.rope, start);
    const v = layer.v.forward(h).reshape([S, Hkv, D]);
    writeKV(cache.keys[index], k, start);
    writeKV(cache.values[index], v, start);
    const attended = attention(q, cache.keys[index], cache.values[index], {
      layout: "cache",
      length: start + S,
      causal: true,
      queryOffset: start,
    });
    const afterAttention = add(x, layer.o.forward(attended.reshape([S, hiddenSize])));
    const h2 = rmsnorm(afterAttention, layer.postNorm, eps);
    const gate = layer.gate.forward(h2);
    const up = layer.up.forward(h2);
    const gated = this.mlpActivation === "silu" ? siluMul(gate, up) : mul(activation(gate, this.mlpActivation), up);
    return add(afterAttention, layer.down.forward(gated));
  }
}
