/**
 * Scaled dot-product attention, the definition, in float64:
 *
 *   out[i, h, :] = Σ_j softmax_j(scale · q[i, h, :] · k[j, g, :]) · v[j, g, :]
 *
 * over the keys j that query i sees (all kvLength of them, or j <= queryOffset + i when causal, and
 * of those only the last `window` with a sliding window),
 * with g = floor(h / (H / H_kv)) the kv head that query head h shares. The softmax subtracts the
 * row's maximum score before exponentiating, so no exp overflows. See problem.ts for the
 * shapes, layouts and options; every GPU version computes exactly this. With `rows`, query i
 * is row rows.start + i of q and the result holds only those rows: [rows.count, H, D].
 */
import type { DType } from "../../tensor/dtype.js";
import { check } from "../../tensor/errors.js";
import { elementCount } from "../../tensor/tensor.js";
import { TOLERANCE, type Tolerance } from "../tolerance.js";
import { attentionProblem, keyLimit, keyStart, type AttentionOptions } from "./problem.js";

/** Values of a tensor on the CPU, with its shape. */
export interface HostTensor {
  values: ArrayLike<number>;
  shape: readonly number[];
}

export function attentionReference(q: HostTensor, k: HostTensor, v: HostTensor, options: AttentionOptions): Float64Array {
  for (const [name, t] of [["q", q], ["k", k], ["v", v]] as const) {
    check(t.values.length === elementCount(t.shape), () => `attentionReference: ${name} has ${t.values.length} values for shape [${t.shape.join(", ")}]`);
  }
  check(options.out === undefined, () => "attentionReference: out is for the GPU versions; the reference returns a new array");
  const p = attentionProblem("attentionReference", q, k, v, options);
  const D = p.headDim;
  const out = new Float64Array(p.queries * p.heads * D);
  const scores = new Float64Array(p.kvLength);
  for (let i = 0; i < p.queries; i++) {
    const first = keyStart(p, i);
    const seen = keyLimit(p, i);
    for (let h = 0; h < p.heads; h++) {
      const g = Math.floor(h / p.groupSize);
      const qRow = ((p.queryRow + i) * p.heads + h) * D;
      const outRow = (i * p.heads + h) * D;
      let max = -Infinity;
      for (let j = first; j < seen; j++) {
        const kRow = g * p.kvHeadStride + j * p.kvPositionStride;
        let dot = 0;
        for (let d = 0; d < D; d++) dot += q.values[qRow + d] * k.values[kRow + d];
        scores[j] = p.scale * dot;
        max = Math.max(max, scores[j]);
      }
      let sum = 0;
      for (let j = first; j < seen; j++) {
        scores[j] = Math.exp(scores[j] - max);
        sum += scores[j];
      }
      for (let j = first; j < seen; j++) {
        const vRow = g * p.kvHeadStride + j * p.kvPositionStride;
        const weight = scores[j] / sum;
        for (let d = 0; d < D; d++) out[outRow + d] += weight * v.values[vRow + d];
      }
    }
  }
  return out;
}

/**
 * How far any version may be from attentionReference: the tolerance of its output dtype, which
 * the tests hold every version to (head dims up to 256, hundreds of keys). Each output is a
 * convex combination of v rows (the softmax weights are positive and sum to 1), so rounding in
 * the scores and weights moves it by a small fraction of |v|, never more; k and v stored as
 * f16 add nothing, since the reference reads them as stored, and an f16 output adds its own
 * rounding.
 */
export function attentionTolerance(outDtype: DType): Tolerance {
  return outDtype === "f16" ? TOLERANCE.f16 : TOLERANCE.f32;
}
