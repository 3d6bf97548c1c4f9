/**
 * matvec v3: C = A·Bᵀ for 1 to 4 rows of A (decoding), S subgroups per workgroup.
 *
 * matvec v2 makes a workgroup one subgroup: 4 outputs per W lanes. On a large GPU that is too
 * little work in flight. An H100 has 132 SMs and 32-lane subgroups; TinyLlama's k and v
 * projections (N = 256, K = 2048) are 64 workgroups of one warp each, so half the SMs get no
 * work at all and the rest one warp each, far too few to hide the latency of DRAM loads. At 7B
 * sizes (N = 4096) v2 has 1024 one-warp workgroups, under 8 warps per SM.
 *
 * v3 keeps v2's 4 outputs per workgroup and its loads, and makes the workgroup S = 4 subgroups
 * (S × W invocations): the same rows of B are now read by 4W lanes, each K-step covering 4W
 * quads instead of W. Subgroup s, lane l reads quads s·W + l, s·W + l + S·W, ... of the 4 rows
 * of B and of each row of A (interleaved, so the whole workgroup still reads one contiguous
 * run of each row per step: 2 KiB of f32 on a 32-lane GPU), which makes each lane's loop S
 * times shorter and puts S times more warps on the same bytes. The reduction has two levels:
 * subgroupAdd inside each subgroup (registers, as in v2), then lane 0 of each subgroup writes
 * its rows × 4 sums to a small workgroup array (S × rows vec4f, at most 256 bytes), one
 * barrier, and lanes 0..3 of subgroup 0 each add the S partial sums of one output and store it
 * through the shared epilogue (bias and residual flags, bias_flag.ts).
 *
 * The subgroup index is the `subgroup_id` builtin (Dawn accepts it; with a fixed subgroup size,
 * which requireFixedSubgroupSize guarantees, and a workgroup of S × W there are exactly S full
 * subgroups). f16 operands are read as packed pairs of halves, as in v2 (quads.ts).
 *
 * On lavapipe, where a workgroup is one CPU thread running its invocations in SIMD lanes, the
 * extra subgroups buy no parallelism and cost the barrier and the workgroup array, so there v2
 * stays (index.ts has both rates).
 */
import { check } from "../../tensor/errors.js";
import { defineKernel, flatGrid, FLAT_WORKGROUP_WGSL } from "../../tensor/kernel.js";
import type { Tensor } from "../../tensor/tensor.js";
import { FLAGGED_EPILOGUE_WGSL, FLAGGED_PARAMS, flaggedParams } from "./bias_flag.js";
import { MATMUL_BINDINGS, matmulTensors, matmulQuadElementType, planMatmul, type MatmulOptions } from "./common.js";
import { MATVEC_V2_MAX_ROWS } from "./matvec_v2_subgroup.js";
import { quadFetchWgsl, quadMode, type QuadMode } from "../wgsl/quads.js";
import { range } from "../wgsl/unroll.js";
import { requireFixedSubgroupSize } from "../subgroups.js";

/** Outputs (rows of B) per workgroup, as in v2. */
const OUTPUTS = 4;
/** Subgroups per workgroup, splitting K between them. */
export const MATVEC_V3_SUBGROUPS = 4;
/** The most rows of A: v2's limit, for the same reasons (unrolled sums; v6 beyond). */
export const MATVEC_V3_MAX_ROWS = MATVEC_V2_MAX_ROWS;

type MatvecSpec = { aMode: QuadMode; bMode: QuadMode; lanes: number; rows: number; subgroupCount: number; subgroups: true };

const kernel = defineKernel({
  name: "matvec_v3_multi_subgroup",
  params: FLAGGED_PARAMS,
  bindings: MATMUL_BINDINGS,
  elementType: matmulQuadElementType,
  wgsl: ({ aMode, bMode, lanes, rows, subgroupCount }: MatvecSpec) => /* wgsl */ `
${FLAGGED_EPILOGUE_WGSL}
${FLAT_WORKGROUP_WGSL}
${quadFetchWgsl("a", aMode, { length: "params.K" })}
${quadFetchWgsl("b", bMode, { length: "params.K" })}

// partial[s * ${rows} + m][j]: subgroup s's sum of row m of A · row n0 + j of B.
var<workgroup> partial: array<vec4f, ${subgroupCount * rows}>;

@compute @workgroup_size(${subgroupCount * lanes})
fn main(
  @builtin(workgroup_id) wid: vec3u,
  @builtin(num_workgroups) nwg: vec3u,
  @builtin(subgroup_id) sg: u32,
  @builtin(subgroup_invocation_id) lane: u32,
) {
  let n0 = flat_workgroup(wid, nwg) * ${OUTPUTS}u;
  // Rows past N load the last row; their sums are never stored.
  ${range(OUTPUTS).map((j) => `let b_row${j} = min(n0 + ${j}u, params.N - 1u) * params.K;`).join("\n  ")}
  var acc: array<vec4f, ${rows}>; // acc[m][j]: this lane's part of row m of A · row n0 + j of B
  let quads = (params.K + 3u) / 4u;
  for (var q = sg * ${lanes}u + lane; q < quads; q += ${subgroupCount * lanes}u) {
    let k = q * 4u;
    ${range(OUTPUTS).map((j) => `let b${j} = quad_b(b_row${j}, k);`).join("\n    ")}
    ${range(rows).map((m) => `{ let a = quad_a(${m}u * params.K, k); acc[${m}] += vec4f(${range(OUTPUTS).map((j) => `dot(a, b${j})`).join(", ")}); }`).join("\n    ")}
  }
  ${range(rows).map((m) => `let sums${m} = subgroupAdd(acc[${m}]);`).join("\n  ")}
  if (lane == 0u) {
    ${range(rows).map((m) => `partial[sg * ${rows}u + ${m}u] = sums${m};`).join("\n    ")}
  }
  workgroupBarrier();
  // Lane j of subgroup 0 finishes output n0 + j for every row of A.
  if (sg == 0u && lane < ${OUTPUTS}u && n0 + lane < params.N) {
    ${range(rows)
      .map((m) => `store_c(0u, ${m}u, n0 + lane, ${range(subgroupCount).map((s) => `partial[${s * rows + m}u][lane]`).join(" + ")});`)
      .join("\n    ")}
  }
}`,
});

export function matvecMultiSubgroup(a: Tensor, b: Tensor, options: MatmulOptions = {}): Tensor {
  const lanes = requireFixedSubgroupSize(a.gpu, "matmul matvec_v3_multi_subgroup");
  const call = planMatmul("matvec_v3_multi_subgroup", a, b, options, ({ M, batchedB }) => {
    check(!batchedB, () => `matvec_v3_multi_subgroup: B ${b.describe()} must be a single [N, K] matrix`);
    check(
      M >= 1 && M <= MATVEC_V3_MAX_ROWS,
      () => `matvec_v3_multi_subgroup: A ${a.describe()} has ${M} rows; matvec_v3_multi_subgroup takes 1 to ${MATVEC_V3_MAX_ROWS}`,
    );
  });
  const { M, N, K } = call.shape;
  a.gpu.record(kernel, {
    params: flaggedParams(call),
    tensors: matmulTensors(call),
    workgroups: flatGrid(Math.ceil(N / OUTPUTS)),
    spec: { aMode: quadMode(a, K, true), bMode: quadMode(b, K, true), lanes, rows: M, subgroupCount: MATVEC_V3_SUBGROUPS, subgroups: true },
  });
  return call.c;
}
