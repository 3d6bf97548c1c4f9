/**
 * The thresholds of top-k and top-p, found without sorting: radix select over order-preserving
 * keys, one 8-bit digit per pass, in one workgroup of T = 256 threads (one per bin).
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
 * Each thread histograms its own chunk [begin, end) of the kernel's penalised scores `z`, and
 * the weights come from the kernel's `weight(x, max_score)` (kernel.ts).
 */
import { workgroupScanWgsl } from "../wgsl/scan.js";

/** WGSL: key_of, value_of, the bins, and `top_k_key(...)`, `top_p_cut(...)`. */
export const RADIX_SELECT_WGSL = /* wgsl */ `
fn key_of(x: f32) -> u32 {
  let raw = bitcast<u32>(x);
  let bits = select(raw, 0u, raw == 0x80000000u); // -0 → +0
  return select(bits | 0x80000000u, ~bits, (bits >> 31u) == 1u);
}

fn value_of(key: u32) -> f32 {
  return bitcast<f32>(select(~key, key & 0x7fffffffu, (key >> 31u) == 1u));
}

var<workgroup> bin_count: array<atomic<u32>, T>;
var<workgroup> bin_mass_lo: array<atomic<u32>, T>;
var<workgroup> bin_mass_hi: array<atomic<u32>, T>;
var<workgroup> selection: vec4u; // what the thread of the chosen bin found in a pass, for all

fn bin_add_mass(bin: u32, w: vec2u) {
  let old = atomicAdd(&bin_mass_lo[bin], w.x);
  let high = w.y + select(0u, 1u, old + w.x < old); // the add that wraps the low word carries
  if (high != 0u) { atomicAdd(&bin_mass_hi[bin], high); }
}

// Counts and masses of the bins from bin lid up (thread lid holds bin lid).
${workgroupScanWgsl("count_from_top", { type: "u32", combine: (a, b) => `${a} + ${b}`, identity: "0u", direction: "suffix" })}
${workgroupScanWgsl("mass_from_top", { type: "vec2u", combine: (a, b) => `add64(${a}, ${b})`, identity: "vec2u(0u)", direction: "suffix" })}

// Top-k: the key of the k-th largest score, high digit first. Keys ≥ it survive.
fn top_k_key(lid: u32, begin: u32, end: u32) -> u32 {
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
    let from_here = count_from_top(lid, atomicLoad(&bin_count[lid]));
    let above = count_from_top_exclusive(lid);
    if (from_here >= rank && above < rank) { selection = vec4u(lid, rank - above, 0u, 0u); }
    workgroupBarrier();
    prefix |= selection.x << shift;
    rank = selection.y;
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
    let from_here = add64(above, mass_from_top(lid, mass));
    if (digit == 0u) {
      let total = mass_from_top_total();
      goal = to_fixed(params.top_p * to_float(total));
      if (less64(total, goal)) { goal = total; } // rounding must not put it out of reach
    }
    let beyond = add64(above, mass_from_top_exclusive(lid));
    if (!less64(from_here, goal) && (lid + 1u == T || less64(beyond, goal))) {
      selection = vec4u(lid, atomicLoad(&bin_count[lid]), beyond);
    }
    workgroupBarrier();
    prefix |= selection.x << shift;
    ties = selection.y;
    above = selection.zw;
  }
  // The tie with the r-th highest index survives while above + r·w < goal.
  let w = weight(value_of(prefix), max_score);
  let room = to_float(sub64(goal, above));
  var kept = ties;
  if (w > 0.0) { kept = u32(min(ceil(room / w), f32(ties))); }
  return vec2u(prefix, ties - kept);
}`;
