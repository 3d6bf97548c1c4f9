/**
 * What every matmul version shares: argument checking, the output allocation, the uniform
 * parameters, and the epilogue (bias, residual, store) in WGSL.
 *
 * The residual epilogue exists for the transformer's `x + f(x)·Wᵀ`: adding x while the sum is
 * still in a register saves the separate add, which would read C back, read x and write C
 * again: one launch and three passes over an activation, for one more load per stored output.
 */
import { isFloat, type DType } from "../../tensor/dtype.js";
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
  /**
   * Added to every output element: C = A·Bᵀ + bias + residual. Shaped like the output (like
   * `out` when there is one, and then read at the same element, so a weight split into row
   * parts adds its own columns of it); f32 or f16. It may not share a buffer with `out`
   * (WebGPU forbids binding one buffer as read and as written in one launch): results go to a
   * fresh tensor.
   */
  residual?: Tensor | null;
}

/** A checked matmul: its sizes, its output, and the tensors bound to the kernel. */
export interface MatmulCall {
  shape: MatmulShape;
  a: Tensor;
  b: Tensor;
  /** Bound to the bias slot; when there is no bias, A stands in (the shader never reads it). */
  bias: Tensor;
  hasBias: boolean;
  /** Bound to the residual slot; when there is none, A stands in (the shader never reads it). */
  residual: Tensor;
  hasResidual: boolean;
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

export const MATMUL_BINDINGS = { a: "read", b: "read", bias: "read", residual: "read", c: "read_write" } as const;

/** The tensors of a planned call, by binding. */
export function matmulTensors(call: MatmulCall): Record<keyof typeof MATMUL_BINDINGS, Tensor> {
  return { a: call.a, b: call.b, bias: call.bias, residual: call.residual, c: call.c };
}

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
  const residual = options.residual ?? null;
  if (residual) {
    const like = out ? out.shape : cShape;
    check(isFloat(residual.dtype), () => `${what}: residual ${residual.describe()} must be f32 or f16`);
    check(
      residual.rank === like.length && residual.shape.every((d, i) => d === like[i]),
      () => `${what}: residual ${residual.describe()} must be shaped like the output [${like.join(", ")}]`,
    );
    check(
      !out || out.buffer !== residual.buffer,
      () => `${what}: residual ${residual.describe()} shares a buffer with out ${out?.describe()}; write to a fresh output`,
    );
  }
  checkShape(shape);
  const c = out ?? a.gpu.empty(cShape, options.outDtype ?? a.dtype, { name: "matmul" });
  return { shape, a, b, bias: bias ?? a, hasBias: bias !== null, residual: residual ?? a, hasResidual: residual !== null, c, outColumn };
}

/** Parameters of a call; strides are in elements (a quad fetch divides by 4 itself). */
export function matmulParams({ shape, c, outColumn }: MatmulCall) {
  const { M, N, K, batchedB } = shape;
  return { M, N, K, a_batch_stride: M * K, b_batch_stride: batchedB ? N * K : 0, c_row_stride: c.dim(-1), c_column: outColumn };
}

/** WGSL: the store of one finished sum, adding the bias and the residual when there are. */
export function epilogueWgsl(hasBias: boolean, hasResidual: boolean): string {
  return /* wgsl */ `
fn store_c(z: u32, m: u32, n: u32, sum: f32) {
  let i = (z * params.M + m) * params.c_row_stride + params.c_column + n;
  c[i] = c_t(sum${hasBias ? " + f32(bias[n])" : ""}${hasResidual ? " + f32(residual[i])" : ""});
}`;
}

/** The element types of a matmul's bindings when A and B are read in quads (bias and C stay plain). */
export function matmulQuadElementType(binding: string, dtype: DType, spec: { aMode: QuadMode; bMode: QuadMode }): string {
  if (binding === "a") return quadElementType(spec.aMode, dtype);
  if (binding === "b") return quadElementType(spec.bMode, dtype);
  return dtype;
}
