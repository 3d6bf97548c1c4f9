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
 * Several sequences decoded in one batch share one q and one output, their rows one after
 * another, while each has its own cache: attention then runs once per sequence over rows
 * [start, start + count) (`rows`, with the shared output as `out`). q and out are [R, H, D],
 * S = count, and query i of the problem is row start + i of both; every other row of `out` is
 * left alone. (A view of those rows would do, but WebGPU binds storage only at aligned offsets,
 * so the kernels take the first row as a parameter instead: query_row, added in row_index.)
 * Causal masking and the query offset see only the problem's queries: query i sits at position
 * queryOffset + i, wherever its row is.
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
 *
 * Sliding window (Mistral): with `window` W, causal query i sees only the last W keys up to
 * its own position, j in [key_start(i), key_limit(i)) with key_start = max(0, queryOffset + i
 * + 1 - W), as transformers' mask (j > position - W). The kernels start their loops there, so a
 * query far past the window reads W keys, not the whole cache. The window is a number fixed at
 * record time; with StepValues it counts back from the position read at run time. A window
 * without causal masking is refused: non-causal queries have no position to count back from.
 *
 * Decoding changes two numbers every token: the cache's length and the query offset. The
 * kernels take each as a U32Source (step_value.ts): a number, or a StepValue read from a state
 * tensor when the launch runs, so one recorded step serves every token (typically
 * length = position + S and queryOffset = position, one state element with two `plus`es).
 * What is fixed at record time (the shape checks, the score matrix of v1, the chunk count of
 * v3) uses their max; what the kernels compute uses the value they read. The reference and the
 * choice of version take numbers: AttentionOptions is numeric unless asked for
 * AttentionOptions<U32Source>, what the kernels take.
 */
import { isFloat, type DType } from "../../tensor/dtype.js";
import { check, shapeString } from "../../tensor/errors.js";
import type { ParamType } from "../../tensor/kernel.js";
import type { Tensor } from "../../tensor/tensor.js";
import {
  checkU32Source,
  describeU32Source,
  isStepValue,
  maxOf,
  stateTensor,
  u32SourceParams,
  u32SourceWgsl,
  type U32Source,
} from "../step_value.js";

/** Where the keys and values live: their own [T, H_kv, D] tensors, or a [H_kv, capacity, D] cache. */
export type KVLayout<N extends U32Source = number> = { layout: "tokens" } | { layout: "cache"; /** valid positions, from 0 */ length: N };

/** The options; N = U32Source lets the cache length and the query offset be StepValues (the kernels' options). */
export type AttentionOptions<N extends U32Source = number> = KVLayout<N> & {
  /** Each query sees only keys at or before its own absolute position. Default false. */
  causal?: boolean;
  /** Absolute position of query 0 (used by causal masking). Default kvLength - S. */
  queryOffset?: N;
  /** Sliding window: a (causal) query sees only the last `window` keys, its own included. Default: all. */
  window?: number;
  /** Factor on q·k. Default 1/sqrt(D). */
  scale?: number;
  /** Output dtype. Default out's dtype when given, else q's. */
  outDtype?: DType;
  /**
   * Only rows [start, start + count) of q [R, H, D] are queries (S = count): query i is row
   * start + i, and its output goes to row start + i of `out` (required with rows).
   */
  rows?: { start: number; count: number };
  /**
   * Write the output here instead of into a new [S, H, D] tensor: [S, H, D], or with `rows`
   * q's [R, H, D] (only the rows taken are written). In the output dtype; it must not share a
   * buffer with q, k, v or a StepValue's tensor. The versions then return it.
   */
  out?: Tensor;
};

/** Everything a kernel needs to know, resolved from the shapes and options. */
export interface AttentionProblem {
  /** The queries of the problem: S, or rows.count. */
  queries: number;
  /** The row of q (and of the output) that query 0 is: rows.start, or 0. */
  queryRow: number;
  /** Rows of q: R with `rows`, else S. */
  qRows: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  /** The number of keys; for a StepValue, its max (what record-time checks and sizes use). */
  kvLength: number;
  /** The number of keys as the kernels read it: a number, or a StepValue read at run time. */
  kvLengthSource: U32Source;
  /** Query heads per kv head (H / H_kv). */
  groupSize: number;
  /** Elements between kv heads and between positions in k and v. */
  kvHeadStride: number;
  kvPositionStride: number;
  causal: boolean;
  /** The sliding window (keys a query sees at most); 0: none. */
  window: number;
  /** Position of query 0; for a StepValue, its max. */
  queryOffset: number;
  /** Position of query 0 as the kernels read it. */
  queryOffsetSource: U32Source;
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
  options: AttentionOptions<U32Source>,
  defaultOutDtype: DType = "f32",
): AttentionProblem {
  const kName = named("k", k);
  check(q.shape.length === 3, () => `${op}: ${named("q", q)} must be [S, H, D]`);
  check(k.shape.length === 3, () => `${op}: ${kName} must be ${options.layout === "cache" ? "[H_kv, capacity, D]" : "[T, H_kv, D]"}`);
  check(
    k.shape.length === v.shape.length && k.shape.every((d, i) => d === v.shape[i]),
    () => `${op}: ${kName} and ${named("v", v)} must have the same shape`,
  );
  const [qRows, heads, headDim] = q.shape;
  check(qRows > 0 && heads > 0 && headDim > 0, () => `${op}: ${named("q", q)} is empty`);
  const { start: queryRow, count: queries } = options.rows ?? { start: 0, count: qRows };
  if (options.rows) {
    check(
      Number.isInteger(queryRow) && Number.isInteger(queries) && queryRow >= 0 && queries >= 1,
      () => `${op}: rows start ${queryRow}, count ${queries} must be integers, start >= 0 and count >= 1`,
    );
    check(
      queryRow + queries <= qRows,
      () => `${op}: rows [${queryRow}, ${queryRow + queries}) are outside the ${qRows} rows of ${named("q", q)}`,
    );
  }

  let kvHeads: number;
  let kvLength: number;
  let kvLengthSource: U32Source;
  let kvHeadStride: number;
  let kvPositionStride: number;
  if (options.layout === "tokens") {
    [kvLength, kvHeads] = k.shape;
    kvLengthSource = kvLength;
    kvHeadStride = headDim;
    kvPositionStride = kvHeads * headDim;
  } else {
    check(options.layout === "cache", () => `${op}: layout must be "tokens" or "cache", not ${String((options as { layout: unknown }).layout)}`);
    const capacity = k.shape[1];
    kvHeads = k.shape[0];
    kvLengthSource = options.length;
    if (isStepValue(kvLengthSource)) checkU32Source(kvLengthSource, `${op}: kv length`);
    kvLength = maxOf(kvLengthSource);
    const length = describeU32Source(kvLengthSource);
    check(
      Number.isInteger(kvLength) && kvLength >= 1 && kvLength <= capacity,
      () => `${op}: kv length ${length} must be an integer in [1, ${capacity}], the capacity of the cache ${kName}`,
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
  const queryOffsetSource = options.queryOffset ?? defaultQueryOffset(kvLengthSource, queries);
  if (isStepValue(queryOffsetSource)) checkU32Source(queryOffsetSource, `${op}: query offset`);
  else check(Number.isInteger(queryOffsetSource) && queryOffsetSource >= 0, () => `${op}: query offset ${queryOffsetSource} must be an integer >= 0`);
  const queryOffset = maxOf(queryOffsetSource);
  const dynamic = isStepValue(queryOffsetSource) || isStepValue(kvLengthSource);
  check(
    !causal || queryOffset + queries <= kvLength,
    () =>
      `${op}: causal queries at positions [${queryOffset}, ${queryOffset + queries}) reach past the ${kvLength} keys` +
      (dynamic ? ` (query offset ${describeU32Source(queryOffsetSource)}, kv length ${describeU32Source(kvLengthSource)})` : ""),
  );
  if (causal && isStepValue(queryOffsetSource) && isStepValue(kvLengthSource)) {
    const [offset, length] = [queryOffsetSource, kvLengthSource];
    // Read from one state element, the two differ by the same amount at every step: check it.
    check(
      offset.tensor !== length.tensor || offset.index !== length.index || offset.plus + queries <= length.plus,
      () =>
        `${op}: causal queries at ${describeU32Source(offset)} + [0, ${queries}) reach past the ` +
        `${describeU32Source(length)} keys whatever ${offset.tensor.describe()}[${offset.index}] holds`,
    );
  }
  const window = options.window ?? 0;
  if (options.window !== undefined) {
    check(Number.isSafeInteger(window) && window >= 1 && window < 2 ** 32, () => `${op}: window ${window} must be a positive integer`);
    check(causal, () => `${op}: a sliding window needs causal attention (it counts back from each query's position)`);
  }
  const scale = options.scale ?? 1 / Math.sqrt(headDim);
  check(Number.isFinite(scale), () => `${op}: scale ${scale} is not a finite number`);
  const outDtype = options.outDtype ?? options.out?.dtype ?? defaultOutDtype;
  check(isFloat(outDtype), () => `${op}: output dtype must be f32 or f16, not ${outDtype}`);

  return {
    queries, queryRow, qRows, heads, kvHeads, headDim, kvLength, kvLengthSource, groupSize: heads / kvHeads,
    kvHeadStride, kvPositionStride, causal, window, queryOffset, queryOffsetSource, scale, outDtype,
  };
}

/** kvLength - S, clamped to 0 for a number; for a StepValue the same element with S less (only causal attention reads it). */
function defaultQueryOffset(kvLength: U32Source, queries: number): U32Source {
  if (!isStepValue(kvLength)) return Math.max(0, kvLength - queries);
  return { ...kvLength, plus: kvLength.plus - queries, max: Math.max(0, kvLength.max - queries) };
}

/**
 * attentionProblem for tensors: also checks that q, k and v hold floats, and resolves the
 * tensor every launch binds as `state` (the StepValues' tensor, or q, which no launch writes).
 */
export function attentionTensors(
  op: string,
  q: Tensor,
  k: Tensor,
  v: Tensor,
  options: AttentionOptions<U32Source>,
): AttentionProblem & { state: Tensor } {
  for (const [name, t] of [["q", q], ["k", k], ["v", v]] as const) {
    check(isFloat(t.dtype), () => `${op}: ${name} ${t.describe()} must be f32 or f16`);
  }
  const p = attentionProblem(op, q, k, v, options, q.dtype);
  const out = options.out;
  check(!options.rows || out, () => `${op}: rows [${p.queryRow}, ${p.queryRow + p.queries}) of ${q.describe()} need an out tensor (the shared [R, H, D] output)`);
  if (out) {
    const shape = [options.rows ? p.qRows : p.queries, p.heads, p.headDim];
    check(
      out.rank === 3 && out.shape.every((d, i) => d === shape[i]),
      () => `${op}: out ${out.describe()} must be [${shape.join(", ")}]${options.rows ? `, the rows of ${q.describe()}` : ""}`,
    );
    check(out.dtype === p.outDtype, () => `${op}: out ${out.describe()} must be ${p.outDtype}, the output dtype`);
    for (const [name, t] of [["q", q], ["k", k], ["v", v]] as const) {
      check(out.buffer !== t.buffer, () => `${op}: out ${out.describe()} shares a buffer with ${name} ${t.describe()}`);
    }
  }
  return { ...p, state: stateTensor(op, [p.kvLengthSource, p.queryOffsetSource], q, out ? [out] : []) };
}

/** The tensor a version writes its output to: options.out, or a new [S, H, D]. */
export function attentionOutput(p: AttentionProblem, q: Tensor, options: AttentionOptions<U32Source>): Tensor {
  return options.out ?? q.gpu.empty([p.queries, p.heads, p.headDim], p.outDtype, { name: "attention" });
}

/**
 * The number of keys query `i` sees: keys [0, keyLimit) (the reference's twin of WGSL
 * key_limit). With StepValues it is the most that query may see at run time.
 */
export function keyLimit(p: AttentionProblem, i: number): number {
  return p.causal ? Math.min(p.queryOffset + i + 1, p.kvLength) : p.kvLength;
}

/** The first key query `i` sees (the twin of WGSL key_start): 0, or the sliding window's start. */
export function keyStart(p: AttentionProblem, i: number): number {
  return p.window > 0 ? Math.min(Math.max(0, p.queryOffset + i + 1 - p.window), keyLimit(p, i)) : 0;
}

/**
 * The most keys one query may see at run time: the last query's keyLimit, or the window when
 * it is smaller (what sizes v1's score rows and v3's chunks, so both stay O(window)).
 */
export function maxKeysSeen(p: AttentionProblem): number {
  const limit = keyLimit(p, p.queries - 1);
  return p.window > 0 ? Math.min(p.window, limit) : limit;
}

// ------------------------------------------------------------------ shared WGSL

/**
 * Uniform parameters every attention kernel declares first. kv_length and query_offset are
 * U32Sources (with their _index): the kernels read them only through key_count() and
 * key_limit() (attentionWgsl). kv_max is the most keys the launch was sized for (kvLength).
 * query_row is the row of q and of out that query 0 is (row_index).
 */
export const ATTENTION_PARAMS = {
  queries: "u32",
  heads: "u32",
  head_dim: "u32",
  group_size: "u32",
  kv_length: "u32",
  kv_length_index: "u32",
  kv_max: "u32",
  kv_head_stride: "u32",
  kv_pos_stride: "u32",
  query_offset: "u32",
  query_offset_index: "u32",
  query_row: "u32",
  causal: "u32",
  window: "u32",
  scale: "f32",
} as const satisfies Record<string, ParamType>;

export function attentionParams(p: AttentionProblem): Record<keyof typeof ATTENTION_PARAMS, number> {
  return {
    queries: p.queries,
    heads: p.heads,
    head_dim: p.headDim,
    group_size: p.groupSize,
    ...u32SourceParams("kv_length", p.kvLengthSource),
    kv_max: p.kvLength,
    kv_head_stride: p.kvHeadStride,
    kv_pos_stride: p.kvPositionStride,
    ...u32SourceParams("query_offset", p.queryOffsetSource),
    query_row: p.queryRow,
    causal: p.causal ? 1 : 0,
    window: p.window,
    scale: p.scale,
  };
}

/** The specialization every attention kernel takes: which of its two U32Sources are read from `state`. */
export type AttentionSpec = {
  dynamicLength: boolean;
  dynamicOffset: boolean;
};

export function attentionSpec(p: AttentionProblem): AttentionSpec {
  return { dynamicLength: isStepValue(p.kvLengthSource), dynamicOffset: isStepValue(p.queryOffsetSource) };
}

/**
 * A stand-in for -inf: the lowest finite f32. WGSL does not promise IEEE infinities (a shader
 * may be compiled assuming there are none), and the kernels never need one: exp(MASKED - m) is
 * exactly 0 for any real score m, and MASKED - MASKED is 0, not NaN.
 */
const MASKED_WGSL = "-0x1.fffffep+127f";

/**
 * WGSL helpers over the ATTENTION_PARAMS fields, for a kernel whose bindings include the
 * read-only u32 `state` (bound to a stand-in when both values are numbers).
 */
export function attentionWgsl({ dynamicLength, dynamicOffset }: AttentionSpec): string {
  return /* wgsl */ `
const MASKED = ${MASKED_WGSL};

// The number of keys and the position of query 0, as this launch reads them.
${u32SourceWgsl("kv_length", dynamicLength)}
${u32SourceWgsl("query_offset", dynamicOffset)}

// The number of keys, never more than the launch was sized for (a run-time length that broke
// its max sees the first kv_max keys rather than reading and looping past them).
fn key_count() -> u32 {
  return min(kv_length_value(), params.kv_max);
}

// Query i sees keys [key_start(i), key_limit(i)).
fn key_limit(i: u32) -> u32 {
  if (params.causal != 0u) { return min(query_offset_value() + i + 1u, key_count()); }
  return key_count();
}

// 0, or the first key of query i's sliding window (window > 0 only with causal); never past
// key_limit(i) (which a run-time length that broke its max may pull below it), so
// key_limit(i) - key_start(i) never wraps.
fn key_start(i: u32) -> u32 {
  let end = query_offset_value() + i + 1u;
  return min(select(0u, end - params.window, params.window > 0u && end > params.window), key_limit(i));
}

// Index of element 0 of key/value (kv head g, position j) in k or v, in either layout.
fn kv_index(g: u32, j: u32) -> u32 {
  return g * params.kv_head_stride + j * params.kv_pos_stride;
}

// Index of element 0 of query i, head h in q, and of its output in out: both are [R, H, D]
// and query i is row query_row + i (query_row = 0 when the queries are all of q).
fn row_index(i: u32, h: u32) -> u32 {
  return ((params.query_row + i) * params.heads + h) * params.head_dim;
}`;
}
