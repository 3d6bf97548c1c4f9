/**
 * What every attention version agrees on: the options, how the two K/V layouts are described,
 * the validation of shapes and arguments, and the few WGSL helpers that turn a (kv head,
 * position) into an index and a query into the number of keys it may see.
 *
 * Shapes (all contiguous, row-major):
 * - q: [S, H, D]: S query positions, H query heads, head dimension D.
 * - k, v, layout "tokens": [T, H_kv, D], straight from the k/v projections; kvLength = T.
 * - k, v, layout "cache": [H_kv, capacity, D], the decoder's KV-cache; only positions
 *   [0, length) hold keys, the rest is never read (it may hold anything, NaN included).
 * - output: [S, H, D].
 *
 * Both layouts are the same thing seen with different strides: element (kv head g, position j,
 * dim d) sits at g·headStride + j·positionStride + d. The kernels take the two strides as
 * parameters, so one compiled kernel reads either layout.
 *
 * Grouped-query attention: H_kv divides H and query head h reads kv head floor(h / (H / H_kv));
 * H_kv = H is plain multi-head attention, H_kv = 1 multi-query attention.
 *
 * Causal masking: query i sits at absolute position queryOffset + i and sees keys
 * j <= queryOffset + i. The default offset, kvLength - S, places the queries at the end of the
 * keys (a prefill of the whole sequence, or decoding the newest token).
 */
import { isFloat, type DType } from "../../tensor/dtype.js";
import { check, shapeString } from "../../tensor/errors.js";
import type { ParamType } from "../../tensor/kernel.js";
import type { Tensor } from "../../tensor/tensor.js";

/** Where the keys and values live: their own [T, H_kv, D] tensors, or a [H_kv, capacity, D] cache. */
export type KVLayout = { layout: "tokens" } | { layout: "cache"; /** valid positions, from 0 */ length: number };

export type AttentionOptions = KVLayout & {
  /** Each query sees only keys at or before its own absolute position. Default false. */
  causal?: boolean;
  /** Absolute position of query 0 (used by causal masking). Default kvLength - S. */
  queryOffset?: number;
  /** Factor on q·k. Default 1/sqrt(D). */
  scale?: number;
  /** Output dtype. Default q's dtype. */
  outDtype?: DType;
};

/** Everything a kernel needs to know, resolved from the shapes and options. */
export interface AttentionProblem {
  queries: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  kvLength: number;
  /** Query heads per kv head (H / H_kv). */
  groupSize: number;
  /** Elements between kv heads and between positions in k and v. */
  kvHeadStride: number;
  kvPositionStride: number;
  causal: boolean;
  queryOffset: number;
  scale: number;
  outDtype: DType;
}

/** Something with a shape: a Tensor, or a host array with its shape (for the reference). */
export interface Shaped {
  readonly shape: readonly number[];
  describe?(): string;
}

function named(name: string, x: Shaped): string {
  return `${name} ${x.describe ? x.describe() : `[${shapeString(x.shape)}]`}`;
}

/** Checks shapes and options, and resolves the defaults. Throws ShapeError naming `op`. */
export function attentionProblem(
  op: string,
  q: Shaped,
  k: Shaped,
  v: Shaped,
  options: AttentionOptions,
  defaultOutDtype: DType = "f32",
): AttentionProblem {
  const kName = named("k", k);
  check(q.shape.length === 3, () => `${op}: ${named("q", q)} must be [S, H, D]`);
  check(k.shape.length === 3, () => `${op}: ${kName} must be ${options.layout === "cache" ? "[H_kv, capacity, D]" : "[T, H_kv, D]"}`);
  check(
    k.shape.length === v.shape.length && k.shape.every((d, i) => d === v.shape[i]),
    () => `${op}: ${kName} and ${named("v", v)} must have the same shape`,
  );
  const [queries, heads, headDim] = q.shape;
  check(queries > 0 && heads > 0 && headDim > 0, () => `${op}: ${named("q", q)} is empty`);

  let kvHeads: number;
  let kvLength: number;
  let kvHeadStride: number;
  let kvPositionStride: number;
  if (options.layout === "tokens") {
    [kvLength, kvHeads] = k.shape;
    kvHeadStride = headDim;
    kvPositionStride = kvHeads * headDim;
  } else {
    check(options.layout === "cache", () => `${op}: layout must be "tokens" or "cache", not ${String((options as { layout: unknown }).layout)}`);
    const capacity = k.shape[1];
    kvHeads = k.shape[0];
    kvLength = options.length;
    check(
      Number.isInteger(kvLength) && kvLength >= 1 && kvLength <= capacity,
      () => `${op}: kv length ${kvLength} must be an integer in [1, ${capacity}], the capacity of the cache ${kName}`,
    );
    kvHeadStride = capacity * headDim;
    kvPositionStride = headDim;
  }
  check(kvLength > 0, () => `${op}: ${kName} holds no keys`);
  check(k.shape[2] === headDim, () => `${op}: head dim of ${kName} is ${k.shape[2]}, but ${named("q", q)} has ${headDim}`);
  check(
    kvHeads > 0 && heads % kvHeads === 0,
    () => `${op}: ${heads} query heads (${named("q", q)}) are not a multiple of ${kvHeads} kv heads (${kName})`,
  );

  const causal = options.causal ?? false;
  // Without a causal mask the offset changes nothing, and there may be more queries than keys.
  const queryOffset = options.queryOffset ?? Math.max(0, kvLength - queries);
  check(Number.isInteger(queryOffset) && queryOffset >= 0, () => `${op}: query offset ${queryOffset} must be an integer >= 0`);
  check(
    !causal || queryOffset + queries <= kvLength,
    () => `${op}: causal queries at positions [${queryOffset}, ${queryOffset + queries}) reach past the ${kvLength} keys`,
  );
  const scale = options.scale ?? 1 / Math.sqrt(headDim);
  check(Number.isFinite(scale), () => `${op}: scale ${scale} is not a finite number`);
  const outDtype = options.outDtype ?? defaultOutDtype;
  check(isFloat(outDtype), () => `${op}: output dtype must be f32 or f16, not ${outDtype}`);

  return {
    queries, heads, kvHeads, headDim, kvLength, groupSize: heads / kvHeads,
    kvHeadStride, kvPositionStride, causal, queryOffset, scale, outDtype,
  };
}

/** attentionProblem for tensors: also checks that q, k and v hold floats. */
export function attentionTensors(op: string, q: Tensor, k: Tensor, v: Tensor, options: AttentionOptions): AttentionProblem {
  for (const [name, t] of [["q", q], ["k", k], ["v", v]] as const) {
    check(isFloat(t.dtype), () => `${op}: ${name} ${t.describe()} must be f32 or f16`);
  }
  return attentionProblem(op, q, k, v, options, q.dtype);
}

/** The number of keys query `i` sees: keys [0, keyLimit) (the reference's twin of WGSL key_limit). */
export function keyLimit(p: AttentionProblem, i: number): number {
  return p.causal ? Math.min(p.queryOffset + i + 1, p.kvLength) : p.kvLength;
}

// ------------------------------------------------------------------ shared WGSL

/** Uniform parameters every attention kernel declares first. */
export const ATTENTION_PARAMS = {
  queries: "u32",
  heads: "u32",
  head_dim: "u32",
  group_size: "u32",
  kv_length: "u32",
  kv_head_stride: "u32",
  kv_pos_stride: "u32",
  query_offset: "u32",
  causal: "u32",
  scale: "f32",
} as const satisfies Record<string, ParamType>;

export function attentionParams(p: AttentionProblem): Record<keyof typeof ATTENTION_PARAMS, number> {
  return {
    queries: p.queries,
    heads: p.heads,
    head_dim: p.headDim,
    group_size: p.groupSize,
    kv_length: p.kvLength,
    kv_head_stride: p.kvHeadStride,
    kv_pos_stride: p.kvPositionStride,
    query_offset: p.queryOffset,
    causal: p.causal ? 1 : 0,
    scale: p.scale,
  };
}

/**
 * A stand-in for -inf: the lowest finite f32. WGSL does not promise IEEE infinities (a shader
 * may be compiled assuming there are none), and the kernels never need one: exp(MASKED - m) is
 * exactly 0 for any real score m, and MASKED - MASKED is 0, not NaN.
 */
const MASKED_WGSL = "-0x1.fffffep+127f";

/** WGSL helpers over the ATTENTION_PARAMS fields. */
export const ATTENTION_WGSL = /* wgsl */ `
const MASKED = ${MASKED_WGSL};

// Query i sees keys [0, key_limit(i)).
fn key_limit(i: u32) -> u32 {
  if (params.causal != 0u) { return min(params.query_offset + i + 1u, params.kv_length); }
  return params.kv_length;
}

// Index of element 0 of key/value (kv head g, position j) in k or v, in either layout.
fn kv_index(g: u32, j: u32) -> u32 {
  return g * params.kv_head_stride + j * params.kv_pos_stride;
}

// Index of element 0 of query (or output) row (position i, head h) in [S, H, D].
fn row_index(i: u32, h: u32) -> u32 {
  return (i * params.heads + h) * params.head_dim;
}`;
