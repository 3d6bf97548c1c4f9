/**
 * What every version of the sampler agrees on before it records anything: the arguments of
 * `sampleToken` and their checks (one home for them, so the versions cannot drift apart), and
 * the uniform parameters every version's kernels read the same way.
 */
import { isFloat } from "../../tensor/dtype.js";
import { check } from "../../tensor/errors.js";
import type { Tensor } from "../../tensor/tensor.js";
import { MAX_VOCAB, resolveOptions, type ResolvedOptions, type SampleOptions } from "./options.js";
import { checkU32Source, describeU32Source, isStepValue, maxOf, stateTensor, u32SourceParams, type U32Source } from "../step_value.js";

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

/** The checked arguments of one sampleToken call. */
export interface SamplePlan {
  vocab: number;
  options: ResolvedOptions;
  /** The tensor the launches bind as `state` (the StepValues' tensor, or a stand-in). */
  state: Tensor;
  /** Whether the history length and the step are read from `state` (the kernels' specialization). */
  spec: { dynamicHistoryLength: boolean; dynamicStep: boolean };
  /**
   * The uniform parameters every version's kernels declare alike: vocab, row, out_index,
   * history_length(_index), greedy, top_k (0: off), top_p, penalty, inv_temperature, seed and
   * step(_index).
   */
  params: Record<(typeof SAMPLE_PARAM_NAMES)[number], number>;
}

/** The names of SamplePlan.params, in the order the kernels declare them. */
export const SAMPLE_PARAM_NAMES = [
  "vocab",
  "row",
  "out_index",
  "history_length",
  "history_length_index",
  "greedy",
  "top_k",
  "top_p",
  "penalty",
  "inv_temperature",
  "seed",
  "step",
  "step_index",
] as const;

/** SamplePlan.params as a kernel declares them (the f32 ones are f32, the rest u32). */
export const SAMPLE_PARAMS = Object.fromEntries(
  SAMPLE_PARAM_NAMES.map((name) => [name, ["top_p", "penalty", "inv_temperature"].includes(name) ? "f32" : "u32"]),
) as Record<(typeof SAMPLE_PARAM_NAMES)[number], "u32" | "f32">;

/**
 * Checks sampleToken's arguments (errors name `sampleToken` and the argument) and returns what
 * the launches need. Nothing is allocated or recorded.
 */
export function planSample(logits: Tensor, options: SampleTokenOptions): SamplePlan {
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
  return {
    vocab,
    options: o,
    state,
    spec: { dynamicHistoryLength: isStepValue(historyLength), dynamicStep: isStepValue(step) },
    params: {
      vocab,
      row,
      out_index: outIndex,
      ...u32SourceParams("history_length", historyLength),
      greedy: o.temperature === 0 ? 1 : 0,
      top_k: o.topK < vocab ? o.topK : 0,
      top_p: o.topP,
      penalty: o.repetitionPenalty,
      inv_temperature: o.temperature === 0 ? 0 : 1 / o.temperature,
      seed: o.seed,
      ...u32SourceParams("step", step),
    },
  };
}

/**
 * The tensors the chosen id goes to: `out` (the given one, or a new u32 [1]) and the history
 * ids (without a history, a one-slot scratch history the id is appended to and that is then
 * dropped). Call `release` once the launches are recorded.
 */
export function sampleOutputs(logits: Tensor, options: SampleTokenOptions): { out: Tensor; historyIds: Tensor; release: () => void } {
  const gpu = logits.gpu;
  const out = options.out ?? gpu.empty([1], "u32", { name: "sampled token" });
  const historyIds = options.history?.ids ?? gpu.empty([1], "u32", { name: "sample history" });
  const release = () => {
    // Safe while the launches are pending: a later user of the buffer runs after them.
    if (!options.history) historyIds.dispose();
  };
  return { out, historyIds, release };
}
