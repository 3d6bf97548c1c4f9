/**
 * The tokenizer the rest of the runtime uses: text to ids and back, whichever file it was built
 * from (sentencepiece_tokenizer.ts for tokenizer.model, tokenizer_json.ts for tokenizer.json).
 */
import { decodeIds, StreamingDecoder, TokenKind, type DecodeOptions, type DecodeTable } from "./decoding.js";
import { TokenizerError } from "./errors.js";

export interface EncodeOptions {
  /** Put BOS first; defaults to the tokenizer's setting (add_bos_token, true for LLaMA). */
  addBos?: boolean;
  /** Put EOS last; defaults to the tokenizer's setting (add_eos_token, false for LLaMA). */
  addEos?: boolean;
}

/** What a tokenizer file gives: the id table, how text becomes ids, and the special ids. */
export interface TokenizerParts extends DecodeTable {
  /** Where it came from and how it behaves, e.g. "tokenizer.model (SentencePiece BPE)". */
  description: string;
  /** Text to ids, without BOS/EOS. */
  encodeText(text: string): number[];
  bosId: number | undefined;
  eosId: number | undefined;
  unkId: number | undefined;
  padId: number | undefined;
  addBos: boolean;
  addEos: boolean;
  /** Extra names for ids (added tokens), looked up before the vocabulary pieces. */
  extraIds?: ReadonlyMap<string, number>;
}

export class Tokenizer {
  readonly description: string;
  /** The number of ids, added tokens included (one more than the largest id). */
  readonly vocabSize: number;
  readonly bosId: number | undefined;
  readonly eosId: number | undefined;
  readonly unkId: number | undefined;
  readonly padId: number | undefined;
  readonly addBos: boolean;
  readonly addEos: boolean;
  private readonly ids = new Map<string, number>();

  constructor(private readonly parts: TokenizerParts) {
    this.description = parts.description;
    this.vocabSize = parts.kinds.length;
    this.bosId = parts.bosId;
    this.eosId = parts.eosId;
    this.unkId = parts.unkId;
    this.padId = parts.padId;
    this.addBos = parts.addBos;
    this.addEos = parts.addEos;
    parts.pieces.forEach((piece, id) => {
      if (parts.kinds[id] !== TokenKind.Missing && !this.ids.has(piece)) this.ids.set(piece, id);
    });
    for (const [piece, id] of parts.extraIds ?? []) this.ids.set(piece, id);
  }

  /** The ids of `text`, with BOS/EOS as asked (or as the tokenizer's config says). */
  encode(text: string, options: EncodeOptions = {}): number[] {
    if (typeof text !== "string") throw new TokenizerError(`encode: expected a string, got ${typeof text}`);
    const ids = this.parts.encodeText(text);
    if (options.addBos ?? this.addBos) ids.unshift(this.required(this.bosId, "BOS"));
    if (options.addEos ?? this.addEos) ids.push(this.required(this.eosId, "EOS"));
    return ids;
  }

  /** The text of `ids`, as SentencePiece decodes them (special tokens left out unless asked for). */
  decode(ids: Iterable<number>, options?: DecodeOptions): string {
    return decodeIds(this.parts, ids, options);
  }

  /** A decoder to feed generated ids one at a time; push() returns only whole characters. */
  decoder(options?: DecodeOptions): StreamingDecoder {
    return new StreamingDecoder(this.parts, options);
  }

  /** The id of a piece or added token ("▁Hello", "<0x0A>", "<image>"), or undefined. */
  idOf(piece: string): number | undefined {
    return this.ids.get(piece);
  }

  /** The piece (or added token text) of an id. */
  pieceOf(id: number): string {
    if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize || this.parts.kinds[id] === TokenKind.Missing) {
      throw new TokenizerError(`token id ${id} is not in the vocabulary (${this.vocabSize} ids)`);
    }
    return this.parts.pieces[id];
  }

  /** Whether an id is a control or special token (<s>, </s>, <image>, <pad>): what decode() skips. */
  isSpecial(id: number): boolean {
    return this.parts.kinds[id] === TokenKind.Special;
  }

  private required(id: number | undefined, name: string): number {
    if (id === undefined) throw new TokenizerError(`${this.description}: asked to add ${name}, but the tokenizer has no ${name} token`);
    return id;
  }
}
