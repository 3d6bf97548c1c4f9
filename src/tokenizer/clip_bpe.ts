/**
 * CLIP's tokenizer (OpenAI's simple_tokenizer, transformers' CLIPTokenizer): byte-level BPE over
 * cleaned, lowercased text.
 *
 * - The text is cleaned (clip_clean.ts), then cut into words by a regex: the two special tokens,
 *   English contractions, runs of letters, single digits, runs of other non-space characters.
 * - A word's UTF-8 bytes become symbols through bytes_to_unicode, GPT-2's table that gives each
 *   of the 256 bytes a printable character: the vocabulary and merges stay plain text with no
 *   whitespace or control characters in them, yet any byte sequence can be spelled.
 * - The last symbol of a word carries "</w>", so "at" ending a word ("cat") and "at" starting one
 *   ("atom") are different pieces; that end mark is also what becomes a space when decoding (the
 *   splitting threw the spaces away).
 * - Pairs are merged by rank, lowest first, until no ranked pair is left; each word's pieces are
 *   cached (a bounded map), since captions repeat their words.
 */
import { cleanClipText, DEFAULT_CLIP_CLEAN, stripPythonSpace, type ClipClean } from "./clip_clean.js";
import { TokenizerError } from "./errors.js";

export const END_OF_WORD = "</w>";

/** CLIP's context length: 77 text positions. */
export const CLIP_CONTEXT_LENGTH = 77;

const WORD_RE = /<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+/giu;
/** The words WORD_RE keeps whole: transformers' bpe() maps them to themselves. */
const LITERAL_SPECIALS = new Set(["<|startoftext|>", "<|endoftext|>"]);

const MAX_CACHED_WORDS = 10_000;

/** GPT-2's bytes_to_unicode: printable bytes stand for themselves, the rest are shifted to 256 and up. */
export function bytesToUnicode(): string[] {
  const table: string[] = new Array(256);
  let shifted = 0;
  for (let byte = 0; byte < 256; byte++) {
    const printable = (byte >= 0x21 && byte <= 0x7e) || (byte >= 0xa1 && byte <= 0xac) || (byte >= 0xae && byte <= 0xff);
    table[byte] = String.fromCodePoint(printable ? byte : 256 + shifted++);
  }
  return table;
}

export interface ClipSpecialTokens {
  bos: string;
  eos: string;
  pad: string;
  unk: string;
}

export interface ClipTokenizerOptions {
  /** token -> id, as vocab.json has it. */
  vocab: Map<string, number>;
  /** The merges in rank order, as merges.txt lists them. */
  merges: [string, string][];
  special: ClipSpecialTokens;
  contextLength?: number;
  clean?: ClipClean;
}

export interface ClipEncodeOptions {
  /** Put <|startoftext|> first and <|endoftext|> last (default true). */
  addSpecial?: boolean;
  /** Cut to this many ids (true: the context length), keeping the last one <|endoftext|>. */
  truncate?: number | boolean;
  clean?: ClipClean;
}

export interface ClipBatchOptions {
  /** The most ids a text keeps (default: the context length); longer texts are truncated. */
  maxLength?: number;
  /** "longest" pads to the longest text of the batch, "max_length" to maxLength. */
  padding?: "longest" | "max_length";
  clean?: ClipClean;
}

export interface ClipBatch {
  ids: number[][];
  /** 1 for a text's ids, 0 for padding. */
  attentionMask: number[][];
  /** Each text's number of ids before padding. */
  lengths: number[];
}

export interface ClipDecodeOptions {
  skipSpecial?: boolean;
}

export class ClipTokenizer {
  readonly vocabSize: number;
  readonly bosId: number;
  readonly eosId: number;
  readonly padId: number;
  readonly unkId: number;
  readonly contextLength: number;
  readonly clean: ClipClean;
  private readonly vocab: Map<string, number>;
  private readonly tokens: string[] = [];
  private readonly ranks = new Map<string, number>();
  private readonly byteSymbols = bytesToUnicode();
  private readonly symbolBytes = new Map(this.byteSymbols.map((symbol, byte) => [symbol, byte]));
  private readonly specialIds: Set<number>;
  private readonly specialSplit: RegExp;
  private readonly cache = new Map<string, string[]>();

  constructor(options: ClipTokenizerOptions) {
    this.vocab = options.vocab;
    this.vocabSize = options.vocab.size;
    for (const [token, id] of options.vocab) this.tokens[id] = token;
    // As transformers' dict(zip(merges, range(...))): a repeated merge keeps its last rank.
    options.merges.forEach(([a, b], rank) => this.ranks.set(`${a} ${b}`, rank));
    const idOf = (token: string, role: string): number => {
      const id = options.vocab.get(token);
      if (id === undefined) throw new TokenizerError(`the ${role} token ${JSON.stringify(token)} is not in the vocabulary`);
      return id;
    };
    const { bos, eos, pad, unk } = options.special;
    this.bosId = idOf(bos, "bos");
    this.eosId = idOf(eos, "eos");
    this.padId = idOf(pad, "pad");
    this.unkId = idOf(unk, "unk");
    this.specialIds = new Set([this.bosId, this.eosId, this.padId, this.unkId]);
    const literals = [...new Set([bos, eos, pad, unk])].sort((a, b) => b.length - a.length);
    this.specialSplit = new RegExp(`(${literals.map((s) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")).join("|")})`);
    this.contextLength = options.contextLength ?? CLIP_CONTEXT_LENGTH;
    if (!Number.isInteger(this.contextLength) || this.contextLength < 2) throw new TokenizerError(`context length must be an integer of at least 2, got ${this.contextLength}`);
    this.clean = options.clean ?? DEFAULT_CLIP_CLEAN;
  }

  /** The BPE pieces of a text (no special tokens added), as CLIPTokenizer.tokenize gives them. */
  tokenize(text: string, clean: ClipClean = this.clean): string[] {
    if (typeof text !== "string") throw new TokenizerError(`expected a text string, got ${typeof text}`);
    const pieces: string[] = [];
    // Special tokens written in the text are split off first, as transformers' added-token trie does.
    for (const [i, part] of text.split(this.specialSplit).entries()) {
      if (i % 2 === 1) pieces.push(part);
      else for (const [word] of cleanClipText(part, clean).matchAll(WORD_RE)) pieces.push(...this.bpe(word));
    }
    return pieces;
  }

  encode(text: string, options: ClipEncodeOptions = {}): number[] {
    const ids = this.tokenize(text, options.clean).map((token) => this.vocab.get(token) ?? this.unkId);
    const addSpecial = options.addSpecial ?? true;
    const max = options.truncate === true ? this.contextLength : options.truncate === false ? undefined : options.truncate;
    if (max !== undefined && (!Number.isInteger(max) || max < (addSpecial ? 2 : 0))) {
      throw new TokenizerError(`truncate: expected an integer of at least ${addSpecial ? 2 : 0}, got ${max}`);
    }
    const kept = max === undefined ? ids : ids.slice(0, addSpecial ? max - 2 : max);
    return addSpecial ? [this.bosId, ...kept, this.eosId] : kept;
  }

  /** Texts as one padded batch, as `tokenizer(texts, padding=..., truncation=True, max_length=...)`. */
  encodeBatch(texts: string[], options: ClipBatchOptions = {}): ClipBatch {
    if (!Array.isArray(texts)) throw new TokenizerError("encodeBatch: expected an array of texts");
    const maxLength = options.maxLength ?? this.contextLength;
    const padding = options.padding ?? "longest";
    if (padding !== "longest" && padding !== "max_length") throw new TokenizerError(`padding: expected "longest" or "max_length", got ${JSON.stringify(padding)}`);
    const rows = texts.map((text) => this.encode(text, { truncate: maxLength, clean: options.clean }));
    const lengths = rows.map((row) => row.length);
    const width = padding === "max_length" ? maxLength : Math.max(0, ...lengths);
    return {
      ids: rows.map((row) => [...row, ...new Array<number>(width - row.length).fill(this.padId)]),
      attentionMask: rows.map((row) => [...new Array<number>(row.length).fill(1), ...new Array<number>(width - row.length).fill(0)]),
      lengths,
    };
  }

  /**
   * The text of some ids, as transformers' decode (clean_up_tokenization_spaces=True). Special
   * tokens that are kept are spelled inline, through the same byte decoding as the rest, as
   * transformers 4.40 does: "<|startoftext|>a cat <|endoftext|>".
   */
  decode(ids: readonly number[] | Int32Array, options: ClipDecodeOptions = {}): string {
    if (!Array.isArray(ids) && !(ids instanceof Int32Array)) throw new TokenizerError("decode: expected an array of token ids");
    const pieces: string[] = [];
    for (const id of ids) {
      const token = Number.isInteger(id) ? this.tokens[id] : undefined;
      if (token === undefined) throw new TokenizerError(`decode: ${id} is not a token id (the vocabulary has ${this.vocabSize})`);
      if (!(options.skipSpecial && this.specialIds.has(id))) pieces.push(token);
    }
    return cleanUpTokenization(this.piecesToText(pieces));
  }

  private piecesToText(pieces: string[]): string {
    const symbols = [...pieces.join("")];
    const bytes = Uint8Array.from(symbols, (symbol) => {
      const byte = this.symbolBytes.get(symbol);
      if (byte === undefined) throw new TokenizerError(`decode: the token symbol ${JSON.stringify(symbol)} is not a byte symbol`);
      return byte;
    });
    return stripPythonSpace(new TextDecoder().decode(bytes).replaceAll(END_OF_WORD, " "));
  }

  private bpe(word: string): string[] {
    if (LITERAL_SPECIALS.has(word)) return [word];
    const cached = this.cache.get(word);
    if (cached !== undefined) return cached;
    const symbols = Array.from(new TextEncoder().encode(word), (byte) => this.byteSymbols[byte]);
    symbols[symbols.length - 1] += END_OF_WORD;
    while (symbols.length > 1) {
      let best = Infinity;
      for (let i = 0; i + 1 < symbols.length; i++) best = Math.min(best, this.ranks.get(`${symbols[i]} ${symbols[i + 1]}`) ?? Infinity);
      if (best === Infinity) break;
      for (let i = 0; i + 1 < symbols.length; i++) {
        if (this.ranks.get(`${symbols[i]} ${symbols[i + 1]}`) === best) symbols.splice(i, 2, symbols[i] + symbols[i + 1]);
      }
    }
    if (this.cache.size >= MAX_CACHED_WORDS) this.cache.delete(this.cache.keys().next().value!);
    this.cache.set(word, symbols);
    return symbols;
  }
}

/** transformers' clean_up_tokenization: no space before punctuation and English contractions. */
function cleanUpTokenization(text: string): string {
  return text
    .replaceAll(" .", ".").replaceAll(" ?", "?").replaceAll(" !", "!").replaceAll(" ,", ",").replaceAll(" ' ", "'")
    .replaceAll(" n't", "n't").replaceAll(" 'm", "'m").replaceAll(" 's", "'s").replaceAll(" 've", "'ve").replaceAll(" 're", "'re");
}
