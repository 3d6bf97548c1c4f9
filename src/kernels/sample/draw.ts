/**
 * The WGSL the sampler's versions share around the draw: what a score weighs, what the
 * penalty does to it, what becomes of the chosen id, and the draw itself over T consecutive
 * chunks of the vocabulary (v1 walks the whole vocabulary so; v2 the one block that holds
 * the drawn mass).
 *
 * The draw: each thread sums the weights of the survivors in its chunk; an exclusive scan
 * over the threads gives every chunk's starting cumulative mass. The thread whose chunk
 * contains the drawn mass walks it in order to the first element where the running sum
 * exceeds it. The ranks among the κ-ties that top-p needs come the same way, from a scan of
 * each chunk's count of elements with key κ.
 */
import { ARGMAX_ORDER_WGSL } from "../argmax.js";
import { uniformWgsl } from "../random.js";
import { u32SourceWgsl } from "../step_value.js";
import { workgroupScanWgsl } from "../wgsl/scan.js";
import { KEY_WGSL } from "./radix_select.js";

/**
 * WGSL: `weight(x, max_score)` and `penalised(x)`, for a kernel with params.inv_temperature
 * and params.penalty.
 */
export const SCORE_WGSL = /* wgsl */ `
// exp((x - max)/T) ≤ 1; exactly 0 where f32 exp underflows, and for x = -Infinity.
fn weight(x: f32, max_score: f32) -> f32 {
  let d = (x - max_score) * params.inv_temperature;
  return select(exp(d), 0.0, d < -88.0);
}

// The repetition penalty: a negative logit is multiplied by it, another divided.
fn penalised(x: f32) -> f32 {
  return select(x / params.penalty, x * params.penalty, x < 0.0);
}`;

/**
 * WGSL: `emit(id)`, which writes the chosen id to out[params.out_index] and appends it to the
 * history at its length (for a kernel with those bindings and `history_length_value()`).
 */
export const EMIT_WGSL = /* wgsl */ `
fn emit(id: u32) {
  out[params.out_index] = id;
  // A run-time length past its max would land on the history's last id: dropped instead.
  let at = history_length_value();
  if (at < arrayLength(&history)) { history[at] = id; }
}`;

/**
 * WGSL: `survives`, `survivor_chunk` and `draw_from_chunks` (see the top of this file), for a
 * kernel with `const T`, the scores `z`, key_of (radix_select.ts), NO_INDEX (argmax.ts) and
 * SCORE_WGSL.
 */
export const DRAW_WGSL = /* wgsl */ `
${workgroupScanWgsl("ties_before", { type: "u32", combine: (a, b) => `${a} + ${b}`, identity: "0u", direction: "prefix" })}
${workgroupScanWgsl("mass_before", { type: "f32", combine: (a, b) => `${a} + ${b}`, identity: "0.0", direction: "prefix" })}
var<workgroup> owner: atomic<u32>; // 1 + the thread whose chunk holds the drawn token, 0: none

// Does the element with this key survive top-k and top-p? The κ-ties survive from rank skip on
// (ranks count them in vocabulary order); *rank advances past each of them.
fn survives(key: u32, kappa: u32, skip: u32, rank: ptr<function, u32>) -> bool {
  if (key != kappa) { return key > kappa; }
  let kept = *rank >= skip;
  *rank += 1u;
  return kept;
}

// A thread's chunk of survivors: [begin, end), the rank of its first κ-tie, its mass.
struct Chunk {
  begin: u32,
  end: u32,
  first_rank: u32,
  mass: f32,
}

// Thread lid's chunk [begin, end), with tie_base κ-ties before the first chunk. Afterwards
// mass_before_exclusive(lid) is where the chunk's mass starts, mass_before_total() the
// chunks' total.
fn survivor_chunk(lid: u32, begin: u32, end: u32, tie_base: u32, kappa: u32, skip: u32, max_score: f32) -> Chunk {
  if (lid == 0u) { atomicStore(&owner, 0u); } // (the scans' barriers come before any use)
  var ties_here = 0u;
  for (var i = begin; i < end; i++) {
    if (key_of(z[i]) == kappa) { ties_here++; }
  }
  ties_before(lid, ties_here);
  let first_rank = tie_base + ties_before_exclusive(lid);
  var rank = first_rank;
  var mass = 0.0;
  for (var i = begin; i < end; i++) {
    let x = z[i];
    if (survives(key_of(x), kappa, skip, &rank)) { mass += weight(x, max_score); }
  }
  mass_before(lid, mass);
  return Chunk(begin, end, first_rank, mass);
}

// The survivor where the running mass of the chunks first exceeds \`drawn\` (a mass from the
// first chunk's start): (1 + the thread whose chunk holds it, its id) for that thread;
// (0, NO_INDEX) for all when no chunk has mass (every weight 0 or NaN).
fn draw_from_chunks(lid: u32, chunk: Chunk, kappa: u32, skip: u32, max_score: f32, drawn: f32) -> vec2u {
  let start = mass_before_exclusive(lid);
  // The last chunk with mass that starts at or below the drawn mass holds it (or, if rounding
  // put it past the end, ends just before it).
  if (chunk.mass > 0.0 && start <= drawn) { atomicMax(&owner, lid + 1u); }
  workgroupBarrier();
  let holder = atomicLoad(&owner);
  if (lid + 1u != holder) { return vec2u(holder, NO_INDEX); }
  var rank = chunk.first_rank;
  var running = 0.0;
  var chosen = NO_INDEX;
  var last = NO_INDEX; // the last survivor so far, in case rounding leaves the drawn mass unreached
  for (var i = chunk.begin; i < chunk.end && chosen == NO_INDEX; i++) {
    let x = z[i];
    if (!survives(key_of(x), kappa, skip, &rank)) { continue; }
    let w = weight(x, max_score);
    if (w > 0.0) {
      running += w;
      last = i;
      if (running > drawn - start) { chosen = i; }
    }
  }
  return vec2u(holder, select(chosen, last, chosen == NO_INDEX));
}`;

/**
 * WGSL: everything a kernel that draws the token and emits it declares besides its own main
 * (the history length and the step, read as the spec says; the random numbers, the argmax
 * order, the keys, SCORE_WGSL, EMIT_WGSL and DRAW_WGSL), for a kernel with `const T`, the
 * scores `z`, `out`, `history` and the sampler's parameters (plan.ts).
 */
export function drawingKernelWgsl(spec: { dynamicHistoryLength: boolean; dynamicStep: boolean }): string {
  return [
    u32SourceWgsl("history_length", spec.dynamicHistoryLength),
    u32SourceWgsl("step", spec.dynamicStep),
    uniformWgsl(),
    ARGMAX_ORDER_WGSL,
    KEY_WGSL,
    SCORE_WGSL,
    EMIT_WGSL,
    DRAW_WGSL,
  ].join("\n");
}
