/**
 * Token sampling on the GPU: one launch turns a row of logits [V] into the next token id, so
 * the decode loop never reads the vocabulary back, only (if it wants) the chosen id.
 *
 * What it computes is transformers 4.40's `generate(do_sample=True)`: the logits processors in
 * this order, then one draw from the softmax of what survives.
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
 *   5. draw: u = uniform(seed, step), and the id is the first one, in vocabulary order, whose
 *      cumulative probability exceeds u (inverse-CDF sampling; torch.multinomial uses its own
 *      generator, so no implementation can reproduce its draws).
 * Temperature 0 means greedy decoding: the argmax after the penalty (first index on ties, NaN
 * first, as torch.argmax). top_k 0 (or ≥ V), top_p 1 and penalty 1 switch those steps off.
 *
 * `sampleReference` is that definition, literally and sort-based, in float64. The kernel finds
 * the same tokens without sorting the vocabulary:
 *
 * - Keys. The map f32 → u32 that flips every bit of a negative float and only the sign bit of
 *   a positive one preserves order (-0 is first made +0, so equal values get equal keys).
 *   Thresholds are then found digit by digit, radix select: for the most significant 8 bits
 *   of the keys, a 256-bin histogram over the elements; a scan over the bins says which bin
 *   holds the answer; the next pass histograms only the elements whose key starts with the
 *   digits chosen so far. Four passes pin down a key exactly.
 * - Top-k counts: the bin holding the k-th largest key is where the count of keys from the top
 *   first reaches k. The resulting key τ is the k-th largest score; keys ≥ τ survive.
 * - Top-p masses: the same, histogramming the weights w = exp((x - max)/T) of the top-k
 *   survivors instead of counts, to find the key κ where the mass from the top first reaches
 *   top_p·W (W = Σw). Keys > κ survive; of the n elements with key exactly κ, which all weigh
 *   the same w_κ, the one with the r-th highest index survives while G + r·w_κ < top_p·W, G
 *   being the mass above κ. So the c = ceil((top_p·W - G)/w_κ) highest indices among them stay
 *   and the n - c lowest go: that is the stable-sort tie order above.
 *   Workgroup memory has only integer atomics, so masses are summed in 64-bit fixed point
 *   (two u32 words with a carry, 40 fraction bits; each w ≤ 1 and V < 2^24). Integer sums are
 *   exact and independent of the order the atomics land in: the histograms are deterministic,
 *   and a bin's mass equals the sum of its sub-bins' in the next pass, exactly.
 * - Draw: each thread owns a contiguous chunk of the vocabulary and sums the weights of the
 *   survivors in it; an exclusive scan over the threads gives every chunk's starting
 *   cumulative mass. The thread whose chunk contains u·(total mass) walks it in order to the
 *   first element where the running sum exceeds it. The ranks among the κ-ties that step 4
 *   needs come the same way, from a scan of each chunk's count of elements with key κ.
 *
 * One workgroup of 256 threads does everything, in one dispatch: the vocabulary is one row of
 * at most ~150k scores, about ten passes over it stay in cache, and there is no inter-workgroup
 * synchronisation to pay for. Every pass visits only the thread's own chunk, so the penalised
 * scores a thread writes to the scratch row `z` are read back by the same thread only.
 * Cost at V = 32000 on lavapipe (one CPU core runs the one workgroup): 0.34 ms greedy, 0.68 ms
 * plain sampling, 1.8 ms with top-k, 2.5 ms with top-p, 2.7 ms with everything on; reading
 * the logits back alone takes 1.6 ms there. On a real GPU, the place to go faster is splitting
 * the histogram passes over many workgroups, at the price of a launch per pass.
 *
 * The history: the ids are marked in a bitmask (atomicOr, so duplicates are harmless and each id
 * is penalised once); the chosen id is written to `out` [1] (the next step's embedding input)
 * and appended to the history at `length`, so the next step's penalty sees it. History ids
 * outside the vocabulary are ignored (the GPU copy cannot be checked without a readback).
 *
 * The random number comes from a counter-based generator, the PCG hash (Jarzynski & Olano,
 * "Hash Functions for GPU Rendering", 2020) applied twice to (step, seed), with the top 24 bits
 * as u ∈ [0, 1): every u is an exact float32, and the same in WGSL and TypeScript, so a seeded
 * run gives the same u on any device. The sums behind the choice are float32 (the top-p masses
 * are exact fixed-point sums of float32 weights), so the chosen id equals the float64
 * reference's except where u or top_p falls within rounding (~1e-7) of a cumulative boundary.
 *
 * Non-finite logits: -Infinity is a removed token (weight exactly 0). NaN or +Infinity make the
 * distribution meaningless (transformers raises); the kernel then returns some valid id (a
 * row whose weights are all 0 or NaN gives the argmax, i.e. its first NaN).
 */
import { isFloat } from "../tensor/dtype.js";
import { check } from "../tensor/errors.js";
import { defineKernel } from "../tensor/kernel.js";
import type { Tensor } from "../tensor/tensor.js";
import { ARGMAX_ORDER_WGSL } from "./argmax.js";

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

export interface SampleTokenOptions extends SampleOptions {
  /** Ids seen so far (u32 [capacity]), `length` of them valid; the chosen id is written at `length`. */
  history?: { ids: Tensor; length: number };
  /** Write the id into this u32 [1] tensor instead of a new one. */
  out?: Tensor;
}

export interface SampleReferenceOptions extends SampleOptions {
  /** Ids seen so far (prompt + generated). */
  history?: readonly number[];
}

/** The options with defaults filled in, after validation. */
interface ResolvedOptions {
  temperature: number;
  topK: number;
  topP: number;
  repetitionPenalty: number;
  seed: number;
  step: number;
}

/** Largest vocabulary: counts and masses stay exact below 2^24 (see the fixed point above). */
const MAX_VOCAB = 2 ** 24 - 1;

function resolveOptions(options: SampleOptions, what: string): ResolvedOptions {
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

// ------------------------------------------------------------------ the shared random numbers

/** The PCG hash of a u32 (one LCG step, then PCG's output permutation): a well-mixed u32. */
export function pcgHash(x: number): number {
  const state = (Math.imul(x, 747796405) + 2891336453) >>> 0;
  const word = Math.imul((state >>> ((state >>> 28) + 4)) ^ state, 277803737) >>> 0;
  return ((word >>> 22) ^ word) >>> 0;
}

/** The uniform number in [0, 1) of draw `step` of stream `seed`: 24 random bits, exact in float32. */
export function uniform(seed: number, step: number): number {
  return (pcgHash((pcgHash(step) ^ seed) >>> 0) >>> 8) / 2 ** 24;
}

const UNIFORM_WGSL = /* wgsl */ `
fn pcg_hash(x: u32) -> u32 {
  let state = x * 747796405u + 2891336453u;
  let word = ((state >> ((state >> 28u) + 4u)) ^ state) * 277803737u;
  return (word >> 22u) ^ word;
}

fn uniform_random(seed: u32, step: u32) -> f32 {
  return f32(pcg_hash(pcg_hash(step) ^ seed) >> 8u) * (1.0 / 16777216.0);
}`;

// ------------------------------------------------------------------ CPU reference (float64)

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
    const probabilities = softmax(order.map((i) => scores[i]));
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
    probabilities[argmaxReference(scores)] = 1;
    return probabilities;
  }
  return softmax(scores);
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
  return last >= 0 ? last : argmaxReference(probabilities);
}

/** The token transformers' sampling semantics choose for these logits, drawn with u = uniform(seed, step). */
export function sampleReference(logits: ArrayLike<number>, options: SampleReferenceOptions): number {
  const probabilities = sampleProbabilitiesReference(logits, options);
  return drawReference(probabilities, uniform(options.seed, options.step));
}

function softmax(scores: ArrayLike<number>): Float64Array {
  let max = -Infinity;
  for (let i = 0; i < scores.length; i++) max = Math.max(max, scores[i]);
  const out = Float64Array.from(scores, (x) => Math.exp(x - max));
  const sum = out.reduce((a, b) => a + b, 0);
  return out.map((e) => e / sum);
}

/** torch.argmax: the first NaN, else the first maximum. */
function argmaxReference(x: ArrayLike<number>): number {
  let best = 0;
  for (let i = 0; i < x.length; i++) {
    if (Number.isNaN(x[i])) return i;
    if (x[i] > x[best]) best = i;
  }
  return best;
}

// ------------------------------------------------------------------ WGSL

const THREADS = 256; // also the number of radix bins: one 8-bit digit per pass

const sampleKernel = defineKernel({
  name: "sample",
  params: {
    vocab: "u32",
    chunk: "u32",
    history_length: "u32",
    greedy: "u32",
    top_k: "u32",
    top_p: "f32",
    penalty: "f32",
    inv_temperature: "f32",
    seed: "u32",
    step: "u32",
  },
  bindings: { logits: "read", history: "read_write", out: "read_write", z: "read_write", flags: "read_write" },
  elementType: (binding, dtype) => (binding === "flags" ? "atomic<u32>" : dtype),
  wgsl: () => /* wgsl */ `
${UNIFORM_WGSL}
const T = ${THREADS}u;

var<workgroup> best_values: array<f32, T>;
var<workgroup> best_indices: array<u32, T>;
var<workgroup> bin_count: array<atomic<u32>, T>;
var<workgroup> bin_mass_lo: array<atomic<u32>, T>;
var<workgroup> bin_mass_hi: array<atomic<u32>, T>;
var<workgroup> scan_u32: array<u32, T>;
var<workgroup> scan_u64: array<vec2u, T>;
var<workgroup> scan_f32: array<f32, T>;
var<workgroup> selection: vec4u; // what one thread found in a radix pass, for all
var<workgroup> owner: atomic<u32>; // 1 + the thread whose chunk holds the drawn token, 0: none

// ---- order-preserving keys

fn key_of(x: f32) -> u32 {
  let raw = bitcast<u32>(x);
  let bits = select(raw, 0u, raw == 0x80000000u); // -0 → +0
  return select(bits | 0x80000000u, ~bits, (bits >> 31u) == 1u);
}

fn value_of(key: u32) -> f32 {
  return bitcast<f32>(select(~key, key & 0x7fffffffu, (key >> 31u) == 1u));
}

// ---- 64-bit fixed point (x = lo, y = hi), 40 fraction bits

fn add64(a: vec2u, b: vec2u) -> vec2u {
  let lo = a.x + b.x;
  return vec2u(lo, a.y + b.y + select(0u, 1u, lo < a.x));
}

fn sub64(a: vec2u, b: vec2u) -> vec2u {
  return vec2u(a.x - b.x, a.y - b.y - select(0u, 1u, a.x < b.x));
}

fn less64(a: vec2u, b: vec2u) -> bool {
  return a.y < b.y || (a.y == b.y && a.x < b.x);
}

// v in [0, 2^24), rounded down to a multiple of 2^-40.
fn to_fixed(v: f32) -> vec2u {
  let scaled = v * 256.0;
  let whole = floor(scaled);
  return vec2u(u32((scaled - whole) * 4294967296.0), u32(whole));
}

fn to_float(a: vec2u) -> f32 {
  return f32(a.y) * (1.0 / 256.0) + f32(a.x) * (1.0 / 1099511627776.0);
}

fn bin_add_mass(bin: u32, w: vec2u) {
  let old = atomicAdd(&bin_mass_lo[bin], w.x);
  let high = w.y + select(0u, 1u, old + w.x < old); // the add that wraps the low word carries
  if (high != 0u) { atomicAdd(&bin_mass_hi[bin], high); }
}

// ---- scans over the T threads (Hillis–Steele; call from uniform control flow)

// Σ of value over threads ≥ lid (over bins ≥ lid, one bin per thread); scan_u32 keeps them all.
fn suffix_sum_u32(lid: u32, value: u32) -> u32 {
  scan_u32[lid] = value;
  workgroupBarrier();
  for (var offset = 1u; offset < T; offset *= 2u) {
    var v = scan_u32[lid];
    if (lid + offset < T) { v += scan_u32[lid + offset]; }
    workgroupBarrier();
    scan_u32[lid] = v;
    workgroupBarrier();
  }
  return scan_u32[lid];
}

fn suffix_sum_u64(lid: u32, value: vec2u) -> vec2u {
  scan_u64[lid] = value;
  workgroupBarrier();
  for (var offset = 1u; offset < T; offset *= 2u) {
    var v = scan_u64[lid];
    if (lid + offset < T) { v = add64(v, scan_u64[lid + offset]); }
    workgroupBarrier();
    scan_u64[lid] = v;
    workgroupBarrier();
  }
  return scan_u64[lid];
}

// Σ of value over threads < lid.
fn exclusive_prefix_u32(lid: u32, value: u32) -> u32 {
  scan_u32[lid] = value;
  workgroupBarrier();
  for (var offset = 1u; offset < T; offset *= 2u) {
    var v = scan_u32[lid];
    if (lid >= offset) { v += scan_u32[lid - offset]; }
    workgroupBarrier();
    scan_u32[lid] = v;
    workgroupBarrier();
  }
  return select(0u, scan_u32[max(lid, 1u) - 1u], lid > 0u);
}

// (Σ of value over threads < lid, Σ over all threads).
fn exclusive_prefix_f32(lid: u32, value: f32) -> vec2f {
  scan_f32[lid] = value;
  workgroupBarrier();
  for (var offset = 1u; offset < T; offset *= 2u) {
    var v = scan_f32[lid];
    if (lid >= offset) { v += scan_f32[lid - offset]; }
    workgroupBarrier();
    scan_f32[lid] = v;
    workgroupBarrier();
  }
  return vec2f(select(0.0, scan_f32[max(lid, 1u) - 1u], lid > 0u), scan_f32[T - 1u]);
}

// ---- scores

// torch.argmax's order (shared with the argmax kernel): NaN beats numbers, then the larger
// value, then the lower index.
${ARGMAX_ORDER_WGSL}

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
  out[0] = id;
  history[params.history_length] = id;
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
    for (var h = lid; h < params.history_length; h += T) {
      let id = history[h];
      if (id < params.vocab) { atomicOr(&flags[id / 32u], 1u << (id % 32u)); }
    }
    storageBarrier();
  }

  // 2. Penalised scores into z, and their argmax.
  var best_value = 0.0;
  var best_index = NO_INDEX;
  for (var i = begin; i < end; i++) {
    var x = f32(logits[i]);
    if (penalise && in_history(i)) { x = select(x / params.penalty, x * params.penalty, x < 0.0); }
    z[i] = x;
    if (beats(x, i, best_value, best_index)) {
      best_value = x;
      best_index = i;
    }
  }
  best_values[lid] = best_value;
  best_indices[lid] = best_index;
  workgroupBarrier();
  for (var stride = T / 2u; stride > 0u; stride /= 2u) {
    if (lid < stride && beats(best_values[lid + stride], best_indices[lid + stride], best_values[lid], best_indices[lid])) {
      best_values[lid] = best_values[lid + stride];
      best_indices[lid] = best_indices[lid + stride];
    }
    workgroupBarrier();
  }
  let argmax = best_indices[0];
  let max_score = best_values[0];
  if (params.greedy != 0u) {
    if (lid == 0u) { emit(argmax); }
    return;
  }

  // 3. Top-k: the key of the k-th largest score, one 8-bit digit per pass, high digit first.
  var topk_key = 0u; // keys ≥ topk_key survive (0: all)
  if (params.top_k != 0u) {
    var prefix = 0u;
    var rank = params.top_k; // the key sought is the rank-th largest of those matching prefix
    for (var digit = 0u; digit < 4u; digit++) {
      let shift = 24u - 8u * digit;
      let prefix_mask = ~(0xffffffffu >> (8u * digit));
      atomicStore(&bin_count[lid], 0u);
      workgroupBarrier();
      for (var i = begin; i < end; i++) {
        let key = key_of(z[i]);
        if ((key & prefix_mask) == prefix) { atomicAdd(&bin_count[(key >> shift) & 0xffu], 1u); }
      }
      workgroupBarrier();
      // Bin lid holds it if the keys in bins ≥ lid reach rank and those in bins > lid do not.
      let from_here = suffix_sum_u32(lid, atomicLoad(&bin_count[lid]));
      let above = select(0u, scan_u32[min(lid + 1u, T - 1u)], lid + 1u < T);
      if (from_here >= rank && above < rank) { selection = vec4u(lid, rank - above, 0u, 0u); }
      workgroupBarrier();
      prefix |= selection.x << shift;
      rank = selection.y;
    }
    topk_key = prefix;
  }

  // 4. Top-p: the key κ where the mass from the top first reaches top_p·W (the goal), and how many of
  //    the ties at κ survive. Off: everything from the top-k threshold up survives.
  var kappa = topk_key;
  var skip = 0u; // the lowest-index ties at κ that top-p removes
  if (params.top_p < 1.0) {
    var prefix = 0u;
    var above = vec2u(0u); // mass of the survivors above the keys still in play
    var goal = vec2u(0u); // top_p·W
    var ties = 0u;
    for (var digit = 0u; digit < 4u; digit++) {
      let shift = 24u - 8u * digit;
      let prefix_mask = ~(0xffffffffu >> (8u * digit));
      atomicStore(&bin_count[lid], 0u);
      atomicStore(&bin_mass_lo[lid], 0u);
      atomicStore(&bin_mass_hi[lid], 0u);
      workgroupBarrier();
      for (var i = begin; i < end; i++) {
        let x = z[i];
        let key = key_of(x);
        if (key >= topk_key && (key & prefix_mask) == prefix) {
          let bin = (key >> shift) & 0xffu;
          atomicAdd(&bin_count[bin], 1u);
          bin_add_mass(bin, to_fixed(weight(x, max_score)));
        }
      }
      workgroupBarrier();
      let mass = vec2u(atomicLoad(&bin_mass_lo[lid]), atomicLoad(&bin_mass_hi[lid]));
      let from_here = add64(above, suffix_sum_u64(lid, mass));
      if (digit == 0u) {
        let total = scan_u64[0];
        goal = to_fixed(params.top_p * to_float(total));
        if (less64(total, goal)) { goal = total; } // rounding must not put it out of reach
      }
      let beyond = select(above, add64(above, scan_u64[min(lid + 1u, T - 1u)]), lid + 1u < T);
      if (!less64(from_here, goal) && (lid + 1u == T || less64(beyond, goal))) {
        selection = vec4u(lid, atomicLoad(&bin_count[lid]), beyond);
      }
      workgroupBarrier();
      prefix |= selection.x << shift;
      ties = selection.y;
      above = selection.zw;
    }
    kappa = prefix;
    // The tie with the r-th highest index survives while above + r·w < goal.
    let w = weight(value_of(kappa), max_score);
    let room = to_float(sub64(goal, above));
    var kept = ties;
    if (w > 0.0) { kept = u32(min(ceil(room / w), f32(ties))); }
    skip = ties - kept;
  }

  // 5. The draw. Ranks of the κ-ties before each chunk, then each chunk's surviving mass.
  var ties_here = 0u;
  for (var i = begin; i < end; i++) {
    if (key_of(z[i]) == kappa) { ties_here++; }
  }
  let ties_before = exclusive_prefix_u32(lid, ties_here);
  var rank = ties_before;
  var mass = 0.0;
  for (var i = begin; i < end; i++) {
    let x = z[i];
    if (survives(key_of(x), kappa, skip, &rank)) { mass += weight(x, max_score); }
  }
  let prefix_total = exclusive_prefix_f32(lid, mass);
  let start = prefix_total.x;
  let drawn = uniform_random(params.seed, params.step) * prefix_total.y;
  // The last chunk with mass that starts at or below the drawn mass holds it (or, if rounding
  // put it past the end, ends just before it).
  if (mass > 0.0 && start <= drawn) { atomicMax(&owner, lid + 1u); }
  workgroupBarrier();
  let holder = atomicLoad(&owner);
  if (holder == 0u) {
    // No mass at all: every weight 0 or NaN.
    if (lid == 0u) { emit(argmax); }
  } else if (lid + 1u == holder) {
    rank = ties_before;
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
 * Samples the next token from logits [V] or [1, V] (f32 or f16) → u32 [1] (`options.out` if
 * given). With a history, its ids get the repetition penalty and the chosen id is appended at
 * `history.length`. Nothing is read back.
 */
export function sampleToken(logits: Tensor, options: SampleTokenOptions): Tensor {
  check(
    logits.rank === 1 || (logits.rank === 2 && logits.dim(0) === 1),
    () => `sampleToken: logits ${logits.describe()} must be [V] or [1, V]`,
  );
  check(isFloat(logits.dtype), () => `sampleToken: logits ${logits.describe()} must be f32 or f16`);
  const vocab = logits.dim(-1);
  check(vocab > 0, () => `sampleToken: logits ${logits.describe()} are empty`);
  check(vocab <= MAX_VOCAB, () => `sampleToken: logits ${logits.describe()} have more than ${MAX_VOCAB} entries`);
  const o = resolveOptions(options, "sampleToken");

  const { history, out: given } = options;
  if (history) {
    const ids = history.ids;
    check(ids.rank === 1 && ids.dtype === "u32", () => `sampleToken: history ids ${ids.describe()} must be u32 [capacity]`);
    if (!Number.isInteger(history.length) || history.length < 0 || history.length >= ids.dim(0)) {
      throw new RangeError(
        `sampleToken: history length ${history.length} must be an integer in [0, ${ids.dim(0)}) ` +
          `so that the sampled id fits after it in ${ids.describe()}`,
      );
    }
    check(ids.buffer !== logits.buffer, () => `sampleToken: history ids ${ids.describe()} share a buffer with the logits`);
  }
  if (given) {
    check(given.size === 1 && given.dtype === "u32", () => `sampleToken: out ${given.describe()} must be u32 [1]`);
    check(
      given.buffer !== logits.buffer && given.buffer !== history?.ids.buffer,
      () => `sampleToken: out ${given.describe()} shares a buffer with the logits or the history`,
    );
  }

  const gpu = logits.gpu;
  const out = given ?? gpu.empty([1], "u32", { name: "sampled token" });
  // Without a history the kernel appends into a one-slot scratch history that is then dropped.
  const historyIds = history?.ids ?? gpu.empty([1], "u32", { name: "sample history" });
  const z = gpu.empty([vocab], "f32", { name: "sample scores" });
  const flags = gpu.empty([Math.ceil(vocab / 32)], "u32", { name: "sample history flags" });
  gpu.run(sampleKernel, {
    params: {
      vocab,
      chunk: Math.ceil(vocab / THREADS),
      history_length: history?.length ?? 0,
      greedy: o.temperature === 0 ? 1 : 0,
      top_k: o.topK < vocab ? o.topK : 0,
      top_p: o.topP,
      penalty: o.repetitionPenalty,
      inv_temperature: o.temperature === 0 ? 0 : 1 / o.temperature,
      seed: o.seed,
      step: o.step,
    },
    tensors: { logits, history: historyIds, out, z, flags },
    workgroups: [1],
  });
  // Safe while the launch is pending: a later user of these buffers runs after it.
  z.dispose();
  flags.dispose();
  if (!history) historyIds.dispose();
  return out;
}
