/**
 * The definition every quantized product computes (the matvecs and the tiled matmul), in
 * float64, and how far a right kernel may be from it:
 *
 *   C[m, n] = Σ_k A[m, k] · W[n, k]  (+ bias[n])  (+ residual[m, n])
 *
 * with W the weights blocks.ts's dequantize reads out of ggml's packed bytes.
 */
import { dequantize, type QuantizedType } from "./blocks.js";

/** Σ_k a[m, k]·w[n, k] (+ bias[n]) (+ residual[m, n]) in float64, for A [M, K] and W [N, K]. */
function product(a: ArrayLike<number>, w: ArrayLike<number>, bias: ArrayLike<number> | null, residual: ArrayLike<number> | null, M: number, N: number, K: number): Float64Array {
  const c = new Float64Array(M * N);
  for (let m = 0; m < M; m++) {
    for (let n = 0; n < N; n++) {
      let sum = bias ? bias[n] : 0;
      for (let k = 0; k < K; k++) sum += a[m * K + k] * w[n * K + k];
      c[m * N + n] = residual ? sum + residual[m * N + n] : sum;
    }
  }
  return c;
}

/** C [M, N] in float64 for A [M, K] and the [N, K] `type` matrix packed in `bytes`. */
export function quantizedMatmulReference(
  type: QuantizedType,
  bytes: Uint8Array,
  N: number,
  K: number,
  a: ArrayLike<number>,
  M: number,
  bias: ArrayLike<number> | null = null,
  /** Shaped like C: [M, N]. */
  residual: ArrayLike<number> | null = null,
): Float64Array {
  return product(a, dequantize(type, bytes, N * K), bias, residual, M, N, K);
}

/**
 * The error bound of each output, derived as matmulErrorBounds's (matmul/reference.ts): a sum
 * of K products in float32 in any order is within (K + 1)·u·Σ|a_k·w_k| of the exact one, u =
 * 2^-24, and bias and residual are one more term each. The kernels compute each weight in
 * float32 from the block's numbers, where every product of scale and quant is exact (an f16
 * scale's 11 bits times a K-quant's sub-scale, at most 7, and a quant, at most 6: 24 bits at
 * most), so a weight is off by at most the one rounding of adding its minimum (Q4_1, Q5_1,
 * Q4_K, Q5_K): u·|w|, one more term. The kernels' sums are far shorter than K + 1 roundings
 * along any path (the tiled matmul's K/4 chained quads, the matvecs' 32-term units, their
 * chain and a 5-level tree). Outputs are f32, whose subnormals a GPU may flush: 2^-126
 * absolute. A dropped, repeated or misplaced unit of 32 weights is off by far more than this
 * while K ≪ 2^12.
 */
export function quantizedMatmulErrorBounds(
  type: QuantizedType,
  bytes: Uint8Array,
  N: number,
  K: number,
  a: ArrayLike<number>,
  M: number,
  bias: ArrayLike<number> | null = null,
  residual: ArrayLike<number> | null = null,
): Float64Array {
  const abs = (x: ArrayLike<number>) => Float64Array.from(x, Math.abs);
  const w = abs(dequantize(type, bytes, N * K));
  const magnitude = product(abs(a), w, bias && abs(bias), residual && abs(residual), M, N, K);
  const terms = K + 2 + (bias ? 1 : 0) + (residual ? 1 : 0);
  return magnitude.map((mag) => terms * 2 ** -24 * mag + 2 ** -126);
}
