/**
 * GGUF, llama.cpp's model file, read by hand.
 *
 * The format (little-endian): the magic "GGUF", a u32 version (2 or 3; version 1 had 32-bit
 * counts), a u64 tensor count and a u64 metadata count; then the metadata, each a key (a u64
 * byte length and UTF-8 bytes), a u32 value type and the value (scalars as they are, strings
 * as keys are, arrays as a u32 item type, a u64 count and the items, arrays of arrays
 * included); then one info per tensor: its name, a u32 number of dimensions, that many u64
 * dimensions (ggml's order: the first is the innermost, the length of a row), a u32 ggml type
 * and a u64 offset into the data region; then padding to `general.alignment` (32 unless the
 * metadata says otherwise) and the data region, where each tensor's bytes start at an aligned
 * offset. A quantized type stores its elements in blocks (32 or 256 of them in a fixed number
 * of bytes: gguf_types.ts), so a row's length must be a whole number of blocks.
 *
 * Only the header is read when a file is opened, through a window of a few MiB that moves
 * along it; tensors are read one at a time with positioned reads, as from safetensors. Nothing
 * in the header is trusted before it is checked: every count, length and dimension is held
 * against the bytes the file (and a header limit) can still hold before anything is
 * allocated for it, so a damaged or hostile file is an error naming the file and the field,
 * never a hang or a runaway allocation. Stricter than llama.cpp where it costs nothing: a
 * key or tensor name appearing twice, a BOOL that is neither 0 nor 1, invalid UTF-8, tensors
 * whose bytes overlap or run past the end of the file are all errors.
 */
import type { FileHandle } from "node:fs/promises";
import { openRegularFile, readExactly } from "../files/read.js";
import {
  GGML_TYPES,
  GGUF_DEFAULT_ALIGNMENT,
  GGUF_MAGIC,
  GGUF_VALUE_BYTES,
  GGUF_VALUE_TYPES,
  type GgmlType,
  type GgufArray,
  type GgufValue,
  type GgufValueType,
} from "./gguf_types.js";

export class GgufError extends Error {
  override name = "GgufError";
}

export interface GgufTensorInfo {
  name: string;
  type: GgmlType;
  /** The dimensions as the file stores them: ggml's order, innermost (the row length) first. */
  dims: number[];
  /** The same, outermost first: the shape PyTorch and safetensors would give ([rows, columns] for a matrix). */
  shape: number[];
  elements: number;
  bytes: number;
  /** Byte range inside the file (absolute). */
  begin: number;
  end: number;
}

/**
 * The most header bytes read: the largest real headers (a vocabulary of 256k tokens with its
 * scores, types and merges) are tens of MB.
 */
export const MAX_GGUF_HEADER_BYTES = 512 * 2 ** 20;

/** ggml's GGML_MAX_DIMS. */
const MAX_DIMS = 4;
/** Arrays of arrays nest at most this deep (real files nest none; a deeper file would only be there to exhaust the stack). */
const MAX_ARRAY_DEPTH = 8;
/** The header is read through a window this large (or larger, for one longer string). */
const WINDOW_BYTES = 4 * 2 ** 20;

/** The fewest bytes one value of each type takes: what a count is checked against. */
function minimumBytes(type: GgufValueType): number {
  if (type === "STRING") return 8;
  if (type === "ARRAY") return 4 + 8;
  return GGUF_VALUE_BYTES[type]!;
}

export class GgufFile {
  private closed = false;

  private constructor(
    readonly path: string,
    private readonly handle: FileHandle,
    readonly fileSize: number,
    readonly version: number,
    readonly alignment: number,
    /** Where the data region starts. */
    readonly dataStart: number,
    /** Every metadata value, in the file's order. */
    readonly metadata: Map<string, GgufValue>,
    /** Every tensor, in the file's order. */
    readonly tensors: Map<string, GgufTensorInfo>,
  ) {}

  static async open(path: string): Promise<GgufFile> {
    const { handle, size } = await openRegularFile(path, { as: GgufError });
    try {
      const header = await readHeader(new HeaderReader(handle, size, path));
      return new GgufFile(path, handle, size, header.version, header.alignment, header.dataStart, header.metadata, header.tensors);
    } catch (error) {
      await handle.close();
      throw error;
    }
  }

  entry(name: string): GgufTensorInfo {
    const entry = this.tensors.get(name);
    if (!entry) throw new GgufError(`${this.path}: no tensor named '${name}'`);
    return entry;
  }

  /** Reads `target.byteLength` bytes of tensor `name`, starting `offset` bytes into its data. */
  async readInto(name: string, offset: number, target: Uint8Array): Promise<void> {
    const entry = this.entry(name);
    if (!Number.isSafeInteger(offset) || offset < 0 || offset + target.byteLength > entry.bytes) {
      throw new GgufError(`${this.path}: tensor '${name}': cannot read bytes [${offset}, ${offset + target.byteLength}) of its ${entry.bytes}`);
    }
    if (this.closed) throw new GgufError(`${this.path}: tensor '${name}': the file was closed`);
    await readExactly(this.handle, target, entry.begin + offset, `${this.path}: tensor '${name}'`, GgufError);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.handle.close();
  }
}

/** Whether `path` is a regular file whose first bytes are GGUF's magic. */
export async function isGgufFile(path: string): Promise<boolean> {
  // Only a regular file is opened (a FIFO would block the open): anything else, and a path that
  // cannot be opened, is not a GGUF file here; whoever reads it next says what it is.
  const opened = await openRegularFile(path).catch(() => null);
  if (!opened) return false;
  const { handle } = opened;
  try {
    const head = new Uint8Array(4);
    const { bytesRead } = await handle.read(head, 0, 4, 0);
    return bytesRead === 4 && GGUF_MAGIC.every((b, i) => head[i] === b);
  } finally {
    await handle.close();
  }
}

interface Header {
  version: number;
  alignment: number;
  dataStart: number;
  metadata: Map<string, GgufValue>;
  tensors: Map<string, GgufTensorInfo>;
}

async function readHeader(r: HeaderReader): Promise<Header> {
  await r.need(8, "the magic and version");
  const magic = r.bytes(4);
  if (!GGUF_MAGIC.every((b, i) => magic[i] === b)) {
    throw r.error(`not a GGUF file (it starts with ${[...magic].map((b) => b.toString(16).padStart(2, "0")).join(" ")}, not 47 47 55 46 "GGUF")`);
  }
  const version = r.u32();
  if (version === 1) throw r.error("GGUF version 1 (files from before August 2023) is not supported: convert the model again with a current llama.cpp");
  if (version !== 2 && version !== 3) {
    const swapped = ((version & 0xff) << 24) | ((version & 0xff00) << 8) | ((version >>> 8) & 0xff00) | (version >>> 24);
    if (swapped >= 1 && swapped <= 3) throw r.error(`a big-endian GGUF file (version ${swapped}); only little-endian files are supported`);
    throw r.error(`GGUF version ${version} is not supported (versions 2 and 3 are)`);
  }
  await r.need(16, "the tensor and metadata counts");
  // (A tensor's info is at least a name's length, a rank, one dimension, a type and an offset.)
  const tensorCount = r.count("the tensor count", 8 + 4 + 8 + 4 + 8);
  const metadataCount = r.count("the metadata count", 8 + 4 + 1);

  const metadata = new Map<string, GgufValue>();
  for (let i = 0; i < metadataCount; i++) {
    const key = await r.string(`the key of metadata entry ${i}`);
    if (metadata.has(key)) throw r.error(`metadata '${key}' appears twice`);
    await r.need(4, `metadata '${key}': its type`);
    const type = r.valueType(`metadata '${key}'`);
    metadata.set(key, await readValue(r, type, `metadata '${key}'`));
  }
  const alignment = alignmentOf(metadata, r);

  const tensors = new Map<string, GgufTensorInfo>();
  const offsets: { name: string; offset: number }[] = [];
  for (let i = 0; i < tensorCount; i++) {
    const name = await r.string(`the name of tensor ${i}`);
    const what = `tensor '${name}'`;
    if (tensors.has(name)) throw r.error(`${what} appears twice`);
    await r.need(4, `${what}: its number of dimensions`);
    const rank = r.u32();
    if (rank < 1 || rank > MAX_DIMS) throw r.error(`${what} has ${rank} dimensions; ggml tensors have 1 to ${MAX_DIMS}`);
    await r.need(rank * 8 + 4 + 8, `${what}: its dimensions, type and offset`);
    const dims: number[] = [];
    for (let d = 0; d < rank; d++) dims.push(r.safeU64(`${what}: dimension ${d}`));
    const typeId = r.u32();
    const type = GGML_TYPES.get(typeId);
    if (!type) throw r.error(`${what} has ggml type ${typeId}, which this reader does not know (known: ${[...GGML_TYPES.values()].map((t) => t.name).join(", ")})`);
    const offset = r.safeU64(`${what}: its offset`);
    const elements = dims.reduce((n, d) => n * d, 1);
    if (!Number.isSafeInteger(elements)) throw r.error(`${what}: dimensions [${dims.join(", ")}] hold more elements than can be counted`);
    if (dims[0] % type.blockElements !== 0) {
      throw r.error(`${what}: its rows of ${dims[0]} elements are not whole ${type.name} blocks of ${type.blockElements}`);
    }
    if (offset % alignment !== 0) throw r.error(`${what}: its offset ${offset} is not a multiple of the alignment ${alignment}`);
    const bytes = (elements / type.blockElements) * type.blockBytes;
    tensors.set(name, { name, type, dims, shape: [...dims].reverse(), elements, bytes, begin: offset, end: offset + bytes });
    offsets.push({ name, offset });
  }

  // The data region starts at the next multiple of the alignment; every tensor must lie inside
  // the file, and no two may share a byte.
  const dataStart = Math.ceil(r.position / alignment) * alignment;
  let previous: GgufTensorInfo | null = null;
  for (const { name } of offsets.sort((a, b) => a.offset - b.offset)) {
    const t = tensors.get(name)!;
    t.begin += dataStart;
    t.end += dataStart;
    if (t.end > r.fileSize) {
      throw r.error(`tensor '${name}': its ${t.bytes} bytes at ${t.begin} run past the end of the file (${r.fileSize} bytes): truncated?`);
    }
    if (previous && t.begin < previous.end) throw r.error(`tensor '${name}' overlaps tensor '${previous.name}' (bytes ${t.begin} and ${previous.end - 1})`);
    if (t.bytes > 0) previous = t;
  }
  if (tensors.size > 0 && dataStart > r.fileSize) throw r.error(`the data region would start at ${dataStart}, past the end of the file`);
  return { version, alignment, dataStart, metadata, tensors };
}

function alignmentOf(metadata: ReadonlyMap<string, GgufValue>, r: HeaderReader): number {
  const value = metadata.get("general.alignment");
  if (value === undefined) return GGUF_DEFAULT_ALIGNMENT;
  if (value.type !== "UINT32") throw r.error(`metadata 'general.alignment' is ${value.type}; it must be UINT32`);
  const alignment = value.value;
  if (alignment === 0 || (alignment & (alignment - 1)) !== 0) throw r.error(`metadata 'general.alignment' is ${alignment}, not a power of two`);
  return alignment;
}

async function readValue(r: HeaderReader, type: GgufValueType, what: string): Promise<GgufValue> {
  if (type === "STRING") return { type, value: await r.string(what) };
  if (type === "ARRAY") return { type, value: await readArray(r, what, 1) };
  await r.need(GGUF_VALUE_BYTES[type]!, what);
  return r.scalar(type, what) as GgufValue;
}

async function readArray(r: HeaderReader, what: string, depth: number): Promise<GgufArray> {
  if (depth > MAX_ARRAY_DEPTH) throw r.error(`${what}: arrays nested more than ${MAX_ARRAY_DEPTH} deep`);
  await r.need(12, `${what}: its item type and count`);
  const itemType = r.valueType(`${what}: its items`);
  const count = r.count(`${what}: its count`, minimumBytes(itemType));
  const values: GgufArray["values"] = [];
  const fixed = GGUF_VALUE_BYTES[itemType];
  if (fixed !== undefined) {
    // Fixed-size items are read in runs that fit the window.
    const perRun = Math.max(1, Math.floor(WINDOW_BYTES / fixed));
    for (let start = 0; start < count; start += perRun) {
      const run = Math.min(perRun, count - start);
      await r.need(run * fixed, `${what}: items ${start} to ${start + run - 1}`);
      for (let i = 0; i < run; i++) values.push(r.scalar(itemType, `${what}: item ${start + i}`).value as number | bigint | boolean);
    }
    return { itemType, values };
  }
  for (let i = 0; i < count; i++) {
    values.push(itemType === "STRING" ? await r.string(`${what}: item ${i}`) : await readArray(r, `${what}: item ${i}`, depth + 1));
  }
  return { itemType, values };
}

/** The header through a window of the file that moves along as it is read. */
class HeaderReader {
  position = 0;
  private window = Buffer.alloc(0);
  private windowStart = 0;
  private readonly limit: number;
  // ignoreBOM: a string may start with U+FEFF (LLaMA's token 30143 is that character alone), and must keep it.
  private readonly decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

  constructor(
    private readonly handle: FileHandle,
    readonly fileSize: number,
    private readonly path: string,
  ) {
    this.limit = Math.min(fileSize, MAX_GGUF_HEADER_BYTES);
  }

  error(message: string): GgufError {
    return new GgufError(`${this.path}: ${message}`);
  }

  /** Makes the next `n` bytes readable, or says that the file (or the header limit) ends before them. */
  async need(n: number, what: string): Promise<void> {
    if (this.position + n > this.limit) {
      throw this.error(
        this.position + n > this.fileSize
          ? `${what}: the file ends at byte ${this.fileSize}, before the ${n} bytes at ${this.position} (truncated?)`
          : `${what}: the header runs past ${MAX_GGUF_HEADER_BYTES} bytes, more than any real model's`,
      );
    }
    if (this.position + n <= this.windowStart + this.window.byteLength) return;
    const length = Math.min(Math.max(n, WINDOW_BYTES), this.limit - this.position);
    const window = Buffer.allocUnsafe(length);
    await readExactly(this.handle, window, this.position, `${this.path}: ${what}`, GgufError);
    this.window = window;
    this.windowStart = this.position;
  }

  private take(n: number): number {
    const at = this.position - this.windowStart;
    this.position += n;
    return at;
  }

  bytes(n: number): Uint8Array {
    const at = this.take(n);
    return this.window.subarray(at, at + n);
  }

  u32(): number {
    return this.window.readUInt32LE(this.take(4));
  }

  private u64(): bigint {
    return this.window.readBigUInt64LE(this.take(8));
  }

  /** A u64 that must fit a JavaScript number (a size, a dimension, an offset). */
  safeU64(what: string): number {
    const value = this.u64();
    if (value > BigInt(Number.MAX_SAFE_INTEGER)) throw this.error(`${what} is ${value}, larger than any file`);
    return Number(value);
  }

  /** A u64 count of things of at least `minimumItemBytes` each, which what is left of the header must be able to hold. */
  count(what: string, minimumItemBytes: number): number {
    const value = this.u64();
    const room = Math.floor((this.limit - this.position) / minimumItemBytes);
    if (value > BigInt(room)) {
      throw this.error(`${what} is ${value}, but the ${this.limit - this.position} bytes left of the header hold at most ${room}`);
    }
    return Number(value);
  }

  valueType(what: string): GgufValueType {
    const id = this.u32();
    const type = GGUF_VALUE_TYPES[id];
    if (type === undefined) throw this.error(`${what} has value type ${id}, not one of GGUF's 0 to ${GGUF_VALUE_TYPES.length - 1}`);
    return type;
  }

  /** One fixed-size value (the caller made its bytes readable). */
  scalar(type: GgufValueType, what: string): GgufValue {
    const at = this.take(GGUF_VALUE_BYTES[type]!);
    const w = this.window;
    switch (type) {
      case "UINT8":
        return { type, value: w.readUInt8(at) };
      case "INT8":
        return { type, value: w.readInt8(at) };
      case "UINT16":
        return { type, value: w.readUInt16LE(at) };
      case "INT16":
        return { type, value: w.readInt16LE(at) };
      case "UINT32":
        return { type, value: w.readUInt32LE(at) };
      case "INT32":
        return { type, value: w.readInt32LE(at) };
      case "FLOAT32":
        return { type, value: w.readFloatLE(at) };
      case "FLOAT64":
        return { type, value: w.readDoubleLE(at) };
      case "UINT64":
        return { type, value: w.readBigUInt64LE(at) };
      case "INT64":
        return { type, value: w.readBigInt64LE(at) };
      case "BOOL": {
        const byte = w.readUInt8(at);
        if (byte > 1) throw this.error(`${what} is a BOOL of ${byte}, neither 0 nor 1`);
        return { type, value: byte === 1 };
      }
      default:
        throw new TypeError(`${type} is not a fixed-size GGUF type`);
    }
  }

  /** A u64 length and that many bytes of UTF-8. */
  async string(what: string): Promise<string> {
    await this.need(8, `${what}: its length`);
    const length = this.safeU64(`${what}: its length`);
    await this.need(length, what);
    try {
      return this.decoder.decode(this.bytes(length));
    } catch {
      throw this.error(`${what} is not valid UTF-8`);
    }
  }
}
