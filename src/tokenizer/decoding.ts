/**
 * Ids back to text, the way SentencePieceProcessor::Decode does it, one id at a time.
 *
 * - A normal piece prints with each "▁" as a space. The very first "▁" of the text is the dummy
 *   prefix the encoder added, so it is dropped: the first non-byte piece that is reached while
 *   nothing has been printed yet loses one leading "▁" (when the tokenizer adds that prefix;
 *   with remove_extra_whitespaces, every piece does until something prints).
 * - Control pieces (<s>, </s>) and special added tokens print nothing; with skipSpecialTokens off
 *   they print their text instead. The unknown piece prints " ⁇ ".
 * - Byte pieces (<0xNN>) collect into a byte run; each complete UTF-8 character prints as itself
 *   and each byte that cannot be part of one prints as U+FFFD, like SentencePiece.
 *
 * For streaming, a character whose bytes are split over several byte pieces is held back until
 * its last byte arrives, so no caller ever prints half a character; what a run ends with that
 * can no longer complete is flushed as U+FFFD when the next non-byte id (or flush()) comes, just
 * as SentencePiece decodes a run. Concatenating every push() and the final flush() gives exactly
 * decode() of the same ids.
 */
import { TokenizerError } from "./errors.js";
import { SPACE_SYMBOL } from "./text.js";

/** How each id decodes. */
export const TokenKind = {
  /** Printed with "▁" as space (normal, user-defined and unused pieces). */
  Text: 0,
  /** The unknown piece. */
  Unknown: 1,
  /** Invisible unless special tokens are shown: control pieces and special added tokens. */
  Special: 2,
  /** A <0xNN> byte piece. */
  Byte: 3,
  /** An added token that is not special: printed as its text, verbatim. */
  Added: 4,
  /** An id with no token (a hole between the vocabulary and the added tokens). */
  Missing: 5,
} as const;
export type TokenKind = (typeof TokenKind)[keyof typeof TokenKind];

export interface DecodeTable {
  /** The token text of each id. */
  pieces: readonly string[];
  kinds: Uint8Array;
  /** For byte pieces, the byte. */
  bytes: Int16Array;
  unkSurface: string;
  /**
   * The "▁" that encoding put in front of the text, which decoding takes off: "one" for the dummy
   * prefix; "all" when encoding also dropped leading spaces (remove_extra_whitespaces), so every
   * piece loses its leading "▁" until something prints; "none" when encoding adds nothing.
   */
  leadingSpace: "none" | "one" | "all";
}

export interface DecodeOptions {
  /** Leave out control and special tokens (<s>, </s>, <image>, <pad>); default true. */
  skipSpecialTokens?: boolean;
}

const REPLACEMENT = "\uFFFD";

export class StreamingDecoder {
  private readonly skipSpecial: boolean;
  private readonly pending: number[] = [];
  /** SentencePiece's is_bos_ws: the next piece may still lose its leading "▁". */
  private atStart = true;
  private consumedLeadingSpace = false;
  private printedAny = false;

  constructor(
    private readonly table: DecodeTable,
    options: DecodeOptions = {},
  ) {
    this.skipSpecial = options.skipSpecialTokens ?? true;
  }

  /** The text that id completes: possibly empty, never half a character. */
  push(id: number): string {
    const { table } = this;
    if (!Number.isInteger(id) || id < 0 || id >= table.kinds.length || table.kinds[id] === TokenKind.Missing) {
      throw new TokenizerError(`cannot decode token id ${id}: not in the vocabulary (${table.kinds.length} ids)`);
    }
    if (table.kinds[id] === TokenKind.Byte) {
      this.pending.push(table.bytes[id]);
      return this.note(this.drainBytes(false));
    }
    let out = this.note(this.drainBytes(true));
    if (this.consumedLeadingSpace || this.printedAny) this.atStart = false;
    out += this.note(this.pieceText(id));
    return out;
  }

  /** Whatever is still held back (bytes of an unfinished character, as U+FFFD each). */
  flush(): string {
    return this.note(this.drainBytes(true));
  }

  private note(text: string): string {
    if (text !== "") this.printedAny = true;
    return text;
  }

  private pieceText(id: number): string {
    const { table } = this;
    this.consumedLeadingSpace = false;
    switch (table.kinds[id]) {
      case TokenKind.Special:
        return this.skipSpecial ? "" : table.pieces[id];
      case TokenKind.Unknown:
        return table.unkSurface;
      case TokenKind.Added:
        return table.pieces[id];
      default: {
        let piece = table.pieces[id];
        if (this.atStart && table.leadingSpace !== "none" && piece.startsWith(SPACE_SYMBOL)) {
          piece = piece.slice(SPACE_SYMBOL.length);
          this.consumedLeadingSpace = table.leadingSpace === "one";
        }
        return piece.replaceAll(SPACE_SYMBOL, " ");
      }
    }
  }

  /**
   * Prints the complete characters at the front of the pending bytes. An incomplete character
   * at the end is kept unless `final`, when it can no longer complete and each of its bytes
   * becomes U+FFFD.
   */
  private drainBytes(final: boolean): string {
    const bytes = this.pending;
    let out = "";
    let i = 0;
    while (i < bytes.length) {
      const length = sequenceLength(bytes[i]);
      if (length === 1) {
        out += String.fromCharCode(bytes[i]);
        i += 1;
        continue;
      }
      if (length === 0) {
        out += REPLACEMENT;
        i += 1;
        continue;
      }
      const available = Math.min(length, bytes.length - i);
      let continued = 1;
      while (continued < available && (bytes[i + continued] & 0xc0) === 0x80) continued++;
      if (continued < available || (available < length && final)) {
        // A byte that cannot continue the character, or a run that ended too soon.
        out += REPLACEMENT;
        i += 1;
        continue;
      }
      if (available < length) break; // Wait for the rest of the character.
      const codePoint = decodeSequence(bytes, i, length);
      if (codePoint < 0) {
        out += REPLACEMENT;
        i += 1;
      } else {
        out += String.fromCodePoint(codePoint);
        i += length;
      }
    }
    bytes.splice(0, i);
    return out;
  }
}

/** Bytes in the UTF-8 sequence a lead byte starts: 1-4, or 0 for a byte that cannot lead. */
function sequenceLength(lead: number): number {
  if (lead < 0x80) return 1;
  if ((lead & 0xe0) === 0xc0) return 2;
  if ((lead & 0xf0) === 0xe0) return 3;
  if ((lead & 0xf8) === 0xf0) return 4;
  return 0;
}

const MIN_CODE_POINT = [0, 0, 0x80, 0x800, 0x10000];

/**
 * The code point of a complete sequence whose continuation bytes are already checked, or -1 if
 * it is overlong, a surrogate or beyond U+10FFFF (which SentencePiece also rejects).
 */
function decodeSequence(bytes: number[], start: number, length: number): number {
  let codePoint = bytes[start] & (0x7f >> length);
  for (let k = 1; k < length; k++) codePoint = (codePoint << 6) | (bytes[start + k] & 0x3f);
  if (codePoint < MIN_CODE_POINT[length] || codePoint > 0x10ffff || (codePoint >= 0xd800 && codePoint < 0xe000)) return -1;
  return codePoint;
}

/** decode(): all ids through one streaming decoder. */
export function decodeIds(table: DecodeTable, ids: Iterable<number>, options?: DecodeOptions): string {
  const decoder = new StreamingDecoder(table, options);
  let out = "";
  for (const id of ids) out += decoder.push(id);
  return out + decoder.flush();
}
