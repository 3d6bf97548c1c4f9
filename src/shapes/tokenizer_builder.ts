/**
 * A tokenizer for the shapes world, in LLaMA's style and Hugging Face's tokenizer.json format:
 * a BPE vocabulary learnt from the world's own prompts and answers, with SentencePiece's
 * conventions, read by the same code (src/tokenizer) that reads LLaMA's.
 *
 *   ids 0-2     <unk> <s> </s>                     (control tokens, as in LLaMA)
 *   ids 3-258   <0x00> ... <0xFF>                  byte fallback: any character not in the
 *                                                  vocabulary is spelt in UTF-8 bytes (the
 *                                                  prompt's newline always is)
 *   then        the characters of the corpus, then one piece per merge, in merge order
 *   last        <image> <pad>                      added special tokens, as llava-1.5-hf has them
 *
 * Text is split the way the tokenizer.json below will split it when encoding: added tokens are
 * cut out; a space becomes "▁" and the text's first stretch gets a leading "▁" (Metaspace,
 * prepend_scheme "first", what LlamaTokenizerFast writes with legacy=false); words start at
 * each "▁". Training is classic BPE: repeatedly join the most frequent adjacent pair of
 * symbols (ties to the pair whose text sorts first) until the vocabulary is full or no pair
 * occurs twice. Encoding by merge rank then reproduces exactly the splits training made.
 */
import { byteFallbackBpe, LLAMA_DECODER } from "../tokenizer/convert.js";
import { pieceOfByte } from "../tokenizer/sentencepiece_model.js";
import { SPACE_SYMBOL } from "../tokenizer/text.js";

export const SPECIAL_PIECES = ["<unk>", "<s>", "</s>"] as const;
export const IMAGE_TOKEN = "<image>";
export const PAD_TOKEN = "<pad>";

export interface TokenizerFiles {
  /** tokenizer.json */
  tokenizer: Record<string, unknown>;
  /** tokenizer_config.json */
  config: Record<string, unknown>;
  /** special_tokens_map.json */
  specialTokensMap: Record<string, unknown>;
  /** Size of the id table, added tokens included (the model's vocab_size). */
  vocabSize: number;
  imageTokenId: number;
  padTokenId: number;
}

export interface BuildOptions {
  /** Most ids in all, added tokens included. */
  maxVocabSize: number;
  /** tokenizer_config.json's model_max_length. */
  modelMaxLength: number;
}

/** Characters the vocabulary leaves to byte fallback: control characters (the prompt's "\n"). */
function isByteFallbackCharacter(char: string): boolean {
  return /\p{Cc}/u.test(char);
}

/** The words BPE sees in one text: its stretches between added tokens, "▁" for spaces, cut before each "▁". */
export function pretokenize(text: string, addedTokens: readonly string[]): string[] {
  const words: string[] = [];
  let offset = 0;
  for (const stretch of splitAddedTokens(text, addedTokens)) {
    if (stretch.token === undefined) {
      let normalized = stretch.text.replaceAll(" ", SPACE_SYMBOL);
      if (offset === 0 && !normalized.startsWith(SPACE_SYMBOL)) normalized = SPACE_SYMBOL + normalized;
      let start = 0;
      for (let i = 1; i < normalized.length; i++) {
        if (normalized[i] === SPACE_SYMBOL && normalized[i - 1] !== SPACE_SYMBOL) {
          words.push(normalized.slice(start, i));
          start = i;
        }
      }
      words.push(normalized.slice(start));
    }
    offset += stretch.text.length;
  }
  return words.filter((w) => w !== "");
}

function splitAddedTokens(text: string, tokens: readonly string[]): { text: string; token?: string }[] {
  const out: { text: string; token?: string }[] = [];
  let rest = text;
  for (;;) {
    let best = -1;
    let token = "";
    for (const t of tokens) {
      const at = rest.indexOf(t);
      if (at >= 0 && (best < 0 || at < best || (at === best && t.length > token.length))) {
        best = at;
        token = t;
      }
    }
    if (best < 0) break;
    if (best > 0) out.push({ text: rest.slice(0, best) });
    out.push({ text: token, token });
    rest = rest.slice(best + token.length);
  }
  if (rest) out.push({ text: rest });
  return out;
}

/** The symbols a word starts as: its characters, or byte pieces for characters left to byte fallback. */
function initialSymbols(word: string): string[] {
  const symbols: string[] = [];
  for (const char of word) {
    if (isByteFallbackCharacter(char)) for (const byte of Buffer.from(char, "utf8")) symbols.push(pieceOfByte(byte));
    else symbols.push(char);
  }
  return symbols;
}

const isBytePiece = (symbol: string) => /^<0x[0-9A-F]{2}>$/.test(symbol);

/** Learns BPE merges over `texts`; returns the characters and the merges in order. */
export function learnBpe(texts: readonly string[], maxPieces: number): { characters: string[]; merges: [string, string][] } {
  const counts = new Map<string, number>();
  for (const text of texts) for (const word of pretokenize(text, [IMAGE_TOKEN])) counts.set(word, (counts.get(word) ?? 0) + 1);
  const words = [...counts.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([word, count]) => ({ symbols: initialSymbols(word), count }));
  const characters = [...new Set(words.flatMap((w) => w.symbols.filter((s) => !isBytePiece(s))))].sort();
  const merges: [string, string][] = [];
  while (characters.length + merges.length < maxPieces) {
    const pairs = new Map<string, number>();
    for (const { symbols, count } of words) {
      for (let i = 0; i + 1 < symbols.length; i++) {
        if (isBytePiece(symbols[i]) || isBytePiece(symbols[i + 1])) continue;
        const key = `${symbols[i]} ${symbols[i + 1]}`;
        pairs.set(key, (pairs.get(key) ?? 0) + count);
      }
    }
    let best: string | undefined;
    let bestCount = 1;
    for (const [key, count] of pairs) {
      if (count > bestCount || (count === bestCount && best !== undefined && key < best)) {
        best = key;
        bestCount = count;
      }
    }
    if (best === undefined) break;
    const [left, right] = best.split(" ") as [string, string];
    merges.push([left, right]);
    for (const word of words) {
      const s = word.symbols;
      const joined: string[] = [];
      for (let i = 0; i < s.length; i++) {
        if (i + 1 < s.length && s[i] === left && s[i + 1] === right) {
          joined.push(left + right);
          i++;
        } else {
          joined.push(s[i]);
        }
      }
      word.symbols = joined;
    }
  }
  return { characters, merges };
}

/** Learns the vocabulary from `texts` and writes it as tokenizer.json, tokenizer_config.json and special_tokens_map.json. */
export function buildTokenizer(texts: readonly string[], options: BuildOptions): TokenizerFiles {
  const fixed = SPECIAL_PIECES.length + 256;
  const addedCount = 2;
  const { characters, merges } = learnBpe(texts, options.maxVocabSize - fixed - addedCount);
  const pieces = [...SPECIAL_PIECES, ...Array.from({ length: 256 }, (_, b) => pieceOfByte(b)), ...characters, ...merges.map(([l, r]) => l + r)];
  const vocab: Record<string, number> = {};
  pieces.forEach((piece, id) => {
    if (piece in vocab) throw new Error(`tokenizer builder: piece '${piece}' would get two ids`);
    vocab[piece] = id;
  });
  const imageTokenId = pieces.length;
  const padTokenId = pieces.length + 1;
  const added = (id: number, content: string) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true });
  const addedTokens = [...SPECIAL_PIECES.map((p, id) => added(id, p)), added(imageTokenId, IMAGE_TOKEN), added(padTokenId, PAD_TOKEN)];
  const bos = { SpecialToken: { id: "<s>", type_id: 0 } };
  const tokenizer = {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: addedTokens,
    normalizer: null,
    pre_tokenizer: { type: "Metaspace", replacement: SPACE_SYMBOL, prepend_scheme: "first", split: false },
    post_processor: {
      type: "TemplateProcessing",
      single: [bos, { Sequence: { id: "A", type_id: 0 } }],
      pair: [bos, { Sequence: { id: "A", type_id: 0 } }, { SpecialToken: { id: "<s>", type_id: 1 } }, { Sequence: { id: "B", type_id: 1 } }],
      special_tokens: { "<s>": { id: "<s>", ids: [1], tokens: ["<s>"] } },
    },
    decoder: LLAMA_DECODER,
    model: byteFallbackBpe(vocab, merges),
  };
  const decoderEntries = Object.fromEntries(addedTokens.map(({ id, ...token }) => [String(id), token]));
  const config = {
    add_bos_token: true,
    add_eos_token: false,
    added_tokens_decoder: decoderEntries,
    bos_token: "<s>",
    clean_up_tokenization_spaces: false,
    eos_token: "</s>",
    legacy: false,
    model_max_length: options.modelMaxLength,
    pad_token: PAD_TOKEN,
    padding_side: "left",
    tokenizer_class: "LlamaTokenizerFast",
    unk_token: "<unk>",
  };
  const specialTokensMap = { bos_token: "<s>", eos_token: "</s>", pad_token: PAD_TOKEN, unk_token: "<unk>" };
  return { tokenizer, config, specialTokensMap, vocabSize: pieces.length + addedCount, imageTokenId, padTokenId };
}
