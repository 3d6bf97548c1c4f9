/**
 * Sampling the next token, on the GPU: what it computes (reference.ts), the arguments every
 * version takes (plan.ts), how the kernels find it without sorting (radix_select.ts,
 * fixed_point.ts, draw.ts) and its random numbers (../random.ts).
 *
 * The versions live side by side, each in its own file with its idea at the top; `wgsl-vlm
 * bench kernels` checks and times them both, and bench/RESULTS.md has what they measured:
 *   v1_one_workgroup      every pass over the vocabulary in one workgroup, one launch
 *   v2_split_vocabulary   blocks of 2048 scores, a workgroup each, and a launch per pass
 *
 * The rule (chooseSampleVersion):
 * - on a CPU adapter (lavapipe): v1. There a workgroup is a CPU thread with a fixed cost of its
 *   own, ~12 µs whatever it does (v2 greedy took 0.53 ms in blocks of 1024, 0.33 in 2048,
 *   0.23 in 4096), and two cores are all the parallelism a split can buy, so v2's 16
 *   workgroups a pass and its launches cost more than they gain. Measured at V = 32000
 *   (2026-12-02, a script timing as `bench kernels` does, medians of 5 runs on a quiet
 *   machine; bench/RESULTS.md), v1 against v2: greedy 0.12 against 0.33 ms, plain sampling
 *   0.32 against 0.76, top-k 40 1.14 against 1.90, top-p 0.9 2.05 against 2.91, both 1.63
 *   against 2.98: v2 is 1.4 to 2.7 times slower.
 * - on a GPU: v2 from SPLIT_MIN_VOCAB scores on. No GPU was available to measure on; the rule
 *   reasons so. v1's passes run on one of the GPU's cores (an H100 has 132): ~10 sweeps of
 *   V / 256 scores per thread, each thread reading a contiguous chunk (32 cache lines per warp
 *   load) and adding into a few hot workgroup bins, with 8 warps to hide it. v2 spreads each
 *   sweep over V / 2048 workgroups reading coalesced, 8 scores per thread, and pays for it in
 *   launches (a few µs each: 2 greedy, 4 for plain sampling, 12 with top-k or top-p, 20 with
 *   both). At LLaMA's V = 32000 that is 16 workgroups instead of one; below a few blocks the
 *   launches cost more than the split gains.
 */
import type { Gpu } from "../../tensor/gpu.js";
import type { Tensor } from "../../tensor/tensor.js";
import type { SampleTokenOptions } from "./plan.js";
import { sampleOneWorkgroup } from "./v1_one_workgroup.js";
import { SAMPLE_BLOCK, sampleSplitVocabulary } from "./v2_split_vocabulary.js";

export type { SampleTokenOptions } from "./plan.js";
export type { SampleOptions } from "./options.js";
export { uniform } from "../random.js";
export { drawReference, processLogitsReference, sampleProbabilitiesReference, sampleReference, type SampleReferenceOptions } from "./reference.js";
export { sampleOneWorkgroup } from "./v1_one_workgroup.js";
export { SAMPLE_BLOCK, sampleSplitVocabulary } from "./v2_split_vocabulary.js";

export type SampleVersion = (logits: Tensor, options: SampleTokenOptions) => Tensor;

/** Every version by name, for tests and benchmarks. */
export const SAMPLE_VERSIONS = {
  v1_one_workgroup: sampleOneWorkgroup,
  v2_split_vocabulary: sampleSplitVocabulary,
} as const satisfies Record<string, SampleVersion>;

export type SampleVersionName = keyof typeof SAMPLE_VERSIONS;

/** The smallest vocabulary v2 is chosen for on a GPU: 8 blocks (the rule above). */
const SPLIT_MIN_VOCAB = 8 * SAMPLE_BLOCK;

/** The version sampleToken runs on `gpu` for a vocabulary of `vocab` scores (the rule above). */
export function chooseSampleVersion(gpu: Gpu, vocab: number): SampleVersionName {
  if (gpu.adapter.isFallbackAdapter) return "v1_one_workgroup";
  return vocab >= SPLIT_MIN_VOCAB ? "v2_split_vocabulary" : "v1_one_workgroup";
}

/**
 * Samples the next token from row `row` of logits [V] or [R, V] (f32 or f16) → element
 * `outIndex` of `options.out` (u32 [n]; the other elements are left alone), or a new u32 [1].
 * With a history, its ids get the repetition penalty and the chosen id is appended at
 * `history.length`. Nothing is read back. The version is chooseSampleVersion's.
 */
export function sampleToken(logits: Tensor, options: SampleTokenOptions): Tensor {
  return SAMPLE_VERSIONS[chooseSampleVersion(logits.gpu, logits.shape.at(-1) ?? 0)](logits, options);
}
