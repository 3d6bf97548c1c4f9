/**
 * matmul: C = A·Bᵀ (+ bias), with B a weight stored [N, K] as nn.Linear stores it.
 *
 * The versions live side by side, each in its own file, each faster than the last on large
 * products (see bench/ for the measurements):
 *   v1_naive          one thread per output, everything from global memory
 *   v2_tiled          16×16 tiles staged in workgroup memory
 *   v3_register_tiled 64×64 tiles, 4×4 outputs per thread in registers, vec4 loads
 *   matvec            1 to 8 rows of A (decoding): streams B once, coalesced, reduces over K
 *
 * The rule the runtime uses: a single (non-batched) weight with at most MATVEC_MAX_ROWS rows of A
 * goes to matvec, where the cost is reading B; everything else to v3.
 */
import type { Tensor } from "../../tensor/tensor.js";
import type { MatmulOptions } from "./common.js";
import { matvec, MATVEC_MAX_ROWS } from "./matvec.js";
import { matmulNaive } from "./v1_naive.js";
import { matmulTiled } from "./v2_tiled.js";
import { matmulRegisterTiled } from "./v3_register_tiled.js";

export type { MatmulOptions } from "./common.js";
export { matmulReference, type MatmulShape } from "./reference.js";

export type MatmulVersion = (a: Tensor, b: Tensor, options?: MatmulOptions) => Tensor;

/** Every version by name, for tests and benchmarks. */
export const MATMUL_VERSIONS: Record<string, MatmulVersion> = {
  v1_naive: matmulNaive,
  v2_tiled: matmulTiled,
  v3_register_tiled: matmulRegisterTiled,
  matvec,
};

export function matmul(a: Tensor, b: Tensor, options: MatmulOptions = {}): Tensor {
  const rows = a.size / Math.max(a.dim(-1), 1);
  if (b.rank === 2 && rows <= MATVEC_MAX_ROWS) return matvec(a, b, options);
  return matmulRegisterTiled(a, b, options);
}
