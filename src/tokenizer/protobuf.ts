/**
 * Just enough of the protobuf wire format to read SentencePiece's ModelProto.
 *
 * A message is a flat run of fields. Each field starts with a varint key, (field number << 3) |
 * wire type, and the wire type says how long the value is: 0 a varint, 1 eight bytes, 2 a
 * varint length then that many bytes (strings, bytes and nested messages), 5 four bytes. Groups
 * (types 3 and 4) are long deprecated and never appear in ModelProto. A reader that does not
 * know a field skips it by its wire type, which is how protobuf stays forward compatible.
 */
import { TokenizerError } from "./errors.js";

export const WIRE_VARINT = 0;
export const WIRE_FIXED64 = 1;
export const WIRE_LENGTH_DELIMITED = 2;
export const WIRE_FIXED32 = 5;

export interface ProtoField {
  number: number;
  wireType: number;
  /** Where its key starts in the file, for errors. */
  at: number;
}

/**
 * Reads the fields of one message: the whole file, or a nested message within it.
 *
 * Errors name the file and the byte. A read running past the end of the file means the file
 * was cut short ("... is truncated"); anything else that does not parse (a read past the end
 * of a nested message, whose length said where it ends; a wire type that cannot be; bad UTF-8)
 * means it is not the format it should be, or is corrupt.
 */
export class ProtoReader {
  private pos: number;
  private readonly end: number;
  private readonly view: DataView;
  /** The message in errors: the file, or the file and a part ("tokenizer.model: pieces[3]"). */
  readonly what: string;

  /**
   * Reads the whole of `bytes`; `source` names the file and `format` what it should be in errors
   * ("SentencePiece model"). A nested message's reader is made by message().
   */
  constructor(
    private readonly bytes: Uint8Array,
    readonly source: string,
    readonly format: string,
    private readonly part?: { name: string; start: number; end: number },
  ) {
    this.pos = part?.start ?? 0;
    this.end = part?.end ?? bytes.length;
    this.what = part ? `${source}: ${part.name}` : source;
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  done(): boolean {
    return this.pos >= this.end;
  }

  /** The next field's number and wire type. */
  field(): ProtoField {
    const at = this.pos;
    const key = this.varint();
    const number = Math.floor(key / 8);
    const wireType = key % 8;
    if (number === 0) this.fail(`field number 0 at byte ${at}`);
    if (wireType !== WIRE_VARINT && wireType !== WIRE_FIXED64 && wireType !== WIRE_LENGTH_DELIMITED && wireType !== WIRE_FIXED32) {
      this.fail(`unsupported wire type ${wireType} for field ${number} at byte ${at}`);
    }
    return { number, wireType, at };
  }

  /**
   * A varint as a JavaScript number. Values up to 2^53 are exact; int32 fields holding a
   * negative number are written as ten-byte varints of the 64-bit two's complement, which
   * int32() folds back.
   */
  varint(): number {
    const start = this.pos;
    let value = 0;
    let scale = 1;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.end) this.pastEnd(`a varint at byte ${start}`);
      const byte = this.bytes[this.pos++];
      value += (byte & 0x7f) * scale;
      if (byte < 0x80) return value;
      scale *= 128;
    }
    this.fail(`varint longer than 10 bytes at byte ${start}`);
  }

  /** An int32 field: the low 32 bits of the varint, signed. */
  int32(): number {
    const start = this.pos;
    let low = 0;
    let shift = 0;
    // Only the first five bytes carry the low 32 bits; the rest are sign extension.
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.end) this.pastEnd(`a varint at byte ${start}`);
      const byte = this.bytes[this.pos++];
      if (shift < 32) low |= (byte & 0x7f) << shift;
      shift += 7;
      if (byte < 0x80) return low | 0;
    }
    this.fail(`varint longer than 10 bytes at byte ${start}`);
  }

  bool(): boolean {
    return this.varint() !== 0;
  }

  float(): number {
    return this.view.getFloat32(this.take(4, "a float"), true);
  }

  /** A length-delimited field as a sub-range: [start, end) of the underlying bytes. */
  lengthDelimited(what = "a field"): { start: number; end: number } {
    const length = this.varint();
    const start = this.take(length, what);
    return { start, end: start + length };
  }

  /** A nested message, read by a reader of its own; `name` names it in errors ("pieces[3]"). */
  message(name: string): ProtoReader {
    const { start, end } = this.lengthDelimited(name);
    return new ProtoReader(this.bytes, this.source, this.format, { name, start, end });
  }

  string(): string {
    const { start, end } = this.lengthDelimited("a string");
    try {
      return UTF8.decode(this.bytes.subarray(start, end));
    } catch {
      this.fail(`string at byte ${start} is not valid UTF-8`);
    }
  }

  byteString(): Uint8Array {
    const { start, end } = this.lengthDelimited("a byte string");
    return this.bytes.subarray(start, end);
  }

  /** Skips a field's value that the caller does not need. */
  skip(wireType: number): void {
    if (wireType === WIRE_VARINT) this.varint();
    else if (wireType === WIRE_FIXED64) this.take(8, "a fixed64");
    else if (wireType === WIRE_FIXED32) this.take(4, "a fixed32");
    else this.lengthDelimited();
  }

  /** Checks that a known field came with the wire type its schema gives it. */
  expect(field: ProtoField, wireType: number, name: string): void {
    if (field.wireType !== wireType) this.fail(`field ${name} (${field.number}) at byte ${field.at} has wire type ${field.wireType}, expected ${wireType}`);
  }

  /** Moves past `length` bytes of `what`; returns where they start. */
  private take(length: number, what: string): number {
    const start = this.pos;
    if (length > this.end - start) this.pastEnd(`${what} of ${length} byte${length === 1 ? "" : "s"} at byte ${start}`);
    this.pos += length;
    return start;
  }

  /** A read that would end past `this.end`: the file is cut short, or the message is corrupt. */
  private pastEnd(what: string): never {
    if (!this.part) throw new TokenizerError(`${this.source} is truncated: it ends at byte ${this.bytes.length}, inside ${what}`);
    this.fail(`${what} runs past the end of ${this.part.name} (byte ${this.end})`);
  }

  private fail(message: string): never {
    throw new TokenizerError(`${this.what}: not a ${this.format}, or a corrupt one: ${message}`);
  }
}

// ignoreBOM keeps a U+FEFF at the start of a string: LLaMA has "\uFEFF" as a piece of its own.
const UTF8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
