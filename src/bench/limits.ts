/**
 * The device's limits, measured: how fast it moves memory and how fast it does arithmetic.
 * Every kernel figure is then given as a fraction of these (a roofline).
 *
 * - copy: a buffer-to-buffer copy by the copy engine (bytes read + bytes written);
 * - read: a kernel that only reads a large buffer and sums it, writing nothing (bytes read);
 * - fma f32 / f16: a kernel of independent chains of vec4 fused multiply-adds that never touches
 *   memory; 2 FLOPs per multiply-add per lane. Eight chains per thread so that the latency of
 *   one FMA hides behind the others.
 *
 * The bandwidth ceiling is the better of copy and read; the compute ceiling is the f32 rate,
 * since every kernel here computes in f32 whatever its storage dtype (f16 only halves the
 * bytes). Buffers are large (256 MiB, or the largest storage binding) so no cache holds them.
 */
import { randomFill } from "../kernels/random_fill.js";
import type { Gpu } from "../tensor/gpu.js";
import { defineKernel, flatGrid, FLAT_WORKGROUP_WGSL } from "../tensor/kernel.js";
import { summarize, type Summary } from "./stats.js";
import { timeGpu, type TimingMethod, type TimingOptions } from "./timing.js";

export interface LimitMeasurement {
  /** GB/s (1e9 bytes) for bandwidths, GFLOP/s for arithmetic. */
  value: number;
  unit: "GB/s" | "GFLOP/s";
  /** Bytes moved or FLOPs done by one run. */
  work: number;
  /** Milliseconds per run. */
  time: Summary;
  method: TimingMethod;
  /** What was measured, in words. */
  what: string;
}

export interface DeviceLimits {
  copy: LimitMeasurement;
  read: LimitMeasurement;
  fmaF32: LimitMeasurement;
  /** null when the adapter has no shader-f16. */
  fmaF16: LimitMeasurement | null;
  /** The bandwidth ceiling: the better of copy and read, GB/s. */
  bandwidthGBps: number;
  /** The compute ceiling: the f32 FMA rate, GFLOP/s. */
  computeGFlops: number;
}

export interface LimitsOptions {
  /** Fewer and shorter samples. */
  quick?: boolean;
  /** Largest buffer used, in bytes (default 256 MiB, less where the device allows less). */
  maxBytes?: number;
}

const WORKGROUP = 256;
const FMA_CHAINS = 8;
const FMA_ITERATIONS = 1024;
/** FLOPs one FMA thread does: chains × 4 lanes × 2 per multiply-add × iterations. */
const FLOPS_PER_FMA_THREAD = FMA_CHAINS * 4 * 2 * FMA_ITERATIONS;

/**
 * Each workgroup sums one contiguous block, its threads interleaved within it: neighbouring
 * threads read neighbouring addresses (what a GPU coalesces), and each workgroup streams through
 * one region (what a CPU's prefetcher follows, on lavapipe).
 */
const readKernel = defineKernel({
  name: "bench_read",
  params: { count: "u32", block: "u32", never: "f32" },
  bindings: { x: "read", out: "read_write" },
  elementType: (binding) => (binding === "x" ? "vec4<f32>" : "f32"),
  wgsl: () => /* wgsl */ `
${FLAT_WORKGROUP_WGSL}
@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let begin = flat_workgroup(wid, nwg) * params.block;
  let end = min(begin + params.block, params.count);
  var acc = vec4f(0.0);
  for (var i = begin + lid; i < end; i += ${WORKGROUP}u) { acc += x[i]; }
  // Never true ('never' is a value no sum of this data reaches), but the compiler cannot know:
  // the loads stay, and nothing is written.
  let total = acc.x + acc.y + acc.z + acc.w;
  if (total == params.never) { out[0] = total; }
}`,
});

const fmaKernel = defineKernel({
  name: "bench_fma",
  params: { iterations: "u32", multiplier: "f32", addend: "f32", never: "f32" },
  bindings: { out: "read_write" },
  // The spec is named f16 because that is what makes the prelude enable f16.
  wgsl: ({ f16 }: { f16: boolean }) => {
    const T = f16 ? "f16" : "f32";
    const chains = Array.from({ length: FMA_CHAINS }, (_, j) => j);
    return /* wgsl */ `
${FLAT_WORKGROUP_WGSL}
@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let t = flat_workgroup(wid, nwg) * ${WORKGROUP}u + lid;
  let start = ${T}(f32(t % 1024u) * 0.0001);
  let m = vec4<${T}>(${T}(params.multiplier));
  let c = vec4<${T}>(${T}(params.addend));
${chains.map((j) => `  var acc${j} = vec4<${T}>(start + ${T}(${j}.0 * 0.01));`).join("\n")}
  for (var i = 0u; i < params.iterations; i++) {
${chains.map((j) => `    acc${j} = fma(acc${j}, m, c);`).join("\n")}
  }
  let total = ${chains.map((j) => `acc${j}`).join(" + ")};
  if (f32(total.x + total.y + total.z + total.w) == params.never) { out[0] = f32(total.x); }
}`;
  },
});

/** A value none of the benchmark sums reaches, so their guarded stores never happen. */
const NEVER = -1.2345e30;

function timingOptions(quick: boolean, method?: TimingMethod): TimingOptions {
  return quick
    ? { warmup: 1, repeats: 5, minRepeats: 3, budgetMs: 1000, minSampleMs: 20, method }
    : { warmup: 2, repeats: 15, minRepeats: 5, budgetMs: 4000, minSampleMs: 50, method };
}

function measurement(work: number, unit: LimitMeasurement["unit"], samples: number[], method: TimingMethod, what: string): LimitMeasurement {
  const time = summarize(samples);
  return { value: work / (time.median * 1e-3) / 1e9, unit, work, time, method, what };
}

/** Copy-engine bandwidth: one buffer copied to another, bytes read + written. */
export async function measureCopy(gpu: Gpu, bytes: number, quick: boolean): Promise<LimitMeasurement> {
  // What the source holds does not matter to a copy (WebGPU zero-fills it on first use).
  const src = gpu.empty([bytes / 4], "f32", { name: "bench copy source", persistent: true });
  const dst = gpu.empty([bytes / 4], "f32", { name: "bench copy target", persistent: true });
  try {
    // Copies are not inside a compute pass, which is what timestamps time: the wall clock it is.
    const timing = await timeGpu(gpu, () => gpu.copyBuffer(src.buffer, 0, dst.buffer, 0, bytes), timingOptions(quick, "wall"));
    return measurement(2 * bytes, "GB/s", timing.samples, timing.method, `copyBufferToBuffer of ${mib(bytes)} (read + written)`);
  } finally {
    src.dispose();
    dst.dispose();
  }
}

/** Read bandwidth: a kernel that reads every element of a buffer once. */
export async function measureRead(gpu: Gpu, bytes: number, quick: boolean): Promise<LimitMeasurement> {
  const x = randomFill(gpu.empty([bytes / 4], "f32", { name: "bench read source", persistent: true }), { seed: 2 });
  const out = gpu.empty([4], "f32", { name: "bench read sink" });
  try {
    const count = bytes / 16;
    // Blocks of 16 vec4 per thread: enough workgroups to fill a large GPU, long enough streams for a CPU.
    const block = WORKGROUP * 16;
    const workgroups = Math.ceil(count / block);
    const timing = await timeGpu(
      gpu,
      () => gpu.record(readKernel, { params: { count, block, never: NEVER }, tensors: { x, out }, workgroups: flatGrid(workgroups) }),
      timingOptions(quick),
    );
    return measurement(bytes, "GB/s", timing.samples, timing.method, `a kernel summing ${mib(bytes)} (read only)`);
  } finally {
    x.dispose();
    out.dispose();
  }
}

/** Arithmetic rate: chains of vec4 FMAs in f32 or f16, sized to run for a while. */
export async function measureFma(gpu: Gpu, half: boolean, quick: boolean): Promise<LimitMeasurement> {
  const out = gpu.empty([4], "f32", { name: "bench fma sink" });
  // Values converge to addend / (1 - multiplier) = 1: no overflow, no subnormals.
  const params = { iterations: FMA_ITERATIONS, multiplier: 0.99, addend: 0.01, never: NEVER };
  const launch = (workgroups: number) => () =>
    gpu.record(fmaKernel, { params, tensors: { out }, workgroups: flatGrid(workgroups), spec: { f16: half } });
  try {
    // Grow the grid until one run lasts long enough to fill the device and be timed well.
    const target = quick ? 20 : 100;
    let workgroups = 16;
    const maxWorkgroups = 65535 * 64;
    for (;;) {
      const probe = await timeGpu(gpu, launch(workgroups), { warmup: 1, repeats: 1, minRepeats: 1, minSampleMs: 0 });
      const ms = probe.samples[0];
      if (ms >= target / 2 || workgroups >= maxWorkgroups) {
        if (ms < target) workgroups = Math.min(maxWorkgroups, Math.ceil((workgroups * target) / Math.max(ms, 1e-3)));
        break;
      }
      workgroups *= 8;
    }
    const timing = await timeGpu(gpu, launch(workgroups), timingOptions(quick));
    const flops = workgroups * WORKGROUP * FLOPS_PER_FMA_THREAD;
    const what = `${FMA_CHAINS} chains × ${FMA_ITERATIONS} vec4<${half ? "f16" : "f32"}> FMAs per thread, ${workgroups * WORKGROUP} threads`;
    return measurement(flops, "GFLOP/s", timing.samples, timing.method, what);
  } finally {
    out.dispose();
  }
}

export async function measureLimits(gpu: Gpu, options: LimitsOptions = {}): Promise<DeviceLimits> {
  const quick = options.quick ?? false;
  const limit = options.maxBytes ?? 256 * 2 ** 20;
  const copyBytes = Math.min(limit, floorTo(gpu.limits.maxBufferSize, 16));
  const readBytes = Math.min(limit, floorTo(gpu.limits.maxStorageBufferBindingSize, 16));
  const copy = await measureCopy(gpu, copyBytes, quick);
  const read = await measureRead(gpu, readBytes, quick);
  const fmaF32 = await measureFma(gpu, false, quick);
  const fmaF16 = gpu.hasF16 ? await measureFma(gpu, true, quick) : null;
  return {
    copy,
    read,
    fmaF32,
    fmaF16,
    bandwidthGBps: Math.max(copy.value, read.value),
    computeGFlops: fmaF32.value,
  };
}

function floorTo(n: number, multiple: number): number {
  return Math.floor(n / multiple) * multiple;
}

function mib(bytes: number): string {
  return `${+(bytes / 2 ** 20).toFixed(1)} MiB`;
}
