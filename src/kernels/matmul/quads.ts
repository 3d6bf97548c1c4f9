/**
 * How the matmul versions from v4 on read A and B (and attention v4 its q, k and v): four
 * consecutive K-values of a row at a time (a "quad"), as a vec4f, in one of three ways chosen
 * per operand at launch:
 *
 * - "vec4": the binding is an array of vec4<f32> or vec4<f16>; one 16- or 8-byte load.
 * - "packed": an f16 operand bound as an array of vec2<u32>, each u32 holding two halves that
 *   unpack2x16float widens. The same 8 bytes as vec4<f16>, but in two 32-bit words instead of
 *   four 16-bit ones: lavapipe pays per loaded component (see v6), so this halves its load work.
 * - "scalar": the plain array, four loads, each checked against K; for K % 4 != 0 (rows then
 *   start off a 4-element boundary) or a view that starts off one.
 *
 * In the first two the quads tile K exactly (K % 4 == 0), so the main loops need no bounds
 * checks of their own.
 */
import { bytesPerElement, type DType } from "../../tensor/dtype.js";
import type { Tensor } from "../../tensor/tensor.js";

export type QuadMode = "vec4" | "packed" | "scalar";

/** How to read `t`, whose rows are K long; `packF16` allows "packed" for f16. */
export function quadMode(t: Tensor, K: number, packF16: boolean): QuadMode {
  const aligned = K % 4 === 0 && t.byteOffset % (4 * bytesPerElement(t.dtype)) === 0;
  if (!aligned) return "scalar";
  return packF16 && t.dtype === "f16" ? "packed" : "vec4";
}

/** The WGSL element type of a binding read in `mode`. */
export function quadElementType(mode: QuadMode, dtype: DType): string {
  if (mode === "vec4") return `vec4<${dtype}>`;
  if (mode === "packed") return "vec2<u32>";
  return dtype;
}

/** The element types of a matmul's bindings when A and B are read in quads (bias and C stay plain). */
export function matmulQuadElementType(binding: string, dtype: DType, spec: { aMode: QuadMode; bMode: QuadMode }): string {
  if (binding === "a") return quadElementType(spec.aMode, dtype);
  if (binding === "b") return quadElementType(spec.bMode, dtype);
  return dtype;
}

/** 0 .. n-1: the kernels that write an unrolled loop out in WGSL map over it. */
export const range = (n: number) => Array.from({ length: n }, (_, i) => i);

/**
 * WGSL `fn quad_<x>(row: u32, k: u32) -> vec4f`: elements x[row + k .. row + k + 3] as f32,
 * where `row` is the index of the row's first element (a multiple of K). In scalar mode the
 * elements at k + i >= K read as 0 (the index is clamped to the row, so nothing is read past it).
 */
export function quadFetchWgsl(x: "a" | "b", mode: QuadMode): string {
  if (mode === "vec4") {
    return /* wgsl */ `
fn quad_${x}(row: u32, k: u32) -> vec4f {
  return vec4f(${x}[(row + k) / 4u]);
}`;
  }
  if (mode === "packed") {
    return /* wgsl */ `
fn quad_${x}(row: u32, k: u32) -> vec4f {
  let halves = ${x}[(row + k) / 4u];
  return vec4f(unpack2x16float(halves.x), unpack2x16float(halves.y));
}`;
  }
  const element = (i: number) =>
    `select(0.0, f32(${x}[row + min(k + ${i}u, params.K - 1u)]), k + ${i}u < params.K)`;
  return /* wgsl */ `
fn quad_${x}(row: u32, k: u32) -> vec4f {
  return vec4f(${[0, 1, 2, 3].map(element).join(",\n               ")});
}`;
}
