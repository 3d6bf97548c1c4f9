/**
 * matmul v6: v5 with f16 operands read as packed pairs.
 *
 * The kernel is v5's, line for line; only the loads of f16 operands change. v5 binds an f16
 * matrix as vec4<f16> and reads a quad as four 16-bit components; v6 binds it as vec2<u32> and
 * reads the same 8 bytes as two 32-bit words, which unpack2x16float widens to two f32 each.
 * The math stays f32 (each product of halves is exact in f32, and the sums accumulate in f32).
 *
 * On lavapipe a load whose address differs between lanes costs about the same per component
 * whatever its width, so two components instead of four halve the load work of f16 operands
 * (the gain is largest where loads are the largest share of the work; bench/RESULTS.md). f32
 * operands are read exactly as in v5. On a GPU both forms are one
 * 8-byte load per lane; the unpack is a couple of ALU instructions.
 */
import type { Tensor } from "../../tensor/tensor.js";
import type { MatmulOptions } from "./common.js";
import { defineBroadcastKernel, launchBroadcast } from "./v5_subgroup_broadcast.js";

const kernel = defineBroadcastKernel("matmul_v6_f16_packed");

export function matmulF16Packed(a: Tensor, b: Tensor, options: MatmulOptions = {}): Tensor {
  return launchBroadcast(kernel, "v6_f16_packed", true, a, b, options);
}
