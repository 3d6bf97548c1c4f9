/**
 * The runtime's random numbers, the same in WGSL and TypeScript: the sampler's draws (so a
 * seeded run draws the same u on any device, and the reference replays it) and randomFill's
 * values (so element j of a stream is the same whatever launch writes it).
 *
 * A counter-based generator: the PCG hash (Jarzynski & Olano, "Hash Functions for GPU
 * Rendering", 2020) applied twice to (counter, seed), with the top 24 bits as u ∈ [0, 1), so
 * that every u is an exact float32. No state is kept: number `counter` of stream `seed` is a
 * pure function of the two.
 */

/** The PCG hash of a u32 (one LCG step, then PCG's output permutation): a well-mixed u32. */
function pcgHash(x: number): number {
  const state = (Math.imul(x, 747796405) + 2891336453) >>> 0;
  const word = Math.imul((state >>> ((state >>> 28) + 4)) ^ state, 277803737) >>> 0;
  return ((word >>> 22) ^ word) >>> 0;
}

/** The uniform number in [0, 1) at `counter` in stream `seed`: 24 random bits, exact in float32. */
export function uniform(seed: number, counter: number): number {
  return (pcgHash((pcgHash(counter) ^ seed) >>> 0) >>> 8) / 2 ** 24;
}

/**
 * WGSL: `pcg_hash(x)` and `uniform_random(seed: u32, counter) -> f32`, as above, on one counter
 * (u32 → f32) or, with `vec4`, four at once (vec4u → vec4f).
 */
export function uniformWgsl(vec4 = false): string {
  const T = vec4 ? "vec4u" : "u32";
  const F = vec4 ? "vec4f" : "f32";
  return /* wgsl */ `
fn pcg_hash(x: ${T}) -> ${T} {
  let state = x * 747796405u + 2891336453u;
  let word = ((state >> ((state >> ${T}(28u)) + 4u)) ^ state) * 277803737u;
  return (word >> ${T}(22u)) ^ word;
}

fn uniform_random(seed: u32, counter: ${T}) -> ${F} {
  return ${F}(pcg_hash(pcg_hash(counter) ^ ${T}(seed)) >> ${T}(8u)) * (1.0 / 16777216.0);
}`;
}
