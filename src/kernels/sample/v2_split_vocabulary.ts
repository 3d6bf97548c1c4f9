/**
 * Sampler v2: the vocabulary split into blocks of SAMPLE_BLOCK scores, one workgroup of 256
 * threads per block, and a short run of launches with their state in small storage buffers
 * between them. v1 makes its ten or so passes over the vocabulary in one workgroup, which on a
 * GPU is one core of many (an H100 has 132); here every pass over the scores is spread over
 * ceil(V / SAMPLE_BLOCK) workgroups, each reading its block coalesced (thread t reads t,
 * t + 256, ...), and what has to be global (the argmax, the 256 radix bins of a pass, the
 * blocks' masses) is combined by storage atomics or by one small workgroup.
 *
 *   blocks      (a workgroup per block) the penalty, penalised scores into `z` and the block's
 *               best (value, index). The history ids that fall in the block are marked in a
 *               workgroup-memory bitmask, so no global bitmask has to be cleared first. It
 *               also zeroes the radix bins.
 *   best        (one workgroup) the argmax over the blocks' bests: the token when greedy (it
 *               is written there and nothing else is recorded), else the maximum the weights
 *               are relative to, into the `selected` state.
 *   histogram   (a workgroup per block) one radix pass of top-k (counts) or top-p (64-bit
 *               fixed-point masses) over the block (radix_select.ts), in workgroup memory;
 *               then the block adds its 256 bins into the global ones with storage atomics.
 *   choose      (one workgroup) the pass's digit from the global bins, recorded in
 *               `selected`; it clears the bins for the next pass. After the fourth digit, the
 *               threshold: τ for top-k, (κ, how many κ-ties go) for top-p.
 *   masses      (a workgroup per block) each block's mass above κ and its count of κ-ties.
 *   draw        (one workgroup) the blocks' surviving masses (their κ-ties' ranks come from a
 *               scan of the tie counts of the blocks before them), a scan over them, the block
 *               holding u·total, and the walk through that block in vocabulary order (the
 *               draw over chunks of draw.ts, on one block).
 * Only what the options need is recorded (they are fixed when a step is recorded): greedy is
 * blocks + best, 2 launches; plain sampling adds masses + draw, 4; top-k and top-p add four
 * histogram + choose pairs each, 20 with both. Nothing but launches: the step can be captured
 * and replayed.
 *
 * Semantics are v1's: the same penalty, the same argmax (a total order on (value, index), so
 * reducing by blocks finds the same pair), the same thresholds (the radix bins are exact
 * integer sums, whatever order the atomics land in), the same tie order. Only the float32
 * masses of the draw are summed in another order, so the id may differ where u falls within
 * rounding of a cumulative boundary.
 *
 * SAMPLE_BLOCK: 2048 scores, 8 per thread. On a 132-SM GPU that is 16 workgroups at
 * V = 32000 and 75 at V = 152064, one wave either way. Smaller blocks would fill more SMs at
 * 32000 but double the fixed costs per score (a 256-bin flush per block and pass, the
 * reductions) for passes that already take less than the launch between them.
 *
 * Choosing each digit in a launch of its own costs a launch per pass. The other way, every
 * block choosing the previous pass's digit itself from the same bins at the start of the next
 * launch, saves 8 of the 20 launches but does that 256-bin scan in every block: on lavapipe,
 * where workgroup barriers are dear, it was 1.6 to 2 times slower (3.3 against 2.1 ms with
 * top-k, 5.8 against 2.9 with top-k and top-p, at V = 32000). On a GPU the two should be
 * close (a scan of 256 bins against a launch, each ~1-3 µs); this one was measured better
 * where it could be measured.
 */
import { defineKernel, type Access, type SpecValue } from "../../tensor/kernel.js";
import type { Tensor } from "../../tensor/tensor.js";
import { ARGMAX_ORDER_WGSL, WORKGROUP_BEST_WGSL } from "../argmax.js";
import { u32SourceWgsl } from "../step_value.js";
import { workgroupReduceWgsl } from "../wgsl/reduce.js";
import { drawingKernelWgsl, EMIT_WGSL, SCORE_WGSL } from "./draw.js";
import { FIXED_POINT_WGSL } from "./fixed_point.js";
import { planSample, SAMPLE_PARAMS, sampleOutputs, type SamplePlan, type SampleTokenOptions } from "./plan.js";
import { KEY_WGSL, RADIX_SELECT_WGSL } from "./radix_select.js";

const THREADS = 256;
/** Scores per block (a multiple of THREADS and of 32). */
export const SAMPLE_BLOCK = 2048;

/** Passes 0-3 are top-k's digits, 4-7 top-p's. */
const TOP_P_PASS = 4;
/** The global bins of a pass: counts, then the masses' low and high words. */
const BIN_WORDS = 3 * THREADS;
/** The `selected` state (see COMMON_WGSL). */
const SELECTED_WORDS = 10;

/** The WGSL every split kernel starts with. */
const COMMON_WGSL = /* wgsl */ `
const T = ${THREADS}u;
const B = ${SAMPLE_BLOCK}u;
const TOP_P_PASS = ${TOP_P_PASS}u;
// Words of \`selected\`: the maximum; the survivors' threshold (keys > κ and the κ-ties from
// rank skip on; top-k alone: κ = τ, skip 0; neither: 0, 0); then the running choice of the
// radix passes (see Chosen).
const MAX_INDEX = 0u;
const MAX_VALUE = 1u;
const KAPPA = 2u;
const SKIP = 3u;
const CHOSEN = 4u;
`;

const SPLIT_PARAMS = { ...SAMPLE_PARAMS, blocks: "u32", radix_pass: "u32" } as const;

/** Which of the U32Sources are read from `state`. */
type Spec = SamplePlan["spec"];

/**
 * A kernel of this version: the shared parameters and COMMON_WGSL; `bins` as atomics, `bests`
 * and `masses` as pairs ((value bits, index) and (mass bits, κ-ties)) per block.
 */
function splitKernel<B extends Record<string, Access>, S extends Record<string, SpecValue> = Record<string, never>>(
  name: string,
  bindings: B,
  wgsl: (spec: S) => string,
) {
  return defineKernel<typeof SPLIT_PARAMS, B, S>({
    name,
    params: SPLIT_PARAMS,
    bindings,
    gathers: ("state" in bindings ? ["state"] : []) as (keyof B & string)[],
    elementType: (binding, dtype) => (binding === "bins" ? "atomic<u32>" : binding === "bests" || binding === "masses" ? "vec2u" : dtype),
    wgsl: (spec) => `${COMMON_WGSL}\n${wgsl(spec)}`,
  });
}

/** The radix passes' WGSL (radix_select.ts and what it needs). */
const RADIX_WGSL = [FIXED_POINT_WGSL, KEY_WGSL, SCORE_WGSL, RADIX_SELECT_WGSL].join("\n");

/** A workgroup per block: the penalised scores into z, the block's best pair; the bins zeroed. */
const blocksKernel = splitKernel(
  "sample_blocks",
  { logits: "read", history: "read", z: "read_write", bests: "read_write", bins: "read_write", state: "read" },
  ({ dynamicHistoryLength }: Spec) => /* wgsl */ `
${u32SourceWgsl("history_length", dynamicHistoryLength)}
${ARGMAX_ORDER_WGSL}
${WORKGROUP_BEST_WGSL}
${SCORE_WGSL}
var<workgroup> seen: array<atomic<u32>, B / 32u>; // the history ids in this block

@compute @workgroup_size(T)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let first = wid.x * B;
  // The radix bins start at zero; the blocks share the clearing.
  for (var i = wid.x * T + lid; i < arrayLength(&bins); i += params.blocks * T) { atomicStore(&bins[i], 0u); }

  let penalise = params.penalty != 1.0;
  if (penalise) {
    for (var word = lid; word < B / 32u; word += T) { atomicStore(&seen[word], 0u); }
    workgroupBarrier();
    // (Never past the history's end, even if a run-time length broke its max.)
    let history_length = min(history_length_value(), arrayLength(&history));
    for (var h = lid; h < history_length; h += T) {
      let id = history[h];
      if (id >= first && id - first < B && id < params.vocab) { atomicOr(&seen[(id - first) / 32u], 1u << (id % 32u)); }
    }
    workgroupBarrier();
  }

  var best = Best(0.0, NO_INDEX);
  let row_start = params.row * params.vocab; // this row of logits [R, V]
  for (var j = lid; j < B && first + j < params.vocab; j += T) {
    let i = first + j;
    var x = f32(logits[row_start + i]);
    if (penalise && (atomicLoad(&seen[j / 32u]) & (1u << (j % 32u))) != 0u) { x = penalised(x); }
    z[i] = x;
    best = better(Best(x, i), best);
  }
  let top = workgroup_best(lid, best);
  if (lid == 0u) { bests[wid.x] = vec2u(bitcast<u32>(top.value), top.index); }
}`,
);

/** One workgroup: the argmax over the blocks (the token when greedy); the state initialised. */
const bestKernel = splitKernel(
  "sample_best",
  { bests: "read", history: "read_write", out: "read_write", selected: "read_write", state: "read" },
  ({ dynamicHistoryLength }: Spec) => /* wgsl */ `
${u32SourceWgsl("history_length", dynamicHistoryLength)}
${ARGMAX_ORDER_WGSL}
${WORKGROUP_BEST_WGSL}
${EMIT_WGSL}

@compute @workgroup_size(T)
fn main(@builtin(local_invocation_index) lid: u32) {
  var best = Best(0.0, NO_INDEX);
  for (var b = lid; b < params.blocks; b += T) { best = better(Best(bitcast<f32>(bests[b].x), bests[b].y), best); }
  let top = workgroup_best(lid, best);
  if (lid != 0u) { return; }
  if (params.greedy != 0u) {
    emit(top.index);
    return;
  }
  selected[MAX_INDEX] = top.index;
  selected[MAX_VALUE] = bitcast<u32>(top.value);
  selected[KAPPA] = 0u; // until a radix pass says otherwise, everything survives
  selected[SKIP] = 0u;
}`,
);

/** A workgroup per block: its histogram of one radix pass, added into the global bins. */
const histogramKernel = splitKernel("sample_histogram", { z: "read", selected: "read", bins: "read_write" }, () => /* wgsl */ `
${RADIX_WGSL}

// Adds a 64-bit mass into the global bins: low word at \`at\`, high word T words on.
fn add_global_mass(at: u32, w: vec2u) {
  let old = atomicAdd(&bins[at], w.x);
  let high = w.y + select(0u, 1u, old + w.x < old); // the add that wraps the low word carries
  if (high != 0u) { atomicAdd(&bins[at + T], high); }
}

@compute @workgroup_size(T)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let digit = params.radix_pass % 4u;
  let top_p = params.radix_pass >= TOP_P_PASS;
  let prefix = select(selected[CHOSEN], 0u, digit == 0u); // this selection's digits so far
  let floor = select(0u, selected[KAPPA], top_p); // top-p sees the keys from top-k's τ up
  let max_score = bitcast<f32>(selected[MAX_VALUE]);
  clear_bins(lid);
  workgroupBarrier();
  let first = wid.x * B;
  for (var j = lid; j < B && first + j < params.vocab; j += T) { histogram_add(z[first + j], prefix, digit, floor, top_p, max_score); }
  workgroupBarrier();
  let count = atomicLoad(&bin_count[lid]);
  if (count == 0u) { return; }
  atomicAdd(&bins[lid], count);
  if (top_p) { add_global_mass(T + lid, vec2u(atomicLoad(&bin_mass_lo[lid]), atomicLoad(&bin_mass_hi[lid]))); }
}`,
);

/** One workgroup: the pass's digit from the global bins (cleared for the next pass). */
const chooseKernel = splitKernel("sample_choose", { bins: "read_write", selected: "read_write" }, () => /* wgsl */ `
${RADIX_WGSL}

// What the radix passes so far chose: the digits (prefix), the rank sought (top-k) or the count
// in the chosen bin (top-p), the mass above the keys in play and the goal (top-p).
struct Chosen {
  prefix: u32,
  count: u32,
  above: vec2u,
  goal: vec2u,
}

@compute @workgroup_size(T)
fn main(@builtin(local_invocation_index) lid: u32) {
  let digit = params.radix_pass % 4u;
  var c = Chosen(0u, params.top_k, vec2u(0u), vec2u(0u)); // before a first digit
  if (digit != 0u) {
    let s = CHOSEN;
    c = Chosen(selected[s], selected[s + 1u], vec2u(selected[s + 2u], selected[s + 3u]), vec2u(selected[s + 4u], selected[s + 5u]));
  }
  // Thread lid reads bin lid and clears it for the next pass.
  let count = atomicExchange(&bins[lid], 0u);
  let mass = vec2u(atomicExchange(&bins[T + lid], 0u), atomicExchange(&bins[2u * T + lid], 0u));
  let shift = 24u - 8u * digit;
  let top_p = params.radix_pass >= TOP_P_PASS;
  if (top_p) {
    var goal = c.goal;
    let chosen = top_p_digit(lid, count, mass, c.above, &goal, digit == 0u);
    c = Chosen(c.prefix | (chosen.x << shift), chosen.y, chosen.zw, goal);
  } else {
    let chosen = top_k_digit(lid, count, c.count);
    c.prefix |= chosen.x << shift;
    c.count = chosen.y;
  }
  if (lid != 0u) { return; }
  let s = CHOSEN;
  selected[s] = c.prefix;
  selected[s + 1u] = c.count;
  selected[s + 2u] = c.above.x;
  selected[s + 3u] = c.above.y;
  selected[s + 4u] = c.goal.x;
  selected[s + 5u] = c.goal.y;
  if (digit == 3u) {
    let max_score = bitcast<f32>(selected[MAX_VALUE]);
    selected[KAPPA] = c.prefix;
    selected[SKIP] = select(0u, top_p_skip(c.prefix, c.count, c.above, c.goal, max_score), top_p);
  }
}`,
);

/** A workgroup per block: its mass above κ and its κ-ties. */
const massesKernel = splitKernel("sample_masses", { z: "read", selected: "read", masses: "read_write" }, () => /* wgsl */ `
${SCORE_WGSL}
${KEY_WGSL}
${workgroupReduceWgsl("block_sums", "vec2f", (a, b) => `${a} + ${b}`)}

@compute @workgroup_size(T)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let kappa = selected[KAPPA];
  let max_score = bitcast<f32>(selected[MAX_VALUE]);
  var sums = vec2f(0.0); // (mass above κ, κ-ties)
  let first = wid.x * B;
  for (var j = lid; j < B && first + j < params.vocab; j += T) {
    let x = z[first + j];
    let key = key_of(x);
    if (key > kappa) { sums.x += weight(x, max_score); } else if (key == kappa) { sums.y += 1.0; }
  }
  let total = block_sums(lid, sums);
  if (lid == 0u) { masses[wid.x] = vec2u(bitcast<u32>(total.x), u32(total.y)); }
}`,
);

/** One workgroup: the block holding the drawn mass, then the walk through it. */
const drawKernel = splitKernel(
  "sample_draw",
  { z: "read", masses: "read", selected: "read", history: "read_write", out: "read_write", state: "read" },
  (spec: Spec) => /* wgsl */ `
${drawingKernelWgsl(spec)}
var<workgroup> holder_thread: atomic<u32>; // 1 + the thread whose blocks hold the drawn mass, 0: none
var<workgroup> holder: vec4u; // (block, κ-ties before it, its start's bits, 1 if any)

// Block b's surviving mass: its mass above κ and its κ-ties of rank ≥ skip (*rank, the ties
// before it, advances past them). Its ties all weigh w_kappa.
fn block_mass(b: u32, skip: u32, w_kappa: f32, rank: ptr<function, u32>) -> f32 {
  let ties = masses[b].y;
  let kept = ties - min(ties, skip - min(skip, *rank));
  *rank += ties;
  return bitcast<f32>(masses[b].x) + select(0.0, w_kappa * f32(kept), kept > 0u);
}

@compute @workgroup_size(T)
fn main(@builtin(local_invocation_index) lid: u32) {
  if (lid == 0u) {
    atomicStore(&holder_thread, 0u);
    holder = vec4u(0u); // (the scans' barriers come before any use)
  }
  let max_score = bitcast<f32>(selected[MAX_VALUE]);
  let kappa = selected[KAPPA];
  let skip = selected[SKIP];
  let w_kappa = weight(value_of(kappa), max_score);

  // Each thread takes a run of consecutive blocks: their κ-ties, then their surviving mass.
  let per_thread = (params.blocks + T - 1u) / T;
  let first = min(lid * per_thread, params.blocks);
  let end = min(first + per_thread, params.blocks);
  var ties_here = 0u;
  for (var b = first; b < end; b++) { ties_here += masses[b].y; }
  ties_before(lid, ties_here);
  var rank = ties_before_exclusive(lid);
  var mass = 0.0;
  for (var b = first; b < end; b++) { mass += block_mass(b, skip, w_kappa, &rank); }
  mass_before(lid, mass);
  let start = mass_before_exclusive(lid);
  let drawn = uniform_random(params.seed, step_value()) * mass_before_total();

  // The last block with mass that starts at or below the drawn mass holds it.
  if (mass > 0.0 && start <= drawn) { atomicMax(&holder_thread, lid + 1u); }
  workgroupBarrier();
  if (lid + 1u == atomicLoad(&holder_thread)) {
    rank = ties_before_exclusive(lid);
    var running = start;
    for (var b = first; b < end; b++) {
      let ties = rank;
      let m = block_mass(b, skip, w_kappa, &rank);
      if (m > 0.0 && running <= drawn) { holder = vec4u(b, ties, bitcast<u32>(running), 1u); }
      running += m;
    }
  }
  workgroupBarrier();

  // The walk through that block, in T chunks (none if no block has mass).
  let block = holder;
  let chunk = B / T;
  let begin = min(select(params.vocab, block.x * B + lid * chunk, block.w == 1u), params.vocab);
  let chunk_end = min(begin + chunk, min(block.x * B + B, params.vocab));
  let mine = survivor_chunk(lid, begin, chunk_end, block.y, kappa, skip, max_score);
  let pick = draw_from_chunks(lid, mine, kappa, skip, max_score, drawn - bitcast<f32>(block.z));
  if (pick.x == 0u) {
    if (lid == 0u) { emit(selected[MAX_INDEX]); }
  } else if (lid + 1u == pick.x) {
    emit(pick.y);
  }
}`,
);

// ------------------------------------------------------------------ launch

/** What sampleToken does (see v1_one_workgroup.ts), in the launches above. */
export function sampleSplitVocabulary(logits: Tensor, options: SampleTokenOptions): Tensor {
  const plan = planSample(logits, options);
  const { vocab, state, spec } = plan;
  const gpu = logits.gpu;
  const { out, historyIds, release } = sampleOutputs(logits, options);
  const blocks = Math.ceil(vocab / SAMPLE_BLOCK);
  const greedy = plan.params.greedy === 1;
  // (top_p is an f32 on the GPU: one that rounds to 1 is off, as in v1.)
  const passes = greedy ? [] : [...(plan.params.top_k !== 0 ? [0, 1, 2, 3] : []), ...(Math.fround(plan.params.top_p) < 1 ? [4, 5, 6, 7] : [])];
  const params = { ...plan.params, blocks, radix_pass: 0 };

  const z = gpu.empty([vocab], "f32", { name: "sample scores" });
  const bests = gpu.empty([2 * blocks], "u32", { name: "sample block bests" });
  // (A word when there is no pass: the blocks kernel binds something.)
  const bins = gpu.empty([passes.length > 0 ? BIN_WORDS : 1], "u32", { name: "sample radix bins" });
  const selected = gpu.empty([SELECTED_WORDS], "u32", { name: "sample selection" });
  const masses = gpu.empty([2 * blocks], "u32", { name: "sample block masses" });

  gpu.record(blocksKernel, { params, tensors: { logits, history: historyIds, z, bests, bins, state }, workgroups: [blocks], spec });
  gpu.record(bestKernel, { params, tensors: { bests, history: historyIds, out, selected, state }, workgroups: [1], spec });
  if (!greedy) {
    for (const pass of passes) {
      gpu.record(histogramKernel, { params: { ...params, radix_pass: pass }, tensors: { z, selected, bins }, workgroups: [blocks] });
      gpu.record(chooseKernel, { params: { ...params, radix_pass: pass }, tensors: { bins, selected }, workgroups: [1] });
    }
    gpu.record(massesKernel, { params, tensors: { z, selected, masses }, workgroups: [blocks] });
    gpu.record(drawKernel, { params, tensors: { z, masses, selected, history: historyIds, out, state }, workgroups: [1], spec });
  }
  // Safe while the launches are pending: a later user of these buffers runs after them.
  for (const t of [z, bests, bins, selected, masses]) t.dispose();
  release();
  return out;
}
