/**
 * Products with a weight held as ggml's packed blocks (blocks.ts), for the models: one entry,
 * quantizedLinear, that picks the kernel from the rows of A.
 *
 *   matvec_v1_blocks, v2_words, v3_unrolled   1 to 4 rows of A (decoding), W streamed once
 *   matvec_v4_subgroup                        the same, v3's units reduced with subgroupAdd
 *   matmul_v1_tiled                           any rows, each unit of W dequantized once per
 *                                             tile of up to 64 rows of A
 *   matmul_v2_subgroup                        any rows, matmul v5's shape: units dequantized
 *                                             into registers, A shared by subgroupBroadcast
 *
 * The rule: matvec v3 for up to QMATVEC_MAX_ROWS (4) rows, the tiled matmul beyond (with a
 * fixed subgroup size, matvec v4 and matmul v2 instead: below). A matvec
 * streams W once and works only on real rows, but takes at most 4 of them (a sum per row per
 * lane), so past 4 rows it needs a launch per 4, each dequantizing all of W again. The tiled
 * matmul dequantizes W once per tile of 16 to 64 rows, and pays for the whole tile however
 * few of its rows are real. Measured on lavapipe (2 cores, N = K = 2048, Q4_0 / Q4_K, ms):
 *
 *   rows               1          2          4            5            16           64
 *   matvec v3 ×⌈M/4⌉   2.9 / 3.5  4.8 / 5.3  11.4 / 12.8  14.0 / 16.1  45.4 / 51.7  181 / 205
 *   tiled              12 / 11    12 / 11    11.9 / 11.3  11.7 / 11.1  11.9 / 11.3  43.6 / 40.4
 *
 * So 1 to 3 rows (decoding) are the matvec's by far, 4 are about even, and from 5 on the
 * tiled matmul wins, by 4 times at 16 rows and at 64.
 *
 * Where the device fixes its subgroup size (subgroups.ts), matvec v4 replaces v3 for those 1
 * to 4 rows: one subgroup per workgroup and subgroupAdd instead of v3's workgroup-memory tree
 * and barriers, each load of A serving 2 or 4 outputs. Measured on lavapipe (2 cores,
 * subgroup 8, min of 6 runs of 10, ms, v3 / v4):
 *
 *   N × K, rows         Q8_0         Q4_0         Q4_K         Q6_K
 *   2048 × 2048, 1      4.04 / 1.75  3.39 / 1.25  4.24 / 1.74  5.63 / 3.38
 *   2048 × 2048, 4      14.0 / 5.57  12.9 / 4.84  14.7 / 6.14  17.4 / 6.94
 *   5632 × 2048, 1      11.0 / 4.83  8.83 / 3.03  10.9 / 4.42  15.2 / 9.11
 *   5632 × 2048, 4      37.9 / 14.3  35.1 / 13.0  40.2 / 16.6  48.0 / 19.2
 *
 * 1.6 to 2.9 times faster (2 and 3 rows too, and the other types); without a fixed subgroup
 * size v3 stays.
 *
 * There too, matmul v2 replaces the tiled v1 beyond 4 rows: no workgroup memory and no
 * barriers, each lane's units of W unpacked into registers and A's values broadcast across
 * the subgroup. Measured on lavapipe (2 cores, subgroup 8, N = K = 2048, min of 3 interleaved
 * rounds, ms, v1 / v2):
 *
 *   rows   Q8_0         Q4_0         Q4_K         Q6_K
 *   64     45.3 / 19.7  47.8 / 13.8  46.1 / 19.9  49.1 / 28.4
 *   640    440 / 196    478 / 136    477 / 210    491 / 281
 *
 * 1.7 to 3.5 times faster; without a fixed subgroup size v1 stays.
 */
import type { Tensor } from "../../tensor/tensor.js";
import { quantizedMatmulTiled } from "./matmul_v1_tiled.js";
import { quantizedMatmulSubgroup } from "./matmul_v2_subgroup.js";
import { QMATVEC_MAX_ROWS, type QuantizedMatmulOptions, type QuantizedMatrix } from "./matvec_common.js";
import { quantizedMatvecUnrolled } from "./matvec_v3_unrolled.js";
import { quantizedMatvecSubgroup } from "./matvec_v4_subgroup.js";
import { fixedSubgroupSize } from "../subgroups.js";

export { BLOCK_LAYOUT, dequantize, isQuantizedType, QUANTIZED_TYPES, type QuantizedType } from "./blocks.js";
export { QMATVEC_MAX_ROWS, quantizedRowBytes, type QuantizedMatmulOptions, type QuantizedMatrix } from "./matvec_common.js";
export { quantizedMatvec } from "./matvec_v1_blocks.js";
export { quantizedMatvecWords } from "./matvec_v2_words.js";
export { quantizedMatvecUnrolled } from "./matvec_v3_unrolled.js";
export { quantizedMatvecSubgroup } from "./matvec_v4_subgroup.js";
export { quantizedMatmulTiled } from "./matmul_v1_tiled.js";
export { quantizedMatmulSubgroup } from "./matmul_v2_subgroup.js";
export { quantizedEmbedding, type QuantizedEmbeddingOptions } from "./embedding.js";
export { quantizedMatmulErrorBounds, quantizedMatmulReference } from "./reference.js";

/**
 * The kernel quantizedLinear runs for `rows` rows of A on a device whose fixed subgroup size
 * is `subgroupSize` (fixedSubgroupSize; null when it has none): the rule above.
 */
export function chooseQuantizedVersion(
  rows: number,
  subgroupSize: number | null = null,
): "matvec_v4_subgroup" | "matvec_v3_unrolled" | "matmul_v2_subgroup" | "matmul_v1_tiled" {
  if (rows > QMATVEC_MAX_ROWS) return subgroupSize === null ? "matmul_v1_tiled" : "matmul_v2_subgroup";
  return subgroupSize === null ? "matvec_v3_unrolled" : "matvec_v4_subgroup";
}

/**
 * y [..., N] f32 = x [..., K] f32 · Wᵀ (+ bias) (+ residual), W a [N, K] quantized matrix; x's
 * leading dimensions fold into rows. `options` as matmul's: with `out`, the result goes into
 * its columns [outColumn, outColumn + N) and `out` is returned.
 */
export function quantizedLinear(a: Tensor, w: QuantizedMatrix, options: QuantizedMatmulOptions = {}): Tensor {
  const rows = a.size / Math.max(a.dim(-1), 1);
  const version = chooseQuantizedVersion(rows, fixedSubgroupSize(a.gpu));
  if (version === "matvec_v4_subgroup") return quantizedMatvecSubgroup(a.gpu, a, w, options);
  if (version === "matvec_v3_unrolled") return quantizedMatvecUnrolled(a.gpu, a, w, options);
  if (version === "matmul_v2_subgroup") return quantizedMatmulSubgroup(a.gpu, a, w, options);
  return quantizedMatmulTiled(a.gpu, a, w, options);
}
