/**
 * How far a kernel's output may be from its float64 reference, and the comparison that says
 * whether it is: the error bounds the tests hold every kernel to, and the kernel benchmark too
 * (it checks every version before timing it). Bounds particular to one kernel live beside its
 * reference (matmulErrorBounds in matmul/reference.ts, attentionTolerance in attention/, ropeTolerance
 * in rope.ts).
 */
import type { DType } from "../tensor/dtype.js";

export interface Tolerance {
  atol: number;
  rtol: number;
}

/**
 * Tolerances against a float64 reference computed on the same (rounded) inputs.
 * - f32: each product and sum rounds at 2^-24 relative; over a few hundred accumulated terms
 *   the error stays near 1e-6 of the magnitudes involved, so 1e-5 relative (plus an absolute
 *   floor for outputs that cancel to near zero) passes a right kernel and fails a wrong one.
 * - f16 (storage; math in f32): the output itself is rounded to 11 significant bits, an error
 *   of up to 2^-11 ≈ 4.9e-4 relative, plus intermediate f16 stores in fused kernels: 2e-3.
 */
export const TOLERANCE: Record<"f32" | "f16", Tolerance> = {
  f32: { atol: 1e-5, rtol: 1e-5 },
  f16: { atol: 2e-3, rtol: 2e-3 },
};

/** A copy, or a conversion that only widens (f16 → f32), changes no value. */
export const EXACT: Tolerance = { atol: 0, rtol: 0 };

/** The tolerance of a kernel any of whose tensors is stored in `dtypes`: f16's when one is f16 (the norms' and softmax's rule). */
export function storageTolerance(...dtypes: DType[]): Tolerance {
  return dtypes.includes("f16") ? TOLERANCE.f16 : TOLERANCE.f32;
}

/** atol + rtol·|expected|, for each element. */
export function toleranceBounds(expected: ArrayLike<number>, { atol, rtol }: Tolerance): Float64Array {
  return Float64Array.from(expected, (e) => atol + rtol * Math.abs(e));
}

/** The element of an output that comes nearest to its bound, or goes furthest past it. */
export interface WorstElement {
  /** Its index (-1 when there are no elements). */
  index: number;
  actual: number;
  expected: number;
  /** |actual - expected|. */
  error: number;
  bound: number;
  /** Whether every element is within its bound. */
  within: boolean;
  /** The largest |actual - expected| of all. */
  maxError: number;
}

/**
 * Compares `actual` with `expected` element by element: each |actual - expected| must be at
 * most its bound (equal values, infinities included, always are). A non-finite value where the
 * reference has another (NaN, an unwritten element of a poisoned buffer) fails at once and is
 * the element reported. A NaN in the reference (softmax of a row that is all -Infinity, which
 * means nothing) bounds nothing: any finite value passes there.
 */
export function worstElement(actual: ArrayLike<number>, expected: ArrayLike<number>, bounds: ArrayLike<number>): WorstElement {
  if (actual.length !== expected.length || bounds.length !== expected.length) {
    throw new RangeError(`worstElement: ${actual.length} values, ${expected.length} expected and ${bounds.length} bounds`);
  }
  const element = (i: number, within: boolean, maxError: number): WorstElement => {
    const [a, e] = [actual[i], expected[i]];
    return { index: i, actual: a, expected: e, error: a === e ? 0 : Math.abs(a - e), bound: bounds[i], within, maxError };
  };
  let worst = -1;
  let worstRatio = -1;
  let maxError = 0;
  for (let i = 0; i < actual.length; i++) {
    const [a, e] = [actual[i], expected[i]];
    if (a === e) continue;
    if (!Number.isFinite(a)) return element(i, false, Math.abs(a - e));
    const error = Math.abs(a - e);
    if (Number.isNaN(error)) continue;
    maxError = Math.max(maxError, error);
    if (error / bounds[i] > worstRatio) {
      worstRatio = error / bounds[i];
      worst = i;
    }
  }
  if (worst < 0) return actual.length === 0 ? { index: -1, actual: NaN, expected: NaN, error: 0, bound: 0, within: true, maxError: 0 } : element(0, true, 0);
  return element(worst, worstRatio <= 1, maxError);
}
