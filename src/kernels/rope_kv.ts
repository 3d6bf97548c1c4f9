/**
 * ropeKV: rotary positions and the KV-cache append in one launch, straight from the fused
 * q|k|v projection (matmul/qkv_matvec.ts):
 *
 *   qkv [S, (H + 2·H_kv)·D]  (each row: H query heads, H_kv key heads, H_kv value heads)
 *   q_rot[s, h, :]                  = rope(q[s, h, :], position + s)        a new [S, H, D]
 *   cache_k[h, position + s, :]     = rope(k[s, h, :], position + s)
 *   cache_v[h, position + s, :]     = v[s, h, :]
 *
 * Unfused that is rope(q), rope(k), writeKV(k), writeKV(v): four launches, with the rotated
 * keys stored once only to be read back and stored again into the cache. Here one thread takes
 * one pair (i, i + D/2) of one head of one token: a query or key pair it rotates with the
 * (cos, sin) of its position from the rope table (rope.ts: the same table, the same
 * rotate-half arithmetic, so the same bits), a value pair it copies; then it stores the pair
 * where it belongs, converting to the destination's dtype. S·(H + 2·H_kv)·D/2 threads over a
 * flat grid.
 *
 * The position is a U32Source (step_value.ts): a number fixed at record time, or a u32 read
 * from a state tensor when the launch runs, so a decode step recorded once serves every token.
 * A run-time position past the capacity drops the cache writes instead of spilling into the
 * next head's positions (as writeKV does).
 *
 * Several sequences decoded together share one qkv (their rows one after another) but each has
 * its own cache and position: one launch per sequence then takes its rows of qkv (`rows`) and
 * writes its queries into the same rows of one shared q (`out`).
 */
import { isFloat, type DType } from "../tensor/dtype.js";
import { check } from "../tensor/errors.js";
import { defineKernel, flatGrid, FLAT_WORKGROUP_WGSL } from "../tensor/kernel.js";
import type { Tensor } from "../tensor/tensor.js";
import { writeKVReference } from "./kv_cache.js";
import { ropeReference } from "./rope.js";
import { checkU32Source, describeU32Source, isStepValue, maxOf, stateTensor, u32SourceParams, u32SourceWgsl, type U32Source } from "./step_value.js";

export interface RopeKVOptions {
  /** Rows [start, start + count) of qkv, one sequence's (default: all of them). */
  rows?: { start: number; count: number };
  /** Writes the rotated queries into the same rows of this [qkv rows, H, D] tensor instead of a new [S, H, D] one. */
  out?: Tensor;
  /** The dtype of a new q (default f32). */
  outDtype?: DType;
}

export interface RopeKVShape {
  S: number;
  /** Query heads. */
  H: number;
  /** Key and value heads. */
  Hkv: number;
  D: number;
  capacity: number;
}

// ------------------------------------------------------------------ CPU reference (float64)

/**
 * What ropeKV computes, composed from ropeReference and writeKVReference: the rotated queries
 * [S, H, D], and the caches [H_kv, capacity, D] after appending the rotated keys and the values
 * at `position` (new arrays; the inputs are left alone).
 */
export function ropeKVReference(
  qkv: ArrayLike<number>,
  { S, H, Hkv, D, capacity }: RopeKVShape,
  theta: number,
  position: number,
  keys: ArrayLike<number>,
  values: ArrayLike<number>,
): { q: Float64Array; keys: Float64Array; values: Float64Array } {
  const row = (H + 2 * Hkv) * D;
  const split = (from: number, heads: number) => {
    const out = new Float64Array(S * heads * D);
    for (let s = 0; s < S; s++) {
      for (let e = 0; e < heads * D; e++) out[s * heads * D + e] = qkv[s * row + from * D + e];
    }
    return out;
  };
  const cacheShape = [Hkv, capacity, D] as const;
  return {
    q: ropeReference(split(0, H), [S, H, D], theta, position),
    keys: writeKVReference(keys, cacheShape, ropeReference(split(H, Hkv), [S, Hkv, D], theta, position), position),
    values: writeKVReference(values, cacheShape, split(H + Hkv, Hkv), position),
  };
}

// ------------------------------------------------------------------ WGSL

const WORKGROUP = 256;

const ropeKVKernel = defineKernel({
  name: "rope_kv",
  params: {
    pairs: "u32",
    row_start: "u32",
    out_row_start: "u32",
    heads: "u32",
    kv_heads: "u32",
    half: "u32",
    capacity: "u32",
    position: "u32",
    position_index: "u32",
  },
  bindings: { qkv: "read", table: "read", state: "read", q: "read_write", cache_k: "read_write", cache_v: "read_write" },
  gathers: ["table", "state"],
  wgsl: ({ dynamic }: { dynamic: boolean }) => /* wgsl */ `
${FLAT_WORKGROUP_WGSL}
${u32SourceWgsl("position", dynamic)}
@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let pair = flat_workgroup(wid, nwg) * ${WORKGROUP}u + lid;
  if (pair >= params.pairs) { return; }
  let i = pair % params.half;
  let head_row = pair / params.half;        // s · (H + 2·H_kv) + j, s counted from the first row taken
  let all_heads = params.heads + 2u * params.kv_heads;
  let j = head_row % all_heads;
  let s = head_row / all_heads;
  let D = 2u * params.half;
  let first = (params.row_start * all_heads + head_row) * D + i;
  let a = f32(qkv[first]);
  let b = f32(qkv[first + params.half]);
  let position = position_value() + s;
  if (j >= params.heads + params.kv_heads) {
    if (position >= params.capacity) { return; }
    let at = ((j - params.heads - params.kv_heads) * params.capacity + position) * D + i;
    cache_v[at] = cache_v_t(a);
    cache_v[at + params.half] = cache_v_t(b);
    return;
  }
  // rope.ts's rotation, term for term.
  let entry = (position * params.half + i) * 2u;
  let cos_a = f32(table[entry]);
  let sin_a = f32(table[entry + 1u]);
  let first_out = a * cos_a - b * sin_a;
  let second_out = b * cos_a + a * sin_a;
  if (j < params.heads) {
    let at = ((params.out_row_start + s) * params.heads + j) * D + i;
    q[at] = q_t(first_out);
    q[at + params.half] = q_t(second_out);
    return;
  }
  if (position >= params.capacity) { return; }
  let at = ((j - params.heads) * params.capacity + position) * D + i;
  cache_k[at] = cache_k_t(first_out);
  cache_k[at + params.half] = cache_k_t(second_out);
}`,
});

// ------------------------------------------------------------------ launch

/**
 * Splits qkv [rows, (H + 2·H_kv)·D] into heads; rotates the queries of the S rows taken (all,
 * or `rows`) into a new [S, H, D] tensor (f32 unless `outDtype`), or into their rows of `out`;
 * writes their rotated keys and their values into the caches `keys` and `values`
 * [H_kv, capacity, D] at positions position .. position + S - 1 (converting to the caches'
 * dtypes). `table` is ropeTable's [positions, D/2, 2]. A StepValue position is read when the
 * launch runs; its max + S must fit both the table and the caches. One launch.
 */
export function ropeKV(qkv: Tensor, table: Tensor, keys: Tensor, values: Tensor, position: U32Source, options: RopeKVOptions = {}): Tensor {
  const op = "ropeKV";
  check(keys.rank === 3 && isFloat(keys.dtype), () => `${op}: key cache ${keys.describe()} must be an f32 or f16 [H_kv, capacity, D]`);
  const [Hkv, capacity, D] = keys.shape;
  check(
    values.rank === 3 && isFloat(values.dtype) && values.shape.every((d, i) => d === keys.shape[i]),
    () => `${op}: value cache ${values.describe()} must be f32 or f16 and shaped like the key cache ${keys.describe()}`,
  );
  check(D > 0 && D % 2 === 0, () => `${op}: head size ${D} of the caches ${keys.describe()} must be even`);
  check(qkv.rank === 2 && isFloat(qkv.dtype), () => `${op}: qkv ${qkv.describe()} must be an f32 or f16 [S, (H + 2·H_kv)·D]`);
  const [total, width] = qkv.shape;
  const H = width / D - 2 * Hkv;
  check(
    Number.isInteger(H) && H >= 1,
    () => `${op}: qkv ${qkv.describe()} is not [S, (H + 2·${Hkv})·${D}] for H >= 1 query heads (caches ${keys.describe()})`,
  );
  const { start: rowStart, count: S } = options.rows ?? { start: 0, count: total };
  check(
    Number.isInteger(rowStart) && Number.isInteger(S) && rowStart >= 0 && S >= 0 && rowStart + S <= total,
    () => `${op}: rows [${rowStart}, ${rowStart + S}) are outside qkv ${qkv.describe()}`,
  );
  const out = options.out;
  const outDtype = out?.dtype ?? options.outDtype ?? "f32";
  check(isFloat(outDtype), () => `${op}: output dtype ${outDtype} must be f32 or f16`);
  if (out) {
    check(
      out.rank === 3 && out.dim(0) === total && out.dim(1) === H && out.dim(2) === D,
      () => `${op}: out ${out.describe()} must be [${total}, ${H}, ${D}] for qkv ${qkv.describe()}`,
    );
    check(!options.outDtype || options.outDtype === out.dtype, () => `${op}: outDtype ${options.outDtype} differs from out ${out.describe()}`);
    for (const t of [qkv, keys, values]) check(out.buffer !== t.buffer, () => `${op}: out ${out.describe()} shares a buffer with ${t.describe()}`);
  }
  check(
    table.rank === 3 && table.dim(2) === 2 && isFloat(table.dtype) && table.dim(1) * 2 === D,
    () => `${op}: table ${table.describe()} must be ropeTable's [positions, ${D / 2}, 2] for head size ${D}`,
  );
  if (isStepValue(position)) checkU32Source(position, `${op}: position`);
  else check(Number.isInteger(position) && position >= 0, () => `${op}: position ${position} must be an integer >= 0`);
  const last = maxOf(position) + S;
  check(
    last <= capacity,
    () => `${op}: writing ${S} positions at ${describeU32Source(position)} overflows the caches ${keys.describe()} of capacity ${capacity}`,
  );
  check(
    last <= table.dim(0),
    () => `${op}: positions up to ${last - 1} (position ${describeU32Source(position)}) are outside table ${table.describe()} (${table.dim(0)} positions)`,
  );
  check(keys.buffer !== values.buffer, () => `${op}: key cache ${keys.describe()} and value cache ${values.describe()} share a buffer`);
  for (const cache of [keys, values]) {
    check(qkv.buffer !== cache.buffer, () => `${op}: qkv ${qkv.describe()} shares a buffer with the cache ${cache.describe()}`);
  }
  const q = out ?? qkv.gpu.empty([S, H, D], outDtype, { name: "rope_kv q" });
  const state = stateTensor(op, [position], qkv, [keys, values, q]);
  const pairs = S * (H + 2 * Hkv) * (D / 2);
  qkv.gpu.record(ropeKVKernel, {
    params: { pairs, row_start: rowStart, out_row_start: out ? rowStart : 0, heads: H, kv_heads: Hkv, half: D / 2, capacity, ...u32SourceParams("position", position) },
    tensors: { qkv, table, state, q, cache_k: keys, cache_v: values },
    workgroups: flatGrid(Math.ceil(pairs / WORKGROUP)),
    spec: { dynamic: isStepValue(position) },
  });
  return q;
}
