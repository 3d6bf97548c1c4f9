/**
 * Token sampling on the GPU: one launch turns a row of logits [V] into the next token id, so
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
 * 5. The draw: each thread sums the weights of the survivors in its chunk; an exclusive scan
 *    over the threads gives every chunk's starting cumulative mass. The thread whose chunk
 *    contains u·(total mass) walks it in order to the first element where the running sum
 *    exceeds it. The ranks among the κ-ties that top-p needs come the same way, from a scan of
 *    each chunk's count of elements with key κ.
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
 * cores the place to go faster is splitting the histogram passes over many workgroups, at the
 * price of a launch per pass (bench/RESULTS.md has its cost against reading the logits back).
 *
 * Precision: the sums behind the choice are float32 (the top-p masses are exact fixed-point
 * sums of float32 weights), so the chosen id equals the float64 reference's except where u or
 * top_p falls within rounding (~1e-7) of a cumulative boundary.
 *
 * Non-finite logits: -Infinity is a removed token (weight exactly 0). NaN or +Infinity make the
 * distribution meaningless (transformers raises); the kernel then returns some valid id (a
 * row whose weights are all 0 or NaN gives the argmax, i.e. its first NaN).
 */
import { isFloat } from "../../tensor/dtype.js";
import { check } from "../../tensor/errors.js";
import { defineKernel } from "../../tensor/kernel.js";
import type { Tensor } from "../../tensor/tensor.js";
import { ARGMAX_ORDER_WGSL, WORKGROUP_BEST_WGSL } from "../argmax.js";
import { uniformWgsl } from "../random.js";
import { workgroupScanWgsl } from "../wgsl/scan.js";
import { FIXED_POINT_WGSL } from "./fixed_point.js";
import { MAX_VOCAB, resolveOptions, type SampleOptions } from "./options.js";
import { RADIX_SELECT_WGSL } from "./radix_select.js";
import { checkU32Source, describeU32Source, isStepValue, maxOf, stateTensor, u32SourceParams, u32SourceWgsl, type U32Source } from "../step_value.js";

export interface SampleTokenOptions extends Omit<SampleOptions, "step"> {
  /** Position in the random stream (u = uniform(seed, step)); a StepValue is read when the launch runs. */
  step: U32Source;
  /**
   * Ids seen so far (u32 [capacity]), `length` of them valid; the chosen id is written at
   * `length` (a StepValue's max must stay below the capacity).
   */
  history?: { ids: Tensor; length: U32Source };
  /** Write the id into this u32 [n] tensor (at `outIndex`) instead of a new u32 [1]. */
  out?: Tensor;
  /** The element of `out` the id goes to, in [0, n). Default 0 (the only one of a new out). */
  outIndex?: number;
  /** The row of logits [R, V] to sample, in [0, R). Default 0. */
  row?: number;
}

const THREADS = 256; // also the number of radix bins: one 8-bit digit per pass

/** Which of the kernel's two U32Sources are read from `state`. */
type SampleSpec = { dynamicHistoryLength: boolean; dynamicStep: boolean };

const sampleKernel = defineKernel({
  name: "sample",
  params: {
    vocab: "u32",
    row: "u32",
    out_index: "u32",
    chunk: "u32",
    history_length: "u32",
    history_length_index: "u32",
    greedy: "u32",
    top_k: "u32",
    top_p: "f32",
    penalty: "f32",
    inv_temperature: "f32",
    seed: "u32",
    step: "u32",
    step_index: "u32",
  },
  bindings: { logits: "read", history: "read_write", out: "read_write", z: "read_write", flags: "read_write", state: "read" },
  gathers: ["state"],
  elementType: (binding, dtype) => (binding === "flags" ? "atomic<u32>" : dtype),
  wgsl: ({ dynamicHistoryLength, dynamicStep }: SampleSpec) => /* wgsl */ `
const T = ${THREADS}u;
${u32SourceWgsl("history_length", dynamicHistoryLength)}
${u32SourceWgsl("step", dynamicStep)}
${uniformWgsl()}
${FIXED_POINT_WGSL}
${ARGMAX_ORDER_WGSL}
${WORKGROUP_BEST_WGSL}
${RADIX_SELECT_WGSL}
${workgroupScanWgsl("ties_before", { type: "u32", combine: (a, b) => `${a} + ${b}`, identity: "0u", direction: "prefix" })}
${workgroupScanWgsl("mass_before", { type: "f32", combine: (a, b) => `${a} + ${b}`, identity: "0.0", direction: "prefix" })}
var<workgroup> owner: atomic<u32>; // 1 + the thread whose chunk holds the drawn token, 0: none

fn in_history(i: u32) -> bool {
  return (atomicLoad(&flags[i / 32u]) & (1u << (i % 32u))) != 0u;
}

// exp((x - max)/T) ≤ 1; exactly 0 where f32 exp underflows, and for x = -Infinity.
fn weight(x: f32, max_score: f32) -> f32 {
  let d = (x - max_score) * params.inv_temperature;
  return select(exp(d), 0.0, d < -88.0);
}

// Does the element with this key survive top-k and top-p? The κ-ties survive from rank skip on
// (ranks count them in vocabulary order); *rank advances past each of them.
fn survives(key: u32, kappa: u32, skip: u32, rank: ptr<function, u32>) -> bool {
  if (key != kappa) { return key > kappa; }
  let kept = *rank >= skip;
  *rank += 1u;
  return kept;
}

fn emit(id: u32) {
  out[params.out_index] = id;
  // A run-time length past its max would land on the history's last id: dropped instead.
  let at = history_length_value();
  if (at < arrayLength(&history)) { history[at] = id; }
}

@compute @workgroup_size(T)
fn main(@builtin(local_invocation_index) lid: u32) {
  let begin = min(lid * params.chunk, params.vocab);
  let end = min(begin + params.chunk, params.vocab);
  if (lid == 0u) { atomicStore(&owner, 0u); }

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
    if (penalise && in_history(i)) { x = select(x / params.penalty, x * params.penalty, x < 0.0); }
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

  // 5. The draw. Ranks of the κ-ties before each chunk, then each chunk's surviving mass.
  var ties_here = 0u;
  for (var i = begin; i < end; i++) {
    if (key_of(z[i]) == kappa) { ties_here++; }
  }
  ties_before(lid, ties_here);
  let first_rank = ties_before_exclusive(lid);
  var rank = first_rank;
  var mass = 0.0;
  for (var i = begin; i < end; i++) {
    let x = z[i];
    if (survives(key_of(x), kappa, skip, &rank)) { mass += weight(x, max_score); }
  }
  mass_before(lid, mass);
  let start = mass_before_exclusive(lid);
  let drawn = uniform_random(params.seed, step_value()) * mass_before_total();
  // The last chunk with mass that starts at or below the drawn mass holds it (or, if rounding
  // put it past the end, ends just before it).
  if (mass > 0.0 && start <= drawn) { atomicMax(&owner, lid + 1u); }
  workgroupBarrier();
  let holder = atomicLoad(&owner);
  if (holder == 0u) {
    // No mass at all: every weight 0 or NaN.
    if (lid == 0u) { emit(top.index); }
  } else if (lid + 1u == holder) {
    rank = first_rank;
    var running = 0.0;
    var chosen = NO_INDEX;
    var last = NO_INDEX; // the last survivor so far, in case rounding leaves the drawn mass unreached
    for (var i = begin; i < end && chosen == NO_INDEX; i++) {
      let x = z[i];
      if (!survives(key_of(x), kappa, skip, &rank)) { continue; }
      let w = weight(x, max_score);
      if (w > 0.0) {
        running += w;
        last = i;
        if (running > drawn - start) { chosen = i; }
      }
    }
    emit(select(chosen, last, chosen == NO_INDEX));
  }
}`,
});

// ------------------------------------------------------------------ launch

/**
 * Samples the next token from row `row` of logits [V] or [R, V] (f32 or f16) → element
 * `outIndex` of `options.out` (u32 [n]; the other elements are left alone), or a new u32 [1].
 * With a history, its ids get the repetition penalty and the chosen id is appended at
 * `history.length`. Nothing is read back.
 */
export function sampleToken(logits: Tensor, options: SampleTokenOptions): Tensor {
  check(logits.rank === 1 || logits.rank === 2, () => `sampleToken: logits ${logits.describe()} must be [V] or [R, V]`);
  check(isFloat(logits.dtype), () => `sampleToken: logits ${logits.describe()} must be f32 or f16`);
  const vocab = logits.dim(-1);
  check(vocab > 0 && logits.size > 0, () => `sampleToken: logits ${logits.describe()} are empty`);
  check(vocab <= MAX_VOCAB, () => `sampleToken: logits ${logits.describe()} have more than ${MAX_VOCAB} entries`);
  const rowCount = logits.rank === 2 ? logits.dim(0) : 1;
  const row = options.row ?? 0;
  check(
    Number.isInteger(row) && row >= 0 && row < rowCount,
    () => `sampleToken: row ${row} must be an integer in [0, ${rowCount}), a row of logits ${logits.describe()}`,
  );
  const { step, history, out: given } = options;
  // The numbers' checks are the reference's; a StepValue is checked as one.
  const o = resolveOptions({ ...options, step: isStepValue(step) ? 0 : step }, "sampleToken");
  if (isStepValue(step)) checkU32Source(step, "sampleToken: step");

  if (history) {
    const { ids, length } = history;
    check(ids.rank === 1 && ids.dtype === "u32", () => `sampleToken: history ids ${ids.describe()} must be u32 [capacity]`);
    if (isStepValue(length)) checkU32Source(length, "sampleToken: history length");
    const last = maxOf(length);
    if (!Number.isInteger(last) || last < 0 || last >= ids.dim(0)) {
      throw new RangeError(
        `sampleToken: history length ${describeU32Source(length)} must be an integer in [0, ${ids.dim(0)}) ` +
          `so that the sampled id fits after it in ${ids.describe()}`,
      );
    }
    check(ids.buffer !== logits.buffer, () => `sampleToken: history ids ${ids.describe()} share a buffer with the logits`);
  }
  const outIndex = options.outIndex ?? 0;
  if (given) {
    check(given.rank === 1 && given.dtype === "u32", () => `sampleToken: out ${given.describe()} must be u32 [n]`);
    check(
      Number.isInteger(outIndex) && outIndex >= 0 && outIndex < given.size,
      () => `sampleToken: outIndex ${outIndex} must be an integer in [0, ${given.size}), an element of out ${given.describe()}`,
    );
    check(
      given.buffer !== logits.buffer && given.buffer !== history?.ids.buffer,
      () => `sampleToken: out ${given.describe()} shares a buffer with the logits or the history`,
    );
  } else {
    check(outIndex === 0, () => `sampleToken: outIndex ${outIndex} needs an out tensor: without one the id goes to element 0 of a new u32 [1]`);
  }

  const historyLength = history?.length ?? 0;
  const state = stateTensor("sampleToken", [step, historyLength], logits, [...(history ? [history.ids] : []), ...(given ? [given] : [])]);

  const gpu = logits.gpu;
  const out = given ?? gpu.empty([1], "u32", { name: "sampled token" });
  // Without a history the kernel appends into a one-slot scratch history that is then dropped.
  const historyIds = history?.ids ?? gpu.empty([1], "u32", { name: "sample history" });
  const z = gpu.empty([vocab], "f32", { name: "sample scores" });
  const flags = gpu.empty([Math.ceil(vocab / 32)], "u32", { name: "sample history flags" });
  gpu.record(sampleKernel, {
    params: {
      vocab,
      row,
      out_index: outIndex,
      chunk: Math.ceil(vocab / THREADS),
      ...u32SourceParams("history_length", historyLength),
      greedy: o.temperature === 0 ? 1 : 0,
      top_k: o.topK < vocab ? o.topK : 0,
      top_p: o.topP,
      penalty: o.repetitionPenalty,
      inv_temperature: o.temperature === 0 ? 0 : 1 / o.temperature,
      seed: o.seed,
      ...u32SourceParams("step", step),
    },
    tensors: { logits, history: historyIds, out, z, flags, state },
    workgroups: [1],
    spec: { dynamicHistoryLength: isStepValue(historyLength), dynamicStep: isStepValue(step) },
  });
  // Safe while the launch is pending: a later user of these buffers runs after it.
  z.dispose();
  flags.dispose();
  if (!history) historyIds.dispose();
  return out;
}
