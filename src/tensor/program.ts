/**
 * A recorded program: a run of kernel launches captured once (Gpu.capture) and replayed many
 * times (Gpu.replay), the way decoding runs the same step every token.
 *
 * Recording a launch the ordinary way (Gpu.record) costs the model code that plans it (shape
 * checks, allocations, parameter packing) and the runtime's lookups (pipeline, bind group);
 * only the last few calls are Dawn's. A captured launch keeps the outcome of all that: its
 * pipeline, its bind group, its parameter block (in the program's own uniform buffer, written
 * once) and its workgroup counts. Replaying is then setPipeline / setBindGroup /
 * dispatchWorkgroups per launch and nothing else: Dawn's own floor.
 *
 * What makes it valid: a replay computes what the capture would compute only if nothing it
 * depends on changed. Weights, caches and other tensors made before the capture are bound by
 * buffer, so their contents may change between replays (that is the point: the KV-cache
 * grows, the sampled token changes), but they must stay alive. Numbers that change per token
 * must not be baked into parameters: they are read on the GPU from a state tensor
 * (kernels/step_value.ts). The temporaries the program made while being captured become its
 * own: their buffers are held out of the pool until the program is disposed, so nothing else
 * is handed a buffer a replay writes.
 */
import type { LaunchRecord } from "./gpu.js";

/** One captured launch. */
export interface CapturedLaunch {
  pipeline: GPUComputePipeline;
  bindGroup: GPUBindGroup;
  /** The dynamic offset of its parameter block. */
  offset: number;
  workgroups: readonly [number, number, number];
  record: LaunchRecord;
}

export class RecordedProgram {
  private disposed = false;
  /** The launches as flat arrays, the way encode() walks them. */
  private readonly flat: { pipelines: GPUComputePipeline[]; bindGroups: GPUBindGroup[]; offsets: Uint32Array; grid: Uint32Array };

  constructor(
    readonly label: string,
    readonly launches: readonly CapturedLaunch[],
    /** Holds every launch's parameter block. */
    private readonly uniforms: GPUBuffer | null,
    /** Buffers of the temporaries made during the capture, held out of the pool. */
    private readonly workspace: readonly GPUBuffer[],
    private readonly giveBack: (buffers: readonly GPUBuffer[]) => void,
  ) {
    this.flat = {
      pipelines: launches.map((l) => l.pipeline),
      bindGroups: launches.map((l) => l.bindGroup),
      offsets: Uint32Array.from(launches, (l) => l.offset),
      grid: Uint32Array.from(launches.flatMap((l) => l.workgroups)),
    };
  }

  get dispatches(): number {
    return this.launches.length;
  }

  get isDisposed(): boolean {
    return this.disposed;
  }

  /** Bytes of GPU memory held by the program's temporaries. */
  get workspaceBytes(): number {
    return this.workspace.reduce((sum, b) => sum + b.size, 0);
  }

  /** Records every launch into `pass`, in order: nothing but Dawn's three calls each. */
  encode(pass: GPUComputePassEncoder): void {
    const { pipelines, bindGroups, offsets, grid } = this.flat;
    let current: GPUComputePipeline | null = null;
    for (let i = 0; i < pipelines.length; i++) {
      if (pipelines[i] !== current) pass.setPipeline((current = pipelines[i]));
      pass.setBindGroup(0, bindGroups[i], offsets, i, 1);
      pass.dispatchWorkgroups(grid[3 * i], grid[3 * i + 1], grid[3 * i + 2]);
    }
  }

  /** Gives the workspace back to the pool and frees the parameter buffer. Commands already submitted still run. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.giveBack(this.workspace);
    this.uniforms?.destroy();
  }
}
