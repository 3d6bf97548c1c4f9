/**
 * Quantized matvec v1: C = A·Wᵀ for 1 to 4 rows of A (decoding), W held as ggml's packed
 * blocks (blocks.ts) exactly as the GGUF file stores them, dequantized in the kernel.
 *
 * Decoding reads every weight once per token, so the fewer bytes a weight takes the faster
 * the token: Q4_0 is 4.5 bits a weight against f16's 16. Nothing is expanded in GPU memory;
 * each weight is turned back into a float in registers (unpack_wgsl.ts), just before it is
 * multiplied. The layout is matvec's (matvec_common.ts). A block's bytes are not 4-byte aligned
 * (a Q8_0 block is 34 bytes), so this first version reads every byte with a load of its own,
 * picked out of its u32 word, and the activations one float at a time: simple, and what the
 * later versions are measured against.
 */
import type { Gpu } from "../../tensor/gpu.js";
import { defineKernel } from "../../tensor/kernel.js";
import type { Tensor } from "../../tensor/tensor.js";
import type { QuantizedType } from "./blocks.js";
import { QUANTIZED_BINDINGS, QUANTIZED_PARAMS, quantizedElementType, quantizedMatvecWgsl, recordQuantizedMatvec, type QuantizedMatmulOptions, type QuantizedMatrix } from "./matvec_common.js";
import { directWgsl, unitWeightsWgsl } from "./unpack_wgsl.js";

const kernel = defineKernel({
  name: "qmatvec_v1_blocks",
  params: QUANTIZED_PARAMS,
  bindings: QUANTIZED_BINDINGS,
  elementType: quantizedElementType(false),
  wgsl: ({ type, rows }: { type: QuantizedType; rows: number }) =>
    quantizedMatvecWgsl(
      rows,
      directWgsl("b"),
      `var w: array<f32, 32>;
      ${unitWeightsWgsl(type)}
      for (var m = 0u; m < ROWS; m++) {
        var sum = 0.0;
        for (var l = 0u; l < 32u; l++) { sum += a[m * params.K + unit * 32u + l] * w[l]; }
        acc[m] += sum;
      }`,
    ),
});

/**
 * C [M, N] f32 = A [M, K] f32 · Wᵀ (+ bias) (+ residual), W a [N, K] quantized matrix, 1 ≤ M ≤ 4
 * (A's leading dimensions fold into M); `options` as matmul's (matvec_common.ts).
 */
export function quantizedMatvec(gpu: Gpu, a: Tensor, w: QuantizedMatrix, options: QuantizedMatmulOptions = {}): Tensor {
  return recordQuantizedMatvec(gpu, kernel, a, w, options);
}
