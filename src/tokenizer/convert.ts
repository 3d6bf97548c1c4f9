/**
 * tokenizer.model → tokenizer.json, the way transformers' LlamaConverter (convert_slow_tokenizer.py,
 * 4.40) writes the fast tokenizer of a LLaMA SentencePiece model.
 *
 * - vocab: every piece with its id; the first three are named <unk>, <s>, </s>.
 * - merges: SentencePieceExtractor's. For each piece in id order, every way of cutting it into
 *   two pieces that are both in the vocabulary is a merge (ordered by the ids of the left, then
 *   the right part); then all merges are sorted by the score of the piece they make, best first,
 *   keeping that order among equal scores. (The first three pieces count with score 0.)
 * - model: BPE with byte_fallback, fuse_unk, unk_token <unk>.
 * - legacy=true: normalizer Sequence[Prepend("▁"), Replace(" ", "▁")], no pre-tokenizer.
 *   legacy=false: no normalizer, pre-tokenizer Metaspace("▁", prepend_scheme "first", split false).
 * - decoder Sequence[Replace("▁", " "), ByteFallback, Fuse, Strip(" ", 1, 0)].
 * - post_processor TemplateProcessing "<s> $A" (as LlamaTokenizerFast builds it from
 *   add_bos_token/add_eos_token).
 * - added_tokens: <unk>, <s>, </s> (special, not normalized) and any given ones (LLaVA's <image>).
 *
 * Ranking merges by score is what makes merge-rank BPE reproduce SentencePiece's score-ordered
 * merging; the tests check the two agree id for id.
 */
import type { AddedToken } from "./added_tokens.js";
import { TokenizerError } from "./errors.js";
import type { SentencePieceModel } from "./sentencepiece_model.js";
import { SPACE_SYMBOL } from "./text.js";

export interface ConvertOptions {
  /** Added tokens beyond <unk>, <s>, </s> (from tokenizer_config.json's added_tokens_decoder). */
  addedTokens?: readonly AddedToken[];
  /** transformers' `legacy` flag; default true, as LlamaConverter's default. */
  legacy?: boolean;
  addBos?: boolean;
  addEos?: boolean;
}

const LLAMA_SPECIALS = ["<unk>", "<s>", "</s>"];

/** The tokenizer.json object (JSON.stringify it to write the file). */
export function tokenizerJsonFromModel(model: SentencePieceModel, options: ConvertOptions = {}): Record<string, unknown> {
  const legacy = options.legacy ?? true;
  const addBos = options.addBos ?? true;
  const addEos = options.addEos ?? false;
  if (model.pieces.length < 3) throw new TokenizerError(`${model.source}: too few pieces for a LLaMA tokenizer`);
  const pieces = model.pieces.map((p, id) => (id < 3 ? LLAMA_SPECIALS[id] : p.piece));
  const scores = model.pieces.map((p, id) => (id < 3 ? 0 : p.score));
  for (const piece of pieces) {
    if (piece.includes(" ")) throw new TokenizerError(`${model.source}: piece '${piece}' has a space, which the "left right" merges format cannot hold`);
  }

  const vocab: Record<string, number> = {};
  pieces.forEach((piece, id) => {
    vocab[piece] = id;
  });

  const added = new Map<number, AddedToken>();
  LLAMA_SPECIALS.forEach((content, id) => added.set(id, { id, content, special: true, lstrip: false, rstrip: false, normalized: false }));
  for (const token of options.addedTokens ?? []) if (!added.has(token.id)) added.set(token.id, token);

  const template = [...(addBos ? ["<s>"] : []), "$A", ...(addEos ? ["</s>"] : [])];
  const usedSpecials = LLAMA_SPECIALS.slice(1).filter((name) => template.includes(name));
  return {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: [...added.values()]
      .sort((a, b) => a.id - b.id)
      .map((t) => ({ id: t.id, content: t.content, single_word: false, lstrip: t.lstrip, rstrip: t.rstrip, normalized: t.normalized, special: t.special })),
    normalizer: legacy
      ? {
          type: "Sequence",
          normalizers: [
            { type: "Prepend", prepend: SPACE_SYMBOL },
            { type: "Replace", pattern: { String: " " }, content: SPACE_SYMBOL },
          ],
        }
      : null,
    pre_tokenizer: legacy ? null : { type: "Metaspace", replacement: SPACE_SYMBOL, prepend_scheme: "first", split: false },
    post_processor: {
      type: "TemplateProcessing",
      single: template.map((item) => (item === "$A" ? { Sequence: { id: "A", type_id: 0 } } : { SpecialToken: { id: item, type_id: 0 } })),
      pair: [
        ...template.map((item) => (item === "$A" ? { Sequence: { id: "A", type_id: 0 } } : { SpecialToken: { id: item, type_id: 0 } })),
        ...template.map((item) => (item === "$A" ? { Sequence: { id: "B", type_id: 1 } } : { SpecialToken: { id: item, type_id: 1 } })),
      ],
      special_tokens: Object.fromEntries(usedSpecials.map((name) => [name, { id: name, ids: [vocab[name]], tokens: [name] }])),
    },
    decoder: LLAMA_DECODER,
    model: byteFallbackBpe(vocab, mergesByScore(pieces, scores)),
  };
}

/** SentencePieceExtractor.extract: every two-piece split of every piece, best score first. */
/** tokenizer.json's decoder for LLaMA-style BPE: ▁ back to spaces, byte pieces back to bytes, the dummy prefix dropped. */
export const LLAMA_DECODER = {
  type: "Sequence",
  decoders: [
    { type: "Replace", pattern: { String: SPACE_SYMBOL }, content: " " },
    { type: "ByteFallback" },
    { type: "Fuse" },
    { type: "Strip", content: " ", start: 1, stop: 0 },
  ],
};

/** tokenizer.json's model for SentencePiece-style BPE with byte fallback: the vocabulary and the merges in rank order. */
export function byteFallbackBpe(vocab: Record<string, number>, merges: readonly (readonly [string, string])[]): Record<string, unknown> {
  return {
    type: "BPE",
    dropout: null,
    unk_token: "<unk>",
    continuing_subword_prefix: null,
    end_of_word_suffix: null,
    fuse_unk: true,
    byte_fallback: true,
    vocab,
    merges: merges.map(([left, right]) => `${left} ${right}`),
  };
}

export function mergesByScore(pieces: readonly string[], scores: readonly number[]): [string, string][] {
  const ids = new Map<string, number>();
  pieces.forEach((piece, id) => {
    if (!ids.has(piece)) ids.set(piece, id);
  });
  const merges: { left: string; right: string; score: number }[] = [];
  pieces.forEach((piece, id) => {
    // Python slices strings by code point.
    const chars = Array.from(piece);
    const local: { left: string; right: string; score: number }[] = [];
    for (let cut = 1; cut < chars.length; cut++) {
      const left = chars.slice(0, cut).join("");
      const right = chars.slice(cut).join("");
      if (ids.has(left) && ids.has(right)) local.push({ left, right, score: scores[id] });
    }
    local.sort((a, b) => ids.get(a.left)! - ids.get(b.left)! || ids.get(a.right)! - ids.get(b.right)!);
    merges.push(...local);
  });
  // Array.prototype.sort is stable, like Python's sorted.
  merges.sort((a, b) => b.score - a.score);
  return merges.map(({ left, right }) => [left, right]);
}
