/**
 * writeKV: append rows to a KV-cache.
 *
 * The cache is [H_kv, capacity, D] (each kv head's positions contiguous, the "cache" layout of
 * attention), the new rows [S, H_kv, D] as the k or v projection produces them (the "tokens"
 * layout). writeKV stores cache[h, position + s, :] = rows[s, h, :], transposing the first two
 * axes on the way. One thread per element of rows; the dtype converts on store (f32 or f16 on
 * either side), everything else in the cache is left as it was. The position may be read on
 * the GPU when the launch runs (a StepValue, step_value.ts): a decode step recorded once then
 * appends each new token where it belongs.
 */
import { isFloat } from "../tensor/dtype.js";
import { check } from "../tensor/errors.js";
import { defineKernel, flatGrid, FLAT_WORKGROUP_WGSL } from "../tensor/kernel.js";
import type { Tensor } from "../tensor/tensor.js";
import { checkU32Source, describeU32Source, isStepValue, maxOf, stateTensor, u32SourceParams, u32SourceWgsl, type U32Source } from "./step_value.js";

// ------------------------------------------------------------------ CPU reference (float64)

/** The cache's values after writeKV (a new array; `cache` is left alone). */
export function writeKVReference(
  cache: ArrayLike<number>,
  cacheShape: readonly [number, number, number],
  rows: ArrayLike<number>,
  position: number,
): Float64Array {
  const [kvHeads, capacity, D] = cacheShape;
  const out = Float64Array.from(cache);
  const count = rows.length / (kvHeads * D);
  for (let s = 0; s < count; s++) {
    for (let h = 0; h < kvHeads; h++) {
      for (let d = 0; d < D; d++) {
        out[(h * capacity + position + s) * D + d] = rows[(s * kvHeads + h) * D + d];
      }
    }
  }
  return out;
}

// ------------------------------------------------------------------ WGSL

const WORKGROUP = 256;

const writeKVKernel = defineKernel({
  name: "write_kv",
  params: { count: "u32", kv_heads: "u32", head_dim: "u32", capacity: "u32", position: "u32", position_index: "u32" },
  bindings: { rows: "read", cache: "read_write", state: "read" },
  gathers: ["state"],
  wgsl: ({ dynamic }: { dynamic: boolean }) => /* wgsl */ `
${FLAT_WORKGROUP_WGSL}
${u32SourceWgsl("position", dynamic)}
@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let index = flat_workgroup(wid, nwg) * ${WORKGROUP}u + lid;
  if (index >= params.count) { return; }
  // rows is [S, H_kv, D]: index = (s * H_kv + h) * D + d
  let d = index % params.head_dim;
  let h = (index / params.head_dim) % params.kv_heads;
  let s = index / (params.head_dim * params.kv_heads);
  // A run-time position past its max would spill into the next head's positions: dropped instead.
  let position = position_value() + s;
  if (position >= params.capacity) { return; }
  cache[(h * params.capacity + position) * params.head_dim + d] = cache_t(f32(rows[index]));
}`,
});

// ------------------------------------------------------------------ launch

/**
 * cache[h, position + s, :] = rows[s, h, :] for cache [H_kv, capacity, D] and rows [S, H_kv, D].
 * A StepValue position is read when the launch runs; its max + S must fit the capacity.
 */
export function writeKV(cache: Tensor, rows: Tensor, position: U32Source): void {
  const op = "writeKV";
  check(cache.rank === 3, () => `${op}: cache ${cache.describe()} must be [H_kv, capacity, D]`);
  check(rows.rank === 3, () => `${op}: rows ${rows.describe()} must be [S, H_kv, D]`);
  check(isFloat(cache.dtype) && isFloat(rows.dtype), () => `${op}: cache ${cache.describe()} and rows ${rows.describe()} must be f32 or f16`);
  const [kvHeads, capacity, D] = cache.shape;
  const [count] = rows.shape;
  check(
    rows.shape[1] === kvHeads && rows.shape[2] === D,
    () => `${op}: rows ${rows.describe()} do not match the cache ${cache.describe()}: expected [S, ${kvHeads}, ${D}]`,
  );
  if (isStepValue(position)) checkU32Source(position, `${op}: position`);
  else check(Number.isInteger(position) && position >= 0, () => `${op}: position ${position} must be an integer >= 0`);
  check(
    maxOf(position) + count <= capacity,
    () => `${op}: writing ${count} rows at position ${describeU32Source(position)} overflows the cache ${cache.describe()} of capacity ${capacity}`,
  );
  check(cache.buffer !== rows.buffer, () => `${op}: rows ${rows.describe()} share a buffer with the cache ${cache.describe()}`);
  const state = stateTensor(op, [position], rows, [cache]);
  cache.gpu.record(writeKVKernel, {
    params: { count: rows.size, kv_heads: kvHeads, head_dim: D, capacity, ...u32SourceParams("position", position) },
    tensors: { rows, cache, state },
    workgroups: flatGrid(Math.ceil(rows.size / WORKGROUP)),
    spec: { dynamic: isStepValue(position) },
  });
}
