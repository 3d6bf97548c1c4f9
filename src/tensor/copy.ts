/**
 * Copies of whole rows between tensors, done by the GPU's copy engine (no kernel): how image
 * features are placed among the text embeddings, and how one row is taken out of a batch.
 */
import { bytesPerElement } from "./dtype.js";
import { check } from "./errors.js";
import type { Tensor } from "./tensor.js";

/** Rows [srcRow, srcRow + rows) of src (along its first dimension) → dst starting at dstRow. */
export function copyRows(src: Tensor, srcRow: number, dst: Tensor, dstRow: number, rows: number): void {
  const rowElements = (t: Tensor) => t.size / Math.max(t.dim(0), 1);
  check(src.dtype === dst.dtype, () => `copyRows: ${src.describe()} and ${dst.describe()} differ in dtype`);
  check(rowElements(src) === rowElements(dst), () => `copyRows: rows of ${src.describe()} and ${dst.describe()} differ in size`);
  check(
    [srcRow, dstRow, rows].every((n) => Number.isInteger(n) && n >= 0) && srcRow + rows <= src.dim(0) && dstRow + rows <= dst.dim(0),
    () => `copyRows: rows [${srcRow}, ${srcRow + rows}) of ${src.describe()} to [${dstRow}, ${dstRow + rows}) of ${dst.describe()} are out of range`,
  );
  const rowBytes = rowElements(src) * bytesPerElement(src.dtype);
  const [from, to, bytes] = [src.byteOffset + srcRow * rowBytes, dst.byteOffset + dstRow * rowBytes, rows * rowBytes];
  check(
    from % 4 === 0 && to % 4 === 0 && bytes % 4 === 0,
    () => `copyRows: ${src.describe()} rows of ${rowBytes} bytes cannot be copied at 4-byte granularity`,
  );
  if (bytes > 0) src.gpu.copyBuffer(src.buffer, from, dst.buffer, to, bytes);
}

/** A new tensor holding rows [start, start + rows) of t. */
export function takeRows(t: Tensor, start: number, rows: number): Tensor {
  const out = t.gpu.empty([rows, ...t.shape.slice(1)], t.dtype, { name: t.name });
  copyRows(t, start, out, 0, rows);
  return out;
}
