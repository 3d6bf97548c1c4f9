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
 *
 * Every version takes MatmulOptions.residual (C = A·Bᵀ + bias + residual, added in its
 * epilogue). Beside them, the fused projections of a decoder layer, each a matvec variant with
 * its own entry for prefill and decode: gated_matvec.ts (gate and up with act(gate)·up as the
 * epilogue: gatedLinear) and qkv_matvec.ts (q, k and v into one output: qkvLinear).
 *
 * The runtime chooses by rule, from the device and the shape (chooseMatmulVersion); "subgroups"
 * below means the `subgroups` feature with a fixed subgroup size (see subgroups.ts):
 * - 1 to MATVEC_V2_MAX_ROWS (4) rows of A against one weight, with subgroups (decoding):
 *   matvec_v2_subgroup. It streams B once, coalesced, and reduces in registers.
 * - on a CPU adapter (lavapipe): v6 with subgroups (v5's kernel, and faster on f16 weights;
 *   from about 4 rows on it beats matvec_v2), else matvec for up to MATVEC_MAX_ROWS rows
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
};

/** The versions that need a fixed subgroup size (see subgroups.ts). */
const SUBGROUP_VERSIONS = new Set(["v5_subgroup_broadcast", "v6_f16_packed", "matvec_v2_subgroup"]);

/** Whether `version` can run on this device (the subgroup versions need a fixed subgroup size). */
export function matmulVersionSupported(gpu: Gpu, version: string): boolean {
  return version in MATMUL_VERSIONS && (!SUBGROUP_VERSIONS.has(version) || fixedSubgroupSize(gpu) !== null);
}

/** The version `matmul` runs for A·Bᵀ on A's device (the rule at the top of this file). */
export function chooseMatmulVersion(a: Tensor, b: Tensor): string {
  const gpu = a.gpu;
  const subgroups = fixedSubgroupSize(gpu) !== null;
  const rows = a.size / Math.max(a.dim(-1), 1);
  const weight = b.rank === 2;
  if (weight && subgroups && rows <= MATVEC_V2_MAX_ROWS) return "matvec_v2_subgroup";
  if (gpu.adapter.isFallbackAdapter && subgroups) return "v6_f16_packed";
  if (weight && rows <= MATVEC_MAX_ROWS) return "matvec";
  return gpu.adapter.isFallbackAdapter ? "v4_register_blocked" : "v3_register_tiled";
}

export function matmul(a: Tensor, b: Tensor, options: MatmulOptions = {}): Tensor {
  return MATMUL_VERSIONS[chooseMatmulVersion(a, b)](a, b, options);
}
