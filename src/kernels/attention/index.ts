/**
 * Scaled dot-product attention: the entry point, and the numbered versions side by side.
 *
 * - v1_unfused: scores, softmax and P·V as three kernels over the materialised score matrix.
 *   The textbook baseline; never chosen automatically.
 * - v2_flash: one fused kernel with an online softmax, a block of queries per workgroup.
 * - v3_split_k: the keys split across workgroups and merged by a second kernel (flash-decoding).
 * - v4_subgroup: v2's online softmax in one subgroup per block of query rows, sharing queries
 *   and probabilities by subgroup broadcasts instead of workgroup memory (for lavapipe).
 *
 * The rule `attention` follows (chooseAttentionVersion), by device, then by shape:
 * - on a CPU adapter (lavapipe) with a fixed subgroup size: v4_subgroup, for head dims up to
 *   SUBGROUP_MAX_HEAD_DIM (128: every model here); beyond, the rule below. There it is 5 to
 *   50 times as fast as v2 and v3, in prefill and decoding alike (bench/RESULTS.md).
 * - elsewhere: split-K when there are at most SPLIT_K_MAX_QUERIES queries and at least
 *   SPLIT_K_MIN_KEYS keys (decoding a token, or a few, over a real context), flash otherwise.
 *   With few queries flash launches only a handful of workgroups per head and leaves most of
 *   its query block empty; split-K spreads the keys instead. Over a short context there is
 *   little to split, and flash needs one launch where split-K needs two. (v4 was tuned for
 *   lavapipe; on a GPU, v2 and v3 are the established shapes, and none was here to measure.)
 */
import { attentionProblem, type AttentionOptions } from "./problem.js";
import { unfusedAttention } from "./v1_unfused.js";
import { flashAttention } from "./v2_flash.js";
import { splitKAttention } from "./v3_split_k.js";
import { subgroupAttention, SUBGROUP_MAX_HEAD_DIM } from "./v4_subgroup.js";
import { fixedSubgroupSize } from "../subgroups.js";
import type { U32Source } from "../step_value.js";
import type { Gpu } from "../../tensor/gpu.js";
import type { Tensor } from "../../tensor/tensor.js";

export type { AttentionOptions, KVLayout } from "./problem.js";
export { attentionReference, type HostTensor } from "./reference.js";
export { unfusedAttention } from "./v1_unfused.js";
export { flashAttention, FLASH_MAX_HEAD_DIM } from "./v2_flash.js";
export { splitKAttention, SPLIT_K_MAX_HEAD_DIM, type SplitKOptions } from "./v3_split_k.js";
export { subgroupAttention, SUBGROUP_MAX_HEAD_DIM } from "./v4_subgroup.js";

const SPLIT_K_MAX_QUERIES = 4;
const SPLIT_K_MIN_KEYS = 256;

/** Every version's launch function, by name (for the benchmarks). */
export const ATTENTION_VERSIONS = {
  v1_unfused: unfusedAttention,
  v2_flash: flashAttention,
  v3_split_k: splitKAttention,
  v4_subgroup: subgroupAttention,
} as const satisfies Record<string, (q: Tensor, k: Tensor, v: Tensor, options: AttentionOptions<U32Source>) => Tensor>;

export type AttentionVersion = keyof typeof ATTENTION_VERSIONS;

/** Whether `version` can run on this device (v4 needs a fixed subgroup size). */
export function attentionVersionSupported(gpu: Gpu, version: AttentionVersion): boolean {
  return version !== "v4_subgroup" || fixedSubgroupSize(gpu) !== null;
}

/**
 * The version `attention` runs on `gpu` for S queries over kvLength keys (see the top of this
 * file); for a length read at run time, pass its max.
 */
export function chooseAttentionVersion(gpu: Gpu, queries: number, kvLength: number, headDim: number): AttentionVersion {
  const lavapipe = gpu.adapter.isFallbackAdapter && attentionVersionSupported(gpu, "v4_subgroup");
  if (lavapipe && headDim <= SUBGROUP_MAX_HEAD_DIM) return "v4_subgroup";
  return queries <= SPLIT_K_MAX_QUERIES && kvLength >= SPLIT_K_MIN_KEYS ? "v3_split_k" : "v2_flash";
}

/**
 * softmax(scale · q·kᵀ, masked) · v for q [S, H, D] (or rows of q [R, H, D] into the same rows
 * of `out`) and k, v in either layout (see problem.ts for the shapes and options), by the
 * version chooseAttentionVersion picks for the queries taken (from the max of a run-time length).
 */
export function attention(q: Tensor, k: Tensor, v: Tensor, options: AttentionOptions<U32Source>): Tensor {
  const p = attentionProblem("attention", q, k, v, options);
  return ATTENTION_VERSIONS[chooseAttentionVersion(q.gpu, p.queries, p.kvLength, p.headDim)](q, k, v, options);
}
