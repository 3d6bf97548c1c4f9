/**
 * Checkpoint tensors → GPU tensors.
 *
 * A tensor is streamed in chunks of DEFAULT_CHUNK_BYTES: a positioned read from the file into
 * a reused buffer, a conversion to the storage dtype into a second reused buffer when one is
 * needed, and a `queue.writeBuffer` (which copies the bytes at once, so the buffers can be
 * refilled straight away). The reads of the next READS_AHEAD chunks run on libuv's threads
 * while this one is written (and the loader asks for tensors in the order the files hold
 * them), so the disk streams while the GPU takes in what came before. JavaScript memory stays
 * at a few chunks whatever the size of the checkpoint. (Staging buffers of our own, mapped and
 * read into, or weights made mapped at creation, were measured no faster: bench/RESULTS.md,
 * "Loading a checkpoint".)
 *
 * With the GPU conversions given (the loader passes kernels/to_f16.ts's; weights/ sits below
 * kernels/ and cannot import them), BF16 and F32 tensors bound for f16 skip the JavaScript loop:
 * - BF16 and f16 are both two bytes, so the raw BF16 bytes are written into the weight as they
 *   are and one launch converts them where they lie, once the tensor is in;
 * - F32's raw bytes are twice the weight's: each chunk goes to a staging buffer on the GPU and
 *   a launch converts it into the weight at its place. (Gpu.write submits the launches recorded
 *   before it, so the next chunk cannot overwrite the staging buffer before the previous one is
 *   converted.)
 *
 * Floats: F32, F16 and BF16 become f32 or f16. Any other dtype is refused with an error
 * naming the tensor; so is a tensor larger than one GPU buffer can hold, for which the caller
 * uploads row ranges (`rows`) into separate tensors. ggml's quantized blocks are not floats:
 * uploadPacked writes a byte range of them as it is, into u32 words the kernels unpack.
 */
import type { Gpu } from "../tensor/gpu.js";
import type { Tensor } from "../tensor/tensor.js";
import { bf16ToF16, bf16ToF32, f16ToF32, f32ToF16 } from "./convert.js";
import { SAFETENSORS_DTYPES, type SafetensorsDType } from "./safetensors.js";

/** Where tensors come from: a Checkpoint, a single SafetensorsFile, or a GgufCheckpoint. */
export interface TensorSource {
  readonly path: string;
  /** `dtype`: a safetensors dtype, or a ggml type's name for GGUF. */
  entry(name: string): { dtype: string; shape: number[] };
  readInto(name: string, offset: number, target: Uint8Array): Promise<void>;
}

export type StorageDType = "f32" | "f16";

export interface UploadOptions {
  /** The dtype the GPU tensor holds. */
  dtype: StorageDType;
  /** Upload only rows [start, end) of the leading dimension (to split a tensor too big for one binding). */
  rows?: readonly [number, number];
  /** The GPU tensor's name (default: the checkpoint name, plus the row range when given). */
  name?: string;
}

/** Conversions to f16 done by the GPU (kernels/to_f16.ts). */
export interface GpuConversions {
  /** Converts `2 * words` raw F32 elements (u32 words in `raw`) to f16 into `out` from its element `2 * outWord`. */
  toF16(raw: Tensor, out: Tensor, words: number, outWord: number): void;
  /** Converts the f16 tensor `x`, which holds raw BF16 bytes, to f16 where it lies. */
  bf16ToF16InPlace(x: Tensor): void;
}

export class WeightUploadError extends Error {
  override name = "WeightUploadError";
}

const UPLOADABLE: readonly string[] = ["F32", "F16", "BF16"] satisfies SafetensorsDType[];

/**
 * Source bytes per chunk: large enough that each write's fixed cost is negligible, and no
 * larger, since Dawn's writeBuffer gets slower per byte for larger writes (on lavapipe; see
 * bench/RESULTS.md, "Uploading weights").
 */
export const DEFAULT_CHUNK_BYTES = 1 << 20;

/**
 * Chunks read ahead of the one being written: from a cold page cache the disk then always has
 * reads queued, so it streams while the GPU takes in what came before.
 */
const READS_AHEAD = 4;

export class WeightUploader {
  /** A read buffer per read in flight, and one conversion output. */
  private readonly reads: Uint8Array[];
  private readonly converted: Uint8Array;
  private queue: Promise<unknown> = Promise.resolve();
  /** Where a chunk's raw bytes wait for the GPU conversion (made at its first use). */
  private staging: Tensor | null = null;
  /** Bytes read from files and bytes written to the GPU so far. */
  bytesRead = 0;
  bytesUploaded = 0;

  constructor(
    private readonly gpu: Gpu,
    private readonly chunkBytes = DEFAULT_CHUNK_BYTES,
    private readonly conversions?: GpuConversions,
  ) {
    if (!Number.isInteger(chunkBytes) || chunkBytes < 16 || chunkBytes % 8 !== 0) {
      throw new RangeError(`WeightUploader: chunk size ${chunkBytes} is not a multiple of 8 bytes of at least 16`);
    }
    this.reads = Array.from({ length: READS_AHEAD }, () => new Uint8Array(chunkBytes));
    // The widest conversion, 2-byte source to 4-byte f32, doubles the bytes.
    this.converted = new Uint8Array(chunkBytes * 2);
  }

  /**
   * Reads tensor `name` (or rows of it) from `source` into a new persistent GPU tensor. Calls
   * may overlap (Promise.all over a model's tensors): they run one after another, since they
   * share the buffers.
   */
  upload(source: TensorSource, name: string, options: UploadOptions): Promise<Tensor> {
    const result = this.queue.then(() => this.uploadNow(source, name, options));
    this.queue = result.catch(() => undefined);
    return result;
  }

  private async uploadNow(source: TensorSource, name: string, options: UploadOptions): Promise<Tensor> {
    const { dtype, shape } = source.entry(name);
    const to = options.dtype;
    const where = `${source.path}: tensor '${name}'`;
    if (!UPLOADABLE.includes(dtype)) {
      throw new WeightUploadError(`${where} is ${dtype}; only F32, F16 and BF16 tensors can be uploaded as float weights`);
    }
    const from = dtype as SafetensorsDType;
    if (to !== "f32" && to !== "f16") throw new WeightUploadError(`${where}: cannot store as ${String(to)} (f32 or f16 only)`);
    if (to === "f16" && !this.gpu.hasF16) throw new WeightUploadError(`${where}: this GPU has no shader-f16, so it cannot hold f16 weights`);

    const rowElements = shape.slice(1).reduce((n, d) => n * d, 1);
    const [rowStart, rowEnd] = options.rows ?? [0, shape[0] ?? 1];
    if (options.rows) {
      if (shape.length === 0) throw new WeightUploadError(`${where} is a scalar; it has no rows to select`);
      if (!Number.isInteger(rowStart) || !Number.isInteger(rowEnd) || rowStart < 0 || rowEnd < rowStart || rowEnd > shape[0]) {
        throw new WeightUploadError(`${where}: rows [${rowStart}, ${rowEnd}) are outside its ${shape[0]} rows`);
      }
    }
    const outShape = shape.length === 0 ? [] : [rowEnd - rowStart, ...shape.slice(1)];
    const count = (rowEnd - rowStart) * rowElements;
    const inSize = SAFETENSORS_DTYPES[from];
    const outSize = to === "f32" ? 4 : 2;
    const maxBuffer = this.gpu.limits.maxBufferSize;
    if (count * outSize > maxBuffer) {
      throw new WeightUploadError(
        `${where}: ${count * outSize} bytes as ${to} is over this GPU's maxBufferSize (${maxBuffer}); upload it in row ranges`,
      );
    }

    const label = options.name ?? (options.rows ? `${name}[${rowStart}:${rowEnd}]` : name);
    const tensor = this.gpu.empty(outShape, to, { name: label, persistent: true });
    const inPlace = this.conversions !== undefined && to === "f16" && from === "BF16";
    // (An odd count would leave a half word at the end: those few tensors convert on the CPU.)
    const viaStaging = this.conversions !== undefined && to === "f16" && from === "F32" && count % 2 === 0;
    // An even number of elements per chunk keeps every f16 write at a multiple of 4 bytes.
    const chunkElements = Math.floor(this.chunkBytes / inSize / 2) * 2;
    try {
      await this.readChunks(source, name, rowStart * rowElements * inSize, count * inSize, chunkElements * inSize, (bytes, chunk) => {
        if (viaStaging) {
          this.staging ??= this.gpu.empty([this.chunkBytes / 4], "u32", { name: "weight upload staging", persistent: true });
          this.gpu.write(this.staging, bytes);
          const elements = bytes.byteLength / inSize;
          this.conversions!.toF16(this.staging, tensor, elements / 2, (chunk * chunkElements) / 2);
          this.bytesUploaded += bytes.byteLength;
        } else {
          // (BF16 bound for f16 goes in as it is, to be converted where it lies below.)
          const out = inPlace ? bytes : this.convert(bytes, from, to);
          this.gpu.write(tensor, out, chunk * chunkElements * outSize);
          this.bytesUploaded += out.byteLength;
        }
      });
    } catch (error) {
      tensor.dispose();
      throw error;
    }
    if (inPlace) this.conversions!.bf16ToF16InPlace(tensor);
    return tensor;
  }

  /**
   * Bytes [begin, end) of tensor `name` as they are, into a new persistent u32 tensor of
   * ceil((end - begin) / 4) words (the last one padded with zeros): ggml's packed blocks.
   */
  uploadPacked(source: TensorSource, name: string, [begin, end]: readonly [number, number], label = name): Promise<Tensor> {
    const result = this.queue.then(() => this.uploadPackedNow(source, name, begin, end, label));
    this.queue = result.catch(() => undefined);
    return result;
  }

  private async uploadPackedNow(source: TensorSource, name: string, begin: number, end: number, label: string): Promise<Tensor> {
    const words = Math.ceil((end - begin) / 4);
    if (words * 4 > this.gpu.limits.maxBufferSize) {
      throw new WeightUploadError(`${source.path}: tensor '${name}': ${words * 4} bytes are over this GPU's maxBufferSize (${this.gpu.limits.maxBufferSize}); upload it in row ranges`);
    }
    const tensor = this.gpu.empty([words], "u32", { name: label, persistent: true });
    try {
      await this.readChunks(source, name, begin, end - begin, this.chunkBytes, (bytes, chunk) => {
        // The last chunk is padded to whole words with zeros (the read buffer has room: the chunk size is a multiple of 8).
        const padded = new Uint8Array(bytes.buffer, bytes.byteOffset, Math.ceil(bytes.byteLength / 4) * 4).fill(0, bytes.byteLength);
        this.gpu.write(tensor, padded, chunk * this.chunkBytes);
        this.bytesUploaded += padded.byteLength;
      });
    } catch (error) {
      tensor.dispose();
      throw error;
    }
    return tensor;
  }

  /**
   * Reads bytes [begin, begin + length) of tensor `name` in chunks of `chunkBytes`, with the
   * next READS_AHEAD chunks read while `take` has this one, and hands each to `take` in order
   * (which must be done with it when it returns: its buffer takes a later read).
   */
  private async readChunks(
    source: TensorSource,
    name: string,
    begin: number,
    length: number,
    chunkBytes: number,
    take: (bytes: Uint8Array, chunk: number) => void,
  ): Promise<void> {
    const pending: Promise<Uint8Array>[] = [];
    const chunks = Math.ceil(length / chunkBytes);
    const read = (chunk: number): void => {
      if (chunk >= chunks) return;
      const start = chunk * chunkBytes;
      const target = this.reads[chunk % READS_AHEAD].subarray(0, Math.min(chunkBytes, length - start));
      pending[chunk] = source.readInto(name, begin + start, target).then(() => target);
    };
    try {
      for (let chunk = 0; chunk < READS_AHEAD; chunk++) read(chunk);
      for (let chunk = 0; chunk < chunks; chunk++) {
        const bytes = await pending[chunk];
        this.bytesRead += bytes.byteLength;
        take(bytes, chunk);
        // The chunk is written (Gpu.write copies it at once): its buffer takes the read READS_AHEAD on.
        read(chunk + READS_AHEAD);
      }
    } catch (error) {
      await Promise.allSettled(pending); // a read still in flight must not fail unobserved
      throw error;
    }
  }

  /** Frees the staging buffer (conversions already recorded still run). */
  dispose(): void {
    this.staging?.dispose();
    this.staging = null;
  }

  /** Converts one chunk; when the dtypes already match, the read buffer itself is the result. */
  private convert(bytes: Uint8Array, from: SafetensorsDType, to: StorageDType): Uint8Array {
    if ((from === "F32" && to === "f32") || (from === "F16" && to === "f16")) return bytes;
    const buffer = bytes.buffer;
    const halves = () => new Uint16Array(buffer, bytes.byteOffset, bytes.byteLength / 2);
    const out = this.converted.buffer;
    if (to === "f16") {
      const dst = new Uint16Array(out, 0, bytes.byteLength / (from === "F32" ? 4 : 2));
      if (from === "F32") f32ToF16(new Uint32Array(buffer, bytes.byteOffset, dst.length), dst);
      else bf16ToF16(halves(), dst);
      return new Uint8Array(out, 0, dst.byteLength);
    }
    const count = bytes.byteLength / 2;
    if (from === "BF16") bf16ToF32(halves(), new Uint32Array(out, 0, count));
    else f16ToF32(halves(), new Float32Array(out, 0, count));
    return new Uint8Array(out, 0, count * 4);
  }
}
