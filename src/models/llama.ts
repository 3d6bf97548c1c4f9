/**
 * The LLaMA decoder (transformers' LlamaForCausalLM), one GPU kernel per line: 8 a layer.
 *
 *   x = embed_tokens[ids]
 *   for each layer:
 *     h = rmsnorm(x)                                   input_layernorm
 *     qkv = h·[Wq | Wk | Wv]ᵀ                          one launch for the three (+ biases)
 *     q, cache[layer] ← rope(q), rope(k), v            rotary positions; k, v appended at the current position
 *     a = attention(q, cache, causal)                  grouped-query attention over the cache
 *     x = x + a·Woᵀ                                    the residual added as the product is stored
 *     h = rmsnorm(x)                                   post_attention_layernorm
 *     g = silu(h·Wgateᵀ) ⊙ h·Wupᵀ                      the SwiGLU MLP's two products in one launch
 *     x = x + g·Wdownᵀ
 *   logits = rmsnorm(x)·Wlm_headᵀ
 *
 * Several sequences can go through together (the decode batch): their rows share every launch
 * but RoPE with the cache write and attention, which run per sequence over its own cache.
 *
 * Activations stay in f32 whatever the weights' dtype; the KV-cache takes the weights' dtype.
 *
 * Mistral is the same decoder with a sliding window: each position attends to the last
 * `sliding_window` positions only (prefill and decode alike; the attention kernels skip the
 * keys before it). The KV-cache still holds every position of the context, not a ring of the
 * window's: memory is that of LLaMA at the same context. A ring buffer (position p in slot
 * p mod W) would bound it at the window; that is left for later (attention would then need to
 * read a wrapped range, and RoPE'd keys stay valid wherever they sit).
 */
import { activation, activationFromConfig, siluMul, type ActivationKind } from "../kernels/activations.js";
import { attention } from "../kernels/attention/index.js";
import { mul } from "../kernels/elementwise.js";
import { gatedLinear } from "../kernels/matmul/gated_matvec.js";
import { qkvLinear } from "../kernels/matmul/qkv_matvec.js";
import { rmsnorm } from "../kernels/rmsnorm.js";
import { ropeTable } from "../kernels/rope.js";
import { ropeKV } from "../kernels/rope_kv.js";
import { isStepValue, maxOf, offsetBy, type U32Source } from "../kernels/step_value.js";
import { copyRows, takeRows } from "../tensor/copy.js";
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

/**
 * A long prompt goes through the decoder this many positions at a time (llama.cpp's default
 * micro-batch, n_ubatch, is the same): each pass's activations are then a few hundred MB at
 * most for a 7B, not over a GB for a LLaVA-NeXT prompt, while 512 rows still keep every matrix
 * product compute-bound (each weight is read once per 512 positions).
 */
export const PREFILL_ROWS_PER_PASS = 512;

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
  /** Counts the recordings that wrote into the cache: whoever remembers what it holds can tell whether anything wrote it since. */
  writes = 0;

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
  private readonly mlpActivation: ActivationKind;
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

  /** Frees what the decoder made itself (its weights belong to the WeightStore). */
  dispose(): void {
    this.rope.dispose();
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
    const start = cache.length;
    const rows = x.dim(0);
    const most = trace === undefined ? this.maxRowsPerPass : this.rowsPerBinding;
    if (rows <= most) {
      const normed = this.forwardSequences(x, [{ cache, start, count: rows }], trace);
      cache.length = start + rows;
      return normed;
    }
    // A long prompt goes through in passes of rows, each after the ones before it in the cache
    // (causal attention makes that the same computation), so activations stay one pass's worth.
    // The passes are as equal as can be (640 rows: two of 320, not 512 and 128), so the later
    // ones reuse the first's pooled buffers instead of adding buffers of their own sizes.
    check(trace === undefined, () => `decoder: a prompt of ${rows} positions runs in passes of at most ${most}, which cannot be traced`);
    const per = Math.ceil(rows / Math.ceil(rows / most));
    const out = this.gpu.empty([rows, this.config.hiddenSize], "f32", { name: "decoder output" });
    for (let at = 0; at < rows; at += per) {
      const count = Math.min(per, rows - at);
      this.gpu.scope(() => {
        const normed = this.forwardSequences(takeRows(x, at, count), [{ cache, start: start + at, count }]);
        copyRows(normed, 0, out, at, count);
      });
      cache.length = start + at + count;
    }
    return out;
  }

  /**
   * The most rows one pass takes: PREFILL_ROWS_PER_PASS, or fewer where its widest activation
   * would not fit one storage binding.
   */
  get maxRowsPerPass(): number {
    return Math.min(PREFILL_ROWS_PER_PASS, this.rowsPerBinding);
  }

  /**
   * The most rows whose widest activation (the q|k|v or gate|up products, f32) fits one storage
   * binding: 2404 positions of Mistral-7B's 14336-wide MLP do not (138 MB). A traced pass (which
   * verification compares whole) takes this many, since a trace cannot be cut into passes.
   */
  private get rowsPerBinding(): number {
    const { hiddenSize, intermediateSize, numAttentionHeads: H, numKeyValueHeads: Hkv, headDim: D } = this.config;
    const widest = Math.max(2 * intermediateSize, (H + 2 * Hkv) * D, hiddenSize) * 4;
    return Math.max(1, Math.floor(this.gpu.limits.maxStorageBufferBindingSize / widest));
  }

  /**
   * Several sequences at once (the decode batch): x's rows are `count` rows of each sequence in
   * turn, at positions from `start` in its own cache. The projections run over all rows (each
   * weight read once); RoPE, the cache write and attention per sequence. A StepValue start is
   * read when the launches run (kernels/step_value.ts), so a step captured once serves every
   * token up to its max. The caller keeps cache.length.
   */
  forwardSequences(x: Tensor, sequences: readonly SequenceRows[], trace?: Trace): Tensor {
    const { hiddenSize } = this.config;
    check(x.rank === 2 && x.dim(1) === hiddenSize, () => `decoder: input ${x.describe()} is not [positions, ${hiddenSize}]`);
    const rows = sequences.reduce((n, s) => n + s.count, 0);
    check(rows === x.dim(0), () => `decoder: input ${x.describe()} has ${x.dim(0)} rows, but the sequences take ${rows}`);
    for (const { cache, start, count } of sequences) {
      cache.writes++;
      const last = maxOf(start) + count;
      const positions = isStepValue(start) ? `positions up to ${last}` : `positions [${start}, ${last})`;
      check(last <= cache.capacity, () => `decoder: ${positions} do not fit the context of ${cache.capacity} positions`);
    }
    let h = x;
    this.layers.forEach((layer, i) => {
      trace?.("text_hidden_states", [i], h);
      // Each layer's temporaries are freed as soon as it is recorded; only its output lives on.
      const next = this.gpu.scope(() => this.layer(layer, h, sequences, i));
      if (h !== x) h.dispose();
      h = next;
    });
    const normed = rmsnorm(h, this.norm, this.config.rmsNormEps);
    if (h !== x) h.dispose();
    trace?.("text_hidden_states", [this.layers.length], normed);
    return normed;
  }

  /** Logits [S, vocab] for hidden states [S, hidden] (f32). */
  logits(hidden: Tensor): Tensor {
    return this.lmHead.forward(hidden, "f32");
  }

  /** One decoder layer: 8 launches for one sequence (one more per further sequence, and per split weight part). */
  private layer(layer: DecoderLayer, x: Tensor, sequences: readonly SequenceRows[], index: number): Tensor {
    const { numAttentionHeads: H, headDim: D, rmsNormEps: eps, hiddenSize } = this.config;
    const rows = x.dim(0);
    const h = rmsnorm(x, layer.inputNorm, eps);
    const qkv = projectQKV(h, layer.q, layer.k, layer.v);
    const q = this.gpu.empty([rows, H, D], "f32", { name: "rotated queries" });
    const attended = this.gpu.empty([rows, H, D], "f32", { name: "attention" });
    const window = this.config.slidingWindow ?? undefined;
    let row = 0;
    for (const { cache, start, count } of sequences) {
      const [keys, values] = [cache.keys[index], cache.values[index]];
      const span = { start: row, count };
      ropeKV(qkv, this.rope, keys, values, start, { rows: span, out: q });
      attention(q, keys, values, { layout: "cache", length: offsetBy(start, count), causal: true, queryOffset: start, window, rows: span, out: attended });
      row += count;
    }
    const afterAttention = layer.o.forward(attended.reshape([rows, hiddenSize]), "f32", x);
    const h2 = rmsnorm(afterAttention, layer.postNorm, eps);
    const gated = projectGated(h2, layer.gate, layer.up, this.mlpActivation);
    return layer.down.forward(gated, "f32", afterAttention);
  }
}

/** Rows of one sequence in a multi-sequence forward: `count` positions from `start` in its cache. */
export interface SequenceRows {
  cache: KVCache;
  start: U32Source;
  count: number;
}

/** q | k | v of x in one tensor [rows, (H + 2·H_kv)·D]: one launch, unless a weight is split in parts or quantized. */
function projectQKV(x: Tensor, q: Linear, k: Linear, v: Linear): Tensor {
  const linears = [q, k, v];
  if (linears.every((l) => l.parts.length === 1 && l.dense)) return qkvLinear(x, linears.map((l) => ({ weight: l.parts[0].weight as Tensor, bias: l.parts[0].bias })));
  const out = x.gpu.empty([x.dim(0), linears.reduce((n, l) => n + l.outFeatures, 0)], x.dtype, { name: "qkv" });
  let column = 0;
  for (const linear of linears) {
    linear.forward(x, x.dtype, null, { out, column });
    column += linear.outFeatures;
  }
  return out;
}

/** act(x·gateᵀ) ⊙ x·upᵀ: one launch, unless a weight is split in parts or quantized. */
function projectGated(x: Tensor, gate: Linear, up: Linear, act: ActivationKind): Tensor {
  if (gate.parts.length === 1 && up.parts.length === 1 && gate.dense && up.dense) {
    const [g, u] = [gate.parts[0], up.parts[0]];
    return gatedLinear(x, g.weight as Tensor, u.weight as Tensor, { activation: act, gateBias: g.bias, upBias: u.bias });
  }
  const [a, b] = [gate.forward(x), up.forward(x)];
  return act === "silu" ? siluMul(a, b) : mul(activation(a, act), b);
}
