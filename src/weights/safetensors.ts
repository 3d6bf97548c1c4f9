/**
 * safetensors, read by hand.
 *
 * The format: an 8-byte little-endian header length N, then N bytes of JSON mapping each tensor
 * name to { dtype, shape, data_offsets: [begin, end] } (offsets relative to the data region
 * that follows the header), plus an optional "__metadata__" map of strings.
 *
 * Only the header is read when a file is opened; tensors are read one at a time with positioned
 * reads, so a 14 GB checkpoint never sits in JavaScript memory. Everything in the header is
 * checked before it is trusted, and every problem is an Error naming the file and the tensor.
 */
import { open, type FileHandle } from "node:fs/promises";
import { fromF16Bits } from "../tensor/dtype.js";

export const SAFETENSORS_DTYPES = {
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U64: 8,
  U32: 4,
  U16: 2,
  U8: 1,
  BOOL: 1,
} as const;

export type SafetensorsDType = keyof typeof SAFETENSORS_DTYPES;

export interface TensorEntry {
  name: string;
  dtype: SafetensorsDType;
  shape: number[];
  /** Byte range inside the file (absolute, header included). */
  begin: number;
  end: number;
}

/** Headers larger than this are refused: real ones are well under 10 MB even for 1000s of tensors. */
export const MAX_HEADER_BYTES = 100 * 1024 * 1024;

export class SafetensorsError extends Error {
  override name = "SafetensorsError";
}

export class SafetensorsFile {
  private constructor(
    readonly path: string,
    private readonly handle: FileHandle,
    readonly fileSize: number,
    readonly dataStart: number,
    readonly metadata: Record<string, string>,
    readonly tensors: Map<string, TensorEntry>,
  ) {}

  static async open(path: string): Promise<SafetensorsFile> {
    let handle: FileHandle;
    try {
      handle = await open(path, "r");
    } catch (error) {
      throw new SafetensorsError(`${path}: cannot open (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`);
    }
    try {
      const { size } = await handle.stat();
      const fail = (message: string): never => {
        throw new SafetensorsError(`${path}: ${message}`);
      };
      if (size < 8) fail(`file is ${size} bytes, too short for the 8-byte header length`);
      const lengthBytes = Buffer.alloc(8);
      await readExactly(handle, lengthBytes, 0, path);
      const headerLength = lengthBytes.readBigUInt64LE(0);
      if (headerLength === 0n) fail("header length is 0");
      if (headerLength > BigInt(MAX_HEADER_BYTES)) fail(`header length ${headerLength} is over the ${MAX_HEADER_BYTES}-byte limit`);
      if (headerLength > BigInt(size - 8)) fail(`header length ${headerLength} runs past the end of the ${size}-byte file`);
      const length = Number(headerLength);
      const headerBytes = Buffer.alloc(length);
      await readExactly(handle, headerBytes, 8, path);
      const { metadata, tensors } = parseHeader(headerBytes, 8 + length, size, path);
      return new SafetensorsFile(path, handle, size, 8 + length, metadata, tensors);
    } catch (error) {
      await handle.close();
      throw error;
    }
  }

  entry(name: string): TensorEntry {
    const entry = this.tensors.get(name);
    if (!entry) throw new SafetensorsError(`${this.path}: no tensor named '${name}'`);
    return entry;
  }

  /**
   * The raw little-endian bytes of one tensor. Pass `into` (at least the tensor's size) to reuse
   * one buffer across many reads; the result is then a view of it.
   */
  async readBytes(name: string, into?: Uint8Array): Promise<Uint8Array> {
    const entry = this.entry(name);
    const length = entry.end - entry.begin;
    const target = into && into.byteLength >= length ? into.subarray(0, length) : new Uint8Array(length);
    await readExactly(this.handle, target, entry.begin, `${this.path} (tensor '${name}')`);
    return target;
  }

  /** One tensor as float32 values (from F64, F32, F16, BF16 or any integer dtype). */
  async readFloat32(name: string): Promise<{ shape: number[]; data: Float32Array }> {
    const entry = this.entry(name);
    return { shape: entry.shape, data: toFloat32(await this.readBytes(name), entry.dtype) };
  }

  /** One integer tensor as JavaScript numbers (I64 values beyond 2^53 are refused). */
  async readIntegers(name: string): Promise<{ shape: number[]; data: number[] }> {
    const entry = this.entry(name);
    const bytes = await this.readBytes(name);
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const size = SAFETENSORS_DTYPES[entry.dtype];
    const count = bytes.byteLength / size;
    const data: number[] = new Array(count);
    for (let i = 0; i < count; i++) {
      const o = i * size;
      switch (entry.dtype) {
        case "I64":
        case "U64": {
          const v = entry.dtype === "I64" ? view.getBigInt64(o, true) : view.getBigUint64(o, true);
          if (v > BigInt(Number.MAX_SAFE_INTEGER) || v < BigInt(Number.MIN_SAFE_INTEGER)) {
            throw new SafetensorsError(`${this.path}: tensor '${name}' holds ${v}, too large for a JavaScript number`);
          }
          data[i] = Number(v);
          break;
        }
        case "I32": data[i] = view.getInt32(o, true); break;
        case "U32": data[i] = view.getUint32(o, true); break;
        case "I16": data[i] = view.getInt16(o, true); break;
        case "U16": data[i] = view.getUint16(o, true); break;
        case "I8": data[i] = view.getInt8(o); break;
        case "U8": case "BOOL": data[i] = view.getUint8(o); break;
        default:
          throw new SafetensorsError(`${this.path}: tensor '${name}' is ${entry.dtype}, not an integer dtype`);
      }
    }
    return { shape: entry.shape, data };
  }

  async close(): Promise<void> {
    await this.handle.close();
  }
}

async function readExactly(handle: FileHandle, target: Uint8Array, position: number, what: string): Promise<void> {
  let done = 0;
  while (done < target.byteLength) {
    const { bytesRead } = await handle.read(target, done, target.byteLength - done, position + done);
    if (bytesRead === 0) throw new SafetensorsError(`${what}: file ended early at byte ${position + done}`);
    done += bytesRead;
  }
}

function parseHeader(
  bytes: Buffer,
  dataStart: number,
  fileSize: number,
  path: string,
): { metadata: Record<string, string>; tensors: Map<string, TensorEntry> } {
  const fail = (message: string): never => {
    throw new SafetensorsError(`${path}: ${message}`);
  };
  let header: unknown;
  try {
    // Writers may pad the header with trailing spaces to align the data region.
    header = JSON.parse(bytes.toString("utf8"));
  } catch (error) {
    fail(`header is not valid JSON (${(error as Error).message})`);
  }
  if (!header || typeof header !== "object" || Array.isArray(header)) fail("header is not a JSON object");

  const metadata: Record<string, string> = {};
  const tensors = new Map<string, TensorEntry>();
  const dataLength = fileSize - dataStart;
  for (const [name, value] of Object.entries(header as Record<string, unknown>)) {
    if (name === "__metadata__") {
      if (!value || typeof value !== "object" || Array.isArray(value)) fail("__metadata__ is not an object");
      for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
        if (typeof v !== "string") fail(`__metadata__ entry '${k}' is not a string`);
        metadata[k] = v as string;
      }
      continue;
    }
    const where = `tensor '${name}'`;
    if (!value || typeof value !== "object" || Array.isArray(value)) fail(`${where}: entry is not an object`);
    const { dtype, shape, data_offsets: offsets } = value as Record<string, unknown>;
    if (typeof dtype !== "string" || !(dtype in SAFETENSORS_DTYPES)) fail(`${where}: unknown dtype ${JSON.stringify(dtype)}`);
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      fail(`${where}: shape ${JSON.stringify(shape)} is not a list of non-negative integers`);
    }
    if (
      !Array.isArray(offsets) ||
      offsets.length !== 2 ||
      !offsets.every((o) => Number.isSafeInteger(o) && o >= 0) ||
      offsets[0] > offsets[1]
    ) {
      fail(`${where}: data_offsets ${JSON.stringify(offsets)} is not [begin, end] with 0 <= begin <= end`);
    }
    const [begin, end] = offsets as [number, number];
    if (end > dataLength) fail(`${where}: data_offsets [${begin}, ${end}] run past the ${dataLength}-byte data region`);
    let elements = 1;
    for (const d of shape as number[]) {
      elements *= d;
      if (elements > Number.MAX_SAFE_INTEGER) fail(`${where}: shape ${JSON.stringify(shape)} is impossibly large`);
    }
    const expected = elements * SAFETENSORS_DTYPES[dtype as SafetensorsDType];
    if (end - begin !== expected) {
      fail(`${where}: ${end - begin} bytes of data, but ${dtype} ${JSON.stringify(shape)} needs ${expected}`);
    }
    tensors.set(name, { name, dtype: dtype as SafetensorsDType, shape: shape as number[], begin: dataStart + begin, end: dataStart + end });
  }

  // No two tensors may share bytes.
  const sorted = [...tensors.values()].filter((t) => t.end > t.begin).sort((a, b) => a.begin - b.begin);
  for (let i = 1; i < sorted.length; i++) {
    if (sorted[i].begin < sorted[i - 1].end) {
      fail(`tensors '${sorted[i - 1].name}' and '${sorted[i].name}' overlap in the data region`);
    }
  }
  return { metadata, tensors };
}

/** Decodes raw safetensors bytes of any numeric dtype to float32. */
export function toFloat32(bytes: Uint8Array, dtype: SafetensorsDType): Float32Array {
  const size = SAFETENSORS_DTYPES[dtype];
  const count = bytes.byteLength / size;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = new Float32Array(count);
  switch (dtype) {
    case "F32":
      for (let i = 0; i < count; i++) out[i] = view.getFloat32(i * 4, true);
      break;
    case "F64":
      for (let i = 0; i < count; i++) out[i] = view.getFloat64(i * 8, true);
      break;
    case "F16": {
      const halves = new Uint16Array(count);
      for (let i = 0; i < count; i++) halves[i] = view.getUint16(i * 2, true);
      out.set(fromF16Bits(halves));
      break;
    }
    case "BF16": {
      // bfloat16 is the top half of a float32.
      const words = new Uint32Array(out.buffer);
      for (let i = 0; i < count; i++) words[i] = view.getUint16(i * 2, true) << 16;
      break;
    }
    case "I64":
      for (let i = 0; i < count; i++) out[i] = Number(view.getBigInt64(i * 8, true));
      break;
    case "U64":
      for (let i = 0; i < count; i++) out[i] = Number(view.getBigUint64(i * 8, true));
      break;
    case "I32":
      for (let i = 0; i < count; i++) out[i] = view.getInt32(i * 4, true);
      break;
    case "U32":
      for (let i = 0; i < count; i++) out[i] = view.getUint32(i * 4, true);
      break;
    case "I16":
      for (let i = 0; i < count; i++) out[i] = view.getInt16(i * 2, true);
      break;
    case "U16":
      for (let i = 0; i < count; i++) out[i] = view.getUint16(i * 2, true);
      break;
    case "I8":
      for (let i = 0; i < count; i++) out[i] = view.getInt8(i);
      break;
    case "U8":
    case "BOOL":
      for (let i = 0; i < count; i++) out[i] = view.getUint8(i);
      break;
  }
  return out;
}

/** Reads every tensor of a small file as float32 (fixtures, inputs): name → { shape, data }. */
export async function readAllFloat32(path: string): Promise<Map<string, { shape: number[]; data: Float32Array }>> {
  const file = await SafetensorsFile.open(path);
  try {
    const out = new Map<string, { shape: number[]; data: Float32Array }>();
    for (const name of file.tensors.keys()) out.set(name, await file.readFloat32(name));
    return out;
  } finally {
    await file.close();
  }
}
