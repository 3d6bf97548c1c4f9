/**
 * matmul: C = A·Bᵀ (+ bias), with B a weight stored [N, K] as nn.Linear stores it.
 *
 * The versions live side by side, each in its own file with its idea at the top; `wgsl-vlm
 * bench kernels` checks and times them all, and bench/RESULTS.md has what they measured:
 *   v1_naive              one thread per output, everything from global memory
 *   v2_tiled              16×16 tiles staged in workgroup memory
 *   v3_register_tiled     64×64 tiles, 4×4 outputs per thread in registers, vec4 loads
 *   v4_register_blocked   4×4 blocks per thread straight from global memory, no barriers
 *   v5_subgroup_broadcast one subgroup per 16×16 tile (lavapipe), A shared by subgroupBroadcast
 *   v6_f16_packed         v5 reading f16 operands as packed pairs of halves
 *   matvec                1 to 8 rows of A (decoding): B streamed once, workgroup-memory reduction
 *   matvec_v2_subgroup    1 to 4 rows, lanes along K, reduced with subgroupAdd
 *   matvec_v3_multi_subgroup  v2 with 4 subgroups per workgroup splitting K, reduced through
 *                         workgroup memory after subgroupAdd (more warps per output on big GPUs)
 *
 * Every version takes MatmulOptions.residual (C = A·Bᵀ + bias + residual, added in its
 * epilogue). Beside them, the fused projections of a decoder layer, each a matvec variant with
 * its own entry for prefill and decode: gated_matvec.ts (gate and up with act(gate)·up as the
 * epilogue: gatedLinear) and qkv_matvec.ts (q, k and v into one output: qkvLinear).
 *
 * The runtime chooses by rule, from the device and the shape (chooseMatmulVersion); "subgroups"
 * below means the `subgroups` feature with a fixed subgroup size (see subgroups.ts):
 * - 1 to subgroupMatvecMaxRows rows of A against one weight, with subgroups (decoding): on
 *   a GPU 4 rows (MATVEC_V2_MAX_ROWS) and matvec_v3_multi_subgroup, on a CPU adapter
 *   (lavapipe) 3 rows and matvec_v2_subgroup. Both
 *   stream B once, coalesced, and reduce in registers; v3 gives each 4 outputs 4 subgroups
 *   instead of 1. No GPU was available to measure v3 on: the rule expects it to win there
 *   because v2 puts too little work in flight on a large one. On an H100 (132 SMs, 32-lane
 *   warps) v2 launches N/4 one-warp workgroups: 64 for TinyLlama's k/v projections (N = 256,
 *   K = 2048), leaving half the SMs idle and the rest with one warp, and 1024 at 7B's N = 4096,
 *   under 8 warps per SM, too few to hide DRAM latency in a bandwidth-bound loop. v3 has the
 *   same workgroups with 4 warps each: 256 warps over 64 SMs at k/v (still short of the SMs,
 *   but 4 times the loads in flight per SM) and 4096, about 31 per SM, at 7B; its extra cost,
 *   one barrier and a 4 × rows × 4-float reduction per workgroup, is small beside the K/512
 *   loop steps each warp still streams (K/128 in v2). On lavapipe a workgroup is one CPU thread, so more
 *   subgroups per workgroup buy nothing and cost the barrier. Measured there (1 row, f16
 *   weights, `wgsl-vlm bench kernels --quick --only matmul,decode`, v2 against v3, medians):
 *   TinyLlama q/o 2048×2048 2.42 against 3.05 ms, k/v 256×2048 288 against 360 µs (an earlier
 *   run had v3 ahead, 341 against 434 µs, but v2's deviation there was ±63%), gate/up
 *   5632×2048 6.55 against 8.65 ms, down 2048×5632 6.59 against 8.59 ms, lm_head 32000×2048
 *   34.5 against 39.0 ms; LLaMA-7B q/k/v/o 4096×4096 9.37 against 12.6 ms, gate/up
 *   11008×4096 24.3 against 31.7 ms, down 4096×11008 25.1 against 33.1 ms, lm_head
 *   32000×4096 69.7 against 86.8 ms: v3 is 1.1 to 1.35 times slower on lavapipe.
 * - on a CPU adapter (lavapipe): v6 with subgroups (v5's kernel, and faster on f16 weights;
 *   from 4 rows on its 8-row tile beats matvec_v2: 3.8 against 4.5 ms at 4 rows against
 *   TinyLlama's 2048×2048 f16 weight, even with half the tile past A's edge, a tie at 3), else matvec for up to MATVEC_MAX_ROWS rows
 *   against one weight and v4 beyond: there each version was faster than the one before it,
 *   v2 excepted (see bench/RESULTS.md).
 * - on a GPU: matvec for up to MATVEC_MAX_ROWS rows against one weight, else v3: the shapes
 *   GPUs are built for (coalesced loads, staged in workgroup memory, register tiles). The
 *   versions from v4 on were tuned on lavapipe, whose costs are the opposite (see v4 and v5),
 *   and no GPU was available to measure them on.
 */
import type { Gpu } from "../../tensor/gpu.js";
import type { Tensor } from "../../tensor/tensor.js";
import type { MatmulOptions } from "./common.js";
import { matvec, MATVEC_MAX_ROWS } from "./matvec.js";
import { matvecSubgroup, MATVEC_V2_MAX_ROWS } from "./matvec_v2_subgroup.js";
import { matvecMultiSubgroup } from "./matvec_v3_multi_subgroup.js";
import { fixedSubgroupSize } from "../subgroups.js";
import { matmulNaive } from "./v1_naive.js";
import { matmulTiled } from "./v2_tiled.js";
import { matmulRegisterTiled } from "./v3_register_tiled.js";
import { matmulRegisterBlocked } from "./v4_register_blocked.js";
import { matmulSubgroupBroadcast } from "./v5_subgroup_broadcast.js";
import { matmulF16Packed } from "./v6_f16_packed.js";

export type { MatmulOptions } from "./common.js";
export { matmulReference, type MatmulShape } from "./reference.js";
export { fixedSubgroupSize } from "../subgroups.js";
export { MATVEC_MAX_ROWS } from "./matvec.js";
export { MATVEC_V2_MAX_ROWS } from "./matvec_v2_subgroup.js";
export { MATVEC_V3_MAX_ROWS, MATVEC_V3_SUBGROUPS } from "./matvec_v3_multi_subgroup.js";

export type MatmulVersion = (a: Tensor, b: Tensor, options?: MatmulOptions) => Tensor;

/** Every version by name, for tests and benchmarks (see matmulVersionSupported). */
export const MATMUL_VERSIONS: Record<string, MatmulVersion> = {
  v1_naive: matmulNaive,
  v2_tiled: matmulTiled,
  v3_register_tiled: matmulRegisterTiled,
  v4_register_blocked: matmulRegisterBlocked,
  v5_subgroup_broadcast: matmulSubgroupBroadcast,
  v6_f16_packed: matmulF16Packed,
  matvec,
  matvec_v2_subgroup: matvecSubgroup,
  matvec_v3_multi_subgroup: matvecMultiSubgroup,
};

/** The versions that need a fixed subgroup size (see subgroups.ts). */
const SUBGROUP_VERSIONS = new Set(["v5_subgroup_broadcast", "v6_f16_packed", "matvec_v2_subgroup", "matvec_v3_multi_subgroup"]);

/** Whether `version` can run on this device (the subgroup versions need a fixed subgroup size). */
export function matmulVersionSupported(gpu: Gpu, version: string): boolean {
  return version in MATMUL_VERSIONS && (!SUBGROUP_VERSIONS.has(version) || fixedSubgroupSize(gpu) !== null);
}

/**
 * The most rows of A (sequences decoded together) that the subgroup matrix-vector kernels take
 * on this device: matmul's matvec_v2/v3 and the fused gated and q|k|v products. Beyond it the
 * tiled versions and the unfused compositions run (the rule above).
 */
export function subgroupMatvecMaxRows(gpu: Gpu): number {
  return gpu.adapter.isFallbackAdapter ? CPU_SUBGROUP_MATVEC_MAX_ROWS : MATVEC_V2_MAX_ROWS;
}

/** On a CPU adapter v6 overtakes matvec_v2 from 4 rows (the rule above). */
const CPU_SUBGROUP_MATVEC_MAX_ROWS = 3;

/** The version `matmul` runs for A·Bᵀ on A's device (the rule at the top of this file). */
export function chooseMatmulVersion(a: Tensor, b: Tensor): string {
  const gpu = a.gpu;
  const subgroups = fixedSubgroupSize(gpu) !== null;
  const rows = a.size / Math.max(a.dim(-1), 1);
  const weight = b.rank === 2;
  if (weight && subgroups && rows <= subgroupMatvecMaxRows(gpu)) {
    return gpu.adapter.isFallbackAdapter ? "matvec_v2_subgroup" : "matvec_v3_multi_subgroup";
  }
  if (gpu.adapter.isFallbackAdapter && subgroups) return "v6_f16_packed";
  if (weight && rows <= MATVEC_MAX_ROWS) return "matvec";
  return gpu.adapter.isFallbackAdapter ? "v4_register_blocked" : "v3_register_tiled";
}

export function matmul(a: Tensor, b: Tensor, options: MatmulOptions = {}): Tensor {
  return MATMUL_VERSIONS[chooseMatmulVersion(a, b)](a, b, options);
}
