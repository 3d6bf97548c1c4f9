/**
 * Elementwise add, multiply and scale.
 *
 * One thread per output element. `b` may be smaller than `a` when its shape is a suffix of a's
 * (a bias row added to every row, say): it is then repeated, `b[i mod b.size]`.
 * Math is in f32 whatever the storage dtype.
 */
import type { DType } from "../tensor/dtype.js";
import { check } from "../tensor/errors.js";
import { defineKernel, flatGrid, FLAT_WORKGROUP_WGSL } from "../tensor/kernel.js";
import type { Tensor } from "../tensor/tensor.js";

export type BinaryOp = "add" | "mul";

// ------------------------------------------------------------------ CPU reference (float64)

export function binaryReference(op: BinaryOp, a: ArrayLike<number>, b: ArrayLike<number>): Float64Array {
  const out = new Float64Array(a.length);
  for (let i = 0; i < a.length; i++) {
    const y = b[i % b.length];
    out[i] = op === "add" ? a[i] + y : a[i] * y;
  }
  return out;
}

export function scaleReference(x: ArrayLike<number>, factor: number): Float64Array {
  return Float64Array.from(x, (v) => v * factor);
}

// ------------------------------------------------------------------ WGSL

const WORKGROUP = 256;

const binaryKernel = defineKernel({
  name: "binary",
  params: { count: "u32", b_count: "u32" },
  bindings: { a: "read", b: "read", out: "read_write" },
  wgsl: ({ op }: { op: BinaryOp }) => /* wgsl */ `
${FLAT_WORKGROUP_WGSL}
@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = flat_workgroup(wid, nwg) * ${WORKGROUP}u + lid;
  if (i >= params.count) { return; }
  let x = f32(a[i]);
  let y = f32(b[i % params.b_count]);
  out[i] = out_t(${op === "add" ? "x + y" : "x * y"});
}`,
});

const scaleKernel = defineKernel({
  name: "scale",
  params: { count: "u32", factor: "f32" },
  bindings: { x: "read", out: "read_write" },
  wgsl: () => /* wgsl */ `
${FLAT_WORKGROUP_WGSL}
@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = flat_workgroup(wid, nwg) * ${WORKGROUP}u + lid;
  if (i >= params.count) { return; }
  out[i] = out_t(f32(x[i]) * params.factor);
}`,
});

// ------------------------------------------------------------------ launch

function binary(op: BinaryOp, a: Tensor, b: Tensor, outDtype: DType): Tensor {
  const suffix = a.shape.slice(a.rank - b.rank);
  check(
    b.rank <= a.rank && suffix.every((d, i) => d === b.shape[i]),
    () => `${op}: ${b.describe()} does not match the trailing dimensions of ${a.describe()}`,
  );
  check(b.size > 0 || a.size === 0, () => `${op}: ${b.describe()} is empty`);
  const out = a.gpu.empty(a.shape, outDtype, { name: op });
  a.gpu.record(binaryKernel, {
    params: { count: a.size, b_count: Math.max(b.size, 1) },
    tensors: { a, b, out },
    workgroups: flatGrid(Math.ceil(a.size / WORKGROUP)),
    spec: { op },
  });
  return out;
}

/** a + b, with b repeated over a's leading dimensions. */
export function add(a: Tensor, b: Tensor, outDtype: DType = a.dtype): Tensor {
  return binary("add", a, b, outDtype);
}

/** a · b elementwise, with b repeated over a's leading dimensions. */
export function mul(a: Tensor, b: Tensor, outDtype: DType = a.dtype): Tensor {
  return binary("mul", a, b, outDtype);
}

/** x · factor. */
export function scale(x: Tensor, factor: number, outDtype: DType = x.dtype): Tensor {
  const out = x.gpu.empty(x.shape, outDtype, { name: "scale" });
  x.gpu.record(scaleKernel, {
    params: { count: x.size, factor },
    tensors: { x, out },
    workgroups: flatGrid(Math.ceil(x.size / WORKGROUP)),
  });
  return out;
}
