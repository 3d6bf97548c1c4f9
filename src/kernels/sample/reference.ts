/**
 * What the sampler computes, in float64: transformers 4.40's `generate(do_sample=True)`, the
 * logits processors in this order, then one draw from the softmax of what survives.
 *   1. repetition penalty: every id present in the history (prompt + tokens so far) has its
 *      logit x replaced by x·penalty if x < 0, else x/penalty; an id present several times is
 *      penalised once (RepetitionPenaltyLogitsProcessor gathers, then scatters back).
 *   2. temperature: divide by T.
 *   3. top-k: remove the scores below the k-th largest (ties with the k-th are kept).
 *   4. top-p: sort ascending, accumulate softmax probabilities, remove every token whose
 *      cumulative probability is ≤ 1 - top_p; the most likely token always stays. Put the
 *      other way round: a token stays while the probability of the tokens sorted above it is
 *      < top_p. Tied scores are ordered by index, as a stable ascending sort leaves them (the
 *      lower index counts as "below"); torch.sort is not stable, so transformers itself leaves
 *      this order unspecified, and one had to be chosen.
 *   5. draw: u = uniform(seed, step) (../random.ts), and the id is the first one, in vocabulary
 *      order, whose cumulative probability exceeds u (inverse-CDF sampling; torch.multinomial
 *      uses its own generator, so no implementation can reproduce its draws).
 * Temperature 0 means greedy decoding: the argmax after the penalty (first index on ties, NaN
 * first, as torch.argmax). top_k 0 (or ≥ V), top_p 1 and penalty 1 switch those steps off.
 *
 * This is the definition, literally and sort-based; the kernels' versions (index.ts) find the
 * same tokens without sorting the vocabulary.
 */
import { argmaxReference } from "../argmax.js";
import { softmaxReference } from "../softmax.js";
import { resolveOptions, type SampleOptions } from "./options.js";
import { uniform } from "../random.js";

export interface SampleReferenceOptions extends SampleOptions {
  /** Ids seen so far (prompt + generated). */
  history?: readonly number[];
}

/**
 * The scores after the logits processors, as transformers computes them: penalty, then (unless
 * greedy) temperature, top-k and top-p, removed tokens set to -Infinity.
 */
export function processLogitsReference(logits: ArrayLike<number>, options: SampleReferenceOptions): Float64Array {
  const vocab = logits.length;
  const { temperature, topK, topP, repetitionPenalty } = resolveOptions(options, "processLogitsReference");
  const history = options.history ?? [];
  for (const id of history) {
    if (!Number.isInteger(id) || id < 0 || id >= vocab) {
      throw new RangeError(`processLogitsReference: history id ${id} is outside the vocabulary [0, ${vocab})`);
    }
  }
  const scores = Float64Array.from(logits);

  if (repetitionPenalty !== 1) {
    for (const id of new Set(history)) {
      const x = logits[id];
      scores[id] = x < 0 ? x * repetitionPenalty : x / repetitionPenalty;
    }
  }
  if (temperature === 0) return scores;

  for (let i = 0; i < vocab; i++) scores[i] /= temperature;

  if (topK > 0 && topK < vocab) {
    const kth = Array.from(scores).sort((a, b) => b - a)[topK - 1];
    for (let i = 0; i < vocab; i++) if (scores[i] < kth) scores[i] = -Infinity;
  }

  if (topP < 1) {
    // Ascending, ties by index (Array.prototype.sort is stable).
    const order = Array.from({ length: vocab }, (_, i) => i).sort((a, b) => scores[a] - scores[b]);
    const probabilities = softmaxReference(order.map((i) => scores[i]), vocab);
    let cumulative = 0;
    for (let j = 0; j < vocab - 1; j++) {
      cumulative += probabilities[j];
      if (cumulative <= 1 - topP) scores[order[j]] = -Infinity;
    }
  }
  return scores;
}

/** The distribution the token is drawn from: softmax of the processed scores, or one-hot at the argmax when greedy. */
export function sampleProbabilitiesReference(logits: ArrayLike<number>, options: SampleReferenceOptions): Float64Array {
  const scores = processLogitsReference(logits, options);
  if (options.temperature === 0) {
    const probabilities = new Float64Array(scores.length);
    probabilities[argmaxReference(scores, 1, scores.length)[0]] = 1;
    return probabilities;
  }
  return softmaxReference(scores, scores.length);
}

/** Inverse-CDF draw: the first id whose cumulative probability exceeds u (the last possible one if rounding leaves none). */
export function drawReference(probabilities: ArrayLike<number>, u: number): number {
  let cumulative = 0;
  let last = -1;
  for (let i = 0; i < probabilities.length; i++) {
    if (!(probabilities[i] > 0)) continue;
    cumulative += probabilities[i];
    last = i;
    if (cumulative > u) return i;
  }
  return last >= 0 ? last : argmaxReference(probabilities, 1, probabilities.length)[0];
}

/** The token transformers' sampling semantics choose for these logits, drawn with u = uniform(seed, step). */
export function sampleReference(logits: ArrayLike<number>, options: SampleReferenceOptions): number {
  const probabilities = sampleProbabilitiesReference(logits, options);
  return drawReference(probabilities, uniform(options.seed, options.step));
}
