/**
 * matvec: C = A·Bᵀ for a handful of rows of A (decoding: one token, M = 1).
 *
 * With so few rows there is almost no reuse to exploit: every weight is read once and used M
 * times, so the kernel is bound by how fast B streams from memory. The layout is chosen for
 * that stream: a workgroup of 256 threads takes 8 rows of B (8 outputs), 32 threads per row.
 * The 32 threads of a row walk along K together, each loading 4 consecutive weights at a time
 * (a vec4 when K % 4 == 0), so together they read 128 contiguous weights per step: fully
 * coalesced. Each thread keeps one partial sum per row of A; at the end the 32 partial sums of
 * each output are added in workgroup memory by a tree reduction.
 */
import { check } from "../../tensor/errors.js";
import { defineKernel, flatGrid, FLAT_WORKGROUP_WGSL } from "../../tensor/kernel.js";
import type { Tensor } from "../../tensor/tensor.js";
import { quadFetchWgsl, quadMode, type QuadMode } from "../wgsl/quads.js";
import { epilogueWgsl, MATMUL_BINDINGS, matmulTensors, MATMUL_PARAMS, matmulParams, matmulQuadElementType, planMatmul, type MatmulOptions } from "./common.js";

/** The most rows of A one launch handles (one accumulator per row lives in registers). */
export const MATVEC_MAX_ROWS = 8;
const LANES = 32; // threads per output
const OUTPUTS = 8; // outputs per workgroup

const kernel = defineKernel({
  name: "matvec",
  params: MATMUL_PARAMS,
  bindings: MATMUL_BINDINGS,
  elementType: matmulQuadElementType,
  wgsl: ({ hasBias, hasResidual, aMode, bMode, rows }: { hasBias: boolean; hasResidual: boolean; aMode: QuadMode; bMode: QuadMode; rows: number }) => /* wgsl */ `
${epilogueWgsl(hasBias, hasResidual)}
${FLAT_WORKGROUP_WGSL}

const ROWS = ${rows}u;
const LANES = ${LANES}u;
var<workgroup> partial: array<array<f32, ${LANES}>, ${OUTPUTS * rows}>;

${quadFetchWgsl("a", aMode, { length: "params.K" })}
${quadFetchWgsl("b", bMode, { length: "params.K" })}

@compute @workgroup_size(${LANES}, ${OUTPUTS})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let n = flat_workgroup(wid, nwg) * ${OUTPUTS}u + lid.y;
  let lane = lid.x;
  var acc: array<f32, ${rows}>;
  if (n < params.N) {
    let b_row = n * params.K;
    for (var k = lane * 4u; k < params.K; k += LANES * 4u) {
      let w = quad_b(b_row, k);
      for (var m = 0u; m < ROWS; m++) {
        acc[m] += dot(quad_a(m * params.K, k), w);
      }
    }
  }
  for (var m = 0u; m < ROWS; m++) { partial[lid.y * ROWS + m][lane] = acc[m]; }
  workgroupBarrier();
  for (var width = LANES / 2u; width > 0u; width /= 2u) {
    if (lane < width) {
      for (var m = 0u; m < ROWS; m++) {
        partial[lid.y * ROWS + m][lane] += partial[lid.y * ROWS + m][lane + width];
      }
    }
    workgroupBarrier();
  }
  if (lane < ROWS && n < params.N) {
    store_c(0u, lane, n, partial[lid.y * ROWS + lane][0]);
  }
}`,
});

export function matvec(a: Tensor, b: Tensor, options: MatmulOptions = {}): Tensor {
  const call = planMatmul("matvec", a, b, options, ({ M, batchedB }) => {
    check(!batchedB, () => `matvec: B ${b.describe()} must be a single [N, K] matrix`);
    check(M >= 1 && M <= MATVEC_MAX_ROWS, () => `matvec: A ${a.describe()} has ${M} rows; matvec takes 1 to ${MATVEC_MAX_ROWS}`);
  });
  const { M, N, K } = call.shape;
  a.gpu.record(kernel, {
    params: matmulParams(call),
    tensors: matmulTensors(call),
    workgroups: flatGrid(Math.ceil(N / OUTPUTS)),
    spec: { hasBias: call.hasBias, hasResidual: call.hasResidual, aMode: quadMode(a, K, false), bMode: quadMode(b, K, false), rows: M },
  });
  return call.c;
}
