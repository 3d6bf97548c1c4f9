/**
 * The GPU: one Dawn device, its buffer pool, its pipeline cache and the command recorder.
 *
 * Recording model: `record` appends a kernel's dispatch to one open command encoder (inside
 * one compute pass); nothing is submitted until someone needs a result (`read`, `sync`) or
 * calls `submit()`. A whole forward pass therefore becomes a single queue submission. Kernel
 * parameters go into a CPU-side uniform staging area and are uploaded with one writeBuffer per
 * 64 KiB chunk just before the submit; each launch binds its slice with a dynamic offset.
 *
 * Errors: each submission is wrapped in WebGPU error scopes; their results are checked at the
 * next `read`/`sync`, and any validation, out-of-memory or internal error is thrown as a
 * GpuError whose message carries Dawn's text, which names the kernel and shapes through the
 * labels we give every bind group. A lost device is reported on stderr when it happens and
 * every later call throws DeviceLostError.
 */
import { performance } from "node:perf_hooks";
import { bytesPerElement, decodeHost, encodeHost, type DType, type HostArray } from "./dtype.js";
import { DeviceLostError, GpuError, ShapeError, shapeString } from "./errors.js";
import type { AnyKernel, Kernel, Access, ParamType, SpecValue } from "./kernel.js";
import { poison } from "./poison.js";
import { BufferPool, bufferId, type MemoryStats } from "./pool.js";
import { RecordedProgram, type CapturedLaunch } from "./program.js";
import { StagingBuffers } from "./readback.js";
import { Storage, Tensor, elementCount, validateShape } from "./tensor.js";
import { requestDevice, type GpuOptions, type AdapterSummary } from "./adapter.js";
import { waitForGpu } from "./dawn_ticks.js";

export type { GpuOptions } from "./adapter.js";

const UNIFORM_CHUNK_BYTES = 64 * 1024;

/** How long a failed GPU promise waits for `device.lost` to say whether the device is gone. */
const LOSS_REPORT_WAIT_MS = 1000;

interface UniformChunk {
  buffer: GPUBuffer;
  data: Uint8Array;
}

export interface Launch<P extends Record<string, ParamType>, B extends Record<string, Access>, S> {
  params: Record<keyof P, number>;
  tensors: Record<keyof B, Tensor>;
  /** Workgroup counts; see `flatGrid` for launches above 65535 workgroups. */
  workgroups: readonly [number, number?, number?];
  spec?: S;
}

/** One recorded launch, as a launch observer sees it. */
export interface LaunchRecord {
  kernel: AnyKernel;
  tensors: Readonly<Record<string, Tensor>>;
  spec: Readonly<Record<string, SpecValue>>;
  workgroups: readonly [number, number, number];
}

/** A launch captured but not yet turned into a program's (its bind group waits for the program's uniform buffer). */
interface PendingLaunch {
  pipeline: GPUComputePipeline;
  layout: GPUBindGroupLayout;
  entries: GPUBindGroupEntry[];
  params: Uint8Array;
  label: string;
  record: LaunchRecord;
}

interface CaptureState {
  launches: PendingLaunch[];
  /** Pooled buffers handed out during the capture: the program's workspace. */
  allocated: Set<GPUBuffer>;
}

export class Gpu {
  readonly device: GPUDevice;
  readonly adapter: AdapterSummary;
  readonly limits: GPUSupportedLimits;
  readonly features: ReadonlySet<string>;
  readonly hasF16: boolean;
  readonly hasSubgroups: boolean;
  readonly hasTimestamps: boolean;
  /** Fill every freshly allocated activation with NaN, so an unwritten element shows. */
  readonly poison: boolean;
  readonly pool: BufferPool;

  private lostInfo: GPUDeviceLostInfo | null = null;
  private destroyed = false;
  private reportLoss: (message: string) => void;
  /** The options acquire() made this device for, as a key (null: made by create(), never kept). */
  private keptAs: string | null = null;
  /** Settles once the memory freed by the last release() is given back. */
  private released: Promise<void> = Promise.resolve();
  private uncaptured: string[] = [];
  private readonly pendingChecks: Promise<(GPUError | null)[]>[] = [];

  private readonly pipelines = new Map<string, GPUComputePipeline>();
  private readonly layouts = new Map<AnyKernel, { bindGroup: GPUBindGroupLayout; pipeline: GPUPipelineLayout }>();
  private bindGroups = new Map<string, GPUBindGroup>();

  /** Set inside capture(): launches go there instead of into the encoder. */
  private capturing: CaptureState | null = null;
  private encoder: GPUCommandEncoder | null = null;
  private pass: GPUComputePassEncoder | null = null;
  private readonly chunks: UniformChunk[] = [];
  private chunkIndex = 0;
  private chunkOffset = 0;
  private readonly uniformAlignment: number;
  /** Launches recorded since the last submit, and in all. */
  dispatchesInBatch = 0;
  dispatchCount = 0;
  submitCount = 0;
  /** Bind groups made (each launch whose buffers were not bound together before makes one). */
  bindGroupsCreated = 0;
  /** Compute pipelines compiled (one per kernel, specialization and dtypes, the first time each is launched). */
  pipelinesCreated = 0;
  /** Sees every launch as it is recorded: how the benchmarks (src/bench) count dispatches and the weight bytes they read. */
  launchObserver: ((launch: LaunchRecord) => void) | null = null;

  private readonly scopes: Set<Tensor>[] = [];
  private readonly tensorScope = new WeakMap<Tensor, Set<Tensor>>();
  private readonly staging: StagingBuffers;

  private constructor(device: GPUDevice, adapter: AdapterSummary, options: GpuOptions) {
    this.device = device;
    this.adapter = adapter;
    this.limits = device.limits;
    this.features = new Set(device.features);
    this.hasF16 = this.features.has("shader-f16");
    this.hasSubgroups = this.features.has("subgroups");
    this.hasTimestamps = this.features.has("timestamp-query");
    this.poison = options.poison ?? process.env.WGSL_VLM_POISON === "1";
    this.uniformAlignment = device.limits.minUniformBufferOffsetAlignment;
    this.pool = new BufferPool(device, device.limits.maxBufferSize, () => this.bindGroups.clear());
    this.staging = new StagingBuffers(device);

    device.addEventListener("uncapturederror", (event) => {
      this.uncaptured.push((event as GPUUncapturedErrorEvent).error.message);
    });
    this.reportLoss = options.onDeviceLost ?? reportLossOnStderr;
    void device.lost.then((info) => {
      this.lostInfo = info;
      this.unkeep();
      if (!this.destroyed) this.reportLoss(this.lostMessage());
    });
  }

  /** A new device, the caller's to destroy. */
  static async create(options: GpuOptions = {}): Promise<Gpu> {
    const { device, summary } = await requestDevice(options);
    return new Gpu(device, summary, options);
  }

  /**
   * A device for `options`: the one a release() with the same options kept, or a new one. It
   * comes back with its compiled pipelines, so a second model loaded in the same process (a
   * server reloading, one test after another) does not compile them again: the bundled
   * model's first answer takes 190-240 ms on a new device, about 40 ms on a kept one (lavapipe).
   */
  static async acquire(options: GpuOptions = {}): Promise<Gpu> {
    const key = deviceKey(options);
    const kept = keptDevices.get(key);
    if (kept) {
      keptDevices.delete(key);
      await kept.released;
      kept.reportLoss = options.onDeviceLost ?? reportLossOnStderr;
      return kept;
    }
    const gpu = await Gpu.create(options);
    gpu.keptAs = key;
    return gpu;
  }

  /**
   * Gives a device from acquire() back: kept for the next acquire() with the same options when
   * nothing is left on it (one per set of options; its pooled buffers are freed), destroyed
   * otherwise, as is a device from create().
   */
  release(): void {
    if (this.destroyed) return;
    const key = this.keptAs;
    if (key === null || this.isLost || this.capturing || this.pool.stats().liveBytes > 0 || keptDevices.has(key)) {
      this.destroy();
      return;
    }
    this.submit();
    this.pool.trim();
    // Dawn frees a destroyed buffer's memory once a submission made after it has completed,
    // on a tick of the device. Left to itself, the memory of the weights just freed would come
    // back during the next load, unmapped while the new weights are written, which made a
    // second load of a 5.6 GB checkpoint take twice as long (lavapipe). So: one empty
    // submission now, and the next acquire() waits for it.
    this.device.queue.submit([this.device.createCommandEncoder({ label: "wgsl-vlm release" }).finish()]);
    this.released = waitForGpu(this.device.queue.onSubmittedWorkDone()).catch(() => undefined);
    keptDevices.set(key, this);
  }

  /** Takes this device out of the kept ones (it is lost or destroyed). */
  private unkeep(): void {
    if (this.keptAs !== null && keptDevices.get(this.keptAs) === this) keptDevices.delete(this.keptAs);
  }

  // ---------------------------------------------------------------- tensors

  /** An uninitialised tensor (NaN-filled when poisoning). Persistent ones bypass the pool. */
  empty(shape: readonly number[], dtype: DType = "f32", options: { name?: string; persistent?: boolean } = {}): Tensor {
    const tensor = this.allocate(shape, dtype, options);
    // (A tensor too big to bind whole cannot be filled in one launch; only split weights get that big.)
    if (this.poison && !options.persistent && tensor.byteLength <= this.limits.maxStorageBufferBindingSize) poison(tensor);
    return tensor;
  }

  private allocate(shape: readonly number[], dtype: DType, options: { name?: string; persistent?: boolean }): Tensor {
    this.assertUsable();
    validateShape(shape, options.name || "empty()");
    const bytes = elementCount(shape) * bytesPerElement(dtype);
    const label = `${options.name || "tensor"} ${dtype}[${shapeString(shape)}]`;
    const persistent = options.persistent ?? false;
    const buffer = this.pool.acquire(bytes, label, persistent);
    if (this.capturing && !persistent) this.capturing.allocated.add(buffer);
    return new Tensor(new Storage(this, buffer, !persistent), shape, dtype, 0, options.name);
  }

  /** A tensor holding `data`, converted to `dtype` (f16 rounds to nearest even). */
  tensor(
    data: ArrayLike<number>,
    shape: readonly number[],
    dtype: DType = "f32",
    options: { name?: string; persistent?: boolean } = {},
  ): Tensor {
    validateShape(shape, options.name || "tensor()");
    const count = elementCount(shape);
    if (data.length !== count) {
      throw new ShapeError(`${options.name || "tensor()"}: ${data.length} values given for shape [${shape.join(", ")}] (${count})`);
    }
    const t = this.allocate(shape, dtype, options);
    this.write(t, encodeHost(data, dtype));
    return t;
  }

  /** Uploads raw little-endian bytes (already in the tensor's dtype) into `t`, at a byte offset. */
  write(t: Tensor, bytes: Uint8Array | ArrayBufferView, byteOffset = 0): void {
    this.assertUsable();
    this.assertNotCapturing("write");
    const view = new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    if (byteOffset + view.byteLength > t.byteLength + 3) {
      throw new ShapeError(`write of ${view.byteLength} bytes at ${byteOffset} overruns ${t.describe()}`);
    }
    // queue.writeBuffer runs before commands still waiting in the encoder, which may read the
    // buffer's previous contents (pooled buffers are recycled), so those go first.
    this.submit();
    const padded = view.byteLength % 4 === 0 ? view : padTo4(view);
    this.device.queue.writeBuffer(t.buffer, t.byteOffset + byteOffset, padded, 0, padded.byteLength);
  }

  freeStorage(storage: Storage): void {
    // A persistent buffer is destroyed at once, and WebGPU refuses a submission that uses a
    // destroyed buffer: launches recorded on it and not yet submitted go first.
    if (!storage.pooled && this.encoder && !this.capturing && !this.isLost) this.submit();
    this.pool.release(storage.buffer, !storage.pooled);
  }

  memory(): MemoryStats {
    return this.pool.stats();
  }

  // ---------------------------------------------------------------- scopes

  /**
   * Runs `fn`, then disposes every tensor created inside it except those it returns (a tensor,
   * or an array or object of tensors), which move to the enclosing scope. Synchronous only:
   * recording a forward pass never awaits.
   */
  scope<T>(fn: () => T): T {
    const created = new Set<Tensor>();
    this.scopes.push(created);
    let result: T;
    try {
      result = fn();
      if (result instanceof Promise) throw new TypeError("gpu.scope() takes a synchronous function");
    } catch (error) {
      this.scopes.pop();
      for (const t of created) t.dispose();
      throw error;
    }
    this.scopes.pop();
    const kept = new Set<Tensor>();
    collectTensors(result, kept);
    const parent = this.scopes.at(-1);
    for (const t of created) {
      if (kept.has(t)) {
        this.tensorScope.delete(t);
        if (parent) this.trackInScope(t);
      } else {
        t.dispose();
      }
    }
    return result;
  }

  /** Takes `t` out of the current scope so it outlives it. */
  keep<T extends Tensor>(t: T): T {
    this.untrackInScope(t);
    return t;
  }

  trackInScope(t: Tensor): void {
    const scope = this.scopes.at(-1);
    if (!scope) return;
    scope.add(t);
    this.tensorScope.set(t, scope);
  }

  untrackInScope(t: Tensor): void {
    this.tensorScope.get(t)?.delete(t);
    this.tensorScope.delete(t);
  }

  // ---------------------------------------------------------------- recording kernels

  /** Records one dispatch of `kernel` into the open command encoder. Nothing runs until the next submit. */
  record<P extends Record<string, ParamType>, B extends Record<string, Access>, S extends Record<string, SpecValue>>(
    kernel: Kernel<P, B, S>,
    launch: Launch<P, B, S>,
  ): void {
    this.assertUsable();
    const anyKernel = kernel as unknown as AnyKernel;
    const types = {} as Record<keyof B, DType>;
    const entries: GPUBindGroupEntry[] = [];
    let cacheKey = "";
    kernel.bindingNames.forEach((name, i) => {
      const t = launch.tensors[name];
      if (!(t instanceof Tensor)) throw new ShapeError(`${kernel.name}: no tensor given for binding '${name}'`);
      if (t.gpu !== this) throw new ShapeError(`${kernel.name}: ${t.describe()} belongs to another device`);
      types[name] = t.dtype;
      const size = Math.max(4, Math.ceil(t.byteLength / 4) * 4);
      if (size > this.limits.maxStorageBufferBindingSize) {
        throw new ShapeError(
          `${kernel.name}: ${name} ${t.describe()} is ${t.byteLength} bytes, over this device's ` +
            `maxStorageBufferBindingSize (${this.limits.maxStorageBufferBindingSize}); split it`,
        );
      }
      entries.push({ binding: i + 1, resource: { buffer: t.buffer, offset: t.byteOffset, size } });
      cacheKey += `${bufferId(t.buffer)}:${t.byteOffset}:${size},`;
    });
    // Built only when needed (a new bind group, an error): describing every tensor per launch is not free.
    const label = () => `${kernel.name}(${kernel.bindingNames.map((name) => `${name}: ${launch.tensors[name].describe()}`).join(", ")})`;
    const [x, y = 1, z = 1] = launch.workgroups;
    const max = this.limits.maxComputeWorkgroupsPerDimension;
    if (x > max || y > max || z > max) {
      throw new ShapeError(`${label()}: workgroup grid ${x}x${y}x${z} exceeds ${max} per dimension`);
    }
    const spec = (launch.spec ?? {}) as S;
    const pipeline = this.pipeline(kernel, spec, types);
    const params = kernel.pack(launch.params);
    if (x === 0 || y === 0 || z === 0) return; // an empty tensor: nothing to compute
    const record: LaunchRecord = { kernel: anyKernel, tensors: launch.tensors, spec, workgroups: [x, y, z] };
    if (this.capturing) {
      this.capturing.launches.push({ pipeline, layout: this.layoutFor(anyKernel).bindGroup, entries, params, label: label(), record });
      return;
    }

    const { chunk, chunkIndex, offset } = this.allocateParams(kernel.paramBytes);
    chunk.data.set(params, offset);
    cacheKey = `${kernelId(anyKernel)}|${chunkIndex}|${cacheKey}`;
    let bindGroup = this.bindGroups.get(cacheKey);
    if (!bindGroup) {
      entries.unshift({ binding: 0, resource: { buffer: chunk.buffer, offset: 0, size: kernel.paramBytes } });
      bindGroup = this.device.createBindGroup({ label: label(), layout: this.layoutFor(anyKernel).bindGroup, entries });
      this.bindGroupsCreated++;
      if (this.bindGroups.size > 8192) this.bindGroups.clear();
      this.bindGroups.set(cacheKey, bindGroup);
    }
    const pass = this.computePass();
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, bindGroup, [offset]);
    pass.dispatchWorkgroups(x, y, z);
    this.countLaunch(record);
  }

  private countLaunch(record: LaunchRecord): void {
    this.dispatchesInBatch++;
    this.dispatchCount++;
    this.launchObserver?.(record);
  }

  // ---------------------------------------------------------------- recorded programs

  /**
   * Runs `fn` (inside a scope) capturing its launches instead of recording them, and returns
   * them as a program to replay (see program.ts for what stays valid between replays). The
   * temporaries `fn` makes must all be freed by its end (the scope frees what it does not
   * return); their buffers become the program's. Inside `fn` only launches may be recorded:
   * writes, copies, submits and reads would not be replayed, so they throw.
   */
  capture(label: string, fn: () => void): RecordedProgram {
    this.assertUsable();
    if (this.capturing) throw new Error(`${label}: gpu.capture() cannot nest inside another capture`);
    const state: CaptureState = { launches: [], allocated: new Set() };
    this.capturing = state;
    try {
      this.scope(fn);
    } finally {
      this.capturing = null;
    }
    const workspace: GPUBuffer[] = [];
    for (const buffer of state.allocated) {
      if (!this.pool.reserve(buffer)) {
        for (const held of workspace) this.pool.release(held);
        throw new ShapeError(`${label}: ${buffer.label}, made while capturing, is still alive after it: a program's temporaries must be freed by its end`);
      }
      workspace.push(buffer);
    }
    // Every launch's parameter block, at its own aligned offset in one uniform buffer, written once.
    const strides = state.launches.map((l) => Math.ceil(l.params.byteLength / this.uniformAlignment) * this.uniformAlignment);
    const total = strides.reduce((sum, s) => sum + s, 0);
    const uniforms = total > 0 ? this.device.createBuffer({ label: `${label} parameters`, size: total, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST }) : null;
    const data = new Uint8Array(total);
    let offset = 0;
    const launches: CapturedLaunch[] = state.launches.map((l, i) => {
      data.set(l.params, offset);
      const bindGroup = this.device.createBindGroup({
        label: `${label}: ${l.label}`,
        layout: l.layout,
        entries: [{ binding: 0, resource: { buffer: uniforms!, offset: 0, size: l.params.byteLength } }, ...l.entries],
      });
      this.bindGroupsCreated++;
      const launch = { pipeline: l.pipeline, bindGroup, offset, workgroups: l.record.workgroups, record: l.record };
      offset += strides[i];
      return launch;
    });
    if (uniforms) this.device.queue.writeBuffer(uniforms, 0, data);
    return new RecordedProgram(label, launches, uniforms, workspace, (buffers) => {
      for (const buffer of buffers) this.pool.release(buffer);
    });
  }

  /**
   * Records every launch of `program` into the open command encoder, as if its capture ran
   * again. Returns the CPU milliseconds the launches took to record (the pass opened, if it had
   * to be, is not counted): what the benchmarks compare with Dawn's own cost per dispatch.
   */
  replay(program: RecordedProgram): number {
    this.assertUsable();
    this.assertNotCapturing("replay");
    if (program.isDisposed) throw new Error(`${program.label}: replay of a disposed program`);
    const pass = this.computePass();
    const start = performance.now();
    program.encode(pass);
    const ms = performance.now() - start;
    for (const launch of program.launches) this.countLaunch(launch.record);
    return ms;
  }

  private assertNotCapturing(what: string): void {
    if (this.capturing) throw new Error(`gpu.${what}() inside gpu.capture(): only kernel launches can be captured and replayed`);
  }

  private pipeline<S extends Record<string, SpecValue>>(kernel: Kernel<any, any, S>, spec: S, types: Record<string, DType>): GPUComputePipeline {
    const key = `${kernel.name}|${JSON.stringify(spec)}|${JSON.stringify(types)}`;
    let pipeline = this.pipelines.get(key);
    if (pipeline) return pipeline;
    if (Object.values(types).includes("f16") && !this.hasF16) {
      throw new ShapeError(`${kernel.name}: this adapter has no shader-f16, so f16 tensors cannot be used`);
    }
    const label = `${kernel.name} ${JSON.stringify(spec)} ${JSON.stringify(types)}`;
    const module = this.device.createShaderModule({ label, code: kernel.source(spec, types) });
    pipeline = this.device.createComputePipeline({
      label,
      layout: this.layoutFor(kernel as unknown as AnyKernel).pipeline,
      compute: { module, entryPoint: "main" },
    });
    this.pipelines.set(key, pipeline);
    this.pipelinesCreated++;
    return pipeline;
  }

  private layoutFor(kernel: AnyKernel) {
    let layout = this.layouts.get(kernel);
    if (!layout) {
      const entries: GPUBindGroupLayoutEntry[] = [
        { binding: 0, visibility: GPUShaderStage.COMPUTE, buffer: { type: "uniform", hasDynamicOffset: true, minBindingSize: kernel.paramBytes } },
        ...kernel.bindingNames.map((name, i) => ({
          binding: i + 1,
          visibility: GPUShaderStage.COMPUTE,
          buffer: { type: kernel.bindings[name] === "read" ? ("read-only-storage" as const) : ("storage" as const) },
        })),
      ];
      const bindGroup = this.device.createBindGroupLayout({ label: kernel.name, entries });
      layout = { bindGroup, pipeline: this.device.createPipelineLayout({ label: kernel.name, bindGroupLayouts: [bindGroup] }) };
      this.layouts.set(kernel, layout);
    }
    return layout;
  }

  private allocateParams(bytes: number): { chunk: UniformChunk; chunkIndex: number; offset: number } {
    const stride = Math.ceil(bytes / this.uniformAlignment) * this.uniformAlignment;
    if (this.chunkOffset + stride > UNIFORM_CHUNK_BYTES) {
      this.chunkIndex++;
      this.chunkOffset = 0;
    }
    if (this.chunkIndex === this.chunks.length) {
      this.chunks.push({
        buffer: this.device.createBuffer({
          label: `kernel parameters ${this.chunkIndex}`,
          size: UNIFORM_CHUNK_BYTES,
          usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST,
        }),
        data: new Uint8Array(UNIFORM_CHUNK_BYTES),
      });
    }
    const offset = this.chunkOffset;
    this.chunkOffset += stride;
    return { chunk: this.chunks[this.chunkIndex], chunkIndex: this.chunkIndex, offset };
  }

  private commandEncoder(): GPUCommandEncoder {
    if (!this.encoder) {
      this.device.pushErrorScope("internal");
      this.device.pushErrorScope("out-of-memory");
      this.device.pushErrorScope("validation");
      this.encoder = this.device.createCommandEncoder({ label: "wgsl-vlm batch" });
    }
    return this.encoder;
  }

  private computePass(): GPUComputePassEncoder {
    if (!this.pass) this.pass = this.commandEncoder().beginComputePass();
    return this.pass;
  }

  /** Records a buffer-to-buffer copy (ends the open compute pass). */
  copyBuffer(src: GPUBuffer, srcOffset: number, dst: GPUBuffer, dstOffset: number, bytes: number): void {
    this.assertUsable();
    this.assertNotCapturing("copyBuffer");
    const encoder = this.commandEncoder();
    this.pass?.end();
    this.pass = null;
    encoder.copyBufferToBuffer(src, srcOffset, dst, dstOffset, bytes);
  }

  /**
   * Ends the open compute pass and opens a new one with `descriptor`; the launches recorded next
   * go into it until something ends it (withEncoder, copyBuffer, submit). With timestampWrites,
   * this is how the benchmarks time kernels on the GPU itself.
   */
  beginComputePass(descriptor: GPUComputePassDescriptor): void {
    this.assertUsable();
    this.assertNotCapturing("beginComputePass");
    const encoder = this.commandEncoder();
    this.pass?.end();
    this.pass = encoder.beginComputePass(descriptor);
  }

  /** Records commands directly on the batch's encoder (ends the open compute pass); for timestamp queries and the like. */
  withEncoder(fn: (encoder: GPUCommandEncoder) => void): void {
    this.assertUsable();
    this.assertNotCapturing("withEncoder");
    const encoder = this.commandEncoder();
    this.pass?.end();
    this.pass = null;
    fn(encoder);
  }

  /** Sends everything recorded so far to the GPU as one submission. */
  submit(): void {
    this.assertNotCapturing("submit");
    if (!this.encoder) return;
    this.assertUsable();
    this.pass?.end();
    this.pass = null;
    for (let i = 0; i <= this.chunkIndex && i < this.chunks.length; i++) {
      const used = i < this.chunkIndex ? UNIFORM_CHUNK_BYTES : this.chunkOffset;
      if (used > 0) this.device.queue.writeBuffer(this.chunks[i].buffer, 0, this.chunks[i].data, 0, used);
    }
    this.device.queue.submit([this.encoder.finish()]);
    this.encoder = null;
    this.chunkIndex = 0;
    this.chunkOffset = 0;
    this.dispatchesInBatch = 0;
    this.submitCount++;
    const scopes = this.device;
    this.pendingChecks.push(Promise.all([scopes.popErrorScope(), scopes.popErrorScope(), scopes.popErrorScope()]));
  }

  /** Submits, waits for the GPU to finish, and throws any error it reported. */
  async sync(): Promise<void> {
    this.submit();
    await this.guard(this.device.queue.onSubmittedWorkDone());
    await this.throwReportedErrors();
  }

  // ---------------------------------------------------------------- reading back

  /** Copies tensors to the CPU, in one submission. f16 widens to f32. */
  async read(t: Tensor): Promise<HostArray>;
  async read(...tensors: Tensor[]): Promise<HostArray[]>;
  async read(...tensors: Tensor[]): Promise<HostArray | HostArray[]> {
    const results = await this.readBytesMany(tensors);
    const arrays = tensors.map((t, i) => decodeHost(results[i], t.dtype, t.size));
    return tensors.length === 1 ? arrays[0] : arrays;
  }

  private async readBytesMany(tensors: Tensor[]): Promise<Uint8Array[]> {
    this.assertUsable();
    this.assertNotCapturing("read");
    const stagings = tensors.map((t) => {
      const bytes = Math.max(4, Math.ceil(t.byteLength / 4) * 4);
      const staging = this.staging.acquire(bytes);
      this.copyBuffer(t.buffer, t.byteOffset, staging, 0, bytes);
      return staging;
    });
    this.submit();
    // Only the submissions up to this read: waiting on later ones (a decode step recorded while
    // this token travels back) would make the read wait for them, and CPU and GPU take turns.
    const checks = this.pendingChecks.splice(0);
    try {
      await this.guard(Promise.all(stagings.map((s) => s.mapAsync(GPUMapMode.READ))));
      await this.throwReportedErrors(checks);
      return stagings.map((s, i) => new Uint8Array(s.getMappedRange(0, Math.ceil(tensors[i].byteLength / 4) * 4 || 4).slice(0)));
    } finally {
      for (const s of stagings) {
        if (s.mapState === "mapped") s.unmap();
        this.staging.release(s);
      }
    }
  }

  // ---------------------------------------------------------------- errors and loss

  /**
   * Awaits a GPU promise; if the device was lost meanwhile, throws that instead of the raw
   * rejection. A loss may reject pending work before `device.lost` resolves, so a rejection
   * waits (briefly) for the loss to be reported.
   */
  private async guard<T>(promise: Promise<T>): Promise<T> {
    try {
      return await waitForGpu(promise);
    } catch (error) {
      if (!this.lostInfo && !this.destroyed) await this.lossReported();
      this.assertUsable();
      throw error;
    }
  }

  /** Resolves when `device.lost` does, or after LOSS_REPORT_WAIT_MS if it does not. */
  private async lossReported(): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.device.lost, new Promise((resolve) => (timer = setTimeout(resolve, LOSS_REPORT_WAIT_MS)))]);
    clearTimeout(timer);
  }

  /** Throws what the error scopes of `checks` (default: every submission not yet checked) and the uncaptured-error handler caught. */
  private async throwReportedErrors(checks = this.pendingChecks.splice(0)): Promise<void> {
    const messages: string[] = [];
    for (const errors of await Promise.all(checks)) {
      for (const error of errors) if (error) messages.push(`${errorKind(error)}: ${error.message}`);
    }
    messages.push(...this.uncaptured.splice(0));
    if (this.lostInfo) throw new DeviceLostError(this.lostMessage());
    if (messages.length > 0) throw new GpuError(`GPU reported ${messages.length} error(s):\n${messages.join("\n")}`);
  }

  private lostMessage(): string {
    const info = this.lostInfo;
    return `GPU device lost${info ? ` (${info.reason}): ${info.message}` : ""}`;
  }

  get isLost(): boolean {
    return this.lostInfo !== null;
  }

  /** Throws DeviceLostError once the device is lost or destroyed (by destroy() or a raw device.destroy()). */
  assertUsable(): void {
    if (this.lostInfo) throw new DeviceLostError(this.lostMessage());
    if (this.destroyed) throw new DeviceLostError("this Gpu was destroyed");
  }

  /** Releases the device and everything on it. */
  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.unkeep();
    this.encoder = null;
    this.pass = null;
    this.device.destroy();
  }
}

/** Devices release() kept, by the options they were made for (acquire). */
const keptDevices = new Map<string, Gpu>();

function deviceKey(options: GpuOptions): string {
  return JSON.stringify([
    options.adapter ?? process.env.WGSL_VLM_ADAPTER ?? "",
    options.backend ?? process.env.WGSL_VLM_BACKEND ?? "",
    [...(options.disableFeatures ?? [])].sort(),
    options.poison ?? process.env.WGSL_VLM_POISON === "1",
  ]);
}

function reportLossOnStderr(message: string): void {
  process.stderr.write(`wgsl-vlm: ${message}\n`);
}

const kernelIds = new WeakMap<AnyKernel, number>();
let nextKernelId = 1;
function kernelId(kernel: AnyKernel): number {
  let id = kernelIds.get(kernel);
  if (id === undefined) kernelIds.set(kernel, (id = nextKernelId++));
  return id;
}

function errorKind(error: GPUError): string {
  const name = error.constructor?.name ?? "";
  if (name.includes("Validation")) return "validation error";
  if (name.includes("OutOfMemory")) return "out of memory";
  if (name.includes("Internal")) return "internal error";
  return "error";
}

function padTo4(view: Uint8Array): Uint8Array {
  const padded = new Uint8Array(Math.ceil(view.byteLength / 4) * 4);
  padded.set(view);
  return padded;
}

function collectTensors(value: unknown, into: Set<Tensor>): void {
  if (value instanceof Tensor) into.add(value);
  else if (Array.isArray(value)) for (const v of value) collectTensors(v, into);
  else if (value && typeof value === "object" && Object.getPrototypeOf(value) === Object.prototype) {
    for (const v of Object.values(value)) collectTensors(v, into);
  }
}
