/**
 * What a kernel must do, whatever version does it: the useful arithmetic (FLOPs) and the fewest
 * bytes it can move (every input it needs read once, every output written once). The achieved
 * GFLOP/s and GB/s are these over the measured time, and the ratio FLOPs / bytes (arithmetic
 * intensity) says which limit binds: below the device's FLOP/s ÷ B/s the kernel cannot go
 * faster than memory allows, above it the arithmetic is the limit.
 *
 * Conventions: a multiply-add is 2 FLOPs; exp, erf, division and the like count 1 each (their
 * cost varies by device, and the kernels that use them are far below the compute ceiling
 * anyway); comparisons count 1.
 */
import { bytesPerElement, type DType } from "../tensor/dtype.js";

export interface Cost {
  flops: number;
  bytes: number;
}

/** C [M, N] = A [M, K] · B [N, K]ᵀ (+ bias [N]). */
export function matmulCost(M: number, N: number, K: number, dtypes: { a: DType; b: DType; c: DType; bias?: boolean }): Cost {
  const bias = dtypes.bias ?? false;
  return {
    flops: 2 * M * N * K + (bias ? M * N : 0),
    bytes:
      M * K * bytesPerElement(dtypes.a) +
      N * K * bytesPerElement(dtypes.b) +
      M * N * bytesPerElement(dtypes.c) +
      (bias ? N * bytesPerElement(dtypes.b) : 0),
  };
}

export interface AttentionShape {
  queries: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  /** Keys (and values) available. */
  kvLength: number;
  causal: boolean;
  /** Absolute position of query 0 (default kvLength - queries). */
  queryOffset?: number;
}

/** Scores visible to all queries together: S·T, or the causal triangle. */
export function visibleScores(s: AttentionShape): number {
  if (!s.causal) return s.queries * s.kvLength;
  const offset = s.queryOffset ?? s.kvLength - s.queries;
  let total = 0;
  for (let i = 0; i < s.queries; i++) total += Math.min(offset + i + 1, s.kvLength);
  return total;
}

/**
 * softmax(q·kᵀ)·v per head: 2·D FLOPs per score for q·k and 2·D for p·v; the softmax's few per
 * score are left out. Bytes: q, the keys and values (each kv head's once) and the output.
 */
export function attentionCost(s: AttentionShape, dtypes: { q: DType; kv: DType; out: DType }): Cost {
  const { queries, heads, kvHeads, headDim, kvLength } = s;
  return {
    flops: 4 * heads * headDim * visibleScores(s),
    bytes:
      queries * heads * headDim * (bytesPerElement(dtypes.q) + bytesPerElement(dtypes.out)) +
      2 * kvLength * kvHeads * headDim * bytesPerElement(dtypes.kv),
  };
}

/**
 * A kernel that reads `count` elements from each of `inputs` and writes `count` elements of
 * `output`, doing `flopsPerElement` on each (add, activations, rope, ...).
 */
export function elementwiseCost(count: number, flopsPerElement: number, inputs: DType[], output: DType | null): Cost {
  const perElement = inputs.reduce((sum, d) => sum + bytesPerElement(d), 0) + (output ? bytesPerElement(output) : 0);
  return { flops: count * flopsPerElement, bytes: count * perElement };
}

/** A normalization of rows × cols: x read once, the per-column parameters once, out written once. */
export function normCost(rows: number, cols: number, flopsPerElement: number, x: DType, params: DType[], out: DType): Cost {
  return {
    flops: rows * cols * flopsPerElement,
    bytes: rows * cols * (bytesPerElement(x) + bytesPerElement(out)) + cols * params.reduce((sum, d) => sum + bytesPerElement(d), 0),
  };
}

/** Bytes only (a gather or a copy): no arithmetic. */
export function movementCost(bytes: number): Cost {
  return { flops: 0, bytes };
}
