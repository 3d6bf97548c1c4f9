/**
 * Embedding lookup: out[t] = table[ids[t]], one row of the table per token.
 *
 * Split tables: a large vocabulary may not fit one storage binding (32064 × 4096 f16 is 263 MB,
 * over lavapipe's 128 MiB maxStorageBufferBindingSize), so it can be stored as several tensors
 * of consecutive rows. Each part is looked up with its first row as `rowStart`: the call writes
 * the tokens whose id falls in [rowStart, rowStart + rows) and leaves every other row of `out`
 * as it was, so one call per part, all into the same `out`, fills the whole output.
 *
 * When the call allocates the output itself (no `out` given), rows it does not own are written
 * as zeros instead, so an id outside the table gives a zero row rather than garbage. Ids are
 * validated on the CPU before they become a tensor; the kernel only guarantees it never reads
 * outside the table, whatever the ids hold (negative i32 ids included).
 *
 * One thread per output element: the ids are read once per element, which is cheap next to
 * the row copy, and any hidden size works without a divisibility rule.
 */
import { isFloat, type DType } from "../tensor/dtype.js";
import { check } from "../tensor/errors.js";
import { defineKernel, flatGrid, FLAT_WORKGROUP_WGSL } from "../tensor/kernel.js";
import type { Tensor } from "../tensor/tensor.js";

export interface EmbeddingOptions {
  /** Write into this [n, hidden] tensor; rows whose id is not in this table part stay untouched. */
  out?: Tensor;
  /** The vocabulary row that the table's first row holds (for a table split into parts). */
  rowStart?: number;
  /** Output dtype when `out` is not given (default f32). */
  dtype?: DType;
}

// ------------------------------------------------------------------ CPU reference (float64)

/**
 * Rows of `table` ([rows, hidden] row-major, holding vocabulary rows rowStart..) picked by
 * `ids`; an id outside the part keeps the row of `initial` (zeros when not given).
 */
export function embeddingReference(
  ids: ArrayLike<number>,
  table: ArrayLike<number>,
  hidden: number,
  { rowStart = 0, initial }: { rowStart?: number; initial?: ArrayLike<number> } = {},
): Float64Array {
  const rows = table.length / hidden;
  const out = initial ? Float64Array.from(initial) : new Float64Array(ids.length * hidden);
  for (let t = 0; t < ids.length; t++) {
    const row = ids[t] - rowStart;
    if (row < 0 || row >= rows) continue;
    for (let j = 0; j < hidden; j++) out[t * hidden + j] = table[row * hidden + j];
  }
  return out;
}

// ------------------------------------------------------------------ WGSL

const WORKGROUP = 256;

const embeddingKernel = defineKernel({
  name: "embedding",
  params: { count: "u32", hidden: "u32", rows: "u32", row_start: "u32" },
  bindings: { ids: "read", table: "read", out: "read_write" },
  gathers: ["table"],
  wgsl: ({ zeroOthers }: { zeroOthers: boolean }) => /* wgsl */ `
${FLAT_WORKGROUP_WGSL}
@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = flat_workgroup(wid, nwg) * ${WORKGROUP}u + lid;
  if (i >= params.count) { return; }
  let token = i / params.hidden;
  let column = i % params.hidden;
  // Wrapping u32 arithmetic: ids below row_start (or negative i32 ids) come out huge, so one
  // comparison tells whether the id is in this part.
  let row = bitcast<u32>(ids[token]) - params.row_start;
  if (row < params.rows) {
    out[i] = out_t(f32(table[row * params.hidden + column]));
  } else {
    ${zeroOthers ? "out[i] = out_t(0.0);" : "// another part of the table owns this row: leave it"}
  }
}`,
});

// ------------------------------------------------------------------ launch

/**
 * Looks up `ids` ([n], i32 or u32) in `table` ([rows, hidden], f32 or f16) → [n, hidden].
 * See the top of this file for `rowStart` and `out` (tables split into parts).
 */
export function embedding(ids: Tensor, table: Tensor, options: EmbeddingOptions = {}): Tensor {
  const { out: given, rowStart = 0 } = options;
  check(ids.rank === 1, () => `embedding: ids ${ids.describe()} must be a vector [tokens]`);
  check(ids.dtype === "i32" || ids.dtype === "u32", () => `embedding: ids ${ids.describe()} must be i32 or u32`);
  check(table.rank === 2, () => `embedding: table ${table.describe()} must be [rows, hidden]`);
  check(isFloat(table.dtype), () => `embedding: table ${table.describe()} must be f32 or f16`);
  const [rows, hidden] = table.shape;
  const n = ids.dim(0);
  check(
    Number.isInteger(rowStart) && rowStart >= 0 && rowStart + rows < 2 ** 31,
    () => `embedding: rowStart must be an integer in [0, 2^31 - rows), got ${rowStart}`,
  );
  check(hidden > 0, () => `embedding: table ${table.describe()} has no columns`);
  const maxBytes = table.gpu.limits.maxStorageBufferBindingSize;
  check(
    table.byteLength <= maxBytes,
    () =>
      `embedding: table ${table.describe()} is ${table.byteLength} bytes, over this device's ` +
      `maxStorageBufferBindingSize (${maxBytes}); split it into parts of at most ` +
      `${Math.floor(maxBytes / (table.byteLength / rows))} rows and look each up with its rowStart`,
  );
  if (given) {
    check(
      given.rank === 2 && given.dim(0) === n && given.dim(1) === hidden,
      () => `embedding: out ${given.describe()} must be [${n}, ${hidden}] for ids ${ids.describe()} and table ${table.describe()}`,
    );
    check(isFloat(given.dtype), () => `embedding: out ${given.describe()} must be f32 or f16`);
    check(
      options.dtype === undefined || options.dtype === given.dtype,
      () => `embedding: dtype ${options.dtype} differs from out ${given.describe()}`,
    );
  }
  const outDtype = given?.dtype ?? options.dtype ?? "f32";
  check(isFloat(outDtype), () => `embedding: output dtype ${outDtype} must be f32 or f16`);
  const out = given ?? table.gpu.empty([n, hidden], outDtype, { name: "embedding" });
  const count = n * hidden;
  table.gpu.record(embeddingKernel, {
    params: { count, hidden, rows, row_start: rowStart },
    tensors: { ids, table, out },
    workgroups: flatGrid(Math.ceil(count / WORKGROUP)),
    spec: { zeroOthers: given === undefined },
  });
  return out;
}
