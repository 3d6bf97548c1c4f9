/**
 * Embedding lookup from a quantized table: out[t] = dequantized row ids[t] of a [vocab, hidden]
 * table held as ggml's packed blocks (a Q4_K_M file's token_embd is Q4_K; llama.cpp keeps it
 * packed too). Only the rows asked for are turned back into floats, 32 weights per thread
 * (unpack_wgsl.ts), straight into the output.
 *
 * As for the float table (kernels/embedding.ts): a table too big for one binding may be
 * split into parts of consecutive rows, each looked up with its first row as `rowStart`,
 * writing the tokens whose id falls in its rows; when the call makes the output itself, rows
 * it does not own are zeros. The kernel never reads outside the table, whatever the ids hold.
 */
import { check } from "../../tensor/errors.js";
import type { Gpu } from "../../tensor/gpu.js";
import { defineKernel, flatGrid, FLAT_WORKGROUP_WGSL } from "../../tensor/kernel.js";
import type { Tensor } from "../../tensor/tensor.js";
import { dequantize, type QuantizedType } from "./blocks.js";
import { checkQuantizedMatrix, type QuantizedMatrix } from "./matvec_common.js";
import { unitWeightsWgsl, windowWgsl } from "./unpack_wgsl.js";

// ------------------------------------------------------------------ CPU reference (float64)

/** Rows of the [rows, cols] `type` table in `bytes` picked by `ids` (holding vocabulary rows from rowStart); others zero. */
export function quantizedEmbeddingReference(type: QuantizedType, bytes: Uint8Array, rows: number, cols: number, ids: ArrayLike<number>, rowStart = 0): Float64Array {
  const table = dequantize(type, bytes, rows * cols);
  const out = new Float64Array(ids.length * cols);
  for (let t = 0; t < ids.length; t++) {
    const row = ids[t] - rowStart;
    if (row >= 0 && row < rows) out.set(table.subarray(row * cols, (row + 1) * cols), t * cols);
  }
  return out;
}

// ------------------------------------------------------------------ WGSL

const WORKGROUP = 64;

const kernel = defineKernel({
  name: "quantized_embedding",
  params: { count: "u32", cols: "u32", rows: "u32", row_start: "u32", row_bytes: "u32", zero_others: "u32" },
  bindings: { ids: "read", b: "read", out: "read_write" },
  gathers: ["b"],
  elementType: (binding) => (binding === "out" ? "f32" : binding === "ids" ? "i32" : "u32"),
  wgsl: ({ type }: { type: QuantizedType }) => /* wgsl */ `
${FLAT_WORKGROUP_WGSL}
${windowWgsl("b")}

@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let units = params.cols / 32u;
  let task = flat_workgroup(wid, nwg) * ${WORKGROUP}u + lid; // (token, unit of its row)
  if (task >= params.count * units) { return; }
  let t = task / units;
  let unit_in_row = task % units;
  let at = t * params.cols + unit_in_row * 32u;
  // Rows are compared as i32, so a negative id is outside the table too.
  let row_i = ids[t] - i32(params.row_start);
  if (row_i < 0 || row_i >= i32(params.rows)) {
    if (params.zero_others == 1u) { for (var l = 0u; l < 32u; l++) { out[at + l] = 0.0; } }
    return;
  }
  let row = u32(row_i) * params.row_bytes;
  let unit = unit_in_row;
  var w: array<f32, 32>;
  ${unitWeightsWgsl(type)}
  for (var l = 0u; l < 32u; l++) { out[at + l] = w[l]; }
}`,
});

export interface QuantizedEmbeddingOptions {
  /** Write into this f32 [ids, cols] tensor; rows whose id is not in this table part stay untouched. */
  out?: Tensor;
  /** The vocabulary row the table's first row holds (for a table split into parts). */
  rowStart?: number;
}

/** f32 [ids.size, cols]: the rows of `table` that the i32 (or u32) `ids` pick. */
export function quantizedEmbedding(gpu: Gpu, table: QuantizedMatrix, ids: Tensor, options: QuantizedEmbeddingOptions = {}): Tensor {
  const { type, rows, cols } = table;
  const rowStart = options.rowStart ?? 0;
  // (u32 ids are read as i32: those of 2^31 and more come out negative, outside the table.)
  check((ids.dtype === "i32" || ids.dtype === "u32") && ids.rank === 1, () => `quantizedEmbedding: ids ${ids.describe()} must be i32 or u32 [tokens]`);
  const rowBytes = checkQuantizedMatrix("quantizedEmbedding", table);
  check(Number.isInteger(rowStart) && rowStart >= 0, () => `quantizedEmbedding: rowStart ${rowStart} must be an integer >= 0`);
  const count = ids.size;
  const out = options.out ?? gpu.empty([count, cols], "f32", { name: "quantized embedding" });
  check(out.dtype === "f32" && out.size === count * cols, () => `quantizedEmbedding: out ${out.describe()} must be f32 [${count}, ${cols}]`);
  gpu.record(kernel, {
    params: { count, cols, rows, row_start: rowStart, row_bytes: rowBytes, zero_others: options.out ? 0 : 1 },
    tensors: { ids, b: table.data, out },
    workgroups: flatGrid(Math.ceil((count * (cols / 32)) / WORKGROUP)),
    spec: { type },
  });
  return out;
}
