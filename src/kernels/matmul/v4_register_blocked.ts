/**
 * matmul v4: register blocks straight from global memory, no workgroup memory, no barriers.
 *
 * Each invocation computes a 4×4 block of C: rows m0 .. m0 + 3 (the workgroup's, m0 = 4·wid.y)
 * and columns n, n + 64, n + 128, n + 192 (n = 256·wid.x + lane, so the 64 lanes of a
 * workgroup cover 256 consecutive columns). Each step along K loads one quad (4 K-values, see
 * quads.ts) of each of its 4 rows of A and 4 rows of B and adds 16 dot products into its
 * sums: 8 loads for 64 multiply-adds, with every loaded value used 4 times from registers.
 *
 * This is v3 with the workgroup memory taken out, and it is what lavapipe wants: there,
 * workgroup memory is ordinary memory read lane by lane like any other, and each barrier
 * suspends and resumes every SIMD group of the workgroup, so v3's staging costs more than the
 * global loads it saves: there v4 runs about twice as fast as v3 (bench/RESULTS.md, with the
 * other block shapes tried). It is the fastest version for devices without subgroups; v5
 * shares loads between lanes and goes further.
 *
 * On a GPU the A quads are the same address for all lanes (one broadcast load) and the B quads
 * are 16 bytes from 64 different rows, which the cache absorbs over the following 3 steps; v3
 * (coalesced loads through workgroup memory) remains the better shape there.
 */
import { defineKernel } from "../../tensor/kernel.js";
import type { Tensor } from "../../tensor/tensor.js";
import { FLAGGED_EPILOGUE_WGSL, FLAGGED_PARAMS, flaggedParams } from "./bias_flag.js";
import { MATMUL_BINDINGS, matmulTensors, matmulQuadElementType, planMatmul, type MatmulOptions } from "./common.js";
import { quadFetchWgsl, quadMode, type QuadMode } from "../wgsl/quads.js";
import { range } from "../wgsl/unroll.js";

const LANES = 64;
const BLOCK = 4; // rows and columns per invocation

type BlockedSpec = { aMode: QuadMode; bMode: QuadMode };

const kernel = defineKernel({
  name: "matmul_v4_register_blocked",
  params: FLAGGED_PARAMS,
  bindings: MATMUL_BINDINGS,
  elementType: matmulQuadElementType,
  wgsl: ({ aMode, bMode }: BlockedSpec) => /* wgsl */ `
${FLAGGED_EPILOGUE_WGSL}
${quadFetchWgsl("a", aMode, { length: "params.K" })}
${quadFetchWgsl("b", bMode, { length: "params.K" })}

@compute @workgroup_size(${LANES})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lane: u32) {
  let z = wid.z;
  let m0 = wid.y * ${BLOCK}u;
  let n0 = wid.x * ${LANES * BLOCK}u + lane;
  // Row starts, clamped to the last row: past the edge they load real data that is never stored.
  ${range(BLOCK).map((i) => `let a_row${i} = z * params.a_batch_stride + min(m0 + ${i}u, params.M - 1u) * params.K;`).join("\n  ")}
  ${range(BLOCK).map((j) => `let b_row${j} = z * params.b_batch_stride + min(n0 + ${j * LANES}u, params.N - 1u) * params.K;`).join("\n  ")}
  var acc: array<vec4f, ${BLOCK}>; // acc[i][j]: row m0 + i, column n0 + 64·j
  let quads = (params.K + 3u) / 4u;
  for (var q = 0u; q < quads; q++) {
    let k = q * 4u;
    ${range(BLOCK).map((j) => `let b${j} = quad_b(b_row${j}, k);`).join("\n    ")}
    ${range(BLOCK).map((i) => `{ let a = quad_a(a_row${i}, k); acc[${i}] += vec4f(${range(BLOCK).map((j) => `dot(a, b${j})`).join(", ")}); }`).join("\n    ")}
  }
  ${range(BLOCK)
    .map((i) => range(BLOCK).map((j) => `if (m0 + ${i}u < params.M && n0 + ${j * LANES}u < params.N) { store_c(z, m0 + ${i}u, n0 + ${j * LANES}u, acc[${i}][${j}]); }`).join("\n  "))
    .join("\n  ")}
}`,
});

export function matmulRegisterBlocked(a: Tensor, b: Tensor, options: MatmulOptions = {}): Tensor {
  const call = planMatmul("v4_register_blocked", a, b, options);
  const { M, N, K, batch } = call.shape;
  a.gpu.record(kernel, {
    params: flaggedParams(call),
    tensors: matmulTensors(call),
    workgroups: [Math.ceil(N / (LANES * BLOCK)), Math.ceil(M / BLOCK), batch],
    spec: { aMode: quadMode(a, K, false), bMode: quadMode(b, K, false) },
  });
  return call.c;
}
