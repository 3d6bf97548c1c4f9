/**
 * Scaled dot-product attention: the entry point, and the numbered versions side by side.
 *
 * - v1_unfused: scores, softmax and P·V as three kernels over the materialised score matrix.
 *   The textbook baseline; never chosen automatically.
 * - v2_flash: one fused kernel with an online softmax, a block of queries per workgroup.
 * - v3_split_k: the keys split across workgroups and merged by a second kernel (flash-decoding).
 *
 * The rule `attention` follows: split-K when there are at most SPLIT_K_MAX_QUERIES queries and
 * at least SPLIT_K_MIN_KEYS keys (decoding a token, or a few, over a real context), flash
 * otherwise. With few queries flash launches only a handful of workgroups per head and leaves
 * most of its query block empty; split-K spreads the keys instead. Over a short context there
 * is little to split, and flash needs one launch where split-K needs two.
 */
import { attentionProblem, type AttentionOptions } from "./problem.js";
import { unfusedAttention } from "./v1_unfused.js";
import { flashAttention } from "./v2_flash.js";
import { splitKAttention } from "./v3_split_k.js";
import type { Tensor } from "../../tensor/tensor.js";

export type { AttentionOptions, KVLayout } from "./problem.js";
export { attentionReference, type HostTensor } from "./reference.js";
export { unfusedAttention } from "./v1_unfused.js";
export { flashAttention, FLASH_MAX_HEAD_DIM } from "./v2_flash.js";
export { splitKAttention, SPLIT_K_MAX_HEAD_DIM, type SplitKOptions } from "./v3_split_k.js";

export const SPLIT_K_MAX_QUERIES = 4;
export const SPLIT_K_MIN_KEYS = 256;

/** Every version's launch function, by name (for the benchmarks). */
export const ATTENTION_VERSIONS = {
  v1_unfused: unfusedAttention,
  v2_flash: flashAttention,
  v3_split_k: splitKAttention,
} as const satisfies Record<string, (q: Tensor, k: Tensor, v: Tensor, options: AttentionOptions) => Tensor>;

export type AttentionVersion = keyof typeof ATTENTION_VERSIONS;

/** The version `attention` runs for S queries over kvLength keys (see the top of this file). */
export function chooseAttentionVersion(queries: number, kvLength: number): AttentionVersion {
  return queries <= SPLIT_K_MAX_QUERIES && kvLength >= SPLIT_K_MIN_KEYS ? "v3_split_k" : "v2_flash";
}

/**
 * softmax(scale · q·kᵀ, masked) · v for q [S, H, D] and k, v in either layout (see problem.ts
 * for the shapes and options), by the version chooseAttentionVersion picks.
 */
export function attention(q: Tensor, k: Tensor, v: Tensor, options: AttentionOptions): Tensor {
  const p = attentionProblem("attention", q, k, v, options);
  return ATTENTION_VERSIONS[chooseAttentionVersion(p.queries, p.kvLength)](q, k, v, options);
}
