/**
 * What the quantized matvec versions share: the weight they take, its checks, and the kernel
 * around the part where they differ (how a unit of 32 weights is read and multiplied).
 *
 * The layout is matvec's (matmul/matvec.ts): 8 outputs per workgroup, 32 lanes per output
 * walking along its row. The unit of work is 32 consecutive weights (a block of the 32-element
 * types, a sub-block with its own scale of the 256-element K-quants), so every lane of a row
 * has work even when K is only a few blocks long. Each lane keeps a partial sum per row of A;
 * the 32 partial sums of an output are added in workgroup memory by a tree reduction.
 */
import { check } from "../../tensor/errors.js";
import type { Gpu } from "../../tensor/gpu.js";
import { flatGrid, FLAT_WORKGROUP_WGSL, type Kernel } from "../../tensor/kernel.js";
import type { Tensor } from "../../tensor/tensor.js";
import { BLOCK_LAYOUT, type QuantizedType } from "./blocks.js";

/** A weight matrix [rows, cols] in ggml's packed blocks: its bytes, row after row, as u32 words. */
export interface QuantizedMatrix {
  type: QuantizedType;
  rows: number;
  cols: number;
  /** u32 words holding rows × (cols / block elements) × block bytes bytes (the last word padded). */
  data: Tensor;
}

/** The most rows of A one launch handles. */
export const QMATVEC_MAX_ROWS = 4;
const LANES = 32;
const OUTPUTS = 8;

export const QMATVEC_PARAMS = { M: "u32", N: "u32", K: "u32", row_bytes: "u32" } as const;
export const QMATVEC_BINDINGS = { a: "read", b: "read", c: "read_write" } as const;

/** The bindings' WGSL types: b the packed u32 words, c f32, a f32 or (read four at a time) vec4<f32>. */
export function quantizedMatvecElementType(vec4Activations: boolean): (binding: string) => string {
  return (binding) => (binding === "b" ? "u32" : binding === "a" && vec4Activations ? "vec4<f32>" : "f32");
}

/** The bytes of one row of a [rows, cols] matrix of `type`. */
export function quantizedRowBytes(type: QuantizedType, cols: number): number {
  const { elements, bytes } = BLOCK_LAYOUT[type];
  return (cols / elements) * bytes;
}

/**
 * The kernel's WGSL: `helpers` at module scope, then for each unit `unit` of the output's row
 * (starting at byte `row` of b) the version's `unitCode`, which must add the unit's products
 * with row m of A into acc[m] for every m < ROWS.
 */
export function quantizedMatvecWgsl(rows: number, helpers: string, unitCode: string): string {
  return /* wgsl */ `
${FLAT_WORKGROUP_WGSL}

const ROWS = ${rows}u;
const LANES = ${LANES}u;
var<workgroup> partial: array<array<f32, ${LANES}>, ${OUTPUTS * rows}>;
${helpers}

@compute @workgroup_size(${LANES}, ${OUTPUTS})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let out = flat_workgroup(wid, nwg) * ${OUTPUTS}u + lid.y;
  let lane = lid.x;
  var acc: array<f32, ${rows}>;
  if (out < params.N) {
    let row = out * params.row_bytes;
    for (var unit = lane; unit < params.K / 32u; unit += LANES) {
      ${unitCode}
    }
  }
  for (var m = 0u; m < ROWS; m++) { partial[lid.y * ROWS + m][lane] = acc[m]; }
  workgroupBarrier();
  for (var width = LANES / 2u; width > 0u; width /= 2u) {
    if (lane < width) {
      for (var m = 0u; m < ROWS; m++) { partial[lid.y * ROWS + m][lane] += partial[lid.y * ROWS + m][lane + width]; }
    }
    workgroupBarrier();
  }
  if (lane < ROWS && out < params.N) { c[lane * params.N + out] = partial[lid.y * ROWS + lane][0]; }
}`;
}

export type QuantizedMatvecKernel = Kernel<typeof QMATVEC_PARAMS, typeof QMATVEC_BINDINGS, { type: QuantizedType; rows: number }>;

/** Checks that `w`'s rows are whole blocks and its data holds exactly its bytes; returns the bytes of a row. */
export function checkQuantizedMatrix(op: string, w: QuantizedMatrix): number {
  const { type, rows, cols } = w;
  const { elements } = BLOCK_LAYOUT[type];
  check(cols % elements === 0, () => `${op}: rows of ${cols} are not whole ${type} blocks of ${elements}`);
  const rowBytes = quantizedRowBytes(type, cols);
  const words = Math.ceil((rows * rowBytes) / 4);
  check(
    w.data.dtype === "u32" && w.data.size === words,
    () => `${op}: ${type} [${rows}, ${cols}] is ${rows * rowBytes} bytes, ${words} u32 words, not ${w.data.describe()}`,
  );
  return rowBytes;
}

/** Checks A [M, K] f32 against W [N, K] and records `kernel`: C [M, N] f32 = A·Wᵀ, 1 ≤ M ≤ 4. */
export function recordQuantizedMatvec(gpu: Gpu, kernel: QuantizedMatvecKernel, a: Tensor, w: QuantizedMatrix): Tensor {
  const { type, rows: N, cols: K } = w;
  check(a.dtype === "f32" && a.rank === 2 && a.dim(1) === K, () => `quantizedMatvec: A ${a.describe()} must be f32 [M, ${K}]`);
  const M = a.dim(0);
  check(M >= 1 && M <= QMATVEC_MAX_ROWS, () => `quantizedMatvec: A ${a.describe()} has ${M} rows; it takes 1 to ${QMATVEC_MAX_ROWS}`);
  const rowBytes = checkQuantizedMatrix("quantizedMatvec", w);
  const c = gpu.empty([M, N], "f32", { name: "qmatvec out" });
  gpu.record(kernel, {
    params: { M, N, K, row_bytes: rowBytes },
    tensors: { a, b: w.data, c },
    workgroups: flatGrid(Math.ceil(N / OUTPUTS)),
    spec: { type, rows: M },
  });
  return c;
}
