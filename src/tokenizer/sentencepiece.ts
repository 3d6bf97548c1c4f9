/**
 * SentencePiece's BPE encoder, as SentencePieceProcessor::Encode runs it for a BPE model.
 *
 * 1. Normalize (identity rule): add the dummy prefix "▁", write each space as "▁", and with
 *    remove_extra_whitespaces drop leading/trailing spaces and collapse runs. User-defined
 *    symbols are copied through whole.
 * 2. Split into characters (a user-defined symbol is one frozen symbol that never merges).
 * 3. Merge: repeatedly join the adjacent pair whose concatenation is a piece with the highest
 *    score, the leftmost on ties (bpe.ts). Only NORMAL, USER_DEFINED and UNUSED pieces can be
 *    made by merging.
 * 4. A result that is an UNUSED piece is split back into the two symbols that made it.
 * 5. Ids: a symbol that is not a piece is unknown; with byte_fallback it becomes its UTF-8 bytes
 *    as <0xNN> pieces, otherwise the unknown id (one for a whole run of unknown symbols).
 *
 * SentencePiece merges over the whole text at once. When no mergeable piece has "▁" right after
 * another character (true of LLaMA: "▁" only starts pieces), no merge can cross the point before
 * a "▁" that follows a non-"▁" character, so we cut the text there into words, merge each on its
 * own, and cache the result per word. The merges inside each word happen in the same order as
 * they would in the whole text, so the ids are the same; it is just faster on real text.
 */
import { SymbolMerger, type MergeRules } from "./bpe.js";
import { byteOfPiece, type PieceType, type SentencePieceModel } from "./sentencepiece_model.js";
import { PrefixMatcher, SPACE_SYMBOL, utf8Bytes, wellFormed, WordCache } from "./text.js";

export class SentencePieceBpe {
  readonly unkId: number;
  readonly pieces: readonly string[];
  readonly types: readonly PieceType[];
  /** NORMAL, USER_DEFINED and UNUSED pieces: the ones merging can make. */
  private readonly mergeable = new Map<string, number>();
  /** CONTROL, UNKNOWN and BYTE pieces, looked up first by piece (as SentencePiece's PieceToId does). */
  private readonly reserved = new Map<string, number>();
  private readonly scores: Float64Array;
  private readonly byteIds = new Int32Array(256).fill(-1);
  private readonly userDefined: PrefixMatcher;
  private readonly splitsIntoWords: boolean;
  private readonly hasUnused: boolean;
  private readonly cache = new WordCache();
  /**
   * Every way two mergeable pieces concatenate into a third, keyed by left id * stride + right
   * id: the same answer as looking the concatenated string up, without building the string.
   */
  private readonly pairs = new Map<number, number>();
  private readonly stride: number;
  private readonly merger = new SymbolMerger();
  // The word being merged: its symbols as [start, end) spans, their piece ids (-1 for a
  // character that is not a piece) and whether they are frozen user-defined symbols.
  private word = "";
  private readonly starts: number[] = [];
  private readonly ends: number[] = [];
  private readonly symbolIds: number[] = [];
  private readonly frozen: boolean[] = [];
  /** Which two symbols made each UNUSED piece, as last queued (SentencePiece's rev_merge). */
  private readonly madeFrom = new Map<string, [string, string]>();
  private readonly rules: MergeRules;
  /** Mergeable ids that are their own output: not UNUSED, and not shadowed by a reserved piece. */
  private readonly emitsItself: Uint8Array;

  constructor(readonly model: SentencePieceModel) {
    this.pieces = model.pieces.map((p) => p.piece);
    this.types = model.pieces.map((p) => p.type);
    this.scores = Float64Array.from(model.pieces, (p) => p.score);
    let unkId = -1;
    model.pieces.forEach(({ piece, type }, id) => {
      if (type === "normal" || type === "user-defined" || type === "unused") this.mergeable.set(piece, id);
      else this.reserved.set(piece, id);
      if (type === "unknown") unkId = id;
      if (type === "byte") this.byteIds[byteOfPiece(piece)] = id;
    });
    this.unkId = unkId;
    this.userDefined = new PrefixMatcher(model.pieces.filter((p) => p.type === "user-defined").map((p) => p.piece));
    this.hasUnused = this.types.includes("unused");
    this.splitsIntoWords = !this.hasUnused && ![...this.mergeable.keys()].some(spaceSymbolInside);
    this.stride = this.pieces.length;
    for (const [piece, id] of this.mergeable) {
      for (let cut = piece.codePointAt(0)! > 0xffff ? 2 : 1; cut < piece.length; cut += piece.codePointAt(cut)! > 0xffff ? 2 : 1) {
        const left = this.mergeable.get(piece.slice(0, cut));
        const right = this.mergeable.get(piece.slice(cut));
        if (left !== undefined && right !== undefined) this.pairs.set(left * this.stride + right, id);
      }
    }
    this.emitsItself = Uint8Array.from(this.pieces, (piece, id) =>
      this.mergeable.get(piece) === id && this.types[id] !== "unused" && !this.reserved.has(piece) ? 1 : 0,
    );
    this.rules = {
      find: (left, right) => this.findMerge(left, right),
      priority: (id) => this.scores[id],
      join: (left, right, id) => {
        this.ends[left] = this.ends[right];
        this.symbolIds[left] = id;
      },
      queued: this.hasUnused ? (left, right, id) => this.noteUnused(left, right, id) : undefined,
    };
  }

  /** SentencePiece's PieceToId: reserved pieces first, then mergeable ones, else the unknown id. */
  pieceToId(piece: string): number {
    return this.reserved.get(piece) ?? this.mergeable.get(piece) ?? this.unkId;
  }

  /**
   * The ids of `text`, without BOS/EOS. `addDummyPrefix` overrides the model's setting (the
   * non-legacy transformers tokenizer turns it off).
   */
  encode(text: string, addDummyPrefix = this.model.addDummyPrefix): number[] {
    const normalized = this.normalize(text, addDummyPrefix);
    const ids: number[] = [];
    if (!this.splitsIntoWords) {
      this.encodeWord(normalized, ids);
    } else {
      let start = 0;
      for (let i = 1; i < normalized.length; i++) {
        if (normalized[i] === SPACE_SYMBOL && normalized[i - 1] !== SPACE_SYMBOL) {
          this.encodeCachedWord(normalized.slice(start, i), ids);
          start = i;
        }
      }
      if (start < normalized.length) this.encodeCachedWord(normalized.slice(start), ids);
    }
    // Without byte fallback, SentencePiece reports a run of unknown characters as one <unk>.
    return this.model.byteFallback ? ids : ids.filter((id, i) => !(id === this.unkId && ids[i - 1] === this.unkId));
  }

  /** SentencePiece's Normalizer::Normalize with the identity character map. */
  normalize(text: string, addDummyPrefix: boolean): string {
    const input = wellFormed(text);
    const { removeExtraWhitespaces, escapeWhitespaces } = this.model;
    const space = escapeWhitespaces ? SPACE_SYMBOL : " ";
    if (!removeExtraWhitespaces && this.userDefined.empty) {
      if (input === "") return "";
      const body = escapeWhitespaces ? input.replaceAll(" ", SPACE_SYMBOL) : input;
      return addDummyPrefix ? space + body : body;
    }

    let position = 0;
    if (removeExtraWhitespaces) while (input[position] === " ") position++;
    if (position === input.length) return "";
    let out = addDummyPrefix ? space : "";
    let previousWasSpace = removeExtraWhitespaces;
    while (position < input.length) {
      // One unit: a user-defined symbol, or one character.
      const unit = this.userDefined.match(input, position) ?? String.fromCodePoint(input.codePointAt(position)!);
      position += unit.length;
      let kept = unit;
      if (previousWasSpace) kept = kept.replace(/^ +/, "");
      if (kept !== "") {
        out += escapeWhitespaces ? kept.replaceAll(" ", SPACE_SYMBOL) : kept;
        previousWasSpace = kept.endsWith(" ");
      }
      if (!removeExtraWhitespaces) previousWasSpace = false;
    }
    if (removeExtraWhitespaces) while (out.endsWith(space)) out = out.slice(0, -space.length);
    return out;
  }

  private encodeCachedWord(word: string, ids: number[]): void {
    this.cache.encode(word, ids, (w, out) => this.encodeWord(w, out));
  }

  /** Steps 2-5 for one stretch of normalized text, appending its ids. */
  private encodeWord(word: string, ids: number[]): void {
    const { starts, ends, symbolIds, frozen } = this;
    this.word = word;
    let count = 0;
    for (let position = 0; position < word.length; count++) {
      const symbol = this.userDefined.empty ? undefined : this.userDefined.match(word, position);
      const length = symbol ? symbol.length : word.codePointAt(position)! > 0xffff ? 2 : 1;
      starts[count] = position;
      ends[count] = position + length;
      symbolIds[count] = this.mergeable.get(word.slice(position, position + length)) ?? -1;
      frozen[count] = symbol !== undefined;
      position += length;
    }
    this.madeFrom.clear();
    for (const index of this.merger.merge(count, this.rules)) {
      const id = symbolIds[index];
      if (id >= 0 && this.emitsItself[id]) ids.push(id);
      else this.emit(word.slice(starts[index], ends[index]), ids);
    }
  }

  private findMerge(left: number, right: number): number {
    if (this.frozen[left] || this.frozen[right]) return -1;
    const a = this.symbolIds[left];
    const b = this.symbolIds[right];
    if (a >= 0 && b >= 0) return this.pairs.get(a * this.stride + b) ?? -1;
    // A character that is not a piece can still start or end one in an unusual model.
    return this.mergeable.get(this.word.slice(this.starts[left], this.ends[right])) ?? -1;
  }

  private noteUnused(left: number, right: number, id: number): void {
    if (this.types[id] !== "unused") return;
    const { word, starts, ends } = this;
    this.madeFrom.set(this.pieces[id], [word.slice(starts[left], ends[left]), word.slice(starts[right], ends[right])]);
  }

  /** The ids of one merged symbol: UNUSED pieces split back, unknown ones as bytes. */
  private emit(piece: string, ids: number[]): void {
    const id = this.pieceToId(piece);
    const parts = this.types[id] === "unused" ? this.madeFrom.get(piece) : undefined;
    if (parts) {
      this.emit(parts[0], ids);
      this.emit(parts[1], ids);
    } else if (id === this.unkId && this.model.byteFallback) {
      for (const byte of utf8Bytes(piece)) ids.push(this.byteIds[byte]);
    } else {
      ids.push(id);
    }
  }
}

/** Whether a piece has "▁" right after some other character, so that it could join two words. */
function spaceSymbolInside(piece: string): boolean {
  for (let i = 1; i < piece.length; i++) if (piece[i] === SPACE_SYMBOL && piece[i - 1] !== SPACE_SYMBOL) return true;
  return false;
}
