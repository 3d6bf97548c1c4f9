/** Small string tools the tokenizers share. */

/** U+2581 LOWER ONE EIGHTH BLOCK: how SentencePiece writes a space inside pieces. */
export const SPACE_SYMBOL = "\u2581";

/**
 * The text with every lone UTF-16 surrogate replaced by U+FFFD, so that it is valid Unicode and
 * has a UTF-8 form. (Python refuses such strings outright; the UTF-8 encoders used by Node map
 * them to U+FFFD the same way.)
 */
export function wellFormed(text: string): string {
  // Fast path: most text has no surrogates at all.
  if (!/[\uD800-\uDFFF]/.test(text)) return text;
  return text.replace(/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g, "\uFFFD");
}

/** UTF-8 bytes of a string. */
export function utf8Bytes(text: string): Uint8Array {
  return ENCODER.encode(text);
}

const ENCODER = new TextEncoder();

/**
 * Longest-match lookup of a fixed set of strings at a position in a text (SentencePiece's user
 * defined symbols, Hugging Face's added tokens). Candidates are bucketed by first character and
 * tried longest first, which is plenty for the handful of entries real tokenizers have.
 */
export class PrefixMatcher {
  private readonly byFirst = new Map<string, string[]>();

  constructor(entries: Iterable<string>) {
    for (const entry of entries) {
      if (entry === "") continue;
      const bucket = this.byFirst.get(entry[0]) ?? [];
      if (!bucket.includes(entry)) bucket.push(entry);
      this.byFirst.set(entry[0], bucket);
    }
    for (const bucket of this.byFirst.values()) bucket.sort((a, b) => b.length - a.length);
  }

  get empty(): boolean {
    return this.byFirst.size === 0;
  }

  /** The longest entry that `text` has at `position`, or undefined. */
  match(text: string, position: number): string | undefined {
    const bucket = this.byFirst.get(text[position]);
    if (!bucket) return undefined;
    for (const entry of bucket) if (text.startsWith(entry, position)) return entry;
    return undefined;
  }
}

/**
 * The ids of words already encoded: text repeats its words, and a word's ids never change.
 * Past `limit` words it is emptied at once (no eviction order to keep).
 */
export class WordCache {
  private readonly words = new Map<string, number[]>();

  constructor(private readonly limit = 65_536) {}

  /** Appends the ids of `word` to `ids`, from the cache or from `encodeWord` (whose result is kept). */
  encode(word: string, ids: number[], encodeWord: (word: string, into: number[]) => void): void {
    let cached = this.words.get(word);
    if (!cached) {
      cached = [];
      encodeWord(word, cached);
      if (this.words.size >= this.limit) this.words.clear();
      this.words.set(word, cached);
    }
    for (const id of cached) ids.push(id);
  }
}
