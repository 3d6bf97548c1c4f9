/**
 * The definition every matmul version computes, in float64:
 *
 *   C[b, m, n] = Σ_k A[b, m, k] · B[b, n, k]  (+ bias[n])  (+ residual[b, m, n])
 *
 * B is stored [N, K], row by row, the way nn.Linear stores its weight ([out_features,
 * in_features]), so C = A·Bᵀ. B either has a batch dimension matching A's or is one matrix
 * shared by every batch (a weight).
 */
import type { DType } from "../../tensor/dtype.js";

export interface MatmulShape {
  batch: number;
  M: number;
  N: number;
  K: number;
  /** B has its own matrix per batch entry (else one [N, K] matrix is shared). */
  batchedB: boolean;
}

export function matmulReference(
  a: ArrayLike<number>,
  b: ArrayLike<number>,
  bias: ArrayLike<number> | null,
  { batch, M, N, K, batchedB }: MatmulShape,
  /** Shaped like C: [batch, M, N]. */
  residual: ArrayLike<number> | null = null,
): Float64Array {
  const c = new Float64Array(batch * M * N);
  for (let z = 0; z < batch; z++) {
    const aBase = z * M * K;
    const bBase = batchedB ? z * N * K : 0;
    for (let m = 0; m < M; m++) {
      for (let n = 0; n < N; n++) {
        let sum = bias ? bias[n] : 0;
        for (let k = 0; k < K; k++) sum += a[aBase + m * K + k] * b[bBase + n * K + k];
        c[(z * M + m) * N + n] = residual ? sum + residual[(z * M + m) * N + n] : sum;
      }
    }
  }
  return c;
}

/**
 * Error bound for a dot product of K terms summed in float32 in any order:
 * |error| <= (K + 1)·u·Σ|a_k·b_k| (+|bias|) with u = 2^-24 (Higham, Accuracy and Stability of
 * Numerical Algorithms, §3.1; a residual is one more term, K + 2), plus the rounding of the stored output (2^-24 in f32, 2^-11 in
 * f16, and up to 2^-14 absolute in f16: below that outputs are subnormal, which a GPU may flush
 * to zero). Inputs are compared after the same rounding the GPU applied, so they add nothing.
 * A kernel that drops or repeats a term is off by a whole |a_k·b_k|, far above this bound
 * while K² ≪ 2^24 (the bound is about K²·u typical terms: a sixteenth of one at K = 1028, one
 * at K = 4096, where it still catches misplaced, missing or scaled blocks of the output).
 */
export function matmulErrorBounds(
  a: ArrayLike<number>,
  b: ArrayLike<number>,
  bias: ArrayLike<number> | null,
  shape: MatmulShape,
  outDtype: DType,
  residual: ArrayLike<number> | null = null,
): Float64Array {
  const abs = (x: ArrayLike<number>) => Float64Array.from(x, Math.abs);
  const magnitude = matmulReference(abs(a), abs(b), bias && abs(bias), shape, residual && abs(residual));
  const expected = matmulReference(a, b, bias, shape, residual);
  const u = 2 ** -24;
  const terms = shape.K + (residual ? 2 : 1);
  const [relative, absolute] = outDtype === "f16" ? [2 ** -11, 2 ** -14] : [u, 1e-38];
  return magnitude.map((mag, i) => terms * u * mag + relative * Math.abs(expected[i]) + absolute);
}
