/**
 * A pool of GPU storage buffers.
 *
 * A forward pass allocates the same activation sizes over and over (every layer, every token),
 * and creating a GPUBuffer costs far more than reusing one. Freed buffers go on a free list
 * keyed by their exact (rounded) size and are handed out again for the next request of that
 * size: always the free one created first (the lowest id). Which buffer a request gets then
 * depends only on which buffers are free, not on the order they were freed in, so a decode
 * step, which makes the same requests every token from the same free buffers, gets the same
 * buffers every token, and the bind groups cached for them are reused instead of made again. Reuse is safe without waiting for the GPU: commands run in the order they were
 * recorded, so a later kernel that overwrites a recycled buffer runs after every earlier
 * kernel that read it.
 *
 * Each allocation is its own GPUBuffer (no sub-allocation): WebGPU forbids binding one buffer
 * as writable storage and anything else within the same dispatch, even at disjoint ranges.
 */

/** Every allocation is rounded up to this many bytes (storage binding sizes must be multiples of 4). */
const GRANULE = 256;

export interface MemoryStats {
  /** Bytes held by live tensors. */
  liveBytes: number;
  /** Bytes sitting in the free lists, ready for reuse. */
  pooledBytes: number;
  /** Most bytes ever allocated from the device at once (live + pooled). */
  peakBytes: number;
  /** GPUBuffers created over the pool's life (a rising count in a steady loop means no reuse). */
  buffersCreated: number;
}

let nextBufferId = 1;
/** A small integer per GPUBuffer, for cache keys. */
const bufferIds = new WeakMap<GPUBuffer, number>();

export function bufferId(buffer: GPUBuffer): number {
  let id = bufferIds.get(buffer);
  if (id === undefined) {
    id = nextBufferId++;
    bufferIds.set(buffer, id);
  }
  return id;
}

export class BufferPool {
  private readonly free = new Map<number, GPUBuffer[]>();
  private liveBytes = 0;
  private pooledBytes = 0;
  private peakBytes = 0;
  private buffersCreated = 0;

  constructor(
    private readonly device: GPUDevice,
    private readonly maxBufferSize: number,
    /** Called with each buffer the pool destroys, so caches keyed on it can forget it. */
    private readonly onDestroy: (buffer: GPUBuffer) => void,
  ) {}

  static roundedSize(byteLength: number): number {
    return Math.max(GRANULE, Math.ceil(byteLength / GRANULE) * GRANULE);
  }

  /**
   * A buffer of at least `byteLength` bytes. Persistent buffers (weights, caches) are sized
   * exactly and destroyed on release instead of pooled: they are not worth keeping around.
   */
  acquire(byteLength: number, label: string, persistent = false): GPUBuffer {
    const size = persistent ? Math.max(16, Math.ceil(byteLength / 16) * 16) : BufferPool.roundedSize(byteLength);
    if (size > this.maxBufferSize) {
      throw new RangeError(
        `cannot allocate ${label}: ${byteLength} bytes is more than this device's maxBufferSize (${this.maxBufferSize})`,
      );
    }
    const reused = persistent ? undefined : this.free.get(size)?.pop();
    if (reused) {
      this.pooledBytes -= size;
      this.liveBytes += size;
      return reused;
    }
    const buffer = this.device.createBuffer({
      label,
      size,
      usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST,
    });
    this.buffersCreated++;
    this.liveBytes += size;
    this.peakBytes = Math.max(this.peakBytes, this.liveBytes + this.pooledBytes);
    return buffer;
  }

  release(buffer: GPUBuffer, persistent = false): void {
    const size = buffer.size;
    this.liveBytes -= size;
    if (persistent) {
      this.onDestroy(buffer);
      buffer.destroy();
      return;
    }
    this.pooledBytes += size;
    let list = this.free.get(size);
    if (!list) this.free.set(size, (list = []));
    // Kept sorted by id, highest first, so acquire() pops the free buffer with the lowest id.
    const id = bufferId(buffer);
    let at = list.length;
    while (at > 0 && bufferId(list[at - 1]) < id) at--;
    list.splice(at, 0, buffer);
  }

  /**
   * Takes a free buffer out of the free list, as if acquired again (a recorded program keeps
   * its temporaries this way; release() gives it back). False if the buffer is not free.
   */
  reserve(buffer: GPUBuffer): boolean {
    const list = this.free.get(buffer.size);
    const at = list?.indexOf(buffer) ?? -1;
    if (at < 0) return false;
    list!.splice(at, 1);
    this.pooledBytes -= buffer.size;
    this.liveBytes += buffer.size;
    return true;
  }

  /** Destroys every pooled (unused) buffer, giving its memory back to the device. */
  trim(): void {
    for (const list of this.free.values()) {
      for (const buffer of list) {
        this.onDestroy(buffer);
        buffer.destroy();
      }
    }
    this.free.clear();
    this.pooledBytes = 0;
  }

  /** Restarts peak tracking from the current footprint (to measure one phase, e.g. loading). */
  resetPeak(): void {
    this.peakBytes = this.liveBytes + this.pooledBytes;
  }

  stats(): MemoryStats {
    return {
      liveBytes: this.liveBytes,
      pooledBytes: this.pooledBytes,
      peakBytes: this.peakBytes,
      buffersCreated: this.buffersCreated,
    };
  }
}
