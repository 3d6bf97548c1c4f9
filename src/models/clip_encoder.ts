/**
 * One layer of CLIP's transformer encoder, as both of its towers use it (transformers'
 * CLIPEncoderLayer): pre-norm, multi-head attention and an MLP, every linear layer with a bias.
 *
 *   x = x + attention(layernorm1(x)·Wqᵀ, ·Wkᵀ, ·Wvᵀ)·Woᵀ
 *   x = x + act(layernorm2(x)·W1ᵀ)·W2ᵀ                    (quick_gelu in OpenAI's CLIP)
 *
 * The towers differ only in which keys a query sees: the image tower lets every token of an
 * image see every other, the text tower is causal and masks its padding. So the layer takes
 * the attention as a function of q, k and v ([tokens, heads, head dim] each).
 */
import { activation, type ActivationKind } from "../kernels/activations.js";
import { add } from "../kernels/elementwise.js";
import { layernorm } from "../kernels/layernorm.js";
import type { Tensor } from "../tensor/tensor.js";
import type { Linear } from "./linear.js";
import type { WeightStore } from "./weights.js";

export interface Norm {
  weight: Tensor;
  bias: Tensor;
}

export interface EncoderLayer {
  norm1: Norm;
  q: Linear;
  k: Linear;
  v: Linear;
  out: Linear;
  norm2: Norm;
  fc1: Linear;
  fc2: Linear;
}

/** What a layer needs of its tower's config. */
export interface EncoderShape {
  hiddenSize: number;
  numAttentionHeads: number;
  headDim: number;
  layerNormEps: number;
}

export type Attend = (q: Tensor, k: Tensor, v: Tensor) => Tensor;

export function loadNorm(weights: WeightStore, name: string): Norm {
  return { weight: weights.tensor(`${name}.weight`), bias: weights.tensor(`${name}.bias`) };
}

/** The layer at `prefix` (e.g. vision.encoder.layers.3). */
export function loadEncoderLayer(weights: WeightStore, prefix: string): EncoderLayer {
  return {
    norm1: loadNorm(weights, `${prefix}.layer_norm1`),
    q: weights.linear(`${prefix}.self_attn.q_proj`),
    k: weights.linear(`${prefix}.self_attn.k_proj`),
    v: weights.linear(`${prefix}.self_attn.v_proj`),
    out: weights.linear(`${prefix}.self_attn.out_proj`),
    norm2: loadNorm(weights, `${prefix}.layer_norm2`),
    fc1: weights.linear(`${prefix}.mlp.fc1`),
    fc2: weights.linear(`${prefix}.mlp.fc2`),
  };
}

/** x [T, hidden] through one layer; `attend` masks as the tower needs. */
export function encoderLayer(layer: EncoderLayer, x: Tensor, shape: EncoderShape, mlpActivation: ActivationKind, attend: Attend): Tensor {
  const { numAttentionHeads: H, headDim: D, hiddenSize, layerNormEps: eps } = shape;
  const T = x.dim(0);
  const h = layernorm(x, layer.norm1.weight, layer.norm1.bias, eps);
  const q = layer.q.forward(h).reshape([T, H, D]);
  const k = layer.k.forward(h).reshape([T, H, D]);
  const v = layer.v.forward(h).reshape([T, H, D]);
  const attended = attend(q, k, v);
  const afterAttention = add(x, layer.out.forward(attended.reshape([T, hiddenSize])));
  const h2 = layernorm(afterAttention, layer.norm2.weight, layer.norm2.bias, eps);
  const mlp = layer.fc2.forward(activation(layer.fc1.forward(h2), mlpActivation));
  return add(afterAttention, mlp);
}
