/** The sampler's options, their defaults and their validation (shared by the kernel and the reference). */

export interface SampleOptions {
  /** Divides the logits; 0 means greedy decoding (argmax after the penalty). */
  temperature: number;
  /** Keep the k largest scores (ties with the k-th too); 0 or ≥ V: off. Default 0. */
  topK?: number;
  /** Keep the smallest top set with probability ≥ topP, in (0, 1]; 1: off. Default 1. */
  topP?: number;
  /** > 0; 1: off. Default 1. */
  repetitionPenalty?: number;
  /** Random stream and position in it: u = uniform(seed, step). Integers in [0, 2^32). */
  seed: number;
  step: number;
}

/** The options with defaults filled in, after validation. */
export type ResolvedOptions = Required<SampleOptions>;

/** Largest vocabulary: counts and masses stay exact below 2^24 (see fixed_point.ts). */
export const MAX_VOCAB = 2 ** 24 - 1;

/** Fills in the defaults; throws a RangeError naming `what` and the option that is out of range. */
export function resolveOptions(options: SampleOptions, what: string): ResolvedOptions {
  const { temperature, topK = 0, topP = 1, repetitionPenalty = 1, seed, step } = options;
  const fail = (message: string) => {
    throw new RangeError(`${what}: ${message}`);
  };
  if (typeof temperature !== "number" || !Number.isFinite(temperature) || temperature < 0) {
    fail(`temperature must be a finite number >= 0 (0: greedy), got ${temperature}`);
  }
  if (temperature > 0 && !Number.isFinite(Math.fround(1 / temperature))) {
    fail(`temperature ${temperature} is too small: its inverse overflows float32 (use 0 for greedy decoding)`);
  }
  if (!Number.isInteger(topK) || topK < 0) fail(`topK must be an integer >= 0 (0: off), got ${topK}`);
  if (typeof topP !== "number" || !(topP > 0 && topP <= 1)) fail(`topP must be in (0, 1] (1: off), got ${topP}`);
  if (typeof repetitionPenalty !== "number" || !Number.isFinite(repetitionPenalty) || repetitionPenalty <= 0) {
    fail(`repetitionPenalty must be a finite number > 0 (1: off), got ${repetitionPenalty}`);
  }
  for (const [name, value] of [["seed", seed], ["step", step]] as const) {
    if (!Number.isInteger(value) || value < 0 || value > 0xffffffff) fail(`${name} must be an integer in [0, 2^32), got ${value}`);
  }
  return { temperature, topK, topP, repetitionPenalty, seed, step };
}
