/**
 * Quantized matvec v2: v1 (matvec_v1_blocks.ts) reading whole words.
 *
 * v1 fetched every byte of a block with a load of its own, and the activations one float at a
 * time: on lavapipe each of those loads is done lane by lane, so Q8_0 cost 33 weight loads and
 * 32 activation loads per 32 weights. Here a lane first copies the words that hold the bytes
 * it needs into registers (unpack_wgsl.ts: the whole block for the 32-element types, the
 * header, the 32 quant bytes and the 32 high-bit bytes of a K-quant sub-block), then picks
 * the bytes out of that window, and reads the activations as vec4s: 9 weight loads and 8
 * activation loads for the same 32 Q8_0 weights. The arithmetic, and so the result, is v1's.
 */
import type { Gpu } from "../../tensor/gpu.js";
import { defineKernel, flatGrid, FLAT_WORKGROUP_WGSL } from "../../tensor/kernel.js";
import type { Tensor } from "../../tensor/tensor.js";
import type { QuantizedType } from "./blocks.js";
import { planQuantizedMatvec, type QuantizedMatrix } from "./matvec_v1_blocks.js";
import { unitWeightsWgsl, windowWgsl } from "./unpack_wgsl.js";

const LANES = 32;
const OUTPUTS = 8;

const kernel = defineKernel({
  name: "qmatvec_v2_words",
  params: { M: "u32", N: "u32", K: "u32", row_bytes: "u32" },
  bindings: { a: "read", b: "read", c: "read_write" },
  elementType: (binding) => (binding === "b" ? "u32" : binding === "a" ? "vec4<f32>" : "f32"),
  wgsl: ({ type, rows }: { type: QuantizedType; rows: number }) => /* wgsl */ `
${FLAT_WORKGROUP_WGSL}

const ROWS = ${rows}u;
const LANES = ${LANES}u;
var<workgroup> partial: array<array<f32, ${LANES}>, ${OUTPUTS * rows}>;

${windowWgsl("b")}
@compute @workgroup_size(${LANES}, ${OUTPUTS})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let out = flat_workgroup(wid, nwg) * ${OUTPUTS}u + lid.y;
  let lane = lid.x;
  var acc: array<f32, ${rows}>;
  if (out < params.N) {
    let row = out * params.row_bytes;
    var w: array<f32, 32>;
    for (var unit = lane; unit < params.K / 32u; unit += LANES) {
      ${unitWeightsWgsl(type)}
      for (var m = 0u; m < ROWS; m++) {
        var sum = 0.0;
        let a_at = (m * params.K + unit * 32u) / 4u;
        for (var l = 0u; l < 8u; l++) { sum += dot(a[a_at + l], vec4f(w[4u * l], w[4u * l + 1u], w[4u * l + 2u], w[4u * l + 3u])); }
        acc[m] += sum;
      }
    }
  }
  for (var m = 0u; m < ROWS; m++) { partial[lid.y * ROWS + m][lane] = acc[m]; }
  workgroupBarrier();
  for (var width = LANES / 2u; width > 0u; width /= 2u) {
    if (lane < width) {
      for (var m = 0u; m < ROWS; m++) { partial[lid.y * ROWS + m][lane] += partial[lid.y * ROWS + m][lane + width]; }
    }
    workgroupBarrier();
  }
  if (lane < ROWS && out < params.N) { c[lane * params.N + out] = partial[lid.y * ROWS + lane][0]; }
}`,
});

/** C [M, N] f32 = A [M, K] f32 · Wᵀ, W a [N, K] quantized matrix, 1 ≤ M ≤ 4. */
export function quantizedMatvecWords(gpu: Gpu, a: Tensor, w: QuantizedMatrix): Tensor {
  const { M, N, K, rowBytes } = planQuantizedMatvec(a, w);
  const c = gpu.empty([M, N], "f32", { name: "qmatvec out" });
  gpu.record(kernel, {
    params: { M, N, K, row_bytes: rowBytes },
    tensors: { a, b: w.data, c },
    workgroups: flatGrid(Math.ceil(N / OUTPUTS)),
    spec: { type: w.type, rows: M },
  });
  return c;
}
