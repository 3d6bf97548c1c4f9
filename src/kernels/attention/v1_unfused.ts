/**
 * Attention version 1: unfused, the way the formula reads.
 *
 * Three kernels, with the whole score matrix in memory between them:
 * 1. scores[h, i, j] = scale · q[i, h, :] · k[j, g, :], one thread per score; a key the query
 *    must not see (causal mask) gets MASKED, our stand-in for -inf.
 * 2. probs = softmax over each row scores[h, i, :], by the softmax kernel (softmax.ts): one
 *    workgroup per row reduces the row's maximum and its sum of exp(score - max). Masked
 *    scores become exactly 0.
 * 3. out[i, h, d] = Σ_j probs[h, i, j] · v[j, g, d] over the keys query i sees, one thread per
 *    output element.
 *
 * The matrix is as wide as the most keys there can be (kvLength, or a run-time length's max:
 * params.kv_max); the columns past what a query sees at run time are masked like the causal
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
import { ATTENTION_PARAMS, attentionOutput, attentionParams, attentionSpec, attentionTensors, attentionWgsl, type AttentionOptions, type AttentionSpec } from "./problem.js";

const SCORES_WORKGROUP = 256;
const OUTPUT_WORKGROUP = 64;

const scoresKernel = defineKernel({
  name: "attention_v1_scores",
  params: ATTENTION_PARAMS,
  bindings: { q: "read", k: "read", scores: "read_write", state: "read" },
  gathers: ["state"],
  wgsl: (spec: AttentionSpec) => /* wgsl */ `
${FLAT_WORKGROUP_WGSL}
${attentionWgsl(spec)}
@compute @workgroup_size(${SCORES_WORKGROUP})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let index = flat_workgroup(wid, nwg) * ${SCORES_WORKGROUP}u + lid;
  if (index >= params.heads * params.queries * params.kv_max) { return; }
  // scores is [H, S, T]: index = (h * S + i) * T + j
  let j = index % params.kv_max;
  let i = (index / params.kv_max) % params.queries;
  let h = index / (params.kv_max * params.queries);
  if (j >= key_limit(i) || j < key_start(i)) {
    scores[index] = MASKED;
    return;
  }
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
  params: ATTENTION_PARAMS,
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
  let probs_row = (h * params.queries + i) * params.kv_max;
  // The keys past what query i sees have probability 0, and their values may be anything (NaN).
  let seen = key_limit(i);
  var sum = 0.0;
  for (var j = key_start(i); j < seen; j++) {
    sum += probs[probs_row + j] * f32(v[kv_index(g, j) + d]);
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
  const scoreCount = p.heads * p.queries * p.kvLength;
  check(
    scoreCount * 4 <= q.gpu.limits.maxStorageBufferBindingSize,
    () => `${op}: the ${p.heads}x${p.queries}x${p.kvLength} score matrix exceeds this device's largest storage binding; use flash attention`,
  );
  const gpu = q.gpu;
  const params = attentionParams(p);
  const spec = attentionSpec(p);
  const scores = gpu.empty([p.heads, p.queries, p.kvLength], "f32", { name: "attention scores" });
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
