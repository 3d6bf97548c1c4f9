/**
 * matvec v2: C = A·Bᵀ for 1 to 4 rows of A (decoding), reduced with subgroupAdd.
 *
 * A workgroup is one subgroup of W lanes (8 on lavapipe, 32 on most GPUs) and computes 4
 * outputs, n0 .. n0 + 3, for every row of A. Its lanes split K: lane l reads quads (4
 * K-values, see quads.ts) l, l + W, l + 2W, ... of the 4 rows of B and of each row of A, so
 * neighbouring lanes read neighbouring 16 bytes (8 for packed f16) of the same row: on a GPU a
 * subgroup reads one contiguous 512-byte run of each row per step, the coalesced stream a
 * bandwidth-bound kernel wants. Each A quad serves 4 rows of B. At the end each lane holds
 * partial sums; subgroupAdd adds them across the subgroup in registers: no workgroup memory,
 * no barriers (matvec v1 reduces 32 partial sums per output through workgroup memory in 5
 * barrier-separated rounds).
 *
 * f16 operands are read as packed pairs of halves (two 32-bit words per quad, see v6): the
 * weights of decoding are f16, and on lavapipe the load work is per 32-bit component.
 *
 * 4 rows of B per subgroup is the balance: 1 loads A 4× as often, 16 spill registers
 * (bench/RESULTS.md has both versions' rates).
 */
import { check } from "../../tensor/errors.js";
import { defineKernel, flatGrid, FLAT_WORKGROUP_WGSL } from "../../tensor/kernel.js";
import type { Tensor } from "../../tensor/tensor.js";
import { FLAGGED_EPILOGUE_WGSL, FLAGGED_PARAMS, flaggedParams } from "./bias_flag.js";
import { MATMUL_BINDINGS, matmulTensors, matmulQuadElementType, planMatmul, type MatmulOptions } from "./common.js";
import { quadFetchWgsl, quadMode, type QuadMode } from "../wgsl/quads.js";
import { range } from "../wgsl/unroll.js";
import { requireFixedSubgroupSize } from "../subgroups.js";

/** Outputs (rows of B) per subgroup. */
const OUTPUTS = 4;
/**
 * The most rows of A: their sums and loads are unrolled. On lavapipe v6 (which shares loads
 * between lanes) is already faster at 4 rows, so matmul's rule stops at 3 there (index.ts).
 */
export const MATVEC_V2_MAX_ROWS = 4;

type MatvecSpec = { aMode: QuadMode; bMode: QuadMode; lanes: number; rows: number; subgroups: true };

const kernel = defineKernel({
  name: "matvec_v2_subgroup",
  params: FLAGGED_PARAMS,
  bindings: MATMUL_BINDINGS,
  elementType: matmulQuadElementType,
  wgsl: ({ aMode, bMode, lanes, rows }: MatvecSpec) => /* wgsl */ `
${FLAGGED_EPILOGUE_WGSL}
${FLAT_WORKGROUP_WGSL}
${quadFetchWgsl("a", aMode, { length: "params.K" })}
${quadFetchWgsl("b", bMode, { length: "params.K" })}

@compute @workgroup_size(${lanes})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(subgroup_invocation_id) lane: u32) {
  let n0 = flat_workgroup(wid, nwg) * ${OUTPUTS}u;
  // Rows past N load the last row; their sums are never stored.
  ${range(OUTPUTS).map((j) => `let b_row${j} = min(n0 + ${j}u, params.N - 1u) * params.K;`).join("\n  ")}
  var acc: array<vec4f, ${rows}>; // acc[m][j]: this lane's part of row m of A · row n0 + j of B
  let quads = (params.K + 3u) / 4u;
  for (var q = lane; q < quads; q += ${lanes}u) {
    let k = q * 4u;
    ${range(OUTPUTS).map((j) => `let b${j} = quad_b(b_row${j}, k);`).join("\n    ")}
    ${range(rows).map((m) => `{ let a = quad_a(${m}u * params.K, k); acc[${m}] += vec4f(${range(OUTPUTS).map((j) => `dot(a, b${j})`).join(", ")}); }`).join("\n    ")}
  }
  ${range(rows).map((m) => `let sums${m} = subgroupAdd(acc[${m}]);`).join("\n  ")}
  if (lane == 0u) {
    ${range(rows)
      .map((m) => range(OUTPUTS).map((j) => `if (n0 + ${j}u < params.N) { store_c(0u, ${m}u, n0 + ${j}u, sums${m}[${j}]); }`).join("\n    "))
      .join("\n    ")}
  }
}`,
});

export function matvecSubgroup(a: Tensor, b: Tensor, options: MatmulOptions = {}): Tensor {
  const lanes = requireFixedSubgroupSize(a.gpu, "matmul matvec_v2_subgroup");
  const call = planMatmul("matvec_v2_subgroup", a, b, options, ({ M, batchedB }) => {
    check(!batchedB, () => `matvec_v2_subgroup: B ${b.describe()} must be a single [N, K] matrix`);
    check(M >= 1 && M <= MATVEC_V2_MAX_ROWS, () => `matvec_v2_subgroup: A ${a.describe()} has ${M} rows; matvec_v2_subgroup takes 1 to ${MATVEC_V2_MAX_ROWS}`);
  });
  const { M, N, K } = call.shape;
  a.gpu.record(kernel, {
    params: flaggedParams(call),
    tensors: matmulTensors(call),
    workgroups: flatGrid(Math.ceil(N / OUTPUTS)),
    spec: { aMode: quadMode(a, K, true), bMode: quadMode(b, K, true), lanes, rows: M, subgroups: true },
  });
  return call.c;
}
