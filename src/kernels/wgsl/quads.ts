/**
 * Quads: four consecutive elements of a row read at once, as a vec4f. The matmul versions read
 * A and B along K this way, attention v4 its q, k and v along the head dim. Three ways to read
 * one, chosen per operand at launch:
 *
 * - "vec4": the binding is an array of vec4<f32> or vec4<f16>; one 16- or 8-byte load.
 * - "packed": an f16 operand bound as an array of vec2<u32>, each u32 holding two halves that
 *   unpack2x16float widens. The same 8 bytes as vec4<f16>, but in two 32-bit words instead of
 *   four 16-bit ones: a device that pays per loaded component (lavapipe, see matmul v6) does
 *   half the load work.
 * - "scalar": the plain array, four loads, each checked against the row's length; for rows whose
 *   length is not a multiple of 4 (they then start off a 4-element boundary) or a view that
 *   starts off one.
 *
 * In the first two the quads tile a row exactly, so a loop that stays inside the row needs no
 * bounds checks; a kernel whose lanes may ask for quads past the end asks for `pastEnd`.
 */
import { bytesPerElement, type DType } from "../../tensor/dtype.js";
import type { Tensor } from "../../tensor/tensor.js";

export type QuadMode = "vec4" | "packed" | "scalar";

/** How to read `t`, whose rows are `rowLength` long; `packF16` allows "packed" for f16. */
export function quadMode(t: Tensor, rowLength: number, packF16: boolean): QuadMode {
  const aligned = rowLength % 4 === 0 && t.byteOffset % (4 * bytesPerElement(t.dtype)) === 0;
  if (!aligned) return "scalar";
  return packF16 && t.dtype === "f16" ? "packed" : "vec4";
}

/** The WGSL element type of a binding read in `mode`. */
export function quadElementType(mode: QuadMode, dtype: DType): string {
  if (mode === "vec4") return `vec4<${dtype}>`;
  if (mode === "packed") return "vec2<u32>";
  return dtype;
}

export interface QuadFetchOptions {
  /** WGSL expression: the length of a row (elements from `length` on read as 0). */
  length: string;
  /** Callers may ask for quads at or past the end of the row, which read as zeros. */
  pastEnd?: boolean;
}

/**
 * WGSL `fn quad_<x>(row: u32, at: u32) -> vec4f`: elements x[row + at .. row + at + 3] as f32,
 * where `row` is the index of the row's first element. Elements at at + i >= length read as 0;
 * indices are clamped to the row, so nothing past it is ever read. (The parameters are named so
 * that no binding, such as attention's `k`, is shadowed.)
 */
export function quadFetchWgsl(x: string, mode: QuadMode, { length, pastEnd = false }: QuadFetchOptions): string {
  if (mode === "scalar") {
    const element = (i: number) => `select(0.0, f32(${x}[row + min(at + ${i}u, ${length} - 1u)]), at + ${i}u < ${length})`;
    return /* wgsl */ `
fn quad_${x}(row: u32, at: u32) -> vec4f {
  return vec4f(${[0, 1, 2, 3].map(element).join(",\n               ")});
}`;
  }
  const index = pastEnd ? `(row + min(at, ${length} - 4u)) / 4u` : "(row + at) / 4u";
  const read = mode === "vec4" ? `vec4f(${x}[${index}])` : `vec4f(unpack2x16float(${x}[${index}].x), unpack2x16float(${x}[${index}].y))`;
  return /* wgsl */ `
fn quad_${x}(row: u32, at: u32) -> vec4f {
  return ${pastEnd ? `select(vec4f(0.0), ${read}, at < ${length})` : read};
}`;
}
