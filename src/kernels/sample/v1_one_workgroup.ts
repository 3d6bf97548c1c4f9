/**
 * Sampler v1: one workgroup. One launch turns a row of logits [V] into the next token id, so
 * the decode loop never reads the vocabulary back, only (if it wants) the chosen id. It finds
 * the token reference.ts defines, without sorting the vocabulary:
 *
 * 1. The history's ids are marked in a bitmask (atomicOr, so duplicates are harmless and each
 *    id is penalised once); history ids outside the vocabulary are ignored (the GPU copy
 *    cannot be checked without a readback).
 * 2. Each thread penalises the scores of its own contiguous chunk of the vocabulary into the
 *    scratch row `z` and keeps its best (value, index) pair; a workgroup reduction gives the
 *    argmax, which is the answer when greedy, and the maximum the weights are relative to.
 * 3-4. The top-k and top-p thresholds by radix select (radix_select.ts).
 * 5. The draw over the threads' chunks (draw.ts).
 * The chosen id is written to `out` [1] (the next step's embedding input; with several
 * sequences decoded together, their element of a shared u32 [n]) and appended to the
 * history at `length`, so the next step's penalty sees it. The step and the history length may
 * be read on the GPU when the launch runs (StepValues, ../step_value.ts), so a decode step
 * recorded once draws each token from its own place in the random stream.
 *
 * One workgroup of 256 threads does everything, in one dispatch: the vocabulary is one row of
 * at most ~150k scores, about ten passes over it stay in cache, and there is no
 * inter-workgroup synchronisation to pay for. Every pass visits only the thread's own chunk, so
 * the scores a thread writes to `z` are read back by the same thread only. On a GPU with many
 * cores those passes run on one of them: v2_split_vocabulary.ts spreads them over many
 * workgroups, at the price of a launch per pass.
 *
 * Precision: the sums behind the choice are float32 (the top-p masses are exact fixed-point
 * sums of float32 weights), so the chosen id equals the float64 reference's except where u or
 * top_p falls within rounding (~1e-7) of a cumulative boundary.
 *
 * Non-finite logits: -Infinity is a removed token (weight exactly 0). NaN or +Infinity make the
 * distribution meaningless (transformers raises); the kernel then returns some valid id (a
 * row whose weights are all 0 or NaN gives the argmax, i.e. its first NaN).
 */
import { defineKernel } from "../../tensor/kernel.js";
import type { Tensor } from "../../tensor/tensor.js";
import { WORKGROUP_BEST_WGSL } from "../argmax.js";
import { drawingKernelWgsl } from "./draw.js";
import { FIXED_POINT_WGSL } from "./fixed_point.js";
import { planSample, SAMPLE_PARAMS, sampleOutputs, type SamplePlan, type SampleTokenOptions } from "./plan.js";
import { ONE_WORKGROUP_SELECT_WGSL, RADIX_SELECT_WGSL } from "./radix_select.js";

const THREADS = 256; // also the number of radix bins: one 8-bit digit per pass

const sampleKernel = defineKernel({
  name: "sample",
  params: { ...SAMPLE_PARAMS, chunk: "u32" },
  bindings: { logits: "read", history: "read_write", out: "read_write", z: "read_write", flags: "read_write", state: "read" },
  gathers: ["state"],
  elementType: (binding, dtype) => (binding === "flags" ? "atomic<u32>" : dtype),
  wgsl: (spec: SamplePlan["spec"]) => /* wgsl */ `
const T = ${THREADS}u;
${drawingKernelWgsl(spec)}
${FIXED_POINT_WGSL}
${WORKGROUP_BEST_WGSL}
${RADIX_SELECT_WGSL}
${ONE_WORKGROUP_SELECT_WGSL}

fn in_history(i: u32) -> bool {
  return (atomicLoad(&flags[i / 32u]) & (1u << (i % 32u))) != 0u;
}

@compute @workgroup_size(T)
fn main(@builtin(local_invocation_index) lid: u32) {
  let begin = min(lid * params.chunk, params.vocab);
  let end = min(begin + params.chunk, params.vocab);

  // 1. The history as a set of ids (a bitmask), when there is a penalty to apply.
  let penalise = params.penalty != 1.0;
  if (penalise) {
    for (var word = lid; word < (params.vocab + 31u) / 32u; word += T) { atomicStore(&flags[word], 0u); }
    storageBarrier();
    // (Never past the history's end, even if a run-time length broke its max.)
    let history_length = min(history_length_value(), arrayLength(&history));
    for (var h = lid; h < history_length; h += T) {
      let id = history[h];
      if (id < params.vocab) { atomicOr(&flags[id / 32u], 1u << (id % 32u)); }
    }
    storageBarrier();
  }

  // 2. Penalised scores into z, and their argmax.
  var best = Best(0.0, NO_INDEX);
  let row_start = params.row * params.vocab; // this row of logits [R, V]
  for (var i = begin; i < end; i++) {
    var x = f32(logits[row_start + i]);
    if (penalise && in_history(i)) { x = penalised(x); }
    z[i] = x;
    best = better(Best(x, i), best);
  }
  let top = workgroup_best(lid, best);
  if (params.greedy != 0u) {
    if (lid == 0u) { emit(top.index); }
    return;
  }
  let max_score = top.value;

  // 3. Top-k: keys ≥ topk_key survive (0: all).
  var topk_key = 0u;
  if (params.top_k != 0u) { topk_key = top_k_key(lid, begin, end); }

  // 4. Top-p: keys > κ survive, and the ties at κ from rank skip on. Off: everything from the
  //    top-k threshold up survives.
  var kappa = topk_key;
  var skip = 0u;
  if (params.top_p < 1.0) {
    let cut = top_p_cut(lid, begin, end, topk_key, max_score);
    kappa = cut.x;
    skip = cut.y;
  }

  // 5. The draw, over the threads' chunks.
  let chunk = survivor_chunk(lid, begin, end, 0u, kappa, skip, max_score);
  let drawn = uniform_random(params.seed, step_value()) * mass_before_total();
  let pick = draw_from_chunks(lid, chunk, kappa, skip, max_score, drawn);
  if (pick.x == 0u) {
    if (lid == 0u) { emit(top.index); }
  } else if (lid + 1u == pick.x) {
    emit(pick.y);
  }
}`,
});

// ------------------------------------------------------------------ launch

/**
 * Samples the next token from row `row` of logits [V] or [R, V] (f32 or f16) → element
 * `outIndex` of `options.out` (u32 [n]; the other elements are left alone), or a new u32 [1].
 * With a history, its ids get the repetition penalty and the chosen id is appended at
 * `history.length`. Nothing is read back. One launch.
 */
export function sampleOneWorkgroup(logits: Tensor, options: SampleTokenOptions): Tensor {
  const plan = planSample(logits, options);
  const gpu = logits.gpu;
  const { out, historyIds, release } = sampleOutputs(logits, options);
  const z = gpu.empty([plan.vocab], "f32", { name: "sample scores" });
  const flags = gpu.empty([Math.ceil(plan.vocab / 32)], "u32", { name: "sample history flags" });
  gpu.record(sampleKernel, {
    params: { ...plan.params, chunk: Math.ceil(plan.vocab / THREADS) },
    tensors: { logits, history: historyIds, out, z, flags, state: plan.state },
    workgroups: [1],
    spec: plan.spec,
  });
  // Safe while the launch is pending: a later user of these buffers runs after it.
  z.dispose();
  flags.dispose();
  release();
  return out;
}
