/**
 * Dawn's own cost of a dispatch, the floor under any recorder: the CPU time of
 * setPipeline + setBindGroup (with a dynamic offset) + dispatchWorkgroups, with every pipeline
 * and bind group made beforehand, as a replayed program (tensor/program.ts) issues them. The
 * dispatches cycle through KINDS different pipelines, each with its own bind group of BINDINGS
 * storage buffers of its own, as a decode step's launches do (one kernel after another, each on
 * its own buffers), so Dawn's state changes and its tracking of each buffer's use are in the
 * floor too. The end-to-end benchmark measures it in the same run as the decode
 * loop: the ratio of the two says what the runtime adds on top of Dawn, on this machine, today.
 *
 * The kernels are one-word stores: only the CPU side is timed (recording, not running), and
 * the commands are submitted afterwards so Dawn does all the work it would for real ones.
 */
import { performance } from "node:perf_hooks";
import { waitForGpu } from "../tensor/dawn_ticks.js";
import type { Gpu } from "../tensor/gpu.js";
import { summarize, type Summary } from "./stats.js";

/** Different pipelines, each with its own buffers, the dispatches cycle through. */
const KINDS = 32;
/** Storage bindings per bind group: a matrix product's (a, b, bias, residual, c). */
const BINDINGS = 5;

const code = (kind: number) => /* wgsl */ `
struct Params { value: u32, pad0: u32, pad1: u32, pad2: u32 }
@group(0) @binding(0) var<uniform> params: Params;
${Array.from({ length: BINDINGS - 1 }, (_, i) => `@group(0) @binding(${i + 1}) var<storage, read> in${i}: array<u32>;`).join("\n")}
@group(0) @binding(${BINDINGS}) var<storage, read_write> out: array<u32>;
@compute @workgroup_size(1)
fn main() { out[${kind}] = params.value + ${Array.from({ length: BINDINGS - 1 }, (_, i) => `in${i}[0]`).join(" + ")}; }`;

/** Microseconds of CPU per bare dispatch: the median over `rounds` passes of `dispatches` dispatches each. */
export async function dawnDispatchFloor(gpu: Gpu, dispatches = 1024, rounds = 5): Promise<Summary> {
  const device = gpu.device;
  const alignment = gpu.limits.minUniformBufferOffsetAlignment;
  // A layout with a dynamic offset, as the runtime's bind groups have.
  const layout = device.createBindGroupLayout({
    entries: [
      { binding: 0, visibility: GPUShaderStage.COMPUTE, buffer: { type: "uniform", hasDynamicOffset: true, minBindingSize: 16 } },
      ...Array.from({ length: BINDINGS - 1 }, (_, i) => ({ binding: i + 1, visibility: GPUShaderStage.COMPUTE, buffer: { type: "read-only-storage" as const } })),
      { binding: BINDINGS, visibility: GPUShaderStage.COMPUTE, buffer: { type: "storage" } },
    ],
  });
  const buffers: GPUBuffer[] = [];
  const buffer = (label: string) => {
    buffers.push(device.createBuffer({ label, size: 4 * KINDS, usage: GPUBufferUsage.STORAGE }));
    return buffers[buffers.length - 1];
  };
  const pipelineLayout = device.createPipelineLayout({ bindGroupLayouts: [layout] });
  const uniforms = device.createBuffer({ label: "dispatch floor parameters", size: alignment * KINDS, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
  const kinds = Array.from({ length: KINDS }, (_, kind) => ({
    pipeline: device.createComputePipeline({
      label: `dispatch floor ${kind}`,
      layout: pipelineLayout,
      compute: { module: device.createShaderModule({ code: code(kind) }), entryPoint: "main" },
    }),
    bindGroup: device.createBindGroup({
      layout,
      entries: [
        { binding: 0, resource: { buffer: uniforms, offset: 0, size: 16 } },
        ...Array.from({ length: BINDINGS - 1 }, (_, i) => ({ binding: i + 1, resource: { buffer: buffer("dispatch floor input") } })),
        { binding: BINDINGS, resource: { buffer: buffer("dispatch floor output") } },
      ],
    }),
    offsets: Uint32Array.of(kind * alignment),
  }));
  const samples: number[] = [];
  try {
    for (let round = 0; round <= rounds; round++) {
      const encoder = device.createCommandEncoder({ label: "dispatch floor" });
      const pass = encoder.beginComputePass();
      const start = performance.now();
      for (let i = 0; i < dispatches; i++) {
        const { pipeline, bindGroup, offsets } = kinds[i % KINDS];
        pass.setPipeline(pipeline);
        pass.setBindGroup(0, bindGroup, offsets, 0, 1);
        pass.dispatchWorkgroups(1);
      }
      const us = ((performance.now() - start) * 1000) / dispatches;
      pass.end();
      device.queue.submit([encoder.finish()]);
      await waitForGpu(device.queue.onSubmittedWorkDone());
      if (round > 0) samples.push(us); // round 0 warms up
    }
  } finally {
    uniforms.destroy();
    for (const b of buffers) b.destroy();
  }
  return summarize(samples);
}
