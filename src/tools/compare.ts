/**
 * What verification against transformers' references shares, whichever model it runs: the
 * comparison of one tensor (max |ours - reference| relative to the reference's largest
 * |value|), the tolerances per storage dtype, and the store of traced intermediates.
 *
 * Tolerances:
 * - f32: 1e-4 for every tensor. The reference is float32 too; what differs is the order of
 *   summation (tiling, reductions, online softmax), worth ~1e-6 relative per layer.
 * - f16: weights rounded to 11 significant bits perturb every product by up to 2^-11 relative,
 *   and the perturbations compound over layers: 1e-2 (the shared goldens measure 4e-4 to 8e-3).
 */
import { takeRows } from "../tensor/copy.js";
import type { DType } from "../tensor/dtype.js";
import type { Tensor } from "../tensor/tensor.js";
import type { Trace } from "../models/llama.js";

export interface Comparison {
  name: string;
  shape: number[];
  maxAbsDiff: number;
  maxAbsReference: number;
  relative: number;
  tolerance: number;
  ok: boolean;
  /** Why a reference tensor was not compared, or what was. */
  note?: string;
}

export interface VerifyReport {
  folder: string;
  dtype: DType;
  comparisons: Comparison[];
  tokens: { expected: number[]; got: number[]; agreeing: number; required: boolean };
  ok: boolean;
}

export const TOLERANCES: Record<"f32" | "f16", number> = { f32: 1e-4, f16: 1e-2 };

/** The traced tensors, copied as they pass: name → "i,j" (reference index) → tensor. */
export class TraceStore {
  readonly tensors = new Map<string, Map<string, Tensor>>();

  readonly trace: Trace = (name, index, t) => {
    let byIndex = this.tensors.get(name);
    if (!byIndex) this.tensors.set(name, (byIndex = new Map()));
    byIndex.set(index.join(","), t.gpu.keep(takeRows(t, 0, t.dim(0))));
  };

  dispose(): void {
    for (const byIndex of this.tensors.values()) for (const t of byIndex.values()) t.dispose();
  }
}

export function compare(name: string, ours: ArrayLike<number>, reference: Float32Array, shape: number[], tolerance: number, note?: string): Comparison {
  let maxAbsDiff = 0;
  let maxAbsReference = 0;
  let nonFinite = ours.length !== reference.length;
  for (let i = 0; i < reference.length && !nonFinite; i++) {
    if (!Number.isFinite(ours[i])) nonFinite = true;
    maxAbsDiff = Math.max(maxAbsDiff, Math.abs(ours[i] - reference[i]));
    maxAbsReference = Math.max(maxAbsReference, Math.abs(reference[i]));
  }
  if (nonFinite) maxAbsDiff = NaN;
  const relative = maxAbsDiff / Math.max(maxAbsReference, Number.MIN_VALUE);
  return { name, shape, maxAbsDiff, maxAbsReference, relative, tolerance, ok: relative <= tolerance, note };
}

/** Concatenates host arrays. */
export function concat(parts: ArrayLike<number>[]): Float32Array {
  const out = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
  let offset = 0;
  for (const p of parts) {
    out.set(p as ArrayLike<number>, offset);
    offset += p.length;
  }
  return out;
}

