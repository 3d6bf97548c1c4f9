/**
 * randomFill: fill a float tensor with seeded pseudo-random values, on the GPU.
 *
 * What the benchmarks build models of real size from: a LLaMA-7B's 13 GB of weights would take
 * minutes to generate on the CPU and upload, and seconds to write here, with no host memory.
 *
 *   x[i] = mean + halfWidth·(2·u(seed, offset + i) - 1),   halfWidth = std·√3
 *
 * u(seed, j) is the counter-based uniform number of the sampler (random.ts: the PCG hash applied
 * twice, 24 bits, exact in float32), so element j of a stream is the same whatever launch
 * writes it: a matrix stored as row parts gets, part by part (each with its `offset`), exactly
 * the values it would get whole. The values are uniform in [mean - halfWidth, mean + halfWidth),
 * whose standard deviation is `std`: what matters for timing is only that they are finite and
 * of a realistic size. Math in f32, one rounding on store for f16 tensors.
 */
import { bytesPerElement, isFloat } from "../tensor/dtype.js";
import { check } from "../tensor/errors.js";
import { defineKernel, flatGrid, FLAT_WORKGROUP_WGSL } from "../tensor/kernel.js";
import type { Tensor } from "../tensor/tensor.js";
import { uniform, uniformWgsl } from "./random.js";

export interface RandomFillOptions {
  /** Selects the stream: any integer in [0, 2^32). */
  seed: number;
  /** Centre of the values (default 0). */
  mean?: number;
  /** Standard deviation of the values (default 1). */
  std?: number;
  /** Index of element 0 in the stream (for one row part of a bigger matrix). Default 0. */
  offset?: number;
}

// ------------------------------------------------------------------ CPU reference (float64)

/** The `count` values randomFill writes with these options. */
export function randomFillReference(count: number, { seed, mean = 0, std = 1, offset = 0 }: RandomFillOptions): Float64Array {
  const halfWidth = std * Math.sqrt(3);
  return Float64Array.from({ length: count }, (_, i) => mean + halfWidth * (2 * uniform(seed, (offset + i) >>> 0) - 1));
}

// ------------------------------------------------------------------ WGSL

const WORKGROUP = 256;

/**
 * One thread per 4 elements when the tensor allows it (a multiple of 4, aligned: the `vec4`
 * specialization stores them at once and hashes 4 counters with vector operations), else one
 * per element. Both compute exactly the same values.
 */
const randomFillKernel = defineKernel({
  name: "random_fill",
  params: { count: "u32", offset: "u32", seed: "u32", mean: "f32", half_width: "f32" },
  bindings: { x: "read_write" },
  elementType: (_binding, dtype, { vec4 }) => (vec4 ? `vec4<${dtype}>` : dtype),
  wgsl: ({ vec4 }: { vec4: boolean }) => {
    const width = vec4 ? 4 : 1;
    return /* wgsl */ `
${FLAT_WORKGROUP_WGSL}
${uniformWgsl(vec4)}

@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = flat_workgroup(wid, nwg) * ${WORKGROUP}u + lid;
  if (i * ${width}u >= params.count) { return; }
  let index = params.offset + i * ${width}u${vec4 ? " + vec4u(0u, 1u, 2u, 3u)" : ""};
  let u = uniform_random(params.seed, index);
  x[i] = ${vec4 ? "vec4<x_t>" : "x_t"}(params.mean + params.half_width * (2.0 * u - 1.0));
}`;
  },
});

// ------------------------------------------------------------------ launch

/** Overwrites every element of x (f32 or f16) with the stream's values; returns x. */
export function randomFill(x: Tensor, options: RandomFillOptions): Tensor {
  const { seed, mean = 0, std = 1, offset = 0 } = options;
  check(isFloat(x.dtype), () => `randomFill: ${x.describe()} is not f32 or f16`);
  check(Number.isInteger(seed) && seed >= 0 && seed < 2 ** 32, () => `randomFill: seed must be an integer in [0, 2^32), got ${seed}`);
  check(Number.isInteger(offset) && offset >= 0 && offset < 2 ** 32, () => `randomFill: offset must be an integer in [0, 2^32), got ${offset}`);
  check(Number.isFinite(mean) && Number.isFinite(std) && std >= 0, () => `randomFill: mean ${mean} and std ${std} must be finite, std >= 0`);
  if (x.size === 0) return x;
  const vec4 = x.size % 4 === 0 && x.byteOffset % (4 * bytesPerElement(x.dtype)) === 0;
  x.gpu.record(randomFillKernel, {
    params: { count: x.size, offset, seed, mean, half_width: std * Math.sqrt(3) },
    tensors: { x },
    workgroups: flatGrid(Math.ceil(x.size / (vec4 ? 4 : 1) / WORKGROUP)),
    spec: { vec4 },
  });
  return x;
}
