/**
 * Added tokens: strings such as "<s>", "</s>" or LLaVA's "<image>" that are cut out of the text
 * whole before the BPE step and get their own id, whatever text surrounds them. Both
 * transformers (its Trie) and tokenizers (its AddedVocabulary) cut at the leftmost occurrence,
 * taking the longest token when several start there. A token with lstrip/rstrip also swallows
 * the whitespace on its left/right.
 */
import { TokenizerError } from "./errors.js";
import { PrefixMatcher } from "./text.js";

export interface AddedToken {
  id: number;
  content: string;
  /** Special tokens (control tokens such as <s>, or <image>) are left out when decoding skips special tokens. */
  special: boolean;
  lstrip: boolean;
  rstrip: boolean;
  /** tokenizer.json: match this token in the normalized text rather than the raw text. */
  normalized: boolean;
}

/** A piece of text between added tokens (with where it starts in the text), or an added token. */
export type Part = { text: string; offset: number } | { token: AddedToken };

export class AddedTokenSplitter {
  private readonly matcher: PrefixMatcher;
  private readonly byContent = new Map<string, AddedToken>();

  constructor(tokens: readonly AddedToken[]) {
    for (const token of tokens) {
      if (token.content === "") throw new TokenizerError(`added token ${token.id} has empty content`);
      this.byContent.set(token.content, token);
    }
    this.matcher = new PrefixMatcher(this.byContent.keys());
  }

  get empty(): boolean {
    return this.matcher.empty;
  }

  /** Cuts `text` at the added tokens; `offset` shifts the offsets reported for the text parts. */
  split(text: string, offset = 0): Part[] {
    if (this.matcher.empty) return text === "" ? [] : [{ text, offset }];
    const parts: Part[] = [];
    let textStart = 0;
    let position = 0;
    while (position < text.length) {
      const content = this.matcher.match(text, position);
      if (content === undefined) {
        position++;
        continue;
      }
      const token = this.byContent.get(content)!;
      let before = position;
      if (token.lstrip) while (before > textStart && isWhitespace(text[before - 1])) before--;
      let after = position + content.length;
      if (token.rstrip) while (after < text.length && isWhitespace(text[after])) after++;
      if (before > textStart) parts.push({ text: text.slice(textStart, before), offset: offset + textStart });
      parts.push({ token });
      textStart = position = after;
    }
    if (textStart < text.length) parts.push({ text: text.slice(textStart), offset: offset + textStart });
    return parts;
  }
}

function isWhitespace(char: string): boolean {
  return /\s/.test(char);
}
