/**
 * Writes safetensors files: test checkpoints, fixtures, benchmark data.
 *
 * The layout is the reference implementation's, so a file written here is byte for byte what
 * Python's `safetensors.torch.save_file` writes for the same tensors and metadata: tensors
 * ordered by descending dtype alignment, then by name; their bytes packed back to back in that
 * order; the JSON header compact, `__metadata__` first, and padded with spaces to a multiple
 * of 8 bytes so the data region (and every 8-byte tensor in it) starts aligned.
 *
 * The header is built first, then each tensor's bytes are written straight from the caller's
 * array: nothing is concatenated in memory.
 */
import { writeAll, writeFileSafely, type WriteOptions } from "../files/write.js";
import { SAFETENSORS_DTYPES, SafetensorsError, isSafetensorsDType, type SafetensorsDType } from "./safetensors.js";

export interface TensorToWrite {
  dtype: SafetensorsDType;
  shape: number[];
  /** The little-endian bytes of the elements (a typed array of the right kind, or raw bytes). */
  data: ArrayBufferView;
}

const DTYPE_RANK = new Map(Object.keys(SAFETENSORS_DTYPES).map((dtype, i) => [dtype, i]));

/** The 8-byte length and the padded JSON header for these tensors, and the order their bytes follow in. */
export function encodeSafetensorsHeader(
  tensors: Record<string, TensorToWrite>,
  metadata?: Record<string, string>,
): { header: Uint8Array; order: string[]; dataBytes: number } {
  const order = Object.keys(tensors).sort(
    (a, b) =>
      DTYPE_RANK.get(tensors[b].dtype)! - DTYPE_RANK.get(tensors[a].dtype)! ||
      Buffer.compare(Buffer.from(a), Buffer.from(b)), // names compare as UTF-8 bytes, as in Rust
  );
  const json: Record<string, unknown> = {};
  if (metadata) {
    const sorted: Record<string, string> = {};
    for (const key of Object.keys(metadata).sort()) {
      if (typeof metadata[key] !== "string") throw new SafetensorsError(`metadata '${key}' is not a string`);
      sorted[key] = metadata[key];
    }
    json.__metadata__ = sorted;
  }
  let offset = 0;
  for (const name of order) {
    const { dtype, shape, data } = checkTensor(name, tensors[name]);
    json[name] = { dtype, shape, data_offsets: [offset, offset + data.byteLength] };
    offset += data.byteLength;
  }
  const text = Buffer.from(JSON.stringify(json), "utf8");
  const padded = Math.ceil(text.byteLength / 8) * 8;
  const header = new Uint8Array(8 + padded).fill(0x20); // spaces
  new DataView(header.buffer).setBigUint64(0, BigInt(padded), true);
  header.set(text, 8);
  return { header, order, dataBytes: offset };
}

function checkTensor(name: string, tensor: TensorToWrite): TensorToWrite {
  const fail = (message: string): never => {
    throw new SafetensorsError(`tensor '${name}': ${message}`);
  };
  if (name === "__metadata__") fail("the name __metadata__ is reserved");
  if (!isSafetensorsDType(tensor.dtype)) fail(`unknown dtype ${JSON.stringify(tensor.dtype)}`);
  if (!Array.isArray(tensor.shape) || !tensor.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    fail(`shape ${JSON.stringify(tensor.shape)} is not a list of non-negative integers`);
  }
  if (!ArrayBuffer.isView(tensor.data)) fail("data is not a typed array or DataView");
  const elements = tensor.shape.reduce((n, d) => n * d, 1);
  const expected = elements * SAFETENSORS_DTYPES[tensor.dtype];
  if (tensor.data.byteLength !== expected) {
    fail(`${tensor.data.byteLength} bytes of data, but ${tensor.dtype} [${tensor.shape.join(", ")}] needs ${expected}`);
  }
  return tensor;
}

/**
 * Writes `tensors` (and optional string metadata) to `path` as a safetensors file, through a
 * temporary file (files/write.ts). Like fs.writeFile it replaces an existing file unless
 * `write` says otherwise; commands pass their --force and their inputs.
 */
export async function writeSafetensors(
  path: string,
  tensors: Record<string, TensorToWrite>,
  metadata?: Record<string, string>,
  write: WriteOptions = { force: true },
): Promise<void> {
  const { header, order } = encodeSafetensorsHeader(tensors, metadata);
  await writeFileSafely(
    path,
    async (handle) => {
      await writeAll(handle, header);
      for (const name of order) {
        const { data } = tensors[name];
        await writeAll(handle, new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
      }
    },
    write,
  );
}

