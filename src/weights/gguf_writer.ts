/**
 * Writing GGUF files (the format is described in gguf.ts): test files, and models converted
 * for llama.cpp.
 *
 * The header (magic, version, counts, metadata, tensor infos) is encoded first, with each
 * tensor's offset laid out in the order given: aligned to `general.alignment` (32 unless the
 * metadata sets it), zero padding between. Every value is checked against its declared type
 * before a byte is written, and every tensor's bytes against its type's block layout, so a
 * file this writes is one the reader (and llama.cpp) accepts.
 */
import type { FileHandle } from "node:fs/promises";
import { writeFileSafely, type WriteOptions } from "../files/write.js";
import {
  GGUF_DEFAULT_ALIGNMENT,
  GGUF_MAGIC,
  GGUF_VALUE_BYTES,
  GGUF_VALUE_TYPES,
  ggmlTypeNamed,
  type GgufArray,
  type GgufValue,
  type GgufValueType,
} from "./gguf_types.js";

export interface GgufTensorToWrite {
  /** A ggml type name: "F32", "F16", "Q8_0", "Q4_K", ... */
  type: string;
  /** ggml's order: the first is the innermost (a row's length). */
  dims: number[];
  /** The raw bytes, already in the type's layout. */
  data: ArrayBufferView;
}

export interface GgufToWrite {
  metadata: Record<string, GgufValue>;
  tensors: Record<string, GgufTensorToWrite>;
  /** 3 (the default) or 2: the same layout for little-endian files. */
  version?: 2 | 3;
}

export class GgufWriteError extends Error {
  override name = "GgufWriteError";
}

const INTEGER_RANGES: Partial<Record<GgufValueType, [number, number]>> = {
  UINT8: [0, 2 ** 8 - 1],
  INT8: [-(2 ** 7), 2 ** 7 - 1],
  UINT16: [0, 2 ** 16 - 1],
  INT16: [-(2 ** 15), 2 ** 15 - 1],
  UINT32: [0, 2 ** 32 - 1],
  INT32: [-(2 ** 31), 2 ** 31 - 1],
};

/** Appends little-endian values to a growing list of byte chunks. */
class Bytes {
  readonly chunks: Uint8Array[] = [];
  length = 0;

  push(bytes: Uint8Array): void {
    this.chunks.push(bytes);
    this.length += bytes.byteLength;
  }

  private fixed(size: number, write: (view: DataView) => void): void {
    const bytes = new Uint8Array(size);
    write(new DataView(bytes.buffer));
    this.push(bytes);
  }

  u32(v: number): void {
    this.fixed(4, (d) => d.setUint32(0, v, true));
  }

  u64(v: bigint | number): void {
    this.fixed(8, (d) => d.setBigUint64(0, BigInt(v), true));
  }

  string(s: string): void {
    const utf8 = Buffer.from(s, "utf8");
    this.u64(utf8.byteLength);
    this.push(utf8);
  }

  /** One value of a fixed-size type, checked against it. */
  scalar(type: GgufValueType, value: unknown, what: string): void {
    const wrong = () => new GgufWriteError(`${what}: ${typeof value === "bigint" ? `${value}n` : JSON.stringify(value)} is not a ${type}`);
    const range = INTEGER_RANGES[type];
    if (range) {
      if (typeof value !== "number" || !Number.isInteger(value) || value < range[0] || value > range[1]) throw wrong();
    } else if (type === "FLOAT32" || type === "FLOAT64") {
      if (typeof value !== "number") throw wrong();
    } else if (type === "UINT64" || type === "INT64") {
      const [low, high] = type === "UINT64" ? [0n, 2n ** 64n - 1n] : [-(2n ** 63n), 2n ** 63n - 1n];
      if (typeof value !== "bigint" || value < low || value > high) throw wrong();
    } else if (type === "BOOL") {
      if (typeof value !== "boolean") throw wrong();
    }
    this.fixed(GGUF_VALUE_BYTES[type]!, (d) => {
      switch (type) {
        case "UINT8": return d.setUint8(0, value as number);
        case "INT8": return d.setInt8(0, value as number);
        case "UINT16": return d.setUint16(0, value as number, true);
        case "INT16": return d.setInt16(0, value as number, true);
        case "UINT32": return d.setUint32(0, value as number, true);
        case "INT32": return d.setInt32(0, value as number, true);
        case "FLOAT32": return d.setFloat32(0, value as number, true);
        case "FLOAT64": return d.setFloat64(0, value as number, true);
        case "UINT64": return d.setBigUint64(0, value as bigint, true);
        case "INT64": return d.setBigInt64(0, value as bigint, true);
        case "BOOL": return d.setUint8(0, value ? 1 : 0);
      }
    });
  }

  value(type: GgufValueType, value: unknown, what: string): void {
    if (type === "STRING") {
      if (typeof value !== "string") throw new GgufWriteError(`${what}: ${JSON.stringify(value)} is not a STRING`);
      this.string(value);
    } else if (type === "ARRAY") {
      this.array(value as GgufArray, what);
    } else {
      this.scalar(type, value, what);
    }
  }

  array(array: GgufArray, what: string): void {
    if (typeof array !== "object" || array === null || !Array.isArray(array.values) || !GGUF_VALUE_TYPES.includes(array.itemType)) {
      throw new GgufWriteError(`${what}: an ARRAY needs an itemType (one of ${GGUF_VALUE_TYPES.join(", ")}) and values`);
    }
    this.u32(GGUF_VALUE_TYPES.indexOf(array.itemType));
    this.u64(array.values.length);
    array.values.forEach((item, i) => this.value(array.itemType, item, `${what}: item ${i}`));
  }
}

interface Layout {
  header: Bytes;
  order: { name: string; data: Uint8Array; offset: number }[];
  alignment: number;
  /** Where the data region starts, and the file's length. */
  dataStart: number;
  fileBytes: number;
}

function layout(file: GgufToWrite): Layout {
  const version = file.version ?? 3;
  if (version !== 2 && version !== 3) throw new GgufWriteError(`GGUF version ${String(version)} cannot be written (2 or 3)`);
  const alignmentValue = file.metadata["general.alignment"];
  let alignment = GGUF_DEFAULT_ALIGNMENT;
  if (alignmentValue !== undefined) {
    if (alignmentValue.type !== "UINT32" || alignmentValue.value === 0 || (alignmentValue.value & (alignmentValue.value - 1)) !== 0) {
      throw new GgufWriteError(`metadata 'general.alignment' must be a UINT32 power of two, not ${alignmentValue.type} ${String(alignmentValue.value)}`);
    }
    alignment = alignmentValue.value;
  }

  const header = new Bytes();
  header.push(GGUF_MAGIC);
  header.u32(version);
  const names = Object.keys(file.tensors);
  const keys = Object.keys(file.metadata);
  header.u64(names.length);
  header.u64(keys.length);
  for (const key of keys) {
    const { type, value } = file.metadata[key];
    if (!GGUF_VALUE_TYPES.includes(type)) throw new GgufWriteError(`metadata '${key}': unknown value type ${String(type)}`);
    header.string(key);
    header.u32(GGUF_VALUE_TYPES.indexOf(type));
    header.value(type, value, `metadata '${key}'`);
  }

  const order: Layout["order"] = [];
  let offset = 0;
  for (const name of names) {
    const { type: typeName, dims, data } = file.tensors[name];
    const what = `tensor '${name}'`;
    const type = ggmlTypeNamed(typeName);
    if (!type) throw new GgufWriteError(`${what}: unknown ggml type ${JSON.stringify(typeName)}`);
    if (!Array.isArray(dims) || dims.length < 1 || dims.length > 4 || !dims.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw new GgufWriteError(`${what}: dims [${String(dims)}] must be 1 to 4 integers >= 0`);
    }
    if (dims[0] % type.blockElements !== 0) throw new GgufWriteError(`${what}: rows of ${dims[0]} elements are not whole ${type.name} blocks of ${type.blockElements}`);
    const bytes = (dims.reduce((n, d) => n * d, 1) / type.blockElements) * type.blockBytes;
    if (data.byteLength !== bytes) throw new GgufWriteError(`${what}: ${data.byteLength} bytes given, but ${type.name} [${dims.join(", ")}] is ${bytes}`);
    header.string(name);
    header.u32(dims.length);
    for (const d of dims) header.u64(d);
    header.u32(type.id);
    header.u64(offset);
    order.push({ name, data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength), offset });
    offset = Math.ceil((offset + bytes) / alignment) * alignment;
  }
  const dataStart = Math.ceil(header.length / alignment) * alignment;
  const last = order.at(-1);
  return { header, order, alignment, dataStart, fileBytes: dataStart + (last ? last.offset + last.data.byteLength : 0) };
}

/** The whole file as bytes (for small files: tests, fixtures). */
export function encodeGguf(file: GgufToWrite): Uint8Array {
  const { header, order, dataStart, fileBytes } = layout(file);
  const out = new Uint8Array(fileBytes);
  let at = 0;
  for (const chunk of header.chunks) {
    out.set(chunk, at);
    at += chunk.byteLength;
  }
  for (const t of order) out.set(t.data, dataStart + t.offset);
  return out;
}

/** Writes the file through writeFileSafely (never over an existing file unless `force`), streaming each tensor's bytes from the caller's arrays. */
export async function writeGguf(path: string, file: GgufToWrite, options: WriteOptions = { force: false }): Promise<void> {
  const { header, order, dataStart } = layout(file);
  await writeFileSafely(
    path,
    async (handle: FileHandle) => {
      await handle.write(Buffer.concat(header.chunks));
      let at = header.length;
      for (const t of order) {
        const start = dataStart + t.offset;
        if (start > at) await handle.write(new Uint8Array(start - at));
        await handle.write(t.data);
        at = start + t.data.byteLength;
      }
    },
    options,
  );
}
