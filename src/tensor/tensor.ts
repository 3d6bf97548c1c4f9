/**
 * A tensor: a shape and a dtype over a range of a GPU buffer.
 *
 * Views (reshape, leading-dimension slices) share their parent's storage and keep it alive
 * through a reference count; the buffer goes back to the pool when the last one is disposed.
 * Tensors are row-major and contiguous: every kernel indexes them as flat arrays.
 */
import { bytesPerElement, type DType, type HostArray } from "./dtype.js";
import { check, shapeString, ShapeError } from "./errors.js";
import type { Gpu } from "./gpu.js";

/** The GPU buffer behind one or more tensors. */
export class Storage {
  private refs = 1;
  constructor(
    readonly gpu: Gpu,
    readonly buffer: GPUBuffer,
    /** Pooled storage returns to the pool; owned storage (e.g. weights) is destroyed. */
    readonly pooled: boolean,
  ) {}

  retain(): void {
    this.refs++;
  }

  release(): void {
    if (--this.refs === 0) this.gpu.freeStorage(this);
  }
}

export function elementCount(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

export function validateShape(shape: readonly number[], what: string): void {
  for (const d of shape) {
    if (!Number.isInteger(d) || d < 0) {
      throw new ShapeError(`${what}: invalid shape [${shape.join(", ")}] (dimensions must be integers >= 0)`);
    }
  }
}

export class Tensor {
  private disposedFlag = false;

  constructor(
    readonly storage: Storage,
    readonly shape: readonly number[],
    readonly dtype: DType,
    /** Where this tensor starts in its buffer. */
    readonly byteOffset = 0,
    /** A name for error messages (a weight's checkpoint name, say). */
    readonly name = "",
  ) {
    validateShape(shape, name || "tensor");
    storage.gpu.trackInScope(this);
  }

  get gpu(): Gpu {
    return this.storage.gpu;
  }

  get buffer(): GPUBuffer {
    this.assertAlive();
    return this.storage.buffer;
  }

  get size(): number {
    return elementCount(this.shape);
  }

  get byteLength(): number {
    return this.size * bytesPerElement(this.dtype);
  }

  get rank(): number {
    return this.shape.length;
  }

  get disposed(): boolean {
    return this.disposedFlag;
  }

  /** Size of dimension `axis` (negative counts from the end). */
  dim(axis: number): number {
    const i = axis < 0 ? this.shape.length + axis : axis;
    check(i >= 0 && i < this.shape.length, () => `${this.describe()}: no axis ${axis}`);
    return this.shape[i];
  }

  /** "name f32[3x17]": how errors and kernel labels refer to a tensor. */
  describe(): string {
    return `${this.name ? this.name + " " : ""}${this.dtype}[${shapeString(this.shape)}]`;
  }

  /** The same elements under another shape; one dimension may be -1 (inferred). No copy. */
  reshape(shape: readonly number[]): Tensor {
    this.assertAlive();
    const inferred = shape.indexOf(-1);
    let resolved = [...shape];
    if (inferred >= 0) {
      const known = elementCount(shape.filter((_, i) => i !== inferred));
      check(known > 0 && this.size % known === 0, () => `cannot reshape ${this.describe()} to [${shape.join(", ")}]`);
      resolved[inferred] = this.size / known;
    }
    check(elementCount(resolved) === this.size, () => `cannot reshape ${this.describe()} to [${shape.join(", ")}]`);
    this.storage.retain();
    return new Tensor(this.storage, resolved, this.dtype, this.byteOffset, this.name);
  }

  /**
   * Rows [start, start + count) of the leading dimension, as a view. The start must fall on
   * the device's storage offset alignment, since kernels bind the view at that byte offset.
   */
  slice(start: number, count: number): Tensor {
    this.assertAlive();
    check(this.rank >= 1, () => `cannot slice scalar ${this.describe()}`);
    const rows = this.shape[0];
    check(
      Number.isInteger(start) && Number.isInteger(count) && start >= 0 && count >= 0 && start + count <= rows,
      () => `slice [${start}, ${start + count}) is outside ${this.describe()}`,
    );
    const rowBytes = (this.size / Math.max(rows, 1)) * bytesPerElement(this.dtype);
    const byteOffset = this.byteOffset + start * rowBytes;
    const alignment = this.gpu.limits.minStorageBufferOffsetAlignment;
    check(
      byteOffset % alignment === 0,
      () => `slice at row ${start} of ${this.describe()} starts at byte ${byteOffset}, not a multiple of ${alignment}`,
    );
    this.storage.retain();
    return new Tensor(this.storage, [count, ...this.shape.slice(1)], this.dtype, byteOffset, this.name);
  }

  /** Copies the tensor to the CPU. f16 widens to f32. Submits any recorded work first. */
  read(): Promise<HostArray> {
    this.assertAlive();
    return this.gpu.read(this);
  }

  /** Gives the memory back (to the pool); the tensor cannot be used afterwards. Idempotent. */
  dispose(): void {
    if (this.disposedFlag) return;
    this.disposedFlag = true;
    this.gpu.untrackInScope(this);
    this.storage.release();
  }

  assertAlive(): void {
    if (this.disposedFlag) throw new ShapeError(`${this.describe()} was used after dispose()`);
  }
}
