/**
 * Quantized matvec v4: v3's unit code (matvec_v3_unrolled.ts) in matmul's subgroup matvec
 * layout (matmul/matvec_v2_subgroup.ts), reduced with subgroupAdd.
 *
 * v3 is matvec_common.ts's skeleton: 32 lanes × 8 outputs per workgroup, each output's 32
 * partial sums added in workgroup memory by a 5-level tree with a barrier per level. On
 * lavapipe a workgroup of 256 invocations runs as 32 passes of one 8-wide SIMD subgroup, and a
 * barrier means saving and resuming every one of them; the tree's loads and stores of workgroup
 * memory are done lane by lane. Here a workgroup is exactly one subgroup (the device's fixed
 * subgroup size, 8 on lavapipe) and computes 2 or 4 neighbouring outputs (qmatvecV4Outputs): lane l
 * takes the row's 32-weight units l, l + lanes, ..., unpacks each with v3's code (every quant
 * a constant shift and mask of a named register), and keeps a partial sum per row of A and
 * output in registers. subgroupAdd then adds the lanes' sums in registers, and lane 0 stores
 * through matvec_common's epilogue (bias, residual, out/outColumn): no workgroup memory, no
 * barriers. The activations of a unit (8 vec4 per row of A) are loaded once and serve all
 * outputs of the subgroup, where v3 loads them again for each output.
 *
 * The arithmetic per unit is v3's; only the order of the final additions differs.
 */
import { check } from "../../tensor/errors.js";
import type { Gpu } from "../../tensor/gpu.js";
import { defineKernel, flatGrid, FLAT_WORKGROUP_WGSL } from "../../tensor/kernel.js";
import type { Tensor } from "../../tensor/tensor.js";
import { range } from "../wgsl/unroll.js";
import { requireFixedSubgroupSize } from "../subgroups.js";
import type { QuantizedType } from "./blocks.js";
import {
  planQuantizedMatmul,
  QMATVEC_MAX_ROWS,
  QUANTIZED_BINDINGS,
  QUANTIZED_EPILOGUE_WGSL,
  QUANTIZED_PARAMS,
  quantizedElementType,
  type QuantizedMatmulOptions,
  type QuantizedMatrix,
} from "./matvec_common.js";
import { K_SCALE_MIN_OF_WORDS_WGSL, unrolledUnitWgsl } from "./matvec_v3_unrolled.js";

/**
 * Outputs (rows of W) per subgroup for `type` and `rows` rows of A: 4, whose unpacked units
 * share each load of A 4 ways, except where lavapipe's LLVM compiles 4 into something slower
 * than 2. Measured on lavapipe (2 cores, subgroup 8, N = K = 2048, min of 4 runs of 8, ms,
 * 4 outputs / 2 outputs):
 *
 *   rows   Q8_0       Q4_0       Q4_K       Q5_K       Q6_K
 *   1      1.85/2.02  1.31/1.62  1.76/2.39  4.01/2.62  4.83/3.62
 *   2      3.38/3.39  2.08/2.71  3.87/3.15  4.82/5.53  5.47/7.01
 *   4      5.57/8.15  5.21/7.73  6.22/8.49  6.85/9.48  7.20/10.36
 *
 * (Q4_1, Q5_0, Q5_1 are like Q4_0. At N = 5632 Q6_K at 1 row and Q4_K at 2 rows again favour 2.)
 */
export function qmatvecV4Outputs(type: QuantizedType, rows: number): number {
  if (rows === 1 && (type === "Q5_K" || type === "Q6_K")) return 2;
  if (rows === 2 && type === "Q4_K") return 2;
  return 4;
}

type Spec = { type: QuantizedType; rows: number; lanes: number; outputs: number; subgroups: true };

function matvecWgsl({ type, rows, lanes, outputs }: Spec): string {
  const acc = outputs === 1 ? "f32" : `vec${outputs}f`;
  const unit = unrolledUnitWgsl(type);
  return /* wgsl */ `
${FLAT_WORKGROUP_WGSL}
${QUANTIZED_EPILOGUE_WGSL}
${K_SCALE_MIN_OF_WORDS_WGSL}

@compute @workgroup_size(${lanes})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(subgroup_invocation_id) lane: u32) {
  let n0 = flat_workgroup(wid, nwg) * ${outputs}u;
  // Outputs past N read the last row; their sums are never stored.
  ${range(outputs).map((j) => `let row${j} = min(n0 + ${j}u, params.N - 1u) * params.row_bytes;`).join("\n  ")}
  ${range(rows).map((m) => `var acc${m}: ${acc};`).join("\n  ")}
  for (var unit = lane; unit < params.K / 32u; unit += ${lanes}u) {
    ${range(rows)
      .map((m) => `let at${m} = (${m}u * params.K + unit * 32u) / 4u;\n    ${range(8).map((l) => `let a${m}_${l} = a[at${m} + ${l}u];`).join(" ")}`)
      .join("\n    ")}
    ${range(outputs)
      .map(
        (j) => `{
      let row = row${j};
      ${unit}
      ${range(8).map((l) => `let w4_${l} = vec4f(w${4 * l}, w${4 * l + 1}, w${4 * l + 2}, w${4 * l + 3});`).join("\n      ")}
      ${range(rows)
        .map((m) => `acc${m}${outputs === 1 ? "" : `[${j}]`} += ${range(8).map((l) => `dot(a${m}_${l}, w4_${l})`).join(" + ")};`)
        .join("\n      ")}
    }`,
      )
      .join("\n    ")}
  }
  ${range(rows).map((m) => `let sums${m} = subgroupAdd(acc${m});`).join("\n  ")}
  if (lane == 0u) {
    ${range(rows)
      .map((m) => range(outputs).map((j) => `if (n0 + ${j}u < params.N) { store_c(${m}u, n0 + ${j}u, sums${m}${outputs === 1 ? "" : `[${j}]`}); }`).join("\n    "))
      .join("\n    ")}
  }
}`;
}

const kernel = defineKernel({
  name: "qmatvec_v4_subgroup",
  params: QUANTIZED_PARAMS,
  bindings: QUANTIZED_BINDINGS,
  elementType: quantizedElementType(true),
  wgsl: matvecWgsl,
});

/**
 * C [M, N] f32 = A [M, K] f32 · Wᵀ (+ bias) (+ residual), W a [N, K] quantized matrix, 1 ≤ M ≤ 4
 * (A's leading dimensions fold into M); `options` as matmul's (matvec_common.ts). Needs a
 * fixed subgroup size (subgroups.ts). `outputs` per subgroup (1 to 4) defaults to
 * qmatvecV4Outputs's choice; setting it is for measuring.
 */
export function quantizedMatvecSubgroup(gpu: Gpu, a: Tensor, w: QuantizedMatrix, options: QuantizedMatmulOptions = {}, outputs?: number): Tensor {
  const lanes = requireFixedSubgroupSize(gpu, "quantized matvec_v4_subgroup");
  const call = planQuantizedMatmul("quantizedMatvec", a, w, options, QMATVEC_MAX_ROWS);
  outputs ??= qmatvecV4Outputs(w.type, call.M);
  check(Number.isInteger(outputs) && outputs >= 1 && outputs <= 4, () => `quantized matvec_v4_subgroup: ${outputs} outputs per subgroup; it takes 1 to 4`);
  gpu.record(kernel, {
    params: call.params,
    tensors: call.tensors,
    workgroups: flatGrid(Math.ceil(call.N / outputs)),
    spec: { type: w.type, rows: call.M, lanes, outputs, subgroups: true },
  });
  return call.c;
}
