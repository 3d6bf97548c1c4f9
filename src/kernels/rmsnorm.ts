/**
 * RMSNorm over the last dimension, as transformers' LlamaRMSNorm:
 *
 *     y = x / sqrt(mean(x²) + eps) * weight
 *
 * x is [..., C] and is treated as rows of C; each row is normalized on its own. LlamaRMSNorm
 * computes in float32 and rounds x / rms back to the input dtype before multiplying by the
 * weight; here everything stays in f32 until the one rounding on store, which for f16 models
 * differs from it by at most an f16 rounding.
 *
 * Implementation: one workgroup per row. Its threads stride over the row (thread t reads
 * elements t, t + T, ..., so every read is coalesced), each summing its squares; a tree
 * reduction in workgroup memory adds the T partial sums. A second pass writes the output.
 * No mean is subtracted, so the sum of squares has no cancellation and one pass of statistics
 * is accurate.
 *
 * Cost: bandwidth-bound (a few flops per element). x is read twice, the second time right after
 * the first by the same workgroup, from cache; memory traffic is close to one read of x and one
 * write of y.
 */
import { isFloat, type DType } from "../tensor/dtype.js";
import { check } from "../tensor/errors.js";
import { defineKernel, flatGrid } from "../tensor/kernel.js";
import type { Tensor } from "../tensor/tensor.js";
import { workgroupReduceWgsl } from "./wgsl/reduce.js";
import { rowKernelWgsl, threadsPerRow } from "./wgsl/rows.js";

// ------------------------------------------------------------------ CPU reference (float64)

/** RMSNorm of each row of `cols` values of `x` (float64 throughout). */
export function rmsnormReference(x: ArrayLike<number>, weight: ArrayLike<number>, cols: number, eps: number): Float64Array {
  const out = new Float64Array(x.length);
  for (let base = 0; base < x.length; base += cols) {
    let squares = 0;
    for (let i = 0; i < cols; i++) squares += x[base + i] ** 2;
    const scale = 1 / Math.sqrt(squares / cols + eps);
    for (let i = 0; i < cols; i++) out[base + i] = x[base + i] * scale * weight[i];
  }
  return out;
}

// ------------------------------------------------------------------ WGSL

const rmsnormKernel = defineKernel({
  name: "rmsnorm",
  params: { rows: "u32", cols: "u32", eps: "f32" },
  bindings: { x: "read", weight: "read", out: "read_write" },
  wgsl: ({ threads }: { threads: number }) => /* wgsl */ `
${workgroupReduceWgsl("workgroup_sum", "f32", (a, b) => `${a} + ${b}`)}
${rowKernelWgsl(threads, /* wgsl */ `

  var squares = 0.0;
  for (var i = lid; i < cols; i += T) {
    let v = f32(x[base + i]);
    squares += v * v;
  }
  let scale = inverseSqrt(workgroup_sum(lid, squares) / f32(cols) + params.eps);

  for (var i = lid; i < cols; i += T) {
    out[base + i] = out_t(f32(x[base + i]) * scale * f32(weight[i]));
  }`)}`,
});

// ------------------------------------------------------------------ launch

/** RMSNorm of x [..., C] over its last dimension with weight [C]. */
export function rmsnorm(x: Tensor, weight: Tensor, eps: number, outDtype: DType = x.dtype): Tensor {
  check(x.rank >= 1, () => `rmsnorm: x ${x.describe()} has no last dimension to normalize`);
  const cols = x.dim(-1);
  check(cols >= 1, () => `rmsnorm: x ${x.describe()} has an empty last dimension`);
  check(isFloat(x.dtype), () => `rmsnorm: x ${x.describe()} is not f32 or f16`);
  check(isFloat(weight.dtype), () => `rmsnorm: weight ${weight.describe()} is not f32 or f16`);
  check(weight.rank === 1 && weight.shape[0] === cols, () => `rmsnorm: weight ${weight.describe()} is not [${cols}] for x ${x.describe()}`);
  check(Number.isFinite(eps) && eps >= 0, () => `rmsnorm: eps ${eps} is not a finite number >= 0`);
  check(isFloat(outDtype), () => `rmsnorm: output dtype ${outDtype} is not f32 or f16`);

  const rows = x.size / cols;
  const out = x.gpu.empty(x.shape, outDtype, { name: "rmsnorm" });
  if (rows === 0) return out;
  x.gpu.record(rmsnormKernel, {
    params: { rows, cols, eps },
    tensors: { x, weight, out },
    workgroups: flatGrid(rows),
    spec: { threads: threadsPerRow(cols) },
  });
  return out;
}
