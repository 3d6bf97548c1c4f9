/**
 * A checkpoint folder → weights on the GPU.
 *
 * Every tensor the config needs is found (under either naming scheme), read tensor by tensor
 * and converted on the way to the storage dtype. A matrix larger than one storage binding is
 * uploaded as row parts, each its own buffer, so any checkpoint loads whatever the adapter's
 * maxStorageBufferBindingSize (128 MiB on lavapipe).
 *
 * Once everything is uploaded, one GPU pass counts the NaN and infinite values of every weight
 * as stored (src/kernels/nonfinite.ts; one read of the counts at the end), and a weight that
 * holds any is an error naming it: a damaged checkpoint, or values that overflow f16, would
 * otherwise load without a word and answer garbage.
 */
import { countNonFinite } from "../kernels/nonfinite.js";
import type { DType } from "../tensor/dtype.js";
import type { Gpu } from "../tensor/gpu.js";
import type { Tensor } from "../tensor/tensor.js";
import { Checkpoint } from "../weights/checkpoint.js";
import type { ResolvedWeights } from "../weights/names.js";
import { SAFETENSORS_DTYPES } from "../weights/safetensors.js";
import { DEFAULT_CHUNK_BYTES, WeightUploader } from "../weights/upload.js";
import { bf16ToF16InPlace, toF16 } from "../kernels/to_f16.js";
import { WeightStore } from "./weights.js";

export interface LoadProgress {
  /** Checkpoint bytes read so far, of all the model needs. */
  loadedBytes: number;
  totalBytes: number;
  /** The tensor just uploaded (checkpoint name). */
  tensor: string;
}

export interface LoadedWeights {
  store: WeightStore;
  /** Tensors stored as several row parts. */
  splitTensors: string[];
  /** Bytes of weights on the GPU. */
  bytes: number;
}

export class NonFiniteWeightError extends Error {
  override name = "NonFiniteWeightError";
}

/** At most this many offending tensors are named in the error. */
const MAX_NAMED = 10;

/** Split rows at multiples of this, so that bias slices of split layers stay binding-aligned. */
const PART_ROW_MULTIPLE = 256;

/** Row ranges of a [rows, ...] tensor of `rowBytes` bytes per row, each part within `limit` bytes. */
export function partRows(rows: number, rowBytes: number, limit: number, name: string): [number, number][] {
  if (rows * rowBytes <= limit) return [[0, rows]];
  let perPart = Math.floor(limit / rowBytes);
  if (perPart >= PART_ROW_MULTIPLE) perPart -= perPart % PART_ROW_MULTIPLE;
  if (perPart === 0) {
    throw new RangeError(`${name}: one row is ${rowBytes} bytes, more than a storage binding may hold (${limit})`);
  }
  const parts: [number, number][] = [];
  for (let start = 0; start < rows; start += perPart) parts.push([start, Math.min(rows, start + perPart)]);
  return parts;
}

/**
 * The storage dtype to use: f16 when the adapter has shader-f16 and the checkpoint's floats are
 * 16-bit; f32 otherwise. An explicit request is honoured, or refused when impossible.
 */
export function chooseDtype(gpu: Gpu, checkpoint: Checkpoint, resolved: ResolvedWeights, requested?: DType): DType {
  if (requested === "f16" && !gpu.hasF16) {
    throw new Error(`dtype f16 was requested, but this adapter (${gpu.adapter.description || gpu.adapter.device}) has no shader-f16`);
  }
  if (requested === "f16" || requested === "f32") return requested;
  if (requested !== undefined) throw new Error(`dtype must be f16 or f32, not ${String(requested)}`);
  const sixteenBit = [...resolved.tensors.values()].every((t) => {
    const dtype = checkpoint.entry(t.checkpointName).dtype;
    return dtype === "F16" || dtype === "BF16";
  });
  return gpu.hasF16 && sixteenBit ? "f16" : "f32";
}

export async function loadWeights(
  gpu: Gpu,
  checkpoint: Checkpoint,
  resolved: ResolvedWeights,
  dtype: DType,
  onProgress?: (progress: LoadProgress) => void,
  /** Matrices larger than this are stored in row parts (default: the largest storage binding). */
  partBytes = gpu.limits.maxStorageBufferBindingSize,
): Promise<LoadedWeights> {
  const storage = dtype === "f16" ? "f16" : "f32";
  const uploader = new WeightUploader(gpu, DEFAULT_CHUNK_BYTES, { toF16, bf16ToF16InPlace });
  const limit = Math.min(partBytes, gpu.limits.maxStorageBufferBindingSize);
  // In the order the files hold them, so that a cold read goes through each file once, front to back.
  const fileOrder = new Map(checkpoint.files.map((f, i) => [f, i]));
  const entries = [...resolved.tensors.values()].sort((a, b) => {
    const [ea, eb] = [checkpoint.entry(a.checkpointName), checkpoint.entry(b.checkpointName)];
    return fileOrder.get(ea.file)! - fileOrder.get(eb.file)! || ea.begin - eb.begin;
  });
  const totalBytes = entries.reduce((sum, t) => {
    const entry = checkpoint.entry(t.checkpointName);
    return sum + entry.shape.reduce((n, d) => n * d, 1) * SAFETENSORS_DTYPES[entry.dtype];
  }, 0);
  const weights = new Map<string, { weight: Tensor; rowStart: number }[]>();
  const splitTensors: string[] = [];
  try {
    for (const t of entries) {
      const rows = t.shape[0] ?? 1;
      const rowBytes = (t.shape.slice(1).reduce((n, d) => n * d, 1) * (storage === "f16" ? 2 : 4));
      const ranges = t.shape.length >= 2 ? partRows(rows, rowBytes, limit, t.checkpointName) : [[0, rows] as [number, number]];
      const parts: { weight: Tensor; rowStart: number }[] = [];
      weights.set(t.name, parts);
      for (const range of ranges) {
        const weight = await uploader.upload(checkpoint, t.checkpointName, {
          dtype: storage,
          rows: ranges.length > 1 ? range : undefined,
        });
        parts.push({ weight, rowStart: range[0] });
      }
      if (ranges.length > 1) splitTensors.push(`${t.checkpointName} (${ranges.length} parts)`);
      onProgress?.({ loadedBytes: uploader.bytesRead, totalBytes, tensor: t.checkpointName });
    }
    await checkFinite(checkpoint, resolved, weights, storage);
  } catch (error) {
    for (const parts of weights.values()) for (const p of parts) p.weight.dispose();
    throw error;
  } finally {
    uploader.dispose();
  }
  const bytes = [...weights.values()].flat().reduce((sum, p) => sum + p.weight.byteLength, 0);
  return { store: new WeightStore(weights), splitTensors, bytes };
}

/** Throws a NonFiniteWeightError naming the weights that hold NaN or infinite values (as stored in `storage`). */
async function checkFinite(
  checkpoint: Checkpoint,
  resolved: ResolvedWeights,
  weights: ReadonlyMap<string, readonly { weight: Tensor }[]>,
  storage: DType,
): Promise<void> {
  const owners = [...weights].flatMap(([name, parts]) => parts.map((p) => ({ name, weight: p.weight })));
  if (owners.length === 0) return;
  const counts = countNonFinite(owners[0].weight.gpu, owners.map((o) => o.weight));
  const values = await counts.read();
  counts.dispose();
  const perTensor = new Map<string, number>();
  owners.forEach((o, i) => {
    if (values[i] > 0) perTensor.set(o.name, (perTensor.get(o.name) ?? 0) + values[i]);
  });
  if (perTensor.size === 0) return;
  const named = [...perTensor].slice(0, MAX_NAMED).map(([name, count]) => {
    const t = resolved.tensors.get(name)!;
    const source = checkpoint.entry(t.checkpointName).dtype;
    // An F32 or BF16 value beyond f16's range becomes Inf when stored as f16.
    const overflow = storage === "f16" && source !== "F16" ? ` (${source} values beyond ±65504 become Inf in f16: load as f32 to tell)` : "";
    return `${t.checkpointName} holds ${count} NaN/Inf value${count === 1 ? "" : "s"}${overflow}`;
  });
  if (perTensor.size > MAX_NAMED) named.push(`... and ${perTensor.size - MAX_NAMED} more tensors`);
  throw new NonFiniteWeightError(
    `${checkpoint.path}: ${perTensor.size} weight${perTensor.size === 1 ? " holds" : "s hold"} NaN or infinite values as stored in ${storage}; ` +
      `the model would answer garbage:\n  ${named.join("\n  ")}`,
  );
}
