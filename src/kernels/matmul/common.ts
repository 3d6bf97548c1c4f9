/**
 * What every matmul version shares: argument checking, the output allocation, the uniform
 * parameters, and the epilogue (bias, store) in WGSL.
 */
import type { DType } from "../../tensor/dtype.js";
import { check } from "../../tensor/errors.js";
import type { Tensor } from "../../tensor/tensor.js";
import { quadElementType, type QuadMode } from "../wgsl/quads.js";
import type { MatmulShape } from "./reference.js";

export interface MatmulOptions {
  /** Added to every row: [N]. */
  bias?: Tensor | null;
  /** Output dtype (default: A's). */
  outDtype?: DType;
  /**
   * Write into columns [outColumn, outColumn + N) of this existing [..., M, N_total] tensor
   * instead of a new one: how a weight split into row parts (each its own buffer, for weights
   * over the storage binding limit) fills one output.
   */
  out?: Tensor;
  outColumn?: number;
}

/** A checked matmul: its sizes, its output, and the tensors bound to the kernel. */
export interface MatmulCall {
  shape: MatmulShape;
  a: Tensor;
  b: Tensor;
  /** Bound to the bias slot; when there is no bias, A stands in (the shader never reads it). */
  bias: Tensor;
  hasBias: boolean;
  c: Tensor;
  /** First column of C written (0 unless filling part of a wider output). */
  outColumn: number;
}

/** Uniform parameters of every version (strides in elements). */
export const MATMUL_PARAMS = {
  M: "u32",
  N: "u32",
  K: "u32",
  a_batch_stride: "u32",
  b_batch_stride: "u32",
  c_row_stride: "u32",
  c_column: "u32",
} as const;

export const MATMUL_BINDINGS = { a: "read", b: "read", bias: "read", c: "read_write" } as const;

/**
 * A: [..., M, K]. B: [N, K] (a weight shared by all rows of A, whose leading dimensions then
 * fold into M) or [batch, N, K] with A [batch, M, K]. C: A's leading dims + [N].
 */
export function planMatmul(
  version: string,
  a: Tensor,
  b: Tensor,
  options: MatmulOptions = {},
  /** A version's own limits, checked before anything is allocated or dispatched. */
  checkShape: (shape: MatmulShape) => void = () => {},
): MatmulCall {
  const what = `matmul ${version}`;
  check(a.rank >= 1, () => `${what}: A ${a.describe()} must have at least one dimension`);
  check(b.rank === 2 || b.rank === 3, () => `${what}: B ${b.describe()} must be [N, K] or [batch, N, K]`);
  const K = a.dim(-1);
  check(b.dim(-1) === K, () => `${what}: A ${a.describe()} and B ${b.describe()} disagree on K (the last dimension)`);
  const N = b.dim(-2);
  let shape: MatmulShape;
  let cShape: number[];
  if (b.rank === 2) {
    const M = a.size / Math.max(K, 1);
    shape = { batch: 1, M: K === 0 ? a.size : M, N, K, batchedB: false };
    cShape = [...a.shape.slice(0, -1), N];
    if (a.rank === 1) cShape = [N];
  } else {
    check(
      a.rank === 3 && a.dim(0) === b.dim(0),
      () => `${what}: batched B ${b.describe()} needs A [batch, M, K] with the same batch, got ${a.describe()}`,
    );
    shape = { batch: a.dim(0), M: a.dim(1), N, K, batchedB: true };
    cShape = [a.dim(0), a.dim(1), N];
  }
  check(K > 0, () => `${what}: K is 0 (A ${a.describe()}, B ${b.describe()})`);
  const bias = options.bias ?? null;
  if (bias) {
    check(bias.rank === 1 && bias.dim(0) === N, () => `${what}: bias ${bias.describe()} must be [${N}]`);
  }
  const outColumn = options.outColumn ?? 0;
  const out = options.out;
  if (out) {
    const total = out.dim(-1);
    check(
      out.size / Math.max(total, 1) === shape.batch * shape.M && out.rank === cShape.length,
      () => `${what}: out ${out.describe()} does not have the ${shape.batch * shape.M} rows of A ${a.describe()}`,
    );
    check(
      Number.isInteger(outColumn) && outColumn >= 0 && outColumn + N <= total,
      () => `${what}: columns [${outColumn}, ${outColumn + N}) do not fit in out ${out.describe()}`,
    );
    check(out.buffer !== a.buffer && out.buffer !== b.buffer, () => `${what}: out ${out.describe()} shares a buffer with an input`);
    check(!options.outDtype || options.outDtype === out.dtype, () => `${what}: outDtype ${options.outDtype} differs from out ${out.describe()}`);
  } else {
    check(outColumn === 0, () => `${what}: outColumn needs an out tensor`);
  }
  checkShape(shape);
  const c = out ?? a.gpu.empty(cShape, options.outDtype ?? a.dtype, { name: "matmul" });
  return { shape, a, b, bias: bias ?? a, hasBias: bias !== null, c, outColumn };
}

/** Parameters of a call; strides are in elements (a quad fetch divides by 4 itself). */
export function matmulParams({ shape, c, outColumn }: MatmulCall) {
  const { M, N, K, batchedB } = shape;
  return { M, N, K, a_batch_stride: M * K, b_batch_stride: batchedB ? N * K : 0, c_row_stride: c.dim(-1), c_column: outColumn };
}

/** WGSL: the store of one finished sum, adding the bias when there is one. */
export function epilogueWgsl(hasBias: boolean): string {
  return /* wgsl */ `
fn store_c(z: u32, m: u32, n: u32, sum: f32) {
  c[(z * params.M + m) * params.c_row_stride + params.c_column + n] = c_t(sum${hasBias ? " + f32(bias[n])" : ""});
}`;
}

/** The element types of a matmul's bindings when A and B are read in quads (bias and C stay plain). */
export function matmulQuadElementType(binding: string, dtype: DType, spec: { aMode: QuadMode; bMode: QuadMode }): string {
  if (binding === "a") return quadElementType(spec.aMode, dtype);
  if (binding === "b") return quadElementType(spec.bMode, dtype);
  return dtype;
}
