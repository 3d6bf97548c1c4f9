/**
 * Staging buffers for reading tensors back: a GPU buffer the CPU can map must be a separate
 * MAP_READ buffer that the tensor is copied into. Making one per read costs an allocation, so a
 * few are kept for reuse; a kept buffer serves any read up to four times smaller than itself.
 */
import { BufferPool } from "./pool.js";

const KEPT = 16;

export class StagingBuffers {
  private readonly free: GPUBuffer[] = [];

  constructor(private readonly device: GPUDevice) {}

  /** A mappable buffer of at least `bytes`. */
  acquire(bytes: number): GPUBuffer {
    const i = this.free.findIndex((b) => b.size >= bytes && b.size <= bytes * 4 + 4096);
    if (i >= 0) return this.free.splice(i, 1)[0];
    return this.device.createBuffer({
      label: "readback",
      size: BufferPool.roundedSize(bytes),
      usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
    });
  }

  /** Hands an unmapped buffer back for reuse (or destroys it when enough are kept). */
  release(buffer: GPUBuffer): void {
    if (this.free.length < KEPT) this.free.push(buffer);
    else buffer.destroy();
  }
}
