/**
 * A Tokenizer over a Hugging Face tokenizer.json, as the `tokenizers` library (LlamaTokenizerFast)
 * runs one for a LLaMA-style BPE vocabulary:
 *
 * 1. Added tokens are cut out: those with normalized=false from the raw text, those with
 *    normalized=true from each normalized stretch (matched in their normalized form).
 * 2. Each stretch of text between them goes through the normalizer (Sequence of Prepend("▁") and
 *    Replace(" ", "▁") for LLaMA: so every stretch starts with "▁", the legacy behaviour), then
 *    the pre-tokenizer (none for LLaMA; newer files use Metaspace with prepend_scheme "first",
 *    which gives only the stretch at the very start of the text a "▁", the non-legacy
 *    behaviour).
 * 3. The BPE model merges each word by merge rank: of all adjacent pairs listed in `merges`, the
 *    one listed first joins first, the leftmost on ties. Characters not in the vocabulary become
 *    <0xNN> byte tokens (byte_fallback) or the unknown token.
 * 4. The post-processor's template (TemplateProcessing) adds BOS/EOS.
 *
 * Decoding (Replace "▁"→" ", ByteFallback, Fuse, Strip one leading space) comes to SentencePiece's
 * decoding, so decoding.ts serves both. (They part only on ids no encoder produces, such as a
 * text that starts with the byte piece <0x20>: Strip would eat that space, SentencePiece keeps it.)
 */
import { AddedTokenSplitter, type AddedToken, type Part } from "./added_tokens.js";
import { SymbolMerger, type MergeRules } from "./bpe.js";
import { isObject, parseAddedToken, parseJsonObject, type JsonObject, type TokenizerConfig } from "./config.js";
import { TokenKind } from "./decoding.js";
import { TokenizerError } from "./errors.js";
import { byteOfPiece, pieceOfByte } from "./sentencepiece_model.js";
import { SPACE_SYMBOL, utf8Bytes, wellFormed } from "./text.js";
import { Tokenizer } from "./tokenizer.js";

const WORD_CACHE_LIMIT = 65_536;

/** Builds a Tokenizer from tokenizer.json text; `config` (tokenizer_config.json) may override BOS/EOS. */
export function tokenizerFromJson(text: string, source: string, config?: TokenizerConfig): Tokenizer {
  const json = parseJsonObject(text, source);
  const model = json.model;
  if (!isObject(model)) throw new TokenizerError(`${source}: no "model" object (is this a tokenizer.json?)`);
  if (model.type !== "BPE") throw new TokenizerError(`${source}: model type ${JSON.stringify(model.type)} is not supported; only BPE is`);
  const bpe = new MergesBpe(model, source);
  const normalize = parseNormalizer(json.normalizer ?? null, `${source}: normalizer`);
  const preTokenizer = parsePreTokenizer(json.pre_tokenizer ?? null, `${source}: pre_tokenizer`);
  const leadingSpace = parseDecoder(json.decoder ?? null, `${source}: decoder`) ? "one" : "none";

  const addedList = json.added_tokens ?? [];
  if (!Array.isArray(addedList)) throw new TokenizerError(`${source}: "added_tokens" must be a list`);
  const added = new Map<number, AddedToken>();
  addedList.forEach((entry, i) => {
    const id = isObject(entry) ? entry.id : undefined;
    if (typeof id !== "number" || !Number.isInteger(id) || id < 0) throw new TokenizerError(`${source}: added_tokens[${i}] has no valid "id"`);
    added.set(id, parseAddedToken(entry, id, `${source}: added_tokens[${i}]`));
  });
  // tokenizer_config.json may list more; transformers adds those the fast tokenizer lacks.
  for (const token of config?.addedTokens ?? []) if (!added.has(token.id)) added.set(token.id, token);
  const addedTokens = [...added.values()];

  // The id table: the BPE vocabulary, then added tokens beyond it.
  const size = Math.max(bpe.pieces.length, ...addedTokens.map((t) => t.id + 1));
  const pieces = [...bpe.pieces, ...new Array<string>(size - bpe.pieces.length).fill("")];
  const kinds = new Uint8Array(size).fill(TokenKind.Missing);
  const bytes = new Int16Array(size).fill(-1);
  bpe.pieces.forEach((piece, id) => {
    if (bpe.missing.has(id)) return;
    const byte = bpe.byteFallback ? byteOfPiece(piece) : -1;
    kinds[id] = id === bpe.unkId ? TokenKind.Unknown : byte >= 0 ? TokenKind.Byte : TokenKind.Text;
    bytes[id] = byte;
  });
  for (const token of addedTokens) {
    if (token.id < bpe.pieces.length && !bpe.missing.has(token.id) && pieces[token.id] !== token.content) {
      throw new TokenizerError(`${source}: added token ${token.id} is '${token.content}' but the vocabulary has '${pieces[token.id]}' there`);
    }
    pieces[token.id] = token.content;
    if (kinds[token.id] === TokenKind.Unknown) continue;
    kinds[token.id] = token.special ? TokenKind.Special : kinds[token.id] === TokenKind.Missing ? TokenKind.Added : kinds[token.id];
  }

  const raw = new AddedTokenSplitter(addedTokens.filter((t) => !t.normalized));
  const normalizedSplitter = new AddedTokenSplitter(
    addedTokens.filter((t) => t.normalized).map((t) => ({ ...t, content: normalize(t.content) })),
  );
  const encodeText = (input: string): number[] => {
    const ids: number[] = [];
    for (const part of raw.split(wellFormed(input))) {
      if ("token" in part) {
        ids.push(part.token.id);
        continue;
      }
      const normalizedParts: Part[] = normalizedSplitter.split(normalize(part.text), part.offset);
      for (const inner of normalizedParts) {
        if ("token" in inner) ids.push(inner.token.id);
        else for (const word of preTokenizer(inner.text, inner.offset === 0)) bpe.encodeWord(word, ids);
      }
    }
    return ids;
  };

  const idOf = (name: string | undefined): number | undefined => {
    if (name === undefined) return undefined;
    for (const token of addedTokens) if (token.content === name) return token.id;
    return bpe.vocab.get(name);
  };
  const template = parsePostProcessor(json.post_processor ?? null, `${source}: post_processor`);
  const bosId = idOf(config?.bosToken) ?? template.prefix ?? idOf("<s>");
  const eosId = idOf(config?.eosToken) ?? template.suffix ?? idOf("</s>");
  return new Tokenizer({
    pieces,
    kinds,
    bytes,
    unkSurface: " \u2047 ",
    leadingSpace,
    description: `${source} (Hugging Face BPE)`,
    encodeText,
    bosId,
    eosId,
    unkId: bpe.unkId,
    padId: idOf(config?.padToken),
    // LlamaTokenizerFast rebuilds the template from add_bos_token/add_eos_token when the config has them.
    addBos: config?.addBosToken ?? template.prefix !== undefined,
    addEos: config?.addEosToken ?? template.suffix !== undefined,
    extraIds: new Map(addedTokens.map((t) => [t.content, t.id])),
  });
}

/**
 * The BPE model: a vocabulary and a ranked list of merges. Pairs are looked up by the ids of
 * the two symbols; the merge's rank (its line) is its priority, lower first.
 */
class MergesBpe {
  readonly vocab = new Map<string, number>();
  readonly pieces: string[] = [];
  /** Ids below the largest that the vocabulary does not define. */
  readonly missing = new Set<number>();
  readonly unkId: number | undefined;
  readonly byteFallback: boolean;
  private readonly fuseUnk: boolean;
  private readonly ignoreMerges: boolean;
  private readonly byteIds: Int32Array | undefined;
  private readonly stride: number;
  /** pair key (left id * stride + right id) → merge rank. */
  private readonly ranks = new Map<number, number>();
  /** merge rank → id of the merged token. */
  private readonly merged: Int32Array;
  private readonly splitsIntoWords: boolean;
  private readonly cache = new Map<string, number[]>();
  private readonly merger = new SymbolMerger();
  /** The token ids of the word being merged. */
  private symbols: number[] = [];
  private readonly rules: MergeRules = {
    find: (left, right) => this.ranks.get(this.symbols[left] * this.stride + this.symbols[right]) ?? -1,
    priority: (rank) => -rank,
    join: (left, _right, rank) => {
      this.symbols[left] = this.merged[rank];
    },
  };

  constructor(model: JsonObject, source: string) {
    const where = `${source}: model`;
    // `dropout` (BPE-dropout) is a training-time regularizer and is not applied: encoding here
    // is always deterministic.
    for (const key of ["continuing_subword_prefix", "end_of_word_suffix"]) {
      if (model[key] !== undefined && model[key] !== null && model[key] !== "") throw new TokenizerError(`${where}.${key} is not supported`);
    }
    const vocab = model.vocab;
    if (!isObject(vocab)) throw new TokenizerError(`${where}.vocab must be an object of token -> id`);
    for (const [piece, id] of Object.entries(vocab)) {
      if (typeof id !== "number" || !Number.isInteger(id) || id < 0) throw new TokenizerError(`${where}.vocab: '${piece}' has invalid id ${JSON.stringify(id)}`);
      if (this.pieces[id] !== undefined) throw new TokenizerError(`${where}.vocab: id ${id} is given to both '${this.pieces[id]}' and '${piece}'`);
      this.vocab.set(piece, id);
      this.pieces[id] = piece;
    }
    for (let id = 0; id < this.pieces.length; id++) {
      if (this.pieces[id] === undefined) {
        this.pieces[id] = "";
        this.missing.add(id);
      }
    }
    this.stride = this.pieces.length;

    const unkToken = model.unk_token;
    if (unkToken !== undefined && unkToken !== null) {
      if (typeof unkToken !== "string" || !this.vocab.has(unkToken)) throw new TokenizerError(`${where}.unk_token ${JSON.stringify(unkToken)} is not in the vocabulary`);
      this.unkId = this.vocab.get(unkToken);
    }
    this.fuseUnk = model.fuse_unk === true;
    this.byteFallback = model.byte_fallback === true;
    this.ignoreMerges = model.ignore_merges === true;
    this.byteIds = this.byteFallback ? this.lookUpByteTokens(where) : undefined;

    const merges = model.merges;
    if (!Array.isArray(merges)) throw new TokenizerError(`${where}.merges must be a list`);
    this.merged = new Int32Array(merges.length);
    let crossesWords = false;
    merges.forEach((entry, rank) => {
      const [left, right] = parseMerge(entry, `${where}.merges[${rank}]`);
      const leftId = this.vocab.get(left);
      const rightId = this.vocab.get(right);
      const mergedId = this.vocab.get(left + right);
      if (leftId === undefined || rightId === undefined || mergedId === undefined) {
        throw new TokenizerError(`${where}.merges[${rank}]: '${left}' + '${right}' uses a token that is not in the vocabulary`);
      }
      const key = leftId * this.stride + rightId;
      // A pair listed twice keeps its first (best) rank, as tokenizers does.
      if (!this.ranks.has(key)) this.ranks.set(key, rank);
      this.merged[rank] = mergedId;
      if (hasSpaceSymbolInside(left + right)) crossesWords = true;
    });
    // As in sentencepiece.ts: if no merge joins a character to a following "▁", the stretches
    // between such points merge independently, so we can cut there and cache per stretch.
    this.splitsIntoWords = !crossesWords;
  }

  /** Appends the ids of one pre-tokenized word. */
  encodeWord(word: string, ids: number[]): void {
    if (word === "") return;
    if (!this.splitsIntoWords) {
      this.encodeCached(word, ids);
      return;
    }
    let start = 0;
    for (let i = 1; i < word.length; i++) {
      if (word[i] === SPACE_SYMBOL && word[i - 1] !== SPACE_SYMBOL) {
        this.encodeCached(word.slice(start, i), ids);
        start = i;
      }
    }
    this.encodeCached(word.slice(start), ids);
  }

  private encodeCached(word: string, ids: number[]): void {
    let cached = this.cache.get(word);
    if (!cached) {
      cached = this.merge(word);
      if (this.cache.size >= WORD_CACHE_LIMIT) this.cache.clear();
      this.cache.set(word, cached);
    }
    for (const id of cached) ids.push(id);
  }

  private merge(word: string): number[] {
    if (this.ignoreMerges) {
      const whole = this.vocab.get(word);
      if (whole !== undefined) return [whole];
    }
    const symbols: number[] = [];
    let lastWasUnk = false;
    for (const char of word) {
      const id = this.vocab.get(char);
      if (id !== undefined) {
        symbols.push(id);
        lastWasUnk = false;
      } else if (this.byteIds) {
        for (const byte of utf8Bytes(char)) symbols.push(this.byteIds[byte]);
        lastWasUnk = false;
      } else if (this.unkId !== undefined) {
        if (!(this.fuseUnk && lastWasUnk)) symbols.push(this.unkId);
        lastWasUnk = true;
      }
      // With neither byte fallback nor an unknown token, tokenizers drops the character.
    }
    this.symbols = symbols;
    return this.merger.merge(symbols.length, this.rules).map((index) => symbols[index]);
  }

  private lookUpByteTokens(where: string): Int32Array {
    const ids = new Int32Array(256);
    for (let byte = 0; byte < 256; byte++) {
      const id = this.vocab.get(pieceOfByte(byte));
      if (id === undefined) throw new TokenizerError(`${where}: byte_fallback is on but the vocabulary has no ${pieceOfByte(byte)}`);
      ids[byte] = id;
    }
    return ids;
  }
}

function parseMerge(entry: unknown, where: string): [string, string] {
  if (typeof entry === "string") {
    const parts = entry.split(" ");
    if (parts.length === 2) return [parts[0], parts[1]];
  } else if (Array.isArray(entry) && entry.length === 2 && typeof entry[0] === "string" && typeof entry[1] === "string") {
    return [entry[0], entry[1]];
  }
  throw new TokenizerError(`${where}: expected "left right" or ["left", "right"], got ${JSON.stringify(entry)}`);
}

function hasSpaceSymbolInside(piece: string): boolean {
  for (let i = 1; i < piece.length; i++) if (piece[i] === SPACE_SYMBOL && piece[i - 1] !== SPACE_SYMBOL) return true;
  return false;
}

type Normalize = (text: string) => string;

function parseNormalizer(spec: unknown, where: string): Normalize {
  if (spec === null) return (text) => text;
  if (!isObject(spec)) throw new TokenizerError(`${where}: expected an object or null`);
  switch (spec.type) {
    case "Sequence": {
      const list = spec.normalizers;
      if (!Array.isArray(list)) throw new TokenizerError(`${where}: Sequence needs "normalizers"`);
      const steps = list.map((step, i) => parseNormalizer(step, `${where}.normalizers[${i}]`));
      return (text) => steps.reduce((acc, step) => step(acc), text);
    }
    case "Prepend": {
      const prepend = stringField(spec, "prepend", where);
      return (text) => (text === "" ? text : prepend + text);
    }
    case "Replace": {
      const pattern = replacePattern(spec, where);
      const content = stringField(spec, "content", where);
      return (text) => text.replaceAll(pattern, content);
    }
    case "NFC":
    case "NFD":
    case "NFKC":
    case "NFKD": {
      const form = spec.type;
      return (text) => text.normalize(form);
    }
    default:
      throw new TokenizerError(`${where}: normalizer type ${JSON.stringify(spec.type)} is not supported`);
  }
}

/** Metaspace and friends split a normalized stretch into words; `atStart` is whether it begins the text. */
type PreTokenize = (text: string, atStart: boolean) => string[];

function parsePreTokenizer(spec: unknown, where: string): PreTokenize {
  if (spec === null) return (text) => [text];
  if (!isObject(spec)) throw new TokenizerError(`${where}: expected an object or null`);
  if (spec.type === "Sequence") {
    const list = spec.pretokenizers;
    if (!Array.isArray(list)) throw new TokenizerError(`${where}: Sequence needs "pretokenizers"`);
    const steps = list.map((step, i) => parsePreTokenizer(step, `${where}.pretokenizers[${i}]`));
    return (text, atStart) => steps.reduce<string[]>((words, step) => words.flatMap((word) => step(word, atStart)), [text]);
  }
  if (spec.type !== "Metaspace") throw new TokenizerError(`${where}: pre-tokenizer type ${JSON.stringify(spec.type)} is not supported`);
  const replacement = stringField(spec, "replacement", where);
  const scheme = prependScheme(spec, where);
  const split = spec.split === undefined ? true : spec.split === true;
  return (text, atStart) => {
    let out = text.replaceAll(" ", replacement);
    const prepend = scheme === "always" || (scheme === "first" && atStart);
    if (prepend && !out.startsWith(replacement)) out = replacement + out;
    if (!split) return [out];
    // Split before each replacement character, keeping it with the word it starts.
    const words: string[] = [];
    let start = 0;
    for (let i = out.indexOf(replacement, 1); i > 0; i = out.indexOf(replacement, i + 1)) {
      words.push(out.slice(start, i));
      start = i;
    }
    words.push(out.slice(start));
    return words.filter((word) => word !== "");
  };
}

/** Metaspace's prepend_scheme, or the older add_prefix_space flag. */
function prependScheme(spec: JsonObject, where: string): "always" | "first" | "never" {
  const scheme = spec.prepend_scheme;
  if (scheme === "always" || scheme === "first" || scheme === "never") return scheme;
  if (scheme !== undefined && scheme !== null) throw new TokenizerError(`${where}: unknown prepend_scheme ${JSON.stringify(scheme)}`);
  return spec.add_prefix_space === false ? "never" : "always";
}

/** Checks the decoder is one we decode like (SentencePiece-style); returns whether it strips the leading space. */
function parseDecoder(spec: unknown, where: string): boolean {
  if (spec === null) return false;
  if (!isObject(spec)) throw new TokenizerError(`${where}: expected an object or null`);
  switch (spec.type) {
    case "Sequence": {
      const list = spec.decoders;
      if (!Array.isArray(list)) throw new TokenizerError(`${where}: Sequence needs "decoders"`);
      return list.map((step, i) => parseDecoder(step, `${where}.decoders[${i}]`)).some(Boolean);
    }
    case "Replace":
      if (replacePattern(spec, where) !== SPACE_SYMBOL || spec.content !== " ") throw new TokenizerError(`${where}: only Replace("▁", " ") is supported`);
      return false;
    case "ByteFallback":
    case "Fuse":
      return false;
    case "Strip":
      if (spec.content !== " " || spec.stop !== 0) throw new TokenizerError(`${where}: only Strip(" ", start, 0) is supported`);
      return typeof spec.start === "number" && spec.start >= 1;
    case "Metaspace":
      return prependScheme(spec, where) !== "never";
    default:
      throw new TokenizerError(`${where}: decoder type ${JSON.stringify(spec.type)} is not supported`);
  }
}

/** The single-sequence template: at most one special token before the text and one after. */
function parsePostProcessor(spec: unknown, where: string): { prefix?: number; suffix?: number } {
  if (spec === null) return {};
  if (!isObject(spec) || spec.type !== "TemplateProcessing") {
    throw new TokenizerError(`${where}: only TemplateProcessing is supported, got ${JSON.stringify(isObject(spec) ? spec.type : spec)}`);
  }
  const single = spec.single;
  const specials = spec.special_tokens;
  if (!Array.isArray(single) || !isObject(specials)) throw new TokenizerError(`${where}: TemplateProcessing needs "single" and "special_tokens"`);
  const ids: (number | "A")[] = single.map((item, i) => {
    if (isObject(item) && isObject(item.Sequence)) return "A";
    const name = isObject(item) && isObject(item.SpecialToken) ? item.SpecialToken.id : undefined;
    const entry = typeof name === "string" ? specials[name] : undefined;
    const entryIds = isObject(entry) ? entry.ids : undefined;
    if (!Array.isArray(entryIds) || entryIds.length !== 1 || typeof entryIds[0] !== "number") {
      throw new TokenizerError(`${where}: single[${i}] must be the sequence or a special token with one id`);
    }
    return entryIds[0];
  });
  const at = ids.indexOf("A");
  if (at < 0 || at > 1 || ids.length - at > 2) throw new TokenizerError(`${where}: only templates of the form [BOS] $A [EOS] are supported`);
  return { prefix: at === 1 ? (ids[0] as number) : undefined, suffix: ids.length - at === 2 ? (ids[at + 1] as number) : undefined };
}

function replacePattern(spec: JsonObject, where: string): string {
  const pattern = spec.pattern;
  if (isObject(pattern) && typeof pattern.String === "string") return pattern.String;
  throw new TokenizerError(`${where}: only string patterns are supported in Replace, got ${JSON.stringify(pattern)}`);
}

function stringField(spec: JsonObject, key: string, where: string): string {
  const value = spec[key];
  if (typeof value !== "string") throw new TokenizerError(`${where}: "${key}" must be a string`);
  return value;
}
