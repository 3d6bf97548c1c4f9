/**
 * LayerNorm over the last dimension, as torch.nn.LayerNorm (CLIP's pre/post and per-layer norms):
 *
 *     y = (x - mean) / sqrt(var + eps) * weight + bias,   var = mean((x - mean)²)  (biased)
 *
 * x is [..., C] and is treated as rows of C; each row is normalized on its own.
 *
 * Implementation: one workgroup per row. Its threads stride over the row (thread t reads
 * elements t, t + T, t + 2T, ..., so neighbouring threads read neighbouring addresses and every
 * read is coalesced) and combine their partial sums with a tree reduction in workgroup memory.
 * The statistics take two passes over the row, then a third pass writes the output:
 *   1. mean₀ = Σx / C;
 *   2. with d = x - mean₀: the sums Σd and Σd², reduced together as a vec2;
 *   3. y = (d - c) · rstd · weight + bias, where c = Σd / C.
 * Pass 2 is the "corrected two-pass" variance (Chan, Golub and LeVeque): mean₀ carries the
 * rounding error of an f32 sum of C values, and c measures exactly that error, so the mean is
 * mean₀ + c and var = Σd²/C - c². Subtracting in that order, (x - mean₀) - c, keeps c even when
 * it is smaller than an ulp of mean₀. Computing var as E[x²] - E[x]² instead would cancel
 * catastrophically for rows whose mean is large against their spread.
 *
 * Cost: the op is bandwidth-bound (a few flops per element). x is read three times, but the
 * second and third reads come right after the first, by the same workgroup, over a row of at
 * most a few tens of KiB, so they are served from cache; memory traffic is close to one read
 * of x and one write of y.
 */
import { isFloat, type DType } from "../tensor/dtype.js";
import { check } from "../tensor/errors.js";
import { defineKernel, flatGrid } from "../tensor/kernel.js";
import type { Tensor } from "../tensor/tensor.js";
import { workgroupReduceWgsl } from "./wgsl/reduce.js";
import { rowKernelWgsl, threadsPerRow } from "./wgsl/rows.js";

// ------------------------------------------------------------------ CPU reference (float64)

/** LayerNorm of each row of `cols` values of `x` (float64 throughout, plain two-pass). */
export function layernormReference(
  x: ArrayLike<number>,
  weight: ArrayLike<number>,
  bias: ArrayLike<number>,
  cols: number,
  eps: number,
): Float64Array {
  const out = new Float64Array(x.length);
  for (let base = 0; base < x.length; base += cols) {
    let sum = 0;
    for (let i = 0; i < cols; i++) sum += x[base + i];
    const mean = sum / cols;
    let squares = 0;
    for (let i = 0; i < cols; i++) squares += (x[base + i] - mean) ** 2;
    const rstd = 1 / Math.sqrt(squares / cols + eps);
    for (let i = 0; i < cols; i++) out[base + i] = (x[base + i] - mean) * rstd * weight[i] + bias[i];
  }
  return out;
}

// ------------------------------------------------------------------ WGSL

const layernormKernel = defineKernel({
  name: "layernorm",
  params: { rows: "u32", cols: "u32", eps: "f32" },
  bindings: { x: "read", weight: "read", bias: "read", out: "read_write" },
  wgsl: ({ threads }: { threads: number }) => /* wgsl */ `
${workgroupReduceWgsl("workgroup_sum", "vec2f", (a, b) => `${a} + ${b}`)}
${rowKernelWgsl(threads, /* wgsl */ `
  let n = f32(cols);

  var sum = 0.0;
  for (var i = lid; i < cols; i += T) { sum += f32(x[base + i]); }
  let mean0 = workgroup_sum(lid, vec2f(sum, 0.0)).x / n;

  var sums = vec2f(0.0);
  for (var i = lid; i < cols; i += T) {
    let d = f32(x[base + i]) - mean0;
    sums += vec2f(d, d * d);
  }
  let total = workgroup_sum(lid, sums);
  let correction = total.x / n;
  let variance = max(total.y / n - correction * correction, 0.0);
  let rstd = inverseSqrt(variance + params.eps);

  for (var i = lid; i < cols; i += T) {
    let centered = (f32(x[base + i]) - mean0) - correction;
    out[base + i] = out_t(centered * rstd * f32(weight[i]) + f32(bias[i]));
  }`)}`,
});

// ------------------------------------------------------------------ launch

/** LayerNorm of x [..., C] over its last dimension with weight [C] and bias [C]. */
export function layernorm(x: Tensor, weight: Tensor, bias: Tensor, eps: number, outDtype: DType = x.dtype): Tensor {
  check(x.rank >= 1, () => `layernorm: x ${x.describe()} has no last dimension to normalize`);
  const cols = x.dim(-1);
  check(cols >= 1, () => `layernorm: x ${x.describe()} has an empty last dimension`);
  for (const [what, t] of [["x", x], ["weight", weight], ["bias", bias]] as const) {
    check(isFloat(t.dtype), () => `layernorm: ${what} ${t.describe()} is not f32 or f16`);
  }
  check(weight.rank === 1 && weight.shape[0] === cols, () => `layernorm: weight ${weight.describe()} is not [${cols}] for x ${x.describe()}`);
  check(bias.rank === 1 && bias.shape[0] === cols, () => `layernorm: bias ${bias.describe()} is not [${cols}] for x ${x.describe()}`);
  check(Number.isFinite(eps) && eps >= 0, () => `layernorm: eps ${eps} is not a finite number >= 0`);
  check(isFloat(outDtype), () => `layernorm: output dtype ${outDtype} is not f32 or f16`);

  const rows = x.size / cols;
  const out = x.gpu.empty(x.shape, outDtype, { name: "layernorm" });
  if (rows === 0) return out;
  x.gpu.record(layernormKernel, {
    params: { rows, cols, eps },
    tensors: { x, weight, bias, out },
    workgroups: flatGrid(rows),
    spec: { threads: threadsPerRow(cols) },
  });
  return out;
}
