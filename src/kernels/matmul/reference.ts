/**
 * The definition every matmul version computes, in float64:
 *
 *   C[b, m, n] = Σ_k A[b, m, k] · B[b, n, k]  (+ bias[n])
 *
 * B is stored [N, K], row by row, the way nn.Linear stores its weight ([out_features,
 * in_features]), so C = A·Bᵀ. B either has a batch dimension matching A's or is one matrix
 * shared by every batch (a weight).
 */
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
): Float64Array {
  const c = new Float64Array(batch * M * N);
  for (let z = 0; z < batch; z++) {
    const aBase = z * M * K;
    const bBase = batchedB ? z * N * K : 0;
    for (let m = 0; m < M; m++) {
      for (let n = 0; n < N; n++) {
        let sum = bias ? bias[n] : 0;
        for (let k = 0; k < K; k++) sum += a[aBase + m * K + k] * b[bBase + n * K + k];
        c[(z * M + m) * N + n] = sum;
      }
    }
  }
  return c;
}
