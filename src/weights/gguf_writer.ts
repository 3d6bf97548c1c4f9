/**
 * Writing GGUF files (the format is described in gguf.ts): test files, and models converted
 * for llama.cpp.
 *
 * The layout is the one llama.cpp's own writer (gguf.cpp, `gguf_write_out`) and gguf-py's
 * GGUFWriter produce, all little-endian: "GGUF", a u32 version, a u64 tensor count, a u64
 * metadata count; each metadata key as a gguf string (a u64 byte length and the UTF-8 bytes,
 * no terminator), its u32 value type and the value (an ARRAY as a u32 item type, a u64 count
 * and the items); each tensor's name, u32 rank, dims (ggml's order, the row length first),
 * u32 ggml type and u64 offset into the data region; zero padding up to `general.alignment`
 * (32 unless the metadata sets it, as a UINT32 power of two); then the tensors' bytes in the
 * order given, each followed by zero padding to the alignment, the last one too. So each
 * offset is the previous one plus its tensor's padded size, which is exactly what llama.cpp's
 * reader demands (it refuses any other offset), and the file's length is the data region's
 * start plus every padded size, which is what it reads when it loads the whole data region.
 * Versions 2 and 3 are the same layout for a little-endian file; version 1 (32-bit counts)
 * is refused.
 *
 * Every value is checked against its declared type, and every tensor's bytes against its
 * type's block layout, before a byte is written, so a file this writes is one the reader
 * (and llama.cpp) accepts. One exception is the format's and not the writer's: an ARRAY of
 * ARRAYs is valid GGUF (gguf-py and @huggingface/gguf read it), but llama.cpp's gguf.cpp
 * refuses to load a file holding one.
 *
 * The header is encoded first, in memory (for a real model, a few tens of MB of vocabulary);
 * the tensors' bytes are then written straight from the caller's arrays, never concatenated,
 * or made one tensor at a time by the caller's functions as the file is written.
 */
import type { FileHandle } from "node:fs/promises";
import { writeAll, writeFileSafely, type WriteOptions } from "../files/write.js";
import {
  GGUF_DEFAULT_ALIGNMENT,
  GGUF_MAGIC,
  GGUF_VALUE_TYPES,
  ggmlTypeNamed,
  type GgmlType,
  type GgufArray,
  type GgufValue,
  type GgufValueType,
} from "./gguf_types.js";

export interface GgufTensorToWrite {
  /** A ggml type name: "F32", "F16", "Q8_0", "Q4_K", ... */
  type: string;
  /** ggml's order: the first is the innermost (a row's length), as GGUF stores ne[]. */
  dims: number[];
  /**
   * The raw bytes, already in the type's layout; or a function making them, called by
   * writeGguf when the tensor's turn comes, so that a converter holds one tensor at a time.
   */
  data: ArrayBufferView | (() => Promise<ArrayBufferView>);
}

export interface GgufToWrite {
  metadata: Record<string, GgufValue>;
  /** Written in the order of their keys (Object.keys order). */
  tensors: Record<string, GgufTensorToWrite>;
  /** 3 (the default) or 2: the same layout for little-endian files. */
  version?: 2 | 3;
}

/** A tensor as laid out: its type, its offset in the data region and its bytes. */
export interface GgufTensorLayout {
  name: string;
  type: GgmlType;
  dims: number[];
  offset: number;
  /** Its bytes' length, and the bytes (or what makes them). */
  bytes: number;
  data: Uint8Array | (() => Promise<ArrayBufferView>);
}

export interface GgufHeader {
  /** Everything before the data region, its padding included. */
  header: Uint8Array;
  alignment: number;
  /** Where the data region starts (header.byteLength). */
  dataStart: number;
  tensors: GgufTensorLayout[];
  /** The whole file's length: the data region holds every tensor padded to the alignment. */
  fileBytes: number;
}

export class GgufWriteError extends Error {
  override name = "GgufWriteError";
}

/** ggml's limits: GGML_MAX_DIMS, and GGML_MAX_NAME (a name and its terminating NUL). */
const MAX_DIMS = 4;
const MAX_NAME_BYTES = 64 - 1;

const INTEGER_RANGES: Partial<Record<GgufValueType, [number, number]>> = {
  UINT8: [0, 2 ** 8 - 1],
  INT8: [-(2 ** 7), 2 ** 7 - 1],
  UINT16: [0, 2 ** 16 - 1],
  INT16: [-(2 ** 15), 2 ** 15 - 1],
  UINT32: [0, 2 ** 32 - 1],
  INT32: [-(2 ** 31), 2 ** 31 - 1],
};

const BIGINT_RANGES: Partial<Record<GgufValueType, [bigint, bigint]>> = {
  UINT64: [0n, 2n ** 64n - 1n],
  INT64: [-(2n ** 63n), 2n ** 63n - 1n],
};

/** A UTF-16 surrogate without its partner: it has no UTF-8 encoding (Buffer.from would write U+FFFD instead). */
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

const pad = (n: number, alignment: number) => Math.ceil(n / alignment) * alignment;

/** A value as an error message shows it (whatever the caller passed: bigints inside, no prototype, ...). */
function show(value: unknown): string {
  if (typeof value === "bigint") return `${value}n`;
  if (typeof value === "number") return String(value);
  try {
    const json = JSON.stringify(value, (_key, v: unknown) => (typeof v === "bigint" ? `${v}n` : v));
    if (json !== undefined) return json.length > 80 ? `${json.slice(0, 77)}...` : json;
  } catch {
    // a cycle: fall through
  }
  return typeof value;
}

/** A type's name as given, unquoted when it is a string. */
const label = (type: unknown) => (typeof type === "string" ? type : show(type));

/** The header's bytes, appended little-endian to a buffer that grows as needed. */
class HeaderBytes {
  private buffer = Buffer.alloc(4096);
  length = 0;

  private room(n: number): void {
    if (this.length + n <= this.buffer.byteLength) return;
    const grown = Buffer.alloc(Math.max(this.buffer.byteLength * 2, this.length + n));
    this.buffer.copy(grown, 0, 0, this.length);
    this.buffer = grown;
  }

  bytes(bytes: Uint8Array): void {
    this.room(bytes.byteLength);
    this.buffer.set(bytes, this.length);
    this.length += bytes.byteLength;
  }

  u32(v: number): void {
    this.room(4);
    this.length = this.buffer.writeUInt32LE(v, this.length);
  }

  u64(v: number | bigint): void {
    this.room(8);
    this.length = this.buffer.writeBigUInt64LE(BigInt(v), this.length);
  }

  string(s: string, what: string): void {
    if (LONE_SURROGATE.test(s)) throw new GgufWriteError(`${what}: ${show(s)} has a lone UTF-16 surrogate, which UTF-8 cannot encode`);
    const n = Buffer.byteLength(s, "utf8");
    this.u64(n);
    this.room(n);
    this.length += this.buffer.write(s, this.length, n, "utf8");
  }

  zeros(n: number): void {
    this.room(n);
    this.buffer.fill(0, this.length, this.length + n);
    this.length += n;
  }

  /** One value of `type`, checked against it. */
  value(type: GgufValueType, value: unknown, what: string): void {
    const wrong = (why = "") => new GgufWriteError(`${what}: ${show(value)} is not a ${type}${why}`);
    const range = INTEGER_RANGES[type];
    const bigRange = BIGINT_RANGES[type];
    if (range) {
      if (typeof value !== "number" || !Number.isInteger(value) || value < range[0] || value > range[1]) throw wrong();
    } else if (bigRange) {
      if (typeof value !== "bigint") throw wrong(typeof value === "number" ? " (64-bit integers are given as bigints)" : "");
      if (value < bigRange[0] || value > bigRange[1]) throw wrong();
    } else if (type === "FLOAT32" || type === "FLOAT64") {
      if (typeof value !== "number") throw wrong();
      if (type === "FLOAT32" && Number.isFinite(value) && !Number.isFinite(Math.fround(value))) throw wrong(" (beyond its range)");
    } else if (type === "BOOL") {
      if (typeof value !== "boolean") throw wrong();
    } else if (type === "STRING") {
      if (typeof value !== "string") throw wrong();
      return this.string(value, what);
    } else if (type === "ARRAY") {
      return this.array(value as GgufArray, what);
    }
    this.room(8);
    const b = this.buffer;
    const at = this.length;
    switch (type) {
      case "UINT8": this.length = b.writeUInt8(value as number, at); break;
      case "INT8": this.length = b.writeInt8(value as number, at); break;
      case "UINT16": this.length = b.writeUInt16LE(value as number, at); break;
      case "INT16": this.length = b.writeInt16LE(value as number, at); break;
      case "UINT32": this.length = b.writeUInt32LE(value as number, at); break;
      case "INT32": this.length = b.writeInt32LE(value as number, at); break;
      case "FLOAT32": this.length = b.writeFloatLE(value as number, at); break;
      case "FLOAT64": this.length = b.writeDoubleLE(value as number, at); break;
      case "UINT64": this.length = b.writeBigUInt64LE(value as bigint, at); break;
      case "INT64": this.length = b.writeBigInt64LE(value as bigint, at); break;
      case "BOOL": this.length = b.writeUInt8(value ? 1 : 0, at); break;
    }
  }

  array(array: GgufArray, what: string): void {
    if (typeof array !== "object" || array === null || !Array.isArray(array.values) || !GGUF_VALUE_TYPES.includes(array.itemType)) {
      throw new GgufWriteError(`${what}: an ARRAY needs an itemType (one of ${GGUF_VALUE_TYPES.join(", ")}) and values`);
    }
    this.u32(GGUF_VALUE_TYPES.indexOf(array.itemType));
    this.u64(array.values.length);
    for (let i = 0; i < array.values.length; i++) this.value(array.itemType, array.values[i], `${what}: item ${i}`);
  }

  done(): Uint8Array {
    return this.buffer.subarray(0, this.length);
  }
}

function alignmentOf(metadata: Record<string, GgufValue>): number {
  const value = metadata["general.alignment"];
  if (value === undefined) return GGUF_DEFAULT_ALIGNMENT;
  const v: unknown = value?.value;
  if (value?.type !== "UINT32" || typeof v !== "number" || !Number.isInteger(v) || v < 1 || v > 2 ** 31 || (v & (v - 1)) !== 0) {
    throw new GgufWriteError(`metadata 'general.alignment' must be a UINT32 power of two, not ${label(value?.type)} ${show(v)}`);
  }
  return v;
}

function checkTensor(name: string, tensor: GgufTensorToWrite): { type: GgmlType; bytes: number; data: Uint8Array | (() => Promise<ArrayBufferView>) } {
  const fail = (message: string): never => {
    throw new GgufWriteError(`tensor '${name}': ${message}`);
  };
  if (LONE_SURROGATE.test(name)) fail("its name has a lone UTF-16 surrogate, which UTF-8 cannot encode");
  const nameBytes = Buffer.byteLength(name, "utf8");
  if (nameBytes === 0 || nameBytes > MAX_NAME_BYTES) fail(`a name must be 1 to ${MAX_NAME_BYTES} bytes of UTF-8 (ggml's limit), not ${nameBytes}`);
  if (typeof tensor !== "object" || tensor === null) fail("is not a { type, dims, data } object");
  const { type: typeName, dims, data } = tensor;
  const type = ggmlTypeNamed(typeName);
  if (!type) return fail(`unknown ggml type ${show(typeName)}`);
  if (!Array.isArray(dims) || dims.length < 1 || dims.length > MAX_DIMS || !dims.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    fail(`dims ${show(dims)} must be 1 to ${MAX_DIMS} integers >= 0`);
  }
  if (dims[0] % type.blockElements !== 0) fail(`rows of ${dims[0]} elements are not whole ${type.name} blocks of ${type.blockElements}`);
  const bytes = (dims.reduce((n, d) => n * d, 1) / type.blockElements) * type.blockBytes;
  if (typeof data === "function") return { type, bytes, data };
  if (!ArrayBuffer.isView(data)) fail("data is not a typed array, a DataView or a function making one");
  checkBytes(name, type, dims, bytes, data);
  return { type, bytes, data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) };
}

function checkBytes(name: string, type: GgmlType, dims: readonly number[], bytes: number, data: unknown): asserts data is ArrayBufferView {
  if (!ArrayBuffer.isView(data)) throw new GgufWriteError(`tensor '${name}': data is not a typed array or DataView`);
  if (data.byteLength !== bytes) throw new GgufWriteError(`tensor '${name}': ${data.byteLength} bytes given, but ${type.name} [${dims.join(", ")}] is ${bytes}`);
}

/** Checks the file's contents and lays it out: the header's bytes (padded), and where each tensor goes. */
export function encodeGgufHeader(file: GgufToWrite): GgufHeader {
  for (const part of ["metadata", "tensors"] as const) {
    if (typeof file?.[part] !== "object" || file[part] === null) throw new GgufWriteError(`the file's ${part} must be an object`);
  }
  const version = file.version ?? 3;
  if (version !== 2 && version !== 3) throw new GgufWriteError(`GGUF version ${show(version)} cannot be written (2 or 3)`);
  const alignment = alignmentOf(file.metadata);
  const keys = Object.keys(file.metadata);
  const names = Object.keys(file.tensors);

  const out = new HeaderBytes();
  out.bytes(GGUF_MAGIC);
  out.u32(version);
  out.u64(names.length);
  out.u64(keys.length);
  for (const key of keys) {
    const what = `metadata '${key}'`;
    if (key === "") throw new GgufWriteError("metadata '': a key must not be empty");
    const entry = file.metadata[key];
    const type: unknown = entry?.type;
    if (!GGUF_VALUE_TYPES.includes(type as GgufValueType)) throw new GgufWriteError(`${what}: unknown value type ${label(type)}`);
    out.string(key, what);
    out.u32(GGUF_VALUE_TYPES.indexOf(type as GgufValueType));
    out.value(type as GgufValueType, entry.value, what);
  }

  const tensors: GgufTensorLayout[] = [];
  let offset = 0;
  for (const name of names) {
    const { type, bytes, data } = checkTensor(name, file.tensors[name]);
    const dims = [...file.tensors[name].dims];
    out.string(name, `tensor '${name}'`);
    out.u32(dims.length);
    for (const d of dims) out.u64(d);
    out.u32(type.id);
    out.u64(offset);
    tensors.push({ name, type, dims, offset, bytes, data });
    offset += pad(bytes, alignment);
  }
  out.zeros(pad(out.length, alignment) - out.length);
  const header = out.done();
  return { header, alignment, dataStart: header.byteLength, tensors, fileBytes: header.byteLength + offset };
}

/** The whole file as bytes (for small files: tests, fixtures; every tensor's data given as bytes). */
export function encodeGguf(file: GgufToWrite): Uint8Array {
  const { header, tensors, dataStart, fileBytes } = encodeGgufHeader(file);
  const out = new Uint8Array(fileBytes);
  out.set(header);
  for (const t of tensors) {
    if (typeof t.data === "function") throw new GgufWriteError(`tensor '${t.name}': encodeGguf takes bytes, not a function making them (writeGguf does)`);
    out.set(t.data, dataStart + t.offset);
  }
  return out;
}

/**
 * Writes the file to `path` through writeFileSafely (never over an existing file unless
 * `force`, never over one of `inputs`), streaming each tensor's bytes from the caller's arrays.
 * The bytes are those encodeGguf returns.
 */
export async function writeGguf(path: string, file: GgufToWrite, options: WriteOptions = { force: false }): Promise<void> {
  const { header, tensors, alignment } = encodeGgufHeader(file);
  await writeFileSafely(
    path,
    async (handle) => {
      await writeAll(handle, header);
      for (const t of tensors) {
        let data = t.data;
        if (typeof data === "function") {
          const made = await data();
          checkBytes(t.name, t.type, t.dims, t.bytes, made);
          data = new Uint8Array(made.buffer, made.byteOffset, made.byteLength);
        }
        await writeAll(handle, data);
        await writeZeros(handle, pad(t.bytes, alignment) - t.bytes);
      }
    },
    options,
  );
}


const ZEROS = new Uint8Array(1 << 16);

async function writeZeros(handle: FileHandle, n: number): Promise<void> {
  for (let left = n; left > 0; left -= ZEROS.byteLength) await writeAll(handle, ZEROS.subarray(0, Math.min(left, ZEROS.byteLength)));
}
