/**
 * The thresholds of top-k and top-p, found without sorting: radix select over order-preserving
 * keys, one 8-bit digit per pass, with T = 256 threads (one per bin) choosing each digit.
 *
 * Keys. The map f32 → u32 that flips every bit of a negative float and only the sign bit of a
 * positive one preserves order (-0 is first made +0, so equal values get equal keys).
 * Thresholds are then found digit by digit: for the most significant 8 bits of the keys, a
 * 256-bin histogram over the elements; a scan over the bins says which bin holds the answer;
 * the next pass histograms only the elements whose key starts with the digits chosen so far.
 * Four passes pin down a key exactly.
 *
 * - Top-k counts: the bin holding the k-th largest key is where the count of keys from the top
 *   first reaches k. The resulting key τ is the k-th largest score; keys ≥ τ survive.
 * - Top-p masses: the same, histogramming the weights w = exp((x - max)/T) of the top-k
 *   survivors instead of counts (exact fixed-point sums, fixed_point.ts), to find the key κ
 *   where the mass from the top first reaches top_p·W (W = Σw). Keys > κ survive; of the n
 *   elements with key exactly κ, which all weigh the same w_κ, the one with the r-th highest
 *   index survives while G + r·w_κ < top_p·W, G being the mass above κ. So the
 *   c = ceil((top_p·W - G)/w_κ) highest indices among them stay and the n - c lowest go: the
 *   stable-sort tie order of reference.ts.
 *
 * KEY_WGSL and RADIX_SELECT_WGSL are what every version shares: the keys, the workgroup bins,
 * adding a score to them, and choosing a digit from a pass's 256 bins (`top_k_digit`,
 * `top_p_digit`, `top_p_skip`). Since the bins are exact integer sums, a digit chosen from
 * bins summed in one workgroup or over many is the same. ONE_WORKGROUP_SELECT_WGSL is v1's loop
 * over the four passes, each thread histogramming its own chunk [begin, end) of the penalised
 * scores `z`. The weights come from `weight(x, max_score)` (draw.ts).
 */
import { workgroupScanWgsl } from "../wgsl/scan.js";

/** WGSL: key_of (the order-preserving key of a score) and value_of (its inverse). */
export const KEY_WGSL = /* wgsl */ `
fn key_of(x: f32) -> u32 {
  let raw = bitcast<u32>(x);
  let bits = select(raw, 0u, raw == 0x80000000u); // -0 → +0
  return select(bits | 0x80000000u, ~bits, (bits >> 31u) == 1u);
}

fn value_of(key: u32) -> f32 {
  return bitcast<f32>(select(~key, key & 0x7fffffffu, (key >> 31u) == 1u));
}`;

/** WGSL: the workgroup bins, histogram_add, and the digit choices (with KEY_WGSL and FIXED_POINT_WGSL). */
export const RADIX_SELECT_WGSL = /* wgsl */ `

var<workgroup> bin_count: array<atomic<u32>, T>;
var<workgroup> bin_mass_lo: array<atomic<u32>, T>;
var<workgroup> bin_mass_hi: array<atomic<u32>, T>;
var<workgroup> selection: vec4u; // what the thread of the chosen bin found in a pass, for all

fn bin_add_mass(bin: u32, w: vec2u) {
  let old = atomicAdd(&bin_mass_lo[bin], w.x);
  let high = w.y + select(0u, 1u, old + w.x < old); // the add that wraps the low word carries
  if (high != 0u) { atomicAdd(&bin_mass_hi[bin], high); }
}

// Thread lid empties bin lid (the caller then waits at a barrier).
fn clear_bins(lid: u32) {
  atomicStore(&bin_count[lid], 0u);
  atomicStore(&bin_mass_lo[lid], 0u);
  atomicStore(&bin_mass_hi[lid], 0u);
}

// Pass \`digit\` (0: the most significant 8 bits) of a selection among the keys ≥ floor that
// start with the digits chosen so far (prefix): counts x into the bin of its digit and, with
// masses, adds its weight.
fn histogram_add(x: f32, prefix: u32, digit: u32, floor: u32, masses: bool, max_score: f32) {
  let shift = 24u - 8u * digit;
  let prefix_mask = ~(0xffffffffu >> (8u * digit));
  let key = key_of(x);
  if (key >= floor && (key & prefix_mask) == prefix) {
    let bin = (key >> shift) & 0xffu;
    atomicAdd(&bin_count[bin], 1u);
    if (masses) { bin_add_mass(bin, to_fixed(weight(x, max_score))); }
  }
}

// Counts and masses of the bins from bin lid up (thread lid holds bin lid).
${workgroupScanWgsl("count_from_top", { type: "u32", combine: (a, b) => `${a} + ${b}`, identity: "0u", direction: "suffix" })}
${workgroupScanWgsl("mass_from_top", { type: "vec2u", combine: (a, b) => `add64(${a}, ${b})`, identity: "vec2u(0u)", direction: "suffix" })}

// Top-k, one digit: thread lid holds the count of bin lid; the key sought is the rank-th
// largest of those in play. Returns (the digit, the rank the key has in its bin), to all. (The
// choice is in \`selection\`: a caller passes a barrier before it chooses another digit.)
fn top_k_digit(lid: u32, count: u32, rank: u32) -> vec2u {
  // Bin lid holds it if the keys in bins ≥ lid reach rank and those in bins > lid do not.
  let from_here = count_from_top(lid, count);
  let above = count_from_top_exclusive(lid);
  if (from_here >= rank && above < rank) { selection = vec4u(lid, rank - above, 0u, 0u); }
  workgroupBarrier();
  return selection.xy;
}

// top_p·W for the total mass W, never past W (rounding must not put it out of reach).
fn top_p_goal(total: vec2u) -> vec2u {
  let goal = to_fixed(params.top_p * to_float(total));
  return select(goal, total, less64(total, goal));
}

// Top-p, one digit: thread lid holds the count and mass of bin lid; \`above\` is the mass above
// the keys in play. The chosen bin is where the mass from the top first reaches the goal
// (\`*goal\`, set from this pass's total when first). Returns (the digit, its count, the mass
// above it), to all.
fn top_p_digit(lid: u32, count: u32, mass: vec2u, above: vec2u, goal: ptr<function, vec2u>, first: bool) -> vec4u {
  let from_here = add64(above, mass_from_top(lid, mass));
  if (first) { *goal = top_p_goal(mass_from_top_total()); }
  let beyond = add64(above, mass_from_top_exclusive(lid));
  if (!less64(from_here, *goal) && (lid + 1u == T || less64(beyond, *goal))) { selection = vec4u(lid, count, beyond); }
  workgroupBarrier();
  return selection;
}

// How many of the \`ties\` elements with key κ are removed, lowest indices first: the one with
// the r-th highest index survives while above + r·w_κ < goal.
fn top_p_skip(kappa: u32, ties: u32, above: vec2u, goal: vec2u, max_score: f32) -> u32 {
  let w = weight(value_of(kappa), max_score);
  let room = to_float(sub64(goal, above));
  var kept = ties;
  if (w > 0.0) { kept = u32(min(ceil(room / w), f32(ties))); }
  return ties - kept;
}`;

/** WGSL (v1): `top_k_key(lid, begin, end)` and `top_p_cut(...)`, every pass in one workgroup. */
export const ONE_WORKGROUP_SELECT_WGSL = /* wgsl */ `
// Top-k: the key of the k-th largest score, high digit first. Keys ≥ it survive.
fn top_k_key(lid: u32, begin: u32, end: u32) -> u32 {
  var prefix = 0u;
  var rank = params.top_k; // the key sought is the rank-th largest of those matching prefix
  for (var digit = 0u; digit < 4u; digit++) {
    atomicStore(&bin_count[lid], 0u);
    workgroupBarrier();
    for (var i = begin; i < end; i++) { histogram_add(z[i], prefix, digit, 0u, false, 0.0); }
    workgroupBarrier();
    let chosen = top_k_digit(lid, atomicLoad(&bin_count[lid]), rank);
    prefix |= chosen.x << (24u - 8u * digit);
    rank = chosen.y;
  }
  return prefix;
}

// Top-p over the keys ≥ topk_key: (κ, skip), the key where the mass from the top first reaches
// top_p·W (the goal), and how many of the lowest-index ties at κ are removed.
fn top_p_cut(lid: u32, begin: u32, end: u32, topk_key: u32, max_score: f32) -> vec2u {
  var prefix = 0u;
  var above = vec2u(0u); // mass of the survivors above the keys still in play
  var goal = vec2u(0u); // top_p·W
  var ties = 0u;
  for (var digit = 0u; digit < 4u; digit++) {
    clear_bins(lid);
    workgroupBarrier();
    for (var i = begin; i < end; i++) { histogram_add(z[i], prefix, digit, topk_key, true, max_score); }
    workgroupBarrier();
    let mass = vec2u(atomicLoad(&bin_mass_lo[lid]), atomicLoad(&bin_mass_hi[lid]));
    let chosen = top_p_digit(lid, atomicLoad(&bin_count[lid]), mass, above, &goal, digit == 0u);
    prefix |= chosen.x << (24u - 8u * digit);
    ties = chosen.y;
    above = chosen.zw;
  }
  return vec2u(prefix, top_p_skip(prefix, ties, above, goal, max_score));
}`;
