/**
 * matmul v1: naive. One thread per output element walks the whole K dimension, reading its row
 * of A and its row of B straight from global memory.
 *
 * Every element of A is read N times and every element of B M times, with nothing shared
 * between threads: the kernel is bound by memory traffic at about 2 loads per multiply-add.
 * It is the baseline the other versions are measured against, and the easiest to check.
 */
import { defineKernel } from "../../tensor/kernel.js";
import type { Tensor } from "../../tensor/tensor.js";
import { epilogueWgsl, MATMUL_BINDINGS, matmulTensors, MATMUL_PARAMS, matmulParams, planMatmul, type MatmulOptions } from "./common.js";

const WG = 16;

const kernel = defineKernel({
  name: "matmul_v1_naive",
  params: MATMUL_PARAMS,
  bindings: MATMUL_BINDINGS,
  wgsl: ({ hasBias, hasResidual }: { hasBias: boolean; hasResidual: boolean }) => /* wgsl */ `
${epilogueWgsl(hasBias, hasResidual)}

@compute @workgroup_size(${WG}, ${WG})
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let n = gid.x;
  let m = gid.y;
  let z = gid.z;
  if (m >= params.M || n >= params.N) { return; }
  let a_row = z * params.a_batch_stride + m * params.K;
  let b_row = z * params.b_batch_stride + n * params.K;
  var sum = 0.0;
  for (var k = 0u; k < params.K; k++) {
    sum += f32(a[a_row + k]) * f32(b[b_row + k]);
  }
  store_c(z, m, n, sum);
}`,
});

export function matmulNaive(a: Tensor, b: Tensor, options: MatmulOptions = {}): Tensor {
  const call = planMatmul("v1_naive", a, b, options);
  const { M, N, batch } = call.shape;
  a.gpu.record(kernel, {
    params: matmulParams(call),
    tensors: matmulTensors(call),
    workgroups: [Math.ceil(N / WG), Math.ceil(M / WG), batch],
    spec: { hasBias: call.hasBias, hasResidual: call.hasResidual },
  });
  return call.c;
}
