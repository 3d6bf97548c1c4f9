/**
 * A SentencePiece vocabulary in GGUF metadata, as llama.cpp stores it: read into a
 * SentencePieceModel and a Tokenizer that encodes the way llama.cpp does, and written the way
 * llama.cpp's converter (convert_hf_to_gguf.py) writes it from a tokenizer.model.
 *
 * The keys (gguf-py/gguf/constants.py, Keys.Tokenizer) and the types they must have:
 *   tokenizer.ggml.model             STRING   "llama" (SentencePiece); "gpt2", "bert", "t5", ... are other tokenizers
 *   tokenizer.ggml.pre               STRING   "default" (llama.cpp ignores it for "llama")
 *   tokenizer.ggml.tokens            ARRAY of STRING   the token texts, by id
 *   tokenizer.ggml.scores            ARRAY of FLOAT32  (llama.cpp also takes INT32)
 *   tokenizer.ggml.token_type        ARRAY of INT32    1 NORMAL 2 UNKNOWN 3 CONTROL 4 USER_DEFINED 5 UNUSED 6 BYTE
 *   tokenizer.ggml.bos_token_id, eos_token_id, unknown_token_id, padding_token_id   UINT32
 *   tokenizer.ggml.add_bos_token, add_eos_token, add_space_prefix                    BOOL
 *   tokenizer.chat_template          STRING
 * llama.cpp reads scalars with GGUFMeta::GKV::get_kv, which refuses any other type ("key %s has
 * wrong type %s but expected type %s"); so do we. Defaults when a key is absent are llama.cpp's
 * (llama_vocab::impl::load, the "llama" branch): BOS 1, EOS 2, UNK 0, no PAD, add_bos true,
 * add_eos false, add_space_prefix true. Where llama.cpp only warns we refuse, naming the file and
 * the key: an id past the vocabulary (llama.cpp falls back to the default id), arrays whose
 * lengths differ (llama.cpp only needs scores and types to be at least as long), a token_type
 * outside 1..6 (llama.cpp makes it UNDEFINED: never matched, never printed), an empty token
 * (llama.cpp renames it "[EMPTY_<id>]"). A repeated token is refused by llama.cpp too. Byte
 * fallback means the file has all 256 <0xNN> BYTE tokens; some but not all is refused.
 *
 * How llama.cpp encodes with such a vocabulary (src/llama-vocab.cpp, llama_vocab::impl::tokenize
 * with parse_special, the LLAMA_VOCAB_TYPE_SPM case, and llm_tokenizer_spm_session):
 *   1. tokenizer_st_partition cuts the text at the "special" tokens, taken longest first (by
 *      UTF-8 length; equal lengths here by id, std::sort leaves that order open), each one at
 *      every occurrence left to right. Special means CONTROL, USER_DEFINED or UNKNOWN, so with
 *      parse_special "<s>", "</s>", "<unk>" and LLaVA's "<image>" in the text become their ids;
 *      without it only USER_DEFINED tokens are cut. (LSTRIP/RSTRIP are only set for phi-3, jina
 *      and modern-bert models, by name; not done here.)
 *   2. Each stretch of text is encoded on its own, and a space is put in front of it when
 *      add_space_prefix is set and it is the first stretch or follows a special token
 *      ("prefix with space if previous is special"). Then every " " becomes "▁". Nothing else
 *      is normalized: no whitespace is collapsed or stripped (remove_extra_whitespaces is read
 *      but the SPM path never uses it).
 *   3. The stretch is split into UTF-8 characters and merged by the highest-scoring adjacent
 *      pair whose concatenation is a token, leftmost first on ties, as SentencePiece's BPE does,
 *      except that every token can be made by merging, CONTROL, BYTE, UNKNOWN and UNUSED ones
 *      included, and a merged UNUSED token is kept (no resegmentation: "Do we need to support
 *      is_unused?").
 *   4. A symbol that is not a token becomes its UTF-8 bytes, each the <0xNN> token, else the
 *      one-character token for an ASCII byte; there is no <unk> fallback (llama.cpp throws
 *      std::out_of_range when neither exists, and so do we, with a TokenizerError).
 *   BOS goes first when add_bos_token, EOS last when add_eos_token.
 *
 * How that relates to the other two behaviours of sentencepiece_tokenizer.ts:
 * - Plain SentencePiece: the same ids for text with no special-token text in it, given what
 *   LLaMA's tokenizer.model is (identity normalization, remove_extra_whitespaces off, byte
 *   fallback, no UNUSED pieces): llama.cpp's " " + text is SentencePiece's dummy prefix. It
 *   differs where the text holds "<s>", "</s>", "<unk>" or an added token (SentencePiece knows
 *   no added tokens: "<s>" is "▁<", "s", ">"), and for models LLaMA is not: remove_extra_whitespaces
 *   on, UNUSED pieces, no byte fallback, user-defined pieces (the converter writes SentencePiece's
 *   USER_DEFINED pieces as NORMAL, so llama.cpp no longer cuts them out).
 * - transformers' slow LlamaTokenizer: legacy=true gives "▁" after every added token, which is
 *   exactly rule 2 ("<image>\n" gives <image> ▁ <0x0A>); legacy=false does not ("<image>\n" gives
 *   <image> <0x0A>), and llama.cpp has no such mode: a GGUF converted from llava-hf (legacy=false)
 *   is still encoded the legacy=true way by llama.cpp. The two also cut added tokens in a
 *   different order (transformers leftmost-longest, llama.cpp longest first), which only matters
 *   for added tokens that overlap in a text.
 * We chose llama.cpp's behaviour, with parse_special on (what llama.cpp's chat and multimodal
 * tools pass for prompts; an option turns it off): a GGUF file is llama.cpp's format, and its
 * weights are meant to be run on the ids llama.cpp would give them. A caller who wants
 * transformers' ids loads the model folder's tokenizer.model with its tokenizer_config.json.
 *
 * Decoding is SentencePiece's (decoding.ts), with llama.cpp's choices where they are expressible:
 * USER_DEFINED tokens print verbatim, UNUSED ones print nothing unless special tokens are shown.
 * llama.cpp's own detokenize differs in small ways left alone here: it prints nothing for the
 * unknown token (we print " ⁇ "), and keeps the leading space of the first piece after a
 * leading BOS when it drops that BOS.
 *
 * Writing (ggufTokenizerMetadata) follows convert_hf_to_gguf.py: _set_vocab_sentencepiece,
 * _create_vocab_sentencepiece and gguf-py's SpecialVocab.add_to_gguf. The vocabulary is padded
 * to config.json's vocab_size with "[PAD<id>]" UNUSED tokens scored -10000; SentencePiece's own
 * pieces keep their scores, typed by IsUnknown/IsControl/IsUnused/IsByte (so USER_DEFINED pieces
 * become NORMAL); each entry of tokenizer_config.json's added_tokens_decoder overwrites its id
 * with score -1000, as CONTROL when it is special or looks special (does_token_look_special:
 * "<pad>", "<mask>", "<|...|>", ...), else as USER_DEFINED with its "▁" written as spaces. So
 * llava-hf's <image> (32000) and <pad> (32001) become CONTROL tokens scored -1000, and so do
 * <unk>, <s> and </s>, which that file lists too: <unk> then has no UNKNOWN type left.
 *
 * src/tokenizer may not import src/weights (architecture.test.ts), so the metadata is taken as a
 * structural type matching GgufFile.metadata, and what is written is a subset of gguf_types.ts'
 * GgufValue that encodeGguf accepts as it is.
 */
import type { AddedToken } from "./added_tokens.js";
import { SymbolMerger, type MergeRules } from "./bpe.js";
import { TokenKind } from "./decoding.js";
import { TokenizerError } from "./errors.js";
import { byteOfPiece, pieceOfByte, type PieceType, type SentencePiece, type SentencePieceModel } from "./sentencepiece_model.js";
import { SPACE_SYMBOL, utf8Bytes, wellFormed, WordCache } from "./text.js";
import { Tokenizer, type TokenizerParts } from "./tokenizer.js";

/** The metadata keys, as gguf-py's constants.py names them. */
export const GGUF_TOKENIZER_KEYS = {
  model: "tokenizer.ggml.model",
  pre: "tokenizer.ggml.pre",
  tokens: "tokenizer.ggml.tokens",
  scores: "tokenizer.ggml.scores",
  tokenType: "tokenizer.ggml.token_type",
  bosId: "tokenizer.ggml.bos_token_id",
  eosId: "tokenizer.ggml.eos_token_id",
  unkId: "tokenizer.ggml.unknown_token_id",
  padId: "tokenizer.ggml.padding_token_id",
  addBos: "tokenizer.ggml.add_bos_token",
  addEos: "tokenizer.ggml.add_eos_token",
  addSpacePrefix: "tokenizer.ggml.add_space_prefix",
  removeExtraWhitespaces: "tokenizer.ggml.remove_extra_whitespaces",
  chatTemplate: "tokenizer.chat_template",
} as const;
const K = GGUF_TOKENIZER_KEYS;

/** One metadata value, as GgufFile.metadata holds it (gguf_types.ts' GgufValue fits this). */
export interface GgufMetadataValue {
  readonly type: string;
  readonly value: unknown;
}

/** GgufFile.metadata, or a Record such as ggufTokenizerMetadata returns. */
export type GgufMetadata = ReadonlyMap<string, GgufMetadataValue> | Readonly<Record<string, GgufMetadataValue>>;

/** What ggufTokenizerMetadata writes: values gguf_types.ts' GgufValue (and so encodeGguf) accepts. */
export type GgufTokenizerValue =
  | { type: "UINT32"; value: number }
  | { type: "BOOL"; value: boolean }
  | { type: "STRING"; value: string }
  | { type: "ARRAY"; value: { itemType: "STRING"; values: string[] } | { itemType: "FLOAT32" | "INT32"; values: number[] } };

/** llama.h's llama_token_type (and gguf-py's TokenType), by piece type. */
const TYPE_IDS: Record<PieceType, number> = { normal: 1, unknown: 2, control: 3, "user-defined": 4, unused: 5, byte: 6 };
const TYPES_BY_ID: Record<number, PieceType> = Object.fromEntries(Object.entries(TYPE_IDS).map(([type, id]) => [id, type as PieceType]));

/** What other tokenizer.ggml.model values mean (llama_vocab::impl::load). */
const OTHER_MODELS: Record<string, string> = {
  gpt2: "GPT-2-style byte-level BPE with merges",
  bert: "BERT WordPiece",
  t5: "T5 Unigram",
  rwkv: "RWKV's trie tokenizer",
  plamo2: "PLaMo-2's tokenizer",
  gemma4: "Gemma 4's BPE",
  hybriddna: "a BPE with DNA k-mers",
  whitespace: "a whitespace-split BPE",
  no_vocab: "no vocabulary at all",
  none: "no vocabulary at all",
};

/** A SentencePieceModel read from GGUF metadata, with the special ids and flags the file sets. */
export interface GgufSentencePieceModel extends SentencePieceModel, Pick<TokenizerParts, "bosId" | "eosId" | "unkId" | "padId" | "addBos" | "addEos"> {
  /** tokenizer.chat_template, if the file has one. */
  chatTemplate: string | undefined;
}

/**
 * Reads and checks a "llama" (SentencePiece) vocabulary from GGUF metadata; `source` names it in
 * errors. Every token is a piece, added tokens included (they are CONTROL or USER_DEFINED
 * tokens). addDummyPrefix is add_space_prefix; removeExtraWhitespaces is the
 * remove_extra_whitespaces key (default false, what llama.cpp does for SentencePiece whatever the
 * key says); unkSurface is SentencePiece's default, which GGUF does not store.
 */
export function sentencePieceModelFromGguf(metadata: GgufMetadata, source: string): GgufSentencePieceModel {
  const get = lookup(metadata);
  const modelValue = get(K.model);
  if (modelValue === undefined) throw new TokenizerError(`${source}: no ${K.model}: the file has no tokenizer`);
  const modelName = expectScalar(modelValue, "STRING", K.model, source) as string;
  if (modelName !== "llama") {
    const what = OTHER_MODELS[modelName];
    throw new TokenizerError(
      `${source}: ${K.model} is "${modelName}"${what ? ` (${what})` : ""}; only SentencePiece ("llama") vocabularies are supported`,
    );
  }

  const tokens = expectArray(get(K.tokens), ["STRING"], K.tokens, source, "string") as string[];
  const scores = expectArray(get(K.scores), ["FLOAT32", "INT32"], K.scores, source, "number") as number[];
  const types = expectArray(get(K.tokenType), ["INT32"], K.tokenType, source, "number") as number[];
  if (tokens.length === 0) throw new TokenizerError(`${source}: ${K.tokens} is empty`);
  for (const [key, array] of [
    [K.scores, scores],
    [K.tokenType, types],
  ] as const) {
    if (array.length !== tokens.length) {
      throw new TokenizerError(`${source}: ${key} has ${array.length} entries but ${K.tokens} has ${tokens.length}`);
    }
  }

  const pieces: SentencePiece[] = [];
  const seen = new Map<string, number>();
  const bytesSeen = new Set<number>();
  let unknowns = 0;
  tokens.forEach((piece, id) => {
    if (piece === "") throw new TokenizerError(`${source}: ${K.tokens}[${id}] is empty`);
    const earlier = seen.get(piece);
    if (earlier !== undefined) throw new TokenizerError(`${source}: ${K.tokens}: '${piece}' is both token ${earlier} and token ${id}`);
    seen.set(piece, id);
    const type = TYPES_BY_ID[types[id]];
    if (type === undefined) {
      throw new TokenizerError(`${source}: ${K.tokenType}[${id}] (token '${piece}') is ${types[id]}, not a token type (1 NORMAL .. 6 BYTE)`);
    }
    if (type === "byte") {
      const byte = byteOfPiece(piece);
      if (byte < 0) throw new TokenizerError(`${source}: ${K.tokens}[${id}] '${piece}' is typed BYTE in ${K.tokenType} but is not of the form <0xNN>`);
      bytesSeen.add(byte);
    }
    if (type === "unknown") unknowns++;
    pieces.push({ piece, score: scores[id], type });
  });
  if (bytesSeen.size !== 0 && bytesSeen.size !== 256) {
    throw new TokenizerError(`${source}: ${K.tokenType}: ${bytesSeen.size} of the 256 <0xNN> BYTE tokens are present; byte fallback needs all of them`);
  }
  if (unknowns > 1) throw new TokenizerError(`${source}: ${K.tokenType}: ${unknowns} tokens are typed UNKNOWN; SentencePiece has one`);

  const id = (key: string, fallback: number | undefined): number | undefined => {
    const value = get(key);
    if (value === undefined) return fallback !== undefined && fallback < tokens.length ? fallback : undefined;
    const n = expectScalar(value, "UINT32", key, source) as number;
    if (n >= tokens.length) throw new TokenizerError(`${source}: ${key} is ${n}, past the ${tokens.length} tokens of ${K.tokens}`);
    return n;
  };
  const flag = (key: string, fallback: boolean): boolean => {
    const value = get(key);
    return value === undefined ? fallback : (expectScalar(value, "BOOL", key, source) as boolean);
  };
  const bosId = id(K.bosId, 1);
  const eosId = id(K.eosId, 2);
  const unkId = id(K.unkId, 0);
  const padId = id(K.padId, undefined);
  const addBos = flag(K.addBos, true);
  const addEos = flag(K.addEos, false);
  // llama.cpp's check_add_special_token: adding a token it does not have is an error at load.
  if (addBos && bosId === undefined) throw new TokenizerError(`${source}: ${K.addBos} is true, but ${K.bosId} is not set`);
  if (addEos && eosId === undefined) throw new TokenizerError(`${source}: ${K.addEos} is true, but ${K.eosId} is not set`);
  const templateValue = get(K.chatTemplate);
  const chatTemplate = templateValue === undefined ? undefined : (expectScalar(templateValue, "STRING", K.chatTemplate, source) as string);
  const pieceAt = (n: number | undefined, fallback: string) => (n === undefined ? fallback : tokens[n]);

  return {
    source,
    pieces,
    byteFallback: bytesSeen.size === 256,
    unkSurface: " \u2047 ",
    unkPiece: pieceAt(unkId, "<unk>"),
    bosPiece: pieceAt(bosId, "<s>"),
    eosPiece: pieceAt(eosId, "</s>"),
    padPiece: pieceAt(padId, "<pad>"),
    addDummyPrefix: flag(K.addSpacePrefix, true),
    removeExtraWhitespaces: flag(K.removeExtraWhitespaces, false),
    escapeWhitespaces: true,
    bosId,
    eosId,
    unkId,
    padId,
    addBos,
    addEos,
    chatTemplate,
  };
}

export interface GgufTokenizerOptions {
  /**
   * Cut CONTROL and UNKNOWN tokens ("<s>", "<image>", "<unk>") out of the text, as llama.cpp's
   * parse_special does; default true. USER_DEFINED tokens are cut either way.
   */
  parseSpecial?: boolean;
  /**
   * CONTROL tokens to add past the file's vocabulary, with the ids from its size on, in order:
   * LLaVA's `<image>` for a text model whose vocabulary has none (llama.cpp's own files: it
   * places images without a token). They are cut out of the text like the file's own.
   */
  extraControlTokens?: readonly string[];
}

/** A Tokenizer over a GGUF file's SentencePiece vocabulary that gives llama.cpp's ids (see the file header). */
export function ggufTokenizer(metadata: GgufMetadata, source: string, options: GgufTokenizerOptions = {}): Tokenizer {
  const fromFile = sentencePieceModelFromGguf(metadata, source);
  const extra = options.extraControlTokens ?? [];
  for (const text of extra) {
    if (text === "" || fromFile.pieces.some((p) => p.piece === text)) throw new TokenizerError(`${source}: cannot add the control token ${JSON.stringify(text)}: it is empty or already in the vocabulary`);
  }
  const model: GgufSentencePieceModel = extra.length === 0 ? fromFile : { ...fromFile, pieces: [...fromFile.pieces, ...extra.map((piece) => ({ piece, score: 0, type: "control" as const }))] };
  const encoder = new LlamaCppSpm(model, options.parseSpecial ?? true);
  const kinds = Uint8Array.from(model.pieces, ({ type }) => KIND_OF_TYPE[type]);
  return new Tokenizer({
    description: `${source} (GGUF SentencePiece vocabulary, encoded as llama.cpp does)`,
    pieces: model.pieces.map((p) => p.piece),
    kinds,
    bytes: Int16Array.from(model.pieces, ({ piece, type }) => (type === "byte" ? byteOfPiece(piece) : -1)),
    unkSurface: model.unkSurface,
    leadingSpace: model.addDummyPrefix ? "one" : "none",
    encodeText: (text) => encoder.encode(text),
    bosId: model.bosId,
    eosId: model.eosId,
    unkId: model.unkId,
    padId: model.padId,
    addBos: model.addBos,
    addEos: model.addEos,
  });
}

/** How each token type decodes: as llama.cpp's token_to_piece, where decoding.ts can say it. */
const KIND_OF_TYPE: Record<PieceType, TokenKind> = {
  normal: TokenKind.Text,
  unknown: TokenKind.Unknown,
  control: TokenKind.Special,
  "user-defined": TokenKind.Added,
  unused: TokenKind.Special,
  byte: TokenKind.Byte,
};

/** llama.cpp's SPM tokenize: special-token partition, space prefix, score-ordered merges over all tokens. */
class LlamaCppSpm {
  private readonly source: string;
  private readonly ids = new Map<string, number>();
  private readonly scores: Float64Array;
  private readonly addSpacePrefix: boolean;
  /** The tokens cut out of the text first, longest (in UTF-8 bytes) first. */
  private readonly specials: { text: string; id: number }[];
  /** The token for each byte of a character that is no token: <0xNN>, else the ASCII character itself; -1 if none. */
  private readonly byteIds = new Int32Array(256).fill(-1);
  private readonly splitsIntoWords: boolean;
  private readonly cache = new WordCache();
  private readonly merger = new SymbolMerger();
  private readonly rules: MergeRules;
  private word = "";
  private readonly starts: number[] = [];
  private readonly ends: number[] = [];

  constructor(model: GgufSentencePieceModel, parseSpecial: boolean) {
    this.source = model.source;
    model.pieces.forEach(({ piece }, id) => this.ids.set(piece, id));
    this.scores = Float64Array.from(model.pieces, (p) => p.score);
    this.addSpacePrefix = model.addDummyPrefix;
    const cut = (type: PieceType) => type === "user-defined" || (parseSpecial && (type === "control" || type === "unknown"));
    this.specials = model.pieces
      .flatMap(({ piece, type }, id) => (cut(type) ? [{ text: piece, id, bytes: utf8Bytes(piece).length }] : []))
      .sort((a, b) => b.bytes - a.bytes || a.id - b.id)
      .map(({ text, id }) => ({ text, id }));
    for (let byte = 0; byte < 256; byte++) {
      this.byteIds[byte] = this.ids.get(pieceOfByte(byte)) ?? (byte < 0x80 ? this.ids.get(String.fromCharCode(byte)) : undefined) ?? -1;
    }
    // As in sentencepiece.ts: when no token has "▁" right after another character, no merge can
    // cross the point before a "▁" that follows a non-"▁", so words merge on their own (and are
    // cached). Here every token counts, since llama.cpp merges into any of them.
    this.splitsIntoWords = !model.pieces.some(({ piece }) => spaceSymbolInside(piece));
    this.rules = {
      find: (left, right) => this.ids.get(this.word.slice(this.starts[left], this.ends[right])) ?? -1,
      priority: (id) => this.scores[id],
      join: (left, right) => {
        this.ends[left] = this.ends[right];
      },
    };
  }

  encode(text: string): number[] {
    const ids: number[] = [];
    let previousWasSpecial = true;
    for (const part of this.partition(wellFormed(text))) {
      if (typeof part === "number") {
        ids.push(part);
        previousWasSpecial = true;
        continue;
      }
      const escaped = (this.addSpacePrefix && previousWasSpecial ? " " + part : part).replaceAll(" ", SPACE_SYMBOL);
      this.encodeStretch(escaped, ids);
      previousWasSpecial = false;
    }
    return ids;
  }

  /** tokenizer_st_partition: text stretches (strings) and special token ids (numbers), in order. */
  private partition(text: string): (string | number)[] {
    let parts: (string | number)[] = text === "" ? [] : [text];
    for (const { text: special, id } of this.specials) {
      if (!text.includes(special)) continue;
      const next: (string | number)[] = [];
      for (const part of parts) {
        if (typeof part === "number") {
          next.push(part);
          continue;
        }
        let from = 0;
        for (let at = part.indexOf(special); at >= 0; at = part.indexOf(special, from)) {
          if (at > from) next.push(part.slice(from, at));
          next.push(id);
          from = at + special.length;
        }
        if (from < part.length) next.push(from === 0 ? part : part.slice(from));
      }
      parts = next;
    }
    return parts;
  }

  private encodeStretch(text: string, ids: number[]): void {
    if (!this.splitsIntoWords) {
      this.encodeWord(text, ids);
      return;
    }
    let start = 0;
    for (let i = 1; i < text.length; i++) {
      if (text[i] === SPACE_SYMBOL && text[i - 1] !== SPACE_SYMBOL) {
        this.encodeCachedWord(text.slice(start, i), ids);
        start = i;
      }
    }
    if (start < text.length) this.encodeCachedWord(text.slice(start), ids);
  }

  private encodeCachedWord(word: string, ids: number[]): void {
    this.cache.encode(word, ids, (w, out) => this.encodeWord(w, out));
  }

  /** llm_tokenizer_spm_session::tokenize on one stretch: characters, merges, then resegment. */
  private encodeWord(word: string, ids: number[]): void {
    const { starts, ends } = this;
    this.word = word;
    let count = 0;
    for (let position = 0; position < word.length; count++) {
      const length = word.codePointAt(position)! > 0xffff ? 2 : 1;
      starts[count] = position;
      ends[count] = position + length;
      position += length;
    }
    for (const index of this.merger.merge(count, this.rules)) {
      const symbol = word.slice(starts[index], ends[index]);
      const id = this.ids.get(symbol);
      if (id !== undefined) {
        ids.push(id);
        continue;
      }
      // Only a single character can be left that is no token: a merge always makes a token.
      for (const byte of utf8Bytes(symbol)) {
        const byteId = this.byteIds[byte];
        if (byteId < 0) {
          throw new TokenizerError(
            `${this.source}: cannot encode ${JSON.stringify(symbol)}: the vocabulary has no token for it and no ${pieceOfByte(byte)} byte token (llama.cpp has no other fallback)`,
          );
        }
        ids.push(byteId);
      }
    }
  }
}

/** Whether a token has "▁" right after some other character, so that it could join two words. */
function spaceSymbolInside(piece: string): boolean {
  for (let i = 1; i < piece.length; i++) if (piece[i] === SPACE_SYMBOL && piece[i - 1] !== SPACE_SYMBOL) return true;
  return false;
}

export interface GgufTokenizerMetadataOptions {
  /**
   * config.json's vocab_size (LLaVA's text_config.vocab_size; 32064 for llava-1.5-7b-hf): ids
   * past the SentencePiece pieces are "[PAD<id>]" UNUSED tokens scored -10000 until an added
   * token takes them. Default: just enough for the pieces and the added tokens. The converter
   * drops pieces and added tokens past it with a warning; we refuse.
   */
  vocabSize?: number;
  /** tokenizer_config.json's added_tokens_decoder (parseTokenizerConfig(...).addedTokens). */
  addedTokens?: readonly AddedToken[];
  /**
   * The special ids (SpecialVocab takes them from tokenizer.json's added tokens named by
   * tokenizer_config.json, else from config.json). Default: the id of the model's bos/eos/unk/pad
   * piece (an added token counts) if there is one; null writes no key.
   */
  bosId?: number | null;
  eosId?: number | null;
  unkId?: number | null;
  padId?: number | null;
  /** tokenizer_config.json's add_bos_token / add_eos_token; written only when given (llama.cpp's defaults: true, false). */
  addBos?: boolean;
  addEos?: boolean;
  /**
   * tokenizer_config.json's add_prefix_space, written as tokenizer.ggml.add_space_prefix when
   * given. Unlike the converter, a model without SentencePiece's dummy prefix writes false
   * here by default, or llama.cpp would add a space SentencePiece does not.
   */
  addSpacePrefix?: boolean;
  /** tokenizer.chat_template. */
  chatTemplate?: string;
}

/**
 * The tokenizer metadata llama.cpp's convert_hf_to_gguf.py writes for a SentencePiece
 * tokenizer.model (see the file header), in its order. Besides add_space_prefix (above), one key
 * the converter never writes for "llama": tokenizer.ggml.remove_extra_whitespaces, true, for a
 * model that collapses whitespace (llama.cpp's SentencePiece path ignores it; it keeps the
 * setting for sentencePieceModelFromGguf).
 */
export function ggufTokenizerMetadata(model: SentencePieceModel, options: GgufTokenizerMetadataOptions = {}): Record<string, GgufTokenizerValue> {
  const where = `${model.source} (GGUF tokenizer metadata)`;
  const added = options.addedTokens ?? [];
  for (const token of added) {
    if (!Number.isInteger(token.id) || token.id < 0) throw new TokenizerError(`${where}: added token '${token.content}' has id ${token.id}`);
    if (token.content === "") throw new TokenizerError(`${where}: added token ${token.id} is empty`);
  }
  const needed = Math.max(model.pieces.length, ...added.map((t) => t.id + 1));
  const vocabSize = options.vocabSize ?? needed;
  if (!Number.isInteger(vocabSize) || vocabSize < model.pieces.length) {
    throw new TokenizerError(`${where}: vocabSize ${vocabSize} is smaller than the ${model.pieces.length} pieces of the model`);
  }
  const tooHigh = added.find((t) => t.id >= vocabSize);
  if (tooHigh) throw new TokenizerError(`${where}: added token '${tooHigh.content}' has id ${tooHigh.id}, past vocabSize ${vocabSize}`);

  // _create_vocab_sentencepiece.
  const tokens = Array.from({ length: vocabSize }, (_, id) => `[PAD${id}]`);
  const scores = new Array<number>(vocabSize).fill(-10000);
  const types = new Array<number>(vocabSize).fill(TYPE_IDS.unused);
  model.pieces.forEach(({ piece, score, type }, id) => {
    tokens[id] = piece;
    scores[id] = score;
    // SentencePieceProcessor has IsUnknown, IsControl, IsUnused and IsByte: anything else is NORMAL.
    types[id] = TYPE_IDS[type === "user-defined" ? "normal" : type];
  });
  for (const token of added) {
    if (token.special || looksSpecial(token.content)) {
      tokens[token.id] = token.content;
      types[token.id] = TYPE_IDS.control;
    } else {
      tokens[token.id] = token.content.replaceAll(SPACE_SYMBOL, " "); // "pre-normalize user-defined spaces"
      types[token.id] = TYPE_IDS["user-defined"];
    }
    scores[token.id] = -1000;
  }
  const seen = new Map<string, number>();
  tokens.forEach((token, id) => {
    const earlier = seen.get(token);
    if (earlier !== undefined) throw new TokenizerError(`${where}: token '${token}' would be both id ${earlier} and id ${id} (llama.cpp refuses such a vocabulary)`);
    seen.set(token, id);
  });

  const metadata: Record<string, GgufTokenizerValue> = {
    [K.model]: { type: "STRING", value: "llama" },
    [K.pre]: { type: "STRING", value: "default" },
    [K.tokens]: { type: "ARRAY", value: { itemType: "STRING", values: tokens } },
    [K.scores]: { type: "ARRAY", value: { itemType: "FLOAT32", values: scores } },
    [K.tokenType]: { type: "ARRAY", value: { itemType: "INT32", values: types } },
  };
  const special = (key: string, option: number | null | undefined, piece: string, name: string) => {
    if (option === null) return;
    const id = option ?? seen.get(piece);
    if (id === undefined) return;
    if (!Number.isInteger(id) || id < 0 || id >= vocabSize) throw new TokenizerError(`${where}: ${name} ${id} is not an id of the ${vocabSize} tokens`);
    metadata[key] = { type: "UINT32", value: id };
  };
  special(K.bosId, options.bosId, model.bosPiece, "bosId");
  special(K.eosId, options.eosId, model.eosPiece, "eosId");
  special(K.unkId, options.unkId, model.unkPiece, "unkId");
  special(K.padId, options.padId, model.padPiece, "padId");
  if (options.addBos !== undefined) metadata[K.addBos] = { type: "BOOL", value: options.addBos };
  if (options.addEos !== undefined) metadata[K.addEos] = { type: "BOOL", value: options.addEos };
  if (options.chatTemplate !== undefined) metadata[K.chatTemplate] = { type: "STRING", value: options.chatTemplate };
  const addSpacePrefix = options.addSpacePrefix ?? (model.addDummyPrefix ? undefined : false);
  if (addSpacePrefix !== undefined) metadata[K.addSpacePrefix] = { type: "BOOL", value: addSpacePrefix };
  if (model.removeExtraWhitespaces) metadata[K.removeExtraWhitespaces] = { type: "BOOL", value: true };
  return metadata;
}

/** convert_hf_to_gguf.py's does_token_look_special: added tokens that are control tokens though not marked special. */
function looksSpecial(token: string): boolean {
  return (
    ["<pad>", "<mask>", "<2mass>", "[@BOS@]"].includes(token) ||
    (token.startsWith("<|") && token.endsWith("|>")) ||
    (token.startsWith("<\uff5c") && token.endsWith("\uff5c>")) ||
    (token.startsWith("<unused") && token.endsWith(">"))
  );
}

function lookup(metadata: GgufMetadata): (key: string) => GgufMetadataValue | undefined {
  if (metadata instanceof Map) return (key) => metadata.get(key);
  const record = metadata as Readonly<Record<string, GgufMetadataValue>>;
  return (key) => (Object.hasOwn(record, key) ? record[key] : undefined);
}

const JS_TYPE_OF_SCALAR: Record<string, string> = { STRING: "string", UINT32: "number", BOOL: "boolean" };

function expectScalar(value: GgufMetadataValue, type: "STRING" | "UINT32" | "BOOL", key: string, source: string): unknown {
  if (value.type !== type) throw new TokenizerError(`${source}: ${key} must be a ${type} (as llama.cpp reads it), got ${describeType(value)}`);
  const ok = typeof value.value === JS_TYPE_OF_SCALAR[type] && (type !== "UINT32" || (Number.isInteger(value.value) && (value.value as number) >= 0));
  if (!ok) throw new TokenizerError(`${source}: ${key}: ${String(value.value)} is not a ${type} value`);
  return value.value;
}

function expectArray(
  value: GgufMetadataValue | undefined,
  itemTypes: readonly string[],
  key: string,
  source: string,
  jsType: "string" | "number",
): unknown[] {
  const wanted = `an ARRAY of ${itemTypes.join(" or ")}`;
  if (value === undefined) throw new TokenizerError(`${source}: no ${key} (${wanted}); llama.cpp's converter always writes it`);
  const array = value.value as { itemType?: unknown; values?: unknown } | undefined;
  if (value.type !== "ARRAY" || typeof array !== "object" || array === null || !Array.isArray(array.values)) {
    throw new TokenizerError(`${source}: ${key} must be ${wanted}, got ${describeType(value)}`);
  }
  if (!itemTypes.includes(array.itemType as string)) throw new TokenizerError(`${source}: ${key} must be ${wanted}, got ${describeType(value)}`);
  const values = array.values as unknown[];
  const bad = values.findIndex((v) => typeof v !== jsType);
  if (bad >= 0) throw new TokenizerError(`${source}: ${key}[${bad}] is ${JSON.stringify(values[bad])}, not a ${jsType}`);
  return values;
}

function describeType(value: GgufMetadataValue): string {
  if (value.type !== "ARRAY") return String(value.type);
  const array = value.value as { itemType?: unknown } | undefined;
  return `an ARRAY of ${String(array?.itemType)}`;
}
