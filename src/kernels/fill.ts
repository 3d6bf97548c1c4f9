/**
 * fill: set every element of a tensor to one value.
 *
 * The tensor is treated as raw 32-bit words, so one kernel serves every dtype: the value is
 * encoded to its bit pattern on the CPU (two copies of a half for f16). A tensor of an odd
 * number of halves ends in half a word; that last word is read, masked and written back so
 * the neighbouring bytes survive.
 */
import { bytesPerElement, f32ToF16Bits, type DType } from "../tensor/dtype.js";
import { defineKernel, flatGrid, FLAT_WORKGROUP_WGSL } from "../tensor/kernel.js";
import type { Tensor } from "../tensor/tensor.js";

/** A NaN in f32 (0x7fc07fc0) whose halves are each a NaN in f16 (0x7fc0): poisons any float tensor. */
export const FILL_POISON_BITS = 0x7fc07fc0;

const WORKGROUP = 256;

const fillKernel = defineKernel({
  name: "fill",
  params: { words: "u32", bits: "u32", last_mask: "u32" },
  bindings: { x: "read_write" },
  elementType: () => "u32",
  wgsl: () => /* wgsl */ `
${FLAT_WORKGROUP_WGSL}
@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = flat_workgroup(wid, nwg) * ${WORKGROUP}u + lid;
  if (i >= params.words) { return; }
  if (i == params.words - 1u) {
    x[i] = (x[i] & ~params.last_mask) | (params.bits & params.last_mask);
  } else {
    x[i] = params.bits;
  }
}`,
});

/** The 32-bit word that holds `value` in `dtype` (twice, for f16). */
export function fillWord(value: number, dtype: DType): number {
  switch (dtype) {
    case "f32":
      return new Uint32Array(new Float32Array([value]).buffer)[0];
    case "f16": {
      const half = f32ToF16Bits(value);
      return ((half << 16) | half) >>> 0;
    }
    case "i32":
      return value >>> 0;
    case "u32":
      return value >>> 0;
  }
}

/** Writes the 32-bit pattern `bits` over the tensor's bytes. */
export function fillBits(x: Tensor, bits: number): void {
  const bytes = x.size * bytesPerElement(x.dtype);
  const words = Math.ceil(bytes / 4);
  if (words === 0) return;
  const lastMask = bytes % 4 === 2 ? 0xffff : 0xffffffff;
  x.gpu.run(fillKernel, {
    params: { words, bits: bits >>> 0, last_mask: lastMask },
    tensors: { x },
    workgroups: flatGrid(Math.ceil(words / WORKGROUP)),
  });
}

/** Sets every element of `x` to `value` (converted to x's dtype). */
export function fill(x: Tensor, value: number): Tensor {
  fillBits(x, fillWord(value, x.dtype));
  return x;
}

/** Reference: a tensor of `count` copies of `value`. */
export function fillReference(count: number, value: number): Float64Array {
  return new Float64Array(count).fill(value);
}
