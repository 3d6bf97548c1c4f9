/**
 * What the quantized matrix kernels share: the weight they take, its checks, the options and
 * their epilogue (bias, residual, store into part of a wider output), and the matvec kernel
 * around the part where its versions differ (how a unit of 32 weights is read and multiplied).
 *
 * The matvec layout is matmul/matvec.ts's: 8 outputs per workgroup, 32 lanes per output
 * walking along its row. The unit of work is 32 consecutive weights (a block of the 32-element
 * types, a sub-block with its own scale of the 256-element K-quants), so every lane of a row
 * has work even when K is only a few blocks long. Each lane keeps a partial sum per row of A;
 * the 32 partial sums of an output are added in workgroup memory by a tree reduction.
 *
 * The options mean what matmul's MatmulOptions mean (matmul/common.ts), the output always f32.
 * As in the dense versions from v4 on (matmul/bias_flag.ts), whether there is a bias or a
 * residual is a uniform flag, not a specialization: the unrolled kernels are slow for
 * lavapipe's LLVM to compile, and a flag checked once per stored output costs nothing
 * measurable. An unused binding is bound to A, which the shader then never reads through it.
 */
import { isFloat } from "../../tensor/dtype.js";
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

/** What a quantized product may add and where it may write: matmul's MatmulOptions, with C always f32. */
export interface QuantizedMatmulOptions {
  /** Added to every row: [N], f32 or f16. */
  bias?: Tensor | null;
  /**
   * Added to every output element: C = A·Wᵀ + bias + residual. Shaped like the output (like
   * `out` when there is one, and then read at the same element); f32 or f16. It may not share
   * a buffer with `out` (WebGPU forbids binding one buffer as read and as written in one launch).
   */
  residual?: Tensor | null;
  /** Write into columns [outColumn, outColumn + N) of this existing f32 [..., M, N_total] tensor instead of a new one. */
  out?: Tensor;
  outColumn?: number;
}

/** The most rows of A one matvec launch handles. */
export const QMATVEC_MAX_ROWS = 4;
const LANES = 32;
const OUTPUTS = 8;

/** Uniform parameters of every quantized product: sizes, the bytes of a weight row, where C is written, the epilogue's flags. */
export const QUANTIZED_PARAMS = {
  M: "u32",
  N: "u32",
  K: "u32",
  row_bytes: "u32",
  c_row_stride: "u32",
  c_column: "u32",
  has_bias: "u32",
  has_residual: "u32",
} as const;
export const QUANTIZED_BINDINGS = { a: "read", b: "read", bias: "read", residual: "read", c: "read_write" } as const;

/** The bindings' WGSL types: b the packed u32 words, a f32 or (read four at a time) vec4<f32>, the rest their dtype. */
export function quantizedElementType(vec4Activations: boolean): (binding: string, dtype: string) => string {
  return (binding, dtype) => (binding === "b" ? "u32" : binding === "a" && vec4Activations ? "vec4<f32>" : dtype);
}

/** WGSL: `store_c(m, n, sum)` stores one finished sum of row m, output n, adding bias[n] and the residual when their flags are set. */
export const QUANTIZED_EPILOGUE_WGSL = /* wgsl */ `
fn store_c(m: u32, n: u32, sum: f32) {
  let i = m * params.c_row_stride + params.c_column + n;
  var value = sum;
  if (params.has_bias != 0u) { value += f32(bias[n]); }
  if (params.has_residual != 0u) { value += f32(residual[i]); }
  c[i] = value;
}`;

/** The bytes of one row of a [rows, cols] matrix of `type`. */
export function quantizedRowBytes(type: QuantizedType, cols: number): number {
  const { elements, bytes } = BLOCK_LAYOUT[type];
  return (cols / elements) * bytes;
}

/**
 * The matvec kernel's WGSL: `helpers` at module scope, then for each unit `unit` of the
 * output's row (starting at byte `row` of b) the version's `unitCode`, which must add the
 * unit's products with row m of A into acc[m] for every m < ROWS.
 */
export function quantizedMatvecWgsl(rows: number, helpers: string, unitCode: string): string {
  return /* wgsl */ `
${FLAT_WORKGROUP_WGSL}
${QUANTIZED_EPILOGUE_WGSL}

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
  if (lane < ROWS && out < params.N) { store_c(lane, out, partial[lid.y * ROWS + lane][0]); }
}`;
}

export type QuantizedKernel = Kernel<typeof QUANTIZED_PARAMS, typeof QUANTIZED_BINDINGS, { type: QuantizedType; rows: number }>;

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

/** A checked quantized product: its sizes, its output, and what is bound to the kernel. */
export interface QuantizedCall {
  M: number;
  N: number;
  K: number;
  c: Tensor;
  params: Record<keyof typeof QUANTIZED_PARAMS, number>;
  tensors: Record<keyof typeof QUANTIZED_BINDINGS, Tensor>;
}

/**
 * Checks A [..., K] f32 (its leading dimensions fold into M rows) against W [N, K] and the
 * options, and allocates C (A's leading dims + [N], f32) unless `out` is given. `maxRows`
 * bounds M (a matvec's limit).
 */
export function planQuantizedMatmul(op: string, a: Tensor, w: QuantizedMatrix, options: QuantizedMatmulOptions = {}, maxRows = Infinity): QuantizedCall {
  const { rows: N, cols: K } = w;
  check(a.dtype === "f32" && a.rank >= 1 && a.dim(-1) === K, () => `${op}: A ${a.describe()} must be f32 [..., ${K}] (W is [${N}, ${K}])`);
  const M = a.size / K;
  check(M >= 1 && M <= maxRows, () => `${op}: A ${a.describe()} has ${M} rows; it takes 1 to ${maxRows}`);
  const rowBytes = checkQuantizedMatrix(op, w);
  const cShape = [...a.shape.slice(0, -1), N];
  const bias = options.bias ?? null;
  if (bias) {
    check(isFloat(bias.dtype) && bias.rank === 1 && bias.dim(0) === N, () => `${op}: bias ${bias.describe()} must be f32 or f16 [${N}]`);
  }
  const outColumn = options.outColumn ?? 0;
  const out = options.out;
  if (out) {
    const total = out.rank >= 1 ? out.dim(-1) : 0;
    check(out.dtype === "f32", () => `${op}: out ${out.describe()} must be f32`);
    check(
      out.rank === cShape.length && out.size / Math.max(total, 1) === M,
      () => `${op}: out ${out.describe()} does not have the ${M} rows of A ${a.describe()}`,
    );
    check(
      Number.isInteger(outColumn) && outColumn >= 0 && outColumn + N <= total,
      () => `${op}: columns [${outColumn}, ${outColumn + N}) do not fit in out ${out.describe()}`,
    );
    check(
      out.buffer !== a.buffer && out.buffer !== w.data.buffer && (!bias || out.buffer !== bias.buffer),
      () => `${op}: out ${out.describe()} shares a buffer with an input`,
    );
  } else {
    check(outColumn === 0, () => `${op}: outColumn needs an out tensor`);
  }
  const residual = options.residual ?? null;
  if (residual) {
    const like = out ? out.shape : cShape;
    check(isFloat(residual.dtype), () => `${op}: residual ${residual.describe()} must be f32 or f16`);
    check(
      residual.rank === like.length && residual.shape.every((d, i) => d === like[i]),
      () => `${op}: residual ${residual.describe()} must be shaped like the output [${like.join(", ")}]`,
    );
    check(
      !out || out.buffer !== residual.buffer,
      () => `${op}: residual ${residual.describe()} shares a buffer with out ${out?.describe()}; write to a fresh output`,
    );
  }
  const c = out ?? a.gpu.empty(cShape, "f32", { name: op });
  return {
    M,
    N,
    K,
    c,
    params: {
      M,
      N,
      K,
      row_bytes: rowBytes,
      c_row_stride: c.dim(-1),
      c_column: outColumn,
      has_bias: bias ? 1 : 0,
      has_residual: residual ? 1 : 0,
    },
    tensors: { a, b: w.data, bias: bias ?? a, residual: residual ?? a, c },
  };
}

/**
 * Checks A [..., K] f32 (1 to 4 rows) against W [N, K] and records `kernel`:
 * C [..., N] f32 = A·Wᵀ (+ bias) (+ residual), or into `out`'s columns.
 */
export function recordQuantizedMatvec(gpu: Gpu, kernel: QuantizedKernel, a: Tensor, w: QuantizedMatrix, options: QuantizedMatmulOptions = {}): Tensor {
  const call = planQuantizedMatmul("quantizedMatvec", a, w, options, QMATVEC_MAX_ROWS);
  gpu.record(kernel, {
    params: call.params,
    tensors: call.tensors,
    workgroups: flatGrid(Math.ceil(call.N / OUTPUTS)),
    spec: { type: w.type, rows: call.M },
  });
  return call.c;
}
