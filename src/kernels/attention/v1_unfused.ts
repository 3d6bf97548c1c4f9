/**
 * Attention version 1: unfused, the way the formula reads.
 *
 * Three kernels, with the whole score matrix in memory between them:
 * 1. scores[h, i, c] = scale · q[i, h, :] · k[key_start(i) + c, g, :], one thread per score;
 *    a column past the keys the query sees (causal mask) gets MASKED, our stand-in for -inf.
 * 2. probs = softmax over each row scores[h, i, :], by the softmax kernel (softmax.ts): one
 *    workgroup per row reduces the row's maximum and its sum of exp(score - max). Masked
 *    scores become exactly 0.
 * 3. out[i, h, d] = Σ_c probs[h, i, c] · v[key_start(i) + c, g, d] over the keys query i sees,
 *    one thread per output element.
 *
 * Column c of query i's row is key key_start(i) + c: without a sliding window key_start is 0
 * and the columns are the keys. With one (Mistral), a row starts at the query's window, so the
 * keys before it are skipped rather than masked and the matrix is only as wide as the window:
 * decoding far past it scores W keys, not the whole cache. The matrix is as wide as the most
 * keys a query can see (kvLength, or a run-time length's max; the window if it is smaller:
 * params.columns); the columns past what a query sees at run time are masked like the causal
 * ones.
 *
 * Simple and easy to check, but the H·S·T score matrix is written twice and read twice: at a
 * few thousand tokens it is hundreds of megabytes of memory traffic (and may not even fit in one
 * storage binding), which is what v2 (flash) avoids.
 */
import { check } from "../../tensor/errors.js";
import { defineKernel, flatGrid, FLAT_WORKGROUP_WGSL } from "../../tensor/kernel.js";
import type { Tensor } from "../../tensor/tensor.js";
import { softmax } from "../softmax.js";
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
  type AttentionSpec,
} from "./problem.js";

const SCORES_WORKGROUP = 256;
const OUTPUT_WORKGROUP = 64;

/** columns: the width of the score matrix, the most keys one query sees (maxKeysSeen). */
const UNFUSED_PARAMS = { ...ATTENTION_PARAMS, columns: "u32" } as const;

const scoresKernel = defineKernel({
  name: "attention_v1_scores",
  params: UNFUSED_PARAMS,
  bindings: { q: "read", k: "read", scores: "read_write", state: "read" },
  gathers: ["state"],
  wgsl: (spec: AttentionSpec) => /* wgsl */ `
${FLAT_WORKGROUP_WGSL}
${attentionWgsl(spec)}
@compute @workgroup_size(${SCORES_WORKGROUP})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let index = flat_workgroup(wid, nwg) * ${SCORES_WORKGROUP}u + lid;
  if (index >= params.heads * params.queries * params.columns) { return; }
  // scores is [H, S, C]: index = (h * S + i) * C + c, column c being key key_start(i) + c
  let c = index % params.columns;
  let i = (index / params.columns) % params.queries;
  let h = index / (params.columns * params.queries);
  let first = key_start(i);
  if (c >= key_limit(i) - first) {
    scores[index] = MASKED;
    return;
  }
  let j = first + c;
  let q_row = row_index(i, h);
  let k_row = kv_index(h / params.group_size, j);
  var dot = 0.0;
  for (var d = 0u; d < params.head_dim; d++) {
    dot += f32(q[q_row + d]) * f32(k[k_row + d]);
  }
  scores[index] = params.scale * dot;
}`,
});

const outputKernel = defineKernel({
  name: "attention_v1_output",
  params: UNFUSED_PARAMS,
  bindings: { probs: "read", v: "read", out: "read_write", state: "read" },
  gathers: ["state"],
  wgsl: (spec: AttentionSpec) => /* wgsl */ `
${FLAT_WORKGROUP_WGSL}
${attentionWgsl(spec)}
@compute @workgroup_size(${OUTPUT_WORKGROUP})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let index = flat_workgroup(wid, nwg) * ${OUTPUT_WORKGROUP}u + lid;
  if (index >= params.queries * params.heads * params.head_dim) { return; }
  // index = (i * H + h) * D + d over the S queries; query i is row query_row + i of out
  let d = index % params.head_dim;
  let h = (index / params.head_dim) % params.heads;
  let i = index / (params.head_dim * params.heads);
  let g = h / params.group_size;
  let probs_row = (h * params.queries + i) * params.columns;
  // The keys outside what query i sees have probability 0, and their values may be anything
  // (NaN): only its columns are read (never more than the row holds).
  let first = key_start(i);
  let seen = min(key_limit(i) - first, params.columns);
  var sum = 0.0;
  for (var c = 0u; c < seen; c++) {
    sum += probs[probs_row + c] * f32(v[kv_index(g, first + c) + d]);
  }
  out[row_index(i, h) + d] = out_t(sum);
}`,
});

/**
 * Attention by materialising the [H, S, T] score matrix (see the top of this file); S is the
 * queries taken (rows.count with `rows`), so the matrix never grows with the rows of q left out.
 */
export function unfusedAttention(q: Tensor, k: Tensor, v: Tensor, options: AttentionOptions<U32Source>): Tensor {
  const op = "attention v1_unfused";
  const p = attentionTensors(op, q, k, v, options);
  // Without a window, every key (as before); with one, no wider than it.
  const columns = p.window > 0 ? maxKeysSeen(p) : p.kvLength;
  const scoreCount = p.heads * p.queries * columns;
  check(
    scoreCount * 4 <= q.gpu.limits.maxStorageBufferBindingSize,
    () => `${op}: the ${p.heads}x${p.queries}x${columns} score matrix exceeds this device's largest storage binding; use flash attention`,
  );
  const gpu = q.gpu;
  const params = { ...attentionParams(p), columns };
  const spec = attentionSpec(p);
  const scores = gpu.empty([p.heads, p.queries, columns], "f32", { name: "attention scores" });
  gpu.record(scoresKernel, {
    params,
    tensors: { q, k, scores, state: p.state },
    workgroups: flatGrid(Math.ceil(scoreCount / SCORES_WORKGROUP)),
    spec,
  });
  const probs = softmax(scores);
  scores.dispose(); // safe while the launches are pending: later users of the buffer run after them
  const out = attentionOutput(p, q, options);
  gpu.record(outputKernel, {
    params,
    tensors: { probs, v, out, state: p.state },
    workgroups: flatGrid(Math.ceil((p.queries * p.heads * p.headDim) / OUTPUT_WORKGROUP)),
    spec,
  });
  probs.dispose();
  return out;
}
