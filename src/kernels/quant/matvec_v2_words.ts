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
import { defineKernel } from "../../tensor/kernel.js";
import type { Tensor } from "../../tensor/tensor.js";
import type { QuantizedType } from "./blocks.js";
import { QUANTIZED_BINDINGS, QUANTIZED_PARAMS, quantizedElementType, quantizedMatvecWgsl, recordQuantizedMatvec, type QuantizedMatmulOptions, type QuantizedMatrix } from "./matvec_common.js";
import { unitWeightsWgsl, windowWgsl } from "./unpack_wgsl.js";

const kernel = defineKernel({
  name: "qmatvec_v2_words",
  params: QUANTIZED_PARAMS,
  bindings: QUANTIZED_BINDINGS,
  elementType: quantizedElementType(true),
  wgsl: ({ type, rows }: { type: QuantizedType; rows: number }) =>
    quantizedMatvecWgsl(
      rows,
      windowWgsl("b"),
      `var w: array<f32, 32>;
      ${unitWeightsWgsl(type)}
      for (var m = 0u; m < ROWS; m++) {
        var sum = 0.0;
        let a_at = (m * params.K + unit * 32u) / 4u;
        for (var l = 0u; l < 8u; l++) { sum += dot(a[a_at + l], vec4f(w[4u * l], w[4u * l + 1u], w[4u * l + 2u], w[4u * l + 3u])); }
        acc[m] += sum;
      }`,
    ),
});

/**
 * C [M, N] f32 = A [M, K] f32 · Wᵀ (+ bias) (+ residual), W a [N, K] quantized matrix, 1 ≤ M ≤ 4
 * (A's leading dimensions fold into M); `options` as matmul's (matvec_common.ts).
 */
export function quantizedMatvecWords(gpu: Gpu, a: Tensor, w: QuantizedMatrix, options: QuantizedMatmulOptions = {}): Tensor {
  return recordQuantizedMatvec(gpu, kernel, a, w, options);
}
