/**
 * A checkpoint (a Hugging Face folder, or llama.cpp's GGUF pair) → weights on the GPU.
 *
 * Every tensor the config needs is found (under any naming scheme), read tensor by tensor
 * and converted on the way to the storage dtype. A matrix larger than one storage binding is
 * uploaded as row parts, each its own buffer, so any checkpoint loads whatever the adapter's
 * maxStorageBufferBindingSize (128 MiB on lavapipe). A GGUF matrix in one of ggml's quantized
 * types is uploaded as its packed blocks, never expanded: the quantized kernels read it so.
 *
 * Once everything is uploaded, one GPU pass counts the NaN and infinite values of every weight
 * as stored (src/kernels/nonfinite.ts; one read of the counts at the end), and a weight that
 * holds any is an error naming it: a damaged checkpoint, or values that overflow f16, would
 * otherwise load without a word and answer garbage. (Quantized matrices are not scanned: their
 * words are not floats.)
 */
import { countNonFinite } from "../kernels/nonfinite.js";
import { BLOCK_LAYOUT, QUANTIZED_TYPES, type QuantizedType } from "../kernels/quant/blocks.js";
import { quantize as quantizeValues, type QuantizableType } from "../kernels/quant/quantize.js";
import { SAFETENSORS_DTYPES, toFloat32, type SafetensorsDType } from "../weights/safetensors.js";
import { quantizedRowBytes } from "../kernels/quant/matvec_common.js";
import type { DType } from "../tensor/dtype.js";
import type { Gpu } from "../tensor/gpu.js";
import type { Tensor } from "../tensor/tensor.js";
import type { ResolvedWeights, TensorIndex } from "../weights/names.js";
import { DEFAULT_CHUNK_BYTES, WeightUploader, type TensorSource } from "../weights/upload.js";
import { bf16ToF16InPlace, toF16 } from "../kernels/to_f16.js";
import { isQuantized, type Weight } from "./linear.js";
import { WeightStore } from "./weights.js";

/** What loading reads from: a Checkpoint (safetensors) or a GgufCheckpoint. */
export interface WeightFiles extends TensorSource, TensorIndex {
  /** The files, in the order to read them. */
  readonly files: readonly object[];
  entry(name: string): { dtype: string; shape: number[]; file: object; begin: number; end: number };
}

const FLOAT_DTYPES = ["F32", "F16", "BF16"];

function isQuantizedType(dtype: string): dtype is QuantizedType {
  return (QUANTIZED_TYPES as readonly string[]).includes(dtype);
}

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
  /** Tensors per type held: the float storage dtype, or a ggml type. */
  types: Record<string, number>;
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
 * The storage dtype of the float weights: f16 when the adapter has shader-f16 and the
 * checkpoint's float matrices are 16-bit (or there are none: every matrix is quantized); f32
 * otherwise. An explicit request is honoured, or refused when impossible.
 */
export function chooseDtype(gpu: Gpu, checkpoint: WeightFiles, resolved: ResolvedWeights, requested?: DType): DType {
  if (requested === "f16" && !gpu.hasF16) {
    throw new Error(`dtype f16 was requested, but this adapter (${gpu.adapter.description || gpu.adapter.device}) has no shader-f16`);
  }
  if (requested === "f16" || requested === "f32") return requested;
  if (requested !== undefined) throw new Error(`dtype must be f16 or f32, not ${String(requested)}`);
  // The float matrices decide: GGUF keeps its vectors in F32 beside F16 (or quantized) matrices.
  const sixteenBit = [...resolved.tensors.values()].every((t) => {
    const { dtype, shape } = checkpoint.entry(t.checkpointName);
    return shape.length < 2 || dtype === "F16" || dtype === "BF16" || isQuantizedType(dtype);
  });
  return gpu.hasF16 && sixteenBit ? "f16" : "f32";
}

/**
 * Which float matrices loading quantizes, and into what ggml type: the decoder's (`text`: its
 * embedding table and LM head included, as llama.cpp quantizes a text model) and the vision
 * tower's and projector's (`vision`: what a quantized mmproj file holds; llama.cpp's mmproj
 * files are F16 unless quantized on purpose).
 */
export interface QuantizePlan<T extends QuantizedType = QuantizableType> {
  text?: T;
  vision?: T;
}

/**
 * The type a float tensor is quantized into when loading under `plan`, or undefined to keep
 * it in floats: a matrix whose rows are whole blocks, in a part the plan quantizes. The vision
 * tower's patch and position embeddings are not matrices it multiplies by, so they stay floats.
 */
export function quantizedOnLoad<T extends QuantizedType>(name: string, shape: readonly number[], plan: QuantizePlan<T>): T | undefined {
  const type =
    name.startsWith("text.") || name.startsWith("lm_head.")
      ? plan.text
      : (name.startsWith("vision.") && !name.startsWith("vision.embeddings.")) || name.startsWith("projector.")
        ? plan.vision
        : undefined;
  return type !== undefined && shape.length === 2 && shape[1] % BLOCK_LAYOUT[type].elements === 0 ? type : undefined;
}

export async function loadWeights(
  gpu: Gpu,
  checkpoint: WeightFiles,
  resolved: ResolvedWeights,
  dtype: DType,
  onProgress?: (progress: LoadProgress) => void,
  /** Matrices larger than this are stored in row parts (default: the largest storage binding). */
  partBytes = gpu.limits.maxStorageBufferBindingSize,
  /** Quantize float matrices as they load (quantizedOnLoad). */
  quantize: QuantizePlan = {},
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
  for (const t of entries) checkStorable(checkpoint, t.checkpointName);
  const totalBytes = entries.reduce((sum, t) => {
    const entry = checkpoint.entry(t.checkpointName);
    return sum + entry.end - entry.begin;
  }, 0);
  const weights = new Map<string, { weight: Weight; rowStart: number }[]>();
  const splitTensors: string[] = [];
  try {
    for (const t of entries) {
      const stored = checkpoint.entry(t.checkpointName).dtype;
      const onLoad = FLOAT_DTYPES.includes(stored) ? quantizedOnLoad(t.name, t.shape, quantize) : undefined;
      const type = onLoad ?? stored;
      const rows = t.shape[0] ?? 1;
      const quantized = isQuantizedType(type);
      const rowBytes = quantized ? quantizedRowBytes(type, t.shape[1]) : t.shape.slice(1).reduce((n, d) => n * d, 1) * (storage === "f16" ? 2 : 4);
      const ranges = t.shape.length >= 2 ? partRows(rows, rowBytes, limit, t.checkpointName) : [[0, rows] as [number, number]];
      const parts: { weight: Weight; rowStart: number }[] = [];
      weights.set(t.name, parts);
      for (const range of ranges) {
        const split = ranges.length > 1 ? range : undefined;
        if (quantized) {
          const label = split ? `${t.checkpointName}[${range[0]}:${range[1]}]` : t.checkpointName;
          const data = onLoad
            ? await quantizeRows(gpu, checkpoint, t.checkpointName, onLoad, range, label)
            : await uploader.uploadPacked(checkpoint, t.checkpointName, [range[0] * rowBytes, range[1] * rowBytes], label);
          parts.push({ weight: { type, rows: range[1] - range[0], cols: t.shape[1], data }, rowStart: range[0] });
        } else {
          parts.push({ weight: await uploader.upload(checkpoint, t.checkpointName, { dtype: storage, rows: split }), rowStart: range[0] });
        }
      }
      if (ranges.length > 1) splitTensors.push(`${t.checkpointName} (${ranges.length} parts)`);
      onProgress?.({ loadedBytes: uploader.bytesRead, totalBytes, tensor: t.checkpointName });
    }
    await checkFinite(checkpoint, resolved, weights, storage);
  } catch (error) {
    for (const parts of weights.values()) for (const p of parts) (isQuantized(p.weight) ? p.weight.data : p.weight).dispose();
    throw error;
  } finally {
    uploader.dispose();
  }
  const store = new WeightStore(weights);
  const bytes = store.all().reduce((sum, t) => sum + t.byteLength, 0);
  const types: Record<string, number> = {};
  for (const parts of weights.values()) {
    const type = isQuantized(parts[0].weight) ? parts[0].weight.type : storage;
    types[type] = (types[type] ?? 0) + 1;
  }
  return { store, splitTensors, bytes, types };
}

/** Float rows bytes read per quantizing step: a few MB of float32 at a time, whatever the matrix. */
const QUANTIZE_CHUNK_ELEMENTS = 1 << 20;

/**
 * Rows [start, end) of a float matrix quantized into `type` (ggml's reference quantizers,
 * kernels/quant/quantize.ts) on the CPU, a few rows at a time, into a new persistent u32
 * tensor of their packed blocks.
 */
async function quantizeRows(gpu: Gpu, checkpoint: WeightFiles, name: string, type: QuantizableType, [start, end]: readonly [number, number], label: string): Promise<Tensor> {
  const { dtype, shape } = checkpoint.entry(name);
  const cols = shape[1];
  const inSize = SAFETENSORS_DTYPES[dtype as SafetensorsDType];
  const rowBytes = quantizedRowBytes(type, cols);
  const data = gpu.empty([Math.ceil(((end - start) * rowBytes) / 4)], "u32", { name: label, persistent: true });
  try {
    // A multiple of 4 rows keeps every write at a multiple of 4 bytes.
    const step = Math.max(4, Math.floor(QUANTIZE_CHUNK_ELEMENTS / cols / 4) * 4);
    for (let row = start; row < end; row += step) {
      const rows = Math.min(step, end - row);
      const raw = new Uint8Array(rows * cols * inSize);
      await checkpoint.readInto(name, row * cols * inSize, raw);
      const blocks = quantizeValues(type, toFloat32(raw, dtype as SafetensorsDType));
      const padded = new Uint8Array(Math.ceil(blocks.byteLength / 4) * 4);
      padded.set(blocks);
      gpu.write(data, padded, (row - start) * rowBytes);
    }
  } catch (error) {
    data.dispose();
    throw error;
  }
  return data;
}

/** Weight types as "f16", or "Q4_K + Q6_K + f32" for a mix (LoadReport.weightTypes), the most used first. */
export function describeWeightTypes(types: Record<string, number>): string {
  return Object.entries(types)
    .sort((a, b) => b[1] - a[1])
    .map(([type]) => type)
    .join(" + ");
}

/** Refuses, before anything is uploaded, a tensor whose type the runtime cannot hold as it needs it. */
function checkStorable(checkpoint: WeightFiles, name: string): void {
  const { dtype, shape } = checkpoint.entry(name);
  if (FLOAT_DTYPES.includes(dtype)) return;
  const where = `${checkpoint.path}: tensor '${name}'`;
  if (!isQuantizedType(dtype)) {
    throw new Error(`${where} is ${dtype}, which this runtime cannot read; supported: ${[...FLOAT_DTYPES, ...QUANTIZED_TYPES].join(", ")}`);
  }
  const { elements } = BLOCK_LAYOUT[dtype];
  if (shape.length !== 2 || shape[1] % elements !== 0) {
    throw new Error(`${where} is ${dtype} [${shape.join(", ")}]; quantized tensors are read only as matrices whose rows are whole ${elements}-element blocks`);
  }
}

/** Throws a NonFiniteWeightError naming the weights that hold NaN or infinite values (as stored in `storage`). */
async function checkFinite(
  checkpoint: WeightFiles,
  resolved: ResolvedWeights,
  weights: ReadonlyMap<string, readonly { weight: Weight }[]>,
  storage: DType,
): Promise<void> {
  const owners = [...weights].flatMap(([name, parts]) =>
    parts.flatMap((p) => (isQuantized(p.weight) ? [] : [{ name, weight: p.weight as Tensor }])),
  );
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
