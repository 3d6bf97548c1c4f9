/**
 * safetensors, read by hand.
 *
 * The format: an 8-byte little-endian header length N, then N bytes of UTF-8 JSON mapping each
 * tensor name to { dtype, shape, data_offsets: [begin, end] } (offsets relative to the data
 * region that follows the header), plus an optional "__metadata__" map of strings to strings.
 * Writers pad the JSON with spaces so the data region starts 8-byte aligned.
 *
 * Only the header is read when a file is opened; tensors are read one at a time with positioned
 * reads, so a 14 GB checkpoint never sits in JavaScript memory. Everything in the header is
 * checked before it is trusted, and every problem is a SafetensorsError naming the file (and
 * the tensor, when one is involved).
 *
 * What is legal follows the reference implementation (the Rust `safetensors` crate):
 * - the header is at most 100,000,000 bytes, valid UTF-8, and a JSON object;
 * - each tensor's byte count is exactly its element count times its dtype's size (a shape of
 *   [] is a scalar of one element; a 0 in the shape makes an empty tensor of zero bytes);
 * - the tensors, ordered by offset, tile the data region exactly: the first starts at 0, each
 *   starts where the previous one ends, and the last ends at the end of the file. So gaps,
 *   overlaps and trailing bytes after the last tensor are all errors;
 * - extra fields in a tensor's entry are ignored, as the reference ignores them.
 * Stricter than the reference: a key appearing twice in the header is an error (the reference
 * keeps the last one silently).
 */
import type { FileHandle } from "node:fs/promises";
import { openRegularFile, readExactly } from "../files/read.js";
import { fromF16Bits } from "../tensor/dtype.js";
import { JsonError, parseJson } from "./json.js";

/**
 * Bytes per element of each dtype, in the reference implementation's order (ascending
 * alignment), which its writer uses to lay tensors out: see safetensors_writer.ts.
 */
export const SAFETENSORS_DTYPES = {
  BOOL: 1,
  U8: 1,
  I8: 1,
  F8_E5M2: 1,
  F8_E4M3: 1,
  I16: 2,
  U16: 2,
  F16: 2,
  BF16: 2,
  I32: 4,
  U32: 4,
  F32: 4,
  F64: 8,
  I64: 8,
  U64: 8,
} as const;

export type SafetensorsDType = keyof typeof SAFETENSORS_DTYPES;

export function isSafetensorsDType(value: unknown): value is SafetensorsDType {
  return typeof value === "string" && Object.hasOwn(SAFETENSORS_DTYPES, value);
}

export interface TensorEntry {
  name: string;
  dtype: SafetensorsDType;
  shape: number[];
  /** Byte range inside the file (absolute, header included). */
  begin: number;
  end: number;
}

/** The reference implementation's limit: real headers are well under 10 MB even for 1000s of tensors. */
export const MAX_HEADER_BYTES = 100_000_000;

export class SafetensorsError extends Error {
  override name = "SafetensorsError";
}

export class SafetensorsFile {
  private closed = false;

  private constructor(
    readonly path: string,
    private readonly handle: FileHandle,
    readonly fileSize: number,
    /** Where the data region starts: 8 + the header length. */
    readonly dataStart: number,
    readonly metadata: Record<string, string>,
    /** Every tensor, in the order of their bytes in the file. */
    readonly tensors: Map<string, TensorEntry>,
  ) {}

  static async open(path: string): Promise<SafetensorsFile> {
    // A regular file only (a FIFO would block, a device never end); the header has its own limit.
    const { handle, size } = await openRegularFile(path, { as: SafetensorsError });
    try {
      const { metadata, tensors, dataStart } = await readHeader(handle, size, path);
      return new SafetensorsFile(path, handle, size, dataStart, metadata, tensors);
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
   * Reads `target.byteLength` bytes of tensor `name`, starting `offset` bytes into its data.
   * The building block for reading big tensors in chunks into one reused buffer.
   */
  async readInto(name: string, offset: number, target: Uint8Array): Promise<void> {
    const entry = this.entry(name);
    const length = entry.end - entry.begin;
    if (!Number.isSafeInteger(offset) || offset < 0 || offset + target.byteLength > length) {
      throw new SafetensorsError(
        `${this.path}: tensor '${name}': cannot read bytes [${offset}, ${offset + target.byteLength}) of its ${length}`,
      );
    }
    await this.readAt(target, entry.begin + offset, `tensor '${name}'`);
  }

  /**
   * The raw little-endian bytes of one tensor. Pass `into` (at least the tensor's size) to reuse
   * one buffer across many reads; the result is then a view of it.
   */
  async readBytes(name: string, into?: Uint8Array): Promise<Uint8Array> {
    const entry = this.entry(name);
    const length = entry.end - entry.begin;
    const target = into && into.byteLength >= length ? into.subarray(0, length) : new Uint8Array(length);
    await this.readInto(name, 0, target);
    return target;
  }

  /** One tensor as float32 values (from any dtype; I64/U64 beyond 2^24 lose precision). */
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

  /** Closes the file; idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.handle.close();
  }

  private async readAt(target: Uint8Array, position: number, what: string): Promise<void> {
    if (this.closed) throw new SafetensorsError(`${this.path}: ${what}: the file was closed`);
    await readExactly(this.handle, target, position, `${this.path}: ${what}`, SafetensorsError);
  }
}

async function readHeader(
  handle: FileHandle,
  fileSize: number,
  path: string,
): Promise<{ metadata: Record<string, string>; tensors: Map<string, TensorEntry>; dataStart: number }> {
  const fail = (message: string): never => {
    throw new SafetensorsError(`${path}: ${message}`);
  };
  if (fileSize < 8) fail(`file is ${fileSize} bytes, too short for the 8-byte header length`);
  const lengthBytes = new Uint8Array(8);
  await readExactly(handle, lengthBytes, 0, path, SafetensorsError);
  // Checked as a 64-bit integer before it becomes a number or sizes an allocation.
  const headerLength = new DataView(lengthBytes.buffer).getBigUint64(0, true);
  if (headerLength === 0n) fail("header length is 0");
  if (headerLength > BigInt(MAX_HEADER_BYTES)) {
    fail(`not a safetensors file, or a corrupt one: its first 8 bytes give a header length of ${headerLength}, over the ${MAX_HEADER_BYTES}-byte limit`);
  }
  if (headerLength > BigInt(fileSize - 8)) fail(`header length ${headerLength} runs past the end of the ${fileSize}-byte file`);
  const length = Number(headerLength);
  const headerBytes = new Uint8Array(length);
  await readExactly(handle, headerBytes, 8, path, SafetensorsError);
  const dataStart = 8 + length;
  return { ...parseHeader(headerBytes, dataStart, fileSize, path), dataStart };
}

/** Checks a header's bytes against the rules above and the size of the file. */
function parseHeader(
  bytes: Uint8Array,
  dataStart: number,
  fileSize: number,
  path: string,
): { metadata: Record<string, string>; tensors: Map<string, TensorEntry> } {
  const fail = (message: string): never => {
    throw new SafetensorsError(`${path}: ${message}`);
  };
  let text = "";
  try {
    text = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(bytes);
  } catch {
    fail("header is not valid UTF-8");
  }
  let header: unknown;
  try {
    header = parseJson(text);
  } catch (error) {
    if (!(error instanceof JsonError)) throw error;
    fail(`header is not valid JSON (${error.message})`);
  }
  if (!isPlainObject(header)) fail(`header is ${describeJsonType(header)}, not a JSON object`);

  let metadata: Record<string, string> = {};
  const entries: TensorEntry[] = [];
  const dataLength = fileSize - dataStart;
  for (const [name, value] of Object.entries(header as Record<string, unknown>)) {
    if (name === "__metadata__") metadata = parseMetadata(value, fail);
    else entries.push(parseEntry(name, value, dataStart, dataLength, fail));
  }

  // The tensors, in file order, must tile the data region: no gap, no overlap, nothing after.
  entries.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let covered = dataStart;
  let previous: TensorEntry | undefined;
  for (const entry of entries) {
    const where = `tensor '${entry.name}'`;
    if (entry.begin < covered) fail(`${where} overlaps tensor '${previous!.name}' in the data region`);
    if (entry.begin > covered) {
      fail(`${where}: bytes [${covered - dataStart}, ${entry.begin - dataStart}) of the data region before it belong to no tensor`);
    }
    covered = entry.end;
    previous = entry;
  }
  if (covered !== fileSize) {
    fail(`the tensors cover ${covered - dataStart} bytes but the data region has ${dataLength} (trailing bytes)`);
  }
  return { metadata, tensors: new Map(entries.map((e) => [e.name, e])) };
}

function parseMetadata(value: unknown, fail: (message: string) => never): Record<string, string> {
  // The reference reads __metadata__ as an optional map, so null means "none".
  if (value === null) return {};
  if (!isPlainObject(value)) return fail(`__metadata__ is ${describeJsonType(value)}, not an object of strings`);
  const metadata: Record<string, string> = {};
  for (const [key, v] of Object.entries(value)) {
    if (typeof v !== "string") fail(`__metadata__ entry '${key}' is ${describeJsonType(v)}, not a string`);
    metadata[key] = v as string;
  }
  return metadata;
}

function parseEntry(
  name: string,
  value: unknown,
  dataStart: number,
  dataLength: number,
  fail: (message: string) => never,
): TensorEntry {
  const where = `tensor '${name}'`;
  if (!isPlainObject(value)) fail(`${where}: entry is ${describeJsonType(value)}, not an object`);
  const { dtype, shape, data_offsets: offsets } = value as Record<string, unknown>;
  if (!isSafetensorsDType(dtype)) {
    return fail(`${where}: unknown dtype ${dtype === undefined ? "(missing)" : JSON.stringify(dtype)}`);
  }
  if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    return fail(`${where}: shape ${JSON.stringify(shape) ?? "(missing)"} is not a list of non-negative integers`);
  }
  if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((o) => Number.isSafeInteger(o) && o >= 0) || offsets[0] > offsets[1]) {
    return fail(`${where}: data_offsets ${JSON.stringify(offsets) ?? "(missing)"} is not [begin, end] with 0 <= begin <= end`);
  }
  const [begin, end] = offsets as [number, number];
  if (end > dataLength) fail(`${where}: data_offsets [${begin}, ${end}] run past the ${dataLength}-byte data region`);
  // Checked at every step, so the product stays exact or is known to be far too large.
  let bytes: number = SAFETENSORS_DTYPES[dtype];
  for (const d of shape as number[]) bytes = bytes > Number.MAX_SAFE_INTEGER ? bytes : bytes * d;
  if ((shape as number[]).includes(0)) bytes = 0;
  if (end - begin !== bytes) {
    const needs = bytes > Number.MAX_SAFE_INTEGER ? "more than 2^53" : `${bytes}`;
    fail(`${where}: ${end - begin} bytes of data, but ${dtype} [${(shape as number[]).join(", ")}] needs ${needs}`);
  }
  return { name, dtype, shape: shape as number[], begin: dataStart + begin, end: dataStart + end };
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function describeJsonType(value: unknown): string {
  if (value === null) return "null";
  if (value === undefined) return "missing";
  if (Array.isArray(value)) return "an array";
  return typeof value === "object" ? "an object" : `a ${typeof value}`;
}

/** Decodes raw safetensors bytes of any dtype to float32. */
export function toFloat32(bytes: Uint8Array, dtype: SafetensorsDType): Float32Array {
  const count = bytes.byteLength / SAFETENSORS_DTYPES[dtype];
  // Typed arrays need an aligned start; a copy of the bytes gives one.
  const aligned = bytes.byteOffset % 8 === 0 ? bytes : bytes.slice();
  const { buffer, byteOffset } = aligned;
  switch (dtype) {
    case "F32":
      return new Float32Array(buffer.slice(byteOffset, byteOffset + count * 4));
    case "F64":
      return Float32Array.from(new Float64Array(buffer, byteOffset, count));
    case "F16":
      return fromF16Bits(new Uint16Array(buffer, byteOffset, count));
    case "BF16": {
      // bfloat16 is the top half of a float32.
      const halves = new Uint16Array(buffer, byteOffset, count);
      const words = new Uint32Array(count);
      for (let i = 0; i < count; i++) words[i] = halves[i] << 16;
      return new Float32Array(words.buffer);
    }
    case "F8_E4M3":
    case "F8_E5M2": {
      const table = fp8Table(dtype);
      const out = new Float32Array(count);
      for (let i = 0; i < count; i++) out[i] = table[aligned[i]];
      return out;
    }
    case "I64":
      return Float32Array.from(new BigInt64Array(buffer, byteOffset, count), Number);
    case "U64":
      return Float32Array.from(new BigUint64Array(buffer, byteOffset, count), Number);
    case "I32":
      return Float32Array.from(new Int32Array(buffer, byteOffset, count));
    case "U32":
      return Float32Array.from(new Uint32Array(buffer, byteOffset, count));
    case "I16":
      return Float32Array.from(new Int16Array(buffer, byteOffset, count));
    case "U16":
      return Float32Array.from(new Uint16Array(buffer, byteOffset, count));
    case "I8":
      return Float32Array.from(new Int8Array(buffer, byteOffset, count));
    case "U8":
    case "BOOL":
      return Float32Array.from(aligned);
  }
}

/**
 * The 256 values of an 8-bit float. E5M2 is IEEE-like (5 exponent bits, bias 15, Inf and NaN);
 * E4M3 is the "fn" variant (4 exponent bits, bias 7, no Inf, only S.1111.111 is NaN).
 */
function fp8Table(dtype: "F8_E4M3" | "F8_E5M2"): Float32Array {
  const [exponentBits, bias] = dtype === "F8_E4M3" ? [4, 7] : [5, 15];
  const mantissaBits = 7 - exponentBits;
  const maxExponent = (1 << exponentBits) - 1;
  const table = new Float32Array(256);
  for (let bits = 0; bits < 256; bits++) {
    const sign = bits & 0x80 ? -1 : 1;
    const exponent = (bits >> mantissaBits) & maxExponent;
    const mantissa = bits & ((1 << mantissaBits) - 1);
    const fraction = mantissa / (1 << mantissaBits);
    if (dtype === "F8_E5M2" && exponent === maxExponent) table[bits] = mantissa ? NaN : sign * Infinity;
    else if (dtype === "F8_E4M3" && (bits & 0x7f) === 0x7f) table[bits] = NaN;
    else if (exponent === 0) table[bits] = sign * fraction * 2 ** (1 - bias);
    else table[bits] = sign * (1 + fraction) * 2 ** (exponent - bias);
  }
  return table;
}
