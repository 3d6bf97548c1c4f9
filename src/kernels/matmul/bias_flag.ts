/**
 * The store of the versions from v4 on: like common.ts's epilogue, but whether there is a bias
 * (and a residual) is a uniform flag rather than a specialization. These kernels are long, unrolled code that
 * lavapipe's LLVM takes seconds to compile; a flag checked once per stored output costs
 * nothing measurable and halves the number of pipelines to compile.
 */
import { MATMUL_PARAMS, matmulParams, type MatmulCall } from "./common.js";

export const FLAGGED_PARAMS = { ...MATMUL_PARAMS, has_bias: "u32", has_residual: "u32" } as const;

export function flaggedParams(call: MatmulCall): Record<keyof typeof FLAGGED_PARAMS, number> {
  return { ...matmulParams(call), has_bias: call.hasBias ? 1 : 0, has_residual: call.hasResidual ? 1 : 0 };
}

/** WGSL: `store_c(z, m, n, sum)` stores one finished sum, adding bias[n] and the residual when their flags are set. */
export const FLAGGED_EPILOGUE_WGSL = /* wgsl */ `
fn store_c(z: u32, m: u32, n: u32, sum: f32) {
  let i = (z * params.M + m) * params.c_row_stride + params.c_column + n;
  var value = sum;
  if (params.has_bias != 0u) { value += f32(bias[n]); }
  if (params.has_residual != 0u) { value += f32(residual[i]); }
  c[i] = c_t(value);
}`;
