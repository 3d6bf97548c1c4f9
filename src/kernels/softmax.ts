/**
 * Softmax over the last dimension: y_i = exp(x_i - max(x)) / Σ_j exp(x_j - max(x)).
 *
 * x is [..., C] and is treated as rows of C: attention scores (C = sequence length) or a row
 * of logits (C = vocabulary size, 32000+). Subtracting the row maximum keeps every exp(·) ≤ 1,
 * so nothing overflows however large the logits are.
 *
 * Implementation: one workgroup per row, and an online softmax, so the statistics take one
 * pass instead of two. Each thread strides over the row (thread t reads elements t, t + T, ...:
 * coalesced reads) keeping a running maximum m and a running sum s = Σ exp(x - m) relative to
 * it; when a larger value arrives the sum is rescaled to the new maximum:
 *     x > m:  s ← s · exp(m - x) + 1,  m ← x
 *     else:   s ← s + exp(x - m)
 * Both cases need the one exponential exp(-|x - m|). Two such (m, s) pairs merge the same way,
 * m = max(m₁, m₂), s = s₁·exp(m₁ - m) + s₂·exp(m₂ - m), which is how the T threads' pairs are
 * combined in a tree reduction in workgroup memory. A second pass writes exp(x - m) / s.
 *
 * Masking: rows may hold -Infinity (masked positions). WGSL lets an implementation assume that
 * no infinities occur, so the kernel never relies on arithmetic with them: the running maximum
 * starts at the lowest finite f32 rather than -Infinity, and exp of an argument below -88 (where
 * f32 exp would give 0 or a subnormal) is replaced by an exact 0 through a comparison. A masked
 * entry therefore gives exactly 0 and no NaN. A row that is entirely -Infinity (not meaningful;
 * torch gives NaN) comes out as zeros.
 *
 * Cost: bandwidth-bound (one exp per element per pass). x is read twice, the second time right
 * after the first by the same workgroup, so the memory traffic is close to one read of x and one
 * write of y.
 */
import { isFloat, type DType } from "../tensor/dtype.js";
import { check } from "../tensor/errors.js";
import { defineKernel, flatGrid } from "../tensor/kernel.js";
import type { Tensor } from "../tensor/tensor.js";
import { workgroupReduceWgsl } from "./wgsl/reduce.js";
import { rowKernelWgsl, threadsPerRow } from "./wgsl/rows.js";

// ------------------------------------------------------------------ CPU reference (float64)

/** Softmax of each row of `cols` values of `x` (float64; -Infinity entries give 0). */
export function softmaxReference(x: ArrayLike<number>, cols: number): Float64Array {
  const out = new Float64Array(x.length);
  for (let base = 0; base < x.length; base += cols) {
    let max = -Infinity;
    for (let i = 0; i < cols; i++) max = Math.max(max, x[base + i]);
    let sum = 0;
    for (let i = 0; i < cols; i++) sum += Math.exp(x[base + i] - max);
    for (let i = 0; i < cols; i++) out[base + i] = Math.exp(x[base + i] - max) / sum;
  }
  return out;
}

// ------------------------------------------------------------------ WGSL

const softmaxKernel = defineKernel({
  name: "softmax",
  params: { rows: "u32", cols: "u32" },
  bindings: { x: "read", out: "read_write" },
  wgsl: ({ threads }: { threads: number }) => /* wgsl */ `
const LOWEST = -3.40282346638528859812e+38; // the most negative finite f32

// exp(d) for d <= 0, exactly 0 where f32 exp underflows (and for d = -Infinity).
fn exp_nonpositive(d: f32) -> f32 {
  return select(exp(d), 0.0, d < -88.0);
}

// Merges two (max, sum) pairs into one relative to the larger max.
fn merge(a: vec2f, b: vec2f) -> vec2f {
  let m = max(a.x, b.x);
  return vec2f(m, a.y * exp_nonpositive(a.x - m) + b.y * exp_nonpositive(b.x - m));
}
${workgroupReduceWgsl("workgroup_merge", "vec2f", (a, b) => `merge(${a}, ${b})`)}
${rowKernelWgsl(threads, /* wgsl */ `

  var m = LOWEST;
  var s = 0.0;
  for (var i = lid; i < cols; i += T) {
    let v = f32(x[base + i]);
    let e = exp_nonpositive(-abs(v - m));
    s = select(s + e, s * e + 1.0, v > m);
    m = max(m, v);
  }
  let merged = workgroup_merge(lid, vec2f(m, s)); // (row max, sum of exp(x - row max))
  let row_max = merged.x;
  let total = merged.y;
  let inverse = select(0.0, 1.0 / total, total > 0.0);

  for (var i = lid; i < cols; i += T) {
    out[base + i] = out_t(exp_nonpositive(f32(x[base + i]) - row_max) * inverse);
  }`)}`,
});

// ------------------------------------------------------------------ launch

/** Softmax of x [..., C] over its last dimension. */
export function softmax(x: Tensor, outDtype: DType = x.dtype): Tensor {
  check(x.rank >= 1, () => `softmax: x ${x.describe()} has no last dimension`);
  check(isFloat(x.dtype), () => `softmax: x ${x.describe()} is not f32 or f16`);
  check(isFloat(outDtype), () => `softmax: output dtype ${outDtype} is not f32 or f16`);
  const cols = x.dim(-1);
  const out = x.gpu.empty(x.shape, outDtype, { name: "softmax" });
  if (x.size === 0) return out;
  const rows = x.size / cols;
  x.gpu.record(softmaxKernel, {
    params: { rows, cols },
    tensors: { x, out },
    workgroups: flatGrid(rows),
    spec: { threads: threadsPerRow(cols) },
  });
  return out;
}
