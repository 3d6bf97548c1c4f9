/**
 * Attention version 3: split-K (flash-decoding), for a few queries over a long context.
 *
 * When decoding one token, v2 has only H workgroups (one query block per head), each walking
 * the whole context alone: most of a big GPU idles. Here the keys are cut into chunks and every
 * (query, head, chunk) gets its own workgroup, so there are S·H·ceil(T / chunk) of them.
 *
 * 1. Partial kernel. A workgroup takes query i, head h and keys [start, end) of its chunk
 *    (cut short by the causal mask and the run-time length; a chunk wholly past what the query
 *    sees returns at once and its slot is never read). It loads the scaled query into workgroup memory, computes the
 *    chunk's scores (one key per thread at a time, a D-long dot product each), reduces their
 *    maximum m, turns them into exp(score - m) and reduces their sum l, then computes the
 *    unnormalised output Σ_j exp(score_j - m) · v_j, one output dim per thread. It writes
 *    (m, l) and that D-vector: a softmax over the chunk that has not been normalised yet.
 * 2. Combine kernel. One workgroup per (query, head) merges its chunks c = 0 .. C-1, where C
 *    counts only the chunks the query sees: with M = max_c m_c and w_c = exp(m_c - M),
 *    out = Σ_c w_c · acc_c / Σ_c w_c · l_c. This is the online-softmax rescaling of v2, done
 *    across workgroups instead of across loop iterations.
 *
 * The chunks of query i are counted from the first key it sees, key_start(i) (0 without a
 * sliding window): chunk c holds keys key_start(i) + [c·chunk, (c + 1)·chunk). With a window
 * (Mistral) the keys before it are thus skipped, not masked: there are only ceil(W / chunk)
 * chunks however far past the window the query is, so decoding costs O(W) a token.
 *
 * The grid is sized at record time, from the most keys one query may see (the last query's,
 * with a run-time length its max; the window if smaller: maxKeysSeen). At run time query i
 * sees n_i = key_limit(i) - key_start(i) keys: its chunks are exactly c < ceil(n_i / chunk),
 * each holding at least one key, and those are the ones both kernels agree on: the partial
 * kernel writes them and returns at once for the rest, the combine reads them and nothing else,
 * so empty chunks (and the NaN a poisoned slot holds) never enter the sums, however far the
 * run-time length is below its max.
 *
 * The chunk size is picked so the partial kernel launches about TARGET_WORKGROUPS workgroups
 * (bounded to [MIN_CHUNK, MAX_CHUNK] keys: a shorter chunk is mostly overhead, a longer one
 * needs more workgroup memory for its scores). Each query head reads its kv head's keys on its
 * own, so with grouped-query attention the group's heads read the same k and v (from cache).
 */
import { check } from "../../tensor/errors.js";
import { defineKernel, flatGrid, FLAT_WORKGROUP_WGSL } from "../../tensor/kernel.js";
import type { Tensor } from "../../tensor/tensor.js";
import { workgroupReduceWgsl } from "../wgsl/reduce.js";
import type { U32Source } from "../step_value.js";
import {
  ATTENTION_PARAMS,
  attentionOutput,
  attentionParams,
  attentionSpec,
  attentionTensors,
  attentionWgsl,
  maxKeysSeen,
  type AttentionOptions,
  type AttentionProblem,
  type AttentionSpec,
} from "./problem.js";

const PARTIAL_THREADS = 128;
const COMBINE_THREADS = 64;
/** The largest head dim this version handles (the query row lives in workgroup memory). */
export const SPLIT_K_MAX_HEAD_DIM = 256;
const MIN_CHUNK = 64;
const MAX_CHUNK = 256;
/** Enough workgroups to keep every core of a large GPU busy several times over. */
const TARGET_WORKGROUPS = 1024;

export type SplitKOptions = AttentionOptions<U32Source> & {
  /** Keys per chunk, 1 to 256. Default: chosen from the problem size (see the top of this file). */
  chunkSize?: number;
};

const SPLIT_PARAMS = { ...ATTENTION_PARAMS, chunk: "u32", chunks: "u32" } as const;

const partialKernel = defineKernel({
  name: "attention_v3_partial",
  params: SPLIT_PARAMS,
  bindings: { q: "read", k: "read", v: "read", partial_acc: "read_write", partial_stats: "read_write", state: "read" },
  gathers: ["state"],
  wgsl: (spec: AttentionSpec) => /* wgsl */ `
${FLAT_WORKGROUP_WGSL}
${attentionWgsl(spec)}
const T = ${PARTIAL_THREADS}u;
var<workgroup> q_row: array<f32, ${SPLIT_K_MAX_HEAD_DIM}>;
var<workgroup> scores: array<f32, ${MAX_CHUNK}>;
${workgroupReduceWgsl("workgroup_max", "f32", (a, b) => `max(${a}, ${b})`)}
${workgroupReduceWgsl("workgroup_sum", "f32", (a, b) => `${a} + ${b}`)}

@compute @workgroup_size(${PARTIAL_THREADS})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  // Workgroup (row, chunk), row = i * H + h: the layout of the partial buffers (S·H rows for
  // the S queries taken, whatever the rows of q).
  let slot = flat_workgroup(wid, nwg);
  if (slot >= params.queries * params.heads * params.chunks) { return; }
  let row = slot / params.chunks;
  let i = row / params.heads;
  let head = row % params.heads;
  let kv_head = head / params.group_size;
  // The chunk's keys, counted from the first key query i sees (its window's start, or 0) and
  // cut short at its limit.
  let start = key_start(i) + (slot % params.chunks) * params.chunk;
  let end = min(start + params.chunk, key_limit(i));
  if (start >= end) { return; } // the combine kernel does not read this slot
  let n = end - start;
  let D = params.head_dim;

  for (var d = lid; d < D; d += T) {
    q_row[d] = f32(q[row_index(i, head) + d]) * params.scale;
  }
  workgroupBarrier();

  var local_max = MASKED;
  for (var j = lid; j < n; j += T) {
    let k_row = kv_index(kv_head, start + j);
    var dot = 0.0;
    for (var d = 0u; d < D; d++) {
      dot += q_row[d] * f32(k[k_row + d]);
    }
    scores[j] = dot;
    local_max = max(local_max, dot);
  }
  let m = workgroup_max(lid, local_max);

  var local_sum = 0.0;
  for (var j = lid; j < n; j += T) {
    let weight = exp(scores[j] - m);
    scores[j] = weight;
    local_sum += weight;
  }
  let l = workgroup_sum(lid, local_sum); // its barriers also publish the weights

  for (var d = lid; d < D; d += T) {
    var sum = 0.0;
    for (var j = 0u; j < n; j++) {
      sum += scores[j] * f32(v[kv_index(kv_head, start + j) + d]);
    }
    partial_acc[slot * D + d] = sum;
  }
  if (lid == 0u) {
    partial_stats[2u * slot] = m;
    partial_stats[2u * slot + 1u] = l;
  }
}`,
});

const combineKernel = defineKernel({
  name: "attention_v3_combine",
  params: SPLIT_PARAMS,
  bindings: { partial_acc: "read", partial_stats: "read", out: "read_write", state: "read" },
  gathers: ["state"],
  wgsl: (spec: AttentionSpec) => /* wgsl */ `
${FLAT_WORKGROUP_WGSL}
${attentionWgsl(spec)}
@compute @workgroup_size(${COMBINE_THREADS})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let row = flat_workgroup(wid, nwg);
  if (row >= params.queries * params.heads) { return; }
  let i = row / params.heads;
  let head = row % params.heads;
  // Only the chunks that hold keys query i sees were written, counted from its first key (never
  // more than the grid has, even if a run-time length broke its max). None (an empty range,
  // only past a broken max) leaves m = MASKED, l = 0: the 0/0 a row that sees nothing gives in
  // every version.
  let seen = key_limit(i) - key_start(i);
  let used = min((seen + params.chunk - 1u) / params.chunk, params.chunks);
  let first = row * params.chunks;

  var m = MASKED;
  for (var c = 0u; c < used; c++) {
    m = max(m, partial_stats[2u * (first + c)]);
  }
  var l = 0.0;
  for (var c = 0u; c < used; c++) {
    l += exp(partial_stats[2u * (first + c)] - m) * partial_stats[2u * (first + c) + 1u];
  }
  let D = params.head_dim;
  for (var d = lid; d < D; d += ${COMBINE_THREADS}u) {
    var sum = 0.0;
    for (var c = 0u; c < used; c++) {
      sum += exp(partial_stats[2u * (first + c)] - m) * partial_acc[(first + c) * D + d];
    }
    out[row_index(i, head) + d] = out_t(sum / l);
  }
}`,
});

/** Keys per chunk: about TARGET_WORKGROUPS workgroups in all, within [MIN_CHUNK, MAX_CHUNK]. */
function splitKChunkSize(p: AttentionProblem): number {
  const chunksWanted = Math.ceil(TARGET_WORKGROUPS / (p.queries * p.heads));
  const chunk = Math.ceil(maxKeysSeen(p) / chunksWanted);
  return Math.min(MAX_CHUNK, Math.max(MIN_CHUNK, chunk));
}

/** Attention with the keys split over workgroups, then merged (see the top of this file). */
export function splitKAttention(q: Tensor, k: Tensor, v: Tensor, options: SplitKOptions): Tensor {
  const op = "attention v3_split_k";
  const p = attentionTensors(op, q, k, v, options);
  check(p.headDim <= SPLIT_K_MAX_HEAD_DIM, () => `${op}: head dim ${p.headDim} of ${q.describe()} is over ${SPLIT_K_MAX_HEAD_DIM}`);
  const chunk = options.chunkSize ?? splitKChunkSize(p);
  check(
    Number.isInteger(chunk) && chunk >= 1 && chunk <= MAX_CHUNK,
    () => `${op}: chunkSize ${chunk} must be an integer in [1, ${MAX_CHUNK}]`,
  );
  // No query sees more keys than this at run time (the window bounds it); slots past what a
  // query sees stay unwritten.
  const chunks = Math.ceil(maxKeysSeen(p) / chunk);
  const rows = p.queries * p.heads;
  const gpu = q.gpu;
  const params = { ...attentionParams(p), chunk, chunks };
  const spec = attentionSpec(p);
  const partialAcc = gpu.empty([rows * chunks, p.headDim], "f32", { name: "attention partial output" });
  const partialStats = gpu.empty([rows * chunks, 2], "f32", { name: "attention partial max and sum" });
  gpu.record(partialKernel, {
    params,
    tensors: { q, k, v, partial_acc: partialAcc, partial_stats: partialStats, state: p.state },
    workgroups: flatGrid(rows * chunks),
    spec,
  });
  const out = attentionOutput(p, q, options);
  gpu.record(combineKernel, {
    params,
    tensors: { partial_acc: partialAcc, partial_stats: partialStats, out, state: p.state },
    workgroups: flatGrid(rows),
    spec,
  });
  // Safe while the launches are pending: later users of these buffers run after them.
  partialAcc.dispose();
  partialStats.dispose();
  return out;
}
